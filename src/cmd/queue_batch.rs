//! `tokenq queue batch`: mean wait and latency under dynamic, fixed or elastic batching
//! (docs/models.md §4–§8, paper §IV), every estimate labelled exact, bound or approximation.
//!
//! Batch time of `b` requests: `T_b = t1(b) + t2(b)·M_b` with `t1(b) = K1·b + K2` (first token,
//! `--first-token-s K1,K2`), `t2(b) = K3·b + K4` (each later token, `--decode-step-s K3,K4`) and
//! `M_b` the largest decode length in the batch, drawn from `--tokens`. Instead of the two
//! flags, `--coefficients FILE` (written by `tokenq fit`) gives K1..K4 from its `[first_token]`
//! and `[decode_step]` lines.
//!
//! `--validate` simulates the same policy (docs/models.md §11) beside the analytic estimates: with
//! continuous decode lengths as the analytic law reads them, or, with `--max-tokens L`, with the
//! simulator's integer lengths `min(max(1, round X), L)`, which is what the analytic model then
//! uses too.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};
use queueing::batch::{
    BatchConfig, BatchError, BatchReport, BatchTime, ChainOptions, LlmBatch, Policy,
};
use serde::Serialize;

use pipeline::check::{Comparison, Validation};

use super::common::ValidateArgs;

/// The batch-time model flags shared by `queue batch` and `optimize batch-size`.
#[derive(Debug, Clone, Args)]
pub struct BatchModelArgs {
    /// Decode-token distribution (tokens after the first): uniform:LO,HI | duniform:LO,HI |
    /// normal:MEAN,SD[,LO,HI] | lognormal:MU,SIGMA | const:N | empirical:PATH[:COLUMN] | a
    /// built-in dataset name.
    #[arg(long, value_name = "DIST")]
    pub tokens: String,
    /// First-token time t1(b) = K1·b + K2 in seconds (K1 per request in the batch).
    #[arg(
        long,
        value_name = "K1,K2",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    pub first_token_s: Vec<f64>,
    /// Per-decode-token time t2(b) = K3·b + K4 in seconds (K3 per request in the batch).
    #[arg(
        long,
        value_name = "K3,K4",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    pub decode_step_s: Vec<f64>,
    /// Coefficients file written by `tokenq fit` (e.g.
    /// datasets/coefficients/a100-llama-2-7b-vidur.toml): K1..K4 from its batch lines, instead of
    /// --first-token-s/--decode-step-s.
    #[arg(long, value_name = "FILE")]
    pub coefficients: Option<PathBuf>,
    /// Max-token limit L: decode lengths become integers n = min(max(1, round(X)), L), as the
    /// simulator draws them (docs/models.md §11).
    #[arg(long, value_name = "L")]
    pub max_tokens: Option<u64>,
}

fn pair(flag: &str, names: [&str; 2], v: &[f64]) -> Result<[f64; 2]> {
    if v.len() != 2 {
        bail!(
            "--{flag} needs two comma-separated numbers {},{} (seconds), got {}",
            names[0],
            names[1],
            v.len()
        );
    }
    for (n, x) in names.iter().zip(v) {
        if !(x.is_finite() && *x >= 0.0) {
            bail!("--{flag}: {n} = {x} must be a finite number ≥ 0 seconds");
        }
    }
    Ok([v[0], v[1]])
}

