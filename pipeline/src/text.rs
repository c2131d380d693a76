//! Plain-text output shared by the commands: numbers with a fixed count of significant digits
//! and aligned tables whose rows carry the unit and the method of every number.

use tokenq_core::Method;

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
