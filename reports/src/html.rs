//! The report document: one self-contained HTML file (inline SVG, inline CSS, no scripts, no
//! external assets) with the sections a reader needs to trust a recommendation:
//! run metadata, the fit table, the coefficients, the recommended max-token limit and batch
//! size with the numbers behind them, the plots, and the metric definitions (DESIGN.md:
//! TTFT, TPOT, ITL, e2e, in the form vLLM's `bench serve` uses).
//!
//! Every number is printed with its unit and the method that produced it
//! ([`Method`]: exact, bound, approximation, simulation with its 95% CI, measured, fitted).
//! [`write_report`] renders every figure first, then writes the SVG files and finally the HTML,
//! each atomically, so `report.html` exists only when the whole report was produced.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::figure::{Figure, Method};
use crate::{ReportError, render_svg, write_atomic};

/// File name of the report inside the output directory.
pub const REPORT_FILE: &str = "report.html";

/// The section ids and headings, in document order. Tests check that each is present.
pub const SECTIONS: [(&str, &str); 6] = [
    ("run", "Run"),
    ("fit", "Fit"),
    ("coefficients", "Coefficients"),
    ("recommendations", "Recommendations"),
    ("plots", "Plots"),
    ("definitions", "Metric definitions"),
];

/// Metric definitions printed in every report (DESIGN.md, "Metric definitions"; MATH.md
/// notation for the queueing quantities).
pub const METRIC_DEFINITIONS: [(&str, &str); 8] = [
    (
        "TTFT (time to first token)",
        "time from submission to the first output token: queueing plus prefill",
    ),
    (
        "TPOT (time per output token)",
        "(e2e − TTFT) / (output_tokens − 1), averaged over tokens 2..n of one request",
    ),
    (
        "ITL (inter-token latency)",
        "the gap between two consecutive tokens of one request",
    ),
    (
        "e2e (end-to-end latency)",
        "time from submission to the last token of the reply",
    ),
    (
        "waiting time W_q",
        "arrival to the start of the request's service (batch); excludes its own processing",
    ),
    (
        "latency (sojourn)",
        "waiting time plus the request's own processing, i.e. e2e for a queued request",
    ),
    (
        "loss fraction π(τ)",
        "long-run fraction of users who leave because their wait would exceed the patience τ",
    ),
    (
        "ρ (utilisation)",
        "arrival rate × mean service time; a single-server queue is stable only when ρ < 1",
    ),
];

/// One reported number: value, unit, method, optional 95% CI half-width.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quantity {
    pub name: String,
    pub value: f64,
    /// "s", "s/token", "tokens", "req/s", "1" for dimensionless.
    pub unit: String,
    pub method: Method,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci95: Option<f64>,
    /// How it was obtained or what it assumes (shown beside it).
    #[serde(default)]
    pub note: String,
}

impl Quantity {
    /// A quantity without interval or note.
    pub fn new(
        name: impl Into<String>,
        value: f64,
        unit: impl Into<String>,
        method: Method,
    ) -> Self {
        Quantity {
            name: name.into(),
            value,
            unit: unit.into(),
            method,
            ci95: None,
            note: String::new(),
        }
    }

    /// Attach a 95% CI half-width.
    pub fn with_ci(mut self, half_width: f64) -> Self {
        self.ci95 = Some(half_width);
        self
    }

    /// Attach a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    /// "23.05 ± 0.06 s" (value, interval if any, unit).
    pub fn value_text(&self) -> String {
        let unit = if self.unit.is_empty() || self.unit == "1" {
            String::new()
        } else {
            format!(" {}", self.unit)
        };
        let v = format_number(self.value);
        match self.ci95 {
            Some(h) => format!("{v} ± {}{unit}", format_number(h)),
            None => format!("{v}{unit}"),
        }
    }

    /// The method label, "simulation (95% CI)" for simulations with an interval.
    pub fn method_text(&self) -> String {
        match (self.method, self.ci95) {
            (Method::Simulation, Some(_)) => "simulation (95% CI)".into(),
            (m, _) => m.label().into(),
        }
    }
}

/// A recommended setting and the numbers it rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    /// The question answered, e.g. "Which max-token limit?".
    pub question: String,
    pub answer: Quantity,
    /// The numbers behind it: predicted wait at the optimum and at the alternatives, the
    /// simulation that checks the prediction, ...
    pub basis: Vec<Quantity>,
    /// Assumptions and the objective optimised.
    #[serde(default)]
    pub note: String,
}

