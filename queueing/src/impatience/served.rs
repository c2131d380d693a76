//! Waiting-time and sojourn-time **distributions of served users** in M/G/1+D (constant
//! patience τ; docs/models.md §2.5): latency percentiles of impatient users.
//!
//! **Model** (docs/models.md §2.1). Poisson(λ) arrivals, FCFS, service law B, every user waits
//! at most τ in queue. An arrival finding virtual waiting time V < τ is served after exactly V
//! (PASTA: arrivals see the time-stationary V), otherwise he is lost, whether he balks or
//! reneges (the same workload process, §2.1). So the wait of a served user is `W = V | V < τ`
//! and, with `F(x) = P(V ≤ x)/P(V = 0)` the unnormalised solution of the level-crossing
//! equation `F(x) = 1 + λ∫_0^x F(x−u)(1−B(u))du` on [0, τ] (§2.2),
//!
//! ```text
//! P(W ≤ x | served) = F(x) / F(τ),   0 ≤ x < τ        (atom 1/F(τ) at 0: served at once)
//! P(W + S ≤ t | served) = E_S[P(W ≤ t − S | served)]   (S independent of W)
//! ```
//!
//! valid for every offered load ρ = λE[S], including ρ ≥ 1.
//!
//! **Method: exact, with a stated tolerance.** F is the product-trapezoid solve of
//! [`super::exact`] (second order; 1 − B integrated exactly on each cell) on n and on 2n uniform
//! cells. The step divides the heaviest atom of S (the clip at `a·L + c`, a histogram's largest
//! bar, a deterministic service) when that atom spans a cell, so the kinks it puts into F lie on
//! nodes; the grid then runs to the first node at or past τ, and `F(τ)` is the Nyström value (the
//! same quadrature rule applied at τ itself). Between nodes the CDF is linear (a piecewise-constant
//! density). The returned law is the 2n solve; [`ServedWaitDistribution::tolerance`] is the
//! largest difference between the n solve (interpolated) and the 2n solve at the 2n nodes — an
//! estimate of the absolute error of every CDF value, checked against the M/M/1+D closed form
//! in the tests (true errors below it). Each quantile has its own error estimate: the difference
//! of the quantiles of the two solves. The sojourn law integrates the piecewise-constant wait
//! density against B exactly: with `K(y) = ∫_0^y B = y − E[min(S, y)]` (the closed forms of
//! [`ServiceLaw`], atoms of S included),
//!
//! ```text
//! P(W + S ≤ t) = C_0·B(t) + Σ_k (C_{k+1} − C_k)/(x_{k+1} − x_k) · (K(t − x_k) − K(t − x_{k+1}))
//! ```
//!
//! so its CDF error is at most the wait's (a convolution with a probability law does not enlarge
//! the sup-norm difference).
//!
//! **Long patience** (ρ < 1 and τ beyond a few mean waits): the grid covers [0, X], X < τ from
//! the same truncation estimate as [`super::exact`]'s tail form (where the patient wait leaves
//! ~1e-15 of its mass), so its cells lie where the waits are. There `F(x)(1 − ρ) = P(W_∞ ≤ x)`
//! for the patient wait W_∞, and normalising by F(X) instead of F(τ) moves every CDF value by at
//! most `P(W_∞ > X)/P(W_∞ ≤ X)`; that mass, `1 − (1 − ρ)F(X)` from the solve, is added to the
//! tolerance (X is doubled, up to τ, while it exceeds [`TRUNCATION_ACCEPT`]).
//!
//! **Cost.** Two O(n²) solves (n = 4000 and 8000 cells by default: ~40 M multiply-adds); a wait
//! quantile is a binary search on the nodes, a sojourn quantile ~10–30 evaluations of the O(n)
//! sum above.

use crate::Method;
use crate::dist::TokenDist;
use crate::mg1::{QueueError, validate_rate};

use super::{
    MAX_GRID_CELLS, Patient, ServiceLaw, level_crossing_march, validate_cells, validate_law,
    validate_tau,
};

