//! `tokenq replay` (alias `tokenq simulate --policy continuous`, rewritten in `main.rs`): flags
//! → [`ReplayConfig`] → [`pipeline::replay::run`]. The engine settings come from flags, a
//! settings file (`--engine-config`: TOML, or a run's `engine_meta.json` with the
//! `cluster_config.json` beside it) and vLLM's defaults, in that order (docs/serving.md "Engine
//! state and limits", "Several GPUs").

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use pipeline::replay::ReplayConfig;
use sim::continuous::{DataParallel, EngineConfig, Link, Parallelism};
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
    /// directory) [default: on when the table directory holds skew_fit.csv].
    #[arg(long, conflicts_with = "no_skew")]
    pub skew: bool,
    /// Turn the skew correction off even though the table directory holds skew_fit.csv.
    #[arg(long)]
    pub no_skew: bool,
    /// Decoder layers of the model the tables describe [default: num_hidden_layers of the
    /// model_config.json beside the tables, else 32 (Llama-3.1-8B)].
    #[arg(long, value_name = "N")]
    pub layers: Option<u32>,
    /// Tensor-parallel degree of each engine: per-rank times from the tables' tpN/ folder (one
    /// rank's shard) plus an all-reduce after every o_proj and down_proj [default: 1].
    #[arg(long, value_name = "N")]
    pub tensor_parallel: Option<u32>,
    /// Data-parallel engines, each with the full limits and KV cache above; requests routed by
    /// vLLM's DP load balancer (least 4·waiting + running) [default: 1].
    #[arg(long, value_name = "N")]
    pub data_parallel: Option<u32>,
    /// Expert parallelism for an MoE model: the experts are split over the data-parallel ×
    /// tensor-parallel ranks; the MoE block adds an all-gather and a reduce-scatter.
    #[arg(long)]
    pub expert_parallel: bool,
    /// Step the data-parallel engines together (dummy steps, padding to the largest step)
    /// [default: on for an MoE model, off for a dense one].
    #[arg(long, value_name = "on|off")]
    pub dp_lockstep: Option<OnOff>,
    /// Period of the DP coordinator's published request counts, seconds; 0 routes on live
    /// counts [default: 0.1, as vLLM].
    #[arg(long, value_name = "SECONDS")]
    pub dp_stats_interval_s: Option<f64>,
    /// Bandwidth of the link the collectives run on, GB/s (read as 2^30 bytes/s; the cluster
    /// configuration's `link_bw`) [default: 16].
    #[arg(long, value_name = "GB_PER_S")]
    pub link_bandwidth_gb_s: Option<f64>,
    /// Latency of one collective message, ns (the cluster configuration's `link_latency`)
    /// [default: 20000].
    #[arg(long, value_name = "NS")]
    pub link_latency_ns: Option<f64>,
    /// With --step-table: fit the decode-only and mixed step-time forms to the tables on the
    /// KV-feasible region, replay with both models and report the fit's error on the replay.
    #[arg(long)]
    pub fit_step_model: bool,
    /// Write the fitted step-time model as the [step_time] section of this coefficients file
    /// (added to the file if it exists, else a new file). Implies --fit-step-model.
    #[arg(long, value_name = "FILE.toml")]
    pub save_step_model: Option<PathBuf>,
    /// Engine settings file: TOML with any of the settings above, or a run's settings JSON
    /// (LLMServingSim's `engine_meta.json`: vLLM's engine kwargs, read with the
    /// `cluster_config.json` beside it for the link; or a `cluster_config.json` itself).
    #[arg(long, value_name = "FILE")]
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

/// Settings after merging flags, file and defaults.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) engine: EngineConfig,
    pub(crate) step_table: Option<PathBuf>,
    /// `None`: on when the table directory holds skew_fit.csv.
    pub(crate) skew: Option<bool>,
    /// `None`: from the tables' model_config.json, else 32.
    pub(crate) layers: Option<u32>,
    pub(crate) parallel: Parallelism,
    pub(crate) data_parallel: DataParallel,
    /// `None`: on for an MoE model.
    pub(crate) dp_lockstep: Option<bool>,
}

