//! Continuous batching under Poisson arrivals, by independent replications of the replay
//! (docs/serving.md; docs/models.md "Method labels": simulation with a 95 % interval).
//!
//! A replication draws `requests` arrivals of a Poisson stream of `rate_rps` (exponential gaps),
//! each with an input length from `input` and an output length from `output` (rounded up to
//! whole tokens, at least 1; the output clipped at the max-token limit, as a server with
//! `max_tokens = L` stops), and replays them with [`sim::continuous::simulate_data_parallel`]
//! (one engine, or `engines` engines behind vLLM's data-parallel router). The first
//! [`WARMUP_FRACTION`] of the requests, by arrival, are the warm-up from an empty engine and
//! are left out of the statistics.
//!
//! Statistics per replication, over the kept requests: TTFT (arrival → first token), TPOT
//! ((E2E − TTFT)/(O − 1), requests with O ≥ 2), E2E (arrival → last token), and ITL, the
//! inter-token latencies: each iteration that starts after the warm-up is one inter-token gap
//! for every decode request in it (a request scheduled in consecutive iterations, as vLLM's V1
//! scheduler runs its running requests first; the gap a preempted request waits is not
//! counted). Each statistic (mean, pNN) is estimated by the mean of its `R` replications' values
//! with a Student-t 95 % interval on `R − 1` degrees of freedom: the replications are
//! independent (own random numbers), so the interval is honest for the estimator's variance;
//! a quantile estimated from a finite run also has a small bias, below the interval for the
//! default sizes. The share of requests whose own TTFT, TPOT and E2E meet per-request bounds
//! ([`Replicated::attainment`], vLLM's `--goodput` criterion) is estimated the same way.
//!
//! A replication whose completions per second fall below [`OVERLOAD_THROUGHPUT`] of its own
//! arrivals per second (or of the offered rate, when that is lower) has a queue that grows
//! through the run (the engine is overloaded); [`Replicated`] says so, and its statistics
//! describe a finite run, not a steady state.

use crate::text::percentile_key as pkey;
use anyhow::{Result, bail};
use queueing::dist::TokenDist;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use sim::continuous::{DataParallel, EngineConfig, Request, SimOptions, StepModel};
use tokenq_core::Estimate;

/// Share of each replication's requests (the first, by arrival) left out as warm-up.
pub const WARMUP_FRACTION: f64 = 0.1;

/// Completions per second below this share of the arrivals per second mark an overloaded
/// engine.
pub const OVERLOAD_THROUGHPUT: f64 = 0.95;

/// The Poisson workload of the replications.
#[derive(Debug, Clone)]
pub struct PoissonWorkload {
    /// Total arrival rate, requests per second.
    pub rate_rps: f64,
    /// Input (prompt) token law.
    pub input: TokenDist,
    /// Output token law (before the limit).
    pub output: TokenDist,
    /// Max-token limit L (`f64::INFINITY` = none).
    pub max_tokens: f64,
    /// Requests per replication.
    pub requests: u64,
    /// Independent replications (≥ 2 for an interval).
    pub replications: u32,
    /// Seed of the first replication (replication `i` uses `seed + i`).
    pub seed: u64,
}

/// Which latency of a continuous-batching request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Latency {
    /// Arrival → first token.
    Ttft,
    /// Time per output token after the first.
    Tpot,
    /// Gap between consecutive tokens.
    Itl,
    /// Arrival → last token.
    E2e,
}

/// A statistic of a latency: the mean or the p-quantile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Statistic {
    /// The mean.
    Mean,
    /// The p-quantile, p in (0, 1).
    Quantile(f64),
}

/// The replications' outcome.
#[derive(Debug, Clone)]
pub struct Replicated {
    /// Per replication and latency, the kept samples, sorted (TTFT, TPOT, E2E: one per request;
    /// ITL: one per (iteration, decode request), as (gap, weight)).
    per_rep: Vec<RepSamples>,
    /// Completions per second over each replication's span, mean and interval.
    pub throughput_rps: Estimate,
    /// Some replication completed fewer than [`OVERLOAD_THROUGHPUT`] of its arrivals per second
    /// (or of the offered rate, when that is lower).
    pub overloaded: bool,
    /// Busy share of the engines (mean over replications).
    pub utilisation: f64,
}

