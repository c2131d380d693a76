//! Several GPUs (docs/serving.md "Several GPUs"): the TP all-reduce cost and the MoE block
//! against values computed by hand from the shipped CSVs, vLLM's DP routing on hand-traced
//! examples, the lockstep of MoE engines (dummy steps, padding to the group's largest step), and
//! conservation (every request completes exactly once, on exactly one engine).
//!
//! The reference values come from an independent Python script reading the CSVs of
//! `../shared/data/llmservingsim/perf/RTXPRO6000/<model>/tpN/` (table rows at grid points, linear
//! interpolation by hand between them; one all-reduce message = 20 µs + bytes / (16·2^30/1e9
//! bytes per ns)).

use std::path::PathBuf;

use proptest::prelude::*;
use sim::continuous::{
    DataParallel, EngineConfig, Link, Parallelism, Request, SimOptions, StepBatch, StepModel,
    TableOptions, TableStepModel, simulate, simulate_data_parallel,
};

fn data(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets/llmservingsim")
        .join(p)
}

fn rel(a: f64, b: f64) -> f64 {
    ((a - b) / b).abs()
}

fn decode(n: u32, ctx: u32) -> StepBatch {
    StepBatch::uniform_decode(f64::from(n), f64::from(ctx))
}

fn prefill(tokens: u32) -> StepBatch {
    let mut b = StepBatch::default();
    b.push_prefill(tokens, 0);
    b
}

fn tables(model: &str, tp: u32, ep: u32) -> TableStepModel {
    TableStepModel::open(
        &data(model),
        &TableOptions {
            parallel: Parallelism {
                tensor_parallel: tp,
                expert_parallel: ep,
                link: Link::default(),
            },
            ..TableOptions::default()
        },
    )
    .unwrap()
}

const QWEN32: &str = "RTXPRO6000/Qwen3-32B";
const QWEN_MOE: &str = "RTXPRO6000/Qwen3-30B-A3B-Instruct-2507";

// ------------------------------------------------------------- tensor parallelism

/// One ring all-reduce over 2 ranks = 2 messages of D/2; per step 2 per layer × 64 layers of
/// D = T × 5120 × 2 bytes: 5.12 ms + 76.3 µs × T (12.749 ms at T = 100, 161.37 ms at 2048).
#[test]
fn tp2_all_reduce_closed_form() {
    let link = Link::default();
    assert!((link.bytes_per_ns() - 17.179_869_184).abs() < 1e-12);
    assert!((link.all_reduce_us(1024.0, 2) - 2.0 * (20.0 + 512.0 / 17_179.869_184)).abs() < 1e-12);
    let t = tables(QWEN32, 2, 1);
    assert_eq!(t.layers(), 64, "num_hidden_layers of model_config.json");
    assert!(rel(t.step_collectives_s(100), 12.749_395e-3) < 1e-6);
    assert!(rel(t.step_collectives_s(2048), 161.37e-3) < 1e-9);
    // Closed form: 128 × (2 × 20 µs + D / 17.18 B/ns), D = T·5120·2 B.
    for tokens in [1u32, 16, 777, 2048] {
        let want = 128.0 * (40.0 + f64::from(tokens) * 10_240.0 / 17_179.869_184) * 1e-6;
        assert!(
            rel(t.step_collectives_s(tokens), want) < 1e-12,
            "T = {tokens}"
        );
    }
}

