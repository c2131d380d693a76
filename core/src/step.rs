//! One engine iteration of continuous batching and the models that time it (docs/serving.md
//! "Step-time model").
//!
//! An iteration is described by [`StepBatch`]: prefill tokens Σp (sum of chunks), their cached
//! context Σkv_p, the number of prefill chunks, the number of decode requests n_d and the sum,
//! min and max of the decode contexts (the KV entries a decode token attends to, itself
//! included). A [`StepModel`] turns it into seconds: the per-layer tables
//! ([`crate::layers::TableStepModel`]) or the fitted linear forms ([`StepTimeCoefficients`],
//! the coefficients file's `[step_time]` section, fitted by `fit::steptime`):
//!
//! ```text
//! decode-only: t = c0 + c1·n_d + c2·(n_d − 128)⁺ + c3·Σctx
//! mixed:       t = c0 + c1·T   + c2·(T − 128)⁺   + c3·n_d + c4·Σctx + c5·Σp·Σkv_p
//! ```
//!
//! [`EngineConfig`] holds the engine limits the scheduler and the fit's feasible region share.

use serde::{Deserialize, Serialize};

use crate::error::CoreError;

/// Knee of the piecewise-linear terms, in decode requests (decode form) or tokens (mixed form).
pub const KNEE: f64 = 128.0;

/// One engine iteration, as the step model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StepBatch {
    /// Σp: prefill tokens in the step.
    pub prefill_tokens: u32,
    /// Σkv_p: cached context the prefill chunks attend to, summed over chunks.
    pub prefill_context: u64,
    /// Prefill chunks in the step.
    pub prefill_chunks: u32,
    /// n_d: decode requests (one token each).
    pub n_decode: u32,
    /// Sum of decode contexts.
    pub decode_context_sum: u64,
    /// Smallest decode context (0 when n_d = 0).
    pub decode_context_min: u32,
    /// Largest decode context (0 when n_d = 0).
    pub decode_context_max: u32,
}

impl StepBatch {
    /// T: tokens in the step.
    pub fn tokens(&self) -> u32 {
        self.prefill_tokens + self.n_decode
    }

    /// S: sequences in the step (each samples, or discards, one token).
    pub fn sequences(&self) -> u32 {
        self.prefill_chunks + self.n_decode
    }

    /// Mean decode context (0 when there is no decode).
    pub fn mean_decode_context(&self) -> f64 {
        if self.n_decode == 0 {
            0.0
        } else {
            self.decode_context_sum as f64 / f64::from(self.n_decode)
        }
    }

    /// The features of the fitted model.
    pub fn features(&self) -> StepFeatures {
        StepFeatures {
            n_decode: f64::from(self.n_decode),
            decode_context_sum: self.decode_context_sum as f64,
            prefill_tokens: f64::from(self.prefill_tokens),
            prefill_context_sum: self.prefill_context as f64,
        }
    }

    /// The prefill of a whole batch in one step: `batch` prompts of `tokens` tokens in total,
    /// attended as one chunk without cache (each prompt samples its first token).
    pub fn prefill_of_batch(tokens: f64, batch: f64) -> Self {
        Self {
            prefill_tokens: tokens as u32,
            prefill_chunks: batch as u32,
            ..Self::default()
        }
    }

    /// A decode step of `batch` requests with `context` tokens of context each.
    pub fn uniform_decode(batch: f64, context: f64) -> Self {
        let (n, ctx) = (batch as u32, context as u32);
        Self {
            n_decode: n,
            decode_context_sum: u64::from(n) * u64::from(ctx),
            decode_context_min: ctx,
            decode_context_max: ctx,
            ..Self::default()
        }
    }

    /// Add a decode request with context `ctx`.
    pub fn push_decode(&mut self, ctx: u32) {
        if self.n_decode == 0 {
            self.decode_context_min = ctx;
            self.decode_context_max = ctx;
        } else {
            self.decode_context_min = self.decode_context_min.min(ctx);
            self.decode_context_max = self.decode_context_max.max(ctx);
        }
        self.n_decode += 1;
        self.decode_context_sum += u64::from(ctx);
    }

    /// Add a prefill chunk of `tokens` on `cached` tokens of context.
    pub fn push_prefill(&mut self, tokens: u32, cached: u32) {
        self.prefill_chunks += 1;
        self.prefill_tokens += tokens;
        self.prefill_context += u64::from(cached);
    }
}

