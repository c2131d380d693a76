//! `tokenq optimize token-limit`: the provider's objective over the max-token limit
//! (docs/models.md §3, paper eqs 10–13), its argmax L* and the whole curve, rendered.

use anyhow::{Result, bail};
use queueing::impatience::Abandonment;
use queueing::token_limit::{
    self, CurvePoint, FractionUtility, Impatience, Optimum, Problem, StepUtility, Utility,
};
use serde::Serialize;

use crate::mg1::{Approx, Workload};
use crate::text::{num, render_grid};

/// The utility U(n, L) (both are 1 when n ≤ L).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UtilityKind {
    /// U = 1{n ≤ L}: Ū = P(N ≤ L).
    Step,
    /// U = min(1, L/n): the delivered fraction.
    Fraction,
}

/// The question, validated.
#[derive(Debug, Clone)]
pub struct LimitQuestion {
    /// Utility U(n, L).
    pub utility: UtilityKind,
    /// Weight β on utility.
    pub weight: f64,
    /// Cost c_ℓ of a lost user.
    pub lost_cost: f64,
    /// Grid step of L, tokens.
    pub grid_step: f64,
    /// Largest L, tokens.
    pub max_limit: f64,
    /// Find the exact integer argmax near the grid optimum.
    pub refine: bool,
    /// Limit the waits are compared with (default: the largest).
    pub baseline: Option<f64>,
}

/// Most limits evaluated on the grid (and in the `--refine` window).
const MAX_LIMITS: f64 = 100_000.0;
/// Most limits × grid cells of the impatient curve (each limit is a level-crossing solve).
const MAX_IMPATIENT_WORK: f64 = 4.0e8;

impl LimitQuestion {
    /// Check the question against its flags' domains, and refuse a grid whose work is out of
    /// proportion before starting; each error names the flag and the fix.
    pub fn validate(&self, w: &Workload) -> Result<()> {
        if !(0.0..=1.0).contains(&self.weight) {
            bail!("--weight must be in [0, 1], got {}", self.weight);
        }
        if !(self.lost_cost.is_finite() && self.lost_cost >= 0.0) {
            bail!(
                "--lost-cost {}: give a cost ≥ 0 per lost user",
                self.lost_cost
            );
        }
        if self.lost_cost > 0.0 && w.patience.is_none() {
            bail!("--lost-cost needs --patience (only impatient users are lost)");
        }
        let max = queueing::dist::MAX_TOKENS;
        for (flag, v) in [
            ("--max-limit", Some(self.max_limit)),
            ("--baseline", self.baseline),
        ] {
            if let Some(v) = v
                && v > max
            {
                bail!("{flag} {v}: at most {max:e} tokens");
            }
        }
        if !(self.grid_step >= 1.0
            && self.max_limit.is_finite()
            && self.max_limit >= self.grid_step)
        {
            bail!(
                "need 1 <= --grid-step <= --max-limit, got --grid-step {} --max-limit {}",
                self.grid_step,
                self.max_limit
            );
        }
        let limits = (self.max_limit / self.grid_step + 1e-9).floor();
        if limits > MAX_LIMITS {
            bail!(
                "--grid-step {} --max-limit {} evaluates {limits} limits: at most {MAX_LIMITS}; raise --grid-step or lower --max-limit",
                self.grid_step,
                self.max_limit
            );
        }
        let window = 2.0 * self.grid_step.floor() + 1.0;
        if self.refine && window > MAX_LIMITS {
            bail!(
                "--refine with --grid-step {} scans {window} integer limits around the grid optimum: at most {MAX_LIMITS}; lower --grid-step",
                self.grid_step
            );
        }
        let cells = w.grid_cells as f64;
        let points = limits + if self.refine { window } else { 0.0 };
        if w.patience.is_some() && points * cells > MAX_IMPATIENT_WORK {
            bail!(
                "--patience with {points} limits × --grid-cells {} is {:.1e} cells of level-crossing solves: at most {MAX_IMPATIENT_WORK:.0e}; raise --grid-step, lower --max-limit or --grid-cells",
                w.grid_cells,
                points * cells
            );
        }
        Ok(())
    }
}

/// Everything `optimize token-limit` prints (its `--json` object).
#[derive(Debug, Serialize)]
pub struct LimitAnswer {
    model: &'static str,
    tokens: String,
    arrival_rate_per_s: f64,
    per_token_s: f64,
    intercept_s: f64,
    utility: UtilityKind,
    weight: f64,
    patience_s: Option<f64>,
    lost_cost: f64,
    abandonment: Option<Abandonment>,
    approx: Option<Approx>,
    grid_step: f64,
    max_limit: f64,
    baseline: Option<CurvePoint>,
    optimum: Optimum,
    refined: Option<CurvePoint>,
}

