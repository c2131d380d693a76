//! The HTML report: every section present and in order, every number with unit and method,
//! self-contained (no scripts, no external assets), text escaped, written atomically with no
//! partial output on failure. The text parts are pinned by an insta snapshot with the SVG
//! bodies stripped (the drawings are checked in `tests/plots.rs`).

use reports::html::{METRIC_DEFINITIONS, REPORT_FILE, SECTIONS, render_html, text_outline};
use reports::{
    Axis, Figure, Method, Panel, Point, Quantity, Recommendation, Report, ReportError, Series,
    Table,
};
use reports::{write_atomic, write_report};

fn figure(id: &str) -> Figure {
    Figure {
        id: id.into(),
        title: format!("Figure {id}"),
        caption: "Mean waiting time of the M/G/1 queue with a limit.".into(),
        panels: vec![
            Panel::new(
                "(a) wait",
                Axis::new("max-token limit L", "tokens"),
                Axis::new("E[W_q]", "s"),
            )
            .with(Series::from_xy(
                "patient",
                Method::Exact,
                [(1300.0, 15.79649), (1600.0, 23.0), (3000.0, 56.00195)],
            ))
            .with(Series::new(
                "patient",
                Method::Simulation,
                [
                    Point::with_ci(1600.0, 23.049, 0.064),
                    Point::with_ci(3000.0, 55.94, 0.28),
                ],
            )),
        ],
    }
}

/// A report built from docs/models.md §9.1 (A1, A2) and §9.3 numbers.
fn sample() -> Report {
    Report {
        title: "tokenq report <test>".into(),
        summary: vec!["Set max_tokens to 1600 tokens.".into()],
        fit_warnings: Vec::new(),
        metadata: vec![
            ("tool".into(), "tokenq 0.1.0".into()),
            (
                "command".into(),
                "tokenq pipeline --backend synthetic".into(),
            ),
            (
                "workload".into(),
                "lognormal(7, 0.7), λ = 1/40 req/s".into(),
            ),
        ],
        roofline: None,
        fit_table: Table {
            caption: "Single-request line T(n) = a·n + c".into(),
            columns: vec![
                "term".into(),
                "value".into(),
                "R²".into(),
                "MAPE [%]".into(),
                "n".into(),
            ],
            rows: vec![vec![
                "per_token_s".into(),
                "0.02203 s/token".into(),
                "0.9990".into(),
                "1.2".into(),
                "24".into(),
            ]],
        },
        coefficients: vec![
            Quantity::new("per-token time a", 0.02203184157, "s/token", Method::Fitted),
            Quantity::new("intercept c", 0.7764157233, "s", Method::Fitted),
        ],
        recommendations: vec![Recommendation {
            question: "Which max-token limit?".into(),
            answer: Quantity::new("L*", 1600.0, "tokens", Method::Exact),
            basis: vec![
                Quantity::new("E[W_q] at L*", 23.0, "s", Method::Exact)
                    .note("P-K, docs/models.md §1"),
                Quantity::new("E[W_q] at L*", 23.049, "s", Method::Simulation).with_ci(0.064),
                Quantity::new("E[W_q] at L = 3000", 56.00195, "s", Method::Exact),
                Quantity::new("ρ at L*", 0.61583798, "1", Method::Exact),
                Quantity::new("E[W_q] without a limit", f64::INFINITY, "s", Method::Exact)
                    .note("unstable"),
            ],
            note: "Maximises F(L) = βŪ − (1−β)E[W_q], β = 119/120, U = 1{n ≤ L}.".into(),
        }],
        capacity_plan: None,
        figures: vec![figure("fig-a"), figure("fig-b")],
        notes: vec!["Synthetic backend: timings are a model, not a measurement.".into()],
    }
}

#[test]
fn report_holds_every_section_in_order() {
    let html = render_html(&sample()).unwrap();
    let mut last = 0;
    for (id, name) in SECTIONS {
        let tag = format!("<section id=\"{id}\">\n<h2>{name}</h2>");
        let at = html
            .find(&tag)
            .unwrap_or_else(|| panic!("section {id} missing"));
        assert!(at > last, "section {id} out of order");
        last = at;
    }
    assert_eq!(html.matches("<section").count(), SECTIONS.len());
    assert_eq!(html.matches("</section>").count(), SECTIONS.len());
    for (term, _) in METRIC_DEFINITIONS {
        assert!(html.contains(term), "definition of {term}");
    }
    for t in ["TTFT", "TPOT", "ITL", "e2e"] {
        assert!(html.contains(t));
    }
    // two inline figures, each a complete SVG with a viewBox
    assert_eq!(html.matches("<svg").count(), 2);
    assert_eq!(html.matches("</svg>").count(), 2);
    assert!(!html.contains("<?xml"));
}

