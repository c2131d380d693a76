//! `tokenq plan`: the capacity planner (docs/usage.md "tokenq plan"). Given latency
//! coefficients, a workload and service-level objectives stated as percentiles, it searches
//! policies (one request at a time with a max-token limit, or dynamic batching with a cap),
//! max-token limits and GPU counts, and answers:
//!
//! (a) at rate R, the configurations that meet every SLO, cheapest first (fewest GPUs, then the
//!     most output served whole, then the lowest latency), each percentile with its method;
//! (b) for the best configurations, the largest rate that still meets the SLOs (goodput), by
//!     bisection on the rate; without a rate ([`goodput_plan`]), for every policy and limit on
//!     one GPU, the bisection started at the configuration's capacity scale;
//! (c) the smallest number of GPUs for rate R.
//!
//! Models: each of `n` GPUs runs one engine and receives a random `1/n` share of a Poisson
//! stream (so a Poisson stream of `R/n`); round robin or join-shortest-queue routing do at least
//! as well, so the answers are on the safe side. One request at a time is M/G/1 with clipping
//! (docs/models.md §1): its wait and latency percentiles are exact (`queueing::waiting`, the
//! Pollaczek–Khinchine distribution, 1e-6). Dynamic batching (§4, §7) is simulated
//! (docs/models.md §11): its percentiles come with 95% intervals from batch means, and an SLO
//! counts as met only when the interval's upper end meets it. The share of requests the limit
//! truncates is `P(N > L)`. Each goodput also comes at the upper ends of the fit's 95 %
//! intervals (the single-request line's, or the batch lines' for dynamic batching), with the
//! same random numbers: a capacity band; continuous batching's step model has no intervals,
//! and the answer says so.
//!
//! Goodput at a rate ([`goodput_at`], `plan --plots`' goodput figure) is vLLM's `--goodput`:
//! the rate times the share of requests whose own latencies all meet the SLOs' targets
//! ([`RequestTargets`]) — exact from M/G/1's law of the wait or the sojourn where one law gives
//! the share, otherwise counted per simulated request (never a product of marginal shares).

use anyhow::{Context, Result, bail};
use queueing::dist::TokenDist;
use queueing::waiting::{WaitOptions, waiting_distribution};
use rayon::prelude::*;
use serde::Serialize;
use sim::continuous::{EngineConfig, StepModel};
use tokenq_core::{BatchTime, CoefficientsFile, Estimate, LinearService, Method};

use crate::poisson_replay::{Latency, PoissonWorkload, Statistic};

/// Which latency an SLO bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Arrival → last token (the request's latency).
    E2e,
    /// Arrival → start of service (queueing wait).
    Wait,
    /// Arrival → first token (continuous batching).
    Ttft,
    /// Time per output token after the first (continuous batching).
    Tpot,
    /// Gap between consecutive tokens (continuous batching).
    Itl,
}

impl Metric {
    /// Only the continuous-batching replay gives this latency.
    pub fn replay_only(self) -> bool {
        matches!(self, Metric::Ttft | Metric::Tpot | Metric::Itl)
    }
}

/// Which statistic of it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stat {
    /// The mean.
    Mean,
    /// The p-quantile, p in (0, 1).
    Quantile(f64),
}

/// One service-level objective: `metric:stat<=target`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Slo {
    /// The latency bounded.
    pub metric: Metric,
    /// Its statistic.
    pub stat: Stat,
    /// The bound, seconds.
    pub target_s: f64,
}

/// Quantiles the simulator estimates (with intervals).
const SIM_QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

impl Slo {
    /// Parse `e2e:p99<=10s`, `wait:mean<=2`, `e2e:p90<=500ms`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            anyhow::anyhow!(
                "--slo `{s}`: {why}; write METRIC:STAT<=TARGET, e.g. e2e:p99<=10s or ttft:p90<=2s (METRIC e2e, wait, ttft, tpot or itl; STAT mean or pNN; TARGET in s or ms)"
            )
        };
        let (lhs, target) = s.split_once("<=").ok_or_else(|| bad("no `<=`"))?;
        let (metric, stat) = lhs.split_once(':').ok_or_else(|| bad("no `:`"))?;
        let metric = match metric.trim() {
            "e2e" | "e2el" | "latency" => Metric::E2e,
            "wait" | "queue" => Metric::Wait,
            "ttft" => Metric::Ttft,
            "tpot" => Metric::Tpot,
            "itl" => Metric::Itl,
            _ => return Err(bad("unknown metric")),
        };
        let stat = match stat.trim() {
            "mean" => Stat::Mean,
            p if p.starts_with('p') => {
                let v: f64 = p[1..].parse().map_err(|_| bad("bad percentile"))?;
                if !(v > 0.0 && v < 100.0) {
                    return Err(bad("the percentile must be between 0 and 100"));
                }
                Stat::Quantile(v / 100.0)
            }
            _ => return Err(bad("STAT is mean or pNN")),
        };
        let t = target.trim();
        let (num, scale) = if let Some(v) = t.strip_suffix("ms") {
            (v, 1e-3)
        } else if let Some(v) = t.strip_suffix('s') {
            (v, 1.0)
        } else {
            (t, 1.0)
        };
        let v: f64 = num.trim().parse().map_err(|_| bad("bad target"))?;
        if !(v.is_finite() && v > 0.0) {
            return Err(bad("the target must be positive"));
        }
        Ok(Self {
            metric,
            stat,
            target_s: v * scale,
        })
    }

    /// Parse every `--slo`.
    pub fn parse_all(specs: &[String]) -> Result<Vec<Self>> {
        specs.iter().map(|s| Self::parse(s)).collect()
    }

    /// `e2e:p99<=10s`.
    pub fn label(&self) -> String {
        let stat = match self.stat {
            Stat::Mean => "mean".to_string(),
            Stat::Quantile(p) => format!("p{}", trim_num(p * 100.0)),
        };
        let metric = match self.metric {
            Metric::E2e => "e2e",
            Metric::Wait => "wait",
            Metric::Ttft => "ttft",
            Metric::Tpot => "tpot",
            Metric::Itl => "itl",
        };
        format!("{metric}:{stat}<={}s", trim_num(self.target_s))
    }
}

fn trim_num(x: f64) -> String {
    let s = format!("{x:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A serving policy the planner searches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum PlanPolicy {
    /// One request at a time (M/G/1 with clipping).
    Single,
    /// Dynamic batching with at most `cap` requests per batch.
    Dynamic {
        /// The batch cap K.
        cap: u32,
    },
    /// Continuous batching as vLLM runs it, at most `max_num_seqs` requests running.
    Continuous {
        /// vLLM's `max_num_seqs`.
        max_num_seqs: u32,
    },
}

/// The continuous-batching engine the planner replays (docs/serving.md).
#[derive(Clone)]
pub struct ContinuousSetup {
    /// The step-time model.
    pub model: std::sync::Arc<dyn StepModel + Send + Sync>,
    /// Its description, for the answer.
    pub model_description: String,
    /// Engine limits (`max_num_seqs` is searched: `caps`).
    pub engine: EngineConfig,
    /// Prompt-length law.
    pub input: TokenDist,
    /// The law as written.
    pub input_spec: String,
    /// Requests per replication.
    pub requests: u64,
    /// Independent replications.
    pub replications: u32,
}

impl std::fmt::Debug for ContinuousSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContinuousSetup")
            .field("model", &self.model_description)
            .field("engine", &self.engine)
            .field("input", &self.input_spec)
            .field("requests", &self.requests)
            .field("replications", &self.replications)
            .finish()
    }
}

