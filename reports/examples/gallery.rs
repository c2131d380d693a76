//! Render every figure builder once, from reference numbers, into a directory (default
//! `target/gallery`), plus a sample report. For looking at the plots:
//! `cargo run -p reports --example gallery -- OUT_DIR`.
//!
//! Inputs: the paper's Table I (`datasets/paper/table1.csv`) for Fig. 2a; docs/models.md §9 reference
//! values (exact and Monte-Carlo) for Figs. 4–6; closed forms and quadrature for Fig. 3 and
//! Inoue's bound. Fig. 2b uses the Set U lines of docs/models.md §9 with a deterministic ±3% wobble as
//! stand-in "measurements" and says so in its title.

use std::path::PathBuf;

use reports::plots::{
    self, BatchSizeInput, BatchTimingInput, DistributionMoments, LatencyFitInput,
};
use reports::plots::{RateSweepInput, TokenLimitInput};
use reports::{Method, Point, Quantity, Recommendation, Report, Series, Table};

fn phi(z: f64) -> f64 {
    // Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), enough for a picture.
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let y = 1.0
        - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
            + 0.254829592)
            * t
            * (-x * x).exp();
    if z >= 0.0 {
        0.5 * (1.0 + y)
    } else {
        0.5 * (1.0 - y)
    }
}

