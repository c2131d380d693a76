//! Impatience models against docs/models.md §9.2 (independently computed reference values) and
//! closed-form limits.

use super::*;
use proptest::prelude::*;

const A: f64 = 0.02203184157;
const C: f64 = 0.7764157233;

fn ln_law(l: f64) -> ServiceLaw {
    ServiceLaw::Tokens {
        tokens: TokenDist::parse("lognormal:7,0.7").unwrap(),
        max_tokens: l,
        service: LinearService {
            per_token_s: A,
            intercept_s: C,
        },
    }
}

/// |x − y| ≤ half a unit in the last printed digit (closed forms).
fn printed(x: f64, y: f64, decimals: i32, what: &str) {
    within(x, y, 0.5 * 10f64.powi(-decimals) + 1e-12, what);
}

/// |x − y| ≤ one unit in the last printed digit: for values whose reference is itself a
/// numerical level-crossing solve (docs/models.md: n = 5000, ~1e-8 relative). Our solve converges
/// (n = 32000) to π(1300) = 0.11312888, P0 = 0.20735343 — within one unit of the printed
/// 0.1131288 / 0.2073535, not within half a unit.
fn printed_numeric(x: f64, y: f64, decimals: i32, what: &str) {
    within(x, y, 10f64.powi(-decimals) + 1e-12, what);
}

fn within(x: f64, y: f64, tol: f64, what: &str) {
    assert!((x - y).abs() <= tol, "{what}: {x} vs reference {y}");
}

#[test]
fn b1_mm1d_closed_form_and_level_crossing() {
    let r = mm1d(0.8, 1.0, 2.0, Abandonment::Renege).unwrap();
    printed(r.loss_fraction, 0.1878320744, 10, "π");
    printed(r.mean_wait_served_s, 0.5309130938, 10, "W_qs");
    printed(r.mean_wait_all_s, 0.8068547349, 10, "W_q renege");
    printed(r.prob_idle.unwrap(), 0.3502656595, 10, "P0");
    let b = mm1d(0.8, 1.0, 2.0, Abandonment::Balk).unwrap();
    printed(b.mean_wait_all_s, 0.4311905860, 10, "W_q balk");
    let e = exact(
        &ServiceLaw::Exponential { mean_s: 1.0 },
        0.8,
        2.0,
        DEFAULT_GRID,
        Abandonment::Renege,
    )
    .unwrap();
    printed(e.loss_fraction, 0.1878320744, 8, "π level crossing");
    printed(e.mean_wait_served_s, 0.5309130938, 8, "W_qs level crossing");
}

#[test]
fn b1b_mm1d_overload() {
    let r = mm1d(1.5, 1.0, 2.0, Abandonment::Renege).unwrap();
    printed(r.loss_fraction, 0.3984866944, 10, "π");
    printed(r.mean_wait_served_s, 0.9748416941, 10, "W_qs");
    printed(r.mean_wait_all_s, 1.3833536387, 10, "W_q");
    printed(r.prob_idle.unwrap(), 0.0977300416, 10, "P0");
    let b = mm1d(1.5, 1.0, 2.0, Abandonment::Balk).unwrap();
    printed(b.mean_wait_all_s, 0.5863802498, 10, "balk");
    // ρ = 1 exactly: π = 1/(2 + λτ).
    let r = mm1d(1.0, 1.0, 3.0, Abandonment::Renege).unwrap();
    printed(r.loss_fraction, 1.0 / 5.0, 12, "π at ρ = 1");
}