/// The question.
#[derive(Debug, Clone)]
pub struct PlanConfig {
    /// Output-token law.
    pub tokens: TokenDist,
    /// The law as written.
    pub tokens_spec: String,
    /// Total arrival rate R, req/s, of [`plan`] ([`goodput_plan`] does not read it: `tokenq
    /// plan` without `--rate` leaves it NaN).
    pub rate: f64,
    /// The SLOs; all must hold.
    pub slos: Vec<Slo>,
    /// Least share of requests the limit may leave whole (`P(N ≤ L)`).
    pub min_served_fraction: f64,
    /// GPU counts 1..=max_gpus.
    pub max_gpus: u32,
    /// Single-request service line (for `Single`).
    pub service: Option<LinearService>,
    /// Batch time (for `Dynamic`).
    pub batch: Option<BatchTime>,
    /// The service line at the upper ends of its 95% intervals (for the capacity band).
    pub service_hi: Option<LinearService>,
    /// The batch lines at the upper ends of their 95% intervals (for the capacity band of
    /// dynamic batching; [`batch_hi`]).
    pub batch_hi: Option<BatchTime>,
    /// Batch caps searched.
    pub caps: Vec<u32>,
    /// Max-token limits searched (`f64::INFINITY` = no limit).
    pub limits: Vec<f64>,
    /// Simulated arrivals per batching configuration.
    pub sim_requests: u64,
    /// Seed of the simulations.
    pub seed: u64,
    /// How many of the best configurations get a goodput.
    pub goodput_top: usize,
    /// How one-at-a-time and dynamic batching spread requests over several GPUs.
    pub routing: sim::routing::Routing,
    /// Continuous batching, when a step model is given.
    pub continuous: Option<ContinuousSetup>,
    /// Search one request at a time and dynamic batching (with the coefficients' lines).
    pub paper_policies: bool,
    /// A recorded trace as the workload ([`crate::plan_trace`]): its arrivals, stretched to
    /// each rate, and its requests' lengths; `tokens` is then the law of its output lengths.
    /// Every policy is then a replay of the trace (simulation, no interval but the random
    /// router's).
    pub trace: Option<std::sync::Arc<crate::plan_trace::PlanTrace>>,
}

/// One statistic of one configuration.
#[derive(Debug, Clone, Serialize)]
pub struct SloValue {
    /// The SLO, e.g. `e2e:p99<=10s`.
    pub slo: String,
    /// The value, seconds (with its 95% half-width for a simulation).
    pub value_s: Estimate,
    /// How it was obtained.
    pub method: Method,
    /// Whether the SLO holds (for a simulation: the interval's upper end meets it).
    pub met: bool,
}

impl SloValue {
    /// A simulated statistic: the SLO holds when its interval's upper end meets the target
    /// (the value itself when the interval could not be estimated).
    fn simulated(slo: &Slo, e: Estimate) -> Self {
        let hi = if e.half_width.is_finite() {
            e.hi()
        } else {
            e.value
        };
        SloValue {
            slo: slo.label(),
            value_s: e,
            method: Method::Simulation,
            met: hi <= slo.target_s,
        }
    }
}

/// One configuration and how it fares.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    /// The policy.
    #[serde(flatten)]
    pub policy: PlanPolicy,
    /// Max-token limit, tokens (`null` = none).
    pub max_tokens: Option<f64>,
    /// GPUs (engines).
    pub gpus: u32,
    /// Share of requests served whole, `P(N ≤ L)`.
    pub served_whole_fraction: f64,
    /// Utilisation of each GPU.
    pub utilisation: f64,
    /// Each SLO's statistic (empty when the queue is unstable).
    pub slos: Vec<SloValue>,
    /// Every SLO holds.
    pub feasible: bool,
    /// Why not, in words.
    pub note: Option<String>,
    /// Seed salt of its simulation (the goodput bisection reuses it, so that the bisection's
    /// answer at the asked rate is this evaluation).
    #[serde(skip)]
    pub salt: u64,
}

/// The largest total rate a configuration sustains within the SLOs.
#[derive(Debug, Clone, Serialize)]
pub struct Goodput {
    /// The configuration.
    #[serde(flatten)]
    pub policy: PlanPolicy,
    /// Its limit.
    pub max_tokens: Option<f64>,
    /// Its GPUs.
    pub gpus: u32,
    /// Largest total rate meeting every SLO, req/s.
    pub goodput_rps: f64,
    /// The same at the upper ends of the fit's 95% intervals (a slower device), when known.
    pub goodput_at_fit_upper_rps: Option<f64>,
    /// Why `goodput_at_fit_upper_rps` is null (null when it is given).
    pub fit_upper_note: Option<String>,
    /// exact or simulation.
    pub method: Method,
}

/// The planner's answer.
#[derive(Debug, Clone, Serialize)]
pub struct PlanAnswer {
    /// The workload.
    pub tokens: String,
    /// The rate asked about, req/s.
    pub rate_rps: f64,
    /// The SLOs.
    pub slos: Vec<String>,
    /// Routing assumption of each policy searched.
    pub routing: String,
    /// Continuous batching's engine, step model and replications (null: not searched).
    pub continuous: Option<String>,
    /// (a) feasible configurations, cheapest first.
    pub feasible: Vec<Candidate>,
    /// (c) the smallest number of GPUs that meets every SLO at the rate (null: none searched).
    pub min_gpus: Option<u32>,
    /// (b) goodput of the best configurations.
    pub goodput: Vec<Goodput>,
    /// Configurations evaluated.
    pub evaluated: usize,
    /// Edge-of-range remarks ("= no limit", "= search end").
    pub notes: Vec<String>,
    /// Wall time, seconds.
    pub elapsed_s: f64,
}

/// The continuous-batching flags of `tokenq plan`, as given.
#[derive(Debug)]
pub struct ContinuousFlags<'a> {
    /// Engine limits and step tables given as flags.
    pub engine: crate::replay::EngineFile,
    /// `--engine-config`.
    pub engine_config: Option<&'a std::path::Path>,
    /// `--coefficients` and its contents.
    pub coefficients: (&'a std::path::Path, &'a CoefficientsFile),
    /// `--tokens` as written.
    pub tokens: &'a str,
    /// `--input-tokens`.
    pub input_tokens: Option<&'a str>,
    /// `--replay-requests`.
    pub requests: &'a str,
    /// `--replications`.
    pub replications: u32,
    /// A prompt-length law given directly, with its description (a trace's prompt lengths),
    /// instead of `--input-tokens`.
    pub input_law: Option<(TokenDist, String)>,
}

/// The engine (vLLM's defaults under the flags and settings file; no prefix caching: Poisson
/// requests share no prefixes), step model and prompt law of the continuous policy.
pub fn continuous_setup(f: &ContinuousFlags) -> Result<ContinuousSetup> {
    let (path, file) = f.coefficients;
    let given = crate::replay::EngineFile {
        prefix_caching: Some(false),
        ..f.engine.clone()
    };
    let s = crate::replay::settings(&given, f.engine_config, None, Some(file))?;
    let flag = format!("--coefficients {}", path.display());
    let (model, model_description) = crate::replay::open_step_model(&s, Some(file), &flag)?;
    let (input, input_spec) = match &f.input_law {
        Some(given) => given.clone(),
        None => crate::values::input_tokens(f.input_tokens, f.tokens)?,
    };
    Ok(ContinuousSetup {
        model,
        model_description,
        engine: s.engine,
        input,
        input_spec,
        requests: crate::values::parse_count(f.requests).context("--replay-requests")?,
        replications: f.replications,
    })
}

/// The default limits: the workload's 50th … 99.9th percentiles and no limit.
pub fn default_limits(tokens: &TokenDist) -> Vec<f64> {
    let mut v: Vec<f64> = [0.5, 0.75, 0.9, 0.95, 0.99, 0.999]
        .iter()
        .map(|&p| tokens.quantile(p).ceil().max(1.0))
        .collect();
    v.dedup();
    v.push(f64::INFINITY);
    v
}

/// The latency lines a configuration is evaluated with: the fit's, or the upper ends of its
/// 95 % intervals (the capacity band).
#[derive(Debug, Clone, Copy)]
struct Lines {
    service: Option<LinearService>,
    batch: Option<BatchTime>,
}

impl Lines {
    /// The fitted lines.
    fn fit(cfg: &PlanConfig) -> Self {
        Lines {
            service: cfg.service,
            batch: cfg.batch,
        }
    }
}

