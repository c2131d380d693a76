//! The candle backend: a Llama-family or Qwen2 model from candle-transformers 0.11, random
//! seeded weights or a local `config.json` + `*.safetensors` directory, on the CPU or (with the
//! `cuda` feature) a CUDA device.
//!
//! One grid point is one generation, as a serving engine runs it (and as candle's own
//! `llama` example does): a prefill of the `(batch, input)` prompt batch with an empty KV
//! cache, then forced decode steps, each feeding every sequence's greedy (argmax) token back
//! (no end-of-sequence stop). The argmax stays on the device, so each step is one forward plus
//! one small reduction, as in a real decode loop.
//!
//! Timing: host clock (`Instant`) around the step with `Device::synchronize()` after it; on
//! CUDA also a pair of CUDA events recorded on candle's stream around the step
//! (`candle_core::cuda::cudarc`, no second cudarc), whose `elapsed_ms` is `device_s`.
//!
//! Random weights are uniform on `[−a, a]` with `a = √3·σ`, `σ = 0.02` (the Hugging Face
//! `initializer_range`), seeded per tensor from `(seed, FNV-1a(name))`; norm weights are 1 as
//! candle initialises them. Not zeros: no kernel can take a shortcut.

use crate::backend::{Backend, BackendInfo, PointShape, PromptBatch, StepTiming};
use crate::error::{BackendError, ProfileError};
use crate::models::{Arch, ModelSpec, fnv1a};
use candle_core::{D, DType, Device, Shape, Tensor};
use candle_nn::{Init, VarBuilder, var_builder::SimpleBackend};
use candle_transformers::models::{llama, qwen2};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// Standard deviation of random weights (Hugging Face `initializer_range`).
const WEIGHT_STD: f64 = 0.02;

/// Numeric precision of weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F32,
    F16,
    Bf16,
}

impl Precision {
    pub fn parse(s: &str) -> Result<Self, ProfileError> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Self::F32),
            "f16" | "float16" | "half" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::Bf16),
            _ => Err(ProfileError::Config(format!(
                "--dtype `{s}` is not a dtype: use f32, f16 or bf16"
            ))),
        }
    }
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }
    pub fn bytes(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        }
    }
}

/// Which device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceChoice {
    Cpu,
    Cuda(usize),
}

impl DeviceChoice {
    pub fn parse(s: &str) -> Result<Self, ProfileError> {
        let s = s.trim().to_ascii_lowercase();
        if s == "cpu" {
            return Ok(Self::Cpu);
        }
        if s == "cuda" || s == "gpu" {
            return Ok(Self::Cuda(0));
        }
        if let Some(n) = s.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            return Ok(Self::Cuda(n));
        }
        Err(ProfileError::Config(format!(
            "--device `{s}` is not a device: use cpu, cuda or cuda:N"
        )))
    }
    pub fn name(self) -> String {
        match self {
            Self::Cpu => "cpu".into(),
            Self::Cuda(n) => format!("cuda:{n}"),
        }
    }
}

/// Where the weights come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WeightsSource {
    /// Random, seeded.
    Random { seed: u64 },
    /// A directory with `config.json` and `*.safetensors`.
    Dir(PathBuf),
}

impl WeightsSource {
    pub fn describe(&self) -> String {
        match self {
            Self::Random { seed } => format!("random(seed={seed})"),
            Self::Dir(p) => p.display().to_string(),
        }
    }
}

/// Everything needed to build a candle backend.
#[derive(Debug, Clone, PartialEq)]
pub struct CandleSpec {
    pub model: ModelSpec,
    pub device: DeviceChoice,
    pub precision: Precision,
    pub weights: WeightsSource,
}

