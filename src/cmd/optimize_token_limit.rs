//! `tokenq optimize token-limit`: the provider's objective over the max-token limit
//! (docs/models.md §3, paper eqs. 10–13) and its argmax L*, with the whole curve.

use anyhow::Result;
use clap::{Args, ValueEnum};
use pipeline::token_limit::{LimitQuestion, UtilityKind};

use super::common::{Mg1WorkloadArgs, parse_fraction, print_json};

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
    q.validate(&w)?;
    let out = pipeline::token_limit::answer(&w, &q)?;
    if a.json {
        return print_json(&out);
    }
    print!("{}", pipeline::token_limit::render(&out));
    Ok(())
}
