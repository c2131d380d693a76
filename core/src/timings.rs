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

/// Why a file named as Parquet is not one, from its first bytes (`None` when it starts with
/// Parquet's magic `PAR1`): empty, or text that looks like a CSV table (renamed `.parquet`),
/// or something else. The message names the fix.
pub fn not_parquet(head: &[u8]) -> Option<String> {
    if head.starts_with(b"PAR1") {
        return None;
    }
    if head.is_empty() {
        return Some("is empty (0 bytes), not a Parquet file".into());
    }
    let text = String::from_utf8_lossy(head);
    let first = text.lines().next().unwrap_or("").trim();
    let printable = first
        .chars()
        .all(|c| !c.is_control() && c != char::REPLACEMENT_CHARACTER);
    if printable && first.contains(',') {
        let shown: String = first.chars().take(60).collect();
        let more = if first.chars().count() > 60 {
            "…"
        } else {
            ""
        };
        return Some(format!(
            "is not Parquet but text that looks like CSV (first line `{shown}{more}`): rename it to .csv"
        ));
    }
    Some("is not a Parquet file (it does not start with PAR1)".into())
}

/// [`not_parquet`] of the first bytes of the file at `path` (`None` when unreadable: the
/// reader's own error says why).
pub fn sniff_not_parquet(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let mut head = Vec::with_capacity(512);
    std::fs::File::open(path)
        .ok()?
        .take(512)
        .read_to_end(&mut head)
        .ok()?;
    not_parquet(&head)
}
