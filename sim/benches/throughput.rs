//! Whole-run throughput of the simulator on MATH.md §11's scenarios: one run of 1e6 requests
//! (generate, simulate, summarise), single thread, batch-means output analysis.
//!
//! `cargo bench -p sim --bench throughput` (criterion reports elements/s = requests/s).
//! Speed anchors from MATH.md §11: SimPy 107 k (mg1) – 452 k (dynamic) req/s, a C loop of the
//! mg1 recursion 30.6 M req/s.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use queueing::dist::TokenDist;
use sim::{
    Arrivals, BatchTime, ImpatienceMode, LinearService, Patience, Policy, RunConfig, Scenario,
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

/// MATH.md §11's scenarios.
pub fn scenarios() -> Vec<(&'static str, Scenario)> {
    let service = LinearService {
        per_token_s: 0.0229,
        intercept_s: 0.0,
    };
    let bt = BatchTime::new(0.01, 0.1, 0.0005, 0.02);
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
                        mode: ImpatienceMode::Renege,
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
criterion_main!(benches);
