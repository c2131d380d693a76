//! `tokenq queue mg1`: flags → [`Workload`] → [`pipeline::mg1::answer`] (docs/models.md §1,
//! §2; `--validate` simulates the same system, §11).

use anyhow::Result;
use clap::Args;

use super::common::{Mg1WorkloadArgs, ValidateArgs, max_tokens, print_json};

/// `tokenq queue mg1`.
#[derive(Debug, Clone, Args)]
pub struct QueueMg1Args {
    #[command(flatten)]
    pub workload: Mg1WorkloadArgs,
    /// Max-token limit L (tokens); omit for no limit.
    #[arg(long, value_name = "L", allow_hyphen_values = true)]
    pub max_tokens: Option<f64>,
    #[command(flatten)]
    pub validate: ValidateArgs,
    /// Machine-readable output (fields in docs/usage.md).
    #[arg(long)]
    pub json: bool,
    /// Also print these percentiles of the wait and the latency (exact; of served users with
    /// --patience), e.g. 50,90,99.
    #[arg(long, value_delimiter = ',', value_name = "P")]
    pub percentiles: Vec<f64>,
}

/// Run `tokenq queue mg1`.
pub fn run(a: QueueMg1Args) -> Result<()> {
    let w = a.workload.validate()?;
    let l = max_tokens("--max-tokens", a.max_tokens)?;
    let sim = a.validate.settings()?;
    if let Some(p) = a.percentiles.iter().find(|&&p| !(p > 0.0 && p < 100.0)) {
        anyhow::bail!("--percentiles {p}: give percentiles between 0 and 100, e.g. 50,90,99");
    }
    let ps: Vec<f64> = a.percentiles.iter().map(|p| p / 100.0).collect();
    let out = pipeline::mg1::answer(&w, a.max_tokens, l, sim.as_ref(), &ps)?;
    if a.json {
        return print_json(&out);
    }
    print!("{}", pipeline::mg1::render(&out));
    Ok(())
}
