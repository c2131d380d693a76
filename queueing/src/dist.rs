//! Token-length distributions (docs/models.md §1, §5).
//!
//! A [`TokenDist`] is the law of a request's token count N (output or input length). Every
//! law offers the cdf, an upper-tail-accurate survival function, quantile / inverse survival
//! function, sampling, raw moments and the *clipped* moments `E[min(N, L)]`, `E[min(N, L)²]`
//! of docs/models.md §1 (paper eq. 2): closed forms for the parametric laws (uniform, truncated
//! normal, lognormal — docs/models.md §1 "Continuous lognormal" and "Uniform"), the discrete sums for
//! histograms, discrete uniform and point masses.
//!
//! Spec strings (docs/design.md, "Workload"):
//!
//! | spec | law |
//! |---|---|
//! | `uniform:LO,HI` | continuous uniform on `[LO, HI]`, `0 ≤ LO < HI` |
//! | `duniform:LO,HI` | discrete uniform on the integers `LO..=HI` |
//! | `normal:MEAN,SD[,LO,HI]` | Normal(MEAN, SD²) truncated to `[LO, HI]`, default `[0, ∞)` (`HI` may be `inf`) |
//! | `lognormal:MU,SIGMA` | `ln N ~ Normal(MU, SIGMA²)` |
//! | `const:N` | the point mass at N |
//! | `empirical:PATH[:COLUMN]` | a CSV file, see [`Empirical::from_csv_file`] |
//! | `sharegpt`, `azure-conv`, … | built-in histograms, see [`builtin`] |
//!
//! Normal tails use the erfc-based helpers of [`crate::numeric`], so `sf` keeps full relative
//! accuracy far into the upper tail.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::numeric::{norm_cdf, norm_interval, norm_isf, norm_pdf, norm_quantile, norm_sf};

pub mod builtin;
mod empirical;
mod parse;

/// Largest token count a law may reach with positive probability in its parameters (bounds,
/// mean, point masses, histogram values; a lognormal's median).
pub const MAX_TOKENS: f64 = 1e9;
/// Most values of a discrete uniform law (its atoms are materialised).
pub const MAX_DISCRETE_VALUES: u64 = 10_000_000;
/// Largest σ of a lognormal law (`E[N²] = e^{2μ + 2σ²}` stays finite).
pub const MAX_LOGNORMAL_SIGMA: f64 = 10.0;

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
    TruncNormal {
        mean: f64,
        sd: f64,
        lo: f64,
        hi: f64,
    },
    /// `ln N ~ Normal(mu, sigma²)` (spec `lognormal:MU,SIGMA`).
    Lognormal { mu: f64, sigma: f64 },
    /// A point mass (spec `const:N`), mainly for closed-form checks.
    Constant { value: f64 },
    /// A pmf from a CSV column or a built-in dataset (spec `empirical:PATH[:COLUMN]` or a name).
    Empirical(Empirical),
}

impl TokenDist {
    /// Parse a spec string (docs/design.md, "Workload"); the result is validated.
    pub fn parse(spec: &str) -> Result<Self, DistError> {
        parse::parse(spec)
    }

