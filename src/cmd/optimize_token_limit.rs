//! `tokenq optimize token-limit`: the provider's objective over the max-token limit
//! (docs/models.md §3, paper eqs. 10–13) and its argmax L*, with the whole curve.

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use pipeline::token_limit::{LimitQuestion, UtilityKind};

use super::common::{Mg1WorkloadArgs, parse_fraction, positive, print_json};

/// The utility U(n, L) (both are 1 when n ≤ L).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
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
    /// Machine-readable output (fields in docs/usage.md).
    #[arg(long)]
    pub json: bool,
}

/// Run `tokenq optimize token-limit`.
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
    super::common::at_most(
        "--max-limit",
        a.max_limit,
        queueing::dist::MAX_TOKENS,
        "tokens",
    )?;
    if let Some(b) = a.baseline {
        super::common::at_most("--baseline", b, queueing::dist::MAX_TOKENS, "tokens")?;
    }
    if a.grid_step < 1.0 || !a.max_limit.is_finite() || a.max_limit < a.grid_step {
        bail!(
            "need 1 <= --grid-step <= --max-limit, got --grid-step {} --max-limit {}",
            a.grid_step,
            a.max_limit
        );
    }
    check_work(&a, w.patience.is_some())?;
    let q = LimitQuestion {
        utility: match a.utility {
            UtilityArg::Step => UtilityKind::Step,
            UtilityArg::Fraction => UtilityKind::Fraction,
        },
        weight: a.weight,
        lost_cost: a.lost_cost,
        grid_step: a.grid_step,
        max_limit: a.max_limit,
        refine: a.refine,
        baseline: a.baseline,
    };
    let out = pipeline::token_limit::answer(&w, &q)?;
    if a.json {
        return print_json(&out);
    }
    print!("{}", pipeline::token_limit::render(&out));
    Ok(())
}

/// Most limits evaluated on the grid (and in the `--refine` window).
const MAX_LIMITS: f64 = 100_000.0;
/// Most limits × grid cells of the impatient curve (each limit is a level-crossing solve).
const MAX_IMPATIENT_WORK: f64 = 4.0e8;

/// Refuse a grid whose work is out of proportion before starting, naming the flags.
fn check_work(a: &OptimizeTokenLimitArgs, impatient: bool) -> Result<()> {
    let limits = (a.max_limit / a.grid_step + 1e-9).floor();
    if limits > MAX_LIMITS {
        bail!(
            "--grid-step {} --max-limit {} evaluates {limits} limits: at most {MAX_LIMITS}; raise --grid-step or lower --max-limit",
            a.grid_step,
            a.max_limit
        );
    }
    let window = 2.0 * a.grid_step.floor() + 1.0;
    if a.refine && window > MAX_LIMITS {
        bail!(
            "--refine with --grid-step {} scans {window} integer limits around the grid optimum: at most {MAX_LIMITS}; lower --grid-step",
            a.grid_step
        );
    }
    let cells = a.workload.grid_cells as f64;
    let points = limits + if a.refine { window } else { 0.0 };
    if impatient && points * cells > MAX_IMPATIENT_WORK {
        bail!(
            "--patience with {points} limits × --grid-cells {} is {:.1e} cells of level-crossing solves: at most {MAX_IMPATIENT_WORK:.0e}; raise --grid-step, lower --max-limit or --grid-cells",
            a.workload.grid_cells,
            points * cells
        );
    }
    Ok(())
}
