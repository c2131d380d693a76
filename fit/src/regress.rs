//! Weighted least squares with coefficient standard errors, Student-t intervals and fit
//! statistics (R², MAPE, worst relative error).
//!
//! Model: `y_i = x_iᵀβ + ε_i`, `Var ε_i = σ²/w_i`. The estimate minimises `Σ w_i (y_i − x_iᵀβ)²`
//! (solved by QR of `W^{1/2}X`, never by forming normal equations);
//! `σ̂² = Σ w_i r_i² / (n − p)`, `Cov β̂ = σ̂² (XᵀWX)⁻¹`, and the `level` interval is
//! `β̂_j ± t_{n−p, (1+level)/2} · se_j` (standard linear-model theory, e.g. Seber & Lee,
//! *Linear Regression Analysis*, ch. 3). With `w_i = 1` this is ordinary least squares, which on
//! the paper's Table I reproduces docs/models.md §1: a = 0.02299253 s/token, c = 0.186087 s, R² = 0.99758.
//!
//! R² here is the ordinary (unweighted) `1 − SS_res/SS_tot` of the fitted values, so that it
//! compares with the paper's; MAPE and the worst error are relative to the observed value.

use nalgebra::{DMatrix, DVector};
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Result of a (weighted) linear least-squares fit.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearFit {
    /// Estimated coefficients, in the order of the design columns.
    pub coef: Vec<f64>,
    /// Standard errors (NaN when there are no residual degrees of freedom).
    pub std_err: Vec<f64>,
    /// Number of observations used.
    pub n: usize,
    /// Residual degrees of freedom `n − p`.
    pub dof: usize,
    /// Residual standard deviation at unit weight, `σ̂` (seconds).
    pub sigma: f64,
    /// Coefficient of determination on the fitted points (unweighted).
    pub r2: f64,
}

/// Why a least-squares problem has no unique answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LsqError {
    /// Fewer observations than coefficients.
    TooFew {
        /// Observations.
        n: usize,
        /// Coefficients.
        p: usize,
    },
    /// The design matrix has a column that is (nearly) a combination of the others;
    /// index of the first such column.
    RankDeficient(usize),
    /// A weight is negative, zero or not finite, or a value is not finite.
    BadInput,
}

/// Solve `min Σ w_i (y_i − x_iᵀβ)²`. `x` holds one row per observation; `w = None` means
/// ordinary least squares.
pub fn wls(x: &[Vec<f64>], y: &[f64], w: Option<&[f64]>) -> Result<LinearFit, LsqError> {
    let n = y.len();
    let p = x.first().map_or(0, Vec::len);
    if n < p || n == 0 || p == 0 {
        return Err(LsqError::TooFew { n, p });
    }
    if x.len() != n || x.iter().any(|r| r.len() != p) {
        return Err(LsqError::BadInput);
    }
    if let Some(w) = w
        && (w.len() != n || w.iter().any(|&v| !(v.is_finite() && v > 0.0)))
    {
        return Err(LsqError::BadInput);
    }
    if y.iter().any(|v| !v.is_finite()) || x.iter().flatten().any(|v| !v.is_finite()) {
        return Err(LsqError::BadInput);
    }
    let sw = |i: usize| w.map_or(1.0, |w| w[i].sqrt());
    // Scale columns to unit norm so the rank test is scale-free (b·context can be ~1e6).
    let mut scale = vec![0.0; p];
    for row in x {
        for (j, v) in row.iter().enumerate() {
            scale[j] += v * v;
        }
    }
    for (j, s) in scale.iter_mut().enumerate() {
        *s = s.sqrt();
        if *s == 0.0 {
            return Err(LsqError::RankDeficient(j));
        }
    }
    let a = DMatrix::from_fn(n, p, |i, j| sw(i) * x[i][j] / scale[j]);
    let b = DVector::from_fn(n, |i, _| sw(i) * y[i]);
    let qr = a.clone().qr();
    let r = qr.r();
    let rmax = (0..p).map(|j| r[(j, j)].abs()).fold(0.0, f64::max);
    for j in 0..p {
        if r[(j, j)].abs() <= 1e-10 * rmax.max(f64::MIN_POSITIVE) {
            return Err(LsqError::RankDeficient(j));
        }
    }
    let qtb = qr.q().transpose() * &b;
    let beta_s = r
        .solve_upper_triangular(&qtb)
        .ok_or(LsqError::RankDeficient(p - 1))?;
    let coef: Vec<f64> = (0..p).map(|j| beta_s[j] / scale[j]).collect();

    let fitted: Vec<f64> = x.iter().map(|row| dot(row, &coef)).collect();
    let ss_w: f64 = (0..n)
        .map(|i| w.map_or(1.0, |w| w[i]) * (y[i] - fitted[i]).powi(2))
        .sum();
    let dof = n - p;
    let sigma = if dof > 0 {
        (ss_w / dof as f64).sqrt()
    } else {
        f64::NAN
    };
    // (XᵀWX)⁻¹ in scaled coordinates = R⁻¹ R⁻ᵀ.
    let rinv = r
        .clone()
        .try_inverse()
        .ok_or(LsqError::RankDeficient(p - 1))?;
    let cov_s = &rinv * rinv.transpose();
    let std_err = (0..p)
        .map(|j| sigma * cov_s[(j, j)].sqrt() / scale[j])
        .collect();
    let mean = y.iter().sum::<f64>() / n as f64;
    let ss_tot: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
    let ss_res: f64 = (0..n).map(|i| (y[i] - fitted[i]).powi(2)).sum();
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else {
        f64::NAN
    };
    Ok(LinearFit {
        coef,
        std_err,
        n,
        dof,
        sigma,
        r2,
    })
}

