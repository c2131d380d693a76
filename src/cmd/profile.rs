//! `tokenq profile`: drive a model over a (batch × input × max-output) grid and write the
//! timings table (docs/design.md "Contracts"), with a progress bar, `--dry-run`, `--resume` and
//! `--shard I/N`. The work is `profiler::run`; this file parses, validates and prints.

use anyhow::Result;
use clap::{Args, ValueEnum};
use profiler::{
    BackendConfig, CandleSpec, DeviceChoice, Grid, LinearLatency, Precision, ProfileConfig,
    RepPolicy, Shard, SyntheticClock, SyntheticSpec,
};
use std::path::PathBuf;

/// Metric definitions shown in `--help` (docs/design.md, as vLLM's `bench serve`).
const METRICS_HELP: &str = "\
Timings table: one row per timed step, columns run_id, point_id, rep, batch_size, input_tokens,
step (0 = prefill, which yields the first token; k >= 1 = k-th decode step), context_tokens (KV
entries before the step), wall_s (host clock, device synchronised), device_s (CUDA events; null
on CPU). Metadata (runs, per-point records, outliers, KV capacity) goes to OUT's .runs.json.

Metrics: TTFT = submission to first token (prefill + queueing); TPOT = (e2e - TTFT) /
(output_tokens - 1); ITL = gap between consecutive tokens of one request; e2e = submission to
last token. One pass of max output N gives e2e(n) = sum of steps 0..n-1 for every n <= N.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// A candle model (Llama family or Qwen2), random or local weights.
    Candle,
    /// A known linear latency model plus seeded noise (tests, demos).
    Synthetic,
    /// An OpenAI-compatible streaming server at --url (vLLM, SGLang, TGI, llama.cpp): each
    /// point sends `batch` requests at once with token-id prompts of exactly `input` tokens and
    /// exactly `output` output tokens; steps are read from the streamed token times, the batch
    /// in lockstep (docs/usage.md "Profile a server").
    #[cfg(feature = "http")]
    Openai,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClockKind {
    /// Report the modeled time without waiting.
    Modeled,
    /// Sleep for the modeled time.
    Sleep,
}

/// Profile a model over a grid of batch sizes, input lengths and a maximum output length.
#[derive(Debug, Args)]
#[command(after_help = METRICS_HELP)]
pub struct ProfileArgs {
    /// Model preset: tiny, tinyllama-1.1b, llama-2-7b, llama-3-8b, qwen2-tiny, qwen2-0.5b
    /// (default tiny; with --weights, taken from DIR/config.json). With --backend openai: the
    /// served model's name (default: the first one the server lists).
    #[arg(long)]
    pub model: Option<String>,
    /// --backend openai: the server's root URL, e.g. http://127.0.0.1:8000.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// --backend openai: prompt token ids are drawn from 0..N (keep N below the model's
    /// vocabulary).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub vocab_size: usize,
    /// Directory with config.json and *.safetensors (default: random seeded weights).
    #[arg(long, value_name = "DIR")]
    pub weights: Option<PathBuf>,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    pub weights_seed: u64,
    #[arg(long, value_enum, default_value_t = BackendKind::Candle)]
    pub backend: BackendKind,
    /// cpu, cuda or cuda:N (CUDA needs a `--features cuda` build).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    pub batch: Vec<u32>,
    /// Input (prompt) lengths in tokens, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "32,128")]
    pub input: Vec<u32>,
    /// Maximum output length in tokens (one prefill + output−1 decode steps per pass).
    #[arg(long, default_value_t = 64)]
    pub output: u32,
    /// Timings table to write (.parquet, or .csv).
    #[arg(long, default_value = "profiles/profile.parquet")]
    pub out: PathBuf,
    /// Exactly N timed passes per point (overrides --min-time/--min-reps/--max-reps).
    #[arg(long)]
    pub reps: Option<u32>,
    /// Repeat each point until this many seconds are timed...
    #[arg(long, default_value_t = 0.5, value_name = "SECONDS")]
    pub min_time: f64,
    /// ...but at least this many passes...
    #[arg(long, default_value_t = 3)]
    pub min_reps: u32,
    /// ...and at most this many.
    #[arg(long, default_value_t = 10)]
    pub max_reps: u32,
    /// Untimed warm-up passes per point (each covers every timed shape).
    #[arg(long, default_value_t = 1)]
    pub warmup: u32,
    /// Seed of the point order and the prompts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run shard I of N (1-based); points with point_id mod N = I−1.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Continue a killed or interrupted run (same flags): the points in OUT.parts/ are kept.
    #[arg(long)]
    pub resume: bool,
    /// Overwrite an existing --out; without --resume, also discard an unfinished OUT.parts/ and
    /// start over.
    #[arg(long)]
    pub force: bool,
    /// CPU memory budget in GiB for the KV-cache capacity check (default: MemAvailable).
    #[arg(long, value_name = "GIB")]
    pub memory_budget: Option<f64>,
    /// Print the plan and its estimated time; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bar or per-point lines.
    #[arg(long)]
    pub quiet: bool,
    /// Peak dense 16-bit throughput of the device in TFLOP/s, for the roofline column of the
    /// summary (default: from the device's name for A100, H100, H200, L40S, RTX 4090, RTX PRO
    /// 6000).
    #[arg(long, value_name = "TFLOPS")]
    pub peak_tflops: Option<f64>,
    /// Peak memory bandwidth of the device in GB/s, for the roofline (see --peak-tflops).
    #[arg(long, value_name = "GB_PER_S")]
    pub peak_bandwidth_gbs: Option<f64>,
    /// Synthetic backend: lognormal noise σ.
    #[arg(long, default_value_t = 0.02)]
    pub synthetic_noise: f64,
    /// Synthetic backend: probability of a ×5 spike per step.
    #[arg(long, default_value_t = 0.0)]
    pub synthetic_spike_prob: f64,
    /// Synthetic backend: how time passes.
    #[arg(long, value_enum, default_value_t = ClockKind::Modeled)]
    pub synthetic_clock: ClockKind,
}

