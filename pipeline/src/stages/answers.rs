//! What the pipeline answers (also its `--json` summary).

use super::*;

/// p50, p90 and p99 in seconds: exact values, or simulation estimates with the half-widths of
/// their 95% intervals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    /// 95% half-widths of p50, p90, p99 (simulation only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub half_widths: Option<[f64; 3]>,
}

impl Percentiles {
    /// The simulated p50/p90/p99 of a summary, with their intervals.
    pub fn simulated(s: &sim::Summary) -> Self {
        Percentiles {
            p50: s.p50.value,
            p90: s.p90.value,
            p99: s.p99.value,
            half_widths: Some([s.p50.half_width, s.p90.half_width, s.p99.half_width]),
        }
    }

    /// As the report prints them.
    pub fn for_report(&self) -> reports::Percentiles {
        let v = [self.p50, self.p90, self.p99];
        match self.half_widths {
            Some(h) => reports::Percentiles::with_ci(v, h),
            None => reports::Percentiles::new(v, Method::Exact),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LimitAnswer {
    pub arrival_rate_rps: f64,
    /// The smallest limit whose objective is within 0.1 % of the best (ties are rounding noise).
    pub best_limit_tokens: f64,
    /// The limit with the largest objective on the grid, before the tie rule.
    pub argmax_limit_tokens: f64,
    /// Exact percentiles of the wait at L*.
    pub wait_percentiles_at_best_s: Option<Percentiles>,
    /// Exact percentiles of the latency (wait + service) at L*.
    pub sojourn_percentiles_at_best_s: Option<Percentiles>,
    /// Offered load λ·E[S] without a limit; ≥ 1 means the queue without a limit is unstable.
    pub offered_load_without_limit: f64,
    pub wait_at_best_s: f64,
    pub sojourn_at_best_s: f64,
    pub utilisation_at_best: f64,
    pub served_whole_at_best: f64,
    pub wait_without_limit_s: f64,
    pub objective_at_best: f64,
    pub impatient: Option<ImpatientAnswer>,
    pub checks: Vec<Comparison>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImpatientAnswer {
    pub patience_s: f64,
    pub loss_cost: f64,
    /// The smallest limit whose objective is within 0.1 % of the best.
    pub best_limit_tokens: f64,
    /// The limit with the largest objective on the grid, before the tie rule.
    pub argmax_limit_tokens: f64,
    pub loss_fraction_at_best: f64,
    pub wait_all_at_best_s: f64,
    pub loss_fraction_at_top_limit: f64,
    pub objective_at_best: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchAnswer {
    pub arrival_rate_rps: f64,
    pub speed_optimal_k: usize,
    pub speed_optimal_rps: f64,
    /// The smallest fixed K whose mean latency is within 0.1 % of the least.
    pub fixed_k: usize,
    /// The fixed K with the least mean latency, before the tie rule.
    pub fixed_argmin_k: usize,
    pub fixed_latency_s: f64,
    pub fixed_wait_s: f64,
    /// Simulated latency percentiles at fixed K*.
    pub fixed_latency_percentiles_s: Option<Percentiles>,
    /// The smallest cap whose mean latency is within 0.1 % of the least.
    pub cap_k: usize,
    /// The cap with the least mean latency, before the tie rule.
    pub cap_argmin_k: usize,
    pub cap_latency_s: f64,
    pub cap_wait_s: f64,
    /// Simulated latency percentiles with cap K*.
    pub cap_latency_percentiles_s: Option<Percentiles>,
    /// Fixed sizes K ≤ max batch that are unstable at this rate (λE[T_K] ≥ K).
    pub fixed_unstable: Vec<usize>,
    /// Larger caps give the same latency: the cap no longer binds.
    pub cap_stops_binding: bool,
    /// Stable fixed sizes and caps whose chain did not converge (too close to instability to solve
    /// at this rate): left out of the search.
    pub fixed_not_converged: Vec<usize>,
    pub cap_not_converged: Vec<usize>,
    pub checks: Vec<Comparison>,
}

#[derive(Debug, Serialize)]
pub struct Summary {
    pub out: PathBuf,
    pub report: PathBuf,
    pub svgs: Vec<PathBuf>,
    pub coefficients: PathBuf,
    pub workload: String,
    pub token_limit: Option<LimitAnswer>,
    pub batch_size: Option<BatchAnswer>,
    /// The capacity plan at --rate for the --slo objectives (docs/usage.md "tokenq plan").
    pub capacity: Option<crate::plan::PlanAnswer>,
    /// Questions --rate left without a stable setting, each with the reason.
    pub unanswered: Vec<String>,
    /// The report's opening summary, sentence by sentence.
    pub summary: Vec<String>,
    /// Fits flagged as poor (R² < 0.9 or held-out MAPE > 10 %), with their numbers.
    pub fit_warnings: Vec<String>,
    pub notes: Vec<String>,
    pub elapsed_s: f64,
}
