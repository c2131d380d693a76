//! Token-length distributions (MATH.md §1, §5).
//!
//! INTERFACE FIRST: the signatures below are the contract other modules (batch models, the
//! simulator) code against. The bodies are being implemented in issue #2.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Errors from parsing or building a distribution.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// A malformed spec string such as `lognormal:7` (missing sigma).
    #[error("invalid token distribution `{spec}`: {why}")]
    Spec { spec: String, why: String },
    /// A bad or empty CSV file for `empirical:PATH[:COLUMN]`.
    #[error("{path}: {why}")]
    File { path: String, why: String },
}

/// A histogram / pmf on non-negative token counts: ascending `values`, `probs` summing to 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Empirical {
    pub values: Vec<f64>,
    pub probs: Vec<f64>,
    /// Cumulative probabilities, `cdf[j] = P(N <= values[j])`.
    pub cdf: Vec<f64>,
    /// Where it came from (a file path or a built-in dataset name), for provenance in output.
    pub source: String,
}

/// A distribution of token counts (output or input lengths).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenDist {
    /// Continuous uniform on `[lo, hi]` (spec `uniform:LO,HI`).
    Uniform { lo: f64, hi: f64 },
    /// Discrete uniform on `{lo, …, hi}` (spec `duniform:LO,HI`).
    DiscreteUniform { lo: u64, hi: u64 },
    /// Normal(mean, sd) truncated to `[lo, hi]` (spec `normal:MEAN,SD[,LO,HI]`, default `[0, ∞)`).
    TruncNormal { mean: f64, sd: f64, lo: f64, hi: f64 },
    /// `ln N ~ Normal(mu, sigma²)` (spec `lognormal:MU,SIGMA`).
    Lognormal { mu: f64, sigma: f64 },
    /// A point mass (spec `const:N`), mainly for closed-form checks.
    Constant { value: f64 },
    /// A pmf from a CSV column or a built-in dataset (spec `empirical:PATH[:COLUMN]` or a name).
    Empirical(Empirical),
}

#[allow(clippy::todo, unused_variables)]
impl TokenDist {
    /// Parse a spec string (DESIGN.md, "Workload").
    pub fn parse(spec: &str) -> Result<Self, DistError> {
        todo!()
    }
    /// `P(N <= x)`.
    pub fn cdf(&self, x: f64) -> f64 {
        todo!()
    }
    /// `P(N > x)`, accurate in the upper tail.
    pub fn sf(&self, x: f64) -> f64 {
        todo!()
    }
    /// Smallest `x` with `cdf(x) >= p`.
    pub fn quantile(&self, p: f64) -> f64 {
        todo!()
    }
    /// `quantile(1 - s)` computed without cancellation for small `s` (heavy tails).
    pub fn isf(&self, s: f64) -> f64 {
        todo!()
    }
    /// `E[N]`.
    pub fn mean(&self) -> f64 {
        todo!()
    }
    /// `E[N²]`.
    pub fn second_moment(&self) -> f64 {
        todo!()
    }
    /// Smallest and largest value of the support (`hi` may be `f64::INFINITY`).
    pub fn support(&self) -> (f64, f64) {
        todo!()
    }
    /// `(E[min(N, L)], E[min(N, L)²])` (MATH.md §1). `l = f64::INFINITY` gives the raw moments.
    pub fn clipped_moments(&self, l: f64) -> (f64, f64) {
        todo!()
    }
    /// `E[min(N, x)] = ∫_0^x P(N > u) du`.
    pub fn expected_min(&self, x: f64) -> f64 {
        self.clipped_moments(x).0
    }
    /// Atoms `(values, probs)` for discrete laws (empirical, discrete uniform, constant).
    pub fn atoms(&self) -> Option<(Vec<f64>, Vec<f64>)> {
        todo!()
    }
    /// One draw (continuous laws return a real number; callers round as they need).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        todo!()
    }
}