/// A step-time model: seconds for one engine iteration.
pub trait StepModel {
    /// Duration of the iteration in seconds.
    fn step_time_s(&self, batch: &StepBatch) -> f64;
    /// Duration of the iteration when the engine pads it to `padded_tokens` tokens (data
    /// parallelism in lockstep, docs/serving.md "Several GPUs": every rank runs the group's
    /// largest token count; attention sees only the real requests). Models that cannot tell
    /// padding apart ignore it.
    fn padded_step_time_s(&self, batch: &StepBatch, padded_tokens: u32) -> f64 {
        let _ = padded_tokens;
        self.step_time_s(batch)
    }
    /// Short description for reports.
    fn describe(&self) -> String;
}

impl<F: Fn(&StepBatch) -> f64> StepModel for F {
    fn step_time_s(&self, batch: &StepBatch) -> f64 {
        self(batch)
    }
    fn describe(&self) -> String {
        "closure".into()
    }
}

/// What a step-time model needs to know about one iteration.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct StepFeatures {
    /// Decode requests in the step (one token each).
    pub n_decode: f64,
    /// Sum of the decode requests' contexts (tokens).
    pub decode_context_sum: f64,
    /// Prefill tokens in the step (sum of the chunks).
    pub prefill_tokens: f64,
    /// Sum of the cached context the prefill chunks attend to (tokens).
    pub prefill_context_sum: f64,
}

impl StepFeatures {
    /// `true` when the step carries no prefill chunk.
    pub fn is_decode_only(&self) -> bool {
        self.prefill_tokens <= 0.0
    }

    pub fn decode_row(&self) -> [f64; 4] {
        [
            1.0,
            self.n_decode,
            (self.n_decode - KNEE).max(0.0),
            self.decode_context_sum,
        ]
    }

    pub fn mixed_row(&self) -> [f64; 6] {
        let t = self.prefill_tokens + self.n_decode;
        [
            1.0,
            t,
            (t - KNEE).max(0.0),
            self.n_decode,
            self.decode_context_sum,
            self.prefill_tokens * self.prefill_context_sum,
        ]
    }

    pub fn is_valid(&self) -> bool {
        [
            self.n_decode,
            self.decode_context_sum,
            self.prefill_tokens,
            self.prefill_context_sum,
        ]
        .iter()
        .all(|v| v.is_finite() && *v >= 0.0)
    }
}

/// Decode-only form: `intercept_s + per_decode_s·n_d + per_decode_above_knee_s·(n_d − 128)⁺ +
/// per_context_token_s·Σctx`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DecodeStepCoefficients {
    /// c0, seconds.
    pub intercept_s: f64,
    /// c1, seconds per decode request.
    pub per_decode_s: f64,
    /// c2, seconds per decode request above 128.
    pub per_decode_above_knee_s: f64,
    /// c3, seconds per context token summed over the decodes.
    pub per_context_token_s: f64,
}

/// Mixed form (steps with a prefill chunk): `intercept_s + per_token_s·T +
/// per_token_above_knee_s·(T − 128)⁺ + per_decode_s·n_d + per_decode_context_token_s·Σctx +
/// per_prefill_token_context_token_s·Σp·Σkv_p`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MixedStepCoefficients {
    /// c0, seconds.
    pub intercept_s: f64,
    /// c1, seconds per token in the step.
    pub per_token_s: f64,
    /// c2, seconds per token above 128.
    pub per_token_above_knee_s: f64,
    /// c3, seconds per decode request.
    pub per_decode_s: f64,
    /// c4, seconds per decode context token.
    pub per_decode_context_token_s: f64,
    /// c5, seconds per (prefill token × cached prefill context token).
    pub per_prefill_token_context_token_s: f64,
}

/// Quality of one form on its training samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FormQuality {
    /// Samples fitted.
    pub n: usize,
    /// Coefficient of determination.
    pub r2: f64,
    /// Mean absolute percentage error, percent.
    pub mape_pct: f64,
    /// Bias of the summed time: (Σ predicted − Σ actual)/Σ actual, percent.
    pub sum_bias_pct: f64,
}

/// Error of the fitted model on the steps a replay actually ran (docs/serving.md "Fitted": the
/// error that matters, beside the training error).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayCheck {
    /// What was replayed (trace and engine settings).
    pub replay: String,
    /// Steps compared.
    pub steps: usize,
    /// Mean absolute percentage error per step, percent.
    pub mape_pct: f64,
    /// (Σ fitted − Σ reference)/Σ reference over all steps, percent.
    pub sum_bias_pct: f64,
}