#[test]
fn b2_md1d_closed_form_and_level_crossing() {
    let r = md1d(0.8, 1.0, 2.0, Abandonment::Renege).unwrap();
    assert_eq!(r.solver, "md1d-closed-form");
    printed(r.loss_fraction, 0.1032989898, 10, "π");
    printed(r.mean_wait_served_s, 0.6611371781, 10, "W_qs");
    printed(r.mean_wait_all_s, 0.7994403551, 10, "W_q");
    printed(r.prob_idle.unwrap(), 0.2826391919, 10, "P0");
    let b = md1d(0.8, 1.0, 2.0, Abandonment::Balk).unwrap();
    printed(b.mean_wait_all_s, 0.5928423754, 10, "balk");
    let e = exact(
        &ServiceLaw::Deterministic { value_s: 1.0 },
        0.8,
        2.0,
        DEFAULT_GRID,
        Abandonment::Renege,
    )
    .unwrap();
    printed(e.loss_fraction, 0.1032989898, 8, "π level crossing");
    printed(e.mean_wait_served_s, 0.6611371781, 7, "W_qs level crossing");
    // mpmath reference, λ = 0.9, D = 1, τ = 10 (docs/models.md §9.2 extra check).
    let r = md1d(0.9, 1.0, 10.0, Abandonment::Renege).unwrap();
    printed(r.loss_fraction, 0.0131516308108, 12, "π(τ=10)");
    printed(r.mean_wait_served_s, 3.12366410327, 10, "W_qs(τ=10)");
}

#[test]
fn md1d_series_refused_beyond_tau_over_d_10_and_falls_back() {
    assert!(matches!(
        md1d_series(0.9, 1.0, 30.0, Abandonment::Renege),
        Err(QueueError::OutOfRange(_))
    ));
    let r = md1d(0.9, 1.0, 30.0, Abandonment::Renege).unwrap();
    assert_eq!(r.solver, "level-crossing");
    assert!(r.loss_fraction > 0.0 && r.loss_fraction < 0.0131516308108);
}

#[test]
fn b3_b4_exact_clipped_lognormal() {
    // (L, π, W_qs, W_q renege, W_q balk, P0) from docs/models.md §9.2.
    for (l, pi, wqs, wr, wb, p0) in [
        (1300.0, 0.1131288, 22.52551, 26.76496, 19.97722, 0.2073535),
        (3000.0, 0.2708955, 27.09992, 36.01240, 19.75867, 0.1394041),
    ] {
        let r = exact(
            &ln_law(l),
            1.0 / 25.0,
            60.0,
            DEFAULT_GRID,
            Abandonment::Renege,
        )
        .unwrap();
        printed_numeric(r.loss_fraction, pi, 7, "π");
        printed_numeric(r.mean_wait_served_s, wqs, 5, "W_qs");
        printed_numeric(r.mean_wait_all_s, wr, 5, "W_q");
        printed_numeric(r.prob_idle.unwrap(), p0, 7, "P0");
        let b = exact(
            &ln_law(l),
            1.0 / 25.0,
            60.0,
            DEFAULT_GRID,
            Abandonment::Balk,
        )
        .unwrap();
        printed_numeric(b.mean_wait_all_s, wb, 5, "balk");
        assert_eq!(b.loss_fraction, r.loss_fraction);
    }
}

#[test]
fn b3_b4_dekok_tijms() {
    // (L, c_S², π, W_qs, W_q, direct, π_M, W_M, π_D, W_D) from docs/models.md §9.2.
    for (l, cs2, pi, wqs, wq, direct, pm, wm, pd, wd) in [
        (
            1300.0, 0.117293, 0.1100570, 22.43341, 26.56786, 26.59624, 0.1787053, 19.32176,
            0.1009346, 22.84688,
        ),
        (
            3000.0, 0.349475, 0.2659553, 27.77145, 36.34280, 36.42674, 0.3040153, 23.66622,
            0.2455083, 29.97687,
        ),
    ] {
        let r = dekok_tijms(&ln_law(l), 1.0 / 25.0, 60.0, Abandonment::Renege).unwrap();
        printed(r.combined.service_scv, cs2, 6, "c_S²");
        // The reference's combined π is 3–4e-7 above (1 − c²)π_D + c²π_M evaluated with its own
        // printed parts (e.g. B3: 0.1009346 + 0.117293·(0.1787053 − 0.1009346) = 0.1100566), so
        // π is checked to 5e-7 here and the parts below to their printed digits.
        within(r.combined.loss_fraction, pi, 5e-7, "π");
        printed_numeric(r.combined.mean_wait_served_s, wqs, 5, "W_qs");
        printed_numeric(r.combined.mean_wait_all_s, wq, 5, "W_q");
        printed_numeric(r.mean_wait_all_direct_s, direct, 5, "direct");
        printed(r.exponential.loss_fraction, pm, 7, "π_M");
        printed(r.exponential.mean_wait_served_s, wm, 5, "W_M");
        printed(r.deterministic.loss_fraction, pd, 7, "π_D");
        printed(r.deterministic.mean_wait_served_s, wd, 5, "W_D");
        assert_eq!(r.combined.method, Method::Approximation);
    }
}

