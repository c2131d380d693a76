//! Fitting the coefficients of the paper's latency model to timed steps (docs/design.md
//! "Contracts"; paper Fig. 2; docs/models.md §1 and §5).
//!
//! Quantities and their candidate models (`p_ref`, `ctx_ref` are reference values stored in the
//! file; a richer term is kept only when it lowers the MAPE on held-out points by at least
//! [`MIN_GAIN_PCT`] percentage points and [`MIN_GAIN_REL`] of the base MAPE, and its 95%
//! interval on the training points excludes zero):
//!
//! | quantity | data | base | richer |
//! |---|---|---|---|
//! | single request `T(n)` | e2e(n) of batch-1 points | `a·n + c` | `+ a_p·(p − p_ref)` |
//! | first token `t1(b)` | step 0 | `k1·b + k2` | `+ k_p·b·(p − p_ref)` |
//! | decode step `t2(b)` | steps ≥ 1 | `k3·b + k4` | `+ k_c·b·(ctx − ctx_ref)` |
//!
//! `p_ref` is the largest prompt length profiled (the paper evaluates t1 at the upper bound n2
//! of the prompt length, docs/models.md §5 eq 17); `ctx_ref` the median per-request context of the
//! decode points.
//!
//! Decode points are thinned to at most `max_lengths` step positions per grid point. Step fits
//! use weighted least squares on the per-point medians with weights
//! `reps / spread²` when every point has repetitions (ordinary least squares otherwise) and
//! Student-t 95% intervals, which assume independent step noise. The single-request line is
//! fitted by OLS to the mean (over repetitions) e2e curves; its intervals come from the
//! repetitions: the line is refitted to each repetition's curves, and the interval is
//! `mean ± t_{R−1}·sd/√R` over the R per-repetition coefficients (independent repetitions are
//! exactly what this needs; with one repetition the OLS t-interval is given instead and flagged,
//! because the points of one cumulative curve are correlated).
//!
//! Held-out points: a deterministic split by `seed` of the grid points (of individual
//! aggregated points when a quantity has fewer than [`MIN_GROUPS_FOR_POINT_SPLIT`] grid
//! points). Coefficients come from the training points only, so the held-out errors are honest.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{FitError, Result};
use crate::profile::{E2ePoint, PointKey, StepRow, aggregate_steps, e2e_curves, median};
use crate::regress::{ErrorStats, LinearFit, LsqError, error_stats, t_quantile, wls};
use tokenq_core::coefficients::{
    CoefficientsFile, DecodeStep, FirstToken, FitQuality, KvCapacity, Provenance, SingleRequest,
    ValidRange,
};

/// A richer term must lower the held-out MAPE by this many percentage points…
pub const MIN_GAIN_PCT: f64 = 0.05;
/// …and by this fraction of the base model's held-out MAPE.
pub const MIN_GAIN_REL: f64 = 0.02;
/// Split held-out data by grid point only when there are at least this many.
pub const MIN_GROUPS_FOR_POINT_SPLIT: usize = 5;
/// Confidence level of the reported intervals.
pub const LEVEL: f64 = 0.95;
/// Floor of a spread relative to the median, so a repetition-free point cannot take all weight.
const SPREAD_FLOOR_REL: f64 = 1e-4;

/// Options of a fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    /// Fraction of the points held out for validation and model selection (0 ≤ h < 1).
    pub holdout: f64,
    /// Seed of the held-out split.
    pub seed: u64,
    /// Output lengths kept per single-request point (the e2e curve is cumulative).
    pub max_lengths: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            holdout: 0.2,
            seed: 0,
            max_lengths: 64,
        }
    }
}

impl FitOptions {
    /// Check ranges.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..0.9).contains(&self.holdout) {
            return Err(FitError::Config(format!(
                "--holdout {} must be in [0, 0.9) (a fraction of the points, e.g. 0.2)",
                self.holdout
            )));
        }
        if self.max_lengths < 2 {
            return Err(FitError::Config(
                "max output lengths per point must be ≥ 2".into(),
            ));
        }
        Ok(())
    }
}