#[derive(Debug, Clone, Default)]
struct RepSamples {
    ttft: Vec<f64>,
    tpot: Vec<f64>,
    e2e: Vec<f64>,
    /// Per kept request, in completion order: (TTFT, TPOT or NaN for one output token, E2E).
    requests: Vec<(f64, f64, f64)>,
    /// Iteration durations and their decode counts, sorted by duration.
    itl: Vec<(f64, u32)>,
}

/// Draw one replication's requests.
pub fn poisson_requests(w: &PoissonWorkload, seed: u64) -> Vec<Request> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = 0.0;
    let tokens = |x: f64| x.ceil().clamp(1.0, f64::from(u32::MAX)) as u32;
    (0..w.requests)
        .map(|_| {
            let u: f64 = rand::RngExt::random(&mut rng);
            t += -(1.0 - u).ln() / w.rate_rps;
            let input = tokens(w.input.sample(&mut rng));
            let output = tokens(w.output.sample(&mut rng).min(w.max_tokens));
            Request::new(t, input, output)
        })
        .collect()
}

/// At least two replications (the interval comes from their spread) of at least twenty
/// requests; `requests_flag` names the flag that sets the requests in the error.
pub fn check_sizes(replications: u32, requests: u64, requests_flag: &str) -> Result<()> {
    if replications < 2 {
        bail!(
            "--replications {replications}: give at least 2 (the intervals come from their spread)"
        );
    }
    if requests < 20 {
        bail!("{requests_flag} {requests}: give at least 20 per replication");
    }
    Ok(())
}

