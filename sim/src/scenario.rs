//! What to simulate ([`Scenario`]) and how to run it ([`RunConfig`]).
//!
//! Policies and batch-time model as in docs/models.md §11: single-server FCFS with service
//! `S = a·n + c` (paper §III, eqs 1–5), optionally with constant patience τ (paper §III-B,
//! eq 9); dynamic batching with an optional cap K (paper §IV-A and §IV-C end, docs/models.md §4, §7),
//! fixed batching K (docs/models.md §6) and elastic batching (paper eq 26, docs/models.md §8), with batch
//! time `T = t1(m) + t2(m)·max n`, `t1(m) = k1·m + k2`, `t2(m) = k3·m + k4` (paper eq 18).

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use tokenq_core::service::{Abandonment, BatchTime, LinearService, Patience};

use crate::SimError;
use crate::tokens::{TokenLaw, TokenMode};
use crate::trace::Trace;

/// The serving policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum Policy {
    /// Single server, FCFS, service `a·n + c`, optional constant patience.
    Mg1 {
        /// Service-time line.
        service: LinearService,
        /// Constant patience; `None` = patient users.
        patience: Option<Patience>,
    },
    /// When the server is free and requests wait, take the `min(queue, K)` oldest; an idle
    /// server starts a batch of one at the next arrival. Padded batch time.
    Dynamic {
        /// Batch-time model.
        batch: BatchTime,
        /// Cap K; `None` = unbounded.
        max_batch: Option<u32>,
    },
    /// Start when K requests wait, take exactly K. Padded batch time.
    Fixed {
        /// Batch-time model.
        batch: BatchTime,
        /// K.
        batch_size: u32,
    },
    /// Dynamic batching whose requests return as soon as their own tokens are done; the next
    /// batch starts when the whole batch is done (paper eq 26).
    Elastic {
        /// Batch-time model.
        batch: BatchTime,
        /// Cap K; `None` = unbounded.
        max_batch: Option<u32>,
    },
}

impl Policy {
    /// Short name: `mg1`, `mg1_impatient`, `dynamic`, `fixed`, `elastic`.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Mg1 { patience: None, .. } => "mg1",
            Policy::Mg1 {
                patience: Some(_), ..
            } => "mg1_impatient",
            Policy::Dynamic { .. } => "dynamic",
            Policy::Fixed { .. } => "fixed",
            Policy::Elastic { .. } => "elastic",
        }
    }

    /// One line with the policy's parameters and units, e.g. `mg1, S = 0.02·n + 0.1 s` or
    /// `dynamic batching, K = 16, t1(m) = 0.01·m + 0.1 s, t2(m) = 0.0005·m + 0.02 s`.
    pub fn describe(&self) -> String {
        let batch_lines = |b: &BatchTime| {
            format!(
                "t1(m) = {}·m + {} s, t2(m) = {}·m + {} s",
                b.k1, b.k2, b.k3, b.k4
            )
        };
        match self {
            Policy::Mg1 { service, patience } => format!(
                "mg1, S = {}·n + {} s{}",
                service.per_token_s,
                service.intercept_s,
                patience.map_or(String::new(), |p| format!(
                    ", patience {} s ({})",
                    p.patience_s,
                    if p.mode == Abandonment::Balk {
                        "balking"
                    } else {
                        "reneging"
                    }
                ))
            ),
            Policy::Dynamic { batch, max_batch } | Policy::Elastic { batch, max_batch } => format!(
                "{} batching, K = {}, {}",
                self.name(),
                max_batch.map_or("∞".into(), |k| k.to_string()),
                batch_lines(batch)
            ),
            Policy::Fixed { batch, batch_size } => {
                format!("fixed batching, K = {batch_size}, {}", batch_lines(batch))
            }
        }
    }
}

