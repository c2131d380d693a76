//! Event-driven simulator of every tokenq serving policy (docs/models.md §11, docs/serving.md).
//!
//! Semantics are exactly those of docs/models.md §11: Poisson arrivals (`arrival_i = Σ_{j≤i} Exp(λ)`) or a
//! replayed trace; token counts `N = max(1, round(X))` clipped to `n = min(N, L)` for every
//! policy; single-server FCFS with `S = a·n + c` (paper §III, eqs 1–5) with or without constant
//! patience τ (paper eq 9); dynamic batching with or without a cap K, fixed batching K, and
//! elastic batching (paper §IV, eqs 14–26) with batch time `T = (k1·m + k2) + (k3·m + k4)·max n`.
//! Statistics drop the first 1% of requests and give 95% Student-t intervals from 30 batch means
//! or from independent replications run in parallel (rayon); percentiles come from a log-bucketed
//! histogram with relative error ≤ 2⁻⁸ (0.39%), so memory does not grow with the number of
//! requests. With per-request targets ([`RunConfig::attainment`]) the report also estimates the
//! share of served requests whose own wait and latency both meet them (vLLM's `--goodput`
//! criterion), on the same batch means or replications. The same seed gives the same numbers
//! whatever the thread count.
//!
//! # Library use
//!
//! ```no_run
//! use queueing::dist::TokenDist;
//! use sim::{Arrivals, LinearService, Policy, RunConfig, Scenario, TokenLaw, TokenMode, Tokens};
//!
//! let scenario = Scenario {
//!     policy: Policy::Mg1 {
//!         service: LinearService { per_token_s: 0.0229, intercept_s: 0.0 },
//!         patience: None,
//!     },
//!     arrivals: Arrivals::Poisson { rate_rps: 0.0296 },
//!     tokens: Tokens::Law(TokenLaw::Dist(TokenDist::Lognormal { mu: 7.0, sigma: 0.7 })),
//!     max_tokens: Some(2000.0),
//!     token_mode: TokenMode::Integer,
//! };
//! let report = sim::run(&scenario, &RunConfig { requests: 1_000_000, ..RunConfig::default() })?;
//! if report.is_stable() {
//!     let w = report.wait_s.mean;
//!     println!("mean wait {:.2} ± {:.2} s (simulation, 95% CI)", w.value, w.half_width);
//! }
//! # Ok::<(), sim::SimError>(())
//! ```
//!
//! [`run`] returns a [`Report`] (serialisable; the CLI's `--json` prints it). Unstable systems
//! are not an error: the report says [`Stability::Unstable`] with ρ and the largest stable rate.

pub mod continuous;
pub mod engine;
pub mod report;
pub mod routing;
pub mod scenario;
pub mod stats;
pub mod tokens;
pub mod trace;

use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;

pub use report::{CiInfo, Counts, Report, Stability, Summary};
pub use scenario::{
    Abandonment, Arrivals, BatchTime, LinearService, Patience, Policy, ProgressFn, RunConfig,
    Scenario, Targets, Tokens,
};
pub use stats::{Estimate, QUANTILE_REL_ERROR, SECTIONS};
pub use tokens::{TokenLaw, TokenMode};
pub use trace::{Trace, TraceError, TraceRequest};

use engine::{
    CsvSink, End, NoSink, PoissonWorkload, Recorder, Sink, Ticker, TraceTokens, TraceWorkload,
    Workload, replication_seed,
};
use stats::Unit;
use tokens::{AnySampler, TokenSampler};

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A scenario parameter is out of range.
    #[error("invalid scenario: {0}")]
    Scenario(String),
    /// A run setting is out of range.
    #[error("invalid run settings: {0}")]
    Config(String),
    /// A token law could not be used.
    #[error("invalid token distribution `{spec}`: {why}")]
    Tokens {
        /// The spec or law name.
        spec: String,
        /// What is wrong.
        why: String,
    },
    /// A trace could not be read or is malformed.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// Writing per-request records failed.
    #[error("{path}: cannot write records: {err}")]
    Records {
        /// The records file.
        path: String,
        /// Underlying error.
        err: std::io::Error,
    },
    /// The worker pool could not be built.
    #[error("cannot start {0} worker threads")]
    Threads(usize),
}