/// What a profile yields: each quantity that could be fitted, and why others could not.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileFit {
    /// The single-request line, when the profile has batch-1 points.
    pub single_request: Option<SingleRequest>,
    /// `t1(b)`, when the profile has at least two batch sizes.
    pub first_token: Option<FirstToken>,
    /// `t2(b)`, when the profile has decode steps at two or more batch sizes.
    pub decode_step: Option<DecodeStep>,
    /// Quantities skipped and why.
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Term {
    One,
    B,
    N,
    /// b·(p − p_ref)
    BxDp,
    /// p − p_ref
    Dp,
    /// b·(ctx − ctx_ref)
    BxDctx,
}

impl Term {
    fn name(self) -> &'static str {
        match self {
            Term::One => "intercept_s",
            Term::B => "slope_s_per_req",
            Term::N => "per_token_s",
            Term::BxDp => "per_prefill_token_s",
            Term::Dp => "per_input_token_s",
            Term::BxDctx => "per_context_token_s",
        }
    }
    fn formula(self) -> &'static str {
        match self {
            Term::One => "c",
            Term::B => "k·b",
            Term::N => "a·n",
            Term::BxDp => "k_p·b·(p − p_ref)",
            Term::Dp => "a_p·(p − p_ref)",
            Term::BxDctx => "k_c·b·(ctx − ctx_ref)",
        }
    }
    fn variable(self) -> &'static str {
        match self {
            Term::One => "the intercept",
            Term::B => "batch size",
            Term::N => "output tokens",
            Term::BxDp | Term::Dp => "prompt length",
            Term::BxDctx => "context length",
        }
    }
}

#[derive(Debug, Clone)]
struct Obs {
    key: PointKey,
    sub: u64,
    b: f64,
    p: f64,
    ctx: f64,
    n: f64,
    y: f64,
    w: Option<f64>,
    per_rep: Vec<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Refs {
    p: f64,
    ctx: f64,
}

fn value(t: Term, o: &Obs, r: Refs) -> f64 {
    match t {
        Term::One => 1.0,
        Term::B => o.b,
        Term::N => o.n,
        Term::BxDp => o.b * (o.p - r.p),
        Term::Dp => o.p - r.p,
        Term::BxDctx => o.b * (o.ctx - r.ctx),
    }
}

fn design(terms: &[Term], obs: &[Obs], r: Refs) -> Vec<Vec<f64>> {
    obs.iter()
        .map(|o| terms.iter().map(|&t| value(t, o, r)).collect())
        .collect()
}

fn formula(lhs: &str, terms: &[Term]) -> String {
    let parts: Vec<&str> = terms.iter().map(|t| t.formula()).collect();
    format!("{lhs} = {}", parts.join(" + "))
}

/// splitmix64.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn hash_unit(seed: u64, key: &PointKey, sub: Option<u64>) -> u64 {
    // FNV-1a of the run id, then mixed with the point id, sub-index and seed.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.0.bytes() {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = mix(h ^ mix(seed));
    z = mix(z ^ key.1);
    if let Some(s) = sub {
        z = mix(z ^ s.wrapping_add(0x5bd1_e995));
    }
    z
}

/// Deterministic split into (train, test).
fn split(obs: Vec<Obs>, frac: f64, seed: u64) -> (Vec<Obs>, Vec<Obs>) {
    if frac <= 0.0 {
        return (obs, Vec::new());
    }
    let groups: BTreeSet<&PointKey> = obs.iter().map(|o| &o.key).collect();
    let by_group = groups.len() >= MIN_GROUPS_FOR_POINT_SPLIT;
    let unit = |o: &Obs| hash_unit(seed, &o.key, (!by_group).then_some(o.sub));
    let mut units: Vec<u64> = obs
        .iter()
        .map(unit)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    units.sort_unstable();
    let n_units = units.len();
    let mut n_test = (frac * n_units as f64).round() as usize;
    if n_test == 0 && n_units >= 3 {
        n_test = 1;
    }
    n_test = n_test.min(n_units.saturating_sub(2));
    let test_units: BTreeSet<u64> = units.into_iter().take(n_test).collect();
    obs.into_iter()
        .partition(|o| !test_units.contains(&unit(o)))
}

struct Selected {
    terms: Vec<Term>,
    fit: LinearFit,
    train: ErrorStats,
    test: Option<ErrorStats>,
    weighted: bool,
    notes: Vec<String>,
}