impl BatchModelArgs {
    /// Validate into the library's batch model.
    pub fn model(&self) -> Result<LlmBatch> {
        let raw = !self.first_token_s.is_empty() || !self.decode_step_s.is_empty();
        let [k1, k2, k3, k4] = match (&self.coefficients, raw) {
            (Some(_), true) => bail!(
                "give either --coefficients FILE or --first-token-s/--decode-step-s, not both"
            ),
            (Some(f), false) => super::coefficients_args::load(f)?.batch_k().ok_or_else(|| {
                anyhow::anyhow!(
                    "--coefficients {}: the file has no [first_token] and [decode_step] lines (fit a profile with two or more batch sizes, or pass --first-token-s K1,K2 --decode-step-s K3,K4)",
                    f.display()
                )
            })?,
            (None, false) => bail!(
                "no batch coefficients: pass --coefficients FILE (from `tokenq fit`, e.g. datasets/coefficients/a100-llama-2-7b-vidur.toml) or --first-token-s K1,K2 --decode-step-s K3,K4"
            ),
            (None, true) => {
                let [k1, k2] = pair("first-token-s", ["K1", "K2"], &self.first_token_s)?;
                let [k3, k4] = pair("decode-step-s", ["K3", "K4"], &self.decode_step_s)?;
                [k1, k2, k3, k4]
            }
        };
        if k1 + k2 <= 0.0 {
            bail!("--first-token-s: t1(1) = K1 + K2 must be > 0 seconds");
        }
        let coeffs = BatchTime::new(k1, k2, k3, k4).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut dist = super::common::parse_tokens("--tokens", &self.tokens)?;
        if let Some(l) = self.max_tokens {
            if l == 0 {
                bail!("--max-tokens 0: the limit L must be at least 1 token");
            }
            dist = queueing::batch::integer_tokens(&dist, Some(l))
                .map_err(|e| anyhow::anyhow!("--max-tokens {l}: {e}"))?;
        }
        LlmBatch::new(coeffs, dist).map_err(|e| anyhow::anyhow!("--tokens: {e}"))
    }
}

/// `--policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    /// Take every waiting request (at most --max-batch).
    Dynamic,
    /// Start only with exactly --max-batch requests (M/D^K/1).
    Fixed,
    /// Dynamic batch, each request returns at its own length.
    Elastic,
}

impl From<PolicyArg> for Policy {
    fn from(p: PolicyArg) -> Self {
        match p {
            PolicyArg::Dynamic => Policy::Dynamic,
            PolicyArg::Fixed => Policy::Fixed,
            PolicyArg::Elastic => Policy::Elastic,
        }
    }
}

/// `tokenq queue batch`.
#[derive(Debug, Clone, Args)]
pub struct QueueBatchArgs {
    /// Batching policy.
    #[arg(long, value_enum)]
    pub policy: PolicyArg,
    /// K: the batch size (fixed, required) or the cap (dynamic, elastic; unbounded if absent).
    #[arg(long, value_name = "K")]
    pub max_batch: Option<usize>,
    /// Poisson arrival rate, requests per second.
    #[arg(long, value_name = "REQ_PER_S", allow_hyphen_values = true)]
    pub arrival_rate: f64,
    #[command(flatten)]
    pub model: BatchModelArgs,
    #[command(flatten)]
    pub validate: ValidateArgs,
    /// Machine-readable output (documented in README, "Batching models").
    #[arg(long)]
    pub json: bool,
}

/// Validated `queue batch` question.
fn config(a: &QueueBatchArgs) -> Result<BatchConfig> {
    super::common::positive("--arrival-rate", a.arrival_rate, "requests per second")?;
    match (a.policy, a.max_batch) {
        (_, Some(0)) => bail!("--max-batch 0: the batch size K must be at least 1"),
        (PolicyArg::Fixed, None) => {
            bail!("--policy fixed needs --max-batch K (the fixed batch size)")
        }
        _ => {}
    }
    Ok(BatchConfig {
        policy: a.policy.into(),
        max_batch: a.max_batch,
        arrival_rate: a.arrival_rate,
        model: a.model.model()?,
        chain: ChainOptions::default(),
    })
}

#[derive(Serialize)]
struct JsonChain {
    states: usize,
    tail_mass: f64,
    solver: queueing::batch::Solver,
    p_no_arrival: f64,
    mean_batch_sq: f64,
}

#[derive(Serialize)]
struct JsonEstimate {
    label: String,
    method: queueing::Method,
    heuristic: bool,
    wait_s: Option<f64>,
    latency_s: f64,
    mean_batch: Option<f64>,
    chain: Option<JsonChain>,
}

