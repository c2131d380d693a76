//! Impatient users with constant patience τ: M/G/1+D (docs/models.md §2; paper §III-B, eqs. 6–9).
//!
//! Every user waits at most τ seconds in queue. Under FCFS an arrival finding virtual waiting
//! time V ≤ τ is served after exactly V; otherwise he is lost (π(τ) = loss fraction). Lost users
//! add no work, so balking and reneging share π and the mean wait of served users `E[W_qs]`;
//! they differ only in the wait charged to lost users: τ (reneging, paper eq. 9, the default)
//! or 0 (balking). Stable for every ρ when τ < ∞.
//!
//! * [`exact`]: the level-crossing solution for any service law (docs/models.md §2.2). With
//!   `F(x) = P(V ≤ x)/P0` solving `F(x) = 1 + λ∫_0^x F(x−u)(1−B(u))du` on [0, τ],
//!   `P0 = 1/(1+ρF_τ)`, `π = (1 − (1−ρ)F_τ)/(1 + ρF_τ)`, `E[W_qs] = τ − I_τ/F_τ`. Solved by the
//!   product-trapezoid rule on n cells (default [`DEFAULT_GRID`]), second order, with rescaling
//!   (log domain) when F grows beyond f64 range (ρ > 1, large λτ). Method: exact (numerical
//!   tolerance ~1e-8 relative at n = 4000 when τ is within a few mean waits).
//!
//!   **Grid that follows the waiting time, not only τ.** A grid over [0, τ] with n cells is far
//!   too coarse when τ is much longer than the waits (τ = 10⁶ s against waits of ~10 s gave
//!   E[W_q] = 48.7 s for a patient value of 8.90 s), and `E[W_qs] = τ − I_τ/F_τ` cancels by a
//!   factor τ/E[W_qs]. For a stable patient queue (ρ < 1) and τ > [`TAIL_FORM_FACTOR`]·E[W],
//!   the solve therefore uses the *tail form* of the same level-crossing equation: with W
//!   the patient M/G/1 wait (P-K mean E[W] exact), `G(x) = P(W > x)` and `H(x) = ∫_x^∞ G`, both
//!   solve `Φ(x) = s(x) + λ∫_0^x Φ(x−u)(1−B(u))du` (sources `λΨ₁` and `λΨ₂ + λE[W]Ψ₁`,
//!   `Ψ₁(x) = E[(S−x)⁺]`, `Ψ₂(x) = E[((S−x)⁺)²]/2`, evaluated without cancellation far in the
//!   tail), and `π = (1−ρ)p/(1−ρp)` with `p = G(τ)`, `E[W_qs] = (E[W] − τG(τ) − H(τ))/(1 − p)`:
//!   the discretisation error scales with the mass beyond τ, not with τ. The cells are linear
//!   interpolation weights (exact for G linear on a cell, whatever the shape of B inside it).
//!   The grid extent is `min(τ, X)` with X the point beyond which the patient wait carries no
//!   mass (estimated from the one-big-jump and Kingman tails, then verified by the solve and
//!   grown until `X·G(X) + H(X) ≤` [`TRUNCATION_WAIT_TOL`]`·E[W]` and `G(X) ≤`
//!   [`TRUNCATION_LOSS_TOL`]). When τ ≥ X, π < 1e-15 and the waits equal the patient
//!   (Pollaczek–Khinchine) ones to 1e-12 relative: the result says so (solver
//!   [`SOLVER_TRUNCATED`], [`ImpatienceResult::truncated_at_s`]). For ρ ≥ 1 the density does not
//!   decay below τ and the grid over [0, τ] is the right one.
//! * [`mm1d`], [`md1d`]: the M/M/1+D and M/D/1+D closed forms (docs/models.md §2.3). The M/D/1+D
//!   alternating series is used only for τ/D ≤ [`MD1D_MAX_TAU_OVER_D`]; beyond, and where the
//!   M/M/1+D exponential would overflow, the numerical method is used instead.
//! * [`dekok_tijms`]: the paper's two-moment approximation (docs/models.md §2.4, eqs. 6–8): linear
//!   interpolation in c_S² between M/D/1+D and M/M/1+D with the same mean service. Refused for
//!   c_S² > 1 (extrapolation). Method: approximation.
//! * [`served`]: the laws of the wait and the sojourn of *served* users, `P(W ≤ x | served) =
//!   F(x)/F(τ)` (docs/models.md §2.5), for percentiles. Method: exact with a tolerance from n-
//!   and 2n-cell solves.

use serde::Serialize;

use crate::Method;
use crate::dist::TokenDist;
use crate::mg1::{LinearService, QueueError, validate_limit, validate_rate};
use crate::numeric::{norm_interval, norm_pdf, norm_sf};

/// Default number of grid cells of the level-crossing solve (docs/models.md §2.2: ~1e-8 relative).
pub const DEFAULT_GRID: usize = 4000;
/// Largest accepted number of grid cells. The solve takes O(n) memory and O(n²) time: n = 10⁶
/// is already minutes of arithmetic (and ~64 MB), so larger values are refused rather than left
/// to allocate or run for hours.
pub const MAX_GRID_CELLS: usize = 1_000_000;
/// A stable queue (ρ < 1) is solved in the tail form when `τ > TAIL_FORM_FACTOR·E[W]` (E[W] the
/// patient Pollaczek–Khinchine mean wait); below, the plain form on [0, τ]. (Measured on
/// M/M/1+D, n = 4000: the tail form's π is 3–100× more accurate for every τ; its `E[W_qs]` is
/// too from τ ≈ E[W] on, while for ρ → 1 and τ ≪ E[W] the plain form is.)
pub const TAIL_FORM_FACTOR: f64 = 2.0;
/// Truncation: beyond X the patient wait carries `E[W; W > X] ≤ TRUNCATION_WAIT_TOL·E[W]`.
pub const TRUNCATION_WAIT_TOL: f64 = 1e-12;
/// Truncation: beyond X the patient wait carries `P(W > X) ≤ TRUNCATION_LOSS_TOL`.
pub const TRUNCATION_LOSS_TOL: f64 = 1e-15;
/// Solver label when τ lies beyond the truncation point X of the waiting-time tail.
pub const SOLVER_TRUNCATED: &str =
    "level-crossing (truncated at the wait tail: loss < 1e-15, waits = M/G/1 within 1e-12)";
