//! Plain-data description of a figure: panels, axes with units, and series of (x, y) points
//! with optional 95% confidence half-widths.
//!
//! Nothing here knows about queueing models or profiles: the crates that compute numbers fill
//! these structs, and [`crate::render`] draws them. Every series states how its numbers were
//! obtained ([`Method`]): an exact model value, a bound, an approximation, a simulation estimate
//! (drawn as points with 95% CI bars), a measurement, or a fitted line. The legend repeats it.

use serde::{Deserialize, Serialize};

use crate::ReportError;

pub use tokenq_core::Method;

/// One data point; `ci95` is the half-width of a 95% confidence interval (same unit as `y`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci95: Option<f64>,
}

impl Point {
    /// A point without an interval.
    pub fn new(x: f64, y: f64) -> Self {
        Point { x, y, ci95: None }
    }

    /// A point with a 95% confidence half-width.
    pub fn with_ci(x: f64, y: f64, half_width: f64) -> Self {
        Point {
            x,
            y,
            ci95: Some(half_width),
        }
    }

    /// Lower and upper ends of the drawn interval (the point itself when there is none).
    pub fn y_range(&self) -> (f64, f64) {
        match self.ci95 {
            Some(h) => (self.y - h, self.y + h),
            None => (self.y, self.y),
        }
    }
}

impl From<(f64, f64)> for Point {
    fn from((x, y): (f64, f64)) -> Self {
        Point::new(x, y)
    }
}

/// A named series of points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Legend text without the method; the legend appends it, e.g. "dynamic (exact)".
    pub label: String,
    pub method: Method,
    pub points: Vec<Point>,
    /// Series with the same group share a colour (e.g. a model curve and its simulation
    /// points). `None`: the label is the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Draw the points joined by a thin line instead of one circle each: an empirical CDF or
    /// a dense time series, where thousands of circles would pile into a smear. Intervals are
    /// not drawn for a joined series.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub joined: bool,
}

impl Series {
    /// A series from (x, y) pairs.
    pub fn new(
        label: impl Into<String>,
        method: Method,
        points: impl IntoIterator<Item = Point>,
    ) -> Self {
        Series {
            label: label.into(),
            method,
            points: points.into_iter().collect(),
            group: None,
            joined: false,
        }
    }

    /// A series from plain (x, y) tuples.
    pub fn from_xy(
        label: impl Into<String>,
        method: Method,
        xy: impl IntoIterator<Item = (f64, f64)>,
    ) -> Self {
        Series::new(label, method, xy.into_iter().map(Point::from))
    }

    /// Set the colour group.
    pub fn in_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Join the points by a thin line (an empirical CDF, a dense time series) instead of
    /// drawing a circle per point.
    pub fn joined(mut self) -> Self {
        self.joined = true;
        self
    }

    /// The colour group (the label unless set).
    pub fn group_key(&self) -> &str {
        self.group.as_deref().unwrap_or(&self.label)
    }

    /// The legend entry: label and method (simulation says "95% CI" when its points carry
    /// one, "no CI" when none does, e.g. a deterministic replay).
    pub fn legend_text(&self) -> String {
        match self.method {
            Method::Simulation if self.points.iter().all(|p| p.ci95.is_none()) => {
                format!("{} (simulation, no CI)", self.label)
            }
            Method::Simulation => format!("{} (simulation, 95% CI)", self.label),
            m => format!("{} ({})", self.label, m.label()),
        }
    }
}

/// Axis scale. `Auto` picks logarithmic when every value is positive and the data span at
/// least [`AUTO_LOG_DECADES`] decades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    #[default]
    Auto,
    Linear,
    Log,
}

/// Data spanning this many decades or more gets a log axis under [`Scale::Auto`].
pub const AUTO_LOG_DECADES: f64 = 2.0;

/// An axis: quantity name, unit, scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    /// What is plotted, e.g. "mean waiting time E[W_q]".
    pub label: String,
    /// Its unit, e.g. "s", "tokens", "req/s"; "1" for dimensionless numbers.
    pub unit: String,
    #[serde(default)]
    pub scale: Scale,
    /// Force zero into a linear axis range (bars and times usually want it).
    #[serde(default)]
    pub include_zero: bool,
}

impl Axis {
    /// A linear axis starting from the data (no forced zero).
    pub fn new(label: impl Into<String>, unit: impl Into<String>) -> Self {
        Axis {
            label: label.into(),
            unit: unit.into(),
            scale: Scale::Auto,
            include_zero: false,
        }
    }