#[derive(Serialize)]
struct JsonReport {
    policy: Policy,
    max_batch: Option<usize>,
    arrival_rate_req_s: f64,
    tokens: String,
    mean_decode_tokens: f64,
    k1: f64,
    k2: f64,
    k3: f64,
    k4: f64,
    load: f64,
    max_stable_rate_req_s: f64,
    estimates: Vec<JsonEstimate>,
    /// With --validate: the simulation beside the estimates; null otherwise.
    validation: Option<Validation>,
}

fn to_json(r: &BatchReport, m: &LlmBatch, validation: Option<Validation>) -> JsonReport {
    JsonReport {
        policy: r.policy,
        max_batch: r.max_batch,
        arrival_rate_req_s: r.arrival_rate,
        tokens: m.tokens.dist().describe(),
        mean_decode_tokens: m.tokens.mean(),
        k1: m.coeffs.k1,
        k2: m.coeffs.k2,
        k3: m.coeffs.k3,
        k4: m.coeffs.k4,
        load: r.load,
        max_stable_rate_req_s: r.max_stable_rate,
        estimates: r
            .estimates
            .iter()
            .map(|e| JsonEstimate {
                label: e.label.clone(),
                method: e.method,
                heuristic: e.heuristic,
                wait_s: e.wait_s,
                latency_s: e.latency_s,
                mean_batch: e.mean_batch,
                chain: e.chain.as_ref().map(|c| JsonChain {
                    states: c.states,
                    tail_mass: c.tail_mass,
                    solver: c.solver,
                    p_no_arrival: c.p_no_arrival,
                    mean_batch_sq: c.mean_batch_sq,
                }),
            })
            .collect(),
        validation,
    }
}

/// Simulate the same batching system and compare every analytic estimate with it.
fn validate(a: &QueueBatchArgs, cfg: &BatchConfig, r: &BatchReport) -> Result<Validation> {
    let batch = cfg.model.coeffs;
    let cap = a
        .max_batch
        .map(|k| {
            u32::try_from(k).map_err(|_| anyhow::anyhow!("--max-batch {k}: too large to simulate"))
        })
        .transpose()?;
    let policy = match a.policy {
        PolicyArg::Dynamic => sim::Policy::Dynamic {
            batch,
            max_batch: cap,
        },
        PolicyArg::Elastic => sim::Policy::Elastic {
            batch,
            max_batch: cap,
        },
        PolicyArg::Fixed => sim::Policy::Fixed {
            batch,
            batch_size: cap.unwrap_or(1),
        },
    };
    // With --max-tokens the analytic model already uses the simulator's integer lengths; give
    // the simulator the law as written and let it round and clip. Without, both read it as is.
    let (law, max_tokens, token_mode) = match a.model.max_tokens {
        Some(l) => (
            super::common::parse_tokens("--tokens", &a.model.tokens)?,
            Some(l as f64),
            sim::TokenMode::Integer,
        ),
        None => (
            cfg.model.tokens.dist().clone(),
            None,
            sim::TokenMode::Continuous,
        ),
    };
    let scenario = sim::Scenario {
        policy,
        arrivals: sim::Arrivals::Poisson {
            rate_rps: cfg.arrival_rate,
        },
        tokens: sim::Tokens::Law(sim::TokenLaw::Dist(law)),
        max_tokens,
        token_mode,
    };
    let s = a.validate.simulate(&scenario)?;
    let mut out = Vec::new();
    for e in &r.estimates {
        if let Some(w) = e.wait_s {
            out.push(Comparison::new(
                format!("{}: wait", e.label),
                "s",
                w,
                e.method,
                s.wait_s.mean,
            ));
        }
        out.push(Comparison::new(
            format!("{}: latency", e.label),
            "s",
            e.latency_s,
            e.method,
            s.latency_s.mean,
        ));
        if let Some(b) = e.mean_batch {
            out.push(Comparison::new(
                format!("{}: mean batch", e.label),
                "req",
                b,
                e.method,
                s.mean_batch_size,
            ));
        }
    }
    Ok(a.validate.validation(&s, token_mode, out))
}