    /// Check the parameters (finite, ordered, positive spread, non-empty support, token counts
    /// at most [`MAX_TOKENS`], at most [`MAX_DISCRETE_VALUES`] values of a discrete uniform law,
    /// a lognormal median at most `MAX_TOKENS` with σ ≤ [`MAX_LOGNORMAL_SIGMA`], so that every
    /// moment is a finite number). [`parse`] always validates; call this after building a
    /// variant by hand.
    ///
    /// [`parse`]: TokenDist::parse
    pub fn validate(&self) -> Result<(), String> {
        let finite = |name: &str, v: f64| {
            if v.is_finite() {
                Ok(())
            } else {
                Err(format!("{name} must be a finite number, got {v}"))
            }
        };
        let at_most = |name: &str, v: f64| {
            if v <= MAX_TOKENS {
                Ok(())
            } else {
                Err(format!(
                    "{name} = {v:e} tokens: at most {MAX_TOKENS:e} (token counts beyond that are not requests)"
                ))
            }
        };
        match *self {
            TokenDist::Uniform { lo, hi } => {
                finite("LO", lo)?;
                finite("HI", hi)?;
                at_most("HI", hi)?;
                if lo < 0.0 {
                    return Err(format!("LO must be >= 0 (token counts), got {lo}"));
                }
                if lo >= hi {
                    return Err(format!(
                        "need LO < HI, got LO = {lo}, HI = {hi} (use const:N for a point mass)"
                    ));
                }
            }
            TokenDist::DiscreteUniform { lo, hi } => {
                if lo > hi {
                    return Err(format!("need LO <= HI, got LO = {lo}, HI = {hi}"));
                }
                at_most("HI", hi as f64)?;
                if hi - lo >= MAX_DISCRETE_VALUES {
                    return Err(format!(
                        "HI − LO + 1 = {} values: at most {MAX_DISCRETE_VALUES} (use uniform:LO,HI for a wide range)",
                        u128::from(hi - lo) + 1
                    ));
                }
            }
            TokenDist::TruncNormal { mean, sd, lo, hi } => {
                finite("MEAN", mean)?;
                finite("SD", sd)?;
                if sd <= 0.0 {
                    return Err(format!("SD must be > 0, got {sd}"));
                }
                at_most("|MEAN|", mean.abs())?;
                at_most("SD", sd)?;
                if lo > MAX_TOKENS {
                    at_most("LO", lo)?;
                }
                if lo.is_nan() || hi.is_nan() || lo < 0.0 || lo >= hi || lo == f64::INFINITY {
                    return Err(format!("need 0 <= LO < HI, got LO = {lo}, HI = {hi}"));
                }
                let z = norm_interval((lo - mean) / sd, (hi - mean) / sd);
                if z <= 1e-300 {
                    return Err(format!(
                        "the interval [{lo}, {hi}] has (numerically) zero probability under Normal({mean}, {sd}²)"
                    ));
                }
            }
            TokenDist::Lognormal { mu, sigma } => {
                finite("MU", mu)?;
                finite("SIGMA", sigma)?;
                if sigma <= 0.0 {
                    return Err(format!("SIGMA must be > 0, got {sigma}"));
                }
                if mu.abs() > MAX_TOKENS.ln() {
                    return Err(format!(
                        "|MU| = {:e} makes the median e^MU tokens: at most ln({MAX_TOKENS:e}) = {:.2}",
                        mu.abs(),
                        MAX_TOKENS.ln()
                    ));
                }
                if sigma > MAX_LOGNORMAL_SIGMA {
                    return Err(format!(
                        "SIGMA must be at most {MAX_LOGNORMAL_SIGMA}, got {sigma} (the moments overflow)"
                    ));
                }
            }
            TokenDist::Constant { value } => {
                finite("N", value)?;
                at_most("N", value)?;
                if value < 0.0 {
                    return Err(format!("N must be >= 0, got {value}"));
                }
            }
            TokenDist::Empirical(ref e) => {
                e.check()?;
                at_most("the largest value", e.values[e.values.len() - 1])?;
            }
        }
        Ok(())
    }

    /// `P(N <= x)`.
    pub fn cdf(&self, x: f64) -> f64 {
        if x.is_nan() {
            return f64::NAN;
        }
        match *self {
            TokenDist::Uniform { lo, hi } => ((x - lo) / (hi - lo)).clamp(0.0, 1.0),
            TokenDist::DiscreteUniform { lo, hi } => {
                let (lo, hi) = (lo as f64, hi as f64);
                if x < lo {
                    0.0
                } else if x >= hi {
                    1.0
                } else {
                    (x.floor() - lo + 1.0) / (hi - lo + 1.0)
                }
            }
            TokenDist::TruncNormal { mean, sd, lo, hi } => {
                if x < lo {
                    0.0
                } else if x >= hi {
                    1.0
                } else {
                    let (a, b) = ((lo - mean) / sd, (hi - mean) / sd);
                    norm_interval(a, (x - mean) / sd) / norm_interval(a, b)
                }
            }
            TokenDist::Lognormal { mu, sigma } => {
                if x <= 0.0 {
                    0.0
                } else {
                    norm_cdf((x.ln() - mu) / sigma)
                }
            }
            TokenDist::Constant { value } => f64::from(u8::from(x >= value)),
            TokenDist::Empirical(ref e) => e.cdf_at(x),
        }
    }

