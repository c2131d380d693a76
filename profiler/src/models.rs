//! Model specifications: presets, `config.json` parsing, the tensor list a model loads, its
//! memory and a rough cost model.
//!
//! Two architectures of candle-transformers 0.11 are driven: the Llama family
//! (`candle_transformers::models::llama`, after Touvron et al. 2023 and Hugging Face's
//! `modeling_llama.py`) and Qwen2 (`candle_transformers::models::qwen2`). Both KV caches accept
//! a batch of equal-length sequences, which is what a grid point runs, so the models are used
//! as candle ships them (no fork).
//!
//! Memory (per sequence, per KV entry): `2 · layers · kv_heads · head_dim · bytes(dtype)`
//! (keys and values). The transient activations of a prefill are bounded by the attention
//! scores (`batch · heads · n_in · S` in f32, twice: scores and softmax — candle's Llama
//! computes attention in f32), the GQA-repeated keys and values in f32, and the MLP
//! intermediate (`3 · batch · n_in · intermediate`). See [`ModelSpec::point_bytes`].

use crate::backend::MemoryModel;
use crate::error::ProfileError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Bytes per f32 (attention is computed in f32 by candle's Llama and Qwen2).
const F32_BYTES: u64 = 4;

/// FNV-1a 64-bit hash, lowercase hex: stable across Rust versions (unlike `DefaultHasher`).
pub fn fnv1a_hex(bytes: &[u8]) -> String {
    format!("{:016x}", fnv1a(bytes))
}

/// FNV-1a 64-bit.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// Model architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Llama,
    Qwen2,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }
}

/// Shape-relevant configuration of a decoder-only transformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dims {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub max_position_embeddings: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
}

impl Dims {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// A model: architecture, dimensions, name and (for a weights directory) the raw config.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    pub arch: Arch,
    pub dims: Dims,
    /// The `config.json` of a weights directory (kept so Llama-3 rope scaling is honoured).
    pub raw_config: Option<serde_json::Value>,
}

/// Preset names, in the order `--help` lists them.
pub const PRESETS: &[&str] = &[
    "tiny",
    "tinyllama-1.1b",
    "llama-2-7b",
    "llama-3-8b",
    "qwen2-tiny",
    "qwen2-0.5b",
];

/// Positional on purpose: each preset line reads like the published config table.
#[allow(clippy::too_many_arguments)]
fn llama_dims(
    vocab: usize,
    hidden: usize,
    inter: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    max_pos: usize,
    rope_theta: f64,
) -> Dims {
    Dims {
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: inter,
        num_hidden_layers: layers,
        num_attention_heads: heads,
        num_key_value_heads: kv_heads,
        max_position_embeddings: max_pos,
        rope_theta,
        rms_norm_eps: 1e-5,
        tie_word_embeddings: false,
    }
}

impl ModelSpec {
    /// A preset by name. `tiny` is a small random-weight Llama that runs fast on a CPU (the
    /// default pipeline's model); the others copy the published `config.json` of
    /// TinyLlama-1.1B-Chat-v1.0, Llama-2-7b-hf, Meta-Llama-3-8B and Qwen2-0.5B.
    pub fn preset(name: &str) -> Result<Self, ProfileError> {
        let (arch, dims) = match name {
            // 4 layers, hidden 256, GQA 8/4 heads, vocab 4096: ≈ 6.3 M parameters.
            "tiny" => (
                Arch::Llama,
                llama_dims(4096, 256, 704, 4, 8, 4, 2048, 10_000.0),
            ),
            "tinyllama-1.1b" => (
                Arch::Llama,
                llama_dims(32_000, 2048, 5632, 22, 32, 4, 2048, 10_000.0),
            ),
            "llama-2-7b" => (
                Arch::Llama,
                llama_dims(32_000, 4096, 11_008, 32, 32, 32, 4096, 10_000.0),
            ),
            "llama-3-8b" => (
                Arch::Llama,
                llama_dims(128_256, 4096, 14_336, 32, 32, 8, 8192, 500_000.0),
            ),
            "qwen2-tiny" => (
                Arch::Qwen2,
                Dims {
                    rms_norm_eps: 1e-6,
                    tie_word_embeddings: true,
                    ..llama_dims(4096, 256, 704, 4, 8, 2, 2048, 1_000_000.0)
                },
            ),
            "qwen2-0.5b" => (
                Arch::Qwen2,
                Dims {
                    rms_norm_eps: 1e-6,
                    tie_word_embeddings: true,
                    ..llama_dims(151_936, 896, 4864, 24, 14, 2, 32_768, 1_000_000.0)
                },
            ),
            _ => {
                return Err(ProfileError::UnknownModel {
                    name: name.to_string(),
                    known: PRESETS.join(", "),
                });
            }
        };
        Ok(Self {
            name: name.to_string(),
            arch,
            dims,
            raw_config: None,
        })
    }

