//! `tokenq queue …`: analytic queueing models. Each variant lives in its own file.

use anyhow::Result;
use clap::Subcommand;

use super::{queue_batch, queue_mg1};

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// One server, FCFS, max-token limit, optional impatient users (docs/models.md §1–§2).
    Mg1(Box<queue_mg1::QueueMg1Args>),
    /// Dynamic, fixed or elastic batching (docs/models.md §4–§8).
    Batch(Box<queue_batch::QueueBatchArgs>),
}

pub fn run(c: QueueCommand) -> Result<()> {
    match c {
        QueueCommand::Mg1(a) => queue_mg1::run(*a),
        QueueCommand::Batch(a) => queue_batch::run(*a),
    }
}