/// Verification solves allowed while growing the truncation point before solving on [0, τ].
const MAX_EXTENT_STEPS: usize = 8;
/// Values of the tail form below this are flushed to 0 (no subnormal arithmetic).
const FLUSH_BELOW: f64 = 1e-250;
/// The M/D/1+D series is accurate in f64 only up to this τ/D (docs/models.md §2.3).
pub const MD1D_MAX_TAU_OVER_D: f64 = 10.0;
/// Rescale the level-crossing solution when it exceeds this (log-domain bookkeeping).
const RESCALE_AT: f64 = 1e200;
/// `exp` overflows beyond this argument.
const MAX_EXP_ARG: f64 = 700.0;

pub use tokenq_core::Abandonment;

pub mod served;
pub use served::{DEFAULT_SERVED_GRID, ServedWaitDistribution, served_wait_distribution};

/// Service-time law of the impatience models.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceLaw {
    /// `S = a·min(N, L) + c` with N from a token law.
    Tokens {
        tokens: TokenDist,
        max_tokens: f64,
        service: LinearService,
    },
    /// Exponential with this mean (s).
    Exponential { mean_s: f64 },
    /// Deterministic, this value (s).
    Deterministic { value_s: f64 },
}

impl ServiceLaw {
    /// `(E[S], E[S²])`.
    pub fn moments(&self) -> (f64, f64) {
        match self {
            ServiceLaw::Tokens {
                tokens,
                max_tokens,
                service,
            } => {
                let (m1, m2) = tokens.clipped_moments(*max_tokens);
                service.moments(m1, m2)
            }
            ServiceLaw::Exponential { mean_s } => (*mean_s, 2.0 * mean_s * mean_s),
            ServiceLaw::Deterministic { value_s } => (*value_s, value_s * value_s),
        }
    }

    /// `R(x_k) = E[min(S, x_k)]` at ascending points `xs`.
    fn expected_min_at(&self, xs: &[f64]) -> Vec<f64> {
        match self {
            ServiceLaw::Exponential { mean_s } => xs
                .iter()
                .map(|&x| -mean_s * (-x / mean_s).exp_m1())
                .collect(),
            ServiceLaw::Deterministic { value_s } => xs.iter().map(|&x| x.min(*value_s)).collect(),
            ServiceLaw::Tokens {
                tokens,
                max_tokens,
                service,
            } => {
                let (a, c) = (service.per_token_s, service.intercept_s);
                let cap = |x: f64| {
                    if a > 0.0 {
                        ((x - c) / a).min(*max_tokens)
                    } else {
                        *max_tokens
                    }
                };
                if a == 0.0 {
                    return xs.iter().map(|&x| x.min(c)).collect();
                }
                if let TokenDist::Empirical(e) = tokens {
                    // Merge walk over the atoms: O(atoms + points).
                    let mut out = Vec::with_capacity(xs.len());
                    let (mut j, mut below1, mut below_p) = (0usize, 0.0, 0.0);
                    for &x in xs {
                        if x <= c {
                            out.push(x);
                            continue;
                        }
                        let m = cap(x);
                        while j < e.values.len() && e.values[j] <= m {
                            below1 += e.values[j] * e.probs[j];
                            below_p += e.probs[j];
                            j += 1;
                        }
                        let tail = (1.0 - below_p).max(0.0);
                        out.push(c + a * (below1 + m * tail));
                    }
                    out
                } else {
                    xs.iter()
                        .map(|&x| {
                            if x <= c {
                                x
                            } else {
                                c + a * tokens.expected_min(cap(x))
                            }
                        })
                        .collect()
                }
            }
        }
    }

    /// `(Ψ₁(x), Ψ₂(x)) = (E[(S − x)⁺], E[((S − x)⁺)²]/2)` at the ascending points `xs`, computed
    /// from the tail of the law (not as `E[S] − E[min(S, x)]`), so each keeps its relative
    /// accuracy far in the upper tail and is exactly 0 beyond the largest service time.
    fn tail_moments_at(&self, xs: &[f64]) -> (Vec<f64>, Vec<f64>) {
        match self {
            ServiceLaw::Exponential { mean_s } => xs
                .iter()
                .map(|&x| {
                    let e = (-x / mean_s).exp();
                    (mean_s * e, mean_s * mean_s * e)
                })
                .unzip(),
            ServiceLaw::Deterministic { value_s } => xs
                .iter()
                .map(|&x| {
                    let d = (value_s - x).max(0.0);
                    (d, 0.5 * d * d)
                })
                .unzip(),
            ServiceLaw::Tokens {
                tokens,
                max_tokens,
                service,
            } => {
                let (a, c) = (service.per_token_s, service.intercept_s);
                if a == 0.0 {
                    return ServiceLaw::Deterministic { value_s: c }.tail_moments_at(xs);
                }
                let (es, es2) = self.moments();
                // Points at or below the intercept: S − x ≥ 0 always.
                let split = xs.partition_point(|&x| x <= c);
                let (mut p1, mut p2): (Vec<f64>, Vec<f64>) = xs[..split]
                    .iter()
                    .map(|&x| (es - x, 0.5 * (es2 - 2.0 * x * es + x * x)))
                    .unzip();
                let ms: Vec<f64> = xs[split..].iter().map(|&x| (x - c) / a).collect();
                for (t1, t2) in token_tail_moments(tokens, *max_tokens, &ms) {
                    p1.push(a * t1);
                    p2.push(0.5 * a * a * t2);
                }
                (p1, p2)
            }
        }
    }
}