impl CandleSpec {
    /// Resolve `--model` / `--weights` into a spec: a preset, the directory's `config.json`, or
    /// both (which must agree). Checks the safetensors headers (names, shapes) without loading.
    pub fn resolve(
        model: Option<&str>,
        weights_dir: Option<&Path>,
        weights_seed: u64,
        device: DeviceChoice,
        precision: Precision,
    ) -> Result<Self, ProfileError> {
        let (model, weights) = match (model, weights_dir) {
            (m, None) => (
                ModelSpec::preset(m.unwrap_or("tiny"))?,
                WeightsSource::Random { seed: weights_seed },
            ),
            (m, Some(dir)) => {
                let from_dir = ModelSpec::from_config_json(dir)?;
                if let Some(name) = m {
                    let preset = ModelSpec::preset(name)?;
                    if preset.arch != from_dir.arch || preset.dims != from_dir.dims {
                        return Err(ProfileError::Weights {
                            path: dir.join("config.json"),
                            msg: format!(
                                "does not match --model {name} ({} vs {}, hidden {} vs {}, layers {} vs {}): pass the matching --model or omit it",
                                from_dir.arch.name(),
                                preset.arch.name(),
                                from_dir.dims.hidden_size,
                                preset.dims.hidden_size,
                                from_dir.dims.num_hidden_layers,
                                preset.dims.num_hidden_layers
                            ),
                        });
                    }
                }
                check_weights_dir(&from_dir, dir)?;
                (from_dir, WeightsSource::Dir(dir.to_path_buf()))
            }
        };
        Ok(Self {
            model,
            device,
            precision,
            weights,
        })
    }
}

/// The safetensors files of a directory, sorted.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>, ProfileError> {
    let rd = std::fs::read_dir(dir).map_err(|e| ProfileError::Weights {
        path: dir.to_path_buf(),
        msg: format!("cannot read the --weights directory ({e})"),
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ProfileError::Weights {
            path: dir.to_path_buf(),
            msg: "no *.safetensors file in the --weights directory".into(),
        });
    }
    Ok(files)
}

/// Read the header of a safetensors file: name → (dtype, shape). Format: 8-byte little-endian
/// header length, then a JSON object (huggingface/safetensors README).
fn read_safetensors_header(
    path: &Path,
) -> Result<HashMap<String, (String, Vec<usize>)>, ProfileError> {
    use std::io::Read;
    let werr = |msg: String| ProfileError::Weights {
        path: path.to_path_buf(),
        msg,
    };
    let mut f = std::fs::File::open(path).map_err(|e| werr(format!("cannot open ({e})")))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| werr("not a safetensors file (shorter than its header)".into()))?;
    let len = u64::from_le_bytes(len);
    const MAX_HEADER: u64 = 100 << 20;
    if len > MAX_HEADER {
        return Err(werr(
            "not a safetensors file (header length implausible)".into(),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf)
        .map_err(|_| werr("truncated safetensors header".into()))?;
    let v: serde_json::Value = serde_json::from_slice(&buf)
        .map_err(|e| werr(format!("safetensors header is not JSON ({e})")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| werr("safetensors header is not an object".into()))?;
    let mut out = HashMap::new();
    for (name, t) in obj {
        if name == "__metadata__" {
            continue;
        }
        let dtype = t
            .get("dtype")
            .and_then(|d| d.as_str())
            .unwrap_or("")
            .to_string();
        let shape = t
            .get("shape")
            .and_then(|s| s.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64().map(|x| x as usize))
                    .collect()
            })
            .unwrap_or_default();
        out.insert(name.clone(), (dtype, shape));
    }
    Ok(out)
}

