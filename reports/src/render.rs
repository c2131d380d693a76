//! Drawing a [`Figure`] as an SVG document with plotters' SVG backend.
//!
//! Visual grammar (the same in every figure, so a reader learns it once):
//! exact model values and fitted lines are solid lines, approximations dashed, bounds dotted,
//! simulation estimates filled circles with 95% confidence bars, measurements hollow circles.
//! Colour follows the series' group, so a model curve and the simulation of the same policy
//! share it. Each axis says its quantity and unit; an axis turns logarithmic when the data span
//! [`crate::figure::AUTO_LOG_DECADES`] decades or more (or when asked). The legend sits in a band
//! under each chart, so it never hides data; so do the labels of vertical marker lines (each
//! marker has its own grey dash pattern, repeated beside its label), so labels never collide
//! with each other or with a curve. A series marked `joined` (an empirical CDF, a dense time
//! series) is a thin line through its points rather than a circle per point.
//!
//! Text is emitted as SVG `<text>` (no font files are needed to write it); widths are estimated
//! with a conservative average glyph width so boxes fit common sans-serif fonts.

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::ReportError;
use crate::figure::{AUTO_LOG_DECADES, Axis, Figure, Method, Panel, Scale, Series};

/// Width and height of one panel's chart (without its legend band) in pixels.
pub const PANEL_SIZE: (u32, u32) = (620, 400);
/// Width of a figure that has a single panel.
const SINGLE_PANEL_WIDTH: u32 = 860;
/// The smallest font the figure title shrinks to when it is long.
const MIN_TITLE_FONT_PX: u32 = 14;
/// Legend columns at most.
const MAX_LEGEND_COLUMNS: usize = 3;
/// Height of the figure title band in pixels.
const TITLE_BAND: u32 = 44;
/// Panels per row when a figure has more than one.
const MAX_COLUMNS: usize = 2;
/// Estimated average glyph width of a sans-serif font, as a fraction of the font size.
const GLYPH_WIDTH_EM: f64 = 0.6;
/// Relative padding added to each end of a linear axis range.
const LINEAR_PAD: f64 = 0.05;
/// Padding of a log axis range, as a fraction of its span in decades.
const LOG_PAD: f64 = 0.04;

const FONT: &str = "sans-serif";
const TITLE_FONT_PX: u32 = 22;
const PANEL_TITLE_FONT_PX: u32 = 17;
const AXIS_DESC_FONT_PX: u32 = 15;
const TICK_FONT_PX: u32 = 13;
const LEGEND_FONT_PX: u32 = 13;
/// Dash pattern (dash, gap in px) and shade of the i-th vertical marker of a panel: distinct,
/// so a marker is matched to its legend entry even when two lines are close.
const MARKER_STYLES: [(u32, u32, RGBColor); 4] = [
    (6, 4, RGBColor(90, 90, 90)),
    (2, 3, RGBColor(20, 20, 20)),
    (14, 5, RGBColor(140, 140, 140)),
    (4, 9, RGBColor(20, 20, 20)),
];

/// A colour-blind-safe palette (Okabe & Ito 2008), without yellow (too pale on white).
const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(0, 0, 0),       // black
];
const GRID_BOLD: RGBColor = RGBColor(215, 215, 215);
const GRID_LIGHT: RGBColor = RGBColor(240, 240, 240);

