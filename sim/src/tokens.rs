//! Token-count draws for the simulator (docs/models.md §11, "Semantics").
//!
//! A request's generated length is `n = min(N, L)` with `N = max(1, round(X))` and X drawn from
//! the token law ([`TokenMode::Integer`], the default and the reference simulators' reading):
//! truncated normal is truncated first, then rounded; a continuous uniform on [lo, hi] is drawn as
//! an integer uniform on {⌈lo⌉, …, ⌊hi⌋}. [`TokenMode::Continuous`] uses X itself (`n = min(X, L)`),
//! which is the reading of the closed forms and exact chains of docs/models.md §1–§9 for continuous laws.
//!
//! Samplers are specialised per law (ziggurat normal / exponential from `rand_distr`, Vose alias
//! table for histograms) and dispatched once per run, never per request.

use queueing::dist::TokenDist;
use rand::{Rng, RngExt};
use rand_distr::{Distribution, Exp1, StandardNormal};

use crate::SimError;

/// Below this acceptance probability a truncated normal is drawn by inversion instead of
/// rejection.
const MIN_REJECTION_ACCEPTANCE: f64 = 0.05;

/// A token-length law: any [`TokenDist`] of the queueing crate, plus the exponential law the
/// closed-form M/M/1 checks need (docs/models.md §2.3, §9 B1).
#[derive(Debug, Clone, PartialEq)]
pub enum TokenLaw {
    /// A distribution of the queueing crate.
    Dist(TokenDist),
    /// Exponential with the given mean (spec `exponential:MEAN`); continuous.
    Exponential {
        /// Mean token count.
        mean: f64,
    },
}

impl TokenLaw {
    /// Parse `exponential:MEAN` (or `exp:MEAN`) here, everything else with [`TokenDist::parse`].
    pub fn parse(spec: &str) -> Result<Self, SimError> {
        let s = spec.trim();
        if let Some(rest) = s
            .strip_prefix("exponential:")
            .or_else(|| s.strip_prefix("exp:"))
        {
            let mean: f64 = rest.trim().parse().map_err(|_| SimError::Tokens {
                spec: spec.to_string(),
                why: "expected `exponential:MEAN` with a number".into(),
            })?;
            if !(mean.is_finite() && mean > 0.0 && mean <= queueing::dist::MAX_TOKENS) {
                return Err(SimError::Tokens {
                    spec: spec.to_string(),
                    why: format!(
                        "the mean must be positive and at most {:e} tokens",
                        queueing::dist::MAX_TOKENS
                    ),
                });
            }
            return Ok(TokenLaw::Exponential { mean });
        }
        TokenDist::parse(s)
            .map(TokenLaw::Dist)
            .map_err(|e| SimError::Tokens {
                spec: spec.to_string(),
                // The spec is named once, by this error.
                why: match e {
                    queueing::dist::DistError::Spec { why, .. } => why,
                    other => other.to_string(),
                },
            })
    }
}

impl From<TokenDist> for TokenLaw {
    fn from(d: TokenDist) -> Self {
        TokenLaw::Dist(d)
    }
}

/// How a draw X becomes a token count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenMode {
    /// `N = max(1, round(X))` (docs/models.md §11).
    #[default]
    Integer,
    /// `N = X` (continuous laws as in the closed forms of docs/models.md §1–§9).
    Continuous,
}

/// One draw of a clipped token count.
pub trait TokenSampler {
    /// Draw `n = min(N, L)`.
    fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> f64;
}

/// Round and clip as the mode says.
#[derive(Debug, Clone, Copy)]
pub struct Finish {
    integer: bool,
    limit: f64,
}

impl Finish {
    #[inline(always)]
    fn apply(&self, x: f64) -> f64 {
        let n = if self.integer {
            // x ≥ 0 for every law here; `as u64` truncates and saturates (no libm call).
            ((x + 0.5) as u64).max(1) as f64
        } else {
            x
        };
        n.min(self.limit)
    }
}

/// `exp(mu + sigma·Z)`.
#[derive(Debug, Clone, Copy)]
pub struct LognormalSampler {
    mu: f64,
    sigma: f64,
    fin: Finish,
}
impl TokenSampler for LognormalSampler {
    #[inline(always)]
    fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let z: f64 = StandardNormal.sample(rng);
        self.fin.apply((self.mu + self.sigma * z).exp())
    }
}