/// `Σ a_i b_i`.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl LinearFit {
    /// Predicted value at design row `x`.
    pub fn predict(&self, x: &[f64]) -> f64 {
        dot(x, &self.coef)
    }

    /// Two-sided Student-t interval of every coefficient at confidence `level` (e.g. 0.95);
    /// `None` when there are no residual degrees of freedom.
    pub fn intervals(&self, level: f64) -> Option<Vec<(f64, f64)>> {
        let t = t_quantile(self.dof, 0.5 + level / 2.0)?;
        Some(
            self.coef
                .iter()
                .zip(&self.std_err)
                .map(|(c, s)| (c - t * s, c + t * s))
                .collect(),
        )
    }
}

/// Quantile `q` of Student's t with `dof` degrees of freedom (`None` for `dof = 0`).
pub fn t_quantile(dof: usize, q: f64) -> Option<f64> {
    if dof == 0 {
        return None;
    }
    StudentsT::new(0.0, 1.0, dof as f64)
        .ok()
        .map(|t| t.inverse_cdf(q))
}

/// Error statistics of predictions against observations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorStats {
    /// Number of points.
    pub n: usize,
    /// Mean absolute percentage error, percent.
    pub mape_pct: f64,
    /// Largest absolute relative error, percent.
    pub worst_pct: f64,
    /// Mean signed relative error (prediction − observation)/observation, percent.
    pub bias_pct: f64,
    /// `1 − SS_res/SS_tot` on these points (NaN when they do not vary).
    pub r2: f64,
}

