//! The batch-time law as seen by the embedded chains (docs/models.md §4 "Exact numerical method", §5
//! "Quadrature of the random T_b", §8 gamma closure).
//!
//! A chain needs, per batch size `b`: the moments `E[T_b]`, `E[T_b²]` (for the waiting term),
//! the mean completion time of a request in the batch (`E[T_b]` padded, `c̄(b)` elastic) and the
//! law of `T_b`, from which the number of Poisson arrivals during the batch is a (mixed) Poisson
//! variable: a point mass gives Poisson transitions, a discrete mixture (quadrature nodes or the
//! exact atoms of an empirical histogram) gives a finite Poisson mixture, a gamma law gives
//! negative-binomial transitions.

use super::BatchError;

/// The law of the batch time `T_b` (seconds).
#[derive(Debug, Clone, PartialEq)]
pub enum TimeLaw {
    /// Deterministic `T_b`.
    Point(f64),
    /// `P(T_b = nodes[i]) = weights[i]` (exact atoms, or quadrature nodes of a continuous law).
    Mixture { nodes: Vec<f64>, weights: Vec<f64> },
    /// Gamma law with this mean and variance (a two-moment closure; docs/models.md §4, §8).
    Gamma { mean: f64, var: f64 },
}

/// What a chain needs to know about batches of each size.
pub trait BatchService {
    /// `(E[T_b], E[T_b²])` in seconds and seconds².
    fn time_moments(&self, b: usize) -> (f64, f64);
    /// The law of `T_b` used for the transitions.
    fn time_law(&self, b: usize) -> Result<TimeLaw, BatchError>;
    /// Mean time from batch start to a request's own completion: `E[T_b]` for padded batches,
    /// `c̄(b)` for elastic ones.
    fn completion_mean(&self, b: usize) -> f64 {
        self.time_moments(b).0
    }
    /// `lim sup_b E[T_b]/b` (s per request); `None` if infinite (never stable unbounded).
    fn asymptotic_slope(&self) -> Option<f64>;
    /// Whether `T_b` is deterministic for every `b` (then chains use Poisson transitions).
    fn is_deterministic(&self) -> bool;
}

/// Inoue's deterministic linear batch time `h(b) = α·b + τ0` (docs/models.md §4, eq 14).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearDeterministic {
    /// Slope α (s per request).
    pub alpha: f64,
    /// Intercept τ0 (s).
    pub tau0: f64,
}

impl LinearDeterministic {
    /// Validated `h(b) = alpha·b + tau0` (both ≥ 0, `h(1) > 0`).
    pub fn new(alpha: f64, tau0: f64) -> Result<Self, BatchError> {
        if !(alpha.is_finite() && alpha >= 0.0) {
            return Err(BatchError::Invalid {
                name: "alpha",
                value: alpha,
                why: "batch-time slope must be ≥ 0 s per request".into(),
            });
        }
        if !(tau0.is_finite() && tau0 >= 0.0) || alpha + tau0 <= 0.0 {
            return Err(BatchError::Invalid {
                name: "tau0",
                value: tau0,
                why: "batch-time intercept must be ≥ 0 s with h(1) > 0".into(),
            });
        }
        Ok(Self { alpha, tau0 })
    }

    fn h(&self, b: usize) -> f64 {
        self.alpha * b as f64 + self.tau0
    }
}

impl BatchService for LinearDeterministic {
    fn time_moments(&self, b: usize) -> (f64, f64) {
        let h = self.h(b);
        (h, h * h)
    }
    fn time_law(&self, b: usize) -> Result<TimeLaw, BatchError> {
        Ok(TimeLaw::Point(self.h(b)))
    }
    fn asymptotic_slope(&self) -> Option<f64> {
        Some(self.alpha)
    }
    fn is_deterministic(&self) -> bool {
        true
    }
}
