//! Waiting-time and sojourn-time **distributions** of M/G/1 FCFS with max-token clipping
//! (docs/models.md §1; paper §III-A, eqs. 1–5): latency percentiles of the single-server model.
//!
//! **Model** (docs/models.md §1). Poisson(λ) arrivals, one server, FCFS, unlimited buffer,
//! service `S = a·min(N, L) + c` with N from a [`TokenDist`], or, through
//! [`waiting_distribution_law`], any [`ServiceLaw`] (exponential and deterministic service serve
//! the closed-form checks). `ρ = λE[S] < 1` is required; otherwise [`QueueError::Unstable`], the
//! same error as [`crate::mg1::solve`]. Paper eqs. 1–5 give the mean wait (Pollaczek–Khinchine,
//! paper eqs. 1 and 5; service moments, eqs. 2–4); this module gives the whole law:
//! `P(W_q ≤ t)`, `P(W_q + S ≤ t)` and their quantiles, in seconds.
//!
//! **What is computed.** `W_q` has the atom `P(W_q = 0) = 1 − ρ`, and its CDF `F` solves the
//! renewal equation of the M/G/1 waiting time (Takács 1962) — the compound-geometric
//! (Pollaczek–Khinchine / Beneš) law `P(W_q > x) = Σ_k (1 − ρ)ρ^k P(S_e^{*k} > x)`, `S_e` the
//! equilibrium excess of S:
//!
//! ```text
//! F(x) = (1 − ρ) + λ ∫_0^x F(x − u) (1 − B(u)) du,        B(u) = P(S ≤ u)
//! ```
//!
//! (the equation of docs/models.md §2.2 on the whole half-line). The sojourn time follows from
//! level crossing (the workload's up-crossings of level x balance its down-crossings, at rate
//! f(x), the density of W_q): `P(W_q + S > x) = P(W_q > x) + f(x)/λ`, where
//! `f(x)/λ = (1 − ρ)(1 − B(x)) + ∫_0^x f(y)(1 − B(x − y)) dy`. For a purely atomic S (histograms,
//! point masses, deterministic service; at most 4096 atoms) the sojourn is instead the exact sum
//! `P(W_q + S > t) = Σ_i p_i P(W_q > t − s_i)`.
//!
//! **Method: exact, with a stated tolerance** (docs/models.md "Method labels"): a lattice
//! discretisation with error control.
//!
//! 1. *Product integration.* On the grid `x_k = k h`, F is taken linear on each cell and the
//!    kernel `1 − B` is integrated exactly against it, from the closed forms
//!    `R(x) = E[min(S, x)]` and `R₂(x) = E[min(S, x)²]/2` (the clipped moments of
//!    [`TokenDist::clipped_moments`], prefix sums for histograms); atoms of S cost no accuracy in
//!    the kernel. The step divides the heaviest atom of S (the clip at `a·L + c`, a histogram's
//!    largest bar), so that the kinks it puts into F lie on grid points. Second order.
//! 2. *FFT solve.* The discrete equation is a convolution: in generating functions
//!    `G(z)(1 − κ(z)) = c(z) + (1 − ρ)α(z)` for the tail `G_k = P(W_q > x_k)`, solved by one
//!    complex FFT of size `M = 2^m ≥ n` on the unit circle (the sojourn term is a second,
//!    packed, transform). The range `n h` is grown until `P(W_q > n h)` and the service law left
//!    beyond the buffer are below [`WaitOptions::tail`]; the wrap-around (aliasing) error of the
//!    circular solve is `P(W_q > x_k + M h)`, below the same tail (Abate & Whitt 1995, §5, for
//!    the aliasing error of lattice inversion).
//! 3. *Error control.* Solves on `h, h/2, h/4, …` are combined by Richardson extrapolation
//!    `(4v_{h/2} − v_h)/3`; the halving stops when two successive extrapolated solutions differ
//!    by at most [`WaitOptions::tolerance`] (default 1e-7) at every point of the finer grid, the
//!    coarser one interpolated. That difference is returned as [`WaitDistribution::tolerance`]:
//!    an estimated bound on the absolute error of every CDF value up to
//!    [`WaitDistribution::range_s`]. If [`WaitOptions::max_grid`] is reached first, the result
//!    is an error, never a silently less accurate answer.
//! 4. *Evaluation between grid points.* The known non-smooth parts are removed before
//!    interpolating and added back exactly at t: `P(W_q > t) = Y(t) + λ(1 − ρ)T(t)` and
//!    `P(W_q + S > t) = Ψ(t) + (1 − ρ)(1 − B(t)) − λ(1 − ρ)T(t)` with `T(t) = E[(S − t)⁺]`, which
//!    carry the kinks and jumps the atoms of S put into the laws; `Y`, `Ψ` are continuously
//!    differentiable and are interpolated by cubic Lagrange stencils that avoid the multiples of
//!    the aligned atom (otherwise chosen by ENO). Beyond the range the tail (below 1e-10) is
//!    extended by the exponential decay of its last part (the Cramér–Lundberg asymptote of a
//!    light tail).
//!
//! Quantiles: the smallest t with `P(· ≤ t) ≥ p`, found by bracketing in the grid (or, for the
//! atomic sojourn, in `[q_W(p), q_W(p) + max S]`) and a bracketed Illinois (regula falsi)
//! search on the monotone CDF to relative width [`QUANTILE_RTOL`]; `quantile_wait(p) = 0` for
//! `p ≤ 1 − ρ`. Where the CDF is continuous, `cdf(quantile(p)) = p` to a few ulps.
//!
//! **Accuracy achieved** (tests in `waiting/tests.rs`, default options): M/M/1 at ρ = 0.3, 0.7,
//! 0.95 within 6e-10 of `ρe^{−(μ−λ)t}` (wait) and `e^{−(μ−λ)t}` (sojourn); M/D/1 at ρ = 0.3, 0.5,
//! 0.8 within 1.1e-9 of Erlang's formula for t ≤ 10 D; the unclipped lognormal(7, 0.7) of
//! docs/models.md §9.1 A0 within 8e-9 of an independent Euler inversion of the
//! Pollaczek–Khinchine transform; `∫P(W_q > t)dt` equal to the Pollaczek–Khinchine `E[W_q]` to
//! 1e-10 (lognormal, L = 1600, §9.1 A1: 23.000 s) and 1e-7 (sharegpt) relative. The stated
//! tolerance is typically 10× the true error.
//!
//! **Cost.** Construction is O(M log M) per refinement, with `M ≈ range/h`: about 1 ms for the
//! clipped lognormal and 2–6 ms for the sharegpt histogram at ρ = 0.7 (bench `waiting` in
//! `benches/single_server.rs`); it grows like `1/(1 − ρ)` in heavy traffic. A quantile of the
//! wait costs well under 1 µs; one of the sojourn under 1 µs on the grid and tens of µs as a
//! sum over a histogram's atoms.
//!
//! References: L. Takács, *Introduction to the Theory of Queues*, Oxford University Press
//! (1962), for the M/G/1 waiting-time law and its renewal equation; V. E. Beneš, *General
//! Stochastic Processes in the Theory of Queues*, Addison-Wesley (1963), for the
//! compound-geometric form; J. Abate, W. Whitt, "Numerical inversion of Laplace transforms of
//! probability distributions", *ORSA J. Computing* 7(1) (1995) 36–43, for the
//! generating-function (lattice) view and its aliasing error, and for the Euler algorithm the
//! tests use as an independent check; P. H. Brill, *Level Crossing Methods in Stochastic
//! Models*, Springer (2008), for the level-crossing density identity; A. Harten, B. Engquist,
//! S. Osher, S. Chakravarthy, "Uniformly high order accurate essentially non-oscillatory
//! schemes III", *J. Comput. Phys.* 71 (1987) 231–303, for ENO stencils.