/// The arrival process.
#[derive(Debug, Clone, PartialEq)]
pub enum Arrivals {
    /// Poisson: `arrival_i = Σ_{j≤i} Exp(λ)` (first arrival one interarrival after 0).
    Poisson {
        /// λ (req/s).
        rate_rps: f64,
    },
    /// Replay a trace's timestamps (looped end to end when more requests are asked than it
    /// holds), optionally time-scaled so that its mean rate becomes `rate_rps`.
    Trace {
        /// The trace.
        trace: Arc<Trace>,
        /// Target mean rate (req/s); `None` = as recorded.
        rate_rps: Option<f64>,
    },
}

/// Where a request's token count comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Tokens {
    /// Independent draws from a law.
    Law(TokenLaw),
    /// The trace's `output_tokens` (needs trace arrivals).
    FromTrace,
}

/// A complete system to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Serving policy.
    pub policy: Policy,
    /// Arrival process.
    pub arrivals: Arrivals,
    /// Token counts.
    pub tokens: Tokens,
    /// Max-token limit L (`None` = no clipping); every policy uses `min(N, L)`.
    pub max_tokens: Option<f64>,
    /// Integer (docs/models.md §11) or continuous token counts.
    pub token_mode: TokenMode,
}

/// Progress callback: receives the number of requests just finished (may be called from
/// several threads).
#[derive(Clone)]
pub struct ProgressFn(pub Arc<dyn Fn(u64) + Send + Sync>);

impl std::fmt::Debug for ProgressFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressFn")
    }
}

/// How to run a scenario.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Arrivals per replication.
    pub requests: u64,
    /// Master seed; replication r uses a seed derived from (seed, r).
    pub seed: u64,
    /// 1 = one run, CI by 30 batch means; ≥ 2 = independent replications (in parallel), CI
    /// across replications.
    pub replications: u32,
    /// Fraction of requests (arrival order) dropped as warm-up (docs/models.md §11: 0.01).
    pub warmup_fraction: f64,
    /// Confidence level of the intervals (0.95).
    pub confidence: f64,
    /// Write one CSV row per request of replication 0 to this file.
    pub records: Option<PathBuf>,
    /// Worker threads for replications (`None` = rayon's default). Results do not depend on it.
    pub threads: Option<usize>,
    /// Progress callback.
    pub progress: Option<ProgressFn>,
    /// Per-request latency targets: with them the report estimates the share of served
    /// requests that meet both ([`crate::Report::attainment`]).
    pub attainment: Option<Targets>,
}

/// Per-request latency targets (seconds; `f64::INFINITY` = unbounded). A request *attains* them
/// when its own wait and its own latency are both within: the per-request criterion of vLLM's
/// `--goodput` (a joint condition on each request, not a product of marginal shares).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    /// Largest wait (arrival → start of service), s.
    pub wait_s: f64,
    /// Largest latency (arrival → completion), s.
    pub latency_s: f64,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            requests: 1_000_000,
            seed: 1,
            replications: 1,
            warmup_fraction: DEFAULT_WARMUP_FRACTION,
            confidence: 0.95,
            records: None,
            threads: None,
            progress: None,
            attainment: None,
        }
    }
}

/// docs/models.md §11: the first 1% of requests are warm-up.
pub const DEFAULT_WARMUP_FRACTION: f64 = 0.01;
/// Fewest requests per section (30 sections) after warm-up.
pub const MIN_REQUESTS_PER_SECTION: u64 = 10;

fn finite_pos(x: f64) -> bool {
    x.is_finite() && x > 0.0
}
fn finite_nonneg(x: f64) -> bool {
    x.is_finite() && x >= 0.0
}

