//! Timed steps and their aggregation (docs/design.md "Contracts", timings table).
//!
//! One [`StepRow`] per timed model step: step 0 is the prefill that yields the first token,
//! step k ≥ 1 the k-th decode step. Rows are grouped per grid point (`run_id`, `point_id`) and
//! step position; each group is summarised by the median over repetitions and the sample
//! standard deviation (the spread used for weighting). Single-request points (batch size 1)
//! also give end-to-end curves: a decode run of N steps gives the latency of every output
//! length n ≤ N, `e2e(n) = Σ_{k<n} step_k` (n output tokens = the prefill plus n − 1 decode
//! steps; docs/design.md: "profile steps, then derive requests").

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{FitError, Result};

pub use tokenq_core::timings::{StepRow, TIMINGS_COLUMNS};

/// Key of a grid point.
pub type PointKey = (String, u64);

/// Median and spread of one step position of one grid point.
#[derive(Debug, Clone, PartialEq)]
pub struct StepPoint {
    /// Grid point.
    pub key: PointKey,
    /// Requests in the batch.
    pub batch_size: u32,
    /// Prompt tokens per request.
    pub input_tokens: u32,
    /// Step position.
    pub step: u32,
    /// KV entries per request before the step.
    pub context_tokens: u64,
    /// Median over repetitions, seconds.
    pub median_s: f64,
    /// Sample standard deviation over repetitions, seconds (None with one repetition).
    pub spread_s: Option<f64>,
    /// Repetitions.
    pub reps: usize,
}

/// End-to-end latency of one output length at one single-request grid point, per repetition.
#[derive(Debug, Clone, PartialEq)]
pub struct E2ePoint {
    /// Grid point.
    pub key: PointKey,
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Output tokens n (prefill + n − 1 decode steps).
    pub output_tokens: u32,
    /// e2e(n) of each repetition, in repetition order, seconds.
    pub per_rep_s: Vec<f64>,
}

impl E2ePoint {
    /// Mean over repetitions, seconds.
    pub fn mean_s(&self) -> f64 {
        self.per_rep_s.iter().sum::<f64>() / self.per_rep_s.len() as f64
    }
}

/// Median of a non-empty slice.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

/// Sample standard deviation (None for fewer than two values).
pub fn sample_sd(v: &[f64]) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    Some((v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt())
}

/// Reject rows no profile can produce: non-finite or non-positive times, zero batch size.
/// `source` names the table in messages.
pub fn check_rows(rows: &[StepRow], source: &Path) -> Result<()> {
    if rows.is_empty() {
        return Err(FitError::Empty {
            what: source.display().to_string(),
        });
    }
    for (i, r) in rows.iter().enumerate() {
        if !r.time_s.is_finite() {
            return Err(FitError::NonFinite {
                path: source.to_path_buf(),
                column: "time".into(),
                row: i + 1,
                value: r.time_s,
            });
        }
        if r.time_s <= 0.0 {
            return Err(FitError::BadValue {
                path: source.to_path_buf(),
                what: format!("row {}: step time {} s is not positive", i + 1, r.time_s),
            });
        }
        if r.batch_size == 0 {
            return Err(FitError::BadValue {
                path: source.to_path_buf(),
                what: format!("row {}: batch_size is 0", i + 1),
            });
        }
    }
    Ok(())
}

/// Group rows per grid point and step; median and spread over repetitions.
pub fn aggregate_steps(rows: &[StepRow]) -> Vec<StepPoint> {
    let mut groups: BTreeMap<(PointKey, u32), Vec<&StepRow>> = BTreeMap::new();
    for r in rows {
        groups
            .entry(((r.run_id.clone(), r.point_id), r.step))
            .or_default()
            .push(r);
    }
    groups
        .into_iter()
        .map(|((key, step), rs)| {
            let times: Vec<f64> = rs.iter().map(|r| r.time_s).collect();
            let ctx: Vec<f64> = rs.iter().map(|r| r.context_tokens as f64).collect();
            StepPoint {
                key,
                batch_size: rs[0].batch_size,
                input_tokens: rs[0].input_tokens,
                step,
                context_tokens: median(&ctx).round() as u64,
                median_s: median(&times),
                spread_s: sample_sd(&times),
                reps: times.len(),
            }
        })
        .collect()
}

