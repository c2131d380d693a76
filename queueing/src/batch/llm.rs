//! The LLM batch time (docs/models.md §5, paper eqs 17–24, and §8 for elastic batches).
//!
//! `t1(b) = k1·b + k2` (first token, includes prefill), `t2(b) = k3·b + k4` (each later token):
//!
//! * padded (eq 18): `T_b = t1(b) + t2(b)·M_b`, `M_b` the largest of `b` iid decode lengths `X`;
//!   `E[T_b] = t1 + t2 E[M_b]`, `E[T_b²] = t1² + 2 t1 t2 E[M_b] + t2² E[M_b²]`; inference speed
//!   `v(b) = b/E[T_b]` (eq 24);
//! * elastic (eq 26, linear `t2` telescoped): `T^el_b = t1 + k3 S + k4 M_b` with `S = Σ X_i`;
//!   the mean own-completion time is `c̄(b) = t1 + (k3/b) Σ_i (2(b−i)+1) E[X_(i)] + k4 E[X]`.
//!   Since `Σ_i (2(b−i)+1) X_(i) = Σ_i X_i + 2 Σ_{i<j} min(X_i, X_j)` (each `X_(i)` is the
//!   smaller one of `b − i` pairs), `c̄(b) = t1 + k3 (E[X] + (b−1) E[min(X_1, X_2)]) + k4 E[X]`,
//!   which needs one integral instead of `b`.
//!
//! `E[M_b^k]` per law: closed forms for continuous uniform; for lognormal and truncated normal
//! the z-form `∫ x(z)^k b F^{b−1} dF` on a composite 16-point Gauss–Legendre grid over the
//! standard-normal variable (lognormal: z ∈ [−12, 14 + 2σ]); exact finite sums
//! `P(M_b = v_j) = F_j^b − F_{j−1}^b` for atoms (empirical, discrete uniform, constant). Order
//! statistics: `E[X_(i)] = ∫ F^{-1}(v) Beta(v; i, b−i+1) dv` (uniform closed form, the same
//! z-grid, or `P(X_(i) ≤ v_j) = I_{F_j}(i, b−i+1)` for atoms).
//!
//! The law of `T_b` for the exact chains (§5 "Quadrature", with the substitution moved from `U`
//! to `V = U^{1/b} = F(M_b)`, whose density `b V^{b−1}` is a polynomial, so the lower end has no
//! `U^{1/b}` singularity): Gauss–Legendre in `t ∈ (0, 1)` with `1 − V = s = (1 − t)^4`, weight
//! `4(1 − t)^3 · b (1 − s)^{b−1}` (for large `b` the range of `s` is cut where
//! `(1 − s)^b = 1e-18`, so the nodes sit where `M_b` has its mass), `M = F^{-1}(1 − s)` via
//! the survival form so that heavy upper tails are resolved; the node count doubles from 64
//! until the quadrature reproduces `E[T_b]` and `E[T_b²]` to [`QUAD_REL_TOL`]; atoms are used
//! exactly.

use super::BatchError;
use super::service::{BatchService, TimeLaw};
use crate::dist::TokenDist;
use crate::numeric::{gauss_legendre, norm_cdf, norm_interval, norm_isf, norm_pdf, norm_sf};
use statrs::function::beta::beta_reg;
use statrs::function::gamma::ln_gamma;

/// Relative accuracy required of the `T_b` quadrature on `E[T_b]` and `E[T_b²]`.
pub const QUAD_REL_TOL: f64 = 1e-8;
/// Probability of the lower part of `M_b`'s law left out of the quadrature range (and put on
/// one node at its upper end).
const QUAD_NEGLECT: f64 = 1e-18;
/// Largest number of quadrature nodes tried for the law of `T_b`.
pub const QUAD_MAX_NODES: usize = 2048;
/// Panels of the composite z-grid (16 Gauss–Legendre nodes each).
const Z_PANELS: usize = 96;
/// Nodes per z-panel.
const Z_NODES: usize = 16;

pub use tokenq_core::BatchTime;

/// A precomputed z-grid: nodes in the standard-normal variable with `x(z)`, `F`, `1 − F`, the
/// density in z (`dF/dz`) and the partial mean `∫_{x ≤ x(z)} x dF`.
#[derive(Debug, Clone, PartialEq)]
struct ZGrid {
    w: Vec<f64>,
    x: Vec<f64>,
    ln_f: Vec<f64>,
    ln_s: Vec<f64>,
    dens: Vec<f64>,
    partial_mean: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq)]