#[test]
fn section_v_b_table() {
    // docs/models.md §9.2 "Table for §V-B": (L, π exact, W_q exact, W_qs exact, π DKT, W_q DKT, W_qs DKT).
    for (l, pe, we, wse, pd, wd, wsd) in [
        (500.0, 0.00023, 4.8280, 4.8152, 0.00038, 4.8164, 4.7956),
        (1000.0, 0.05274, 20.2521, 18.0392, 0.05181, 20.0060, 17.8206),
        (1600.0, 0.16366, 30.5724, 24.8139, 0.15924, 30.4889, 24.8993),
        (2000.0, 0.21125, 33.3799, 26.2502, 0.20609, 33.4413, 26.5472),
    ] {
        let r = exact(&ln_law(l), 0.04, 60.0, DEFAULT_GRID, Abandonment::Renege).unwrap();
        printed(r.loss_fraction, pe, 5, "π");
        printed(r.mean_wait_all_s, we, 4, "W_q");
        printed(r.mean_wait_served_s, wse, 4, "W_qs");
        let d = dekok_tijms(&ln_law(l), 0.04, 60.0, Abandonment::Renege)
            .unwrap()
            .combined;
        printed(d.loss_fraction, pd, 5, "π DKT");
        printed(d.mean_wait_all_s, wd, 4, "W_q DKT");
        printed(d.mean_wait_served_s, wsd, 4, "W_qs DKT");
    }
}

#[test]
fn dekok_tijms_refuses_scv_above_one() {
    let law = ServiceLaw::Tokens {
        tokens: TokenDist::parse("lognormal:5,1.5").unwrap(),
        max_tokens: f64::INFINITY,
        service: LinearService {
            per_token_s: 0.02,
            intercept_s: 0.0,
        },
    };
    let e = dekok_tijms(&law, 0.1, 10.0, Abandonment::Renege).unwrap_err();
    assert!(e.to_string().contains("c_S^2"), "{e}");
}

#[test]
fn light_traffic_limits() {
    // ρ → 0: π/λ → E[(S − τ)^+], E[W_qs]/λ → E[min(S, τ)²]/2 (derived from F ≈ 1 + λR).
    // Deterministic D = 3 > τ = 2: E[(S−τ)^+] = 1, E[min(S,τ)²]/2 = 2.
    let lam = 1e-7;
    let r = exact(
        &ServiceLaw::Deterministic { value_s: 3.0 },
        lam,
        2.0,
        1000,
        Abandonment::Renege,
    )
    .unwrap();
    assert!(
        (r.loss_fraction / lam - 1.0).abs() < 1e-5,
        "{}",
        r.loss_fraction / lam
    );
    assert!((r.mean_wait_served_s / lam - 2.0).abs() < 1e-5);
    // Exponential mean 1, τ = 2: E[(S−τ)^+] = e^{-2}; E[min(S,τ)²]/2 = 1 − 2e^{-2} − e^{-2}·... :
    // ∫_0^τ x e^{-x} dx = 1 − 3e^{-2}.
    let r = exact(
        &ServiceLaw::Exponential { mean_s: 1.0 },
        lam,
        2.0,
        4000,
        Abandonment::Renege,
    )
    .unwrap();
    assert!((r.loss_fraction / lam - (-2f64).exp()).abs() < 1e-5);
    assert!((r.mean_wait_served_s / lam - (1.0 - 3.0 * (-2f64).exp())).abs() < 1e-5);
}

