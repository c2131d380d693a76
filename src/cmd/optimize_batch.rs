//! `tokenq optimize batch-size`: the batch size that maximises inference speed `K/E[T_K]`
//! (paper eq 24), or minimises mean latency / wait under fixed batching (eq 25, exact chain and
//! the paper's deterministic-`T_K` roots formula), or the best cap for dynamic / elastic batching
//! (docs/models.md §6 "Optimal K", §7, §10 item 16).

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use queueing::Method;
use queueing::batch::{
    Candidate, ChainOptions, Objective, PaddedTreatment, optimize_cap, optimize_fixed,
    speed_optimum,
};
use serde::Serialize;

use super::queue_batch::{BatchModelArgs, PolicyArg, print_table};

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
    /// Machine-readable output (documented in README, "Batching models").
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct JsonChoice {
    k: usize,
    wait_s: f64,
    latency_s: f64,
    method: Method,
}

#[derive(Serialize)]
struct JsonOut {
    policy: String,
    objective: String,
    arrival_rate_req_s: Option<f64>,
    max_k: usize,
    speed_optimal_k: usize,
    speed_req_s: f64,
    speed_at_range_end: bool,
    /// Optimum by the exact chain (fixed: random T_K; dynamic: padded; elastic: gamma closure).
    best: Option<JsonChoice>,
    /// Fixed batching only: the optimum by the paper's roots formula with T_K := E[T_K].
    paper_best: Option<JsonChoice>,
    candidates: Vec<Candidate>,
}

fn choice(c: &Candidate, m: Method) -> JsonChoice {
    JsonChoice {
        k: c.k,
        wait_s: c.wait_s,
        latency_s: c.latency_s,
        method: m,
    }
}

/// Run `tokenq optimize batch-size`.
pub fn run(a: OptimizeBatchArgs) -> Result<()> {
    if a.max_k == 0 {
        bail!("--max-k 0: the largest batch size must be at least 1");
    }
    let model = a.model.model()?;
    let speed = speed_optimum(&model, a.max_k).map_err(|e| anyhow::anyhow!("{e}"))?;
    let opts = ChainOptions::default();
    let objective = match a.objective {
        ObjectiveArg::Latency => Objective::Latency,
        ObjectiveArg::Wait => Objective::Wait,
        ObjectiveArg::Speed => Objective::Speed,
    };
    let mut out = JsonOut {
        policy: format!("{:?}", a.policy).to_lowercase(),
        objective: format!("{:?}", a.objective).to_lowercase(),
        arrival_rate_req_s: a.arrival_rate,
        max_k: a.max_k,
        speed_optimal_k: speed.k,
        speed_req_s: speed.speed,
        speed_at_range_end: speed.at_range_end,
        best: None,
        paper_best: None,
        candidates: Vec::new(),
    };
    if objective != Objective::Speed {
        let Some(lambda) = a.arrival_rate else {
            bail!(
                "--objective {:?} needs --arrival-rate REQ_PER_S",
                a.objective
            );
        };
        if !(lambda.is_finite() && lambda > 0.0) {
            bail!("--arrival-rate {lambda} must be a positive number of requests per second");
        }
        let err = |e: queueing::batch::BatchError| anyhow::anyhow!("--arrival-rate {lambda}: {e}");
        match a.policy {
            PolicyArg::Fixed => {
                let ex = optimize_fixed(
                    &model,
                    lambda,
                    a.max_k,
                    objective,
                    PaddedTreatment::Random,
                    &opts,
                )
                .map_err(err)?;
                let paper = optimize_fixed(
                    &model,
                    lambda,
                    a.max_k,
                    objective,
                    PaddedTreatment::MeanOnly,
                    &opts,
                )
                .map_err(err)?;
                out.best = Some(choice(&ex.best, ex.method));
                out.paper_best = Some(choice(&paper.best, paper.method));
                out.candidates = ex.candidates;
            }
            PolicyArg::Dynamic | PolicyArg::Elastic => {
                let c = optimize_cap(
                    &model,
                    lambda,
                    a.max_k,
                    objective,
                    a.policy == PolicyArg::Elastic,
                    &opts,
                )
                .map_err(err)?;
                out.best = Some(choice(&c.best, c.method));
                out.candidates = c.candidates;
            }
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "speed-optimal batch size K_v = {} ({:.6} req/s){}",
        speed.k,
        speed.speed,
        if speed.at_range_end {
            format!("; speed still increasing at --max-k {}", a.max_k)
        } else {
            String::new()
        }
    );
    if let Some(b) = &out.best {
        let what = match a.policy {
            PolicyArg::Fixed => "fixed batch size",
            PolicyArg::Dynamic => "dynamic-batching cap",
            PolicyArg::Elastic => "elastic-batching cap",
        };
        println!(
            "{}-optimal {what} at λ = {} req/s: K = {} (wait {:.6} s, latency {:.6} s, {})",
            out.objective,
            a.arrival_rate.unwrap_or(f64::NAN),
            b.k,
            b.wait_s,
            b.latency_s,
            b.method
        );
        if let Some(p) = &out.paper_best {
            println!(
                "  paper's reading (T_K := E[T_K], roots formula): K = {} (wait {:.6} s, latency {:.6} s, {})",
                p.k, p.wait_s, p.latency_s, p.method
            );
        }
        let near: Vec<Vec<String>> = out
            .candidates
            .iter()
            .filter(|c| c.k + 3 >= b.k && c.k <= b.k + 3)
            .map(|c| {
                vec![
                    c.k.to_string(),
                    format!("{:.6}", c.wait_s),
                    format!("{:.6}", c.latency_s),
                ]
            })
            .collect();
        println!();
        print_table(&["K", "wait (s)", "latency (s)"], &near);
    }
    Ok(())
}
