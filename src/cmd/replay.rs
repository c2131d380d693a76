//! `tokenq replay` (alias `tokenq simulate --policy continuous`, rewritten in `main.rs`): flags
//! → [`ReplayConfig`] → [`pipeline::replay::run`]. The engine settings come from flags, a
//! TOML file (`--engine-config`) and vLLM's defaults, in that order (docs/serving.md "Engine
//! state and limits").

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use pipeline::replay::ReplayConfig;
use serde::Deserialize;
use sim::continuous::EngineConfig;
use tokenq_core::CoefficientsFile;

/// vLLM's defaults for the engine limits.
const DEFAULT_MAX_NUM_SEQS: u32 = 256;
const DEFAULT_MAX_BATCHED_TOKENS: u32 = 2048;
/// KV bytes per token of Llama-3.1-8B in bf16: 2 (K, V) × 32 layers × 8 KV heads × 128 × 2 B.
const LLAMA_3_1_8B_KV_BYTES_PER_TOKEN: f64 = 131_072.0;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Engine settings of the continuous-batching policy (flags, or a TOML file whose keys are the
/// flag names with `_` for `-`; a flag given on the command line wins over the file).
#[derive(Debug, Clone, Default, Args)]
pub struct EngineArgs {
    /// Most requests running at once (vLLM `max_num_seqs`) [default: 256].
    #[arg(long, value_name = "N")]
    pub max_num_seqs: Option<u32>,
    /// Per-iteration token budget (vLLM `max_num_batched_tokens`) [default: 2048].
    #[arg(long, value_name = "TOKENS")]
    pub max_batched_tokens: Option<u32>,
    /// KV cache size in blocks, as the engine reports it at start-up (vLLM logs "# GPU blocks"
    /// / "GPU KV cache size"). Required, here or in --engine-config, unless --kv-memory-gib.
    #[arg(long, value_name = "BLOCKS")]
    pub kv_blocks: Option<u32>,
    /// Tokens per KV block [default: 16].
    #[arg(long, value_name = "TOKENS")]
    pub block_size: Option<u32>,
    /// Prefix caching: re-use cached blocks (a preempted request's own blocks on resume; shared
    /// prefixes named by the trace) [default: on, as vLLM 0.19].
    #[arg(long, value_name = "on|off")]
    pub prefix_caching: Option<OnOff>,
    /// Async scheduling: a busy scheduler sees arrivals one step late [default: off].
    #[arg(long, value_name = "on|off")]
    pub async_scheduling: Option<OnOff>,
    /// Host overhead added to every iteration, seconds [default: 0; vLLM 0.19 with CUDA graphs
    /// hides it, synchronous engines need it].
    #[arg(long, value_name = "SECONDS")]
    pub iteration_overhead_s: Option<f64>,
    /// Directory of per-layer tables (LLMServingSim layout: dense.csv, per_sequence.csv,
    /// attention.csv, optional skew_fit.csv), e.g. datasets/llmservingsim/RTX4090.
    #[arg(long, value_name = "DIR")]
    pub step_table: Option<PathBuf>,
    /// Apply the skew correction for uneven decode contexts (needs skew_fit.csv in the table
    /// directory) [default: off].
    #[arg(long)]
    pub skew: bool,
    /// Decoder layers of the model the tables describe [default: 32, Llama-3.1-8B].
    #[arg(long, value_name = "N")]
    pub layers: Option<u32>,
    /// With --step-table: fit the decode-only and mixed step-time forms to the tables on the
    /// KV-feasible region, replay with both models and report the fit's error on the replay.
    #[arg(long)]
    pub fit_step_model: bool,
    /// Write the fitted step-time model as the [step_time] section of this coefficients file
    /// (added to the file if it exists, else a new file). Implies --fit-step-model.
    #[arg(long, value_name = "FILE.toml")]
    pub save_step_model: Option<PathBuf>,
    /// TOML file with any of the engine settings above.
    #[arg(long, value_name = "FILE.toml")]
    pub engine_config: Option<PathBuf>,
    /// Write one CSV row per request (arrival, first token, finish, TTFT, TPOT, E2E in seconds;
    /// preemptions, cached tokens) to this file, from the first step model's replay.
    /// TTFT = first token − arrival; TPOT = (last − first token)/(output − 1); E2E = last token −
    /// arrival (vLLM's definitions).
    #[arg(long, value_name = "FILE.csv")]
    pub records: Option<PathBuf>,
    /// Write the running/waiting/KV-use time series (one row per iteration) to this CSV file.
    #[arg(long, value_name = "FILE.csv")]
    pub series: Option<PathBuf>,
    /// Write a self-contained HTML report (report.html plus one SVG per figure) to this
    /// directory: TTFT/TPOT/E2E distributions, running/waiting/KV use over time, and the
    /// capacity comparison with the paper's batching policies on the same trace.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Estimate --kv-blocks from the memory left for the KV cache, in GiB, assuming
    /// Llama-3.1-8B bf16 (128 KiB per token). Overshoots the engine's own figure (docs/serving.md:
    /// ~30%, TTFT off by ~20%), so a warning is printed; prefer --kv-blocks.
    #[arg(long, value_name = "GIB")]
    pub kv_memory_gib: Option<f64>,
}

/// `on` / `off` switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

impl OnOff {
    fn on(self) -> bool {
        self == OnOff::On
    }
}

/// The TOML form of the engine settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineFile {
    max_num_seqs: Option<u32>,
    max_batched_tokens: Option<u32>,
    kv_blocks: Option<u32>,
    block_size: Option<u32>,
    prefix_caching: Option<bool>,
    async_scheduling: Option<bool>,
    iteration_overhead_s: Option<f64>,
    step_table: Option<PathBuf>,
    skew: Option<bool>,
    layers: Option<u32>,
}