    /// Read `DIR/config.json` (Hugging Face format, `model_type` llama, mistral-free llama
    /// variants, or qwen2).
    pub fn from_config_json(dir: &Path) -> Result<Self, ProfileError> {
        let path = dir.join("config.json");
        let werr = |msg: String| ProfileError::Weights {
            path: path.clone(),
            msg,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            werr(format!(
                "cannot read ({e}); --weights must name a directory with config.json and *.safetensors"
            ))
        })?;
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| werr(format!("not valid JSON: {e}")))?;
        let model_type = v.get("model_type").and_then(|m| m.as_str()).unwrap_or("");
        let arch = match model_type {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            other => {
                return Err(werr(format!(
                    "model_type `{other}` is not supported: use a llama or qwen2 checkpoint"
                )));
            }
        };
        let get = |k: &str| -> Result<usize, ProfileError> {
            v.get(k)
                .and_then(serde_json::Value::as_u64)
                .map(|x| x as usize)
                .ok_or_else(|| werr(format!("missing integer field `{k}`")))
        };
        let heads = get("num_attention_heads")?;
        let dims = Dims {
            vocab_size: get("vocab_size")?,
            hidden_size: get("hidden_size")?,
            intermediate_size: get("intermediate_size")?,
            num_hidden_layers: get("num_hidden_layers")?,
            num_attention_heads: heads,
            num_key_value_heads: get("num_key_value_heads").unwrap_or(heads),
            max_position_embeddings: get("max_position_embeddings")?,
            rope_theta: v
                .get("rope_theta")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(10_000.0),
            rms_norm_eps: v
                .get("rms_norm_eps")
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(1e-6),
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
        };
        if dims.num_attention_heads == 0
            || dims.hidden_size % dims.num_attention_heads != 0
            || dims.num_key_value_heads == 0
            || dims.num_attention_heads % dims.num_key_value_heads != 0
        {
            return Err(werr(
                "hidden_size / num_attention_heads / num_key_value_heads are inconsistent".into(),
            ));
        }
        Ok(Self {
            name: format!("{model_type}@{}", dir.display()),
            arch,
            dims,
            raw_config: Some(v),
        })
    }

    /// Stable hash of the architecture and dimensions.
    pub fn config_hash(&self) -> String {
        let canon = serde_json::to_string(&(&self.arch, &self.dims)).unwrap_or_default();
        fnv1a_hex(canon.as_bytes())
    }

    /// Every tensor the candle model loads, with its shape, in load order.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let d = &self.dims;
        let (h, v, i) = (d.hidden_size, d.vocab_size, d.intermediate_size);
        let kv = d.num_key_value_heads * d.head_dim();
        let mut out = vec![("model.embed_tokens.weight".to_string(), vec![v, h])];
        for l in 0..d.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let mut push = |name: &str, shape: Vec<usize>| out.push((format!("{p}.{name}"), shape));
            push("self_attn.q_proj.weight", vec![h, h]);
            push("self_attn.k_proj.weight", vec![kv, h]);
            push("self_attn.v_proj.weight", vec![kv, h]);
            if self.arch == Arch::Qwen2 {
                push("self_attn.q_proj.bias", vec![h]);
                push("self_attn.k_proj.bias", vec![kv]);
                push("self_attn.v_proj.bias", vec![kv]);
            }
            push("self_attn.o_proj.weight", vec![h, h]);
            push("mlp.gate_proj.weight", vec![i, h]);
            push("mlp.up_proj.weight", vec![i, h]);
            push("mlp.down_proj.weight", vec![h, i]);
            push("input_layernorm.weight", vec![h]);
            push("post_attention_layernorm.weight", vec![h]);
        }
        out.push(("model.norm.weight".to_string(), vec![h]));
        if !d.tie_word_embeddings {
            out.push(("lm_head.weight".to_string(), vec![v, h]));
        }
        out
    }

    /// Number of parameters.
    pub fn parameters(&self) -> u64 {
        self.expected_tensors()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>() as u64)
            .sum()
    }

    /// Bytes of one KV entry of one sequence: keys and values of every layer.
    pub fn kv_bytes_per_token(&self, dtype_bytes: u64) -> u64 {
        let d = &self.dims;
        2 * (d.num_hidden_layers * d.num_key_value_heads * d.head_dim()) as u64 * dtype_bytes
    }

    /// Floating-point operations of one step: `batch` sequences, `tokens` new tokens each,
    /// `context` KV entries before the step (2 flops per multiply-add).
    pub fn step_flops(&self, batch: u64, tokens: u64, context: u64) -> f64 {
        let d = &self.dims;
        let (h, i, l) = (
            d.hidden_size as f64,
            d.intermediate_size as f64,
            d.num_hidden_layers as f64,
        );
        let kv = (d.num_key_value_heads * d.head_dim()) as f64;
        let per_token_linear = l * (2.0 * h * h + 2.0 * h * kv + 3.0 * h * i);
        let n = (batch * tokens) as f64;
        // scores and weighted sum: 2 matmuls of (tokens × (context+tokens)) per head row
        let attn = l * 2.0 * h * (context as f64 + tokens as f64) * n;
        // logits of the last token only (candle's Llama and Qwen2 slice before lm_head)
        let head = h * d.vocab_size as f64 * batch as f64;
        2.0 * (per_token_linear * n + attn + head)
    }
}

