//! The fit table printed by `tokenq fit`: one row per coefficient with its unit and 95%
//! interval, and per quantity R², MAPE and the worst held-out error; then the model kept, the
//! weighting, the interval method and the model-selection notes (`fit::model`).

use std::fmt::Write as _;

use tokenq_core::StepTimeCoefficients;
use tokenq_core::coefficients::{CoefficientsFile, FitQuality};

/// Four significant digits, scientific notation outside [1e-3, 1e4).
fn sig(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if (1e-3..1e4).contains(&v.abs()) {
        let prec = (3 - v.abs().log10().floor() as i32).max(0) as usize;
        format!("{v:.prec$}")
    } else {
        format!("{v:.3e}")
    }
}

fn unit(name: &str) -> &'static str {
    match name {
        "per_token_s" => "s/token",
        "slope_s_per_req" => "s/req",
        "per_input_token_s" => "s/token",
        "per_prefill_token_s" | "per_context_token_s" => "s/(req·token)",
        _ => "s",
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}%"))
}

struct Section<'a> {
    name: &'static str,
    coefs: Vec<(&'static str, f64)>,
    ci: &'a std::collections::BTreeMap<String, [f64; 2]>,
    q: &'a FitQuality,
    reference: String,
}

/// The fit table: one row per coefficient, the quality on each quantity's first row.
pub fn render(f: &CoefficientsFile) -> String {
    let mut out = String::new();
    let p = &f.provenance;
    out.push_str(&format!(
        "{} · {} · {} · time column {}\n",
        p.device, p.model, p.dtype, p.time_column
    ));
    out.push_str(&format!(
        "{:<15} {:<20} {:>11} {:<14} {:<25} {:>8} {:>7} {:>13} {:>14}\n",
        "quantity",
        "coefficient",
        "value",
        "unit",
        "95% interval",
        "R²",
        "MAPE",
        "held-out MAPE",
        "worst held-out"
    ));
    let mut sections: Vec<Section> = Vec::new();
    if let Some(s) = &f.single_request {
        let mut c = vec![
            ("per_token_s", s.per_token_s),
            ("intercept_s", s.intercept_s),
        ];
        if let Some(v) = s.per_input_token_s {
            c.push(("per_input_token_s", v));
        }
        sections.push(Section {
            name: "single_request",
            coefs: c,
            ci: &s.ci95,
            q: &s.quality,
            reference: format!("reference prompt {} tokens", s.input_tokens),
        });
    }
    if let Some(s) = &f.first_token {
        let mut c = vec![
            ("slope_s_per_req", s.slope_s_per_req),
            ("intercept_s", s.intercept_s),
        ];
        if let Some(v) = s.per_prefill_token_s {
            c.push(("per_prefill_token_s", v));
        }
        sections.push(Section {
            name: "first_token",
            coefs: c,
            ci: &s.ci95,
            q: &s.quality,
            reference: format!("k1, k2 at prompt {} tokens", s.input_tokens),
        });
    }
    if let Some(s) = &f.decode_step {
        let mut c = vec![
            ("slope_s_per_req", s.slope_s_per_req),
            ("intercept_s", s.intercept_s),
        ];
        if let Some(v) = s.per_context_token_s {
            c.push(("per_context_token_s", v));
        }
        sections.push(Section {
            name: "decode_step",
            coefs: c,
            ci: &s.ci95,
            q: &s.quality,
            reference: format!("k3, k4 at context {} tokens", s.context_tokens),
        });
    }
    let mut notes = Vec::new();
    for Section {
        name,
        coefs,
        ci,
        q,
        reference,
    } in &sections
    {
        for (i, (c, v)) in coefs.iter().enumerate() {
            let iv = ci.get(*c).map_or("-".into(), |[lo, hi]| {
                format!("[{}, {}]", sig(*lo), sig(*hi))
            });
            if i == 0 {
                out.push_str(&format!(
                    "{:<15} {:<20} {:>11} {:<14} {:<25} {:>8.5} {:>7} {:>13} {:>14}\n",
                    name,
                    c,
                    sig(*v),
                    unit(c),
                    iv,
                    q.r2,
                    format!("{:.2}%", q.mape_pct),
                    pct(q.holdout_mape_pct),
                    pct(q.holdout_worst_error_pct)
                ));
            } else {
                out.push_str(&format!(
                    "{:<15} {:<20} {:>11} {:<14} {:<25}\n",
                    "",
                    c,
                    sig(*v),
                    unit(c),
                    iv
                ));
            }
        }
        notes.push(format!(
            "  {name}: {} ({reference}); {} on {} points, {} held out; intervals: {}",
            q.model, q.weighting, q.points_fitted, q.holdout_points, q.interval_method
        ));
        for m in &q.model_selection {
            notes.push(format!("    {m}"));
        }
    }
    for k in &f.kv_capacity {
        notes.push(format!(
            "  kv_capacity: {} requests of {} tokens ({})",
            k.max_concurrent_requests, k.sequence_tokens, k.source
        ));
    }
    for n in &p.notes {
        notes.push(format!("  note: {n}"));
    }
    out.push_str(&notes.join("\n"));
    out.push('\n');
    out.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Held-out error above which a fit is flagged: the profile is too noisy (or the line does not
/// describe the device) for the coefficients to be trusted.
pub const HOLDOUT_WARN_PCT: f64 = 10.0;

/// One line per fitted quantity whose held-out error is above [`HOLDOUT_WARN_PCT`], naming the
/// profile flags that make a steadier measurement.
pub fn quality_warnings(f: &CoefficientsFile) -> Vec<String> {
    let mut out = Vec::new();
    let sections = [
        (
            "single_request",
            f.single_request.as_ref().map(|s| &s.quality),
        ),
        ("first_token", f.first_token.as_ref().map(|s| &s.quality)),
        ("decode_step", f.decode_step.as_ref().map(|s| &s.quality)),
    ];
    for (name, q) in sections {
        if let Some(h) = q.and_then(|q| q.holdout_mape_pct)
            && h > HOLDOUT_WARN_PCT
        {
            out.push(format!(
                "{name}: held-out error {h:.1}% is above {HOLDOUT_WARN_PCT}%: the profile is noisy; profile again with more warm-up and passes (e.g. --warmup 2 --reps 3)"
            ));
        }
    }
    out
}

/// The step-time model's coefficients and quality, as `tokenq fit` prints them.
pub fn render_step_time(c: &StepTimeCoefficients) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "step-time model [step_time] (continuous batching), from {}",
        c.source
    );
    let d = &c.decode;
    let _ = writeln!(
        o,
        "  decode-only: t = {:.4e} s + {:.4e} s·n_d + {:.4e} s·(n_d − 128)⁺ + {:.4e} s·Σctx",
        d.intercept_s, d.per_decode_s, d.per_decode_above_knee_s, d.per_context_token_s
    );
    let m = &c.mixed;
    let _ = writeln!(
        o,
        "  mixed:       t = {:.4e} s + {:.4e} s·T + {:.4e} s·(T − 128)⁺ + {:.4e} s·n_d + {:.4e} s·Σctx + {:.4e} s·Σp·Σkv_p",
        m.intercept_s,
        m.per_token_s,
        m.per_token_above_knee_s,
        m.per_decode_s,
        m.per_decode_context_token_s,
        m.per_prefill_token_context_token_s
    );
    for (name, q) in [("decode-only", &c.decode_fit), ("mixed", &c.mixed_fit)] {
        let _ = writeln!(
            o,
            "  training ({name}): {} samples, R² {:.4}, MAPE {:.2}%, bias of summed time {:+.2}%",
            q.n, q.r2, q.mape_pct, q.sum_bias_pct
        );
    }
    let _ = match &c.replay_check {
        Some(r) => writeln!(
            o,
            "  replay check: {} steps of {}: MAPE {:.2}%, bias of summed time {:+.2}%",
            r.steps, r.replay, r.mape_pct, r.sum_bias_pct
        ),
        None => writeln!(
            o,
            "  replay check: not run (give --check-trace TRACE to measure the error on the steps a replay runs)"
        ),
    };
    o
}