use crate::Method;
use crate::dist::TokenDist;
use crate::impatience::ServiceLaw;
use crate::mg1::{LinearService, QueueError, pk_mean_wait, validate_rate};

mod fft;
mod service;

use fft::Fft;
use service::Svc;

/// Default error tolerance on CDF values (absolute): the refinement stops when the estimated
/// error is below this.
pub const DEFAULT_TOLERANCE: f64 = 1e-7;
/// Default tail left beyond the grid: `P(W_q > range) ≤` this.
pub const DEFAULT_TAIL: f64 = 1e-10;
/// Default cap on the FFT size.
pub const DEFAULT_MAX_GRID: usize = 1 << 21;
/// The first (coarsest) grid has this many cells per mean service time.
const INITIAL_CELLS_PER_MEAN: f64 = 32.0;
/// Do not align the grid to an atom closer to 0 than this fraction of the step.
const MIN_ALIGN_FRACTION: f64 = 0.125;
/// Relative width at which the quantile search stops.
pub const QUANTILE_RTOL: f64 = 1e-13;
/// Iteration cap of the quantile search (it normally needs about 10).
const QUANTILE_MAX_ITER: usize = 200;
/// Largest number of halvings of h tried before giving up.
const MAX_REFINEMENTS: usize = 12;

/// Options of [`waiting_distribution`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaitOptions {
    /// Target absolute error on CDF values (wait and sojourn), default [`DEFAULT_TOLERANCE`].
    pub tolerance: f64,
    /// Tail probability left beyond the grid, default [`DEFAULT_TAIL`].
    pub tail: f64,
    /// Largest FFT size allowed, default [`DEFAULT_MAX_GRID`].
    pub max_grid: usize,
}

