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
//!   tolerance ~1e-8 relative at n = 4000).
//! * [`mm1d`], [`md1d`]: the M/M/1+D and M/D/1+D closed forms (docs/models.md §2.3). The M/D/1+D
//!   alternating series is used only for τ/D ≤ [`MD1D_MAX_TAU_OVER_D`]; beyond, and where the
//!   M/M/1+D exponential would overflow, the numerical method is used instead.
//! * [`dekok_tijms`]: the paper's two-moment approximation (docs/models.md §2.4, eqs. 6–8): linear
//!   interpolation in c_S² between M/D/1+D and M/M/1+D with the same mean service. Refused for
//!   c_S² > 1 (extrapolation). Method: approximation.

use serde::Serialize;

use crate::Method;
use crate::dist::TokenDist;
use crate::mg1::{LinearService, QueueError, validate_limit, validate_rate};

/// Default number of grid cells of the level-crossing solve (docs/models.md §2.2: ~1e-8 relative).
pub const DEFAULT_GRID: usize = 4000;
/// The M/D/1+D series is accurate in f64 only up to this τ/D (docs/models.md §2.3).
pub const MD1D_MAX_TAU_OVER_D: f64 = 10.0;
/// Rescale the level-crossing solution when it exceeds this (log-domain bookkeeping).
const RESCALE_AT: f64 = 1e200;
/// `exp` overflows beyond this argument.
const MAX_EXP_ARG: f64 = 700.0;

pub use tokenq_core::Abandonment;

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
    /// The algorithm: `level-crossing`, `mm1d-closed-form`, `md1d-closed-form`, `dekok-tijms`.
    pub solver: &'static str,
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
    if n < 2 {
        return Err(QueueError::Invalid {
            what: "grid",
            why: format!("needs at least 2 cells, got {n}"),
        });
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
    LevelCrossing { ln_f_tau, i_over_f }
}

/// The exact result for `law` from a level-crossing solve valid for it on [0, τ].
pub fn from_level_crossing(
    law: &ServiceLaw,
    arrival_rate: f64,
    patience_s: f64,
    lc: &LevelCrossing,
    abandonment: Abandonment,
) -> ImpatienceResult {
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
    let f_tau = f[n];
    let i_tau = h * (sum_f - 0.5 * (f[0] + f[n]));
    (f_tau.ln() + ln_scale, i_tau / f_tau)
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
