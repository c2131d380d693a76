//! A synthetic backend whose step latency is a known linear model plus seeded noise.
//!
//! Model (the linear per-step structure the paper fits, Yang–Xu–Jiao 2024 Fig. 2, and
//! docs/models.md's `t1(b) = c0 + c1·b`, `t2(b) = d0 + d1·b`, extended by token terms):
//!
//! ```text
//! prefill(b, n_in)   = p0 + p_b·b + p_tok·b·n_in
//! decode(b, ctx)     = d0 + d_b·b + d_ctx·b·ctx          (ctx = KV entries before the step)
//! observed           = model · exp(σ·Z − σ²/2),  Z ~ N(0,1)   (mean-preserving lognormal noise)
//!                      × spike_factor with probability spike_prob (to exercise outlier labels)
//! ```
//!
//! With σ = 0 and no spikes the observed times equal the model exactly, so tests can recover
//! the coefficients by least squares. The clock is injectable: [`SyntheticClock::Modeled`]
//! reports the modeled time without waiting (tests, demos, dry runs), [`SyntheticClock::Sleep`]
//! sleeps for it and reports the host clock (to exercise kill-and-resume with real time).

use crate::backend::{Backend, BackendInfo, MemoryModel, PointShape, PromptBatch, StepTiming};
use crate::error::BackendError;
use rand::{RngExt, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Bytes per KV entry of the synthetic model's notional memory (for the capacity check).
const SYNTHETIC_KV_BYTES_PER_TOKEN: u64 = 64 * 1024;
/// Notional weight bytes of the synthetic model.
const SYNTHETIC_WEIGHTS_BYTES: u64 = 1 << 30;

/// Coefficients of the synthetic latency model, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinearLatency {
    pub prefill_base_s: f64,
    pub prefill_per_seq_s: f64,
    pub prefill_per_token_s: f64,
    pub decode_base_s: f64,
    pub decode_per_seq_s: f64,
    pub decode_per_context_token_s: f64,
}

impl Default for LinearLatency {
    /// Orders of magnitude of a 7B model on an A100 (paper Fig. 2: ≈ 20 ms per decode step at
    /// batch 1, growing slowly with batch), scaled so demos are quick to read.
    fn default() -> Self {
        Self {
            prefill_base_s: 0.015,
            prefill_per_seq_s: 0.001,
            prefill_per_token_s: 0.000_05,
            decode_base_s: 0.020,
            decode_per_seq_s: 0.000_4,
            decode_per_context_token_s: 0.000_000_5,
        }
    }
}

impl LinearLatency {
    /// Modeled prefill time, seconds.
    pub fn prefill_s(&self, batch: u32, input: u32) -> f64 {
        let (b, n) = (f64::from(batch), f64::from(input));
        self.prefill_base_s + self.prefill_per_seq_s * b + self.prefill_per_token_s * b * n
    }
    /// Modeled decode-step time, seconds, with `context` KV entries before the step.
    pub fn decode_s(&self, batch: u32, context: u32) -> f64 {
        let (b, c) = (f64::from(batch), f64::from(context));
        self.decode_base_s + self.decode_per_seq_s * b + self.decode_per_context_token_s * b * c
    }
    /// Modeled time of one whole pass (prefill + `max_output − 1` decode steps), seconds.
    pub fn pass_s(&self, shape: PointShape) -> f64 {
        let mut t = self.prefill_s(shape.batch_size, shape.input_tokens);
        for k in 1..shape.max_output {
            t += self.decode_s(shape.batch_size, shape.input_tokens + k - 1);
        }
        t
    }
}

/// How the synthetic backend spends time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SyntheticClock {
    /// Report the modeled time, do not wait.
    #[default]
    Modeled,
    /// Sleep for the modeled time and report the host clock.
    Sleep,
}

/// Configuration of the synthetic backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyntheticSpec {
    pub latency: LinearLatency,
    /// σ of the lognormal noise (0 = none).
    pub noise_sigma: f64,
    /// Probability that a step is a spike (0 = never).
    pub spike_prob: f64,
    /// Multiplier of a spike.
    pub spike_factor: f64,
    pub clock: SyntheticClock,
    pub seed: u64,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self {
            latency: LinearLatency::default(),
            noise_sigma: 0.02,
            spike_prob: 0.0,
            spike_factor: 5.0,
            clock: SyntheticClock::Modeled,
            seed: 0,
        }
    }
}

impl SyntheticSpec {
    /// Expected time of one pass, seconds (noise is mean-preserving; spikes add their mean).
    pub fn expected_pass_s(&self, shape: PointShape) -> f64 {
        self.latency.pass_s(shape) * (1.0 + self.spike_prob * (self.spike_factor - 1.0))
    }
}

impl MemoryModel for SyntheticSpec {
    fn weights_bytes(&self) -> u64 {
        SYNTHETIC_WEIGHTS_BYTES
    }
    fn point_bytes(&self, batch: u64, _input_tokens: u64, seq_tokens: u64) -> u64 {
        batch * seq_tokens * SYNTHETIC_KV_BYTES_PER_TOKEN
    }
}

/// The synthetic backend.
#[derive(Debug)]
pub struct SyntheticBackend {
    spec: SyntheticSpec,
    rng: StdRng,
    shape: Option<PointShape>,
    /// KV entries before the next decode step.
    context: u32,
    forward_calls: u64,
}