enum Repr {
    Uniform { lo: f64, hi: f64 },
    Grid(Box<ZGrid>),
    Atoms { values: Vec<f64>, cdf: Vec<f64> },
}

/// The decode-length law `X` of one request, prepared for batch computations.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLaw {
    dist: TokenDist,
    repr: Repr,
    mean: f64,
    second: f64,
}

/// Gauss–Legendre rules for `n = 64·2^i` (the quadrature sizes of [`LlmBatch::padded_law`]),
/// computed once.
fn gl_cached(n: usize) -> (&'static [f64], &'static [f64]) {
    static RULES: [std::sync::OnceLock<(Vec<f64>, Vec<f64>)>; 8] =
        [const { std::sync::OnceLock::new() }; 8];
    assert!(
        n.is_power_of_two() && (64..=64 << 7).contains(&n),
        "quadrature size {n} is not 64·2^k ≤ 8192"
    );
    let r = RULES[(n / 64).trailing_zeros() as usize].get_or_init(|| gauss_legendre(n));
    (&r.0, &r.1)
}

fn composite_grid(a: f64, b: f64) -> (Vec<f64>, Vec<f64>) {
    let (gx, gw) = gauss_legendre(Z_NODES);
    let h = (b - a) / Z_PANELS as f64;
    let mut z = Vec::with_capacity(Z_PANELS * Z_NODES);
    let mut w = Vec::with_capacity(Z_PANELS * Z_NODES);
    for p in 0..Z_PANELS {
        let mid = a + (p as f64 + 0.5) * h;
        for (x, wi) in gx.iter().zip(&gw) {
            z.push(mid + 0.5 * h * x);
            w.push(0.5 * h * wi);
        }
    }
    (z, w)
}

impl TokenLaw {
    /// Prepare `dist` (validated; support must be ≥ 0).
    pub fn new(dist: TokenDist) -> Result<Self, BatchError> {
        dist.validate()
            .map_err(|why| BatchError::Tokens { why: why.clone() })?;
        let (repr, mean, second) = match dist {
            TokenDist::Uniform { lo, hi } => (
                Repr::Uniform { lo, hi },
                0.5 * (lo + hi),
                (lo * lo + lo * hi + hi * hi) / 3.0,
            ),
            TokenDist::Lognormal { mu, sigma } => {
                let (z, w) = composite_grid(-12.0, 14.0 + 2.0 * sigma);
                let m = (mu + 0.5 * sigma * sigma).exp();
                let g = ZGrid {
                    x: z.iter().map(|&z| (mu + sigma * z).exp()).collect(),
                    ln_f: z.iter().map(|&z| norm_cdf(z).ln()).collect(),
                    ln_s: z.iter().map(|&z| norm_sf(z).ln()).collect(),
                    dens: z.iter().map(|&z| norm_pdf(z)).collect(),
                    partial_mean: z.iter().map(|&z| m * norm_cdf(z - sigma)).collect(),
                    w,
                };
                (
                    Repr::Grid(Box::new(g)),
                    m,
                    (2.0 * mu + 2.0 * sigma * sigma).exp(),
                )
            }
            TokenDist::TruncNormal { mean, sd, lo, hi } => {
                let a = (lo - mean) / sd;
                let bz = (hi - mean) / sd;
                let d = norm_interval(a, bz);
                let za = a.max(-13.0);
                let zb = bz.min(14.0f64.max(za + 27.0));
                let (z, w) = composite_grid(za, zb);
                let pa = if a.is_finite() { norm_pdf(a) } else { 0.0 };
                let g = ZGrid {
                    x: z.iter().map(|&z| mean + sd * z).collect(),
                    ln_f: z.iter().map(|&z| (norm_interval(a, z) / d).ln()).collect(),
                    ln_s: z.iter().map(|&z| (norm_interval(z, bz) / d).ln()).collect(),
                    dens: z.iter().map(|&z| norm_pdf(z) / d).collect(),
                    partial_mean: z
                        .iter()
                        .map(|&z| (mean * norm_interval(a, z) + sd * (pa - norm_pdf(z))) / d)
                        .collect(),
                    w,
                };
                let m1: f64 = (0..g.x.len()).map(|i| g.w[i] * g.dens[i] * g.x[i]).sum();
                let m2: f64 = (0..g.x.len())
                    .map(|i| g.w[i] * g.dens[i] * g.x[i] * g.x[i])
                    .sum();
                (Repr::Grid(Box::new(g)), m1, m2)
            }
            _ => {
                let (values, probs) = dist.atoms().ok_or_else(|| BatchError::Tokens {
                    why: format!("{} has no atoms and no batch formula", dist.describe()),
                })?;
                if values.iter().any(|&v| v < 0.0) {
                    return Err(BatchError::Tokens {
                        why: "decode lengths must be ≥ 0".into(),
                    });
                }
                let mut cdf = Vec::with_capacity(probs.len());
                let mut c = 0.0;
                for p in &probs {
                    c += p;
                    cdf.push(c);
                }
                let tot = c;
                cdf.iter_mut().for_each(|x| *x /= tot);
                let mean = values.iter().zip(&probs).map(|(v, p)| v * p).sum::<f64>() / tot;
                let second = values
                    .iter()
                    .zip(&probs)
                    .map(|(v, p)| v * v * p)
                    .sum::<f64>()
                    / tot;
                (Repr::Atoms { values, cdf }, mean, second)
            }
        };
        Ok(Self {
            dist,
            repr,
            mean,
            second,
        })
    }

