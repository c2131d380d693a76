//! Drives a model over (batch, input, output) grids and records every timed step.
//!
//! The measurement half of tokenq (docs/design.md "The pipeline": profile → timings table). A grid
//! point is a batch size and an input length; one pass of it runs the prefill and then forced
//! decode steps up to the maximum output length, timing each step, so one pass yields the
//! latency of every output length up to the maximum (docs/design.md "Contracts"). The per-step
//! linear structure this feeds — first-token time `t1(b)` and per-token time `t2(b)` linear in
//! the batch size — is the paper's (Yang, Xu, Jiao 2024, Fig. 2; docs/models.md).
//!
//! * [`backend`]: the [`Backend`] trait; [`synthetic`]: a known linear latency model with
//!   seeded noise; [`candle_backend`]: Llama-family and Qwen2 models on candle (CPU, or CUDA
//!   behind the `cuda` feature).
//! * [`plan`]: grid, shards, randomised order, repetitions; [`stats`]: Tukey-fence outlier
//!   labels; [`capacity`]: KV-cache capacity against a memory budget.
//! * [`runner`]: the measurement loop and resumable on-disk protocol — [`run`] is the library
//!   entry point; [`merge`]: join shards; [`table`]: the timings table through polars.
//!
//! Metric definitions (docs/design.md, as vLLM's `bench serve`): TTFT = submission to first token
//! (the prefill, step 0, plus any queueing); TPOT = (e2e − TTFT)/(output_tokens − 1); ITL = the
//! gap between consecutive tokens of one request (decode step k); e2e = submission to last
//! token: for `n` output tokens, the sum of steps `0..n` of one pass.

pub mod backend;
pub mod candle_backend;
pub mod capacity;
pub mod error;
pub mod lock;
pub mod merge;
pub mod models;
pub mod plan;
pub mod roofline;
pub mod runner;
pub mod stats;
pub mod synthetic;
pub mod table;

pub use backend::{Backend, BackendInfo, PointShape, PromptBatch, StepTiming};
pub use candle_backend::{CandleBackend, CandleSpec, DeviceChoice, Precision, WeightsSource};
pub use error::{BackendError, ProfileError};
pub use merge::{MergeSummary, merge};
pub use models::{Arch, ModelSpec, PRESETS};
pub use plan::{Grid, GridPoint, RepPolicy, Shard};
pub use runner::{
    BackendConfig, ExternalSpec, Flow, Observer, PlanSummary, PointRecord, ProfileConfig,
    ProfileMeta, ProfileSummary, Quiet, meta_path, parts_dir, plan, read_meta, run,
    run_with_backend,
};
pub use synthetic::{LinearLatency, SyntheticBackend, SyntheticClock, SyntheticSpec};
pub use table::{COLUMNS, PointStats, point_stats, read_frame};