impl SyntheticBackend {
    pub fn new(spec: SyntheticSpec) -> Self {
        let rng = StdRng::seed_from_u64(spec.seed);
        Self {
            spec,
            rng,
            shape: None,
            context: 0,
            forward_calls: 0,
        }
    }

    fn observe(&mut self, modeled_s: f64) -> StepTiming {
        self.forward_calls += 1;
        let sigma = self.spec.noise_sigma;
        let z: f64 = StandardNormal.sample(&mut self.rng);
        let mut t = modeled_s * (sigma * z - sigma * sigma / 2.0).exp();
        if self.spec.spike_prob > 0.0 && self.rng.random::<f64>() < self.spec.spike_prob {
            t *= self.spec.spike_factor;
        }
        match self.spec.clock {
            SyntheticClock::Modeled => StepTiming {
                wall_s: t,
                device_s: None,
            },
            SyntheticClock::Sleep => {
                let start = Instant::now();
                std::thread::sleep(Duration::from_secs_f64(t));
                StepTiming {
                    wall_s: start.elapsed().as_secs_f64(),
                    device_s: None,
                }
            }
        }
    }
}

impl Backend for SyntheticBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            backend: "synthetic".into(),
            device: "none (modeled latency)".into(),
            driver: None,
            dtype: "none".into(),
            model: "synthetic-linear".into(),
            config_hash: crate::models::fnv1a_hex(
                serde_json::to_string(&self.spec.latency)
                    .unwrap_or_default()
                    .as_bytes(),
            ),
            weights: format!("none (noise seed {})", self.spec.seed),
        }
    }
    fn vocab_size(&self) -> usize {
        32_000
    }
    fn prepare(&mut self, shape: PointShape) -> Result<(), BackendError> {
        self.shape = Some(shape);
        self.context = 0;
        Ok(())
    }
    fn prefill(&mut self, prompts: &PromptBatch) -> Result<StepTiming, BackendError> {
        let shape = self
            .shape
            .ok_or_else(|| BackendError::Model("prefill before prepare".into()))?;
        if prompts.batch_size != shape.batch_size as usize
            || prompts.input_tokens != shape.input_tokens as usize
        {
            return Err(BackendError::Model(
                "prompt batch does not match the prepared shape".into(),
            ));
        }
        self.context = shape.input_tokens;
        let m = self
            .spec
            .latency
            .prefill_s(shape.batch_size, shape.input_tokens);
        Ok(self.observe(m))
    }
    fn decode_step(&mut self) -> Result<StepTiming, BackendError> {
        let shape = self
            .shape
            .ok_or_else(|| BackendError::Model("decode before prepare".into()))?;
        let m = self.spec.latency.decode_s(shape.batch_size, self.context);
        self.context += 1;
        Ok(self.observe(m))
    }
    fn synchronize(&mut self) -> Result<(), BackendError> {
        Ok(())
    }
    fn forward_calls(&self) -> u64 {
        self.forward_calls
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noiseless_steps_equal_the_model() {
        let spec = SyntheticSpec {
            noise_sigma: 0.0,
            ..SyntheticSpec::default()
        };
        let lat = spec.latency;
        let mut b = SyntheticBackend::new(spec);
        let shape = PointShape {
            batch_size: 4,
            input_tokens: 10,
            max_output: 3,
        };
        b.prepare(shape).unwrap();
        let p = PromptBatch {
            batch_size: 4,
            input_tokens: 10,
            ids: vec![0; 40],
        };
        let t0 = b.prefill(&p).unwrap().wall_s;
        // p0 + 4 p_b + 40 p_tok, by hand
        let want0 = 0.015 + 4.0 * 0.001 + 40.0 * 0.000_05;
        assert!((t0 - want0).abs() < 1e-15);
        let t1 = b.decode_step().unwrap().wall_s;
        assert!((t1 - (0.020 + 4.0 * 0.000_4 + 4.0 * 10.0 * 0.000_000_5)).abs() < 1e-15);
        let t2 = b.decode_step().unwrap().wall_s;
        assert!((t2 - lat.decode_s(4, 11)).abs() < 1e-15);
        assert_eq!(b.forward_calls(), 3);
        assert!((lat.pass_s(shape) - (t0 + t1 + t2)).abs() < 1e-12);
    }

    #[test]
    fn noise_is_mean_preserving() {
        let spec = SyntheticSpec {
            noise_sigma: 0.2,
            seed: 7,
            ..SyntheticSpec::default()
        };
        let mut b = SyntheticBackend::new(spec);
        let n = 20_000;
        let mean = (0..n).map(|_| b.observe(1.0).wall_s).sum::<f64>() / f64::from(n);
        // Var of exp(σZ − σ²/2) is e^{σ²} − 1 ≈ 0.0408; SE of the mean ≈ 0.0014; 5 SE bound.
        assert!((mean - 1.0).abs() < 0.0072, "mean {mean}");
    }

    #[test]
    fn prefill_rejects_a_mismatched_batch() {
        let mut b = SyntheticBackend::new(SyntheticSpec::default());
        b.prepare(PointShape {
            batch_size: 2,
            input_tokens: 3,
            max_output: 2,
        })
        .unwrap();
        let p = PromptBatch {
            batch_size: 1,
            input_tokens: 3,
            ids: vec![0; 3],
        };
        assert!(b.prefill(&p).is_err());
    }
}