/// The optional `[step_time]` section of the coefficients file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTimeCoefficients {
    /// Where the samples came from (e.g. per-layer tables directory, profile).
    pub source: String,
    /// KV cache (blocks × block size, tokens) the feasible region was bounded by.
    pub kv_capacity_tokens: u64,
    /// Decode-only steps.
    pub decode: DecodeStepCoefficients,
    /// Steps that carry a prefill chunk.
    pub mixed: MixedStepCoefficients,
    /// Training quality of the decode form.
    pub decode_fit: FormQuality,
    /// Training quality of the mixed form.
    pub mixed_fit: FormQuality,
    /// Error on a replay's own steps, when checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_check: Option<ReplayCheck>,
}

impl StepTimeCoefficients {
    /// Predicted step time in seconds (0 for an empty step).
    pub fn predict_s(&self, f: &StepFeatures) -> f64 {
        if f.prefill_tokens <= 0.0 && f.n_decode <= 0.0 {
            return 0.0;
        }
        if f.is_decode_only() {
            let c = &self.decode;
            let r = f.decode_row();
            c.intercept_s * r[0]
                + c.per_decode_s * r[1]
                + c.per_decode_above_knee_s * r[2]
                + c.per_context_token_s * r[3]
        } else {
            let c = &self.mixed;
            let r = f.mixed_row();
            c.intercept_s * r[0]
                + c.per_token_s * r[1]
                + c.per_token_above_knee_s * r[2]
                + c.per_decode_s * r[3]
                + c.per_decode_context_token_s * r[4]
                + c.per_prefill_token_context_token_s * r[5]
        }
    }
}

impl StepModel for StepTimeCoefficients {
    fn step_time_s(&self, batch: &StepBatch) -> f64 {
        self.predict_s(&batch.features())
    }
    fn describe(&self) -> String {
        format!(
            "fitted decode-only/mixed linear forms (from {})",
            self.source
        )
    }
}

/// Engine settings (docs/serving.md "Engine state and limits").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    /// Most requests running at once.
    pub max_num_seqs: u32,
    /// Token budget per iteration.
    pub max_batched_tokens: u32,
    /// KV cache blocks.
    pub kv_blocks: u32,
    /// Tokens per block.
    pub block_size: u32,
    /// Re-use cached blocks (own blocks on resume, shared prefixes).
    pub prefix_caching: bool,
    /// The scheduler sees arrivals one step late.
    pub async_scheduling: bool,
    /// Host overhead added to every iteration, seconds.
    pub iteration_overhead_s: f64,
}

/// vLLM's default tokens per KV block.
pub const DEFAULT_BLOCK_SIZE: u32 = 16;

impl EngineConfig {
    /// vLLM-like defaults for the given cache size: 256 sequences, 2048 tokens, blocks of 16,
    /// prefix caching on, synchronous scheduling, no overhead.
    pub fn with_kv_blocks(kv_blocks: u32) -> Self {
        Self {
            max_num_seqs: 256,
            max_batched_tokens: 2048,
            kv_blocks,
            block_size: DEFAULT_BLOCK_SIZE,
            prefix_caching: true,
            async_scheduling: false,
            iteration_overhead_s: 0.0,
        }
    }

    /// Check every limit.
    pub fn validate(&self) -> Result<(), CoreError> {
        let bad = |flag, need, got: String, fix| {
            Err(CoreError::Setting {
                flag,
                need,
                got,
                fix,
            })
        };
        if self.max_num_seqs == 0 {
            return bad(
                "max-num-seqs",
                "at least 1",
                "0".into(),
                "e.g. --max-num-seqs 256",
            );
        }
        if self.max_batched_tokens == 0 {
            return bad(
                "max-batched-tokens",
                "at least 1",
                "0".into(),
                "a zero token budget never schedules anything; e.g. --max-batched-tokens 2048",
            );
        }
        if self.kv_blocks == 0 {
            return bad(
                "kv-blocks",
                "at least 1",
                "0".into(),
                "give the engine's \"# GPU blocks\" start-up figure",
            );
        }
        if self.block_size == 0 {
            return bad("block-size", "at least 1", "0".into(), "vLLM uses 16");
        }
        if !(self.iteration_overhead_s.is_finite() && self.iteration_overhead_s >= 0.0) {
            return bad(
                "iteration-overhead-s",
                "a finite number ≥ 0",
                self.iteration_overhead_s.to_string(),
                "use 0 for vLLM 0.19 with CUDA graphs",
            );
        }
        Ok(())
    }

    /// KV blocks for `tokens` tokens.
    pub fn blocks_for(&self, tokens: u64) -> u64 {
        tokens.div_ceil(u64::from(self.block_size))
    }
}
