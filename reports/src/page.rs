//! The page template every HTML report of the crate is rendered through.
//!
//! A report is a [`Page`]: a title and an ordered list of [`Section`]s, each a list of
//! [`Block`]s (paragraphs, key/value tables, tables, figures, definition lists, bullet lists).
//! This module owns everything the reports share: the stylesheet, the document skeleton (head,
//! title, navigation, one `<section>` per part), the markup of every block (one way to embed a
//! figure, one way to print a table), HTML escaping, and the write path ([`write_document`]:
//! render every figure first, then write the SVG files and finally the HTML, each atomically).
//! The pipeline report (`html`) and the continuous-batching report (`continuous`) only decide
//! which sections hold which blocks.
//!
//! Every piece of text is escaped here, when it is written out; builders pass plain text.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::figure::Figure;
use crate::{ReportError, render_svg, write_atomic};

/// File name of the report inside the output directory.
pub const REPORT_FILE: &str = "report.html";

/// The one stylesheet of every report (inline, no external assets).
const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;\
max-width:1280px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}\
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.method{font-size:.85em;color:#555}figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}\
figcaption{color:#444;max-width:60em}nav a{margin-right:1em}.note{color:#555}\
.warn{font-weight:bold;color:#8a1c00;border-left:4px solid #d55e00;padding-left:.6em}";

/// The files a report writes: the HTML and one SVG per figure, in figure order.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenReport {
    pub html: PathBuf,
    pub svgs: Vec<PathBuf>,
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

/// A whole report document.
#[derive(Debug)]
pub(crate) struct Page<'a> {
    pub title: &'a str,
    pub sections: Vec<Section<'a>>,
}

/// One part of the report: an anchor, a heading (both listed in the navigation) and its blocks.
#[derive(Debug)]
pub(crate) struct Section<'a> {
    pub id: &'a str,
    pub heading: &'a str,
    pub blocks: Vec<Block<'a>>,
}

impl<'a> Section<'a> {
    /// An empty section from its (anchor id, heading) pair.
    pub fn new((id, heading): (&'a str, &'a str)) -> Self {
        Section {
            id,
            heading,
            blocks: Vec::new(),
        }
    }

    /// Append a block.
    pub fn push(&mut self, block: Block<'a>) {
        self.blocks.push(block);
    }
}

/// A run of inline text inside a paragraph.
#[derive(Debug)]
pub(crate) enum Span {
    Text(String),
    Strong(String),
    Em(String),
    /// A method label or aside, set smaller and grey.
    Method(String),
}

/// A table cell: text and how it is set.
#[derive(Debug)]
pub(crate) struct Cell {
    text: String,
    class: Option<&'static str>,
}

impl Cell {
    /// Plain text.
    pub fn text(s: impl Into<String>) -> Self {
        Cell {
            text: s.into(),
            class: None,
        }
    }

    /// A number: right-aligned, tabular digits.
    pub fn num(s: impl Into<String>) -> Self {
        Cell {
            text: s.into(),
            class: Some("num"),
        }
    }

    /// A method label.
    pub fn method(s: impl Into<String>) -> Self {
        Cell {
            text: s.into(),
            class: Some("method"),
        }
    }
}

/// The building blocks of a section.
#[derive(Debug)]
pub(crate) enum Block<'a> {
    /// A sub-heading (`<h3>`).
    Heading(String),
    /// A paragraph; `note` sets it as a remark (grey).
    Paragraph { note: bool, spans: Vec<Span> },
    /// A two-column table of (key, value) rows, the key as row header.
    KeyValues(Vec<(String, String)>),
    /// A table with a header row; every row has one cell per column.
    Table {
        columns: Vec<String>,
        rows: Vec<Vec<Cell>>,
    },
    /// A figure with its inline SVG (as rendered from it, title included: the page does not
    /// print the title a second time) and caption.
    Figure { figure: &'a Figure, svg: &'a str },
    /// Terms and their definitions.
    Definitions(Vec<(&'a str, &'a str)>),
    /// A bullet list.
    List(Vec<String>),
    /// A warning (`<p class="warn">`).
    Warning(String),
}

impl Block<'_> {
    /// A plain paragraph.
    pub fn text(s: impl Into<String>) -> Self {
        Block::Paragraph {
            note: false,
            spans: vec![Span::Text(s.into())],
        }
    }

    /// A warning the reader must not miss (set bold, with a coloured bar).
    pub fn warning(s: impl Into<String>) -> Self {
        Block::Warning(s.into())
    }

    /// A remark (limitation, warning, assumption).
    pub fn note(s: impl Into<String>) -> Self {
        Block::Paragraph {
            note: true,
            spans: vec![Span::Text(s.into())],
        }
    }
}

impl Page<'_> {
    /// The HTML document.
    pub fn render(&self) -> String {
        let mut h = String::new();
        let t = escape(self.title);
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n<nav>"
        );
        for s in &self.sections {
            let _ = write!(h, "<a href=\"#{}\">{}</a>", escape(s.id), escape(s.heading));
        }
        h.push_str("</nav>\n");
        for s in &self.sections {
            let _ = writeln!(
                h,
                "<section id=\"{}\">\n<h2>{}</h2>",
                escape(s.id),
                escape(s.heading)
            );
            for b in &s.blocks {
                block(&mut h, b);
            }
            h.push_str("</section>\n");
        }
        h.push_str("</body>\n</html>\n");
        h
    }
}

