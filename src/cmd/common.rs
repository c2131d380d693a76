//! Small helpers shared by the analytic commands (`queue …`, `optimize …`): parsing of
//! `--tokens`, checks of numeric flags with one-line errors naming the flag, a plain table
//! printer that carries units and the method of every number, and JSON printing.
//!
//! `--validate` ([`ValidateArgs`], [`Validation`]): the analytic commands run the event-driven
//! simulator (library `sim`, MATH.md §11) on the same system and report each analytic mean
//! beside the simulation's 95% confidence interval, the difference counted in half-widths of
//! that interval. An exact value more than [`FLAG_HALF_WIDTHS`] half-widths away is flagged; a
//! bound or an approximation is expected to differ and is labelled so, not flagged.

use anyhow::{Result, bail};
use clap::Args;
use queueing::Method;
use queueing::dist::TokenDist;
use serde::Serialize;
use sim::{Estimate, Report, RunConfig, Scenario, Stability, TokenMode};

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

/// Format a number with `sig` significant digits (plain notation for ordinary magnitudes).
pub fn num(x: f64, sig: usize) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "n/a".into()
        } else {
            "inf".into()
        };
    }
    if x == 0.0 {
        return "0".into();
    }
    let mag = x.abs().log10().floor() as i64;
    if !(-4..=9).contains(&mag) {
        return format!("{:.*e}", sig.saturating_sub(1), x);
    }
    let decimals = (sig as i64 - 1 - mag).max(0) as usize;
    format!("{x:.decimals$}")
}

/// A table of `quantity | value | unit | method` rows.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    pub fn new() -> Self {
        Self::default()
    }
    /// Add a row; `method` is printed beside the number (exact / approximation / …).
    pub fn row(&mut self, quantity: &str, value: String, unit: &str, method: Method) -> &mut Self {
        self.rows
            .push([quantity.into(), value, unit.into(), method.to_string()]);
        self
    }
    /// Render with aligned columns.
    pub fn render(&self) -> String {
        render_grid(&["quantity", "value", "unit", "method"], &self.rows)
    }
}

/// Render a grid with a header, left-aligned first column, right-aligned others.
pub fn render_grid<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut w = [0usize; N];
    for (i, h) in header.iter().enumerate() {
        w[i] = h.chars().count();
    }
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            if i == 0 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str("  ");
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// Print a value as pretty JSON on stdout.
pub fn print_json<T: Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// An exact analytic value farther than this many CI half-widths from the simulation is flagged.
pub const FLAG_HALF_WIDTHS: f64 = 2.0;
/// Default arrivals per replication of a `--validate` run.
pub const DEFAULT_VALIDATE_REQUESTS: &str = "2e5";

/// `--validate` and its simulation settings, shared by `queue mg1` and `queue batch`.
#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// Also simulate the same system (event-driven simulator, MATH.md §11) and print each
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

/// One analytic mean beside its simulation estimate.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// What is compared, e.g. `E[W_q] mean wait`.
    pub quantity: String,
    /// Unit of `analytic`, `sim` and `sim_half_width`.
    pub unit: &'static str,
    /// The analytic value.
    pub analytic: f64,
    /// Exact, bound or approximation.
    pub analytic_method: Method,
    /// Simulation point estimate.
    pub sim: f64,
    /// Half-width of the simulation's confidence interval.
    pub sim_half_width: f64,
    /// (sim − analytic) / half-width.
    pub diff_half_widths: f64,
    /// An exact value outside `FLAG_HALF_WIDTHS` half-widths.
    pub flagged: bool,
    /// Why a difference is expected (bound, approximation), when it is.
    pub note: Option<String>,
}

impl Comparison {
    /// Compare `analytic` (obtained by `method`) with the simulation estimate `sim`.
    pub fn new(
        quantity: String,
        unit: &'static str,
        analytic: f64,
        method: Method,
        sim: Estimate,
    ) -> Self {
        let d = sim.value - analytic;
        let diff = if sim.half_width > 0.0 {
            d / sim.half_width
        } else if sim.half_width == 0.0 {
            // A quantity the simulation holds fixed (e.g. the batch size K of fixed batching).
            if d.abs() <= 1e-9 * analytic.abs().max(1.0) {
                0.0
            } else {
                d.signum() * f64::INFINITY
            }
        } else {
            f64::NAN
        };
        let note = match method {
            Method::Exact => None,
            Method::Bound => {
                Some("a bound: a difference is expected, the simulation on its safe side".into())
            }
            Method::Approximation => Some("an approximation: a difference is expected".into()),
            Method::Simulation => Some("a simulation: both sides are random".into()),
        };
        Self {
            quantity,
            unit,
            analytic,
            analytic_method: method,
            sim: sim.value,
            sim_half_width: sim.half_width,
            diff_half_widths: diff,
            flagged: method == Method::Exact && diff.abs() > FLAG_HALF_WIDTHS,
            note,
        }
    }
}

