//! `tokenq fit`: timings tables → coefficients file (docs/design.md "Contracts"; the fit is
//! `fit::model`, the file `fit::coefficients`).
//!
//! `tokenq fit PROFILE... -o coefficients.toml [--holdout 0.2] [--json]` reads Parquet/CSV
//! timings tables (a directory stands for its shards), fits the single-request line
//! `T(n) = a·n + c` (paper Fig. 2a) and `t1(b) = k1·b + k2`, `t2(b) = k3·b + k4` (Fig. 2b), and
//! prints each coefficient with its 95% interval, R², MAPE and the worst held-out error.
//! `--from table1|vidur|llmservingsim` imports real GPU data instead (the paper's Table I, a
//! Vidur `mlp.csv`, a directory of LLMServingSim per-layer tables); see
//! `datasets/coefficients/README.md`.
//!
//! The continuous-batching step-time model (`[step_time]`, docs/serving.md "Fitted"; forms in
//! `fit::steptime`): `--step-model-from DIR` fits it to per-layer tables on the KV-feasible
//! region of `--max-num-seqs/--max-batched-tokens/--kv-blocks/--block-size`
//! (`fit::steptime::fit_from_tables`), and `--check-trace FILE` replays a trace with the
//! tables and reports the fit's MAPE and summed-time bias on the steps that replay ran;
//! `--step-model` fits it to the PROFILE timings tables (`fit::steptime::samples_from_profile`).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use fit::FitOptions;
use fit::tables::TimeColumn;
use pipeline::fitting::{FitInput, FitRequest};

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
    #[arg(required_unless_present = "step_model_from", value_name = "PROFILE")]
    pub profiles: Vec<PathBuf>,
    /// Coefficients file to write (TOML). An existing file is refused without --force (with
    /// --step-model-from it is added to instead), and so is one of the inputs.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Overwrite an existing -o FILE.
    #[arg(long)]
    pub force: bool,
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
    #[command(flatten)]
    pub step: StepModelArgs,
}

/// Flags of the continuous-batching step-time model (`[step_time]`).
#[derive(Debug, Args)]
pub struct StepModelArgs {
    /// Fit the [step_time] section to a directory of LLMServingSim per-layer tables (e.g.
    /// datasets/llmservingsim/RTX4090) on the KV-feasible region of the engine limits below.
    /// Without PROFILE, it is added to the -o file if that exists (other sections kept).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["step_model", "from"])]
    pub step_model_from: Option<PathBuf>,
    /// Also fit the [step_time] section to the PROFILE timings tables (uniform batches: the
    /// mixed form is fitted on prefill steps only).
    #[arg(long)]
    pub step_model: bool,
    /// Engine limit for the feasible region: most requests running at once.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_num_seqs: u32,
    /// Engine limit: tokens per iteration.
    #[arg(long, value_name = "TOKENS", default_value_t = 2048)]
    pub max_batched_tokens: u32,
    /// KV cache blocks as the engine reports them ("# GPU blocks"); required with
    /// --step-model-from.
    #[arg(long, value_name = "BLOCKS")]
    pub kv_blocks: Option<u32>,
    /// Tokens per KV block.
    #[arg(long, value_name = "TOKENS", default_value_t = 16)]
    pub block_size: u32,
    /// Apply the tables' skew correction (needs skew_fit.csv).
    #[arg(long)]
    pub skew: bool,
    /// Decoder layers of the model the tables describe (Llama-3.1-8B: 32).
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub layers: u32,
    /// With --step-model-from: replay this trace with the tables and report the fit's error
    /// on the steps the replay ran, e.g.
    /// datasets/llmservingsim/sharegpt-llama-3.1-8b-300-sps10.lengths.csv.
    #[arg(long, value_name = "TRACE", requires = "step_model_from")]
    pub check_trace: Option<PathBuf>,
}

/// Validate the flags into the library's request: exactly one input kind, and what it needs.
fn request(a: FitArgs) -> Result<FitRequest> {
    let s = &a.step;
    let input = if let Some(dir) = s.step_model_from.clone() {
        if !a.profiles.is_empty() {
            bail!(
                "--step-model-from DIR fits [step_time] alone (added to the -o file if it exists); run `tokenq fit PROFILE... -o FILE` first, then `tokenq fit --step-model-from DIR ... -o FILE`, or use --step-model to fit it to the PROFILE files"
            );
        }
        if s.kv_blocks.is_none() {
            bail!(
                "--step-model-from needs --kv-blocks: the KV cache size in blocks the engine reports (vLLM \"# GPU blocks\"), e.g. 2588 for Llama-3.1-8B on an RTX 4090"
            );
        }
        FitInput::StepTables {
            dir,
            layers: s.layers,
            skew: s.skew,
            check_trace: s.check_trace.clone(),
        }
    } else if let Some(src) = a.from {
        if s.step_model {
            bail!(
                "--step-model fits PROFILE timings tables; with --from llmservingsim use --step-model-from DIR instead"
            );
        }
        let [path] = a.profiles.as_slice() else {
            bail!(
                "--from takes one path (table1: a CSV; vidur: an mlp.csv; llmservingsim: a directory)"
            );
        };
        FitInput::Import {
            source: match src {
                Source::Table1 => fit::import::Source::Table1,
                Source::Vidur => fit::import::Source::Vidur,
                Source::Llmservingsim => fit::import::Source::LlmServingSim,
            },
            path: path.clone(),
        }
    } else {
        FitInput::Profiles {
            paths: a.profiles.clone(),
            time: match a.time {
                TimeArg::Auto => TimeColumn::Auto,
                TimeArg::Wall => TimeColumn::Wall,
                TimeArg::Device => TimeColumn::Device,
            },
            step_model: s.step_model,
        }
    };
    Ok(FitRequest {
        input,
        engine: sim::continuous::EngineConfig {
            max_num_seqs: s.max_num_seqs,
            max_batched_tokens: s.max_batched_tokens,
            block_size: s.block_size,
            ..sim::continuous::EngineConfig::with_kv_blocks(s.kv_blocks.unwrap_or(0))
        },
        kv_blocks_given: s.kv_blocks.is_some(),
        options: FitOptions {
            holdout: a.holdout,
            seed: a.seed,
            ..FitOptions::default()
        },
        output: a.output,
        force: a.force,
        device: a.device,
        model: a.model,
        dtype: a.dtype,
        json: a.json,
        quiet: a.quiet,
    })
}

/// Run `tokenq fit`.
pub fn run(a: FitArgs) -> Result<()> {
    pipeline::fitting::run(&request(a)?)
}