/// The workload, prepared once and shared by all replications.
enum Prepared {
    Poisson {
        mean_gap: f64,
        sampler: AnySampler,
    },
    Trace {
        arrivals: Arc<[f64]>,
        own_tokens: Option<Arc<[f64]>>,
        sampler: Option<AnySampler>,
        period: f64,
    },
}

fn prepare(sc: &Scenario) -> Result<Prepared, SimError> {
    let limit = sc.max_tokens.unwrap_or(f64::INFINITY);
    let sampler = match &sc.tokens {
        Tokens::Law(law) => Some(AnySampler::new(law, sc.token_mode, limit)?),
        Tokens::FromTrace => None,
    };
    Ok(match &sc.arrivals {
        Arrivals::Poisson { rate_rps } => Prepared::Poisson {
            mean_gap: 1.0 / rate_rps,
            sampler: sampler.expect("validated: Poisson arrivals need a token law"),
        },
        Arrivals::Trace { trace, rate_rps } => {
            let reqs = &trace.requests;
            let t0 = reqs[0].arrival_s;
            let scale = match (rate_rps, trace.mean_rate()) {
                (Some(target), Some(observed)) => observed / target,
                _ => 1.0,
            };
            let arrivals: Arc<[f64]> = reqs.iter().map(|r| (r.arrival_s - t0) * scale).collect();
            let span = arrivals[arrivals.len() - 1];
            let gap = if reqs.len() > 1 && span > 0.0 {
                span / (reqs.len() - 1) as f64
            } else {
                1.0
            };
            let own_tokens = sampler.is_none().then(|| {
                reqs.iter()
                    .map(|r| {
                        let n = r.output_tokens as f64;
                        let n = if sc.token_mode == TokenMode::Integer {
                            n.max(1.0)
                        } else {
                            n
                        };
                        n.min(limit)
                    })
                    .collect()
            });
            Prepared::Trace {
                arrivals,
                own_tokens,
                sampler,
                period: span + gap,
            }
        }
    })
}

struct RepOut {
    units: Vec<Unit>,
    end: End,
}

fn run_policy<W: Workload, K: Sink>(
    policy: &Policy,
    w: &mut W,
    rng: &mut Xoshiro256PlusPlus,
    n: u64,
    rec: &mut Recorder,
    sink: &mut K,
    ticker: &mut Ticker,
) -> End {
    match policy {
        Policy::Mg1 {
            service,
            patience: None,
        } => engine::mg1::<W, K, false>(
            w,
            rng,
            n,
            service.per_token_s,
            service.intercept_s,
            0.0,
            rec,
            sink,
            ticker,
        ),
        Policy::Mg1 {
            service,
            patience: Some(p),
        } => engine::mg1::<W, K, true>(
            w,
            rng,
            n,
            service.per_token_s,
            service.intercept_s,
            p.patience_s,
            rec,
            sink,
            ticker,
        ),
        Policy::Dynamic { batch, max_batch } => {
            let cap = max_batch.map_or(usize::MAX, |k| k as usize);
            engine::batching::<W, K, false>(w, rng, n, *batch, cap, false, rec, sink, ticker)
        }
        Policy::Fixed { batch, batch_size } => engine::batching::<W, K, false>(
            w,
            rng,
            n,
            *batch,
            *batch_size as usize,
            true,
            rec,
            sink,
            ticker,
        ),
        Policy::Elastic { batch, max_batch } => {
            let cap = max_batch.map_or(usize::MAX, |k| k as usize);
            engine::batching::<W, K, true>(w, rng, n, *batch, cap, false, rec, sink, ticker)
        }
    }
}

/// Poisson workloads are specialised per token law (no per-request dispatch).
fn run_poisson_fast(
    policy: &Policy,
    mean_gap: f64,
    sampler: &AnySampler,
    rng: &mut Xoshiro256PlusPlus,
    n: u64,
    rec: &mut Recorder,
    ticker: &mut Ticker,
) -> End {
    macro_rules! go {
        ($s:expr) => {{
            let mut w = PoissonWorkload {
                t: 0.0,
                mean_gap,
                tokens: $s,
            };
            run_policy(policy, &mut w, rng, n, rec, &mut NoSink, ticker)
        }};
    }
    match sampler {
        AnySampler::Lognormal(s) => go!(*s),
        AnySampler::TruncNormal(s) => go!(*s),
        AnySampler::Uniform(s) => go!(*s),
        AnySampler::IntUniform(s) => go!(*s),
        AnySampler::Const(s) => go!(*s),
        AnySampler::Exp(s) => go!(*s),
        AnySampler::Alias(s) => go!(s),
        AnySampler::Inverse(s) => go!(s),
    }
}

