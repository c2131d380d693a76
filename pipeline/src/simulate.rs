//! `tokenq simulate` once its flags are validated: the event-driven simulation of one of the
//! paper's policies (docs/models.md §11, library `sim`), with a progress bar on long runs; every
//! estimate is a simulation with its 95 % confidence interval.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{Result, bail};
use serde::Serialize;
use sim::{Policy, ProgressFn, Report, RunConfig, Scenario, Stability};

/// Runs this long (arrivals × replications) get a progress bar on a terminal.
const PROGRESS_MIN_REQUESTS: u64 = 5_000_000;

/// Most arrivals of one replication (about a minute of simulation).
const MAX_REQUESTS: u64 = 1_000_000_000;
/// Fewest fixed batches a run must form.
const MIN_BATCHES_PER_RUN: u64 = 30;

/// Check the run's size against the scenario, naming the flags: worker threads, replications,
/// a batch cap of 0, arrivals per replication, and enough arrivals for fixed batches.
pub fn check_run(scenario: &Scenario, config: &RunConfig) -> Result<()> {
    let requests = config.requests;
    if config.threads == Some(0) {
        bail!("--threads 0: give at least 1 worker thread (omit it for all cores)");
    }
    if config.replications == 0 {
        bail!("--replications 0: give at least 1 (1 = one run with 30 batch means)");
    }
    let cap = match &scenario.policy {
        Policy::Dynamic { max_batch, .. } | Policy::Elastic { max_batch, .. } => *max_batch,
        Policy::Fixed { batch_size, .. } => Some(*batch_size),
        Policy::Mg1 { .. } => None,
    };
    if cap == Some(0) {
        bail!("--max-batch 0: the batch size K must be at least 1");
    }
    if requests > MAX_REQUESTS {
        bail!(
            "--requests {requests}: at most {MAX_REQUESTS} per replication (about a minute of simulation); use --replications for more"
        );
    }
    // Fixed batches start only when K requests wait: with fewer than 30·K arrivals some of the
    // 30 batch-means sections see no batch at all and the estimates are meaningless.
    if let Policy::Fixed { batch_size, .. } = &scenario.policy {
        let need = u64::from(*batch_size).saturating_mul(MIN_BATCHES_PER_RUN);
        if requests < need {
            bail!(
                "--max-batch {batch_size}: fixed batches of {batch_size} requests need at least {need} requests per replication ({MIN_BATCHES_PER_RUN} batches), got --requests {requests}; lower --max-batch or raise --requests"
            );
        }
    }
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("--requests {requests}: {e}"))
}

/// The JSON document: the scenario as described plus the report.
#[derive(Debug, Serialize)]
struct JsonOut<'a> {
    scenario: &'a str,
    #[serde(flatten)]
    report: &'a Report,
}

/// Simulate `scenario` and print the table (or JSON); an unstable queue is an error that says
/// what to change, with no means (they grow with the run's length).
pub fn run(
    scenario: &Scenario,
    mut config: RunConfig,
    desc: &str,
    json: bool,
    quiet: bool,
) -> Result<()> {
    let total = config.requests * u64::from(config.replications);
    let bar =
        (!quiet && !json && std::io::stderr().is_terminal() && total >= PROGRESS_MIN_REQUESTS)
            .then(|| {
                let b = indicatif::ProgressBar::new(total);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:40} {pos}/{len} requests, {per_sec}, ETA {eta}",
                    )
                    .expect("valid template"),
                );
                b
            });
    if let Some(b) = &bar {
        let b = b.clone();
        config.progress = Some(ProgressFn(Arc::new(move |d| b.inc(d))));
    }
    let report = sim::run(scenario, &config)?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if json {
        let out = JsonOut {
            scenario: desc,
            report: &report,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    match &report.stability {
        Stability::Stable => {
            if !json {
                print!("{}", crate::text::simulation_table(&report, desc));
            }
            Ok(())
        }
        Stability::Unstable {
            rho,
            max_stable_rate_rps,
            reason,
        } => {
            let rho_note = if reason.contains('ρ') {
                String::new()
            } else {
                format!(" (load ρ ≈ {rho:.3})")
            };
            bail!(
                "the simulated queue is unstable: {reason}{rho_note}; the largest arrival rate the server kept up with is ≈ {max_stable_rate_rps:.4} req/s. Lower the arrival rate, raise --max-batch or lower --max-tokens (means of an unstable run grow with --requests, so none are printed)"
            )
        }
    }
}

/// The arrivals, token law and request count of `tokenq simulate`, from its flags, with their
/// descriptions.
#[derive(Debug)]
pub struct SimWorkload {
    /// Poisson or a trace.
    pub arrivals: sim::Arrivals,
    /// The token law or the trace's own.
    pub tokens: sim::Tokens,
    /// Requests per replication.
    pub requests: u64,
    /// E.g. `Poisson λ = 2 req/s`.
    pub arrival_desc: String,
    /// The token law as written.
    pub tokens_desc: String,
}

/// Build [`SimWorkload`] from `--trace`, `--arrival-rate`, `--rate`, `--tokens`, `--requests`.
pub fn workload(
    trace: Option<&str>,
    arrival_rate: Option<f64>,
    rate: Option<f64>,
    tokens: Option<&str>,
    requests: Option<&str>,
) -> Result<SimWorkload> {
    use anyhow::Context as _;
    use sim::{Arrivals, TokenLaw, Tokens, Trace};
    let (arrivals, arrival_desc) = match (trace, arrival_rate) {
        (Some(_), Some(_)) => {
            bail!("--arrival-rate is for Poisson arrivals; with --trace use --rate R to rescale it")
        }
        (None, Some(poisson)) => {
            if rate.is_some() {
                bail!("--rate rescales a --trace; for Poisson arrivals use --arrival-rate");
            }
            (
                Arrivals::Poisson { rate_rps: poisson },
                format!("Poisson λ = {poisson} req/s"),
            )
        }
        (Some(t), None) => {
            let trace = Trace::load(t).with_context(|| format!("--trace {t}"))?;
            let desc = match (rate, trace.mean_rate()) {
                (Some(r), Some(m)) => format!(
                    "trace {t} ({} requests, {m:.3} req/s rescaled to {r} req/s)",
                    trace.requests.len()
                ),
                (_, m) => format!(
                    "trace {t} ({} requests, {} req/s)",
                    trace.requests.len(),
                    m.map_or("–".into(), |m| format!("{m:.3}"))
                ),
            };
            (
                Arrivals::Trace {
                    trace: Arc::new(trace),
                    rate_rps: rate,
                },
                desc,
            )
        }
        (None, None) => bail!(
            "give --arrival-rate REQ_PER_S (Poisson arrivals) or --trace FILE|azure-conv|azure-code"
        ),
    };
    let (tokens, tok_desc) = match tokens {
        Some(spec) => (
            Tokens::Law(TokenLaw::parse(spec).context("--tokens")?),
            spec.to_string(),
        ),
        None if trace.is_some() => (Tokens::FromTrace, "from the trace".into()),
        None => {
            bail!("--tokens DIST is required with Poisson arrivals (e.g. --tokens lognormal:7,0.7)")
        }
    };
    let requests = match (requests, &arrivals) {
        (Some(s), _) => crate::values::parse_count(s)?,
        (None, Arrivals::Trace { trace, .. }) => trace.requests.len() as u64,
        (None, Arrivals::Poisson { .. }) => 1_000_000,
    };
    Ok(SimWorkload {
        arrivals,
        tokens,
        requests,
        arrival_desc,
        tokens_desc: tok_desc,
    })
}
