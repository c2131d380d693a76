//! Every figure builder renders fixed inputs to well-formed SVG that holds what the figure
//! promises: its title, panel titles, axis descriptions with units, one legend entry per
//! series, a line per model series (with as many vertices as points), a filled circle per
//! simulation point with its CI bar, and points placed in the right order on the page.
//!
//! Inputs are docs/models.md §9 reference values (exact and Monte-Carlo) and the paper's Table I.

use std::collections::HashMap;

use reports::figure::{Axis, Figure, Method, Panel, Point, Scale, Series};
use reports::plots::{
    self, BatchSizeInput, BatchTimingInput, DistributionMoments, LatencyFitInput,
};
use reports::plots::{RateSweepInput, TokenLimitInput};
use reports::render::{self, axis_coord, format_tick, linear_ticks, log_ticks, series_colour_hex};
use reports::{ReportError, render_svg};

/// What the tests read back from an SVG document.
#[derive(Debug, Default)]
struct Svg {
    texts: Vec<String>,
    /// stroke colour → point counts of the polylines drawn in it with width 2 (model lines).
    lines: HashMap<String, Vec<usize>>,
    /// fill colour → (cx, cy) of filled circles.
    dots: HashMap<String, Vec<(f64, f64)>>,
    /// stroke colour → (cx, cy) of hollow circles.
    rings: HashMap<String, Vec<(f64, f64)>>,
    /// stroke colour → number of 2-vertex vertical polylines of width 1 (CI bars).
    bars: HashMap<String, usize>,
}

fn parse(svg: &str) -> Svg {
    let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert!(
        root.attribute("viewBox").is_some(),
        "the SVG must scale (viewBox)"
    );
    let mut out = Svg::default();
    for n in root.descendants().filter(|n| n.is_element()) {
        let attr = |k: &str| n.attribute(k).unwrap_or("").to_string();
        match n.tag_name().name() {
            "text" => out.texts.push(n.text().unwrap_or("").trim().to_string()),
            "polyline" => {
                let pts: Vec<(f64, f64)> = attr("points")
                    .split_whitespace()
                    .filter_map(|p| {
                        let (a, b) = p.split_once(',')?;
                        Some((a.parse().ok()?, b.parse().ok()?))
                    })
                    .collect();
                if attr("stroke-width") == "2" {
                    out.lines.entry(attr("stroke")).or_default().push(pts.len());
                } else if attr("stroke-width") == "1" && pts.len() == 2 && pts[0].0 == pts[1].0 {
                    *out.bars.entry(attr("stroke")).or_default() += 1;
                }
            }
            "circle" => {
                let c = (attr("cx").parse().unwrap(), attr("cy").parse().unwrap());
                if attr("fill") != "none" && !attr("fill").is_empty() {
                    out.dots.entry(attr("fill")).or_default().push(c);
                } else {
                    out.rings.entry(attr("stroke")).or_default().push(c);
                }
            }
            _ => {}
        }
    }
    out
}

