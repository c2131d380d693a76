//! [`plan`]: questions (a) and (c) at an asked rate (every policy and limit, GPU counts
//! upwards to the first that meets every SLO, the feasible configurations cheapest first) and
//! (b), the goodput of the best few; with the answer's types.

use anyhow::{Result, bail};
use rayon::prelude::*;
use serde::Serialize;
use tokenq_core::Method;

use super::evaluate::{Candidate, Lines, evaluate};
use super::goodput::{fit_band, goodput, goodput_method};
use super::render::{continuous_text, routing};
use super::{PlanConfig, PlanPolicy, Slo};

/// The largest total rate a configuration sustains within the SLOs.
#[derive(Debug, Clone, Serialize)]
pub struct Goodput {
    /// The configuration.
    #[serde(flatten)]
    pub policy: PlanPolicy,
    /// Its limit.
    pub max_tokens: Option<f64>,
    /// Its GPUs.
    pub gpus: u32,
    /// Largest total rate meeting every SLO, req/s.
    pub goodput_rps: f64,
    /// The same at the upper ends of the fit's 95% intervals (a slower device), when known.
    pub goodput_at_fit_upper_rps: Option<f64>,
    /// Why `goodput_at_fit_upper_rps` is null (null when it is given).
    pub fit_upper_note: Option<String>,
    /// exact or simulation.
    pub method: Method,
}

/// The planner's answer.
#[derive(Debug, Clone, Serialize)]
pub struct PlanAnswer {
    /// The workload.
    pub tokens: String,
    /// The rate asked about, req/s.
    pub rate_rps: f64,
    /// The SLOs.
    pub slos: Vec<String>,
    /// Routing assumption of each policy searched.
    pub routing: String,
    /// Continuous batching's engine, step model and replications (null: not searched).
    pub continuous: Option<String>,
    /// (a) feasible configurations, cheapest first.
    pub feasible: Vec<Candidate>,
    /// (c) the smallest number of GPUs that meets every SLO at the rate (null: none searched).
    pub min_gpus: Option<u32>,
    /// (b) goodput of the best configurations.
    pub goodput: Vec<Goodput>,
    /// Configurations evaluated.
    pub evaluated: usize,
    /// Edge-of-range remarks ("= no limit", "= search end").
    pub notes: Vec<String>,
    /// Wall time, seconds.
    pub elapsed_s: f64,
}

/// Policies searched.
fn policies(cfg: &PlanConfig) -> Vec<PlanPolicy> {
    let mut v = Vec::new();
    // The paper's models give e2e and wait only.
    let paper = cfg.paper_policies && !cfg.slos.iter().any(|s| s.metric.replay_only());
    if paper && cfg.service.is_some() {
        v.push(PlanPolicy::Single);
    }
    if paper && cfg.batch.is_some() {
        v.extend(cfg.caps.iter().map(|&cap| PlanPolicy::Dynamic { cap }));
    }
    if cfg.continuous.is_some() {
        v.extend(
            cfg.caps
                .iter()
                .map(|&max_num_seqs| PlanPolicy::Continuous { max_num_seqs }),
        );
    }
    v
}

/// Cheapest first: fewest GPUs, most served whole, lowest first-SLO value.
fn cheaper(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    a.gpus
        .cmp(&b.gpus)
        .then(b.served_whole_fraction.total_cmp(&a.served_whole_fraction))
        .then_with(|| {
            let v = |c: &Candidate| c.slos.first().map_or(f64::INFINITY, |s| s.value_s.value);
            v(a).total_cmp(&v(b))
        })
}