fn lsq_error(quantity: &str, e: LsqError, terms: &[Term], hint: &str) -> FitError {
    match e {
        LsqError::TooFew { n, p } => FitError::TooFewPoints {
            quantity: quantity.into(),
            found: n,
            needed: p + 1,
            hint: hint.into(),
        },
        LsqError::RankDeficient(j) => FitError::Degenerate {
            quantity: quantity.into(),
            variable: terms.get(j).map_or("a regressor", |t| t.variable()).into(),
            hint: hint.into(),
        },
        LsqError::BadInput => FitError::Config(format!(
            "cannot fit {quantity}: a time or weight is not a finite positive number"
        )),
    }
}

fn fit_terms(
    terms: &[Term],
    obs: &[Obs],
    r: Refs,
) -> std::result::Result<(LinearFit, bool), LsqError> {
    let x = design(terms, obs, r);
    let y: Vec<f64> = obs.iter().map(|o| o.y).collect();
    let w: Option<Vec<f64>> = obs.iter().map(|o| o.w).collect();
    let f = wls(&x, &y, w.as_deref())?;
    Ok((f, w.is_some()))
}

fn stats_on(fit: &LinearFit, terms: &[Term], obs: &[Obs], r: Refs) -> ErrorStats {
    let pred: Vec<f64> = design(terms, obs, r)
        .iter()
        .map(|x| fit.predict(x))
        .collect();
    let y: Vec<f64> = obs.iter().map(|o| o.y).collect();
    error_stats(&y, &pred)
}

/// Fit the base model, then try each richer model; keep a richer one only when it lowers the
/// held-out MAPE enough.
fn select(
    quantity: &str,
    train: &[Obs],
    test: &[Obs],
    base: &[Term],
    richer: &[Vec<Term>],
    r: Refs,
    hint: &str,
) -> Result<Selected> {
    if train.len() < base.len() + 1 {
        return Err(FitError::TooFewPoints {
            quantity: quantity.into(),
            found: train.len(),
            needed: base.len() + 1,
            hint: hint.into(),
        });
    }
    let (fit, weighted) =
        fit_terms(base, train, r).map_err(|e| lsq_error(quantity, e, base, hint))?;
    let mut best = Selected {
        terms: base.to_vec(),
        train: stats_on(&fit, base, train, r),
        test: (!test.is_empty()).then(|| stats_on(&fit, base, test, r)),
        fit,
        weighted,
        notes: Vec::new(),
    };
    for cand in richer {
        let extra: Vec<&str> = cand
            .iter()
            .filter(|t| !base.contains(t))
            .map(|t| t.name())
            .collect();
        let label = extra.join(", ");
        let Some(base_test) = best.test else {
            best.notes.push(format!(
                "{label}: not tried (no held-out points; use --holdout > 0)"
            ));
            continue;
        };
        match fit_terms(cand, train, r) {
            Err(_) => best.notes.push(format!(
                "{label}: not tried ({} does not vary in the profile)",
                cand.iter()
                    .find(|t| !base.contains(t))
                    .map_or("it", |t| t.variable())
            )),
            Ok((f, w)) => {
                let ts = stats_on(&f, cand, test, r);
                let gain = base_test.mape_pct - ts.mape_pct;
                let significant = significant_extra(&f, cand, base);
                if gain > MIN_GAIN_PCT && gain > MIN_GAIN_REL * base_test.mape_pct && !significant {
                    best.notes.push(format!(
                        "{label}: dropped (held-out MAPE {:.3}% → {:.3}%, but its 95% interval contains 0)",
                        base_test.mape_pct, ts.mape_pct
                    ));
                } else if gain > MIN_GAIN_PCT && gain > MIN_GAIN_REL * base_test.mape_pct {
                    best.notes.push(format!(
                        "{label}: kept (held-out MAPE {:.3}% → {:.3}%)",
                        base_test.mape_pct, ts.mape_pct
                    ));
                    best = Selected {
                        terms: cand.clone(),
                        train: stats_on(&f, cand, train, r),
                        test: Some(ts),
                        fit: f,
                        weighted: w,
                        notes: std::mem::take(&mut best.notes),
                    };
                } else {
                    best.notes.push(format!(
                        "{label}: dropped (held-out MAPE {:.3}% → {:.3}%, not lower by enough)",
                        base_test.mape_pct, ts.mape_pct
                    ));
                }
            }
        }
    }
    Ok(best)
}

