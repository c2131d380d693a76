//! Fixed batching M/D^K/1 with deterministic batch time: the roots formula (docs/models.md §6, our
//! reconstruction of the paper's eq 25 after Chang 2006).
//!
//! Poisson(λ); the server starts only when `K` requests wait and serves exactly `K` in time `T`.
//! With `β = λT < K` and `z_1, …, z_{K−1}` the roots of `z^K = e^{β(z−1)}` inside the unit disk
//! (`z = 1` excluded),
//!
//! ```text
//! E[W_q]  = (1/λ) Σ_r 1/(1 − z_r) + T (λT − K + 1) / (2 (K − λT))
//! latency = E[W_q] + T
//! ```
//!
//! Root `k` is the fixed point of `z ↦ ω_k e^{β(z−1)/K}`, `ω_k = e^{2πik/K}`: a contraction of
//! the closed unit disk with factor `β/K`, iterated from `z = 0` and finished by Newton steps.

use super::{BatchError, check_batch, check_rate};

/// Tolerance on each root (absolute).
pub const ROOT_TOL: f64 = 1e-15;
/// Fixed-point iterations allowed per root before giving up.
const MAX_ITER: usize = 10_000_000;

/// Result of the roots formula (seconds).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct FixedRoots {
    /// Mean wait to batch start (s).
    pub wait_s: f64,
    /// `wait_s + T` (s).
    pub latency_s: f64,
    /// `S = Σ_r 1/(1 − z_r)` (real).
    pub root_sum: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct C {
    re: f64,
    im: f64,
}