#[test]
fn long_patience_recovers_mg1() {
    // τ ≫ waiting times: no loss, E[W_qs] → Pollaczek–Khinchine (M/M/1: ρ/(μ − λ) = 4).
    let r = exact(
        &ServiceLaw::Exponential { mean_s: 1.0 },
        0.8,
        200.0,
        8000,
        Abandonment::Renege,
    )
    .unwrap();
    assert!(r.loss_fraction < 1e-9);
    assert!(
        (r.mean_wait_served_s - 4.0).abs() < 1e-3,
        "{}",
        r.mean_wait_served_s
    );
    let mg1 = crate::mg1::solve(
        &TokenDist::parse("lognormal:7,0.7").unwrap(),
        1600.0,
        1.0 / 40.0,
        LinearService {
            per_token_s: A,
            intercept_s: C,
        },
    )
    .unwrap();
    let r = exact(
        &ln_law(1600.0),
        1.0 / 40.0,
        3000.0,
        8000,
        Abandonment::Renege,
    )
    .unwrap();
    assert!((r.mean_wait_served_s - mg1.mean_wait_s).abs() < 1e-3 * mg1.mean_wait_s);
}

#[test]
fn deep_overload_uses_rescaling() {
    // λτ = 2000, ρ = 2: F_τ ~ e^{γτ} far beyond f64; π → 1 − 1/ρ = 0.5 (carried load → 1).
    let r = exact(
        &ServiceLaw::Deterministic { value_s: 0.5 },
        4.0,
        500.0,
        4000,
        Abandonment::Renege,
    )
    .unwrap();
    assert!(r.loss_fraction.is_finite() && r.mean_wait_served_s.is_finite());
    assert!((r.loss_fraction - 0.5).abs() < 1e-3, "{}", r.loss_fraction);
    assert!(r.mean_wait_served_s > 0.0 && r.mean_wait_served_s < 500.0);
    let m = mm1d(4.0, 0.5, 500.0, Abandonment::Renege).unwrap();
    assert_eq!(m.solver, "level-crossing");
    assert!((m.loss_fraction - 0.5).abs() < 1e-3);
}

#[test]
fn empirical_service_matches_general_path() {
    // The merge-walk R(x) for histograms equals the generic per-point evaluation.
    let e = crate::dist::Empirical::from_weights(&[100.0, 500.0, 2000.0], &[0.5, 0.3, 0.2], "A4")
        .unwrap();
    let svc = LinearService {
        per_token_s: 0.02,
        intercept_s: 0.5,
    };
    let law = ServiceLaw::Tokens {
        tokens: TokenDist::Empirical(e.clone()),
        max_tokens: 1000.0,
        service: svc,
    };
    let xs: Vec<f64> = (0..=500).map(|k| k as f64 * 0.1).collect();
    let fast = law.expected_min_at(&xs);
    let d = TokenDist::Empirical(e);
    for (x, f) in xs.iter().zip(&fast) {
        let slow = if *x <= 0.5 {
            *x
        } else {
            0.5 + 0.02 * d.expected_min(((x - 0.5) / 0.02).min(1000.0))
        };
        assert!((f - slow).abs() < 1e-12);
    }
}