    /// The underlying distribution.
    pub fn dist(&self) -> &TokenDist {
        &self.dist
    }
    /// `E[X]` (tokens).
    pub fn mean(&self) -> f64 {
        self.mean
    }
    /// `E[X²]`.
    pub fn second_moment(&self) -> f64 {
        self.second
    }
    /// Upper end of the support (`∞` for lognormal and untruncated normals).
    pub fn upper(&self) -> f64 {
        match &self.repr {
            Repr::Uniform { hi, .. } => *hi,
            Repr::Atoms { values, .. } => *values.last().expect("non-empty"),
            Repr::Grid(_) => self.dist.support().1,
        }
    }
    /// Whether `X` is a point mass.
    pub fn is_constant(&self) -> bool {
        matches!(&self.repr, Repr::Atoms { values, .. } if values.len() == 1)
    }

    /// `(E[M_b], E[M_b²])`, `M_b` = largest of `b` iid copies.
    pub fn max_moments(&self, b: usize) -> (f64, f64) {
        let bf = b as f64;
        match &self.repr {
            Repr::Uniform { lo, hi } => {
                let w = hi - lo;
                (
                    lo + w * bf / (bf + 1.0),
                    lo * lo + 2.0 * lo * w * bf / (bf + 1.0) + w * w * bf / (bf + 2.0),
                )
            }
            Repr::Grid(g) => {
                let (mut m1, mut m2) = (0.0, 0.0);
                for i in 0..g.x.len() {
                    let f = g.w[i] * bf * g.dens[i] * ((bf - 1.0) * g.ln_f[i]).exp();
                    m1 += f * g.x[i];
                    m2 += f * g.x[i] * g.x[i];
                }
                (m1, m2)
            }
            Repr::Atoms { values, cdf } => {
                let (mut m1, mut m2, mut prev) = (0.0, 0.0, 0.0);
                for (v, c) in values.iter().zip(cdf) {
                    let cur = c.powf(bf);
                    m1 += v * (cur - prev);
                    m2 += v * v * (cur - prev);
                    prev = cur;
                }
                (m1, m2)
            }
        }
    }

    /// `E[X_(i)]` for `i = 1..=b` (ascending order statistics of `b` iid copies).
    pub fn order_stat_means(&self, b: usize) -> Vec<f64> {
        (1..=b).map(|i| self.order_stat_mean(b, i)).collect()
    }

