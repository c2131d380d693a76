//! The whole profiling pipeline on the synthetic backend (modeled clock: no real timing).
//! Reference values are the synthetic model's closed forms, computed here by hand.

use profiler::backend::{Backend, BackendInfo, PointShape, PromptBatch, StepTiming};
use profiler::table::frame_rows;
use profiler::{
    BackendConfig, BackendError, Flow, Grid, LinearLatency, Observer, PointRecord, ProfileConfig,
    ProfileError, Quiet, RepPolicy, Shard, SyntheticBackend, SyntheticSpec, read_frame, read_meta,
};
use std::collections::BTreeSet;
use std::path::Path;

fn noiseless() -> SyntheticSpec {
    SyntheticSpec {
        noise_sigma: 0.0,
        ..SyntheticSpec::default()
    }
}

fn config(out: &Path, spec: SyntheticSpec, reps: RepPolicy) -> ProfileConfig {
    ProfileConfig {
        backend: BackendConfig::Synthetic(spec),
        grid: Grid::new(vec![1, 2, 4], vec![8, 32], 5).unwrap(),
        reps,
        seed: 11,
        shard: None,
        out: out.to_path_buf(),
        resume: false,
        overwrite: false,
        memory_budget_bytes: None,
    }
}

/// Every row of the table minus run_id, sorted.
fn rows(path: &Path) -> Vec<(u32, u32, u32, u32, f64)> {
    let mut r = frame_rows(&read_frame(path).unwrap()).unwrap();
    r.sort_by_key(|a| (a.0, a.1, a.2));
    r
}

#[test]
fn noiseless_run_writes_the_closed_form_step_times() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.parquet");
    let cfg = config(&out, noiseless(), RepPolicy::fixed(3));
    let s = profiler::run(&cfg, &mut Quiet).unwrap();
    // 3 batch sizes × 2 inputs × 3 reps × 5 steps
    assert_eq!(s.rows, 90);
    assert_eq!((s.points_ok, s.points_failed), (6, 0));
    let df = read_frame(&out).unwrap();
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(names, profiler::COLUMNS);
    assert_eq!(df.column("device_s").unwrap().null_count(), 90);
    let b = df.column("batch_size").unwrap().u32().unwrap().clone();
    let n = df.column("input_tokens").unwrap().u32().unwrap().clone();
    // LinearLatency::default(): p0 15 ms, p_b 1 ms, p_tok 50 µs; d0 20 ms, d_b 0.4 ms, d_ctx 0.5 µs
    for (i, (_, _, step, ctx, w)) in frame_rows(&df).unwrap().into_iter().enumerate() {
        let (bb, nn) = (f64::from(b.get(i).unwrap()), n.get(i).unwrap());
        let want = if step == 0 {
            assert_eq!(ctx, 0);
            0.015 + 0.001 * bb + 0.000_05 * bb * f64::from(nn)
        } else {
            assert_eq!(ctx, nn + step - 1);
            0.020 + 0.000_4 * bb + 0.000_000_5 * bb * f64::from(ctx)
        };
        assert!((w - want).abs() < 1e-12, "row {i}: {w} vs {want}");
    }
    let meta = read_meta(&profiler::meta_path(&out)).unwrap();
    assert_eq!(meta.runs.len(), 1);
    assert_eq!(meta.runs[0].backend.backend, "synthetic");
    assert_eq!(meta.points.len(), 6);
    assert!(meta.points.iter().all(|p| p.status == "ok" && p.reps == 3));
    assert!(
        !profiler::parts_dir(&out).exists(),
        "parts are removed when done"
    );
}

/// Wraps a backend, fails every call for one batch size (a stand-in for CUDA OOM).
struct FailAt<B: Backend> {
    inner: B,
    batch: u32,
    current: u32,
}

impl<B: Backend> Backend for FailAt<B> {
    fn info(&self) -> BackendInfo {
        self.inner.info()
    }
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }
    fn prepare(&mut self, shape: PointShape) -> Result<(), BackendError> {
        self.current = shape.batch_size;
        self.inner.prepare(shape)
    }
    fn prefill(&mut self, p: &PromptBatch) -> Result<StepTiming, BackendError> {
        if self.current == self.batch {
            return Err(BackendError::OutOfMemory(
                "CUDA_ERROR_OUT_OF_MEMORY (simulated)".into(),
            ));
        }
        self.inner.prefill(p)
    }
    fn decode_step(&mut self) -> Result<StepTiming, BackendError> {
        self.inner.decode_step()
    }
    fn synchronize(&mut self) -> Result<(), BackendError> {
        self.inner.synchronize()
    }
    fn forward_calls(&self) -> u64 {
        self.inner.forward_calls()
    }
}