impl Default for WaitOptions {
    fn default() -> Self {
        WaitOptions {
            tolerance: DEFAULT_TOLERANCE,
            tail: DEFAULT_TAIL,
            max_grid: DEFAULT_MAX_GRID,
        }
    }
}

impl WaitOptions {
    fn validate(&self) -> Result<(), QueueError> {
        let bad = |what: &'static str, why: String| Err(QueueError::Invalid { what, why });
        if !(self.tolerance.is_finite() && self.tolerance > 0.0 && self.tolerance < 1.0) {
            return bad(
                "tolerance",
                format!("must be in (0, 1), got {}", self.tolerance),
            );
        }
        if !(self.tail.is_finite() && self.tail > 0.0 && self.tail < 1.0) {
            return bad("tail", format!("must be in (0, 1), got {}", self.tail));
        }
        if self.max_grid < 1024 {
            return bad(
                "max_grid",
                format!("must be at least 1024, got {}", self.max_grid),
            );
        }
        Ok(())
    }
}

/// The laws of `W_q` (wait in queue) and `W_q + S` (sojourn) of one M/G/1 queue. Times in seconds.
#[derive(Debug, Clone)]
pub struct WaitDistribution {
    /// `ρ = λE[S]`.
    pub utilisation: f64,
    /// `P(W_q = 0) = 1 − ρ`.
    pub prob_no_wait: f64,
    /// Pollaczek–Khinchine `E[W_q]` (paper eqs. 1, 5), s.
    pub mean_wait_s: f64,
    /// `E[W_q] + E[S]`, s.
    pub mean_sojourn_s: f64,
    /// Exact (lattice solve with error control).
    pub method: Method,
    /// Estimated bound on the absolute error of the CDF values (wait and sojourn) up to
    /// [`range_s`](Self::range_s): the largest difference between the last two refinements.
    pub tolerance: f64,
    /// Grid step h, s.
    pub step_s: f64,
    /// Grid range (s): beyond it `P(W_q > t)` is below the tail option and extrapolated.
    pub range_s: f64,
    /// FFT size of the finest solve.
    pub fft_size: usize,
    svc: Svc,
    lambda: f64,
    /// Grid cells between multiples of the aligned atom of S (0: none).
    breaks: usize,
    wait: Table,
    sojourn: Sojourn,
}

/// A distribution tabulated on the grid: the smooth part and the tail at the grid points.
#[derive(Debug, Clone)]
struct Table {
    /// The smooth (continuously differentiable) part, interpolated between grid points.
    smooth: Vec<f64>,
    /// The survival function at the grid points.
    sf: Vec<f64>,
    /// Exponential decay rate (1/s) of the survival function beyond the grid.
    decay: f64,
}

/// How the sojourn time is evaluated.
#[derive(Debug, Clone)]
enum Sojourn {
    /// Tabulated on the grid (`Ψ`), for service laws with a continuous part.
    Grid(Table),
    /// `P(W_q + S > t) = Σ_i p_i P(W_q > t − s_i)` over the atoms of S (purely atomic laws).
    Atoms { values: Vec<f64>, probs: Vec<f64> },
}

/// Solve M/G/1 with clipping (`max_tokens`, `f64::INFINITY` = no limit) for the laws of the wait
/// and the sojourn time. Inputs are validated as in [`crate::mg1::solve`].
pub fn waiting_distribution(
    tokens: &TokenDist,
    max_tokens: f64,
    lambda: f64,
    service: LinearService,
    opts: &WaitOptions,
) -> Result<WaitDistribution, QueueError> {
    let law = ServiceLaw::Tokens {
        tokens: tokens.clone(),
        max_tokens,
        service,
    };
    waiting_distribution_law(&law, lambda, opts)
}

