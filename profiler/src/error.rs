//! Typed errors of the profiler.
//!
//! Two kinds: [`ProfileError`] stops a run before (or instead of) any work — bad input names the
//! flag or file and the fix in one line — and [`BackendError`] is what one grid point's model
//! call can fail with; the runner records it with the point and goes on (docs/design.md: "a failed
//! point is recorded with its reason and the run goes on").

use std::path::PathBuf;

/// A failure of one backend call (prepare, prefill or decode step).
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    /// The device ran out of memory (CUDA `CUDA_ERROR_OUT_OF_MEMORY`, say).
    #[error("out of memory: {0}")]
    OutOfMemory(String),
    /// Any other model error (candle's message).
    #[error("model error: {0}")]
    Model(String),
    /// A server behind an HTTP backend failed a request, or answered in a way its step times
    /// cannot be read from.
    #[error("server: {0}")]
    Server(String),
}

impl BackendError {
    /// Classify a candle error: out-of-memory messages become [`BackendError::OutOfMemory`].
    pub fn from_candle(e: &candle_core::Error) -> Self {
        let msg = e.to_string();
        let lower = msg.to_ascii_lowercase();
        if lower.contains("out of memory") || lower.contains("out_of_memory") {
            Self::OutOfMemory(first_line(&msg))
        } else {
            Self::Model(first_line(&msg))
        }
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// Why a profile could not be run (or finished).
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Bad configuration: the message names the flag and the fix.
    #[error("{0}")]
    Config(String),
    /// `--model` names no preset.
    #[error("unknown model `{name}` (--model): choose one of {known}, or pass --weights DIR")]
    UnknownModel { name: String, known: String },
    /// A weights directory is missing, incomplete, or does not match the model.
    #[error("{path}: {msg}")]
    Weights { path: PathBuf, msg: String },
    /// The device cannot run the requested dtype.
    #[error("--dtype {dtype} is not supported on {device}: {reason} (try --dtype f32)")]
    UnsupportedDtype {
        dtype: String,
        device: String,
        reason: String,
    },
    /// The requested device cannot be opened (no CUDA build, no GPU).
    #[error("--device {device}: {reason}")]
    Device { device: String, reason: String },
    /// The grid does not fit the memory budget.
    #[error("{0}")]
    Memory(String),
    /// Output file or part directory problems (exists, not resumable, ...).
    #[error("{path}: {msg}")]
    Output { path: PathBuf, msg: String },
    /// The backend failed outside a grid point (model construction, say).
    #[error("backend: {0}")]
    Backend(#[from] BackendError),
    /// Reading or writing a table.
    #[error("{path}: {msg}")]
    Table { path: PathBuf, msg: String },
    /// Plain I/O.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The observer asked to stop (Ctrl-C, or a test simulating a killed run); every finished
    /// point is on disk and `--resume` continues.
    #[error("stopped after {done} of {total} grid points; rerun with --resume to continue")]
    Interrupted { done: usize, total: usize },
}

impl ProfileError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn table(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        Self::Table {
            path: path.into(),
            msg: first_line(&e.to_string()),
        }
    }
    pub(crate) fn output(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Self::Output {
            path: path.into(),
            msg: msg.into(),
        }
    }
}