/// Run the replications.
pub fn replicate(
    w: &PoissonWorkload,
    engine: &EngineConfig,
    engines: u32,
    model: &(dyn StepModel + Sync),
) -> Result<Replicated> {
    if !(w.rate_rps.is_finite() && w.rate_rps > 0.0) {
        bail!(
            "the arrival rate must be positive (got {} req/s)",
            w.rate_rps
        );
    }
    check_sizes(w.replications, w.requests, "--requests")?;
    let runs = (0..w.replications)
        .map(|i| {
            let reqs = poisson_requests(w, w.seed.wrapping_add(u64::from(i)));
            let skip = ((reqs.len() as f64) * WARMUP_FRACTION).floor() as usize;
            one_replay(&reqs, skip, engine, engines, model)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(combine(runs, w.rate_rps))
}

/// One replay of given requests (e.g. a trace rescaled to a rate, outputs clipped at the
/// limit), every request kept: the trace starts from an empty engine, as it was recorded. The
/// replay is deterministic, so its statistics are the trace's own values, without an interval
/// (half-width NaN); `rate_rps` is the offered rate the overload check compares with.
pub fn replay_fixed(
    reqs: &[Request],
    rate_rps: f64,
    engine: &EngineConfig,
    engines: u32,
    model: &(dyn StepModel + Sync),
) -> Result<Replicated> {
    if reqs.len() < 2 {
        bail!("a trace replay needs at least 2 requests");
    }
    let run = one_replay(reqs, 0, engine, engines, model)?;
    Ok(combine(vec![run], rate_rps))
}

/// One replication's samples, completions per second, busy share and arrivals per second.
type Run = (RepSamples, f64, f64, f64);

/// Replay `reqs` on `engines` engines and keep the requests from index `skip` on.
fn one_replay(
    reqs: &[Request],
    skip: usize,
    engine: &EngineConfig,
    engines: u32,
    model: &(dyn StepModel + Sync),
) -> Result<Run> {
    let dp = DataParallel {
        engines,
        ..DataParallel::default()
    };
    let r =
        sim::continuous::simulate_data_parallel(reqs, engine, &dp, model, SimOptions::default())?;
    let cut = reqs[skip].arrival_s;
    let mut s = RepSamples::default();
    for rec in &r.merged.records {
        if rec.index < skip {
            continue;
        }
        s.ttft.push(rec.ttft_s);
        s.e2e.push(rec.finish_s - rec.arrival_s);
        if let Some(tp) = rec.tpot_s {
            s.tpot.push(tp);
        }
        s.requests.push((
            rec.ttft_s,
            rec.tpot_s.unwrap_or(f64::NAN),
            rec.finish_s - rec.arrival_s,
        ));
    }
    for e in &r.engines {
        s.itl.extend(
            e.series
                .iter()
                .filter(|p| p.t_s >= cut && p.decodes > 0)
                .map(|p| (p.step_s, p.decodes)),
        );
    }
    s.ttft.sort_by(f64::total_cmp);
    s.tpot.sort_by(f64::total_cmp);
    s.e2e.sort_by(f64::total_cmp);
    s.itl.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Completions per second between the first kept arrival and the last completion.
    let last = r
        .merged
        .records
        .iter()
        .map(|x| x.finish_s)
        .fold(0.0, f64::max);
    let kept = (reqs.len() - skip) as f64;
    let thr = kept / (last - cut).max(f64::MIN_POSITIVE);
    let arrivals = kept / (reqs[reqs.len() - 1].arrival_s - cut).max(f64::MIN_POSITIVE);
    let busy = r.merged.busy_s / (f64::from(engines) * r.merged.makespan_s.max(1e-300));
    Ok((s, thr, busy, arrivals))
}

/// The runs together, an overload flagged against each run's own arrivals per second, or the
/// offered `rate_rps` when that is lower. A Poisson run's arrivals per second scatter around
/// the offered rate (about ±2.4 % for 1,800 kept requests), and under common random numbers by
/// the same factor at every rate: against the offered rate alone, a run whose stream came
/// slow would count as overloaded at every rate.
fn combine(runs: Vec<Run>, rate_rps: f64) -> Replicated {
    let thr: Vec<f64> = runs.iter().map(|r| r.1).collect();
    let utilisation = runs.iter().map(|r| r.2).sum::<f64>() / runs.len() as f64;
    Replicated {
        throughput_rps: interval(&thr),
        overloaded: runs
            .iter()
            .any(|r| r.1 < OVERLOAD_THROUGHPUT * r.3.min(rate_rps)),
        utilisation,
        per_rep: runs.into_iter().map(|r| r.0).collect(),
    }
}

impl Replicated {
    /// The statistic's estimate: the mean of the replications' values, with its Student-t 95 %
    /// half-width (`None` when a replication has no sample of this latency, e.g. TPOT with
    /// one-token outputs).
    pub fn estimate(&self, what: Latency, stat: Statistic) -> Option<Estimate> {
        let mut vals = Vec::with_capacity(self.per_rep.len());
        for s in &self.per_rep {
            let v = match what {
                Latency::Ttft => plain(&s.ttft, stat)?,
                Latency::Tpot => plain(&s.tpot, stat)?,
                Latency::E2e => plain(&s.e2e, stat)?,
                Latency::Itl => weighted(&s.itl, stat)?,
            };
            vals.push(v);
        }
        Some(interval(&vals))
    }

    /// The share of kept requests whose own TTFT, TPOT and E2E are all within the bounds
    /// (seconds; `f64::INFINITY` = unbounded), per request as vLLM's `--goodput` counts them (a
    /// request with one output token has no TPOT and meets a TPOT bound, as vLLM counts its
    /// TPOT as 0): the mean of the replications' shares with its Student-t 95 % half-width.
    pub fn attainment(&self, ttft_max_s: f64, tpot_max_s: f64, e2e_max_s: f64) -> Estimate {
        let vals: Vec<f64> = self
            .per_rep
            .iter()
            .map(|s| {
                let met = s
                    .requests
                    .iter()
                    .filter(|&&(ttft, tpot, e2e)| {
                        ttft <= ttft_max_s
                            && (tpot.is_nan() || tpot <= tpot_max_s)
                            && e2e <= e2e_max_s
                    })
                    .count();
                met as f64 / s.requests.len().max(1) as f64
            })
            .collect();
        interval(&vals)
    }

    /// Replications run.
    pub fn replications(&self) -> usize {
        self.per_rep.len()
    }
}

/// The latencies a summary reports, with their JSON names.
pub const LATENCIES: [(Latency, &str); 4] = [
    (Latency::Ttft, "ttft"),
    (Latency::Tpot, "tpot"),
    (Latency::Itl, "itl"),
    (Latency::E2e, "e2e"),
];

/// `tokenq replay --rate`: the replications summarised (docs/usage.md "tokenq replay").
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The step model.
    pub step_model: String,
    /// The engine limits.
    pub engine: EngineConfig,
    /// Engines (data-parallel replicas).
    pub engines: u32,
    /// Offered rate, req/s.
    pub rate_rps: f64,
    /// Input and output laws as written, and the limit (null = none).
    pub input_tokens: String,
    /// Output law as written.
    pub output_tokens: String,
    /// Max-token limit (null = none).
    pub max_tokens: Option<f64>,
    /// Replications and requests in each.
    pub replications: usize,
    /// Requests per replication.
    pub requests: u64,
    /// Share of each replication left out as warm-up.
    pub warmup_fraction: f64,
    /// Always `simulation`: each value with its 95 % Student-t half-width.
    pub method: tokenq_core::Method,
    /// Completions per second.
    pub throughput_rps: Estimate,
    /// A replication completed fewer than 95 % of the offered requests per second.
    pub overloaded: bool,
    /// Busy share of the engines.
    pub utilisation: f64,
    /// `ttft`, `tpot`, `itl`, `e2e` → `mean`, `p50`, `p90`, … → seconds with half-width.
    pub latencies: std::collections::BTreeMap<String, std::collections::BTreeMap<String, Estimate>>,
}

impl Summary {
    /// Summarise `r` (run on `w`) with the means and these quantiles.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        r: &Replicated,
        w: &PoissonWorkload,
        step_model: String,
        engine: EngineConfig,
        engines: u32,
        input_tokens: String,
        output_tokens: String,
        quantiles: &[f64],
    ) -> Self {
        let mut latencies = std::collections::BTreeMap::new();
        for (what, name) in LATENCIES {
            let mut m = std::collections::BTreeMap::new();
            if let Some(e) = r.estimate(what, Statistic::Mean) {
                m.insert("mean".to_string(), e);
            }
            for &q in quantiles {
                if let Some(e) = r.estimate(what, Statistic::Quantile(q)) {
                    m.insert(pkey(q), e);
                }
            }
            latencies.insert(name.to_string(), m);
        }
        Self {
            step_model,
            engine,
            engines,
            rate_rps: w.rate_rps,
            input_tokens,
            output_tokens,
            max_tokens: w.max_tokens.is_finite().then_some(w.max_tokens),
            replications: r.replications(),
            requests: w.requests,
            warmup_fraction: WARMUP_FRACTION,
            method: tokenq_core::Method::Simulation,
            throughput_rps: r.throughput_rps,
            overloaded: r.overloaded,
            utilisation: r.utilisation,
            latencies,
        }
    }

    /// The human-readable form: one row per latency, milliseconds ± 95 % half-width.
    pub fn render(&self, quantiles: &[f64]) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "continuous batching under Poisson arrivals: {} req/s on {} engine(s), max_num_seqs {}, max_batched_tokens {}, {} KV blocks of {} tokens",
            self.rate_rps,
            self.engines,
            self.engine.max_num_seqs,
            self.engine.max_batched_tokens,
            self.engine.kv_blocks,
            self.engine.block_size
        );
        let _ = writeln!(o, "step model: {}", self.step_model);
        let _ = writeln!(
            o,
            "workload: input tokens {}, output tokens {}{}",
            self.input_tokens,
            self.output_tokens,
            self.max_tokens
                .map_or(String::new(), |l| format!(", max tokens {l}"))
        );
        let _ = writeln!(
            o,
            "method: simulation, {} replications of {} requests (first {:.0}% warm-up), mean ± 95% Student-t half-width",
            self.replications,
            self.requests,
            100.0 * self.warmup_fraction
        );
        let mut header = vec!["latency".to_string(), "mean".to_string()];
        header.extend(quantiles.iter().map(|&q| pkey(q)));
        let body: Vec<Vec<String>> = LATENCIES
            .iter()
            .map(|(_, name)| {
                let m = &self.latencies[*name];
                let mut row = vec![format!("{name} (ms)")];
                for key in header.iter().skip(1) {
                    row.push(m.get(key).map_or("-".into(), |e| {
                        format!("{:.2} ± {:.2}", e.value * 1e3, e.half_width * 1e3)
                    }));
                }
                row
            })
            .collect();
        let h: Vec<&str> = header.iter().map(String::as_str).collect();
        o.push_str(&crate::text::columns(&h, &body));
        let _ = writeln!(
            o,
            "throughput {:.4} ± {:.4} req/s completed; engines busy {:.1}% of the time",
            self.throughput_rps.value,
            self.throughput_rps.half_width,
            100.0 * self.utilisation
        );
        if self.overloaded {
            let _ = writeln!(
                o,
                "warning: overloaded: the engines complete fewer than 95% of the offered requests per second, so the queue grows through the run and these latencies describe a run of this length, not a steady state; lower --rate or add engines (--data-parallel)"
            );
        }
        o
    }
}