    /// `P(N > x)`, accurate in the upper tail.
    pub fn sf(&self, x: f64) -> f64 {
        if x.is_nan() {
            return f64::NAN;
        }
        match *self {
            TokenDist::Uniform { lo, hi } => ((hi - x) / (hi - lo)).clamp(0.0, 1.0),
            TokenDist::DiscreteUniform { lo, hi } => {
                let (lo, hi) = (lo as f64, hi as f64);
                if x < lo {
                    1.0
                } else if x >= hi {
                    0.0
                } else {
                    (hi - x.floor()) / (hi - lo + 1.0)
                }
            }
            TokenDist::TruncNormal { mean, sd, lo, hi } => {
                if x < lo {
                    1.0
                } else if x >= hi {
                    0.0
                } else {
                    let (a, b) = ((lo - mean) / sd, (hi - mean) / sd);
                    norm_interval((x - mean) / sd, b) / norm_interval(a, b)
                }
            }
            TokenDist::Lognormal { mu, sigma } => {
                if x <= 0.0 {
                    1.0
                } else {
                    norm_sf((x.ln() - mu) / sigma)
                }
            }
            TokenDist::Constant { value } => f64::from(u8::from(x < value)),
            TokenDist::Empirical(ref e) => e.sf_at(x),
        }
    }

    /// Smallest `x` with `cdf(x) >= p` (NaN for `p` outside `[0, 1]`).
    pub fn quantile(&self, p: f64) -> f64 {
        if p.is_nan() || !(0.0..=1.0).contains(&p) {
            return f64::NAN;
        }
        match *self {
            TokenDist::Uniform { lo, hi } => lo + p * (hi - lo),
            TokenDist::DiscreteUniform { lo, hi } => {
                let n = (hi - lo + 1) as f64;
                // Smallest k with (k - lo + 1)/n >= p.
                let k = (p * n - 1e-12 * n).ceil().max(1.0) - 1.0;
                (lo as f64 + k).min(hi as f64)
            }
            TokenDist::TruncNormal { mean, sd, lo, hi } => {
                let (a, b) = ((lo - mean) / sd, (hi - mean) / sd);
                let z = norm_interval(a, b);
                let t = if a > 0.0 {
                    norm_isf((norm_sf(a) - p * z).max(0.0))
                } else {
                    let target = norm_cdf(a) + p * z;
                    if target <= 0.5 {
                        norm_quantile(target)
                    } else {
                        norm_isf(norm_sf(b) + (1.0 - p) * z)
                    }
                };
                (mean + sd * t).clamp(lo, hi)
            }
            TokenDist::Lognormal { mu, sigma } => (mu + sigma * norm_quantile(p)).exp(),
            TokenDist::Constant { value } => value,
            TokenDist::Empirical(ref e) => e.quantile_at(p),
        }
    }

    /// `quantile(1 - s)` computed without cancellation for small `s` (heavy tails).
    pub fn isf(&self, s: f64) -> f64 {
        if s.is_nan() || !(0.0..=1.0).contains(&s) {
            return f64::NAN;
        }
        match *self {
            TokenDist::Uniform { lo, hi } => hi - s * (hi - lo),
            TokenDist::TruncNormal { mean, sd, lo, hi } => {
                let (a, b) = ((lo - mean) / sd, (hi - mean) / sd);
                let z = norm_interval(a, b);
                let t = if b < 0.0 {
                    norm_quantile((norm_cdf(b) - s * z).max(0.0))
                } else {
                    let target = norm_sf(b) + s * z;
                    if target <= 0.5 {
                        norm_isf(target)
                    } else {
                        norm_quantile(norm_cdf(a) + (1.0 - s) * z)
                    }
                };
                (mean + sd * t).clamp(lo, hi)
            }
            TokenDist::Lognormal { mu, sigma } => (mu + sigma * norm_isf(s)).exp(),
            TokenDist::Empirical(ref e) => e.isf_at(s),
            TokenDist::DiscreteUniform { .. } | TokenDist::Constant { .. } => {
                self.quantile(1.0 - s)
            }
        }
    }

