//! The `Backend` trait: what the measurement loop drives.
//!
//! A backend serves one grid point at a time: [`Backend::prepare`] sets up the shape (fresh KV
//! cache, nothing timed), [`Backend::prefill`] runs the whole prompt batch (step 0, which yields
//! the first token) and [`Backend::decode_step`] runs one forced decode step for every sequence
//! of the batch (step k ≥ 1, no stop at end-of-sequence). Each call times itself — host clock
//! around the call with the device synchronised after it, and the device clock (CUDA events)
//! where there is one — and returns the [`StepTiming`]. This is the contract of the timings
//! table in docs/design.md ("Contracts": `wall_s`, `device_s`).
//!
//! [`Backend::forward_calls`] counts model forward passes, so tests can check that one grid
//! point costs one pass of `max_output` forwards per repetition, not one pass per output length.

use crate::error::BackendError;
use serde::{Deserialize, Serialize};

/// The time of one model step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepTiming {
    /// Host clock, seconds, the device synchronised after the step.
    pub wall_s: f64,
    /// Device clock (CUDA events on the model's stream), seconds; `None` where there is none.
    pub device_s: Option<f64>,
}

/// A batch of prompts: `batch_size` rows of `input_tokens` token ids, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptBatch {
    pub batch_size: usize,
    pub input_tokens: usize,
    pub ids: Vec<u32>,
}

/// The shape of one grid point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointShape {
    pub batch_size: u32,
    pub input_tokens: u32,
    /// Output tokens per sequence: one prefill then `max_output − 1` decode steps.
    pub max_output: u32,
}

/// Who the backend is, for the run metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// `candle` or `synthetic`.
    pub backend: String,
    /// Device in words: `cpu`, or the GPU's name.
    pub device: String,
    /// Driver / CUDA versions where present.
    pub driver: Option<String>,
    /// `f32`, `f16`, `bf16`.
    pub dtype: String,
    /// Model preset name, or the weights directory's model type.
    pub model: String,
    /// Stable hash (FNV-1a 64, hex) of the model's shape-relevant configuration.
    pub config_hash: String,
    /// `random(seed=N)` or the weights directory.
    pub weights: String,
}

/// Memory a backend needs, for the KV-cache capacity check (see `capacity`).
pub trait MemoryModel {
    /// Bytes of the weights.
    fn weights_bytes(&self) -> u64;
    /// Peak bytes of one grid point beyond the weights: KV cache for `batch` sequences of
    /// `seq_tokens` entries plus the transient activations of a prefill of `input_tokens`.
    fn point_bytes(&self, batch: u64, input_tokens: u64, seq_tokens: u64) -> u64;
}

/// A model the profiler can drive.
pub trait Backend {
    /// Metadata for the runs table.
    fn info(&self) -> BackendInfo;
    /// Token ids are drawn uniformly from `0..vocab_size()`.
    fn vocab_size(&self) -> usize;
    /// Set up a grid point: fresh KV cache, inputs allocated. Not timed.
    fn prepare(&mut self, shape: PointShape) -> Result<(), BackendError>;
    /// Step 0: the whole prompt batch through the model; yields the first token.
    fn prefill(&mut self, prompts: &PromptBatch) -> Result<StepTiming, BackendError>;
    /// Step k ≥ 1: one token per sequence through the model, appended to the KV cache.
    fn decode_step(&mut self) -> Result<StepTiming, BackendError>;
    /// Wait until the device has finished all queued work.
    fn synchronize(&mut self) -> Result<(), BackendError>;
    /// Model forward passes since construction.
    fn forward_calls(&self) -> u64;
    /// Whether the device is an accelerator whose clocks ramp up under load (a GPU): the
    /// runner then warms up until step times are steady and sizes repetitions from the spread.
    fn is_accelerator(&self) -> bool {
        false
    }
}
