//! Several servers behind a router (docs/models.md §11 "Several GPUs"): a Poisson stream of
//! `rate_rps` ([`simulate_routed`]) or a trace's arrivals and token counts
//! ([`simulate_routed_trace`]) is routed to `servers` identical servers, each one request at a time (FCFS,
//! service `a·n + c`) or dynamic batching with cap K (padded batch time
//! `T = t1(m) + t2(m)·max n`, an idle server starting a batch of one at the next arrival),
//! as the single-server loops of [`crate::engine`] run them.
//!
//! Routing rules:
//! * [`Routing::Random`]: each request to a server drawn uniformly (each server then sees a
//!   Poisson stream of `rate/servers`: the analytic models' assumption);
//! * [`Routing::RoundRobin`]: request i to server `i mod servers` (each server sees Erlang
//!   gaps: less variable than Poisson);
//! * [`Routing::ShortestQueue`]: to the server with the fewest requests in the system (waiting
//!   plus in service), ties to the lowest index — join-shortest-queue, which needs no service
//!   times, only counts (vLLM's data-parallel router routes by counts too).
//!
//! Statistics: `replications` independent runs of `requests` arrivals each; the first
//! [`WARMUP_FRACTION`] of each run's requests (by arrival) are warm-up and left out; a
//! statistic (mean or p-quantile of the wait or the latency) is the mean of the runs' values
//! with a Student-t 95 % interval on `R − 1` degrees of freedom; so is the share of requests
//! whose own wait and latency meet per-request targets ([`RoutedResult::attainment`], the
//! criterion of vLLM's `--goodput`). A run whose queue exceeds
//! [`crate::engine::MAX_QUEUE`] requests at one server is stopped and reported unstable.

use std::collections::VecDeque;

use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Exp1};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::SimError;
use crate::engine::MAX_QUEUE;
use crate::scenario::{BatchTime, LinearService};
use crate::stats::{Estimate, replications_interval, sorted_quantile};
use crate::tokens::{AnySampler, TokenLaw, TokenMode, TokenSampler};

/// Share of each run's requests (the first, by arrival) left out as warm-up.
pub const WARMUP_FRACTION: f64 = 0.1;

/// How the router picks a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Routing {
    /// Uniformly at random.
    Random,
    /// In turn.
    RoundRobin,
    /// Fewest requests in the system (join-shortest-queue).
    ShortestQueue,
}

/// What each server runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Server {
    /// One request at a time, service `a·n + c`.
    Single(LinearService),
    /// Dynamic batching with cap K.
    Dynamic {
        /// Batch-time model.
        batch: BatchTime,
        /// Cap K.
        cap: u32,
    },
}

impl Server {
    fn cap(&self) -> usize {
        match self {
            Server::Single(_) => 1,
            Server::Dynamic { cap, .. } => *cap as usize,
        }
    }

    fn duration(&self, m: usize, max_n: f64) -> f64 {
        match self {
            Server::Single(s) => s.per_token_s * max_n + s.intercept_s,
            Server::Dynamic { batch, .. } => {
                let m = m as f64;
                batch.t1(m) + batch.t2(m) * max_n
            }
        }
    }
}

/// The run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoutedRun {
    /// Servers behind the router.
    pub servers: u32,
    /// The rule.
    pub routing: Routing,
    /// Total arrival rate, req/s.
    pub rate_rps: f64,
    /// Arrivals per run.
    pub requests: u64,
    /// Independent runs.
    pub replications: u32,
    /// Seed of the first run (run i: `seed + i`).
    pub seed: u64,
}

/// Per run, the kept requests' waits and latencies (sorted, and paired per request in arrival
/// order), and the busy share.
#[derive(Debug, Clone)]
pub struct RoutedResult {
    waits: Vec<Vec<f64>>,
    latencies: Vec<Vec<f64>>,
    pairs: Vec<Vec<(f64, f64)>>,
    /// Busy share of the servers, mean over runs.
    pub utilisation: f64,
}

/// Which of a request's times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Arrival → start of service.
    Wait,
    /// Arrival → completion.
    Latency,
}

#[derive(Debug, Default)]
struct ServerState {
    /// Waiting requests: (index, arrival, tokens).
    queue: VecDeque<(usize, f64, f64)>,
    /// End of the batch in service (≤ now: idle).
    busy_until: f64,
    /// Requests in the batch in service.
    in_service: usize,
    busy_s: f64,
}

