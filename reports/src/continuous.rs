//! The continuous-batching report: the sections of the report on a replay of a trace through
//! the vLLM V1 scheduler (`sim::continuous`, docs/serving.md), rendered through the crate's one
//! page template (the same stylesheet, skeleton, figure and table markup and atomic write path
//! as the pipeline report in [`crate::html`]):
//!
//! * the empirical CDFs of TTFT, TPOT and E2E (vLLM's definitions), mean/p50/p90/p99 marked;
//! * running and waiting requests and KV blocks in use over time, and the preemption count
//!   (with several data-parallel engines, also each engine's, [`engines_figure`]);
//! * the capacity comparison with the paper's batching policies on the same trace (Yang, Xu,
//!   Jiao 2024 §IV; docs/models.md §6–§8): each policy's load ρ at the trace's mean arrival rate
//!   and its largest stable arrival rate, next to what the continuous simulation served.
//!
//! The data are plain (computed by the caller); this module only draws them and lays them out
//! as sections. Every number carries its unit and its method label.

use std::path::Path;

use crate::ReportError;
use crate::figure::{Axis, Figure, Method, Panel, Scale, Series};
use crate::html::format_number;
use crate::page::{Block, Cell, Page, Section, write_document};

/// Most points drawn per time series (longer series are thinned evenly; the CSV from
/// `--series` keeps every iteration).
pub const MAX_SERIES_POINTS: usize = 400;

/// One latency metric's per-request values and summary (seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyData {
    /// Metric name, e.g. `TTFT`.
    pub name: String,
    /// Definition shown in the caption.
    pub definition: String,
    /// Per-request values, seconds.
    pub values_s: Vec<f64>,
    /// Mean, p50, p90, p99, seconds.
    pub mean_s: f64,
    pub p50_s: f64,
    pub p90_s: f64,
    pub p99_s: f64,
}

/// The engine state at one iteration start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatePoint {
    /// Seconds since the first arrival.
    pub t_s: f64,
    pub running: u32,
    pub waiting: u32,
    pub kv_blocks_used: u32,
}

/// One data-parallel engine's state over time.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineStates {
    /// e.g. `engine 0`.
    pub name: String,
    /// The engine's KV cache, blocks.
    pub kv_blocks: u32,
    pub preemptions: u64,
    pub states: Vec<StatePoint>,
}

/// One row of the capacity comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityRow {
    /// Policy, e.g. `fixed K = 50 (paper §IV-B)`.
    pub policy: String,
    /// Load ρ at the trace's mean arrival rate (dimensionless); NaN where not defined.
    pub load: f64,
    /// Largest stable arrival rate (req/s); for the simulation, the completion rate it achieved.
    pub max_rate_req_s: f64,
    /// Method label (exact, simulation, …).
    pub method: Method,
    /// Verdict at the trace's mean rate, e.g. `unstable (ρ ≥ 1)`.
    pub verdict: String,
    /// How the numbers were obtained.
    pub note: String,
}

/// Everything the continuous-batching report shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ContinuousReport {
    pub title: String,
    /// Run metadata as (key, value): trace, engine settings, step model, command.
    pub metadata: Vec<(String, String)>,
    pub latencies: Vec<LatencyData>,
    pub states: Vec<StatePoint>,
    /// KV cache size, blocks.
    pub kv_blocks: u32,
    pub preemptions: u64,
    pub requests: usize,
    pub completed: usize,
    /// Trace mean arrival rate, req/s.
    pub arrival_rate_req_s: f64,
    pub capacity: Vec<CapacityRow>,
    /// How the paper-level coefficients were derived (shown above the capacity table).
    pub capacity_basis: Vec<String>,
    pub notes: Vec<String>,
}

/// The sections of the report, as (anchor id, heading).
pub const SECTIONS: [(&str, &str); 5] = [
    ("run", "Run"),
    ("latency", "Latency distributions"),
    ("state", "Engine state over time"),
    (
        "capacity",
        "Capacity: continuous batching vs the paper's policies",
    ),
    ("definitions", "Definitions"),
];