/// A method label with the heuristic mark.
pub fn method_label(m: queueing::Method, heuristic: bool) -> String {
    if heuristic {
        format!("{m} (heuristic)")
    } else {
        m.to_string()
    }
}

/// Prints rows as left-aligned columns.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        println!("  {}", s.join("  ").trim_end());
    };
    line(header.to_vec());
    for r in rows {
        line(r.iter().map(String::as_str).collect());
    }
}

fn describe_model(m: &LlmBatch) -> String {
    let c = m.coeffs;
    format!(
        "T_b = ({}·b + {}) + ({}·b + {})·M_b s, decode tokens ~ {} (mean {:.1})",
        c.k1,
        c.k2,
        c.k3,
        c.k4,
        m.tokens.dist().describe(),
        m.tokens.mean()
    )
}

/// Run `tokenq queue batch`.
pub fn run(a: QueueBatchArgs) -> Result<()> {
    let cfg = config(&a)?;
    let report = queueing::batch::analyze(&cfg).map_err(|e| {
        let hint = match &e {
            BatchError::NeverStable { .. } => " (flags: --max-batch K, or --policy elastic)",
            BatchError::Unstable { .. } => " (lower --arrival-rate, or change --max-batch)",
            _ => "",
        };
        anyhow::anyhow!(
            "{} batching at --arrival-rate {} req/s: {e}{hint}",
            cfg.policy,
            cfg.arrival_rate
        )
    })?;
    let validation = if a.validate.validate {
        Some(validate(&a, &cfg, &report)?)
    } else {
        None
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&report, &cfg.model, validation))?
        );
        return Ok(());
    }
    let size = match (report.policy, report.max_batch) {
        (Policy::Fixed, Some(k)) => format!("batches of exactly K = {k}"),
        (_, Some(k)) => format!("at most K = {k} per batch"),
        (_, None) => "unbounded batches".into(),
    };
    println!(
        "{} batching, {size}, λ = {} req/s",
        report.policy, report.arrival_rate
    );
    println!("  {}", describe_model(&cfg.model));
    println!(
        "  load ρ = {:.4}; largest stable arrival rate {:.6} req/s",
        report.load, report.max_stable_rate
    );
    println!();
    let rows: Vec<Vec<String>> = report
        .estimates
        .iter()
        .map(|e| {
            vec![
                e.label.clone(),
                method_label(e.method, e.heuristic),
                e.wait_s.map_or("–".into(), |w| format!("{w:.6}")),
                format!("{:.6}", e.latency_s),
                e.mean_batch.map_or("–".into(), |b| format!("{b:.4}")),
            ]
        })
        .collect();
    print_table(
        &[
            "estimate",
            "method",
            "wait (s)",
            "latency (s)",
            "mean batch (req)",
        ],
        &rows,
    );
    println!();
    for e in &report.estimates {
        if let Some(c) = &e.chain {
            let solver = match c.solver {
                queueing::batch::Solver::Gth => "GTH direct solve".to_string(),
                queueing::batch::Solver::Power { iterations } => {
                    format!("power iteration, {iterations} sweeps")
                }
            };
            println!(
                "  {}: {} states, tail mass {:.1e}, {solver}",
                e.label, c.states, c.tail_mass
            );
        }
        if e.heuristic {
            println!(
                "  {}: Inoue's theorem assumes deterministic batch times; with random T_b it is \
                 not guaranteed to bound (docs/models.md §10 item 13)",
                e.label
            );
        }
    }
    println!("  wait = arrival → batch start; latency = arrival → the request's own completion");
    if let Some(v) = &validation {
        println!();
        print!("{}", v.render());
    }
    Ok(())
}
