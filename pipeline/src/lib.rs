//! tokenq's application layer: what a command does once its flags are validated.
//!
//! The binary (`src/`) parses and validates arguments into typed configurations and calls into
//! this crate, which composes the library crates (`queueing`, `sim`, `fit`, `profiler`,
//! `reports`, all speaking `tokenq_core`'s vocabulary):
//!
//! * [`stages`] (feature `profiler`) — `tokenq pipeline`: profile → fit → the max-token-limit
//!   and batch-size questions → simulation checks → report;
//! * [`bench`] (feature `http`) — `tokenq bench`: scheduled load on an OpenAI-compatible
//!   server, summarised with `vllm bench serve`'s metrics;
//! * [`batch`] — `tokenq queue batch`: the batching models, solved and optionally simulated;
//! * [`check`] — an analytic value beside its simulation estimate, and the `validation` object
//!   of `--validate`;
//! * [`mg1`] — `tokenq queue mg1`: the single-server model, solved and optionally simulated;
//! * [`fitting`] (feature `tables`) — `tokenq fit`: timings tables or imported data → the
//!   coefficients file;
//! * [`coefficients`] — the latency coefficients a command needs, from a file written by
//!   `tokenq fit` or from raw flags (exactly one source);
//! * [`compare`] (feature `http`) — `tokenq compare`: a measured load test replayed through
//!   the model, predicted against measured;
//! * [`continuous_report`] — the continuous-batching replay's report, with the paper's
//!   batching models beside it;
//! * [`openai_profile`] (feature `http`) — an OpenAI-compatible server as a profiler backend;
//! * [`outdir`] — the pipeline's output directory: what an earlier run left there is removed;
//! * [`plan`] — `tokenq plan`: policies × limits × GPU counts against percentile SLOs;
//! * [`plan_cli`] — `tokenq plan`'s flags → the planner's question → the answer, printed (with
//!   `--rate`, or goodputs alone without it);
//! * [`plan_trace`] — a recorded trace as the planner's workload (`tokenq plan --trace`);
//! * [`interrupt`] — Ctrl-C: a flag raised by SIGINT, checked between units of work;
//! * [`profiling`] (feature `profiler`) — `tokenq profile`: the plan or the timed grid and its
//!   summary;
//! * [`progress`] (feature `profiler`) — the profile progress bar of `profile` and `pipeline`;
//! * [`plan_plots`] — `tokenq plan --plots`: the answer over a range of rates;
//! * [`poisson_replay`] — continuous batching under Poisson arrivals: percentiles with
//!   intervals from independent replications (`tokenq plan`);
//! * [`replay`] — `tokenq replay`: a trace through continuous batching, with its outputs;
//! * [`simulate`] — `tokenq simulate`: one of the paper's policies, simulated;
//! * [`token_limit`] — `tokenq optimize token-limit`: the objective's curve and argmax;
//! * [`text`] — numbers and aligned tables with units and methods;
//! * [`values`] — flag values checked, with one-line errors naming the flag.
//!
//! Like the binary, and unlike the model crates, this layer reports errors with `anyhow`: its
//! errors are messages for a person, each naming the flag or file and the fix.

pub mod batch;
#[cfg(feature = "http")]
pub mod bench;
pub mod check;
pub mod coefficients;
#[cfg(feature = "http")]
pub mod compare;
pub mod continuous_report;
#[cfg(feature = "tables")]
pub mod fitting;
pub mod interrupt;
pub mod mg1;
#[cfg(feature = "http")]
pub mod openai_profile;
pub mod outdir;
pub mod plan;
pub mod plan_cli;
pub mod plan_plots;
pub mod plan_trace;
pub mod poisson_replay;
#[cfg(feature = "profiler")]
pub mod profiling;
#[cfg(feature = "profiler")]
pub mod progress;
pub mod replay;
pub mod simulate;
#[cfg(feature = "profiler")]
pub mod stages;
pub mod text;
pub mod token_limit;
pub mod values;
