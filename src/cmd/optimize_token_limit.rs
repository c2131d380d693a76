//! `tokenq optimize token-limit`: the provider's objective over the max-token limit
//! (docs/models.md §3, paper eqs. 10–13) and its argmax L*, with the whole curve.

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use queueing::impatience::Abandonment;
use queueing::token_limit::{
    self, CurvePoint, FractionUtility, Impatience, Optimum, Problem, StepUtility, Utility,
};
use serde::Serialize;

use pipeline::text::{num, render_grid};

use super::common::{parse_fraction, positive, print_json};
use super::queue_mg1::{ApproxArg, Mg1WorkloadArgs};

/// The utility U(n, L) (both are 1 when n ≤ L).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UtilityArg {
    /// U = 1{n ≤ L}: Ū = P(N ≤ L).
    Step,
    /// U = min(1, L/n): the delivered fraction.
    Fraction,
}

/// `tokenq optimize token-limit`.
#[derive(Debug, Clone, Args)]
pub struct OptimizeTokenLimitArgs {
    #[command(flatten)]
    pub workload: Mg1WorkloadArgs,
    /// Utility U(n, L).
    #[arg(long, value_enum, default_value = "step")]
    pub utility: UtilityArg,
    /// Weight β on utility (1 − β on the mean wait in seconds); a number or A/B. Default: the
    /// paper's patient setting 119/120.
    #[arg(long, value_name = "BETA", default_value = "119/120", value_parser = parse_fraction, allow_hyphen_values = true)]
    pub weight: f64,
    /// Cost c_ℓ per lost user (eq. 11; needs --patience).
    #[arg(
        long,
        value_name = "COST",
        default_value_t = 0.0,
        allow_hyphen_values = true
    )]
    pub lost_cost: f64,
    /// Grid step of the limits evaluated (tokens).
    #[arg(
        long,
        value_name = "TOKENS",
        default_value_t = 100.0,
        allow_hyphen_values = true
    )]
    pub grid_step: f64,
    /// Largest limit evaluated (tokens).
    #[arg(
        long,
        value_name = "TOKENS",
        default_value_t = 4000.0,
        allow_hyphen_values = true
    )]
    pub max_limit: f64,
    /// Also find the exact integer argmax within one grid step of the grid optimum.
    #[arg(long)]
    pub refine: bool,
    /// Limit the "wait vs baseline" column compares with (default: the largest limit).
    #[arg(long, value_name = "TOKENS")]
    pub baseline: Option<f64>,
    /// Machine-readable output (fields in README, "Single-server models").
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Output<'a> {
    model: &'static str,
    tokens: &'a str,
    arrival_rate_per_s: f64,
    per_token_s: f64,
    intercept_s: f64,
    utility: UtilityArg,
    weight: f64,
    patience_s: Option<f64>,
    lost_cost: f64,
    abandonment: Option<Abandonment>,
    approx: Option<ApproxArg>,
    grid_step: f64,
    max_limit: f64,
    baseline: Option<CurvePoint>,
    optimum: Optimum,
    refined: Option<CurvePoint>,
}

pub fn run(a: OptimizeTokenLimitArgs) -> Result<()> {
    let w = a.workload.validate()?;
    if !(0.0..=1.0).contains(&a.weight) {
        bail!("--weight must be in [0, 1], got {}", a.weight);
    }
    super::common::non_negative("--lost-cost", a.lost_cost, "")?;
    if a.lost_cost > 0.0 && w.patience.is_none() {
        bail!("--lost-cost needs --patience (only impatient users are lost)");
    }
    positive("--grid-step", a.grid_step, "tokens")?;
    if a.grid_step < 1.0 || !a.max_limit.is_finite() || a.max_limit < a.grid_step {
        bail!(
            "need 1 <= --grid-step <= --max-limit, got --grid-step {} --max-limit {}",
            a.grid_step,
            a.max_limit
        );
    }
    let utility: &dyn Utility = match a.utility {
        UtilityArg::Step => &StepUtility,
        UtilityArg::Fraction => &FractionUtility,
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
            dekok_tijms: w.approx == ApproxArg::DekokTijms,
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
    let out = Output {
        model: "token_limit",
        tokens: &w.tokens_spec,
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
    };
    if a.json {
        return print_json(&out);
    }
    print_human(&out);
    Ok(())
}

fn pct_vs(x: Option<f64>, base: Option<f64>) -> String {
    match (x, base) {
        (Some(x), Some(b)) if b > 0.0 => format!("{:+.2}", 100.0 * (x / b - 1.0)),
        _ => "n/a".into(),
    }
}

fn print_human(o: &Output<'_>) {
    let impatient = o.patience_s.is_some();
    println!(
        "objective F(L) = β·Ū(L) − (1−β)·E[W_q](L){}; utility {:?}, β = {}, λ = {} req/s, \
         S = {} s/token × min(N, L) + {} s; method: {}",
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
    );
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
    print!("{}", render_grid(&header, &rows));
    let b = &o.optimum.best;
    println!(
        "L* = {} tokens on the grid: F = {}, Ū = {}, E[W_q] = {} s{}",
        b.max_tokens,
        num(b.objective.unwrap_or(f64::NAN), 7),
        num(b.expected_utility, 6),
        num(b.mean_wait_s.unwrap_or(f64::NAN), 6),
        b.loss_fraction
            .map_or(String::new(), |p| format!(", π = {}", num(p, 5)))
    );
    if let Some(r) = &o.refined {
        println!(
            "integer argmax within ±{} tokens: L* = {} tokens, F = {}",
            o.grid_step,
            r.max_tokens,
            num(r.objective.unwrap_or(f64::NAN), 7)
        );
    }
}