/// Simulate `run` with `server` at every server and token counts from `tokens`, clipped at
/// `max_tokens` (`None`: no limit).
pub fn simulate_routed(
    server: Server,
    tokens: &TokenLaw,
    max_tokens: Option<f64>,
    run: &RoutedRun,
) -> Result<RoutedResult, SimError> {
    if run.servers == 0 {
        return Err(SimError::Config("servers: give at least 1".into()));
    }
    if !(run.rate_rps.is_finite() && run.rate_rps > 0.0) {
        return Err(SimError::Config(format!(
            "rate: give a positive arrival rate (got {} req/s)",
            run.rate_rps
        )));
    }
    if run.replications < 2 || run.requests < 20 {
        return Err(SimError::Config(
            "routing runs need at least 2 replications of 20 requests".into(),
        ));
    }
    if server.cap() == 0 {
        return Err(SimError::Scenario(
            "the batch cap must be at least 1".into(),
        ));
    }
    let sampler = AnySampler::new(
        tokens,
        TokenMode::Continuous,
        max_tokens.unwrap_or(f64::INFINITY),
    )?;
    let mean_gap = 1.0 / run.rate_rps;
    let skip = ((run.requests as f64) * WARMUP_FRACTION).floor() as usize;
    collect_runs(run.replications, |r| {
        let mut t = 0.0;
        one_run(
            server,
            run,
            run.requests as usize,
            skip,
            run.seed.wrapping_add(u64::from(r)),
            |rng, _| {
                let e: f64 = Exp1.sample(rng);
                t += e * mean_gap;
                (t, sampler.draw(rng))
            },
        )
    })
}

/// A trace's requests behind the router: arrival times (s, ascending, e.g. a recorded trace
/// rescaled to a rate) and token counts as recorded, clipped at `max_tokens`. No request is
/// left out as warm-up: the trace starts from an empty system, as it was recorded. The runs
/// differ only in the random router's draws; with round robin, join-shortest-queue or one
/// server the run is deterministic, so one run is made and the statistics carry no interval
/// (half-width NaN): they are the trace's own values. `run.requests` is ignored.
pub fn simulate_routed_trace(
    server: Server,
    arrivals_s: &[f64],
    tokens: &[f64],
    max_tokens: Option<f64>,
    run: &RoutedRun,
) -> Result<RoutedResult, SimError> {
    if run.servers == 0 || server.cap() == 0 {
        return Err(SimError::Config(
            "servers and the batch cap must be at least 1".into(),
        ));
    }
    if arrivals_s.len() != tokens.len() || arrivals_s.len() < 2 {
        return Err(SimError::Config(
            "a trace needs at least 2 requests, each with its token count".into(),
        ));
    }
    if arrivals_s.iter().any(|t| !t.is_finite()) || arrivals_s.windows(2).any(|w| w[1] < w[0]) {
        return Err(SimError::Config(
            "trace arrivals must be finite and ascending".into(),
        ));
    }
    let limit = max_tokens.unwrap_or(f64::INFINITY);
    let random = run.routing == Routing::Random && run.servers > 1;
    let runs = if random { run.replications.max(2) } else { 1 };
    collect_runs(runs, |r| {
        one_run(
            server,
            run,
            arrivals_s.len(),
            0,
            run.seed.wrapping_add(u64::from(r)),
            |_, i| (arrivals_s[i], tokens[i].min(limit)),
        )
    })
}

/// `runs` runs of `one`, their waits and latencies sorted and paired.
fn collect_runs(
    runs: u32,
    mut one: impl FnMut(u32) -> Result<(Vec<f64>, Vec<f64>, f64), SimError>,
) -> Result<RoutedResult, SimError> {
    let mut waits = Vec::new();
    let mut latencies = Vec::new();
    let mut pairs = Vec::new();
    let mut busy = 0.0;
    for r in 0..runs {
        let (w, l, u) = one(r)?;
        pairs.push(w.iter().copied().zip(l.iter().copied()).collect());
        let sorted = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v
        };
        waits.push(sorted(w));
        latencies.push(sorted(l));
        busy += u;
    }
    Ok(RoutedResult {
        waits,
        latencies,
        pairs,
        utilisation: busy / f64::from(runs),
    })
}

/// Start batches at `s` while it is free by `t` and requests wait.
fn advance(st: &mut ServerState, server: &Server, t: f64, wait: &mut [f64], latency: &mut [f64]) {
    while st.busy_until <= t && !st.queue.is_empty() {
        let start = st.busy_until.max(st.queue[0].1);
        let m = st.queue.len().min(server.cap());
        let max_n = st.queue.iter().take(m).map(|q| q.2).fold(0.0, f64::max);
        let dur = server.duration(m, max_n);
        for (i, arr, _) in st.queue.drain(..m) {
            wait[i] = start - arr;
            latency[i] = start + dur - arr;
        }
        st.busy_until = start + dur;
        st.in_service = m;
        st.busy_s += dur;
    }
    if st.busy_until <= t {
        st.in_service = 0;
    }
}

