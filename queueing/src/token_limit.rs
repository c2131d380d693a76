//! The provider's objective and the optimal max-token limit (docs/models.md §3; paper §III-C,
//! eqs. 10–13).
//!
//! `Ū(L) = E[U(N, L)]` for a pluggable utility [`Utility`];
//! patient (eq. 10): `F(L) = β Ū(L) − (1 − β) E[W_q](L)` with the M/G/1 wait of [`crate::mg1`],
//! feasible only where `ρ(L) < 1` (eq. 13);
//! impatient (eq. 11): `F(L) = β Ū(L) − (1 − β) E[W_q](L) − c_ℓ π(τ; L)` with E[W_q] the mean
//! wait of all users (eq. 9, or the balking variant) from [`crate::impatience`].
//! `L* = argmax F` (eq. 12) over a grid of limits; [`optimize`] returns the whole curve.
//! The paper's concrete U is not recoverable (docs/models.md §3, §10.7): its L* = 1600 / 1300 are not
//! reproduced by any utility offered here.

use serde::Serialize;

use crate::Method;
use crate::dist::TokenDist;
use crate::impatience::{self, Abandonment, ServiceLaw};
use crate::mg1::{self, LinearService, QueueError};
use crate::numeric::gauss_legendre_on;

/// A utility `U(n, L)` with `U = 1` for `n ≤ L`, evaluated in expectation over N.
pub trait Utility: std::fmt::Debug + Sync {
    /// `Ū(L) = E[U(N, L)]`.
    fn expected(&self, tokens: &TokenDist, l: f64) -> f64;
    /// Short name for output.
    fn name(&self) -> &'static str;
}

/// All-or-nothing `U = 1{n ≤ L}`: `Ū = P(N ≤ L)`.
#[derive(Debug, Clone, Copy)]
pub struct StepUtility;

impl Utility for StepUtility {
    fn expected(&self, tokens: &TokenDist, l: f64) -> f64 {
        tokens.cdf(l)
    }
    fn name(&self) -> &'static str {
        "step"
    }
}

/// Delivered fraction `U = min(1, L/n)`: `Ū = P(N ≤ L) + L·E[1/N; N > L]`.
#[derive(Debug, Clone, Copy)]
pub struct FractionUtility;

impl Utility for FractionUtility {
    fn expected(&self, tokens: &TokenDist, l: f64) -> f64 {
        tokens.cdf(l) + l * inverse_tail(tokens, l)
    }
    fn name(&self) -> &'static str {
        "fraction"
    }
}

/// `E[1/N; N > L]` for `L > 0`: closed forms where they exist, atom sums, else quadrature.
fn inverse_tail(tokens: &TokenDist, l: f64) -> f64 {
    match *tokens {
        // docs/models.md §3: e^{−μ+σ²/2} Φ((μ − σ² − ln L)/σ).
        TokenDist::Lognormal { mu, sigma } => {
            (-mu + 0.5 * sigma * sigma).exp()
                * crate::numeric::norm_cdf((mu - sigma * sigma - l.ln()) / sigma)
        }
        TokenDist::Uniform { lo, hi } => {
            let from = l.max(lo);
            if from >= hi {
                0.0
            } else {
                (hi / from).ln() / (hi - lo)
            }
        }
        TokenDist::TruncNormal { hi, .. } => {
            // Integration by parts: E[1/N; N > L] = sf(L)/L − ∫_L^top sf(n)/n² dn (Gauss–Legendre).
            let top = if hi.is_finite() {
                hi
            } else {
                tokens.isf(1e-17)
            };
            if top <= l {
                return 0.0;
            }
            let pieces = 64;
            let h = (top - l) / pieces as f64;
            let mut integral = 0.0;
            for k in 0..pieces {
                let (x, w) = gauss_legendre_on(16, l + k as f64 * h, l + (k + 1) as f64 * h);
                for (n, wi) in x.iter().zip(&w) {
                    integral += wi * tokens.sf(*n) / (n * n);
                }
            }
            tokens.sf(l) / l - integral
        }
        _ => match tokens.atoms() {
            Some((v, p)) => v
                .iter()
                .zip(&p)
                .filter(|(x, _)| **x > l)
                .map(|(x, q)| q / x)
                .sum(),
            None => 0.0,
        },
    }
}

