//! The paper's figures (Yang, Xu, Jiao 2024, Figs. 2–6) as [`Figure`] builders over plain data.
//!
//! Each builder takes the numbers another crate computed and fixes what a reader needs: titles,
//! axis quantities with units, scales, and which method each series comes from.
//!
//! | builder | paper | docs/models.md | what it shows |
//! |---|---|---|---|
//! | [`latency_vs_tokens`] | Fig. 2a | §1 (S = a·N + c) | single-request latency vs output tokens, fitted line, residuals |
//! | [`batch_timing`] | Fig. 2b | §5 (t1, t2) | first-token and per-token time vs batch size, decode throughput |
//! | [`batch_moments`] | Fig. 3 | §5 (eqs 18–24) | E[M_b], E[T_b], inference speed b/E[T_b] vs batch size per distribution |
//! | [`token_limit`] | Fig. 4a–d | §1–§3 | waiting time, loss fraction, objective vs max-token limit |
//! | [`delay_vs_rate`] | Fig. 5 | §4, §8 | latency vs arrival rate: dynamic, elastic, Inoue's bound |
//! | [`batch_size`] | Fig. 6 | §6, §7 | fixed batching vs K, dynamic batching with a cap K |
//!
//! Every model curve may be accompanied by simulation series ([`Method::Simulation`], points with
//! 95% CI bars); series with the same group share a colour.

use serde::{Deserialize, Serialize};

use crate::ReportError;
use crate::figure::{Axis, Figure, Method, Panel, Point, Scale, Series};

/// Unit for a set of times: seconds, milliseconds or microseconds, whichever keeps the largest
/// magnitude at or above 1. Returns (multiplier from seconds, unit).
pub fn time_unit(values_s: impl IntoIterator<Item = f64>) -> (f64, &'static str) {
    let max = values_s
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(0.0_f64, |m, v| m.max(v.abs()));
    if max >= 1.0 || max == 0.0 {
        (1.0, "s")
    } else if max >= 1e-3 {
        (1e3, "ms")
    } else {
        (1e6, "µs")
    }
}

fn scaled(points: &[Point], k: f64) -> Vec<Point> {
    points
        .iter()
        .map(|p| Point {
            x: p.x,
            y: p.y * k,
            ci95: p.ci95.map(|h| h * k),
        })
        .collect()
}

fn x_extent(points: &[Point]) -> Option<(f64, f64)> {
    let xs = points.iter().map(|p| p.x).filter(|x| x.is_finite());
    let (lo, hi) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    (lo <= hi).then_some((lo, hi))
}

/// `n` points evenly spaced over [lo, hi] (inclusive).
fn grid(lo: f64, hi: f64, n: usize) -> impl Iterator<Item = f64> {
    let n = n.max(2);
    (0..n).map(move |i| lo + (hi - lo) * i as f64 / (n - 1) as f64)
}

fn done(figure: Figure) -> Result<Figure, ReportError> {
    figure.validate()?;
    Ok(figure)
}

fn nonempty(panels: Vec<Panel>) -> Vec<Panel> {
    panels
        .into_iter()
        .filter(|p| p.drawable_series().next().is_some())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Fig. 2a

/// Single-request latency measurements and the fitted line `T(n) = a·n + c` (paper Fig. 2a).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyFitInput {
    /// What was profiled, e.g. "tiny (random weights), cpu".
    pub model: String,
    /// (output tokens, end-to-end latency in s); `ci95` may hold the spread over repetitions.
    pub measured: Vec<Point>,
    /// Fitted slope a in s/token.
    pub per_token_s: f64,
    /// Fitted intercept c in s.
    pub intercept_s: f64,
    /// R² of the fit, shown in the legend when known.
    pub r2: Option<f64>,
}

