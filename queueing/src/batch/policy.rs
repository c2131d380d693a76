//! One call per batching policy, returning every estimate of docs/models.md §4–§8 with its
//! [`Method`] (paper §IV; docs/models.md §10 items 1, 13–19 for the readings chosen).
//!
//! * dynamic, unbounded: exact chain (random `T_b`), the paper's `T_b := E[T_b]` chain
//!   (approximation), Inoue's eq-16 bound with the eq-20 linearisation `α = k1 + k3 m2`,
//!   `τ0 = k2 + k4 m2` (a rigorous bound only when `T_b` is deterministic, otherwise marked
//!   heuristic); unbounded-support outputs with `k3 > 0` are rejected as never stable;
//! * dynamic with cap `K` (§7): exact chain, and the mean-only chain;
//! * fixed `K` (§6): exact chain (random `T_K`) and the roots formula with `T_K := E[T_K]`
//!   (the paper's reading of eq 25; exact only if `T_K` is deterministic);
//! * elastic (§8): embedded chain with a gamma two-moment law of `T^el_b` (approximation, within
//!   1e-4 of simulation in docs/models.md §9.8) and own-completion term `c̄(b)`; for bounded support the
//!   heuristic Inoue-style value with `α_el = k1 + k3 E[X]`, `τ0 = k2 + k4 m2` (§10 item 19).

use super::chain::{ChainOptions, ChainSolution, solve_dynamic, solve_fixed};
use super::inoue::inoue_bound;
use super::llm::{Elastic, LlmBatch, Padded, PaddedTreatment};
use super::roots::fixed_roots;
use super::service::BatchService;
use super::{BatchError, check_batch, check_rate};
use crate::Method;

/// Batching policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Take all waiting requests (at most `K`).
    Dynamic,
    /// Start only with exactly `K` requests.
    Fixed,
    /// Dynamic batch; each request returns at its own length.
    Elastic,
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Policy::Dynamic => "dynamic",
            Policy::Fixed => "fixed",
            Policy::Elastic => "elastic",
        })
    }
}

/// A batching question: policy, cap, rate, model.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Policy.
    pub policy: Policy,
    /// `K`: the batch size (fixed, required) or the cap (dynamic, elastic; `None` = unbounded).
    pub max_batch: Option<usize>,
    /// Poisson arrival rate λ (req/s).
    pub arrival_rate: f64,
    /// Batch-time model.
    pub model: LlmBatch,
    /// Chain solver options.
    pub chain: ChainOptions,
}

/// One model estimate (seconds).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// What was computed, e.g. `exact embedded chain (random T_b)`.
    pub label: String,
    /// Exact, bound or approximation.
    pub method: Method,
    /// A bound that has no theorem behind it for these inputs (Inoue's bound with random `T_b`).
    pub heuristic: bool,
    /// Mean wait, arrival → batch start (s); `None` for bounds on latency only.
    pub wait_s: Option<f64>,
    /// Mean latency, arrival → own completion (s).
    pub latency_s: f64,
    /// Mean batch size (requests), where the model gives it.
    pub mean_batch: Option<f64>,
    /// Chain diagnostics (states, tail mass, solver), for chain estimates.
    pub chain: Option<ChainSolution>,
}

impl Estimate {
    fn from_chain(label: &str, method: Method, s: ChainSolution) -> Self {
        Self {
            label: label.into(),
            method,
            heuristic: false,
            wait_s: Some(s.wait_s),
            latency_s: s.latency_s,
            mean_batch: Some(s.mean_batch),
            chain: Some(s),
        }
    }
}

/// All estimates for one configuration. `estimates[0]` is the reference value (the exact chain,
/// or for elastic batching the gamma-closure chain).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BatchReport {
    /// Policy.
    pub policy: Policy,
    /// `K` (batch size for fixed, cap for dynamic/elastic, `None` unbounded).
    pub max_batch: Option<usize>,
    /// λ (req/s).
    pub arrival_rate: f64,
    /// Load ρ: `λE[T_K]/K`, or `λ·lim E[T_b]/b` unbounded (< 1).
    pub load: f64,
    /// Largest stable arrival rate (req/s).
    pub max_stable_rate: f64,
    /// Estimates, reference first.
    pub estimates: Vec<Estimate>,
}

fn load_capped<S: BatchService>(svc: &S, lambda: f64, k: usize) -> (f64, f64) {
    let m = svc.time_moments(k).0;
    (lambda * m / k as f64, k as f64 / m)
}

fn never_stable(model: &LlmBatch) -> BatchError {
    let (kv, v) = model.speed_optimum(256);
    BatchError::NeverStable {
        why: format!(
            "padded unbounded dynamic batching with {} (unbounded support) and k3 = {} > 0: \
             E[T_b]/b → ∞, so any arrival rate overloads it; cap the batch size (the \
             speed-optimal K = {kv} sustains up to {v:.6} req/s) or use elastic batching",
            model.tokens.dist().describe(),
            model.coeffs.k3
        ),
    }
}

