//! `tokenq pipeline`: flags → [`PipelineConfig`] → [`pipeline::stages::run`] (docs/usage.md
//! "Reports"). The whole chain — profile, fit, the queueing questions, simulation checks and
//! the HTML report — lives in the `pipeline` crate.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use pipeline::stages::{
    DEFAULT_BETA, DEFAULT_LOAD, DEFAULT_LOSS_COST, DEFAULT_MAX_BATCH, PipelineConfig, Source,
};
use profiler::{BackendConfig, CandleSpec, DeviceChoice, Precision, ProfileConfig, SyntheticSpec};
use queueing::dist::TokenDist;

/// Which backend profiles the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PipelineBackend {
    /// A candle model (default: the tiny random-weight Llama on the CPU).
    Candle,
    /// A known linear latency model with seeded noise: seconds instead of minutes (tests, demos).
    Synthetic,
}

/// Run the whole pipeline and write a report: profile → fit → queueing answers → simulation
/// checks → report.html and one SVG per figure.
///
/// Metrics: TTFT = submission → first token (prefill + queueing); TPOT = (e2e − TTFT)/(output
/// tokens − 1); ITL = gap between consecutive tokens of one request; e2e = submission → last
/// token. Waiting time = arrival → start of service; latency = waiting time + own processing.
#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// Model preset to profile: tiny, tinyllama-1.1b, llama-2-7b, llama-3-8b, qwen2-tiny,
    /// qwen2-0.5b (random weights).
    #[arg(long, default_value = "tiny")]
    pub model: String,
    /// cpu, cuda or cuda:N (CUDA needs a `--features cuda` build).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Profiling backend.
    #[arg(long, value_enum, default_value_t = PipelineBackend::Candle)]
    pub backend: PipelineBackend,
    /// Output-token distribution of the workload: a built-in name (sharegpt, azure-conv,
    /// azure-code, arxiv) or uniform:LO,HI, normal:MEAN,SD[,LO,HI], lognormal:MU,SIGMA,
    /// empirical:PATH[:COLUMN].
    #[arg(long, default_value = "sharegpt")]
    pub workload: String,
    /// Use this timings table (Parquet/CSV) instead of profiling.
    #[arg(long, value_name = "FILE", conflicts_with = "coefficients")]
    pub profile: Option<PathBuf>,
    /// Use this coefficients file (TOML) instead of profiling and fitting.
    #[arg(long, value_name = "FILE")]
    pub coefficients: Option<PathBuf>,
    /// Output directory (created; the report, figures, coefficients and profile an earlier run
    /// left in it are removed first).
    #[arg(long, default_value = "tokenq-report", value_name = "DIR")]
    pub out: PathBuf,
    /// Continue the profile of an interrupted run in DIR (its DIR/profile.parquet.parts), with
    /// the same flags.
    #[arg(long, conflicts_with_all = ["profile", "coefficients"])]
    pub resume: bool,
    /// Discard the unfinished profile of an interrupted run in DIR and start over.
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
    /// Arrival rate λ in req/s for both questions (default: --load × each system's capacity).
    #[arg(long, value_name = "REQ_PER_S", allow_hyphen_values = true)]
    pub rate: Option<f64>,
    /// A service-level objective at --rate, as `tokenq plan --slo` (e.g. 'e2e:p99<=10s'):
    /// the report then opens with the capacity plan (fewest GPUs, policy, limit, goodput).
    #[arg(long = "slo", value_name = "SLO", requires = "rate")]
    pub slos: Vec<String>,
    /// With --slo: search 1..=N GPUs.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub max_gpus: u32,
    /// With --slo: least share of requests the max-token limit may leave whole, P(N ≤ L).
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    pub min_served_fraction: f64,
    /// Offered load when --rate is not given: λ = load × capacity (0 < load < 1).
    #[arg(long, default_value_t = DEFAULT_LOAD)]
    pub load: f64,
    /// Patience τ of impatient users in seconds (default: 3 × the mean service time without a
    /// limit).
    #[arg(long, value_name = "SECONDS")]
    pub patience: Option<f64>,
    /// Cost of a lost user in the impatient objective (paper eq 11, c_ℓ).
    #[arg(long, default_value_t = DEFAULT_LOSS_COST)]
    pub loss_cost: f64,
    /// Weight β of the expected utility against the mean wait in the objective (0 < β < 1).
    #[arg(long, default_value_t = DEFAULT_BETA)]
    pub beta: f64,
    /// Largest batch size searched.
    #[arg(long, default_value_t = DEFAULT_MAX_BATCH, value_name = "K")]
    pub max_batch: usize,
    /// Simulated arrivals per checked point.
    #[arg(long, default_value_t = 2_000_000, value_name = "N")]
    pub sim_requests: u64,
    /// Seed of the profile order, prompts and simulations.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print a JSON summary (paths, recommendations) on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Device peak dense 16-bit throughput in TFLOP/s for the report's roofline table (default:
    /// from the device's name: A100, H100, H200, L40S, RTX 4090, RTX PRO 6000).
    #[arg(long, value_name = "TFLOPS")]
    pub peak_tflops: Option<f64>,
    /// Device peak memory bandwidth in GB/s for the roofline (see --peak-tflops).
    #[arg(long, value_name = "GB_PER_S")]
    pub peak_bandwidth_gbs: Option<f64>,
}

