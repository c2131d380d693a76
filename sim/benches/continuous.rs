//! Replay speed of the continuous-batching simulator (iterations per second) on the shipped
//! 300-request ShareGPT workload, for both GPUs, with the per-layer table step model (the
//! fitted linear model is cheaper per step; `fit` benches nothing of the replay).
//!
//! `cargo bench -p sim --bench continuous`; the engine iterations of each replay are printed so
//! iterations/s = iterations / time per replay.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use sim::continuous::{EngineConfig, SimOptions, StepModel, TableStepModel, simulate, workload};

fn data(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets/llmservingsim")
        .join(p)
}

fn bench(c: &mut Criterion) {
    let reqs = workload::read_trace(&data("sharegpt-llama-3.1-8b-300-sps10.lengths.csv"))
        .expect("workload");
    for (gpu, seqs, blocks) in [("RTX4090", 256, 2588), ("RTXPRO6000", 128, 36578)] {
        let cfg = EngineConfig {
            max_num_seqs: seqs,
            ..EngineConfig::with_kv_blocks(blocks)
        };
        let table = TableStepModel::load(&data(gpu), 32, false).expect("tables");
        let models: [(&str, &dyn StepModel); 1] = [("table", &table)];
        for (name, model) in models {
            let r = simulate(&reqs, &cfg, model, SimOptions::default()).expect("replay");
            println!("{gpu}/{name}: {} iterations per replay", r.iterations);
            c.bench_function(&format!("replay_{gpu}_{name}"), |b| {
                b.iter(|| {
                    black_box(
                        simulate(&reqs, &cfg, model, SimOptions::default())
                            .unwrap()
                            .iterations,
                    )
                })
            });
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