/// Evaluate a configuration (see the module doc for what each policy reports).
pub fn analyze(cfg: &BatchConfig) -> Result<BatchReport, BatchError> {
    let lambda = cfg.arrival_rate;
    check_rate(lambda)?;
    if let Some(k) = cfg.max_batch {
        check_batch(k)?;
    }
    let model = &cfg.model;
    let opts = &cfg.chain;
    let random = Padded {
        llm: model,
        treatment: PaddedTreatment::Random,
    };
    let mean_only = Padded {
        llm: model,
        treatment: PaddedTreatment::MeanOnly,
    };
    let deterministic = random.is_deterministic();
    let mut est = Vec::new();
    let (load, max_stable_rate) = match (cfg.policy, cfg.max_batch) {
        (Policy::Dynamic, None) => {
            let slope = model.padded_slope().ok_or_else(|| never_stable(model))?;
            let load = lambda * slope;
            let s = solve_dynamic(&random, lambda, None, opts)?;
            est.push(Estimate::from_chain(
                if deterministic {
                    "exact embedded chain (deterministic T_b)"
                } else {
                    "exact embedded chain (random T_b)"
                },
                Method::Exact,
                s,
            ));
            if !deterministic {
                let s = solve_dynamic(&mean_only, lambda, None, opts)?;
                est.push(Estimate::from_chain(
                    "embedded chain with T_b := E[T_b] (paper)",
                    Method::Approximation,
                    s,
                ));
            }
            if let Some((alpha, tau0)) = model.linearisation() {
                let b = inoue_bound(lambda, alpha, tau0)?;
                est.push(Estimate {
                    label: format!(
                        "Inoue bound min(φ0, φ1), eq 16, α = {alpha:.6} s, τ0 = {tau0:.6} s"
                    ),
                    method: Method::Bound,
                    heuristic: !deterministic,
                    wait_s: None,
                    latency_s: b.bound,
                    mean_batch: None,
                    chain: None,
                });
            }
            (
                load,
                if slope > 0.0 {
                    1.0 / slope
                } else {
                    f64::INFINITY
                },
            )
        }
        (Policy::Dynamic, Some(k)) => {
            let (load, max) = load_capped(&random, lambda, k);
            let s = solve_dynamic(&random, lambda, Some(k), opts)?;
            est.push(Estimate::from_chain(
                "exact embedded chain with cap K",
                Method::Exact,
                s,
            ));
            if !deterministic {
                let s = solve_dynamic(&mean_only, lambda, Some(k), opts)?;
                est.push(Estimate::from_chain(
                    "embedded chain with cap K, T_b := E[T_b]",
                    Method::Approximation,
                    s,
                ));
            }
            (load, max)
        }
        (Policy::Fixed, None) => {
            return Err(BatchError::Invalid {
                name: "batch size K",
                value: f64::NAN,
                why: "fixed batching needs a batch size K".into(),
            });
        }
        (Policy::Fixed, Some(k)) => {
            let (load, max) = load_capped(&random, lambda, k);
            let s = solve_fixed(&random, lambda, k, opts)?;
            est.push(Estimate::from_chain(
                if deterministic {
                    "exact embedded chain (deterministic T_K)"
                } else {
                    "exact embedded chain (random T_K)"
                },
                Method::Exact,
                s,
            ));
            let t = model.padded_moments(k).0;
            let r = fixed_roots(lambda, k, t)?;
            est.push(Estimate {
                label: "roots formula, T_K := E[T_K] (paper eq 25)".into(),
                method: if deterministic {
                    Method::Exact
                } else {
                    Method::Approximation
                },
                heuristic: false,
                wait_s: Some(r.wait_s),
                latency_s: r.latency_s,
                mean_batch: Some(k as f64),
                chain: None,
            });
            (load, max)
        }
        (Policy::Elastic, cap) => {
            let el = Elastic { llm: model };
            let (load, max) = match cap {
                Some(k) => load_capped(&el, lambda, k),
                None => {
                    let slope = model.elastic_slope();
                    (lambda * slope, 1.0 / slope)
                }
            };
            let s = solve_dynamic(&el, lambda, cap, opts)?;
            est.push(Estimate::from_chain(
                "embedded chain, gamma two-moment law of T^el_b",
                if deterministic {
                    Method::Exact
                } else {
                    Method::Approximation
                },
                s,
            ));
            if let (None, Some((_, tau0))) = (cap, model.linearisation()) {
                let alpha = model.elastic_slope();
                let b = inoue_bound(lambda, alpha, tau0)?;
                est.push(Estimate {
                    label: format!(
                        "Inoue-style value, α_el = k1 + k3 E[X] = {alpha:.6} s, τ0 = {tau0:.6} s \
                         (bounds wait + whole batch)"
                    ),
                    method: Method::Bound,
                    heuristic: true,
                    wait_s: None,
                    latency_s: b.bound,
                    mean_batch: None,
                    chain: None,
                });
            }
            (load, max)
        }
    };
    Ok(BatchReport {
        policy: cfg.policy,
        max_batch: cfg.max_batch,
        arrival_rate: lambda,
        load,
        max_stable_rate,
        estimates: est,
    })
}