/// The `validation` object of `--validate` (JSON and human output).
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// Arrivals per replication.
    pub requests: u64,
    /// Replications.
    pub replications: u32,
    /// Master seed.
    pub seed: u64,
    /// `batch_means` or `replications`.
    pub ci_kind: String,
    /// Units the t-interval is built on.
    pub ci_units: usize,
    /// Confidence level of the intervals.
    pub confidence: f64,
    /// How the simulator turns draws into token counts (`continuous`: n = min(X, L) as the
    /// analytic law reads it; `integer`: n = min(max(1, round X), L), MATH.md §11).
    pub token_mode: TokenMode,
    /// Whether the simulated queue reached a steady state.
    pub stable: bool,
    /// Why not, when it did not (the comparisons are then empty).
    pub unstable_reason: Option<String>,
    /// Each analytic mean beside the simulation.
    pub comparisons: Vec<Comparison>,
    /// Number of flagged comparisons.
    pub flagged: usize,
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

    /// Assemble the validation object from a report and the comparisons built from it (the
    /// comparisons are dropped when the simulated queue did not reach a steady state).
    pub fn validation(
        &self,
        r: &Report,
        token_mode: TokenMode,
        comparisons: Vec<Comparison>,
    ) -> Validation {
        let (stable, reason, comparisons) = match &r.stability {
            Stability::Stable => (true, None, comparisons),
            Stability::Unstable {
                max_stable_rate_rps,
                reason,
                ..
            } => (
                false,
                Some(format!(
                    "the simulated queue did not settle in {} requests ({reason}; largest stable rate ≈ {max_stable_rate_rps:.6} req/s; near saturation, more --requests may help)",
                    r.requests
                )),
                Vec::new(),
            ),
        };
        Validation {
            requests: r.requests,
            replications: r.replications,
            seed: r.seed,
            ci_kind: r.ci.kind.clone(),
            ci_units: r.ci.units,
            confidence: r.ci.confidence,
            token_mode,
            stable,
            unstable_reason: reason,
            flagged: comparisons.iter().filter(|c| c.flagged).count(),
            comparisons,
        }
    }
}

/// Decimals that show a half-width with two significant digits.
fn ci_decimals(hw: f64) -> usize {
    if hw.is_finite() && hw > 0.0 {
        (1 - hw.log10().floor() as i64).clamp(0, 12) as usize
    } else {
        6
    }
}

impl Validation {
    /// Human lines: `quantity: analytic V u (method) | sim V ± H u | diff D CI [flag or note]`.
    pub fn render(&self) -> String {
        let mut out = format!(
            "validation: simulation of the same system, {} requests × {} replication(s), seed {}, {:.0}% CI from {} {}, {} token counts\n",
            self.requests,
            self.replications,
            self.seed,
            self.confidence * 100.0,
            self.ci_units,
            self.ci_kind.replace('_', " "),
            match self.token_mode {
                TokenMode::Continuous => "continuous",
                TokenMode::Integer => "integer",
            }
        );
        if let Some(r) = &self.unstable_reason {
            out.push_str(&format!("  {r}: no steady-state means to compare\n"));
            return out;
        }
        let rows: Vec<[String; 5]> = self
            .comparisons
            .iter()
            .map(|c| {
                let d = ci_decimals(c.sim_half_width);
                let tail = if c.flagged {
                    format!("  <-- exact value outside {FLAG_HALF_WIDTHS} CI half-widths")
                } else {
                    c.note
                        .as_ref()
                        .map_or(String::new(), |n| format!("  ({n})"))
                };
                [
                    c.quantity.clone(),
                    format!(
                        "analytic {} {} ({})",
                        num(c.analytic, 7),
                        c.unit,
                        c.analytic_method
                    ),
                    format!("sim {:.d$} ± {:.d$} {}", c.sim, c.sim_half_width, c.unit),
                    format!("diff {:+.2} CI", c.diff_half_widths),
                    tail,
                ]
            })
            .collect();
        let mut w = [0usize; 4];
        for r in &rows {
            for i in 0..4 {
                w[i] = w[i].max(r[i].chars().count());
            }
        }
        for r in rows {
            let pad = |i: usize| " ".repeat(w[i] - r[i].chars().count());
            let line = format!(
                "  {}{}  {}{} | {}{} | {}{}{}",
                r[0],
                pad(0),
                r[1],
                pad(1),
                r[2],
                pad(2),
                r[3],
                pad(3),
                r[4]
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_fractions() {
        assert_eq!(num(23.000001, 6), "23.0000");
        assert_eq!(num(0.705283, 4), "0.7053");
        assert_eq!(num(1.0e-7, 3), "1.00e-7");
        assert_eq!(parse_fraction("119/120").unwrap(), 119.0 / 120.0);
        assert!(parse_fraction("x").is_err());
        assert!(parse_fraction("1/0").is_err());
        assert!(max_tokens("--max-tokens", Some(0.5)).is_err());
        assert!(max_tokens("--max-tokens", Some(f64::NAN)).is_err());
        assert_eq!(max_tokens("--max-tokens", None).unwrap(), f64::INFINITY);
    }

    #[test]
    fn comparison_flags_only_exact_values_beyond_two_half_widths() {
        let sim = Estimate {
            value: 10.0,
            half_width: 0.5,
        };
        let c = Comparison::new("w".into(), "s", 11.5, Method::Exact, sim);
        assert!((c.diff_half_widths + 3.0).abs() < 1e-12 && c.flagged && c.note.is_none());
        let c = Comparison::new("w".into(), "s", 10.9, Method::Exact, sim);
        assert!((c.diff_half_widths + 1.8).abs() < 1e-12 && !c.flagged);
        for m in [Method::Bound, Method::Approximation] {
            let c = Comparison::new("w".into(), "s", 20.0, m, sim);
            assert!(!c.flagged && c.note.is_some());
        }
        // A quantity the simulation holds fixed: equal → 0, different → flagged.
        let k = Estimate {
            value: 4.0,
            half_width: 0.0,
        };
        assert_eq!(
            Comparison::new("b".into(), "req", 4.0, Method::Exact, k).diff_half_widths,
            0.0
        );
        assert!(Comparison::new("b".into(), "req", 3.0, Method::Exact, k).flagged);
    }
}
