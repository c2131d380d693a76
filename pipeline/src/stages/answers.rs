//! What the pipeline answers (also its `--json` summary).

use super::*;

#[derive(Debug, Clone, Serialize)]
pub struct LimitAnswer {
    pub arrival_rate_rps: f64,
    pub best_limit_tokens: f64,
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
    pub best_limit_tokens: f64,
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
    pub fixed_k: usize,
    pub fixed_latency_s: f64,
    pub fixed_wait_s: f64,
    pub cap_k: usize,
    pub cap_latency_s: f64,
    pub cap_wait_s: f64,
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
    pub notes: Vec<String>,
    pub elapsed_s: f64,
}