/// Per-request bounds of the goodput (seconds; `f64::INFINITY` = unbounded): each SLO's target
/// bounds its latency in every request (the smallest target where several SLOs bound one
/// latency); a mean SLO's target is used as the per-request bound too. ITL is a gap between
/// tokens, not one value per request (vLLM's `--goodput` takes ttft, tpot and e2el), so an
/// ITL SLO bounds no request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestTargets {
    /// Arrival → start of service.
    pub wait_s: f64,
    /// Arrival → last token.
    pub e2e_s: f64,
    /// Arrival → first token.
    pub ttft_s: f64,
    /// Time per output token after the first.
    pub tpot_s: f64,
}

impl RequestTargets {
    /// The bounds the SLOs put on each request.
    pub fn of(slos: &[Slo]) -> Self {
        let mut t = RequestTargets {
            wait_s: f64::INFINITY,
            e2e_s: f64::INFINITY,
            ttft_s: f64::INFINITY,
            tpot_s: f64::INFINITY,
        };
        for s in slos {
            let b = match s.metric {
                Metric::Wait => &mut t.wait_s,
                Metric::E2e => &mut t.e2e_s,
                Metric::Ttft => &mut t.ttft_s,
                Metric::Tpot => &mut t.tpot_s,
                Metric::Itl => continue,
            };
            *b = b.min(s.target_s);
        }
        t
    }
}

/// Goodput at one offered rate, as vLLM's `--goodput` defines it: the rate times the share of
/// requests whose own latencies all meet their bounds ([`RequestTargets`]).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GoodputPoint {
    /// Offered total rate, req/s.
    pub rate_rps: f64,
    /// Share of requests within every bound (with its 95 % half-width for a simulation).
    pub share: Estimate,
    /// `rate × share`, req/s (half-width `rate ×` the share's).
    pub goodput_rps: Estimate,
    /// exact (M/G/1's law of the wait and the sojourn) or simulation.
    pub method: Method,
}

/// A share of requests within their bounds and how it was obtained.
type Share = (Estimate, Method);

fn evaluate(
    cfg: &PlanConfig,
    policy: PlanPolicy,
    limit: f64,
    gpus: u32,
    rate: f64,
    lines: Lines,
    salt: u64,
) -> Candidate {
    evaluate_share(cfg, policy, limit, gpus, rate, lines, salt, None).0
}

/// A configuration not yet evaluated.
fn candidate(cfg: &PlanConfig, policy: PlanPolicy, limit: f64, gpus: u32, salt: u64) -> Candidate {
    Candidate {
        policy,
        max_tokens: limit.is_finite().then_some(limit),
        gpus,
        served_whole_fraction: if limit.is_finite() {
            cfg.tokens.cdf(limit)
        } else {
            1.0
        },
        utilisation: f64::NAN,
        slos: Vec::new(),
        feasible: false,
        note: None,
        salt,
    }
}

/// [`evaluate`], and with `targets` the share of requests within them from the same model run.
#[allow(clippy::too_many_arguments)]
fn evaluate_share(
    cfg: &PlanConfig,
    policy: PlanPolicy,
    limit: f64,
    gpus: u32,
    rate: f64,
    lines: Lines,
    salt: u64,
    targets: Option<&RequestTargets>,
) -> (Candidate, Result<Option<Share>>) {
    let lambda = rate / f64::from(gpus);
    let mut c = candidate(cfg, policy, limit, gpus, salt);
    let result = match policy {
        PlanPolicy::Single | PlanPolicy::Dynamic { .. }
            if cfg.trace.is_some()
                || (gpus > 1 && cfg.routing != sim::routing::Routing::Random) =>
        {
            routed(cfg, policy, lines, limit, gpus, rate, salt, targets, &mut c)
        }
        PlanPolicy::Single => single(cfg, lines, limit, lambda, salt, targets, &mut c),
        PlanPolicy::Dynamic { cap } => {
            batched(cfg, lines, cap, limit, lambda, salt, targets, &mut c)
        }
        PlanPolicy::Continuous { max_num_seqs } => {
            continuous(cfg, max_num_seqs, limit, gpus, rate, salt, targets, &mut c)
        }
    };
    let share = match result {
        Ok(share) => Ok(share),
        Err(e) => {
            c.note = Some(e.to_string());
            c.slos.clear();
            Err(e)
        }
    };
    c.feasible = c.note.is_none() && !c.slos.is_empty() && c.slos.iter().all(|s| s.met);
    if c.served_whole_fraction < cfg.min_served_fraction {
        c.feasible = false;
        c.note.get_or_insert_with(|| {
            format!(
                "serves {:.1}% whole, below --min-served-fraction",
                100.0 * c.served_whole_fraction
            )
        });
    }
    (c, share)
}

/// One request at a time or dynamic batching on `gpus` servers behind a round-robin or
/// join-shortest-queue router: simulated (`sim::routing`), replications with 95 % intervals;
/// or, with a trace, the trace replayed behind the router (any rule, one GPU too).
#[allow(clippy::too_many_arguments)]
fn routed(
    cfg: &PlanConfig,
    policy: PlanPolicy,
    lines: Lines,
    limit: f64,
    gpus: u32,
    rate: f64,
    salt: u64,
    targets: Option<&RequestTargets>,
    c: &mut Candidate,
) -> Result<Option<Share>> {
    let server = match policy {
        PlanPolicy::Single => sim::routing::Server::Single(
            lines
                .service
                .ok_or_else(|| anyhow::anyhow!("no single-request line in the coefficients"))?,
        ),
        PlanPolicy::Dynamic { cap } => sim::routing::Server::Dynamic {
            batch: lines
                .batch
                .ok_or_else(|| anyhow::anyhow!("no batch-time lines in the coefficients"))?,
            cap,
        },
        PlanPolicy::Continuous { .. } => bail!("continuous batching routes as vLLM does"),
    };
    let run = sim::routing::RoutedRun {
        servers: gpus,
        routing: cfg.routing,
        rate_rps: rate,
        requests: (cfg.sim_requests / ROUTED_REPLICATIONS).max(20),
        replications: ROUTED_REPLICATIONS as u32,
        seed: cfg.seed.wrapping_mul(1_000_003).wrapping_add(salt),
    };
    let max_tokens = limit.is_finite().then_some(limit);
    let r = match &cfg.trace {
        Some(t) => {
            let (arrivals, tokens) = t.feed_at(rate);
            sim::routing::simulate_routed_trace(server, &arrivals, &tokens, max_tokens, &run)?
        }
        None => {
            let law = sim::TokenLaw::Dist(cfg.tokens.clone());
            sim::routing::simulate_routed(server, &law, max_tokens, &run)?
        }
    };
    c.utilisation = r.utilisation;
    for slo in &cfg.slos {
        let which = match slo.metric {
            Metric::E2e => sim::routing::Which::Latency,
            Metric::Wait => sim::routing::Which::Wait,
            m => bail!("{m:?} is a continuous-batching latency"),
        };
        let q = match slo.stat {
            Stat::Mean => None,
            Stat::Quantile(p) => Some(p),
        };
        c.slos.push(SloValue::simulated(slo, r.estimate(which, q)));
    }
    Ok(targets.map(|t| (r.attainment(t.wait_s, t.e2e_s), Method::Simulation)))
}

/// Independent runs of a routed simulation (its `--sim-requests` split among them).
const ROUTED_REPLICATIONS: u64 = 5;