/// `(E[(N_L − m)⁺], E[((N_L − m)⁺)²])` of `N_L = min(N, l)` at the ascending points `ms > 0`,
/// from closed forms in the tail of each law (relative accuracy kept far out; 0 beyond the
/// largest value of `N_L`).
fn token_tail_moments(tokens: &TokenDist, l: f64, ms: &[f64]) -> Vec<(f64, f64)> {
    let top = l.min(tokens.support().1);
    // All of N_L is above m: the plain moments (no tail to lose there).
    let below = |m: f64| {
        let (e1, e2) = tokens.clipped_moments(l);
        ((e1 - m).max(0.0), (e2 - 2.0 * m * e1 + m * m).max(0.0))
    };
    match *tokens {
        TokenDist::Empirical(ref e) => {
            // Walk down from the top: sums over the atoms above m of p, p·v', p·v'² (v' = min(v, l)).
            let mut out = vec![(0.0, 0.0); ms.len()];
            let (mut j, mut s0, mut s1, mut s2) = (e.values.len(), 0.0, 0.0, 0.0);
            for (i, &m) in ms.iter().enumerate().rev() {
                while j > 0 && e.values[j - 1] > m {
                    j -= 1;
                    let (v, p) = (e.values[j].min(l), e.probs[j]);
                    s0 += p;
                    s1 += p * v;
                    s2 += p * v * v;
                }
                if m < top {
                    out[i] = (
                        (s1 - m * s0).max(0.0),
                        (s2 - 2.0 * m * s1 + m * m * s0).max(0.0),
                    );
                }
            }
            out
        }
        TokenDist::Lognormal { mu, sigma } => {
            let e1 = (mu + 0.5 * sigma * sigma).exp();
            let e2 = (2.0 * mu + 2.0 * sigma * sigma).exp();
            // Unclipped: E[(N − q)⁺] = e1 Φ̄(z − σ) − q Φ̄(z), E[((N − q)⁺)²] = e2 Φ̄(z − 2σ)
            // − 2q e1 Φ̄(z − σ) + q² Φ̄(z), z = (ln q − μ)/σ (loses only ~log10(z²/σ²) digits).
            let unclipped = |q: f64| {
                let z = (q.ln() - mu) / sigma;
                let k0 = norm_sf(z);
                let k1 = e1 * norm_sf(z - sigma);
                let k2 = e2 * norm_sf(z - 2.0 * sigma);
                (
                    (k1 - q * k0).max(0.0),
                    (k2 - 2.0 * q * k1 + q * q * k0).max(0.0),
                )
            };
            let at_l = l.is_finite().then(|| unclipped(l));
            ms.iter()
                .map(|&m| {
                    if m >= top {
                        return (0.0, 0.0);
                    }
                    let (a1, a2) = unclipped(m);
                    match at_l {
                        // (N_L − m)⁺ = (N − m)⁺ − (N − l)⁺ and its square, for m < l.
                        Some((b1, b2)) => {
                            ((a1 - b1).max(0.0), (a2 - b2 - 2.0 * (l - m) * b1).max(0.0))
                        }
                        None => (a1, a2),
                    }
                })
                .collect()
        }
        TokenDist::Uniform { lo, hi } => ms
            .iter()
            .map(|&m| {
                if m >= top {
                    (0.0, 0.0)
                } else if m < lo {
                    below(m)
                } else {
                    // ∫_m^top P(N > v) dv and 2∫_m^top (v − m) P(N > v) dv, P(N > v) = (hi − v)/w.
                    let (w, e, d) = (hi - lo, hi - m, top - m);
                    (
                        d * (2.0 * e - d) / (2.0 * w),
                        d * d * (e - 2.0 * d / 3.0) / w,
                    )
                }
            })
            .collect(),
        TokenDist::TruncNormal { mean, sd, lo, hi } => {
            let z = norm_interval((lo - mean) / sd, (hi - mean) / sd);
            let b = (top - mean) / sd;
            let (pb, bpb) = if b.is_finite() {
                (norm_pdf(b), b * norm_pdf(b))
            } else {
                (0.0, 0.0)
            };
            // Mass clipped to l (when l < hi).
            let clip = if l < hi { tokens.sf(l) } else { 0.0 };
            ms.iter()
                .map(|&m| {
                    if m >= top {
                        return (0.0, 0.0);
                    }
                    if m < lo {
                        return below(m);
                    }
                    // Standard-normal partial moments on [a, b]:
                    // ∫(t − a)φ = φ(a) − φ(b) − aΔΦ,
                    // ∫(t − a)²φ = (1 + a²)ΔΦ − aφ(a) + (2a − b)φ(b).
                    let a = (m - mean) / sd;
                    let dphi = norm_interval(a, b);
                    let pa = norm_pdf(a);
                    let i1 = sd * (pa - pb - a * dphi) / z;
                    let i2 = sd * sd * ((1.0 + a * a) * dphi - a * pa + 2.0 * a * pb - bpb) / z;
                    if clip > 0.0 {
                        let d = top - m;
                        ((i1 + d * clip).max(0.0), (i2 + d * d * clip).max(0.0))
                    } else {
                        (i1.max(0.0), i2.max(0.0))
                    }
                })
                .collect()
        }
        TokenDist::Constant { value } => ms
            .iter()
            .map(|&m| {
                let d = (value.min(l) - m).max(0.0);
                (d, d * d)
            })
            .collect(),
        TokenDist::DiscreteUniform { lo, hi } => {
            let (lo, hi) = (lo as f64, hi as f64);
            let count = hi - lo + 1.0;
            let kmax = hi.min(l.floor()); // atoms that keep their value
            ms.iter()
                .map(|&m| {
                    if m >= top {
                        return (0.0, 0.0);
                    }
                    let k0 = lo.max(m.floor() + 1.0); // first atom above m
                    let (mut t1, mut t2) = (0.0, 0.0);
                    if k0 <= kmax {
                        // Σ_{k=k0}^{kmax} (k − m)^{1,2} with k − m = d0 + i, i = 0..cnt−1.
                        let cnt = kmax - k0 + 1.0;
                        let d0 = k0 - m;
                        t1 += cnt * d0 + cnt * (cnt - 1.0) / 2.0;
                        t2 += cnt * d0 * d0
                            + d0 * cnt * (cnt - 1.0)
                            + (cnt - 1.0) * cnt * (2.0 * cnt - 1.0) / 6.0;
                    }
                    // Atoms above l (and above m) are clipped to l.
                    let clipped = hi - kmax.max(k0 - 1.0);
                    if clipped > 0.0 && l > m {
                        t1 += clipped * (l - m);
                        t2 += clipped * (l - m) * (l - m);
                    }
                    (t1 / count, t2 / count)
                })
                .collect()
        }
    }
}

