//! The service line and batch time the questions use, read from a coefficients file.

use super::*;

/// `(a, c)` of `S = a·n + c`: the fitted single-request line, or `t2(1)`, `t1(1) − t2(1)` from
/// the batch lines (one prefill and n − 1 decode steps) when only those were fitted.
pub(crate) fn single_request_line(
    c: &CoefficientsFile,
    notes: &mut Vec<String>,
) -> Option<LinearService> {
    if let Some((a, c0)) = c.single_request_line() {
        return Some(LinearService {
            per_token_s: a,
            intercept_s: c0.max(0.0),
        });
    }
    match (&c.first_token, &c.decode_step) {
        (Some(f), Some(d)) => {
            let (t1, t2) = (f.time_s(1.0), d.time_s(1.0));
            notes.push(format!(
                "No single-request line in the coefficients: S = a·n + c taken from the batch lines \
                 at b = 1 (a = t2(1) = {t2:.6} s/token, c = t1(1) − t2(1))."
            ));
            Some(LinearService {
                per_token_s: t2,
                intercept_s: (t1 - t2).max(0.0),
            })
        }
        _ => {
            notes.push(
                "No single-request line and no batch lines: the max-token limit is not analysed."
                    .into(),
            );
            None
        }
    }
}

pub(crate) fn batch_coeffs(c: &CoefficientsFile, notes: &mut Vec<String>) -> Option<BatchTime> {
    match c.batch_k() {
        Some([k1, k2, k3, k4]) => {
            // Negative fitted slopes (noise on a flat line) are clipped to zero for the models.
            let clip = |v: f64| v.max(0.0);
            if k1 < 0.0 || k3 < 0.0 {
                notes.push(format!(
                    "A fitted batch slope is negative (k1 = {k1:.3e}, k3 = {k3:.3e} s); the models use 0."
                ));
            }
            BatchTime::new(clip(k1), clip(k2), clip(k3), clip(k4)).ok()
        }
        None => {
            notes.push(
                "No t1(b)/t2(b) lines in the coefficients: the batch size is not analysed.".into(),
            );
            None
        }
    }
}