/// Normal truncated to [lo, hi] by rejection.
#[derive(Debug, Clone, Copy)]
pub struct TruncNormalSampler {
    mean: f64,
    sd: f64,
    lo: f64,
    hi: f64,
    fin: Finish,
}
impl TokenSampler for TruncNormalSampler {
    #[inline(always)]
    fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        loop {
            let z: f64 = StandardNormal.sample(rng);
            let x = self.mean + self.sd * z;
            if x >= self.lo && x <= self.hi {
                return self.fin.apply(x);
            }
        }
    }
}

/// Continuous uniform on [lo, hi).
#[derive(Debug, Clone, Copy)]
pub struct UniformSampler {
    lo: f64,
    width: f64,
    fin: Finish,
}
impl TokenSampler for UniformSampler {
    #[inline(always)]
    fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let u: f64 = rng.random();
        self.fin.apply(self.lo + self.width * u)
    }
}

/// Integer uniform on {lo, …, lo + count − 1}.
#[derive(Debug, Clone, Copy)]
pub struct IntUniformSampler {
    lo: u64,
    count: u64,
    fin: Finish,
}
impl TokenSampler for IntUniformSampler {
    #[inline(always)]
    fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        // Lemire's multiply-shift; the bias is below count / 2^64 (negligible for token ranges).
        let k = ((rng.next_u64() as u128 * self.count as u128) >> 64) as u64;
        self.fin.apply((self.lo + k) as f64)
    }
}

/// A point mass.
#[derive(Debug, Clone, Copy)]
pub struct ConstSampler {
    n: f64,
}
impl TokenSampler for ConstSampler {
    #[inline(always)]
    fn draw<R: Rng + ?Sized>(&self, _rng: &mut R) -> f64 {
        self.n
    }
}

/// Exponential with a given mean (ziggurat).
#[derive(Debug, Clone, Copy)]
pub struct ExpSampler {
    mean: f64,
    fin: Finish,
}
impl TokenSampler for ExpSampler {
    #[inline(always)]
    fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let e: f64 = Exp1.sample(rng);
        self.fin.apply(self.mean * e)
    }
}

/// Vose's alias table over the atoms of a histogram (values already rounded and clipped).
#[derive(Debug, Clone)]
pub struct AliasSampler {
    values: Box<[f64]>,
    alias: Box<[u32]>,
    /// Acceptance threshold scaled to 2^64 so one u64 draws both the column and the coin.
    threshold: Box<[f64]>,
}
impl AliasSampler {
    /// Build from atoms; probabilities need not be normalised.
    pub fn new(values: &[f64], probs: &[f64]) -> Result<Self, SimError> {
        let k = values.len();
        let total: f64 = probs.iter().sum();
        if k == 0
            || k != probs.len()
            || total.is_nan()
            || total <= 0.0
            || probs.iter().any(|p| p.is_nan() || *p < 0.0)
        {
            return Err(SimError::Scenario(
                "empirical token law needs matching non-empty values and non-negative probabilities".into(),
            ));
        }
        let mut scaled: Vec<f64> = probs.iter().map(|p| p * k as f64 / total).collect();
        let mut alias = vec![0u32; k];
        let mut threshold = vec![1.0f64; k];
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..k).partition(|&i| scaled[i] < 1.0);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            threshold[s] = scaled[s];
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        Ok(Self {
            values: values.into(),
            alias: alias.into(),
            threshold: threshold.into(),
        })
    }
}
impl TokenSampler for AliasSampler {
    #[inline(always)]
    fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let k = self.values.len();
        let r = rng.next_u64();
        let col = ((r as u128 * k as u128) >> 64) as usize;
        let u: f64 = rng.random();
        let j = if u < self.threshold[col] {
            col
        } else {
            self.alias[col] as usize
        };
        self.values[j]
    }
}

/// Inversion through [`TokenDist::quantile`] (slow path: truncated normals far in the tail).
#[derive(Debug, Clone)]
pub struct InverseSampler {
    dist: TokenDist,
    fin: Finish,
}
impl TokenSampler for InverseSampler {
    fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        let u: f64 = rng.random();
        self.fin.apply(self.dist.quantile(u))
    }
}

/// A sampler specialised for one law; matched once per run, never per request.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum AnySampler {
    Lognormal(LognormalSampler),
    TruncNormal(TruncNormalSampler),
    Uniform(UniformSampler),
    IntUniform(IntUniformSampler),
    Const(ConstSampler),
    Exp(ExpSampler),
    Alias(AliasSampler),
    Inverse(InverseSampler),
}