    /// `E[X_(i)]`, the `i`-th smallest of `b` (1-based).
    pub fn order_stat_mean(&self, b: usize, i: usize) -> f64 {
        assert!(i >= 1 && i <= b, "order statistic {i} of {b}");
        let (bf, f_i) = (b as f64, i as f64);
        match &self.repr {
            Repr::Uniform { lo, hi } => lo + (hi - lo) * f_i / (bf + 1.0),
            Repr::Grid(g) => {
                // Beta(i, b − i + 1) density of F: b·C(b−1, i−1) F^{i−1} (1 − F)^{b−i}.
                let ln_c = bf.ln() + ln_gamma(bf) - ln_gamma(f_i) - ln_gamma(bf - f_i + 1.0);
                (0..g.x.len())
                    .map(|j| {
                        let ln = ln_c + (f_i - 1.0) * g.ln_f[j] + (bf - f_i) * g.ln_s[j];
                        g.w[j] * g.dens[j] * ln.exp() * g.x[j]
                    })
                    .sum()
            }
            Repr::Atoms { values, cdf } => {
                let (mut m, mut prev) = (0.0, 0.0);
                for (v, c) in values.iter().zip(cdf) {
                    let cur = if *c >= 1.0 {
                        1.0
                    } else {
                        beta_reg(f_i, bf - f_i + 1.0, *c)
                    };
                    m += v * (cur - prev);
                    prev = cur;
                }
                m
            }
        }
    }

    /// `E[S·M_b]` with `S = Σ X_i`, `M_b = max X_i` (docs/models.md §8).
    pub fn sum_max_moment(&self, b: usize) -> f64 {
        if b == 1 {
            return self.second;
        }
        let bf = b as f64;
        match &self.repr {
            Repr::Uniform { lo, .. } => {
                let (m1, m2) = self.max_moments(b);
                m2 + (bf - 1.0) * 0.5 * (lo * m1 + m2)
            }
            Repr::Grid(g) => {
                // E[M²] + (b−1) E[M ψ(M)], ψ(m) = E[X | X ≤ m] = PM(m)/F(m).
                let (_, m2) = self.max_moments(b);
                let mut e = 0.0;
                for i in 0..g.x.len() {
                    let f = g.w[i] * bf * g.dens[i] * ((bf - 2.0) * g.ln_f[i]).exp();
                    e += f * g.x[i] * g.partial_mean[i];
                }
                m2 + (bf - 1.0) * e
            }
            Repr::Atoms { values, cdf } => {
                // b E[X max(X, M')], M' the max of b − 1 copies (exact with ties).
                let g: Vec<f64> = cdf.iter().map(|c| c.powf(bf - 1.0)).collect();
                let n = values.len();
                // suffix[j] = Σ_{k>j} v_k (G'_k − G'_{k−1})
                let mut suffix = vec![0.0; n + 1];
                for k in (0..n).rev() {
                    let prev = if k == 0 { 0.0 } else { g[k - 1] };
                    suffix[k] = suffix[k + 1] + values[k] * (g[k] - prev);
                }
                let mut e = 0.0;
                for j in 0..n {
                    let pj = cdf[j] - if j == 0 { 0.0 } else { cdf[j - 1] };
                    e += values[j] * pj * (values[j] * g[j] + suffix[j + 1]);
                }
                bf * e
            }
        }
    }

    /// `F^{-1}(1 − s)` for the quadrature of `M_b` (continuous laws).
    fn isf(&self, s: f64) -> f64 {
        match (&self.repr, &self.dist) {
            (Repr::Uniform { lo, hi }, _) => hi - s * (hi - lo),
            (_, TokenDist::Lognormal { mu, sigma }) => (mu + sigma * norm_isf(s)).exp(),
            (_, TokenDist::TruncNormal { mean, sd, lo, hi }) => {
                let a = (lo - mean) / sd;
                let bz = (hi - mean) / sd;
                let d = norm_interval(a, bz);
                let upper = norm_sf(bz) + s * d;
                let z = if upper < 0.5 {
                    norm_isf(upper)
                } else {
                    crate::numeric::norm_quantile(norm_cdf(a) + (1.0 - s) * d)
                };
                (mean + sd * z).clamp(*lo, *hi)
            }
            _ => self.dist.isf(s),
        }
    }

