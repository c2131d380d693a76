//! Shared numerical helpers for the queueing models (docs/models.md §1–§8).
//!
//! * Standard normal pdf / cdf / survival function / quantile. The cdf and sf are built on the
//!   complementary error function of `libm` (the musl/FreeBSD implementation, < 1 ulp), so
//!   `norm_sf(x)` keeps full relative accuracy deep in the upper tail instead of returning
//!   `1 − Φ(x)` with cancellation. (statrs' `erfc` built without its `std` feature is only
//!   good to ~1e-10, so it is not used here.) The quantile starts from statrs' `erfc_inv` and
//!   polishes it with two Halley steps against the accurate `erfc`.
//! * Gauss–Legendre nodes and weights (Newton iteration on the Legendre recurrence).
//! * Poisson pmf in log space (no overflow for large means).
//! * Brent's root finder and Brent's (golden-section + parabolic) minimiser.
//!
//! Every helper is `pub`: the batch models and the simulator reuse them.

use libm::erfc;
use statrs::function::erf::erfc_inv;
use statrs::function::gamma::ln_gamma;

/// `1/√(2π)`.
pub const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
/// `ln √(2π)`.
pub const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// Standard normal density `φ(x)`.
pub fn norm_pdf(x: f64) -> f64 {
    FRAC_1_SQRT_2PI * (-0.5 * x * x).exp()
}

/// Standard normal cdf `Φ(x)`, accurate in the lower tail.
pub fn norm_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// Standard normal survival function `1 − Φ(x) = Φ(−x)`, accurate in the upper tail.
pub fn norm_sf(x: f64) -> f64 {
    0.5 * erfc(x / std::f64::consts::SQRT_2)
}

/// `Φ(b) − Φ(a)` for `a ≤ b`, computed on the side of zero that avoids cancellation.
pub fn norm_interval(a: f64, b: f64) -> f64 {
    if a >= b {
        return 0.0;
    }
    if a > 0.0 {
        (norm_sf(a) - norm_sf(b)).max(0.0)
    } else {
        (norm_cdf(b) - norm_cdf(a)).max(0.0)
    }
}

/// Standard normal quantile `Φ⁻¹(p)`; `±∞` at `p = 1`, `p = 0`; NaN outside `[0, 1]`.
pub fn norm_quantile(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    if p > 0.5 {
        // Upper half: use the (exactly representable) complement to keep the tail accurate.
        return -norm_isf_raw(p);
    }
    let x = -std::f64::consts::SQRT_2 * erfc_inv(2.0 * p);
    halley_refine(halley_refine(x, p), p)
}

/// Inverse survival function `Φ⁻¹(1 − s)` without forming `1 − s` (accurate for tiny `s`).
pub fn norm_isf(s: f64) -> f64 {
    if s.is_nan() || !(0.0..=1.0).contains(&s) {
        return f64::NAN;
    }
    -norm_quantile(s)
}

/// `Φ⁻¹(p)` for `p > 1/2` evaluated as `−Φ⁻¹(1 − p)` (the subtraction is exact for `p ≥ 1/2`).
fn norm_isf_raw(p: f64) -> f64 {
    norm_quantile(1.0 - p)
}

/// One Halley step on `Φ(x) = p` for `p ≤ 1/2`, using the relative residual so that tiny
/// lower-tail probabilities keep full precision.
fn halley_refine(x: f64, p: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let pdf = norm_pdf(x);
    if pdf <= 0.0 {
        return x;
    }
    let t = (norm_cdf(x) - p) / pdf;
    x - t / (1.0 + 0.5 * x * t)
}

