//! Fitting the step-time model of continuous batching (docs/serving.md "Step-time model",
//! "Fitted"); the model's types live in [`tokenq_core::step`].
//!
//! One engine iteration is summarised by a few features ([`StepFeatures`]): decode requests
//! `n_d`, the sum of their contexts `Σctx`, prefill tokens `Σp` and the cached context of those
//! chunks `Σkv_p`; `T = Σp + n_d` tokens in the step. Two linear forms are fitted *separately*
//! by ordinary least squares (SVD of the column-scaled design matrix, nalgebra):
//!
//! ```text
//! decode-only: t = c0 + c1·n_d + c2·(n_d − 128)⁺ + c3·Σctx
//! mixed:       t = c0 + c1·T   + c2·(T − 128)⁺   + c3·n_d + c4·Σctx + c5·Σp·Σkv_p
//! ```
//!
//! docs/serving.md asks for the fit on the configurations the engine can actually run (contexts that
//! fit in the KV cache) and for its error on the batches a replay actually runs (MAPE and bias
//! of the summed time): [`ReplayCheck`] carries the latter. The samples are produced elsewhere
//! ([`fit_from_tables`] samples the per-layer tables on the KV-feasible region;
//! a tokenq profile can supply measured steps the same way).

use rand::{RngExt, SeedableRng};
use tokenq_core::step::{
    DecodeStepCoefficients, EngineConfig, FormQuality, MixedStepCoefficients, ReplayCheck,
    StepBatch, StepFeatures, StepModel, StepTimeCoefficients,
};

/// Fewest samples per form: a few per coefficient, so the fit is over-determined.
pub const MIN_SAMPLES_PER_FORM: usize = 12;

/// Errors of the step-time fit.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StepFitError {
    /// Too few samples for one form.
    #[error(
        "step-time fit: {form} form has {got} samples, needs at least {need}; sample more step configurations"
    )]
    TooFewSamples {
        /// `decode` or `mixed`.
        form: &'static str,
        /// Samples given.
        got: usize,
        /// Samples needed.
        need: usize,
    },
    /// A sample time or feature is not finite or negative.
    #[error("step-time fit: sample {index} of the {form} form is not finite or negative")]
    BadSample {
        /// `decode` or `mixed`.
        form: &'static str,
        /// Index of the offending sample.
        index: usize,
    },
    /// The engine settings bounding the feasible region are invalid.
    #[error("step-time fit: {0}")]
    Engine(String),
    /// The least-squares system could not be solved.
    #[error("step-time fit: the {form} design matrix is degenerate ({why})")]
    Degenerate {
        /// `decode` or `mixed`.
        form: &'static str,
        /// Reason.
        why: String,
    },
}

/// Ordinary least squares on column-scaled rows; returns the coefficients in original units.
fn ols<const K: usize>(
    form: &'static str,
    rows: &[[f64; K]],
    y: &[f64],
) -> Result<[f64; K], StepFitError> {
    let n = rows.len();
    let mut scale = [0.0f64; K];
    for r in rows {
        for (s, v) in scale.iter_mut().zip(r) {
            *s = s.max(v.abs());
        }
    }
    // A column that is zero everywhere (e.g. no knee excess in the region) gets coefficient 0.
    let live: Vec<usize> = (0..K).filter(|&j| scale[j] > 0.0).collect();
    let a = nalgebra::DMatrix::from_fn(n, live.len(), |i, j| rows[i][live[j]] / scale[live[j]]);
    let b = nalgebra::DVector::from_column_slice(y);
    let svd = a.svd(true, true);
    let smax = svd.singular_values.max();
    let sol = svd
        .solve(&b, smax * 1e-12)
        .map_err(|e| StepFitError::Degenerate {
            form,
            why: e.to_string(),
        })?;
    let mut out = [0.0; K];
    for (j, &col) in live.iter().enumerate() {
        out[col] = sol[j] / scale[col];
    }
    Ok(out)
}