#[test]
fn forward_calls_are_one_pass_per_repetition_and_reps_follow_min_time() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.parquet");
    let reps = RepPolicy {
        warmup_passes: 2,
        min_time_s: 0.5,
        min_reps: 2,
        max_reps: 6,
    };
    let cfg = config(&out, noiseless(), reps);
    let mut backend = SyntheticBackend::new(noiseless());
    let s = profiler::run_with_backend(&cfg, &mut backend, &mut Quiet).unwrap();
    // Expected reps per point from the hand-written pass time: prefill + 4 decode steps.
    let mut want_calls = 0u64;
    let meta = read_meta(&profiler::meta_path(&out)).unwrap();
    for p in &meta.points {
        let (b, n) = (f64::from(p.batch_size), f64::from(p.input_tokens));
        let mut pass = 0.015 + 0.001 * b + 0.000_05 * b * n;
        for k in 1..5 {
            pass += 0.020 + 0.000_4 * b + 0.000_000_5 * b * (n + f64::from(k) - 1.0);
        }
        let reps = ((0.5 / pass).ceil() as u32).clamp(2, 6);
        assert_eq!(p.reps, reps, "point {}", p.point_id);
        // one pass = max_output forward calls, whatever output lengths are derived later
        want_calls += u64::from(2 + reps) * 5;
    }
    assert_eq!(s.forward_calls, want_calls);
    assert_eq!(backend.forward_calls(), want_calls);
}

#[test]
fn a_failed_point_is_recorded_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.csv");
    let cfg = config(&out, noiseless(), RepPolicy::fixed(2));
    let mut backend = FailAt {
        inner: SyntheticBackend::new(noiseless()),
        batch: 4,
        current: 0,
    };
    let s = profiler::run_with_backend(&cfg, &mut backend, &mut Quiet).unwrap();
    assert_eq!((s.points_ok, s.points_failed), (4, 2));
    let meta = read_meta(&profiler::meta_path(&out)).unwrap();
    let failed: Vec<&PointRecord> = meta
        .points
        .iter()
        .filter(|p| p.status == "failed")
        .collect();
    assert_eq!(failed.len(), 2);
    assert!(
        failed
            .iter()
            .all(|p| p.batch_size == 4 && p.reason.as_deref().unwrap().contains("out of memory"))
    );
    let r = rows(&out);
    assert_eq!(r.len(), 4 * 2 * 5);
}

