//! Plain-text output shared by the commands: numbers with a fixed count of significant digits
//! and aligned tables whose rows carry the unit and the method of every number.

use std::fmt::Write as _;

use sim::Report;
use tokenq_core::{Estimate, Method};

/// The JSON key of a quantile: `p50`, `p99.9` for 0.5, 0.999.
pub fn percentile_key(p: f64) -> String {
    let s = format!("{:.4}", p * 100.0);
    format!("p{}", s.trim_end_matches('0').trim_end_matches('.'))
}

/// Format a number with `sig` significant digits (plain notation for ordinary magnitudes).
pub fn num(x: f64, sig: usize) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "n/a".into()
        } else {
            "inf".into()
        };
    }
    if x == 0.0 {
        return "0".into();
    }
    let mag = x.abs().log10().floor() as i64;
    if !(-4..=9).contains(&mag) {
        return format!("{:.*e}", sig.saturating_sub(1), x);
    }
    let decimals = (sig as i64 - 1 - mag).max(0) as usize;
    format!("{x:.decimals$}")
}

/// A table of `quantity | value | unit | method` rows.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }
    /// Add a row; `method` is printed beside the number (exact / approximation / …).
    pub fn row(&mut self, quantity: &str, value: String, unit: &str, method: Method) -> &mut Self {
        self.rows
            .push([quantity.into(), value, unit.into(), method.to_string()]);
        self
    }
    /// Render with aligned columns.
    pub fn render(&self) -> String {
        render_grid(&["quantity", "value", "unit", "method"], &self.rows)
    }
}

/// Render a grid with a header, left-aligned first column, right-aligned others.
pub fn render_grid<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut w = [0usize; N];
    for (i, h) in header.iter().enumerate() {
        w[i] = h.chars().count();
    }
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            if i == 0 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str("  ");
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// A method label with the heuristic mark.
pub fn method_label(m: Method, heuristic: bool) -> String {
    if heuristic {
        format!("{m} (heuristic)")
    } else {
        m.to_string()
    }
}

/// Rows as left-aligned columns, each line indented by two spaces.
pub fn columns(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect();
        format!("  {}\n", s.join("  ").trim_end())
    };
    let mut out = line(header.to_vec());
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// `value ± half-width` with `digits` decimals (`–` without a value).
fn pm(e: Estimate, digits: usize) -> String {
    if e.value.is_nan() {
        return "–".into();
    }
    if e.half_width.is_finite() {
        format!("{:.*} ± {:.*}", digits, e.value, digits, e.half_width)
    } else {
        format!("{:.*}", digits, e.value)
    }
}

/// The table `tokenq simulate` prints: means and percentiles with their 95% intervals, the
/// counts and the simulator's speed.
pub fn simulation_table(r: &Report, desc: &str) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "tokenq simulate: {desc}");
    let ci = if r.ci.kind == "replications" {
        format!("{} independent replications", r.ci.units)
    } else {
        format!("{} batch means", r.ci.units)
    };
    let _ = writeln!(
        o,
        "method: simulation, {} requests × {} replication(s), seed {}, {:.0}% CI from {ci}, first {} requests dropped",
        r.requests,
        r.replications,
        r.seed,
        r.ci.confidence * 100.0,
        r.warmup_requests
    );
    o.push('\n');
    let _ = writeln!(
        o,
        "{:<22} {:>20} {:>20} {:>20} {:>20}",
        "quantity", "mean", "p50", "p90", "p99"
    );
    for (name, s) in [("wait (s)", &r.wait_s), ("latency (s)", &r.latency_s)] {
        let _ = writeln!(
            o,
            "{:<22} {:>20} {:>20} {:>20} {:>20}",
            name,
            pm(s.mean, 3),
            pm(s.p50, 3),
            pm(s.p90, 3),
            pm(s.p99, 3)
        );
    }
    if let Some(w) = r.wait_all_s {
        let _ = writeln!(o, "{:<22} {:>20}", "wait, all users (s)", pm(w, 3));
    }
    let _ = writeln!(o, "{:<22} {:>20}", "loss fraction", pm(r.loss_fraction, 5));
    let _ = writeln!(
        o,
        "{:<22} {:>20}",
        "mean batch size (req)",
        pm(r.mean_batch_size, 3)
    );
    let _ = writeln!(o, "{:<22} {:>20}", "utilisation", pm(r.utilisation, 4));
    let _ = writeln!(
        o,
        "{:<22} {:>20}",
        "throughput (req/s)",
        pm(r.throughput_rps, 5)
    );
    let _ = writeln!(
        o,
        "{:<22} {:>20.5}",
        "arrival rate (req/s)", r.arrival_rate_rps
    );
    o.push('\n');
    let _ = writeln!(
        o,
        "wait, latency: served requests; percentiles from a log histogram (≤ {:.2}% relative error)",
        r.quantile_rel_error * 100.0
    );
    let c = r.counts;
    let _ = writeln!(
        o,
        "requests: {} arrived = {} served + {} lost + {} waiting at the end",
        c.arrivals, c.served, c.lost, c.waiting_at_end
    );
    let _ = writeln!(
        o,
        "speed: {:.3} s wall, {:.2} M simulated requests/s; state {:.1} KiB",
        r.elapsed_s,
        r.sim_requests_per_s / 1e6,
        r.state_bytes as f64 / 1024.0
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(num(23.000001, 6), "23.0000");
        assert_eq!(num(0.705283, 4), "0.7053");
        assert_eq!(num(1.0e-7, 3), "1.00e-7");
        assert_eq!(num(f64::NAN, 3), "n/a");
        assert_eq!(num(0.0, 3), "0");
    }

    #[test]
    fn grid_aligns_columns() {
        let g = render_grid(&["a", "bb"], &[["xyz".into(), "1".into()]]);
        assert_eq!(g, "a    bb\nxyz   1\n");
    }
}
