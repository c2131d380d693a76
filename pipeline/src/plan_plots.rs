//! `tokenq plan --plots DIR`: the planner's answer over a range of rates (docs/usage.md
//! "tokenq plan").
//!
//! * `plan-slo-vs-rate.svg`: the first SLO's statistic of the best configurations (at most
//!   three) against the total rate, each point with its method and, for a simulation, its 95 %
//!   interval, beside the SLO's target; a configuration is not drawn at rates where it is
//!   unstable or overloaded.
//! * `plan-gpus-vs-rate.svg`: the fewest GPUs that meet every SLO at each rate (the whole
//!   search at each rate, without goodputs); rates that no configuration within `--max-gpus`
//!   meets are left out and named in the caption.
//!
//! The rates are [`RATE_POINTS`] evenly spaced from 1/[`RATE_POINTS`] of the asked rate to
//! twice it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use reports::{Axis, Figure, Panel, Point, Series};

use crate::plan::{PlanAnswer, PlanConfig, evaluate_at, plan, policy_label};

/// Rates drawn per curve.
pub const RATE_POINTS: usize = 10;

fn rates(r: f64) -> Vec<f64> {
    (1..=RATE_POINTS)
        .map(|i| 2.0 * r * i as f64 / RATE_POINTS as f64)
        .collect()
}

/// Build the two figures.
pub fn figures(cfg: &PlanConfig, a: &PlanAnswer) -> Result<Vec<Figure>> {
    let rs = rates(cfg.rate);
    let slo = cfg.slos.first().context("no SLO")?;
    let mut panel = Panel::new(
        format!("{} against the total rate", slo.label()),
        Axis::new("total arrival rate", "req/s").from_zero(),
        Axis::new(slo.label().split("<=").next().unwrap_or("latency"), "s").from_zero(),
    );
    for c in a.feasible.iter().take(3) {
        let mut pts = Vec::new();
        let mut method = reports::Method::Exact;
        for &r in &rs {
            let e = evaluate_at(cfg, c, r);
            if let (None, Some(v)) = (&e.note, e.slos.first()) {
                method = v.method;
                pts.push(Point::with_ci(r, v.value_s.value, v.value_s.half_width));
            }
        }
        panel = panel.with(Series::new(
            format!("{} GPU(s), {}", c.gpus, policy_label(c)),
            method,
            pts,
        ));
    }
    let target = Series::from_xy(
        format!("target {}", slo.label()),
        reports::Method::Exact,
        [(rs[0], slo.target_s), (rs[rs.len() - 1], slo.target_s)],
    )
    .joined();
    let slo_fig = Figure {
        id: "plan-slo-vs-rate".into(),
        title: format!(
            "{} of the best configurations against the rate",
            slo.label()
        ),
        caption: format!(
            "The best configurations at {} req/s (at most three), evaluated at {RATE_POINTS} rates up to twice it; the flat line is the SLO's target. Simulated points carry their 95% interval; a configuration is not drawn where it is unstable or overloaded.",
            cfg.rate
        ),
        panels: vec![panel.with(target).mark(cfg.rate, "asked rate")],
    };
    let mut gpus = Vec::new();
    let mut none = Vec::new();
    for &r in &rs {
        let q = PlanConfig {
            rate: r,
            goodput_top: 0,
            ..cfg.clone()
        };
        match plan(&q)?.min_gpus {
            Some(n) => gpus.push((r, f64::from(n))),
            None => none.push(format!("{r:.3}")),
        }
    }
    let caption = if none.is_empty() {
        "The fewest GPUs that meet every SLO, the whole search run at each rate.".to_string()
    } else {
        format!(
            "The fewest GPUs that meet every SLO, the whole search run at each rate; none within --max-gpus {} at {} req/s.",
            cfg.max_gpus,
            none.join(", ")
        )
    };
    let gpu_fig = Figure {
        id: "plan-gpus-vs-rate".into(),
        title: "GPUs needed against the rate".into(),
        caption,
        panels: vec![
            Panel::new(
                "fewest GPUs meeting every SLO",
                Axis::new("total arrival rate", "req/s").from_zero(),
                Axis::new("GPUs", "").from_zero(),
            )
            .with(Series::from_xy("GPUs needed", method_of(a), gpus))
            .mark(cfg.rate, "asked rate"),
        ],
    };
    Ok(vec![slo_fig, gpu_fig])
}

/// The method of the answer's best configuration's first SLO (exact when none).
fn method_of(a: &PlanAnswer) -> reports::Method {
    a.feasible
        .first()
        .and_then(|c| c.slos.first())
        .map_or(reports::Method::Exact, |s| s.method)
}

/// Write the figures into `dir` (created if missing); returns the files written.
pub fn write(cfg: &PlanConfig, a: &PlanAnswer, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("--plots {}", dir.display()))?;
    let mut out = Vec::new();
    for f in figures(cfg, a)? {
        let (_, path) =
            reports::write_svg(&f, dir).with_context(|| format!("--plots {}", dir.display()))?;
        out.push(path);
    }
    Ok(out)
}