/// Check the structure every figure must have and return the parsed SVG.
fn check_figure(fig: &Figure) -> Svg {
    let svg = parse(&render_svg(fig).expect("renders"));
    let has = |t: &str| svg.texts.iter().filter(|x| *x == t).count();
    assert_eq!(
        has(&fig.title),
        1,
        "figure title {:?} in {:?}",
        fig.title,
        svg.texts
    );
    for p in &fig.panels {
        assert!(has(&p.title) >= 1, "panel title {:?}", p.title);
        assert!(
            has(&p.x.description()) >= 1,
            "x axis {:?}",
            p.x.description()
        );
        assert!(
            has(&p.y.description()) >= 1,
            "y axis {:?}",
            p.y.description()
        );
        assert!(
            p.x.description().contains('[') && p.y.description().contains('['),
            "units shown"
        );
        for s in p.drawable_series() {
            assert!(
                has(&s.legend_text()) >= 1,
                "legend entry {:?} in {:?}",
                s.legend_text(),
                svg.texts
            );
            let colour = series_colour_hex(fig, s);
            let finite = s
                .points
                .iter()
                .filter(|q| q.x.is_finite() && q.y.is_finite())
                .count();
            match s.method {
                Method::Exact | Method::Fitted => {
                    let lines = svg.lines.get(&colour).cloned().unwrap_or_default();
                    assert!(
                        lines.contains(&finite),
                        "a {finite}-vertex line for {:?} ({colour}); lines: {lines:?}",
                        s.label
                    );
                }
                Method::Simulation => {
                    let dots = svg.dots.get(&colour).map_or(0, Vec::len);
                    // one per point plus the legend sample
                    assert!(
                        dots > finite,
                        "{dots} dots for {finite} simulation points of {:?}",
                        s.label
                    );
                    let with_ci = s
                        .points
                        .iter()
                        .filter(|q| q.ci95.is_some_and(|h| h > 0.0))
                        .count();
                    assert!(
                        svg.bars.get(&colour).copied().unwrap_or(0) >= with_ci,
                        "CI bars of {:?}",
                        s.label
                    );
                }
                Method::Measured => {
                    let rings = svg.rings.get(&colour).map_or(0, Vec::len);
                    assert!(
                        rings > finite,
                        "{rings} rings for {finite} measured points of {:?}",
                        s.label
                    );
                }
                Method::Approximation | Method::Bound => {
                    // dashed: many short segments in the series colour
                    let segs = svg.lines.get(&colour).map_or(0, Vec::len);
                    assert!(segs >= 3, "dashed line of {:?}: {segs} segments", s.label);
                }
            }
        }
        for m in &p.markers {
            assert!(has(&m.label) >= 1, "marker label {:?}", m.label);
        }
    }
    svg
}

fn table1() -> Vec<Point> {
    // datasets/paper/table1.csv (paper Table I): output tokens, seconds.
    let csv = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../datasets/paper/table1.csv"
    ))
    .unwrap();
    csv.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<f64> = l.split(',').map(|v| v.trim().parse().unwrap()).collect();
            Point::new(f[1], f[2])
        })
        .collect()
}

#[test]
fn fig2a_latency_vs_tokens_has_fit_and_residuals() {
    let measured = table1();
    // docs/models.md §10.2: Table I fit a = 0.0229925 s/token, c = 0.186087 s.
    let fig = plots::latency_vs_tokens(&LatencyFitInput {
        model: "paper Table I".into(),
        measured: measured.clone(),
        per_token_s: 0.0229925,
        intercept_s: 0.186087,
        r2: Some(0.99),
    })
    .unwrap();
    assert_eq!(fig.panels.len(), 2);
    // residual = measured − (a n + c), e.g. (1024, 23.47): 23.47 − 23.73 = −0.2593 s
    let resid = &fig.panels[1].series[0];
    let r1024 = resid.points.iter().find(|p| p.x == 1024.0).unwrap();
    // (512, 13.19) misses by 1.23 s, so the residual axis stays in seconds
    assert_eq!(fig.panels[1].y.unit, "s");
    let expected = 23.47 - (0.0229925 * 1024.0 + 0.186087);
    assert!(
        (r1024.y - expected).abs() < 1e-12,
        "{} vs {expected}",
        r1024.y
    );
    let svg = check_figure(&fig);
    assert!(
        svg.texts
            .iter()
            .any(|t| t.starts_with("T(n) = 0.02299 s/token · n + 0.1861 s, R² = 0.9900"))
    );
}

#[test]
fn fig2b_batch_timing_three_panels_and_throughput() {
    // Set U lines (docs/models.md §9): t1 = 0.004 b + 0.03, t2 = 0.0002 b + 0.02.
    let bs = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0];
    let fig = plots::batch_timing(&BatchTimingInput {
        model: "Set U".into(),
        first_token: bs
            .iter()
            .map(|&b| Point::new(b, 0.004 * b + 0.03))
            .collect(),
        per_token: bs
            .iter()
            .map(|&b| Point::with_ci(b, 0.0002 * b + 0.02, 1e-4))
            .collect(),
        first_token_fit: Some((0.004, 0.03)),
        per_token_fit: Some((0.0002, 0.02)),
    })
    .unwrap();
    assert_eq!(fig.panels.len(), 3);
    // throughput at b = 32: 32 / (0.0002·32 + 0.02) = 1212.12 tokens/s
    let tp = &fig.panels[2].series[0];
    let p32 = tp.points.iter().find(|p| p.x == 32.0).unwrap();
    assert!((p32.y - 32.0 / 0.0264).abs() < 1e-9);
    // first-order CI: b h / t² = 32e-4 / 0.0264²
    assert!((p32.ci95.unwrap() - 32.0e-4 / (0.0264 * 0.0264)).abs() < 1e-9);
    check_figure(&fig);
}

