//! `tokenq simulate`: event-driven simulation of a serving policy (docs/models.md §11, library `sim`),
//! every estimate a simulation with its 95% confidence interval.
//!
//! Policies: `mg1` (one request at a time, `S = a·n + c`, optional `--patience`), `dynamic`,
//! `fixed`, `elastic` (batches with `T = (K1·m + K2) + (K3·m + K4)·max n`). `--policy
//! continuous` is an alias of `tokenq replay` (`main.rs` rewrites the command line before
//! parsing), so this command holds only the paper's policies and their flags.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use sim::{
    Abandonment, BatchTime, LinearService, Patience, Policy, RunConfig, Scenario, TokenMode,
};

/// Which policy to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// Single server, FCFS, one request at a time (paper §III); with --patience, impatient users.
    Mg1,
    /// Dynamic batching: a free server takes all waiting requests (at most --max-batch).
    Dynamic,
    /// Fixed batching: start when --max-batch requests wait, take exactly that many.
    Fixed,
    /// Elastic batching: dynamic, but each request returns when its own tokens are done.
    Elastic,
    /// Alias of `tokenq replay` (continuous batching as vLLM runs it; its flags, see
    /// `tokenq replay --help`).
    Continuous,
}

/// `tokenq simulate` flags.
#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
tokenq simulate --policy mg1 --tokens lognormal:7,0.7 --max-tokens 2000 --per-token-s 0.0229 --intercept-s 0 --arrival-rate 0.0296\n  \
tokenq simulate --policy dynamic --tokens lognormal:7,0.7 --max-tokens 2000 --first-token-s 0.01,0.1 --decode-step-s 0.0005,0.02 --max-batch 16 --arrival-rate 0.2 --replications 10\n  \
tokenq simulate --policy elastic --trace azure-conv --rate 2 --first-token-s 0.01,0.1 --decode-step-s 0.0005,0.02")]
pub struct SimulateArgs {
    /// Serving policy.
    #[arg(long, value_enum)]
    pub policy: PolicyArg,
    /// Output-token distribution: uniform:LO,HI | duniform:LO,HI | normal:MEAN,SD[,LO,HI] |
    /// lognormal:MU,SIGMA | const:N | exponential:MEAN | empirical:PATH[:COLUMN] | a built-in
    /// dataset name. Without it, a --trace supplies the token counts.
    #[arg(long, value_name = "DIST")]
    pub tokens: Option<String>,
    /// Poisson arrival rate λ in requests per second (not with --trace).
    #[arg(long, value_name = "REQ_PER_S")]
    pub arrival_rate: Option<f64>,
    /// Max-token limit L: every policy generates min(N, L) tokens [default: no limit].
    #[arg(long, value_name = "L")]
    pub max_tokens: Option<f64>,
    /// Coefficients file written by `tokenq fit` (its single-request line for mg1, its k1..k4
    /// for batching), instead of raw numbers.
    #[arg(long, value_name = "FILE")]
    pub coefficients: Option<PathBuf>,
    /// mg1: single-request slope a, seconds per output token (S = a·n + c).
    #[arg(long, value_name = "S")]
    pub per_token_s: Option<f64>,
    /// mg1: single-request intercept c, seconds.
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    pub intercept_s: Option<f64>,
    /// Batch policies: first-token slope k1 (s per request in the batch); or --first-token-s.
    #[arg(long, value_name = "S")]
    pub k1: Option<f64>,
    /// Batch policies: first-token intercept k2 (s).
    #[arg(long, value_name = "S")]
    pub k2: Option<f64>,
    /// Batch policies: decode-step slope k3 (s per request in the batch); or --decode-step-s.
    #[arg(long, value_name = "S")]
    pub k3: Option<f64>,
    /// Batch policies: decode-step intercept k4 (s).
    #[arg(long, value_name = "S")]
    pub k4: Option<f64>,
    /// Batch policies: first-token time t1(m) = K1·m + K2 in seconds (K1 per request in the
    /// batch); same as --k1/--k2.
    #[arg(
        long,
        value_name = "K1,K2",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    pub first_token_s: Vec<f64>,
    /// Batch policies: per-decode-token time t2(m) = K3·m + K4 in seconds; same as --k3/--k4.
    #[arg(
        long,
        value_name = "K3,K4",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    pub decode_step_s: Vec<f64>,
    /// Batch cap K (dynamic, elastic: unbounded when absent; fixed: the batch size, required).
    #[arg(long, value_name = "K")]
    pub max_batch: Option<u32>,
    /// mg1: constant patience τ in seconds; a request whose wait would exceed it is lost.
    #[arg(long, value_name = "S")]
    pub patience: Option<f64>,
    /// With --patience: lost users leave at once (wait 0) instead of after τ (paper eq 9).
    #[arg(long, requires = "patience")]
    pub balk: bool,
    /// Arrivals per replication (accepts 1e6). With --trace: default the trace's length; more
    /// loops the trace.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub requests: Option<String>,
    /// Master seed; the same seed gives the same numbers whatever the thread count.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Arrivals (and, without --tokens, token counts) from a trace: a CSV file
    /// (arrival_s,input_tokens,output_tokens or Azure TIMESTAMP,ContextTokens,GeneratedTokens)
    /// or a built-in trace: azure-conv, azure-code.
    #[arg(long, value_name = "FILE|azure-conv|azure-code")]
    pub trace: Option<String>,
    /// With --trace: rescale time so the mean arrival rate is R requests per second.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Independent replications run in parallel (CI across them); 1 = one run with 30 batch
    /// means.
    #[arg(long, default_value_t = 1, value_name = "R")]
    pub replications: u32,
    /// Worker threads for replications [default: all cores]. Results do not depend on it.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Use continuous token counts n = min(X, L) instead of max(1, round(X)) (the reading of
    /// docs/models.md's closed forms for continuous laws).
    #[arg(long)]
    pub continuous_tokens: bool,
    /// Print the result as JSON (fields in docs/usage.md).
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Write one CSV row per request (arrival, service start, finish, tokens, served or lost)
    /// of the first replication to this file.
    #[arg(long, value_name = "FILE.csv")]
    pub records: Option<PathBuf>,
}