/// End-to-end curves of the single-request (batch size 1) grid points. For each point and
/// repetition the steps 0..N−1 must all be present; a repetition with a gap is cut at the gap.
/// Every repetition of a point is cut to the shortest one so that all share the same n.
/// At most `max_lengths` output lengths per point are kept, spread evenly over 1..=N (the
/// curve is cumulative: neighbouring lengths add little information).
pub fn e2e_curves(rows: &[StepRow], max_lengths: usize) -> Vec<E2ePoint> {
    let mut per: BTreeMap<PointKey, BTreeMap<u32, BTreeMap<u32, f64>>> = BTreeMap::new();
    let mut input: BTreeMap<PointKey, u32> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.batch_size == 1) {
        let key = (r.run_id.clone(), r.point_id);
        input.insert(key.clone(), r.input_tokens);
        per.entry(key)
            .or_default()
            .entry(r.rep)
            .or_default()
            .insert(r.step, r.time_s);
    }
    let mut out = Vec::new();
    for (key, reps) in per {
        let curves: Vec<Vec<f64>> = reps
            .values()
            .map(|steps| {
                let mut acc = 0.0;
                let mut c = Vec::new();
                for (expect, (&s, &t)) in steps.iter().enumerate() {
                    if s as usize != expect {
                        break;
                    }
                    acc += t;
                    c.push(acc);
                }
                c
            })
            .collect();
        let n_max = curves.iter().map(Vec::len).min().unwrap_or(0);
        if n_max == 0 {
            continue;
        }
        for n in thin(n_max, max_lengths) {
            out.push(E2ePoint {
                key: key.clone(),
                input_tokens: input[&key],
                output_tokens: n as u32,
                per_rep_s: curves.iter().map(|c| c[n - 1]).collect(),
            });
        }
    }
    out
}

/// Up to `k` integers spread evenly over 1..=n, always including 1 and n.
pub(crate) fn thin(n: usize, k: usize) -> Vec<usize> {
    if n <= k || k < 2 {
        return (1..=n).collect();
    }
    let mut v: Vec<usize> = (0..k)
        .map(|i| 1 + ((n - 1) as f64 * i as f64 / (k - 1) as f64).round() as usize)
        .collect();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(point: u64, rep: u32, b: u32, step: u32, t: f64) -> StepRow {
        StepRow {
            run_id: "r".into(),
            point_id: point,
            rep,
            batch_size: b,
            input_tokens: 8,
            step,
            context_tokens: 8 + u64::from(step),
            time_s: t,
        }
    }

    #[test]
    fn median_and_spread() {
        let rows = vec![
            row(0, 0, 2, 0, 1.0),
            row(0, 1, 2, 0, 3.0),
            row(0, 2, 2, 0, 2.0),
        ];
        let a = aggregate_steps(&rows);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].median_s, 2.0);
        assert!((a[0].spread_s.unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn e2e_is_cumulative_and_cut_at_gaps() {
        // rep 0: steps 0,1,2; rep 1: steps 0,1,3 (gap at 2) → both cut to n ≤ 2.
        let rows = vec![
            row(0, 0, 1, 0, 1.0),
            row(0, 0, 1, 1, 0.5),
            row(0, 0, 1, 2, 0.5),
            row(0, 1, 1, 0, 1.2),
            row(0, 1, 1, 1, 0.4),
            row(0, 1, 1, 3, 0.4),
            row(1, 0, 4, 0, 9.0),
        ];
        let e = e2e_curves(&rows, 100);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].output_tokens, 1);
        assert_eq!(e[0].per_rep_s, vec![1.0, 1.2]);
        assert_eq!(e[1].output_tokens, 2);
        assert!((e[1].per_rep_s[0] - 1.5).abs() < 1e-12);
        assert!((e[1].per_rep_s[1] - 1.6).abs() < 1e-12);
    }

    #[test]
    fn thinning_keeps_ends() {
        assert_eq!(thin(5, 10), vec![1, 2, 3, 4, 5]);
        let t = thin(1000, 5);
        assert_eq!(t, vec![1, 251, 501, 750, 1000]);
    }

    #[test]
    fn bad_rows_are_refused() {
        let p = Path::new("t.csv");
        assert!(matches!(check_rows(&[], p), Err(FitError::Empty { .. })));
        let mut r = row(0, 0, 1, 0, f64::NAN);
        assert!(matches!(
            check_rows(std::slice::from_ref(&r), p),
            Err(FitError::NonFinite { row: 1, .. })
        ));
        r.time_s = -1.0;
        assert!(check_rows(&[r], p).is_err());
    }
}
