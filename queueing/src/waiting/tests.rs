//! The waiting-time distribution against closed forms (M/M/1, M/D/1 — Erlang's formula), against
//! the Pollaczek–Khinchine mean of docs/models.md §9.1, against an independent numerical
//! inversion of the Pollaczek–Khinchine transform (Abate & Whitt's Euler algorithm) and for the
//! properties of quantiles. Run with `--nocapture` to see the errors achieved.

use super::*;
use crate::mg1;
use crate::numeric::gauss_legendre_on;
use proptest::prelude::*;

const A: f64 = 0.02203184157;
const C: f64 = 0.7764157233;
fn implied() -> LinearService {
    LinearService {
        per_token_s: A,
        intercept_s: C,
    }
}

fn opts() -> WaitOptions {
    WaitOptions::default()
}

/// `max_t |f(t) − g(t)|` over `t = 0, dt, 2dt, … ≤ t_max`.
fn max_err(t_max: f64, dt: f64, f: impl Fn(f64) -> f64, g: impl Fn(f64) -> f64) -> f64 {
    let mut worst: f64 = 0.0;
    let mut k = 0.0;
    while k * dt <= t_max {
        let t = k * dt;
        worst = worst.max((f(t) - g(t)).abs());
        k += 1.0;
    }
    worst
}

#[test]
fn mm1_wait_and_sojourn_match_the_closed_form() {
    for (mean, rho) in [(1.0, 0.3), (1.0, 0.7), (1.0, 0.95), (3.0, 0.7)] {
        let lambda = rho / mean;
        let theta = 1.0 / mean - lambda; // μ − λ
        let law = ServiceLaw::Exponential { mean_s: mean };
        let d = waiting_distribution_law(&law, lambda, &opts()).unwrap();
        assert_eq!(d.method, Method::Exact);
        assert!(d.tolerance <= DEFAULT_TOLERANCE);
        assert!((d.prob_no_wait - (1.0 - rho)).abs() < 1e-15);
        // The circular solve's wrap-around adds at most P(W_q > range) ≤ the tail option.
        assert!((d.cdf_wait(0.0) - (1.0 - rho)).abs() <= DEFAULT_TAIL);
        assert_eq!(d.cdf_wait(-1.0), 0.0);
        // Over the grid range (P(W_q > t) down to 1e-10) with a step that is no multiple of h.
        let t_max = d.range_s;
        let dt = t_max / 9973.0;
        let ew = max_err(t_max, dt, |t| d.sf_wait(t), |t| rho * (-theta * t).exp());
        let ec = max_err(
            t_max,
            dt,
            |t| d.cdf_wait(t),
            |t| 1.0 - rho * (-theta * t).exp(),
        );
        let es = max_err(t_max, dt, |t| d.sf_sojourn(t), |t| (-theta * t).exp());
        eprintln!(
            "M/M/1 E[S]={mean} rho={rho}: max |error| wait {ew:.2e}, sojourn {es:.2e} \
             (stated tolerance {:.2e}, h = {:.4} s, FFT {})",
            d.tolerance, d.step_s, d.fft_size
        );
        assert!(ew.max(ec).max(es) <= 1e-8, "{ew} {ec} {es}");
        // Beyond the grid (tail below 1e-10) the tail is extended exponentially, the asymptote
        // of M/M/1; the decay rate comes from grid values near 1e-10 (relative error ~1e-4).
        for f in [1.1, 1.5] {
            let t = f * d.range_s;
            let rel = d.sf_wait(t) / (rho * (-theta * t).exp()) - 1.0;
            assert!(rel.abs() < 1e-3, "tail at {t}: {rel}");
        }
        // Quantiles: q_W(p) = ln(ρ/(1 − p))/(μ − λ) for p > 1 − ρ, q_T(p) = ln(1/(1 − p))/(μ − λ).
        for p in [0.5, 0.8, 0.9, 0.99, 0.999, 0.999999] {
            let qw = d.quantile_wait(p).unwrap();
            let exact_w = if p <= 1.0 - rho {
                0.0
            } else {
                (rho / (1.0 - p)).ln() / theta
            };
            assert!(
                (qw - exact_w).abs() <= 1e-6 * exact_w.max(1.0),
                "{p}: {qw} vs {exact_w}"
            );
            let qt = d.quantile_sojourn(p).unwrap();
            let exact_t = (1.0 / (1.0 - p)).ln() / theta;
            assert!(
                (qt - exact_t).abs() <= 1e-6 * exact_t,
                "{p}: {qt} vs {exact_t}"
            );
        }
    }
}