/// Evaluate the objective on the grid of limits and find its argmax.
pub fn answer(w: &Workload, a: &LimitQuestion) -> Result<LimitAnswer> {
    let utility: &dyn Utility = match a.utility {
        UtilityKind::Step => &StepUtility,
        UtilityKind::Fraction => &FractionUtility,
    };
    let problem = Problem {
        tokens: &w.tokens,
        arrival_rate: w.arrival_rate,
        service: w.service,
        weight: a.weight,
        utility,
        impatience: w.patience.map(|tau| Impatience {
            patience_s: tau,
            lost_cost: a.lost_cost,
            abandonment: w.abandonment,
            dekok_tijms: w.approx == Approx::DekokTijms,
            grid: w.grid_cells,
        }),
    };
    let limits = token_limit::grid(a.grid_step, a.max_limit)?;
    let opt = token_limit::optimize(&problem, &limits)?;
    let refined = if a.refine {
        Some(token_limit::refine(&problem, &opt, a.grid_step)?.best)
    } else {
        None
    };
    let baseline = match a.baseline {
        Some(b) => {
            if !(b.is_finite() && b >= 1.0) {
                bail!("--baseline must be a limit >= 1 token, got {b}");
            }
            Some(problem.evaluate(b)?)
        }
        None => opt.curve.last().cloned(),
    };
    Ok(LimitAnswer {
        model: "token_limit",
        tokens: w.tokens_spec.clone(),
        arrival_rate_per_s: w.arrival_rate,
        per_token_s: w.service.per_token_s,
        intercept_s: w.service.intercept_s,
        utility: a.utility,
        weight: a.weight,
        patience_s: w.patience,
        lost_cost: a.lost_cost,
        abandonment: w.patience.map(|_| w.abandonment),
        approx: w.patience.map(|_| w.approx),
        grid_step: a.grid_step,
        max_limit: a.max_limit,
        baseline,
        optimum: opt,
        refined,
    })
}

fn pct_vs(x: Option<f64>, base: Option<f64>) -> String {
    match (x, base) {
        (Some(x), Some(b)) if b > 0.0 => format!("{:+.2}", 100.0 * (x / b - 1.0)),
        _ => "n/a".into(),
    }
}

/// The human-readable form: the objective, the curve, L*.
pub fn render(o: &LimitAnswer) -> String {
    let mut out = String::new();
    let impatient = o.patience_s.is_some();
    out.push_str(&format!(
        "objective F(L) = β·Ū(L) − (1−β)·E[W_q](L){}; utility {}, β = {}, λ = {} req/s, \
         S = {} s/token × min(N, L) + {} s; method: {}\n",
        if impatient {
            format!(
                " − c_ℓ·π(τ; L), τ = {} s, c_ℓ = {}",
                num(o.patience_s.unwrap_or(0.0), 6),
                num(o.lost_cost, 6)
            )
        } else {
            String::new()
        },
        format!("{:?}", o.utility).to_lowercase(),
        num(o.weight, 6),
        o.arrival_rate_per_s,
        o.per_token_s,
        o.intercept_s,
        o.optimum.method,
    ));
    let base = o.baseline.as_ref();
    let bl = base.map_or("n/a".into(), |b| b.max_tokens.to_string());
    let wait_col = format!("wait vs L={bl} (%)");
    let header = [
        "L (tokens)",
        "U_bar",
        "rho",
        if impatient {
            "E[W_q] all users (s)"
        } else {
            "E[W_q] (s)"
        },
        "pi",
        "F(L)",
        wait_col.as_str(),
    ];
    let rows: Vec<[String; 7]> = o
        .optimum
        .curve
        .iter()
        .map(|p| {
            [
                p.max_tokens.to_string(),
                num(p.expected_utility, 6),
                num(p.utilisation, 5),
                p.mean_wait_s.map_or("unstable".into(), |w| num(w, 6)),
                p.loss_fraction.map_or("-".into(), |v| num(v, 5)),
                p.objective.map_or("infeasible".into(), |f| num(f, 7)),
                pct_vs(p.mean_wait_s, base.and_then(|b| b.mean_wait_s)),
            ]
        })
        .collect();
    out.push_str(&render_grid(&header, &rows));
    let b = &o.optimum.best;
    out.push_str(&format!(
        "L* = {} tokens on the grid: F = {}, Ū = {}, E[W_q] = {} s{}\n",
        b.max_tokens,
        num(b.objective.unwrap_or(f64::NAN), 7),
        num(b.expected_utility, 6),
        num(b.mean_wait_s.unwrap_or(f64::NAN), 6),
        b.loss_fraction
            .map_or(String::new(), |p| format!(", π = {}", num(p, 5)))
    ));
    if let Some(r) = &o.refined {
        out.push_str(&format!(
            "integer argmax within ±{} tokens: L* = {} tokens, F = {}\n",
            o.grid_step,
            r.max_tokens,
            num(r.objective.unwrap_or(f64::NAN), 7)
        ));
    }
    out
}