    /// `E[N]`.
    pub fn mean(&self) -> f64 {
        self.clipped_moments(f64::INFINITY).0
    }

    /// `E[N²]`.
    pub fn second_moment(&self) -> f64 {
        self.clipped_moments(f64::INFINITY).1
    }

    /// Variance `E[N²] − E[N]²`.
    pub fn variance(&self) -> f64 {
        let (m1, m2) = self.clipped_moments(f64::INFINITY);
        (m2 - m1 * m1).max(0.0)
    }

    /// Smallest and largest value of the support (`hi` may be `f64::INFINITY`).
    pub fn support(&self) -> (f64, f64) {
        match *self {
            TokenDist::Uniform { lo, hi } => (lo, hi),
            TokenDist::DiscreteUniform { lo, hi } => (lo as f64, hi as f64),
            TokenDist::TruncNormal { lo, hi, .. } => (lo, hi),
            TokenDist::Lognormal { .. } => (0.0, f64::INFINITY),
            TokenDist::Constant { value } => (value, value),
            TokenDist::Empirical(ref e) => (e.values[0], e.values[e.values.len() - 1]),
        }
    }

    /// `(E[min(N, L)], E[min(N, L)²])` (docs/models.md §1). `l = f64::INFINITY` gives the raw moments.
    /// `l <= 0` gives `(l.max(0), l.max(0)²)` since token counts are non-negative.
    pub fn clipped_moments(&self, l: f64) -> (f64, f64) {
        if l.is_nan() {
            return (f64::NAN, f64::NAN);
        }
        let (lo_s, _) = self.support();
        if l <= lo_s {
            let v = l.max(0.0);
            return (v, v * v);
        }
        match *self {
            TokenDist::Uniform { lo, hi } => {
                if l >= hi {
                    (0.5 * (lo + hi), (lo * lo + lo * hi + hi * hi) / 3.0)
                } else {
                    let w = hi - lo;
                    (
                        ((l * l - lo * lo) / 2.0 + l * (hi - l)) / w,
                        ((l * l * l - lo * lo * lo) / 3.0 + l * l * (hi - l)) / w,
                    )
                }
            }
            TokenDist::DiscreteUniform { lo, hi } => {
                // Values lo..=m are below or at L, the rest are clipped to L.
                let lo_f = lo as f64;
                let hi_f = hi as f64;
                let m = l.floor().min(hi_f);
                let n = hi_f - lo_f + 1.0;
                let s1 = |k: f64| k * (k + 1.0) / 2.0; // Σ_{i=0}^{k} i
                let s2 = |k: f64| k * (k + 1.0) * (2.0 * k + 1.0) / 6.0;
                let below1 = s1(m) - s1(lo_f - 1.0);
                let below2 = s2(m) - s2(lo_f - 1.0);
                let above = hi_f - m; // count of values > L
                let lc = l.min(hi_f);
                ((below1 + lc * above) / n, (below2 + lc * lc * above) / n)
            }
            TokenDist::TruncNormal { mean, sd, lo, hi } => {
                trunc_normal_clipped(mean, sd, lo, hi, l)
            }
            TokenDist::Lognormal { mu, sigma } => {
                if l == f64::INFINITY {
                    (
                        (mu + 0.5 * sigma * sigma).exp(),
                        (2.0 * mu + 2.0 * sigma * sigma).exp(),
                    )
                } else {
                    let z = (l.ln() - mu) / sigma;
                    let tail = norm_sf(z);
                    (
                        (mu + 0.5 * sigma * sigma).exp() * norm_cdf(z - sigma) + l * tail,
                        (2.0 * mu + 2.0 * sigma * sigma).exp() * norm_cdf(z - 2.0 * sigma)
                            + l * l * tail,
                    )
                }
            }
            TokenDist::Constant { value } => {
                let v = value.min(l);
                (v, v * v)
            }
            TokenDist::Empirical(ref e) => e.clipped_moments_at(l),
        }
    }

