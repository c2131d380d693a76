//! Empirical token-length laws: histograms and raw samples read from CSV text.
//!
//! CSV conventions (`empirical:PATH[:COLUMN]`):
//!
//! * Lines that are blank or start with `#` are ignored. Fields are comma-separated; surrounding
//!   whitespace and double quotes are stripped. The first line is a header when any of its
//!   fields is not a number.
//! * **Histogram**: without `:COLUMN`, a file whose header is `value,count`, `value,prob`,
//!   `value,probability` or `value,weight` (case-insensitive, any further columns ignored) is
//!   a histogram: each row is an atom and its count / probability (normalised to sum 1).
//! * **Raw samples**: with `:COLUMN` (a header name, or a 0-based index), every row's value in
//!   that column is one observed token count; a file with a single column needs no `:COLUMN`.
//!
//! Values must be finite and `≥ 0`; weights finite and `≥ 0` with a positive sum.

use super::{DistError, Empirical};

/// Names accepted for the weight column of a histogram file.
const WEIGHT_HEADERS: &[&str] = &["count", "prob", "probability", "weight"];

impl Empirical {
    /// Build from atoms and non-negative weights (counts or probabilities; normalised here).
    /// Atoms are sorted and duplicates merged; zero-weight atoms are dropped.
    pub fn from_weights(
        values: &[f64],
        weights: &[f64],
        source: impl Into<String>,
    ) -> Result<Self, String> {
        if values.len() != weights.len() {
            return Err(format!(
                "{} values but {} weights",
                values.len(),
                weights.len()
            ));
        }
        let mut pairs = Vec::with_capacity(values.len());
        for (&v, &w) in values.iter().zip(weights) {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("token count {v} is not a finite number >= 0"));
            }
            if !w.is_finite() || w < 0.0 {
                return Err(format!("weight {w} is not a finite number >= 0"));
            }
            if w > 0.0 {
                pairs.push((v, w));
            }
        }
        if pairs.is_empty() {
            return Err("no atom with positive weight".into());
        }
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut vals: Vec<f64> = Vec::with_capacity(pairs.len());
        let mut ws: Vec<f64> = Vec::with_capacity(pairs.len());
        for (v, w) in pairs {
            if vals.last() == Some(&v) {
                *ws.last_mut().expect("non-empty") += w;
            } else {
                vals.push(v);
                ws.push(w);
            }
        }
        let total: f64 = ws.iter().sum();
        let probs: Vec<f64> = ws.iter().map(|w| w / total).collect();
        let mut cdf = Vec::with_capacity(probs.len());
        let mut acc = 0.0;
        for p in &probs {
            acc += p;
            cdf.push(acc.min(1.0));
        }
        *cdf.last_mut().expect("non-empty") = 1.0;
        Ok(Empirical {
            values: vals,
            probs,
            cdf,
            source: source.into(),
        })
    }

    /// Build from raw observations (each weighs 1).
    pub fn from_samples(samples: &[f64], source: impl Into<String>) -> Result<Self, String> {
        let ones = vec![1.0; samples.len()];
        Self::from_weights(samples, &ones, source)
    }

    /// Read `empirical:PATH[:COLUMN]` (see the module docs for the file format).
    pub fn from_csv_file(path: &str, column: Option<&str>) -> Result<Self, DistError> {
        let text = std::fs::read_to_string(path).map_err(|e| DistError::File {
            path: path.to_string(),
            why: format!("cannot read: {e}"),
        })?;
        Self::from_csv_str(&text, column, path)
    }

    /// Parse CSV text; `source` names the file in errors and in [`Empirical::source`].
    pub fn from_csv_str(text: &str, column: Option<&str>, source: &str) -> Result<Self, DistError> {
        let err = |why: String| DistError::File {
            path: source.to_string(),
            why,
        };
        let mut rows: Vec<(usize, Vec<String>)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let fields = t
                .split(',')
                .map(|f| f.trim().trim_matches('"').trim().to_string())
                .collect();
            rows.push((i + 1, fields));
        }
        if rows.is_empty() {
            return Err(err(
                "empty file: no data rows (expected a CSV of token counts)".into(),
            ));
        }
        let is_num = |s: &str| s.parse::<f64>().is_ok();
        let header: Option<Vec<String>> = if rows[0].1.iter().any(|f| !is_num(f)) {
            Some(
                rows.remove(0)
                    .1
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
            )
        } else {
            None
        };
        if rows.is_empty() {
            return Err(err("no data rows after the header".into()));
        }
        let ncols = header.as_ref().map_or(rows[0].1.len(), Vec::len);
        let parse_at = |line: usize, fields: &[String], col: usize, what: &str| {
            let f = fields
                .get(col)
                .ok_or_else(|| err(format!("line {line}: missing column {col} ({what})")))?;
            let v: f64 = f
                .parse()
                .map_err(|_| err(format!("line {line}: `{f}` is not a number ({what})")))?;
            if !v.is_finite() || v < 0.0 {
                return Err(err(format!(
                    "line {line}: {what} must be a finite number >= 0, got `{f}`"
                )));
            }
            Ok(v)
        };
        let hist_cols = header.as_ref().and_then(|h| {
            let w = h
                .iter()
                .position(|c| WEIGHT_HEADERS.contains(&c.as_str()))?;
            let v = h.iter().position(|c| c == "value")?;
            Some((v, w))
        });
        let (values, weights) = match (column, hist_cols) {
            (None, Some((vc, wc))) => {
                let mut vs = Vec::with_capacity(rows.len());
                let mut ws = Vec::with_capacity(rows.len());
                for (line, f) in &rows {
                    vs.push(parse_at(*line, f, vc, "value")?);
                    ws.push(parse_at(*line, f, wc, "weight")?);
                }
                (vs, ws)
            }
            (col, _) => {
                let idx = match col {
                    Some(c) => {
                        let by_name = header
                            .as_ref()
                            .and_then(|h| h.iter().position(|x| *x == c.to_ascii_lowercase()));
                        match (by_name, c.parse::<usize>()) {
                            (Some(i), _) => i,
                            (None, Ok(i)) if i < ncols => i,
                            _ => {
                                let have = header.as_ref().map_or_else(
                                    || format!("{ncols} unnamed columns"),
                                    |h| h.join(", "),
                                );
                                return Err(err(format!(
                                    "no column `{c}` (columns: {have}); name one by header or 0-based index"
                                )));
                            }
                        }
                    }
                    None if ncols == 1 => 0,
                    None => {
                        return Err(err(format!(
                            "{ncols} columns and no `value,count` / `value,prob` header: \
                             pick the column of raw samples with empirical:PATH:COLUMN"
                        )));
                    }
                };
                let mut vs = Vec::with_capacity(rows.len());
                for (line, f) in &rows {
                    vs.push(parse_at(*line, f, idx, "token count")?);
                }
                let ws = vec![1.0; vs.len()];
                (vs, ws)
            }
        };
        Empirical::from_weights(&values, &weights, source).map_err(err)
    }

    /// Internal consistency (sorted, probabilities sum to 1, cdf matches).
    pub(crate) fn check(&self) -> Result<(), String> {
        let n = self.values.len();
        if n == 0 {
            return Err(format!("{}: empty histogram", self.source));
        }
        if self.probs.len() != n || self.cdf.len() != n {
            return Err(format!("{}: values/probs/cdf lengths differ", self.source));
        }
        if self.values.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!("{}: values must ascend strictly", self.source));
        }
        if self.values.iter().any(|v| !v.is_finite() || *v < 0.0) {
            return Err(format!("{}: values must be finite and >= 0", self.source));
        }
        let total: f64 = self.probs.iter().sum();
        if self.probs.iter().any(|p| !p.is_finite() || *p < 0.0) || (total - 1.0).abs() > 1e-9 {
            return Err(format!(
                "{}: probabilities must be >= 0 and sum to 1",
                self.source
            ));
        }
        Ok(())
    }

    /// Number of atoms `<= x`.
    fn count_le(&self, x: f64) -> usize {
        self.values.partition_point(|&v| v <= x)
    }

    pub(crate) fn cdf_at(&self, x: f64) -> f64 {
        match self.count_le(x) {
            0 => 0.0,
            k => self.cdf[k - 1],
        }
    }

    pub(crate) fn sf_at(&self, x: f64) -> f64 {
        let k = self.count_le(x);
        if k == 0 {
            return 1.0;
        }
        if self.cdf[k - 1] < 0.5 {
            1.0 - self.cdf[k - 1]
        } else {
            self.probs[k..].iter().sum()
        }
    }

    pub(crate) fn quantile_at(&self, p: f64) -> f64 {
        let k = self.cdf.partition_point(|&c| c < p);
        self.values[k.min(self.values.len() - 1)]
    }

    /// Smallest atom `v` with `P(N > v) <= s`, summing the tail from the top (no cancellation).
    pub(crate) fn isf_at(&self, s: f64) -> f64 {
        let mut tail = 0.0;
        let n = self.values.len();
        for j in (0..n).rev() {
            // tail = P(N > values[j])
            if tail > s {
                return self.values[(j + 1).min(n - 1)];
            }
            tail += self.probs[j];
        }
        self.values[0]
    }

    pub(crate) fn clipped_moments_at(&self, l: f64) -> (f64, f64) {
        let k = self.count_le(l);
        let mut m1 = 0.0;
        let mut m2 = 0.0;
        for j in 0..k {
            m1 += self.values[j] * self.probs[j];
            m2 += self.values[j] * self.values[j] * self.probs[j];
        }
        if k < self.values.len() {
            let tail: f64 = self.probs[k..].iter().sum();
            m1 += l * tail;
            m2 += l * l * tail;
        }
        (m1, m2)
    }
}