/// Check that a weights directory holds every tensor the model loads, with its shape, in a
/// float dtype. Reads headers only.
pub fn check_weights_dir(spec: &ModelSpec, dir: &Path) -> Result<(), ProfileError> {
    let mut found: HashMap<String, (String, Vec<usize>, PathBuf)> = HashMap::new();
    for f in safetensors_files(dir)? {
        for (name, (dtype, shape)) in read_safetensors_header(&f)? {
            found.insert(name, (dtype, shape, f.clone()));
        }
    }
    for (name, shape) in spec.expected_tensors() {
        match found.get(&name) {
            None => {
                return Err(ProfileError::Weights {
                    path: dir.to_path_buf(),
                    msg: format!(
                        "tensor `{name}` is missing from the safetensors files: the weights do not match config.json"
                    ),
                });
            }
            Some((dtype, got, file)) => {
                if got != &shape {
                    return Err(ProfileError::Weights {
                        path: file.clone(),
                        msg: format!(
                            "tensor `{name}` has shape {got:?}, config.json implies {shape:?}: the weights do not match config.json"
                        ),
                    });
                }
                if !matches!(dtype.as_str(), "F32" | "F16" | "BF16") {
                    return Err(ProfileError::Weights {
                        path: file.clone(),
                        msg: format!("tensor `{name}` has dtype {dtype}: only F32, F16, BF16 load"),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Open a device. Without the `cuda` feature, CUDA is refused with the rebuild hint.
pub fn open_device(choice: DeviceChoice) -> Result<Device, ProfileError> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Cuda(n) => {
            if !cfg!(feature = "cuda") {
                return Err(ProfileError::Device {
                    device: choice.name(),
                    reason: "this build has no CUDA support: rebuild with `--features cuda` (needs nvcc)".into(),
                });
            }
            Device::new_cuda(n).map_err(|e| ProfileError::Device {
                device: choice.name(),
                reason: e.to_string().lines().next().unwrap_or("").to_string(),
            })
        }
    }
}

/// Run the operations a decoder step needs (matmul, RMS norm, softmax, argmax) in `dtype` on
/// `device`; an error means the device cannot run that dtype (bf16 on a GPU older than
/// compute capability 8.0, say).
pub fn probe_dtype(device: &Device, precision: Precision) -> Result<(), ProfileError> {
    let run = || -> candle_core::Result<()> {
        let dt = precision.dtype();
        let a = Tensor::ones((2, 8), dt, device)?;
        let w = Tensor::ones((8, 8), dt, device)?;
        let y = a.matmul(&w)?;
        let alpha = Tensor::ones(8, dt, device)?;
        let y = candle_nn::ops::rms_norm(&y, &alpha, 1e-5)?;
        let y = candle_nn::ops::softmax_last_dim(&y)?;
        let _ = y
            .to_dtype(DType::F32)?
            .argmax_keepdim(D::Minus1)?
            .to_vec2::<u32>()?;
        Ok(())
    };
    run().map_err(|e| ProfileError::UnsupportedDtype {
        dtype: precision.name().into(),
        device: device_name(device),
        reason: e.to_string().lines().next().unwrap_or("").to_string(),
    })
}

/// The device in words.
pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => {
            let model = std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("model name"))
                        .and_then(|l| l.split(':').nth(1))
                        .map(|m| m.trim().to_string())
                })
                .unwrap_or_else(|| "unknown CPU".into());
            format!(
                "cpu ({model}, {} threads)",
                candle_core::utils::get_num_threads()
            )
        }
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => {
            let ctx = d.cuda_stream().context().clone();
            let name = ctx.name().unwrap_or_else(|_| "CUDA device".into());
            match ctx.compute_capability() {
                Ok((a, b)) => format!("{name} (compute capability {a}.{b})"),
                Err(_) => name,
            }
        }
        #[allow(unreachable_patterns)]
        _ => format!("{device:?}"),
    }
}

/// Free device memory in bytes (CUDA only; `None` on the CPU).
pub fn free_device_memory(device: &Device) -> Option<u64> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => d
            .cuda_stream()
            .context()
            .mem_get_info()
            .ok()
            .map(|(free, _total)| free as u64),
        _ => None,
    }
}

/// A `VarBuilder` backend that creates seeded random tensors for exactly the names and shapes
/// of [`ModelSpec::expected_tensors`], and remembers them so they can be saved.
struct SeededWeights {
    seed: u64,
    expected: HashMap<String, Vec<usize>>,
    created: Mutex<Vec<(String, Tensor)>>,
}