#[test]
fn numbers_carry_units_and_methods() {
    let html = render_html(&sample()).unwrap();
    assert!(
        html.contains("<strong>L*: 1600 tokens</strong> <span class=\"method\">(exact)</span>")
    );
    assert!(html.contains("23.05 ± 0.064 s</td><td class=\"method\">simulation (95% CI)"));
    assert!(html.contains("0.02203 s/token</td><td class=\"method\">fitted"));
    // dimensionless: no unit suffix
    assert!(html.contains("<td class=\"num\">0.6158</td>"));
    // an unstable queue prints ∞, not "inf"
    assert!(html.contains("∞ s"));
    assert!(!html.contains("inf s"));
}

#[test]
fn self_contained_and_escaped() {
    let html = render_html(&sample()).unwrap();
    assert!(html.contains("tokenq report &lt;test&gt;"));
    assert!(!html.contains("<test>"));
    for banned in ["<script", "<link", "src=", "@import", "https://", "url("] {
        assert!(!html.contains(banned), "found {banned}");
    }
    // the only URL is the SVG namespace
    let urls = html.matches("http://").count();
    assert_eq!(urls, html.matches("http://www.w3.org/2000/svg").count());
}

#[test]
fn snapshot_of_text_parts() {
    let html = render_html(&sample()).unwrap();
    insta::assert_snapshot!(text_outline(&html));
}

#[test]
fn write_report_writes_svgs_then_html() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let w = write_report(&sample(), &out).unwrap();
    assert_eq!(w.html, out.join(REPORT_FILE));
    assert_eq!(w.svgs, vec![out.join("fig-a.svg"), out.join("fig-b.svg")]);
    for p in w.svgs.iter().chain([&w.html]) {
        assert!(p.is_file(), "{}", p.display());
    }
    let svg = std::fs::read_to_string(&w.svgs[0]).unwrap();
    roxmltree::Document::parse(&svg).unwrap();
    // nothing else in the directory (no temporary files left)
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["fig-a.svg", "fig-b.svg", "report.html"]);
}

#[test]
fn invalid_report_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // a figure that cannot be drawn (no finite point), after a valid one
    let mut r = sample();
    r.figures[1].panels[0].series = vec![Series::from_xy("s", Method::Exact, [(f64::NAN, 1.0)])];
    assert!(matches!(
        write_report(&r, &out),
        Err(ReportError::InvalidFigure { .. })
    ));
    assert!(!out.exists(), "nothing may be written when a figure fails");

    let mut r = sample();
    r.coefficients.clear();
    let e = write_report(&r, &out).unwrap_err();
    assert_eq!(e.to_string(), "report: it has no coefficients");
    assert!(!out.exists());

    let mut r = sample();
    r.figures[1].id = "fig-a".into();
    assert!(
        write_report(&r, &out)
            .unwrap_err()
            .to_string()
            .contains("share the id 'fig-a'")
    );

    let mut r = sample();
    r.fit_table.rows[0].pop();
    assert!(
        write_report(&r, &out)
            .unwrap_err()
            .to_string()
            .contains("4 cells for 5 columns")
    );
}

#[test]
fn atomic_write_replaces_whole_file_and_reports_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.txt");
    write_atomic(&p, b"first version, longer").unwrap();
    write_atomic(&p, b"second").unwrap();
    assert_eq!(std::fs::read_to_string(&p).unwrap(), "second");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let bad = dir.path().join("missing-dir").join("a.txt");
    let e = write_atomic(&bad, b"x").unwrap_err();
    assert!(e.to_string().contains("missing-dir"), "{e}");
}

#[test]
fn empty_fit_table_says_so() {
    let mut r = sample();
    r.fit_table = Table::default();
    let html = render_html(&r).unwrap();
    assert!(html.contains("No fit in this run"));
}