/// Empirical CDF figure: one panel per metric, mean/p50/p90/p99 marked.
pub fn latency_figure(lat: &[LatencyData]) -> Figure {
    let panels = lat
        .iter()
        .map(|l| {
            let mut v: Vec<f64> = l
                .values_s
                .iter()
                .copied()
                .filter(|x| x.is_finite())
                .collect();
            v.sort_by(f64::total_cmp);
            let n = v.len() as f64;
            let pts = v
                .iter()
                .enumerate()
                .map(|(i, &x)| (x, (i as f64 + 1.0) / n));
            Panel::new(
                format!("{} empirical CDF ({} requests)", l.name, v.len()),
                Axis::new(l.name.clone(), "s").from_zero(),
                Axis::new("fraction of requests ≤ x", "")
                    .scale(Scale::Linear)
                    .from_zero(),
            )
            .with(
                Series::from_xy(format!("{} per request", l.name), Method::Simulation, pts)
                    .joined(),
            )
            .mark(l.mean_s, format!("mean {} s", format_number(l.mean_s)))
            .mark(l.p50_s, format!("p50 {} s", format_number(l.p50_s)))
            .mark(l.p90_s, format!("p90 {} s", format_number(l.p90_s)))
            .mark(l.p99_s, format!("p99 {} s", format_number(l.p99_s)))
        })
        .collect();
    Figure {
        id: "continuous-latency-cdf".into(),
        title: "Latency distributions (continuous batching, simulation)".into(),
        caption: lat
            .iter()
            .map(|l| format!("{}: {}.", l.name, l.definition))
            .collect::<Vec<_>>()
            .join(" ")
            + " Line: the fraction of requests at or below each value in the deterministic replay; vertical lines (each with its own dash pattern, named in the legend): mean, p50, p90, p99.",
        panels,
    }
}

/// Evenly thinned copy of `s` with at most `max` points (first and last kept).
fn thin<T: Copy>(s: &[T], max: usize) -> Vec<T> {
    if s.len() <= max || max < 2 {
        return s.to_vec();
    }
    let step = (s.len() - 1) as f64 / (max - 1) as f64;
    (0..max)
        .map(|i| s[((i as f64 * step).round() as usize).min(s.len() - 1)])
        .collect()
}

/// Running / waiting requests and KV use over time (two panels).
pub fn state_figure(states: &[StatePoint], kv_blocks: u32, preemptions: u64) -> Figure {
    let s = thin(states, MAX_SERIES_POINTS);
    let req = Panel::new(
        "Requests in the engine",
        Axis::new("time since first arrival", "s").from_zero(),
        Axis::new("requests", "").scale(Scale::Linear).from_zero(),
    )
    .with(Series::from_xy(
        "running",
        Method::Simulation,
        s.iter().map(|p| (p.t_s, f64::from(p.running))),
    ))
    .with(Series::from_xy(
        "waiting",
        Method::Simulation,
        s.iter().map(|p| (p.t_s, f64::from(p.waiting))),
    ));
    let kv = Panel::new(
        format!("KV cache use ({kv_blocks} blocks; {preemptions} preemptions)"),
        Axis::new("time since first arrival", "s").from_zero(),
        Axis::new("KV blocks in use", "% of cache")
            .scale(Scale::Linear)
            .from_zero(),
    )
    .with(Series::from_xy(
        "KV blocks in use",
        Method::Simulation,
        s.iter().map(|p| {
            (
                p.t_s,
                100.0 * f64::from(p.kv_blocks_used) / f64::from(kv_blocks.max(1)),
            )
        }),
    ));
    Figure {
        id: "continuous-engine-state".into(),
        title: "Running, waiting and KV use over time (continuous batching, simulation)".into(),
        caption: format!(
            "State after scheduling at the start of each iteration (at most {MAX_SERIES_POINTS} evenly spaced iterations drawn; `--series` writes all). Waiting = arrived, not running (including preempted requests)."
        ),
        panels: vec![req, kv],
    }
}

/// Each engine's running and waiting requests and KV use over time (three panels, one series
/// per engine).
pub fn engines_figure(engines: &[EngineStates]) -> Figure {
    let axis_t = || Axis::new("time since first arrival", "s").from_zero();
    let mut running = Panel::new(
        "Running requests per engine",
        axis_t(),
        Axis::new("requests", "").scale(Scale::Linear).from_zero(),
    );
    let mut waiting = Panel::new(
        "Waiting requests per engine",
        axis_t(),
        Axis::new("requests", "").scale(Scale::Linear).from_zero(),
    );
    let mut kv = Panel::new(
        "KV cache use per engine",
        axis_t(),
        Axis::new("KV blocks in use", "% of the engine's cache")
            .scale(Scale::Linear)
            .from_zero(),
    );
    for e in engines {
        let s = thin(&e.states, MAX_SERIES_POINTS);
        running = running.with(Series::from_xy(
            format!("{} running", e.name),
            Method::Simulation,
            s.iter().map(|p| (p.t_s, f64::from(p.running))),
        ));
        waiting = waiting.with(Series::from_xy(
            format!("{} waiting", e.name),
            Method::Simulation,
            s.iter().map(|p| (p.t_s, f64::from(p.waiting))),
        ));
        kv = kv.with(Series::from_xy(
            format!("{} KV ({} preemptions)", e.name, e.preemptions),
            Method::Simulation,
            s.iter().map(|p| {
                (
                    p.t_s,
                    100.0 * f64::from(p.kv_blocks_used) / f64::from(e.kv_blocks.max(1)),
                )
            }),
        ));
    }
    Figure {
        id: "continuous-engines-state".into(),
        title:
            "Running, waiting and KV use per data-parallel engine (continuous batching, simulation)"
                .into(),
        caption: format!(
            "Each engine's state after scheduling at the start of each of its iterations (dummy steps of an engine in lockstep included; at most {MAX_SERIES_POINTS} evenly spaced iterations drawn per engine; `--series` writes all). The figure above sums the engines."
        ),
        panels: vec![running, waiting, kv],
    }
}