/// Erlang's M/D/1 waiting-time formula
/// `P(W_q ≤ t) = (1−ρ) Σ_{k=0}^{⌊t/D⌋} [λ(kD − t)]^k / k! · e^{−λ(kD − t)}`.
/// The alternating terms stay below ~1e4 for t ≤ 10 D and ρ ≤ 0.8, so the sum is good to ~1e-12.
fn erlang_md1_cdf(lambda: f64, d: f64, t: f64) -> f64 {
    let kmax = (t / d).floor() as usize;
    let mut sum = 0.0;
    for k in 0..=kmax {
        let u = lambda * (k as f64 * d - t);
        let mut term = 1.0;
        for j in 1..=k {
            term *= u / j as f64;
        }
        sum += term * (-u).exp();
    }
    (1.0 - lambda * d) * sum
}

#[test]
fn md1_matches_erlangs_formula() {
    // D = 1 s from const:100 tokens at 0.01 s/token (the token path), D = 2.5 s directly.
    let tokens = TokenDist::parse("const:100").unwrap();
    let per_token = LinearService {
        per_token_s: 0.01,
        intercept_s: 0.0,
    };
    for rho in [0.3, 0.5, 0.8] {
        for (dd, tok) in [(1.0, true), (2.5, false)] {
            let lambda = rho / dd;
            let d = if tok {
                waiting_distribution(&tokens, f64::INFINITY, lambda, per_token, &opts()).unwrap()
            } else {
                let law = ServiceLaw::Deterministic { value_s: dd };
                waiting_distribution_law(&law, lambda, &opts()).unwrap()
            };
            let dt = 0.00731 * dd;
            let ew = max_err(
                10.0 * dd,
                dt,
                |t| d.cdf_wait(t),
                |t| erlang_md1_cdf(lambda, dd, t),
            );
            // Sojourn = W_q + D.
            let es = max_err(
                10.0 * dd,
                dt,
                |t| d.cdf_sojourn(t + dd),
                |t| erlang_md1_cdf(lambda, dd, t),
            );
            eprintln!(
                "M/D/1 D={dd} rho={rho}: max |error| wait {ew:.2e}, sojourn {es:.2e} \
                 (stated tolerance {:.2e}, h = {:.4} s)",
                d.tolerance, d.step_s
            );
            assert!(ew.max(es) <= 1e-8, "{ew} {es}");
            assert_eq!(d.cdf_sojourn(0.999 * dd), 0.0);
            // The sojourn has an atom (1 − ρ) at D.
            let jump = d.cdf_sojourn(dd) - d.cdf_sojourn(dd * (1.0 - 1e-9));
            assert!((jump - (1.0 - rho)).abs() < 1e-8, "{jump}");
        }
    }
}

#[test]
fn zero_slope_is_deterministic_service() {
    // a = 0: S = c whatever the tokens: M/D/1 again, through the token path.
    let tokens = TokenDist::parse("lognormal:7,0.7").unwrap();
    let s = LinearService {
        per_token_s: 0.0,
        intercept_s: 2.0,
    };
    let lambda = 0.35;
    let d = waiting_distribution(&tokens, 1600.0, lambda, s, &opts()).unwrap();
    let e = max_err(
        20.0,
        0.0137,
        |t| d.cdf_wait(t),
        |t| erlang_md1_cdf(lambda, 2.0, t),
    );
    assert!(e <= 1e-8, "{e}");
}