impl SeededWeights {
    fn values(&self, name: &str, n: usize, init: Init) -> Vec<f32> {
        match init {
            Init::Const(c) if c != 0.0 => vec![c as f32; n],
            _ => {
                let mut rng = StdRng::seed_from_u64(self.seed ^ fnv1a(name.as_bytes()));
                let a = (3.0f64.sqrt() * WEIGHT_STD) as f32;
                (0..n).map(|_| rng.random_range(-a..a)).collect()
            }
        }
    }
}

impl SimpleBackend for SeededWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        match self.expected.get(name) {
            Some(shape) if shape.as_slice() == s.dims() => {}
            Some(shape) => {
                candle_core::bail!("tensor {name}: model asks {s:?}, spec says {shape:?}")
            }
            None => candle_core::bail!("tensor {name} is not in the model spec"),
        }
        let values = self.values(name, s.elem_count(), h);
        let t = Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?;
        if let Ok(mut c) = self.created.lock() {
            c.push((name.to_string(), t.clone()));
        }
        Ok(t)
    }
    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        candle_core::bail!("tensor {name}: random weights need a shape")
    }
    fn contains_tensor(&self, name: &str) -> bool {
        self.expected.contains_key(name)
    }
}

/// The model proper. One per backend, so the variants' size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Model {
    Llama {
        model: llama::Llama,
        config: llama::Config,
        cache: Option<llama::Cache>,
    },
    Qwen2(qwen2::ModelForCausalLM),
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Model::Llama { .. } => f.write_str("Model::Llama"),
            Model::Qwen2(_) => f.write_str("Model::Qwen2"),
        }
    }
}

fn llama_config(spec: &ModelSpec) -> Result<llama::Config, ProfileError> {
    if let Some(raw) = &spec.raw_config {
        let c: llama::LlamaConfig = serde_json::from_value(raw.clone()).map_err(|e| {
            ProfileError::Config(format!(
                "config.json is not a llama config candle can read: {e}"
            ))
        })?;
        return Ok(c.into_config(false));
    }
    let d = &spec.dims;
    Ok(llama::Config {
        hidden_size: d.hidden_size,
        intermediate_size: d.intermediate_size,
        vocab_size: d.vocab_size,
        num_hidden_layers: d.num_hidden_layers,
        num_attention_heads: d.num_attention_heads,
        num_key_value_heads: d.num_key_value_heads,
        use_flash_attn: false,
        rms_norm_eps: d.rms_norm_eps,
        rope_theta: d.rope_theta as f32,
        bos_token_id: None,
        eos_token_id: None,
        rope_scaling: None,
        max_position_embeddings: d.max_position_embeddings,
        tie_word_embeddings: d.tie_word_embeddings,
    })
}

fn qwen2_config(spec: &ModelSpec) -> Result<qwen2::Config, ProfileError> {
    if let Some(raw) = &spec.raw_config {
        return serde_json::from_value(raw.clone()).map_err(|e| {
            ProfileError::Config(format!(
                "config.json is not a qwen2 config candle can read: {e}"
            ))
        });
    }
    let d = &spec.dims;
    Ok(qwen2::Config {
        vocab_size: d.vocab_size,
        hidden_size: d.hidden_size,
        intermediate_size: d.intermediate_size,
        num_hidden_layers: d.num_hidden_layers,
        num_attention_heads: d.num_attention_heads,
        num_key_value_heads: d.num_key_value_heads,
        max_position_embeddings: d.max_position_embeddings,
        sliding_window: d.max_position_embeddings,
        max_window_layers: d.num_hidden_layers,
        tie_word_embeddings: d.tie_word_embeddings,
        rope_theta: d.rope_theta,
        rms_norm_eps: d.rms_norm_eps,
        use_sliding_window: false,
        hidden_act: candle_nn::Activation::Silu,
    })
}

/// State of the generation in progress.
#[derive(Debug)]
struct Generation {
    /// KV entries so far (position of the next token).
    pos: usize,
    /// The next input: (batch, 1) token ids, on the device.
    next: Option<Tensor>,
    max_pos: usize,
}

