//! `tokenq fit`: timings tables → coefficients file (DESIGN.md "Contracts"; the fit is
//! `fit::model`, the file `fit::coefficients`).
//!
//! `tokenq fit PROFILE... -o coefficients.toml [--holdout 0.2] [--json]` reads Parquet/CSV
//! timings tables (a directory stands for its shards), fits the single-request line
//! `T(n) = a·n + c` (paper Fig. 2a) and `t1(b) = k1·b + k2`, `t2(b) = k3·b + k4` (Fig. 2b), and
//! prints each coefficient with its 95% interval, R², MAPE and the worst held-out error.
//! `--from table1|vidur|llmservingsim` imports real GPU data instead (the paper's Table I, a
//! Vidur `mlp.csv`, a directory of LLMServingSim per-layer tables); see
//! `datasets/coefficients/README.md`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use fit::coefficients::Provenance;
use fit::tables::{TimeColumn, read_steps};
use fit::{FitOptions, fit_steps};

/// Which time column of a timings table to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TimeArg {
    /// `device_s` (CUDA events) when every row has it, else `wall_s`.
    Auto,
    /// Host clock, device synchronised after each step.
    Wall,
    /// CUDA-event device time.
    Device,
}

/// Real GPU data to import instead of timings tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Source {
    /// The paper's Table I CSV (input_tokens, output_tokens, time_s): single-request line.
    Table1,
    /// A Vidur operator profile `mlp.csv` (Llama-2-7B layers, ms).
    Vidur,
    /// A directory with LLMServingSim `dense.csv`, `per_sequence.csv`, `attention.csv` (µs).
    Llmservingsim,
}

/// Fit latency coefficients to timings tables and write the coefficients file.
///
/// Metrics: TTFT = submission → first token; TPOT = (e2e − TTFT)/(output tokens − 1);
/// e2e = submission → last token. A single request's e2e over n output tokens is the prefill
/// (first token) plus n − 1 decode steps.
#[derive(Debug, Args)]
pub struct FitArgs {
    /// Timings tables (Parquet or CSV; a directory = all its shards). With --from, the source
    /// data to import.
    #[arg(required = true, value_name = "PROFILE")]
    pub profiles: Vec<PathBuf>,
    /// Coefficients file to write (TOML).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Fraction of the grid points held out to validate the fit and choose richer terms.
    #[arg(long, default_value_t = 0.2, value_name = "FRACTION")]
    pub holdout: f64,
    /// Seed of the held-out split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Time column to fit.
    #[arg(long, value_enum, default_value_t = TimeArg::Auto)]
    pub time: TimeArg,
    /// Import real GPU data instead of reading timings tables.
    #[arg(long, value_enum)]
    pub from: Option<Source>,
    /// Device name for the provenance (required with --from vidur|llmservingsim).
    #[arg(long)]
    pub device: Option<String>,
    /// Model name for the provenance (required with --from vidur|llmservingsim).
    #[arg(long)]
    pub model: Option<String>,
    /// Numeric type for the provenance, e.g. fp16.
    #[arg(long)]
    pub dtype: Option<String>,
    /// Print the coefficients file as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
}

/// Run `tokenq fit`.
pub fn run(a: FitArgs) -> Result<()> {
    let opts = FitOptions {
        holdout: a.holdout,
        seed: a.seed,
        ..FitOptions::default()
    };
    opts.validate()?;
    let file = match a.from {
        None => {
            let time = match a.time {
                TimeArg::Auto => TimeColumn::Auto,
                TimeArg::Wall => TimeColumn::Wall,
                TimeArg::Device => TimeColumn::Device,
            };
            let steps = read_steps(&a.profiles, time)?;
            let fitted = fit_steps(&steps.rows, &opts)?;
            let provenance = Provenance {
                device: a
                    .device
                    .clone()
                    .unwrap_or_else(|| "unknown (pass --device)".into()),
                model: a
                    .model
                    .clone()
                    .unwrap_or_else(|| "unknown (pass --model)".into()),
                dtype: a
                    .dtype
                    .clone()
                    .unwrap_or_else(|| "unknown (pass --dtype)".into()),
                sources: steps
                    .files
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect(),
                method: format!(
                    "tokenq timings tables: median over repetitions per grid point and step, {} rows",
                    steps.rows.len()
                ),
                time_column: steps.time_column.into(),
                tool: fit::import::tool(),
                profile_tool: None,
                license: None,
                notes: Vec::new(),
            };
            fitted.into_file(provenance, Vec::new())
        }
        Some(src) => {
            let [path] = a.profiles.as_slice() else {
                bail!(
                    "--from takes one path (table1: a CSV; vidur: an mlp.csv; llmservingsim: a directory)"
                );
            };
            let source = match src {
                Source::Table1 => fit::import::Source::Table1,
                Source::Vidur => fit::import::Source::Vidur,
                Source::Llmservingsim => fit::import::Source::LlmServingSim,
            };
            fit::import::fit_source(
                source,
                path,
                a.device.as_deref(),
                a.model.as_deref(),
                a.dtype.as_deref(),
                &opts,
            )?
        }
    };
    file.write(&a.output)?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "output": a.output.display().to_string(),
                "coefficients": file,
            }))?
        );
    } else if !a.quiet {
        print!("{}", fit::report::render(&file));
        println!("wrote {}", a.output.display());
    }
    Ok(())
}