#[test]
fn fig2b_without_fits_still_draws_measurements() {
    let fig = plots::batch_timing(&BatchTimingInput {
        model: "no fit".into(),
        first_token: vec![Point::new(1.0, 0.05), Point::new(4.0, 0.08)],
        per_token: vec![Point::new(1.0, 0.02), Point::new(4.0, 0.021)],
        first_token_fit: None,
        per_token_fit: None,
    })
    .unwrap();
    assert!(fig.panels.iter().all(|p| p.series.len() == 1));
    check_figure(&fig);
}

#[test]
fn fig3_batch_moments_series_per_distribution_and_log_batch_axis() {
    // docs/models.md §9.5: Uniform(0,1000) and Lognormal(7,0.7) E[M_b] at b = 1, 2, 8, 32; Set L k's.
    let bs = [1.0, 2.0, 8.0, 32.0];
    let u = [500.0, 666.6666667, 888.8888889, 969.6969697];
    let l = [1401.081896, 1932.627223, 3272.192484, 4974.473244];
    let (k1, k2, k3, k4) = (0.0004, 0.003, 0.0003, 0.002);
    let curve = |name: &str, m: &[f64]| DistributionMoments {
        distribution: name.into(),
        e_max_tokens: bs.iter().copied().zip(m.iter().copied()).collect(),
        e_batch_time_s: bs
            .iter()
            .zip(m)
            .map(|(&b, &m)| (b, k1 * b + k2 + (k3 * b + k4) * m))
            .collect(),
        sim_e_max_tokens: vec![],
        sim_e_batch_time_s: vec![],
    };
    let mut ln = curve("lognormal(7, 0.7)", &l);
    ln.sim_e_batch_time_s = vec![Point::with_ci(8.0, 14.41, 0.05)];
    let fig = plots::batch_moments(&[curve("uniform(0, 1000)", &u), ln], "Set L").unwrap();
    // Set L, b = 8: E[T_8] = 14.40384693 (docs/models.md §9.5), v = 8/14.40384693 = 0.55540718
    let v8 = fig.panels[2]
        .series
        .iter()
        .find(|s| s.label.starts_with("lognormal") && s.method == Method::Exact)
        .unwrap();
    let p = v8.points.iter().find(|p| p.x == 8.0).unwrap();
    assert!((p.y - 0.55540718).abs() < 1e-6, "{}", p.y);
    let svg = check_figure(&fig);
    // b = 1..32 spans 1.5 decades: linear; the builder leaves the x scale on Auto
    assert_eq!(fig.panels[0].x.scale, Scale::Auto);
    assert!(svg.texts.iter().any(|t| t == "30"));
}