/// Render a figure to an SVG document.
pub fn render_svg(figure: &Figure) -> Result<String, ReportError> {
    figure.validate()?;
    let n = figure.panels.len();
    let cols = n.min(MAX_COLUMNS);
    let rows = n.div_ceil(cols);
    let panel_w = if n == 1 {
        SINGLE_PANEL_WIDTH
    } else {
        PANEL_SIZE.0
    };
    // Every cell gets the same legend band: the tallest any panel needs.
    let band = figure
        .panels
        .iter()
        .map(|p| legend_layout(p, panel_w as i32).band_h)
        .max()
        .unwrap_or(0);
    let cell_h = PANEL_SIZE.1 + band as u32;
    let width = panel_w * cols as u32;
    let height = TITLE_BAND + cell_h * rows as u32;
    let draw_err = |e: String| ReportError::Draw {
        figure: figure.id.clone(),
        message: e,
    };

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(e.to_string()))?;
        let (title_area, body) = root.split_vertically(TITLE_BAND);
        // Shrink the title font until the estimated width fits.
        let mut title_px = TITLE_FONT_PX;
        while title_px > MIN_TITLE_FONT_PX
            && text_width_px(&figure.title, title_px) > width as i32 - 24
        {
            title_px -= 1;
        }
        title_area
            .draw(&Text::new(
                figure.title.clone(),
                (width as i32 / 2, TITLE_BAND as i32 / 2),
                (FONT, title_px)
                    .into_font()
                    .style(FontStyle::Bold)
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            ))
            .map_err(|e| draw_err(e.to_string()))?;
        let groups = figure_groups(figure);
        let cells = body.split_evenly((rows, cols));
        for (panel, cell) in figure.panels.iter().zip(cells.iter()) {
            let (chart_area, legend_area) = cell.split_vertically(PANEL_SIZE.1);
            draw_panel(panel, &groups, &chart_area, &legend_area).map_err(|e| {
                ReportError::Draw {
                    figure: figure.id.clone(),
                    message: format!("panel '{}': {e}", panel.title),
                }
            })?;
        }
        root.present().map_err(|e| draw_err(e.to_string()))?;
    }
    Ok(svg)
}

/// A numeric axis that is either linear or logarithmic, with tick positions at 1-2-5 steps
/// (linear) or decades and their 2 and 5 multiples (log).
#[derive(Debug, Clone)]
pub struct ScaleCoord {
    lo: f64,
    hi: f64,
    log: bool,
    /// Every value on the axis is a whole number (batch sizes, token counts): no fractional ticks.
    integer: bool,
}

impl ScaleCoord {
    /// Whether the axis is logarithmic.
    pub fn is_log(&self) -> bool {
        self.log
    }

    /// The drawn range [lo, hi].
    pub fn bounds(&self) -> (f64, f64) {
        (self.lo, self.hi)
    }

    fn fraction(&self, v: f64) -> f64 {
        if self.log {
            let v = v.max(self.lo * 1e-3);
            (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }
}

impl Ranged for ScaleCoord {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let t = self.fraction(*value);
        let px = f64::from(limit.0) + t * f64::from(limit.1 - limit.0);
        // Clamp far-away values so the backend never sees absurd coordinates.
        px.clamp(-1.0e6, 1.0e6).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        let max = hint.max_num_points();
        if max == 0 {
            return Vec::new();
        }
        let mut ticks = if self.log {
            log_ticks(self.lo, self.hi, max)
        } else {
            Vec::new()
        };
        if ticks.len() < 2 {
            ticks = linear_ticks(self.lo, self.hi, max);
        }
        if self.integer {
            let whole: Vec<f64> = ticks.iter().copied().filter(|v| v.fract() == 0.0).collect();
            if whole.len() >= 2 {
                return whole;
            }
        }
        ticks
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for ScaleCoord {
    fn format(value: &f64) -> String {
        format_tick(*value)
    }
}

/// "Nice" linear ticks (steps 1, 2, 5 × 10^k) inside [lo, hi], at most `max` of them.
pub fn linear_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    let span = hi - lo;
    if span.is_nan() || span <= 0.0 || max == 0 {
        return vec![lo];
    }
    let raw = span / max as f64;
    let mut exp = 10f64.powf(raw.log10().floor());
    let step = loop {
        if let Some(m) = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .find(|m| span / (m * exp) <= max as f64)
        {
            break m * exp;
        }
        exp *= 10.0;
    };
    let first = (lo / step).ceil();
    let last = (hi / step).floor();
    let mut out = Vec::new();
    let mut k = first;
    while k <= last {
        // Snap to the step grid so 0.1 * 3 prints as 0.3 and zero is exactly zero.
        let v = k * step;
        out.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        k += 1.0;
    }
    out
}

/// Log ticks inside [lo, hi] (lo > 0): the finest of {1..9, 1-2-5, 1, every 2nd/3rd/...
/// decade} that gives at most `max` ticks.
pub fn log_ticks(lo: f64, hi: f64, max: usize) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo) || max == 0 {
        return Vec::new();
    }
    let d0 = lo.log10().floor() as i32;
    let d1 = hi.log10().ceil() as i32;
    let in_range = |v: f64| v >= lo * (1.0 - 1e-12) && v <= hi * (1.0 + 1e-12);
    let with = |mults: &[f64], every: i32| -> Vec<f64> {
        let mut out = Vec::new();
        for d in d0..=d1 {
            if d.rem_euclid(every) != 0 {
                continue;
            }
            let base = 10f64.powi(d);
            for &m in mults {
                let v = m * base;
                if in_range(v) {
                    out.push(v);
                }
            }
        }
        out
    };
    let candidates: [&[f64]; 3] = [
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        &[1.0, 2.0, 5.0],
        &[1.0],
    ];
    for mults in candidates {
        let t = with(mults, 1);
        if t.len() <= max {
            return t;
        }
    }
    let mut every = 2;
    loop {
        let t = with(&[1.0], every);
        if t.len() <= max || every > 400 {
            return t;
        }
        every += 1;
    }
}