/// Gauss–Legendre nodes and weights on `[-1, 1]` for `n ≥ 1` points (exact for polynomials of
/// degree `2n − 1`). Nodes ascend.
pub fn gauss_legendre(n: usize) -> (Vec<f64>, Vec<f64>) {
    assert!(n >= 1, "gauss_legendre needs n >= 1");
    let mut x = vec![0.0; n];
    let mut w = vec![0.0; n];
    let m = n.div_ceil(2);
    let nf = n as f64;
    for i in 0..m {
        // Chebyshev-like initial guess for the i-th largest root.
        let mut z = (std::f64::consts::PI * (i as f64 + 0.75) / (nf + 0.5)).cos();
        let mut dp = 0.0;
        for _ in 0..100 {
            let (p, d) = legendre_and_derivative(n, z);
            dp = d;
            let dz = p / d;
            z -= dz;
            if dz.abs() < 1e-15 {
                let (_, d2) = legendre_and_derivative(n, z);
                dp = d2;
                break;
            }
        }
        let wi = 2.0 / ((1.0 - z * z) * dp * dp);
        x[i] = -z;
        x[n - 1 - i] = z;
        w[i] = wi;
        w[n - 1 - i] = wi;
    }
    if n % 2 == 1 {
        x[n / 2] = 0.0;
    }
    (x, w)
}

/// Gauss–Legendre nodes and weights mapped to `[a, b]`.
pub fn gauss_legendre_on(n: usize, a: f64, b: f64) -> (Vec<f64>, Vec<f64>) {
    let (x, w) = gauss_legendre(n);
    let half = 0.5 * (b - a);
    let mid = 0.5 * (a + b);
    (
        x.iter().map(|&t| mid + half * t).collect(),
        w.iter().map(|&wi| half * wi).collect(),
    )
}

/// `(P_n(z), P_n'(z))` by the three-term recurrence.
fn legendre_and_derivative(n: usize, z: f64) -> (f64, f64) {
    let mut p0 = 1.0;
    let mut p1 = z;
    if n == 0 {
        return (1.0, 0.0);
    }
    for k in 2..=n {
        let kf = k as f64;
        let p2 = ((2.0 * kf - 1.0) * z * p1 - (kf - 1.0) * p0) / kf;
        p0 = p1;
        p1 = p2;
    }
    let nf = n as f64;
    let d = nf * (z * p1 - p0) / (z * z - 1.0);
    (p1, d)
}

/// `ln P(X = k)` for `X ~ Poisson(mean)`; `mean = 0` gives `0` at `k = 0` and `−∞` elsewhere.
pub fn poisson_ln_pmf(k: u64, mean: f64) -> f64 {
    if mean == 0.0 {
        return if k == 0 { 0.0 } else { f64::NEG_INFINITY };
    }
    let kf = k as f64;
    kf * mean.ln() - mean - ln_gamma(kf + 1.0)
}

/// `P(X = k)` for `X ~ Poisson(mean)`, evaluated in log space.
pub fn poisson_pmf(k: u64, mean: f64) -> f64 {
    poisson_ln_pmf(k, mean).exp()
}

/// Errors of the 1-D solvers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SolveError {
    /// `f(a)` and `f(b)` have the same sign.
    #[error("root not bracketed: f({a}) = {fa}, f({b}) = {fb}")]
    NotBracketed { a: f64, b: f64, fa: f64, fb: f64 },
    /// The function returned NaN.
    #[error("function returned NaN at x = {x}")]
    NaN { x: f64 },
}

/// Brent's method for a root of `f` in `[a, b]` with `f(a)·f(b) ≤ 0`, to absolute tolerance `tol`.
pub fn brent_root<F: FnMut(f64) -> f64>(
    mut f: F,
    mut a: f64,
    mut b: f64,
    tol: f64,
) -> Result<f64, SolveError> {
    let mut fa = f(a);
    let mut fb = f(b);
    if fa.is_nan() {
        return Err(SolveError::NaN { x: a });
    }
    if fb.is_nan() {
        return Err(SolveError::NaN { x: b });
    }
    if fa == 0.0 {
        return Ok(a);
    }
    if fb == 0.0 {
        return Ok(b);
    }
    if fa.signum() == fb.signum() {
        return Err(SolveError::NotBracketed { a, b, fa, fb });
    }
    let mut c = a;
    let mut fc = fa;
    let mut d = b - a;
    let mut e = d;
    for _ in 0..200 {
        if fb.signum() == fc.signum() {
            c = a;
            fc = fa;
            d = b - a;
            e = d;
        }
        if fc.abs() < fb.abs() {
            a = b;
            b = c;
            c = a;
            fa = fb;
            fb = fc;
            fc = fa;
        }
        let tol1 = 2.0 * f64::EPSILON * b.abs() + 0.5 * tol;
        let xm = 0.5 * (c - b);
        if xm.abs() <= tol1 || fb == 0.0 {
            return Ok(b);
        }
        if e.abs() >= tol1 && fa.abs() > fb.abs() {
            let s = fb / fa;
            let (mut p, mut q);
            if a == c {
                p = 2.0 * xm * s;
                q = 1.0 - s;
            } else {
                let qq = fa / fc;
                let r = fb / fc;
                p = s * (2.0 * xm * qq * (qq - r) - (b - a) * (r - 1.0));
                q = (qq - 1.0) * (r - 1.0) * (s - 1.0);
            }
            if p > 0.0 {
                q = -q;
            }
            p = p.abs();
            let min1 = 3.0 * xm * q - (tol1 * q).abs();
            let min2 = (e * q).abs();
            if 2.0 * p < min1.min(min2) {
                e = d;
                d = p / q;
            } else {
                d = xm;
                e = d;
            }
        } else {
            d = xm;
            e = d;
        }
        a = b;
        fa = fb;
        b += if d.abs() > tol1 { d } else { tol1.copysign(xm) };
        fb = f(b);
        if fb.is_nan() {
            return Err(SolveError::NaN { x: b });
        }
    }
    Ok(b)
}