/// Default coarse grid: the law is solved on this many cells and on twice as many.
pub const DEFAULT_SERVED_GRID: usize = 8000;
/// Largest patient-wait mass beyond the truncation point X accepted before X is doubled.
pub const TRUNCATION_ACCEPT: f64 = 1e-9;
/// Doublings of X allowed before solving on [0, τ].
const MAX_EXTENT_STEPS: usize = 8;

use crate::waiting::check_prob;

/// `P(S ≤ s)`.
fn service_cdf(law: &ServiceLaw, s: f64) -> f64 {
    match law {
        ServiceLaw::Exponential { mean_s } => {
            if s <= 0.0 {
                0.0
            } else {
                -(-s / mean_s).exp_m1()
            }
        }
        ServiceLaw::Deterministic { value_s } => f64::from(u8::from(s >= *value_s)),
        ServiceLaw::Tokens {
            tokens,
            max_tokens,
            service,
        } => {
            let (a, c) = (service.per_token_s, service.intercept_s);
            if s < c {
                return 0.0;
            }
            if a == 0.0 {
                return 1.0;
            }
            let m = (s - c) / a;
            if m >= *max_tokens {
                1.0
            } else {
                tokens.cdf(m).clamp(0.0, 1.0)
            }
        }
    }
}

/// The law of the wait `W` and the sojourn `W + S` of **served** users of M/G/1+D. Seconds.
#[derive(Debug, Clone)]
pub struct ServedWaitDistribution {
    /// Patience τ (s).
    pub patience_s: f64,
    /// Offered load `ρ = λE[S]` (may exceed 1).
    pub offered_load: f64,
    /// `P(W = 0 | served) = 1/F(τ)`.
    pub prob_no_wait: f64,
    /// `E[W | served]` from the grid (s); its error is at most `tolerance × extent_s` (the
    /// impatience solve's `mean_wait_served_s` is the more accurate value).
    pub mean_wait_s: f64,
    /// Exact (numerical, with [`tolerance`](Self::tolerance)).
    pub method: Method,
    /// Estimated bound on the absolute error of every CDF value (wait and sojourn).
    pub tolerance: f64,
    /// Cells of the fine solve.
    pub cells: usize,
    /// Grid step of the fine solve (s).
    pub step_s: f64,
    /// Where the served wait's CDF reaches 1 (s): τ, or X < τ when the patient tail was
    /// truncated.
    pub extent_s: f64,
    /// Whether the grid stops at X < τ (long patience, ρ < 1).
    pub truncated: bool,
    law: ServiceLaw,
    /// The CDF of the fine solve (2n cells).
    fine: Nodes,
    /// The CDF of the coarse solve (n cells).
    coarse: Nodes,
}

/// A piecewise-linear CDF: nodes `x_k = k h`, the last one at the extent (where the value is
/// 1) and possibly closer than h to its neighbour. Values non-decreasing.
#[derive(Debug, Clone)]
struct Nodes {
    h: f64,
    xs: Vec<f64>,
    cs: Vec<f64>,
}

