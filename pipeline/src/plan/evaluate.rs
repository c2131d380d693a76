//! One configuration at one rate: its SLO statistics from its policy's model (`models`),
//! whether it meets every SLO and, for [`goodput_at`], the share of requests within their
//! per-request bounds ([`RequestTargets`]) from the same model run.

use anyhow::{Context, Result};
use serde::Serialize;
use tokenq_core::{BatchTime, Estimate, LinearService, Method};

use super::models::{batched, continuous, routed, single};
use super::{Metric, PlanConfig, PlanPolicy, Slo};

/// One statistic of one configuration.
#[derive(Debug, Clone, Serialize)]
pub struct SloValue {
    /// The SLO, e.g. `e2e:p99<=10s`.
    pub slo: String,
    /// The value, seconds (with its 95% half-width for a simulation).
    pub value_s: Estimate,
    /// How it was obtained.
    pub method: Method,
    /// Whether the SLO holds (for a simulation: the interval's upper end meets it).
    pub met: bool,
}

impl SloValue {
    /// A simulated statistic: the SLO holds when its interval's upper end meets the target
    /// (the value itself when the interval could not be estimated).
    pub(super) fn simulated(slo: &Slo, e: Estimate) -> Self {
        let hi = if e.half_width.is_finite() {
            e.hi()
        } else {
            e.value
        };
        SloValue {
            slo: slo.label(),
            value_s: e,
            method: Method::Simulation,
            met: hi <= slo.target_s,
        }
    }
}

/// One configuration and how it fares.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// The policy.
    #[serde(flatten)]
    pub policy: PlanPolicy,
    /// Max-token limit, tokens (`null` = none).
    pub max_tokens: Option<f64>,
    /// GPUs (engines).
    pub gpus: u32,
    /// Share of requests served whole, `P(N ≤ L)`.
    pub served_whole_fraction: f64,
    /// Utilisation of each GPU.
    pub utilisation: f64,
    /// Each SLO's statistic (empty when the queue is unstable).
    pub slos: Vec<SloValue>,
    /// Every SLO holds.
    pub feasible: bool,
    /// Why not, in words.
    pub note: Option<String>,
    /// Seed salt of its simulation (the goodput bisection reuses it, so that the bisection's
    /// answer at the asked rate is this evaluation).
    #[serde(skip)]
    pub salt: u64,
}

/// The latency lines a configuration is evaluated with: the fit's, or the upper ends of its
/// 95 % intervals (the capacity band).
#[derive(Debug, Clone, Copy)]
pub(super) struct Lines {
    pub(super) service: Option<LinearService>,
    pub(super) batch: Option<BatchTime>,
}

impl Lines {
    /// The fitted lines.
    pub(super) fn fit(cfg: &PlanConfig) -> Self {
        Lines {
            service: cfg.service,
            batch: cfg.batch,
        }
    }
}

/// Per-request bounds of the goodput (seconds; `f64::INFINITY` = unbounded): each SLO's target
/// bounds its latency in every request (the smallest target where several SLOs bound one
/// latency); a mean SLO's target is used as the per-request bound too. ITL is a gap between
/// tokens, not one value per request (vLLM's `--goodput` takes ttft, tpot and e2el), so an
/// ITL SLO bounds no request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestTargets {
    /// Arrival → start of service.
    pub wait_s: f64,
    /// Arrival → last token.
    pub e2e_s: f64,
    /// Arrival → first token.
    pub ttft_s: f64,
    /// Time per output token after the first.
    pub tpot_s: f64,
}

impl RequestTargets {
    /// The bounds the SLOs put on each request.
    pub fn of(slos: &[Slo]) -> Self {
        let mut t = RequestTargets {
            wait_s: f64::INFINITY,
            e2e_s: f64::INFINITY,
            ttft_s: f64::INFINITY,
            tpot_s: f64::INFINITY,
        };
        for s in slos {
            let b = match s.metric {
                Metric::Wait => &mut t.wait_s,
                Metric::E2e => &mut t.e2e_s,
                Metric::Ttft => &mut t.ttft_s,
                Metric::Tpot => &mut t.tpot_s,
                Metric::Itl => continue,
            };
            *b = b.min(s.target_s);
        }
        t
    }
}

/// Goodput at one offered rate, as vLLM's `--goodput` defines it: the rate times the share of
/// requests whose own latencies all meet their bounds ([`RequestTargets`]).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GoodputPoint {
    /// Offered total rate, req/s.
    pub rate_rps: f64,
    /// Share of requests within every bound (with its 95 % half-width for a simulation).
    pub share: Estimate,
    /// `rate × share`, req/s (half-width `rate ×` the share's).
    pub goodput_rps: Estimate,
    /// exact (M/G/1's law of the wait and the sojourn) or simulation.
    pub method: Method,
}

