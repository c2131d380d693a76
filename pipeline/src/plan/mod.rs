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
//!
//! The submodules: `evaluate` (one configuration at one rate: its SLO statistics and its
//! goodput there), `models` (the model each policy is evaluated with), `search` ([`plan`] and
//! its answer), `goodput` (the goodput bisection, its capacity band and [`goodput_plan`]) and
//! `render` (the answers in words).

use anyhow::{Context, Result, bail};
use queueing::dist::TokenDist;
use serde::Serialize;
use sim::continuous::{EngineConfig, StepModel};
use tokenq_core::{BatchTime, CoefficientsFile, LinearService};

mod evaluate;
mod goodput;
mod models;
mod render;
mod search;

pub use evaluate::{Candidate, GoodputPoint, RequestTargets, SloValue, evaluate_at, goodput_at};
pub use goodput::{
    GOODPUT_FLOOR, GOODPUT_GPUS, GOODPUT_GPUS_TRACE, GoodputPlan, GoodputRow, goodput_plan,
};
pub use render::{config_label, feasible_table, policy_label, render, render_goodputs};
pub use search::{Goodput, PlanAnswer, plan};

use render::trim_num;

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
