//! `tokenq queue batch`: mean wait and latency under dynamic, fixed or elastic batching
//! (docs/models.md §4–§8, paper §IV), every estimate labelled exact, bound or approximation,
//! and, with simulation settings, the same policy simulated (docs/models.md §11) beside them:
//! with continuous decode lengths as the analytic law reads them, or, with a max-token limit,
//! with the simulator's integer lengths `min(max(1, round X), L)`, which the analytic model then
//! uses too.

use std::fmt::Write as _;

use anyhow::{Result, bail};
use queueing::Method;
use queueing::batch::{
    BatchConfig, BatchError, BatchReport, Candidate, ChainOptions, LlmBatch, Objective,
    PaddedTreatment, Policy, optimize_cap, optimize_fixed, speed_optimum,
};
use queueing::dist::TokenDist;
use serde::Serialize;

use crate::check::{Comparison, SimSettings, Validation};
use crate::text::{columns, method_label};
use std::collections::BTreeMap;
use tokenq_core::Estimate;

/// The percentiles the simulator estimates (`sim::Summary`: p50, p90, p99).
pub const SIMULATED_PERCENTILES: [f64; 3] = [50.0, 90.0, 99.0];

/// Simulated percentiles of the wait and the latency (s), each with its 95% interval.
#[derive(Debug, Serialize)]
pub struct BatchPercentiles {
    /// `p50`, `p90`, `p99` → arrival to batch start (s).
    pub wait: BTreeMap<String, Estimate>,
    /// The same for arrival to the request's own completion (s).
    pub latency: BTreeMap<String, Estimate>,
    /// Always `simulation`: the embedded chains give means only.
    pub method: Method,
    /// Confidence level of the intervals.
    pub confidence: f64,
    /// Arrivals per replication, seed and replications of the run.
    pub requests: u64,
    /// Master seed.
    pub seed: u64,
    /// Independent replications (1: 30 batch means of one run).
    pub replications: u32,
}

#[derive(Debug, Serialize)]
struct JsonChain {
    states: usize,
    tail_mass: f64,
    solver: queueing::batch::Solver,
    p_no_arrival: f64,
    mean_batch_sq: f64,
}

#[derive(Debug, Serialize)]
struct JsonEstimate {
    label: String,
    method: queueing::Method,
    heuristic: bool,
    wait_s: Option<f64>,
    latency_s: f64,
    mean_batch: Option<f64>,
    chain: Option<JsonChain>,
}

/// Everything `queue batch` prints (its `--json` object).
#[derive(Debug, Serialize)]
pub struct BatchAnswer {
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
    /// With --percentiles: simulated quantiles with 95% intervals; null otherwise.
    percentiles: Option<BatchPercentiles>,
    #[serde(skip)]
    report: BatchReport,
    #[serde(skip)]
    model: LlmBatch,
}

fn to_json(
    r: BatchReport,
    m: LlmBatch,
    validation: Option<Validation>,
    percentiles: Option<BatchPercentiles>,
) -> BatchAnswer {
    BatchAnswer {
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
        percentiles,
        report: r,
        model: m,
    }
}

