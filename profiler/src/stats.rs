//! Outlier labelling with Tukey's fences (Tukey 1977, *Exploratory Data Analysis*).
//!
//! For a sample with quartiles Q1, Q3 and IQR = Q3 − Q1, a value outside
//! `[Q1 − 1.5·IQR, Q3 + 1.5·IQR]` is an outlier ("mild"), outside `[Q1 − 3·IQR, Q3 + 3·IQR]`
//! "far out". Quartiles interpolate linearly between order statistics (Hyndman–Fan type 7,
//! the default of R and NumPy).
//!
//! What is fenced: decode steps of one pass get slower with context, so within each
//! (point, rep) the residuals of a least-squares line `wall_s ~ context_tokens` are fenced;
//! the prefill (one per pass) is fenced across the repetitions of its point when there are at
//! least [`MIN_SAMPLE`] of them. Outliers are labelled and reported, never dropped.

use serde::{Deserialize, Serialize};

/// Fence multiplier of a mild outlier.
pub const MILD_K: f64 = 1.5;
/// Fence multiplier of a far-out outlier.
pub const FAR_K: f64 = 3.0;
/// Smallest sample worth fencing.
pub const MIN_SAMPLE: usize = 4;

/// Type-7 quantile of sorted data, `q` in [0, 1].
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let h = (n - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Severity of an outlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Mild,
    Far,
}

/// Classify each value against Tukey's fences of the sample (None = inside the inner fences).
pub fn tukey(values: &[f64]) -> Vec<Option<Severity>> {
    if values.len() < MIN_SAMPLE {
        return vec![None; values.len()];
    }
    let mut s = values.to_vec();
    s.sort_by(f64::total_cmp);
    let (q1, q3) = (quantile_sorted(&s, 0.25), quantile_sorted(&s, 0.75));
    let iqr = q3 - q1;
    values
        .iter()
        .map(|&v| {
            if v < q1 - FAR_K * iqr || v > q3 + FAR_K * iqr {
                Some(Severity::Far)
            } else if v < q1 - MILD_K * iqr || v > q3 + MILD_K * iqr {
                Some(Severity::Mild)
            } else {
                None
            }
        })
        .collect()
}

/// Residuals of the least-squares line y ~ a + b·x.
pub fn line_residuals(x: &[f64], y: &[f64]) -> Vec<f64> {
    let n = x.len() as f64;
    if x.is_empty() {
        return vec![];
    }
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let sxx: f64 = x.iter().map(|v| (v - mx) * (v - mx)).sum();
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    x.iter()
        .zip(y)
        .map(|(a, b)| b - (my + slope * (a - mx)))
        .collect()
}

/// A labelled step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outlier {
    pub point_id: u32,
    pub rep: u32,
    pub step: u32,
    pub wall_s: f64,
    pub severity: Severity,
}

/// One timed step of one point (the rows of the timings table, minus the constant columns).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepRow {
    pub rep: u32,
    pub step: u32,
    pub context_tokens: u32,
    pub wall_s: f64,
    pub device_s: Option<f64>,
}

/// Label the outliers of one grid point's rows.
pub fn label_point(point_id: u32, rows: &[StepRow]) -> Vec<Outlier> {
    let mut out = Vec::new();
    // prefills across reps
    let prefills: Vec<&StepRow> = rows.iter().filter(|r| r.step == 0).collect();
    let vals: Vec<f64> = prefills.iter().map(|r| r.wall_s).collect();
    for (r, sev) in prefills.iter().zip(tukey(&vals)) {
        if let Some(severity) = sev {
            out.push(Outlier {
                point_id,
                rep: r.rep,
                step: 0,
                wall_s: r.wall_s,
                severity,
            });
        }
    }
    // decode steps within each rep, about their line in context
    let mut reps: Vec<u32> = rows.iter().map(|r| r.rep).collect();
    reps.sort_unstable();
    reps.dedup();
    for rep in reps {
        let dec: Vec<&StepRow> = rows.iter().filter(|r| r.rep == rep && r.step > 0).collect();
        let x: Vec<f64> = dec.iter().map(|r| f64::from(r.context_tokens)).collect();
        let y: Vec<f64> = dec.iter().map(|r| r.wall_s).collect();
        for (r, sev) in dec.iter().zip(tukey(&line_residuals(&x, &y))) {
            if let Some(severity) = sev {
                out.push(Outlier {
                    point_id,
                    rep,
                    step: r.step,
                    wall_s: r.wall_s,
                    severity,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type7_quartiles_match_numpy() {
        // numpy.percentile([1,2,3,4,5,6,7,8], [25, 75]) = [2.75, 6.25]
        let s = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        assert!((quantile_sorted(&s, 0.25) - 2.75).abs() < 1e-12);
        assert!((quantile_sorted(&s, 0.75) - 6.25).abs() < 1e-12);
    }

    #[test]
    fn fences_by_hand() {
        // Q1 = 2.75, Q3 = 6.25, IQR = 3.5: mild above 11.5, far above 16.75.
        let mut v = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        v[7] = 12.0; // recompute: sorted 1..7,12 → Q3 = 6.25 still (7·0.75 = 5.25 → 6 + .25·1)
        let l = tukey(&v);
        assert_eq!(l[7], Some(Severity::Mild));
        v[7] = 17.0;
        assert_eq!(tukey(&v)[7], Some(Severity::Far));
        assert!(tukey(&v)[..7].iter().all(Option::is_none));
        assert!(
            tukey(&[1.0, 100.0, 1.0]).iter().all(Option::is_none),
            "too small to fence"
        );
    }

    #[test]
    fn residuals_of_an_exact_line_are_zero() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let y = [3.0, 5.0, 7.0, 9.0];
        assert!(line_residuals(&x, &y).iter().all(|r| r.abs() < 1e-12));
    }

    #[test]
    fn a_spike_on_a_rising_decode_series_is_far_out_and_nothing_else() {
        let mut rows: Vec<StepRow> = (0..32)
            .map(|k| StepRow {
                rep: 0,
                step: k,
                context_tokens: if k == 0 { 0 } else { 16 + k - 1 },
                wall_s: if k == 0 {
                    0.05
                } else {
                    0.010 + 1e-4 * f64::from(k) + 1e-6 * f64::from(k % 3)
                },
                device_s: None,
            })
            .collect();
        rows[20].wall_s *= 5.0;
        let o = label_point(3, &rows);
        assert_eq!(o.len(), 1, "{o:?}");
        assert_eq!(
            (o[0].point_id, o[0].step, o[0].severity),
            (3, 20, Severity::Far)
        );
    }
}