fn fig4_input() -> TokenLimitInput {
    // docs/models.md §9.2, table for §V-B.
    let ls = [500.0, 1000.0, 1300.0, 1600.0, 2000.0, 3000.0];
    let xy = |v: [f64; 6]| ls.iter().copied().zip(v).collect::<Vec<_>>();
    TokenLimitInput {
        setting: "lognormal(7, 0.7)".into(),
        wait: vec![
            Series::from_xy(
                "patient",
                Method::Exact,
                xy([2.3020, 9.4987, 15.7965, 23.0, 33.1417, 56.0019]),
            )
            .in_group("p"),
            Series::new(
                "patient",
                Method::Simulation,
                [
                    Point::with_ci(1600.0, 23.049, 0.064),
                    Point::with_ci(3000.0, 55.94, 0.28),
                ],
            )
            .in_group("p"),
            Series::from_xy(
                "impatient",
                Method::Exact,
                xy([4.8280, 20.2521, 26.7650, 30.5724, 33.3799, 36.0124]),
            )
            .in_group("i"),
            Series::from_xy(
                "impatient DKT",
                Method::Approximation,
                xy([4.8164, 20.0060, 26.5679, 30.4889, 33.4413, 36.3428]),
            )
            .in_group("i"),
        ],
        loss: vec![
            Series::from_xy(
                "exact",
                Method::Exact,
                xy([0.00023, 0.05274, 0.11313, 0.16366, 0.21125, 0.27090]),
            ),
            Series::from_xy(
                "DKT",
                Method::Approximation,
                xy([0.00038, 0.05181, 0.11006, 0.15924, 0.20609, 0.26596]),
            ),
            Series::new(
                "exact",
                Method::Simulation,
                [Point::with_ci(1300.0, 0.11304, 0.00036)],
            ),
        ],
        // docs/models.md §9.3: F at L = 1300/1600/1900 for U = 1{n ≤ L}
        objective_patient: vec![Series::from_xy(
            "U = 1{n ≤ L}",
            Method::Exact,
            [
                (1300.0, 0.45940401),
                (1600.0, 0.50773869),
                (1900.0, 0.52229154),
            ],
        )],
        objective_impatient: vec![],
        best_patient: Some(1900.0),
        best_impatient: Some(1300.0),
    }
}

#[test]
fn fig4_token_limit_drops_empty_panels_and_marks_optima() {
    let fig = plots::token_limit(&fig4_input()).unwrap();
    // the impatient objective was not given: three panels
    assert_eq!(fig.panels.len(), 3);
    let svg = check_figure(&fig);
    // L* marks: patient on (a) and (c), impatient on (a) and (b)
    assert_eq!(
        svg.texts
            .iter()
            .filter(|t| *t == "L* = 1900 (patient)")
            .count(),
        2
    );
    assert_eq!(
        svg.texts
            .iter()
            .filter(|t| *t == "L* = 1300 (impatient)")
            .count(),
        2
    );
    // Patient simulation points: the one at L = 3000 (55.94 s) is drawn above (smaller cy)
    // and to the right of the one at L = 1600 (23.05 s).
    let blue = series_colour_hex(&fig, &fig.panels[0].series[1]);
    let dots = &svg.dots[&blue];
    let (a, b) = (dots[0], dots[1]);
    assert!(b.0 > a.0 && b.1 < a.1, "{a:?} {b:?}");
}

#[test]
fn fig5_delay_vs_rate_single_wide_panel() {
    // docs/models.md §9.4 (C-U1, C-U2) and §9.8 (G1, G2), Set U; Inoue bound values 33.67434 / 51.04636.
    let fig = plots::delay_vs_rate(&RateSweepInput {
        setting: "Set U".into(),
        latency: vec![
            Series::from_xy("dynamic", Method::Exact, [(0.5, 30.36332), (2.0, 49.79529)])
                .in_group("d"),
            Series::new(
                "dynamic",
                Method::Simulation,
                [
                    Point::with_ci(0.5, 30.371, 0.015),
                    Point::with_ci(2.0, 49.790, 0.035),
                ],
            )
            .in_group("d"),
            Series::from_xy("elastic", Method::Exact, [(0.5, 20.3902), (2.0, 26.0542)])
                .in_group("e"),
            Series::from_xy(
                "Inoue eq. 16",
                Method::Bound,
                [(0.5, 33.67434), (2.0, 51.04636)],
            )
            .in_group("d"),
        ],
        stability_limits: vec![("dynamic".into(), 1.0 / 0.204)],
        batch_cap: None,
    })
    .unwrap();
    let svg_text = render_svg(&fig).unwrap();
    let doc = roxmltree::Document::parse(&svg_text).unwrap();
    assert_eq!(doc.root_element().attribute("width"), Some("860"));
    let svg = check_figure(&fig);
    assert!(
        svg.texts
            .iter()
            .any(|t| t == "dynamic: largest stable λ = 4.902")
    );
    // No cap given: the figure says batches are not capped, in the title and the caption.
    assert!(fig.title.contains("no batch cap"), "{}", fig.title);
    assert!(fig.panels[0].title.contains("no batch cap"));
    assert!(fig.caption.contains("not capped"), "{}", fig.caption);
}