/// Fig. 2a: latency vs output tokens with the fitted line, and the residuals panel.
pub fn latency_vs_tokens(input: &LatencyFitInput) -> Result<Figure, ReportError> {
    let (lo, hi) = x_extent(&input.measured).ok_or_else(|| ReportError::InvalidFigure {
        figure: "latency-vs-tokens".into(),
        reason: "no measured points".into(),
    })?;
    let line = |n: f64| input.per_token_s * n + input.intercept_s;
    let (k, unit) = time_unit(input.measured.iter().map(|p| p.y));
    let fit_label = format!(
        "T(n) = {} s/token · n + {} s{}",
        sig(input.per_token_s),
        sig(input.intercept_s),
        input
            .r2
            .map(|r| format!(", R² = {r:.4}"))
            .unwrap_or_default()
    );
    let latency = Panel::new(
        "(a) Latency vs output tokens",
        Axis::new("output tokens n", "tokens").scale(Scale::Linear),
        Axis::new("end-to-end latency", unit)
            .scale(Scale::Linear)
            .from_zero(),
    )
    .with(Series::new("profile", Method::Measured, scaled(&input.measured, k)).in_group("data"))
    .with(
        Series::from_xy(
            fit_label,
            Method::Fitted,
            grid(lo, hi, 2).map(|n| (n, line(n) * k)),
        )
        .in_group("fit"),
    );

    let residuals: Vec<Point> = input
        .measured
        .iter()
        .map(|p| Point {
            x: p.x,
            y: p.y - line(p.x),
            ci95: p.ci95,
        })
        .collect();
    let (kr, unit_r) = time_unit(residuals.iter().map(|p| p.y.abs() + p.ci95.unwrap_or(0.0)));
    let resid = Panel::new(
        "(b) Residuals of the fit",
        Axis::new("output tokens n", "tokens").scale(Scale::Linear),
        Axis::new("measured − fitted", unit_r)
            .scale(Scale::Linear)
            .from_zero(),
    )
    .with(Series::new("residual", Method::Measured, scaled(&residuals, kr)).in_group("data"))
    .with(
        Series::from_xy(
            "zero (the fitted line)",
            Method::Fitted,
            [(lo, 0.0), (hi, 0.0)],
        )
        .in_group("fit"),
    );

    done(Figure {
        id: "fig2a-latency-vs-tokens".into(),
        title: format!("Latency vs output tokens — {}", input.model),
        caption: "Each hollow circle is a measured single-request latency; the line is the \
                  least-squares fit T(n) = a·n + c used as the service time of the M/G/1 models \
                  (paper Fig. 2a). The right panel shows what the line misses."
            .into(),
        panels: vec![latency, resid],
    })
}

// ---------------------------------------------------------------------------------------------
// Fig. 2b

/// Per-batch-size timings and the fitted lines t1(b) = k1·b + k2, t2(b) = k3·b + k4 (Fig. 2b).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchTimingInput {
    pub model: String,
    /// (batch size, first-token time in s), prefill included.
    pub first_token: Vec<Point>,
    /// (batch size, per-decode-token time in s).
    pub per_token: Vec<Point>,
    /// (k1 in s per request, k2 in s).
    pub first_token_fit: Option<(f64, f64)>,
    /// (k3 in s per request, k4 in s).
    pub per_token_fit: Option<(f64, f64)>,
}

/// Fig. 2b: first-token time, per-token time and decode throughput vs batch size.
pub fn batch_timing(input: &BatchTimingInput) -> Result<Figure, ReportError> {
    let b_ext = x_extent(&input.first_token)
        .into_iter()
        .chain(x_extent(&input.per_token))
        .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1)))
        .ok_or_else(|| ReportError::InvalidFigure {
            figure: "batch-timing".into(),
            reason: "no measured points".into(),
        })?;
    let b_axis = || Axis::new("batch size b", "requests");

    let (k1u, u1) = time_unit(input.first_token.iter().map(|p| p.y));
    let mut first = Panel::new(
        "(a) First-token time t1(b)",
        b_axis(),
        Axis::new("first-token time", u1)
            .scale(Scale::Linear)
            .from_zero(),
    )
    .with(
        Series::new("profile", Method::Measured, scaled(&input.first_token, k1u)).in_group("data"),
    );
    if let Some((k1, k2)) = input.first_token_fit {
        first = first.with(
            Series::from_xy(
                format!("t1(b) = {}·b + {} s", sig(k1), sig(k2)),
                Method::Fitted,
                grid(b_ext.0, b_ext.1, 2).map(|b| (b, (k1 * b + k2) * k1u)),
            )
            .in_group("fit"),
        );
    }

    let (k2u, u2) = time_unit(input.per_token.iter().map(|p| p.y));
    let mut per = Panel::new(
        "(b) Per-token time t2(b)",
        b_axis(),
        Axis::new("time per decode step", u2)
            .scale(Scale::Linear)
            .from_zero(),
    )
    .with(Series::new("profile", Method::Measured, scaled(&input.per_token, k2u)).in_group("data"));
    if let Some((k3, k4)) = input.per_token_fit {
        per = per.with(
            Series::from_xy(
                format!("t2(b) = {}·b + {} s", sig(k3), sig(k4)),
                Method::Fitted,
                grid(b_ext.0, b_ext.1, 2).map(|b| (b, (k3 * b + k4) * k2u)),
            )
            .in_group("fit"),
        );
    }

    // Decode throughput b / t2(b); a CI on t2 maps to b·h/t2² to first order.
    let measured_tp: Vec<Point> = input
        .per_token
        .iter()
        .filter(|p| p.y > 0.0)
        .map(|p| Point {
            x: p.x,
            y: p.x / p.y,
            ci95: p.ci95.map(|h| p.x * h / (p.y * p.y)),
        })
        .collect();
    let mut tp = Panel::new(
        "(c) Decode throughput b / t2(b)",
        b_axis(),
        Axis::new("throughput", "tokens/s")
            .scale(Scale::Linear)
            .from_zero(),
    )
    .with(Series::new("profile", Method::Measured, measured_tp).in_group("data"));
    if let Some((k3, k4)) = input.per_token_fit {
        tp = tp.with(
            Series::from_xy(
                "b / t2(b) from the fit",
                Method::Fitted,
                grid(b_ext.0, b_ext.1, 60).map(|b| (b, b / (k3 * b + k4))),
            )
            .in_group("fit"),
        );
    }
    done(Figure {
        id: "fig2b-batch-timing".into(),
        title: format!("Time per step vs batch size — {}", input.model),
        caption: "First-token time (prefill) and per-decode-step time grow linearly with the \
                  batch size; the throughput panel shows the tokens per second a batch of b \
                  requests delivers (paper Fig. 2b)."
            .into(),
        panels: nonempty(vec![first, per, tp]),
    })
}