/// [`waiting_distribution`] for any service law of the impatience models (token-based,
/// exponential, deterministic).
pub fn waiting_distribution_law(
    law: &ServiceLaw,
    lambda: f64,
    opts: &WaitOptions,
) -> Result<WaitDistribution, QueueError> {
    validate_rate(lambda)?;
    opts.validate()?;
    let svc = Svc::new(law)?;
    let (es, es2) = law.moments();
    let mean_wait = pk_mean_wait(lambda, es, es2)?;
    let rho = lambda * es;
    let atoms = svc.service_atoms();
    let (h0, atom) = initial_step(&svc, es);
    let solver = Solver {
        svc: &svc,
        lambda,
        rho,
        es,
        atom,
        with_sojourn_grid: atoms.is_none(),
    };

    // Initial range: the support of S plus enough decay lengths of the tail. The decay length
    // of P(W_q > x) is about E[S_e]/(1 − ρ) (exact for M/M/1), E[S_e] = E[S²]/(2E[S]).
    let decay_len = es2 / (2.0 * es) / (1.0 - rho);
    let mut range = svc.upper() + decay_len * (rho / opts.tail).ln().max(1.0);

    'range: loop {
        // Two solves give one Richardson-extrapolated solution; each further halving of h gives
        // the next one, and the difference of the last two is the error estimate.
        let mut h = h0;
        let first = solver.level(h, range, opts.max_grid)?;
        h *= 0.5;
        let mut last = solver.level(h, range, opts.max_grid)?;
        if !solver.tail_ok(&first, opts.tail) || !solver.tail_ok(&last, opts.tail) {
            range *= 2.0;
            continue 'range;
        }
        let mut prev = richardson(&first, &last);
        for _ in 0..MAX_REFINEMENTS {
            h *= 0.5;
            let next = solver.level(h, range, opts.max_grid)?;
            if !solver.tail_ok(&next, opts.tail) {
                range *= 2.0;
                continue 'range;
            }
            let cur = richardson(&last, &next);
            let est = solver.difference(&prev, &cur);
            if est <= opts.tolerance {
                return Ok(solver.finish(cur, est, mean_wait, next.fft_size, atoms));
            }
            prev = cur;
            last = next;
        }
        return Err(QueueError::OutOfRange(format!(
            "waiting-time distribution: tolerance {} not reached after {MAX_REFINEMENTS} \
             refinements",
            opts.tolerance
        )));
    }
}

impl WaitDistribution {
    /// `P(W_q ≤ t)` (0 for t < 0, `1 − ρ` at t = 0).
    pub fn cdf_wait(&self, t: f64) -> f64 {
        if t < 0.0 { 0.0 } else { 1.0 - self.sf_wait(t) }
    }

    /// `P(W_q > t)` (1 for t < 0).
    pub fn sf_wait(&self, t: f64) -> f64 {
        if t.is_nan() {
            return f64::NAN;
        }
        if t < 0.0 {
            return 1.0;
        }
        let tab = &self.wait;
        let n = tab.sf.len() - 1;
        let pos = t / self.step_s;
        if pos >= n as f64 {
            return extrapolate(tab.sf[n], tab.decay, t - self.range_s);
        }
        let c1 = self.lambda * (1.0 - self.utilisation);
        (cubic(&tab.smooth, pos, self.breaks) + c1 * self.svc.excess(t)).clamp(0.0, 1.0)
    }

    /// `P(W_q + S ≤ t)`.
    pub fn cdf_sojourn(&self, t: f64) -> f64 {
        if t < 0.0 {
            0.0
        } else {
            1.0 - self.sf_sojourn(t)
        }
    }

    /// `P(W_q + S > t)`.
    pub fn sf_sojourn(&self, t: f64) -> f64 {
        if t.is_nan() {
            return f64::NAN;
        }
        if t < 0.0 {
            return 1.0;
        }
        match &self.sojourn {
            Sojourn::Atoms { values, probs } => {
                let v: f64 = values
                    .iter()
                    .zip(probs)
                    .map(|(&s, &p)| p * self.sf_wait(t - s))
                    .sum();
                v.clamp(0.0, 1.0)
            }
            Sojourn::Grid(tab) => {
                let n = tab.sf.len() - 1;
                let pos = t / self.step_s;
                if pos >= n as f64 {
                    return extrapolate(tab.sf[n], tab.decay, t - self.range_s);
                }
                let rho = self.utilisation;
                let v = cubic(&tab.smooth, pos, self.breaks) + (1.0 - rho) * self.svc.sf(t)
                    - self.lambda * (1.0 - rho) * self.svc.excess(t);
                v.clamp(0.0, 1.0)
            }
        }
    }

