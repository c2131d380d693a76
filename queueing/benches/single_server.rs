//! Speed of the single-server models (docs/models.md §1–§3): one (λ, L) point with the exact
//! level-crossing impatience solve (n = 4000 cells; target < 10 ms) and a 100-point sweep of
//! the max-token limit L (target < 200 ms), patient (M/G/1) and impatient (exact solve per L).
//!
//! The `waiting` group: the waiting-time distribution (docs/models.md §1, `queueing::waiting`)
//! at ρ = 0.7 for the sharegpt histogram and the clipped lognormal: construction (target a few
//! ms) and one p99 quantile of the wait and of the sojourn time (target < 1 ms).
//!
//! Run: `CARGO_TARGET_DIR=/work/target-light cargo bench -p queueing --bench single_server`
//! (`-- waiting` for that group only).

use criterion::{Criterion, criterion_group, criterion_main};
use queueing::dist::TokenDist;
use queueing::impatience::{self, Abandonment, DEFAULT_GRID, ServiceLaw};
use queueing::mg1::LinearService;
use queueing::token_limit::{self, Impatience, Problem, StepUtility};
use queueing::waiting::{WaitOptions, waiting_distribution};
use std::hint::black_box;

const SERVICE: LinearService = LinearService {
    per_token_s: 0.02203184157,
    intercept_s: 0.7764157233,
};

fn bench(c: &mut Criterion) {
    let tokens = TokenDist::parse("lognormal:7,0.7").unwrap();
    let law = ServiceLaw::Tokens {
        tokens: tokens.clone(),
        max_tokens: 1300.0,
        service: SERVICE,
    };
    c.bench_function("impatience exact point (L=1300, n=4000)", |b| {
        b.iter(|| {
            impatience::exact(
                black_box(&law),
                0.04,
                60.0,
                DEFAULT_GRID,
                Abandonment::Renege,
            )
            .unwrap()
        })
    });
    let sharegpt = ServiceLaw::Tokens {
        tokens: TokenDist::parse("sharegpt").unwrap(),
        max_tokens: 800.0,
        service: SERVICE,
    };
    c.bench_function("impatience exact point (sharegpt histogram, n=4000)", |b| {
        b.iter(|| {
            impatience::exact(
                black_box(&sharegpt),
                0.1,
                20.0,
                DEFAULT_GRID,
                Abandonment::Renege,
            )
            .unwrap()
        })
    });
    let limits: Vec<f64> = (1..=100).map(|k| 40.0 * k as f64).collect();
    let patient = Problem {
        tokens: &tokens,
        arrival_rate: 1.0 / 40.0,
        service: SERVICE,
        weight: 119.0 / 120.0,
        utility: &StepUtility,
        impatience: None,
    };
    c.bench_function("token-limit sweep, 100 L, patient M/G/1", |b| {
        b.iter(|| token_limit::optimize(black_box(&patient), &limits).unwrap())
    });
    let impatient = Problem {
        impatience: Some(Impatience {
            patience_s: 60.0,
            lost_cost: 4.0,
            abandonment: Abandonment::Renege,
            dekok_tijms: false,
            grid: DEFAULT_GRID,
        }),
        arrival_rate: 0.04,
        weight: 0.95,
        ..patient.clone()
    };
    let mut g = c.benchmark_group("sweep");
    g.sample_size(10);
    g.bench_function("token-limit sweep, 100 L, impatient exact n=4000", |b| {
        b.iter(|| token_limit::optimize(black_box(&impatient), &limits).unwrap())
    });
    g.finish();
}

/// Utilisation of the waiting-distribution benchmarks.
const WAIT_RHO: f64 = 0.7;

fn bench_waiting(c: &mut Criterion) {
    let mut g = c.benchmark_group("waiting");
    for (name, spec, limit) in [
        ("sharegpt", "sharegpt", f64::INFINITY),
        ("lognormal(7,0.7) L=1600", "lognormal:7,0.7", 1600.0),
    ] {
        let tokens = TokenDist::parse(spec).unwrap();
        let (m1, m2) = tokens.clipped_moments(limit);
        let es = SERVICE.moments(m1, m2).0;
        let lambda = WAIT_RHO / es;
        let opts = WaitOptions::default();
        g.bench_function(format!("construct {name} rho=0.7"), |b| {
            b.iter(|| {
                waiting_distribution(black_box(&tokens), limit, lambda, SERVICE, &opts).unwrap()
            })
        });
        let d = waiting_distribution(&tokens, limit, lambda, SERVICE, &opts).unwrap();
        g.bench_function(format!("p99 wait {name} rho=0.7"), |b| {
            b.iter(|| d.quantile_wait(black_box(0.99)).unwrap())
        });
        g.bench_function(format!("p99 sojourn {name} rho=0.7"), |b| {
            b.iter(|| d.quantile_sojourn(black_box(0.99)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench, bench_waiting);
criterion_main!(benches);