impl C {
    fn mul(self, o: C) -> C {
        C {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
    fn exp(self) -> C {
        let e = self.re.exp();
        C {
            re: e * self.im.cos(),
            im: e * self.im.sin(),
        }
    }
    fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
    fn sub(self, o: C) -> C {
        C {
            re: self.re - o.re,
            im: self.im - o.im,
        }
    }
    fn div(self, o: C) -> C {
        let d = o.re * o.re + o.im * o.im;
        C {
            re: (self.re * o.re + self.im * o.im) / d,
            im: (self.im * o.re - self.re * o.im) / d,
        }
    }
}

/// The `k`-th root (`1 ≤ k < K`) of `z^K = e^{β(z−1)}` in the unit disk.
fn root(k: usize, kk: usize, beta: f64) -> Result<C, BatchError> {
    let ang = 2.0 * std::f64::consts::PI * k as f64 / kk as f64;
    let omega = C {
        re: ang.cos(),
        im: ang.sin(),
    };
    let c = beta / kk as f64;
    let g = |z: C| {
        omega.mul(
            C {
                re: c * (z.re - 1.0),
                im: c * z.im,
            }
            .exp(),
        )
    };
    let mut z = C { re: 0.0, im: 0.0 };
    // Contraction phase: stop once close enough for Newton to take over safely.
    let mut converged = false;
    for _ in 0..MAX_ITER {
        let nz = g(z);
        let d = nz.sub(z).abs();
        z = nz;
        if d < 1e-6 * (1.0 - c) || d < ROOT_TOL {
            converged = true;
            break;
        }
    }
    if !converged {
        return Err(BatchError::NotConverged {
            why: format!("root {k} of z^{kk} = exp(β(z−1)) (β/K = {c:.6}) after {MAX_ITER} steps"),
        });
    }
    // Newton on f(z) = z − g(z), f'(z) = 1 − c·g(z).
    for _ in 0..50 {
        let gz = g(z);
        let f = z.sub(gz);
        let fp = C {
            re: 1.0 - c * gz.re,
            im: -c * gz.im,
        };
        let step = f.div(fp);
        z = z.sub(step);
        if step.abs() < ROOT_TOL {
            break;
        }
    }
    let resid = z.sub(g(z)).abs();
    if resid > 1e-12 || z.abs() >= 1.0 {
        return Err(BatchError::NotConverged {
            why: format!(
                "root {k} of z^{kk} = exp(β(z−1)): residual {resid:.1e}, |z| = {}",
                z.abs()
            ),
        });
    }
    Ok(z)
}

/// The roots formula for fixed batches of `k` requests with deterministic batch time `t` (s).
pub fn fixed_roots(lambda: f64, k: usize, t: f64) -> Result<FixedRoots, BatchError> {
    check_rate(lambda)?;
    check_batch(k)?;
    if !(t.is_finite() && t > 0.0) {
        return Err(BatchError::Invalid {
            name: "batch time T",
            value: t,
            why: "must be a positive number of seconds".into(),
        });
    }
    let beta = lambda * t;
    let kf = k as f64;
    if beta >= kf {
        return Err(BatchError::Unstable {
            rho: beta / kf,
            max_rate: kf / t,
            what: format!("λT/K for fixed batches of K = {k}"),
        });
    }
    let mut s = 0.0;
    // Conjugate pairs: root K−j is the conjugate of root j, so 1/(1 − z) adds twice its real part.
    for j in 1..=(k - 1) / 2 {
        let z = root(j, k, beta)?;
        let w = C { re: 1.0, im: 0.0 }.div(C {
            re: 1.0 - z.re,
            im: -z.im,
        });
        s += 2.0 * w.re;
    }
    if k % 2 == 0 && k >= 2 {
        let z = root(k / 2, k, beta)?;
        s += 1.0 / (1.0 - z.re);
    }
    let wait = s / lambda + t * (beta - kf + 1.0) / (2.0 * (kf - beta));
    Ok(FixedRoots {
        wait_s: wait,
        latency_s: wait + t,
        root_sum: s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/models.md §9.6 E0, E1, E1b.
    #[test]
    fn roots_formula_matches_math_9_6() {
        let e0 = fixed_roots(0.3, 1, 2.0).unwrap();
        assert!((e0.wait_s - 1.5).abs() < 1e-12 && (e0.latency_s - 3.5).abs() < 1e-12);
        let e1 = fixed_roots(0.5, 4, 5.0).unwrap();
        assert!((e1.wait_s - 3.579_568_734).abs() < 5e-10, "{}", e1.wait_s);
        assert!((e1.latency_s - 8.579_568_734).abs() < 5e-10);
        let e1b = fixed_roots(2.0, 8, 3.0).unwrap();
        assert!((e1b.wait_s - 2.040_579_348).abs() < 5e-10, "{}", e1b.wait_s);
    }

    /// K = 1 is M/D/1: λT²/(2(1 − λT)); λ → 0 gives ≈ (K − 1)/(2λ).
    #[test]
    fn limits() {
        for &(l, t) in &[(0.1, 1.0), (0.9, 1.0), (0.3, 3.0)] {
            let r = fixed_roots(l, 1, t).unwrap();
            let pk = l * t * t / (2.0 * (1.0 - l * t));
            assert!((r.wait_s - pk).abs() < 1e-12 * pk.max(1.0));
        }
        let l = 1e-4;
        let r = fixed_roots(l, 8, 1.0).unwrap();
        let fill = 7.0 / (2.0 * l);
        assert!(
            (r.wait_s - fill).abs() < 1e-3 * fill,
            "{} vs {fill}",
            r.wait_s
        );
    }

    /// Close to saturation the contraction is slow but the roots still converge.
    #[test]
    fn near_saturation_and_bad_input() {
        let r = fixed_roots(0.999 * 16.0, 16, 1.0).unwrap();
        assert!(r.wait_s.is_finite() && r.wait_s > 0.0);
        assert!(matches!(
            fixed_roots(1.0, 0, 1.0),
            Err(BatchError::Invalid { .. })
        ));
        assert!(matches!(
            fixed_roots(1.0, 4, -1.0),
            Err(BatchError::Invalid { .. })
        ));
        let e = fixed_roots(5.0, 4, 1.0).unwrap_err();
        assert!(matches!(e, BatchError::Unstable { max_rate, .. } if max_rate == 4.0));
    }
}
