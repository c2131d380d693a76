//! The pipeline report: the sections a reader needs to trust a recommendation (run metadata,
//! the fit table, the coefficients, the recommended max-token limit and batch size with the
//! numbers behind them, the plots, and the metric definitions of docs/design.md, "Metric
//! definitions": TTFT, TPOT, ITL, e2e, in the form vLLM's `bench serve` uses), and the report
//! data types ([`Report`], [`Quantity`], [`Recommendation`], [`Table`]).
//!
//! The document is rendered through the crate's one page template (shared with
//! [`crate::continuous`]): one self-contained HTML file with inline SVG and inline CSS, no
//! scripts, no external assets. Every number is printed with its unit and the method that
//! produced it ([`Method`]: exact, bound, approximation, simulation with its 95% CI, measured,
//! fitted). [`write_report`] renders every figure first, then writes the SVG files and finally
//! the HTML, each atomically, so `report.html` exists only when the whole report was produced.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ReportError;
use crate::figure::{Figure, Method};
use crate::page::{Block, Cell, Page, Section, Span, render_figures, write_document};
pub use crate::page::{REPORT_FILE, WrittenReport, escape};

/// The section ids and headings, in document order. Tests check that each is present.
pub const SECTIONS: [(&str, &str); 7] = [
    ("summary", "Summary"),
    ("run", "Run"),
    ("fit", "Fit"),
    ("coefficients", "Coefficients"),
    ("recommendations", "Recommendations"),
    ("plots", "Plots"),
    ("definitions", "Metric definitions"),
];

/// Metric definitions printed in every report (docs/design.md, "Metric definitions";
/// docs/models.md notation for the queueing quantities).
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
    /// p50, p90 and p99 of the quantity whose mean is `value` (same unit), when the model or
    /// the simulation gives them; printed beside the mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentiles: Option<Percentiles>,
}

/// The median, 90th and 99th percentiles of a quantity (same unit as its mean).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// p50, p90, p99.
    pub values: [f64; 3],
    /// 95% CI half-widths of p50, p90, p99 (simulation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci95: Option<[f64; 3]>,
    pub method: Method,
}

impl Percentiles {
    /// Percentiles without intervals (a model's).
    pub fn new(values: [f64; 3], method: Method) -> Self {
        Percentiles {
            values,
            ci95: None,
            method,
        }
    }

    /// Simulated percentiles with their 95% CI half-widths.
    pub fn with_ci(values: [f64; 3], ci95: [f64; 3]) -> Self {
        Percentiles {
            values,
            ci95: Some(ci95),
            method: Method::Simulation,
        }
    }

    /// "1.2 ± 0.01" for the i-th percentile (0: p50, 1: p90, 2: p99), without the unit.
    pub fn cell(&self, i: usize) -> String {
        let v = format_number(self.values[i]);
        match self.ci95 {
            Some(h) => format!("{v} ± {}", format_number(h[i])),
            None => v,
        }
    }