/// One request at a time on one GPU (or one of n behind the random split): exact M/G/1. The
/// share within per-request bounds is exact where one law gives it — `P(W + S ≤ e2e)` with an
/// e2e bound alone or a wait bound no tighter (`W ≤ W + S`), `P(W ≤ wait)` with a wait bound
/// alone — and simulated (the same queue, per request) when both bind.
fn single(
    cfg: &PlanConfig,
    lines: Lines,
    limit: f64,
    lambda: f64,
    salt: u64,
    targets: Option<&RequestTargets>,
    c: &mut Candidate,
) -> Result<Option<Share>> {
    let Some(svc) = lines.service else {
        bail!("no single-request line in the coefficients");
    };
    let w = waiting_distribution(&cfg.tokens, limit, lambda, svc, &WaitOptions::default())?;
    c.utilisation = w.utilisation;
    for slo in &cfg.slos {
        let v = match (slo.metric, slo.stat) {
            (Metric::E2e, Stat::Mean) => w.mean_sojourn_s,
            (Metric::Wait, Stat::Mean) => w.mean_wait_s,
            (Metric::E2e, Stat::Quantile(p)) => w.quantile_sojourn(p)?,
            (Metric::Wait, Stat::Quantile(p)) => w.quantile_wait(p)?,
            (m, _) => bail!("{m:?} is a continuous-batching latency"),
        };
        c.slos.push(SloValue {
            slo: slo.label(),
            value_s: Estimate {
                value: v,
                half_width: 0.0,
            },
            method: Method::Exact,
            met: v <= slo.target_s,
        });
    }
    let Some(t) = targets else {
        return Ok(None);
    };
    let exact = if t.e2e_s <= t.wait_s {
        Some(w.cdf_sojourn(t.e2e_s))
    } else if t.e2e_s.is_infinite() {
        Some(w.cdf_wait(t.wait_s))
    } else {
        None
    };
    if let Some(p) = exact {
        return Ok(Some((
            Estimate {
                value: p,
                half_width: 0.0,
            },
            Method::Exact,
        )));
    }
    let policy = sim::Policy::Mg1 {
        service: svc,
        patience: None,
    };
    let r = simulate_one(cfg, policy, limit, lambda, salt, Some(t))?;
    Ok(r.attainment.map(|a| (a, Method::Simulation)))
}

/// One GPU's queue simulated (batch means, the planner's seed and the configuration's salt),
/// with the share of requests within `targets` when given.
fn simulate_one(
    cfg: &PlanConfig,
    policy: sim::Policy,
    limit: f64,
    lambda: f64,
    salt: u64,
    targets: Option<&RequestTargets>,
) -> Result<sim::Report> {
    let scenario = sim::Scenario {
        policy,
        arrivals: sim::Arrivals::Poisson { rate_rps: lambda },
        tokens: sim::Tokens::Law(sim::TokenLaw::Dist(cfg.tokens.clone())),
        max_tokens: limit.is_finite().then_some(limit),
        token_mode: sim::TokenMode::Continuous,
    };
    let rc = sim::RunConfig {
        requests: cfg.sim_requests,
        seed: cfg.seed.wrapping_mul(1_000_003).wrapping_add(salt),
        attainment: targets.map(|t| sim::Targets {
            wait_s: t.wait_s,
            latency_s: t.e2e_s,
        }),
        ..sim::RunConfig::default()
    };
    Ok(sim::run(&scenario, &rc)?)
}

#[allow(clippy::too_many_arguments)]
fn batched(
    cfg: &PlanConfig,
    lines: Lines,
    cap: u32,
    limit: f64,
    lambda: f64,
    salt: u64,
    targets: Option<&RequestTargets>,
    c: &mut Candidate,
) -> Result<Option<Share>> {
    let Some(batch) = lines.batch else {
        bail!("no batch-time lines (first_token, decode_step) in the coefficients");
    };
    let policy = sim::Policy::Dynamic {
        batch,
        max_batch: Some(cap),
    };
    let r = simulate_one(cfg, policy, limit, lambda, salt, targets)?;
    c.utilisation = r.utilisation.value;
    if !r.is_stable() {
        bail!(
            "unstable at {lambda:.4} req/s per GPU (utilisation ≈ {:.2})",
            r.utilisation.value
        );
    }
    for slo in &cfg.slos {
        let s = match slo.metric {
            Metric::E2e => &r.latency_s,
            Metric::Wait => &r.wait_s,
            m => bail!("{m:?} is a continuous-batching latency"),
        };
        let e = match slo.stat {
            Stat::Mean => s.mean,
            Stat::Quantile(p) => match SIM_QUANTILES.iter().position(|&q| (q - p).abs() < 1e-9) {
                Some(0) => s.p50,
                Some(1) => s.p90,
                Some(_) => s.p99,
                None => bail!(
                    "{}: the simulator estimates p50, p90 and p99 of batching; use one of them",
                    slo.label()
                ),
            },
        };
        c.slos.push(SloValue::simulated(slo, e));
    }
    Ok(r.attainment.map(|a| (a, Method::Simulation)))
}

/// Continuous batching on `gpus` engines behind vLLM's data-parallel router, by replications
/// of the replay under Poisson arrivals ([`crate::poisson_replay`]), or one replay of the
/// trace.
#[allow(clippy::too_many_arguments)]
fn continuous(
    cfg: &PlanConfig,
    max_num_seqs: u32,
    limit: f64,
    gpus: u32,
    rate: f64,
    salt: u64,
    targets: Option<&RequestTargets>,
    c: &mut Candidate,
) -> Result<Option<Share>> {
    let Some(cs) = &cfg.continuous else {
        bail!("no step model for continuous batching");
    };
    let w = PoissonWorkload {
        rate_rps: rate,
        input: cs.input.clone(),
        output: cfg.tokens.clone(),
        max_tokens: limit,
        requests: cs.requests,
        replications: cs.replications,
        seed: cfg.seed.wrapping_mul(1_000_003).wrapping_add(salt),
    };
    let engine = EngineConfig {
        max_num_seqs,
        ..cs.engine
    };
    let r = match &cfg.trace {
        Some(t) => crate::poisson_replay::replay_fixed(
            &t.requests_at(rate, limit),
            rate,
            &engine,
            gpus,
            cs.model.as_ref(),
        )?,
        None => crate::poisson_replay::replicate(&w, &engine, gpus, cs.model.as_ref())?,
    };
    c.utilisation = r.utilisation;
    if r.overloaded {
        bail!(
            "overloaded at {rate:.4} req/s on {gpus} GPU(s): the replay completes {:.3} req/s",
            r.throughput_rps.value
        );
    }
    for slo in &cfg.slos {
        let what = match slo.metric {
            Metric::E2e => Latency::E2e,
            Metric::Ttft => Latency::Ttft,
            Metric::Tpot => Latency::Tpot,
            Metric::Itl => Latency::Itl,
            Metric::Wait => bail!(
                "{}: continuous batching has no single wait; bound ttft instead",
                slo.label()
            ),
        };
        let stat = match slo.stat {
            Stat::Mean => Statistic::Mean,
            Stat::Quantile(p) => Statistic::Quantile(p),
        };
        let Some(e) = r.estimate(what, stat) else {
            bail!("{}: no request had a sample of it", slo.label());
        };
        c.slos.push(SloValue::simulated(slo, e));
    }
    Ok(targets.map(|t| {
        (
            r.attainment(t.ttft_s, t.tpot_s, t.e2e_s),
            Method::Simulation,
        )
    }))
}

/// Policies searched.
fn policies(cfg: &PlanConfig) -> Vec<PlanPolicy> {
    let mut v = Vec::new();
    // The paper's models give e2e and wait only.
    let paper = cfg.paper_policies && !cfg.slos.iter().any(|s| s.metric.replay_only());
    if paper && cfg.service.is_some() {
        v.push(PlanPolicy::Single);
    }
    if paper && cfg.batch.is_some() {
        v.extend(cfg.caps.iter().map(|&cap| PlanPolicy::Dynamic { cap }));
    }
    if cfg.continuous.is_some() {
        v.extend(
            cfg.caps
                .iter()
                .map(|&max_num_seqs| PlanPolicy::Continuous { max_num_seqs }),
        );
    }
    v
}

/// Cheapest first: fewest GPUs, most served whole, lowest first-SLO value.
fn cheaper(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    a.gpus
        .cmp(&b.gpus)
        .then(b.served_whole_fraction.total_cmp(&a.served_whole_fraction))
        .then_with(|| {
            let v = |c: &Candidate| c.slos.first().map_or(f64::INFINITY, |s| s.value_s.value);
            v(a).total_cmp(&v(b))
        })
}

