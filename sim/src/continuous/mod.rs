//! Continuous batching as vLLM's V1 scheduler runs it (release 0.19), iteration by iteration,
//! under a KV-cache limit — the specification is `SERVING.md` ("Engine state and limits", "One
//! iteration", "Step-time model"); MATH.md §1 (Pollaczek–Khinchine) is the reference the
//! single-sequence case reduces to.
//!
//! - [`scheduler`]: the engine loop — running requests first, FCFS admission, chunked prefill
//!   to the token budget, `max_num_seqs`, recompute preemption of the most recently admitted
//!   request, the reserve-full-input admission gate, prefix re-use, async-scheduling lag and a
//!   per-iteration overhead.
//! - [`kv`]: the KV block pool, with freed blocks kept in an LRU queue (reusable until they are
//!   reallocated) and a map from block content to block for prefix caching.
//! - [`step`]: the [`StepModel`] trait and the iteration description [`StepBatch`]; the fitted
//!   model (SERVING.md "Fitted", coefficients in `fit::steptime`) and its fit from tables.
//! - [`table`]: the step model composed from per-layer tables (LLMServingSim layout).
//! - [`workload`]: requests, and readers for the tokenq trace CSV and the LLMServingSim workload.
//! - [`metrics`]: per-request records, TTFT/TPOT/E2E summaries, time series.

pub mod kv;
pub mod metrics;
pub mod scheduler;
pub mod step;
pub mod table;
pub mod workload;

#[cfg(test)]
mod tests;

pub use metrics::{ContinuousResult, LatencySummary, RequestRecord, SeriesPoint};
pub use scheduler::{EngineConfig, SimOptions, simulate};
pub use step::{FittedStepModel, StepBatch, StepModel, fit_from_tables};
pub use table::TableStepModel;
pub use workload::Request;

use std::path::PathBuf;

/// Errors of the continuous-batching simulator, each naming the setting or file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ContinuousError {
    /// An engine limit is zero or not finite.
    #[error("--{flag} must be {need} (got {got}); {fix}")]
    BadSetting {
        /// Flag name without dashes.
        flag: &'static str,
        /// What it must be.
        need: &'static str,
        /// What was given.
        got: String,
        /// How to fix it.
        fix: &'static str,
    },
    /// A request can never fit in the KV cache, so the engine would wait for it forever.
    #[error(
        "request {index} (input {input} + output {output} tokens) needs {needed} KV blocks but the cache has {capacity}; raise --kv-blocks or remove the request from the trace"
    )]
    RequestTooLong {
        /// Request index in the trace.
        index: usize,
        /// Prompt tokens.
        input: u32,
        /// Output tokens.
        output: u32,
        /// Blocks its longest sequence needs.
        needed: u64,
        /// Blocks in the cache.
        capacity: u32,
    },
    /// A request of the trace is malformed.
    #[error("request {index}: {msg}")]
    BadRequest {
        /// Request index in the trace.
        index: usize,
        /// What is wrong and how to fix it.
        msg: String,
    },
    /// A workload or table file could not be read or parsed.
    #[error("{}: {msg}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        msg: String,
    },
    /// The step model returned a time that is not a finite non-negative number.
    #[error(
        "the step model returned {value} s for the iteration {batch:?}; check the step table or coefficients"
    )]
    BadStepTime {
        /// The time returned.
        value: f64,
        /// The iteration.
        batch: StepBatch,
    },
    /// Step-time fit failure.
    #[error(transparent)]
    Fit(#[from] fit::steptime::StepFitError),
}