/// Parse and validate into the library's typed config; `external` is the spec of a server
/// backend already connected.
pub fn config(a: &ProfileArgs, external: Option<profiler::ExternalSpec>) -> Result<ProfileConfig> {
    check_sizes(a)?;
    let grid = Grid::new(a.batch.clone(), a.input.clone(), a.output)?;
    let reps = match a.reps {
        Some(n) => RepPolicy {
            warmup_passes: a.warmup,
            ..RepPolicy::fixed(n)
        },
        None => RepPolicy {
            warmup_passes: a.warmup,
            min_time_s: a.min_time,
            min_reps: a.min_reps,
            max_reps: a.max_reps,
        },
    };
    let shard = a.shard.as_deref().map(Shard::parse).transpose()?;
    let memory_budget_bytes = match a.memory_budget {
        Some(g) if g.is_finite() && g > 0.0 => Some((g * profiler::capacity::GIB) as u64),
        Some(g) => anyhow::bail!("--memory-budget {g}: give a positive number of GiB, e.g. 8"),
        None => None,
    };
    let backend = match a.backend {
        BackendKind::Candle => BackendConfig::Candle(CandleSpec::resolve(
            a.model.as_deref(),
            a.weights.as_deref(),
            a.weights_seed,
            DeviceChoice::parse(&a.device)?,
            Precision::parse(&a.dtype)?,
        )?),
        BackendKind::Synthetic => {
            if a.model.is_some() || a.weights.is_some() {
                anyhow::bail!(
                    "--backend synthetic takes no --model or --weights (its latency is a fixed linear model)"
                );
            }
            BackendConfig::Synthetic(SyntheticSpec {
                latency: LinearLatency::default(),
                noise_sigma: a.synthetic_noise,
                spike_prob: a.synthetic_spike_prob,
                spike_factor: 5.0,
                clock: match a.synthetic_clock {
                    ClockKind::Modeled => SyntheticClock::Modeled,
                    ClockKind::Sleep => SyntheticClock::Sleep,
                },
                seed: a.seed,
            })
        }
        #[cfg(feature = "http")]
        BackendKind::Openai => BackendConfig::External(
            external.ok_or_else(|| anyhow::anyhow!("--backend openai: not connected"))?,
        ),
    };
    Ok(ProfileConfig {
        backend,
        grid,
        reps,
        seed: a.seed,
        shard,
        out: a.out.clone(),
        resume: a.resume,
        overwrite: a.force,
        memory_budget_bytes,
    })
}

/// Connect to the server of `--backend openai` (before any other work: the plan needs it).
#[cfg(feature = "http")]
fn connect(a: &ProfileArgs) -> Result<Option<pipeline::openai_profile::OpenAiBackend>> {
    if a.backend != BackendKind::Openai {
        if a.url.is_some() {
            anyhow::bail!("--url is for --backend openai");
        }
        return Ok(None);
    }
    let Some(url) = a.url.clone() else {
        anyhow::bail!("--backend openai needs --url, e.g. --url http://127.0.0.1:8000");
    };
    if a.weights.is_some() || a.dtype != "f32" || a.device != "cpu" {
        anyhow::bail!(
            "--backend openai takes no --weights, --dtype or --device (the server has its own)"
        );
    }
    if a.vocab_size < 2 {
        anyhow::bail!("--vocab-size {}: give at least 2 token ids", a.vocab_size);
    }
    let b =
        pipeline::openai_profile::OpenAiBackend::connect(pipeline::openai_profile::OpenAiSpec {
            url,
            model: a.model.clone(),
            api: endpoint::Api::Completions,
            vocab_size: a.vocab_size,
            request_timeout_s: 600.0,
        })?;
    Ok(Some(b))
}

/// Run `tokenq profile`.
pub fn run(a: ProfileArgs) -> Result<()> {
    #[cfg(feature = "http")]
    let mut server = connect(&a)?;
    #[cfg(feature = "http")]
    let cfg = config(&a, server.as_ref().map(|s| s.external_spec()))?;
    #[cfg(not(feature = "http"))]
    let cfg = config(&a, None)?;
    for (flag, v) in [
        ("--peak-tflops", a.peak_tflops),
        ("--peak-bandwidth-gbs", a.peak_bandwidth_gbs),
    ] {
        if let Some(v) = v
            && !(v.is_finite() && v > 0.0)
        {
            anyhow::bail!("{flag} {v}: give the device's peak as a positive number");
        }
    }
    pipeline::profiling::run(
        &cfg,
        &pipeline::profiling::Output {
            dry_run: a.dry_run,
            json: a.json,
            quiet: a.quiet,
            peak_tflops: a.peak_tflops,
            peak_bandwidth_gbs: a.peak_bandwidth_gbs,
        },
        #[cfg(feature = "http")]
        server.as_mut().map(|s| s as &mut dyn profiler::Backend),
        #[cfg(not(feature = "http"))]
        None,
    )
}

/// Checks of the flags that the profiler's own checks do not name.
fn check_sizes(a: &ProfileArgs) -> Result<()> {
    let passes = a.reps.unwrap_or(a.max_reps).max(a.warmup);
    pipeline::profiling::check_sizes(a.reps, a.synthetic_noise, a.synthetic_spike_prob)?;
    profiler::plan::check_work(&a.batch, &a.input, a.output, passes)?;
    Ok(())
}
