//! Simulation results ([`Report`]): estimates with confidence intervals, counts, stability.
//!
//! Every estimate is a simulation result (`queueing::Method::Simulation`) with a Student-t
//! interval (docs/models.md §11); a percentile's half-width adds the histogram's relative error bound
//! ([`crate::stats::QUANTILE_REL_ERROR`] × value) to the sampling half-width. A run whose queue
//! grows without bound is reported as [`Stability::Unstable`] with the estimated load ρ and the
//! largest stable arrival rate; its means are then not steady-state values and the CLI does not
//! print them.

use queueing::Method;
use serde::{Deserialize, Serialize};

use crate::stats::{Estimate, LogHistogram, QUANTILE_REL_ERROR, TCache, Unit, interval_with};

/// Mean and percentiles of one quantity (s).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Mean (s).
    pub mean: Estimate,
    /// Median (s).
    pub p50: Estimate,
    /// 90th percentile (s).
    pub p90: Estimate,
    /// 99th percentile (s).
    pub p99: Estimate,
}

/// How the intervals were obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CiInfo {
    /// `batch_means` (one run cut into sections) or `replications`.
    pub kind: String,
    /// Number of units (sections or replications) the t-interval is built on.
    pub units: usize,
    /// Confidence level.
    pub confidence: f64,
}

/// Whether the simulated system reached a steady state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Stability {
    /// Estimates are steady-state values.
    Stable,
    /// The queue grows with time: the means depend on the run length.
    Unstable {
        /// Estimated load ρ = λ · (busy time per served request).
        rho: f64,
        /// Largest arrival rate the server kept up with (served requests per busy second, req/s).
        max_stable_rate_rps: f64,
        /// What was detected.
        reason: String,
    },
}

/// Counts over all replications (warm-up included). Conservation:
/// `arrivals = served + lost + waiting_at_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Counts {
    /// Requests that arrived.
    pub arrivals: u64,
    /// Requests served.
    pub served: u64,
    /// Requests lost to impatience.
    pub lost: u64,
    /// Requests still waiting when the run ended (fixed batching: fewer than K; or a run
    /// stopped as unstable).
    pub waiting_at_end: u64,
}

/// Everything a simulation run estimates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always `simulation`.
    pub method: Method,
    /// Policy name (`mg1`, `mg1_impatient`, `dynamic`, `fixed`, `elastic`).
    pub policy: String,
    /// Arrivals per replication.
    pub requests: u64,
    /// Replications run.
    pub replications: u32,
    /// Requests per replication dropped as warm-up.
    pub warmup_requests: u64,
    /// Master seed.
    pub seed: u64,
    /// How intervals were built.
    pub ci: CiInfo,
    /// Measured arrival rate after warm-up (req/s).
    pub arrival_rate_rps: f64,
    /// Wait = batch (or service) start − arrival, served requests (s).
    pub wait_s: Summary,
    /// Latency (sojourn) = completion of the request − arrival, served requests (s).
    pub latency_s: Summary,
    /// Mean wait over all requests, lost ones charged τ (reneging, paper eq 9) or 0 (balking);
    /// only with patience (s).
    pub wait_all_s: Option<Estimate>,
    /// Share of served requests whose own wait and latency both meet the run's attainment
    /// targets ([`crate::RunConfig::attainment`]); only with targets. Its interval is built on
    /// the same units (batch means or replications) as the other estimates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attainment: Option<Estimate>,
    /// Lost / arrivals.
    pub loss_fraction: Estimate,
    /// Mean requests per batch (1 for single-server policies).
    pub mean_batch_size: Estimate,
    /// Fraction of time the server is busy.
    pub utilisation: Estimate,
    /// Served requests per second.
    pub throughput_rps: Estimate,
    /// Steady state or not.
    pub stability: Stability,
    /// Counts, all replications.
    pub counts: Counts,
    /// Relative error bound of the percentiles from the histogram.
    pub quantile_rel_error: f64,
    /// Largest number of requests waiting at once (batching policies).
    pub max_queue: u64,
    /// Bytes of simulator state per replication (histograms, sections, queue high-water).
    pub state_bytes: u64,
    /// Wall-clock time of the run (s).
    pub elapsed_s: f64,
    /// Simulated requests per wall-clock second, all replications.
    pub sim_requests_per_s: f64,
}