/// Results of an impatience model. Times in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImpatienceResult {
    /// π(τ): long-run fraction of users lost.
    pub loss_fraction: f64,
    /// E[W_qs]: mean wait of served users (s).
    pub mean_wait_served_s: f64,
    /// Mean wait of all users (s): eq. 9 (reneging) or `E[W_qs](1 − π)` (balking).
    pub mean_wait_all_s: f64,
    /// Mean sojourn of served users `E[W_qs] + E[S]` (s).
    pub mean_sojourn_served_s: f64,
    /// P(V = 0): probability the server is idle (exact methods only).
    pub prob_idle: Option<f64>,
    /// Offered load `ρ = λE[S]` (may exceed 1).
    pub offered_load: f64,
    /// Carried load `ρ(1 − π)`.
    pub carried_load: f64,
    /// Squared coefficient of variation of S.
    pub service_scv: f64,
    /// Which semantics `mean_wait_all_s` uses.
    pub abandonment: Abandonment,
    /// Exact (numerical or closed form) or approximation (De Kok–Tijms).
    pub method: Method,
    /// The algorithm: `level-crossing`, [`SOLVER_TRUNCATED`], `mm1d-closed-form`,
    /// `md1d-closed-form`, `dekok-tijms`.
    pub solver: &'static str,
    /// When τ lies beyond the point X (s) past which the patient waiting time carries no mass
    /// (`P(W > X) ≤ 1e-15`, `E[W; W > X] ≤ 1e-12·E[W]`): X. Then π is reported as 0 and the
    /// waits are the patient (Pollaczek–Khinchine) ones, exact to that tolerance.
    pub truncated_at_s: Option<f64>,
}

fn validate_tau(tau: f64) -> Result<(), QueueError> {
    if tau.is_finite() && tau > 0.0 {
        Ok(())
    } else {
        Err(QueueError::Invalid {
            what: "patience",
            why: format!("must be a finite number > 0 s, got {tau}"),
        })
    }
}

fn validate_law(law: &ServiceLaw) -> Result<(), QueueError> {
    match law {
        ServiceLaw::Tokens {
            max_tokens,
            service,
            ..
        } => {
            validate_limit(*max_tokens)?;
            Ok(service.validate()?)
        }
        ServiceLaw::Exponential { mean_s: v } | ServiceLaw::Deterministic { value_s: v } => {
            if v.is_finite() && *v > 0.0 {
                Ok(())
            } else {
                Err(QueueError::Invalid {
                    what: "service time",
                    why: format!("must be a finite number > 0 s, got {v}"),
                })
            }
        }
    }
}

/// Build the result from `ln F_τ` and `I_τ/F_τ` (both scale-free, so overflow-safe).
#[allow(clippy::too_many_arguments)]
fn assemble(
    lambda: f64,
    tau: f64,
    es: f64,
    es2: f64,
    ln_f: f64,
    i_over_f: f64,
    abandonment: Abandonment,
    method: Method,
    solver: &'static str,
) -> ImpatienceResult {
    let rho = lambda * es;
    let inv_f = (-ln_f).exp(); // 1/F_τ, may underflow to 0 (then π → 1 − 1/ρ)
    let loss = ((inv_f - (1.0 - rho)) / (inv_f + rho)).clamp(0.0, 1.0);
    let p0 = inv_f / (inv_f + rho);
    let wqs = (tau - i_over_f).max(0.0);
    finish(
        lambda,
        tau,
        es,
        es2,
        loss,
        wqs,
        Some(p0),
        abandonment,
        method,
        solver,
    )
}

