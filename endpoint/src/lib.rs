//! Measures the latency of OpenAI-compatible streaming inference servers (vLLM, SGLang, TGI,
//! llama.cpp's `llama-server`) from the client's side.
//!
//! * [`client`]: a [`Client`] that sends one streamed completion or chat request and records
//!   the arrival time of every token chunk ([`RequestRecord`]); failures become records with a
//!   [`RequestError`], never panics.
//! * [`load`]: open-loop arrival schedules (Poisson, gamma, trace) and closed-loop concurrency,
//!   run with send times fixed in advance from a seed ([`run_load`]), and simultaneous batches
//!   ([`run_batch`]).
//! * [`metrics`]: `vllm bench serve`-compatible summaries (TTFT, TPOT, ITL, E2EL, throughput,
//!   goodput) plus client send lateness ([`Summary`]).
//! * [`jsonl`]: one JSON record per line, for keeping raw measurements.
//! * `mock` (feature `mock`): an in-process server with configurable latency and faults.
//!
//! All times in records are seconds since the run's epoch, an [`std::time::Instant`] taken when
//! the run starts; all latencies in summaries are milliseconds.

#![warn(missing_docs)]

pub mod client;
pub mod jsonl;
pub mod load;
pub mod metrics;
#[cfg(feature = "mock")]
pub mod mock;
mod sse;

pub use client::{
    Api, Client, ClientConfig, ClientError, Prompt, RequestError, RequestRecord, RequestSpec,
    ServerInfo,
};
pub use jsonl::{JsonlError, read_jsonl, read_jsonl_file, write_jsonl, write_jsonl_file};
pub use load::{LoadConfig, LoadError, Schedule, run_batch, run_load};
pub use metrics::{DEFAULT_PERCENTILES, LatencyStats, LatenessStats, Slo, Summary, percentile};