/// A table of already formatted cells (each header names its unit).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Table {
    pub caption: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Everything the report shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub title: String,
    /// Run metadata as (key, value): tool version, command, backend, device, model, workload...
    pub metadata: Vec<(String, String)>,
    /// The fit table (one row per fitted term: coefficient, R², MAPE, n, range).
    pub fit_table: Table,
    /// The fitted coefficients with units.
    pub coefficients: Vec<Quantity>,
    pub recommendations: Vec<Recommendation>,
    pub figures: Vec<Figure>,
    /// Free-text remarks (limitations, warnings), shown under the run metadata.
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The files written by [`write_report`].
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenReport {
    pub html: PathBuf,
    pub svgs: Vec<PathBuf>,
}

impl Report {
    /// Check what every report must hold: a title, metadata, at least one coefficient, one
    /// recommendation and one figure, and unique figure ids.
    pub fn validate(&self) -> Result<(), ReportError> {
        let missing = |what: &str| Err(ReportError::InvalidReport(format!("it has no {what}")));
        if self.title.trim().is_empty() {
            return missing("title");
        }
        if self.metadata.is_empty() {
            return missing("run metadata");
        }
        if self.coefficients.is_empty() {
            return missing("coefficients");
        }
        if self.recommendations.is_empty() {
            return missing("recommendation");
        }
        if self.figures.is_empty() {
            return missing("figure");
        }
        let mut ids: Vec<&str> = self.figures.iter().map(|f| f.id.as_str()).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(ReportError::InvalidReport(format!(
                "two figures share the id '{}'",
                w[0]
            )));
        }
        if let Some(r) = self
            .fit_table
            .rows
            .iter()
            .find(|r| r.len() != self.fit_table.columns.len())
        {
            return Err(ReportError::InvalidReport(format!(
                "a fit-table row has {} cells for {} columns",
                r.len(),
                self.fit_table.columns.len()
            )));
        }
        Ok(())
    }
}

/// A number with four significant digits; scientific notation for very large or small values;
/// "∞" for infinities (an unstable queue) and "n/a" for NaN.
pub fn format_number(v: f64) -> String {
    if v.is_nan() {
        return "n/a".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "∞".into()
        } else {
            "−∞".into()
        };
    }
    crate::plots::sig(v)
}

