//! Question (b): the goodput bisection (the largest rate meeting every SLO), its capacity band
//! at the upper ends of the fit's 95 % intervals, and without a rate [`goodput_plan`], each
//! bisection started at the configuration's capacity scale.

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use serde::Serialize;
use tokenq_core::Method;

use super::evaluate::{Candidate, Lines, candidate, evaluate};
use super::render::{config_label, continuous_text};
use super::search::{replay_only_note, searched};
use super::{PlanConfig, PlanPolicy, Slo};

/// The goodput search tries rates down to its start divided by this (`4⁶`: six steps of 4).
pub const GOODPUT_FLOOR: f64 = 4096.0;

/// Largest total rate meeting every SLO, by bisection (the SLO statistics grow with the rate),
/// from `start` (the asked rate, or without one the configuration's [`capacity_scale`]): the
/// bracket doubles while `start` meets the SLOs, and steps down by factors of 4 to
/// `start`/[`GOODPUT_FLOOR`] when it fails (`None` when even that fails).
pub(super) fn goodput(cfg: &PlanConfig, c: &Candidate, lines: Lines, start: f64) -> Option<f64> {
    let limit = c.max_tokens.unwrap_or(f64::INFINITY);
    // The same random numbers at every rate (common random numbers, those of the candidate's
    // own evaluation), so that the simulated statistics move with the rate, not with the seed.
    let ok = |rate: f64| evaluate(cfg, c.policy, limit, c.gpus, rate, lines, c.salt).feasible;
    let (mut lo, mut hi) = (0.0, start);
    // Grow the bracket until the rate fails (at most 2^30 × the start).
    let mut doublings = 0;
    while ok(hi) {
        lo = hi;
        hi *= 2.0;
        doublings += 1;
        if doublings > 30 {
            return Some(f64::INFINITY);
        }
    }
    if lo == 0.0 {
        // Even the start fails: step down by factors of 4 (six at most) to a rate that meets
        // the SLOs, and bisect above it. Low rates are the slowest to simulate (the replay runs
        // one request at a time), so the steps start from the top.
        loop {
            if hi <= start / GOODPUT_FLOOR {
                return None;
            }
            hi /= 4.0;
            if ok(hi) {
                lo = hi;
                hi *= 4.0;
                break;
            }
        }
    }
    // Exact statistics are bisected to 0.1 %; simulated ones to 1 %, finer than their noise.
    let tol = match c.policy {
        PlanPolicy::Single => 1e-3,
        PlanPolicy::Dynamic { .. } | PlanPolicy::Continuous { .. } => 1e-2,
    };
    for _ in 0..25 {
        if (hi - lo) <= tol * hi {
            break;
        }
        let mid = 0.5 * (lo + hi);
        if ok(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}

/// The goodput at the upper ends of the fit's 95 % intervals (the same random numbers), or why
/// there is none.
pub(super) fn fit_band(
    cfg: &PlanConfig,
    c: &Candidate,
    start: f64,
) -> (Option<f64>, Option<String>) {
    let upper = match c.policy {
        PlanPolicy::Single => cfg.service_hi.map(|s| Lines {
            service: Some(s),
            ..Lines::fit(cfg)
        }),
        PlanPolicy::Dynamic { .. } => cfg.batch_hi.map(|b| Lines {
            batch: Some(b),
            ..Lines::fit(cfg)
        }),
        PlanPolicy::Continuous { .. } => {
            return (
                None,
                Some("continuous batching's step model carries no 95% intervals".into()),
            );
        }
    };
    let Some(lines) = upper else {
        let what = match c.policy {
            PlanPolicy::Single => "the single-request line has no ci95 table",
            _ => "the batch lines (first_token, decode_step) have no ci95 tables",
        };
        return (None, Some(format!("{what} in the coefficients")));
    };
    match goodput(cfg, c, lines, start) {
        Some(g) => (Some(g), None),
        None => (
            None,
            Some("at the fit's upper coefficients no rate meets every SLO".into()),
        ),
    }
}

/// exact for one request at a time on one GPU or behind the random split, else simulation.
pub(super) fn goodput_method(cfg: &PlanConfig, c: &Candidate) -> Method {
    if cfg.trace.is_some() {
        return Method::Simulation;
    }
    match c.policy {
        PlanPolicy::Single if c.gpus == 1 || cfg.routing == sim::routing::Routing::Random => {
            Method::Exact
        }
        _ => Method::Simulation,
    }
}

/// A configuration's one-GPU capacity scale, req/s: where the goodput bisection starts without
/// an asked rate — K requests over the time of a batch of K run together. One request at a
/// time: `1/E[S_L]`, `S_L = a·min(N, L) + c`. Dynamic batching with cap K:
/// `K/(t1(K) + t2(K)·E[min(N, L)])`, full batches of mean-length requests (padding to the
/// longest makes the real capacity lower). Continuous batching: K = `max_num_seqs`, or fewer
/// when the KV cache holds fewer mean-length requests, over the prefill of their K mean prompts
/// in one step and `E[min(N, L)] − 1` decode steps of K requests at the mean context. The
/// bisection widens its bracket from there either way.
fn capacity_scale(cfg: &PlanConfig, policy: PlanPolicy, limit: f64) -> Result<f64> {
    let n = cfg.tokens.clipped_moments(limit).0;
    let scale = match policy {
        PlanPolicy::Single => {
            let s = cfg.service.context("no single-request line")?;
            1.0 / (s.per_token_s * n + s.intercept_s)
        }
        PlanPolicy::Dynamic { cap } => {
            let b = cfg.batch.context("no batch-time lines")?;
            let k = f64::from(cap);
            k / (b.t1(k) + b.t2(k) * n)
        }
        PlanPolicy::Continuous { max_num_seqs } => {
            let cs = cfg.continuous.as_ref().context("no step model")?;
            let prompt = cs.input.mean().ceil().max(1.0);
            let kv_tokens = f64::from(cs.engine.kv_blocks) * f64::from(cs.engine.block_size);
            let k = f64::from(max_num_seqs)
                .min((kv_tokens / (prompt + n)).floor())
                .max(1.0);
            let prefill = cs
                .model
                .step_time_s(&sim::continuous::StepBatch::prefill_of_batch(k * prompt, k));
            let ctx = (prompt + 0.5 * n).round() as u32;
            let decode = cs.model.step_time_s(&sim::continuous::StepBatch {
                n_decode: k as u32,
                decode_context_sum: u64::from(ctx) * k as u64,
                decode_context_min: ctx,
                decode_context_max: ctx,
                ..Default::default()
            });
            k / (prefill + (n - 1.0).max(0.0) * decode)
        }
    };
    if !(scale.is_finite() && scale > 0.0) {
        bail!(
            "{}: the model gives it no finite service time (capacity scale {scale} req/s); check the --coefficients lines",
            config_label(policy, limit.is_finite().then_some(limit))
        );
    }
    Ok(scale)
}

/// One configuration's goodput without an asked rate.
#[derive(Debug, Clone, Serialize)]
pub struct GoodputRow {
    /// The policy.
    #[serde(flatten)]
    pub policy: PlanPolicy,
    /// Max-token limit, tokens (`null` = none).
    pub max_tokens: Option<f64>,
    /// Share of requests served whole, `P(N ≤ L)`.
    pub served_whole_fraction: f64,
    /// Largest total rate one GPU sustains within every SLO, req/s (`null`: none does, down to
    /// 1/4096 of the capacity scale).
    pub goodput_rps: Option<f64>,
    /// The same at the upper ends of the fit's 95% intervals, when known.
    pub goodput_at_fit_upper_rps: Option<f64>,
    /// Why `goodput_at_fit_upper_rps` is null (null when it is given).
    pub fit_upper_note: Option<String>,
    /// exact or simulation.
    pub method: Method,
    /// Where the bisection started: the configuration's one-GPU capacity scale, req/s.
    pub capacity_scale_rps: f64,
}

/// Question (b) alone (`tokenq plan` without `--rate`).
#[derive(Debug, Clone, Serialize)]
pub struct GoodputPlan {
    /// The workload.
    pub tokens: String,
    /// The SLOs.
    pub slos: Vec<String>,
    /// Least share of requests served whole asked for.
    pub min_served_fraction: f64,
    /// How the one-GPU goodput scales to n GPUs (the assumption).
    pub gpus: String,
    /// Continuous batching's engine, step model and replications (null: not searched).
    pub continuous: Option<String>,
    /// Every policy and limit that serves enough whole, largest goodput first, then most
    /// served whole.
    pub goodputs: Vec<GoodputRow>,
    /// Configurations left out by `--min-served-fraction`.
    pub excluded: usize,
    /// Remarks.
    pub notes: Vec<String>,
    /// Wall time, seconds.
    pub elapsed_s: f64,
}

/// What [`GoodputPlan::gpus`] says for a trace workload.
pub const GOODPUT_GPUS_TRACE: &str = "goodput on 1 GPU, the whole trace stretched to each rate; a random split of a trace over n GPUs is not the trace stretched n times (bursts thin out), so n × it is only a guide: give --rate to search GPU counts on the trace itself";

/// What [`GoodputPlan::gpus`] says.
pub const GOODPUT_GPUS: &str = "goodput on 1 GPU; n GPUs behind the random split sustain n × it (each sees R/n, and meets the SLOs exactly when one GPU does at R/n); round robin, join-shortest-queue and vLLM's router are taken to do at least as well, so n × it is on the safe side (give --rate to search GPU counts)";

/// Question (b) without a rate: for every policy and limit on one GPU that serves at least
/// `min_served_fraction` whole, the largest total rate meeting every SLO (the bisection of
/// [`plan`](super::plan), started at the configuration's [`capacity_scale`]) with its capacity
/// band, best first. `cfg.rate` is not read.
pub fn goodput_plan(cfg: &PlanConfig) -> Result<GoodputPlan> {
    cfg.validate_search()?;
    let started = std::time::Instant::now();
    let (_, pairs) = searched(cfg)?;
    let rows: Vec<Option<GoodputRow>> = pairs
        .par_iter()
        .enumerate()
        .map(|(i, &(p, l))| {
            // The salt of the configuration's one-GPU evaluation in `plan`.
            let c = candidate(cfg, p, l, 1, (i as u64) * 1024 + 1);
            if c.served_whole_fraction < cfg.min_served_fraction {
                return Ok(None);
            }
            let scale = capacity_scale(cfg, p, l)?;
            let g = goodput(cfg, &c, Lines::fit(cfg), scale);
            let (g_hi, fit_upper_note) = match g {
                Some(_) => fit_band(cfg, &c, scale),
                None => (
                    None,
                    Some("no rate meets every SLO at the fit's values".into()),
                ),
            };
            Ok(Some(GoodputRow {
                policy: p,
                max_tokens: c.max_tokens,
                served_whole_fraction: c.served_whole_fraction,
                goodput_rps: g,
                goodput_at_fit_upper_rps: g_hi,
                fit_upper_note,
                method: goodput_method(cfg, &c),
                capacity_scale_rps: scale,
            }))
        })
        .collect::<Result<_>>()?;
    let excluded = rows.iter().filter(|r| r.is_none()).count();
    let mut goodputs: Vec<GoodputRow> = rows.into_iter().flatten().collect();
    goodputs.sort_by(|a, b| {
        let g = |r: &GoodputRow| r.goodput_rps.unwrap_or(-1.0);
        g(b).total_cmp(&g(a))
            .then(b.served_whole_fraction.total_cmp(&a.served_whole_fraction))
    });
    let mut notes = replay_only_note(cfg);
    if excluded > 0 {
        notes.push(format!(
            "{excluded} of {} configurations serve less than --min-served-fraction {} whole and are left out",
            pairs.len(),
            cfg.min_served_fraction
        ));
    }
    if goodputs.iter().any(|r| r.goodput_rps.is_none()) {
        notes.push("goodput none: no rate meets every SLO, down to 1/4096 of the configuration's capacity scale (the service alone misses a target, or nearly)".into());
    }
    if goodputs.is_empty() {
        notes.push(format!(
            "every configuration serves less than --min-served-fraction {} whole: lower it or raise --limits",
            cfg.min_served_fraction
        ));
    }
    Ok(GoodputPlan {
        tokens: cfg.tokens_spec.clone(),
        slos: cfg.slos.iter().map(Slo::label).collect(),
        min_served_fraction: cfg.min_served_fraction,
        gpus: match cfg.trace {
            None => GOODPUT_GPUS.into(),
            Some(_) => GOODPUT_GPUS_TRACE.into(),
        },
        continuous: continuous_text(cfg),
        goodputs,
        excluded,
        notes,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}