#[allow(clippy::too_many_arguments)]
fn finish(
    lambda: f64,
    tau: f64,
    es: f64,
    es2: f64,
    loss: f64,
    wqs: f64,
    p0: Option<f64>,
    abandonment: Abandonment,
    method: Method,
    solver: &'static str,
) -> ImpatienceResult {
    let rho = lambda * es;
    let all = match abandonment {
        Abandonment::Renege => tau * loss + wqs * (1.0 - loss),
        Abandonment::Balk => wqs * (1.0 - loss),
    };
    ImpatienceResult {
        loss_fraction: loss,
        mean_wait_served_s: wqs,
        mean_wait_all_s: all,
        mean_sojourn_served_s: wqs + es,
        prob_idle: p0,
        offered_load: rho,
        carried_load: rho * (1.0 - loss),
        service_scv: (es2 / (es * es) - 1.0).max(0.0),
        abandonment,
        method,
        solver,
        truncated_at_s: None,
    }
}

fn validate_cells(n: usize) -> Result<(), QueueError> {
    if (2..=MAX_GRID_CELLS).contains(&n) {
        Ok(())
    } else {
        Err(QueueError::Invalid {
            what: "grid_cells",
            why: format!(
                "must be between 2 and {MAX_GRID_CELLS} (the level-crossing solve takes O(n) \
                 memory and O(n²) time), got {n}"
            ),
        })
    }
}

/// Exact level-crossing solution (docs/models.md §2.2) on `n` grid cells, for any service law.
pub fn exact(
    law: &ServiceLaw,
    arrival_rate: f64,
    patience_s: f64,
    n: usize,
    abandonment: Abandonment,
) -> Result<ImpatienceResult, QueueError> {
    validate_rate(arrival_rate)?;
    validate_tau(patience_s)?;
    validate_law(law)?;
    validate_cells(n)?;
    if let Some(patient) = Patient::tail_form(law, arrival_rate, patience_s) {
        return Ok(patient.solve(law, patience_s, n, abandonment));
    }
    let lc = solve_level_crossing(law, arrival_rate, patience_s, n);
    Ok(from_level_crossing(
        law,
        arrival_rate,
        patience_s,
        &lc,
        abandonment,
    ))
}

/// The scale-free outcome of a level-crossing solve on [0, τ]: `ln F_τ` and `I_τ / F_τ`.
/// It depends on the service law only through `B(x)` for `x ≤ τ`, so laws that agree there
/// (e.g. limits L with `a·L + c ≥ τ`) share it; π and the waits then follow from ρ.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelCrossing {
    /// `ln F(τ)`, `F(x) = P(V ≤ x)/P(V = 0)`.
    pub ln_f_tau: f64,
    /// `I_τ / F_τ` with `I_τ = ∫_0^τ F(x) dx` (s).
    pub i_over_f: f64,
    /// Grid cells of the solve (reused by [`from_level_crossing`] for the tail form).
    cells: usize,
}

/// Solve the level-crossing equation on `n` cells (inputs assumed valid; see [`exact`]).
pub fn solve_level_crossing(
    law: &ServiceLaw,
    arrival_rate: f64,
    patience_s: f64,
    n: usize,
) -> LevelCrossing {
    let h = patience_s / n as f64;
    let xs: Vec<f64> = (0..=n).map(|k| k as f64 * h).collect();
    let r = law.expected_min_at(&xs);
    let (ln_f_tau, i_over_f) = level_crossing(arrival_rate, h, &r);
    LevelCrossing {
        ln_f_tau,
        i_over_f,
        cells: n,
    }
}

/// The exact result for `law` from a level-crossing solve valid for it on [0, τ]. Where
/// [`exact`] would use the tail form (stable queue, τ beyond a few mean waits) the shared solve
/// is not used: the tail form is solved for `law` on the same number of cells, so the result
/// always equals `exact(law, …, cells)`.
pub fn from_level_crossing(
    law: &ServiceLaw,
    arrival_rate: f64,
    patience_s: f64,
    lc: &LevelCrossing,
    abandonment: Abandonment,
) -> ImpatienceResult {
    if let Some(patient) = Patient::tail_form(law, arrival_rate, patience_s) {
        return patient.solve(law, patience_s, lc.cells, abandonment);
    }
    let (es, es2) = law.moments();
    assemble(
        arrival_rate,
        patience_s,
        es,
        es2,
        lc.ln_f_tau,
        lc.i_over_f,
        abandonment,
        Method::Exact,
        "level-crossing",
    )
}

/// Product-trapezoid solve of `F(x) = 1 + λ∫_0^x F(x−u)(1−B(u))du` given `R(x_k)` on the grid.
/// Returns `(ln F_τ, I_τ / F_τ)`.
fn level_crossing(lambda: f64, h: f64, r: &[f64]) -> (f64, f64) {
    let m = level_crossing_march(lambda, r);
    let n = m.f.len() - 1;
    let f_tau = m.f[n];
    let i_tau = h * (m.sum_f - 0.5 * (m.f[0] + m.f[n]));
    (f_tau.ln() + m.ln_scale, i_tau / f_tau)
}

/// The level-crossing solution on the grid, in one common scale: `F(x_k) = f[k]·e^{ln_scale}`.
struct March {
    f: Vec<f64>,
    ln_scale: f64,
    /// `e^{−ln_scale}` as tracked by the march: the term "1" of the equation in scaled units.
    inv_scale: f64,
    /// `Σ_k f[k]` (same scale).
    sum_f: f64,
}