    /// Smallest t with `P(W_q ≤ t) ≥ p`, for `p ∈ (0, 1)`; 0 when `p ≤ 1 − ρ`.
    pub fn quantile_wait(&self, p: f64) -> Result<f64, QueueError> {
        check_prob(p)?;
        if p <= self.prob_no_wait {
            return Ok(0.0);
        }
        Ok(self.invert_table(1.0 - p, &self.wait, |t| self.sf_wait(t)))
    }

    /// Smallest t with `P(W_q + S ≤ t) ≥ p`, for `p ∈ (0, 1)`.
    pub fn quantile_sojourn(&self, p: f64) -> Result<f64, QueueError> {
        check_prob(p)?;
        let q = 1.0 - p;
        match &self.sojourn {
            Sojourn::Grid(tab) => Ok(self.invert_table(q, tab, |t| self.sf_sojourn(t))),
            Sojourn::Atoms { values, .. } => {
                // W_q ≤ W_q + S ≤ W_q + max S: the answer lies in [q_W(p), q_W(p) + max S].
                let qw = self.quantile_wait(p)?;
                let top = values.last().copied().unwrap_or(0.0);
                let sf = |t: f64| self.sf_sojourn(t);
                let lo = if sf(qw) > q { qw } else { 0.0 };
                Ok(illinois(&sf, q, lo, qw + top))
            }
        }
    }

    /// Smallest t with `sf(t) ≤ q` for a tabulated, non-increasing, right-continuous `sf`.
    fn invert_table(&self, q: f64, tab: &Table, sf: impl Fn(f64) -> f64) -> f64 {
        let n = tab.sf.len() - 1;
        let h = self.step_s;
        // First grid point with sf ≤ q (grid values are non-increasing up to round-off).
        let k = tab.sf.partition_point(|&s| s > q);
        if k == 0 {
            return 0.0;
        }
        if k > n {
            // Beyond the grid: invert the exponential extension.
            if tab.sf[n] <= 0.0 || tab.decay <= 0.0 {
                return self.range_s;
            }
            return self.range_s + (tab.sf[n] / q).ln() / tab.decay;
        }
        illinois(&sf, q, (k - 1) as f64 * h, k as f64 * h)
    }
}

/// `p` must be a number in (0, 1).
pub(crate) fn check_prob(p: f64) -> Result<(), QueueError> {
    if p > 0.0 && p < 1.0 {
        Ok(())
    } else {
        Err(QueueError::Invalid {
            what: "probability",
            why: format!("a quantile needs p in (0, 1), got {p}"),
        })
    }
}

/// Cubic interpolation of `v` at fractional index `pos ∈ [0, len − 1]` (`v` needs at least 4
/// points). The 4-point Lagrange stencil around the cell avoids the multiples of `breaks`
/// (grid points where the tabulated function has a kink or a curvature jump: the aligned atom
/// of S and its sums) when it can; otherwise, or when `breaks` is 0, it is chosen by ENO
/// (grown towards the side with the smaller divided difference; Harten, Engquist, Osher &
/// Chakravarthy 1987).
fn cubic(v: &[f64], pos: f64, breaks: usize) -> f64 {
    let n = v.len() - 1;
    let k = (pos.max(0.0) as usize).min(n - 1);
    let s = stencil(v, k, breaks);
    let w = pos - s as f64;
    let (a, b, c, d) = (v[s], v[s + 1], v[s + 2], v[s + 3]);
    let (w1, w2, w3) = (w - 1.0, w - 2.0, w - 3.0);
    -w1 * w2 * w3 / 6.0 * a + w * w2 * w3 / 2.0 * b - w * w1 * w3 / 2.0 * c + w * w1 * w2 / 6.0 * d
}

/// First index of the 4-point stencil for the cell `[k, k + 1]` (see [`cubic`]).
fn stencil(v: &[f64], k: usize, breaks: usize) -> usize {
    let n = v.len() - 1;
    let last = n - 3;
    if breaks >= 3 {
        // A break b crosses the stencil [s, s + 3] when s < b < s + 3.
        let crosses = |s: usize| (s / breaks + 1) * breaks < s + 3;
        for s in [k.wrapping_sub(1), k, k.wrapping_sub(2)] {
            if s <= last && !crosses(s) {
                return s;
            }
        }
    }
    // ENO: second differences choose between starts k − 1 and k, third differences extend.
    let d2 = |j: usize| (v[j] - 2.0 * v[j + 1] + v[j + 2]).abs();
    let d3 = |j: usize| (v[j + 3] - 3.0 * v[j + 2] + 3.0 * v[j + 1] - v[j]).abs();
    let mut s = if k == 0 {
        0
    } else if k + 2 > n || d2(k - 1) < d2(k) {
        k - 1
    } else {
        k
    };
    if s + 3 > n || (s > 0 && d3(s - 1) < d3(s)) {
        s = s.saturating_sub(1);
    }
    s.min(last)
}

