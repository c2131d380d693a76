//! Small helpers shared by the analytic commands (`queue …`, `optimize …`): parsing of
//! `--tokens`, checks of numeric flags with one-line errors naming the flag, a plain table
//! printer that carries units and the method of every number, and JSON printing.

use anyhow::{Result, bail};
use queueing::Method;
use queueing::dist::TokenDist;
use serde::Serialize;

/// Parse a token-distribution spec; the error names `flag` and lists the accepted forms.
pub fn parse_tokens(flag: &str, spec: &str) -> Result<TokenDist> {
    TokenDist::parse(spec).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

/// A finite number `> 0`, else a one-line error naming the flag.
pub fn positive(flag: &str, v: f64, unit: &str) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        bail!("{flag} must be a finite number > 0 {unit}, got {v}")
    }
}

/// A finite number `≥ 0`, else a one-line error naming the flag.
pub fn non_negative(flag: &str, v: f64, unit: &str) -> Result<f64> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        bail!("{flag} must be a finite number >= 0 {unit}, got {v}")
    }
}

/// A max-token limit: `≥ 1`, or `None` (no limit → `+∞`).
pub fn max_tokens(flag: &str, v: Option<f64>) -> Result<f64> {
    match v {
        None => Ok(f64::INFINITY),
        Some(l) if l.is_finite() && l >= 1.0 => Ok(l),
        Some(l) => bail!("{flag} must be a number of tokens >= 1 (omit it for no limit), got {l}"),
    }
}

/// Parse a number or a fraction `A/B` (e.g. `--weight 119/120`).
pub fn parse_fraction(s: &str) -> std::result::Result<f64, String> {
    let v = match s.split_once('/') {
        Some((a, b)) => {
            let a: f64 = a.trim().parse().map_err(|_| format!("`{s}` is not A/B"))?;
            let b: f64 = b.trim().parse().map_err(|_| format!("`{s}` is not A/B"))?;
            a / b
        }
        None => s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a number"))?,
    };
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("`{s}` is not a finite number"))
    }
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

/// Print a value as pretty JSON on stdout.
pub fn print_json<T: Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_fractions() {
        assert_eq!(num(23.000001, 6), "23.0000");
        assert_eq!(num(0.705283, 4), "0.7053");
        assert_eq!(num(1.0e-7, 3), "1.00e-7");
        assert_eq!(parse_fraction("119/120").unwrap(), 119.0 / 120.0);
        assert!(parse_fraction("x").is_err());
        assert!(parse_fraction("1/0").is_err());
        assert!(max_tokens("--max-tokens", Some(0.5)).is_err());
        assert!(max_tokens("--max-tokens", Some(f64::NAN)).is_err());
        assert_eq!(max_tokens("--max-tokens", None).unwrap(), f64::INFINITY);
    }
}