    /// "p50 1.2 s, p90 3.4 s, p99 5.6 s" (intervals included when there are some).
    pub fn text(&self, unit: &str) -> String {
        let unit = if unit.is_empty() || unit == "1" {
            String::new()
        } else {
            format!(" {unit}")
        };
        ["p50", "p90", "p99"]
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{p} {}{unit}", self.cell(i)))
            .collect::<Vec<_>>()
            .join(", ")
    }
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
            percentiles: None,
        }
    }

    /// Attach the quantity's p50, p90 and p99.
    pub fn with_percentiles(mut self, p: Percentiles) -> Self {
        self.percentiles = Some(p);
        self
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
    /// The opening section: a few sentences that say what the run found (the recommended
    /// settings and the latency they give, percentiles beside the means).
    #[serde(default)]
    pub summary: Vec<String>,
    /// Fits too poor to trust (low R², high held-out error), each with its numbers and the fix;
    /// shown above the fit table and in the summary.
    #[serde(default)]
    pub fit_warnings: Vec<String>,
    /// Run metadata as (key, value): tool version, command, backend, device, model, workload...
    pub metadata: Vec<(String, String)>,
    /// The fit table (one row per fitted term: coefficient, R², MAPE, n, range).
    pub fit_table: Table,
    /// Measured step times beside the device's roofline, one row per grid point (when the
    /// device's peaks are known).
    #[serde(default)]
    pub roofline: Option<Table>,
    /// The fitted coefficients with units.
    pub coefficients: Vec<Quantity>,
    pub recommendations: Vec<Recommendation>,
    /// The capacity planner's configurations that meet every SLO, shown after the
    /// recommendations (when the run asked for SLOs).
    #[serde(default)]
    pub capacity_plan: Option<Table>,
    pub figures: Vec<Figure>,
    /// Free-text remarks (limitations, warnings), shown under the run metadata.
    #[serde(default)]
    pub notes: Vec<String>,
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

/// Method labels, explained under the metric definitions.
const METHOD_LABELS: [(&str, &str); 6] = [
    ("exact", " = model value up to numerical tolerance; "),
    ("bound", " = an upper bound; "),
    (
        "approximation",
        " = a model value whose error is not controlled; ",
    ),
    (
        "simulation",
        " = event-driven simulation mean with a 95% confidence interval; ",
    ),
    ("measured", " = profiler timing; "),
    ("fitted", " = least-squares fit to measurements."),
];

/// The report as a page of [`SECTIONS`], with the given SVG bodies (one per figure, same order).
fn page<'a>(report: &'a Report, svgs: &'a [String]) -> Page<'a> {
    let mut s = SECTIONS.map(Section::new);
    let [
        summary,
        run,
        fit,
        coefficients,
        recommendations,
        plots,
        definitions,
    ] = &mut s;

    if report.summary.is_empty() {
        summary.push(Block::text("No summary for this run."));
    }
    for line in &report.summary {
        summary.push(Block::text(line.as_str()));
    }
    if !report.fit_warnings.is_empty() {
        summary.push(Block::warning(format!(
            "Warning: {} poor fit(s) — the answers rest on coefficients that describe the \
             measurements badly; see Fit.",
            report.fit_warnings.len()
        )));
    }

    run.push(Block::KeyValues(report.metadata.clone()));
    for n in &report.notes {
        run.push(Block::note(n.as_str()));
    }

    for w in &report.fit_warnings {
        fit.push(Block::warning(format!("Warning: {w}")));
    }
    if report.fit_table.rows.is_empty() {
        fit.push(Block::text(
            "No fit in this run (coefficients were read from a file).",
        ));
    } else {
        if !report.fit_table.caption.is_empty() {
            fit.push(Block::text(report.fit_table.caption.as_str()));
        }
        fit.push(table_block(&report.fit_table));
    }

    if let Some(t) = &report.roofline {
        fit.push(Block::Heading("Measured against the roofline".into()));
        if !t.caption.is_empty() {
            fit.push(Block::text(t.caption.as_str()));
        }
        fit.push(table_block(t));
    }

    coefficients.push(quantity_table(&report.coefficients));

    for r in &report.recommendations {
        recommendations.push(Block::Heading(r.question.clone()));
        recommendations.push(Block::Paragraph {
            note: false,
            spans: vec![
                Span::Strong(format!("{}: {}", r.answer.name, r.answer.value_text())),
                Span::Text(" ".into()),
                Span::Method(format!("({})", r.answer.method_text())),
            ],
        });
        if !r.note.is_empty() {
            recommendations.push(Block::note(r.note.as_str()));
        }
        if !r.basis.is_empty() {
            recommendations.push(Block::text("The numbers behind it:"));
            recommendations.push(quantity_table(&r.basis));
        }
    }

    if let Some(t) = &report.capacity_plan {
        recommendations.push(Block::Heading("Capacity plan".into()));
        if !t.caption.is_empty() {
            recommendations.push(Block::text(t.caption.as_str()));
        }
        recommendations.push(table_block(t));
    }

    plots.push(Block::text(
        "Solid lines: exact model values or fitted lines; dashed: approximations; dotted: \
         bounds; filled circles with bars: simulation means with 95% confidence intervals; \
         hollow circles: measurements.",
    ));
    for (figure, svg) in report.figures.iter().zip(svgs) {
        plots.push(Block::Figure { figure, svg });
    }

    definitions.push(Block::Definitions(METRIC_DEFINITIONS.to_vec()));
    let mut labels = vec![Span::Text("Method labels: ".into())];
    for (label, meaning) in METHOD_LABELS {
        labels.push(Span::Em(label.into()));
        labels.push(Span::Text(meaning.into()));
    }
    definitions.push(Block::Paragraph {
        note: false,
        spans: labels,
    });

    Page {
        title: &report.title,
        sections: s.into(),
    }
}

/// A table of already formatted cells.
fn table_block(t: &Table) -> Block<'static> {
    Block::Table {
        columns: t.columns.clone(),
        rows: t
            .rows
            .iter()
            .map(|r| r.iter().map(|c| Cell::text(c.clone())).collect())
            .collect(),
    }
}

/// A table of quantities (name, value with unit and interval, method, note); "None." if empty.
/// When any quantity carries percentiles, p50/p90/p99 columns stand beside the value ("-" where a
/// quantity has none).
fn quantity_table(qs: &[Quantity]) -> Block<'static> {
    if qs.is_empty() {
        return Block::text("None.");
    }
    let with_pct = qs.iter().any(|q| q.percentiles.is_some());
    let mut columns: Vec<String> = vec!["quantity".into(), "value (mean)".into()];
    if with_pct {
        columns.extend(["p50", "p90", "p99"].map(String::from));
    } else {
        columns[1] = "value".into();
    }
    columns.extend(["method", "note"].map(String::from));
    Block::Table {
        columns,
        rows: qs
            .iter()
            .map(|q| {
                let mut row = vec![Cell::text(q.name.as_str()), Cell::num(q.value_text())];
                if with_pct {
                    let unit = if q.unit == "1" { "" } else { q.unit.as_str() };
                    for i in 0..3 {
                        row.push(match &q.percentiles {
                            Some(p) if unit.is_empty() => Cell::num(p.cell(i)),
                            Some(p) => Cell::num(format!("{} {unit}", p.cell(i))),
                            None => Cell::num("-"),
                        });
                    }
                }
                let method = match &q.percentiles {
                    Some(p) if p.method != q.method || p.ci95.is_some() != q.ci95.is_some() => {
                        format!(
                            "{}; percentiles: {}",
                            q.method_text(),
                            match p.ci95 {
                                Some(_) => "simulation (95% CI)".to_string(),
                                None => p.method.label().to_string(),
                            }
                        )
                    }
                    _ => q.method_text(),
                };
                row.push(Cell::method(method));
                row.push(Cell::text(q.note.as_str()));
                row
            })
            .collect(),
    }
}

/// Render the whole report to an HTML string (figures rendered inline).
pub fn render_html(report: &Report) -> Result<String, ReportError> {
    report.validate()?;
    let svgs = render_figures(&report.figures)?;
    Ok(page(report, &svgs).render())
}

/// Write `dir/<figure id>.svg` for every figure and then `dir/report.html`, each atomically.
/// Everything is rendered before anything is written: an invalid figure leaves no file behind.
pub fn write_report(report: &Report, dir: &Path) -> Result<WrittenReport, ReportError> {
    report.validate()?;
    write_document(dir, &report.figures, |svgs| page(report, svgs).render())
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
