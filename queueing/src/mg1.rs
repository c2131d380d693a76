//! M/G/1 FCFS with a max-token limit (docs/models.md §1; paper §III-A, eqs. 1–5).
//!
//! Poisson(λ) arrivals, one server, FCFS, infinite buffer. A request wants N output tokens and
//! gets `N_L = min(N, L)`; its service time is linear in the generated tokens,
//! `S = a·N_L + c` (`a` = `per_token_s`, `c` = `intercept_s`). Then (paper eqs. 3–4)
//! `E[S] = a E[N_L] + c`, `E[S²] = a² E[N_L²] + 2ac E[N_L] + c²`, `ρ = λ E[S]`, and the
//! Pollaczek–Khinchine mean wait in queue (paper eqs. 1, 5) `E[W_q] = λ E[S²] / (2(1 − ρ))`,
//! mean sojourn `E[W_q] + E[S]`. Exact (up to floating point) for every token law.
//! Stability needs `ρ < 1`; otherwise [`QueueError::Unstable`] names ρ and the largest stable
//! arrival rate `1/E[S]`.

use serde::Serialize;

use crate::Method;
use crate::dist::TokenDist;

/// Errors of the single-server models.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueueError {
    /// `ρ = λ E[S] ≥ 1` in a model without impatience.
    #[error(
        "unstable queue: utilisation rho = {rho:.4} >= 1; the largest stable arrival rate is \
         {max_stable_rate:.6} req/s (1/E[S], E[S] = {mean_service_s:.4} s) — lower the arrival \
         rate or the max-token limit, or add a patience"
    )]
    Unstable {
        rho: f64,
        max_stable_rate: f64,
        mean_service_s: f64,
    },
    /// A parameter is out of range (`what` names it the way the CLI does).
    #[error("invalid {what}: {why}")]
    Invalid { what: &'static str, why: String },
    /// A closed form was asked for outside the range where it is accurate in f64.
    #[error("{0}")]
    OutOfRange(String),
    /// A service-line parameter is out of range.
    #[error(transparent)]
    Parameter(#[from] tokenq_core::error::InvalidParameter),
}

pub use tokenq_core::LinearService;

/// Check an arrival rate: finite and `> 0`.
pub fn validate_rate(lambda: f64) -> Result<(), QueueError> {
    if lambda.is_finite() && lambda > 0.0 {
        Ok(())
    } else {
        Err(QueueError::Invalid {
            what: "arrival_rate",
            why: format!("must be a finite number > 0 req/s, got {lambda}"),
        })
    }
}

/// Check a max-token limit: `L ≥ 1` (or `+∞` for no limit), not NaN.
pub fn validate_limit(l: f64) -> Result<(), QueueError> {
    if l.is_nan() || l < 1.0 {
        Err(QueueError::Invalid {
            what: "max_tokens",
            why: format!("must be >= 1 token (or omitted for no limit), got {l}"),
        })
    } else {
        Ok(())
    }
}

/// Results of the M/G/1 model with clipping. Times in seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mg1Result {
    /// `E[N_L]` (tokens).
    pub mean_tokens: f64,
    /// `E[N_L²]` (tokens²).
    pub second_moment_tokens: f64,
    /// `E[S]` (s).
    pub mean_service_s: f64,
    /// `E[S²]` (s²).
    pub second_moment_service_s2: f64,
    /// Squared coefficient of variation of S, `E[S²]/E[S]² − 1`.
    pub service_scv: f64,
    /// `ρ = λ E[S]`.
    pub utilisation: f64,
    /// Largest stable arrival rate `1/E[S]` (req/s).
    pub max_stable_rate: f64,
    /// `E[W_q]`, mean wait in queue (s).
    pub mean_wait_s: f64,
    /// `E[W_q] + E[S]` (s).
    pub mean_sojourn_s: f64,
    /// How the numbers were obtained (always exact here).
    pub method: Method,
}