/// Answer the capacity question.
pub fn plan(cfg: &PlanConfig) -> Result<PlanAnswer> {
    cfg.validate()?;
    let started = std::time::Instant::now();
    let (policies, pairs) = searched(cfg)?;
    // For each policy and limit, GPU counts upwards until one meets the SLOs: more GPUs only
    // spread the same stream thinner, so the first feasible count is the one worth listing.
    let all: Vec<Candidate> = pairs
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, &(p, l))| {
            let mut out = Vec::new();
            for n in 1..=cfg.max_gpus {
                let salt = (i as u64) * 1024 + u64::from(n);
                let c = evaluate(cfg, p, l, n, cfg.rate, Lines::fit(cfg), salt);
                let done = c.feasible || c.served_whole_fraction < cfg.min_served_fraction;
                out.push(c);
                if done {
                    break;
                }
            }
            out
        })
        .collect();
    let mut feasible: Vec<Candidate> = all.iter().filter(|c| c.feasible).cloned().collect();
    feasible.sort_by(cheaper);
    let min_gpus = feasible.first().map(|c| c.gpus);
    let mut notes = replay_only_note(cfg);
    if let Some(best) = feasible.first() {
        if best.max_tokens.is_none() {
            notes.push("the cheapest configuration needs no max-token limit (= no limit)".into());
        }
        if let PlanPolicy::Dynamic { cap } | PlanPolicy::Continuous { max_num_seqs: cap } =
            best.policy
            && Some(&cap) == cfg.caps.iter().max()
        {
            notes.push(format!(
                "the cheapest configuration uses the largest cap searched, K = {cap} (= search end): larger caps may do better"
            ));
        }
    } else {
        notes.push(format!(
            "no configuration with up to {} GPUs meets every SLO at {} req/s (= search end): raise --max-gpus, relax an SLO or allow a tighter --max-tokens",
            cfg.max_gpus, cfg.rate
        ));
    }
    // (b) goodput of the best few distinct (policy, limit) at their GPU count.
    let mut goodputs = Vec::new();
    for c in feasible.iter().take(cfg.goodput_top) {
        let g = goodput(cfg, c, Lines::fit(cfg), cfg.rate);
        if let Some(g) = g {
            let (g_hi, fit_upper_note) = fit_band(cfg, c, cfg.rate);
            goodputs.push(Goodput {
                policy: c.policy,
                max_tokens: c.max_tokens,
                gpus: c.gpus,
                goodput_rps: g,
                goodput_at_fit_upper_rps: g_hi,
                fit_upper_note,
                method: goodput_method(cfg, c),
            });
        }
    }
    Ok(PlanAnswer {
        tokens: cfg.tokens_spec.clone(),
        rate_rps: cfg.rate,
        slos: cfg.slos.iter().map(Slo::label).collect(),
        routing: routing(&policies, cfg.routing, cfg.trace.is_some()),
        continuous: continuous_text(cfg),
        feasible,
        min_gpus,
        goodput: goodputs,
        evaluated: all.len(),
        notes,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// The policies searched and every (policy, limit) pair, or why there are none.
#[allow(clippy::type_complexity)]
pub(super) fn searched(cfg: &PlanConfig) -> Result<(Vec<PlanPolicy>, Vec<(PlanPolicy, f64)>)> {
    if cfg.slos.is_empty() {
        bail!("give at least one --slo, e.g. --slo 'e2e:p99<=10s'");
    }
    let policies = policies(cfg);
    if policies.is_empty() {
        if let Some(s) = cfg.slos.iter().find(|s| s.metric.replay_only()) {
            bail!(
                "--slo {}: ttft, tpot and itl come from the continuous-batching replay, which needs a step model: give --step-table DIR, or a --coefficients file with a [step_time] section (tokenq fit --step-model)",
                s.label()
            );
        }
        bail!("the coefficients have neither a single-request line nor batch-time lines");
    }
    let pairs = policies
        .iter()
        .flat_map(|&p| cfg.limits.iter().map(move |&l| (p, l)))
        .collect();
    Ok((policies, pairs))
}

/// The notes every answer starts with: that replay-only SLOs leave the paper's policies out,
/// when they do, and what a trace workload means for the statistics.
pub(super) fn replay_only_note(cfg: &PlanConfig) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(t) = &cfg.trace {
        notes.push(format!(
            "workload: {}; every configuration replays the whole trace once from an empty system, so its statistics are the trace's own (simulation without an interval; a random router's draws are replicated)",
            t.describe()
        ));
    }
    if cfg.paper_policies
        && (cfg.service.is_some() || cfg.batch.is_some())
        && cfg.slos.iter().any(|s| s.metric.replay_only())
    {
        notes.push(
            "ttft/tpot/itl SLOs: only continuous batching is searched (the paper's single-request and dynamic-batching models give e2e and wait)".into(),
        );
    }
    notes
}
