//! The measurement loop (after hyperfine's: warm-up, then repetitions planned from a minimum
//! time with minimum and maximum counts) and the on-disk protocol that makes it resumable.
//!
//! For each grid point, in seeded random order:
//! 1. `warmup_passes` untimed passes, each a full prefill + every decode step, so every shape
//!    that will be timed has run once (allocations, kernel selection, caches); on a GPU, more
//!    untimed passes until the median decode step moves by less than [`STEADY_REL_CHANGE`]
//!    from one pass to the next (clocks ramp up under load), at most [`MAX_STEADY_WARMUP`];
//! 2. one timed pass `t`; then `clamp(⌈min_time/t⌉, min_reps, max_reps) − 1` more; on a GPU,
//!    further passes (up to `max_reps`) while the 95% interval of the mean pass time is wider
//!    than [`TARGET_REL_HALF_WIDTH`] of it: the repetitions follow the observed spread;
//! 3. outliers labelled (Tukey fences, `stats`), warned about, kept;
//! 4. the point's rows written at once to `OUT.parts/point-NNNNNN.parquet` and its record to
//!    `point-NNNNNN.json` (temporary file + rename), so a killed run loses at most the point in
//!    flight. A point that fails (out of memory, say) is recorded with its reason and the run
//!    goes on.
//!
//! When every point of the shard is done the parts are joined into `OUT` (Parquet, or CSV if
//! it ends in `.csv`) and the metadata into `OUT`'s `.runs.json` sidecar; the parts directory
//! is removed. `--resume` skips the points already recorded, after checking that the parts
//! were made by the same plan (grid, shard, seed, model, dtype, weights).

use crate::backend::{Backend, BackendInfo, PointShape, PromptBatch};
use crate::candle_backend::{CandleBackend, CandleSpec, DeviceChoice, open_device, probe_dtype};
use crate::capacity::{self, KvCapacity};
use crate::error::{BackendError, ProfileError};
use crate::models::{SizedModel, fnv1a_hex};
use crate::plan::{Grid, GridPoint, RepPolicy, Shard, shard_points, shuffled};
use crate::stats::{Outlier, Severity, StepRow, label_point};
use crate::synthetic::{SyntheticBackend, SyntheticSpec};
use crate::table::{self, Format};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A GPU is warm when the median decode step changes by at most this fraction between passes.
pub const STEADY_REL_CHANGE: f64 = 0.02;
/// Most extra warm-up passes spent waiting for steady step times.
pub const MAX_STEADY_WARMUP: u32 = 8;
/// On a GPU, repeat until the 95% half-width of the mean pass time is this fraction of it.
pub const TARGET_REL_HALF_WIDTH: f64 = 0.02;
/// Warn when a point's median decode step varies by more than this fraction between passes.
pub const PASS_VARIATION_WARN: f64 = 0.10;

/// Schema tag of the metadata sidecar.
pub const META_SCHEMA: &str = "tokenq.profile.v1";

/// Rough throughput figures behind `--dry-run` estimates of candle models (not measurements:
/// a 2-core x86 CPU running candle's f32 gemm; an A100-class GPU at about half its bf16 peak).
const CPU_FLOPS: f64 = 2.0e10;
const CPU_BYTES_PER_S: f64 = 1.0e10;
const CPU_OP_OVERHEAD_S: f64 = 4.0e-6;
const GPU_FLOPS: f64 = 1.5e14;
const GPU_BYTES_PER_S: f64 = 1.5e12;
const GPU_OP_OVERHEAD_S: f64 = 8.0e-6;
/// Tensor operations per layer of a candle decoder forward (order of magnitude).
const OPS_PER_LAYER: f64 = 30.0;

/// Which backend to drive.
#[derive(Debug, Clone, PartialEq)]
pub enum BackendConfig {
    Candle(CandleSpec),
    Synthetic(SyntheticSpec),
    /// Built by the caller and run with [`run_with_backend`] (an HTTP endpoint: the profiler
    /// does not speak HTTP).
    External(ExternalSpec),
}

/// What the plan, the labels and the resume fingerprint need to know of a backend the caller
/// builds (`BackendConfig::External`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalSpec {
    /// Backend kind, e.g. `openai`.
    pub backend: String,
    /// The model it serves.
    pub model: String,
    /// Where it runs, e.g. `server http://127.0.0.1:8000`.
    pub device: String,
    /// Numeric type, where known (`server` otherwise).
    pub dtype: String,
    /// What must agree for parts to be resumed or shards merged (URL, model, API).
    pub identity: String,
    /// Rough seconds per step for the `--dry-run` estimate.
    pub step_s_estimate: f64,
}