/// Brent's minimiser of a unimodal `f` on `[a, b]`; returns `(x_min, f(x_min))`.
pub fn brent_minimize<F: FnMut(f64) -> f64>(mut f: F, a: f64, b: f64, tol: f64) -> (f64, f64) {
    const CGOLD: f64 = 0.381_966_011_250_105_1;
    let (mut a, mut b) = if a < b { (a, b) } else { (b, a) };
    let mut x = a + CGOLD * (b - a);
    let mut w = x;
    let mut v = x;
    let mut fx = f(x);
    let mut fw = fx;
    let mut fv = fx;
    let mut d: f64 = 0.0;
    let mut e: f64 = 0.0;
    for _ in 0..500 {
        let xm = 0.5 * (a + b);
        let tol1 = tol * x.abs() + 1e-12;
        let tol2 = 2.0 * tol1;
        if (x - xm).abs() <= tol2 - 0.5 * (b - a) {
            break;
        }
        let mut golden = true;
        if e.abs() > tol1 {
            let r = (x - w) * (fx - fv);
            let mut q = (x - v) * (fx - fw);
            let mut p = (x - v) * q - (x - w) * r;
            q = 2.0 * (q - r);
            if q > 0.0 {
                p = -p;
            }
            q = q.abs();
            let etemp = e;
            e = d;
            if !(p.abs() >= (0.5 * q * etemp).abs() || p <= q * (a - x) || p >= q * (b - x)) {
                d = p / q;
                let u = x + d;
                if u - a < tol2 || b - u < tol2 {
                    d = tol1.copysign(xm - x);
                }
                golden = false;
            }
        }
        if golden {
            e = if x >= xm { a - x } else { b - x };
            d = CGOLD * e;
        }
        let u = if d.abs() >= tol1 {
            x + d
        } else {
            x + tol1.copysign(d)
        };
        let fu = f(u);
        if fu <= fx {
            if u >= x {
                a = x;
            } else {
                b = x;
            }
            v = w;
            fv = fw;
            w = x;
            fw = fx;
            x = u;
            fx = fu;
        } else {
            if u < x {
                a = u;
            } else {
                b = u;
            }
            if fu <= fw || w == x {
                v = w;
                fv = fw;
                w = u;
                fw = fu;
            } else if fu <= fv || v == x || v == w {
                v = u;
                fv = fu;
            }
        }
    }
    (x, fx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn normal_cdf_reference_values() {
        // Reference values: Abramowitz & Stegun table 26.1 / scipy.stats.norm.
        assert_relative_eq!(norm_cdf(0.0), 0.5, epsilon = 1e-16);
        assert_relative_eq!(norm_cdf(1.0), 0.841_344_746_068_542_9, max_relative = 1e-14);
        assert_relative_eq!(
            norm_cdf(-1.96),
            0.024_997_895_148_220_435,
            max_relative = 1e-13
        );
        // Upper tail: 1 − Φ(10) = 7.619853024160527e-24 (scipy norm.sf(10)).
        assert_relative_eq!(
            norm_sf(10.0),
            7.619_853_024_160_527e-24,
            max_relative = 1e-12
        );
        assert_relative_eq!(
            norm_cdf(-10.0),
            7.619_853_024_160_527e-24,
            max_relative = 1e-12
        );
        // docs/models.md §3: Φ((ln 1600 − 7)/0.7) = 0.705283 (P(N < 1600) = 70.53%).
        let z = (1600f64.ln() - 7.0) / 0.7;
        assert!((norm_cdf(z) - 0.705_283).abs() < 5e-7);
    }

    #[test]
    fn normal_quantile_inverts_cdf_in_both_tails() {
        for &p in &[1e-300, 1e-20, 1e-8, 0.01, 0.3, 0.5, 0.7, 0.975, 1.0 - 1e-10] {
            let x = norm_quantile(p);
            assert_relative_eq!(norm_cdf(x), p, max_relative = 1e-12);
        }
        for &s in &[1e-300, 1e-20, 1e-8, 0.025] {
            let x = norm_isf(s);
            assert_relative_eq!(norm_sf(x), s, max_relative = 1e-12);
        }
        assert_relative_eq!(
            norm_quantile(0.975),
            1.959_963_984_540_054,
            max_relative = 1e-14
        );
        assert_eq!(norm_quantile(0.0), f64::NEG_INFINITY);
        assert_eq!(norm_quantile(1.0), f64::INFINITY);
        assert!(norm_quantile(1.5).is_nan());
    }

    #[test]
    fn gauss_legendre_integrates_polynomials_exactly() {
        for n in 1..=20 {
            let (x, w) = gauss_legendre(n);
            assert_relative_eq!(w.iter().sum::<f64>(), 2.0, epsilon = 1e-13);
            // ∫_{-1}^{1} t^{2k} dt = 2/(2k+1) for 2k ≤ 2n − 1.
            for k in 0..n {
                let deg = 2 * k;
                if deg > 2 * n - 1 {
                    break;
                }
                let q: f64 = x
                    .iter()
                    .zip(&w)
                    .map(|(t, wi)| wi * t.powi(deg as i32))
                    .sum();
                assert_relative_eq!(q, 2.0 / (deg as f64 + 1.0), epsilon = 1e-12);
            }
        }
        let (x, w) = gauss_legendre_on(16, 0.0, std::f64::consts::PI);
        let q: f64 = x.iter().zip(&w).map(|(t, wi)| wi * t.sin()).sum();
        assert_relative_eq!(q, 2.0, epsilon = 1e-13);
    }

    #[test]
    fn poisson_pmf_sums_to_one_and_matches_direct_formula() {
        let mean: f64 = 3.5;
        let direct = (-mean).exp() * mean.powi(4) / 24.0;
        assert_relative_eq!(poisson_pmf(4, mean), direct, max_relative = 1e-13);
        let total: f64 = (0..100).map(|k| poisson_pmf(k, mean)).sum();
        assert_relative_eq!(total, 1.0, epsilon = 1e-13);
        // Large mean: no overflow, mode probability ≈ 1/√(2π·mean).
        let big = 1.0e6;
        let p = poisson_pmf(1_000_000, big);
        assert_relative_eq!(
            p,
            1.0 / (2.0 * std::f64::consts::PI * big).sqrt(),
            max_relative = 1e-5
        );
        assert_eq!(poisson_pmf(0, 0.0), 1.0);
        assert_eq!(poisson_pmf(1, 0.0), 0.0);
    }

    #[test]
    fn brent_root_and_minimum() {
        let r = brent_root(|x| x * x - 2.0, 0.0, 2.0, 1e-14).unwrap();
        assert_relative_eq!(r, std::f64::consts::SQRT_2, epsilon = 1e-13);
        assert!(matches!(
            brent_root(|x| x * x + 1.0, 0.0, 2.0, 1e-12),
            Err(SolveError::NotBracketed { .. })
        ));
        let (x, fx) = brent_minimize(|x| (x - 1.3).powi(2) + 0.5, -5.0, 5.0, 1e-10);
        assert_relative_eq!(x, 1.3, epsilon = 1e-7);
        assert_relative_eq!(fx, 0.5, epsilon = 1e-12);
    }
}
