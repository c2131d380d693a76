//! Served-user wait and sojourn laws against independent references: the M/M/1+D closed form
//! (derived below, ρ < 1, = 1 and > 1) and, for long patience with ρ < 1, the patient M/G/1
//! distribution of `queueing::waiting` (an FFT lattice solve of the compound-geometric law, a
//! different algorithm).
//!
//! **M/M/1+D closed form.** Exponential service (rate μ), θ = μ − λ. On (0, τ) the level-crossing
//! density `f(x) = λP0 e^{−μx} + λ∫_0^x f(y) e^{−μ(x−y)} dy` is solved by `f = A e^{−θx}`:
//! substituting gives `(λP0 − A)e^{−μx} + A e^{−θx}`, so `A = λP0` and
//! `F(x) = P(V ≤ x)/P0 = 1 + (λ/θ)(1 − e^{−θx})` (θ = 0: `1 + λx`), hence
//! `P(W ≤ x | served) = F(x)/F(τ)`. For the sojourn, with W's atom `1/F(τ)` at 0 and density
//! `λe^{−θw}/F(τ)` on (0, τ): `P(W + S > t | served) = e^{−μt + λ·min(t, τ)}/F(τ) + P(W > t |
//! served)` (the integral `∫_0^m λe^{−θw}e^{−μ(t−w)}dw = e^{−μt}(e^{λm} − 1)`). As τ → ∞ with
//! θ > 0 this is `e^{−θt}`, the M/M/1 sojourn.

use super::*;
use crate::impatience::{Abandonment, mm1d};
use crate::mg1::LinearService;
use crate::waiting::{WaitOptions, waiting_distribution_law};

struct Mm1d {
    lambda: f64,
    mu: f64,
    tau: f64,
}

impl Mm1d {
    fn f(&self, x: f64) -> f64 {
        let theta = self.mu - self.lambda;
        if theta == 0.0 {
            1.0 + self.lambda * x
        } else {
            1.0 + self.lambda / theta * (-(-theta * x).exp_m1())
        }
    }
    fn cdf_wait(&self, x: f64) -> f64 {
        if x >= self.tau {
            1.0
        } else {
            self.f(x) / self.f(self.tau)
        }
    }
    fn sf_sojourn(&self, t: f64) -> f64 {
        let m = t.min(self.tau);
        (-self.mu * t + self.lambda * m).exp() / self.f(self.tau) + 1.0 - self.cdf_wait(t)
    }
    /// Inverse of `cdf_wait` for p above the atom.
    fn quantile_wait(&self, p: f64) -> f64 {
        let theta = self.mu - self.lambda;
        let target = p * self.f(self.tau) - 1.0; // (λ/θ)(1 − e^{−θx}), or λx
        if target <= 0.0 {
            return 0.0; // within the atom at 0
        }
        if theta == 0.0 {
            target / self.lambda
        } else {
            -(1.0 - target * theta / self.lambda).ln() / theta
        }
    }
}

#[test]
fn mm1d_closed_form_wait_sojourn_and_quantiles() {
    // ρ = 0.5, 1 (θ = 0) and 1.5, two patiences each; μ = 1/s.
    for &(lambda, tau) in &[
        (0.5, 2.0),
        (0.5, 6.0),
        (1.0, 3.0),
        (1.0, 10.0),
        (1.5, 2.0),
        (1.5, 8.0),
    ] {
        let cf = Mm1d {
            lambda,
            mu: 1.0,
            tau,
        };
        let law = ServiceLaw::Exponential { mean_s: 1.0 };
        let d = served_wait_distribution(&law, lambda, tau, 2000).unwrap();
        let what = format!("λ = {lambda}, τ = {tau}");
        assert_eq!(d.method, Method::Exact);
        assert!(!d.truncated, "{what}");
        // The stated tolerance is small and bounds the true error.
        assert!(d.tolerance < 1e-6, "{what}: tolerance {}", d.tolerance);
        let mut worst_w: f64 = 0.0;
        let mut worst_s: f64 = 0.0;
        for i in 0..=400 {
            let x = tau * 1.2 * i as f64 / 400.0;
            worst_w = worst_w.max((d.cdf_wait(x) - cf.cdf_wait(x)).abs());
            worst_s = worst_s.max((d.cdf_sojourn(x) - (1.0 - cf.sf_sojourn(x))).abs());
        }
        assert!(
            worst_w <= d.tolerance,
            "{what}: wait error {worst_w} > {}",
            d.tolerance
        );
        assert!(
            worst_s <= d.tolerance,
            "{what}: sojourn error {worst_s} > {}",
            d.tolerance
        );
        assert!((d.prob_no_wait - 1.0 / cf.f(tau)).abs() <= d.tolerance);
        for &p in &[0.5, 0.9, 0.99] {
            let q = d.quantile_wait(p).unwrap();
            let err = d.quantile_wait_error(p).unwrap();
            let exact = cf.quantile_wait(p);
            assert!(
                (q - exact).abs() <= err.max(1e-9 * tau),
                "{what} p = {p}: wait quantile {q} vs {exact} (error estimate {err})"
            );
            assert!((q - exact).abs() < 1e-6 * tau, "{what} p = {p}");
            // The sojourn quantile solves the closed-form CDF.
            let qs = d.quantile_sojourn(p).unwrap();
            let ps = 1.0 - cf.sf_sojourn(qs);
            assert!(
                (ps - p).abs() <= d.tolerance,
                "{what} p = {p}: closed-form CDF at the sojourn quantile {qs} is {ps}"
            );
            assert!(d.quantile_sojourn_error(p).unwrap() < 1e-5 * tau, "{what}");
        }
        // The mean agrees with the M/M/1+D closed form of E[W_qs].
        let m = mm1d(lambda, 1.0, tau, Abandonment::Renege).unwrap();
        assert!(
            (d.mean_wait_s - m.mean_wait_served_s).abs() <= 1e-7 * tau,
            "{what}: mean {} vs {}",
            d.mean_wait_s,
            m.mean_wait_served_s
        );
    }
}