// ---------------------------------------------------------------------------------------------
// Fig. 3

/// E[M_b] and E[T_b] of one output-token distribution over batch sizes (docs/models.md §5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributionMoments {
    /// e.g. "uniform(0, 2000)", "lognormal(7, 0.7)".
    pub distribution: String,
    /// (b, E[M_b] in tokens), exact (quadrature).
    pub e_max_tokens: Vec<(f64, f64)>,
    /// (b, E[T_b] in s), exact given t1, t2.
    pub e_batch_time_s: Vec<(f64, f64)>,
    /// Optional Monte-Carlo estimates of E[M_b] (tokens) with 95% CI.
    #[serde(default)]
    pub sim_e_max_tokens: Vec<Point>,
    /// Optional Monte-Carlo estimates of E[T_b] (s) with 95% CI.
    #[serde(default)]
    pub sim_e_batch_time_s: Vec<Point>,
}

/// Fig. 3: E[M_b], E[T_b] and inference speed v(b) = b / E[T_b] (eq. 24) vs batch size.
pub fn batch_moments(curves: &[DistributionMoments], setting: &str) -> Result<Figure, ReportError> {
    let b_axis = || Axis::new("batch size b", "requests");
    let mut m = Panel::new(
        "(a) Expected longest reply E[M_b]",
        b_axis(),
        Axis::new("E[M_b]", "tokens")
            .scale(Scale::Linear)
            .from_zero(),
    );
    let mut t = Panel::new(
        "(b) Expected batch time E[T_b]",
        b_axis(),
        Axis::new("E[T_b]", "s").scale(Scale::Linear).from_zero(),
    );
    let mut v = Panel::new(
        "(c) Inference speed b / E[T_b]",
        b_axis(),
        Axis::new("speed", "req/s").scale(Scale::Linear).from_zero(),
    );
    for c in curves {
        let g = c.distribution.as_str();
        m = m.with(Series::from_xy(g, Method::Exact, c.e_max_tokens.iter().copied()).in_group(g));
        if !c.sim_e_max_tokens.is_empty() {
            m = m.with(Series::new(g, Method::Simulation, c.sim_e_max_tokens.clone()).in_group(g));
        }
        t = t.with(Series::from_xy(g, Method::Exact, c.e_batch_time_s.iter().copied()).in_group(g));
        if !c.sim_e_batch_time_s.is_empty() {
            t = t
                .with(Series::new(g, Method::Simulation, c.sim_e_batch_time_s.clone()).in_group(g));
        }
        v = v.with(
            Series::from_xy(
                g,
                Method::Exact,
                c.e_batch_time_s
                    .iter()
                    .filter(|(_, tb)| *tb > 0.0)
                    .map(|&(b, tb)| (b, b / tb)),
            )
            .in_group(g),
        );
        if !c.sim_e_batch_time_s.is_empty() {
            // Speed from a simulated E[T_b]: b/T, CI b·h/T² to first order.
            let sim: Vec<Point> = c
                .sim_e_batch_time_s
                .iter()
                .filter(|p| p.y > 0.0)
                .map(|p| Point {
                    x: p.x,
                    y: p.x / p.y,
                    ci95: p.ci95.map(|h| p.x * h / (p.y * p.y)),
                })
                .collect();
            v = v.with(Series::new(g, Method::Simulation, sim).in_group(g));
        }
    }
    done(Figure {
        id: "fig3-batch-moments".into(),
        title: format!("Batch time and speed vs batch size — {setting}"),
        caption: "A batch runs until its longest reply ends, so its time grows with E[M_b], the \
                  expected maximum of b output lengths. Heavy-tailed lengths (lognormal) make \
                  the speed b/E[T_b] peak at a finite batch size; bounded ones let it rise \
                  towards 1/(k1 + k3·max) (paper Fig. 3)."
            .into(),
        panels: vec![m, t, v],
    })
}