/// Whether every term `cand` adds to `base` has a 95% interval that excludes zero.
fn significant_extra(f: &LinearFit, cand: &[Term], base: &[Term]) -> bool {
    let Some(iv) = f.intervals(LEVEL) else {
        return false;
    };
    cand.iter()
        .zip(&iv)
        .filter(|(t, _)| !base.contains(t))
        .all(|(_, (lo, hi))| *lo > 0.0 || *hi < 0.0)
}

fn coef_of(s: &Selected, t: Term) -> Option<f64> {
    s.terms.iter().position(|&x| x == t).map(|j| s.fit.coef[j])
}

fn quality(s: &Selected, lhs: &str, interval_method: String, weighting: &str) -> FitQuality {
    FitQuality {
        model: formula(lhs, &s.terms),
        weighting: if s.weighted { weighting } else { "ols" }.into(),
        interval_method,
        points_fitted: s.fit.n,
        r2: s.train.r2,
        mape_pct: s.train.mape_pct,
        worst_error_pct: s.train.worst_pct,
        holdout_points: s.test.map_or(0, |t| t.n),
        holdout_mape_pct: s.test.map(|t| t.mape_pct),
        holdout_worst_error_pct: s.test.map(|t| t.worst_pct),
        model_selection: s.notes.clone(),
    }
}

type Intervals = (BTreeMap<String, [f64; 2]>, BTreeMap<String, f64>, String);

fn t_intervals(s: &Selected) -> Intervals {
    let mut ci = BTreeMap::new();
    let mut se = BTreeMap::new();
    if let Some(iv) = s.fit.intervals(LEVEL) {
        for (j, t) in s.terms.iter().enumerate() {
            ci.insert(t.name().to_string(), [iv[j].0, iv[j].1]);
            se.insert(t.name().to_string(), s.fit.std_err[j]);
        }
        (
            ci,
            se,
            format!("student-t {}% (dof {})", LEVEL * 100.0, s.fit.dof),
        )
    } else {
        (ci, se, "none (no residual degrees of freedom)".into())
    }
}

fn range_of(obs: &[&Obs], f: impl Fn(&Obs) -> f64) -> [u64; 2] {
    let lo = obs.iter().map(|o| f(o)).fold(f64::INFINITY, f64::min);
    let hi = obs.iter().map(|o| f(o)).fold(f64::NEG_INFINITY, f64::max);
    [lo.round() as u64, hi.round() as u64]
}

/// Weights `reps / σ²_b` with σ²_b the spread² pooled over all points of the same batch size
/// and step kind: a per-point variance from a handful of repetitions is too noisy to weight by
/// (1/s² of 4 degrees of freedom has infinite variance, which would make the intervals too
/// narrow). Without repetitions, `1/t²`: relative least squares, as step-time noise scales with
/// the time and the errors that matter are relative.
fn pooled_weights(points: &[&crate::profile::StepPoint]) -> Vec<Option<f64>> {
    if points.iter().any(|p| p.spread_s.is_none()) {
        // No repetitions: relative least squares (noise taken proportional to the time).
        return points
            .iter()
            .map(|p| Some(1.0 / (p.median_s * p.median_s)))
            .collect();
    }
    let mut pool: BTreeMap<u32, (f64, f64, f64)> = BTreeMap::new();
    for p in points {
        let e = pool.entry(p.batch_size).or_insert((0.0, 0.0, 0.0));
        let s = p.spread_s.unwrap_or(0.0);
        e.0 += s * s;
        e.1 += 1.0;
        e.2 += p.median_s;
    }
    points
        .iter()
        .map(|p| {
            let (ss, n, m) = pool[&p.batch_size];
            let var = (ss / n).max((SPREAD_FLOOR_REL * m / n).powi(2));
            Some(p.reps as f64 / var)
        })
        .collect()
}