/// The batch time from `--k1..--k4` (all four), or else as `queue batch` takes it.
fn batch_time(a: &SimulateArgs) -> Result<BatchTime> {
    let ks = [a.k1, a.k2, a.k3, a.k4];
    let k = match ks.iter().filter(|v| v.is_some()).count() {
        0 => pipeline::coefficients::resolve_batch_k(
            a.coefficients.as_deref(),
            &a.first_token_s,
            &a.decode_step_s,
        )?,
        4 if a.coefficients.is_some() || !a.first_token_s.is_empty() => {
            bail!("give --first-token-s/--decode-step-s, --k1..--k4 or --coefficients, not several")
        }
        4 => ks.map(|v| v.unwrap_or(f64::NAN)),
        n => bail!("--k1 --k2 --k3 --k4 go together ({n} of 4 given)"),
    };
    BatchTime::from_array(k).map_err(|e| anyhow::anyhow!("--first-token-s/--decode-step-s: {e}"))
}

/// Validated scenario, run settings and a one-line description.
fn build(a: &SimulateArgs) -> Result<(Scenario, RunConfig, String)> {
    let policy = match a.policy {
        PolicyArg::Mg1 => {
            let (per_token_s, intercept_s) = pipeline::coefficients::single_line(
                a.coefficients.as_deref(),
                a.per_token_s,
                a.intercept_s,
            )?;
            let patience = a
                .patience
                .map(|p| {
                    if !(p.is_finite() && p >= 0.0) {
                        bail!("--patience {p}: must be a number of seconds ≥ 0");
                    }
                    Ok(Patience {
                        patience_s: p,
                        mode: if a.balk {
                            Abandonment::Balk
                        } else {
                            Abandonment::Renege
                        },
                    })
                })
                .transpose()?;
            if a.max_batch.is_some() {
                bail!("--max-batch applies to batching policies, not mg1");
            }
            Policy::Mg1 {
                service: LinearService {
                    per_token_s,
                    intercept_s,
                },
                patience,
            }
        }
        PolicyArg::Dynamic | PolicyArg::Elastic | PolicyArg::Fixed => {
            if a.patience.is_some() {
                bail!("--patience is modelled for --policy mg1 only");
            }
            let batch = batch_time(a)?;
            match a.policy {
                PolicyArg::Dynamic => Policy::Dynamic {
                    batch,
                    max_batch: a.max_batch,
                },
                PolicyArg::Elastic => Policy::Elastic {
                    batch,
                    max_batch: a.max_batch,
                },
                _ => Policy::Fixed {
                    batch,
                    batch_size: a
                        .max_batch
                        .context("--policy fixed needs --max-batch K (the fixed batch size)")?,
                },
            }
        }
        PolicyArg::Continuous => unreachable!("handled before"),
    };
    let w = pipeline::simulate::workload(
        a.trace.as_deref(),
        a.arrival_rate,
        a.rate,
        a.tokens.as_deref(),
        a.requests.as_deref(),
    )?;
    let (arrivals, tokens, requests) = (w.arrivals, w.tokens, w.requests);
    let scenario = Scenario {
        policy,
        arrivals,
        tokens,
        max_tokens: a.max_tokens,
        token_mode: if a.continuous_tokens {
            TokenMode::Continuous
        } else {
            TokenMode::Integer
        },
    };
    check_flags(a)?;
    scenario.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = RunConfig {
        requests,
        seed: a.seed,
        replications: a.replications,
        records: a.records.clone(),
        threads: a.threads,
        ..RunConfig::default()
    };
    pipeline::simulate::check_run(&scenario, &config)?;
    let limit = a
        .max_tokens
        .map_or("no limit".into(), |l| format!("L = {l}"));
    let policy_desc = scenario.policy.describe();
    let desc = format!(
        "{policy_desc}; {}; tokens {}, {limit}",
        w.arrival_desc, w.tokens_desc
    );
    Ok((scenario, config, desc))
}

/// Checks that name the flag at fault, before the library's own validation.
fn check_flags(a: &SimulateArgs) -> Result<()> {
    if let Some(r) = a.arrival_rate {
        super::common::rate("--arrival-rate", r)?;
    }
    if let Some(r) = a.rate {
        super::common::rate("--rate", r)?;
    }
    super::common::max_tokens("--max-tokens", a.max_tokens)?;
    for (flag, v) in [
        ("--per-token-s", a.per_token_s),
        ("--intercept-s", a.intercept_s),
        ("--patience", a.patience),
        ("--k1", a.k1),
        ("--k2", a.k2),
        ("--k3", a.k3),
        ("--k4", a.k4),
    ] {
        if let Some(v) = v {
            super::common::at_most(flag, v, super::common::MAX_SECONDS, "s")?;
        }
    }
    Ok(())
}

/// Run `tokenq simulate`.
pub fn run(a: SimulateArgs) -> Result<()> {
    if a.policy == PolicyArg::Continuous {
        bail!("--policy continuous is `tokenq replay`: run `tokenq replay --help` for its flags");
    }
    let (scenario, config, desc) = build(&a)?;
    pipeline::simulate::run(&scenario, config, &desc, a.json, a.quiet)
}
