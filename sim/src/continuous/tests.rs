//! Tests of the continuous-batching simulator against closed forms (Pollaczek–Khinchine,
//! docs/models.md §1), hand-traced schedules, values computed by hand from the per-layer CSVs, and
//! invariants (property tests).

use std::path::PathBuf;

use proptest::prelude::*;
use rand::{RngExt, SeedableRng};

use super::*;

fn data(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets/llmservingsim")
        .join(p)
}

fn rel(a: f64, b: f64) -> f64 {
    ((a - b) / b).abs()
}

fn decode(n: u32, ctx: &[u32]) -> StepBatch {
    let mut b = StepBatch::default();
    for i in 0..n {
        b.push_decode(ctx[i as usize % ctx.len()]);
    }
    b
}

// ---------------------------------------------------------------- table step model

/// Reference values: the docs/serving.md composition evaluated by an independent Python script
/// from the CSVs of `../shared/data/llmservingsim/perf/<GPU>/Llama-3.1-8B/tp1/` (sums of table
/// rows at grid points; linear interpolation by hand between them), L = 32.
#[test]
fn table_model_matches_hand_computed_values() {
    let g4090 = TableStepModel::load(&data("RTX4090"), 32, false).unwrap();
    let g6000 = TableStepModel::load(&data("RTXPRO6000"), 32, false).unwrap();
    let cases: [(&TableStepModel, StepBatch, f64, &str); 8] = [
        // All four axes and every 1-D table at grid points: 16 decodes of context 1024.
        (
            &g4090,
            decode(16, &[1024]),
            2.007685148000e-02,
            "4090 grid point",
        ),
        (
            &g6000,
            decode(16, &[1024]),
            1.276426739000e-02,
            "PRO 6000 grid point",
        ),
        // Between grid points: T = S = 26 (24..28), n_d 26 (16..32), context 1500 (1024..2048).
        (
            &g4090,
            decode(26, &[1500]),
            2.456068048906e-02,
            "4090 between points",
        ),
        // Mixed: chunk 700 (512..1024) on 300 cached (256..512) + 10 decodes (8..16) at 900.
        (
            &g4090,
            {
                let mut b = decode(10, &[900]);
                b.push_prefill(700, 300);
                b
            },
            7.356933312181e-02,
            "4090 mixed",
        ),
        (
            &g6000,
            {
                let mut b = decode(10, &[900]);
                b.push_prefill(700, 300);
                b
            },
            3.545015022548e-02,
            "PRO 6000 mixed",
        ),
        // Prefill only, at the budget (chunk 2048 slice, n_decode 0).
        (
            &g4090,
            {
                let mut b = StepBatch::default();
                b.push_prefill(2048, 0);
                b
            },
            1.930046703000e-01,
            "4090 full chunk",
        ),
        // Ragged PRO 6000 slice: kv_prefill 768 has no row at kv_decode 100, so the rows
        // that cover it (512 and 1024) are used.
        (
            &g6000,
            {
                let mut b = decode(1, &[100]);
                b.push_prefill(16, 768);
                b
            },
            1.166053737250e-02,
            "PRO 6000 ragged slice",
        ),
        // n_decode 200 with a prefill chunk: no slice above 128 decodes there → nearest (128).
        (
            &g4090,
            {
                let mut b = decode(200, &[50]);
                b.push_prefill(100, 0);
                b
            },
            4.244422119500e-02,
            "4090 nearest slice",
        ),
    ];
    for (m, b, want, what) in cases {
        let got = m.step_time_s(&b);
        assert!(rel(got, want) < 1e-9, "{what}: {got} vs {want}");
    }
    // A 5-token chunk uses the 16-token slice (prefill regime), never the chunk-0 slice.
    let mut b = StepBatch::default();
    b.push_prefill(5, 0);
    assert!(rel(g6000.step_time_s(&b), 1.093224596000e-02) < 1e-9);
}

