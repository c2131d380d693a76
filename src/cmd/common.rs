//! Flag helpers shared by the analytic commands (`queue …`, `optimize …`): parsing of
//! `--tokens`, checks of numeric flags with one-line errors naming the flag, JSON printing, and
//! `--validate` ([`ValidateArgs`]): simulate the same system (`sim`, docs/models.md §11) and
//! compare each analytic mean with the simulation's interval (`pipeline::check`).

use anyhow::{Result, bail};
use clap::Args;
use pipeline::check::{Comparison, Validation};
use queueing::dist::TokenDist;
use serde::Serialize;
use sim::{Report, RunConfig, Scenario, TokenMode};

/// Parse a token-distribution spec; the error names `flag` and lists the accepted forms.
pub fn parse_tokens(flag: &str, spec: &str) -> Result<TokenDist> {
    TokenDist::parse(spec).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

/// A finite number `> 0`, else a one-line error naming the flag.
pub fn positive(flag: &str, v: f64, unit: &str) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        bail!("{flag} must be a finite number > 0 {unit}, got {v}")
    }
}

/// A finite number `≥ 0`, else a one-line error naming the flag.
pub fn non_negative(flag: &str, v: f64, unit: &str) -> Result<f64> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        bail!("{flag} must be a finite number >= 0 {unit}, got {v}")
    }
}

/// A max-token limit: `≥ 1`, or `None` (no limit → `+∞`).
pub fn max_tokens(flag: &str, v: Option<f64>) -> Result<f64> {
    match v {
        None => Ok(f64::INFINITY),
        Some(l) if l.is_finite() && l >= 1.0 => Ok(l),
        Some(l) => bail!("{flag} must be a number of tokens >= 1 (omit it for no limit), got {l}"),
    }
}

/// Parse a number or a fraction `A/B` (e.g. `--weight 119/120`).
pub fn parse_fraction(s: &str) -> std::result::Result<f64, String> {
    let v = match s.split_once('/') {
        Some((a, b)) => {
            let a: f64 = a.trim().parse().map_err(|_| format!("`{s}` is not A/B"))?;
            let b: f64 = b.trim().parse().map_err(|_| format!("`{s}` is not A/B"))?;
            a / b
        }
        None => s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a number"))?,
    };
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("`{s}` is not a finite number"))
    }
}

/// Print a value as pretty JSON on stdout.
pub fn print_json<T: Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Default arrivals per replication of a `--validate` run.
pub const DEFAULT_VALIDATE_REQUESTS: &str = "2e5";

/// `--validate` and its simulation settings, shared by `queue mg1` and `queue batch`.
#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// Also simulate the same system (event-driven simulator, docs/models.md §11) and print each
    /// analytic mean beside the simulation's 95% CI, the difference in CI half-widths.
    #[arg(long)]
    pub validate: bool,
    /// With --validate: arrivals per replication (accepts 2e5).
    #[arg(long, value_name = "N", default_value = DEFAULT_VALIDATE_REQUESTS, requires = "validate")]
    pub requests: String,
    /// With --validate: master seed of the simulation.
    #[arg(long, default_value_t = 1, requires = "validate")]
    pub seed: u64,
    /// With --validate: independent replications (CI across them); 1 = one run, 30 batch means.
    #[arg(long, default_value_t = 1, value_name = "R", requires = "validate")]
    pub replications: u32,
}

impl ValidateArgs {
    /// Simulate `scenario` with these settings.
    pub fn simulate(&self, scenario: &Scenario) -> Result<Report> {
        let requests = super::simulate::parse_count(&self.requests)?;
        scenario
            .validate()
            .map_err(|e| anyhow::anyhow!("--validate: {e}"))?;
        let config = RunConfig {
            requests,
            seed: self.seed,
            replications: self.replications,
            ..RunConfig::default()
        };
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("--requests/--replications: {e}"))?;
        sim::run(scenario, &config).map_err(|e| anyhow::anyhow!("--validate simulation: {e}"))
    }

    /// The validation object of a report and the comparisons built from it.
    pub fn validation(
        &self,
        r: &Report,
        token_mode: TokenMode,
        comparisons: Vec<Comparison>,
    ) -> Validation {
        Validation::from_report(r, token_mode, comparisons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_and_limits() {
        assert_eq!(parse_fraction("119/120").unwrap(), 119.0 / 120.0);
        assert!(parse_fraction("x").is_err());
        assert!(parse_fraction("1/0").is_err());
        assert!(max_tokens("--max-tokens", Some(0.5)).is_err());
        assert!(max_tokens("--max-tokens", Some(f64::NAN)).is_err());
        assert_eq!(max_tokens("--max-tokens", None).unwrap(), f64::INFINITY);
    }
}