/// `∫_0^∞ sf(t) dt` by the composite 2-point Gauss rule on panels of width `dt` (fourth order
/// on each smooth piece; no node on a panel boundary, so a jump there costs nothing) until the
/// integrand is below 1e-15.
fn integral(sf: impl Fn(f64) -> f64, dt: f64) -> f64 {
    let off = 0.5 * dt / 3f64.sqrt();
    let mut sum = 0.0;
    let mut k = 0.0;
    loop {
        let mid = (k + 0.5) * dt;
        let (a, b) = (sf(mid - off), sf(mid + off));
        sum += 0.5 * dt * (a + b);
        k += 1.0;
        if b < 1e-15 {
            return sum;
        }
    }
}

#[test]
fn integrated_cdf_gives_the_pollaczek_khinchine_mean() {
    // docs/models.md §9.1 A1: lognormal(7, 0.7), L = 1600, implied a, c, λ = 1/40: E[W_q] = 23.000.
    let ln = TokenDist::parse("lognormal:7,0.7").unwrap();
    let sg = TokenDist::parse("sharegpt").unwrap();
    let s_l = A * 1600.0 + C;
    let cases: [(&TokenDist, f64, f64, &str); 4] = [
        (&ln, 1600.0, 0.025, "lognormal A1"),
        (&ln, 1600.0, 0.7 / 24.63351910, "lognormal rho=0.7"),
        (&sg, f64::INFINITY, 0.025, "sharegpt lambda=0.025"),
        (&sg, f64::INFINITY, 0.06703939, "sharegpt rho=0.7"),
    ];
    for (tokens, l, lambda, name) in cases {
        let r = mg1::solve(tokens, l, lambda, implied()).unwrap();
        if name == "lognormal A1" {
            assert!((r.mean_wait_s - 23.0).abs() < 5e-6);
        }
        let d = waiting_distribution(tokens, l, lambda, implied(), &opts()).unwrap();
        assert_eq!(d.mean_wait_s, r.mean_wait_s);
        assert!((d.utilisation - r.utilisation).abs() < 1e-15);
        // The kinks of P(W_q > t) sit at the atoms of S (and their sums). For the lognormal the
        // only atom is a·L + c: panels dividing it; for the histogram small panels.
        let dt = if l.is_finite() { s_l / 400.0 } else { 0.002 };
        let mean = integral(|t| d.sf_wait(t), dt);
        let rel = mean / r.mean_wait_s - 1.0;
        eprintln!(
            "{name}: ∫P(W_q > t)dt = {mean:.9} vs P-K {:.9}: relative error {rel:.2e} \
             (tolerance {:.2e}, h = {:.4} s)",
            r.mean_wait_s, d.tolerance, d.step_s
        );
        assert!(rel.abs() < 1e-6, "{name}: {rel}");
        if l.is_finite() {
            // The sojourn jumps at a·L + c (an atom of mass (1 − ρ)P(N ≥ L)), a panel boundary.
            let ms = integral(|t| d.sf_sojourn(t), dt);
            let rel = ms / r.mean_sojourn_s - 1.0;
            eprintln!("{name}: ∫P(W_q + S > t)dt relative error {rel:.2e}");
            assert!(rel.abs() < 1e-6, "{name} sojourn: {rel}");
        }
    }
}