/// `c` evaluated again at total rate `rate`, with the same random numbers.
pub fn evaluate_at(cfg: &PlanConfig, c: &Candidate, rate: f64) -> Candidate {
    let limit = c.max_tokens.unwrap_or(f64::INFINITY);
    evaluate(cfg, c.policy, limit, c.gpus, rate, Lines::fit(cfg), c.salt)
}

/// `c` evaluated again at total rate `rate` (the same random numbers), with its goodput there
/// from the same model run: `rate ×` the share of requests within [`RequestTargets::of`] the
/// SLOs. Exact for one request at a time on one GPU or behind the random split when one law
/// gives the share (an e2e bound, or a wait bound, or a wait bound no tighter than the e2e
/// one); simulated, per request, otherwise. An error where the configuration is unstable or
/// overloaded at `rate`.
pub fn goodput_at(cfg: &PlanConfig, c: &Candidate, rate: f64) -> (Candidate, Result<GoodputPoint>) {
    let limit = c.max_tokens.unwrap_or(f64::INFINITY);
    let targets = RequestTargets::of(&cfg.slos);
    let (e, share) = evaluate_share(
        cfg,
        c.policy,
        limit,
        c.gpus,
        rate,
        Lines::fit(cfg),
        c.salt,
        Some(&targets),
    );
    let point = share.and_then(|s| {
        let (share, method) = s.context("no share of requests within the targets")?;
        Ok(GoodputPoint {
            rate_rps: rate,
            share,
            goodput_rps: Estimate {
                value: rate * share.value,
                half_width: rate * share.half_width,
            },
            method,
        })
    });
    (e, point)
}

/// `dynamic batching, cap 8, max tokens 831 tokens`.
pub fn policy_label(c: &Candidate) -> String {
    config_label(c.policy, c.max_tokens)
}

/// `dynamic batching, cap 8, max tokens 831 tokens` from its parts.
pub fn config_label(policy: PlanPolicy, max_tokens: Option<f64>) -> String {
    format!(
        "{}, max tokens {}",
        policy_text(policy),
        limit_text(max_tokens)
    )
}

/// The goodput search tries rates down to its start divided by this (`4⁶`: six steps of 4).
pub const GOODPUT_FLOOR: f64 = 4096.0;

/// Largest total rate meeting every SLO, by bisection (the SLO statistics grow with the rate),
/// from `start` (the asked rate, or without one the configuration's [`capacity_scale`]): the
/// bracket doubles while `start` meets the SLOs, and steps down by factors of 4 to
/// `start`/[`GOODPUT_FLOOR`] when it fails (`None` when even that fails).
fn goodput(cfg: &PlanConfig, c: &Candidate, lines: Lines, start: f64) -> Option<f64> {
    let limit = c.max_tokens.unwrap_or(f64::INFINITY);
    // The same random numbers at every rate (common random numbers, those of the candidate's
    // own evaluation), so that the simulated statistics move with the rate, not with the seed.
    let ok = |rate: f64| evaluate(cfg, c.policy, limit, c.gpus, rate, lines, c.salt).feasible;
    let (mut lo, mut hi) = (0.0, start);
    // Grow the bracket until the rate fails (at most 2^30 × the start).
    let mut doublings = 0;
    while ok(hi) {
        lo = hi;
        hi *= 2.0;
        doublings += 1;
        if doublings > 30 {
            return Some(f64::INFINITY);
        }
    }
    if lo == 0.0 {
        // Even the start fails: step down by factors of 4 (six at most) to a rate that meets
        // the SLOs, and bisect above it. Low rates are the slowest to simulate (the replay runs
        // one request at a time), so the steps start from the top.
        loop {
            if hi <= start / GOODPUT_FLOOR {
                return None;
            }
            hi /= 4.0;
            if ok(hi) {
                lo = hi;
                hi *= 4.0;
                break;
            }
        }
    }
    // Exact statistics are bisected to 0.1 %; simulated ones to 1 %, finer than their noise.
    let tol = match c.policy {
        PlanPolicy::Single => 1e-3,
        PlanPolicy::Dynamic { .. } | PlanPolicy::Continuous { .. } => 1e-2,
    };
    for _ in 0..25 {
        if (hi - lo) <= tol * hi {
            break;
        }
        let mid = 0.5 * (lo + hi);
        if ok(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}

/// The batch lines at the upper ends of their 95 % intervals (`[first_token.ci95]` and
/// `[decode_step.ci95]`: `slope_s_per_req`, `intercept_s`; a negative intercept is clamped to
/// 0), for the capacity band of dynamic batching; `None` when a line or an interval is missing.
pub fn batch_hi(file: &CoefficientsFile) -> Option<BatchTime> {
    let (f, d) = (file.first_token.as_ref()?, file.decode_step.as_ref()?);
    let hi = |t: &std::collections::BTreeMap<String, [f64; 2]>, k: &str| Some(t.get(k)?[1]);
    BatchTime::from_array([
        hi(&f.ci95, "slope_s_per_req")?.max(0.0),
        hi(&f.ci95, "intercept_s")?.max(0.0),
        hi(&d.ci95, "slope_s_per_req")?.max(0.0),
        hi(&d.ci95, "intercept_s")?.max(0.0),
    ])
    .ok()
}

/// The models a coefficients file supports: the single-request line, the same line at the upper
/// ends of its 95 % intervals (the capacity band; a negative intercept is clamped to 0), and
/// the batch time ([`batch_hi`] gives the batch lines' band).
pub fn service_models(
    file: &CoefficientsFile,
) -> Result<(
    Option<LinearService>,
    Option<LinearService>,
    Option<BatchTime>,
)> {
    let line = |a: f64, c: f64| LinearService {
        per_token_s: a,
        intercept_s: c.max(0.0),
    };
    let service = file
        .single_request
        .as_ref()
        .map(|s| line(s.per_token_s, s.intercept_s));
    let service_hi = file.single_request.as_ref().and_then(|s| {
        Some(line(
            s.ci95.get("per_token_s")?[1],
            s.ci95.get("intercept_s")?[1],
        ))
    });
    let batch = match file.batch_k() {
        Some(k) => Some(BatchTime::from_array(k).context("batch lines")?),
        None => None,
    };
    Ok((service, service_hi, batch))
}

impl PlanConfig {
    /// Check the question's numbers; each error names the flag and the fix.
    pub fn validate(&self) -> Result<()> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            bail!(
                "--rate {}: give a positive arrival rate in req/s, e.g. 3",
                self.rate
            );
        }
        self.validate_search()
    }

    /// [`PlanConfig::validate`] without the rate ([`goodput_plan`] does not read it).
    pub fn validate_search(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.min_served_fraction) {
            bail!(
                "--min-served-fraction {}: give a fraction in [0, 1]",
                self.min_served_fraction
            );
        }
        if self.max_gpus == 0 || self.max_gpus > 1024 {
            bail!("--max-gpus {}: give 1 to 1024", self.max_gpus);
        }
        if self.caps.iter().any(|&k| k == 0 || k > 4096) {
            bail!("--caps: every batch cap must be between 1 and 4096");
        }
        if self.limits.iter().any(|&l| l.is_nan() || l < 1.0) {
            bail!("--limits: every limit must be at least 1 token");
        }
        if let Some(cs) = &self.continuous {
            crate::poisson_replay::check_sizes(cs.replications, cs.requests, "--replay-requests")?;
        }
        Ok(())
    }
}

