//! `tokenq`: how long will my users wait, and which settings make them wait least?
//!
//! One binary, clap derive subcommands. Each subcommand lives in `src/cmd/<name>.rs`, parses
//! its arguments, validates them into a typed config, then calls the library crates.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "tokenq", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything: profile the tiny model on the CPU, fit, answer the queueing questions,
    /// check them by simulation and write an HTML report with plots.
    #[cfg(feature = "profiler")]
    Pipeline(Box<cmd::pipeline::PipelineArgs>),
    /// Simulate a serving policy event by event: wait and latency with 95% confidence intervals.
    Simulate(Box<cmd::simulate::SimulateArgs>),
    /// Analytic queueing models: mean wait, loss and latency (MATH.md §1–§8).
    #[command(subcommand)]
    Queue(cmd::queue::QueueCommand),
    /// Choose the max-token limit or the batch size that maximises an objective.
    #[command(subcommand)]
    Optimize(cmd::optimize::OptimizeCommand),
    /// Fit latency coefficients to timings tables (or import real GPU data); write the coefficients file.
    #[cfg(feature = "tables")]
    Fit(cmd::fit::FitArgs),
    /// Profile a model over a (batch × input × max-output) grid; write the timings table.
    #[cfg(feature = "profiler")]
    Profile(cmd::profile::ProfileArgs),
    /// Join the timings tables of `profile --shard I/N` runs.
    #[cfg(feature = "profiler")]
    Merge(cmd::merge::MergeArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        #[cfg(feature = "profiler")]
        Command::Pipeline(a) => cmd::pipeline::run(*a),
        Command::Simulate(a) => cmd::simulate::run(*a),
        Command::Queue(c) => cmd::queue::run(c),
        Command::Optimize(c) => cmd::optimize::run(c),
        #[cfg(feature = "tables")]
        Command::Fit(a) => cmd::fit::run(a),
        #[cfg(feature = "profiler")]
        Command::Profile(a) => cmd::profile::run(a),
        #[cfg(feature = "profiler")]
        Command::Merge(a) => cmd::merge::run(a),
    }
}
