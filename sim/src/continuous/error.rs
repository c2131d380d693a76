//! Errors of the continuous-batching replay, each naming the setting or file and the fix.

use std::path::PathBuf;

use tokenq_core::CoreError;
use tokenq_core::step::StepBatch;

/// Errors of the continuous-batching simulator, each naming the setting or file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ContinuousError {
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
    /// An engine setting or a shared table file is invalid.
    #[error(transparent)]
    Core(#[from] CoreError),
}
