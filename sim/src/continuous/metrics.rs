//! Per-request records and summaries of a continuous-batching replay, with vLLM's metric
//! definitions (docs/serving.md "Metrics"):
//! TTFT = first token − arrival; TPOT = (last − first)/(O − 1) (requests with O = 1 have none);
//! E2E = last token − arrival. Percentiles interpolate linearly between order statistics
//! (numpy's default): p_q = x_(⌊h⌋) + (h − ⌊h⌋)(x_(⌊h⌋+1) − x_(⌊h⌋)), h = q·(n − 1).

use serde::Serialize;

use tokenq_core::step::StepBatch;

/// One request's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RequestRecord {
    /// Index in the trace.
    pub index: usize,
    /// Arrival, seconds.
    pub arrival_s: f64,
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Output tokens.
    pub output_tokens: u32,
    /// First token, seconds.
    pub first_token_s: f64,
    /// Last token (completion), seconds.
    pub finish_s: f64,
    /// Time to first token, seconds.
    pub ttft_s: f64,
    /// Time per output token after the first, seconds (None when O = 1).
    pub tpot_s: Option<f64>,
    /// End-to-end latency, seconds.
    pub e2e_s: f64,
    /// Times this request was preempted (recompute).
    pub preemptions: u32,
    /// Prompt/sequence tokens served from cached KV blocks, over all admissions.
    pub cached_tokens: u64,
    /// Times admitted (1 + resumptions after preemption).
    pub admissions: u32,
    /// The data-parallel engine that served it (0 with one engine).
    pub engine: u32,
}

/// The running/waiting/KV state at the start of one iteration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Iteration start, seconds.
    pub t_s: f64,
    /// Requests running after scheduling.
    pub running: u32,
    /// Requests waiting (arrived and visible to the scheduler, not running).
    pub waiting: u32,
    /// KV blocks held after scheduling.
    pub kv_blocks_used: u32,
    /// Iteration duration, seconds (step model + overhead).
    pub step_s: f64,
    /// Tokens computed in the iteration.
    pub tokens: u32,
    /// Decode requests in the iteration: each receives its next token when it ends, so the
    /// iteration is an inter-token latency of each of them.
    pub decodes: u32,
}

/// Mean and percentiles of one latency, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Values summarised.
    pub n: usize,
    /// Mean, s.
    pub mean_s: f64,
    /// Median, s.
    pub p50_s: f64,
    /// 90th percentile, s.
    pub p90_s: f64,
    /// 99th percentile, s.
    pub p99_s: f64,
    /// Maximum, s.
    pub max_s: f64,
}

/// Linear-interpolation percentile of sorted values, `q` in [0, 1].
pub fn percentile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let h = q * (v.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (h - lo as f64) * (v[hi] - v[lo])
}

impl LatencySummary {
    /// Summary of `values` (NaN fields when empty).
    pub fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        Self {
            n,
            mean_s: values.iter().sum::<f64>() / n as f64,
            p50_s: percentile_sorted(&values, 0.50),
            p90_s: percentile_sorted(&values, 0.90),
            p99_s: percentile_sorted(&values, 0.99),
            max_s: values.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// Result of a replay: records, summaries, time series. `steps` holds every iteration's
/// batch and model time when `SimOptions::record_steps` was set.
#[derive(Debug, Clone, Serialize)]
pub struct ContinuousResult {
    /// Requests completed (each exactly once).
    pub completed: usize,
    /// TTFT summary.
    pub ttft: LatencySummary,
    /// TPOT summary (requests with O ≥ 2).
    pub tpot: LatencySummary,
    /// E2E summary.
    pub e2e: LatencySummary,
    /// Preemptions (recompute) over the run.
    pub preemptions: u64,
    /// Engine iterations.
    pub iterations: u64,
    /// Time the engine was busy, seconds.
    pub busy_s: f64,
    /// Time of the last completion, seconds.
    pub makespan_s: f64,
    /// Output tokens per second of makespan.
    pub output_tokens_per_s: f64,
    /// Largest KV blocks held at once.
    pub peak_kv_blocks: u32,
    /// Largest running count.
    pub peak_running: u32,
    /// Prompt tokens served from cached blocks (prefix hits, including resumes).
    pub cached_tokens: u64,
    /// Dummy steps (data parallelism in lockstep: the engine had nothing to run while a peer
    /// had work).
    #[serde(skip_serializing_if = "is_zero")]
    pub dummy_steps: u64,
    /// Per-request records, trace order.
    #[serde(skip)]
    pub records: Vec<RequestRecord>,
    /// Per-iteration state.
    #[serde(skip)]
    pub series: Vec<SeriesPoint>,
    /// Per-iteration batch and model step time (seconds), when recorded.
    #[serde(skip)]
    pub steps: Vec<(StepBatch, f64)>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

pub(crate) fn summarise(
    records: Vec<RequestRecord>,
    series: Vec<SeriesPoint>,
    steps: Vec<(StepBatch, f64)>,
    preemptions: u64,
    iterations: u64,
    busy_s: f64,
    end_s: f64,
) -> ContinuousResult {
    let out_tokens: u64 = records.iter().map(|r| u64::from(r.output_tokens)).sum();
    ContinuousResult {
        completed: records.iter().filter(|r| r.finish_s.is_finite()).count(),
        ttft: LatencySummary::of(records.iter().map(|r| r.ttft_s).collect()),
        tpot: LatencySummary::of(records.iter().filter_map(|r| r.tpot_s).collect()),
        e2e: LatencySummary::of(records.iter().map(|r| r.e2e_s).collect()),
        preemptions,
        iterations,
        busy_s,
        makespan_s: end_s,
        output_tokens_per_s: out_tokens as f64 / end_s,
        peak_kv_blocks: series.iter().map(|p| p.kv_blocks_used).max().unwrap_or(0),
        peak_running: series.iter().map(|p| p.running).max().unwrap_or(0),
        cached_tokens: records.iter().map(|r| r.cached_tokens).sum(),
        dummy_steps: 0,
        records,
        series,
        steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// numpy.percentile([1, 2, 3, 4, 10], [50, 90, 99]) = 3, 7.6, 9.76.
    #[test]
    fn percentiles_match_numpy_linear() {
        let s = LatencySummary::of(vec![10.0, 1.0, 3.0, 2.0, 4.0]);
        assert_eq!(s.p50_s, 3.0);
        assert!((s.p90_s - 7.6).abs() < 1e-12);
        assert!((s.p99_s - 9.76).abs() < 1e-12);
        assert_eq!(s.mean_s, 4.0);
    }
}