    /// Choose the scale.
    pub fn scale(mut self, scale: Scale) -> Self {
        self.scale = scale;
        self
    }

    /// Include zero in a linear range.
    pub fn from_zero(mut self) -> Self {
        self.include_zero = true;
        self
    }

    /// "label [unit]" as drawn on the axis.
    pub fn description(&self) -> String {
        if self.unit.is_empty() || self.unit == "1" {
            format!("{} [dimensionless]", self.label)
        } else {
            format!("{} [{}]", self.label, self.unit)
        }
    }
}

/// A vertical marker line, e.g. the recommended max-token limit. Its label goes into the
/// panel's legend band, beside a sample of the line's dash pattern, never over the data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Marker {
    pub x: f64,
    pub label: String,
}

/// One chart: a title, two axes, series, optional vertical markers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Panel {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub markers: Vec<Marker>,
}

impl Panel {
    /// A panel without series yet.
    pub fn new(title: impl Into<String>, x: Axis, y: Axis) -> Self {
        Panel {
            title: title.into(),
            x,
            y,
            series: Vec::new(),
            markers: Vec::new(),
        }
    }

    /// Add a series (empty series are skipped at render time, not here).
    pub fn with(mut self, s: Series) -> Self {
        self.series.push(s);
        self
    }

    /// Add several series.
    pub fn with_all(mut self, s: impl IntoIterator<Item = Series>) -> Self {
        self.series.extend(s);
        self
    }

    /// Add a vertical marker.
    pub fn mark(mut self, x: f64, label: impl Into<String>) -> Self {
        self.markers.push(Marker {
            x,
            label: label.into(),
        });
        self
    }

    /// Series that have at least one finite point.
    pub fn drawable_series(&self) -> impl Iterator<Item = &Series> {
        self.series
            .iter()
            .filter(|s| s.points.iter().any(|p| p.x.is_finite() && p.y.is_finite()))
    }
}

/// A figure: one or more panels drawn in a grid, saved as `<id>.svg`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// File stem and HTML anchor: lower-case letters, digits, '-' and '_'.
    pub id: String,
    pub title: String,
    /// One or two sentences for the report: what the figure shows and how to read it.
    pub caption: String,
    pub panels: Vec<Panel>,
}

impl Figure {
    /// Check what the renderer relies on: a usable id, at least one panel, every panel with
    /// at least one finite point, no negative CI half-widths.
    pub fn validate(&self) -> Result<(), ReportError> {
        let id_ok = !self.id.is_empty()
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !id_ok {
            return Err(ReportError::InvalidFigure {
                figure: self.id.clone(),
                reason: "the id must be non-empty and use only a-z, 0-9, '-' and '_'".into(),
            });
        }
        if self.panels.is_empty() {
            return Err(ReportError::InvalidFigure {
                figure: self.id.clone(),
                reason: "it has no panels".into(),
            });
        }
        for panel in &self.panels {
            if panel.drawable_series().next().is_none() {
                return Err(ReportError::InvalidFigure {
                    figure: self.id.clone(),
                    reason: format!("panel '{}' has no finite data point", panel.title),
                });
            }
            let finite = || {
                panel
                    .series
                    .iter()
                    .flat_map(|s| s.points.iter())
                    .filter(|p| p.x.is_finite() && p.y.is_finite())
            };
            for (axis, bad) in [
                (&panel.x, finite().map(|p| p.x).find(|v| *v <= 0.0)),
                (&panel.y, finite().map(|p| p.y).find(|v| *v <= 0.0)),
            ] {
                if let (Scale::Log, Some(v)) = (axis.scale, bad) {
                    return Err(ReportError::InvalidFigure {
                        figure: self.id.clone(),
                        reason: format!(
                            "panel '{}': axis '{}' is logarithmic but has the value {v} ≤ 0",
                            panel.title, axis.label
                        ),
                    });
                }
            }
            for s in &panel.series {
                if let Some(p) = s
                    .points
                    .iter()
                    .find(|p| p.ci95.is_some_and(|h| h.is_nan() || h < 0.0))
                {
                    return Err(ReportError::InvalidFigure {
                        figure: self.id.clone(),
                        reason: format!(
                            "series '{}' has a negative or NaN CI half-width at x = {}",
                            s.label, p.x
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}