// ---------------------------------------------------------------------------------------------
// Fig. 4

/// Sweeps over the max-token limit L (paper Fig. 4a–d). Each vector holds series to overlay;
/// empty vectors drop their panel.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TokenLimitInput {
    /// e.g. "lognormal(7, 0.7); a = 0.0220 s/token, c = 0.776 s".
    pub setting: String,
    /// (L, mean waiting time in s): patient exact (P-K), impatient exact / DKT, simulations.
    pub wait: Vec<Series>,
    /// (L, fraction of users lost): impatient exact / DKT approximation / simulation.
    pub loss: Vec<Series>,
    /// (L, objective F(L)) patient, eq. (10).
    pub objective_patient: Vec<Series>,
    /// (L, objective F(L)) impatient, eq. (11).
    pub objective_impatient: Vec<Series>,
    /// argmax of the patient objective, marked on the plots.
    pub best_patient: Option<f64>,
    /// argmax of the impatient objective.
    pub best_impatient: Option<f64>,
}

/// Fig. 4: waiting time, loss fraction and objective vs the max-token limit.
pub fn token_limit(input: &TokenLimitInput) -> Result<Figure, ReportError> {
    let l_axis = || Axis::new("max-token limit L", "tokens").scale(Scale::Linear);
    let mark = |mut p: Panel, patient: bool, impatient: bool| {
        // One marker when both optima coincide.
        if patient
            && impatient
            && let (Some(a), Some(b)) = (input.best_patient, input.best_impatient)
            && a == b
        {
            return p.mark(a, format!("L* = {} (patient and impatient)", sig(a)));
        }
        if patient && let Some(l) = input.best_patient {
            p = p.mark(l, format!("L* = {} (patient)", sig(l)));
        }
        if impatient && let Some(l) = input.best_impatient {
            p = p.mark(l, format!("L* = {} (impatient)", sig(l)));
        }
        p
    };
    let wait = mark(
        Panel::new(
            "(a) Mean waiting time vs limit",
            l_axis(),
            Axis::new("mean waiting time E[W_q]", "s").from_zero(),
        )
        .with_all(input.wait.iter().cloned()),
        true,
        true,
    );
    let loss = mark(
        Panel::new(
            "(b) Users lost to impatience vs limit",
            l_axis(),
            Axis::new("loss fraction π(τ)", "fraction of arrivals")
                .scale(Scale::Linear)
                .from_zero(),
        )
        .with_all(input.loss.iter().cloned()),
        false,
        true,
    );
    let objp = mark(
        Panel::new(
            "(c) Provider objective, patient users",
            l_axis(),
            Axis::new("F(L) = βŪ − (1−β)E[W_q]", "utility").scale(Scale::Linear),
        )
        .with_all(input.objective_patient.iter().cloned()),
        true,
        false,
    );
    let obji = mark(
        Panel::new(
            "(d) Provider objective, impatient users",
            l_axis(),
            Axis::new("F(L) incl. loss cost", "utility").scale(Scale::Linear),
        )
        .with_all(input.objective_impatient.iter().cloned()),
        false,
        true,
    );
    done(Figure {
        id: "fig4-token-limit".into(),
        title: format!("Choosing the max-token limit — {}", input.setting),
        caption: "A lower limit L clips long replies: the queue waits less and fewer impatient \
                  users leave, but users get less of what they asked for. The objective weighs \
                  the two; the dashed vertical line marks its maximum (paper Fig. 4)."
            .into(),
        panels: nonempty(vec![wait, loss, objp, obji]),
    })
}

// ---------------------------------------------------------------------------------------------
// Fig. 5

/// Latency vs arrival rate for several batching policies (paper Fig. 5).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RateSweepInput {
    pub setting: String,
    /// (λ in req/s, mean latency in s): dynamic exact, elastic exact, bounds, simulations.
    pub latency: Vec<Series>,
    /// Largest stable arrival rate per policy (drawn as markers), e.g. ("dynamic", 0.55).
    #[serde(default)]
    pub stability_limits: Vec<(String, f64)>,
    /// The most requests one batch may hold in every curve of the figure (stated in the title,
    /// the panel title and the caption); `None`: batches are not capped.
    #[serde(default)]
    pub batch_cap: Option<usize>,
}