/// The candle backend.
#[derive(Debug)]
pub struct CandleBackend {
    spec: CandleSpec,
    device: Device,
    model: Model,
    generation: Option<Generation>,
    forward_calls: u64,
    /// Seeded random weights as created (for [`CandleBackend::save_weights`]).
    random_tensors: Vec<(String, Tensor)>,
}

impl CandleBackend {
    /// Build the model: open the device, probe the dtype, create or load the weights.
    pub fn new(spec: CandleSpec) -> Result<Self, ProfileError> {
        let device = open_device(spec.device)?;
        probe_dtype(&device, spec.precision)?;
        let dtype = spec.precision.dtype();
        let cerr = |e: candle_core::Error| ProfileError::Backend(BackendError::from_candle(&e));
        let (vb, seeded) = match &spec.weights {
            WeightsSource::Random { seed } => {
                let backend = std::sync::Arc::new(SeededWeights {
                    seed: *seed,
                    expected: spec.model.expected_tensors().into_iter().collect(),
                    created: Mutex::new(Vec::new()),
                });
                let vb = VarBuilder::from_backend(
                    Box::new(ArcWeights(backend.clone())),
                    dtype,
                    device.clone(),
                );
                (vb, Some(backend))
            }
            WeightsSource::Dir(dir) => {
                check_weights_dir(&spec.model, dir)?;
                let mut all = HashMap::new();
                for f in safetensors_files(dir)? {
                    let ts = candle_core::safetensors::load(&f, &device).map_err(|e| {
                        ProfileError::Weights {
                            path: f.clone(),
                            msg: e.to_string().lines().next().unwrap_or("").to_string(),
                        }
                    })?;
                    all.extend(ts);
                }
                (VarBuilder::from_tensors(all, dtype, &device), None)
            }
        };
        let model = match spec.model.arch {
            Arch::Llama => {
                let config = llama_config(&spec.model)?;
                let model = llama::Llama::load(vb, &config).map_err(cerr)?;
                Model::Llama {
                    model,
                    config,
                    cache: None,
                }
            }
            Arch::Qwen2 => {
                let config = qwen2_config(&spec.model)?;
                Model::Qwen2(qwen2::ModelForCausalLM::new(&config, vb).map_err(cerr)?)
            }
        };
        let random_tensors = seeded
            .and_then(|s| s.created.lock().ok().map(|c| c.clone()))
            .unwrap_or_default();
        Ok(Self {
            spec,
            device,
            model,
            generation: None,
            forward_calls: 0,
            random_tensors,
        })
    }

    /// The spec it was built from.
    pub fn spec(&self) -> &CandleSpec {
        &self.spec
    }

