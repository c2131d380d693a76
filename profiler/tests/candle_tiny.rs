//! The candle backend on the CPU with the `tiny` presets: small enough to run in seconds.

use candle_core::{Device, Tensor};
use profiler::table::frame_rows;
use profiler::{
    Backend, BackendConfig, CandleBackend, CandleSpec, DeviceChoice, Grid, ModelSpec, Precision,
    ProfileConfig, Quiet, RepPolicy, read_frame,
};
use std::path::Path;

fn spec(model: &str, seed: u64) -> CandleSpec {
    CandleSpec::resolve(Some(model), None, seed, DeviceChoice::Cpu, Precision::F32).unwrap()
}

fn logits(b: &mut CandleBackend, ids: &[u32], batch: usize) -> Vec<Vec<f32>> {
    let t = Tensor::from_vec(ids.to_vec(), (batch, ids.len() / batch), &Device::Cpu).unwrap();
    b.forward_logits(&t, 0).unwrap().to_vec2::<f32>().unwrap()
}

#[test]
fn tiny_on_cpu_writes_the_expected_rows_with_increasing_cumulative_times() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny.parquet");
    let cfg = ProfileConfig {
        backend: BackendConfig::Candle(spec("tiny", 0)),
        grid: Grid::new(vec![1, 2], vec![4, 8], 4).unwrap(),
        reps: RepPolicy {
            warmup_passes: 1,
            ..RepPolicy::fixed(2)
        },
        seed: 5,
        shard: None,
        out: out.clone(),
        resume: false,
        overwrite: false,
        memory_budget_bytes: Some(1 << 30),
    };
    let mut backend = CandleBackend::new(spec("tiny", 0)).unwrap();
    let s = profiler::run_with_backend(&cfg, &mut backend, &mut Quiet).unwrap();
    // 4 points × (1 warm-up + 2 timed) passes × 4 forwards (prefill + 3 decode steps):
    // one pass per repetition, not one per output length (which would be 1+2+3+4 = 10).
    assert_eq!(s.forward_calls, 4 * 3 * 4);
    assert_eq!(backend.forward_calls(), 48);
    let df = read_frame(&out).unwrap();
    assert_eq!(df.height(), 4 * 2 * 4);
    assert_eq!(
        df.column("device_s").unwrap().null_count(),
        df.height(),
        "no device clock on CPU"
    );
    let rows = frame_rows(&df).unwrap();
    let inputs = df.column("input_tokens").unwrap().u32().unwrap().clone();
    let mut cumulative = 0.0;
    for (i, (_, _, step, ctx, w)) in rows.iter().enumerate() {
        assert!(w.is_finite() && *w > 0.0, "row {i}: {w}");
        if *step == 0 {
            assert_eq!(*ctx, 0);
            cumulative = 0.0;
        } else {
            assert_eq!(*ctx, inputs.get(i).unwrap() + step - 1);
        }
        let before = cumulative;
        cumulative += w;
        assert!(cumulative > before, "e2e(n) must increase with n");
    }
    let meta = profiler::read_meta(&profiler::meta_path(&out)).unwrap();
    assert_eq!(meta.runs[0].backend.backend, "candle");
    assert_eq!(meta.runs[0].backend.weights, "random(seed=0)");
    assert_eq!(
        meta.runs[0].backend.config_hash,
        ModelSpec::preset("tiny").unwrap().config_hash()
    );
    let kv = meta.kv_capacity.unwrap();
    assert_eq!(kv.budget_bytes, 1 << 30);
    assert!(kv.entries.iter().all(|e| e.max_batch >= 2));
}

#[test]
fn saved_weights_load_back_with_identical_logits() {
    let dir = tempfile::tempdir().unwrap();
    for model in ["tiny", "qwen2-tiny"] {
        let wdir = dir.path().join(model);
        let mut a = CandleBackend::new(spec(model, 42)).unwrap();
        a.save_weights(&wdir).unwrap();
        // The saved tensors are exactly the ones the spec lists (names and shapes).
        let saved =
            candle_core::safetensors::load(wdir.join("model.safetensors"), &Device::Cpu).unwrap();
        let m = ModelSpec::preset(model).unwrap();
        assert_eq!(saved.len(), m.expected_tensors().len());
        for (name, shape) in m.expected_tensors() {
            assert_eq!(saved[&name].dims(), shape.as_slice(), "{name}");
        }
        // Not zeros: a projection has the uniform's standard deviation 0.02.
        let w = saved["model.layers.0.mlp.up_proj.weight"]
            .flatten_all()
            .unwrap();
        let sd = w
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .sqrt();
        assert!((sd - 0.02).abs() < 0.001, "sd {sd}");

        let loaded_spec = CandleSpec::resolve(
            Some(model),
            Some(&wdir),
            0,
            DeviceChoice::Cpu,
            Precision::F32,
        )
        .unwrap();
        let mut b = CandleBackend::new(loaded_spec).unwrap();
        let ids = [1u32, 7, 300, 4000, 5, 9, 11, 2];
        let la = logits(&mut a, &ids, 2);
        let lb = logits(&mut b, &ids, 2);
        assert_eq!(la.len(), 2);
        assert_eq!(
            la, lb,
            "{model}: logits differ after a safetensors round trip"
        );
        // another seed gives other logits
        let mut c = CandleBackend::new(spec(model, 43)).unwrap();
        assert_ne!(logits(&mut c, &ids, 2), la);
    }
}