/// Long patience, ρ < 1: the served law is the patient M/G/1 law (π ≈ 0); quantiles agree with
/// `queueing::waiting` (an independent algorithm, CDF to 1e-7) within the stated error estimate
/// of each quantile plus 1e-6 relative, and within 1e-4 relative in any case (measured at
/// n = 8000: ≤ 3e-6 relative for the clipped lognormal, 1.5e-5 for the sharegpt histogram, whose
/// many atoms put kinks between nodes; the linear interpolation between nodes dominates).
#[test]
fn long_patience_matches_the_patient_distribution() {
    let svc = LinearService {
        per_token_s: 0.02203184157,
        intercept_s: 0.7764157233,
    };
    let cases = [
        (
            "lognormal",
            ServiceLaw::Tokens {
                tokens: TokenDist::parse("lognormal:7,0.7").unwrap(),
                max_tokens: 1600.0,
                service: svc,
            },
            0.025,
        ),
        (
            "sharegpt",
            ServiceLaw::Tokens {
                tokens: TokenDist::parse("sharegpt").unwrap(),
                max_tokens: 1000.0,
                service: svc,
            },
            0.07,
        ),
        ("exponential", ServiceLaw::Exponential { mean_s: 2.0 }, 0.4),
    ];
    for (name, law, lambda) in cases {
        let patient = waiting_distribution_law(&law, lambda, &WaitOptions::default()).unwrap();
        let d = served_wait_distribution(&law, lambda, 1e5, DEFAULT_SERVED_GRID).unwrap();
        assert!(d.truncated && d.extent_s < 1e5, "{name}");
        assert!(d.tolerance < 1e-4, "{name}: tolerance {}", d.tolerance);
        for &p in &[0.5, 0.9, 0.99] {
            for (what, ours, err, theirs) in [
                (
                    "wait",
                    d.quantile_wait(p).unwrap(),
                    d.quantile_wait_error(p).unwrap(),
                    patient.quantile_wait(p).unwrap(),
                ),
                (
                    "sojourn",
                    d.quantile_sojourn(p).unwrap(),
                    d.quantile_sojourn_error(p).unwrap(),
                    patient.quantile_sojourn(p).unwrap(),
                ),
            ] {
                let scale = theirs.max(d.step_s);
                assert!(
                    (ours - theirs).abs() <= err + 1e-6 * scale,
                    "{name} {what} p = {p}: {ours} vs patient {theirs} (error estimate {err})"
                );
                assert!(
                    (ours - theirs).abs() <= 1e-4 * scale,
                    "{name} {what} p = {p}: {ours} vs patient {theirs}"
                );
            }
        }
        // ∫|ΔC| over the extent bounds the error of the mean.
        assert!(
            (d.mean_wait_s - patient.mean_wait_s).abs() <= d.tolerance * d.extent_s,
            "{name}: mean {} vs {}",
            d.mean_wait_s,
            patient.mean_wait_s
        );
    }
}

#[test]
fn bad_inputs_are_refused() {
    let law = ServiceLaw::Exponential { mean_s: 1.0 };
    assert!(served_wait_distribution(&law, 0.5, 0.0, 100).is_err());
    assert!(served_wait_distribution(&law, -1.0, 1.0, 100).is_err());
    assert!(served_wait_distribution(&law, 0.5, 1.0, 1).is_err());
    assert!(served_wait_distribution(&law, 0.5, 1.0, MAX_GRID_CELLS).is_err());
    let d = served_wait_distribution(&law, 0.5, 1.0, 100).unwrap();
    assert!(d.quantile_wait(1.0).is_err() && d.quantile_sojourn(0.0).is_err());
}
