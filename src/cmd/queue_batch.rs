//! `tokenq queue batch`: mean wait and latency under dynamic, fixed or elastic batching
//! (docs/models.md §4–§8, paper §IV), every estimate labelled exact, bound or approximation.
//!
//! Batch time of `b` requests: `T_b = t1(b) + t2(b)·M_b` with `t1(b) = K1·b + K2` (first token,
//! `--first-token-s K1,K2`), `t2(b) = K3·b + K4` (each later token, `--decode-step-s K3,K4`) and
//! `M_b` the largest decode length in the batch, drawn from `--tokens`. Instead of the two
//! flags, `--coefficients FILE` (written by `tokenq fit`) gives K1..K4 from its `[first_token]`
//! and `[decode_step]` lines.
//!
//! `--validate` simulates the same policy (docs/models.md §11) beside the analytic estimates.
//! The work is [`pipeline::batch`].

use anyhow::{Result, bail};
use clap::Args;
use queueing::batch::{BatchConfig, ChainOptions};

use pipeline::batch::convergence_hint;

use super::common::{BatchModelArgs, PolicyArg, ValidateArgs, print_json};

/// `tokenq queue batch`.
#[derive(Debug, Clone, Args)]
pub struct QueueBatchArgs {
    /// Batching policy.
    #[arg(long, value_enum)]
    pub policy: PolicyArg,
    /// K: the batch size (fixed, required) or the cap (dynamic, elastic; unbounded if absent).
    #[arg(long, value_name = "K")]
    pub max_batch: Option<usize>,
    /// Poisson arrival rate, requests per second.
    #[arg(long, value_name = "REQ_PER_S", allow_hyphen_values = true)]
    pub arrival_rate: f64,
    #[command(flatten)]
    pub model: BatchModelArgs,
    #[command(flatten)]
    pub validate: ValidateArgs,
    /// Machine-readable output (fields in docs/usage.md).
    #[arg(long)]
    pub json: bool,
    /// Also simulate the wait and latency percentiles with 95% intervals: a subset of 50,90,99
    /// (the chains give means only). Uses --validate's run and settings when given.
    #[arg(long, value_delimiter = ',', value_name = "P")]
    pub percentiles: Vec<f64>,
}

/// Validated `queue batch` question.
fn config(a: &QueueBatchArgs) -> Result<BatchConfig> {
    super::common::rate("--arrival-rate", a.arrival_rate)?;
    match (a.policy, a.max_batch) {
        (_, Some(0)) => bail!("--max-batch 0: the batch size K must be at least 1"),
        (PolicyArg::Fixed, None) => {
            bail!("--policy fixed needs --max-batch K (the fixed batch size)")
        }
        _ => {}
    }
    let sim = match a.validate.settings()? {
        Some(s) => Some(s),
        None if !a.percentiles.is_empty() => Some(default_sim()?),
        None => None,
    };
    if let Some(sim) = sim
        && a.policy == PolicyArg::Fixed
    {
        // The simulation of fixed batches needs them to fill (see `tokenq simulate`).
        let k = a.max_batch.unwrap_or(1) as u64;
        if sim.requests < k.saturating_mul(30) {
            bail!(
                "--max-batch {k} with --validate or --percentiles: fixed batches of {k} requests need --requests ≥ {} (30 batches), got {}",
                k.saturating_mul(30),
                sim.requests
            );
        }
    }
    Ok(BatchConfig {
        policy: a.policy.into(),
        max_batch: a.max_batch,
        arrival_rate: a.arrival_rate,
        model: a.model.model()?,
        chain: ChainOptions::default(),
    })
}

/// The simulation settings of `--percentiles` without `--validate`: its defaults.
fn default_sim() -> Result<pipeline::check::SimSettings> {
    Ok(pipeline::check::SimSettings {
        requests: super::common::parse_count(super::common::DEFAULT_VALIDATE_REQUESTS)?,
        seed: 1,
        replications: 1,
    })
}

/// Run `tokenq queue batch`.
pub fn run(a: QueueBatchArgs) -> Result<()> {
    let cfg = config(&a)?;
    let raw = super::common::parse_tokens("--tokens", &a.model.tokens)?;
    let sim = a.validate.settings()?;
    if let Some(p) = a
        .percentiles
        .iter()
        .find(|p| !pipeline::batch::SIMULATED_PERCENTILES.contains(p))
    {
        bail!(
            "--percentiles {p}: the simulator estimates only p50, p90 and p99 (give a subset of 50,90,99)"
        );
    }
    let pct_sim = match sim {
        Some(s) => s,
        None => default_sim()?,
    };
    let pct = (!a.percentiles.is_empty()).then_some((a.percentiles.as_slice(), &pct_sim));
    let out = pipeline::batch::answer(&cfg, &raw, a.model.max_tokens, sim.as_ref(), pct).map_err(
        |e| {
            convergence_hint(
                e,
                &a.model.tokens,
                a.model.max_tokens,
                a.policy == PolicyArg::Fixed || a.max_batch.is_some(),
            )
        },
    )?;
    if a.json {
        return print_json(&out);
    }
    print!("{}", pipeline::batch::render(&out));
    Ok(())
}