/// The product-trapezoid march of [`level_crossing`] (docs/models.md §2.2), rescaled whenever
/// F exceeds [`RESCALE_AT`]; values that fall below the f64 range after a rescale become 0.
fn level_crossing_march(lambda: f64, r: &[f64]) -> March {
    let n = r.len() - 1;
    let dr: Vec<f64> = r.windows(2).map(|w| w[1] - w[0]).collect();
    // drr[t] = dr[n − 1 − t]: ΔR reversed, so the convolution is a plain dot product.
    let drr: Vec<f64> = dr.iter().rev().copied().collect();
    let half = 0.5 * lambda;
    let denom = 1.0 - half * dr[0];
    // f[k] = F_k / scale; g[m] = f[m] + f[m−1] (m ≥ 1), the trapezoid pair sums.
    let mut f = vec![0.0; n + 1];
    let mut g = vec![0.0; n + 1];
    f[0] = 1.0;
    let mut inv_scale = 1.0; // 1/scale: the inhomogeneous term "1" in scaled units
    let mut ln_scale = 0.0;
    let mut sum_f = 1.0; // Σ_{k ≤ current} f_k (scaled)
    for k in 1..=n {
        // Σ_{j=1}^{k−1} ΔR_j g[k−j] = Σ_{m=1}^{k−1} drr[n−1−k+m] g[m]: two ascending slices.
        let conv = dot(&drr[n - k..n - 1], &g[1..k]);
        let fk = (inv_scale + half * dr[0] * f[k - 1] + half * conv) / denom;
        f[k] = fk;
        g[k] = fk + f[k - 1];
        sum_f += fk;
        if fk > RESCALE_AT {
            let s = 1.0 / fk;
            for v in f[..=k].iter_mut() {
                *v *= s;
            }
            for v in g[..=k].iter_mut() {
                *v *= s;
            }
            sum_f *= s;
            inv_scale *= s;
            ln_scale += fk.ln();
        }
    }
    March {
        f,
        ln_scale,
        inv_scale,
        sum_f,
    }
}

/// `Σ_i a[i] · b[i]` with 8 independent accumulators (vectorisable, no bounds checks).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0.0f64; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f64>() + tail
}

fn flush(v: f64) -> f64 {
    if v < FLUSH_BELOW { 0.0 } else { v }
}

/// The patient M/G/1 behind a stable impatient queue (docs/models.md §2.2, tail form).
#[derive(Debug, Clone, Copy)]
struct Patient {
    lambda: f64,
    rho: f64,
    es: f64,
    es2: f64,
    /// Pollaczek–Khinchine mean wait `E[W] = λE[S²]/(2(1 − ρ))`.
    ew: f64,
}

/// The tail-form solve on [0, X]: `G = P(W > ·)` and `H = ∫_·^∞ G` at X and at X/2.
#[derive(Debug, Clone, Copy)]
struct TailMarch {
    g: f64,
    h: f64,
    x_half: f64,
    g_half: f64,
    h_half: f64,
}

impl Patient {
    /// `Some` when the tail form applies: ρ < 1 and `τ > TAIL_FORM_FACTOR·E[W]`.
    fn tail_form(law: &ServiceLaw, lambda: f64, tau: f64) -> Option<Patient> {
        let (es, es2) = law.moments();
        let rho = lambda * es;
        if !(es > 0.0 && rho < 1.0) {
            return None;
        }
        let ew = lambda * es2 / (2.0 * (1.0 - rho));
        if !(ew.is_finite() && ew > 0.0) || tau <= TAIL_FORM_FACTOR * ew {
            return None;
        }
        Some(Patient {
            lambda,
            rho,
            es,
            es2,
            ew,
        })
    }

    /// Solve on [0, min(τ, X)], growing X until the mass beyond it is negligible or X = τ.
    fn solve(
        &self,
        law: &ServiceLaw,
        tau: f64,
        n: usize,
        abandonment: Abandonment,
    ) -> ImpatienceResult {
        let target = TRUNCATION_WAIT_TOL * self.ew;
        // Twice the guess: the Kingman rate overstates the decay of light tails, and a longer
        // extent costs nothing here (the tail form's error scales with the mass beyond it).
        let mut x = 2.0 * self.truncation_guess(law, tau);
        if tau <= 2.0 * x {
            // Close enough: solve on [0, τ] at once rather than verify a truncation first.
            x = tau;
        }
        for step in 1.. {
            let t = self.march(law, x, n);
            if x >= tau {
                return self.result(tau, t.g, t.h, abandonment);
            }
            let tail = x * t.g + t.h;
            if tail <= target && t.g <= TRUNCATION_LOSS_TOL {
                let mut r = finish(
                    self.lambda,
                    tau,
                    self.es,
                    self.es2,
                    0.0,
                    self.ew,
                    Some(1.0 - self.rho),
                    abandonment,
                    Method::Exact,
                    SOLVER_TRUNCATED,
                );
                r.truncated_at_s = Some(x);
                return r;
            }
            if step >= MAX_EXTENT_STEPS {
                x = tau;
                continue;
            }
            // Grow X from the decay of the computed tail between X/2 and X (at least ×2).
            let tail_half = t.x_half * t.g_half + t.h_half;
            let mut next = 2.0 * x;
            if tail > 0.0 && tail_half > tail {
                let rate = (tail_half / tail).ln() / (x - t.x_half);
                let need = (tail / (0.1 * target)).ln().max(0.0) / rate;
                next = next.max(x + 1.5 * need).min(16.0 * x);
            }
            x = next.min(tau);
        }
        unreachable!("the loop returns once X = τ")
    }

    /// The results at τ from `p = G(τ)`, `H(τ)`.
    fn result(&self, tau: f64, g: f64, h: f64, abandonment: Abandonment) -> ImpatienceResult {
        let rho = self.rho;
        let p = g.clamp(0.0, 1.0);
        let loss = ((1.0 - rho) * p / (1.0 - rho * p)).clamp(0.0, 1.0);
        let p0 = (1.0 - rho) / (1.0 - rho * p);
        let wqs = ((self.ew - tau * p - h) / (1.0 - p)).clamp(0.0, tau);
        finish(
            self.lambda,
            tau,
            self.es,
            self.es2,
            loss,
            wqs,
            Some(p0),
            abandonment,
            Method::Exact,
            "level-crossing",
        )
    }