/// Decode points, at most `k` step positions per grid point, spread evenly: consecutive steps
/// of one run are nearly the same measurement, and a grid point with many more steps (e.g. the
/// batch-1 points of an import, kept whole for the e2e curves) must not outweigh the others.
fn thin_decode(points: &[crate::profile::StepPoint], k: usize) -> Vec<&crate::profile::StepPoint> {
    let mut groups: BTreeMap<&PointKey, Vec<&crate::profile::StepPoint>> = BTreeMap::new();
    for p in points.iter().filter(|p| p.step >= 1) {
        groups.entry(&p.key).or_default().push(p);
    }
    let mut out = Vec::new();
    for (_, mut g) in groups {
        g.sort_by_key(|p| p.step);
        out.extend(
            crate::profile::thin(g.len(), k)
                .into_iter()
                .map(|i| g[i - 1]),
        );
    }
    out
}

fn weighting_label(points: &[crate::profile::StepPoint]) -> &'static str {
    if points.iter().all(|p| p.spread_s.is_some()) {
        "wls: reps/σ², σ² pooled per batch size"
    } else {
        "wls: 1/t² (relative least squares; no repetitions)"
    }
}

/// Fit every quantity a set of timed steps supports.
pub fn fit_steps(rows: &[StepRow], opts: &FitOptions) -> Result<ProfileFit> {
    opts.validate()?;
    if rows.is_empty() {
        return Err(FitError::Empty {
            what: "the timings tables".into(),
        });
    }
    let points = aggregate_steps(rows);
    let mut skipped = Vec::new();

    // Single-request line.
    let e2e = e2e_curves(rows, opts.max_lengths);
    let single_request = if e2e.is_empty() {
        skipped.push("single_request: no batch-size-1 grid points with a step 0".into());
        None
    } else {
        match fit_e2e(&e2e, None, opts) {
            Ok(s) => Some(s),
            Err(e) => {
                skipped.push(format!("single_request: {e}"));
                None
            }
        }
    };

    let batch_sizes: BTreeSet<u32> = points.iter().map(|p| p.batch_size).collect();
    let mut first_token = None;
    let mut decode_step = None;
    if batch_sizes.len() < 2 {
        skipped.push(format!(
            "first_token, decode_step: one batch size only ({}); profile two or more batch sizes",
            batch_sizes.iter().next().copied().unwrap_or(0)
        ));
    } else {
        let sel: Vec<&crate::profile::StepPoint> = points.iter().filter(|p| p.step == 0).collect();
        let weights = pooled_weights(&sel);
        let prefill: Vec<Obs> = sel
            .iter()
            .zip(weights)
            .enumerate()
            .map(|(i, (p, w))| Obs {
                key: p.key.clone(),
                sub: i as u64,
                b: f64::from(p.batch_size),
                p: f64::from(p.input_tokens),
                ctx: p.context_tokens as f64,
                n: 1.0,
                y: p.median_s,
                w,
                per_rep: Vec::new(),
            })
            .collect();
        match fit_first_token(prefill, opts, weighting_label(&points)) {
            Ok(f) => first_token = Some(f),
            Err(e) => skipped.push(format!("first_token: {e}")),
        }
        let sel = thin_decode(&points, opts.max_lengths);
        let weights = pooled_weights(&sel);
        let decode: Vec<Obs> = sel
            .iter()
            .zip(weights)
            .enumerate()
            .map(|(i, (p, w))| Obs {
                key: p.key.clone(),
                sub: i as u64,
                b: f64::from(p.batch_size),
                p: f64::from(p.input_tokens),
                ctx: p.context_tokens as f64,
                n: f64::from(p.step),
                y: p.median_s,
                w,
                per_rep: Vec::new(),
            })
            .collect();
        match fit_decode_step(decode, opts, weighting_label(&points)) {
            Ok(d) => decode_step = Some(d),
            Err(e) => skipped.push(format!("decode_step: {e}")),
        }
    }
    if single_request.is_none() && first_token.is_none() && decode_step.is_none() {
        return Err(FitError::TooFewPoints {
            quantity: "any quantity".into(),
            found: points.len(),
            needed: 3,
            hint: skipped.join("; "),
        });
    }
    Ok(ProfileFit {
        single_request,
        first_token,
        decode_step,
        skipped,
    })
}

