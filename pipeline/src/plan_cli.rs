//! `tokenq plan`'s run: its flags, as given ([`PlanFlags`]), → [`PlanConfig`] → the answer,
//! printed (docs/usage.md "tokenq plan"). With `--rate` the planner answers questions (a)–(c)
//! at that rate ([`crate::plan::plan`], and `--plots`); without it, question (b) alone: every
//! policy and limit's goodput on one GPU, largest first ([`crate::plan::goodput_plan`]).

use std::path::Path;

use anyhow::{Context, Result, bail};
use tokenq_core::CoefficientsFile;

use crate::plan::{ContinuousFlags, PlanConfig, Slo, default_limits};

/// A policy `tokenq plan --policy` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// One request at a time (exact M/G/1; the single-request line).
    Single,
    /// Dynamic batching (simulated; the batch lines).
    Dynamic,
    /// Continuous batching as vLLM runs it (replayed; a step model).
    Continuous,
}

/// `--policy` values, as clap lists them.
pub const POLICY_NAMES: [&str; 3] = ["single", "dynamic", "continuous"];

/// `--routing` values, as clap lists them.
pub const ROUTING_NAMES: [&str; 3] = ["random", "round-robin", "shortest-queue"];

impl PolicyKind {
    /// `single`, `dynamic` or `continuous`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "single" => Ok(Self::Single),
            "dynamic" => Ok(Self::Dynamic),
            "continuous" => Ok(Self::Continuous),
            _ => Err(format!("give one of {}", POLICY_NAMES.join(", "))),
        }
    }
}

/// `random`, `round-robin` or `shortest-queue`.
pub fn parse_routing(s: &str) -> Result<sim::routing::Routing, String> {
    match s {
        "random" => Ok(sim::routing::Routing::Random),
        "round-robin" => Ok(sim::routing::Routing::RoundRobin),
        "shortest-queue" => Ok(sim::routing::Routing::ShortestQueue),
        _ => Err(format!("give one of {}", ROUTING_NAMES.join(", "))),
    }
}

/// `tokenq plan`'s flags, as given.
#[derive(Debug)]
pub struct PlanFlags<'a> {
    /// `--coefficients`.
    pub coefficients: &'a Path,
    /// `--tokens` (none: `--trace` brings the lengths).
    pub tokens: Option<&'a str>,
    /// `--trace`.
    pub trace: Option<&'a str>,
    /// `--rate` (none: question (b) alone).
    pub rate: Option<f64>,
    /// `--slo`, each as written.
    pub slos: &'a [String],
    /// `--min-served-fraction`.
    pub min_served_fraction: f64,
    /// `--max-gpus`.
    pub max_gpus: u32,
    /// `--limits` (empty: the workload's percentiles and no limit).
    pub limits: &'a [f64],
    /// `--caps`.
    pub caps: &'a [u32],
    /// `--sim-requests`, as written.
    pub sim_requests: &'a str,
    /// `--seed`.
    pub seed: u64,
    /// `--policy` (empty: every one the inputs support).
    pub policies: &'a [PolicyKind],
    /// `--routing`.
    pub routing: sim::routing::Routing,
    /// Continuous batching's engine flags (`--kv-blocks`, `--step-table`, …).
    pub engine: crate::replay::EngineFile,
    /// `--engine-config`.
    pub engine_config: Option<&'a Path>,
    /// `--input-tokens`.
    pub input_tokens: Option<&'a str>,
    /// `--replay-requests`, as written.
    pub replay_requests: &'a str,
    /// `--replications`.
    pub replications: u32,
}