/// Compare `predicted` with `observed` (same length, observations non-zero).
pub fn error_stats(observed: &[f64], predicted: &[f64]) -> ErrorStats {
    let n = observed.len();
    if n == 0 {
        return ErrorStats {
            n: 0,
            mape_pct: f64::NAN,
            worst_pct: f64::NAN,
            bias_pct: f64::NAN,
            r2: f64::NAN,
        };
    }
    let rel: Vec<f64> = observed
        .iter()
        .zip(predicted)
        .map(|(o, p)| (p - o) / o)
        .collect();
    let mean = observed.iter().sum::<f64>() / n as f64;
    let ss_tot: f64 = observed.iter().map(|v| (v - mean).powi(2)).sum();
    let ss_res: f64 = observed
        .iter()
        .zip(predicted)
        .map(|(o, p)| (o - p).powi(2))
        .sum();
    ErrorStats {
        n,
        mape_pct: 100.0 * rel.iter().map(|r| r.abs()).sum::<f64>() / n as f64,
        worst_pct: 100.0 * rel.iter().map(|r| r.abs()).fold(0.0, f64::max),
        bias_pct: 100.0 * rel.iter().sum::<f64>() / n as f64,
        r2: if ss_tot > 0.0 {
            1.0 - ss_res / ss_tot
        } else {
            f64::NAN
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(xs: &[f64]) -> Vec<Vec<f64>> {
        xs.iter().map(|&x| vec![x, 1.0]).collect()
    }

    /// docs/models.md §1: least squares on Table I's input = 128 rows.
    #[test]
    fn table1_line_matches_math_md() {
        let f = wls(
            &line(&[128.0, 256.0, 512.0, 1024.0]),
            &[2.91, 5.88, 12.63, 23.47],
            None,
        )
        .unwrap();
        assert!((f.coef[0] - 0.02299253).abs() < 5e-9, "{:?}", f.coef);
        assert!((f.coef[1] - 0.186087).abs() < 5e-7, "{:?}", f.coef);
        assert!((f.r2 - 0.99758).abs() < 5e-6, "{}", f.r2);
        assert_eq!(f.dof, 2);
    }

    /// docs/models.md §1: the 2-variable fit over all 7 distinct rows.
    #[test]
    fn table1_two_variable_fit_matches_math_md() {
        let rows = [
            (128.0, 128.0, 2.91),
            (128.0, 256.0, 5.88),
            (128.0, 512.0, 12.63),
            (128.0, 1024.0, 23.47),
            (64.0, 512.0, 12.18),
            (256.0, 512.0, 12.96),
            (512.0, 512.0, 13.19),
        ];
        let x: Vec<Vec<f64>> = rows.iter().map(|r| vec![r.1, r.0, 1.0]).collect();
        let y: Vec<f64> = rows.iter().map(|r| r.2).collect();
        let f = wls(&x, &y, None).unwrap();
        assert!((f.coef[0] - 0.02303404).abs() < 5e-8);
        assert!((f.coef[1] - 0.003084395).abs() < 5e-9);
        assert!((f.coef[2] + 0.07586795).abs() < 5e-7);
    }

    /// Closed form of simple regression: se(slope) = σ̂ / sqrt(Σ (x − x̄)²).
    #[test]
    fn standard_error_matches_closed_form() {
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let ys = [1.1, 1.9, 3.2, 3.9, 5.1, 5.8];
        let f = wls(&line(&xs), &ys, None).unwrap();
        let xbar = 3.5;
        let sxx: f64 = xs.iter().map(|x| (x - xbar) * (x - xbar)).sum();
        let res: f64 = xs
            .iter()
            .zip(&ys)
            .map(|(x, y)| (y - f.coef[0] * x - f.coef[1]).powi(2))
            .sum();
        let sigma = (res / 4.0).sqrt();
        assert!((f.std_err[0] - sigma / sxx.sqrt()).abs() < 1e-12);
        let se_c = sigma * (1.0 / 6.0 + xbar * xbar / sxx).sqrt();
        assert!((f.std_err[1] - se_c).abs() < 1e-12);
        // t_{4, 0.975} = 2.776445 (tables).
        assert!((t_quantile(4, 0.975).unwrap() - 2.776445).abs() < 1e-5);
    }

    /// Weighting by w is the same as replicating a point w times (integer weights).
    #[test]
    fn weights_equal_replication() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        let ys = [1.0, 2.5, 2.9, 4.4];
        let fw = wls(&line(&xs), &ys, Some(&[1.0, 3.0, 1.0, 2.0])).unwrap();
        let xr = [1.0, 2.0, 2.0, 2.0, 3.0, 4.0, 4.0];
        let yr = [1.0, 2.5, 2.5, 2.5, 2.9, 4.4, 4.4];
        let fr = wls(&line(&xr), &yr, None).unwrap();
        for j in 0..2 {
            assert!((fw.coef[j] - fr.coef[j]).abs() < 1e-12);
        }
    }

    #[test]
    fn degenerate_inputs_are_refused() {
        // One point for two coefficients.
        assert_eq!(
            wls(&line(&[1.0]), &[2.0], None),
            Err(LsqError::TooFew { n: 1, p: 2 })
        );
        // x constant: slope column equals the intercept column.
        assert!(matches!(
            wls(&line(&[2.0, 2.0, 2.0]), &[1.0, 1.1, 0.9], None),
            Err(LsqError::RankDeficient(_))
        ));
        assert_eq!(
            wls(&line(&[1.0, 2.0, 3.0]), &[1.0, f64::NAN, 3.0], None),
            Err(LsqError::BadInput)
        );
        assert_eq!(
            wls(
                &line(&[1.0, 2.0, 3.0]),
                &[1.0, 2.0, 3.0],
                Some(&[1.0, 0.0, 1.0])
            ),
            Err(LsqError::BadInput)
        );
    }

    #[test]
    fn error_stats_by_hand() {
        let s = error_stats(&[1.0, 2.0, 4.0], &[1.1, 1.8, 4.0]);
        assert!((s.mape_pct - 100.0 * (0.1 + 0.1 + 0.0) / 3.0).abs() < 1e-9);
        assert!((s.worst_pct - 10.0).abs() < 1e-9);
        assert!(s.bias_pct.abs() < 1e-9);
    }
}