impl<S: TokenSampler + ?Sized> TokenSampler for &S {
    #[inline(always)]
    fn draw<R: rand::Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        (**self).draw(rng)
    }
}

#[allow(clippy::too_many_arguments)]
fn run_rep<K: Sink>(
    sc: &Scenario,
    prep: &Prepared,
    n: u64,
    warm: u64,
    seed: u64,
    targets: Option<Targets>,
    sink: Option<&mut K>,
    progress: Option<&(dyn Fn(u64) + Send + Sync)>,
) -> RepOut {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let patience = match &sc.policy {
        Policy::Mg1 { patience, .. } => *patience,
        _ => None,
    };
    let mut rec = Recorder::new(n, warm, patience, targets);
    let mut ticker = Ticker {
        f: progress,
        done: 0,
        reported: 0,
    };
    let end = match (prep, sink) {
        (Prepared::Poisson { mean_gap, sampler }, None) => run_poisson_fast(
            &sc.policy,
            *mean_gap,
            sampler,
            &mut rng,
            n,
            &mut rec,
            &mut ticker,
        ),
        (Prepared::Poisson { mean_gap, sampler }, Some(sink)) => {
            let mut w = PoissonWorkload {
                t: 0.0,
                mean_gap: *mean_gap,
                tokens: sampler,
            };
            run_policy(&sc.policy, &mut w, &mut rng, n, &mut rec, sink, &mut ticker)
        }
        (
            Prepared::Trace {
                arrivals,
                own_tokens,
                sampler,
                period,
            },
            sink,
        ) => {
            let tokens = match (own_tokens, sampler) {
                (Some(v), _) => TraceTokens::Own(v.clone()),
                (None, Some(s)) => TraceTokens::Law(s.clone()),
                (None, None) => unreachable!("prepare gives trace tokens or a law"),
            };
            let mut w = TraceWorkload {
                arrivals: arrivals.clone(),
                tokens,
                period: *period,
                idx: 0,
                lap: 0.0,
            };
            match sink {
                Some(sink) => {
                    run_policy(&sc.policy, &mut w, &mut rng, n, &mut rec, sink, &mut ticker)
                }
                None => run_policy(
                    &sc.policy,
                    &mut w,
                    &mut rng,
                    n,
                    &mut rec,
                    &mut NoSink,
                    &mut ticker,
                ),
            }
        }
    };
    if let Some(f) = progress
        && n > ticker.reported
    {
        f(n - ticker.reported);
    }
    RepOut {
        units: rec.finish(end.last_arrival),
        end,
    }
}

/// Simulate `scenario` as `config` says; see the crate docs.
pub fn run(scenario: &Scenario, config: &RunConfig) -> Result<Report, SimError> {
    scenario.validate()?;
    config.validate()?;
    if let (Arrivals::Trace { .. }, Tokens::FromTrace) = (&scenario.arrivals, &scenario.tokens)
        && config.replications > 1
    {
        return Err(SimError::Config(
            "replications of a trace with its own token counts would all be identical; use one replication (batch means) or give a token distribution".into(),
        ));
    }
    let started = Instant::now();
    let prep = prepare(scenario)?;
    let n = config.requests;
    let warm = (n as f64 * config.warmup_fraction).floor() as u64;
    let progress = config.progress.as_ref().map(|p| &*p.0);

    let one = |rep: u32| -> Result<RepOut, SimError> {
        let seed = replication_seed(config.seed, rep);
        match (&config.records, rep) {
            (Some(path), 0) => {
                let file = std::fs::File::create(path).map_err(|err| SimError::Records {
                    path: path.display().to_string(),
                    err,
                })?;
                let mut sink = CsvSink {
                    out: std::io::BufWriter::with_capacity(1 << 20, file),
                    err: None,
                };
                use std::io::Write;
                if let Err(err) = writeln!(sink.out, "{}", engine::RECORDS_HEADER) {
                    return Err(SimError::Records {
                        path: path.display().to_string(),
                        err,
                    });
                }
                let out = run_rep(
                    scenario,
                    &prep,
                    n,
                    warm,
                    seed,
                    config.attainment,
                    Some(&mut sink),
                    progress,
                );
                let flushed = sink.out.flush();
                if let Some(err) = sink.err.or(flushed.err()) {
                    return Err(SimError::Records {
                        path: path.display().to_string(),
                        err,
                    });
                }
                Ok(out)
            }
            _ => Ok(run_rep::<NoSink>(
                scenario,
                &prep,
                n,
                warm,
                seed,
                config.attainment,
                None,
                progress,
            )),
        }
    };
    let reps: Vec<RepOut> = if config.replications == 1 {
        vec![one(0)?]
    } else {
        let work = || {
            (0..config.replications)
                .into_par_iter()
                .map(one)
                .collect::<Result<Vec<_>, _>>()
        };
        match config.threads {
            Some(t) => rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .map_err(|_| SimError::Threads(t))?
                .install(work)?,
            None => work()?,
        }
    };
    Ok(build_report(
        scenario,
        config,
        warm,
        reps,
        started.elapsed().as_secs_f64(),
    ))
}