/// Fig. 5: mean latency vs arrival rate, dynamic and elastic batching with Inoue's bound.
pub fn delay_vs_rate(input: &RateSweepInput) -> Result<Figure, ReportError> {
    let (cap_title, cap_caption) = match input.batch_cap {
        Some(k) => (
            format!("batch cap {k}"),
            format!(
                "Every batch holds at most {k} requests (the largest batch size searched, \
                 --max-batch): with unbounded reply lengths an uncapped padded batch is never \
                 stable, so the cap sets the largest stable rate. "
            ),
        ),
        None => (
            "no batch cap".to_string(),
            "Batches are not capped: each takes every request waiting. ".to_string(),
        ),
    };
    let mut p = Panel::new(
        format!("Mean latency vs arrival rate ({cap_title})"),
        Axis::new("arrival rate λ", "req/s").scale(Scale::Linear),
        Axis::new("mean latency (wait + own batch)", "s"),
    )
    .with_all(input.latency.iter().cloned());
    for (name, lam) in &input.stability_limits {
        p = p.mark(*lam, format!("{name}: largest stable λ = {}", sig(*lam)));
    }
    done(Figure {
        id: "fig5-delay-vs-rate".into(),
        title: format!(
            "Dynamic vs elastic batching — {}, {cap_title}",
            input.setting
        ),
        caption: format!(
            "{cap_caption}Latency from arrival to the last token of a request's reply. The rates \
             are sampled more densely towards the largest stable rate, where the latency rises \
             steeply. Elastic batching returns each reply as soon as it ends, so it is never \
             slower than padded dynamic batching; the dotted line is Inoue's closed-form upper \
             bound (eq. 16) (paper Fig. 5)."
        ),
        panels: vec![p],
    })
}

// ---------------------------------------------------------------------------------------------
// Fig. 6

/// Fixed batching vs K and dynamic batching with a cap K (paper Fig. 6).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BatchSizeInput {
    pub setting: String,
    /// (K, mean latency in s) for fixed batching M/D^K/1: exact chain, deterministic-T
    /// approximation (paper eq. 25), simulation.
    pub fixed: Vec<Series>,
    /// (K, mean latency in s) for dynamic batching capped at K (exact chain, simulation).
    pub capped: Vec<Series>,
    /// Latency-optimal fixed K, marked.
    pub best_fixed: Option<f64>,
    /// Latency-optimal cap, marked.
    pub best_cap: Option<f64>,
    /// Which batch sizes were searched and why some are not drawn (unstable, not solved),
    /// appended to the caption.
    #[serde(default)]
    pub range_note: String,
}

/// Fig. 6: fixed batching vs batch size K, and dynamic batching with a maximum batch size.
pub fn batch_size(input: &BatchSizeInput) -> Result<Figure, ReportError> {
    let k_axis = || Axis::new("batch size K", "requests");
    let mut fixed = Panel::new(
        "(a) Fixed batching: wait for K requests",
        k_axis(),
        Axis::new("mean latency", "s"),
    )
    .with_all(input.fixed.iter().cloned());
    if let Some(k) = input.best_fixed {
        fixed = fixed.mark(k, format!("K* = {}", sig(k)));
    }
    let mut capped = Panel::new(
        "(b) Dynamic batching with a cap K",
        k_axis(),
        Axis::new("mean latency", "s"),
    )
    .with_all(input.capped.iter().cloned());
    if let Some(k) = input.best_cap {
        capped = capped.mark(k, format!("K* = {}", sig(k)));
    }
    done(Figure {
        id: "fig6-batch-size".into(),
        title: format!("Choosing the batch size — {}", input.setting),
        caption: format!(
            "Fixed batching waits until K requests are present, so small K wastes capacity \
             and large K makes early arrivals wait; dynamic batching takes whatever is waiting, \
             up to the cap K (paper Fig. 6).{}{}",
            if input.range_note.is_empty() { "" } else { " " },
            input.range_note
        ),
        panels: nonempty(vec![fixed, capped]),
    })
}

/// A number with four significant digits for labels (no trailing zeros).
pub fn sig(v: f64) -> String {
    crate::render::format_tick(round_sig(v, 4))
}

fn round_sig(v: f64, digits: i32) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let p = 10f64.powi(digits - 1 - v.abs().log10().floor() as i32);
    (v * p).round() / p
}