fn fit_first_token(obs: Vec<Obs>, opts: &FitOptions, weighting: &str) -> Result<FirstToken> {
    const Q: &str = "first token t1(b)";
    const HINT: &str = "profile prefill steps at two or more batch sizes";
    if obs.is_empty() {
        return Err(FitError::TooFewPoints {
            quantity: Q.into(),
            found: 0,
            needed: 3,
            hint: HINT.into(),
        });
    }
    let r = Refs {
        p: obs.iter().map(|o| o.p).fold(0.0, f64::max),
        ctx: 0.0,
    };
    let all: Vec<Obs> = obs.clone();
    let (train, test) = split(obs, opts.holdout, opts.seed);
    let s = select(
        Q,
        &train,
        &test,
        &[Term::B, Term::One],
        &[vec![Term::B, Term::BxDp, Term::One]],
        r,
        HINT,
    )?;
    let (ci95, std_err, im) = t_intervals(&s);
    let refs: Vec<&Obs> = all.iter().collect();
    Ok(FirstToken {
        slope_s_per_req: coef_of(&s, Term::B).unwrap_or(f64::NAN),
        intercept_s: coef_of(&s, Term::One).unwrap_or(f64::NAN),
        input_tokens: r.p.round() as u64,
        per_prefill_token_s: coef_of(&s, Term::BxDp),
        ci95,
        std_err,
        quality: quality(&s, "t1", im, weighting),
        range: ValidRange {
            batch_size_req: range_of(&refs, |o| o.b),
            input_tokens: range_of(&refs, |o| o.p),
            output_tokens: None,
            context_tokens: None,
        },
    })
}

fn fit_decode_step(obs: Vec<Obs>, opts: &FitOptions, weighting: &str) -> Result<DecodeStep> {
    const Q: &str = "decode step t2(b)";
    const HINT: &str = "profile decode steps (output tokens > 1) at two or more batch sizes";
    if obs.is_empty() {
        return Err(FitError::TooFewPoints {
            quantity: Q.into(),
            found: 0,
            needed: 3,
            hint: HINT.into(),
        });
    }
    let ctxs: Vec<f64> = obs.iter().map(|o| o.ctx).collect();
    let r = Refs {
        p: 0.0,
        ctx: median(&ctxs).round(),
    };
    let all = obs.clone();
    let (train, test) = split(obs, opts.holdout, opts.seed);
    let s = select(
        Q,
        &train,
        &test,
        &[Term::B, Term::One],
        &[vec![Term::B, Term::BxDctx, Term::One]],
        r,
        HINT,
    )?;
    let (ci95, std_err, im) = t_intervals(&s);
    let refs: Vec<&Obs> = all.iter().collect();
    Ok(DecodeStep {
        slope_s_per_req: coef_of(&s, Term::B).unwrap_or(f64::NAN),
        intercept_s: coef_of(&s, Term::One).unwrap_or(f64::NAN),
        context_tokens: r.ctx as u64,
        per_context_token_s: coef_of(&s, Term::BxDctx),
        ci95,
        std_err,
        quality: quality(&s, "t2", im, weighting),
        range: ValidRange {
            batch_size_req: range_of(&refs, |o| o.b),
            input_tokens: range_of(&refs, |o| o.p),
            output_tokens: None,
            context_tokens: Some(range_of(&refs, |o| o.ctx)),
        },
    })
}

