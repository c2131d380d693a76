//! One module per subcommand.
// `--coefficients FILE` for the queue and optimize commands.
pub mod coefficients_args;
pub mod common;
#[cfg(feature = "tables")]
pub mod fit;
#[cfg(feature = "profiler")]
pub mod merge;
pub mod optimize;
pub mod optimize_batch;
pub mod optimize_token_limit;
#[cfg(feature = "profiler")]
pub mod pipeline;
pub mod plan;
#[cfg(feature = "profiler")]
pub mod profile;
pub mod queue;
pub mod queue_batch;
pub mod queue_mg1;
pub mod replay;
pub mod simulate;