/// Training quality of predictions `p` against `y`.
pub fn quality(p: &[f64], y: &[f64]) -> FormQuality {
    let n = y.len();
    let mean = y.iter().sum::<f64>() / n as f64;
    let ss_tot: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
    let ss_res: f64 = p.iter().zip(y).map(|(a, b)| (a - b).powi(2)).sum();
    let mape = 100.0
        * p.iter()
            .zip(y)
            .map(|(a, b)| ((a - b) / b).abs())
            .sum::<f64>()
        / n as f64;
    let sp: f64 = p.iter().sum();
    let sy: f64 = y.iter().sum();
    FormQuality {
        n,
        r2: if ss_tot > 0.0 {
            1.0 - ss_res / ss_tot
        } else {
            1.0
        },
        mape_pct: mape,
        sum_bias_pct: 100.0 * (sp - sy) / sy,
    }
}

/// Fit both forms. `samples` are `(features, seconds)`; decode-only steps (no prefill tokens)
/// go to the decode form, the rest to the mixed form.
pub fn fit_step_time(
    source: &str,
    kv_capacity_tokens: u64,
    samples: &[(StepFeatures, f64)],
) -> Result<StepTimeCoefficients, StepFitError> {
    let mut dec_rows = Vec::new();
    let mut dec_y = Vec::new();
    let mut mix_rows = Vec::new();
    let mut mix_y = Vec::new();
    let (mut di, mut mi) = (0usize, 0usize);
    for (f, t) in samples {
        let decode = f.is_decode_only();
        let (form, idx) = if decode {
            ("decode", di)
        } else {
            ("mixed", mi)
        };
        if !f.is_valid() || !t.is_finite() || *t <= 0.0 {
            return Err(StepFitError::BadSample { form, index: idx });
        }
        if decode {
            dec_rows.push(f.decode_row());
            dec_y.push(*t);
            di += 1;
        } else {
            mix_rows.push(f.mixed_row());
            mix_y.push(*t);
            mi += 1;
        }
    }
    for (form, got) in [("decode", dec_rows.len()), ("mixed", mix_rows.len())] {
        if got < MIN_SAMPLES_PER_FORM {
            return Err(StepFitError::TooFewSamples {
                form,
                got,
                need: MIN_SAMPLES_PER_FORM,
            });
        }
    }
    let d = ols("decode", &dec_rows, &dec_y)?;
    let m = ols("mixed", &mix_rows, &mix_y)?;
    let mut coef = StepTimeCoefficients {
        source: source.to_string(),
        kv_capacity_tokens,
        decode: DecodeStepCoefficients {
            intercept_s: d[0],
            per_decode_s: d[1],
            per_decode_above_knee_s: d[2],
            per_context_token_s: d[3],
        },
        mixed: MixedStepCoefficients {
            intercept_s: m[0],
            per_token_s: m[1],
            per_token_above_knee_s: m[2],
            per_decode_s: m[3],
            per_decode_context_token_s: m[4],
            per_prefill_token_context_token_s: m[5],
        },
        decode_fit: FormQuality {
            n: 0,
            r2: 0.0,
            mape_pct: 0.0,
            sum_bias_pct: 0.0,
        },
        mixed_fit: FormQuality {
            n: 0,
            r2: 0.0,
            mape_pct: 0.0,
            sum_bias_pct: 0.0,
        },
        replay_check: None,
    };
    let (mut dp, mut mp) = (Vec::new(), Vec::new());
    for (f, _) in samples {
        if f.is_decode_only() {
            dp.push(coef.predict_s(f));
        } else {
            mp.push(coef.predict_s(f));
        }
    }
    coef.decode_fit = quality(&dp, &dec_y);
    coef.mixed_fit = quality(&mp, &mix_y);
    Ok(coef)
}