/// Stops after `n` points, as if the process had been killed between points.
struct StopAfter(usize);
impl Observer for StopAfter {
    fn point_finished(&mut self, _r: &PointRecord) -> Flow {
        self.0 -= 1;
        if self.0 == 0 {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

#[test]
fn killed_then_resumed_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.parquet");
    profiler::run(&config(&full, noiseless(), RepPolicy::fixed(2)), &mut Quiet).unwrap();

    let part = dir.path().join("part.parquet");
    let cfg = config(&part, noiseless(), RepPolicy::fixed(2));
    let e = profiler::run(&cfg, &mut StopAfter(2)).unwrap_err();
    assert!(
        matches!(e, ProfileError::Interrupted { done: 2, total: 6 }),
        "{e}"
    );
    assert!(!part.exists());
    // without --resume the unfinished parts are refused, naming the flag
    let e = profiler::run(&cfg, &mut Quiet).unwrap_err().to_string();
    assert!(e.contains("--resume"), "{e}");
    // with a different grid they are refused too
    let mut other = cfg.clone();
    other.resume = true;
    other.grid = Grid::new(vec![1, 2], vec![8, 32], 5).unwrap();
    assert!(profiler::run(&other, &mut Quiet).is_err());

    let mut resume = cfg.clone();
    resume.resume = true;
    let s = profiler::run(&resume, &mut Quiet).unwrap();
    assert_eq!((s.points_resumed, s.points_ok), (2, 4));
    // Same points, same steps, and (noiseless, seeded) the same times.
    assert_eq!(rows(&part), rows(&full));
    let meta = read_meta(&profiler::meta_path(&part)).unwrap();
    assert_eq!(meta.runs.len(), 2);
    assert_eq!(meta.runs.iter().filter(|r| r.resumed).count(), 1);
    let ids: BTreeSet<u32> = meta.points.iter().map(|p| p.point_id).collect();
    assert_eq!(ids, (0..6).collect());
}

#[test]
fn shards_cover_the_grid_exactly_once_and_merge_to_the_whole() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.parquet");
    profiler::run(&config(&full, noiseless(), RepPolicy::fixed(2)), &mut Quiet).unwrap();
    let mut outs = vec![];
    let mut seen = BTreeSet::new();
    for i in 1..=4 {
        let out = dir.path().join(format!("shard-{i}.parquet"));
        let mut cfg = config(&out, noiseless(), RepPolicy::fixed(2));
        cfg.shard = Some(Shard { index: i, count: 4 });
        profiler::run(&cfg, &mut Quiet).unwrap();
        for (p, ..) in rows(&out) {
            seen.insert(p);
        }
        let meta = read_meta(&profiler::meta_path(&out)).unwrap();
        for rec in &meta.points {
            assert_eq!(rec.point_id % 4, i - 1);
        }
        outs.push(out);
    }
    assert_eq!(seen, (0..6).collect());
    let merged = dir.path().join("merged.parquet");
    let m = profiler::merge(&outs, &merged, false, false).unwrap();
    assert_eq!((m.points, m.grid_points, m.missing_points.len()), (6, 6, 0));
    assert_eq!(rows(&merged), rows(&full));
    // a shard twice is refused
    let twice = vec![outs[0].clone(), outs[0].clone()];
    let e = profiler::merge(&twice, &dir.path().join("x.parquet"), false, false).unwrap_err();
    assert!(e.to_string().contains("also in an earlier input"), "{e}");
    // missing shards: refused with the list, or merged with --allow-partial (not invented)
    let e = profiler::merge(&outs[..2], &dir.path().join("half.parquet"), false, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing point_id [2, 3]") && e.contains("--allow-partial"),
        "{e}"
    );
    assert!(!dir.path().join("half.parquet").exists());
    let m = profiler::merge(&outs[..2], &dir.path().join("half.parquet"), false, true).unwrap();
    assert_eq!(m.missing_points, vec![2, 3]); // shards 1, 2 own ids ≡ 0, 1 (mod 4)
    // a profile of another grid is refused
    let other = dir.path().join("other.parquet");
    let mut cfg = config(&other, noiseless(), RepPolicy::fixed(2));
    cfg.grid = Grid::new(vec![1], vec![8], 5).unwrap();
    profiler::run(&cfg, &mut Quiet).unwrap();
    let e = profiler::merge(
        &[outs[0].clone(), other],
        &dir.path().join("y.parquet"),
        false,
        false,
    )
    .unwrap_err();
    assert!(e.to_string().contains("different plan"), "{e}");
}

#[test]
fn spikes_are_labelled_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.parquet");
    let spec = SyntheticSpec {
        noise_sigma: 0.01,
        spike_prob: 0.05,
        spike_factor: 5.0,
        seed: 3,
        ..SyntheticSpec::default()
    };
    let mut cfg = config(&out, spec, RepPolicy::fixed(4));
    cfg.grid = Grid::new(vec![1, 8], vec![16], 40).unwrap();
    let s = profiler::run(&cfg, &mut Quiet).unwrap();
    assert_eq!(s.rows, 2 * 4 * 40, "nothing dropped");
    let meta = read_meta(&profiler::meta_path(&out)).unwrap();
    let labelled: BTreeSet<(u32, u32, u32)> = meta
        .points
        .iter()
        .flat_map(|p| p.outliers.iter())
        .filter(|o| o.severity == profiler::stats::Severity::Far && o.step > 0)
        .map(|o| (o.point_id, o.rep, o.step))
        .collect();
    // ≈ 5% of the 312 decode steps are ×5 spikes; with 1% noise each lies far beyond the
    // 3·IQR fence of its pass, and no un-spiked step does.
    let df = read_frame(&out).unwrap();
    let lat = LinearLatency::default();
    let b = df.column("batch_size").unwrap().u32().unwrap().clone();
    let spikes: BTreeSet<(u32, u32, u32)> = frame_rows(&df)
        .unwrap()
        .into_iter()
        .enumerate()
        .filter(|(i, (_, _, step, ctx, w))| {
            *step > 0 && *w > 2.5 * lat.decode_s(b.get(*i).unwrap(), *ctx)
        })
        .map(|(_, (p, rep, step, _, _))| (p, rep, step))
        .collect();
    assert!(spikes.len() >= 5, "{} spikes", spikes.len());
    assert_eq!(labelled, spikes);
    let far = meta
        .points
        .iter()
        .flat_map(|p| p.outliers.iter())
        .filter(|o| o.severity == profiler::stats::Severity::Far)
        .count();
    assert_eq!(s.outliers_far, far);
}

#[test]
fn bad_input_fails_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.parquet");
    std::fs::write(&out, b"x").unwrap();
    let cfg = config(&out, noiseless(), RepPolicy::fixed(1));
    let e = profiler::run(&cfg, &mut Quiet).unwrap_err().to_string();
    assert!(e.contains("--force") && !e.contains('\n'), "{e}");
    let out2 = dir.path().join("q.parquet");
    let mut cfg = config(&out2, noiseless(), RepPolicy::fixed(1));
    cfg.memory_budget_bytes = Some(1 << 20);
    let e = profiler::run(&cfg, &mut Quiet).unwrap_err().to_string();
    assert!(e.contains("--memory-budget") && !e.contains('\n'), "{e}");
    assert!(!profiler::parts_dir(&out2).exists(), "nothing written");
    let mut cfg = config(&out2, noiseless(), RepPolicy::fixed(1));
    cfg.reps = RepPolicy {
        min_reps: 5,
        max_reps: 2,
        ..RepPolicy::default()
    };
    assert!(profiler::run(&cfg, &mut Quiet).is_err());
}