#[test]
fn grid_refinement_converges() {
    let law = ln_law(1300.0);
    let p = |n| {
        exact(&law, 0.04, 60.0, n, Abandonment::Renege)
            .unwrap()
            .loss_fraction
    };
    let (p500, p1000, p2000, p4000) = (p(500), p(1000), p(2000), p(4000));
    let (d1, d2, d3) = (
        (p500 - p1000).abs(),
        (p1000 - p2000).abs(),
        (p2000 - p4000).abs(),
    );
    assert!(d2 < d1 && d3 < d2, "{d1} {d2} {d3}");
    assert!(d3 < 1e-7);
}

#[test]
fn bad_inputs_name_the_parameter() {
    let law = ln_law(1300.0);
    for (lam, tau) in [
        (0.0, 60.0),
        (f64::NAN, 60.0),
        (0.04, 0.0),
        (0.04, f64::INFINITY),
        (0.04, -1.0),
    ] {
        let e = exact(&law, lam, tau, 100, Abandonment::Renege)
            .unwrap_err()
            .to_string();
        assert!(e.contains("arrival_rate") || e.contains("patience"), "{e}");
    }
    assert!(
        exact(&ln_law(0.0), 0.04, 60.0, 100, Abandonment::Renege)
            .unwrap_err()
            .to_string()
            .contains("max_tokens")
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn loss_rises_with_rate_and_falls_with_patience(
        lam in 0.01f64..0.08, dl in 0.001f64..0.02, tau in 5.0f64..120.0, dt in 1.0f64..30.0, l in 500.0f64..4000.0,
    ) {
        let law = ln_law(l);
        let p = |lam, tau| exact(&law, lam, tau, 600, Abandonment::Renege).unwrap().loss_fraction;
        let base = p(lam, tau);
        // Where π underflows to 0 a strict comparison means nothing.
        prop_assume!(base > 1e-9);
        prop_assert!(p(lam + dl, tau) > base);
        prop_assert!(p(lam, tau + dt) < base);
    }

    #[test]
    fn mg1_wait_rises_with_rate_and_limit(lam in 0.001f64..0.03, dl in 1e-4f64..0.004, l in 100.0f64..3000.0, dlim in 1.0f64..500.0) {
        let d = TokenDist::parse("lognormal:7,0.7").unwrap();
        let s = LinearService { per_token_s: A, intercept_s: C };
        let w = |lam, l| crate::mg1::solve(&d, l, lam, s).map(|r| r.mean_wait_s);
        if let (Ok(base), Ok(more_rate), Ok(more_l)) = (w(lam, l), w(lam + dl, l), w(lam, l + dlim)) {
            prop_assert!(more_rate > base);
            prop_assert!(more_l > base);
        }
    }

    #[test]
    fn exact_solution_converges_as_the_grid_is_refined(
        lam in 0.01f64..0.08, tau in 5.0f64..120.0, l in 300.0f64..4000.0,
    ) {
        let law = ln_law(l);
        let p = |n| exact(&law, lam, tau, n, Abandonment::Renege).unwrap();
        let (coarse, mid, fine) = (p(500), p(1000), p(2000));
        // Second-order scheme: the 1000→2000 change is small in absolute terms and below the
        // 500→1000 change. The clipped service law has an atom at a·L + c, whose position
        // relative to the grid makes the error oscillate at the 1e-8 level, so below
        // `NOISE_FLOOR` the two changes are not ordered (seen: d1 = 1.6e-8, d2 = 2.3e-8).
        const NOISE_FLOOR: f64 = 1e-7;
        let d1 = (coarse.loss_fraction - mid.loss_fraction).abs();
        let d2 = (mid.loss_fraction - fine.loss_fraction).abs();
        prop_assert!(d2 < 2e-6, "d2 = {d2}");
        prop_assert!(d2 <= d1 || d2 < NOISE_FLOOR, "d1 = {d1}, d2 = {d2}");
        let w = (mid.mean_wait_served_s - fine.mean_wait_served_s).abs();
        prop_assert!(w < 1e-4 * (1.0 + fine.mean_wait_served_s), "W_qs change {w}");
    }
}
