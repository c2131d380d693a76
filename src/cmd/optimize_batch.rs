//! `tokenq optimize batch-size`: the batch size that maximises inference speed `K/E[T_K]`
//! (paper eq 24), or minimises mean latency / wait under fixed batching (eq 25, exact chain and
//! the paper's deterministic-`T_K` roots formula), or the best cap for dynamic / elastic batching
//! (docs/models.md §6 "Optimal K", §7, §10 item 16).

use anyhow::Result;
use clap::{Args, ValueEnum};
use queueing::batch::Objective;

use pipeline::batch::convergence_hint;

use super::common::{BatchModelArgs, PolicyArg, print_json};

/// `--objective`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ObjectiveArg {
    /// Mean latency: wait + own processing (default).
    Latency,
    /// Mean wait to batch start.
    Wait,
    /// Inference speed K/E[T_K] (requests per second); needs no arrival rate.
    Speed,
}

/// `tokenq optimize batch-size`.
#[derive(Debug, Clone, Args)]
pub struct OptimizeBatchArgs {
    /// Batching policy: fixed (optimal K), dynamic or elastic (optimal cap K).
    #[arg(long, value_enum, default_value = "fixed")]
    pub policy: PolicyArg,
    /// What to optimise.
    #[arg(long, value_enum, default_value = "latency")]
    pub objective: ObjectiveArg,
    /// Poisson arrival rate, requests per second (not needed for --objective speed).
    #[arg(long, value_name = "REQ_PER_S", allow_hyphen_values = true)]
    pub arrival_rate: Option<f64>,
    /// Largest batch size considered.
    #[arg(long, value_name = "K", default_value_t = 256)]
    pub max_k: usize,
    #[command(flatten)]
    pub model: BatchModelArgs,
    /// Machine-readable output (fields in docs/usage.md).
    #[arg(long)]
    pub json: bool,
}

/// Run `tokenq optimize batch-size`.
pub fn run(a: OptimizeBatchArgs) -> Result<()> {
    let model = a.model.model()?;
    let objective = match a.objective {
        ObjectiveArg::Latency => Objective::Latency,
        ObjectiveArg::Wait => Objective::Wait,
        ObjectiveArg::Speed => Objective::Speed,
    };
    let out =
        pipeline::batch::optimize_size(&model, a.policy.into(), objective, a.arrival_rate, a.max_k)
            .map_err(|e| convergence_hint(e, &a.model.tokens, a.model.max_tokens, true))?;
    if a.json {
        return print_json(&out);
    }
    print!("{}", pipeline::batch::render_size(&out));
    Ok(())
}