/// `tokenq replay --rate`'s flags, as given.
#[derive(Debug)]
pub struct PoissonFlags<'a> {
    /// `--rate`, req/s.
    pub rate: f64,
    /// `--tokens`.
    pub tokens: Option<&'a str>,
    /// `--input-tokens`.
    pub input_tokens: Option<&'a str>,
    /// `--max-tokens`.
    pub max_tokens: Option<f64>,
    /// `--replications`.
    pub replications: u32,
    /// `--percentiles` (0–100).
    pub percentiles: &'a [f64],
    /// `--requests` per replication.
    pub requests: Option<&'a str>,
    /// `--seed`.
    pub seed: u64,
    /// `--coefficients`.
    pub coefficients: Option<&'a std::path::Path>,
    /// The engine flags.
    pub engine: crate::replay::EngineFile,
    /// `--engine-config`.
    pub engine_config: Option<&'a std::path::Path>,
    /// `--kv-memory-gib`.
    pub kv_memory_gib: Option<f64>,
    /// `--json`.
    pub json: bool,
}

/// Requests per replication when `--requests` is not given.
pub const DEFAULT_REQUESTS: u64 = 2000;

/// Run `tokenq replay --rate`: check the flags, replicate, print the summary.
pub fn run(f: &PoissonFlags) -> Result<()> {
    use crate::values::{input_tokens, max_tokens, parse_count, parse_tokens};
    if !(f.rate.is_finite() && f.rate > 0.0) {
        bail!(
            "--rate {}: give a positive arrival rate in req/s, e.g. 3",
            f.rate
        );
    }
    if let Some(q) = f.percentiles.iter().find(|&&q| !(q > 0.0 && q < 100.0)) {
        bail!("--percentiles {q}: give percentiles between 0 and 100, e.g. 50,90,99");
    }
    let Some(tokens_spec) = f.tokens else {
        bail!("--rate needs --tokens DIST (output lengths), e.g. --tokens sharegpt");
    };
    let output = parse_tokens("--tokens", tokens_spec)?;
    let (input, input_spec) = input_tokens(f.input_tokens, tokens_spec)?;
    let limit = max_tokens("--max-tokens", f.max_tokens)?;
    let coef = match f.coefficients {
        Some(c) => Some(
            tokenq_core::CoefficientsFile::read(c)
                .map_err(|e| anyhow::anyhow!("--coefficients {}: {e}", c.display()))?,
        ),
        None => None,
    };
    let s = crate::replay::settings(&f.engine, f.engine_config, f.kv_memory_gib, coef.as_ref())?;
    let flag = f.coefficients.map_or("--coefficients".into(), |c| {
        format!("--coefficients {}", c.display())
    });
    let (model, description) = crate::replay::open_step_model(&s, coef.as_ref(), &flag)?;
    let w = PoissonWorkload {
        rate_rps: f.rate,
        input,
        output,
        max_tokens: limit,
        requests: match f.requests {
            Some(n) => parse_count(n).map_err(|e| anyhow::anyhow!("--requests: {e}"))?,
            None => DEFAULT_REQUESTS,
        },
        replications: f.replications,
        seed: f.seed,
    };
    let r = replicate(&w, &s.engine, s.data_parallel.engines, model.as_ref())?;
    let qs: Vec<f64> = f.percentiles.iter().map(|q| q / 100.0).collect();
    let summary = Summary::new(
        &r,
        &w,
        description,
        s.engine,
        s.data_parallel.engines,
        input_spec,
        tokens_spec.to_string(),
        &qs,
    );
    if f.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.render(&qs));
    }
    Ok(())
}

