//! The service-time vocabulary of the paper's models (docs/models.md §1, §2, §5).
//!
//! * [`LinearService`] — one request of `n` output tokens takes `S = a·n + c` seconds (paper
//!   eqs 3–4; the `[single_request]` line of the coefficients file);
//! * [`BatchTime`] — a batch of `m` requests whose longest output is `n` tokens takes
//!   `T = t1(m) + t2(m)·n`, `t1(m) = k1·m + k2`, `t2(m) = k3·m + k4` (paper eq 18; the
//!   `[first_token]` and `[decode_step]` lines);
//! * [`Patience`] and [`Abandonment`] — constant patience τ and what a lost user does
//!   (docs/models.md §2.1).
//!
//! Validation lives here once, so that every model and the simulator accept the same inputs.

use serde::{Deserialize, Serialize};

use crate::error::InvalidParameter;

/// Linear single-request service time `S = per_token_s·n + intercept_s` (the paper's `a·n + c`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinearService {
    /// Slope `a` (s/token).
    pub per_token_s: f64,
    /// Intercept `c` (s).
    pub intercept_s: f64,
}

impl LinearService {
    /// Check `a ≥ 0`, `c ≥ 0`, both finite, `a + c > 0`.
    pub fn validate(&self) -> Result<(), InvalidParameter> {
        for (what, value) in [
            ("per_token_s", self.per_token_s),
            ("intercept_s", self.intercept_s),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(InvalidParameter {
                    what,
                    value,
                    why: "must be a finite number >= 0 s",
                });
            }
        }
        if self.per_token_s == 0.0 && self.intercept_s == 0.0 {
            return Err(InvalidParameter {
                what: "per_token_s",
                value: 0.0,
                why: "per_token_s and intercept_s are both 0 (zero service time)",
            });
        }
        Ok(())
    }

    /// Service time of `n` tokens, seconds.
    pub fn time_s(&self, n: f64) -> f64 {
        self.per_token_s * n + self.intercept_s
    }

    /// `(E[S], E[S²])` given the token moments `(E[N], E[N²])` (paper eqs 3–4).
    pub fn moments(&self, m1: f64, m2: f64) -> (f64, f64) {
        let (a, c) = (self.per_token_s, self.intercept_s);
        (a * m1 + c, a * a * m2 + 2.0 * a * c * m1 + c * c)
    }
}

/// Batch time `T = (k1·m + k2) + (k3·m + k4)·max n` for a batch of m (paper eq 18).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BatchTime {
    /// First-token time per request in the batch, k1 (s).
    pub k1: f64,
    /// First-token time intercept, k2 (s).
    pub k2: f64,
    /// Per-decode-token time per request in the batch, k3 (s).
    pub k3: f64,
    /// Per-decode-token time intercept, k4 (s).
    pub k4: f64,
}

impl BatchTime {
    /// Validated coefficients: all finite and ≥ 0, `t1(1) = k1 + k2 > 0`.
    pub fn new(k1: f64, k2: f64, k3: f64, k4: f64) -> Result<Self, InvalidParameter> {
        for (what, value) in [("k1", k1), ("k2", k2), ("k3", k3), ("k4", k4)] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(InvalidParameter {
                    what,
                    value,
                    why: "batch-time coefficients must be finite and ≥ 0 seconds",
                });
            }
        }
        if k1 + k2 <= 0.0 {
            return Err(InvalidParameter {
                what: "k1 + k2",
                value: k1 + k2,
                why: "the first-token time t1(1) = k1 + k2 must be > 0",
            });
        }
        Ok(Self { k1, k2, k3, k4 })
    }

    /// From `[k1, k2, k3, k4]`, validated.
    pub fn from_array(k: [f64; 4]) -> Result<Self, InvalidParameter> {
        Self::new(k[0], k[1], k[2], k[3])
    }

    /// First-token time `t1(m) = k1·m + k2` (s).
    #[inline(always)]
    pub fn t1(&self, m: f64) -> f64 {
        self.k1 * m + self.k2
    }

    /// Per-decode-token time `t2(m) = k3·m + k4` (s).
    #[inline(always)]
    pub fn t2(&self, m: f64) -> f64 {
        self.k3 * m + self.k4
    }
}

/// What a lost user does (docs/models.md §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Abandonment {
    /// The user waits τ, then leaves (paper eq 9): a lost user's wait counts as τ. Default.
    #[default]
    Renege,
    /// The user leaves at once: a lost user's wait counts as 0.
    Balk,
}

/// Constant patience (docs/models.md §2): a request is served iff its service would start
/// within τ of its arrival.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Patience {
    /// τ (s).
    pub patience_s: f64,
    /// Reneging or balking.
    pub mode: Abandonment,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_validation_edges() {
        let ok = |a, c| {
            LinearService {
                per_token_s: a,
                intercept_s: c,
            }
            .validate()
            .is_ok()
        };
        assert!(ok(0.02, 0.0) && ok(0.0, 1.0) && ok(0.02, 0.7));
        assert!(!ok(0.0, 0.0) && !ok(-0.01, 1.0) && !ok(0.02, f64::NAN) && !ok(f64::INFINITY, 0.0));
    }

    #[test]
    fn service_moments_match_expansion() {
        // E[(aN + c)²] = a²E[N²] + 2acE[N] + c² for N ∈ {1, 3} equally likely: E[N] = 2, E[N²] = 5.
        let s = LinearService {
            per_token_s: 0.5,
            intercept_s: 2.0,
        };
        let direct = (s.time_s(1.0).powi(2) + s.time_s(3.0).powi(2)) / 2.0;
        let (m1, m2) = s.moments(2.0, 5.0);
        assert_eq!(m1, (s.time_s(1.0) + s.time_s(3.0)) / 2.0);
        assert!((m2 - direct).abs() < 1e-12);
    }

    #[test]
    fn batch_time_validation_and_lines() {
        let b = BatchTime::new(0.1, 0.2, 0.01, 0.02).unwrap();
        assert!((b.t1(4.0) - 0.6).abs() < 1e-12 && (b.t2(4.0) - 0.06).abs() < 1e-12);
        assert!(BatchTime::new(-0.1, 0.2, 0.0, 0.0).is_err());
        assert!(BatchTime::new(0.0, 0.0, 0.01, 0.0).is_err());
        let e = BatchTime::new(0.0, f64::NAN, 0.0, 0.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("k2"), "{e}");
    }
}
