//! Whole-run throughput of the simulator on docs/models.md §11's scenarios: one run of 1e6 requests
//! (generate, simulate, summarise), single thread, batch-means output analysis.
//!
//! `cargo bench -p sim --bench throughput` (criterion reports elements/s = requests/s).
//! Two groups: `whole_run_1e6` in wall-clock time, and `whole_run_1e6_cpu` in CPU time of the
//! benchmarking thread (`clock_gettime(CLOCK_THREAD_CPUTIME_ID)`), which stays meaningful on a
//! shared machine where other processes take the cores (wall time then includes waiting).
//! Speed anchors from docs/models.md §11: SimPy 107 k (mg1) – 452 k (dynamic) req/s, a C loop of the
//! mg1 recursion 30.6 M req/s.

use std::hint::black_box;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use queueing::dist::TokenDist;
use sim::{
    Abandonment, Arrivals, BatchTime, LinearService, Patience, Policy, RunConfig, Scenario,
    TokenLaw, TokenMode, Tokens,
};

/// Requests per simulated run.
const REQUESTS: u64 = 1_000_000;

fn scenario(policy: Policy, rate: f64) -> Scenario {
    Scenario {
        policy,
        arrivals: Arrivals::Poisson { rate_rps: rate },
        tokens: Tokens::Law(TokenLaw::Dist(TokenDist::Lognormal {
            mu: 7.0,
            sigma: 0.7,
        })),
        max_tokens: Some(2000.0),
        token_mode: TokenMode::Integer,
    }
}

/// docs/models.md §11's scenarios.
pub fn scenarios() -> Vec<(&'static str, Scenario)> {
    let service = LinearService {
        per_token_s: 0.0229,
        intercept_s: 0.0,
    };
    let bt = BatchTime::new(0.01, 0.1, 0.0005, 0.02).unwrap();
    let lambda = 0.029621031639601243;
    vec![
        (
            "mg1",
            scenario(
                Policy::Mg1 {
                    service,
                    patience: None,
                },
                lambda,
            ),
        ),
        (
            "mg1_impatient",
            scenario(
                Policy::Mg1 {
                    service,
                    patience: Some(Patience {
                        patience_s: 60.0,
                        mode: Abandonment::Renege,
                    }),
                },
                lambda,
            ),
        ),
        (
            "dynamic_l0.2_k16",
            scenario(
                Policy::Dynamic {
                    batch: bt,
                    max_batch: Some(16),
                },
                0.2,
            ),
        ),
        (
            "fixed_l0.2_k16",
            scenario(
                Policy::Fixed {
                    batch: bt,
                    batch_size: 16,
                },
                0.2,
            ),
        ),
        (
            "elastic_l0.2_k16",
            scenario(
                Policy::Elastic {
                    batch: bt,
                    max_batch: Some(16),
                },
                0.2,
            ),
        ),
        (
            "dynamic_l0.5_kinf",
            scenario(
                Policy::Dynamic {
                    batch: bt,
                    max_batch: None,
                },
                0.5,
            ),
        ),
        (
            "elastic_l0.5_kinf",
            scenario(
                Policy::Elastic {
                    batch: bt,
                    max_batch: None,
                },
                0.5,
            ),
        ),
    ]
}

/// CPU time of the calling thread, in nanoseconds.
#[derive(Debug, Clone, Copy)]
struct ThreadCpuTime;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant of the platform.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

struct NsFormatter;

impl ValueFormatter for NsFormatter {
    fn scale_values(&self, _typical: f64, values: &mut [f64]) -> &'static str {
        for v in values {
            *v /= 1e6;
        }
        "ms (cpu)"
    }
    fn scale_throughputs(&self, _typical: f64, t: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match t {
            Throughput::Elements(n) => *n as f64,
            _ => 1.0,
        };
        for v in values {
            *v = n * 1e9 / *v / 1e6;
        }
        "M req/s (cpu)"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, i: u64) -> u64 {
        thread_cpu_ns() - i
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NsFormatter
    }
}

fn bench_cpu(c: &mut Criterion<ThreadCpuTime>) {
    let mut g = c.benchmark_group("whole_run_1e6_cpu");
    g.sample_size(10);
    g.throughput(Throughput::Elements(REQUESTS));
    let cfg = RunConfig {
        requests: REQUESTS,
        seed: 1,
        replications: 1,
        ..RunConfig::default()
    };
    for (name, sc) in scenarios() {
        g.bench_function(name, |b| {
            b.iter(|| black_box(sim::run(black_box(&sc), &cfg).expect("valid scenario")))
        });
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("whole_run_1e6");
    g.sample_size(10);
    g.throughput(Throughput::Elements(REQUESTS));
    let cfg = RunConfig {
        requests: REQUESTS,
        seed: 1,
        replications: 1,
        ..RunConfig::default()
    };
    for (name, sc) in scenarios() {
        g.bench_function(name, |b| {
            b.iter(|| black_box(sim::run(black_box(&sc), &cfg).expect("valid scenario")))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = bench_cpu
}
criterion_main!(benches, cpu);