/// Settings after merging flags, file and defaults.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) engine: EngineConfig,
    pub(crate) step_table: Option<PathBuf>,
    pub(crate) skew: bool,
    pub(crate) layers: u32,
}

pub(crate) fn settings(args: &EngineArgs, coef: Option<&CoefficientsFile>) -> Result<Settings> {
    let file: EngineFile = match &args.engine_config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("--engine-config {}: cannot read", p.display()))?;
            toml::from_str(&text).map_err(|e| {
                anyhow!(
                    "--engine-config {}: {}; keys are max_num_seqs, max_batched_tokens, kv_blocks, block_size, prefix_caching, async_scheduling, iteration_overhead_s, step_table, skew, layers",
                    p.display(),
                    e.message()
                )
            })?
        }
        None => EngineFile::default(),
    };
    let block_size = args.block_size.or(file.block_size).unwrap_or(16);
    let measured = coef.and_then(|c| measured_kv_blocks(c, block_size));
    let kv_blocks = match (
        args.kv_blocks.or(file.kv_blocks),
        measured,
        args.kv_memory_gib,
    ) {
        (Some(b), _, _) => b,
        (None, Some((b, why)), _) => {
            eprintln!("note: --kv-blocks not given; using {b} blocks derived from {why}");
            b
        }
        (None, None, Some(gib)) => {
            if !(gib.is_finite() && gib > 0.0) {
                bail!("--kv-memory-gib must be a positive number of GiB (got {gib})");
            }
            let blocks =
                (gib * GIB / (LLAMA_3_1_8B_KV_BYTES_PER_TOKEN * f64::from(block_size))).floor();
            eprintln!(
                "warning: --kv-blocks estimated from memory as {blocks} blocks (Llama-3.1-8B bf16, 128 KiB/token); estimates like this overshoot the engine's figure by ~30% and move TTFT by ~20% — use the \"# GPU blocks\" the engine logs at start-up"
            );
            blocks as u32
        }
        (None, None, None) => bail!(
            "--kv-blocks is required: give the KV cache size in blocks that the engine reports at start-up (vLLM: \"# GPU blocks\"), e.g. --kv-blocks 2588 for Llama-3.1-8B on an RTX 4090 (or a --coefficients file with a measured [[kv_capacity]])"
        ),
    };
    // A relative step_table in the file is relative to the file.
    let file_table = file.step_table.map(|t| match &args.engine_config {
        Some(cfg) if t.is_relative() => cfg.parent().unwrap_or(Path::new(".")).join(t),
        _ => t,
    });
    let engine = EngineConfig {
        max_num_seqs: args
            .max_num_seqs
            .or(file.max_num_seqs)
            .unwrap_or(DEFAULT_MAX_NUM_SEQS),
        max_batched_tokens: args
            .max_batched_tokens
            .or(file.max_batched_tokens)
            .unwrap_or(DEFAULT_MAX_BATCHED_TOKENS),
        kv_blocks,
        block_size,
        prefix_caching: args
            .prefix_caching
            .map(OnOff::on)
            .or(file.prefix_caching)
            .unwrap_or(true),
        async_scheduling: args
            .async_scheduling
            .map(OnOff::on)
            .or(file.async_scheduling)
            .unwrap_or(false),
        iteration_overhead_s: args
            .iteration_overhead_s
            .or(file.iteration_overhead_s)
            .unwrap_or(0.0),
    };
    engine.validate()?;
    Ok(Settings {
        engine,
        step_table: args.step_table.clone().or(file_table),
        skew: args.skew || file.skew.unwrap_or(false),
        layers: args
            .layers
            .or(file.layers)
            .unwrap_or(tokenq_core::layers::LLAMA_3_1_8B_LAYERS),
    })
}