/// The memory of a model at a dtype.
#[derive(Debug, Clone)]
pub struct SizedModel<'a> {
    pub spec: &'a ModelSpec,
    pub dtype_bytes: u64,
}

impl MemoryModel for SizedModel<'_> {
    fn weights_bytes(&self) -> u64 {
        self.spec.parameters() * self.dtype_bytes
    }
    fn point_bytes(&self, batch: u64, input_tokens: u64, seq_tokens: u64) -> u64 {
        let d = &self.spec.dims;
        // KV cache; candle concatenates a new tensor each step, so the old and new copies of
        // one layer coexist for a moment: + 1 layer's worth.
        let kv_layer = 2
            * (d.num_key_value_heads * d.head_dim()) as u64
            * self.dtype_bytes
            * batch
            * seq_tokens;
        let kv = kv_layer * d.num_hidden_layers as u64 + kv_layer;
        // Prefill transients (one layer at a time): f32 scores + softmax, GQA-repeated K and V
        // in f32, the MLP intermediate (gate, up, product), the hidden states.
        let heads = d.num_attention_heads as u64;
        let scores = 2 * batch * heads * input_tokens * input_tokens * F32_BYTES;
        let kv_rep = 2 * batch * heads * d.head_dim() as u64 * seq_tokens * F32_BYTES;
        let mlp = 3 * batch * input_tokens * d.intermediate_size as u64 * self.dtype_bytes;
        let hidden = 4 * batch * input_tokens * d.hidden_size as u64 * F32_BYTES;
        let logits = batch * d.vocab_size as u64 * F32_BYTES;
        kv + scores + kv_rep + mlp + hidden + logits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_published_vectors() {
        // Test vectors from the FNV reference (draft-eastlake-fnv): "" and "a".
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn llama_2_7b_has_its_published_parameter_count() {
        // Llama-2-7b: 6,738,415,616 parameters (the Hugging Face checkpoint's total).
        let m = ModelSpec::preset("llama-2-7b").unwrap();
        assert_eq!(m.parameters(), 6_738_415_616);
        // KV cache: 2 · 32 layers · 4096 · 2 bytes = 512 KiB per token in f16.
        assert_eq!(m.kv_bytes_per_token(2), 524_288);
    }

    #[test]
    fn llama_3_8b_and_tinyllama_parameter_counts() {
        // Meta-Llama-3-8B: 8,030,261,248; TinyLlama-1.1B: 1,100,048,384 (published totals).
        assert_eq!(
            ModelSpec::preset("llama-3-8b").unwrap().parameters(),
            8_030_261_248
        );
        assert_eq!(
            ModelSpec::preset("tinyllama-1.1b").unwrap().parameters(),
            1_100_048_384
        );
        // Qwen2-0.5B: 494,032,768 parameters (tied embeddings).
        assert_eq!(
            ModelSpec::preset("qwen2-0.5b").unwrap().parameters(),
            494_032_768
        );
    }

    #[test]
    fn unknown_preset_is_a_one_line_error_listing_the_choices() {
        let e = ModelSpec::preset("gpt-5").unwrap_err().to_string();
        assert!(e.contains("unknown model `gpt-5`") && e.contains("tiny"));
        assert!(!e.contains('\n'));
    }

    #[test]
    fn config_json_round_trip_and_bad_type() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"model_type":"llama","vocab_size":100,"hidden_size":32,"intermediate_size":64,
               "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
               "max_position_embeddings":128,"rms_norm_eps":1e-5}"#,
        )
        .unwrap();
        let m = ModelSpec::from_config_json(dir.path()).unwrap();
        assert_eq!(m.arch, Arch::Llama);
        assert_eq!(m.dims.head_dim(), 8);
        assert_eq!(m.dims.rope_theta, 10_000.0);
        std::fs::write(dir.path().join("config.json"), r#"{"model_type":"gpt2"}"#).unwrap();
        let e = ModelSpec::from_config_json(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("gpt2") && e.contains("config.json"), "{e}");
    }
}