fn build_report(
    sc: &Scenario,
    cfg: &RunConfig,
    warm: u64,
    reps: Vec<RepOut>,
    elapsed: f64,
) -> Report {
    fn merged<'a>(us: impl Iterator<Item = &'a Unit>) -> Unit {
        let mut p = Unit::default();
        for u in us {
            p.merge(u);
        }
        p
    }
    let pooled_reps: Vec<Unit>;
    let (ci_units, kind): (Vec<&Unit>, &str) = if reps.len() == 1 {
        (reps[0].units.iter().collect(), "batch_means")
    } else {
        pooled_reps = reps.iter().map(|r| merged(r.units.iter())).collect();
        (pooled_reps.iter().collect(), "replications")
    };
    let pooled = merged(ci_units.iter().copied());
    let est = report::estimates(&ci_units, &pooled, cfg.confidence);

    // Section mean waits pooled over replications by section index, for the trend test.
    let section_waits: Vec<f64> = (0..SECTIONS)
        .map(|s| {
            let (w, c) = reps.iter().fold((0.0, 0u64), |(w, c), r| {
                (w + r.units[s].sum_wait, c + r.units[s].served)
            });
            if c > 0 { w / c as f64 } else { 0.0 }
        })
        .collect();
    let impatient = matches!(
        sc.policy,
        Policy::Mg1 {
            patience: Some(_),
            ..
        }
    );
    let aborted = reps.iter().find_map(|r| r.end.aborted.clone());
    let rho_limit = match sc.policy {
        Policy::Mg1 {
            patience: Some(_), ..
        } => None,
        Policy::Mg1 { patience: None, .. } => Some(1.0),
        _ => Some(report::BATCH_RHO_LIMIT),
    };
    let stability = report::stability(&pooled, &section_waits, rho_limit, aborted.as_deref());

    let mut counts = Counts::default();
    let mut max_queue = 0usize;
    for r in &reps {
        counts.arrivals += r.end.arrivals;
        counts.served += r.end.served;
        counts.lost += r.end.lost;
        counts.waiting_at_end += r.end.waiting_at_end;
        max_queue = max_queue.max(r.end.max_queue);
    }
    let state_bytes = reps[0].units.iter().map(Unit::state_bytes).sum::<usize>()
        + max_queue.next_power_of_two() * std::mem::size_of::<(f64, f64)>();
    Report {
        method: queueing::Method::Simulation,
        policy: sc.policy.name().to_string(),
        requests: cfg.requests,
        replications: cfg.replications,
        warmup_requests: warm,
        seed: cfg.seed,
        ci: CiInfo {
            kind: kind.into(),
            units: ci_units.len(),
            confidence: cfg.confidence,
        },
        arrival_rate_rps: if pooled.span > 0.0 {
            pooled.arrivals as f64 / pooled.span
        } else {
            f64::NAN
        },
        wait_s: est.wait,
        latency_s: est.latency,
        wait_all_s: impatient.then_some(est.wait_all),
        attainment: cfg.attainment.map(|_| est.attainment),
        loss_fraction: est.loss,
        mean_batch_size: est.batch_size,
        utilisation: est.utilisation,
        throughput_rps: est.throughput,
        stability,
        counts,
        quantile_rel_error: QUANTILE_REL_ERROR,
        max_queue: max_queue as u64,
        state_bytes: state_bytes as u64,
        elapsed_s: elapsed,
        sim_requests_per_s: (cfg.requests * u64::from(cfg.replications)) as f64
            / elapsed.max(1e-12),
    }
}