/// Validate the flags into the library's configuration.
fn validate(a: &PipelineArgs) -> Result<PipelineConfig> {
    let workload = TokenDist::parse(&a.workload)
        .map_err(|e| anyhow::anyhow!("--workload `{}`: {e}", a.workload))?;
    let source = if let Some(c) = &a.coefficients {
        Source::Coefficients(c.clone())
    } else if let Some(p) = &a.profile {
        Source::Table(p.clone())
    } else {
        let table = a.out.join("profile.parquet");
        pipeline::stages::check_unfinished(&table, a.resume, a.force)?;
        let mut cfg = ProfileConfig::default_tiny(table)?;
        cfg.seed = a.seed;
        cfg.resume = a.resume;
        cfg.backend = match a.backend {
            PipelineBackend::Candle => BackendConfig::Candle(CandleSpec::resolve(
                Some(&a.model),
                None,
                0,
                DeviceChoice::parse(&a.device)?,
                Precision::parse(&a.dtype)?,
            )?),
            PipelineBackend::Synthetic => {
                if a.model != "tiny" {
                    bail!(
                        "--backend synthetic takes no --model (its latency is a fixed linear model)"
                    );
                }
                BackendConfig::Synthetic(SyntheticSpec {
                    seed: a.seed,
                    ..SyntheticSpec::default()
                })
            }
        };
        Source::Profile(Box::new(cfg))
    };
    let capacity = match a.slos.is_empty() {
        true => None,
        false => Some(pipeline::stages::CapacityQuestion {
            slos: pipeline::plan::Slo::parse_all(&a.slos)?,
            max_gpus: a.max_gpus,
            min_served_fraction: a.min_served_fraction,
        }),
    };
    Ok(PipelineConfig {
        source,
        workload_spec: a.workload.clone(),
        workload,
        out: a.out.clone(),
        rate: a.rate,
        load: a.load,
        beta: a.beta,
        patience: a.patience,
        loss_cost: a.loss_cost,
        max_batch: a.max_batch,
        sim_requests: a.sim_requests,
        seed: a.seed,
        device: a.device.clone(),
        dtype: a.dtype.clone(),
        quiet: a.quiet || a.json,
        peaks: (a.peak_tflops, a.peak_bandwidth_gbs),
        capacity,
    })
}

/// Run `tokenq pipeline`.
pub fn run(a: PipelineArgs) -> Result<()> {
    let cfg = validate(&a)?;
    let summary = pipeline::stages::run(&cfg)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}