impl TokenSampler for AnySampler {
    #[inline]
    fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
        match self {
            AnySampler::Lognormal(s) => s.draw(rng),
            AnySampler::TruncNormal(s) => s.draw(rng),
            AnySampler::Uniform(s) => s.draw(rng),
            AnySampler::IntUniform(s) => s.draw(rng),
            AnySampler::Const(s) => s.draw(rng),
            AnySampler::Exp(s) => s.draw(rng),
            AnySampler::Alias(s) => s.draw(rng),
            AnySampler::Inverse(s) => s.draw(rng),
        }
    }
}

fn bad(spec: &str, why: &str) -> SimError {
    SimError::Tokens {
        spec: spec.to_string(),
        why: why.to_string(),
    }
}

/// Standard normal CDF via the complementary error function.
fn phi(x: f64) -> f64 {
    0.5 * statrs::function::erf::erfc(-x / std::f64::consts::SQRT_2)
}

impl AnySampler {
    /// Build the sampler of `law` with limit `limit` (`f64::INFINITY` for none).
    pub fn new(law: &TokenLaw, mode: TokenMode, limit: f64) -> Result<Self, SimError> {
        let integer = mode == TokenMode::Integer;
        let fin = Finish { integer, limit };
        let finish_atoms = |values: &[f64], probs: &[f64]| -> Result<AnySampler, SimError> {
            let v: Vec<f64> = values.iter().map(|&x| fin.apply(x)).collect();
            Ok(AnySampler::Alias(AliasSampler::new(&v, probs)?))
        };
        let s = match law {
            TokenLaw::Exponential { mean } => {
                if !(mean.is_finite() && *mean > 0.0) {
                    return Err(bad("exponential", "the mean must be positive and finite"));
                }
                AnySampler::Exp(ExpSampler { mean: *mean, fin })
            }
            TokenLaw::Dist(d) => match d {
                TokenDist::Lognormal { mu, sigma } => {
                    if !(mu.is_finite() && sigma.is_finite() && *sigma >= 0.0) {
                        return Err(bad("lognormal", "mu must be finite and sigma ≥ 0"));
                    }
                    AnySampler::Lognormal(LognormalSampler {
                        mu: *mu,
                        sigma: *sigma,
                        fin,
                    })
                }
                TokenDist::TruncNormal { mean, sd, lo, hi } => {
                    if !(mean.is_finite() && sd.is_finite() && *sd > 0.0 && lo < hi) {
                        return Err(bad("normal", "need a finite mean, sd > 0 and lo < hi"));
                    }
                    let acc = phi((hi - mean) / sd) - phi((lo - mean) / sd);
                    if acc >= MIN_REJECTION_ACCEPTANCE {
                        AnySampler::TruncNormal(TruncNormalSampler {
                            mean: *mean,
                            sd: *sd,
                            lo: *lo,
                            hi: *hi,
                            fin,
                        })
                    } else {
                        AnySampler::Inverse(InverseSampler {
                            dist: d.clone(),
                            fin,
                        })
                    }
                }
                TokenDist::Uniform { lo, hi } => {
                    if !(lo.is_finite() && hi.is_finite() && lo <= hi && *lo >= 0.0) {
                        return Err(bad("uniform", "need 0 ≤ lo ≤ hi, both finite"));
                    }
                    if integer {
                        let a = lo.ceil() as u64;
                        let b = hi.floor() as u64;
                        if b < a {
                            return Err(bad("uniform", "no integer lies in [lo, hi]"));
                        }
                        AnySampler::IntUniform(IntUniformSampler {
                            lo: a,
                            count: b - a + 1,
                            fin,
                        })
                    } else {
                        AnySampler::Uniform(UniformSampler {
                            lo: *lo,
                            width: hi - lo,
                            fin,
                        })
                    }
                }
                TokenDist::DiscreteUniform { lo, hi } => {
                    if hi < lo {
                        return Err(bad("duniform", "need lo ≤ hi"));
                    }
                    AnySampler::IntUniform(IntUniformSampler {
                        lo: *lo,
                        count: hi - lo + 1,
                        fin,
                    })
                }
                TokenDist::Constant { value } => {
                    if !(value.is_finite() && *value >= 0.0) {
                        return Err(bad("const", "need a finite value ≥ 0"));
                    }
                    AnySampler::Const(ConstSampler {
                        n: fin.apply(*value),
                    })
                }
                TokenDist::Empirical(e) => finish_atoms(&e.values, &e.probs)?,
            },
        };
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use queueing::dist::Empirical;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn mean_of(s: &AnySampler, n: usize) -> (f64, f64, f64) {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
        let (mut m, mut lo, mut hi) = (0.0, f64::INFINITY, f64::NEG_INFINITY);
        for _ in 0..n {
            let x = s.draw(&mut rng);
            m += x;
            lo = lo.min(x);
            hi = hi.max(x);
        }
        (m / n as f64, lo, hi)
    }

    #[test]
    fn alias_table_reproduces_empirical_mean_and_clip() {
        // docs/models.md §9 A4: {100: .5, 500: .3, 2000: .2} clipped at 1000 has E[N_L] = 400.
        let e = Empirical {
            values: vec![100.0, 500.0, 2000.0],
            probs: vec![0.5, 0.3, 0.2],
            cdf: vec![0.5, 0.8, 1.0],
            source: "test".into(),
        };
        let s = AnySampler::new(
            &TokenLaw::Dist(TokenDist::Empirical(e)),
            TokenMode::Integer,
            1000.0,
        )
        .unwrap();
        let (m, lo, hi) = mean_of(&s, 400_000);
        // sd of N_L = sqrt(280000 − 400²) ≈ 346; 4 standard errors ≈ 2.2.
        assert!((m - 400.0).abs() < 2.2, "{m}");
        assert_eq!((lo, hi), (100.0, 1000.0));
    }

    #[test]
    fn lognormal_clipped_mean_matches_closed_form() {
        // docs/models.md §9 A1: lognormal(7, 0.7) clipped at 1600 has E[N_L] = 1082.846538.
        let s = AnySampler::new(
            &TokenLaw::Dist(TokenDist::Lognormal {
                mu: 7.0,
                sigma: 0.7,
            }),
            TokenMode::Continuous,
            1600.0,
        )
        .unwrap();
        let (m, _, hi) = mean_of(&s, 400_000);
        // sd(N_L) = sqrt(1378670.010 − 1082.85²) ≈ 444; 4 standard errors ≈ 2.8.
        assert!((m - 1082.846538).abs() < 2.8, "{m}");
        assert_eq!(hi, 1600.0);
    }

    #[test]
    fn integer_mode_rounds_and_floors_at_one() {
        let s = AnySampler::new(
            &TokenLaw::Dist(TokenDist::Uniform { lo: 0.0, hi: 3.0 }),
            TokenMode::Integer,
            f64::INFINITY,
        )
        .unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let mut seen = [0u32; 4];
        for _ in 0..40_000 {
            let x = s.draw(&mut rng);
            assert_eq!(x, x.round());
            seen[x as usize] += 1;
        }
        // {0,1,2,3} uniform, 0 becomes 1: P(1) = 1/2.
        assert_eq!(seen[0], 0);
        assert!((seen[1] as f64 / 40_000.0 - 0.5).abs() < 0.01);
    }

    #[test]
    fn exponential_and_truncnormal_means() {
        let s = AnySampler::new(
            &TokenLaw::Exponential { mean: 2.0 },
            TokenMode::Continuous,
            f64::INFINITY,
        )
        .unwrap();
        let (m, lo, _) = mean_of(&s, 400_000);
        assert!((m - 2.0).abs() < 0.013, "{m}"); // sd 2, 4 se = 0.0126
        assert!(lo >= 0.0);
        // Half-normal (TruncNormal(0,1) on [0, ∞)): mean sqrt(2/π) = 0.7978845608 (docs/models.md §9.5).
        let s = AnySampler::new(
            &TokenLaw::Dist(TokenDist::TruncNormal {
                mean: 0.0,
                sd: 1.0,
                lo: 0.0,
                hi: f64::INFINITY,
            }),
            TokenMode::Continuous,
            f64::INFINITY,
        )
        .unwrap();
        let (m, lo, _) = mean_of(&s, 400_000);
        assert!((m - 0.7978845608).abs() < 0.0061, "{m}"); // sd 0.603, 4 se = 0.0038
        assert!(lo >= 0.0);
    }

    #[test]
    fn bad_laws_are_rejected() {
        assert!(
            AnySampler::new(
                &TokenLaw::Exponential { mean: -1.0 },
                TokenMode::Integer,
                10.0
            )
            .is_err()
        );
        assert!(
            AnySampler::new(
                &TokenLaw::Dist(TokenDist::Uniform { lo: 5.0, hi: 1.0 }),
                TokenMode::Integer,
                10.0
            )
            .is_err()
        );
        assert!(TokenLaw::parse("exponential:abc").is_err());
        assert_eq!(
            TokenLaw::parse("exp:3").unwrap(),
            TokenLaw::Exponential { mean: 3.0 }
        );
    }
}