/// E[M_b] for a distribution given by its CDF on [0, hi] (trapezoid on ∫(1 − F^b)).
fn e_max(cdf: impl Fn(f64) -> f64, hi: f64, b: f64) -> f64 {
    let n = 20_000;
    let h = hi / n as f64;
    (0..=n)
        .map(|i| {
            let x = i as f64 * h;
            let w = if i == 0 || i == n { 0.5 } else { 1.0 };
            w * (1.0 - cdf(x).powf(b))
        })
        .sum::<f64>()
        * h
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/gallery"));
    std::fs::create_dir_all(&out)?;

    // Fig. 2a: paper Table I, least squares in place.
    let csv = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../datasets/paper/table1.csv"
    ))?;
    let pts: Vec<Point> = csv
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<f64> = l.split(',').filter_map(|v| v.trim().parse().ok()).collect();
            (f.len() == 3).then(|| Point::new(f[1], f[2]))
        })
        .collect();
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.x).sum::<f64>() / n,
        pts.iter().map(|p| p.y).sum::<f64>() / n,
    );
    let sxy: f64 = pts.iter().map(|p| (p.x - mx) * (p.y - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.x - mx).powi(2)).sum();
    let a = sxy / sxx;
    let c = my - a * mx;
    let ss_res: f64 = pts.iter().map(|p| (p.y - a * p.x - c).powi(2)).sum();
    let ss_tot: f64 = pts.iter().map(|p| (p.y - my).powi(2)).sum();
    let f2a = plots::latency_vs_tokens(&LatencyFitInput {
        model: "paper Table I (Llama-2-7B, A100)".into(),
        measured: pts,
        per_token_s: a,
        intercept_s: c,
        r2: Some(1.0 - ss_res / ss_tot),
    })?;

    // Fig. 2b: Set U lines with a deterministic wobble.
    let bs = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 48.0, 64.0];
    let wob = |i: usize| 1.0 + 0.03 * ((i as f64) * 2.3).sin();
    let f2b = plots::batch_timing(&BatchTimingInput {
        model: "illustrative: Set U lines ±3%".into(),
        first_token: bs
            .iter()
            .enumerate()
            .map(|(i, &b)| Point::new(b, (0.004 * b + 0.03) * wob(i)))
            .collect(),
        per_token: bs
            .iter()
            .enumerate()
            .map(|(i, &b)| Point::with_ci(b, (0.0002 * b + 0.02) * wob(i + 3), 0.0004))
            .collect(),
        first_token_fit: Some((0.004, 0.03)),
        per_token_fit: Some((0.0002, 0.02)),
    })?;

    // Fig. 3: Set F3b, three distributions.
    let (k1, k2, k3, k4) = (0.004, 0.03, 0.005, 0.02);
    let bgrid: Vec<f64> = (0..=7).map(|i| 2f64.powi(i)).collect();
    let moments = |name: &str, cdf: &dyn Fn(f64) -> f64, hi: f64| {
        let em: Vec<(f64, f64)> = bgrid.iter().map(|&b| (b, e_max(cdf, hi, b))).collect();
        DistributionMoments {
            distribution: name.into(),
            e_batch_time_s: em
                .iter()
                .map(|&(b, m)| (b, k1 * b + k2 + (k3 * b + k4) * m))
                .collect(),
            e_max_tokens: em,
            sim_e_max_tokens: vec![],
            sim_e_batch_time_s: vec![],
        }
    };
    let unif = |x: f64| (x / 2000.0).clamp(0.0, 1.0);
    let tn = |x: f64| {
        let d = phi((2000.0 - 800.0) / 20.0) - phi(-40.0);
        ((phi((x - 800.0) / 20.0) - phi(-40.0)) / d).clamp(0.0, 1.0)
    };
    let ln = |x: f64| {
        if x <= 0.0 {
            0.0
        } else {
            phi((x.ln() - 7.0) / 0.7)
        }
    };
    let mut lncurve = moments("lognormal(7, 0.7)", &ln, 60_000.0);
    // Monte-Carlo-like points with intervals, to show the simulation style.
    lncurve.sim_e_max_tokens = lncurve
        .e_max_tokens
        .iter()
        .step_by(2)
        .map(|&(b, m)| Point::with_ci(b, m * 1.004, m * 0.02))
        .collect();
    let f3 = plots::batch_moments(
        &[
            moments("uniform(0, 2000)", &unif, 2000.0),
            moments("truncated normal(800, 20)", &tn, 2000.0),
            lncurve,
        ],
        "Set F3b (k1..k4 = 0.004, 0.03, 0.005, 0.02)",
    )?;

    // Fig. 4: docs/models.md §9.2 table (implied a, c; λ = 1/40 patient, 1/25 impatient, τ = 60 s).
    let ls = [500.0, 1000.0, 1300.0, 1600.0, 2000.0, 3000.0];
    let wp = [2.3020, 9.4987, 15.7965, 23.0000, 33.1417, 56.0019];
    let pe = [0.00023, 0.05274, 0.11313, 0.16366, 0.21125, 0.27090];
    let we = [4.8280, 20.2521, 26.7650, 30.5724, 33.3799, 36.0124];
    let pd = [0.00038, 0.05181, 0.11006, 0.15924, 0.20609, 0.26596];
    let wd = [4.8164, 20.0060, 26.5679, 30.4889, 33.4413, 36.3428];
    let xy = |v: &[f64]| {
        ls.iter()
            .copied()
            .zip(v.iter().copied())
            .collect::<Vec<_>>()
    };
    let beta = 119.0 / 120.0;
    let ubar = |l: f64| phi((l.ln() - 7.0) / 0.7);
    let f4 = plots::token_limit(&TokenLimitInput {
        setting: "lognormal(7, 0.7), docs/models.md §9.2".into(),
        wait: vec![
            Series::from_xy("patient, λ = 1/40", Method::Exact, xy(&wp)).in_group("patient"),
            Series::new(
                "patient",
                Method::Simulation,
                [
                    Point::with_ci(1600.0, 23.049, 0.064),
                    Point::with_ci(3000.0, 55.94, 0.28),
                ],
            )
            .in_group("patient"),
            Series::from_xy("impatient τ = 60 s", Method::Exact, xy(&we)).in_group("impatient"),
            Series::from_xy("impatient, De Kok–Tijms", Method::Approximation, xy(&wd))
                .in_group("impatient"),
            Series::new(
                "impatient",
                Method::Simulation,
                [
                    Point::with_ci(1300.0, 26.753, 0.036),
                    Point::with_ci(3000.0, 36.021, 0.031),
                ],
            )
            .in_group("impatient"),
        ],
        loss: vec![
            Series::from_xy("impatient τ = 60 s", Method::Exact, xy(&pe)).in_group("impatient"),
            Series::from_xy("De Kok–Tijms", Method::Approximation, xy(&pd)).in_group("impatient"),
            Series::new(
                "impatient",
                Method::Simulation,
                [
                    Point::with_ci(1300.0, 0.11304, 0.00036),
                    Point::with_ci(3000.0, 0.27097, 0.00043),
                ],
            )
            .in_group("impatient"),
        ],
        objective_patient: vec![Series::from_xy(
            "U = 1{n ≤ L}, β = 119/120",
            Method::Exact,
            ls.iter()
                .zip(wp)
                .map(|(&l, w)| (l, beta * ubar(l) - (1.0 - beta) * w)),
        )],
        objective_impatient: vec![Series::from_xy(
            "U = 1{n ≤ L}, β = 0.95, c = 4",
            Method::Exact,
            ls.iter()
                .zip(we.iter().zip(pe))
                .map(|(&l, (&w, p))| (l, 0.95 * ubar(l) - 0.05 * w - 4.0 * p)),
        )],
        best_patient: Some(2000.0),
        best_impatient: None,
    })?;

    // Fig. 5: Set U, docs/models.md §9.4 / §9.8, Inoue bound (eq. 16) in closed form.
    let (al, t0) = (0.204, 20.03);
    let bound = |l: f64| {
        let p0 = (al + t0) / (2.0 * (1.0 - l * al))
            * (1.0 + 2.0 * l * t0 + (1.0 - l * t0) / (1.0 + l * al));
        let p1 = 1.5 * t0 / (1.0 - l * al) + al / 2.0 * (l * al + 2.0) / (1.0 - l * l * al * al);
        p0.min(p1)
    };
    let f5 = plots::delay_vs_rate(&RateSweepInput {
        setting: "Set U, uniform(0, 1000) decode tokens".into(),
        latency: vec![
            Series::from_xy("dynamic", Method::Exact, [(0.5, 30.36332), (2.0, 49.79529)])
                .in_group("dynamic"),
            Series::new(
                "dynamic",
                Method::Simulation,
                [
                    Point::with_ci(0.5, 30.371, 0.015),
                    Point::with_ci(2.0, 49.790, 0.035),
                ],
            )
            .in_group("dynamic"),
            Series::from_xy("elastic", Method::Exact, [(0.5, 20.3902), (2.0, 26.0542)])
                .in_group("elastic"),
            Series::new(
                "elastic",
                Method::Simulation,
                [
                    Point::with_ci(0.5, 20.395, 0.010),
                    Point::with_ci(2.0, 26.058, 0.018),
                ],
            )
            .in_group("elastic"),
            Series::from_xy(
                "Inoue eq. 16, dynamic",
                Method::Bound,
                (1..=45).map(|i| 0.1 * f64::from(i)).map(|l| (l, bound(l))),
            )
            .in_group("dynamic"),
        ],
        stability_limits: vec![("dynamic".into(), 1.0 / al)],
        batch_cap: None,
    })?;

    // Fig. 6: Set L, λ = 0.3, docs/models.md §9.6 / §9.7.
    let f6 = plots::batch_size(&BatchSizeInput {
        setting: "Set L, lognormal(7, 0.7), λ = 0.3 req/s".into(),
        fixed: vec![
            Series::from_xy(
                "fixed",
                Method::Exact,
                [(4.0, 15.776037), (8.0, 27.517747), (16.0, 53.976173)],
            )
            .in_group("fixed"),
            Series::from_xy(
                "fixed, deterministic T (eq. 25)",
                Method::Approximation,
                [(4.0, 14.070973), (8.0, 26.276612), (16.0, 52.767937)],
            )
            .in_group("fixed"),
            Series::new(
                "fixed",
                Method::Simulation,
                [
                    Point::with_ci(4.0, 15.769, 0.036),
                    Point::with_ci(8.0, 27.512, 0.042),
                    Point::with_ci(16.0, 53.94, 0.11),
                ],
            )
            .in_group("fixed"),
        ],
        capped: vec![
            Series::from_xy(
                "dynamic, cap K",
                Method::Exact,
                [(4.0, 9.367067), (8.0, 9.253232)],
            )
            .in_group("cap"),
            Series::new(
                "dynamic, cap K",
                Method::Simulation,
                [
                    Point::with_ci(4.0, 9.376, 0.021),
                    Point::with_ci(8.0, 9.260, 0.042),
                ],
            )
            .in_group("cap"),
        ],
        best_fixed: Some(4.0),
        best_cap: Some(8.0),
        range_note: String::new(),
    })?;

    let figures = vec![f2a, f2b, f3, f4, f5, f6];
    for f in &figures {
        let (_, p) = reports::write_svg(f, &out)?;
        println!("wrote {}", p.display());
    }
    let report = Report {
        title: "tokenq gallery report".into(),
        summary: vec!["Reference numbers of docs/models.md §9, drawn.".into()],
        fit_warnings: Vec::new(),
        metadata: vec![(
            "source".into(),
            "reports/examples/gallery.rs (reference numbers)".into(),
        )],
        roofline: None,
        fit_table: Table {
            caption: "Least squares on the paper's Table I".into(),
            columns: vec!["term".into(), "value".into(), "R²".into()],
            rows: vec![vec![
                "per_token_s".into(),
                plots::sig(a),
                plots::sig(1.0 - ss_res / ss_tot),
            ]],
        },
        coefficients: vec![
            Quantity::new("per-token time a", a, "s/token", Method::Fitted),
            Quantity::new("intercept c", c, "s", Method::Fitted),
        ],
        recommendations: vec![Recommendation {
            question: "Which fixed batch size?".into(),
            answer: Quantity::new("K*", 4.0, "requests", Method::Exact),
            basis: vec![Quantity::new(
                "latency at K = 4",
                15.776037,
                "s",
                Method::Exact,
            )],
            note: "Among K = 4, 8, 16 only.".into(),
        }],
        capacity_plan: None,
        figures,
        notes: vec![],
    };
    let w = reports::write_report(&report, &out)?;
    println!("wrote {}", w.html.display());
    Ok(())
}
