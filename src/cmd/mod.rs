//! One module per subcommand.
pub mod common;
pub mod optimize;
pub mod optimize_batch;
pub mod optimize_token_limit;
pub mod queue;
pub mod queue_batch;
pub mod queue_mg1;
pub mod simulate;
pub mod simulate_continuous;