/// Abate & Whitt's EULER algorithm (ORSA J. Computing 7(1), 1995, §1–2) for `f(t)` from its
/// Laplace transform: discretisation error about `e^{−A}` times the bound of `f`.
fn euler_inversion(f_hat: impl Fn(f64, f64) -> (f64, f64), t: f64) -> f64 {
    const EULER_A: f64 = 18.4;
    const EULER_N: usize = 30;
    const EULER_M: usize = 11;
    let term = |k: usize| {
        let (re, _) = f_hat(EULER_A / (2.0 * t), k as f64 * std::f64::consts::PI / t);
        if k == 0 { 0.5 * re } else { re }
    };
    let mut partial = Vec::with_capacity(EULER_N + EULER_M + 1);
    let mut s = 0.0;
    for k in 0..=EULER_N + EULER_M {
        let sign = if k % 2 == 0 { 1.0 } else { -1.0 };
        s += sign * term(k);
        partial.push(s);
    }
    let mut binom = 1.0;
    let mut acc = 0.0;
    for k in 0..=EULER_M {
        acc += binom * partial[EULER_N + k];
        binom *= (EULER_M - k) as f64 / (k + 1) as f64;
    }
    acc * 2f64.powi(-(EULER_M as i32)) * (EULER_A / 2.0).exp() / t
}

/// `E[e^{−sS}]` for `S = a·N + c`, `ln N ~ Normal(μ, σ²)` (no limit), `s = x + iy`, by
/// Gauss–Legendre in `z = (ln n − μ)/σ ∈ [−9, 6.5]` (mass left out: 4e-11) on panels narrow
/// enough for the oscillation `e^{−iyS}`.
fn lognormal_service_transform(mu: f64, sigma: f64, x: f64, y: f64) -> (f64, f64) {
    const Z_LO: f64 = -9.0;
    const Z_HI: f64 = 6.5;
    const NODES: usize = 16;
    let (mut re, mut im) = (0.0, 0.0);
    let mut a = Z_LO;
    while a < Z_HI {
        // dφ/dz = y·a_tok·n·σ: about 2 radians per panel.
        let speed = y.abs() * A * (mu + sigma * a).exp() * sigma;
        let w = (2.0 / speed.max(1e-9)).clamp(1e-4, 0.1).min(Z_HI - a);
        let (nodes, weights) = gauss_legendre_on(NODES, a, a + w);
        for (z, wt) in nodes.iter().zip(&weights) {
            let s = A * (mu + sigma * z).exp() + C;
            let m = wt * crate::numeric::norm_pdf(*z) * (-x * s).exp();
            re += m * (y * s).cos();
            im -= m * (y * s).sin();
        }
        a += w;
    }
    (re, im)
}

#[test]
fn lognormal_matches_an_independent_laplace_inversion() {
    // docs/models.md §9.1 A0 (no limit: S has a smooth density and P(W_q > t) is smooth on
    // t > 0, where the Euler algorithm is accurate). P(W_q > t) has the transform
    // (1 − W*(s))/s with the Pollaczek–Khinchine W*(s) = (1 − ρ)s/(s − λ(1 − S*(s))).
    let (mu, sigma, lambda) = (7.0, 0.7, 0.025);
    let tokens = TokenDist::parse("lognormal:7,0.7").unwrap();
    let d = waiting_distribution(&tokens, f64::INFINITY, lambda, implied(), &opts()).unwrap();
    let rho = d.utilisation;
    let tail_hat = |x: f64, y: f64| {
        let (sr, si) = lognormal_service_transform(mu, sigma, x, y);
        let (dr, di) = (x - lambda * (1.0 - sr), y + lambda * si); // s − λ(1 − S*(s))
        let (nr, ni) = ((1.0 - rho) * x, (1.0 - rho) * y);
        let den2 = dr * dr + di * di;
        let (wr, wi) = ((nr * dr + ni * di) / den2, (ni * dr - nr * di) / den2);
        let (ur, ui) = (1.0 - wr, -wi); // 1 − W*
        let s2 = x * x + y * y;
        ((ur * x + ui * y) / s2, (ui * x - ur * y) / s2)
    };
    let mut worst: f64 = 0.0;
    for t in [5.0, 20.0, 50.0, 96.0, 200.0, 400.0, 800.0] {
        let reference = euler_inversion(tail_hat, t);
        let err = (d.sf_wait(t) - reference).abs();
        worst = worst.max(err);
        assert!(err < 1e-7, "t = {t}: {} vs Euler {reference}", d.sf_wait(t));
    }
    eprintln!(
        "lognormal A0 vs Euler inversion: max |error| {worst:.2e} (tolerance {:.2e})",
        d.tolerance
    );
}