    /// The candle device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Write random weights as a loadable directory: `config.json` + `model.safetensors`.
    pub fn save_weights(&self, dir: &Path) -> Result<(), ProfileError> {
        if self.random_tensors.is_empty() {
            return Err(ProfileError::Config(
                "only random weights can be saved (these came from a directory)".into(),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| ProfileError::io(dir, e))?;
        let d = &self.spec.model.dims;
        let config = serde_json::json!({
            "model_type": self.spec.model.arch.name(),
            "vocab_size": d.vocab_size,
            "hidden_size": d.hidden_size,
            "intermediate_size": d.intermediate_size,
            "num_hidden_layers": d.num_hidden_layers,
            "num_attention_heads": d.num_attention_heads,
            "num_key_value_heads": d.num_key_value_heads,
            "max_position_embeddings": d.max_position_embeddings,
            "rope_theta": d.rope_theta,
            "rms_norm_eps": d.rms_norm_eps,
            "tie_word_embeddings": d.tie_word_embeddings,
            "sliding_window": d.max_position_embeddings,
            "max_window_layers": d.num_hidden_layers,
            "use_sliding_window": false,
            "hidden_act": "silu",
        });
        let cpath = dir.join("config.json");
        std::fs::write(
            &cpath,
            serde_json::to_string_pretty(&config).unwrap_or_default(),
        )
        .map_err(|e| ProfileError::io(&cpath, e))?;
        let map: HashMap<String, Tensor> = self.random_tensors.iter().cloned().collect();
        let wpath = dir.join("model.safetensors");
        candle_core::safetensors::save(&map, &wpath).map_err(|e| ProfileError::table(&wpath, e))
    }

    /// One forward pass: logits of the last position, `(batch, vocab)` in f32.
    pub fn forward_logits(&mut self, ids: &Tensor, pos: usize) -> candle_core::Result<Tensor> {
        self.forward_calls += 1;
        match &mut self.model {
            Model::Llama {
                model,
                config,
                cache,
            } => {
                if cache.is_none() || pos == 0 {
                    *cache = Some(llama::Cache::new(
                        true,
                        self.spec.precision.dtype(),
                        config,
                        &self.device,
                    )?);
                }
                let cache = cache.as_mut().expect("cache was just created");
                model.forward(ids, pos, cache)
            }
            Model::Qwen2(m) => {
                if pos == 0 {
                    m.clear_kv_cache();
                }
                m.forward(ids, pos)?.squeeze(1)?.to_dtype(DType::F32)
            }
        }
    }

    fn timed(
        &mut self,
        f: impl FnOnce(&mut Self) -> candle_core::Result<()>,
    ) -> Result<StepTiming, BackendError> {
        let e = |e: candle_core::Error| BackendError::from_candle(&e);
        #[cfg(feature = "cuda")]
        let events = cuda_timer::start(&self.device).map_err(e)?;
        let t0 = Instant::now();
        f(self).map_err(e)?;
        #[cfg(feature = "cuda")]
        let events = cuda_timer::stop(&self.device, events).map_err(e)?;
        self.device.synchronize().map_err(e)?;
        let wall_s = t0.elapsed().as_secs_f64();
        #[cfg(feature = "cuda")]
        let device_s = cuda_timer::elapsed_s(events).map_err(e)?;
        #[cfg(not(feature = "cuda"))]
        let device_s = None;
        Ok(StepTiming { wall_s, device_s })
    }
}

/// `VarBuilder` takes a `Box<dyn SimpleBackend>`; this lets the backend keep a handle on the
/// seeded weights to save them later.
struct ArcWeights(std::sync::Arc<SeededWeights>);

impl SimpleBackend for ArcWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0.get(s, name, h, dtype, dev)
    }
    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.get_unchecked(name, dtype, dev)
    }
    fn contains_tensor(&self, name: &str) -> bool {
        self.0.contains_tensor(name)
    }
}