/// Solve for the served users' wait and sojourn laws, on `n` and `2n` cells (see the module
/// docs). Inputs are validated as in [`super::exact`].
pub fn served_wait_distribution(
    law: &ServiceLaw,
    arrival_rate: f64,
    patience_s: f64,
    n: usize,
) -> Result<ServedWaitDistribution, QueueError> {
    validate_rate(arrival_rate)?;
    validate_tau(patience_s)?;
    validate_law(law)?;
    validate_cells(n)?;
    if 2 * n > MAX_GRID_CELLS {
        return Err(QueueError::Invalid {
            what: "grid_cells",
            why: format!(
                "the served-wait law is solved on n and 2n cells: n must be at most {} (got {n})",
                MAX_GRID_CELLS / 2
            ),
        });
    }
    let (lambda, tau) = (arrival_rate, patience_s);
    let (es, _) = law.moments();
    let rho = lambda * es;
    let mut x = tau;
    if let Some(p) = Patient::tail_form(law, lambda, tau) {
        // As in Patient::solve: twice the guess (the Kingman rate overstates light-tail decay).
        x = (2.0 * p.truncation_guess(law, tau)).min(tau);
    }
    let atom = heaviest_atom(law);
    let mut step = 0;
    loop {
        // Coarse step: at least x/n, and a divisor of the heaviest atom of S when that atom
        // spans at least one cell, so the kink it puts into F (and its multiples) lie on nodes
        // of both grids.
        let mut hc = x / n as f64;
        if let Some(a) = atom {
            let m = (a / hc).floor();
            if m >= 1.0 {
                hc = a / m;
            }
        }
        let end = hc * n as f64;
        let truncated = end < tau;
        let top = if truncated { end } else { tau };
        let (coarse, _) = solve_nodes(law, lambda, hc, n, top);
        let (fine, ln_f_top) = solve_nodes(law, lambda, 0.5 * hc, 2 * n, top);
        // Patient mass beyond X: 1 − (1 − ρ)F(X) (only when truncated; then ρ < 1).
        let beyond = if truncated {
            (1.0 - (1.0 - rho) * ln_f_top.exp()).max(0.0)
        } else {
            0.0
        };
        if truncated && beyond > TRUNCATION_ACCEPT && step < MAX_EXTENT_STEPS {
            step += 1;
            x = (2.0 * x).min(tau);
            continue;
        }
        let grid_diff = fine
            .xs
            .iter()
            .zip(&fine.cs)
            .map(|(&t, &c)| (cdf_on(&coarse, t) - c).abs())
            .fold(0.0, f64::max);
        let trunc = if truncated {
            beyond / (1.0 - beyond).max(f64::MIN_POSITIVE)
        } else {
            0.0
        };
        // ∫_0^top (1 − C) for C linear between nodes: the trapezoid sum is exact.
        let mean: f64 = fine
            .xs
            .windows(2)
            .zip(fine.cs.windows(2))
            .map(|(x, c)| (x[1] - x[0]) * (1.0 - 0.5 * (c[0] + c[1])))
            .sum();
        return Ok(ServedWaitDistribution {
            patience_s: tau,
            offered_load: rho,
            prob_no_wait: fine.cs[0],
            mean_wait_s: mean.max(0.0),
            method: Method::Exact,
            tolerance: grid_diff + trunc,
            cells: 2 * n,
            step_s: fine.h,
            extent_s: top,
            truncated,
            law: law.clone(),
            fine,
            coarse,
        });
    }
}

/// Solve the level-crossing equation on `n` cells of width `h` (`n h ≥ top`) and return the
/// CDF `F(x)/F(top)` on the nodes up to `top`, and `ln F(top)`. When `top` falls between nodes,
/// `F(top)` is the Nyström value: the same product-trapezoid rule applied at `top` itself
/// (second order like the grid values, whatever kinks F has).
fn solve_nodes(law: &ServiceLaw, lambda: f64, h: f64, n: usize, top: f64) -> (Nodes, f64) {
    let grid: Vec<f64> = (0..=n).map(|k| k as f64 * h).collect();
    let r = law.expected_min_at(&grid);
    let m = level_crossing_march(lambda, &r);
    // Largest node at or below top (a node within 1e-9 cells of top counts as top).
    let kt = (((top / h) + 1e-9).floor() as usize).min(n);
    let on_node = (top - grid[kt]).abs() <= 1e-9 * h;
    let f_top = if on_node {
        m.f[kt]
    } else {
        // u-cells [top − x_i, top − x_{i−1}] (i = kt..1, F at the ends F_i, F_{i−1}) and the
        // partial cell [0, top − x_kt] (F(top) and F_kt); us ascending: us[j] = top − x_{kt−j}.
        let us: Vec<f64> = (0..=kt).rev().map(|i| top - grid[i]).collect();
        let ru = law.expected_min_at(&us);
        let half = 0.5 * lambda;
        let mut acc = m.inv_scale + half * ru[0] * m.f[kt];
        for i in 1..=kt {
            let j = kt - i; // us[j] = top − x_i, us[j + 1] = top − x_{i−1}
            acc += half * (ru[j + 1] - ru[j]) * (m.f[i] + m.f[i - 1]);
        }
        acc / (1.0 - half * ru[0])
    };
    let mut xs: Vec<f64> = grid[..=kt].to_vec();
    let mut cs: Vec<f64> = m.f[..=kt].iter().map(|&v| (v / f_top).min(1.0)).collect();
    if on_node {
        *cs.last_mut().expect("at least one node") = 1.0;
        *xs.last_mut().expect("at least one node") = top;
    } else {
        xs.push(top);
        cs.push(1.0);
    }
    // Non-decreasing up to round-off: make it exactly so (the inversion searches it).
    for k in 1..cs.len() {
        if cs[k] < cs[k - 1] {
            cs[k] = cs[k - 1];
        }
    }
    (Nodes { h, xs, cs }, f_top.ln() + m.ln_scale)
}