pub(crate) fn settings(args: &EngineArgs, coef: Option<&CoefficientsFile>) -> Result<Settings> {
    let file: pipeline::replay::EngineFile = match &args.engine_config {
        Some(p) => pipeline::replay::read_engine_file(p)?,
        None => pipeline::replay::EngineFile::default(),
    };
    let block_size = args.block_size.or(file.block_size).unwrap_or(16);
    let measured = coef.and_then(|c| pipeline::replay::measured_kv_blocks(c, block_size));
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
            "--kv-blocks is required: give the KV cache size in blocks that the engine reports at start-up (vLLM: \"# GPU blocks\"), e.g. --kv-blocks 2588 for Llama-3.1-8B on an RTX 4090 (or a --coefficients file with a measured [[kv_capacity]]); under --data-parallel it is each engine's"
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
    let skew = if args.no_skew {
        Some(false)
    } else if args.skew {
        Some(true)
    } else {
        file.skew
    };
    let tp = args.tensor_parallel.or(file.tensor_parallel).unwrap_or(1);
    let dp = args.data_parallel.or(file.data_parallel).unwrap_or(1);
    if tp == 0 {
        bail!("--tensor-parallel must be at least 1 (got 0)");
    }
    if dp == 0 {
        bail!("--data-parallel must be at least 1 (got 0)");
    }
    let ep_on = args.expert_parallel || file.expert_parallel.unwrap_or(false);
    let link = Link {
        bandwidth_gb_s: args
            .link_bandwidth_gb_s
            .or(file.link_bandwidth_gb_s)
            .unwrap_or(Link::default().bandwidth_gb_s),
        latency_ns: args
            .link_latency_ns
            .or(file.link_latency_ns)
            .unwrap_or(Link::default().latency_ns),
    };
    if !(link.bandwidth_gb_s.is_finite() && link.bandwidth_gb_s > 0.0) {
        bail!(
            "--link-bandwidth-gb-s must be a positive number of GB/s (got {})",
            link.bandwidth_gb_s
        );
    }
    if !(link.latency_ns.is_finite() && link.latency_ns >= 0.0) {
        bail!(
            "--link-latency-ns must be a number of ns ≥ 0 (got {})",
            link.latency_ns
        );
    }
    let stats = args
        .dp_stats_interval_s
        .or(file.dp_stats_interval_s)
        .unwrap_or(sim::continuous::cluster::DP_STATS_INTERVAL_S);
    if !(stats.is_finite() && stats >= 0.0) {
        bail!("--dp-stats-interval-s must be a number of seconds ≥ 0 (got {stats})");
    }
    Ok(Settings {
        engine,
        step_table: args.step_table.clone().or(file_table),
        skew,
        layers: args.layers.or(file.layers),
        parallel: Parallelism {
            tensor_parallel: tp,
            // vLLM: the expert-parallel group spans the data-parallel × tensor-parallel ranks.
            expert_parallel: if ep_on { dp * tp } else { 1 },
            link,
        },
        data_parallel: DataParallel {
            engines: dp,
            lockstep: false,
            stats_interval_s: stats,
        },
        dp_lockstep: args.dp_lockstep.map(OnOff::on).or(file.dp_lockstep),
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
    /// Replay N requests (accepts 4e4): the first N of the trace, or more than the trace holds
    /// by looping it end to end, each lap's arrivals shifted by the trace's span (as `simulate
    /// --trace` loops it) [default: the trace once].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub requests: Option<String>,
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
        parallel: s.parallel,
        data_parallel: s.data_parallel,
        dp_lockstep: s.dp_lockstep,
        fit_step_model: args.fit_step_model,
        save_step_model: args.save_step_model.clone(),
        records: args.records.clone(),
        series: args.series.clone(),
        report: args.report.clone(),
        json,
        seed,
        requests: None,
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
    let cfg = ReplayConfig {
        requests: a
            .requests
            .as_deref()
            .map(super::common::parse_count)
            .transpose()?,
        ..cfg
    };
    pipeline::replay::run(&cfg)
}