#[test]
fn each_figure_title_is_printed_once() {
    // The SVG draws the title; the page around it must not repeat it.
    let html = render_html(&sample()).unwrap();
    for id in ["fig-a", "fig-b"] {
        let title = format!("Figure {id}");
        assert_eq!(html.matches(&title).count(), 1, "{title}");
        // ... and it is the SVG's copy.
        assert_eq!(text_outline(&html).matches(&title).count(), 0, "{title}");
    }
}

#[test]
fn summary_opens_the_report() {
    let html = render_html(&sample()).unwrap();
    let summary = html.find("<section id=\"summary\">").unwrap();
    let first_other = SECTIONS[1..]
        .iter()
        .filter_map(|(id, _)| html.find(&format!("<section id=\"{id}\">")))
        .min()
        .unwrap();
    assert!(summary < first_other);
    let para = html.find("<p>Set max_tokens to 1600 tokens.</p>").unwrap();
    assert!(para > summary && para < first_other);
}

#[test]
fn fit_warnings_are_shown_in_the_summary_and_above_the_fit_table() {
    let mut r = sample();
    r.fit_warnings = vec!["t2(b): R² 0.50 is below 0.9".into()];
    let html = render_html(&r).unwrap();
    let warn = "<p class=\"warn\">Warning: t2(b): R² 0.50 is below 0.9</p>";
    let at = html.find(warn).expect("warning above the fit table");
    let fit = html.find("<section id=\"fit\">").unwrap();
    let table = fit + html[fit..].find("<table>").unwrap();
    assert!(at > fit && at < table);
    let summary = html.find("<section id=\"summary\">").unwrap();
    let run = html.find("<section id=\"run\">").unwrap();
    let s = &html[summary..run];
    assert!(
        s.contains("class=\"warn\"") && s.contains("1 poor fit(s)"),
        "{s}"
    );
    // No warnings: no warning markup at all.
    assert!(!render_html(&sample()).unwrap().contains("class=\"warn\""));
}

#[test]
fn percentiles_stand_beside_the_mean() {
    use reports::Percentiles;
    let mut r = sample();
    r.recommendations[0].basis = vec![
        Quantity::new("mean wait", 2.0, "s", Method::Exact)
            .with_percentiles(Percentiles::new([1.0, 5.0, 9.0], Method::Exact)),
        Quantity::new("mean latency", 3.0, "s", Method::Simulation)
            .with_ci(0.1)
            .with_percentiles(Percentiles::with_ci([2.0, 6.0, 10.0], [0.2, 0.3, 0.4])),
        Quantity::new("utilisation", 0.5, "1", Method::Exact),
    ];
    let html = render_html(&r).unwrap();
    assert!(html.contains(
        "<th>quantity</th><th>value (mean)</th><th>p50</th><th>p90</th><th>p99</th><th>method</th>"
    ));
    assert!(html.contains(
        "<td>mean wait</td><td class=\"num\">2 s</td><td class=\"num\">1 s</td>\
         <td class=\"num\">5 s</td><td class=\"num\">9 s</td><td class=\"method\">exact</td>"
    ));
    assert!(html.contains("<td class=\"num\">6 ± 0.3 s</td>"));
    // A quantity without percentiles gets dashes, not invented numbers.
    assert!(
        html.contains("<td>utilisation</td><td class=\"num\">0.5</td><td class=\"num\">-</td>")
    );
    assert_eq!(
        Percentiles::new([1.0, 5.0, 9.0], Method::Exact).text("s"),
        "p50 1 s, p90 5 s, p99 9 s"
    );
}

#[test]
fn capacity_plan_table_follows_the_recommendations() {
    let mut r = sample();
    r.capacity_plan = Some(Table {
        caption: "Configurations that meet every SLO at 3 req/s.".into(),
        columns: vec!["GPUs".into(), "e2e:p99<=20s".into()],
        rows: vec![vec!["1".into(), "17.9 ± 0.1 s (sim)".into()]],
    });
    let html = render_html(&r).unwrap();
    let rec = html.find("<section id=\"recommendations\">").unwrap();
    let plots = html.find("<section id=\"plots\">").unwrap();
    let at = html
        .find("<h3>Capacity plan</h3>")
        .expect("capacity plan heading");
    assert!(rec < at && at < plots);
    assert!(html[at..plots].contains("<td>17.9 ± 0.1 s (sim)</td>"));
    // Without it, no heading.
    assert!(!render_html(&sample()).unwrap().contains("Capacity plan"));
}