    /// The law of `M_b` as `(values, weights)`: exact atoms, or `n` quadrature nodes.
    fn max_nodes(&self, b: usize, n: usize) -> (Vec<f64>, Vec<f64>) {
        let bf = b as f64;
        match &self.repr {
            Repr::Atoms { values, cdf } => {
                let mut v = Vec::with_capacity(values.len());
                let mut w = Vec::with_capacity(values.len());
                let mut prev = 0.0;
                for (x, c) in values.iter().zip(cdf) {
                    let cur = c.powf(bf);
                    if cur - prev > 0.0 {
                        v.push(*x);
                        w.push(cur - prev);
                    }
                    prev = cur;
                }
                (v, w)
            }
            _ => {
                let (gx, gw) = gl_cached(n);
                let mut v = Vec::with_capacity(n + 1);
                let mut w = Vec::with_capacity(n + 1);
                // V = F(M_b) has density b V^{b−1} on (0, 1). Only 1 − V = s ≤ S matters, with
                // P(s > S) = (1 − S)^b = QUAD_NEGLECT (S = 1 for small b); s = S (1 − t)^4.
                let smax = (-(QUAD_NEGLECT.ln() / bf).exp_m1()).min(1.0);
                for (x, wi) in gx.iter().zip(gw) {
                    let t = 0.5 * (x + 1.0);
                    let om = 1.0 - t;
                    let s = smax * om * om * om * om;
                    let dens = bf * ((bf - 1.0) * (-s).ln_1p()).exp();
                    v.push(self.isf(s));
                    w.push(0.5 * wi * 4.0 * smax * om * om * om * dens);
                }
                if smax < 1.0 {
                    // The neglected lower part (mass (1 − S)^b) sits at its upper end.
                    v.push(self.isf(smax));
                    w.push(((1.0 - smax).ln() * bf).exp());
                }
                (v, w)
            }
        }
    }
}

/// The simulator's integer token semantics (docs/models.md §11): `n = min(max(1, round(X)), L)`, as an
/// exact pmf on `{1, …, L}` (`P(n) = F(n + ½) − F(n − ½)`, the ends collecting `X < 1.5` and
/// `X ≥ L − ½`). Discrete laws are rounded and clipped atom by atom. `max_tokens` is required for
/// laws with unbounded support.
pub fn integer_tokens(dist: &TokenDist, max_tokens: Option<u64>) -> Result<TokenDist, BatchError> {
    let (lo, hi) = dist.support();
    let l = match max_tokens {
        Some(0) => {
            return Err(BatchError::Invalid {
                name: "max tokens L",
                value: 0.0,
                why: "must be at least 1".into(),
            });
        }
        Some(l) => l,
        None if hi.is_finite() => (hi.round().max(1.0)) as u64,
        None => {
            return Err(BatchError::Tokens {
                why: format!(
                    "{} has unbounded support: give a max-token limit L for integer tokens",
                    dist.describe()
                ),
            });
        }
    };
    if l > MAX_INTEGER_TOKENS {
        return Err(BatchError::Invalid {
            name: "max tokens L",
            value: l as f64,
            why: format!("at most {MAX_INTEGER_TOKENS} integer token values are supported"),
        });
    }
    let (values, weights): (Vec<f64>, Vec<f64>) = if let Some((v, p)) = dist.atoms() {
        v.iter()
            .map(|x| x.round().clamp(1.0, l as f64))
            .zip(p)
            .unzip()
    } else {
        let top = (l as f64).min(hi.ceil().max(1.0)) as u64;
        let _ = lo;
        (1..=top)
            .map(|n| {
                let nf = n as f64;
                let a = if n == 1 { f64::NEG_INFINITY } else { nf - 0.5 };
                let b = if n == l { f64::INFINITY } else { nf + 0.5 };
                // P(a ≤ X < b) on the side of the median that avoids cancellation.
                let p = if dist.cdf(nf) < 0.5 {
                    dist.cdf(b) - if a.is_finite() { dist.cdf(a) } else { 0.0 }
                } else {
                    (if a.is_finite() { dist.sf(a) } else { 1.0 })
                        - if b.is_finite() { dist.sf(b) } else { 0.0 }
                };
                (nf, p.max(0.0))
            })
            .unzip()
    };
    let e = crate::dist::Empirical::from_weights(
        &values,
        &weights,
        format!("{} as integers in [1, {l}]", dist.describe()),
    )
    .map_err(|why| BatchError::Tokens { why })?;
    Ok(TokenDist::Empirical(e))
}

/// Largest `L` accepted by [`integer_tokens`].
pub const MAX_INTEGER_TOKENS: u64 = 200_000;