/// Fit the single-request line to end-to-end points. With `test = None` a held-out set is
/// split off by `opts`; with `Some(test)` those points are the held-out set (e.g. Table I's rows
/// at other prompt lengths) and `opts.holdout` is ignored.
pub fn fit_e2e(
    points: &[E2ePoint],
    test: Option<&[E2ePoint]>,
    opts: &FitOptions,
) -> Result<SingleRequest> {
    const Q: &str = "single-request line T(n)";
    const HINT: &str = "profile batch size 1 with more output tokens or more prompt lengths";
    opts.validate()?;
    let to_obs = |(i, e): (usize, &E2ePoint)| Obs {
        key: e.key.clone(),
        sub: i as u64,
        b: 1.0,
        p: f64::from(e.input_tokens),
        ctx: 0.0,
        n: f64::from(e.output_tokens),
        y: e.mean_s(),
        w: None,
        per_rep: e.per_rep_s.clone(),
    };
    let obs: Vec<Obs> = points.iter().enumerate().map(to_obs).collect();
    if obs.is_empty() {
        return Err(FitError::TooFewPoints {
            quantity: Q.into(),
            found: 0,
            needed: 3,
            hint: HINT.into(),
        });
    }
    if let Some(o) = obs.iter().find(|o| !o.y.is_finite() || o.y <= 0.0) {
        return Err(FitError::Config(format!(
            "cannot fit {Q}: latency {} s at {} output tokens is not a positive number",
            o.y, o.n
        )));
    }
    let (train, test): (Vec<Obs>, Vec<Obs>) = match test {
        Some(t) => (obs, t.iter().enumerate().map(to_obs).collect()),
        None => split(obs, opts.holdout, opts.seed),
    };
    let r = Refs {
        p: train.iter().map(|o| o.p).fold(0.0, f64::max),
        ctx: 0.0,
    };
    let s = select(
        Q,
        &train,
        &test,
        &[Term::N, Term::One],
        &[vec![Term::N, Term::Dp, Term::One]],
        r,
        HINT,
    )?;
    // Intervals from the repetitions when there are at least two.
    let reps = train.iter().map(|o| o.per_rep.len()).min().unwrap_or(0);
    let (ci95, std_err, im) = if reps >= 2 {
        let x = design(&s.terms, &train, r);
        let mut per_rep: Vec<Vec<f64>> = Vec::with_capacity(reps);
        for k in 0..reps {
            let y: Vec<f64> = train.iter().map(|o| o.per_rep[k]).collect();
            let f = wls(&x, &y, None).map_err(|e| lsq_error(Q, e, &s.terms, HINT))?;
            per_rep.push(f.coef);
        }
        let t = t_quantile(reps - 1, 0.5 + LEVEL / 2.0).unwrap_or(f64::NAN);
        let mut ci = BTreeMap::new();
        let mut se = BTreeMap::new();
        for (j, term) in s.terms.iter().enumerate() {
            let v: Vec<f64> = per_rep.iter().map(|c| c[j]).collect();
            let m = v.iter().sum::<f64>() / reps as f64;
            let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (reps - 1) as f64).sqrt();
            let e = sd / (reps as f64).sqrt();
            ci.insert(term.name().to_string(), [m - t * e, m + t * e]);
            se.insert(term.name().to_string(), e);
        }
        (
            ci,
            se,
            format!(
                "student-t {}% over {reps} repetitions (line refitted per repetition)",
                LEVEL * 100.0
            ),
        )
    } else {
        let (ci, se, m) = t_intervals(&s);
        let distinct_groups = train.iter().map(|o| &o.key).collect::<BTreeSet<_>>().len();
        let caveat = if distinct_groups < train.len() {
            "; one repetition: points of a cumulative curve are correlated, interval too narrow"
        } else {
            ""
        };
        (ci, se, format!("{m}{caveat}"))
    };
    let all: Vec<&Obs> = train.iter().chain(test.iter()).collect();
    Ok(SingleRequest {
        per_token_s: coef_of(&s, Term::N).unwrap_or(f64::NAN),
        intercept_s: coef_of(&s, Term::One).unwrap_or(f64::NAN),
        input_tokens: r.p.round() as u64,
        per_input_token_s: coef_of(&s, Term::Dp),
        ci95,
        std_err,
        quality: quality(&s, "T", im, "ols"),
        range: ValidRange {
            batch_size_req: [1, 1],
            input_tokens: range_of(&all, |o| o.p),
            output_tokens: Some(range_of(&all, |o| o.n)),
            context_tokens: None,
        },
    })
}

impl ProfileFit {
    /// The coefficients file of this fit. `skipped` reasons become provenance notes.
    pub fn into_file(
        self,
        mut provenance: Provenance,
        kv_capacity: Vec<KvCapacity>,
    ) -> CoefficientsFile {
        provenance
            .notes
            .extend(self.skipped.iter().map(|s| format!("not fitted: {s}")));
        let mut file = CoefficientsFile::new(provenance);
        file.single_request = self.single_request;
        file.first_token = self.first_token;
        file.decode_step = self.decode_step;
        file.kv_capacity = kv_capacity;
        file
    }
}
