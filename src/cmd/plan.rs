//! `tokenq plan`: flags → [`PlanConfig`] → [`pipeline::plan::plan`] (docs/usage.md "tokenq
//! plan"): which policy, max-token limit and how many GPUs keep the SLOs at a rate.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use pipeline::plan::{ContinuousFlags, ContinuousSetup, PlanConfig, Slo, default_limits};
use pipeline::replay::EngineFile;
use tokenq_core::CoefficientsFile;

use super::common::{parse_count, parse_tokens, print_json};

/// Search policies, max-token limits and GPU counts for the cheapest configuration that meets
/// latency SLOs stated as percentiles, and each one's goodput.
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  tokenq plan --coefficients datasets/coefficients/a100-llama-2-7b-vidur.toml \
--tokens sharegpt --rate 3 --slo 'e2e:p99<=10s'"
)]
pub struct PlanArgs {
    /// Coefficients file from `tokenq fit`: its single-request line (one request at a time) and
    /// its batch lines (dynamic batching) are both searched.
    #[arg(long, value_name = "FILE")]
    pub coefficients: PathBuf,
    /// Output-token distribution (a built-in name such as sharegpt, or a spec).
    #[arg(long, value_name = "DIST")]
    pub tokens: String,
    /// Total arrival rate, requests per second.
    #[arg(long, value_name = "REQ_PER_S", allow_hyphen_values = true)]
    pub rate: f64,
    /// A service-level objective METRIC:STAT<=TARGET (METRIC e2e or wait, or for continuous
    /// batching ttft, tpot, itl; STAT mean or pNN; TARGET in s or ms), e.g. 'e2e:p99<=10s'.
    /// Repeat for several; all must hold.
    #[arg(long = "slo", value_name = "SLO", required = true)]
    pub slos: Vec<String>,
    /// Least share of requests the max-token limit may leave whole, P(N ≤ L).
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION")]
    pub min_served_fraction: f64,
    /// Search 1..=N GPUs (one engine each).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub max_gpus: u32,
    /// Max-token limits to search, comma-separated (default: the workload's p50, p75, p90, p95,
    /// p99, p99.9 and no limit).
    #[arg(long, value_delimiter = ',', value_name = "L")]
    pub limits: Vec<f64>,
    /// Batch caps of dynamic batching, and max_num_seqs of continuous batching, to search.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,2,4,8,16,32,64",
        value_name = "K"
    )]
    pub caps: Vec<u32>,
    /// Simulated arrivals per batching configuration (accepts 1e5).
    #[arg(long, default_value = "1e5", value_name = "N")]
    pub sim_requests: String,
    /// Seed of the simulations.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Rows of the feasible table printed.
    #[arg(long, default_value_t = 10)]
    pub rows: usize,
    /// Print the answer as JSON (fields in docs/usage.md).
    #[arg(long)]
    pub json: bool,
    /// Also write plan-slo-vs-rate.svg, plan-gpus-vs-rate.svg and plan-goodput-vs-rate.svg to DIR.
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    /// Policies to search [default: every one the coefficients and step model support].
    #[arg(long = "policy", value_delimiter = ',', value_name = "POLICY")]
    pub policies: Vec<PolicyArg>,
    /// Continuous batching: per-layer step tables (as `tokenq replay --step-table`); without it
    /// the coefficients file's [step_time] section is the step model.
    #[arg(long, value_name = "DIR")]
    pub step_table: Option<PathBuf>,
    /// Continuous batching: decoder layers of the model (default: the tables' model_config.json).
    #[arg(long, value_name = "N")]
    pub layers: Option<u32>,
    /// Continuous batching: prompt-length distribution [default: DIST-input for a built-in
    /// --tokens DIST that has one, e.g. sharegpt-input].
    #[arg(long, value_name = "DIST")]
    pub input_tokens: Option<String>,
    /// Continuous batching: KV cache blocks of each engine (vLLM's "# GPU blocks").
    #[arg(long, value_name = "BLOCKS")]
    pub kv_blocks: Option<u32>,
    /// Continuous batching: token budget per iteration [default: 2048].
    #[arg(long, value_name = "TOKENS")]
    pub max_batched_tokens: Option<u32>,
    /// Continuous batching: tokens per KV block [default: 16].
    #[arg(long, value_name = "TOKENS")]
    pub block_size: Option<u32>,
    /// Continuous batching: engine settings file (TOML or a run's JSON, as `tokenq replay`).
    #[arg(long, value_name = "FILE")]
    pub engine_config: Option<PathBuf>,
    /// Continuous batching: Poisson arrivals per replication (accepts 2e3).
    #[arg(long, default_value = "2000", value_name = "N")]
    pub replay_requests: String,
    /// How one-at-a-time and dynamic batching spread requests over several GPUs: random (each
    /// GPU a Poisson stream of R/n: exact for one at a time), round-robin or shortest-queue
    /// (simulated). Continuous batching always routes as vLLM's data-parallel front end.
    #[arg(long, value_enum, default_value = "random")]
    pub routing: RoutingArg,
    /// Continuous batching: independent replications (the intervals come from their spread).
    #[arg(long, default_value_t = 5, value_name = "R")]
    pub replications: u32,
}

