//! `tokenq plan`: flags → [`pipeline::plan_cli`] (docs/usage.md "tokenq plan"): which policy,
//! max-token limit and how many GPUs keep the SLOs at a rate; without a rate, each policy and
//! limit's goodput.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use pipeline::plan_cli::{POLICY_NAMES, PlanFlags, PolicyKind, ROUTING_NAMES, parse_routing};
use pipeline::replay::EngineFile;

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
    #[arg(long, value_name = "DIST", required_unless_present = "trace")]
    pub tokens: Option<String>,
    /// A recorded workload instead of --tokens: azure-conv, azure-code or a CSV (as `tokenq
    /// replay --trace`); its arrivals are stretched to --rate, its lengths kept.
    #[arg(long, value_name = "TRACE", conflicts_with_all = ["tokens", "input_tokens"])]
    pub trace: Option<String>,
    /// Total arrival rate, requests per second [default: none — then each policy and limit's
    /// goodput on one GPU, largest first].
    #[arg(long, value_name = "REQ_PER_S", allow_hyphen_values = true)]
    pub rate: Option<f64>,
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
    /// Rows of the table printed (feasible configurations, or goodputs without --rate).
    #[arg(long, default_value_t = 10)]
    pub rows: usize,
    /// Print the answer as JSON (fields in docs/usage.md).
    #[arg(long)]
    pub json: bool,
    /// With --rate: also write plan-slo-vs-rate.svg, plan-gpus-vs-rate.svg and
    /// plan-goodput-vs-rate.svg to DIR.
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    /// Policies to search: single (one request at a time, exact M/G/1), dynamic (dynamic
    /// batching, simulated), continuous (vLLM's scheduler, replayed) [default: every one the
    /// coefficients and step model support].
    #[arg(long = "policy", value_delimiter = ',', value_name = "POLICY",
          value_parser = PossibleValuesParser::new(POLICY_NAMES).try_map(|s| PolicyKind::parse(&s)))]
    pub policies: Vec<PolicyKind>,
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
    #[arg(long, default_value = "random",
          value_parser = PossibleValuesParser::new(ROUTING_NAMES).try_map(|s| parse_routing(&s)))]
    pub routing: sim::routing::Routing,
    /// Continuous batching: independent replications (the intervals come from their spread).
    #[arg(long, default_value_t = 5, value_name = "R")]
    pub replications: u32,
}

/// Run `tokenq plan`.
pub fn run(a: PlanArgs) -> Result<()> {
    let engine = EngineFile {
        max_batched_tokens: a.max_batched_tokens,
        kv_blocks: a.kv_blocks,
        block_size: a.block_size,
        step_table: a.step_table.clone(),
        layers: a.layers,
        ..EngineFile::default()
    };
    let flags = PlanFlags {
        coefficients: &a.coefficients,
        tokens: a.tokens.as_deref(),
        trace: a.trace.as_deref(),
        rate: a.rate,
        slos: &a.slos,
        min_served_fraction: a.min_served_fraction,
        max_gpus: a.max_gpus,
        limits: &a.limits,
        caps: &a.caps,
        sim_requests: &a.sim_requests,
        seed: a.seed,
        policies: &a.policies,
        routing: a.routing,
        engine,
        engine_config: a.engine_config.as_deref(),
        input_tokens: a.input_tokens.as_deref(),
        replay_requests: &a.replay_requests,
        replications: a.replications,
    };
    pipeline::plan_cli::run(&flags, a.rows, a.json, a.plots.as_deref())
}