    /// First guess of the truncation point X (≤ τ): the smallest x where both the one-big-jump
    /// tail `ρ/(1−ρ)·P(Y > x)` (Y the equilibrium excess of S) and the Kingman exponential tail
    /// `ρe^{−γx}`, `γ = 2(1−ρ)/(λE[S²])`, leave less than a tenth of the tolerances beyond x.
    /// Only a starting point: [`Patient::solve`] verifies it on the grid and grows it.
    fn truncation_guess(&self, law: &ServiceLaw, tau: f64) -> f64 {
        let (lambda, rho) = (self.lambda, self.rho);
        let wait_target = 0.1 * TRUNCATION_WAIT_TOL * self.ew;
        let loss_target = 0.1 * TRUNCATION_LOSS_TOL;
        let gamma = 2.0 * (1.0 - rho) / (lambda * self.es2);
        let negligible = |x: f64| {
            let (p1, p2) = law.tail_moments_at(&[x]);
            let (p1, p2) = (p1[0], p2[0]);
            let e = (-gamma * x).exp();
            let wait = (lambda * (x * p1 + p2) / (1.0 - rho)).max(rho * e * (x + 1.0 / gamma));
            let loss = (lambda * p1 / (1.0 - rho)).max(rho * e);
            wait <= wait_target && loss <= loss_target
        };
        let mut hi = self.ew + self.es;
        while !negligible(hi) {
            hi *= 2.0;
            if hi >= tau || !hi.is_finite() {
                return tau;
            }
        }
        let mut lo = 0.5 * hi;
        for _ in 0..12 {
            let mid = 0.5 * (lo + hi);
            if negligible(mid) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        hi.min(tau)
    }

    /// Product integration of the tail form on [0, x_end], `n` cells of width h: with `G`
    /// linear on each cell, cell j contributes `A_j G(x_k − x_j) + C_j G(x_k − x_{j+1})`,
    /// `C_j = ∫_cell (u − x_j)/h (1 − B(u)) du = (Ψ₂(x_j) − Ψ₂(x_{j+1}))/h − Ψ₁(x_{j+1})`,
    /// `A_j = ΔR_j − C_j`, `ΔR_j = Ψ₁(x_j) − Ψ₁(x_{j+1})`: all differences of tail quantities,
    /// so accurate relative to the tail far out.
    fn march(&self, law: &ServiceLaw, x_end: f64, n: usize) -> TailMarch {
        let lambda = self.lambda;
        let h = x_end / n as f64;
        let xs: Vec<f64> = (0..=n).map(|k| k as f64 * h).collect();
        let (p1, p2) = law.tail_moments_at(&xs);
        // c[j] = C_j; w[i] = A_i + C_{i−1} (i ≥ 1), the weight of G at distance i cells.
        let mut c = vec![0.0; n];
        let mut w = vec![0.0; n + 1];
        let mut a0 = 0.0;
        for j in 0..n {
            let dr = (p1[j] - p1[j + 1]).max(0.0);
            let cj = ((p2[j] - p2[j + 1]) / h - p1[j + 1]).clamp(0.0, dr);
            c[j] = cj;
            if j == 0 {
                a0 = dr - cj;
            } else {
                w[j] += dr - cj;
            }
            w[j + 1] += cj;
        }
        // wr[t] = w[n − 1 − t], t < n − 1: the convolution becomes an ascending dot product.
        let wr: Vec<f64> = w[1..n].iter().rev().map(|&v| flush(v)).collect();
        let denom = 1.0 - lambda * a0; // > 1 − ρ since A_0 ≤ E[min(S, h)] ≤ E[S]
        let mut g = vec![0.0; n + 1];
        let mut hh = vec![0.0; n + 1];
        g[0] = lambda * p1[0]; // = ρ
        hh[0] = self.ew;
        for k in 1..=n {
            // Two plain dot products vectorise better than one fused pass.
            let wk = &wr[n - k..n - 1];
            let (sg, sh) = (dot(wk, &g[1..k]), dot(wk, &hh[1..k]));
            let gk = lambda * (p1[k] + c[k - 1] * g[0] + sg) / denom;
            let hk = lambda * (p2[k] + self.ew * p1[k] + c[k - 1] * hh[0] + sh) / denom;
            g[k] = flush(gk);
            hh[k] = flush(hk);
        }
        TailMarch {
            g: g[n],
            h: hh[n],
            x_half: xs[n / 2],
            g_half: g[n / 2],
            h_half: hh[n / 2],
        }
    }
}

/// M/M/1+D closed form (docs/models.md §2.3), exponential service with mean `mean_s`. Falls back to
/// the level-crossing solve where `e^{−θτ}` would overflow (deep overload).
pub fn mm1d(
    arrival_rate: f64,
    mean_s: f64,
    patience_s: f64,
    abandonment: Abandonment,
) -> Result<ImpatienceResult, QueueError> {
    validate_rate(arrival_rate)?;
    validate_tau(patience_s)?;
    let law = ServiceLaw::Exponential { mean_s };
    validate_law(&law)?;
    let (lambda, tau) = (arrival_rate, patience_s);
    let theta = 1.0 / mean_s - lambda;
    if -theta * tau > MAX_EXP_ARG {
        return exact(&law, lambda, tau, DEFAULT_GRID, abandonment);
    }
    let (f_tau, i_tau) = if (theta * tau).abs() < 1e-6 {
        // Series in θ: avoids the 0/0 of the closed form near ρ = 1.
        (
            1.0 + lambda * tau * (1.0 - 0.5 * theta * tau),
            tau + lambda
                * (tau * tau / 2.0 - theta * tau.powi(3) / 6.0
                    + theta * theta * tau.powi(4) / 24.0),
        )
    } else {
        let one_minus = -(-theta * tau).exp_m1(); // 1 − e^{−θτ}
        (
            1.0 + lambda / theta * one_minus,
            tau + lambda / theta * (tau - one_minus / theta),
        )
    };
    let (es, es2) = law.moments();
    Ok(assemble(
        lambda,
        tau,
        es,
        es2,
        f_tau.ln(),
        i_tau / f_tau,
        abandonment,
        Method::Exact,
        "mm1d-closed-form",
    ))
}

/// M/D/1+D (docs/models.md §2.3): Erlang's series for τ/D ≤ [`MD1D_MAX_TAU_OVER_D`], otherwise the
/// level-crossing solve with `R(x) = min(x, D)`.
pub fn md1d(
    arrival_rate: f64,
    d_s: f64,
    patience_s: f64,
    abandonment: Abandonment,
) -> Result<ImpatienceResult, QueueError> {
    match md1d_series(arrival_rate, d_s, patience_s, abandonment) {
        Err(QueueError::OutOfRange(_)) => exact(
            &ServiceLaw::Deterministic { value_s: d_s },
            arrival_rate,
            patience_s,
            DEFAULT_GRID,
            abandonment,
        ),
        other => other,
    }
}

/// The M/D/1+D alternating series only; [`QueueError::OutOfRange`] when τ/D > 10.
pub fn md1d_series(
    arrival_rate: f64,
    d_s: f64,
    patience_s: f64,
    abandonment: Abandonment,
) -> Result<ImpatienceResult, QueueError> {
    validate_rate(arrival_rate)?;
    validate_tau(patience_s)?;
    let law = ServiceLaw::Deterministic { value_s: d_s };
    validate_law(&law)?;
    let (lambda, tau, d) = (arrival_rate, patience_s, d_s);
    if tau / d > MD1D_MAX_TAU_OVER_D || lambda * tau > MAX_EXP_ARG {
        return Err(QueueError::OutOfRange(format!(
            "M/D/1+D series is accurate in f64 only for tau/D <= {MD1D_MAX_TAU_OVER_D} (got {:.3})",
            tau / d
        )));
    }
    let kmax = (tau / d).floor() as usize;
    let mut f_tau = 0.0;
    let mut i_sum = 0.0;
    for k in 0..=kmax {
        let u = lambda * (tau - k as f64 * d);
        let eu = u.exp();
        // (−U)^k / k! and the partial sum Σ_{j≤k} (−U)^j / j!.
        let mut term = 1.0;
        let mut partial = 1.0;
        for j in 1..=k {
            term *= -u / j as f64;
            partial += term;
        }
        f_tau += term * eu;
        i_sum += eu * partial - 1.0;
    }
    let i_tau = i_sum / lambda;
    let (es, es2) = law.moments();
    Ok(assemble(
        lambda,
        tau,
        es,
        es2,
        f_tau.ln(),
        i_tau / f_tau,
        abandonment,
        Method::Exact,
        "md1d-closed-form",
    ))
}

/// De Kok–Tijms result with its two ingredients (docs/models.md §2.4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DekokTijms {
    /// The interpolated result (method: approximation).
    pub combined: ImpatienceResult,
    /// M/M/1+D with the same λ, τ and mean service.
    pub exponential: ImpatienceResult,
    /// M/D/1+D with the same λ, τ and D = E[S].
    pub deterministic: ImpatienceResult,
    /// Alternative reading: E[W_q] interpolated directly (s).
    pub mean_wait_all_direct_s: f64,
}