/// The report's figures, in order.
pub fn figures(r: &ContinuousReport) -> Vec<Figure> {
    vec![
        latency_figure(&r.latencies),
        state_figure(&r.states, r.kv_blocks, r.preemptions),
    ]
}

/// The report's figures with the per-engine state figure last (when there are two engines or
/// more).
pub fn figures_with_engines(r: &ContinuousReport, engines: &[EngineStates]) -> Vec<Figure> {
    let mut f = figures(r);
    if engines.len() > 1 {
        f.push(engines_figure(engines));
    }
    f
}

/// Method label of every latency summary (one deterministic replay: no interval).
const LATENCY_METHOD: &str = "simulation (deterministic replay, no CI)";

/// The definitions section.
const DEFINITIONS: [&str; 3] = [
    "TTFT = first token − arrival; TPOT = (last token − first token)/(output tokens − 1); E2E = last token − arrival (vLLM's definitions), seconds.",
    "ρ = λ·E[T_K]/K for a batch cap K (the paper's load); a policy is stable iff ρ < 1, and its largest stable arrival rate is K/E[T_K].",
    "simulation: one deterministic replay of the trace (no randomness, so no confidence interval); exact: closed form of the paper-level model for the stated coefficients.",
];

/// The report as a page of [`SECTIONS`]; `figs` are [`figures`] of `r`, `svgs` their SVGs
/// (a figure without an SVG is left out).
fn page<'a>(r: &'a ContinuousReport, figs: &'a [Figure], svgs: &'a [String]) -> Page<'a> {
    let mut s = SECTIONS.map(Section::new);
    let [run, latency, state, capacity, definitions] = &mut s;
    let figure = |section: &mut Section<'a>, i: usize| {
        if let (Some(figure), Some(svg)) = (figs.get(i), svgs.get(i)) {
            section.push(Block::Figure { figure, svg });
        }
    };

    let mut meta = r.metadata.clone();
    meta.extend([
        (
            "requests".to_string(),
            format!(
                "{} in the trace, {} completed (simulation)",
                r.requests, r.completed
            ),
        ),
        (
            "preemptions".to_string(),
            format!("{} (recompute; simulation)", r.preemptions),
        ),
        (
            "mean arrival rate".to_string(),
            format!(
                "{} req/s (trace: (n − 1)/arrival span)",
                format_number(r.arrival_rate_req_s)
            ),
        ),
    ]);
    run.push(Block::KeyValues(meta));
    for n in &r.notes {
        run.push(Block::note(n.as_str()));
    }

    latency.push(Block::Table {
        columns: [
            "metric", "mean (s)", "p50 (s)", "p90 (s)", "p99 (s)", "method",
        ]
        .map(String::from)
        .into(),
        rows: r
            .latencies
            .iter()
            .map(|l| {
                let mut row = vec![Cell::text(l.name.as_str())];
                row.extend(
                    [l.mean_s, l.p50_s, l.p90_s, l.p99_s].map(|v| Cell::num(format_number(v))),
                );
                row.push(Cell::method(LATENCY_METHOD));
                row
            })
            .collect(),
    });
    figure(latency, 0);

    figure(state, 1);
    figure(state, 2);

    for b in &r.capacity_basis {
        capacity.push(Block::text(b.as_str()));
    }
    capacity.push(Block::Table {
        columns: [
            "policy",
            "load ρ at the trace's mean rate",
            "largest stable rate (req/s)",
            "verdict at the mean rate",
            "method",
            "how",
        ]
        .map(String::from)
        .into(),
        rows: r
            .capacity
            .iter()
            .map(|c| {
                vec![
                    Cell::text(c.policy.as_str()),
                    Cell::num(format_number(c.load)),
                    Cell::num(format_number(c.max_rate_req_s)),
                    Cell::text(c.verdict.as_str()),
                    Cell::method(c.method.label()),
                    Cell::text(c.note.as_str()),
                ]
            })
            .collect(),
    });

    definitions.push(Block::List(DEFINITIONS.map(String::from).into()));

    Page {
        title: &r.title,
        sections: s.into(),
    }
}