/// `s · e^{−decay · dt}`, 0 for a non-positive tail.
fn extrapolate(s: f64, decay: f64, dt: f64) -> f64 {
    if s <= 0.0 {
        0.0
    } else {
        s * (-decay.max(0.0) * dt).exp()
    }
}

/// Smallest t in `[lo, hi]` with `sf(t) ≤ q`, given `sf(lo) > q ≥ sf(hi)` (up to round-off):
/// Illinois-modified regula falsi; the bracket is kept, so a jump of `sf` is found too.
pub(crate) fn illinois(sf: &impl Fn(f64) -> f64, q: f64, mut lo: f64, mut hi: f64) -> f64 {
    let mut flo = sf(lo) - q;
    let mut fhi = sf(hi) - q;
    if flo <= 0.0 {
        return lo;
    }
    if fhi > 0.0 {
        return hi;
    }
    let mut side = 0i8;
    for _ in 0..QUANTILE_MAX_ITER {
        if hi - lo <= QUANTILE_RTOL * hi {
            break;
        }
        let mut t = (lo * fhi - hi * flo) / (fhi - flo);
        if !(t > lo && t < hi) {
            t = 0.5 * (lo + hi);
        }
        let ft = sf(t) - q;
        if ft > 0.0 {
            lo = t;
            flo = ft;
            if side == 1 {
                fhi *= 0.5;
            }
            side = 1;
        } else {
            hi = t;
            fhi = ft;
            if ft == 0.0 {
                break;
            }
            if side == -1 {
                flo *= 0.5;
            }
            side = -1;
        }
    }
    hi
}

/// The first step, `E[S]/32`, made a divisor of the heaviest atom of S (returned too) so that
/// the atom and its multiples are grid points of every refinement.
fn initial_step(svc: &Svc, es: f64) -> (f64, Option<f64>) {
    let target = es / INITIAL_CELLS_PER_MEAN;
    match svc.heaviest_atom() {
        Some(pos) if pos >= MIN_ALIGN_FRACTION * target => (pos / (pos / target).ceil(), Some(pos)),
        _ => (target, None),
    }
}

/// Richardson extrapolation `(4 v_{h/2} − v_h)/3` of two solves (second-order rule), on the
/// coarser grid.
fn richardson(coarse: &Level, fine: &Level) -> Smooth {
    let n = (coarse.y.len() - 1).min((fine.y.len() - 1) / 2);
    let ext = |c: &[f64], f: &[f64]| -> Vec<f64> {
        (0..=n).map(|k| (4.0 * f[2 * k] - c[k]) / 3.0).collect()
    };
    Smooth {
        h: coarse.h,
        y: ext(&coarse.y, &fine.y),
        psi: ext(&coarse.psi, &fine.psi),
        t_exc: coarse.t_exc[..=n].to_vec(),
        s_tail: coarse.s_tail[..=n].to_vec(),
    }
}

/// One lattice solve: the smooth parts and the singular terms on `x_k = k h`, k = 0..=n.
#[derive(Debug)]
struct Level {
    h: f64,
    fft_size: usize,
    /// `Y_k = P(W_q > x_k) − λ(1−ρ)T(x_k)`.
    y: Vec<f64>,
    /// `Ψ_k = P(W_q + S > x_k) − (1−ρ)P(S > x_k) + λ(1−ρ)T(x_k)`.
    psi: Vec<f64>,
    /// `T(x_k) = E[(S − x_k)⁺]`.
    t_exc: Vec<f64>,
    /// `P(S > x_k)`.
    s_tail: Vec<f64>,
    /// `P(W_q > x_n)` at the end of the range.
    tail_wait: f64,
    /// `λ T(x_M)`: the part of the service law beyond the FFT buffer (must be negligible).
    cut_excess: f64,
}

/// An extrapolated solution (same layout as [`Level`]).
#[derive(Debug)]
struct Smooth {
    h: f64,
    y: Vec<f64>,
    psi: Vec<f64>,
    t_exc: Vec<f64>,
    s_tail: Vec<f64>,
}

struct Solver<'a> {
    svc: &'a Svc,
    lambda: f64,
    rho: f64,
    es: f64,
    /// The atom of S the grid is aligned to.
    atom: Option<f64>,
    /// Whether the sojourn time is tabulated (`Ψ`) rather than summed over atoms.
    with_sojourn_grid: bool,
}