#[test]
fn fig5_states_the_batch_cap() {
    let fig = plots::delay_vs_rate(&RateSweepInput {
        setting: "lognormal".into(),
        latency: vec![Series::from_xy(
            "dynamic, cap 64",
            Method::Exact,
            [(0.5, 3.0), (2.0, 9.0)],
        )],
        stability_limits: vec![],
        batch_cap: Some(64),
    })
    .unwrap();
    assert!(fig.title.contains("batch cap 64"), "{}", fig.title);
    assert!(fig.panels[0].title.contains("batch cap 64"));
    assert!(
        fig.caption.contains("at most 64 requests"),
        "{}",
        fig.caption
    );
    let svg = check_figure(&fig);
    assert!(svg.texts.iter().any(|t| t.contains("batch cap 64")));
}

#[test]
fn fig6_caption_carries_the_range_note() {
    let fig = plots::batch_size(&BatchSizeInput {
        setting: "s".into(),
        fixed: vec![Series::from_xy("fixed K", Method::Exact, [(1.0, 3.0)])],
        capped: vec![Series::from_xy(
            "dynamic, cap K",
            Method::Exact,
            [(1.0, 3.0), (2.0, 4.0)],
        )],
        best_fixed: Some(1.0),
        best_cap: Some(1.0),
        range_note: "K = 2–64 are unstable at this rate.".into(),
    })
    .unwrap();
    assert!(
        fig.caption
            .ends_with(" K = 2–64 are unstable at this rate."),
        "{}",
        fig.caption
    );
}

/// (text, x, y) of every `<text>` element.
fn text_positions(svg: &str) -> Vec<(String, f64, f64)> {
    let doc = roxmltree::Document::parse(svg).unwrap();
    doc.root_element()
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| {
            (
                n.text().unwrap_or("").trim().to_string(),
                n.attribute("x")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN),
                n.attribute("y")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN),
            )
        })
        .collect()
}

#[test]
fn marker_labels_sit_in_the_legend_band_not_over_the_data() {
    // Two markers a hair apart and a curve reaching the top right corner, where the labels
    // used to be drawn: every label must be below the chart (in the legend band), each on its
    // own legend row or column.
    let fig = Figure {
        id: "markers".into(),
        title: "markers".into(),
        caption: String::new(),
        panels: vec![
            Panel::new(
                "p",
                Axis::new("x", "s").scale(Scale::Linear),
                Axis::new("y", "1").scale(Scale::Linear),
            )
            .with(Series::from_xy(
                "curve",
                Method::Exact,
                (0..=10).map(|i| (f64::from(i), f64::from(i * i))),
            ))
            .mark(9.9, "mean 9.9 s")
            .mark(10.0, "p50 10 s"),
        ],
    };
    let svg_text = render_svg(&fig).unwrap();
    let texts = text_positions(&svg_text);
    // One panel: a 44 px title band above a 400 px chart.
    let chart_bottom = 44.0 + f64::from(render::PANEL_SIZE.1);
    let labels: Vec<&(String, f64, f64)> = texts
        .iter()
        .filter(|t| t.0 == "mean 9.9 s" || t.0 == "p50 10 s")
        .collect();
    assert_eq!(labels.len(), 2, "{texts:?}");
    for l in &labels {
        assert!(l.2 > chart_bottom, "label {l:?} is inside the chart");
    }
    assert!(
        (labels[0].2 - labels[1].2).abs() >= 13.0 || (labels[0].1 - labels[1].1).abs() >= 60.0,
        "labels overlap: {labels:?}"
    );
    // The curve's legend entry is there too, on its own row.
    let curve = texts.iter().find(|t| t.0 == "curve (exact)").unwrap();
    assert!(
        labels
            .iter()
            .all(|l| (l.2 - curve.2).abs() >= 13.0 || l.1 != curve.1)
    );
}

