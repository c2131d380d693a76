//! Speed of the batch models (docs/models.md §4–§7): one exact chain solve with batches up to 256, and
//! a 50-point arrival-rate sweep. Run: `cargo bench -p queueing --bench batch`.

use criterion::{Criterion, criterion_group, criterion_main};
use queueing::batch::{
    BatchTime, ChainOptions, LlmBatch, Padded, PaddedTreatment, solve_dynamic, solve_fixed,
};
use queueing::dist::TokenDist;
use std::hint::black_box;

fn set_u() -> LlmBatch {
    LlmBatch::new(
        BatchTime::new(0.004, 0.03, 0.0002, 0.02).unwrap(),
        TokenDist::Uniform {
            lo: 0.0,
            hi: 1000.0,
        },
    )
    .unwrap()
}

fn set_l() -> LlmBatch {
    LlmBatch::new(
        BatchTime::new(0.0004, 0.003, 0.0003, 0.002).unwrap(),
        TokenDist::Lognormal {
            mu: 7.0,
            sigma: 0.7,
        },
    )
    .unwrap()
}

fn benches(c: &mut Criterion) {
    let o = ChainOptions::default();
    let u = set_u();
    let l = set_l();
    let pu = Padded {
        llm: &u,
        treatment: PaddedTreatment::Random,
    };
    let pl = Padded {
        llm: &l,
        treatment: PaddedTreatment::Random,
    };
    let mut g = c.benchmark_group("batch");
    g.sample_size(10);
    // Set U, dynamic with cap K = 256 at 80% of v(256) = 3.557 req/s (batches of ~130-256,
    // random T_b).
    let lam_u = 0.8 * u.speed(256);
    g.bench_function("dynamic_cap256_setU_rho0.8", |b| {
        b.iter(|| solve_dynamic(&pu, black_box(lam_u), Some(256), &o).unwrap())
    });
    // Set U, unbounded dynamic at λ = 2 (E[B] = 66, random T_b): C-U2 of docs/models.md §9.4.
    g.bench_function("dynamic_unbounded_setU_lambda2", |b| {
        b.iter(|| solve_dynamic(&pu, black_box(2.0), None, &o).unwrap())
    });
    // Set U, fixed K = 256 at 80% of its stable rate (random T_K).
    g.bench_function("fixed_k256_setU_rho0.8", |b| {
        b.iter(|| solve_fixed(&pu, black_box(lam_u), 256, &o).unwrap())
    });
    // Set L (lognormal, heavy tail), fixed K = 64 at 80% of its stable rate (random T_K).
    let lam_l = 0.8 * l.speed(64);
    g.bench_function("fixed_k64_setL_rho0.8", |b| {
        b.iter(|| solve_fixed(&pl, black_box(lam_l), 64, &o).unwrap())
    });
    // 50-point sweep: Set U unbounded dynamic, λ from 2% to 90% of the stable limit 1/α.
    let lmax = 1.0 / u.padded_slope().unwrap();
    g.bench_function("sweep50_dynamic_unbounded_setU", |b| {
        b.iter(|| {
            let mut acc = 0.0;
            for i in 0..50 {
                let lam = lmax * (0.02 + 0.88 * i as f64 / 49.0);
                acc += solve_dynamic(&pu, lam, None, &o).unwrap().latency_s;
            }
            acc
        })
    });
    // 50-point sweep: Set L, dynamic with cap 16, λ up to 90% of v(16).
    let l16 = l.speed(16);
    g.bench_function("sweep50_dynamic_cap16_setL", |b| {
        b.iter(|| {
            let mut acc = 0.0;
            for i in 0..50 {
                let lam = l16 * (0.02 + 0.88 * i as f64 / 49.0);
                acc += solve_dynamic(&pl, lam, Some(16), &o).unwrap().latency_s;
            }
            acc
        })
    });
    g.finish();
}

criterion_group!(batch, benches);
criterion_main!(batch);