impl Solver<'_> {
    /// Grid cells between multiples of the aligned atom, on step `h` (0: none).
    fn breaks(&self, h: f64) -> usize {
        self.atom.map_or(0, |a| (a / h).round() as usize)
    }

    /// Whether the grid covers the tail: `P(W_q > x_n) ≤ tail` and the service law left out
    /// beyond the FFT buffer is as small.
    fn tail_ok(&self, lv: &Level, tail: f64) -> bool {
        lv.tail_wait <= tail && lv.cut_excess <= tail
    }

    /// Largest difference of the smooth parts between a solution on step `2h` (interpolated)
    /// and one on step `h`, over the points of the finer grid the coarser covers.
    fn difference(&self, coarse: &Smooth, fine: &Smooth) -> f64 {
        let ratio = coarse.h / fine.h;
        let br = self.breaks(coarse.h);
        let n_c = coarse.y.len() - 1;
        let n = (fine.y.len() - 1).min((n_c as f64 * ratio) as usize);
        let mut worst: f64 = 0.0;
        for j in 0..=n {
            let pos = j as f64 / ratio;
            worst = worst.max((cubic(&coarse.y, pos, br) - fine.y[j]).abs());
            if self.with_sojourn_grid {
                worst = worst.max((cubic(&coarse.psi, pos, br) - fine.psi[j]).abs());
            }
        }
        worst
    }

    fn finish(
        &self,
        sm: Smooth,
        est: f64,
        mean_wait: f64,
        fft_size: usize,
        atoms: Option<(Vec<f64>, Vec<f64>)>,
    ) -> WaitDistribution {
        let n = sm.y.len() - 1;
        let (rho, c1) = (self.rho, self.lambda * (1.0 - self.rho));
        let decay = |v: &[f64]| {
            let (a, b) = (v[n / 2], v[n]);
            if a > 0.0 && b > 0.0 && a > b {
                (a / b).ln() / ((n - n / 2) as f64 * sm.h)
            } else {
                0.0
            }
        };
        let table = |smooth: Vec<f64>, sf: Vec<f64>| {
            let d = decay(&sf);
            Table {
                smooth,
                sf,
                decay: d,
            }
        };
        let sf_w: Vec<f64> = (0..=n).map(|k| sm.y[k] + c1 * sm.t_exc[k]).collect();
        let sojourn = match atoms {
            Some((values, probs)) => Sojourn::Atoms { values, probs },
            None => {
                let sf_t = (0..=n)
                    .map(|k| sm.psi[k] + (1.0 - rho) * sm.s_tail[k] - c1 * sm.t_exc[k])
                    .collect();
                Sojourn::Grid(table(sm.psi, sf_t))
            }
        };
        WaitDistribution {
            utilisation: rho,
            prob_no_wait: 1.0 - rho,
            mean_wait_s: mean_wait,
            mean_sojourn_s: mean_wait + self.es,
            method: Method::Exact,
            tolerance: est,
            step_s: sm.h,
            range_s: n as f64 * sm.h,
            fft_size,
            svc: self.svc.clone(),
            lambda: self.lambda,
            breaks: self.breaks(sm.h),
            wait: table(sm.y, sf_w),
            sojourn,
        }
    }

    /// Solve on step `h` over `[0, range]`.
    fn level(&self, h: f64, range: f64, max_grid: usize) -> Result<Level, QueueError> {
        let (lambda, rho) = (self.lambda, self.rho);
        let n_use = ((range / h).ceil() as usize).max(8);
        // The wrap-around of the circular solve adds P(W_q > x_k + M h) ≤ P(W_q > range) to
        // each value: M > n is enough.
        let m = (n_use + 1).next_power_of_two();
        if m > max_grid {
            return Err(QueueError::OutOfRange(format!(
                "waiting-time distribution: needs an FFT of {m} points (step {h:.3e} s over \
                 {range:.4e} s), above max_grid = {max_grid}; raise max_grid or the tolerance"
            )));
        }
        // R(x_k), R₂(x_k) for k = 0..=m.
        let (r, r2) = self.svc.min_moments_grid(h, m + 1);
        // Product-integration weights of cell j, F linear on the cell and 1 − B integrated
        // exactly: α_j = λ∫(1 − B(u))(x_{j+1} − u)/h du (left end), β_j likewise (right end).
        let fft = Fft::new(m);
        let mut re = vec![0.0; m];
        let mut im = vec![0.0; m];
        let mut mean_kappa = 0.0; // Σ_m m κ_m = Σ_j (j α_j + (j+1) β_j)
        for j in 0..m {
            let dr = (r[j + 1] - r[j]).max(0.0);
            let dr2 = r2[j + 1] - r2[j];
            let xj = j as f64 * h;
            let beta = (lambda / h * (dr2 - xj * dr)).clamp(0.0, lambda * dr);
            let alpha = lambda * dr - beta;
            re[j] = alpha;
            im[j] = beta;
            mean_kappa += j as f64 * alpha + (j + 1) as f64 * beta;
        }
        fft.forward(&mut re, &mut im);
        // Ĝ = (ĉ + (1 − ρ)α̂)/(1 − κ̂) with κ̂ = α̂ + ω^k β̂ and ĉ_k = (κ̂_0 − κ̂_k)/(1 − ω^k),
        // the transform of the tail sums c_k = Σ_{m>k} κ_m (ĉ_0 = Σ m κ_m).
        let mut g_re = vec![0.0; m];
        let mut g_im = vec![0.0; m];
        let mut dr_hat = vec![(0.0, 0.0); m];
        let kappa0 = re[0] + im[0];
        for k in 0..m {
            let k2 = (m - k) % m;
            // α̂, β̂ from the packed transform X = α̂ + iβ̂.
            let (pr, pi) = (re[k], im[k]);
            let (qr, qi) = (re[k2], -im[k2]);
            let (ar, ai) = (0.5 * (pr + qr), 0.5 * (pi + qi));
            let (br, bi) = (0.5 * (pi - qi), -0.5 * (pr - qr));
            let (wr, wi) = fft.root(k);
            let kr = ar + wr * br - wi * bi;
            let ki = ai + wr * bi + wi * br;
            let (cr, ci) = if k == 0 {
                (mean_kappa, 0.0)
            } else {
                cdiv(kappa0 - kr, -ki, 1.0 - wr, -wi)
            };
            let (nr, ni) = (cr + (1.0 - rho) * ar, ci + (1.0 - rho) * ai);
            let (gr, gi) = cdiv(nr, ni, 1.0 - kr, -ki);
            g_re[k] = gr;
            g_im[k] = gi;
            dr_hat[k] = ((ar + br) / lambda, (ai + bi) / lambda);
        }
        // Sojourn term C_k = Σ_{m<k} (F_{m+1} − F_m) ΔR_{k−1−m} / h (the density of W_q taken
        // constant on each cell against 1 − B integrated exactly): Ĉ = ((ω^k − 1)Ĝ + G_0)ΔR̂/h.
        let g0 = g_re.iter().sum::<f64>() / m as f64;
        for k in 0..m {
            let (wr, wi) = fft.root(k);
            let (gr, gi) = (g_re[k], g_im[k]);
            let (ur, ui) = ((wr - 1.0) * gr - wi * gi + g0, (wr - 1.0) * gi + wi * gr);
            let (dr, di) = dr_hat[k];
            let (cr, ci) = ((ur * dr - ui * di) / h, (ur * di + ui * dr) / h);
            // Pack Ĝ + iĈ: the inverse transform is G + iC.
            re[k] = gr - ci;
            im[k] = gi + cr;
        }
        fft.inverse_unscaled(&mut re, &mut im);
        let scale = 1.0 / m as f64;
        let c1 = lambda * (1.0 - rho);
        let mut y = Vec::with_capacity(n_use + 1);
        let mut psi = Vec::with_capacity(n_use + 1);
        let mut t_exc = Vec::with_capacity(n_use + 1);
        let mut s_tail = Vec::with_capacity(n_use + 1);
        for k in 0..=n_use {
            let g = re[k] * scale;
            let c = im[k] * scale;
            let te = self.svc.excess_from_r(r[k]);
            y.push(g - c1 * te);
            psi.push(g + c + c1 * te);
            t_exc.push(te);
            s_tail.push(if self.with_sojourn_grid {
                self.svc.sf(k as f64 * h)
            } else {
                0.0
            });
        }
        Ok(Level {
            h,
            fft_size: m,
            y,
            psi,
            t_exc,
            s_tail,
            tail_wait: re[n_use] * scale,
            cut_excess: lambda * self.svc.excess_from_r(r[m]),
        })
    }
}

/// `(a + ib) / (c + id)`.
fn cdiv(a: f64, b: f64, c: f64, d: f64) -> (f64, f64) {
    let den = c * c + d * d;
    ((a * c + b * d) / den, (b * c - a * d) / den)
}

#[cfg(test)]
mod tests;