/// Render the HTML with the given SVGs (same order as [`figures`]; a missing SVG leaves its
/// figure out).
pub fn render_html(r: &ContinuousReport, svgs: &[String]) -> String {
    let figs = figures(r);
    page(r, &figs, svgs).render()
}

/// [`render_html`] with the per-engine figure ([`figures_with_engines`] order).
pub fn render_html_with_engines(
    r: &ContinuousReport,
    engines: &[EngineStates],
    svgs: &[String],
) -> String {
    let figs = figures_with_engines(r, engines);
    page(r, &figs, svgs).render()
}

/// [`write_continuous_report`] with each data-parallel engine's state over time.
pub fn write_continuous_report_with_engines(
    r: &ContinuousReport,
    engines: &[EngineStates],
    dir: &Path,
) -> Result<WrittenContinuous, ReportError> {
    let figs = figures_with_engines(r, engines);
    write_document(dir, &figs, |svgs| page(r, &figs, svgs).render())
}

/// Files written by [`write_continuous_report`] (the same as the pipeline report's).
pub type WrittenContinuous = crate::html::WrittenReport;

/// Render the figures, then write `dir/<id>.svg` and `dir/report.html` (the directory is
/// created if missing), each atomically; a figure that cannot be drawn leaves no file behind.
pub fn write_continuous_report(
    r: &ContinuousReport,
    dir: &Path,
) -> Result<WrittenContinuous, ReportError> {
    let figs = figures(r);
    write_document(dir, &figs, |svgs| page(r, &figs, svgs).render())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render_svg;

    fn sample() -> ContinuousReport {
        let lat = |name: &str, scale: f64| {
            let values_s: Vec<f64> = (1..=100).map(|i| scale * f64::from(i)).collect();
            LatencyData {
                name: name.into(),
                definition: "test".into(),
                mean_s: scale * 50.5,
                p50_s: scale * 50.5,
                p90_s: scale * 90.1,
                p99_s: scale * 99.01,
                values_s,
            }
        };
        ContinuousReport {
            title: "t".into(),
            metadata: vec![("trace".into(), "x.csv".into())],
            latencies: vec![lat("TTFT", 0.1), lat("TPOT", 0.001), lat("E2E", 1.0)],
            states: (0..1000)
                .map(|i| StatePoint {
                    t_s: f64::from(i) * 0.01,
                    running: i % 7,
                    waiting: i % 5,
                    kv_blocks_used: i % 100,
                })
                .collect(),
            kv_blocks: 100,
            preemptions: 3,
            requests: 100,
            completed: 100,
            arrival_rate_req_s: 10.0,
            capacity: vec![CapacityRow {
                policy: "fixed K = 4".into(),
                load: 1.25,
                max_rate_req_s: 8.0,
                method: Method::Exact,
                verdict: "unstable (ρ ≥ 1)".into(),
                note: "n".into(),
            }],
            capacity_basis: vec!["k1 = 1 s/req".into()],
            notes: vec![],
        }
    }

    fn texts(svg: &str) -> Vec<String> {
        let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text().map(|t| t.trim().to_string()))
            .collect()
    }

    #[test]
    fn svgs_parse_and_hold_every_series_and_marker() {
        let r = sample();
        let figs = figures(&r);
        let lat = texts(&render_svg(&figs[0]).unwrap());
        for want in ["TTFT per request", "TPOT per request", "E2E per request"] {
            assert!(lat.iter().any(|t| t.contains(want)), "{want} in {lat:?}");
        }
        // The markers at the values given (format_number: four significant digits).
        for want in ["p90 9.01 s", "p99 99.01 s", "mean 50.5 s"] {
            assert!(lat.iter().any(|t| t.contains(want)), "{want} in {lat:?}");
        }
        let st = texts(&render_svg(&figs[1]).unwrap());
        for want in ["running", "waiting", "KV blocks in use", "3 preemptions"] {
            assert!(st.iter().any(|t| t.contains(want)), "{want} in {st:?}");
        }
    }

    #[test]
    fn ecdf_ends_at_one_and_thinning_keeps_the_ends() {
        let f = latency_figure(&sample().latencies);
        let pts = &f.panels[0].series[0].points;
        assert_eq!(pts.len(), 100);
        assert_eq!(pts.last().unwrap().y, 1.0);
        assert!((pts[0].y - 0.01).abs() < 1e-12);
        let v: Vec<u32> = (0..1000).collect();
        let t = thin(&v, MAX_SERIES_POINTS);
        assert_eq!(t.len(), MAX_SERIES_POINTS);
        assert_eq!((t[0], *t.last().unwrap()), (0, 999));
        assert_eq!(thin(&v[..3], MAX_SERIES_POINTS), vec![0, 1, 2]);
    }
}