/// Answer the capacity question.
pub fn plan(cfg: &PlanConfig) -> Result<PlanAnswer> {
    cfg.validate()?;
    let started = std::time::Instant::now();
    let (policies, pairs) = searched(cfg)?;
    // For each policy and limit, GPU counts upwards until one meets the SLOs: more GPUs only
    // spread the same stream thinner, so the first feasible count is the one worth listing.
    let all: Vec<Candidate> = pairs
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, &(p, l))| {
            let mut out = Vec::new();
            for n in 1..=cfg.max_gpus {
                let salt = (i as u64) * 1024 + u64::from(n);
                let c = evaluate(cfg, p, l, n, cfg.rate, Lines::fit(cfg), salt);
                let done = c.feasible || c.served_whole_fraction < cfg.min_served_fraction;
                out.push(c);
                if done {
                    break;
                }
            }
            out
        })
        .collect();
    let mut feasible: Vec<Candidate> = all.iter().filter(|c| c.feasible).cloned().collect();
    feasible.sort_by(cheaper);
    let min_gpus = feasible.first().map(|c| c.gpus);
    let mut notes = replay_only_note(cfg);
    if let Some(best) = feasible.first() {
        if best.max_tokens.is_none() {
            notes.push("the cheapest configuration needs no max-token limit (= no limit)".into());
        }
        if let PlanPolicy::Dynamic { cap } | PlanPolicy::Continuous { max_num_seqs: cap } =
            best.policy
            && Some(&cap) == cfg.caps.iter().max()
        {
            notes.push(format!(
                "the cheapest configuration uses the largest cap searched, K = {cap} (= search end): larger caps may do better"
            ));
        }
    } else {
        notes.push(format!(
            "no configuration with up to {} GPUs meets every SLO at {} req/s (= search end): raise --max-gpus, relax an SLO or allow a tighter --max-tokens",
            cfg.max_gpus, cfg.rate
        ));
    }
    // (b) goodput of the best few distinct (policy, limit) at their GPU count.
    let mut goodputs = Vec::new();
    for c in feasible.iter().take(cfg.goodput_top) {
        let g = goodput(cfg, c, Lines::fit(cfg), cfg.rate);
        if let Some(g) = g {
            let (g_hi, fit_upper_note) = fit_band(cfg, c, cfg.rate);
            goodputs.push(Goodput {
                policy: c.policy,
                max_tokens: c.max_tokens,
                gpus: c.gpus,
                goodput_rps: g,
                goodput_at_fit_upper_rps: g_hi,
                fit_upper_note,
                method: goodput_method(cfg, c),
            });
        }
    }
    Ok(PlanAnswer {
        tokens: cfg.tokens_spec.clone(),
        rate_rps: cfg.rate,
        slos: cfg.slos.iter().map(Slo::label).collect(),
        routing: routing(&policies, cfg.routing, cfg.trace.is_some()),
        continuous: continuous_text(cfg),
        feasible,
        min_gpus,
        goodput: goodputs,
        evaluated: all.len(),
        notes,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// The goodput at the upper ends of the fit's 95 % intervals (the same random numbers), or why
/// there is none.
fn fit_band(cfg: &PlanConfig, c: &Candidate, start: f64) -> (Option<f64>, Option<String>) {
    let upper = match c.policy {
        PlanPolicy::Single => cfg.service_hi.map(|s| Lines {
            service: Some(s),
            ..Lines::fit(cfg)
        }),
        PlanPolicy::Dynamic { .. } => cfg.batch_hi.map(|b| Lines {
            batch: Some(b),
            ..Lines::fit(cfg)
        }),
        PlanPolicy::Continuous { .. } => {
            return (
                None,
                Some("continuous batching's step model carries no 95% intervals".into()),
            );
        }
    };
    let Some(lines) = upper else {
        let what = match c.policy {
            PlanPolicy::Single => "the single-request line has no ci95 table",
            _ => "the batch lines (first_token, decode_step) have no ci95 tables",
        };
        return (None, Some(format!("{what} in the coefficients")));
    };
    match goodput(cfg, c, lines, start) {
        Some(g) => (Some(g), None),
        None => (
            None,
            Some("at the fit's upper coefficients no rate meets every SLO".into()),
        ),
    }
}

/// Continuous batching's engine, step model and replications, in words.
fn continuous_text(cfg: &PlanConfig) -> Option<String> {
    cfg.continuous.as_ref().map(|cs| {
        format!(
            "{}; input tokens {}; max_batched_tokens {}, {} KV blocks of {} tokens; {} replications of {} Poisson arrivals (first {:.0}% warm-up), 95% Student-t intervals",
            cs.model_description,
            cs.input_spec,
            cs.engine.max_batched_tokens,
            cs.engine.kv_blocks,
            cs.engine.block_size,
            cs.replications,
            cs.requests,
            100.0 * crate::poisson_replay::WARMUP_FRACTION
        )
    })
}

/// The policies searched and every (policy, limit) pair, or why there are none.
#[allow(clippy::type_complexity)]
fn searched(cfg: &PlanConfig) -> Result<(Vec<PlanPolicy>, Vec<(PlanPolicy, f64)>)> {
    if cfg.slos.is_empty() {
        bail!("give at least one --slo, e.g. --slo 'e2e:p99<=10s'");
    }
    let policies = policies(cfg);
    if policies.is_empty() {
        if let Some(s) = cfg.slos.iter().find(|s| s.metric.replay_only()) {
            bail!(
                "--slo {}: ttft, tpot and itl come from the continuous-batching replay, which needs a step model: give --step-table DIR, or a --coefficients file with a [step_time] section (tokenq fit --step-model)",
                s.label()
            );
        }
        bail!("the coefficients have neither a single-request line nor batch-time lines");
    }
    let pairs = policies
        .iter()
        .flat_map(|&p| cfg.limits.iter().map(move |&l| (p, l)))
        .collect();
    Ok((policies, pairs))
}

/// The notes every answer starts with: that replay-only SLOs leave the paper's policies out,
/// when they do, and what a trace workload means for the statistics.
fn replay_only_note(cfg: &PlanConfig) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(t) = &cfg.trace {
        notes.push(format!(
            "workload: {}; every configuration replays the whole trace once from an empty system, so its statistics are the trace's own (simulation without an interval; a random router's draws are replicated)",
            t.describe()
        ));
    }
    if cfg.paper_policies
        && (cfg.service.is_some() || cfg.batch.is_some())
        && cfg.slos.iter().any(|s| s.metric.replay_only())
    {
        notes.push(
            "ttft/tpot/itl SLOs: only continuous batching is searched (the paper's single-request and dynamic-batching models give e2e and wait)".into(),
        );
    }
    notes
}

/// exact for one request at a time on one GPU or behind the random split, else simulation.
fn goodput_method(cfg: &PlanConfig, c: &Candidate) -> Method {
    if cfg.trace.is_some() {
        return Method::Simulation;
    }
    match c.policy {
        PlanPolicy::Single if c.gpus == 1 || cfg.routing == sim::routing::Routing::Random => {
            Method::Exact
        }
        _ => Method::Simulation,
    }
}

/// A configuration's one-GPU capacity scale, req/s: where the goodput bisection starts without
/// an asked rate — K requests over the time of a batch of K run together. One request at a
/// time: `1/E[S_L]`, `S_L = a·min(N, L) + c`. Dynamic batching with cap K:
/// `K/(t1(K) + t2(K)·E[min(N, L)])`, full batches of mean-length requests (padding to the
/// longest makes the real capacity lower). Continuous batching: K = `max_num_seqs`, or fewer
/// when the KV cache holds fewer mean-length requests, over the prefill of their K mean prompts
/// in one step and `E[min(N, L)] − 1` decode steps of K requests at the mean context. The
/// bisection widens its bracket from there either way.
fn capacity_scale(cfg: &PlanConfig, policy: PlanPolicy, limit: f64) -> Result<f64> {
    let n = cfg.tokens.clipped_moments(limit).0;
    let scale = match policy {
        PlanPolicy::Single => {
            let s = cfg.service.context("no single-request line")?;
            1.0 / (s.per_token_s * n + s.intercept_s)
        }
        PlanPolicy::Dynamic { cap } => {
            let b = cfg.batch.context("no batch-time lines")?;
            let k = f64::from(cap);
            k / (b.t1(k) + b.t2(k) * n)
        }
        PlanPolicy::Continuous { max_num_seqs } => {
            let cs = cfg.continuous.as_ref().context("no step model")?;
            let prompt = cs.input.mean().ceil().max(1.0);
            let kv_tokens = f64::from(cs.engine.kv_blocks) * f64::from(cs.engine.block_size);
            let k = f64::from(max_num_seqs)
                .min((kv_tokens / (prompt + n)).floor())
                .max(1.0);
            let prefill = cs
                .model
                .step_time_s(&sim::continuous::StepBatch::prefill_of_batch(k * prompt, k));
            let ctx = (prompt + 0.5 * n).round() as u32;
            let decode = cs.model.step_time_s(&sim::continuous::StepBatch {
                n_decode: k as u32,
                decode_context_sum: u64::from(ctx) * k as u64,
                decode_context_min: ctx,
                decode_context_max: ctx,
                ..Default::default()
            });
            k / (prefill + (n - 1.0).max(0.0) * decode)
        }
    };
    if !(scale.is_finite() && scale > 0.0) {
        bail!(
            "{}: the model gives it no finite service time (capacity scale {scale} req/s); check the --coefficients lines",
            config_label(policy, limit.is_finite().then_some(limit))
        );
    }
    Ok(scale)
}

/// One configuration's goodput without an asked rate.
#[derive(Debug, Clone, Serialize)]
pub struct GoodputRow {
    /// The policy.
    #[serde(flatten)]
    pub policy: PlanPolicy,
    /// Max-token limit, tokens (`null` = none).
    pub max_tokens: Option<f64>,
    /// Share of requests served whole, `P(N ≤ L)`.
    pub served_whole_fraction: f64,
    /// Largest total rate one GPU sustains within every SLO, req/s (`null`: none does, down to
    /// 1/4096 of the capacity scale).
    pub goodput_rps: Option<f64>,
    /// The same at the upper ends of the fit's 95% intervals, when known.
    pub goodput_at_fit_upper_rps: Option<f64>,
    /// Why `goodput_at_fit_upper_rps` is null (null when it is given).
    pub fit_upper_note: Option<String>,
    /// exact or simulation.
    pub method: Method,
    /// Where the bisection started: the configuration's one-GPU capacity scale, req/s.
    pub capacity_scale_rps: f64,
}

/// Question (b) alone (`tokenq plan` without `--rate`).
#[derive(Debug, Clone, Serialize)]
pub struct GoodputPlan {
    /// The workload.
    pub tokens: String,
    /// The SLOs.
    pub slos: Vec<String>,
    /// Least share of requests served whole asked for.
    pub min_served_fraction: f64,
    /// How the one-GPU goodput scales to n GPUs (the assumption).
    pub gpus: String,
    /// Continuous batching's engine, step model and replications (null: not searched).
    pub continuous: Option<String>,
    /// Every policy and limit that serves enough whole, largest goodput first, then most
    /// served whole.
    pub goodputs: Vec<GoodputRow>,
    /// Configurations left out by `--min-served-fraction`.
    pub excluded: usize,
    /// Remarks.
    pub notes: Vec<String>,
    /// Wall time, seconds.
    pub elapsed_s: f64,
}

/// What [`GoodputPlan::gpus`] says for a trace workload.
pub const GOODPUT_GPUS_TRACE: &str = "goodput on 1 GPU, the whole trace stretched to each rate; a random split of a trace over n GPUs is not the trace stretched n times (bursts thin out), so n × it is only a guide: give --rate to search GPU counts on the trace itself";

/// What [`GoodputPlan::gpus`] says.
pub const GOODPUT_GPUS: &str = "goodput on 1 GPU; n GPUs behind the random split sustain n × it (each sees R/n, and meets the SLOs exactly when one GPU does at R/n); round robin, join-shortest-queue and vLLM's router are taken to do at least as well, so n × it is on the safe side (give --rate to search GPU counts)";

/// Question (b) without a rate: for every policy and limit on one GPU that serves at least
/// `min_served_fraction` whole, the largest total rate meeting every SLO (the bisection of
/// [`plan`], started at the configuration's [`capacity_scale`]) with its capacity band, best
/// first. `cfg.rate` is not read.
pub fn goodput_plan(cfg: &PlanConfig) -> Result<GoodputPlan> {
    cfg.validate_search()?;
    let started = std::time::Instant::now();
    let (_, pairs) = searched(cfg)?;
    let rows: Vec<Option<GoodputRow>> = pairs
        .par_iter()
        .enumerate()
        .map(|(i, &(p, l))| {
            // The salt of the configuration's one-GPU evaluation in `plan`.
            let c = candidate(cfg, p, l, 1, (i as u64) * 1024 + 1);
            if c.served_whole_fraction < cfg.min_served_fraction {
                return Ok(None);
            }
            let scale = capacity_scale(cfg, p, l)?;
            let g = goodput(cfg, &c, Lines::fit(cfg), scale);
            let (g_hi, fit_upper_note) = match g {
                Some(_) => fit_band(cfg, &c, scale),
                None => (
                    None,
                    Some("no rate meets every SLO at the fit's values".into()),
                ),
            };
            Ok(Some(GoodputRow {
                policy: p,
                max_tokens: c.max_tokens,
                served_whole_fraction: c.served_whole_fraction,
                goodput_rps: g,
                goodput_at_fit_upper_rps: g_hi,
                fit_upper_note,
                method: goodput_method(cfg, &c),
                capacity_scale_rps: scale,
            }))
        })
        .collect::<Result<_>>()?;
    let excluded = rows.iter().filter(|r| r.is_none()).count();
    let mut goodputs: Vec<GoodputRow> = rows.into_iter().flatten().collect();
    goodputs.sort_by(|a, b| {
        let g = |r: &GoodputRow| r.goodput_rps.unwrap_or(-1.0);
        g(b).total_cmp(&g(a))
            .then(b.served_whole_fraction.total_cmp(&a.served_whole_fraction))
    });
    let mut notes = replay_only_note(cfg);
    if excluded > 0 {
        notes.push(format!(
            "{excluded} of {} configurations serve less than --min-served-fraction {} whole and are left out",
            pairs.len(),
            cfg.min_served_fraction
        ));
    }
    if goodputs.iter().any(|r| r.goodput_rps.is_none()) {
        notes.push("goodput none: no rate meets every SLO, down to 1/4096 of the configuration's capacity scale (the service alone misses a target, or nearly)".into());
    }
    if goodputs.is_empty() {
        notes.push(format!(
            "every configuration serves less than --min-served-fraction {} whole: lower it or raise --limits",
            cfg.min_served_fraction
        ));
    }
    Ok(GoodputPlan {
        tokens: cfg.tokens_spec.clone(),
        slos: cfg.slos.iter().map(Slo::label).collect(),
        min_served_fraction: cfg.min_served_fraction,
        gpus: match cfg.trace {
            None => GOODPUT_GPUS.into(),
            Some(_) => GOODPUT_GPUS_TRACE.into(),
        },
        continuous: continuous_text(cfg),
        goodputs,
        excluded,
        notes,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// The human-readable answer without a rate: the configurations, largest goodput first.
pub fn render_goodputs(a: &GoodputPlan, rows: usize) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "goodput plan: tokens {}, SLOs {}{}",
        a.tokens,
        a.slos.join(", "),
        if a.min_served_fraction > 0.0 {
            format!(
                ", at least {}% of requests served whole",
                trim_num(100.0 * a.min_served_fraction)
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(o, "GPUs: {}", a.gpus);
    if let Some(c) = &a.continuous {
        let _ = writeln!(o, "continuous batching: {c}");
    }
    let rate = |g: Option<f64>| g.map_or("none".into(), |g| format!("{g:.4} req/s"));
    if let Some(best) = a.goodputs.first().filter(|r| r.goodput_rps.is_some()) {
        let _ = writeln!(
            o,
            "answer: {}, max tokens {}: {} on 1 GPU ({}; {:.1}% of requests served whole)",
            policy_text(best.policy),
            limit_text(best.max_tokens),
            rate(best.goodput_rps),
            best.method,
            100.0 * best.served_whole_fraction
        );
    }
    let body: Vec<Vec<String>> = a
        .goodputs
        .iter()
        .take(rows)
        .map(|r| {
            vec![
                policy_text(r.policy),
                limit_text(r.max_tokens),
                format!("{:.1}%", 100.0 * r.served_whole_fraction),
                rate(r.goodput_rps),
                r.goodput_at_fit_upper_rps
                    .map_or("-".into(), |g| format!("{g:.4} req/s")),
                r.method.to_string(),
            ]
        })
        .collect();
    if !body.is_empty() {
        let _ = writeln!(
            o,
            "goodput on 1 GPU, largest first ({} of {}):",
            body.len(),
            a.goodputs.len()
        );
        o.push_str(&crate::text::columns(
            &[
                "policy",
                "max tokens",
                "served whole",
                "goodput",
                "at fit's 95% upper",
                "method",
            ],
            &body,
        ));
    }
    for n in &a.notes {
        let _ = writeln!(o, "note: {n}");
    }
    let _ = writeln!(
        o,
        "goodputs of {} configurations in {:.2} s",
        a.goodputs.len(),
        a.elapsed_s
    );
    o
}

/// How requests reach the GPUs, for each kind of policy searched.
fn routing(policies: &[PlanPolicy], rule: sim::routing::Routing, trace: bool) -> String {
    let mut v = Vec::new();
    if policies
        .iter()
        .any(|p| !matches!(p, PlanPolicy::Continuous { .. }))
    {
        v.push(match rule {
            sim::routing::Routing::Random if trace => "one request at a time and dynamic batching: the trace's requests split at random over the n GPUs (simulated)",
            sim::routing::Routing::Random => "one request at a time and dynamic batching: random split, each of n GPUs sees a Poisson stream of R/n (round robin and join-shortest-queue do at least as well)",
            sim::routing::Routing::RoundRobin => "one request at a time and dynamic batching: round robin over the n GPUs (simulated for n > 1)",
            sim::routing::Routing::ShortestQueue => "one request at a time and dynamic batching: join-shortest-queue over the n GPUs (simulated for n > 1)",
        });
    }
    if policies
        .iter()
        .any(|p| matches!(p, PlanPolicy::Continuous { .. }))
    {
        v.push("continuous batching: n data-parallel engines behind vLLM's router (least 4·waiting + running)");
    }
    v.join("; ")
}

fn policy_text(p: PlanPolicy) -> String {
    match p {
        PlanPolicy::Single => "one request at a time".into(),
        PlanPolicy::Dynamic { cap } => format!("dynamic batching, cap {cap}"),
        PlanPolicy::Continuous { max_num_seqs } => {
            format!("continuous batching, max_num_seqs {max_num_seqs}")
        }
    }
}

fn limit_text(l: Option<f64>) -> String {
    l.map_or("no limit".into(), |l| format!("{l} tokens"))
}

/// The first `rows` feasible configurations as a table: header and cells (units in the cells).
pub fn feasible_table(a: &PlanAnswer, rows: usize) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec![
        "GPUs".to_string(),
        "policy".into(),
        "max tokens".into(),
        "served whole".into(),
        "busy/GPU".into(),
    ];
    header.extend(a.slos.iter().cloned());
    let body: Vec<Vec<String>> = a
        .feasible
        .iter()
        .take(rows)
        .map(|c| {
            let mut r = vec![
                c.gpus.to_string(),
                policy_text(c.policy),
                limit_text(c.max_tokens),
                format!("{:.1}%", 100.0 * c.served_whole_fraction),
                format!("{:.3}", c.utilisation),
            ];
            r.extend(c.slos.iter().map(|s| {
                let (v, h) = (s.value_s.value, s.value_s.half_width);
                match s.method {
                    Method::Simulation if h.is_finite() => format!("{v:.3} ± {h:.3} s (sim)"),
                    // One replay of a trace: the trace's own value, no interval.
                    Method::Simulation => format!("{v:.3} s (sim)"),
                    m => format!("{v:.3} s ({m})"),
                }
            }));
            r
        })
        .collect();
    (header, body)
}

/// The human-readable answer.
pub fn render(a: &PlanAnswer, rows: usize) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "capacity plan: tokens {}, {} req/s, SLOs {}",
        a.tokens,
        a.rate_rps,
        a.slos.join(", ")
    );
    let _ = writeln!(o, "routing: {}", a.routing);
    if let Some(c) = &a.continuous {
        let _ = writeln!(o, "continuous batching: {c}");
    }
    match a.min_gpus {
        Some(n) => {
            let b = &a.feasible[0];
            let _ = writeln!(
                o,
                "answer: {n} GPU(s), {}, max tokens {} ({:.1}% of requests served whole)",
                policy_text(b.policy),
                limit_text(b.max_tokens),
                100.0 * b.served_whole_fraction
            );
        }
        None => {
            let _ = writeln!(
                o,
                "answer: none of the {} configurations searched",
                a.evaluated
            );
        }
    }
    if !a.feasible.is_empty() {
        let (header, body) = feasible_table(a, rows);
        let h: Vec<&str> = header.iter().map(String::as_str).collect();
        let _ = writeln!(
            o,
            "feasible configurations, cheapest first ({} of {}):",
            a.feasible.len(),
            a.evaluated
        );
        o.push_str(&crate::text::columns(&h, &body));
    }
    for g in &a.goodput {
        let _ = writeln!(
            o,
            "goodput: {} GPU(s), {}, max tokens {}: {:.4} req/s ({}){}",
            g.gpus,
            policy_text(g.policy),
            limit_text(g.max_tokens),
            g.goodput_rps,
            g.method,
            match (g.goodput_at_fit_upper_rps, &g.fit_upper_note) {
                (Some(h), _) => format!("; {h:.4} req/s at the fit's 95% upper coefficients"),
                (None, Some(why)) => format!("; no capacity band: {why}"),
                (None, None) => String::new(),
            }
        );
    }
    for n in &a.notes {
        let _ = writeln!(o, "note: {n}");
    }
    let _ = writeln!(
        o,
        "searched {} configurations in {:.2} s",
        a.evaluated, a.elapsed_s
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The capacity band's batch lines are the upper ends of the intervals in the file
    /// (`datasets/coefficients/a100-llama-2-7b-vidur.toml`, as written there); without the
    /// intervals there is no band.
    #[test]
    fn batch_band_is_the_upper_ends_of_the_batch_lines_intervals() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../datasets/coefficients/a100-llama-2-7b-vidur.toml");
        let mut file = CoefficientsFile::read(&path).unwrap();
        let b = batch_hi(&file).unwrap();
        assert_eq!(
            [b.k1, b.k2, b.k3, b.k4],
            [
                0.033204555085043656,
                0.0036021501743606064,
                0.00003194076677274965,
                0.008836219861927305
            ]
        );
        file.decode_step.as_mut().unwrap().ci95.clear();
        assert!(batch_hi(&file).is_none());
    }

    #[test]
    fn slos_parse_and_print() {
        let s = Slo::parse("e2e:p99<=10s").unwrap();
        assert_eq!(s.metric, Metric::E2e);
        assert_eq!(s.stat, Stat::Quantile(0.99));
        assert_eq!(s.target_s, 10.0);
        assert_eq!(s.label(), "e2e:p99<=10s");
        let w = Slo::parse("wait:mean<=500ms").unwrap();
        assert_eq!(
            (w.metric, w.stat, w.target_s),
            (Metric::Wait, Stat::Mean, 0.5)
        );
        let t = Slo::parse("ttft:p90<=250ms").unwrap();
        assert_eq!((t.metric, t.target_s), (Metric::Ttft, 0.25));
        assert!(t.metric.replay_only() && !Metric::E2e.replay_only());
        assert_eq!(t.label(), "ttft:p90<=0.25s");
        for bad in [
            "e2e:p99",
            "x:p99<=1s",
            "e2e:p100<=1s",
            "e2e:p99<=-1s",
            "ttfb:p99<=2s",
        ] {
            let e = Slo::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("--slo"), "{e}");
        }
    }
}