/// Impatience settings for eq. 11.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Impatience {
    /// Patience τ (s).
    pub patience_s: f64,
    /// Cost per lost user `c_ℓ` (objective units).
    pub lost_cost: f64,
    /// Reneging (eq. 9) or balking.
    pub abandonment: Abandonment,
    /// Use De Kok–Tijms instead of the exact level-crossing solve.
    pub dekok_tijms: bool,
    /// Grid cells of the exact solve.
    pub grid: usize,
}

/// The problem of eqs. 10–13.
#[derive(Debug, Clone)]
pub struct Problem<'a> {
    pub tokens: &'a TokenDist,
    pub arrival_rate: f64,
    pub service: LinearService,
    /// Weight β ∈ [0, 1] on utility.
    pub weight: f64,
    pub utility: &'a dyn Utility,
    /// `None`: patient model (eq. 10).
    pub impatience: Option<Impatience>,
}

/// One point of the objective curve. Times in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurvePoint {
    /// Max-token limit L (tokens).
    pub max_tokens: f64,
    /// `Ū(L)`.
    pub expected_utility: f64,
    /// `ρ(L) = λE[S](L)`.
    pub utilisation: f64,
    /// Mean wait (s): M/G/1 E[W_q] (patient) or all-user eq. 9 wait (impatient); `None` if unstable.
    pub mean_wait_s: Option<f64>,
    /// π(τ; L) (impatient only).
    pub loss_fraction: Option<f64>,
    /// `F(L)`; `None` where infeasible (patient and ρ ≥ 1).
    pub objective: Option<f64>,
}

/// The curve and its argmax.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Optimum {
    /// The best feasible point (eq. 12).
    pub best: CurvePoint,
    /// Every evaluated L, ascending.
    pub curve: Vec<CurvePoint>,
    /// Exact for the exact models on the given grid; approximation with De Kok–Tijms.
    pub method: Method,
}

impl Problem<'_> {
    /// Evaluate `F` at one limit.
    pub fn evaluate(&self, l: f64) -> Result<CurvePoint, QueueError> {
        self.evaluate_shared(l, None)
    }

    /// The smallest L from which the clip no longer changes `B(x)` on [0, τ] (`a·L + c ≥ τ`):
    /// all such limits share one level-crossing solve (that of L = ∞).
    fn shared_from(&self) -> Option<f64> {
        let imp = self.impatience?;
        if imp.dekok_tijms || self.service.per_token_s <= 0.0 {
            return None;
        }
        Some(((imp.patience_s - self.service.intercept_s) / self.service.per_token_s).max(1.0))
    }

    fn evaluate_shared(
        &self,
        l: f64,
        shared: Option<&impatience::LevelCrossing>,
    ) -> Result<CurvePoint, QueueError> {
        mg1::validate_limit(l)?;
        mg1::validate_rate(self.arrival_rate)?;
        self.service.validate()?;
        if !(0.0..=1.0).contains(&self.weight) {
            return Err(QueueError::Invalid {
                what: "weight",
                why: format!("must be in [0, 1], got {}", self.weight),
            });
        }
        let u = self.utility.expected(self.tokens, l);
        let (m1, m2) = self.tokens.clipped_moments(l);
        let (es, _) = self.service.moments(m1, m2);
        let rho = self.arrival_rate * es;
        let beta = self.weight;
        match self.impatience {
            None => {
                let w = match mg1::solve(self.tokens, l, self.arrival_rate, self.service) {
                    Ok(r) => Some(r.mean_wait_s),
                    Err(QueueError::Unstable { .. }) => None,
                    Err(e) => return Err(e),
                };
                Ok(CurvePoint {
                    max_tokens: l,
                    expected_utility: u,
                    utilisation: rho,
                    mean_wait_s: w,
                    loss_fraction: None,
                    objective: w.map(|w| beta * u - (1.0 - beta) * w),
                })
            }
            Some(imp) => {
                if !(imp.lost_cost.is_finite() && imp.lost_cost >= 0.0) {
                    return Err(QueueError::Invalid {
                        what: "lost_cost",
                        why: format!("must be a finite number >= 0, got {}", imp.lost_cost),
                    });
                }
                let law = ServiceLaw::Tokens {
                    tokens: self.tokens.clone(),
                    max_tokens: l,
                    service: self.service,
                };
                let r = if let (Some(lc), Some(from)) = (shared, self.shared_from())
                    && l >= from
                {
                    impatience::from_level_crossing(
                        &law,
                        self.arrival_rate,
                        imp.patience_s,
                        lc,
                        imp.abandonment,
                    )
                } else if imp.dekok_tijms {
                    impatience::dekok_tijms(
                        &law,
                        self.arrival_rate,
                        imp.patience_s,
                        imp.abandonment,
                    )?
                    .combined
                } else {
                    impatience::exact(
                        &law,
                        self.arrival_rate,
                        imp.patience_s,
                        imp.grid,
                        imp.abandonment,
                    )?
                };
                Ok(CurvePoint {
                    max_tokens: l,
                    expected_utility: u,
                    utilisation: rho,
                    mean_wait_s: Some(r.mean_wait_all_s),
                    loss_fraction: Some(r.loss_fraction),
                    objective: Some(
                        beta * u
                            - (1.0 - beta) * r.mean_wait_all_s
                            - imp.lost_cost * r.loss_fraction,
                    ),
                })
            }
        }
    }
}