/// A validated profile configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileConfig {
    pub backend: BackendConfig,
    pub grid: Grid,
    pub reps: RepPolicy,
    /// Seeds the point order and the prompts.
    pub seed: u64,
    pub shard: Option<Shard>,
    /// The timings table; `.csv` → CSV, else Parquet.
    pub out: PathBuf,
    pub resume: bool,
    /// Overwrite an existing `out`.
    pub overwrite: bool,
    /// CPU memory budget, bytes (default: `MemAvailable`); ignored on CUDA (free memory).
    pub memory_budget_bytes: Option<u64>,
}

impl ProfileConfig {
    /// The tiny model on the CPU over a small grid: the default pipeline's profile.
    pub fn default_tiny(out: PathBuf) -> Result<Self, ProfileError> {
        Ok(Self {
            backend: BackendConfig::Candle(CandleSpec::resolve(
                Some("tiny"),
                None,
                0,
                DeviceChoice::Cpu,
                crate::candle_backend::Precision::F32,
            )?),
            grid: Grid::new(vec![1, 2, 4, 8], vec![32, 128], 64)?,
            reps: RepPolicy {
                warmup_passes: 1,
                min_time_s: 0.2,
                min_reps: 3,
                max_reps: 5,
            },
            seed: 0,
            shard: None,
            out,
            resume: false,
            overwrite: true,
            memory_budget_bytes: None,
        })
    }
}

/// What the observer tells the runner after a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Stop now (every finished point is on disk; `--resume` continues).
    Stop,
}

/// The outcome of one grid point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointRecord {
    pub point_id: u32,
    pub batch_size: u32,
    pub input_tokens: u32,
    pub run_id: String,
    /// `ok` or `failed`.
    pub status: String,
    /// Timed passes.
    pub reps: u32,
    pub warmup_passes: u32,
    /// Seconds spent on the point (warm-up included).
    pub elapsed_s: f64,
    /// Mean time of one timed pass (prefill + every decode step), seconds.
    pub mean_pass_s: Option<f64>,
    pub reason: Option<String>,
    pub outliers: Vec<Outlier>,
}

/// Progress callbacks (the CLI draws a progress bar; the pipeline can stay quiet).
pub trait Observer {
    fn planned(&mut self, _plan: &PlanSummary) {}
    fn point_started(&mut self, _point: &GridPoint, _index: usize, _total: usize) {}
    fn point_finished(&mut self, _record: &PointRecord) -> Flow {
        Flow::Continue
    }
    fn warning(&mut self, _message: &str) {}
}

/// An observer that does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;
impl Observer for Quiet {}

/// The plan, before any work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanSummary {
    pub backend: String,
    pub model: String,
    pub device: String,
    pub dtype: String,
    pub grid: Grid,
    pub shard: Option<Shard>,
    pub grid_points: usize,
    /// Points of this shard, in the order they will run.
    pub points: Vec<GridPoint>,
    /// Points already recorded (with `--resume`).
    pub already_done: Vec<u32>,
    pub steps_per_pass: u32,
    pub rep_policy: RepPolicy,
    /// Rough time estimate of the points still to run, seconds.
    pub estimated_s: f64,
    /// `exact` (synthetic, modeled clock), `rough` (cost model of a candle model).
    pub estimate_kind: String,
    pub kv_capacity: Option<KvCapacity>,
    pub out: PathBuf,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileSummary {
    pub out: PathBuf,
    pub meta: PathBuf,
    pub run_id: String,
    pub points_ok: usize,
    pub points_failed: usize,
    /// Points found done on `--resume`.
    pub points_resumed: usize,
    pub rows: usize,
    pub outliers_mild: usize,
    pub outliers_far: usize,
    pub elapsed_s: f64,
    pub forward_calls: u64,
    pub kv_capacity: Option<KvCapacity>,
}

/// One invocation's metadata (a row of the `runs` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub run_id: String,
    pub tool_version: String,
    pub git_revision: Option<String>,
    pub started_at: String,
    #[serde(flatten)]
    pub backend: BackendInfo,
    pub shard: Option<Shard>,
    pub resumed: bool,
}

/// The metadata sidecar (`OUT.runs.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileMeta {
    pub schema: String,
    pub columns: Vec<String>,
    pub fingerprint: String,
    pub grid: Grid,
    pub shards: Vec<Shard>,
    pub seed: u64,
    pub rep_policy: RepPolicy,
    pub runs: Vec<RunMeta>,
    pub points: Vec<PointRecord>,
    pub kv_capacity: Option<KvCapacity>,
}

/// The manifest of a parts directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Manifest {
    fingerprint: String,
    grid: Grid,
    shard: Option<Shard>,
    seed: u64,
    rep_policy: RepPolicy,
    kv_capacity: Option<KvCapacity>,
}

