//! Inoue's closed-form latency bound for unbounded dynamic batching (docs/models.md §4, paper eq 16).
//!
//! Model: Poisson(λ), a free server takes *all* waiting requests as one batch, a batch of `b`
//! takes the deterministic time `h(b) = α·b + τ0` (eq 14). Stable iff `λα < 1`. Then the mean
//! latency (arrival → completion of the request's batch) satisfies `E[W] ≤ min(φ0, φ1)` with
//!
//! ```text
//! φ0 = (α + τ0) / (2(1 − λα)) · (1 + 2λτ0 + (1 − λτ0)/(1 + λα))
//! φ1 = (3/2) τ0/(1 − λα) + (α/2) (λα + 2)/(1 − λ²α²)
//! ```
//!
//! (Inoue 2021, Theorem 2, as quoted in docs/models.md §0's sources). The bound is on the **latency**,
//! not the wait. docs/models.md §4 also gives the structure behind it: with `r = λα` and the single
//! unknown `π0 = P(A = 0)`, the exact latency is `Φ(π0)` (see [`inoue_phi`]), and
//! `φ1 = Φ(0)`, `φ0 = Φ(1 − λ(α + τ0))`.

use super::{BatchError, check_rate};

/// Inoue's bound and its two branches (seconds).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct InoueBound {
    /// Slope α of `h(b) = α·b + τ0` (s per request).
    pub alpha: f64,
    /// Intercept τ0 (s).
    pub tau0: f64,
    /// φ0 (s); the smaller branch iff `λ ≤ 1/(α + τ0)`.
    pub phi0: f64,
    /// φ1 (s).
    pub phi1: f64,
    /// `min(φ0, φ1)` (s): the upper bound on mean latency.
    pub bound: f64,
}

fn check_linear(alpha: f64, tau0: f64) -> Result<(), BatchError> {
    if !(alpha.is_finite() && alpha >= 0.0) {
        return Err(BatchError::Invalid {
            name: "alpha",
            value: alpha,
            why: "batch-time slope must be ≥ 0 seconds per request".into(),
        });
    }
    if !(tau0.is_finite() && tau0 >= 0.0) || alpha + tau0 <= 0.0 {
        return Err(BatchError::Invalid {
            name: "tau0",
            value: tau0,
            why: "batch-time intercept must be ≥ 0 s, and h(1) = α + τ0 > 0".into(),
        });
    }
    Ok(())
}

/// Inoue's bound `min(φ0, φ1)` (eq 16) for `h(b) = α·b + τ0`, Poisson rate `lambda`.
///
/// Errors: invalid parameters, or `λα ≥ 1` (unstable; the largest stable rate is `1/α`).
pub fn inoue_bound(lambda: f64, alpha: f64, tau0: f64) -> Result<InoueBound, BatchError> {
    check_rate(lambda)?;
    check_linear(alpha, tau0)?;
    let r = lambda * alpha;
    if r >= 1.0 {
        return Err(BatchError::Unstable {
            rho: r,
            max_rate: 1.0 / alpha,
            what: "λα for unbounded dynamic batching with h(b) = αb + τ0".into(),
        });
    }
    let lt = lambda * tau0;
    let phi0 = (alpha + tau0) / (2.0 * (1.0 - r)) * (1.0 + 2.0 * lt + (1.0 - lt) / (1.0 + r));
    let phi1 = 1.5 * tau0 / (1.0 - r) + 0.5 * alpha * (r + 2.0) / (1.0 - r * r);
    Ok(InoueBound {
        alpha,
        tau0,
        phi0,
        phi1,
        bound: phi0.min(phi1),
    })
}