/// `step, 2·step, …, ≤ max` (eq. 13's integer limits on a grid; the paper's optima are multiples of 100).
pub fn grid(step: f64, max: f64) -> Result<Vec<f64>, QueueError> {
    if !(step.is_finite() && step >= 1.0 && max.is_finite() && max >= step) {
        return Err(QueueError::Invalid {
            what: "grid",
            why: format!("need 1 <= grid step <= max limit, got step {step}, max {max}"),
        });
    }
    let n = (max / step + 1e-9).floor() as usize;
    Ok((1..=n).map(|k| k as f64 * step).collect())
}

/// Evaluate `F` on `limits` (ascending) and return the curve with its feasible argmax.
pub fn optimize(problem: &Problem<'_>, limits: &[f64]) -> Result<Optimum, QueueError> {
    // Impatient points each need an O(n²) level-crossing solve: spread them over the cores
    // (rayon keeps the order). Patient points cost microseconds: stay sequential.
    let curve = if let Some(imp) = problem.impatience {
        use rayon::prelude::*;
        // Limits with a·L + c ≥ τ share the L = ∞ solve (B is unchanged on [0, τ]).
        let shared = match problem.shared_from() {
            Some(from) if limits.iter().filter(|&&l| l >= from).count() > 1 => {
                // Validate once through the ordinary path, then solve.
                problem.evaluate(limits[0])?;
                Some(impatience::solve_level_crossing(
                    &ServiceLaw::Tokens {
                        tokens: problem.tokens.clone(),
                        max_tokens: f64::INFINITY,
                        service: problem.service,
                    },
                    problem.arrival_rate,
                    imp.patience_s,
                    imp.grid,
                ))
            }
            _ => None,
        };
        limits
            .par_iter()
            .map(|&l| problem.evaluate_shared(l, shared.as_ref()))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        limits
            .iter()
            .map(|&l| problem.evaluate(l))
            .collect::<Result<Vec<_>, _>>()?
    };
    let best = curve
        .iter()
        .filter(|p| p.objective.is_some())
        .max_by(|a, b| a.objective.unwrap().total_cmp(&b.objective.unwrap()))
        .cloned()
        .ok_or_else(|| {
            let es_min = problem
                .service
                .moments(problem.tokens.clipped_moments(limits[0]).0, 0.0)
                .0;
            QueueError::Unstable {
                rho: problem.arrival_rate * es_min,
                max_stable_rate: 1.0 / es_min,
                mean_service_s: es_min,
            }
        })?;
    let method = match problem.impatience {
        Some(Impatience {
            dekok_tijms: true, ..
        }) => Method::Approximation,
        _ => Method::Exact,
    };
    Ok(Optimum {
        best,
        curve,
        method,
    })
}