/// Whole TP2 steps: the tp2 shard's rows (with Qwen3's qk_norm) plus the all-reduces.
#[test]
fn tp2_step_matches_hand_computed_values() {
    let t = tables(QWEN32, 2, 1);
    let names: Vec<&str> = t.decoder_layers().iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "layernorm",
            "qkv_proj",
            "qk_norm",
            "rotary_emb",
            "o_proj",
            "gate_up_proj",
            "act_fn",
            "down_proj"
        ]
    );
    assert_eq!(t.decoder_layers()[0].1, 2.0, "layernorm twice");
    assert_eq!(
        t.skew(),
        (true, true),
        "skew_fit.csv in tp2/: on by default"
    );
    assert_eq!(t.skew_alpha_default(), 0.0649, "meta.yaml per_tp.2");
    assert!(t.dir().ends_with("tp2"));
    // 16 decodes at 1024 (every axis at a grid point): 32748.297595 µs, 6340.703125 µs of it
    // in all-reduces.
    assert!(rel(t.step_time_s(&decode(16, 1024)), 32_748.297_595e-6) < 1e-9);
    assert!(rel(t.step_collectives_s(16), 6_340.703_125e-6) < 1e-12);
    // A 512-token prefill chunk: 95424.7835 µs, 44182.5 µs in all-reduces.
    assert!(rel(t.step_time_s(&prefill(512)), 95_424.783_5e-6) < 1e-9);
    assert!(rel(t.step_collectives_s(512), 44_182.5e-6) < 1e-12);
    // The link is a parameter: without latency and at twice the bandwidth the step saves
    // 128 × 40 µs and half of the 128 × 16 × 10240 B / 17.18 B/ns, and nothing else.
    let fast = TableStepModel::open(
        &data(QWEN32),
        &TableOptions {
            parallel: Parallelism {
                tensor_parallel: 2,
                expert_parallel: 1,
                link: Link {
                    bandwidth_gb_s: 32.0,
                    latency_ns: 0.0,
                },
            },
            ..TableOptions::default()
        },
    )
    .unwrap();
    let b = decode(16, 1024);
    let saved = t.step_time_s(&b) - fast.step_time_s(&b);
    let want = (128.0 * 40.0 + 0.5 * 128.0 * 16.0 * 10_240.0 / 17_179.869_184) * 1e-6;
    assert!(rel(saved, want) < 1e-9, "{saved} vs {want}");
}