/// Position of the heaviest atom of S (s), if S has atoms: the point mass of a deterministic
/// law, the clip at `a·L + c`, or a histogram's largest bar (after clipping).
fn heaviest_atom(law: &ServiceLaw) -> Option<f64> {
    match law {
        ServiceLaw::Exponential { .. } => None,
        ServiceLaw::Deterministic { value_s } => Some(*value_s),
        ServiceLaw::Tokens {
            tokens,
            max_tokens,
            service,
        } => {
            let (a, c, l) = (service.per_token_s, service.intercept_s, *max_tokens);
            if a == 0.0 {
                return Some(c);
            }
            let small = match tokens {
                TokenDist::DiscreteUniform { lo, hi } => hi - lo < 4096,
                _ => true,
            };
            match tokens.atoms().filter(|_| small) {
                Some((values, probs)) => {
                    let clip: f64 = values
                        .iter()
                        .zip(&probs)
                        .filter(|(v, _)| **v >= l)
                        .map(|(_, p)| p)
                        .sum();
                    let mut best = (clip, a * l + c);
                    for (&v, &p) in values.iter().zip(&probs) {
                        if v < l && p > best.0 {
                            best = (p, a * v + c);
                        }
                    }
                    (best.0 > 0.0).then_some(best.1)
                }
                None => (l.is_finite() && tokens.sf(l) > 0.0).then_some(a * l + c),
            }
        }
    }
}

impl ServedWaitDistribution {
    /// `P(W ≤ t | served)` (0 for t < 0, 1 from the extent on).
    pub fn cdf_wait(&self, t: f64) -> f64 {
        cdf_on(&self.fine, t)
    }

    /// `P(W + S ≤ t | served)`.
    pub fn cdf_sojourn(&self, t: f64) -> f64 {
        sojourn_on(&self.law, &self.fine, t)
    }

    /// Smallest t with `P(W ≤ t | served) ≥ p`, `p ∈ (0, 1)`; 0 when `p ≤ P(W = 0 | served)`.
    pub fn quantile_wait(&self, p: f64) -> Result<f64, QueueError> {
        check_prob(p)?;
        Ok(invert_nodes(&self.fine, p))
    }

    /// Error estimate of [`quantile_wait`](Self::quantile_wait) (s): the difference between the
    /// quantiles of the n-cell and 2n-cell solves.
    pub fn quantile_wait_error(&self, p: f64) -> Result<f64, QueueError> {
        check_prob(p)?;
        Ok((invert_nodes(&self.fine, p) - invert_nodes(&self.coarse, p)).abs())
    }

    /// Smallest t with `P(W + S ≤ t | served) ≥ p`, `p ∈ (0, 1)` (to relative width 1e-12).
    pub fn quantile_sojourn(&self, p: f64) -> Result<f64, QueueError> {
        check_prob(p)?;
        sojourn_quantile(&self.law, &self.fine, p)
    }

    /// Error estimate of [`quantile_sojourn`](Self::quantile_sojourn) (s), as for the wait.
    pub fn quantile_sojourn_error(&self, p: f64) -> Result<f64, QueueError> {
        check_prob(p)?;
        let a = sojourn_quantile(&self.law, &self.fine, p)?;
        let b = sojourn_quantile(&self.law, &self.coarse, p)?;
        Ok((a - b).abs())
    }
}