/// Integer refinement: the exact integer argmax within one grid step of the grid optimum.
pub fn refine(problem: &Problem<'_>, coarse: &Optimum, step: f64) -> Result<Optimum, QueueError> {
    let c = coarse.best.max_tokens;
    let lo = (c - step).max(1.0).ceil() as u64;
    let hi = (c + step).floor() as u64;
    let limits: Vec<f64> = (lo..=hi).map(|v| v as f64).collect();
    optimize(problem, &limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: f64 = 0.02203184157;
    const C: f64 = 0.7764157233;

    fn ln7() -> TokenDist {
        TokenDist::parse("lognormal:7,0.7").unwrap()
    }

    fn svc() -> LinearService {
        LinearService {
            per_token_s: A,
            intercept_s: C,
        }
    }

    #[test]
    fn math_9_3_step_utility() {
        let d = ln7();
        let p = Problem {
            tokens: &d,
            arrival_rate: 1.0 / 40.0,
            service: svc(),
            weight: 119.0 / 120.0,
            utility: &StepUtility,
            impatience: None,
        };
        for (l, u, w, f) in [
            (1300.0, 0.59600812, 15.79648502, 0.45940401),
            (1600.0, 0.70528271, 23.00000, 0.50773869),
            (1900.0, 0.78381893, 30.59946761, 0.52229154),
        ] {
            let pt = p.evaluate(l).unwrap();
            assert!((pt.expected_utility - u).abs() < 5e-9, "{l}");
            assert!((pt.mean_wait_s.unwrap() - w).abs() < 5e-6, "{l}");
            assert!((pt.objective.unwrap() - f).abs() < 5e-9, "{l}");
        }
        let opt = optimize(&p, &grid(100.0, 4000.0).unwrap()).unwrap();
        assert_eq!(opt.best.max_tokens, 1900.0);
        assert_eq!(opt.curve.len(), 40);
    }

    #[test]
    fn math_9_3_fraction_utility() {
        let d = ln7();
        let p = Problem {
            tokens: &d,
            arrival_rate: 1.0 / 40.0,
            service: svc(),
            weight: 119.0 / 120.0,
            utility: &FractionUtility,
            impatience: None,
        };
        for (l, u, f) in [
            (1300.0, 0.85777312, 0.71898763),
            (1600.0, 0.90576539, 0.70655068),
            (1900.0, 0.93600505, 0.67320944),
        ] {
            let pt = p.evaluate(l).unwrap();
            assert!(
                (pt.expected_utility - u).abs() < 5e-9,
                "{l}: {}",
                pt.expected_utility
            );
            assert!((pt.objective.unwrap() - f).abs() < 5e-9, "{l}");
        }
        let opt = optimize(&p, &grid(100.0, 4000.0).unwrap()).unwrap();
        assert_eq!(opt.best.max_tokens, 1300.0);
    }

    #[test]
    fn fraction_utility_generic_paths_agree_with_quadrature_definition() {
        // E[min(1, L/N)] = ∫ min(1, L/n) dF(n): compare the inverse-tail forms with a direct
        // discretisation of the same law (histogram of 200 000 quantile points).
        for spec in ["normal:800,300", "uniform:100,2000"] {
            let d = TokenDist::parse(spec).unwrap();
            let m = 200_000;
            let direct: f64 = (0..m)
                .map(|i| {
                    let n = d.quantile((i as f64 + 0.5) / m as f64);
                    (1000.0 / n).min(1.0)
                })
                .sum::<f64>()
                / m as f64;
            let u = FractionUtility.expected(&d, 1000.0);
            assert!((u - direct).abs() < 1e-5, "{spec}: {u} vs {direct}");
        }
    }

    #[test]
    fn paper_patient_figures() {
        // P(N < 1600) = 70.53%, E[W_q](1600) = 23 s, −58.93% vs L = 3000 (docs/models.md §3).
        let d = ln7();
        let p = Problem {
            tokens: &d,
            arrival_rate: 1.0 / 40.0,
            service: svc(),
            weight: 119.0 / 120.0,
            utility: &StepUtility,
            impatience: None,
        };
        let a = p.evaluate(1600.0).unwrap();
        let b = p.evaluate(3000.0).unwrap();
        assert!((100.0 * a.expected_utility - 70.53).abs() < 0.005);
        assert!((a.mean_wait_s.unwrap() - 23.0).abs() < 5e-5);
        let drop = 100.0 * (a.mean_wait_s.unwrap() / b.mean_wait_s.unwrap() - 1.0);
        assert!((drop + 58.93).abs() < 0.005, "{drop}");
    }

    #[test]
    fn impatient_objective_uses_loss_and_eq9_wait() {
        let d = ln7();
        let imp = Impatience {
            patience_s: 60.0,
            lost_cost: 4.0,
            abandonment: Abandonment::Renege,
            dekok_tijms: false,
            grid: 4000,
        };
        let p = Problem {
            tokens: &d,
            arrival_rate: 0.04,
            service: svc(),
            weight: 0.95,
            utility: &StepUtility,
            impatience: Some(imp),
        };
        let pt = p.evaluate(1300.0).unwrap();
        // docs/models.md §9.2 B3: π = 0.1131288, E[W_q] = 26.76496.
        assert!((pt.loss_fraction.unwrap() - 0.1131288).abs() < 1e-7);
        assert!((pt.mean_wait_s.unwrap() - 26.76496).abs() < 1e-5);
        let f = 0.95 * 0.59600812 - 0.05 * 26.76496 - 4.0 * 0.1131288;
        assert!((pt.objective.unwrap() - f).abs() < 1e-6);
        // With ρ > 1 at large L the impatient model stays feasible.
        assert!(p.evaluate(3000.0).unwrap().objective.is_some());
    }

    #[test]
    fn shared_solve_above_the_saturation_limit_equals_direct_solves() {
        let d = ln7();
        let p = Problem {
            tokens: &d,
            arrival_rate: 0.04,
            service: svc(),
            weight: 0.95,
            utility: &StepUtility,
            impatience: Some(Impatience {
                patience_s: 60.0,
                lost_cost: 4.0,
                abandonment: Abandonment::Renege,
                dekok_tijms: false,
                grid: 2000,
            }),
        };
        // (60 − c)/a ≈ 2688: 2700..4000 use the shared solve.
        let limits: Vec<f64> = (25..=40).map(|k| 100.0 * k as f64).collect();
        let opt = optimize(&p, &limits).unwrap();
        for pt in &opt.curve {
            let direct = p.evaluate(pt.max_tokens).unwrap();
            let (a, b) = (pt.loss_fraction.unwrap(), direct.loss_fraction.unwrap());
            assert!((a - b).abs() < 1e-9, "L={}: {a} vs {b}", pt.max_tokens);
            let (a, b) = (pt.mean_wait_s.unwrap(), direct.mean_wait_s.unwrap());
            assert!((a - b).abs() < 1e-7, "L={}: {a} vs {b}", pt.max_tokens);
        }
    }

    #[test]
    fn unstable_limits_are_infeasible_and_all_unstable_is_an_error() {
        let d = ln7();
        let mut p = Problem {
            tokens: &d,
            arrival_rate: 0.035,
            service: svc(),
            weight: 0.99,
            utility: &StepUtility,
            impatience: None,
        };
        let opt = optimize(&p, &grid(100.0, 4000.0).unwrap()).unwrap();
        assert!(opt.curve.iter().any(|c| c.objective.is_none()));
        assert!(opt.best.utilisation < 1.0);
        p.arrival_rate = 10.0;
        assert!(matches!(
            optimize(&p, &grid(100.0, 4000.0).unwrap()),
            Err(QueueError::Unstable { .. })
        ));
    }

    #[test]
    fn refine_finds_integer_argmax() {
        let d = ln7();
        let p = Problem {
            tokens: &d,
            arrival_rate: 1.0 / 40.0,
            service: svc(),
            weight: 119.0 / 120.0,
            utility: &StepUtility,
            impatience: None,
        };
        let coarse = optimize(&p, &grid(100.0, 4000.0).unwrap()).unwrap();
        let fine = refine(&p, &coarse, 100.0).unwrap();
        assert!(fine.best.objective.unwrap() >= coarse.best.objective.unwrap());
        assert!((fine.best.max_tokens - 1900.0).abs() <= 100.0);
        // Its neighbours are no better.
        for dl in [-1.0, 1.0] {
            let n = p.evaluate(fine.best.max_tokens + dl).unwrap();
            assert!(n.objective.unwrap() <= fine.best.objective.unwrap());
        }
    }
}