#[test]
fn quantiles_invert_the_cdf() {
    let ln = TokenDist::parse("lognormal:7,0.7").unwrap();
    let sg = TokenDist::parse("sharegpt").unwrap();
    let exp = ServiceLaw::Exponential { mean_s: 2.0 };
    let dists = [
        (
            "lognormal A1",
            waiting_distribution(&ln, 1600.0, 0.025, implied(), &opts()).unwrap(),
        ),
        (
            "sharegpt rho=0.7",
            waiting_distribution(&sg, f64::INFINITY, 0.06703939, implied(), &opts()).unwrap(),
        ),
        (
            "M/M/1 rho=0.9",
            waiting_distribution_law(&exp, 0.45, &opts()).unwrap(),
        ),
    ];
    for (name, d) in &dists {
        let mut worst: f64 = 0.0;
        for p in [0.5, 0.9, 0.99, 0.999] {
            let q = d.quantile_wait(p).unwrap();
            if p <= d.prob_no_wait {
                assert_eq!(q, 0.0);
                continue;
            }
            worst = worst.max((d.cdf_wait(q) - p).abs());
            assert!((d.cdf_wait(q) - p).abs() <= 1e-9, "{name} wait p={p}");
            // The sojourn CDF may jump (atoms of S): the smallest t with P(T ≤ t) ≥ p.
            let qt = d.quantile_sojourn(p).unwrap();
            let (at, before) = (d.cdf_sojourn(qt), d.cdf_sojourn(qt * (1.0 - 1e-9)));
            assert!(at >= p - 1e-9 && before <= p + 1e-9, "{name} sojourn p={p}");
            if at - before < 1e-9 {
                worst = worst.max((at - p).abs());
                assert!((at - p).abs() <= 1e-9, "{name} sojourn p={p}: {at}");
            }
        }
        eprintln!("{name}: max |cdf(quantile(p)) − p| = {worst:.2e}");
        assert_eq!(d.quantile_wait(d.prob_no_wait * 0.5).unwrap(), 0.0);
    }
}

#[test]
fn unstable_queue_is_reported_as_in_mg1() {
    let tokens = TokenDist::parse("lognormal:7,0.7").unwrap();
    let w = waiting_distribution(&tokens, 3000.0, 0.05, implied(), &opts()).unwrap_err();
    let m = mg1::solve(&tokens, 3000.0, 0.05, implied()).unwrap_err();
    assert_eq!(w, m);
    assert!(matches!(w, QueueError::Unstable { .. }));
    let exp = ServiceLaw::Exponential { mean_s: 1.0 };
    assert!(matches!(
        waiting_distribution_law(&exp, 1.0, &opts()),
        Err(QueueError::Unstable { .. })
    ));
}

#[test]
fn bad_inputs_are_errors() {
    let tokens = TokenDist::parse("lognormal:7,0.7").unwrap();
    for (l, lam) in [
        (1600.0, 0.0),
        (1600.0, -1.0),
        (1600.0, f64::NAN),
        (0.5, 0.01),
    ] {
        assert!(matches!(
            waiting_distribution(&tokens, l, lam, implied(), &opts()),
            Err(QueueError::Invalid { .. })
        ));
    }
    let bad = LinearService {
        per_token_s: f64::NAN,
        intercept_s: 1.0,
    };
    assert!(waiting_distribution(&tokens, 1600.0, 0.01, bad, &opts()).is_err());
    for o in [
        WaitOptions {
            tolerance: 0.0,
            ..opts()
        },
        WaitOptions {
            tail: f64::NAN,
            ..opts()
        },
        WaitOptions {
            max_grid: 16,
            ..opts()
        },
    ] {
        assert!(waiting_distribution(&tokens, 1600.0, 0.01, implied(), &o).is_err());
    }
    let d = waiting_distribution(&tokens, 1600.0, 0.01, implied(), &opts()).unwrap();
    for p in [0.0, 1.0, -0.1, 1.5, f64::NAN] {
        assert!(matches!(
            d.quantile_wait(p),
            Err(QueueError::Invalid { .. })
        ));
        assert!(d.quantile_sojourn(p).is_err());
    }
    // A grid too small for the tolerance is an error, not a silent loss of accuracy.
    let tight = WaitOptions {
        tolerance: 1e-15,
        max_grid: 1 << 12,
        ..opts()
    };
    assert!(matches!(
        waiting_distribution(&tokens, 1600.0, 0.01, implied(), &tight),
        Err(QueueError::OutOfRange(_))
    ));
}