/// A routing rule over several GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoutingArg {
    /// Uniformly at random.
    Random,
    /// In turn.
    RoundRobin,
    /// Fewest requests in the system (join-shortest-queue).
    ShortestQueue,
}

/// A serving policy `tokenq plan` can search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PolicyArg {
    /// One request at a time (exact M/G/1; the single-request line).
    Single,
    /// Dynamic batching (simulated; the batch lines).
    Dynamic,
    /// Continuous batching as vLLM runs it (replayed; a step model).
    Continuous,
}

/// Run `tokenq plan`.
pub fn run(a: PlanArgs) -> Result<()> {
    let file = CoefficientsFile::read(&a.coefficients)
        .with_context(|| format!("--coefficients {}", a.coefficients.display()))?;
    let tokens = parse_tokens("--tokens", &a.tokens)?;
    let slos = Slo::parse_all(&a.slos)?;
    let limits = Some(a.limits.clone()).filter(|l| !l.is_empty());
    let limits = limits.unwrap_or_else(|| default_limits(&tokens));
    let (service, service_hi, batch) = pipeline::plan::service_models(&file)
        .with_context(|| format!("--coefficients {}", a.coefficients.display()))?;
    let wants = |p: PolicyArg| a.policies.is_empty() || a.policies.contains(&p);
    let paper_policies = wants(PolicyArg::Single) || wants(PolicyArg::Dynamic);
    let (service, service_hi) = if wants(PolicyArg::Single) {
        (service, service_hi)
    } else {
        (None, None)
    };
    let batch = batch.filter(|_| wants(PolicyArg::Dynamic));
    let has_step_model = a.step_table.is_some() || file.step_time.is_some();
    let continuous = if wants(PolicyArg::Continuous) && has_step_model {
        Some(continuous_setup(&a, &file)?)
    } else if a.policies.contains(&PolicyArg::Continuous) {
        anyhow::bail!(
            "--policy continuous needs a step model: give --step-table DIR, or a --coefficients file with a [step_time] section (tokenq fit --step-model)"
        );
    } else {
        None
    };
    let cfg = PlanConfig {
        tokens,
        tokens_spec: a.tokens.clone(),
        rate: a.rate,
        slos,
        min_served_fraction: a.min_served_fraction,
        max_gpus: a.max_gpus,
        service,
        batch,
        service_hi,
        batch_hi: batch.and(pipeline::plan::batch_hi(&file)),
        caps: a.caps.clone(),
        limits,
        sim_requests: parse_count(&a.sim_requests)?,
        seed: a.seed,
        goodput_top: 3,
        continuous,
        paper_policies,
        routing: match a.routing {
            RoutingArg::Random => sim::routing::Routing::Random,
            RoutingArg::RoundRobin => sim::routing::Routing::RoundRobin,
            RoutingArg::ShortestQueue => sim::routing::Routing::ShortestQueue,
        },
    };
    let answer = pipeline::plan::plan(&cfg)?;
    if let Some(dir) = &a.plots {
        pipeline::plan_plots::write(&cfg, &answer, dir)?;
    }
    if a.json {
        return print_json(&answer);
    }
    print!("{}", pipeline::plan::render(&answer, a.rows));
    Ok(())
}

/// The continuous-batching engine, step model and workload from the flags.
fn continuous_setup(a: &PlanArgs, file: &CoefficientsFile) -> Result<ContinuousSetup> {
    let engine = EngineFile {
        max_batched_tokens: a.max_batched_tokens,
        kv_blocks: a.kv_blocks,
        block_size: a.block_size,
        step_table: a.step_table.clone(),
        layers: a.layers,
        ..EngineFile::default()
    };
    pipeline::plan::continuous_setup(&ContinuousFlags {
        engine,
        engine_config: a.engine_config.as_deref(),
        coefficients: (&a.coefficients, file),
        tokens: &a.tokens,
        input_tokens: a.input_tokens.as_deref(),
        requests: &a.replay_requests,
        replications: a.replications,
    })
}