impl Scenario {
    /// Check every parameter; the message names the quantity and the fix.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |s: String| Err(SimError::Scenario(s));
        match &self.policy {
            Policy::Mg1 { service, patience } => {
                if !finite_nonneg(service.per_token_s) || !finite_nonneg(service.intercept_s) {
                    return bad("per-token time and intercept must be finite and ≥ 0 s".into());
                }
                if service.per_token_s == 0.0 && service.intercept_s == 0.0 {
                    return bad(
                        "service time is 0: give a per-token time or an intercept > 0 s".into(),
                    );
                }
                if let Some(p) = patience
                    && !finite_nonneg(p.patience_s)
                {
                    return bad(format!(
                        "patience must be finite and ≥ 0 s, got {}",
                        p.patience_s
                    ));
                }
            }
            Policy::Dynamic { batch, max_batch } | Policy::Elastic { batch, max_batch } => {
                check_batch(batch)?;
                if *max_batch == Some(0) {
                    return bad("max batch size must be ≥ 1 (omit it for unbounded batches)".into());
                }
            }
            Policy::Fixed { batch, batch_size } => {
                check_batch(batch)?;
                if *batch_size == 0 {
                    return bad("fixed batch size K must be ≥ 1".into());
                }
            }
        }
        match &self.arrivals {
            Arrivals::Poisson { rate_rps } => {
                if !finite_pos(*rate_rps) {
                    return bad(format!(
                        "arrival rate must be a positive number of req/s, got {rate_rps}"
                    ));
                }
                if self.tokens == Tokens::FromTrace {
                    return bad("token counts from a trace need trace arrivals (give --tokens for Poisson arrivals)".into());
                }
            }
            Arrivals::Trace { trace, rate_rps } => {
                trace.validate()?;
                if let Some(r) = rate_rps {
                    if !finite_pos(*r) {
                        return bad(format!(
                            "target rate must be a positive number of req/s, got {r}"
                        ));
                    }
                    if trace.mean_rate().is_none() {
                        return bad(
                            "cannot rescale a trace whose arrivals all share one instant".into(),
                        );
                    }
                }
            }
        }
        if let Some(l) = self.max_tokens
            && (l.is_nan() || l < 1.0)
        {
            return bad(format!("max tokens L must be ≥ 1, got {l}"));
        }
        Ok(())
    }
}

fn check_batch(b: &BatchTime) -> Result<(), SimError> {
    let ks = [b.k1, b.k2, b.k3, b.k4];
    if ks.iter().any(|k| !finite_nonneg(*k)) {
        return Err(SimError::Scenario(format!(
            "batch-time coefficients (k1, k2, k3, k4) must be finite and ≥ 0 s, got {ks:?}"
        )));
    }
    if b.k1 == 0.0 && b.k2 == 0.0 && b.k3 == 0.0 && b.k4 == 0.0 {
        return Err(SimError::Scenario(
            "batch time is 0: give --first-token-s or --decode-step-s".into(),
        ));
    }
    Ok(())
}

impl RunConfig {
    /// Check the run settings.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |s: String| Err(SimError::Config(s));
        if !(0.0..0.5).contains(&self.warmup_fraction) {
            return bad(format!(
                "warm-up fraction must be in [0, 0.5), got {}",
                self.warmup_fraction
            ));
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            return bad(format!(
                "confidence must be in (0, 1), got {}",
                self.confidence
            ));
        }
        if self.replications == 0 {
            return bad("replications must be ≥ 1".into());
        }
        let warm = (self.requests as f64 * self.warmup_fraction).floor() as u64;
        let min = crate::stats::SECTIONS as u64 * MIN_REQUESTS_PER_SECTION;
        if self.requests.saturating_sub(warm) < min {
            return bad(format!(
                "{} requests is too few: need at least {} after the warm-up (30 sections of {}); raise --requests",
                self.requests,
                min + warm + 1,
                MIN_REQUESTS_PER_SECTION
            ));
        }
        let total = self.requests.saturating_mul(u64::from(self.replications));
        if total > crate::stats::MAX_COUNT_PER_HISTOGRAM {
            return bad(format!(
                "{} requests × {} replications exceeds the histogram limit of {} requests in all; split the run",
                self.requests,
                self.replications,
                crate::stats::MAX_COUNT_PER_HISTOGRAM
            ));
        }
        if self.threads == Some(0) {
            return bad("threads must be ≥ 1".into());
        }
        if let Some(t) = self.attainment
            && (t.wait_s.is_nan() || t.latency_s.is_nan() || t.wait_s < 0.0 || t.latency_s < 0.0)
        {
            return bad(format!(
                "attainment targets must be ≥ 0 s (infinity for none), got wait {} s, latency {} s",
                t.wait_s, t.latency_s
            ));
        }
        Ok(())
    }
}