/// One run of `n` requests, request i arriving at `next(rng, i)` = (time, tokens); the first
/// `skip` are left out of the waits and latencies returned.
fn one_run(
    server: Server,
    run: &RoutedRun,
    n: usize,
    skip: usize,
    seed: u64,
    mut next: impl FnMut(&mut Xoshiro256PlusPlus, usize) -> (f64, f64),
) -> Result<(Vec<f64>, Vec<f64>, f64), SimError> {
    let k = run.servers as usize;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut states: Vec<ServerState> = (0..k).map(|_| ServerState::default()).collect();
    let mut wait = vec![f64::NAN; n];
    let mut latency = vec![f64::NAN; n];
    let mut t = 0.0;
    for i in 0..n {
        let (at, tokens) = next(&mut rng, i);
        t = at;
        for st in &mut states {
            advance(st, &server, t, &mut wait, &mut latency);
        }
        let s = match run.routing {
            Routing::Random => rng.random_range(0..k),
            Routing::RoundRobin => i % k,
            Routing::ShortestQueue => (0..k)
                .min_by_key(|&j| states[j].queue.len() + states[j].in_service)
                .unwrap_or(0),
        };
        let st = &mut states[s];
        st.queue.push_back((i, t, tokens));
        if st.queue.len() > MAX_QUEUE {
            return Err(SimError::Scenario(format!(
                "unstable: more than {MAX_QUEUE} requests wait at one server at {} req/s",
                run.rate_rps
            )));
        }
        // An idle server starts at once.
        advance(st, &server, t, &mut wait, &mut latency);
    }
    for st in &mut states {
        advance(st, &server, f64::INFINITY, &mut wait, &mut latency);
    }
    let end = states.iter().map(|s| s.busy_until).fold(t, f64::max);
    let busy = states.iter().map(|s| s.busy_s).sum::<f64>() / (k as f64 * end);
    Ok((wait[skip..].to_vec(), latency[skip..].to_vec(), busy))
}

impl RoutedResult {
    /// The mean (`q = None`) or q-quantile of the wait or the latency: the mean of the runs'
    /// values with its Student-t 95 % half-width (seconds).
    pub fn estimate(&self, which: Which, q: Option<f64>) -> Estimate {
        let runs = match which {
            Which::Wait => &self.waits,
            Which::Latency => &self.latencies,
        };
        let vals: Vec<f64> = runs
            .iter()
            .map(|v| match q {
                None => v.iter().sum::<f64>() / v.len() as f64,
                Some(p) => sorted_quantile(v, p),
            })
            .collect();
        replications_interval(&vals, 0.95)
    }