#[test]
fn a_joined_series_is_one_thin_line_not_a_circle_per_point() {
    let n = 500;
    let fig = Figure {
        id: "cdf".into(),
        title: "cdf".into(),
        caption: String::new(),
        panels: vec![
            Panel::new(
                "p",
                Axis::new("x", "s").scale(Scale::Linear),
                Axis::new("F", "1").scale(Scale::Linear),
            )
            .with(
                Series::from_xy(
                    "per request",
                    Method::Simulation,
                    (1..=n).map(|i| (f64::from(i), f64::from(i) / f64::from(n))),
                )
                .joined(),
            ),
        ],
    };
    let svg_text = render_svg(&fig).unwrap();
    let doc = roxmltree::Document::parse(&svg_text).unwrap();
    let circles = doc
        .root_element()
        .descendants()
        .filter(|e| e.has_tag_name("circle"))
        .count();
    assert_eq!(circles, 0, "a joined series draws no circles");
    let longest = doc
        .root_element()
        .descendants()
        .filter(|e| e.has_tag_name("polyline"))
        .map(|e| {
            e.attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .count()
        })
        .max()
        .unwrap_or(0);
    assert_eq!(longest, n as usize, "one polyline through every point");
}

#[test]
fn fig6_batch_size_fixed_and_capped() {
    // docs/models.md §9.6 E2a–c and §9.7 F1, F2 (Set L, λ = 0.3).
    let fig = plots::batch_size(&BatchSizeInput {
        setting: "Set L".into(),
        fixed: vec![
            Series::from_xy(
                "fixed",
                Method::Exact,
                [(4.0, 15.776037), (8.0, 27.517747), (16.0, 53.976173)],
            ),
            Series::from_xy(
                "fixed, det. T",
                Method::Approximation,
                [(4.0, 14.070973), (8.0, 26.276612), (16.0, 52.767937)],
            ),
        ],
        capped: vec![Series::from_xy(
            "cap",
            Method::Exact,
            [(4.0, 9.367067), (8.0, 9.253232)],
        )],
        best_fixed: Some(4.0),
        best_cap: Some(8.0),
        range_note: String::new(),
    })
    .unwrap();
    assert_eq!(fig.panels.len(), 2);
    check_figure(&fig);
}

#[test]
fn auto_scale_turns_log_only_over_two_decades() {
    let ax = Axis::new("b", "requests");
    assert!(axis_coord(&ax, &[1.0, 128.0], "p").unwrap().is_log());
    assert!(!axis_coord(&ax, &[1.0, 64.0], "p").unwrap().is_log());
    assert!(!axis_coord(&ax, &[0.0, 1000.0], "p").unwrap().is_log());
    assert!(
        axis_coord(&ax.clone().scale(Scale::Log), &[2.0, 3.0], "p")
            .unwrap()
            .is_log()
    );
    assert!(
        !axis_coord(&ax.clone().scale(Scale::Linear), &[1.0, 1e6], "p")
            .unwrap()
            .is_log()
    );
    // linear ranges of non-negative data never reach below zero
    let (lo, hi) = axis_coord(&ax, &[0.5, 10.0], "p").unwrap().bounds();
    assert!(lo >= 0.0 && hi > 10.0);
    // a constant series still gets a non-empty range
    let (lo, hi) = axis_coord(&ax, &[3.0, 3.0], "p").unwrap().bounds();
    assert!(lo < 3.0 && hi > 3.0);
}

#[test]
fn log_axis_figure_uses_decade_ticks() {
    let fig = Figure {
        id: "log".into(),
        title: "log".into(),
        caption: String::new(),
        panels: vec![
            Panel::new("p", Axis::new("λ", "req/s"), Axis::new("delay", "s")).with(
                Series::from_xy(
                    "m",
                    Method::Exact,
                    [(1.0, 1.0), (10.0, 100.0), (100.0, 10000.0)],
                ),
            ),
        ],
    };
    let svg = check_figure(&fig);
    for t in ["1", "10", "100", "1000", "10000"] {
        assert!(
            svg.texts.iter().any(|x| x == t),
            "tick {t} in {:?}",
            svg.texts
        );
    }
}