    /// `E[min(N, x)] = ∫_0^x P(N > u) du`.
    pub fn expected_min(&self, x: f64) -> f64 {
        self.clipped_moments(x).0
    }

    /// Atoms `(values, probs)` for discrete laws (empirical, discrete uniform, constant).
    pub fn atoms(&self) -> Option<(Vec<f64>, Vec<f64>)> {
        match *self {
            TokenDist::DiscreteUniform { lo, hi } => {
                let n = (hi - lo + 1) as f64;
                let values: Vec<f64> = (lo..=hi).map(|v| v as f64).collect();
                let probs = vec![1.0 / n; values.len()];
                Some((values, probs))
            }
            TokenDist::Constant { value } => Some((vec![value], vec![1.0])),
            TokenDist::Empirical(ref e) => Some((e.values.clone(), e.probs.clone())),
            _ => None,
        }
    }

    /// One draw (continuous laws return a real number; callers round as they need).
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        // A uniform in the open interval (0, 1) from 53 random bits.
        let u = ((rng.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
        match *self {
            TokenDist::DiscreteUniform { lo, hi } => {
                let n = hi - lo + 1;
                // Multiply-shift: floor(u · n) without modulo bias beyond 2^-53.
                (lo + ((u * n as f64) as u64).min(n - 1)) as f64
            }
            TokenDist::Constant { value } => value,
            _ => self.quantile(u),
        }
    }

    /// A short human-readable description (`lognormal(μ=7, σ=0.7)`, `empirical sharegpt`).
    pub fn describe(&self) -> String {
        match self {
            TokenDist::Uniform { lo, hi } => format!("uniform[{lo}, {hi}]"),
            TokenDist::DiscreteUniform { lo, hi } => format!("discrete uniform{{{lo}..{hi}}}"),
            TokenDist::TruncNormal { mean, sd, lo, hi } => {
                format!("normal(mean={mean}, sd={sd}) on [{lo}, {hi}]")
            }
            TokenDist::Lognormal { mu, sigma } => format!("lognormal(mu={mu}, sigma={sigma})"),
            TokenDist::Constant { value } => format!("constant {value}"),
            TokenDist::Empirical(e) => {
                format!("empirical {} ({} atoms)", e.source, e.values.len())
            }
        }
    }
}

/// Clipped moments of Normal(mean, sd²) truncated to `[lo, hi]`, clipped at `l ∈ (lo, ∞]`.
///
/// With standardised bounds `α, β`, `λ = (min(l, hi) − mean)/sd` and `Z = Φ(β) − Φ(α)`:
/// `E[X; X ≤ l] = (mean·(Φ(λ)−Φ(α)) + sd·(φ(α) − φ(λ)))/Z`,
/// `E[X²; X ≤ l] = ((mean²+sd²)(Φ(λ)−Φ(α)) + 2·mean·sd·(φ(α)−φ(λ)) + sd²(αφ(α) − λφ(λ)))/Z`.
fn trunc_normal_clipped(mean: f64, sd: f64, lo: f64, hi: f64, l: f64) -> (f64, f64) {
    let a = (lo - mean) / sd;
    let b = (hi - mean) / sd;
    let z = norm_interval(a, b);
    let lc = l.min(hi);
    let t = (lc - mean) / sd;
    let xphi = |x: f64| if x.is_finite() { x * norm_pdf(x) } else { 0.0 };
    let phi = |x: f64| if x.is_finite() { norm_pdf(x) } else { 0.0 };
    let mass = norm_interval(a, t);
    let dphi = phi(a) - phi(t);
    let m1 = mean * mass + sd * dphi;
    let m2 =
        (mean * mean + sd * sd) * mass + 2.0 * mean * sd * dphi + sd * sd * (xphi(a) - xphi(t));
    if l >= hi {
        return (m1 / z, m2 / z);
    }
    let tail = norm_interval(t, b);
    ((m1 + l * tail) / z, (m2 + l * l * tail) / z)
}

#[cfg(test)]
mod tests;
