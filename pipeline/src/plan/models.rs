//! The model each policy is evaluated with: one request at a time exact (M/G/1) on one GPU or
//! behind the random split; dynamic batching simulated; either of them behind round robin or
//! join-shortest-queue, or on a trace, simulated with its router; continuous batching replayed
//! as vLLM runs it.

use anyhow::{Result, bail};
use queueing::waiting::{WaitOptions, waiting_distribution};
use sim::continuous::EngineConfig;
use tokenq_core::{Estimate, Method};

use super::evaluate::{Candidate, Lines, RequestTargets, Share, SloValue};
use super::{Metric, PlanConfig, PlanPolicy, Stat};
use crate::poisson_replay::{Latency, PoissonWorkload, Statistic};

/// Quantiles the simulator estimates (with intervals).
const SIM_QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// One request at a time or dynamic batching on `gpus` servers behind a round-robin or
/// join-shortest-queue router: simulated (`sim::routing`), replications with 95 % intervals;
/// or, with a trace, the trace replayed behind the router (any rule, one GPU too).
#[allow(clippy::too_many_arguments)]
pub(super) fn routed(
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
pub(super) fn single(
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
pub(super) fn batched(
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
pub(super) fn continuous(
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