#[test]
fn batched_rows_match_single_sequence_logits() {
    // The KV cache serves a batch: each row of a batched forward equals that sequence alone.
    let mut m = CandleBackend::new(spec("tiny", 1)).unwrap();
    let ids = [3u32, 14, 15, 92, 65, 35, 89, 79];
    let both = logits(&mut m, &ids, 2);
    let first = logits(&mut m, &ids[..4], 1);
    let second = logits(&mut m, &ids[4..], 1);
    for (x, y) in both[0]
        .iter()
        .zip(&first[0])
        .chain(both[1].iter().zip(&second[0]))
    {
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }
}

fn write_config(dir: &Path, text: &str) {
    std::fs::write(dir.join("config.json"), text).unwrap();
}

#[test]
fn missing_or_mismatched_weights_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let wdir = dir.path().join("w");
    CandleBackend::new(spec("qwen2-tiny", 0))
        .unwrap()
        .save_weights(&wdir)
        .unwrap();
    let resolve = |model: Option<&str>, d: &Path| {
        CandleSpec::resolve(model, Some(d), 0, DeviceChoice::Cpu, Precision::F32)
            .unwrap_err()
            .to_string()
    };
    // --model disagrees with config.json
    let e = resolve(Some("tiny"), &wdir);
    assert!(e.contains("does not match --model tiny"), "{e}");
    // config.json says llama but the tensors are qwen2's (no lm_head; tied embeddings)
    let text = std::fs::read_to_string(wdir.join("config.json")).unwrap();
    write_config(
        &wdir,
        &text.replace("\"qwen2\"", "\"llama\"").replace(
            "\"tie_word_embeddings\": true",
            "\"tie_word_embeddings\": false",
        ),
    );
    let e = resolve(None, &wdir);
    assert!(e.contains("lm_head.weight") && e.contains("missing"), "{e}");
    // shapes disagree
    write_config(
        &wdir,
        &text.replace("\"intermediate_size\": 704", "\"intermediate_size\": 512"),
    );
    let e = resolve(None, &wdir);
    assert!(e.contains("has shape") && e.contains("[704, 256]"), "{e}");
    // no directory at all
    let e = resolve(None, &dir.path().join("nope"));
    assert!(e.contains("config.json"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

#[test]
fn qwen2_runs_a_grid_point() {
    let mut b = CandleBackend::new(spec("qwen2-tiny", 0)).unwrap();
    let shape = profiler::PointShape {
        batch_size: 2,
        input_tokens: 6,
        max_output: 3,
    };
    let prompts = profiler::runner::random_prompts(b.vocab_size(), 2, 6, 9);
    let rows = profiler::runner::measure_pass(&mut b, shape, &prompts, 0).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows.iter().map(|r| r.context_tokens).collect::<Vec<_>>(),
        vec![0, 6, 7]
    );
    assert_eq!(b.forward_calls(), 3);
}

#[test]
fn a_grid_past_the_model_positions_or_the_budget_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ProfileConfig {
        backend: BackendConfig::Candle(spec("tiny", 0)),
        grid: Grid::new(vec![1], vec![2000], 100).unwrap(),
        reps: RepPolicy::fixed(1),
        seed: 0,
        shard: None,
        out: dir.path().join("x.parquet"),
        resume: false,
        overwrite: false,
        memory_budget_bytes: Some(1 << 30),
    };
    let e = profiler::plan(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("2100 tokens exceeds") && e.contains("--output"),
        "{e}"
    );
    cfg.grid = Grid::new(vec![1, 4096], vec![128], 64).unwrap();
    let e = profiler::plan(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("batch 4096") && e.contains("--memory-budget"),
        "{e}"
    );
}