/// The piecewise-linear CDF at t.
fn cdf_on(g: &Nodes, t: f64) -> f64 {
    if t.is_nan() {
        return f64::NAN;
    }
    if t < 0.0 {
        return 0.0;
    }
    let last = g.xs.len() - 1;
    if t >= g.xs[last] {
        return 1.0;
    }
    let k = ((t / g.h) as usize).min(last - 1);
    let (x0, x1) = (g.xs[k], g.xs[k + 1]);
    let w = ((t - x0) / (x1 - x0)).clamp(0.0, 1.0);
    g.cs[k] + w * (g.cs[k + 1] - g.cs[k])
}

/// Smallest t with `cdf_on(g, t) ≥ p`.
fn invert_nodes(g: &Nodes, p: f64) -> f64 {
    if p <= g.cs[0] {
        return 0.0;
    }
    let last = g.xs.len() - 1;
    let k = g.cs.partition_point(|&v| v < p).clamp(1, last);
    let (lo, hi) = (g.cs[k - 1], g.cs[k]);
    let w = if hi > lo {
        ((p - lo) / (hi - lo)).clamp(0.0, 1.0)
    } else {
        1.0
    };
    g.xs[k - 1] + w * (g.xs[k] - g.xs[k - 1])
}

/// `P(W + S ≤ t)` for the piecewise-linear wait CDF `g` (see the module docs):
/// `C_0·B(t) + Σ_k (C_{k+1} − C_k)/(x_{k+1} − x_k) · (K(t − x_k) − K(t − x_{k+1}))`.
fn sojourn_on(law: &ServiceLaw, g: &Nodes, t: f64) -> f64 {
    if t.is_nan() {
        return f64::NAN;
    }
    if t <= 0.0 {
        return 0.0;
    }
    let mut v = g.cs[0] * service_cdf(law, t);
    // Nodes before t (K(t − x) = 0 for x ≥ t): indices 0..=kmax.
    let kmax = g.xs.partition_point(|&x| x < t).min(g.xs.len() - 1);
    // y = t − x_k for k = kmax, …, 0 (ascending), clamped at 0.
    let ys: Vec<f64> = (0..=kmax).rev().map(|k| (t - g.xs[k]).max(0.0)).collect();
    let r = law.expected_min_at(&ys);
    let kk = |k: usize| {
        let i = kmax - k;
        (ys[i] - r[i]).max(0.0)
    };
    let mut sum = 0.0;
    for k in 0..kmax {
        let dc = g.cs[k + 1] - g.cs[k];
        if dc != 0.0 {
            sum += dc / (g.xs[k + 1] - g.xs[k]) * (kk(k) - kk(k + 1)).max(0.0);
        }
    }
    v += sum;
    v.clamp(0.0, 1.0)
}

/// Smallest t with `sojourn_on(…, t) ≥ p`: bracketed from the wait quantile (W + S ≥ W), then
/// Illinois-modified regula falsi on the monotone CDF.
fn sojourn_quantile(law: &ServiceLaw, g: &Nodes, p: f64) -> Result<f64, QueueError> {
    let f = |t: f64| sojourn_on(law, g, t) - p;
    let mut lo = invert_nodes(g, p);
    let (es, _) = law.moments();
    let mut width = es.max(f64::MIN_POSITIVE);
    let mut hi = lo + width;
    let mut fhi = f(hi);
    let mut grown = 0;
    while fhi < 0.0 {
        lo = hi;
        width *= 2.0;
        hi += width;
        fhi = f(hi);
        grown += 1;
        if grown > 200 || !hi.is_finite() {
            return Err(QueueError::OutOfRange(format!(
                "served sojourn quantile p = {p}: no bracket found (CDF {} at {hi} s)",
                fhi + p
            )));
        }
    }
    // f rises through 0 on [lo, hi]: its negation is a tail that falls through 0.
    Ok(crate::waiting::illinois(&|t| -f(t), 0.0, lo, hi))
}

#[cfg(test)]
mod tests;