/// Token laws of every kind, with a limit.
fn token_law() -> impl Strategy<Value = (TokenDist, f64)> {
    prop_oneof![
        (5.0f64..7.5, 0.3f64..1.2, 200.0f64..4000.0)
            .prop_map(|(mu, sigma, l)| (TokenDist::Lognormal { mu, sigma }, l)),
        (0.0f64..500.0, 100.0f64..2000.0)
            .prop_map(|(lo, w)| (TokenDist::Uniform { lo, hi: lo + w }, f64::INFINITY)),
        (200.0f64..800.0, 50.0f64..400.0, 300.0f64..1500.0).prop_map(|(mean, sd, l)| (
            TokenDist::TruncNormal {
                mean,
                sd,
                lo: 0.0,
                hi: f64::INFINITY
            },
            l
        )),
        prop::sample::select(vec!["sharegpt", "azure-conv", "arxiv"])
            .prop_map(|n| (TokenDist::parse(n).unwrap(), f64::INFINITY)),
        Just((
            TokenDist::Empirical(
                crate::dist::Empirical::from_weights(
                    &[100.0, 500.0, 2000.0],
                    &[0.5, 0.3, 0.2],
                    "A4"
                )
                .unwrap()
            ),
            1000.0
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn quantiles_are_monotone_in_p_and_in_the_rate(
        (tokens, l) in token_law(), rho in 0.05f64..0.9, bump in 0.005f64..0.05,
    ) {
        let (m1, m2) = tokens.clipped_moments(l);
        let es = implied().moments(m1, m2).0;
        let lam = rho / es;
        let d1 = waiting_distribution(&tokens, l, lam, implied(), &opts()).unwrap();
        let lam2 = (rho + bump) / es;
        let d2 = waiting_distribution(&tokens, l, lam2, implied(), &opts()).unwrap();
        prop_assert!(d1.tolerance <= DEFAULT_TOLERANCE && d2.tolerance <= DEFAULT_TOLERANCE);
        let ps = [0.01, 0.2, 0.5, 0.7, 0.9, 0.95, 0.99, 0.999, 0.9999];
        let slack = |q: f64| 1e-9 * (1.0 + q);
        let (mut w_prev, mut t_prev) = (0.0, 0.0);
        for p in ps {
            let (w1, t1) = (d1.quantile_wait(p).unwrap(), d1.quantile_sojourn(p).unwrap());
            let (w2, t2) = (d2.quantile_wait(p).unwrap(), d2.quantile_sojourn(p).unwrap());
            prop_assert!(w1 >= w_prev - slack(w1), "wait p={}: {} < {}", p, w1, w_prev);
            prop_assert!(t1 >= t_prev - slack(t1), "sojourn p={}: {} < {}", p, t1, t_prev);
            prop_assert!(t1 >= w1, "sojourn below wait");
            // A higher rate delays everybody: quantiles do not decrease (up to the CDF error).
            prop_assert!(w2 >= w1 - 1e-6 * (1.0 + w1), "wait p={}: {} < {}", p, w2, w1);
            prop_assert!(t2 >= t1 - 1e-6 * (1.0 + t1), "sojourn p={}: {} < {}", p, t2, t1);
            w_prev = w1;
            t_prev = t1;
        }
    }
}
