//! `tokenq replay` (alias `tokenq simulate --policy continuous`, rewritten in `main.rs`): flags
//! → [`ReplayConfig`] → [`pipeline::replay::run`]. The engine settings come from flags, a
//! settings file (`--engine-config`: TOML, or a run's `engine_meta.json` with the
//! `cluster_config.json` beside it) and vLLM's defaults, in that order (docs/serving.md "Engine
//! state and limits", "Several GPUs").

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use pipeline::replay::{EngineFile, ReplayConfig, ReplayOutputs};

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

impl EngineArgs {
    /// The settings given as flags, under the settings file's keys.
    fn given(&self) -> EngineFile {
        EngineFile {
            max_num_seqs: self.max_num_seqs,
            max_batched_tokens: self.max_batched_tokens,
            kv_blocks: self.kv_blocks,
            block_size: self.block_size,
            prefix_caching: self.prefix_caching.map(OnOff::on),
            async_scheduling: self.async_scheduling.map(OnOff::on),
            iteration_overhead_s: self.iteration_overhead_s,
            step_table: self.step_table.clone(),
            skew: (self.skew || self.no_skew).then_some(self.skew),
            layers: self.layers,
            tensor_parallel: self.tensor_parallel,
            data_parallel: self.data_parallel,
            expert_parallel: self.expert_parallel.then_some(true),
            dp_lockstep: self.dp_lockstep.map(OnOff::on),
            dp_stats_interval_s: self.dp_stats_interval_s,
            link_bandwidth_gb_s: self.link_bandwidth_gb_s,
            link_latency_ns: self.link_latency_ns,
        }
    }
}

/// Replay a trace through continuous batching as vLLM's V1 scheduler runs it: TTFT, TPOT and
/// E2E per request, running/waiting/KV over time (docs/serving.md). A deterministic replay:
/// no confidence interval.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Trace: a tokenq CSV (arrival_s,input_tokens,output_tokens[,prefix_parent,
    /// shared_prefix_blocks]), an LLMServingSim workload (…lengths.csv), an Azure trace, or a
    /// built-in name (azure-conv, azure-code). Or, instead, --rate for Poisson arrivals.
    #[arg(long, value_name = "FILE", required_unless_present = "rate")]
    pub trace: Option<PathBuf>,
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
    /// --trace` loops it) [default: the trace once]. With --rate: requests per replication
    /// [default: 2000].
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub requests: Option<String>,
    /// Engine settings and step model.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Poisson arrivals instead of a trace.
    #[command(flatten)]
    pub poisson: PoissonArgs,
}

/// `tokenq replay --rate`: Poisson arrivals in independent replications, each latency's mean
/// and percentiles with a 95 % interval (docs/usage.md "tokenq replay").
#[derive(Debug, Clone, Args)]
pub struct PoissonArgs {
    /// Replay a Poisson stream of this many requests per second instead of a trace
    /// (--requests per replication, default 2000).
    #[arg(
        long,
        value_name = "REQ_PER_S",
        conflicts_with = "trace",
        allow_hyphen_values = true
    )]
    pub rate: Option<f64>,
    /// With --rate: output-token distribution (a built-in name such as sharegpt, or a spec).
    #[arg(long, value_name = "DIST", requires = "rate")]
    pub tokens: Option<String>,
    /// With --rate: prompt-length distribution [default: DIST-input for a built-in --tokens DIST].
    #[arg(long, value_name = "DIST", requires = "rate")]
    pub input_tokens: Option<String>,
    /// With --rate: max-token limit L, outputs clipped at L (tokens) [default: none].
    #[arg(long, value_name = "L", requires = "rate")]
    pub max_tokens: Option<f64>,
    /// With --rate: independent replications (the intervals come from their spread).
    #[arg(long, default_value_t = 5, value_name = "R")]
    pub replications: u32,
    /// With --rate: percentiles of each latency, e.g. 50,90,99.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50,90,99",
        value_name = "P"
    )]
    pub percentiles: Vec<f64>,
}

/// Run `tokenq replay`.
pub fn run(a: ReplayArgs) -> Result<()> {
    let Some(trace) = a.trace.clone() else {
        return run_poisson(&a);
    };
    let e = &a.engine;
    let cfg = ReplayConfig::from_flags(
        &e.given(),
        e.engine_config.as_deref(),
        e.kv_memory_gib,
        &trace,
        a.coefficients.as_deref(),
        ReplayOutputs {
            fit_step_model: e.fit_step_model,
            save_step_model: e.save_step_model.clone(),
            records: e.records.clone(),
            series: e.series.clone(),
            report: e.report.clone(),
        },
        (a.json, a.seed),
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

/// `tokenq replay --rate R`: replications of Poisson arrivals (`pipeline::poisson_replay`).
fn run_poisson(a: &ReplayArgs) -> Result<()> {
    for (given, flag) in [
        (a.engine.records.is_some(), "--records"),
        (a.engine.series.is_some(), "--series"),
        (a.engine.report.is_some(), "--report"),
        (a.engine.fit_step_model, "--fit-step-model"),
        (a.engine.save_step_model.is_some(), "--save-step-model"),
    ] {
        if given {
            anyhow::bail!("{flag} works on a trace: give --trace FILE instead of --rate");
        }
    }
    let p = &a.poisson;
    pipeline::poisson_replay::run(&pipeline::poisson_replay::PoissonFlags {
        rate: p.rate.unwrap_or(f64::NAN),
        tokens: p.tokens.as_deref(),
        input_tokens: p.input_tokens.as_deref(),
        max_tokens: p.max_tokens,
        replications: p.replications,
        percentiles: &p.percentiles,
        requests: a.requests.as_deref(),
        seed: a.seed,
        coefficients: a.coefficients.as_deref(),
        engine: a.engine.given(),
        engine_config: a.engine.engine_config.as_deref(),
        kv_memory_gib: a.engine.kv_memory_gib,
        json: a.json,
    })
}