    /// The share of requests whose own wait is at most `wait_max_s` and whose own latency is
    /// at most `latency_max_s` (both per request; `f64::INFINITY` = unbounded): the mean of the
    /// runs' shares with its Student-t 95 % half-width.
    pub fn attainment(&self, wait_max_s: f64, latency_max_s: f64) -> Estimate {
        let vals: Vec<f64> = self
            .pairs
            .iter()
            .map(|run| {
                let met = run
                    .iter()
                    .filter(|&&(w, l)| w <= wait_max_s && l <= latency_max_s)
                    .count();
                met as f64 / run.len() as f64
            })
            .collect();
        replications_interval(&vals, 0.95)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exp_server(mean_service_s: f64) -> (Server, TokenLaw) {
        // Exponential tokens of mean 100 and 0 intercept: exponential service.
        (
            Server::Single(LinearService {
                per_token_s: mean_service_s / 100.0,
                intercept_s: 0.0,
            }),
            TokenLaw::Exponential { mean: 100.0 },
        )
    }

    fn run(servers: u32, routing: Routing, rate: f64) -> RoutedRun {
        RoutedRun {
            servers,
            routing,
            rate_rps: rate,
            requests: 200_000,
            replications: 8,
            seed: 12,
        }
    }

    /// Round robin on n exponential servers: each server is E_n/M/1 (GI/M/1 with Erlang-n gaps
    /// of rate λ), whose wait has `P(W > t) = σ e^{−μ(1−σ)t}` with σ the root in (0, 1) of
    /// `σ = (λ/(λ + μ(1 − σ)))^n` (Kleinrock, Queueing Systems I, §6.4).
    #[test]
    fn round_robin_on_exponential_servers_is_erlang_gi_m_1() {
        let (n, lambda_total, mu) = (3u32, 2.4, 1.0);
        let lambda = lambda_total; // each gap of a server's stream is a sum of n Exp(λ)
        let mut sigma: f64 = 0.5;
        for _ in 0..200 {
            sigma = (lambda / (lambda + mu * (1.0 - sigma))).powi(n as i32);
        }
        let (server, law) = exp_server(1.0 / mu);
        let r = simulate_routed(
            server,
            &law,
            None,
            &run(n, Routing::RoundRobin, lambda_total),
        )
        .unwrap();
        // Mean wait σ/(μ(1 − σ)); p90: P(W > t) = 0.1 → t = ln(10σ)/(μ(1 − σ)).
        let mean = sigma / (mu * (1.0 - sigma));
        let p90 = (10.0 * sigma).ln() / (mu * (1.0 - sigma));
        for (q, want) in [(None, mean), (Some(0.9), p90)] {
            let e = r.estimate(Which::Wait, q);
            assert!(
                (e.value - want).abs() <= e.half_width,
                "{q:?}: {e:?} vs exact {want}"
            );
        }
        // Busy share ρ = λ/(nμ).
        assert!((r.utilisation - lambda_total / (f64::from(n) * mu)).abs() < 0.01);
    }

    /// Random routing on n servers is n independent M/M/1 queues of rate λ/n:
    /// `P(W > t) = ρ e^{−(μ − λ/n)t}`.
    #[test]
    fn random_routing_is_independent_mm1() {
        let (n, lambda_total, mu) = (2u32, 1.4, 1.0);
        let (server, law) = exp_server(1.0 / mu);
        let r = simulate_routed(
            server,
            &law,
            None,
            &RoutedRun {
                requests: 1_000_000,
                ..run(n, Routing::Random, lambda_total)
            },
        )
        .unwrap();
        let (l, rho) = (
            lambda_total / f64::from(n),
            lambda_total / (f64::from(n) * mu),
        );
        let p90 = (10.0 * rho).ln() / (mu - l);
        let e = r.estimate(Which::Wait, Some(0.9));
        assert!((e.value - p90).abs() <= e.half_width, "{e:?} vs {p90}");
        let mean_latency = 1.0 / (mu - l);
        let e = r.estimate(Which::Latency, None);
        assert!(
            (e.value - mean_latency).abs() <= e.half_width,
            "{e:?} vs {mean_latency}"
        );
    }

    /// The attainment is per request: random routing over n exponential servers is n M/M/1
    /// queues of rate λ/n, whose sojourn has `P(T ≤ b) = 1 − e^{−(μ−λ/n)b}`, and the share
    /// with `W ≤ a` and `T ≤ b` is the joint law (W independent of the own service time):
    /// `(1 − ρ)(1 − e^{−μb}) + ρ(1 − e^{−(μ−l)a}) − ρ(μ − l)e^{−μb}(e^{la} − 1)/l` for a ≤ b.
    #[test]
    fn attainment_is_the_joint_share_per_request() {
        let (n, lambda_total, mu) = (2u32, 1.4, 1.0);
        let (server, law) = exp_server(1.0 / mu);
        let r =
            simulate_routed(server, &law, None, &run(n, Routing::Random, lambda_total)).unwrap();
        let l = lambda_total / f64::from(n);
        let rho = l / mu;
        let (a, b) = (1.0, 3.0);
        let joint = (1.0 - rho) * (1.0 - (-mu * b).exp()) + rho * (1.0 - (-(mu - l) * a).exp())
            - rho * (mu - l) * (-mu * b).exp() * ((l * a).exp() - 1.0) / l;
        let e = r.attainment(a, b);
        assert!((e.value - joint).abs() <= e.half_width, "{e:?} vs {joint}");
        let sojourn = 1.0 - (-(mu - l) * b).exp();
        let e = r.attainment(f64::INFINITY, b);
        assert!(
            (e.value - sojourn).abs() <= e.half_width,
            "{e:?} vs {sojourn}"
        );
    }

    /// Join-shortest-queue waits less than round robin, which waits less than random.
    #[test]
    fn shortest_queue_beats_round_robin_beats_random() {
        let (server, law) = exp_server(1.0);
        let p99 = |routing| {
            simulate_routed(server, &law, None, &run(4, routing, 3.2))
                .unwrap()
                .estimate(Which::Wait, Some(0.99))
        };
        let (jsq, rr, rnd) = (
            p99(Routing::ShortestQueue),
            p99(Routing::RoundRobin),
            p99(Routing::Random),
        );
        assert!(
            jsq.hi() < rr.lo() && rr.hi() < rnd.lo(),
            "{jsq:?} {rr:?} {rnd:?}"
        );
    }

    /// Three arrivals one second apart, each needing 1.5 s on one server: waits 0, 0.5, 1
    /// (by hand); on two servers in round robin nobody waits.
    #[test]
    fn trace_by_hand() {
        let server = Server::Single(LinearService {
            per_token_s: 0.01,
            intercept_s: 0.5,
        });
        let arrivals = [0.0, 1.0, 2.0];
        let tokens = [100.0, 100.0, 100.0];
        let one = RoutedRun {
            servers: 1,
            routing: Routing::RoundRobin,
            ..run(1, Routing::RoundRobin, 1.0)
        };
        let r = simulate_routed_trace(server, &arrivals, &tokens, None, &one).unwrap();
        assert_eq!(r.waits, vec![vec![0.0, 0.5, 1.0]]);
        assert_eq!(r.latencies, vec![vec![1.5, 2.0, 2.5]]);
        assert!(r.estimate(Which::Wait, None).half_width.is_nan());
        let two = RoutedRun { servers: 2, ..one };
        let r = simulate_routed_trace(server, &arrivals, &tokens, None, &two).unwrap();
        assert_eq!(r.waits, vec![vec![0.0, 0.0, 0.0]]);
        // The limit clips each request's tokens: 50 tokens take 1 s, so nobody waits.
        let r = simulate_routed_trace(server, &arrivals, &tokens, Some(50.0), &one).unwrap();
        assert_eq!(r.waits, vec![vec![0.0, 0.0, 0.0]]);
        assert!(simulate_routed_trace(server, &[1.0, 0.0], &[1.0, 1.0], None, &one).is_err());
    }

    /// One server fed a trace gives what the single-server loops of `crate::run` give for the
    /// same trace (an independent implementation): one request at a time and dynamic batching.
    #[test]
    fn trace_on_one_server_is_the_engines_trace_replay() {
        use crate::{Arrivals, Policy, RunConfig, Scenario, Tokens, Trace, TraceRequest};
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let mut t = 0.0;
        let reqs: Vec<TraceRequest> = (0..4000)
            .map(|_| {
                let gap: f64 = Exp1.sample(&mut rng);
                t += gap / 0.8;
                let n: f64 = Exp1.sample(&mut rng);
                TraceRequest {
                    arrival_s: t,
                    input_tokens: 1,
                    output_tokens: (100.0 * n).ceil() as u64,
                    prefix_parent: None,
                    shared_prefix_blocks: 0,
                }
            })
            .collect();
        let arrivals: Vec<f64> = reqs.iter().map(|r| r.arrival_s).collect();
        let tokens: Vec<f64> = reqs.iter().map(|r| r.output_tokens as f64).collect();
        let trace = std::sync::Arc::new(Trace {
            requests: reqs,
            source: "test".into(),
        });
        let single = LinearService {
            per_token_s: 0.009,
            intercept_s: 0.05,
        };
        let batch = BatchTime {
            k1: 0.01,
            k2: 0.05,
            k3: 0.0005,
            k4: 0.004,
        };
        for (server, policy) in [
            (
                Server::Single(single),
                Policy::Mg1 {
                    service: single,
                    patience: None,
                },
            ),
            (
                Server::Dynamic { batch, cap: 4 },
                Policy::Dynamic {
                    batch,
                    max_batch: Some(4),
                },
            ),
        ] {
            let scenario = Scenario {
                policy,
                arrivals: Arrivals::Trace {
                    trace: trace.clone(),
                    rate_rps: None,
                },
                tokens: Tokens::FromTrace,
                max_tokens: Some(150.0),
                token_mode: TokenMode::Continuous,
            };
            let engine = crate::run(
                &scenario,
                &RunConfig {
                    requests: 4000,
                    warmup_fraction: 0.0,
                    ..RunConfig::default()
                },
            )
            .unwrap();
            let routed = simulate_routed_trace(
                server,
                &arrivals,
                &tokens,
                Some(150.0),
                &run(1, Routing::Random, 0.8),
            )
            .unwrap();
            let (a, b) = (
                engine.latency_s.mean.value,
                routed.estimate(Which::Latency, None).value,
            );
            assert!((a - b).abs() < 1e-9 * a, "{server:?}: {a} vs {b}");
            let (a, b) = (
                engine.wait_s.mean.value,
                routed.estimate(Which::Wait, None).value,
            );
            assert!((a - b).abs() < 1e-9 * a.max(1e-3), "{server:?}: {a} vs {b}");
        }
    }
}