/// The simulated counterpart of `cfg` and its token mode.
fn scenario(
    cfg: &BatchConfig,
    raw_tokens: &TokenDist,
    limit: Option<u64>,
) -> Result<(sim::Scenario, sim::TokenMode)> {
    let batch = cfg.model.coeffs;
    let cap = cfg
        .max_batch
        .map(|k| {
            u32::try_from(k).map_err(|_| anyhow::anyhow!("--max-batch {k}: too large to simulate"))
        })
        .transpose()?;
    let policy = match cfg.policy {
        Policy::Dynamic => sim::Policy::Dynamic {
            batch,
            max_batch: cap,
        },
        Policy::Elastic => sim::Policy::Elastic {
            batch,
            max_batch: cap,
        },
        Policy::Fixed => sim::Policy::Fixed {
            batch,
            batch_size: cap.unwrap_or(1),
        },
    };
    // With --max-tokens the analytic model already uses the simulator's integer lengths; give
    // the simulator the law as written and let it round and clip. Without, both read it as is.
    let (law, max_tokens, token_mode) = match limit {
        Some(l) => (raw_tokens.clone(), Some(l as f64), sim::TokenMode::Integer),
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
    Ok((scenario, token_mode))
}

/// Compare every analytic estimate with the simulation `s` of the same system.
fn validate(
    v: &SimSettings,
    s: &sim::Report,
    token_mode: sim::TokenMode,
    r: &BatchReport,
) -> Validation {
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
    v.validation(s, token_mode, out)
}

/// The requested simulated percentiles (`ps` in percent, a subset of
/// [`SIMULATED_PERCENTILES`]) of the run `s`.
fn percentiles(v: &SimSettings, s: &sim::Report, ps: &[f64]) -> Result<BatchPercentiles> {
    if !s.is_stable() {
        bail!(
            "--percentiles: the simulated queue did not settle in {} requests (near saturation: \
             raise --requests, or lower --arrival-rate)",
            s.requests
        );
    }
    let mut wait = BTreeMap::new();
    let mut latency = BTreeMap::new();
    for &p in ps {
        let (key, w, l) = if p == 50.0 {
            ("p50", s.wait_s.p50, s.latency_s.p50)
        } else if p == 90.0 {
            ("p90", s.wait_s.p90, s.latency_s.p90)
        } else if p == 99.0 {
            ("p99", s.wait_s.p99, s.latency_s.p99)
        } else {
            bail!(
                "--percentiles {p}: the simulator estimates only p50, p90 and p99 (give a subset of 50,90,99)"
            );
        };
        wait.insert(key.to_string(), w);
        latency.insert(key.to_string(), l);
    }
    Ok(BatchPercentiles {
        wait,
        latency,
        method: Method::Simulation,
        confidence: s.ci.confidence,
        requests: v.requests,
        seed: v.seed,
        replications: v.replications,
    })
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

/// Analyse `cfg`; with `sim`, also simulate it (`raw_tokens` and `limit`: the decode-length
/// law as written and the max-token limit, which the simulator applies itself). With
/// `pct` = (percentiles in percent, settings), the simulated percentiles too (from the same run
/// as the validation when both are asked for: `sim` is then used).
pub fn answer(
    cfg: &BatchConfig,
    raw_tokens: &TokenDist,
    limit: Option<u64>,
    sim: Option<&SimSettings>,
    pct: Option<(&[f64], &SimSettings)>,
) -> Result<BatchAnswer> {
    if let Some((ps, _)) = pct
        && let Some(p) = ps.iter().find(|p| !SIMULATED_PERCENTILES.contains(p))
    {
        bail!(
            "--percentiles {p}: the simulator estimates only p50, p90 and p99 (give a subset of 50,90,99)"
        );
    }
    let report = queueing::batch::analyze(cfg).map_err(|e| {
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
    let settings = sim.or(pct.map(|(_, v)| v));
    let run = match settings {
        Some(v) => {
            let (scn, mode) = scenario(cfg, raw_tokens, limit)?;
            Some((v, v.simulate(&scn)?, mode))
        }
        None => None,
    };
    let validation = match (sim, &run) {
        (Some(_), Some((v, s, mode))) => Some(validate(v, s, *mode, &report)),
        _ => None,
    };
    let percentiles = match (pct, &run) {
        (Some((ps, _)), Some((v, s, _))) => Some(percentiles(v, s, ps)?),
        _ => None,
    };
    Ok(to_json(report, cfg.model.clone(), validation, percentiles))
}

/// The human-readable form: the estimates, the chains' diagnostics, the validation.
pub fn render(a: &BatchAnswer) -> String {
    use std::fmt::Write as _;
    let (report, model) = (&a.report, &a.model);
    let mut o = String::new();
    let size = match (report.policy, report.max_batch) {
        (Policy::Fixed, Some(k)) => format!("batches of exactly K = {k}"),
        (_, Some(k)) => format!("at most K = {k} per batch"),
        (_, None) => "unbounded batches".into(),
    };
    let _ = writeln!(
        o,
        "{} batching, {size}, λ = {} req/s",
        report.policy, report.arrival_rate
    );
    let _ = writeln!(o, "  {}", describe_model(model));
    let _ = writeln!(
        o,
        "  load ρ = {:.4}; largest stable arrival rate {:.6} req/s",
        report.load, report.max_stable_rate
    );
    o.push('\n');
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
    o.push_str(&columns(
        &[
            "estimate",
            "method",
            "wait (s)",
            "latency (s)",
            "mean batch (req)",
        ],
        &rows,
    ));
    o.push('\n');
    for e in &report.estimates {
        if let Some(c) = &e.chain {
            let solver = match c.solver {
                queueing::batch::Solver::Gth => "GTH direct solve".to_string(),
                queueing::batch::Solver::Power { iterations } => {
                    format!("power iteration, {iterations} sweeps")
                }
            };
            let _ = writeln!(
                o,
                "  {}: {} states, tail mass {:.1e}, {solver}",
                e.label, c.states, c.tail_mass
            );
        }
        if e.heuristic {
            let _ = writeln!(
                o,
                "  {}: Inoue's theorem assumes deterministic batch times; with random T_b it is \
                 not guaranteed to bound (docs/models.md §10 item 13)",
                e.label
            );
        }
    }
    let _ = writeln!(
        o,
        "  wait = arrival → batch start; latency = arrival → the request's own completion"
    );
    if let Some(p) = &a.percentiles {
        o.push('\n');
        let rows: Vec<Vec<String>> = [("wait", &p.wait), ("latency", &p.latency)]
            .iter()
            .flat_map(|(what, map)| {
                map.iter().map(move |(k, e)| {
                    vec![
                        format!("{what} {k}"),
                        format!("{:.6}", e.value),
                        format!("± {:.6}", e.half_width),
                        format!("simulation, {:.0}% CI", 100.0 * p.confidence),
                    ]
                })
            })
            .collect();
        o.push_str(&columns(
            &["percentile", "value (s)", "95% CI (s)", "method"],
            &rows,
        ));
        let _ = writeln!(
            o,
            "  percentiles simulated ({} requests, seed {}, {} replication(s)): the chains give means only",
            p.requests, p.seed, p.replications
        );
    }
    if let Some(v) = &a.validation {
        o.push('\n');
        o.push_str(&v.render());
    }
    o
}

#[derive(Debug, Serialize)]
struct JsonChoice {
    k: usize,
    wait_s: f64,
    latency_s: f64,
    method: Method,
}

/// Everything `optimize batch-size` prints (its `--json` object).
#[derive(Debug, Serialize)]
pub struct SizeAnswer {
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

/// Largest `--max-k` searched.
const MAX_K: usize = 4096;
/// Largest `--max-k` of the dynamic cap search.
const MAX_K_DYNAMIC: usize = 256;

/// `tokenq optimize batch-size`: the speed-optimal batch size (paper eq 24) and, unless the
/// objective is speed, the best fixed batch size (exact chain and the paper's roots formula) or
/// the best dynamic/elastic cap at `arrival_rate` (docs/models.md §6 "Optimal K", §7).
pub fn optimize_size(
    model: &LlmBatch,
    policy: Policy,
    objective: Objective,
    arrival_rate: Option<f64>,
    max_k: usize,
) -> Result<SizeAnswer> {
    if max_k == 0 {
        bail!("--max-k 0: the largest batch size must be at least 1");
    }
    // Each batch size is an embedded-chain solve (dynamic and elastic caps until the cap stops
    // binding); measured on 2 cores: fixed, elastic and speed search 4096 sizes in < 0.2 s,
    // dynamic caps cost ~K³ (256 caps: 16 s, 512: 4 min, lognormal:7,0.7 at 0.3 req/s).
    let limit = if policy == Policy::Dynamic && objective != Objective::Speed {
        MAX_K_DYNAMIC
    } else {
        MAX_K
    };
    if max_k > limit {
        bail!(
            "--max-k {max_k}: at most {limit}{} (every candidate is an embedded-chain solve); give --max-k {limit} or less",
            if limit == MAX_K_DYNAMIC {
                " caps with --policy dynamic"
            } else {
                " batch sizes"
            }
        );
    }
    let speed = speed_optimum(model, max_k).map_err(|e| anyhow::anyhow!("{e}"))?;
    let opts = ChainOptions::default();
    let mut out = SizeAnswer {
        policy: policy.to_string(),
        objective: format!("{objective:?}").to_lowercase(),
        arrival_rate_req_s: arrival_rate,
        max_k,
        speed_optimal_k: speed.k,
        speed_req_s: speed.speed,
        speed_at_range_end: speed.at_range_end,
        best: None,
        paper_best: None,
        candidates: Vec::new(),
    };
    if objective != Objective::Speed {
        let Some(lambda) = arrival_rate else {
            bail!("--objective {objective:?} needs --arrival-rate REQ_PER_S");
        };
        if !(lambda.is_finite() && lambda > 0.0) {
            bail!("--arrival-rate {lambda} must be a positive number of requests per second");
        }
        let err = |e: queueing::batch::BatchError| anyhow::anyhow!("--arrival-rate {lambda}: {e}");
        match policy {
            Policy::Fixed => {
                let ex = optimize_fixed(
                    model,
                    lambda,
                    max_k,
                    objective,
                    PaddedTreatment::Random,
                    &opts,
                )
                .map_err(err)?;
                let paper = optimize_fixed(
                    model,
                    lambda,
                    max_k,
                    objective,
                    PaddedTreatment::MeanOnly,
                    &opts,
                )
                .map_err(err)?;
                out.best = Some(choice(&ex.best, ex.method));
                out.paper_best = Some(choice(&paper.best, paper.method));
                out.candidates = ex.candidates;
            }
            Policy::Dynamic | Policy::Elastic => {
                let c = optimize_cap(
                    model,
                    lambda,
                    max_k,
                    objective,
                    policy == Policy::Elastic,
                    &opts,
                )
                .map_err(err)?;
                out.best = Some(choice(&c.best, c.method));
                out.candidates = c.candidates;
            }
        }
    }
    Ok(out)
}

/// The human-readable form of [`optimize_size`]'s answer.
pub fn render_size(out: &SizeAnswer) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "speed-optimal batch size K_v = {} ({:.6} req/s){}",
        out.speed_optimal_k,
        out.speed_req_s,
        if out.speed_at_range_end {
            format!("; speed still increasing at --max-k {}", out.max_k)
        } else {
            String::new()
        }
    );
    if let Some(b) = &out.best {
        let what = match out.policy.as_str() {
            "fixed" => "fixed batch size",
            "dynamic" => "dynamic-batching cap",
            _ => "elastic-batching cap",
        };
        let _ = writeln!(
            o,
            "{}-optimal {what} at λ = {} req/s: K = {} (wait {:.6} s, latency {:.6} s, {})",
            out.objective,
            out.arrival_rate_req_s.unwrap_or(f64::NAN),
            b.k,
            b.wait_s,
            b.latency_s,
            b.method
        );
        if let Some(p) = &out.paper_best {
            let _ = writeln!(
                o,
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
        o.push('\n');
        o.push_str(&columns(&["K", "wait (s)", "latency (s)"], &near));
    }
    o
}

/// A batching model that "did not converge" gets what to change: bound the decode lengths with
/// `--max-tokens` (the usual cause is a heavy tail, e.g. `lognormal:5,3`), or cap the batch.
/// `tokens` is the `--tokens` law as written, `capped` whether the batch is already capped (or
/// fixed).
pub fn convergence_hint(
    e: anyhow::Error,
    tokens: &str,
    max_tokens: Option<u64>,
    capped: bool,
) -> anyhow::Error {
    let msg = format!("{e:#}");
    if !msg.contains("did not converge") {
        return e;
    }
    let limit = match (max_tokens, TokenDist::parse(tokens)) {
        (Some(l), _) => format!("lower --max-tokens (now {l})"),
        (None, Ok(d)) => {
            let q = d.quantile(0.99).ceil();
            if q.is_finite() && (1.0..=100_000.0).contains(&q) {
                format!(
                    "bound the decode lengths with --max-tokens L (e.g. --max-tokens {q}, the 99th percentile of --tokens {tokens})"
                )
            } else {
                format!(
                    "bound the decode lengths with --max-tokens L (e.g. --max-tokens 100000; the 99th percentile of --tokens {tokens} is {q})"
                )
            }
        }
        (None, Err(_)) => "bound the decode lengths with --max-tokens L".into(),
    };
    let cap = if capped {
        "or use a smaller --max-batch"
    } else {
        "or cap the batch with --max-batch K"
    };
    anyhow::anyhow!(
        "{msg}. To fix it, {limit}, {cap} (a heavy-tailed --tokens law makes the batch times too variable for the exact chains)"
    )
}