/// An LLM whose batch time is linear in the batch size (coefficients) with random decode lengths.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmBatch {
    /// `k1..k4`.
    pub coeffs: BatchTime,
    /// Decode-length law.
    pub tokens: TokenLaw,
}

impl LlmBatch {
    /// Batch model from coefficients and a decode-length distribution.
    pub fn new(coeffs: BatchTime, dist: TokenDist) -> Result<Self, BatchError> {
        Ok(Self {
            coeffs,
            tokens: TokenLaw::new(dist)?,
        })
    }

    /// Padded `(E[T_b], E[T_b²])` (eq 18).
    pub fn padded_moments(&self, b: usize) -> (f64, f64) {
        let (t1, t2) = (self.coeffs.t1(b as f64), self.coeffs.t2(b as f64));
        let (m1, m2) = self.tokens.max_moments(b);
        (t1 + t2 * m1, t1 * t1 + 2.0 * t1 * t2 * m1 + t2 * t2 * m2)
    }

    /// Inference speed `v(b) = b/E[T_b]` (requests per second, eq 24).
    pub fn speed(&self, b: usize) -> f64 {
        b as f64 / self.padded_moments(b).0
    }

    /// `argmax_{1 ≤ K ≤ kmax} v(K)` and the speed there.
    pub fn speed_optimum(&self, kmax: usize) -> (usize, f64) {
        (1..=kmax.max(1))
            .map(|k| (k, self.speed(k)))
            .fold((1, f64::NEG_INFINITY), |a, c| if c.1 > a.1 { c } else { a })
    }

    /// Elastic `(E[T^el_b], E[(T^el_b)²])` (docs/models.md §8).
    pub fn elastic_moments(&self, b: usize) -> (f64, f64) {
        let BatchTime { k3, k4, .. } = self.coeffs;
        let bf = b as f64;
        let t1 = self.coeffs.t1(b as f64);
        let (m1, m2) = self.tokens.max_moments(b);
        let ex = self.tokens.mean();
        let es = bf * ex;
        let es2 = bf * self.tokens.second_moment() + bf * (bf - 1.0) * ex * ex;
        let esm = self.tokens.sum_max_moment(b);
        let mean = t1 + k3 * es + k4 * m1;
        let second = t1 * t1
            + 2.0 * t1 * (k3 * es + k4 * m1)
            + k3 * k3 * es2
            + 2.0 * k3 * k4 * esm
            + k4 * k4 * m2;
        (mean, second)
    }

    /// `c̄(b)`: mean completion time of a request in an elastic batch of `b` (s).
    pub fn elastic_completion(&self, b: usize) -> f64 {
        let BatchTime { k3, k4, .. } = self.coeffs;
        let ex = self.tokens.mean();
        let min2 = if b > 1 {
            self.tokens.order_stat_mean(2, 1)
        } else {
            0.0
        };
        self.coeffs.t1(b as f64) + k3 * (ex + (b as f64 - 1.0) * min2) + k4 * ex
    }

    /// The law of the padded `T_b`: exact atoms, or the adaptive quadrature of docs/models.md §5.
    pub fn padded_law(&self, b: usize) -> Result<TimeLaw, BatchError> {
        let (t1, t2) = (self.coeffs.t1(b as f64), self.coeffs.t2(b as f64));
        if self.tokens.is_constant() || t2 == 0.0 {
            return Ok(TimeLaw::Point(self.padded_moments(b).0));
        }
        let to_law = |(v, w): (Vec<f64>, Vec<f64>)| TimeLaw::Mixture {
            nodes: v.iter().map(|m| t1 + t2 * m).collect(),
            weights: w,
        };
        if matches!(self.tokens.repr, Repr::Atoms { .. }) {
            return Ok(to_law(self.tokens.max_nodes(b, 0)));
        }
        let (e1, e2) = self.padded_moments(b);
        let mut n = 64;
        loop {
            let (v, w) = self.tokens.max_nodes(b, n);
            let (mut q1, mut q2) = (0.0, 0.0);
            for (m, wi) in v.iter().zip(&w) {
                let t = t1 + t2 * m;
                q1 += wi * t;
                q2 += wi * t * t;
            }
            let err = ((q1 - e1) / e1).abs().max(((q2 - e2) / e2).abs());
            if err < QUAD_REL_TOL {
                return Ok(to_law((v, w)));
            }
            if n >= QUAD_MAX_NODES {
                return Err(BatchError::NotConverged {
                    why: format!(
                        "quadrature of T_{b} reproduces E[T], E[T²] only to {err:.1e} relative \
                         with {n} nodes (needs {QUAD_REL_TOL:.0e})"
                    ),
                });
            }
            n *= 2;
        }
    }

