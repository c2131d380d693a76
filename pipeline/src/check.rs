//! One analytic value beside its simulation estimate ([`Comparison`]), and the `validation`
//! object of `--validate` and of the pipeline's checks ([`Validation`]).
//!
//! The simulator (docs/models.md §11) gives an [`Estimate`] with its 95% confidence interval;
//! the difference from the model is counted in half-widths of that interval. An exact value more
//! than [`FLAG_HALF_WIDTHS`] half-widths away is flagged; a bound or an approximation is expected
//! to differ and is labelled so, not flagged.

use anyhow::Result;
use serde::Serialize;
use sim::{Report, RunConfig, Scenario, Stability, TokenMode};
use tokenq_core::{Estimate, Method};

use crate::text::num;

/// An exact analytic value farther than this many CI half-widths from the simulation is flagged.
pub const FLAG_HALF_WIDTHS: f64 = 2.0;
/// How to simulate a system beside its analytic model (`--validate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimSettings {
    /// Arrivals per replication.
    pub requests: u64,
    /// Master seed.
    pub seed: u64,
    /// Independent replications (1 = one run, CI from 30 batch means).
    pub replications: u32,
}

impl SimSettings {
    /// Simulate `scenario` with these settings.
    pub fn simulate(&self, scenario: &Scenario) -> Result<Report> {
        scenario
            .validate()
            .map_err(|e| anyhow::anyhow!("--validate: {e}"))?;
        let config = RunConfig {
            requests: self.requests,
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
    /// Whether the model value lies inside the simulation's interval.
    pub fn agrees(&self) -> bool {
        (self.analytic - self.sim).abs() <= self.sim_half_width
    }

    /// A 95% interval misses the true value in one check of twenty, so a model value just
    /// outside it is no evidence against an exact model; more than two half-widths is.
    pub fn verdict(&self) -> String {
        let d = self.diff_half_widths;
        if self.agrees() {
            format!("inside the interval, {d:+.2} half-widths")
        } else if d.abs() <= FLAG_HALF_WIDTHS {
            format!("just outside the 95% interval, {d:+.2} half-widths: expected in 1 check of 20")
        } else {
            format!("DISAGREES: {d:+.2} half-widths")
        }
    }

    /// (simulation − model) / model.
    pub fn rel_diff(&self) -> f64 {
        (self.sim - self.analytic) / self.analytic
    }

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
            Method::Measured | Method::Fitted => {
                Some("a measurement or fit: both sides carry error".into())
            }
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
    /// analytic law reads it; `integer`: n = min(max(1, round X), L), docs/models.md §11).
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

impl Validation {
    /// Assemble the validation object from a report and the comparisons built from it (the
    /// comparisons are dropped when the simulated queue did not reach a steady state).
    pub fn from_report(
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
