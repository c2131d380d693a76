//! `tokenq simulate` once its flags are validated: the event-driven simulation of one of the
//! paper's policies (docs/models.md §11, library `sim`), with a progress bar on long runs; every
//! estimate is a simulation with its 95 % confidence interval.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{Result, bail};
use serde::Serialize;
use sim::{ProgressFn, Report, RunConfig, Scenario, Stability};

/// Runs this long (arrivals × replications) get a progress bar on a terminal.
const PROGRESS_MIN_REQUESTS: u64 = 5_000_000;

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