/// KV blocks implied by the measured capacity in a coefficients file: the largest
/// `max_concurrent_requests × ⌈sequence_tokens / block_size⌉` over its `[[kv_capacity]]` rows
/// (each such batch was seen to fit, so the cache holds at least that many blocks).
fn measured_kv_blocks(c: &CoefficientsFile, block_size: u32) -> Option<(u32, String)> {
    c.kv_capacity
        .iter()
        .filter(|k| k.max_concurrent_requests > 0 && k.sequence_tokens > 0)
        .map(|k| {
            let b = k.max_concurrent_requests * k.sequence_tokens.div_ceil(u64::from(block_size));
            (b, k)
        })
        .max_by_key(|(b, _)| *b)
        .and_then(|(b, k)| {
            let b = u32::try_from(b).ok()?;
            Some((
                b,
                format!(
                    "the coefficients file's measured KV capacity ({} requests of {} tokens, {})",
                    k.max_concurrent_requests, k.sequence_tokens, k.source
                ),
            ))
        })
}

/// Replay a trace through continuous batching as vLLM's V1 scheduler runs it: TTFT, TPOT and
/// E2E per request, running/waiting/KV over time (docs/serving.md). A deterministic replay:
/// no confidence interval.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Trace: a tokenq CSV (arrival_s,input_tokens,output_tokens[,prefix_parent,
    /// shared_prefix_blocks]), an LLMServingSim workload (…lengths.csv), an Azure trace, or a
    /// built-in name (azure-conv, azure-code).
    #[arg(long, value_name = "FILE")]
    pub trace: PathBuf,
    /// Coefficients file whose [step_time] section is the step model (and whose measured
    /// [[kv_capacity]] sizes the cache when --kv-blocks is not given).
    #[arg(long, value_name = "FILE")]
    pub coefficients: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Seed of the step-configuration sampling when a step model is fitted.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Engine settings and step model.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Validate the flags into the library's configuration.
pub fn config(
    args: &EngineArgs,
    trace: &Path,
    coefficients: Option<&Path>,
    json: bool,
    seed: u64,
) -> Result<ReplayConfig> {
    let coefficients_file = match coefficients {
        Some(p) => Some(
            CoefficientsFile::read(p).with_context(|| format!("--coefficients {}", p.display()))?,
        ),
        None => None,
    };
    let s = settings(args, coefficients_file.as_ref())?;
    Ok(ReplayConfig {
        trace: trace.to_path_buf(),
        coefficients: coefficients.map(Path::to_path_buf),
        coefficients_file,
        engine: s.engine,
        step_table: s.step_table,
        skew: s.skew,
        layers: s.layers,
        fit_step_model: args.fit_step_model,
        save_step_model: args.save_step_model.clone(),
        records: args.records.clone(),
        series: args.series.clone(),
        report: args.report.clone(),
        json,
        seed,
    })
}

/// Run `tokenq replay`.
pub fn run(a: ReplayArgs) -> Result<()> {
    let cfg = config(
        &a.engine,
        &a.trace,
        a.coefficients.as_deref(),
        a.json,
        a.seed,
    )?;
    pipeline::replay::run(&cfg)
}
