//! The timings-table schema (docs/design.md "Timings table"): one row per timed model step,
//! never only aggregates. `profiler` writes exactly [`TIMINGS_COLUMNS`]; `fit` requires them
//! (`device_s` may be all null) and reads them into [`StepRow`]s.

/// The columns of a timings table, in order.
pub const TIMINGS_COLUMNS: [&str; 9] = [
    "run_id",
    "point_id",
    "rep",
    "batch_size",
    "input_tokens",
    "step",
    "context_tokens",
    "wall_s",
    "device_s",
];

/// One timed model step (the time column already chosen: wall or device).
#[derive(Debug, Clone, PartialEq)]
pub struct StepRow {
    /// Run identifier (one profile invocation or shard).
    pub run_id: String,
    /// Grid point within the run.
    pub point_id: u64,
    /// Repetition index.
    pub rep: u32,
    /// Requests in the batch.
    pub batch_size: u32,
    /// Prompt tokens per request.
    pub input_tokens: u32,
    /// 0 = prefill (first token), k ≥ 1 = k-th decode step.
    pub step: u32,
    /// KV entries per request before the step.
    pub context_tokens: u64,
    /// Step time, seconds.
    pub time_s: f64,
}