/// Skew correction: contexts [100, 200, 300, 1000]: mean 400, skew rate 1/3 → bucket
/// (pc 0, n<=4, sr<=40%, kvB<=1k, kp=0), α = 0.1371 (4090) / 0.1277 (PRO 6000) from
/// skew_fit.csv; reference values from the same independent script.
#[test]
fn skew_correction_matches_hand_computed_values() {
    for (gpu, with, without) in [
        ("RTX4090", 1.741914812852e-02, 1.735741642000e-02),
        ("RTXPRO6000", 1.127234817362e-02, 1.124144342000e-02),
    ] {
        let mut b = StepBatch::default();
        for c in [100, 200, 300, 1000] {
            b.push_decode(c);
        }
        let on = TableStepModel::load(&data(gpu), 32, true).unwrap();
        let off = TableStepModel::load(&data(gpu), 32, false).unwrap();
        assert!(rel(on.step_time_s(&b), with) < 1e-9, "{gpu} skew");
        assert!(rel(off.step_time_s(&b), without) < 1e-9, "{gpu} no skew");
        // Uniform contexts: no correction.
        let u = decode(4, &[400]);
        assert_eq!(on.step_time_s(&u), off.step_time_s(&u));
    }
}

/// Bad tables: a missing layer or attention regime is a clear error naming file and layer.
#[test]
fn table_with_missing_layer_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = data("RTX4090");
    let dense = std::fs::read_to_string(src.join("dense.csv")).unwrap();
    let cut: String = dense
        .lines()
        .filter(|l| !l.starts_with("down_proj,"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("dense.csv"), cut).unwrap();
    for f in ["per_sequence.csv", "attention.csv"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let e = TableStepModel::load(dir.path(), 32, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dense.csv") && e.contains("down_proj"), "{e}");
    // Attention without mixed rows.
    std::fs::copy(src.join("dense.csv"), dir.path().join("dense.csv")).unwrap();
    let att = std::fs::read_to_string(src.join("attention.csv")).unwrap();
    let cut: String = att
        .lines()
        .filter(|l| {
            let v: Vec<&str> = l.split(',').collect();
            !(v[0] != "0" && v[0] != "prefill_chunk" && v[2] != "0")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(dir.path().join("attention.csv"), cut).unwrap();
    let e = TableStepModel::load(dir.path(), 32, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("attention.csv") && e.contains("mixed"), "{e}");
    // --skew without skew_fit.csv.
    std::fs::copy(src.join("attention.csv"), dir.path().join("attention.csv")).unwrap();
    let e = TableStepModel::load(dir.path(), 32, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("skew_fit.csv"), "{e}");
    let e = TableStepModel::load(&dir.path().join("nope"), 32, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not a directory"), "{e}");
}

// ---------------------------------------------------------------- scheduler, hand-traced

fn unit_step(_: &StepBatch) -> f64 {
    1.0
}

fn cfg(seqs: u32, budget: u32, blocks: u32, bs: u32) -> EngineConfig {
    EngineConfig {
        max_num_seqs: seqs,
        max_batched_tokens: budget,
        kv_blocks: blocks,
        block_size: bs,
        prefix_caching: true,
        async_scheduling: false,
        iteration_overhead_s: 0.0,
    }
}

/// Chunked prefill and admission into the leftover budget, traced by hand with 1-s steps:
/// r0 (P 6, O 3, t 0): chunks 4 + 2 → first token at 2, tokens at 3, 4.
/// r1 (P 2, O 2, t 0.5): admitted at t = 1 into the 2 tokens r0 leaves → first token 2, done 3.
#[test]
fn chunked_prefill_hand_trace() {
    let reqs = [Request::new(0.0, 6, 3), Request::new(0.5, 2, 2)];
    let r = simulate(
        &reqs,
        &cfg(8, 4, 100, 16),
        &unit_step,
        SimOptions::default(),
    )
    .unwrap();
    let a = &r.records;
    assert_eq!(
        (a[0].ttft_s, a[0].e2e_s, a[0].tpot_s),
        (2.0, 4.0, Some(1.0))
    );
    assert_eq!((a[1].first_token_s, a[1].finish_s), (2.0, 3.0));
    assert_eq!(r.iterations, 4);
    assert_eq!(r.series[1].tokens, 4);
}

/// Recompute preemption and resume with the request's own cached block, traced by hand
/// (block size 2, 4 blocks): both prefills at t 0–1, decode 1–2; at 2–3 r0 needs a third
/// block, r1 (most recently admitted) is preempted; its first block stays cached, the second is
/// reallocated to r0; the gate keeps r1 out until r0 finishes at 4; r1 resumes re-using 2 cached
/// tokens, recomputes 3 in one step (4–5) and samples its 3rd and 4th tokens at 5 and 6.
#[test]
fn preemption_hand_trace() {
    let reqs = [Request::new(0.0, 3, 4), Request::new(0.0, 3, 4)];
    for caching in [true, false] {
        let c = EngineConfig {
            prefix_caching: caching,
            ..cfg(2, 100, 4, 2)
        };
        let opts = SimOptions {
            check_invariants: true,
            ..Default::default()
        };
        let r = simulate(&reqs, &c, &unit_step, opts).unwrap();
        let a = &r.records;
        assert_eq!(
            (a[0].ttft_s, a[0].finish_s, a[0].preemptions),
            (1.0, 4.0, 0)
        );
        assert_eq!(
            (a[1].ttft_s, a[1].finish_s, a[1].preemptions),
            (1.0, 6.0, 1)
        );
        assert_eq!(a[1].cached_tokens, if caching { 2 } else { 0 });
        assert_eq!(r.preemptions, 1);
        assert!(r.series.iter().all(|p| p.kv_blocks_used <= 4));
    }
}

/// A request sharing 2 blocks of prefix with an earlier one re-uses them (32 tokens).
#[test]
fn shared_prefix_is_reused() {
    let mut b = Request::new(5.0, 40, 2);
    b.prefix_parent = Some(0);
    b.shared_prefix_blocks = 2;
    let reqs = [Request::new(0.0, 40, 2), b];
    let r = simulate(
        &reqs,
        &cfg(8, 2048, 100, 16),
        &unit_step,
        SimOptions::default(),
    )
    .unwrap();
    assert_eq!(r.records[1].cached_tokens, 32);
    let off = EngineConfig {
        prefix_caching: false,
        ..cfg(8, 2048, 100, 16)
    };
    let r = simulate(&reqs, &off, &unit_step, SimOptions::default()).unwrap();
    assert_eq!(r.records[1].cached_tokens, 0);
    // More shared blocks than the prompt holds is a clear error.
    let mut bad = reqs;
    bad[1].shared_prefix_blocks = 3;
    let e = simulate(
        &bad,
        &cfg(8, 2048, 100, 16),
        &unit_step,
        SimOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("request 1") && e.contains("shared_prefix_blocks"),
        "{e}"
    );
}

/// Async scheduling: an arrival during a step is seen one step later. r0 (P 1, O 5) at 0,
/// r1 (P 1, O 1) at 0.5: synchronous → admitted at 1, token at 2 (TTFT 1.5); async → seen at
/// the step starting at 2, token at 3 (TTFT 2.5). Overhead 0.5 s stretches every step.
#[test]
fn async_lag_and_overhead() {
    let reqs = [Request::new(0.0, 1, 5), Request::new(0.5, 1, 1)];
    let sync = simulate(
        &reqs,
        &cfg(8, 64, 10, 16),
        &unit_step,
        SimOptions::default(),
    )
    .unwrap();
    assert_eq!(sync.records[1].ttft_s, 1.5);
    assert_eq!(sync.records[1].tpot_s, None);
    let c = EngineConfig {
        async_scheduling: true,
        ..cfg(8, 64, 10, 16)
    };
    let lag = simulate(&reqs, &c, &unit_step, SimOptions::default()).unwrap();
    assert_eq!(lag.records[1].ttft_s, 2.5);
    let c = EngineConfig {
        iteration_overhead_s: 0.5,
        ..cfg(8, 64, 10, 16)
    };
    let slow = simulate(&reqs, &c, &unit_step, SimOptions::default()).unwrap();
    assert_eq!(slow.records[0].e2e_s, 7.5);
}

// ---------------------------------------------------------------- bad input

#[test]
fn bad_input_is_a_clear_error() {
    let reqs = [Request::new(0.0, 100, 10)];
    // 109 tokens need 7 blocks of 16; the cache has 6.
    let e = simulate(&reqs, &cfg(8, 64, 6, 16), &unit_step, SimOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("request 0") && e.contains("7 KV blocks") && e.contains("--kv-blocks"),
        "{e}"
    );
    // Exactly fitting is fine.
    assert!(simulate(&reqs, &cfg(8, 64, 7, 16), &unit_step, SimOptions::default()).is_ok());
    let e = simulate(&reqs, &cfg(8, 0, 7, 16), &unit_step, SimOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--max-batched-tokens"), "{e}");
    let e = simulate(&reqs, &cfg(0, 8, 7, 16), &unit_step, SimOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--max-num-seqs"), "{e}");
    let e = simulate(
        &[Request::new(0.0, 5, 0)],
        &cfg(8, 8, 7, 16),
        &unit_step,
        SimOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("output_tokens is 0"), "{e}");
    let nan = |_: &StepBatch| f64::NAN;
    let e = simulate(&reqs, &cfg(8, 64, 7, 16), &nan, SimOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("step model returned NaN"), "{e}");
}

// ---------------------------------------------------------------- M/G/1 reduction

/// With `max_num_seqs = 1`, a budget above every prompt (no chunking) and an ample KV cache,
/// the engine is an M/G/1 FCFS queue whose service is one prefill step plus O − 1 decode steps:
/// S = (a + b·P) + (O − 1)·d. Pollaczek–Khinchine (docs/models.md §1): E[W] = λE[S²]/(2(1 − ρ)),
/// mean sojourn (E2E) = E[W] + E[S]. P ~ U{64..512}, O ~ U{1..64} independent, ρ = 0.7;
/// 60 000 Poisson arrivals, first 1% dropped, 95% CI from 30 batch means (t₂₉ = 2.045).
#[test]
fn single_sequence_reduces_to_pollaczek_khinchine() {
    let (a, b, d) = (0.02, 5e-5, 0.01);
    let (p_lo, p_hi, o_lo, o_hi) = (64u32, 512u32, 1u32, 64u32);
    let unif_mean = |lo: u32, hi: u32| f64::from(lo + hi) / 2.0;
    let unif_var = |lo: u32, hi: u32| {
        let n = f64::from(hi - lo + 1);
        (n * n - 1.0) / 12.0
    };
    let es = a + b * unif_mean(p_lo, p_hi) + d * (unif_mean(o_lo, o_hi) - 1.0);
    let var = b * b * unif_var(p_lo, p_hi) + d * d * unif_var(o_lo, o_hi);
    let es2 = var + es * es;
    let rho = 0.7;
    let lambda = rho / es;
    let pk_sojourn = lambda * es2 / (2.0 * (1.0 - rho)) + es;

    let n = 60_000usize;
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(20_261_123);
    let mut t = 0.0;
    let reqs: Vec<Request> = (0..n)
        .map(|_| {
            let u: f64 = rng.random_range(0.0..1.0);
            t += -(1.0 - u).ln() / lambda;
            Request::new(
                t,
                rng.random_range(p_lo..=p_hi),
                rng.random_range(o_lo..=o_hi),
            )
        })
        .collect();
    let model = move |s: &StepBatch| {
        if s.prefill_tokens > 0 {
            a + b * f64::from(s.prefill_tokens)
        } else {
            d
        }
    };
    let c = EngineConfig {
        prefix_caching: false,
        ..cfg(1, p_hi, 10_000, 16)
    };
    let r = simulate(&reqs, &c, &model, SimOptions::default()).unwrap();
    assert_eq!(r.completed, n);
    let kept: Vec<f64> = r.records[n / 100..].iter().map(|x| x.e2e_s).collect();
    let k = 30;
    let per = kept.len() / k;
    let means: Vec<f64> = (0..k)
        .map(|i| kept[i * per..(i + 1) * per].iter().sum::<f64>() / per as f64)
        .collect();
    let m = means.iter().sum::<f64>() / k as f64;
    let sd = (means.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (k - 1) as f64).sqrt();
    let half = 2.045 * sd / (k as f64).sqrt();
    assert!(
        half < 0.06 * pk_sojourn,
        "CI too wide to be a test: ±{half}"
    );
    assert!(
        (m - pk_sojourn).abs() <= half,
        "simulated mean E2E {m:.4} ± {half:.4} s vs P-K {pk_sojourn:.4} s"
    );
    // Service itself: E2E − wait equals the closed-form service of each request.
    for (x, q) in r.records.iter().zip(&reqs).take(50) {
        let s = a + b * f64::from(q.input_tokens) + d * f64::from(q.output_tokens - 1);
        let wait = x.ttft_s - (a + b * f64::from(q.input_tokens));
        assert!((x.e2e_s - wait - s).abs() < 1e-9);
    }
}

// ---------------------------------------------------------------- invariants

fn arb_case() -> impl Strategy<Value = (Vec<Request>, EngineConfig)> {
    (
        prop::collection::vec((0.0f64..2.0, 1u32..120, 1u32..50, 0u32..4), 1..40),
        prop::sample::select(vec![1u32, 2, 4, 16]),
        1u32..8,
        1u32..300,
        0u32..40,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(rows, bs, seqs, budget, extra, caching, asynch)| {
            let mut t = 0.0;
            let mut reqs: Vec<Request> = Vec::new();
            for (i, (gap, p, o, share)) in rows.into_iter().enumerate() {
                t += gap;
                let mut r = Request::new(t, p, o);
                if i > 0 && share > 0 {
                    let parent = i / 2;
                    let max_share = p.min(reqs[parent].input_tokens) / bs;
                    if max_share > 0 {
                        r.prefix_parent = Some(parent as u32);
                        r.shared_prefix_blocks = share.min(max_share);
                    }
                }
                reqs.push(r);
            }
            let need = reqs
                .iter()
                .map(|r| (r.input_tokens + r.output_tokens - 1).div_ceil(bs))
                .max()
                .unwrap();
            let c = EngineConfig {
                max_num_seqs: seqs,
                max_batched_tokens: budget,
                kv_blocks: need + extra,
                block_size: bs,
                prefix_caching: caching,
                async_scheduling: asynch,
                iteration_overhead_s: 0.0,
            };
            (reqs, c)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    /// Whatever the limits: the KV pool stays consistent (never negative, never over
    /// capacity; checked after every iteration), every request completes exactly once with
    /// arrival ≤ first token ≤ last token, and preemptions add up.
    #[test]
    fn kv_accounting_and_completion(case in arb_case()) {
        let (reqs, c) = case;
        let model = |s: &StepBatch| 0.01 + 1e-4 * f64::from(s.tokens()) + 1e-6 * s.decode_context_sum as f64;
        let opts = SimOptions { check_invariants: true, record_steps: true };
        let r = simulate(&reqs, &c, &model, opts).unwrap();
        prop_assert_eq!(r.completed, reqs.len());
        prop_assert_eq!(r.records.len(), reqs.len());
        for (x, q) in r.records.iter().zip(&reqs) {
            prop_assert!(x.first_token_s > q.arrival_s);
            prop_assert!(x.finish_s >= x.first_token_s);
            prop_assert!(x.admissions == x.preemptions + 1);
        }
        prop_assert_eq!(r.preemptions, r.records.iter().map(|x| u64::from(x.preemptions)).sum::<u64>());
        for p in &r.series {
            prop_assert!(p.kv_blocks_used <= c.kv_blocks);
            prop_assert!(p.running <= c.max_num_seqs);
            prop_assert!(p.tokens >= 1 && p.tokens <= c.max_batched_tokens);
        }
        // Every token computed once per admission: decode steps = Σ(O − 1) + recomputed.
        let decodes: u64 = r.steps.iter().map(|(b, _)| u64::from(b.n_decode)).sum();
        let min_decodes: u64 = reqs.iter().map(|q| u64::from(q.output_tokens - 1)).sum();
        prop_assert!(decodes <= min_decodes);
        if r.preemptions == 0 {
            prop_assert_eq!(decodes, min_decodes);
        }
    }
}

/// Preemptions really happen in the property test's regime (otherwise it tests little).
#[test]
fn tight_cache_preempts_and_still_completes() {
    let reqs: Vec<Request> = (0..30)
        .map(|i| Request::new(0.1 * f64::from(i), 50, 60))
        .collect();
    let c = cfg(16, 256, 2 * 110_u32.div_ceil(16) + 2, 16);
    let opts = SimOptions {
        check_invariants: true,
        ..Default::default()
    };
    let r = simulate(&reqs, &c, &unit_step, opts).unwrap();
    assert!(r.preemptions > 0);
    assert_eq!(r.completed, 30);
}

// ---------------------------------------------------------------- real workload