#[test]
fn tick_helpers() {
    assert_eq!(
        linear_ticks(0.0, 1.0, 5),
        vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
    );
    assert_eq!(linear_ticks(-3.0, 7.0, 5), vec![-2.0, 0.0, 2.0, 4.0, 6.0]);
    assert_eq!(
        log_ticks(1.0, 128.0, 10),
        vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
    );
    assert_eq!(log_ticks(0.9, 1e6, 4), vec![1.0, 100.0, 10000.0, 1e6]);
    assert!(log_ticks(-1.0, 10.0, 5).is_empty());
    assert_eq!(format_tick(0.1 * 3.0), "0.3");
    assert_eq!(format_tick(0.6000000000000001), "0.6");
    assert_eq!(format_tick(1e6), "1e6");
    assert_eq!(format_tick(2.5e-4), "2.5e-4");
    assert_eq!(format_tick(-1500.0), "-1500");
    assert_eq!(format_tick(0.0), "0");
    assert_eq!(plots::sig(0.0229925), "0.02299");
    assert_eq!(plots::time_unit([0.02, 0.5]), (1e3, "ms"));
    assert_eq!(plots::time_unit([2e-4]), (1e6, "µs"));
    assert_eq!(plots::time_unit([3.0]), (1.0, "s"));
    let _ = render::PANEL_SIZE;
}

fn one_panel(series: Series, y: Axis) -> Figure {
    Figure {
        id: "t".into(),
        title: "t".into(),
        caption: String::new(),
        panels: vec![Panel::new("p", Axis::new("x", "s"), y).with(series)],
    }
}

#[test]
fn invalid_figures_are_rejected_with_a_reason() {
    let err = |f: &Figure| match render_svg(f) {
        Err(ReportError::InvalidFigure { reason, .. }) => reason,
        other => panic!("expected InvalidFigure, got {other:?}"),
    };
    let ok = Series::from_xy("s", Method::Exact, [(1.0, 1.0), (2.0, 2.0)]);
    // log axis with a zero
    let f = one_panel(
        Series::from_xy("s", Method::Exact, [(1.0, 0.0), (2.0, 2.0)]),
        Axis::new("y", "s").scale(Scale::Log),
    );
    assert!(err(&f).contains("logarithmic"));
    // no finite point
    let f = one_panel(
        Series::from_xy("s", Method::Exact, [(f64::NAN, 1.0)]),
        Axis::new("y", "s"),
    );
    assert!(err(&f).contains("no finite data point"));
    // negative CI
    let f = one_panel(
        Series::new("s", Method::Simulation, [Point::with_ci(1.0, 1.0, -0.1)]),
        Axis::new("y", "s"),
    );
    assert!(err(&f).contains("CI half-width"));
    // bad id
    let mut f = one_panel(ok.clone(), Axis::new("y", "s"));
    f.id = "Fig 1".into();
    assert!(err(&f).contains("id"));
    // no panels
    f.id = "ok".into();
    f.panels.clear();
    assert!(err(&f).contains("no panels"));
    // builders reject empty measurements
    assert!(
        plots::latency_vs_tokens(&LatencyFitInput {
            model: "m".into(),
            measured: vec![],
            per_token_s: 0.02,
            intercept_s: 0.1,
            r2: None
        })
        .is_err()
    );
    assert!(plots::delay_vs_rate(&RateSweepInput::default()).is_err());
}

#[test]
fn non_finite_points_are_skipped_not_drawn() {
    // an unstable point (∞ delay) must not break the figure
    let s = Series::from_xy(
        "s",
        Method::Exact,
        [(1.0, 1.0), (2.0, f64::INFINITY), (3.0, 2.0)],
    );
    let f = one_panel(s, Axis::new("y", "s"));
    let svg = parse(&render_svg(&f).unwrap());
    let colour = series_colour_hex(&f, &f.panels[0].series[0]);
    assert!(svg.lines[&colour].contains(&2));
}

#[test]
fn whole_number_axes_get_no_fractional_ticks() {
    // batch sizes 1..3: a plain 1-2-5 ladder would label 1.5 and 2.5
    let f = one_panel(
        Series::from_xy("s", Method::Exact, [(1.0, 7.6), (2.0, 7.9), (3.0, 9.9)]),
        Axis::new("y", "s"),
    );
    let svg = parse(&render_svg(&f).unwrap());
    assert!(svg.texts.iter().any(|t| t == "2"));
    assert!(
        !svg.texts.iter().any(|t| t == "1.5" || t == "2.5"),
        "{:?}",
        svg.texts
    );
    // the y axis (not whole numbers) keeps its fractional ticks
    assert!(svg.texts.iter().any(|t| t.contains('.')));
}