/// Pollaczek–Khinchine mean wait `λ E[S²] / (2(1 − ρ))` for given service moments.
pub fn pk_mean_wait(lambda: f64, es: f64, es2: f64) -> Result<f64, QueueError> {
    let rho = lambda * es;
    if rho >= 1.0 {
        return Err(QueueError::Unstable {
            rho,
            max_stable_rate: 1.0 / es,
            mean_service_s: es,
        });
    }
    Ok(lambda * es2 / (2.0 * (1.0 - rho)))
}

/// Solve M/G/1 with clipping at `max_tokens` (`f64::INFINITY` = no limit).
pub fn solve(
    tokens: &TokenDist,
    max_tokens: f64,
    arrival_rate: f64,
    service: LinearService,
) -> Result<Mg1Result, QueueError> {
    validate_rate(arrival_rate)?;
    validate_limit(max_tokens)?;
    service.validate()?;
    let (m1, m2) = tokens.clipped_moments(max_tokens);
    let (es, es2) = service.moments(m1, m2);
    let w = pk_mean_wait(arrival_rate, es, es2)?;
    Ok(Mg1Result {
        mean_tokens: m1,
        second_moment_tokens: m2,
        mean_service_s: es,
        second_moment_service_s2: es2,
        service_scv: (es2 / (es * es) - 1.0).max(0.0),
        utilisation: arrival_rate * es,
        max_stable_rate: 1.0 / es,
        mean_wait_s: w,
        mean_sojourn_s: w + es,
        method: Method::Exact,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::Empirical;

    const A_IMPLIED: f64 = 0.02203184157;
    const C_IMPLIED: f64 = 0.7764157233;

    fn implied() -> LinearService {
        LinearService {
            per_token_s: A_IMPLIED,
            intercept_s: C_IMPLIED,
        }
    }

    fn close(x: f64, y: f64, tol: f64, what: &str) {
        assert!((x - y).abs() <= tol, "{what}: {x} vs {y}");
    }

    #[test]
    fn math_9_1_cases_a1_a2_a1b_a0() {
        let d = TokenDist::parse("lognormal:7,0.7").unwrap();
        // (L, E[S], E[S²], ρ, E[W_q]) from docs/models.md §9.1.
        let cases = [
            (1600.0, 24.63351910, 706.858121, 0.61583798, 23.00000),
            (3000.0, 29.50866317, 1175.070596, 0.73771658, 56.00195),
            (1300.0, 22.34390531, 557.808470, 0.55859763, 15.79649),
            (
                f64::INFINITY,
                31.64483008,
                1603.903475,
                0.79112075,
                95.98270,
            ),
        ];
        for (l, es, es2, rho, w) in cases {
            let r = solve(&d, l, 1.0 / 40.0, implied()).unwrap();
            close(r.mean_service_s, es, 5e-9, "E[S]");
            close(r.second_moment_service_s2, es2, 5e-7, "E[S²]");
            close(r.utilisation, rho, 5e-9, "rho");
            close(r.mean_wait_s, w, 5e-6, "E[W_q]");
            close(r.mean_sojourn_s, w + es, 5e-6, "sojourn");
            assert_eq!(r.method, Method::Exact);
        }
    }

    #[test]
    fn math_9_1_a3_table_i_fit() {
        let d = TokenDist::parse("lognormal:7,0.7").unwrap();
        let s = LinearService {
            per_token_s: 0.0229925,
            intercept_s: 0.186087,
        };
        let r = solve(&d, 1600.0, 1.0 / 40.0, s).unwrap();
        close(r.mean_service_s, 25.08343603, 5e-9, "E[S]");
        close(r.second_moment_service_s2, 738.141646, 5e-7, "E[S²]");
        close(r.utilisation, 0.6270859, 5e-8, "rho");
        close(r.mean_wait_s, 24.74235, 5e-6, "W");
        let r = solve(&d, 3000.0, 1.0 / 40.0, s).unwrap();
        close(r.mean_wait_s, 63.16732, 5e-6, "W(3000)");
    }

    #[test]
    fn math_9_1_a4_empirical() {
        let e = Empirical::from_weights(&[100.0, 500.0, 2000.0], &[0.5, 0.3, 0.2], "A4").unwrap();
        let s = LinearService {
            per_token_s: 0.02,
            intercept_s: 0.5,
        };
        let r = solve(&TokenDist::Empirical(e), 1000.0, 0.05, s).unwrap();
        close(r.mean_service_s, 8.5, 1e-12, "E[S]");
        close(r.second_moment_service_s2, 120.25, 1e-10, "E[S²]");
        close(r.utilisation, 0.425, 1e-12, "rho");
        close(r.mean_wait_s, 5.228261, 5e-7, "W");
    }

    #[test]
    fn md1_closed_form() {
        // Constant tokens: M/D/1, W = ρ D / (2 (1 − ρ)).
        let d = TokenDist::parse("const:100").unwrap();
        let s = LinearService {
            per_token_s: 0.01,
            intercept_s: 0.0,
        };
        let r = solve(&d, f64::INFINITY, 0.7, s).unwrap();
        close(r.mean_wait_s, 0.7 * 1.0 / (2.0 * 0.3), 1e-12, "M/D/1");
        assert_eq!(r.service_scv, 0.0);
        // Clipping a constant at 50 halves the service time.
        let r = solve(&d, 50.0, 0.7, s).unwrap();
        close(
            r.mean_wait_s,
            0.35 * 0.5 / (2.0 * 0.65),
            1e-12,
            "clipped M/D/1",
        );
    }

    #[test]
    fn mm1_closed_form_via_pk() {
        // Exponential service has E[S²] = 2/μ²; P-K gives ρ/(μ − λ).
        let (lambda, mu) = (0.8, 1.0);
        let w = pk_mean_wait(lambda, 1.0 / mu, 2.0 / (mu * mu)).unwrap();
        close(w, 0.8 / (mu - lambda), 1e-12, "M/M/1");
    }

    #[test]
    fn light_traffic_limit() {
        // ρ → 0: E[W_q]/λ → E[S²]/2.
        let d = TokenDist::parse("lognormal:7,0.7").unwrap();
        let r = solve(&d, 1600.0, 1e-9, implied()).unwrap();
        close(r.mean_wait_s / 1e-9, 706.858121 / 2.0, 1e-5, "W/λ");
    }

    #[test]
    fn instability_names_rho_and_the_largest_stable_rate() {
        let d = TokenDist::parse("lognormal:7,0.7").unwrap();
        let err = solve(&d, 3000.0, 0.05, implied()).unwrap_err();
        match err {
            QueueError::Unstable {
                rho,
                max_stable_rate,
                ..
            } => {
                close(rho, 0.05 * 29.50866317, 1e-8, "rho");
                close(max_stable_rate, 1.0 / 29.50866317, 1e-10, "max rate");
            }
            e => panic!("{e}"),
        }
        let msg = solve(&d, 3000.0, 0.05, implied()).unwrap_err().to_string();
        assert!(
            msg.contains("rho = 1.4754") && msg.contains("0.033888 req/s"),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn bad_inputs() {
        let d = TokenDist::parse("lognormal:7,0.7").unwrap();
        for (l, lam) in [
            (1600.0, 0.0),
            (1600.0, -1.0),
            (1600.0, f64::NAN),
            (0.5, 0.01),
            (f64::NAN, 0.01),
        ] {
            assert!(matches!(
                solve(&d, l, lam, implied()),
                Err(QueueError::Invalid { .. })
            ));
        }
        let bad = LinearService {
            per_token_s: f64::NAN,
            intercept_s: 1.0,
        };
        assert!(solve(&d, 1600.0, 0.01, bad).is_err());
    }
}