/// Error of `coef` on reference steps `(features, seconds)` (e.g. a replay's own steps timed by
/// the per-layer tables).
pub fn replay_check(
    coef: &StepTimeCoefficients,
    replay: &str,
    steps: &[(StepFeatures, f64)],
) -> ReplayCheck {
    let p: Vec<f64> = steps.iter().map(|(f, _)| coef.predict_s(f)).collect();
    let y: Vec<f64> = steps.iter().map(|(_, t)| *t).collect();
    let q = quality(&p, &y);
    ReplayCheck {
        replay: replay.to_string(),
        steps: steps.len(),
        mape_pct: q.mape_pct,
        sum_bias_pct: q.sum_bias_pct,
    }
}

/// Step-time samples from a tokenq profile (timings table rows): a prefill step of a batch of
/// `b` prompts of `P` tokens is a step with `b·P` prefill tokens on no cached context; the k-th
/// decode step is `b` decodes whose context is the KV before the step plus the token itself
/// (`context_tokens + 1` each), as `sim::continuous` describes steps. A profile only holds
/// uniform batches, so the mixed form is fitted on prefill-only steps; the KV-feasible region
/// is the profile's own grid (it ran). Rows with a non-finite or non-positive time are dropped.
pub fn samples_from_profile(rows: &[crate::profile::StepRow]) -> Vec<(StepFeatures, f64)> {
    rows.iter()
        .filter(|r| r.time_s.is_finite() && r.time_s > 0.0 && r.batch_size > 0)
        .map(|r| {
            let b = f64::from(r.batch_size);
            let f = if r.step == 0 {
                StepFeatures {
                    prefill_tokens: b * f64::from(r.input_tokens),
                    ..StepFeatures::default()
                }
            } else {
                StepFeatures {
                    n_decode: b,
                    decode_context_sum: b * (r.context_tokens as f64 + 1.0),
                    ..StepFeatures::default()
                }
            };
            (f, r.time_s)
        })
        .collect()
}

/// [`fit_step_time`] for a tokenq profile, which holds uniform batches only:
///
/// * a prefill step of more than `max_batched_tokens` prompt tokens is not one engine step (the
///   engine splits it into chunks), so those step-0 rows are left out;
/// * with `single_prefills` (a server profile: the requests of a batch reach the engine one by
///   one, so a batch's first tokens can span several engine steps), only batch-1 prefills are
///   used, when there are enough of them for the mixed form;
/// * a profile has no step that mixes a prefill chunk with decodes, so the mixed form's decode
///   terms cannot be fitted; they are taken from the decode-only form (additive costs: a decode
///   request adds to a mixed step what it adds to a decode-only step, its fixed cost counted
///   once). `mixed.per_decode_s` is that marginal cost less the per-token term the decode's own
///   token already pays in `T`.
pub fn fit_profile_step_time(
    source: &str,
    kv_capacity_tokens: u64,
    rows: &[crate::profile::StepRow],
    max_batched_tokens: u32,
    single_prefills: bool,
) -> Result<StepTimeCoefficients, StepFitError> {
    let single = |r: &crate::profile::StepRow| r.step == 0 && r.batch_size == 1;
    let singles = rows.iter().filter(|r| single(r)).count();
    let only_singles = single_prefills && singles >= MIN_SAMPLES_PER_FORM;
    let kept: Vec<crate::profile::StepRow> = rows
        .iter()
        .filter(|r| r.step > 0 || !only_singles || single(r))
        .cloned()
        .collect();
    let samples: Vec<(StepFeatures, f64)> = samples_from_profile(&kept)
        .into_iter()
        .filter(|(f, _)| f.prefill_tokens <= f64::from(max_batched_tokens))
        .collect();
    let mut c = fit_step_time(source, kv_capacity_tokens, &samples)?;
    let d = c.decode;
    c.mixed.per_decode_s = d.per_decode_s - c.mixed.per_token_s;
    c.mixed.per_decode_context_token_s = d.per_context_token_s;
    Ok(c)
}

/// Samples of each form drawn by [`fit_from_tables`].
pub const FIT_SAMPLES_PER_FORM: usize = 4000;

/// Largest context the LLMServingSim attention grid covers (tokens); sampling stays inside it.
pub const TABLE_MAX_CONTEXT: u32 = 16_384;

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