/// A compact tick label: up to four significant digits, no trailing zeros, scientific
/// notation outside [1e-3, 1e6).
pub fn format_tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e6).contains(&a) {
        let s = format!("{v:.2e}");
        // "1.00e5" → "1e5", "2.50e-4" → "2.5e-4"
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let mant = trim_zeros(mant);
        return format!("{mant}e{exp}");
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
    trim_zeros(&format!("{v:.decimals$}"))
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Decide the scale and range of one axis from the values it must show (`panel` names the
/// panel in errors).
pub fn axis_coord(axis: &Axis, values: &[f64], panel: &str) -> Result<ScaleCoord, ReportError> {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (mut lo, mut hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if finite.is_empty() {
        lo = 0.0;
        hi = 1.0;
    }
    let all_positive = lo > 0.0;
    let integer = !finite.is_empty() && finite.iter().all(|v| v.fract() == 0.0);
    let log = match axis.scale {
        Scale::Log => {
            if !all_positive {
                return Err(ReportError::InvalidFigure {
                    figure: panel.to_string(),
                    reason: format!(
                        "axis '{}' is logarithmic but has the value {lo} ≤ 0",
                        axis.label
                    ),
                });
            }
            true
        }
        Scale::Linear => false,
        Scale::Auto => all_positive && (hi / lo).log10() >= AUTO_LOG_DECADES,
    };
    if log {
        let (l0, l1) = (lo.log10(), hi.log10());
        let span = (l1 - l0).max(0.3);
        let pad = span * LOG_PAD;
        let mid = (l0 + l1) / 2.0;
        let (a, b) = if l1 - l0 < 0.3 {
            (mid - 0.15 - pad, mid + 0.15 + pad)
        } else {
            (l0 - pad, l1 + pad)
        };
        return Ok(ScaleCoord {
            lo: 10f64.powf(a),
            hi: 10f64.powf(b),
            log: true,
            integer,
        });
    }
    if axis.include_zero {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        let d = if hi == 0.0 { 1.0 } else { hi.abs() * 0.1 };
        lo -= d;
        hi += d;
    }
    let pad = (hi - lo) * LINEAR_PAD;
    // Do not pad below zero when the data start at zero or above (times, counts).
    let lo = if lo >= 0.0 && lo - pad < 0.0 {
        0.0
    } else {
        lo - pad
    };
    Ok(ScaleCoord {
        lo,
        hi: hi + pad,
        log: false,
        integer,
    })
}

/// The colour of a series in a figure as SVG writes it, e.g. "#0072B2".
pub fn series_colour_hex(figure: &Figure, s: &Series) -> String {
    let RGBColor(r, g, b) = colour_of(&figure_groups(figure), s);
    format!("#{r:02X}{g:02X}{b:02X}")
}

/// Colour groups in order of first appearance over the whole figure, so a group keeps its
/// colour from panel to panel.
fn figure_groups(figure: &Figure) -> Vec<String> {
    let mut groups: Vec<String> = Vec::new();
    for p in &figure.panels {
        for t in p.drawable_series() {
            if !groups.iter().any(|g| g == t.group_key()) {
                groups.push(t.group_key().to_string());
            }
        }
    }
    groups
}

/// The colour of a series: one palette entry per colour group.
fn colour_of(groups: &[String], s: &Series) -> RGBColor {
    let idx = groups.iter().position(|g| g == s.group_key()).unwrap_or(0);
    PALETTE[idx % PALETTE.len()]
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<ScaleCoord, ScaleCoord>>;

fn draw_panel(
    panel: &Panel,
    groups: &[String],
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    legend_area: &DrawingArea<SVGBackend<'_>, Shift>,
) -> Result<(), String> {
    let xs: Vec<f64> = panel
        .drawable_series()
        .flat_map(|s| s.points.iter().filter(|p| p.y.is_finite()).map(|p| p.x))
        .chain(panel.markers.iter().map(|m| m.x))
        .collect();
    let ys: Vec<f64> = panel
        .drawable_series()
        .flat_map(|s| {
            s.points.iter().filter(|p| p.x.is_finite()).flat_map(|p| {
                let (a, b) = p.y_range();
                [p.y, a, b]
            })
        })
        .collect();
    let xc = axis_coord(&panel.x, &xs, &panel.title).map_err(|e| e.to_string())?;
    // A log y axis cannot show the lower end of a CI that reaches zero; such ends are clipped.
    let ys_for_range: Vec<f64> = if panel.y.scale == Scale::Log
        && ys.iter().any(|v| *v <= 0.0)
        && panel
            .drawable_series()
            .all(|s| s.points.iter().all(|p| p.y > 0.0 || !p.y.is_finite()))
    {
        ys.iter().copied().filter(|v| *v > 0.0).collect()
    } else {
        ys
    };
    let yc = axis_coord(&panel.y, &ys_for_range, &panel.title).map_err(|e| e.to_string())?;

    let mut chart = ChartBuilder::on(area)
        .caption(
            &panel.title,
            (FONT, PANEL_TITLE_FONT_PX)
                .into_font()
                .style(FontStyle::Bold),
        )
        .margin(14)
        .x_label_area_size(52)
        .y_label_area_size(72)
        .build_cartesian_2d(xc.clone(), yc.clone())
        .map_err(|e| e.to_string())?;

    let tick_style = (FONT, TICK_FONT_PX).into_font().color(&BLACK);
    let desc_style = (FONT, AXIS_DESC_FONT_PX).into_font().color(&BLACK);
    let fx = |v: &f64| format_tick(*v);
    let fy = |v: &f64| format_tick(*v);
    chart
        .configure_mesh()
        .x_desc(panel.x.description())
        .y_desc(panel.y.description())
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&fx)
        .y_label_formatter(&fy)
        .label_style(tick_style)
        .axis_desc_style(desc_style)
        .bold_line_style(GRID_BOLD)
        .light_line_style(GRID_LIGHT)
        .max_light_lines(4)
        .draw()
        .map_err(|e| e.to_string())?;

    // Models first (lines), data on top.
    let mut order: Vec<&Series> = panel.drawable_series().collect();
    order.sort_by_key(|s| s.method.is_points());
    for s in &order {
        draw_series(&mut chart, groups, s, &yc)?;
    }
    for (i, m) in panel.markers.iter().enumerate() {
        draw_marker(&mut chart, m, i, &yc)?;
    }
    draw_legend(legend_area, panel, groups)?;
    Ok(())
}

fn finite_sorted(s: &Series) -> Vec<(f64, f64)> {
    let mut pts: Vec<(f64, f64)> = s
        .points
        .iter()
        .filter(|p| p.x.is_finite() && p.y.is_finite())
        .map(|p| (p.x, p.y))
        .collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    pts
}

fn draw_series(
    chart: &mut Chart<'_, '_>,
    groups: &[String],
    s: &Series,
    yc: &ScaleCoord,
) -> Result<(), String> {
    let colour = colour_of(groups, s);
    let line = colour.stroke_width(2);
    let pts = finite_sorted(s);
    if s.joined {
        let thin = match s.method {
            Method::Exact | Method::Fitted | Method::Approximation | Method::Bound => line,
            Method::Simulation | Method::Measured => colour.stroke_width(1),
        };
        chart
            .draw_series(LineSeries::new(pts, thin))
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    match s.method {
        Method::Exact | Method::Fitted => {
            chart
                .draw_series(LineSeries::new(pts, line))
                .map_err(|e| e.to_string())?;
        }
        Method::Approximation => {
            chart
                .draw_series(DashedLineSeries::new(pts, 9, 6, line))
                .map_err(|e| e.to_string())?;
        }
        Method::Bound => {
            chart
                .draw_series(DashedLineSeries::new(pts, 3, 4, line))
                .map_err(|e| e.to_string())?;
        }
        Method::Simulation | Method::Measured => {
            let bar = colour.stroke_width(1);
            for p in s
                .points
                .iter()
                .filter(|p| p.x.is_finite() && p.y.is_finite())
            {
                if let Some(h) = p.ci95.filter(|h| *h > 0.0) {
                    let lo = if yc.is_log() {
                        (p.y - h).max(yc.lo)
                    } else {
                        p.y - h
                    };
                    let hi = p.y + h;
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(p.x, lo), (p.x, hi)],
                            bar,
                        )))
                        .map_err(|e| e.to_string())?;
                    for end in [lo, hi] {
                        chart
                            .draw_series(std::iter::once(
                                EmptyElement::at((p.x, end))
                                    + PathElement::new(vec![(-4, 0), (4, 0)], bar),
                            ))
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            let style = if s.method == Method::Simulation {
                colour.filled()
            } else {
                colour.stroke_width(1)
            };
            let r = if s.method == Method::Simulation { 4 } else { 3 };
            chart
                .draw_series(pts.into_iter().map(|xy| Circle::new(xy, r, style)))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn marker_style(index: usize) -> (u32, u32, RGBColor) {
    MARKER_STYLES[index % MARKER_STYLES.len()]
}

/// The marker's line across the whole chart; its label is in the legend band.
fn draw_marker(
    chart: &mut Chart<'_, '_>,
    m: &crate::figure::Marker,
    index: usize,
    yc: &ScaleCoord,
) -> Result<(), String> {
    let (dash, gap, colour) = marker_style(index);
    chart
        .draw_series(DashedLineSeries::new(
            vec![(m.x, yc.lo), (m.x, yc.hi)],
            dash,
            gap,
            colour.stroke_width(1),
        ))
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn text_width_px(text: &str, font_px: u32) -> i32 {
    (text.chars().count() as f64 * f64::from(font_px) * GLYPH_WIDTH_EM).ceil() as i32
}

/// Where the legend entries go: a band under the chart, entries in columns.
struct LegendLayout {
    cols: usize,
    col_w: i32,
    band_h: i32,
}

const LEGEND_PAD: i32 = 7;
const LEGEND_SAMPLE_W: i32 = 26;

fn legend_line_h() -> i32 {
    (f64::from(LEGEND_FONT_PX) * 1.45).round() as i32
}

/// The legend's texts: one per drawable series, then one per marker.
fn legend_texts(panel: &Panel) -> Vec<String> {
    panel
        .drawable_series()
        .map(|s| s.legend_text())
        .chain(panel.markers.iter().map(|m| m.label.clone()))
        .collect()
}

fn legend_layout(panel: &Panel, panel_w: i32) -> LegendLayout {
    let texts = legend_texts(panel);
    if texts.is_empty() {
        return LegendLayout {
            cols: 1,
            col_w: 0,
            band_h: 0,
        };
    }
    let text_w = texts
        .iter()
        .map(|t| text_width_px(t, LEGEND_FONT_PX))
        .max()
        .unwrap_or(0);
    let col_w = LEGEND_PAD * 3 + LEGEND_SAMPLE_W + text_w;
    let avail = panel_w - 2 * LEGEND_PAD;
    let cols = ((avail / col_w.max(1)).max(1) as usize)
        .min(MAX_LEGEND_COLUMNS)
        .min(texts.len());
    let rows = texts.len().div_ceil(cols) as i32;
    LegendLayout {
        cols,
        col_w: col_w.min(avail),
        band_h: rows * legend_line_h() + 2 * LEGEND_PAD + 6,
    }
}

/// Draw the legend in the band under the chart, so it never hides data.
fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    panel: &Panel,
    groups: &[String],
) -> Result<(), String> {
    let entries: Vec<&Series> = panel.drawable_series().collect();
    let texts = legend_texts(panel);
    if texts.is_empty() {
        return Ok(());
    }
    let (w_area, _) = area.dim_in_pixel();
    let layout = legend_layout(panel, w_area as i32);
    let rows = texts.len().div_ceil(layout.cols) as i32;
    let line_h = legend_line_h();
    let box_w = layout.col_w * layout.cols as i32;
    let box_h = rows * line_h + 2 * LEGEND_PAD;
    let x0 = ((w_area as i32 - box_w) / 2).max(2);
    let y0 = 2;
    area.draw(&Rectangle::new(
        [(x0, y0), (x0 + box_w, y0 + box_h)],
        RGBColor(170, 170, 170).stroke_width(1),
    ))
    .map_err(|e| e.to_string())?;
    let font = (FONT, LEGEND_FONT_PX)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let sample_w = LEGEND_SAMPLE_W;
    for (i, text) in texts.iter().enumerate() {
        // Column-major order, so related series read top to bottom.
        let (col, row) = (i as i32 / rows, i as i32 % rows);
        let cy = y0 + LEGEND_PAD + line_h * row + line_h / 2;
        let sx = x0 + col * layout.col_w + LEGEND_PAD;
        let res = match entries.get(i) {
            Some(s) => draw_legend_sample(area, s, groups, sx, cy),
            None => {
                let (dash, gap, colour) = marker_style(i - entries.len());
                area.draw(&DashedPathElement::new(
                    vec![(sx, cy), (sx + sample_w, cy)],
                    dash,
                    gap,
                    colour.stroke_width(1),
                ))
            }
        };
        res.map_err(|e| e.to_string())?;
        area.draw(&Text::new(
            text.clone(),
            (sx + sample_w + LEGEND_PAD, cy),
            font.clone(),
        ))
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The sample of a series' line or symbol at the start of its legend entry.
fn draw_legend_sample<'b>(
    area: &DrawingArea<SVGBackend<'b>, Shift>,
    s: &Series,
    groups: &[String],
    sx: i32,
    cy: i32,
) -> Result<(), DrawingAreaErrorKind<<SVGBackend<'b> as DrawingBackend>::ErrorType>> {
    let sample_w = LEGEND_SAMPLE_W;
    let colour = colour_of(groups, s);
    let line = colour.stroke_width(2);
    let span = vec![(sx, cy), (sx + sample_w, cy)];
    match s.method {
        _ if s.joined && s.method.is_points() => {
            area.draw(&PathElement::new(span, colour.stroke_width(1)))
        }
        Method::Exact | Method::Fitted => area.draw(&PathElement::new(span, line)),
        Method::Approximation => area.draw(&DashedPathElement::new(span, 9, 6, line)),
        Method::Bound => area.draw(&DashedPathElement::new(span, 3, 4, line)),
        Method::Simulation => {
            let mid = sx + sample_w / 2;
            area.draw(&PathElement::new(
                vec![(mid, cy - 6), (mid, cy + 6)],
                colour.stroke_width(1),
            ))
            .and_then(|_| area.draw(&Circle::new((mid, cy), 4, colour.filled())))
        }
        Method::Measured => area.draw(&Circle::new(
            (sx + sample_w / 2, cy),
            3,
            colour.stroke_width(1),
        )),
    }
}
