//! The continuous-batching report goes through the same page template as the pipeline report:
//! the same skeleton (one `<section>` per part, in order), figures embedded the same way, the
//! numbers of the capacity comparison printed with their method, and the same atomic write path
//! (no file when a figure cannot be drawn). The text parts are pinned by an insta snapshot with
//! the SVG bodies stripped.

use reports::continuous::{
    CapacityRow, ContinuousReport, LatencyData, SECTIONS, StatePoint, figures, render_html,
    write_continuous_report,
};
use reports::html::{REPORT_FILE, escape, text_outline};
use reports::{Method, ReportError, render_svg};

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
        title: "t <x>".into(),
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
        notes: vec!["a note & more".into()],
    }
}

fn rendered(r: &ContinuousReport) -> String {
    let svgs: Vec<String> = figures(r)
        .iter()
        .map(|f| render_svg(f).expect("figure renders"))
        .collect();
    render_html(r, &svgs)
}

#[test]
fn sections_in_order_with_the_shared_skeleton() {
    let html = rendered(&sample());
    let mut last = 0;
    for (id, name) in SECTIONS {
        let tag = format!("<section id=\"{id}\">\n<h2>{}</h2>", escape(name));
        let at = html
            .find(&tag)
            .unwrap_or_else(|| panic!("section {id} missing"));
        assert!(at > last, "section {id} out of order");
        last = at;
    }
    assert_eq!(html.matches("<section").count(), SECTIONS.len());
    assert_eq!(html.matches("</section>").count(), SECTIONS.len());
    assert!(html.contains("<meta name=\"viewport\""));
    assert!(html.contains("<title>t &lt;x&gt;</title>"));
    for id in ["continuous-latency-cdf", "continuous-engine-state"] {
        assert!(html.contains(&format!("<figure id=\"fig-{id}\">")), "{id}");
        assert!(html.contains(&format!("<code>{id}.svg</code>")), "{id}");
    }
    assert_eq!(html.matches("<svg").count(), 2);
    assert!(html.contains(
        "<tr><td>fixed K = 4</td><td class=\"num\">1.25</td><td class=\"num\">8</td>\
         <td>unstable (ρ ≥ 1)</td><td class=\"method\">exact</td><td>n</td></tr>"
    ));
    assert!(html.contains("<td class=\"num\">99.01</td>"));
    assert!(html.contains("<p class=\"note\">a note &amp; more</p>"));
}

#[test]
fn a_missing_svg_leaves_its_figure_out() {
    let r = sample();
    let svg = render_svg(&figures(&r)[0]).expect("figure renders");
    let html = render_html(&r, &[svg]);
    assert!(html.contains("fig-continuous-latency-cdf"));
    assert!(!html.contains("fig-continuous-engine-state"));
    assert!(html.contains("<section id=\"state\">"));
}

#[test]
fn snapshot_of_text_parts() {
    insta::assert_snapshot!(text_outline(&rendered(&sample())));
}

#[test]
fn writes_svgs_then_html_atomically() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = dir.path().join("out");
    let w = write_continuous_report(&sample(), &out).expect("report written");
    assert_eq!(w.html, out.join(REPORT_FILE));
    assert_eq!(
        w.svgs,
        vec![
            out.join("continuous-latency-cdf.svg"),
            out.join("continuous-engine-state.svg")
        ]
    );
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .expect("output directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "continuous-engine-state.svg",
            "continuous-latency-cdf.svg",
            "report.html"
        ]
    );
    let html = std::fs::read_to_string(&w.html).expect("report.html");
    assert_eq!(html, rendered(&sample()));
}

#[test]
fn a_figure_that_cannot_be_drawn_leaves_no_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = dir.path().join("out");
    let mut r = sample();
    r.states.clear();
    r.latencies[0].values_s = vec![f64::NAN];
    assert!(matches!(
        write_continuous_report(&r, &out),
        Err(ReportError::InvalidFigure { .. })
    ));
    assert!(!out.exists(), "nothing may be written when a figure fails");
}
