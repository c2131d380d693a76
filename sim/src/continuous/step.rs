//! Step-time models behind one trait (SERVING.md "Step-time model").
//!
//! An iteration is described by [`StepBatch`]: prefill tokens Σp (sum of chunks), their cached
//! context Σkv_p, the number of prefill chunks, the number of decode requests n_d and the sum,
//! min and max of the decode contexts (the KV entries a decode token attends to, itself
//! included). Two models implement [`StepModel`]: [`super::TableStepModel`] (per-layer tables)
//! and [`FittedStepModel`] (the fitted decode-only and mixed forms of `fit::steptime`).
//! [`fit_from_tables`] learns the fitted model from a table model on the KV-feasible region:
//! batches whose contexts fit in the KV cache and whose sizes the engine limits allow.

use fit::steptime::{StepFeatures, StepTimeCoefficients, fit_step_time};
use rand::{RngExt, SeedableRng};
use serde::Serialize;

use super::ContinuousError;
use super::scheduler::EngineConfig;

/// Samples of each form drawn by [`fit_from_tables`].
pub const FIT_SAMPLES_PER_FORM: usize = 4000;

/// Largest context the LLMServingSim attention grid covers (tokens); sampling stays inside it.
pub const TABLE_MAX_CONTEXT: u32 = 16_384;

/// One engine iteration, as the step model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
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

/// The fitted step model (SERVING.md "Fitted").
#[derive(Debug, Clone)]
pub struct FittedStepModel {
    /// Its coefficients (the coefficients file's `[step_time]` section).
    pub coefficients: StepTimeCoefficients,
}

impl StepModel for FittedStepModel {
    fn step_time_s(&self, batch: &StepBatch) -> f64 {
        self.coefficients.predict_s(&batch.features())
    }
    fn describe(&self) -> String {
        format!(
            "fitted decode-only/mixed linear forms (from {})",
            self.coefficients.source
        )
    }
}

/// Split `total` into `n` non-negative parts around `mean` with a random spread, each at most
/// `cap`; returns (sum, min, max).
fn draw_contexts<R: rand::Rng>(rng: &mut R, n: u32, mean: u32, cap: u32) -> (u64, u32, u32) {
    let mut sum = 0u64;
    let (mut lo, mut hi) = (u32::MAX, 0u32);
    let spread: f64 = rng.random_range(0.0..0.9);
    for _ in 0..n {
        let f: f64 = 1.0 + spread * rng.random_range(-1.0..1.0);
        let c = ((f64::from(mean) * f).round() as u32).clamp(1, cap);
        sum += u64::from(c);
        lo = lo.min(c);
        hi = hi.max(c);
    }
    (sum, lo, hi)
}

/// Learn the fitted model from `model` (normally a [`super::TableStepModel`]) on the
/// configurations `engine` can run: n_d ≤ `max_num_seqs`, T ≤ the token budget, all contexts
/// (decode contexts plus the prefill chunk and its cached context) within the KV cache
/// (`kv_blocks × block_size` tokens) and within the tables' range. Deterministic for a seed.
pub fn fit_from_tables(
    model: &dyn StepModel,
    source: &str,
    engine: &EngineConfig,
    seed: u64,
) -> Result<StepTimeCoefficients, ContinuousError> {
    engine.validate()?;
    let cap_tokens = u64::from(engine.kv_blocks) * u64::from(engine.block_size);
    let cap = cap_tokens.min(u64::from(u32::MAX)) as u32;
    let max_ctx = TABLE_MAX_CONTEXT.min(cap);
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut samples = Vec::with_capacity(2 * FIT_SAMPLES_PER_FORM);
    let log_uniform = |rng: &mut rand_xoshiro::Xoshiro256PlusPlus, hi: u32| -> u32 {
        let x: f64 = rng.random_range(0.0..=(f64::from(hi)).ln());
        (x.exp().round() as u32).clamp(1, hi)
    };
    // Decode-only steps.
    let max_seqs = engine.max_num_seqs.min(engine.max_batched_tokens);
    while samples.len() < FIT_SAMPLES_PER_FORM {
        let n = log_uniform(&mut rng, max_seqs);
        let mean_cap = (cap / n).min(max_ctx);
        if mean_cap < 1 {
            continue;
        }
        let mean = log_uniform(&mut rng, mean_cap);
        let (sum, lo, hi) = draw_contexts(&mut rng, n, mean, max_ctx);
        if sum > cap_tokens {
            continue;
        }
        let b = StepBatch {
            n_decode: n,
            decode_context_sum: sum,
            decode_context_min: lo,
            decode_context_max: hi,
            ..Default::default()
        };
        samples.push((b.features(), model.step_time_s(&b)));
    }
    // Mixed steps: one prefill chunk plus decodes.
    let mut mixed = 0;
    while mixed < FIT_SAMPLES_PER_FORM {
        let p = log_uniform(&mut rng, engine.max_batched_tokens);
        let room_seqs = (engine.max_batched_tokens - p).min(engine.max_num_seqs - 1);
        let n = if room_seqs == 0 || rng.random_bool(0.2) {
            0
        } else {
            log_uniform(&mut rng, room_seqs)
        };
        let kvp_room = max_ctx.saturating_sub(p);
        let kvp = if kvp_room == 0 || rng.random_bool(0.3) {
            0
        } else {
            log_uniform(&mut rng, kvp_room)
        };
        let used = u64::from(p) + u64::from(kvp);
        if used > cap_tokens {
            continue;
        }
        let mut b = StepBatch::default();
        b.push_prefill(p, kvp);
        if n > 0 {
            let left = ((cap_tokens - used) / u64::from(n)).min(u64::from(max_ctx)) as u32;
            if left < 1 {
                continue;
            }
            let mean = log_uniform(&mut rng, left);
            let (sum, lo, hi) = draw_contexts(&mut rng, n, mean, max_ctx);
            if used + sum > cap_tokens {
                continue;
            }
            b.n_decode = n;
            b.decode_context_sum = sum;
            b.decode_context_min = lo;
            b.decode_context_max = hi;
        }
        samples.push((b.features(), model.step_time_s(&b)));
        mixed += 1;
    }
    Ok(fit_step_time(source, cap_tokens, &samples)?)
}
