//! Continuous batching as vLLM's V1 scheduler runs it (release 0.19), iteration by iteration,
//! under a KV-cache limit — the model is docs/serving.md ("Engine state and limits", "One
//! iteration", "Step-time model"); docs/models.md §1 (Pollaczek–Khinchine) is the reference the
//! single-sequence case reduces to.
//!
//! - [`scheduler`]: the engine loop — running requests first, FCFS admission, chunked prefill
//!   to the token budget, `max_num_seqs`, recompute preemption of the most recently admitted
//!   request, the reserve-full-input admission gate, prefix re-use, async-scheduling lag and a
//!   per-iteration overhead.
//! - [`kv`]: the KV block pool, with freed blocks kept in an LRU queue (reusable until they are
//!   reallocated) and a map from block content to block for prefix caching.
//! - [`workload`]: requests, and readers for the tokenq trace CSV and the LLMServingSim workload.
//! - [`metrics`]: per-request records, TTFT/TPOT/E2E summaries, time series.
//! - [`error`]: what can go wrong, each message naming the setting or file and the fix.
//! - [`cluster`]: several engines — data parallelism with vLLM's DP routing, and the lockstep
//!   of an MoE model's engines (dummy steps, padding to the group's largest step)
//!   (docs/serving.md "Several GPUs").
//!
//! The iteration description, the step-time models (per-layer tables or fitted forms) and the
//! engine settings are vocabulary shared with `fit`: [`tokenq_core::step`] and
//! [`tokenq_core::layers`], re-exported here.

pub mod cluster;
pub mod error;
pub mod kv;
pub mod metrics;
pub mod scheduler;
pub mod workload;

#[cfg(test)]
mod tests;

pub use cluster::{ClusterResult, DataParallel, simulate_data_parallel};
pub use error::ContinuousError;
pub use metrics::{ContinuousResult, LatencySummary, RequestRecord, SeriesPoint};
pub use scheduler::{SimOptions, simulate};
pub use tokenq_core::layers::{Link, Parallelism, TableOptions, TableStepModel};
pub use tokenq_core::step::{EngineConfig, StepBatch, StepModel, StepTimeCoefficients};
pub use workload::Request;
