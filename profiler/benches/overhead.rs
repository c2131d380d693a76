//! The profiler's own overhead per step: one pass through `measure_pass` (the `Backend`
//! calls, host timer, synchronisation, row bookkeeping) against a bare loop of the same
//! forward + argmax calls on the tiny CPU model. Target: ≤ 2 %.
//!
//! A second group times the same loop on the synthetic backend (modeled clock), which isolates
//! the bookkeeping from the model's timing noise.
//!
//! `cargo bench -p profiler --bench overhead` (or `--profile dev` for a quick build)

use candle_core::{D, Device, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use profiler::runner::{measure_pass, random_prompts};
use profiler::{Backend, CandleBackend, CandleSpec, DeviceChoice, PointShape, Precision};
use std::hint::black_box;

const OUTPUT: u32 = 32;

fn backend() -> CandleBackend {
    let spec = CandleSpec::resolve(Some("tiny"), None, 0, DeviceChoice::Cpu, Precision::F32)
        .expect("tiny preset");
    CandleBackend::new(spec).expect("tiny model")
}

/// The same work with nothing around it: forward, argmax, feed back.
fn bare_pass(b: &mut CandleBackend, ids: &[u32], batch: usize, input: usize) {
    let x = Tensor::from_vec(ids.to_vec(), (batch, input), &Device::Cpu).unwrap();
    let mut next = b
        .forward_logits(&x, 0)
        .unwrap()
        .argmax_keepdim(D::Minus1)
        .unwrap();
    for k in 1..OUTPUT as usize {
        next = b
            .forward_logits(&next, input + k - 1)
            .unwrap()
            .argmax_keepdim(D::Minus1)
            .unwrap();
    }
    black_box(next);
}

fn overhead(c: &mut Criterion) {
    for (batch, input) in [(1u32, 32u32), (8, 32)] {
        let mut g = c.benchmark_group(format!("tiny_cpu_b{batch}_in{input}_out{OUTPUT}"));
        let mut b = backend();
        let prompts = random_prompts(b.vocab_size(), batch, input, 1);
        let shape = PointShape {
            batch_size: batch,
            input_tokens: input,
            max_output: OUTPUT,
        };
        g.bench_function("bare_forward_loop", |bench| {
            bench.iter(|| bare_pass(&mut b, &prompts.ids, batch as usize, input as usize))
        });
        g.bench_function("profiler_measure_pass", |bench| {
            bench.iter(|| black_box(measure_pass(&mut b, shape, &prompts, 0).unwrap()))
        });
        g.finish();
    }
}

/// The loop's own cost without a model: `measure_pass` on the synthetic backend with the
/// modeled clock (no waiting). Its time per step bounds the profiler's bookkeeping per step
/// from above (it includes the synthetic backend's noise sampling), free of the model's noise.
fn loop_only(c: &mut Criterion) {
    let mut g = c.benchmark_group(format!("loop_only_b1_in32_out{OUTPUT}"));
    let mut b = profiler::SyntheticBackend::new(profiler::SyntheticSpec::default());
    let prompts = random_prompts(b.vocab_size(), 1, 32, 1);
    let shape = PointShape {
        batch_size: 1,
        input_tokens: 32,
        max_output: OUTPUT,
    };
    g.bench_function("synthetic_measure_pass", |bench| {
        bench.iter(|| black_box(measure_pass(&mut b, shape, &prompts, 0).unwrap()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = overhead, loop_only
}
criterion_main!(benches);