/// `OUT.runs.json` beside `OUT`.
pub fn meta_path(out: &Path) -> PathBuf {
    out.with_extension("runs.json")
}

/// `OUT.parts/` beside `OUT`.
pub fn parts_dir(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".parts");
    out.with_file_name(name)
}

fn point_file(dir: &Path, id: u32, ext: &str) -> PathBuf {
    dir.join(format!("point-{id:06}.{ext}"))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ProfileError> {
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| ProfileError::output(path, e.to_string()))?;
    std::fs::write(&tmp, text).map_err(|e| ProfileError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ProfileError::io(path, e))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ProfileError> {
    let text = std::fs::read_to_string(path).map_err(|e| ProfileError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| ProfileError::output(path, format!("unreadable: {e}")))
}

/// Read a metadata sidecar.
pub fn read_meta(path: &Path) -> Result<ProfileMeta, ProfileError> {
    read_json(path)
}

/// Write a metadata sidecar.
pub fn write_meta(path: &Path, meta: &ProfileMeta) -> Result<(), ProfileError> {
    write_json(path, meta)
}

/// Seconds since the Unix epoch as RFC 3339 UTC (`civil_from_days`, H. Hinnant's algorithm).
pub fn rfc3339(unix_s: u64) -> String {
    let days = (unix_s / 86_400) as i64;
    let secs = unix_s % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn git_revision() -> Option<String> {
    let out = std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short=12",
            "HEAD",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn backend_label(cfg: &BackendConfig) -> (String, String, String, String) {
    match cfg {
        BackendConfig::Candle(c) => (
            "candle".into(),
            c.model.name.clone(),
            c.device.name(),
            c.precision.name().into(),
        ),
        BackendConfig::Synthetic(_) => (
            "synthetic".into(),
            "synthetic-linear".into(),
            "none".into(),
            "none".into(),
        ),
        BackendConfig::External(e) => (
            e.backend.clone(),
            e.model.clone(),
            e.device.clone(),
            e.dtype.clone(),
        ),
    }
}

/// Plan fingerprint: what must agree for parts to be resumed or shards merged.
pub(crate) fn fingerprint(config: &ProfileConfig) -> String {
    let backend = match &config.backend {
        BackendConfig::Candle(c) => format!(
            "candle|{}|{}|{}|{}",
            c.model.config_hash(),
            c.device.name(),
            c.precision.name(),
            c.weights.describe()
        ),
        BackendConfig::Synthetic(s) => {
            format!("synthetic|{}", serde_json::to_string(s).unwrap_or_default())
        }
        BackendConfig::External(e) => format!("{}|{}", e.backend, e.identity),
    };
    let grid = serde_json::to_string(&config.grid).unwrap_or_default();
    let reps = serde_json::to_string(&config.reps).unwrap_or_default();
    fnv1a_hex(format!("{backend}|{grid}|{reps}|{}", config.seed).as_bytes())
}

/// Rough seconds of one step of a candle model (the `--dry-run` estimate).
pub fn estimate_step_s(spec: &CandleSpec, batch: u32, tokens: u32, context: u32) -> f64 {
    let m = &spec.model;
    let flops = m.step_flops(u64::from(batch), u64::from(tokens), u64::from(context));
    let bytes = (m.parameters() * spec.precision.bytes()) as f64
        + (m.kv_bytes_per_token(spec.precision.bytes())
            * u64::from(batch)
            * u64::from(context + tokens)) as f64;
    let ops = OPS_PER_LAYER * m.dims.num_hidden_layers as f64;
    match spec.device {
        DeviceChoice::Cpu => flops / CPU_FLOPS + bytes / CPU_BYTES_PER_S + ops * CPU_OP_OVERHEAD_S,
        DeviceChoice::Cuda(_) => {
            (flops / GPU_FLOPS).max(bytes / GPU_BYTES_PER_S) + ops * GPU_OP_OVERHEAD_S
        }
    }
}

fn expected_pass_s(config: &ProfileConfig, p: &GridPoint) -> f64 {
    let shape = PointShape {
        batch_size: p.batch_size,
        input_tokens: p.input_tokens,
        max_output: config.grid.max_output,
    };
    match &config.backend {
        BackendConfig::Synthetic(s) => s.expected_pass_s(shape),
        BackendConfig::Candle(c) => {
            let mut t = estimate_step_s(c, p.batch_size, p.input_tokens, 0);
            for k in 1..config.grid.max_output {
                t += estimate_step_s(c, p.batch_size, 1, p.input_tokens + k - 1);
            }
            t
        }
        BackendConfig::External(e) => e.step_s_estimate * f64::from(config.grid.max_output),
    }
}

/// Validate everything and plan the run, without building the model or timing anything.
/// Errors here are the "one-line error before any work starts".
pub fn plan(config: &ProfileConfig) -> Result<PlanSummary, ProfileError> {
    config.reps.validate()?;
    let g = &config.grid;
    let seq = g.max_seq_tokens();
    // memory and model-limits checks
    let kv_capacity = match &config.backend {
        BackendConfig::Candle(c) => {
            let max_pos = c.model.dims.max_position_embeddings as u32;
            if seq > max_pos {
                return Err(ProfileError::Config(format!(
                    "--input {} + --output {} = {seq} tokens exceeds {}'s {max_pos} positions: lower --input or --output",
                    g.input_tokens.last().copied().unwrap_or(0),
                    g.max_output,
                    c.model.name
                )));
            }
            let device = open_device(c.device)?;
            probe_dtype(&device, c.precision)?;
            let sized = SizedModel {
                spec: &c.model,
                dtype_bytes: c.precision.bytes(),
            };
            match c.device {
                DeviceChoice::Cpu => {
                    let (budget, source) = match config.memory_budget_bytes {
                        Some(b) => (b, "--memory-budget".to_string()),
                        None => match capacity::mem_available_bytes() {
                            Some(b) => (b, "MemAvailable; set --memory-budget".to_string()),
                            None => (u64::MAX, "unlimited".to_string()),
                        },
                    };
                    use crate::backend::MemoryModel;
                    Some(capacity::check_grid(
                        g,
                        &sized,
                        budget,
                        sized.weights_bytes(),
                        &source,
                    )?)
                }
                // On CUDA the capacity is measured after loading (free memory), in `run`.
                DeviceChoice::Cuda(_) => None,
            }
        }
        BackendConfig::Synthetic(s) => match config.memory_budget_bytes {
            Some(b) => {
                use crate::backend::MemoryModel;
                Some(capacity::check_grid(
                    g,
                    s,
                    b,
                    s.weights_bytes(),
                    "--memory-budget",
                )?)
            }
            None => None,
        },
        // A server sizes its own cache; it queues what does not fit.
        BackendConfig::External(_) => None,
    };
    if let BackendConfig::Synthetic(s) = &config.backend {
        if !(s.noise_sigma >= 0.0 && (0.0..=1.0).contains(&s.spike_prob)) {
            return Err(ProfileError::Config(
                "synthetic noise σ must be ≥ 0 and spike probability in [0, 1]".into(),
            ));
        }
    }
    // outputs
    let out = &config.out;
    let parts = parts_dir(out);
    if out.exists() && !config.overwrite && !config.resume {
        return Err(ProfileError::output(
            out,
            "already exists: choose another --out, or pass --force to overwrite",
        ));
    }
    if out.exists() && config.resume && !parts.exists() {
        return Err(ProfileError::output(
            out,
            "is already complete (no unfinished parts to resume): drop --resume, or pass --force without --resume to redo it",
        ));
    }
    let mut already_done = Vec::new();
    if parts.exists() {
        if !config.resume {
            return Err(ProfileError::output(
                &parts,
                "holds an unfinished profile: pass --resume to continue it, or remove the directory",
            ));
        }
        let m: Manifest = read_json(&parts.join("manifest.json"))?;
        if m.fingerprint != fingerprint(config) || m.shard != config.shard {
            return Err(ProfileError::output(
                &parts,
                "was started with a different grid, shard, seed, model, dtype or weights: rerun with the same flags, or remove the directory",
            ));
        }
        already_done = done_points(&parts)?;
    }
    let all = g.points();
    let mine = shard_points(&all, config.shard);
    let order = shuffled(&mine, config.seed);
    let remaining: Vec<&GridPoint> = order
        .iter()
        .filter(|p| !already_done.contains(&p.point_id))
        .collect();
    let estimated_s = remaining
        .iter()
        .map(|p| {
            let pass = expected_pass_s(config, p);
            let reps = config.reps.planned_reps(pass);
            pass * f64::from(reps + config.reps.warmup_passes)
        })
        .sum();
    let (backend, model, device, dtype) = backend_label(&config.backend);
    let estimate_kind = match &config.backend {
        BackendConfig::Synthetic(s) if s.clock == crate::synthetic::SyntheticClock::Modeled => {
            "exact (modeled clock; no waiting)"
        }
        BackendConfig::Synthetic(_) => "expected (modeled latency)",
        BackendConfig::Candle(_) => "rough (cost model, ±3x)",
        BackendConfig::External(_) => "rough (a guess of the server's step time, ±10x)",
    };
    Ok(PlanSummary {
        backend,
        model,
        device,
        dtype,
        grid: g.clone(),
        shard: config.shard,
        grid_points: all.len(),
        points: order,
        already_done,
        steps_per_pass: g.max_output,
        rep_policy: config.reps,
        estimated_s,
        estimate_kind: estimate_kind.into(),
        kv_capacity,
        out: out.clone(),
    })
}

/// Point ids with a record in a parts directory (status ok; failed points are retried).
fn done_points(parts: &Path) -> Result<Vec<u32>, ProfileError> {
    let mut done = Vec::new();
    for rec in point_records(parts)? {
        if rec.status == "ok" && point_file(parts, rec.point_id, "parquet").exists() {
            done.push(rec.point_id);
        }
    }
    Ok(done)
}

fn point_records(parts: &Path) -> Result<Vec<PointRecord>, ProfileError> {
    let rd = std::fs::read_dir(parts).map_err(|e| ProfileError::io(parts, e))?;
    let mut recs = Vec::new();
    for e in rd.filter_map(Result::ok) {
        let p = e.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("point-") && name.ends_with(".json") {
            recs.push(read_json::<PointRecord>(&p)?);
        }
    }
    recs.sort_by_key(|r| r.point_id);
    Ok(recs)
}

/// Profile: build the backend named by the config and run the grid.
pub fn run(
    config: &ProfileConfig,
    observer: &mut dyn Observer,
) -> Result<ProfileSummary, ProfileError> {
    let _lock = crate::lock::prepare(config)?;
    let plan = plan(config)?;
    match &config.backend {
        BackendConfig::Candle(spec) => {
            let mut backend = CandleBackend::new(spec.clone())?;
            let mut kv = plan.kv_capacity.clone();
            if let Some(free) = crate::candle_backend::free_device_memory(backend.device()) {
                let sized = SizedModel {
                    spec: &spec.model,
                    dtype_bytes: spec.precision.bytes(),
                };
                kv = Some(capacity::check_grid(
                    &config.grid,
                    &sized,
                    free,
                    0,
                    "free device memory after loading the weights",
                )?);
            }
            run_planned(config, plan, kv, &mut backend, observer)
        }
        BackendConfig::Synthetic(spec) => {
            let mut backend = SyntheticBackend::new(spec.clone());
            let kv = plan.kv_capacity.clone();
            run_planned(config, plan, kv, &mut backend, observer)
        }
        BackendConfig::External(e) => Err(ProfileError::Config(format!(
            "the {} backend is built by its caller: use run_with_backend",
            e.backend
        ))),
    }
}

/// Run the grid on a backend you built (tests count its forward calls; the benchmark uses it).
pub fn run_with_backend(
    config: &ProfileConfig,
    backend: &mut dyn Backend,
    observer: &mut dyn Observer,
) -> Result<ProfileSummary, ProfileError> {
    let _lock = crate::lock::prepare(config)?;
    let plan = plan(config)?;
    let kv = plan.kv_capacity.clone();
    run_planned(config, plan, kv, backend, observer)
}

/// Random prompts: `batch × input` ids uniform on the vocabulary, seeded per (point, pass), so
/// no two passes share a prefix a cache could reuse.
pub fn random_prompts(vocab: usize, batch: u32, input: u32, seed: u64) -> PromptBatch {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = batch as usize * input as usize;
    let v = vocab.max(1) as u32;
    PromptBatch {
        batch_size: batch as usize,
        input_tokens: input as usize,
        ids: (0..n).map(|_| rng.random_range(0..v)).collect(),
    }
}

/// One pass: prefill then `max_output − 1` decode steps; the rows of rep `rep`.
pub fn measure_pass(
    backend: &mut dyn Backend,
    shape: PointShape,
    prompts: &PromptBatch,
    rep: u32,
) -> Result<Vec<StepRow>, BackendError> {
    backend.prepare(shape)?;
    let mut rows = Vec::with_capacity(shape.max_output as usize);
    let t = backend.prefill(prompts)?;
    rows.push(StepRow {
        rep,
        step: 0,
        context_tokens: 0,
        wall_s: t.wall_s,
        device_s: t.device_s,
    });
    for k in 1..shape.max_output {
        let t = backend.decode_step()?;
        rows.push(StepRow {
            rep,
            step: k,
            context_tokens: shape.input_tokens + k - 1,
            wall_s: t.wall_s,
            device_s: t.device_s,
        });
    }
    Ok(rows)
}

/// Seed of the prompts of one pass.
fn pass_seed(seed: u64, point: u32, pass: u32) -> u64 {
    seed ^ (u64::from(point) << 32 | u64::from(pass)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Median decode-step time (steps ≥ 1) of each timed pass, in pass order.
pub fn pass_decode_medians(rows: &[StepRow]) -> Vec<f64> {
    let mut by_rep: std::collections::BTreeMap<u32, Vec<f64>> = Default::default();
    for r in rows.iter().filter(|r| r.step > 0) {
        by_rep
            .entry(r.rep)
            .or_default()
            .push(r.device_s.unwrap_or(r.wall_s));
    }
    by_rep.into_values().map(median).collect()
}

/// Median of `v` (NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// (max − min) / median of the passes' median decode steps; `None` with fewer than 2 passes.
pub fn pass_variation(rows: &[StepRow]) -> Option<(f64, f64, f64)> {
    let m = pass_decode_medians(rows);
    if m.len() < 2 {
        return None;
    }
    let (lo, hi) = m
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    Some(((hi - lo) / median(m), lo, hi))
}

/// Half-width of the 95% interval of the mean of `x`, relative to the mean (Student t).
fn rel_half_width(x: &[f64]) -> f64 {
    let n = x.len();
    if n < 2 {
        return f64::INFINITY;
    }
    let mean = x.iter().sum::<f64>() / n as f64;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
    // t_{0.975, n−1} for n − 1 = 1..9, then 2.0 (≤ 2.26 down to 1.96).
    const T975: [f64; 9] = [12.71, 4.30, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26];
    let t = T975.get(n - 2).copied().unwrap_or(2.0);
    t * (var / n as f64).sqrt() / mean
}

/// What one point's measurement did.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Every timed step.
    pub rows: Vec<StepRow>,
    /// Timed passes.
    pub reps: u32,
    /// Untimed passes, the configured ones plus those spent waiting for steady step times.
    pub warmup_passes: u32,
}

/// Measure one point: warm-up (until steady on a GPU), first pass, planned reps (more on a GPU
/// while the spread asks for them).
fn measure_point(
    config: &ProfileConfig,
    backend: &mut dyn Backend,
    p: &GridPoint,
) -> Result<Measured, BackendError> {
    let shape = PointShape {
        batch_size: p.batch_size,
        input_tokens: p.input_tokens,
        max_output: config.grid.max_output,
    };
    let vocab = backend.vocab_size();
    let adaptive = backend.is_accelerator();
    let mut pass = 0u32;
    let next_prompts = |pass: &mut u32| {
        let prompts = random_prompts(
            vocab,
            p.batch_size,
            p.input_tokens,
            pass_seed(config.seed, p.point_id, *pass),
        );
        *pass += 1;
        prompts
    };
    let mut last_median = f64::NAN;
    for _ in 0..config.reps.warmup_passes {
        let prompts = next_prompts(&mut pass);
        let rows = measure_pass(backend, shape, &prompts, 0)?;
        last_median = median(pass_decode_medians(&rows));
    }
    if adaptive && shape.max_output > 1 {
        for _ in 0..MAX_STEADY_WARMUP {
            let prompts = next_prompts(&mut pass);
            let rows = measure_pass(backend, shape, &prompts, 0)?;
            let m = median(pass_decode_medians(&rows));
            let steady = (m - last_median).abs() <= STEADY_REL_CHANGE * last_median;
            last_median = m;
            if steady {
                break;
            }
        }
    }
    let warmup_passes = pass;
    let prompts = next_prompts(&mut pass);
    let mut rows = measure_pass(backend, shape, &prompts, 0)?;
    let mut pass_s = vec![rows.iter().map(|r| r.wall_s).sum::<f64>()];
    let planned = config.reps.planned_reps(pass_s[0]);
    let mut reps = 1;
    while reps < config.reps.max_reps
        && (reps < planned || (adaptive && rel_half_width(&pass_s) > TARGET_REL_HALF_WIDTH))
    {
        let prompts = next_prompts(&mut pass);
        let more = measure_pass(backend, shape, &prompts, reps)?;
        pass_s.push(more.iter().map(|r| r.wall_s).sum());
        rows.extend(more);
        reps += 1;
    }
    backend.synchronize()?;
    Ok(Measured {
        rows,
        reps,
        warmup_passes,
    })
}

fn new_run_id(started_unix_s: u64, config: &ProfileConfig) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let salt = fnv1a_hex(
        format!(
            "{started_unix_s}|{nanos}|{n}|{}|{}|{:?}",
            std::process::id(),
            config.out.display(),
            config.shard
        )
        .as_bytes(),
    );
    format!("{started_unix_s}-{}", &salt[..8])
}

fn run_planned(
    config: &ProfileConfig,
    plan: PlanSummary,
    kv_capacity: Option<KvCapacity>,
    backend: &mut dyn Backend,
    observer: &mut dyn Observer,
) -> Result<ProfileSummary, ProfileError> {
    let started = Instant::now();
    let unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let run_id = new_run_id(unix_s, config);
    let parts = parts_dir(&config.out);
    let resumed = parts.exists();
    std::fs::create_dir_all(&parts).map_err(|e| ProfileError::io(&parts, e))?;
    let manifest_path = parts.join("manifest.json");
    if !manifest_path.exists() {
        write_json(
            &manifest_path,
            &Manifest {
                fingerprint: fingerprint(config),
                grid: config.grid.clone(),
                shard: config.shard,
                seed: config.seed,
                rep_policy: config.reps,
                kv_capacity: kv_capacity.clone(),
            },
        )?;
    }
    let run_meta = RunMeta {
        run_id: run_id.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        git_revision: git_revision(),
        started_at: rfc3339(unix_s),
        backend: backend.info(),
        shard: config.shard,
        resumed,
    };
    write_json(&parts.join(format!("run-{run_id}.json")), &run_meta)?;
    observer.planned(&plan);

    let calls_before = backend.forward_calls();
    let todo: Vec<GridPoint> = plan
        .points
        .iter()
        .copied()
        .filter(|p| !plan.already_done.contains(&p.point_id))
        .collect();
    let total = todo.len();
    let (mut ok, mut failed, mut rows_written, mut mild, mut far) = (0, 0, 0, 0, 0);
    for (i, p) in todo.iter().enumerate() {
        observer.point_started(p, i, total);
        let t0 = Instant::now();
        let mut record = PointRecord {
            point_id: p.point_id,
            batch_size: p.batch_size,
            input_tokens: p.input_tokens,
            run_id: run_id.clone(),
            status: "ok".into(),
            reps: 0,
            warmup_passes: config.reps.warmup_passes,
            elapsed_s: 0.0,
            mean_pass_s: None,
            reason: None,
            outliers: vec![],
        };
        match measure_point(config, backend, p) {
            Ok(Measured {
                rows,
                reps,
                warmup_passes,
            }) => {
                record.warmup_passes = warmup_passes;
                if let Some((v, lo, hi)) = pass_variation(&rows)
                    && v > PASS_VARIATION_WARN
                {
                    observer.warning(&format!(
                        "point {} (batch {}, input {} tokens): the median decode step varies {:.0}% between passes ({:.2}–{:.2} ms); the device was not steady: raise --warmup, or --reps for more passes",
                        p.point_id,
                        p.batch_size,
                        p.input_tokens,
                        100.0 * v,
                        lo * 1e3,
                        hi * 1e3
                    ));
                }
                let outliers = label_point(p.point_id, &rows);
                let n_far = outliers
                    .iter()
                    .filter(|o| o.severity == Severity::Far)
                    .count();
                let n_mild = outliers.len() - n_far;
                if n_far > 0 {
                    observer.warning(&format!(
                        "point {} (batch {}, input {} tokens): {n_far} far-out step time(s) beyond Tukey's 3·IQR fence (labelled in the metadata, kept in the table)",
                        p.point_id, p.batch_size, p.input_tokens
                    ));
                }
                let mut df = table::point_frame(&run_id, p, &rows)
                    .map_err(|e| ProfileError::table(&parts, e))?;
                table::write_frame(
                    &mut df,
                    &point_file(&parts, p.point_id, "parquet"),
                    Format::Parquet,
                )?;
                record.reps = reps;
                record.mean_pass_s =
                    Some(rows.iter().map(|r| r.wall_s).sum::<f64>() / f64::from(reps));
                record.outliers = outliers;
                rows_written += rows.len();
                mild += n_mild;
                far += n_far;
                ok += 1;
            }
            Err(e) => {
                observer.warning(&format!(
                    "point {} (batch {}, input {} tokens) failed: {e}; recorded, going on",
                    p.point_id, p.batch_size, p.input_tokens
                ));
                let _ = std::fs::remove_file(point_file(&parts, p.point_id, "parquet"));
                record.status = "failed".into();
                record.reason = Some(e.to_string());
                failed += 1;
            }
        }
        record.elapsed_s = t0.elapsed().as_secs_f64();
        write_json(&point_file(&parts, p.point_id, "json"), &record)?;
        if observer.point_finished(&record) == Flow::Stop && i + 1 < total {
            return Err(ProfileError::Interrupted {
                done: plan.already_done.len() + i + 1,
                total: plan.points.len(),
            });
        }
    }
    let forward_calls = backend.forward_calls() - calls_before;
    finalize(config, &plan, kv_capacity.clone())?;
    Ok(ProfileSummary {
        out: config.out.clone(),
        meta: meta_path(&config.out),
        run_id,
        points_ok: ok,
        points_failed: failed,
        points_resumed: plan.already_done.len(),
        rows: rows_written,
        outliers_mild: mild,
        outliers_far: far,
        elapsed_s: started.elapsed().as_secs_f64(),
        forward_calls,
        kv_capacity,
    })
}

/// Join the parts into the output table and the metadata sidecar; remove the parts.
fn finalize(
    config: &ProfileConfig,
    plan: &PlanSummary,
    kv: Option<KvCapacity>,
) -> Result<(), ProfileError> {
    let parts = parts_dir(&config.out);
    let records = point_records(&parts)?;
    let mut frames = Vec::new();
    for r in records.iter().filter(|r| r.status == "ok") {
        let f = point_file(&parts, r.point_id, "parquet");
        frames.push(table::read_frame(&f)?);
    }
    let mut df = table::concat_sorted(frames).map_err(|e| ProfileError::table(&config.out, e))?;
    table::write_frame(&mut df, &config.out, Format::from_path(&config.out))?;
    let mut runs = Vec::new();
    let rd = std::fs::read_dir(&parts).map_err(|e| ProfileError::io(&parts, e))?;
    for e in rd.filter_map(Result::ok) {
        let p = e.path();
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        if name.starts_with("run-") && name.ends_with(".json") {
            runs.push(read_json::<RunMeta>(&p)?);
        }
    }
    runs.sort_by(|a, b| {
        a.started_at
            .cmp(&b.started_at)
            .then(a.run_id.cmp(&b.run_id))
    });
    let m: Manifest = read_json(&parts.join("manifest.json"))?;
    let meta = ProfileMeta {
        schema: META_SCHEMA.into(),
        columns: table::COLUMNS.iter().map(|s| s.to_string()).collect(),
        fingerprint: m.fingerprint,
        grid: plan.grid.clone(),
        shards: config.shard.into_iter().collect(),
        seed: config.seed,
        rep_policy: config.reps,
        runs,
        points: records,
        kv_capacity: kv.or(m.kv_capacity),
    };
    write_meta(&meta_path(&config.out), &meta)?;
    std::fs::remove_dir_all(&parts).map_err(|e| ProfileError::io(&parts, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_rows(passes: &[&[f64]]) -> Vec<StepRow> {
        let mut rows = Vec::new();
        for (rep, steps) in passes.iter().enumerate() {
            for (k, &t) in steps.iter().enumerate() {
                rows.push(StepRow {
                    rep: rep as u32,
                    step: k as u32 + 1,
                    context_tokens: 0,
                    wall_s: t,
                    device_s: None,
                });
            }
        }
        rows
    }

    #[test]
    fn pass_variation_is_the_spread_of_pass_medians() {
        // Pass medians 10, 12 and 8 ms: (12 − 8) / 10 = 40 %.
        let rows = decode_rows(&[
            &[0.009, 0.010, 0.011],
            &[0.012, 0.012, 0.013],
            &[0.008, 0.008, 0.009],
        ]);
        let (v, lo, hi) = pass_variation(&rows).unwrap();
        assert!((v - 0.4).abs() < 1e-12 && lo == 0.008 && hi == 0.012);
        assert!(pass_variation(&decode_rows(&[&[0.01, 0.02]])).is_none());
    }

    #[test]
    fn relative_half_width_of_known_samples() {
        // mean 10, sd 1 (n = 4): t(3) = 3.18, half-width 3.18 · 1/2 = 1.59 → 15.9 %.
        let x = [9.0, 9.0, 11.0, 11.0];
        let sd = (4.0f64 / 3.0).sqrt();
        let want = 3.18 * sd / 2.0 / 10.0;
        assert!((rel_half_width(&x) - want).abs() < 1e-12);
        assert!(rel_half_width(&[1.0]).is_infinite());
        assert_eq!(rel_half_width(&[2.0, 2.0, 2.0]), 0.0);
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // 2000-03-01T00:00:00Z = 951868800 (leap-year boundary)
        assert_eq!(rfc3339(951_868_800), "2000-03-01T00:00:00Z");
        // 2026-11-23T20:35:24Z = 1795466124
        assert_eq!(rfc3339(1_795_466_124), "2026-11-23T20:35:24Z");
    }

    #[test]
    fn prompts_are_seeded_in_range_and_differ_between_passes() {
        let a = random_prompts(100, 2, 8, 1);
        assert_eq!(a, random_prompts(100, 2, 8, 1));
        assert_eq!(a.ids.len(), 16);
        assert!(a.ids.iter().all(|&t| t < 100));
        let b = random_prompts(100, 2, 8, pass_seed(0, 0, 1));
        assert_ne!(a.ids, b.ids);
    }
}
