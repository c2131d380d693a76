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
//! * `plan-goodput-vs-rate.svg`: the goodput of the same configurations at the same rates, as
//!   vLLM's `--goodput` defines it — the offered rate times the share of requests whose own
//!   latencies all meet the SLOs' targets ([`crate::plan::RequestTargets`]: each target bounds
//!   its latency in every request; a mean SLO's target too, which the caption says) — beside
//!   the diagonal y = x (every request within its targets). Each curve says how it was
//!   obtained: exact (M/G/1's law of the wait or the sojourn, `queueing::waiting`) for one
//!   request at a time on one GPU or behind the random split when one law gives the share;
//!   otherwise simulated per request, with the 95 % interval of the simulation's batch means or
//!   replications.
//!
//! The rates are [`RATE_POINTS`] evenly spaced from 1/[`RATE_POINTS`] of the asked rate to
//! twice it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use reports::{Axis, Figure, Panel, Point, Series};

use crate::plan::{
    Metric, PlanAnswer, PlanConfig, RequestTargets, Stat, goodput_at, plan, policy_label,
};

/// Rates drawn per curve.
pub const RATE_POINTS: usize = 10;

fn rates(r: f64) -> Vec<f64> {
    (1..=RATE_POINTS)
        .map(|i| 2.0 * r * i as f64 / RATE_POINTS as f64)
        .collect()
}

/// Build the three figures.
pub fn figures(cfg: &PlanConfig, a: &PlanAnswer) -> Result<Vec<Figure>> {
    let rs = rates(cfg.rate);
    let slo = cfg.slos.first().context("no SLO")?;
    let mut panel = Panel::new(
        format!("{} against the total rate", slo.label()),
        Axis::new("total arrival rate", "req/s").from_zero(),
        Axis::new(slo.label().split("<=").next().unwrap_or("latency"), "s").from_zero(),
    );
    let mut good = Panel::new(
        "goodput against the total rate",
        Axis::new("total arrival rate", "req/s").from_zero(),
        Axis::new("goodput", "req/s").from_zero(),
    );
    for c in a.feasible.iter().take(3) {
        let (mut pts, mut good_pts) = (Vec::new(), Vec::new());
        let (mut method, mut good_method) = (reports::Method::Exact, reports::Method::Exact);
        for &r in &rs {
            let (e, g) = goodput_at(cfg, c, r);
            if let (None, Some(v)) = (&e.note, e.slos.first()) {
                method = v.method;
                pts.push(point(r, v.value_s));
            }
            if let Ok(g) = g {
                good_method = g.method;
                good_pts.push(if g.method == reports::Method::Exact {
                    Point::new(r, g.goodput_rps.value)
                } else {
                    point(r, g.goodput_rps)
                });
            }
        }
        let label = format!("{} GPU(s), {}", c.gpus, policy_label(c));
        panel = panel.with(Series::new(label.clone(), method, pts));
        good = good.with(Series::new(label, good_method, good_pts));
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
    let diagonal = Series::from_xy(
        "every request within its targets (y = x)",
        reports::Method::Exact,
        [(0.0, 0.0), (rs[rs.len() - 1], rs[rs.len() - 1])],
    )
    .joined();
    let goodput_fig = Figure {
        id: "plan-goodput-vs-rate".into(),
        title: "Goodput of the best configurations against the rate".into(),
        caption: format!(
            "Goodput as vLLM's --goodput defines it: the offered rate times the share of requests whose own latencies all meet {}, at the rates of plan-slo-vs-rate, for the same configurations. {}Exact points come from M/G/1's law of the wait or the sojourn (one request at a time, one GPU or the random split); simulated ones count each simulated request and carry their 95% interval. The diagonal is every request within its targets; a configuration is not drawn where it is unstable or overloaded.",
            targets_text(&RequestTargets::of(&cfg.slos)),
            caveats(cfg)
        ),
        panels: vec![good.with(diagonal).mark(cfg.rate, "asked rate")],
    };
    Ok(vec![slo_fig, gpu_fig, goodput_fig])
}

/// `e2e ≤ 20 s and wait ≤ 2 s`: the per-request bounds.
fn targets_text(t: &RequestTargets) -> String {
    let v: Vec<String> = [
        ("wait", t.wait_s),
        ("ttft", t.ttft_s),
        ("tpot", t.tpot_s),
        ("e2e", t.e2e_s),
    ]
    .iter()
    .filter(|(_, b)| b.is_finite())
    .map(|(m, b)| format!("{m} ≤ {} s", reports::plots::sig(*b)))
    .collect();
    if v.is_empty() {
        "no per-request bound".into()
    } else {
        v.join(" and ")
    }
}

/// What the caption must say about SLOs that are not per-request bounds as written.
fn caveats(cfg: &PlanConfig) -> String {
    let mut out = String::new();
    let means: Vec<String> = cfg
        .slos
        .iter()
        .filter(|s| s.stat == Stat::Mean && s.metric != Metric::Itl)
        .map(|s| s.label())
        .collect();
    if !means.is_empty() {
        out.push_str(&format!(
            "Mean SLOs ({}) bound each request by their target here. ",
            means.join(", ")
        ));
    }
    if cfg.slos.iter().any(|s| s.metric == Metric::Itl) {
        out.push_str("ITL SLOs bound no request here: ITL is a gap between tokens, not one value per request (vLLM's --goodput takes ttft, tpot and e2el). ");
    }
    out
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

/// A point with its interval when it has one (a replay of a trace has none).
fn point(x: f64, e: tokenq_core::Estimate) -> Point {
    if e.half_width.is_finite() && e.half_width > 0.0 {
        Point::with_ci(x, e.value, e.half_width)
    } else {
        Point::new(x, e.value)
    }
}
