//! `tokenq optimize …`: choose a setting that maximises an objective. Each variant lives in
//! its own file.

use anyhow::Result;
use clap::Subcommand;

use super::{optimize_batch, optimize_token_limit};

#[derive(Debug, Subcommand)]
pub enum OptimizeCommand {
    /// The max-token limit L* of the provider's objective (docs/models.md §3, paper eqs. 10–13).
    TokenLimit(Box<optimize_token_limit::OptimizeTokenLimitArgs>),
    /// The batch size (or cap) K for a batching policy (docs/models.md §6–§8).
    BatchSize(Box<optimize_batch::OptimizeBatchArgs>),
}

pub fn run(c: OptimizeCommand) -> Result<()> {
    match c {
        OptimizeCommand::TokenLimit(a) => optimize_token_limit::run(*a),
        OptimizeCommand::BatchSize(a) => optimize_batch::run(*a),
    }
}