impl Backend for CandleBackend {
    fn is_accelerator(&self) -> bool {
        self.device.is_cuda()
    }
    fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: "candle".into(),
            device: device_name(&self.device),
            driver: None,
            dtype: self.spec.precision.name().into(),
            model: self.spec.model.name.clone(),
            config_hash: self.spec.model.config_hash(),
            weights: self.spec.weights.describe(),
        }
    }
    fn vocab_size(&self) -> usize {
        self.spec.model.dims.vocab_size
    }
    fn prepare(&mut self, shape: PointShape) -> Result<(), BackendError> {
        let max_pos = self.spec.model.dims.max_position_embeddings;
        let need = (shape.input_tokens + shape.max_output) as usize;
        if need > max_pos {
            return Err(BackendError::Model(format!(
                "input + output = {need} tokens exceeds the model's {max_pos} positions"
            )));
        }
        self.generation = Some(Generation {
            pos: 0,
            next: None,
            max_pos,
        });
        Ok(())
    }
    fn prefill(&mut self, prompts: &PromptBatch) -> Result<StepTiming, BackendError> {
        let ids = Tensor::from_vec(
            prompts.ids.clone(),
            (prompts.batch_size, prompts.input_tokens),
            &self.device,
        )
        .map_err(|e| BackendError::from_candle(&e))?;
        self.device
            .synchronize()
            .map_err(|e| BackendError::from_candle(&e))?;
        let n = prompts.input_tokens;
        let timing = self.timed(|s| {
            let logits = s.forward_logits(&ids, 0)?;
            let next = logits.argmax_keepdim(D::Minus1)?;
            if let Some(g) = s.generation.as_mut() {
                g.next = Some(next);
            }
            Ok(())
        })?;
        match self.generation.as_mut() {
            Some(g) => g.pos = n,
            None => return Err(BackendError::Model("prefill before prepare".into())),
        }
        Ok(timing)
    }
    fn decode_step(&mut self) -> Result<StepTiming, BackendError> {
        let (next, pos) = match &self.generation {
            Some(Generation {
                next: Some(next),
                pos,
                max_pos,
            }) if pos < max_pos => (next.clone(), *pos),
            _ => {
                return Err(BackendError::Model(
                    "decode step before prefill, or past the model's positions".into(),
                ));
            }
        };
        let timing = self.timed(|s| {
            let logits = s.forward_logits(&next, pos)?;
            let next = logits.argmax_keepdim(D::Minus1)?;
            if let Some(g) = s.generation.as_mut() {
                g.next = Some(next);
                g.pos += 1;
            }
            Ok(())
        })?;
        Ok(timing)
    }
    fn synchronize(&mut self) -> Result<(), BackendError> {
        self.device
            .synchronize()
            .map_err(|e| BackendError::from_candle(&e))
    }
    fn forward_calls(&self) -> u64 {
        self.forward_calls
    }
}

/// CUDA events on candle's stream (`candle_core::cuda::cudarc`, cudarc 0.19 API:
/// `CudaStream::record_event`, `CudaEvent::elapsed_ms`).
#[cfg(feature = "cuda")]
mod cuda_timer {
    use candle_core::Device;
    use candle_core::cuda::cudarc::driver::{CudaEvent, sys::CUevent_flags};

    pub struct Started(Option<CudaEvent>);
    pub struct Stopped(Option<(CudaEvent, CudaEvent)>);

    fn err(e: impl std::fmt::Debug) -> candle_core::Error {
        candle_core::Error::Msg(format!("CUDA event: {e:?}"))
    }

    pub fn start(device: &Device) -> candle_core::Result<Started> {
        match device {
            Device::Cuda(d) => Ok(Started(Some(
                d.cuda_stream()
                    .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                    .map_err(err)?,
            ))),
            _ => Ok(Started(None)),
        }
    }

    pub fn stop(device: &Device, s: Started) -> candle_core::Result<Stopped> {
        match (device, s.0) {
            (Device::Cuda(d), Some(start)) => {
                let end = d
                    .cuda_stream()
                    .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                    .map_err(err)?;
                Ok(Stopped(Some((start, end))))
            }
            _ => Ok(Stopped(None)),
        }
    }

    /// Seconds between the events (waits for the end event).
    pub fn elapsed_s(s: Stopped) -> candle_core::Result<Option<f64>> {
        match s.0 {
            Some((start, end)) => Ok(Some(f64::from(start.elapsed_ms(&end).map_err(err)?) / 1e3)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_dtype_and_device() {
        assert_eq!(Precision::parse("BF16").unwrap(), Precision::Bf16);
        assert!(
            Precision::parse("f8")
                .unwrap_err()
                .to_string()
                .contains("--dtype")
        );
        assert_eq!(
            DeviceChoice::parse("cuda:1").unwrap(),
            DeviceChoice::Cuda(1)
        );
        assert_eq!(DeviceChoice::parse("cpu").unwrap(), DeviceChoice::Cpu);
        assert!(DeviceChoice::parse("tpu").is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_how_to_rebuild() {
        let e = open_device(DeviceChoice::Cuda(0)).unwrap_err().to_string();
        assert!(e.contains("--features cuda"), "{e}");
    }

    #[test]
    fn cpu_runs_every_dtype() {
        for p in [Precision::F32, Precision::F16, Precision::Bf16] {
            probe_dtype(&Device::Cpu, p).unwrap();
        }
    }
}