/// Mean ± Student-t 95 % half-width of independent values.
fn interval(v: &[f64]) -> Estimate {
    sim::stats::replications_interval(v, 0.95)
}

/// The statistic of sorted samples (the quantile by nearest rank).
fn plain(sorted: &[f64], stat: Statistic) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    Some(match stat {
        Statistic::Mean => sorted.iter().sum::<f64>() / sorted.len() as f64,
        Statistic::Quantile(p) => sim::stats::sorted_quantile(sorted, p),
    })
}

/// The same for samples with integer weights (each iteration counts once per decode request).
fn weighted(sorted: &[(f64, u32)], stat: Statistic) -> Option<f64> {
    let total: u64 = sorted.iter().map(|&(_, w)| u64::from(w)).sum();
    if total == 0 {
        return None;
    }
    Some(match stat {
        Statistic::Mean => {
            sorted.iter().map(|&(x, w)| x * f64::from(w)).sum::<f64>() / total as f64
        }
        Statistic::Quantile(p) => {
            let need = ((p * total as f64).ceil() as u64).clamp(1, total);
            let mut acc = 0u64;
            let mut out = sorted[sorted.len() - 1].0;
            for &(x, w) in sorted {
                acc += u64::from(w);
                if acc >= need {
                    out = x;
                    break;
                }
            }
            out
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_statistics_follow_their_definitions() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(plain(&v, Statistic::Quantile(0.5)), Some(2.0));
        assert_eq!(plain(&v, Statistic::Quantile(0.51)), Some(3.0));
        assert_eq!(plain(&v, Statistic::Quantile(0.99)), Some(4.0));
        assert_eq!(plain(&v, Statistic::Mean), Some(2.5));
        assert_eq!(plain(&[], Statistic::Mean), None);
        // Weights count as repeated samples: [1, 1, 1, 5] → p50 = 1, p90 = 5, mean 2.
        let w = [(1.0, 3), (5.0, 1)];
        assert_eq!(weighted(&w, Statistic::Quantile(0.5)), Some(1.0));
        assert_eq!(weighted(&w, Statistic::Quantile(0.9)), Some(5.0));
        assert_eq!(weighted(&w, Statistic::Mean), Some(2.0));
    }

    #[test]
    fn the_interval_is_student_t_on_the_replications() {
        // Values 1, 2, 3: mean 2, sd 1, t(0.975; 2) = 4.3027 → half-width 4.3027/√3.
        let e = interval(&[1.0, 2.0, 3.0]);
        assert!((e.value - 2.0).abs() < 1e-12);
        assert!(
            (e.half_width - 4.302_652_7 / 3f64.sqrt()).abs() < 1e-5,
            "{e:?}"
        );
    }

    /// Overload is judged against each run's own arrivals: a lightly loaded engine (ρ ≈ 0.002)
    /// whose Poisson stream happened to come slow is not overloaded (45 kept requests scatter
    /// their arrivals per second by about ±15 %, so against the offered rate alone about a
    /// third of these runs would be flagged), while one offered twice its capacity is.
    #[test]
    fn overload_is_judged_against_the_runs_own_arrivals() {
        // 10 ms per prompt token and 1 ms per decode step: a 10-token prompt alone takes 0.1 s.
        let model = |b: &sim::continuous::StepBatch| {
            0.01 * f64::from(b.prefill_tokens) + if b.n_decode > 0 { 0.001 } else { 0.0 }
        };
        let engine = EngineConfig::with_kv_blocks(1000);
        let w = |rate_rps: f64, seed: u64| PoissonWorkload {
            rate_rps,
            input: TokenDist::parse("const:10").unwrap(),
            output: TokenDist::parse("const:5").unwrap(),
            max_tokens: f64::INFINITY,
            requests: 50,
            replications: 2,
            seed,
        };
        for seed in 0..20 {
            let r = replicate(&w(0.02, seed), &engine, 1, &model).unwrap();
            assert!(!r.overloaded, "seed {seed}: {:?}", r.throughput_rps);
        }
        // Prefill alone caps the engine at 10 req/s.
        let r = replicate(&w(20.0, 1), &engine, 1, &model).unwrap();
        assert!(r.overloaded && r.throughput_rps.value < 10.5, "{r:?}");
    }

    #[test]
    fn poisson_requests_have_the_asked_rate_and_clipped_outputs() {
        let w = PoissonWorkload {
            rate_rps: 4.0,
            input: TokenDist::parse("const:100").unwrap(),
            output: TokenDist::parse("uniform:0,100").unwrap(),
            max_tokens: 60.0,
            requests: 20_000,
            replications: 2,
            seed: 3,
        };
        let r = poisson_requests(&w, 1);
        let span = r.last().unwrap().arrival_s;
        // 20,000 exponential gaps of mean 0.25 s: sd of the sum is 0.25·√20000 ≈ 35 s.
        assert!((span - 5000.0).abs() < 4.0 * 35.4, "{span}");
        assert!(
            r.iter()
                .all(|q| q.input_tokens == 100 && (1..=60).contains(&q.output_tokens))
        );
        // P(⌈X⌉ = 60) = P(X > 59) = 0.41 for X uniform on [0, 100] (sd of the share 0.0035).
        let at_limit = r.iter().filter(|q| q.output_tokens == 60).count() as f64 / 20_000.0;
        assert!((at_limit - 0.41).abs() < 0.015, "{at_limit}");
    }
}
