//! `tokenq plan`: flags → [`PlanConfig`] → [`pipeline::plan::plan`] (docs/usage.md "tokenq
//! plan"): which policy, max-token limit and how many GPUs keep the SLOs at a rate.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use pipeline::plan::{PlanConfig, Slo, default_limits};
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
    /// A service-level objective METRIC:STAT<=TARGET (METRIC e2e or wait; STAT mean or pNN;
    /// TARGET in s or ms), e.g. 'e2e:p99<=10s'. Repeat for several; all must hold.
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
    /// Batch caps of dynamic batching to search.
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
}

/// Run `tokenq plan`.
pub fn run(a: PlanArgs) -> Result<()> {
    let file = CoefficientsFile::read(&a.coefficients)
        .with_context(|| format!("--coefficients {}", a.coefficients.display()))?;
    let tokens = parse_tokens("--tokens", &a.tokens)?;
    let slos = a
        .slos
        .iter()
        .map(|s| Slo::parse(s))
        .collect::<Result<Vec<_>>>()?;
    let limits = if a.limits.is_empty() {
        default_limits(&tokens)
    } else {
        a.limits.clone()
    };
    let (service, service_hi, batch) = pipeline::plan::service_models(&file)
        .with_context(|| format!("--coefficients {}", a.coefficients.display()))?;
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
        caps: a.caps.clone(),
        limits,
        sim_requests: parse_count(&a.sim_requests)?,
        seed: a.seed,
        goodput_top: 3,
    };
    let answer = pipeline::plan::plan(&cfg)?;
    if a.json {
        return print_json(&answer);
    }
    print!("{}", pipeline::plan::render(&answer, a.rows));
    Ok(())
}