/// De Kok–Tijms two-moment interpolation (paper eqs. 6–8): `π ≈ (1−c²)π_D + c²π_M`, the same for
/// `E[W_qs]`, then eq. 9. Errors for c_S² > 1 (extrapolation; use [`exact`]).
pub fn dekok_tijms(
    law: &ServiceLaw,
    arrival_rate: f64,
    patience_s: f64,
    abandonment: Abandonment,
) -> Result<DekokTijms, QueueError> {
    validate_law(law)?;
    let (es, es2) = law.moments();
    let cs2 = (es2 / (es * es) - 1.0).max(0.0);
    if cs2 > 1.0 {
        return Err(QueueError::OutOfRange(format!(
            "De Kok-Tijms interpolation needs 0 <= c_S^2 <= 1, got c_S^2 = {cs2:.4}; use the exact method"
        )));
    }
    let m = mm1d(arrival_rate, es, patience_s, abandonment)?;
    let d = md1d(arrival_rate, es, patience_s, abandonment)?;
    let loss = (1.0 - cs2) * d.loss_fraction + cs2 * m.loss_fraction;
    let wqs = (1.0 - cs2) * d.mean_wait_served_s + cs2 * m.mean_wait_served_s;
    let direct = (1.0 - cs2) * d.mean_wait_all_s + cs2 * m.mean_wait_all_s;
    let combined = finish(
        arrival_rate,
        patience_s,
        es,
        es2,
        loss,
        wqs,
        None,
        abandonment,
        Method::Approximation,
        "dekok-tijms",
    );
    Ok(DekokTijms {
        combined,
        exponential: m,
        deterministic: d,
        mean_wait_all_direct_s: direct,
    })
}

#[cfg(test)]
mod tests;