/// `Φ(π0)`: the exact mean latency of the deterministic model of eq 14 as a function of the one
/// unknown `π0 = P(A = 0)` (docs/models.md §4, "Structure"):
///
/// ```text
/// m1 = (λτ0 + π0)/(1 − r)                                     (= E[B])
/// m2 = (r m1 + λτ0 + 2 r λτ0 m1 + λ²τ0² + π0)/(1 − r²)       (= E[B²])
/// Φ  = [ λ(α² m2 + 2ατ0 m1 + τ0²)/2 + α m2 + τ0 m1 ] / m1
/// ```
///
/// Requires `λα < 1`; no validation beyond that (it is a formula, used in tests and reports).
pub fn inoue_phi(lambda: f64, alpha: f64, tau0: f64, pi0: f64) -> f64 {
    let r = lambda * alpha;
    let lt = lambda * tau0;
    let m1 = (lt + pi0) / (1.0 - r);
    let m2 = (r * m1 + lt + 2.0 * r * lt * m1 + lt * lt + pi0) / (1.0 - r * r);
    (0.5 * lambda * (alpha * alpha * m2 + 2.0 * alpha * tau0 * m1 + tau0 * tau0)
        + alpha * m2
        + tau0 * m1)
        / m1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/models.md §9.4, φ0/φ1 columns (computed independently in Python).
    #[test]
    fn phi_values_match_math_9_4() {
        let cases = [
            (1.0, 0.5, 1.0, 4.5, 3.833_333_3),
            (0.5, 0.2, 2.0, 3.666_666_7, 3.545_454_5),
            (1.8, 0.5, 0.1, 5.374_736_8, 5.315_789_5),
            (0.2, 0.5, 1.0, 1.772_727_3, 2.196_969_7),
        ];
        for (l, a, t, p0, p1) in cases {
            let b = inoue_bound(l, a, t).unwrap();
            assert!((b.phi0 - p0).abs() < 5e-8, "φ0 {} vs {}", b.phi0, p0);
            assert!((b.phi1 - p1).abs() < 5e-8, "φ1 {} vs {}", b.phi1, p1);
            assert_eq!(b.bound, b.phi0.min(b.phi1));
            assert!((b.bound - p0.min(p1)).abs() < 5e-8);
        }
    }

    /// docs/models.md §4: φ1 = Φ(0), φ0 = Φ(1 − λ(α + τ0)) exactly, and φ0 ≤ φ1 ⇔ λ ≤ 1/(α + τ0).
    #[test]
    fn phi_identities() {
        for &(l, a, t) in &[
            (1.0, 0.5, 1.0),
            (0.5, 0.2, 2.0),
            (1.8, 0.5, 0.1),
            (0.2, 0.5, 1.0),
            (0.01, 3.0, 0.7),
            (3.0, 0.3, 0.05),
        ] {
            let b = inoue_bound(l, a, t).unwrap();
            let f0 = inoue_phi(l, a, t, 0.0);
            let f1 = inoue_phi(l, a, t, 1.0 - l * (a + t));
            assert!(
                (f0 - b.phi1).abs() <= 1e-12 * b.phi1,
                "Φ(0) {f0} vs φ1 {}",
                b.phi1
            );
            assert!(
                (f1 - b.phi0).abs() <= 1e-12 * b.phi0,
                "Φ(..) {f1} vs φ0 {}",
                b.phi0
            );
            assert_eq!(b.phi0 <= b.phi1, l <= 1.0 / (a + t) + 1e-15);
        }
    }

    /// docs/models.md §9.4: Φ(π0_true) reproduces the exact latency for C1–C4.
    #[test]
    fn phi_at_true_pi0_is_exact_latency() {
        let cases = [
            (1.0, 0.5, 1.0, 0.143_530_82, 3.749_656_3),
            (0.5, 0.2, 2.0, 0.318_705_83, 3.281_802_8),
            (1.8, 0.5, 0.1, 0.162_949_13, 5.280_779_1),
            (0.2, 0.5, 1.0, 0.737_880_48, 1.767_831_6),
        ];
        for (l, a, t, pi0, lat) in cases {
            let v = inoue_phi(l, a, t, pi0);
            assert!((v - lat).abs() < 2e-7, "Φ(π0) {v} vs {lat}");
        }
    }

    #[test]
    fn bad_input_is_rejected() {
        assert!(matches!(
            inoue_bound(2.0, 0.5, 1.0),
            Err(BatchError::Unstable { max_rate, .. }) if (max_rate - 2.0).abs() < 1e-12
        ));
        assert!(matches!(
            inoue_bound(-1.0, 0.5, 1.0),
            Err(BatchError::Invalid { .. })
        ));
        assert!(matches!(
            inoue_bound(1.0, -0.5, 1.0),
            Err(BatchError::Invalid { name: "alpha", .. })
        ));
        assert!(matches!(
            inoue_bound(1.0, 0.0, 0.0),
            Err(BatchError::Invalid { name: "tau0", .. })
        ));
    }
}