impl PlanFlags<'_> {
    /// The planner's question (`rate` NaN without `--rate`: only
    /// [`crate::plan::goodput_plan`] answers it then).
    pub fn config(&self) -> Result<PlanConfig> {
        let file = CoefficientsFile::read(self.coefficients)
            .with_context(|| format!("--coefficients {}", self.coefficients.display()))?;
        let trace = match self.trace {
            Some(spec) => Some(std::sync::Arc::new(crate::plan_trace::PlanTrace::load(
                spec,
            )?)),
            None => None,
        };
        let (tokens, tokens_spec) = match (&trace, self.tokens) {
            (Some(t), None) => (t.output_law()?, t.describe()),
            (None, Some(s)) => (crate::values::parse_tokens("--tokens", s)?, s.to_string()),
            (Some(_), Some(_)) => bail!(
                "--tokens: a --trace brings its own output lengths; give one of --tokens and --trace"
            ),
            (None, None) => {
                bail!("give --tokens DIST (output lengths) or --trace TRACE (a recorded workload)")
            }
        };
        let slos = Slo::parse_all(self.slos)?;
        let limits = match self.limits {
            [] => default_limits(&tokens),
            l => l.to_vec(),
        };
        let (service, service_hi, batch) = crate::plan::service_models(&file)
            .with_context(|| format!("--coefficients {}", self.coefficients.display()))?;
        let wants = |p| self.policies.is_empty() || self.policies.contains(&p);
        let single = wants(PolicyKind::Single);
        let batch = batch.filter(|_| wants(PolicyKind::Dynamic));
        let has_step_model = self.engine.step_table.is_some() || file.step_time.is_some();
        let continuous = if wants(PolicyKind::Continuous) && has_step_model {
            Some(crate::plan::continuous_setup(&ContinuousFlags {
                engine: self.engine.clone(),
                engine_config: self.engine_config,
                coefficients: (self.coefficients, &file),
                tokens: &tokens_spec,
                input_tokens: self.input_tokens,
                requests: self.replay_requests,
                replications: self.replications,
                input_law: match &trace {
                    Some(t) => Some((t.input_law()?, "the trace's prompt lengths".into())),
                    None => None,
                },
            })?)
        } else if self.policies.contains(&PolicyKind::Continuous) {
            bail!(
                "--policy continuous needs a step model: give --step-table DIR, or a --coefficients file with a [step_time] section (tokenq fit --step-model)"
            );
        } else {
            None
        };
        let sim_requests = crate::values::parse_count(self.sim_requests).map_err(|_| {
            anyhow::anyhow!(
                "--sim-requests {}: expected a whole number of requests such as 100000 or 1e5",
                self.sim_requests
            )
        })?;
        Ok(PlanConfig {
            tokens,
            tokens_spec,
            rate: self.rate.unwrap_or(f64::NAN),
            slos,
            min_served_fraction: self.min_served_fraction,
            max_gpus: self.max_gpus,
            service: service.filter(|_| single),
            batch,
            service_hi: service_hi.filter(|_| single),
            batch_hi: batch.and(crate::plan::batch_hi(&file)),
            caps: self.caps.to_vec(),
            limits,
            sim_requests,
            seed: self.seed,
            goodput_top: 3,
            routing: self.routing,
            continuous,
            paper_policies: wants(PolicyKind::Single) || wants(PolicyKind::Dynamic),
            trace,
        })
    }
}

/// Run `tokenq plan`: answer the question, write the figures (`plots`, needs `--rate`), print
/// the answer (`json`: as JSON; else `rows` rows of its table).
pub fn run(f: &PlanFlags, rows: usize, json: bool, plots: Option<&Path>) -> Result<()> {
    if f.rate.is_none()
        && let Some(dir) = plots
    {
        bail!(
            "--plots {}: the figures are drawn at rates up to twice --rate; give --rate R",
            dir.display()
        );
    }
    let cfg = f.config()?;
    if f.rate.is_none() {
        let a = crate::plan::goodput_plan(&cfg)?;
        return show(&a, json, |a| crate::plan::render_goodputs(a, rows));
    }
    let answer = crate::plan::plan(&cfg)?;
    if let Some(dir) = plots {
        crate::plan_plots::write(&cfg, &answer, dir)?;
    }
    show(&answer, json, |a| crate::plan::render(a, rows))
}

/// Print `v` as pretty JSON, or as `text` gives it.
fn show<T: serde::Serialize>(v: &T, json: bool, text: impl FnOnce(&T) -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        print!("{}", text(v));
    }
    Ok(())
}