#[test]
fn tp_degree_and_tables_must_agree() {
    let wrong = TableStepModel::open(
        &data("RTXPRO6000/Qwen3-32B/tp2"),
        &TableOptions {
            parallel: Parallelism {
                tensor_parallel: 4,
                ..Parallelism::default()
            },
            ..TableOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(wrong.contains("tp2") && wrong.contains("4"), "{wrong}");
    let tp1 = TableStepModel::open(&data(QWEN32), &TableOptions::default())
        .unwrap_err()
        .to_string();
    assert!(tp1.contains("tp2"), "{tp1}");
    let flat = TableStepModel::open(
        &data("RTXPRO6000"),
        &TableOptions {
            parallel: Parallelism {
                tensor_parallel: 2,
                ..Parallelism::default()
            },
            ..TableOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(flat.contains("tp2/"), "{flat}");
    let dense_ep = TableStepModel::open(
        &data("RTXPRO6000/Qwen3-32B"),
        &TableOptions {
            parallel: Parallelism {
                tensor_parallel: 2,
                expert_parallel: 2,
                ..Parallelism::default()
            },
            ..TableOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(dense_ep.contains("MoE"), "{dense_ep}");
}

// ------------------------------------------------------------- MoE and expert parallelism

/// upstream `_lookup_moe`: bracket the expert rows (clamp below, extrapolate above), linear in
/// tokens inside a row (clamped below its first point), blend between rows.
#[test]
fn moe_lookup_matches_hand_computed_values() {
    let t = tables(QWEN_MOE, 1, 2);
    assert!(t.is_moe());
    assert_eq!(t.layers(), 48);
    let m = |tok: f64, e: f64| t.moe_table_us(tok, e).unwrap();
    // Row 64 between 64 (432.672) and 128 (456.737) tokens.
    assert!(rel(m(100.0, 64.0), 446.208_562_5) < 1e-12);
    // Rows 32 (4..8 tokens) and 64 (clamped to its first point, 8 tokens), blended at 1/4.
    assert!(rel(m(5.0, 40.0), 279.868_375) < 1e-12);
    assert!(rel(m(5.0, 20.0), 157.861) < 1e-12);
    // Past both ends: the last two rows and the last two token points, extrapolated.
    assert!(rel(m(3000.0, 200.0), 1_552.161_927_734) < 1e-9);
    // Below the first row: clamped to it; at a grid point: the table value.
    assert_eq!(m(16.0, 128.0), 817.612);
    assert_eq!(m(2048.0, 4.0), 578.466);
}

/// BALANCED gate, ep = 2, k = 8, E = 128: tokens = round(T·(1 − 2⁻⁸)) (half to even, as
/// Python), experts = min(round(4T), 64); without EP: (T, min(8T, 128)).
#[test]
fn expert_parallel_rank_load_and_collectives() {
    let ep = tables(QWEN_MOE, 1, 2);
    assert_eq!(ep.moe_rank_load(100), Some((100.0, 64.0)));
    assert_eq!(
        ep.moe_rank_load(384),
        Some((382.0, 64.0)),
        "382.5 rounds to even"
    );
    assert_eq!(ep.moe_rank_load(1), Some((1.0, 4.0)));
    assert_eq!(ep.moe_rank_load(256), Some((255.0, 64.0)));
    let one = tables(QWEN_MOE, 1, 1);
    assert_eq!(one.moe_rank_load(5), Some((5.0, 40.0)));
    assert_eq!(one.moe_rank_load(100), Some((100.0, 128.0)));
    assert_eq!(one.step_collectives_s(100), 0.0);
    // All-gather of ⌊T/2⌋·(2048 + 128)·2 B (one message) + reduce-scatter of T·2048·2 B (one
    // message of half): 40 µs + 0.246 µs·T per layer.
    assert!(rel(ep.layer_collectives_us(100), 64.586_915_970) < 1e-9);
    for t in [1u32, 2, 101, 2048] {
        let bytes = f64::from((t / 2).max(1)) * 2176.0 * 2.0 + f64::from(t) * 2048.0;
        let want = 40.0 + bytes / 17_179.869_184;
        assert!(rel(ep.layer_collectives_us(t), want) < 1e-12, "T = {t}");
    }
}

/// One rank's step padded to the group's T_max: dense layers, lm_head/sampler (one sequence per
/// padding token), the MoE block and its collectives at T_max; attention only the real batch.
#[test]
fn padded_moe_rank_matches_hand_computed_values() {
    let ep = tables(QWEN_MOE, 1, 2);
    let mut dummy = StepBatch::default();
    dummy.push_decode(1);
    assert!(rel(ep.padded_step_time_s(&dummy, 256), 31_412.388_244_375e-6) < 1e-9);
    let b = decode(16, 1024);
    assert!(rel(ep.padded_step_time_s(&b, 256), 32_814.277_684_375e-6) < 1e-9);
    // Padding to fewer tokens than the batch has changes nothing.
    assert_eq!(ep.padded_step_time_s(&b, 3), ep.step_time_s(&b));
    // One GPU, no EP: moe.csv(16, 128) per layer, no collectives.
    let one = tables(QWEN_MOE, 1, 1);
    assert!(rel(one.step_time_s(&b), 43_040.341_14e-6) < 1e-9);
}

// ------------------------------------------------------------- data parallelism

fn engine(kv_blocks: u32) -> EngineConfig {
    EngineConfig::with_kv_blocks(kv_blocks)
}

fn req(at: f64, input: u32, output: u32) -> Request {
    Request::new(at, input, output)
}

/// Every step takes 1/8 s (binary-exact times).
fn eighth(_: &StepBatch) -> f64 {
    0.125
}

fn routed(reqs: &[Request], interval: f64) -> Vec<u32> {
    let dp = DataParallel {
        engines: 2,
        lockstep: false,
        stats_interval_s: interval,
    };
    let r =
        simulate_data_parallel(reqs, &engine(1000), &dp, &eighth, SimOptions::default()).unwrap();
    r.merged.records.iter().map(|x| x.engine).collect()
}

/// Hand trace (steps of 1/8 s). r0 (one output token) arrives at 0, r1 at 1/16, r2 at 5/32, r3
/// at 11/64, r4 at 5/16; all but r0 run long.
///
/// Live counts (interval 0), score 4·waiting + running: r0 → 0 (tie); r1 → 1 (engine 0 runs r0);
/// r2 → 0 (r0 finished at 1/8, engine 1 runs r1); r3 → 0 (1 vs 1: tie); r4 → 1 (engine 0 runs
/// r2 and r3, engine 1 r1).
///
/// Published every 1/4 s: until the publish at 1/4 the router sees the zeros published at 0
/// plus its own +1 waiting per request sent: r0 → 0, r1 → 1 (4 vs 0), r2 → 0 (4 vs 4), r3 → 1
/// (8 vs 4). The publish at 1/4 holds each engine's counts at its last step end: engine 0
/// (0 waiting, 0 running) from 1/8, engine 1 (1, 1) from 3/16 (r3 waiting, r1 running), so
/// r4 → 0 (0 vs 5) although engine 0 is running r2 by then.
#[test]
fn dp_routing_hand_traced() {
    let reqs = [
        req(0.0, 16, 1),
        req(0.0625, 16, 100),
        req(0.156_25, 16, 100),
        req(0.171_875, 16, 100),
        req(0.3125, 16, 100),
    ];
    assert_eq!(routed(&reqs, 0.0), [0, 1, 0, 0, 1]);
    assert_eq!(routed(&reqs, 0.25), [0, 1, 0, 1, 0]);
    // A coordinator that never publishes again: the front end's own increments alone, so
    // requests alternate.
    assert_eq!(routed(&reqs, 1e6), [0, 1, 0, 1, 0]);
    let many: Vec<Request> = (0..9).map(|i| req(f64::from(i) * 0.001, 16, 50)).collect();
    assert_eq!(routed(&many, 1e6), [0, 1, 0, 1, 0, 1, 0, 1, 0]);
}

/// Each engine has its own limits: with max_num_seqs 1 and two engines, two requests arriving
/// together run at once, one per engine, and finish together.
#[test]
fn dp_engines_have_their_own_limits() {
    let cfg = EngineConfig {
        max_num_seqs: 1,
        ..engine(100)
    };
    let reqs = [req(0.0, 16, 4), req(0.0, 16, 4)];
    let one = simulate(&reqs, &cfg, &eighth, SimOptions::default()).unwrap();
    assert_eq!(one.records[1].first_token_s, 4.0 * 0.125 + 0.125);
    let dp = DataParallel {
        engines: 2,
        ..DataParallel::default()
    };
    let two = simulate_data_parallel(&reqs, &cfg, &dp, &eighth, SimOptions::default()).unwrap();
    for r in &two.merged.records {
        assert_eq!(r.first_token_s, 0.125);
        assert_eq!(r.finish_s, 0.5);
    }
    assert_eq!(two.engines[0].records.len(), 1);
    assert_eq!(two.engines[1].records.len(), 1);
    // The merged series sums the engines: two running.
    assert_eq!(two.merged.peak_running, 2);
}

/// Step time = padded tokens in ms + 0.1 ms per real decode; unpadded: tokens in ms.
struct PadModel;

impl StepModel for PadModel {
    fn step_time_s(&self, b: &StepBatch) -> f64 {
        1e-3 * f64::from(b.tokens())
    }
    fn padded_step_time_s(&self, b: &StepBatch, padded: u32) -> f64 {
        1e-3 * f64::from(padded.max(b.tokens())) + 1e-4 * f64::from(b.n_decode)
    }
    fn describe(&self) -> String {
        "pad".into()
    }
}

/// Lockstep: r0 (10 prompt, 5 output tokens) goes to engine 0 and r1 (300 prompt, 2 output) to
/// engine 1. Step 1 pads engine 0's 10-token prefill to 300 tokens: both take 0.3 s, so r0's
/// first token comes at 0.3 s (0.01 s without lockstep). Step 2: both decode, 1 token each,
/// 1.1 ms; r1 completes. Steps 3–5: engine 0 decodes, engine 1 runs dummy steps (one decode of
/// one token) padded to 1 token: 1.1 ms each; r0 completes at 0.3 + 4 × 1.1 ms.
#[test]
fn lockstep_pads_to_the_largest_step_and_idle_engines_run_dummies() {
    let reqs = [req(0.0, 10, 5), req(0.0, 300, 2)];
    let dp = DataParallel {
        engines: 2,
        lockstep: true,
        stats_interval_s: 1e6,
    };
    let r =
        simulate_data_parallel(&reqs, &engine(100), &dp, &PadModel, SimOptions::default()).unwrap();
    let (r0, r1) = (&r.merged.records[0], &r.merged.records[1]);
    assert_eq!((r0.engine, r1.engine), (0, 1));
    assert!((r0.first_token_s - 0.3).abs() < 1e-12);
    assert!((r1.first_token_s - 0.3).abs() < 1e-12);
    assert!((r1.finish_s - 0.3011).abs() < 1e-12);
    assert!((r0.finish_s - 0.3044).abs() < 1e-12);
    assert_eq!(r.engines[0].dummy_steps, 0);
    assert_eq!(r.engines[1].dummy_steps, 3);
    assert_eq!(r.merged.dummy_steps, 3);
    assert_eq!(r.engines[0].iterations, 5);
    assert_eq!(r.engines[1].iterations, 2);
    // Both engines record every group step with the group's duration.
    let s0: Vec<f64> = r.engines[0].series.iter().map(|p| p.step_s).collect();
    let s1: Vec<f64> = r.engines[1].series.iter().map(|p| p.step_s).collect();
    assert_eq!(s0, s1);
    assert_eq!(s0.len(), 5);
    assert!((s0[0] - 0.3).abs() < 1e-12 && (s0[4] - 0.0011).abs() < 1e-12);
    assert_eq!(
        r.engines[1].series[4].tokens, 0,
        "a dummy step computes nothing"
    );
    // Without lockstep the engines run on their own.
    let free = DataParallel {
        lockstep: false,
        ..dp
    };
    let f = simulate_data_parallel(&reqs, &engine(100), &free, &PadModel, SimOptions::default())
        .unwrap();
    assert!((f.merged.records[0].first_token_s - 0.01).abs() < 1e-12);
    assert_eq!(f.merged.dummy_steps, 0);
}

/// The MoE run's shape on the table model: lockstep engines step together and the slowest rank
/// (the padded one with the longer attention) sets the step.
#[test]
fn lockstep_group_step_is_the_slowest_padded_rank() {
    let model = tables(QWEN_MOE, 1, 2);
    let reqs = [req(0.0, 512, 2), req(0.0, 64, 2)];
    let dp = DataParallel {
        engines: 2,
        lockstep: true,
        stats_interval_s: 1e6,
    };
    let opts = SimOptions {
        record_steps: true,
        check_invariants: true,
    };
    let r = simulate_data_parallel(&reqs, &engine(1000), &dp, &model, opts).unwrap();
    let first = r.engines[0].series[0].step_s;
    let want = model
        .padded_step_time_s(&prefill(512), 512)
        .max(model.padded_step_time_s(&prefill(64), 512));
    assert!(rel(first, want) < 1e-12);
    assert_eq!(r.engines[1].series[0].step_s, first);
    assert!(rel(r.merged.records[1].first_token_s, want) < 1e-12);
}

// ------------------------------------------------------------- conservation

fn trace(seed: u64, n: usize) -> Vec<Request> {
    // A small LCG: arrivals, prompt and output lengths.
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = |m: u64| {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (x >> 33) % m
    };
    let mut t = 0.0;
    let mut out: Vec<Request> = Vec::with_capacity(n);
    for i in 0..n {
        t += next(100) as f64 * 1e-3;
        let mut r = req(t, 1 + next(200) as u32, 1 + next(60) as u32);
        if i > 0 && next(4) == 0 {
            // A prompt prefix shared with an earlier request (possibly on another engine).
            let p = next(i as u64) as usize;
            r.prefix_parent = Some(p as u32);
            r.shared_prefix_blocks = r.input_tokens.min(out[p].input_tokens) / 16;
        }
        out.push(r);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Every request completes exactly once, on exactly one engine, after it arrived; the
    /// engines' records partition the trace; KV pools stay consistent (checked every step).
    #[test]
    fn every_request_completes_once_across_engines(
        seed in 0u64..1_000_000,
        n in 1usize..60,
        engines in 2u32..4,
        lockstep in any::<bool>(),
        live in any::<bool>(),
        kv in 20u32..200,
        seqs in 1u32..8,
    ) {
        let reqs = trace(seed, n);
        let cfg = EngineConfig { max_num_seqs: seqs, max_batched_tokens: 64, ..engine(kv) };
        let dp = DataParallel {
            engines,
            lockstep,
            stats_interval_s: if live { 0.0 } else { 0.05 },
        };
        let model = |b: &StepBatch| 1e-3 + 1e-5 * f64::from(b.tokens());
        let opts = SimOptions { record_steps: false, check_invariants: true };
        let r = simulate_data_parallel(&reqs, &cfg, &dp, &model, opts).unwrap();
        prop_assert_eq!(r.merged.completed, n);
        prop_assert_eq!(r.engines.len(), engines as usize);
        let mut seen = vec![0u32; n];
        for (e, res) in r.engines.iter().enumerate() {
            for x in &res.records {
                seen[x.index] += 1;
                prop_assert_eq!(x.engine as usize, e);
                prop_assert_eq!(r.merged.records[x.index].engine as usize, e);
            }
            prop_assert_eq!(res.completed, res.records.len());
        }
        prop_assert!(seen.iter().all(|&c| c == 1));
        for x in &r.merged.records {
            prop_assert!(x.finish_s.is_finite());
            prop_assert!(x.arrival_s <= x.first_token_s && x.first_token_s <= x.finish_s);
        }
        let pre: u64 = r.engines.iter().map(|e| e.preemptions).sum();
        prop_assert_eq!(pre, r.merged.preemptions);
    }
}