/// Escape text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;\
max-width:1280px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}\
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.method{font-size:.85em;color:#555}figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}\
figcaption{color:#444;max-width:60em}nav a{margin-right:1em}.note{color:#555}";

/// Render the report with the given SVG bodies (one per figure, same order).
fn render_with(report: &Report, svgs: &[String]) -> String {
    let mut h = String::new();
    let t = escape(&report.title);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n<nav>"
    );
    for (id, name) in SECTIONS {
        let _ = write!(h, "<a href=\"#{id}\">{name}</a>");
    }
    h.push_str("</nav>\n");

    // Run
    section(&mut h, 0);
    h.push_str("<table>\n");
    for (k, v) in &report.metadata {
        let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
    }
    h.push_str("</table>\n");
    for n in &report.notes {
        let _ = writeln!(h, "<p class=\"note\">{}</p>", escape(n));
    }

    // Fit
    section(&mut h, 1);
    if report.fit_table.rows.is_empty() {
        h.push_str("<p>No fit in this run (coefficients were read from a file).</p>\n");
    } else {
        if !report.fit_table.caption.is_empty() {
            let _ = writeln!(h, "<p>{}</p>", escape(&report.fit_table.caption));
        }
        h.push_str("<table>\n<tr>");
        for c in &report.fit_table.columns {
            let _ = write!(h, "<th>{}</th>", escape(c));
        }
        h.push_str("</tr>\n");
        for r in &report.fit_table.rows {
            h.push_str("<tr>");
            for c in r {
                let _ = write!(h, "<td>{}</td>", escape(c));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
    }

    // Coefficients
    section(&mut h, 2);
    quantity_table(&mut h, &report.coefficients);

    // Recommendations
    section(&mut h, 3);
    for r in &report.recommendations {
        let _ = writeln!(
            h,
            "<h3>{}</h3>\n<p><strong>{}: {}</strong> <span class=\"method\">({})</span></p>",
            escape(&r.question),
            escape(&r.answer.name),
            escape(&r.answer.value_text()),
            escape(&r.answer.method_text())
        );
        if !r.note.is_empty() {
            let _ = writeln!(h, "<p class=\"note\">{}</p>", escape(&r.note));
        }
        if !r.basis.is_empty() {
            h.push_str("<p>The numbers behind it:</p>\n");
            quantity_table(&mut h, &r.basis);
        }
    }

    // Plots
    section(&mut h, 4);
    h.push_str(
        "<p>Solid lines: exact model values or fitted lines; dashed: approximations; dotted: \
         bounds; filled circles with bars: simulation means with 95% confidence intervals; \
         hollow circles: measurements.</p>\n",
    );
    for (f, svg) in report.figures.iter().zip(svgs) {
        let _ = writeln!(
            h,
            "<figure id=\"fig-{id}\">\n<h3>{title}</h3>\n{svg}\n<figcaption>{cap} \
             <span class=\"method\">(also saved as <code>{id}.svg</code>)</span></figcaption>\n</figure>",
            id = escape(&f.id),
            title = escape(&f.title),
            svg = strip_xml_prolog(svg),
            cap = escape(&f.caption)
        );
    }

    // Definitions
    section(&mut h, 5);
    h.push_str("<dl>\n");
    for (term, def) in METRIC_DEFINITIONS {
        let _ = writeln!(
            h,
            "<dt><strong>{}</strong></dt><dd>{}</dd>",
            escape(term),
            escape(def)
        );
    }
    h.push_str("</dl>\n<p>Method labels: <em>exact</em> = model value up to numerical tolerance; \
                <em>bound</em> = an upper bound; <em>approximation</em> = a model value whose error \
                is not controlled; <em>simulation</em> = event-driven simulation mean with a 95% \
                confidence interval; <em>measured</em> = profiler timing; <em>fitted</em> = \
                least-squares fit to measurements.</p>\n");
    h.push_str("</section>\n</body>\n</html>\n");
    h
}

/// Open section `i`, closing the previous one.
fn section(h: &mut String, i: usize) {
    if i > 0 {
        h.push_str("</section>\n");
    }
    let (id, name) = SECTIONS[i];
    let _ = writeln!(h, "<section id=\"{id}\">\n<h2>{name}</h2>");
}

fn quantity_table(h: &mut String, qs: &[crate::html::Quantity]) {
    if qs.is_empty() {
        h.push_str("<p>None.</p>\n");
        return;
    }
    h.push_str("<table>\n<tr><th>quantity</th><th>value</th><th>method</th><th>note</th></tr>\n");
    for q in qs {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"method\">{}</td><td>{}</td></tr>",
            escape(&q.name),
            escape(&q.value_text()),
            escape(&q.method_text()),
            escape(&q.note)
        );
    }
    h.push_str("</table>\n");
}

fn strip_xml_prolog(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

/// Render the whole report to an HTML string (figures rendered inline).
pub fn render_html(report: &Report) -> Result<String, ReportError> {
    report.validate()?;
    let svgs = report
        .figures
        .iter()
        .map(render_svg)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(render_with(report, &svgs))
}

/// Write `dir/<figure id>.svg` for every figure and then `dir/report.html`, each atomically.
/// Everything is rendered before anything is written: an invalid figure leaves no file behind.
pub fn write_report(report: &Report, dir: &Path) -> Result<WrittenReport, ReportError> {
    report.validate()?;
    let svgs = report
        .figures
        .iter()
        .map(render_svg)
        .collect::<Result<Vec<_>, _>>()?;
    let html = render_with(report, &svgs);
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::with_capacity(svgs.len());
    for (f, svg) in report.figures.iter().zip(&svgs) {
        let p = dir.join(format!("{}.svg", f.id));
        write_atomic(&p, svg.as_bytes())?;
        paths.push(p);
    }
    let html_path = dir.join(REPORT_FILE);
    write_atomic(&html_path, html.as_bytes())?;
    Ok(WrittenReport {
        html: html_path,
        svgs: paths,
    })
}

/// The report's text with every inline `<svg>…</svg>` replaced by `<svg id="…"/>`: what a
/// snapshot test compares (the drawings are checked separately).
pub fn text_outline(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 4);
    let mut rest = html;
    while let Some(start) = rest.find("<svg") {
        out.push_str(&rest[..start]);
        match rest[start..].find("</svg>") {
            Some(end) => {
                out.push_str("<svg/>");
                rest = &rest[start + end + "</svg>".len()..];
            }
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}
