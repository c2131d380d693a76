//! Replay speed of the continuous-batching simulator (iterations per second), with the
//! per-layer table step model (the fitted linear model is cheaper per step; `fit` benches
//! nothing of the replay):
//!
//! - the shipped 300-request ShareGPT workload on both Llama-3.1-8B GPUs;
//! - the Azure conversation trace (19,366 requests, built-in `azure-conv`) on the
//!   Qwen3-30B-A3B MoE tables, on one GPU and as the DP2 + EP2 run (two engines in lockstep,
//!   vLLM's DP routing, padding, dummy steps, EP collectives; docs/serving.md "Several GPUs").
//!   Target: DP2 + EP2 within 3× the single-GPU replay's time.
//!
//! `cargo bench -p sim --bench continuous`; the engine iterations of each replay are printed so
//! iterations/s = iterations / time per replay.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use sim::continuous::{
    DataParallel, EngineConfig, Link, Parallelism, Request, SimOptions, StepModel, TableOptions,
    TableStepModel, simulate, simulate_data_parallel, workload,
};

fn data(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets/llmservingsim")
        .join(p)
}

fn azure_conv() -> Vec<Request> {
    let t = sim::Trace::load("azure-conv").expect("built-in azure-conv trace");
    t.requests
        .iter()
        .map(|r| Request {
            arrival_s: r.arrival_s,
            input_tokens: r.input_tokens as u32,
            output_tokens: r.output_tokens as u32,
            prefix_parent: r.prefix_parent.map(|p| p as u32),
            shared_prefix_blocks: r.shared_prefix_blocks as u32,
        })
        .collect()
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

    // Azure conversation trace on the MoE tables: one GPU, and DP2 + EP2 in lockstep.
    let azure = azure_conv();
    let moe = data("RTXPRO6000/Qwen3-30B-A3B-Instruct-2507");
    let cfg = EngineConfig {
        max_num_seqs: 128,
        ..EngineConfig::with_kv_blocks(38_590)
    };
    let single = TableStepModel::open(&moe, &TableOptions::default()).expect("MoE tables");
    let ep2 = TableStepModel::open(
        &moe,
        &TableOptions {
            parallel: Parallelism {
                tensor_parallel: 1,
                expert_parallel: 2,
                link: Link::default(),
            },
            ..TableOptions::default()
        },
    )
    .expect("MoE tables, EP2");
    let dp2 = DataParallel {
        engines: 2,
        lockstep: true,
        ..DataParallel::default()
    };
    let r = simulate(&azure, &cfg, &single, SimOptions::default()).expect("replay");
    println!(
        "azure-conv/single GPU: {} requests, {} iterations per replay",
        azure.len(),
        r.iterations
    );
    c.bench_function("replay_azure_conv_moe_single_gpu", |b| {
        b.iter(|| {
            black_box(
                simulate(&azure, &cfg, &single, SimOptions::default())
                    .unwrap()
                    .iterations,
            )
        })
    });
    let r =
        simulate_data_parallel(&azure, &cfg, &dp2, &ep2, SimOptions::default()).expect("replay");
    println!(
        "azure-conv/DP2+EP2: {} requests, {} engine iterations ({} dummy) per replay",
        azure.len(),
        r.merged.iterations,
        r.merged.dummy_steps
    );
    c.bench_function("replay_azure_conv_moe_dp2_ep2", |b| {
        b.iter(|| {
            black_box(
                simulate_data_parallel(&azure, &cfg, &dp2, &ep2, SimOptions::default())
                    .unwrap()
                    .merged
                    .iterations,
            )
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = bench
}
criterion_main!(benches);