impl Report {
    /// Whether the run reached a steady state.
    pub fn is_stable(&self) -> bool {
        self.stability == Stability::Stable
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// The estimates of one report.
pub(crate) struct Estimates {
    pub wait: Summary,
    pub latency: Summary,
    pub wait_all: Estimate,
    pub attainment: Estimate,
    pub loss: Estimate,
    pub batch_size: Estimate,
    pub utilisation: Estimate,
    pub throughput: Estimate,
}

/// Build the estimates from the CI units and their pool.
pub(crate) fn estimates(units: &[&Unit], pooled: &Unit, confidence: f64) -> Estimates {
    let mut t = TCache::new(confidence);
    let mut est =
        |f: &dyn Fn(&Unit) -> f64| interval_with(f(pooled), units.iter().map(|u| f(u)), &mut t);
    let wait_mean = est(&|u| ratio(u.sum_wait, u.served as f64));
    let lat_mean = est(&|u| ratio(u.sum_latency, u.served as f64));
    let wait_all = est(&|u| ratio(u.sum_wait_all, u.arrivals as f64));
    let attainment = est(&|u| ratio(u.met as f64, u.served as f64));
    let loss = est(&|u| ratio(u.lost as f64, u.arrivals as f64));
    let batch_size = est(&|u| ratio(u.batch_requests as f64, u.batches as f64));
    let utilisation = est(&|u| ratio(u.busy, u.span));
    let throughput = est(&|u| ratio(u.served as f64, u.span));
    const PS: [f64; 3] = [0.5, 0.9, 0.99];
    let mut summary = |h: &dyn Fn(&Unit) -> &LogHistogram, mean: Estimate| {
        let per_unit: Vec<[f64; 3]> = units.iter().map(|u| h(u).quantiles(PS)).collect();
        let point = h(pooled).quantiles(PS);
        // Sampling half-width plus the histogram's error bound (bucket quantisation can make
        // every unit report the same bucket, which alone would give a zero-width interval).
        let q = |i: usize, t: &mut TCache| {
            let mut e = interval_with(point[i], per_unit.iter().map(|x| x[i]), t);
            e.half_width += QUANTILE_REL_ERROR * point[i];
            e
        };
        Summary {
            mean,
            p50: q(0, &mut t),
            p90: q(1, &mut t),
            p99: q(2, &mut t),
        }
    };
    let wait = summary(&|u| &u.wait_hist, wait_mean);
    let latency = summary(&|u| &u.latency_hist, lat_mean);
    Estimates {
        wait,
        latency,
        wait_all,
        attainment,
        loss,
        batch_size,
        utilisation,
        throughput,
    }
}

/// Instability: stopped early, load ρ̂ = λ̂·(busy time per served request) at or above
/// `rho_limit`, or section mean waits trending up.
pub(crate) fn stability(
    pooled: &Unit,
    section_waits: &[f64],
    rho_limit: Option<f64>,
    aborted: Option<&str>,
) -> Stability {
    let lambda = ratio(pooled.arrivals as f64, pooled.span);
    let busy_per_req = ratio(pooled.busy, pooled.served as f64);
    let rho = lambda * busy_per_req;
    let max_rate = ratio(1.0, busy_per_req);
    let unstable = |reason: String| Stability::Unstable {
        rho,
        max_stable_rate_rps: max_rate,
        reason,
    };
    if let Some(why) = aborted {
        return unstable(why.to_string());
    }
    if let Some(limit) = rho_limit
        && rho >= limit
    {
        return unstable(format!("estimated load ρ = {rho:.4} ≥ 1"));
    }
    // Trend: mean wait of the last third of the sections against the first third.
    let k = section_waits.len() / 3;
    if k >= 2 {
        let first = &section_waits[..k];
        let last = &section_waits[section_waits.len() - k..];
        let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
        let var = |x: &[f64], m: f64| {
            x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() - 1) as f64
        };
        let (m1, m2) = (mean(first), mean(last));
        let se = ((var(first, m1) + var(last, m2)) / k as f64).sqrt();
        let t = if se > 0.0 {
            (m2 - m1) / se
        } else if m2 > m1 {
            f64::INFINITY
        } else {
            0.0
        };
        if m2 > TREND_RATIO * m1 && m2 - m1 > TREND_MIN_S && t > TREND_T {
            return unstable(format!(
                "mean wait grows along the run: {m1:.4} s in the first third, {m2:.4} s in the last third (t = {t:.1})"
            ));
        }
    }
    Stability::Stable
}

/// Batching policies whose server is never idle (unbounded dynamic batching under load) have
/// ρ̂ = 1 in a stable steady state; only a clear excess over 1 means the queue outgrows the
/// server (the trend test catches the rest).
pub(crate) const BATCH_RHO_LIMIT: f64 = 1.01;

/// Trend test: last-third mean wait must exceed this multiple of the first third's …
const TREND_RATIO: f64 = 1.5;
/// … by at least this many seconds …
const TREND_MIN_S: f64 = 1e-6;
/// … with a Welch t statistic above this.
const TREND_T: f64 = 4.0;
