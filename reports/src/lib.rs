//! Plots and the self-contained HTML reports of tokenq.
//!
//! The crate draws what the other crates compute, from plain data: a [`Figure`] is a set of
//! panels, each with labelled axes (quantity and unit) and series of (x, y) points that carry
//! their [`Method`] (exact, bound, approximation, simulation with 95% CI, measured, fitted).
//! [`plots`] builds the paper's figures (Yang, Xu, Jiao 2024, Figs. 2–6; docs/models.md §1–§8)
//! from typed inputs; [`render`] turns a figure into SVG with plotters. Both reports are one
//! HTML file with inline SVG, rendered through one page template (one stylesheet, one document
//! skeleton, one way to embed figures and tables, one write path): [`html`] lays out the
//! pipeline report (run metadata, fit table, coefficients, recommendations with the numbers
//! behind them, plots, metric definitions) and [`continuous`] the continuous-batching replay
//! report (latency distributions, engine state over time, capacity comparison).
//!
//! Files are written atomically (a temporary file in the same directory, then a rename), so a
//! reader never sees a half-written SVG or report.

pub mod continuous;
pub mod figure;
pub mod html;
mod page;
pub mod plots;
pub mod render;

use std::io::Write;
use std::path::{Path, PathBuf};

pub use figure::{Axis, Figure, Marker, Method, Panel, Point, Scale, Series};
pub use html::{Percentiles, Quantity, Recommendation, Report, Table, WrittenReport, write_report};
pub use render::render_svg;

/// Errors of the reports crate.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A figure cannot be drawn as given.
    #[error("figure '{figure}': {reason}")]
    InvalidFigure { figure: String, reason: String },
    /// The plotting backend failed.
    #[error("figure '{figure}': drawing failed: {message}")]
    Draw { figure: String, message: String },
    /// The report is missing something it must hold.
    #[error("report: {0}")]
    InvalidReport(String),
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Write `contents` to `path` atomically: write a temporary sibling file, flush it to disk,
/// then rename it over `path`. On error the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), ReportError> {
    let io = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no file name",
        ))
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

/// Render a figure and write it to `dir/<id>.svg` atomically; returns the SVG and the path.
pub fn write_svg(figure: &Figure, dir: &Path) -> Result<(String, PathBuf), ReportError> {
    let svg = render_svg(figure)?;
    let path = dir.join(format!("{}.svg", figure.id));
    write_atomic(&path, svg.as_bytes())?;
    Ok((svg, path))
}
