//! `tokenq`: how long will my users wait, and which settings make them wait least?
//!
//! One binary, clap derive subcommands. Each subcommand lives in `src/cmd/<name>.rs`: its clap
//! struct, the validation of its flags into a typed configuration, and a call into the library
//! crates (`pipeline` for the application layer). Command files do not import each other, except
//! the shared flag helpers in `common.rs` (the coefficients from a file or flags are
//! `pipeline::coefficients`).
//!
//! Errors print as one line, `Error: {:#}` (the message and its causes), exit status 1 (130 for
//! a profile stopped by Ctrl-C); usage errors are clap's, exit status 2.

mod cmd;

use std::ffi::OsString;
use std::process::ExitCode;

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
    /// Simulate a serving policy of the paper event by event: wait and latency with 95%
    /// confidence intervals.
    Simulate(Box<cmd::simulate::SimulateArgs>),
    /// Replay a trace through continuous batching as vLLM runs it (TTFT, TPOT, E2E per request).
    Replay(Box<cmd::replay::ReplayArgs>),
    /// Capacity planner: the cheapest policy, max-token limit and GPU count that meet latency
    /// SLOs (percentiles) at a rate, and each configuration's goodput.
    Plan(Box<cmd::plan::PlanArgs>),
    /// Analytic queueing models: mean wait, loss and latency (docs/models.md §1–§8).
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
    /// Benchmark an OpenAI-compatible server (vLLM, SGLang, …) under scheduled load: TTFT, TPOT,
    /// ITL, E2EL, throughput and goodput, as `vllm bench serve`.
    #[cfg(feature = "http")]
    Bench(Box<cmd::bench::BenchArgs>),
    /// Replay a measured load test through the model fitted to the same server: predicted
    /// against measured TTFT, TPOT and E2E.
    #[cfg(feature = "http")]
    Compare(Box<cmd::compare::CompareArgs>),
}

fn main() -> ExitCode {
    let cli = parse(pipeline::replay::alias_args(std::env::args_os().collect()));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            #[cfg(feature = "profiler")]
            if e.downcast_ref::<pipeline::interrupt::Interrupted>()
                .is_some()
            {
                return ExitCode::from(130);
            }
            ExitCode::FAILURE
        }
    }
}

/// Parse the command line. Every flag that takes a value accepts a negative number as its
/// value (`--arrival-rate -3`), so the validation's one-line message names the flag instead of
/// clap's "unexpected argument '-3'".
fn parse(args: Vec<OsString>) -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = negative_numbers(Cli::command());
    let matches = command
        .try_get_matches_from_mut(args)
        .unwrap_or_else(|e| e.exit());
    Cli::from_arg_matches(&matches)
        .map_err(|e| e.format(&mut command))
        .unwrap_or_else(|e| e.exit())
}

fn negative_numbers(command: clap::Command) -> clap::Command {
    use std::any::TypeId;
    let numeric = [
        TypeId::of::<f64>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i64>(),
    ];
    command
        .mut_args(|a| {
            if !a.get_action().takes_values() {
                return a;
            }
            // A number flag takes any value beginning with `-` (`-inf` too) and lets its parser
            // or the validation name it; other flags take negative numbers only, so that
            // `--out --force` still says the value is missing.
            let is_number = a.get_index().is_none() && {
                let t = a.get_value_parser().type_id();
                numeric.iter().any(|n| t == *n)
            };
            let a = a.allow_negative_numbers(true);
            if is_number {
                a.allow_hyphen_values(true)
            } else {
                a
            }
        })
        .mut_subcommands(negative_numbers)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        #[cfg(feature = "profiler")]
        Command::Pipeline(a) => cmd::pipeline::run(*a),
        Command::Simulate(a) => cmd::simulate::run(*a),
        Command::Replay(a) => cmd::replay::run(*a),
        Command::Plan(a) => cmd::plan::run(*a),
        Command::Queue(c) => cmd::queue::run(c),
        Command::Optimize(c) => cmd::optimize::run(c),
        #[cfg(feature = "tables")]
        Command::Fit(a) => cmd::fit::run(a),
        #[cfg(feature = "profiler")]
        Command::Profile(a) => cmd::profile::run(a),
        #[cfg(feature = "profiler")]
        Command::Merge(a) => cmd::merge::run(a),
        #[cfg(feature = "http")]
        Command::Bench(a) => cmd::bench::run(*a),
        #[cfg(feature = "http")]
        Command::Compare(a) => cmd::compare::run(*a),
    }
}