/// Learn the fitted model from `model` (normally a [`tokenq_core::TableStepModel`]) on the
/// configurations `engine` can run: n_d ≤ `max_num_seqs`, T ≤ the token budget, all contexts
/// (decode contexts plus the prefill chunk and its cached context) within the KV cache
/// (`kv_blocks × block_size` tokens) and within the tables' range. Deterministic for a seed.
pub fn fit_from_tables(
    model: &dyn StepModel,
    source: &str,
    engine: &EngineConfig,
    seed: u64,
) -> Result<StepTimeCoefficients, StepFitError> {
    engine
        .validate()
        .map_err(|e| StepFitError::Engine(e.to_string()))?;
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
    fit_step_time(source, cap_tokens, &samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(n_d: f64, ctx: f64, p: f64, kvp: f64) -> StepFeatures {
        StepFeatures {
            n_decode: n_d,
            decode_context_sum: ctx,
            prefill_tokens: p,
            prefill_context_sum: kvp,
        }
    }

    /// Data generated exactly by both forms (with the knees active) is recovered to rounding.
    #[test]
    fn recovers_exact_piecewise_linear_forms() {
        let dec = |n: f64, c: f64| 4e-3 + 2e-5 * n + 3e-5 * (n - 128.0).max(0.0) + 1e-8 * c;
        let mix = |n: f64, c: f64, p: f64, k: f64| {
            let t = n + p;
            6e-3 + 5e-6 * t + 2e-5 * (t - 128.0).max(0.0) + 1e-5 * n + 2e-8 * c + 3e-12 * p * k
        };
        let mut s = Vec::new();
        for i in 0..40 {
            let n = 1.0 + (i * 7 % 256) as f64;
            let c = n * (100.0 + (i * 97 % 900) as f64);
            s.push((f(n, c, 0.0, 0.0), dec(n, c)));
            let p = 16.0 + (i * 53 % 2000) as f64;
            let k = (i * 311 % 4000) as f64;
            let nm = (i * 5 % 40) as f64;
            let cm = nm * 300.0 + (i % 3) as f64 * 50.0 * nm;
            s.push((f(nm, cm, p, k), mix(nm, cm, p, k)));
        }
        let c = fit_step_time("test", 1 << 20, &s).unwrap();
        assert!((c.decode.intercept_s - 4e-3).abs() < 1e-12);
        assert!((c.decode.per_decode_above_knee_s - 3e-5).abs() < 1e-12);
        assert!((c.decode.per_context_token_s - 1e-8).abs() < 1e-16);
        assert!((c.mixed.per_token_above_knee_s - 2e-5).abs() < 1e-12);
        assert!((c.mixed.per_prefill_token_context_token_s - 3e-12).abs() < 1e-18);
        assert!(c.decode_fit.r2 > 0.999_999 && c.mixed_fit.mape_pct < 1e-6);
        // Prediction on a fresh point equals the generating form.
        let q = f(200.0, 200.0 * 700.0, 0.0, 0.0);
        assert!((c.predict_s(&q) - dec(200.0, 140_000.0)).abs() < 1e-12);
    }

    /// Profile rows map to the documented features; a profile generated by known linear forms
    /// (prefill 5 ms + 20 µs/token, decode 4 ms + 50 µs/request + 10 ns/context token) is
    /// recovered by the fit.
    #[test]
    fn fits_a_synthetic_profile() {
        let mut rows = Vec::new();
        for (i, &b) in [1u32, 2, 4, 8, 16, 32].iter().enumerate() {
            for &p in &[64u32, 128, 512, 1024] {
                for step in 0..8u32 {
                    let ctx = if step == 0 {
                        0
                    } else {
                        u64::from(p + step - 1)
                    };
                    let t = if step == 0 {
                        5e-3 + 2e-5 * f64::from(b * p)
                    } else {
                        4e-3 + 5e-5 * f64::from(b) + 1e-8 * f64::from(b) * (ctx as f64 + 1.0)
                    };
                    rows.push(crate::profile::StepRow {
                        run_id: "r".into(),
                        point_id: (i * 10) as u64 + u64::from(p),
                        rep: 0,
                        batch_size: b,
                        input_tokens: p,
                        step,
                        context_tokens: ctx,
                        time_s: t,
                    });
                }
            }
        }
        let s = samples_from_profile(&rows);
        assert_eq!(s.len(), rows.len());
        assert_eq!(s[1].0.decode_context_sum, 65.0);
        let c = fit_step_time("profile", 0, &s).unwrap();
        assert!((c.decode.per_decode_s - 5e-5).abs() < 1e-12);
        assert!((c.decode.per_context_token_s - 1e-8).abs() < 1e-15);
        let q = StepFeatures {
            prefill_tokens: 300.0,
            ..StepFeatures::default()
        };
        assert!((c.predict_s(&q) - (5e-3 + 2e-5 * 300.0)).abs() < 1e-9);

        // The profile fit: prefills above the budget are several engine steps (here timed as
        // 10× the one-step law, which must not leak in), and a mixed step costs its prefill plus
        // each decode's marginal cost in a decode-only step.
        let mut rows2 = rows.clone();
        for r in rows2.iter_mut() {
            if r.step == 0 && r.batch_size * r.input_tokens > 2048 {
                r.time_s *= 10.0;
            }
        }
        let c = fit_profile_step_time("profile", 0, &rows2, 2048, false).unwrap();
        let m = StepFeatures {
            prefill_tokens: 300.0,
            n_decode: 8.0,
            decode_context_sum: 8.0 * 400.0,
            ..StepFeatures::default()
        };
        let want = 5e-3 + 2e-5 * 300.0 + 5e-5 * 8.0 + 1e-8 * 8.0 * 400.0;
        assert!(
            (c.predict_s(&m) - want).abs() < 1e-9,
            "{} vs {want}",
            c.predict_s(&m)
        );
        assert!((c.predict_s(&q) - (5e-3 + 2e-5 * 300.0)).abs() < 1e-9);
    }

    #[test]
    fn too_few_samples_and_bad_samples_are_errors() {
        let s: Vec<_> = (0..5)
            .map(|i| (f(i as f64 + 1.0, 10.0, 0.0, 0.0), 1e-3))
            .collect();
        assert!(matches!(
            fit_step_time("t", 1, &s),
            Err(StepFitError::TooFewSamples { form: "decode", .. })
        ));
        let s = vec![(f(1.0, 10.0, 0.0, 0.0), f64::NAN)];
        assert!(matches!(
            fit_step_time("t", 1, &s),
            Err(StepFitError::BadSample { .. })
        ));
    }

    /// Replay check: a model 10% slow everywhere has +10% bias and 10% MAPE.
    #[test]
    fn replay_check_reports_bias() {
        let c = StepTimeCoefficients {
            source: "t".into(),
            kv_capacity_tokens: 1,
            decode: DecodeStepCoefficients {
                intercept_s: 0.011,
                per_decode_s: 0.0,
                per_decode_above_knee_s: 0.0,
                per_context_token_s: 0.0,
            },
            mixed: MixedStepCoefficients {
                intercept_s: 0.022,
                per_token_s: 0.0,
                per_token_above_knee_s: 0.0,
                per_decode_s: 0.0,
                per_decode_context_token_s: 0.0,
                per_prefill_token_context_token_s: 0.0,
            },
            decode_fit: quality(&[1.0], &[1.0]),
            mixed_fit: quality(&[1.0], &[1.0]),
            replay_check: None,
        };
        let steps = vec![
            (f(3.0, 30.0, 0.0, 0.0), 0.010),
            (f(3.0, 30.0, 100.0, 0.0), 0.020),
        ];
        let r = replay_check(&c, "x", &steps);
        assert!((r.sum_bias_pct - 10.0).abs() < 1e-9);
        assert!((r.mape_pct - 10.0).abs() < 1e-9);
        let toml = toml::to_string(&c).unwrap();
        let back: StepTimeCoefficients = toml::from_str(&toml).unwrap();
        assert_eq!(back, c);
    }
}