fn block(h: &mut String, b: &Block<'_>) {
    match b {
        Block::Heading(s) => {
            let _ = writeln!(h, "<h3>{}</h3>", escape(s));
        }
        Block::Paragraph { note, spans } => {
            h.push_str(if *note { "<p class=\"note\">" } else { "<p>" });
            for s in spans {
                match s {
                    Span::Text(t) => h.push_str(&escape(t)),
                    Span::Strong(t) => {
                        let _ = write!(h, "<strong>{}</strong>", escape(t));
                    }
                    Span::Em(t) => {
                        let _ = write!(h, "<em>{}</em>", escape(t));
                    }
                    Span::Method(t) => {
                        let _ = write!(h, "<span class=\"method\">{}</span>", escape(t));
                    }
                }
            }
            h.push_str("</p>\n");
        }
        Block::KeyValues(rows) => {
            h.push_str("<table>\n");
            for (k, v) in rows {
                let _ = writeln!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
            }
            h.push_str("</table>\n");
        }
        Block::Table { columns, rows } => {
            h.push_str("<table>\n<tr>");
            for c in columns {
                let _ = write!(h, "<th>{}</th>", escape(c));
            }
            h.push_str("</tr>\n");
            for r in rows {
                h.push_str("<tr>");
                for c in r {
                    match c.class {
                        Some(class) => {
                            let _ = write!(h, "<td class=\"{class}\">{}</td>", escape(&c.text));
                        }
                        None => {
                            let _ = write!(h, "<td>{}</td>", escape(&c.text));
                        }
                    }
                }
                h.push_str("</tr>\n");
            }
            h.push_str("</table>\n");
        }
        Block::Figure { figure, svg } => {
            let _ = writeln!(
                h,
                "<figure id=\"fig-{id}\">\n{svg}\n<figcaption>{cap} \
                 <span class=\"method\">(also saved as <code>{id}.svg</code>)</span></figcaption>\n</figure>",
                id = escape(&figure.id),
                svg = strip_xml_prolog(svg),
                cap = escape(&figure.caption)
            );
        }
        Block::Definitions(defs) => {
            h.push_str("<dl>\n");
            for (term, def) in defs {
                let _ = writeln!(
                    h,
                    "<dt><strong>{}</strong></dt><dd>{}</dd>",
                    escape(term),
                    escape(def)
                );
            }
            h.push_str("</dl>\n");
        }
        Block::Warning(t) => {
            let _ = writeln!(h, "<p class=\"warn\">{}</p>", escape(t));
        }
        Block::List(items) => {
            h.push_str("<ul>\n");
            for i in items {
                let _ = writeln!(h, "<li>{}</li>", escape(i));
            }
            h.push_str("</ul>\n");
        }
    }
}

/// The SVG element itself, without an XML declaration before it (invalid inside HTML).
fn strip_xml_prolog(svg: &str) -> &str {
    match svg.find("<svg") {
        Some(i) => &svg[i..],
        None => svg,
    }
}

/// Render every figure to SVG, in order; the first figure that cannot be drawn is the error.
pub(crate) fn render_figures(figures: &[Figure]) -> Result<Vec<String>, ReportError> {
    figures.iter().map(render_svg).collect()
}

/// Write a report into `dir` (created if missing): `dir/<figure id>.svg` for every figure, then
/// `dir/report.html` from `html` (given the SVGs, in figure order), each file atomically.
/// Everything is rendered before anything is written, so an invalid figure leaves no file
/// behind, and `report.html` exists only when the whole report was produced.
pub(crate) fn write_document(
    dir: &Path,
    figures: &[Figure],
    html: impl FnOnce(&[String]) -> String,
) -> Result<WrittenReport, ReportError> {
    let svgs = render_figures(figures)?;
    let html = html(&svgs);
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::with_capacity(svgs.len());
    for (f, svg) in figures.iter().zip(&svgs) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_is_escaped_and_sections_are_closed() {
        let mut s = Section::new(("a", "A & B"));
        s.push(Block::Heading("<h>".into()));
        s.push(Block::Paragraph {
            note: false,
            spans: vec![
                Span::Strong("<s>".into()),
                Span::Em("'e'".into()),
                Span::Method("\"m\"".into()),
            ],
        });
        s.push(Block::KeyValues(vec![("<k>".into(), "<v>".into())]));
        s.push(Block::Table {
            columns: vec!["<c>".into()],
            rows: vec![vec![Cell::num("<1>")]],
        });
        s.push(Block::Definitions(vec![("<t>", "<d>")]));
        s.push(Block::List(vec!["ρ < 1".into()]));
        let html = Page {
            title: "<T>",
            sections: vec![s, Section::new(("b", "B"))],
        }
        .render();
        assert!(!html.contains("<h>") && !html.contains("<s>") && !html.contains("<k>"));
        assert!(!html.contains("<c>") && !html.contains("<1>") && !html.contains("<t>"));
        assert!(html.contains("<title>&lt;T&gt;</title>"));
        assert!(html.contains("<a href=\"#a\">A &amp; B</a><a href=\"#b\">B</a>"));
        assert!(html.contains("<strong>&lt;s&gt;</strong><em>&#39;e&#39;</em>"));
        assert!(html.contains("<td class=\"num\">&lt;1&gt;</td>"));
        assert!(html.contains("<li>ρ &lt; 1</li>"));
        assert_eq!(html.matches("<section").count(), 2);
        assert_eq!(html.matches("</section>").count(), 2);
        assert!(html.ends_with("</section>\n</body>\n</html>\n"));
    }

    #[test]
    fn svg_prolog_is_dropped() {
        assert_eq!(
            strip_xml_prolog("<?xml version=\"1.0\"?>\n<svg/>"),
            "<svg/>"
        );
        assert_eq!(strip_xml_prolog("no svg"), "no svg");
    }
}