    /// Eq-20 linearisation `E[T_b] ≤ α b + τ0` with `α = k1 + k3 m2`, `τ0 = k2 + k4 m2`
    /// (`m2` = upper end of the decode-length support); `None` for unbounded support.
    pub fn linearisation(&self) -> Option<(f64, f64)> {
        let m2 = self.tokens.upper();
        m2.is_finite().then_some((
            self.coeffs.k1 + self.coeffs.k3 * m2,
            self.coeffs.k2 + self.coeffs.k4 * m2,
        ))
    }

    /// `lim E[T_b]/b` for padded batches: `k1 + k3·m2`; infinite if `k3 > 0` and the support
    /// is unbounded (`E[M_b] → ∞`); `k1` if `k3 = 0` (`E[M_b]/b → 0` for finite-mean laws).
    pub fn padded_slope(&self) -> Option<f64> {
        let m2 = self.tokens.upper();
        if self.coeffs.k3 == 0.0 {
            Some(self.coeffs.k1)
        } else if m2.is_finite() {
            Some(self.coeffs.k1 + self.coeffs.k3 * m2)
        } else {
            None
        }
    }

    /// `lim E[T^el_b]/b = k1 + k3 E[X]`.
    pub fn elastic_slope(&self) -> f64 {
        self.coeffs.k1 + self.coeffs.k3 * self.tokens.mean()
    }
}

/// How the padded batch time enters a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PaddedTreatment {
    /// `T_b` random through `M_b` (exact).
    Random,
    /// `T_b := E[T_b]` deterministic (the paper's "fixed value" treatment).
    MeanOnly,
}

/// Padded batches as a [`BatchService`].
#[derive(Debug, Clone, Copy)]
pub struct Padded<'a> {
    /// The model.
    pub llm: &'a LlmBatch,
    /// Random or mean-only batch times.
    pub treatment: PaddedTreatment,
}

impl BatchService for Padded<'_> {
    fn time_moments(&self, b: usize) -> (f64, f64) {
        let (m1, m2) = self.llm.padded_moments(b);
        match self.treatment {
            PaddedTreatment::Random => (m1, m2),
            PaddedTreatment::MeanOnly => (m1, m1 * m1),
        }
    }
    fn time_law(&self, b: usize) -> Result<TimeLaw, BatchError> {
        match self.treatment {
            PaddedTreatment::Random => self.llm.padded_law(b),
            PaddedTreatment::MeanOnly => Ok(TimeLaw::Point(self.llm.padded_moments(b).0)),
        }
    }
    fn asymptotic_slope(&self) -> Option<f64> {
        self.llm.padded_slope()
    }
    fn is_deterministic(&self) -> bool {
        self.treatment == PaddedTreatment::MeanOnly || self.llm.tokens.is_constant()
    }
}

/// Elastic batches as a [`BatchService`]: gamma two-moment law of `T^el_b` (negative-binomial
/// transitions), own-completion term `c̄(b)`.
#[derive(Debug, Clone, Copy)]
pub struct Elastic<'a> {
    /// The model.
    pub llm: &'a LlmBatch,
}

impl BatchService for Elastic<'_> {
    fn time_moments(&self, b: usize) -> (f64, f64) {
        self.llm.elastic_moments(b)
    }
    fn time_law(&self, b: usize) -> Result<TimeLaw, BatchError> {
        let (m1, m2) = self.llm.elastic_moments(b);
        Ok(TimeLaw::Gamma {
            mean: m1,
            var: (m2 - m1 * m1).max(0.0),
        })
    }
    fn completion_mean(&self, b: usize) -> f64 {
        self.llm.elastic_completion(b)
    }
    fn asymptotic_slope(&self) -> Option<f64> {
        Some(self.llm.elastic_slope())
    }
    fn is_deterministic(&self) -> bool {
        self.llm.tokens.is_constant()
    }
}