/// A share of requests within their bounds and how it was obtained.
pub(super) type Share = (Estimate, Method);

pub(super) fn evaluate(
    cfg: &PlanConfig,
    policy: PlanPolicy,
    limit: f64,
    gpus: u32,
    rate: f64,
    lines: Lines,
    salt: u64,
) -> Candidate {
    evaluate_share(cfg, policy, limit, gpus, rate, lines, salt, None).0
}

/// A configuration not yet evaluated.
pub(super) fn candidate(
    cfg: &PlanConfig,
    policy: PlanPolicy,
    limit: f64,
    gpus: u32,
    salt: u64,
) -> Candidate {
    Candidate {
        policy,
        max_tokens: limit.is_finite().then_some(limit),
        gpus,
        served_whole_fraction: if limit.is_finite() {
            cfg.tokens.cdf(limit)
        } else {
            1.0
        },
        utilisation: f64::NAN,
        slos: Vec::new(),
        feasible: false,
        note: None,
        salt,
    }
}

/// [`evaluate`], and with `targets` the share of requests within them from the same model run.
#[allow(clippy::too_many_arguments)]
fn evaluate_share(
    cfg: &PlanConfig,
    policy: PlanPolicy,
    limit: f64,
    gpus: u32,
    rate: f64,
    lines: Lines,
    salt: u64,
    targets: Option<&RequestTargets>,
) -> (Candidate, Result<Option<Share>>) {
    let lambda = rate / f64::from(gpus);
    let mut c = candidate(cfg, policy, limit, gpus, salt);
    let result = match policy {
        PlanPolicy::Single | PlanPolicy::Dynamic { .. }
            if cfg.trace.is_some()
                || (gpus > 1 && cfg.routing != sim::routing::Routing::Random) =>
        {
            routed(cfg, policy, lines, limit, gpus, rate, salt, targets, &mut c)
        }
        PlanPolicy::Single => single(cfg, lines, limit, lambda, salt, targets, &mut c),
        PlanPolicy::Dynamic { cap } => {
            batched(cfg, lines, cap, limit, lambda, salt, targets, &mut c)
        }
        PlanPolicy::Continuous { max_num_seqs } => {
            continuous(cfg, max_num_seqs, limit, gpus, rate, salt, targets, &mut c)
        }
    };
    let share = match result {
        Ok(share) => Ok(share),
        Err(e) => {
            c.note = Some(e.to_string());
            c.slos.clear();
            Err(e)
        }
    };
    c.feasible = c.note.is_none() && !c.slos.is_empty() && c.slos.iter().all(|s| s.met);
    if c.served_whole_fraction < cfg.min_served_fraction {
        c.feasible = false;
        c.note.get_or_insert_with(|| {
            format!(
                "serves {:.1}% whole, below --min-served-fraction",
                100.0 * c.served_whole_fraction
            )
        });
    }
    (c, share)
}

/// `c` evaluated again at total rate `rate`, with the same random numbers.
pub fn evaluate_at(cfg: &PlanConfig, c: &Candidate, rate: f64) -> Candidate {
    let limit = c.max_tokens.unwrap_or(f64::INFINITY);
    evaluate(cfg, c.policy, limit, c.gpus, rate, Lines::fit(cfg), c.salt)
}

/// `c` evaluated again at total rate `rate` (the same random numbers), with its goodput there
/// from the same model run: `rate ×` the share of requests within [`RequestTargets::of`] the
/// SLOs. Exact for one request at a time on one GPU or behind the random split when one law
/// gives the share (an e2e bound, or a wait bound, or a wait bound no tighter than the e2e
/// one); simulated, per request, otherwise. An error where the configuration is unstable or
/// overloaded at `rate`.
pub fn goodput_at(cfg: &PlanConfig, c: &Candidate, rate: f64) -> (Candidate, Result<GoodputPoint>) {
    let limit = c.max_tokens.unwrap_or(f64::INFINITY);
    let targets = RequestTargets::of(&cfg.slos);
    let (e, share) = evaluate_share(
        cfg,
        c.policy,
        limit,
        c.gpus,
        rate,
        Lines::fit(cfg),
        c.salt,
        Some(&targets),
    );
    let point = share.and_then(|s| {
        let (share, method) = s.context("no share of requests within the targets")?;
        Ok(GoodputPoint {
            rate_rps: rate,
            share,
            goodput_rps: Estimate {
                value: rate * share.value,
                half_width: rate * share.half_width,
            },
            method,
        })
    });
    (e, point)
}
