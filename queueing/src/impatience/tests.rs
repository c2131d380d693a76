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

// ---- Patience far beyond the waiting-time scale (the grid follows W, not only τ) ----

/// lognormal(7, 0.7), no limit, a = 0.02 s/token, c = 0.
fn repro_law() -> ServiceLaw {
    ServiceLaw::Tokens {
        tokens: TokenDist::parse("lognormal:7,0.7").unwrap(),
        max_tokens: f64::INFINITY,
        service: LinearService {
            per_token_s: 0.02,
            intercept_s: 0.0,
        },
    }
}

#[test]
fn long_patience_equals_the_patient_queue() {
    // The reported case: `queue mg1 --tokens lognormal:7,0.7 --per-token-s 0.02 --intercept-s 0
    // --arrival-rate 0.01 --patience 1e6` printed E[W_q] = 48.7 s "exact" (a grid of 4000 cells
    // over [0, τ]); the patient value is 8.90 s (simulation 9.03 ± 0.33). Before the fix:
    // τ = 1e5 → 9.68 s, τ = 1e8 → 4866 s.
    let mg1 = crate::mg1::solve(
        &TokenDist::parse("lognormal:7,0.7").unwrap(),
        f64::INFINITY,
        0.01,
        LinearService {
            per_token_s: 0.02,
            intercept_s: 0.0,
        },
    )
    .unwrap();
    within(mg1.mean_wait_s, 8.903471540, 1e-8, "patient E[W_q]");
    for tau in [1e4, 1e5, 1e6, 1e8] {
        for ab in [Abandonment::Renege, Abandonment::Balk] {
            let r = exact(&repro_law(), 0.01, tau, DEFAULT_GRID, ab).unwrap();
            let rel = (r.mean_wait_all_s / mg1.mean_wait_s - 1.0).abs();
            assert!(
                rel < 1e-6,
                "τ = {tau:e}: E[W_q] = {} ({rel:e})",
                r.mean_wait_all_s
            );
            let rel = (r.mean_wait_served_s / mg1.mean_wait_s - 1.0).abs();
            assert!(
                rel < 1e-6,
                "τ = {tau:e}: E[W_qs] = {}",
                r.mean_wait_served_s
            );
            assert!(
                r.loss_fraction < 1e-9,
                "τ = {tau:e}: π = {}",
                r.loss_fraction
            );
            assert_eq!(r.method, Method::Exact);
            within(r.prob_idle.unwrap(), 1.0 - mg1.utilisation, 1e-12, "P0");
        }
    }
    // Far beyond the tail the result says it is the patient one, and where it cut.
    let r = exact(&repro_law(), 0.01, 1e6, DEFAULT_GRID, Abandonment::Renege).unwrap();
    assert_eq!(r.solver, SOLVER_TRUNCATED);
    let x = r.truncated_at_s.unwrap();
    assert!(x > 1e3 && x < 1e5, "truncated at {x}");
    // The same answer whatever the grid (it no longer depends on τ/n).
    for n in [500, 16000] {
        let s = exact(&repro_law(), 0.01, 1e6, n, Abandonment::Renege).unwrap();
        within(s.mean_wait_all_s, mg1.mean_wait_s, 1e-9, "other grid");
    }
}

#[test]
fn tail_form_matches_the_closed_forms() {
    // M/M/1+D (closed form for any τ) with τ from a few mean waits to far beyond the tail.
    for lam in [0.1, 0.5, 0.9, 0.99] {
        let ew = lam / (1.0 - lam);
        for mult in [5.0, 10.0, 30.0, 1e3] {
            let tau = mult * (ew + 1.0);
            let m = mm1d(lam, 1.0, tau, Abandonment::Renege).unwrap();
            let e = exact(
                &ServiceLaw::Exponential { mean_s: 1.0 },
                lam,
                tau,
                DEFAULT_GRID,
                Abandonment::Renege,
            )
            .unwrap();
            let what = format!("M/M/1+D λ = {lam}, τ = {tau}");
            assert!(
                // π far in the tail: relative error ~ (decay-rate error)·γτ, 5e-4 at λ = 0.99,
                // τ = 1000 (π = 4.5e-7; cells of 0.25 s against E[S] = 1 s).
                (e.loss_fraction - m.loss_fraction).abs() <= 1e-3 * m.loss_fraction + 1e-15,
                "{what}: π {} vs {}",
                e.loss_fraction,
                m.loss_fraction
            );
            // (The plain form on [0, τ] is off by 5e-5 in E[W_qs] at λ = 0.9, τ = 100; the tail
            // form by 2e-8 there and by 2.3e-6 at λ = 0.99, τ = 500, where 4% of the mean wait
            // lies beyond τ.)
            within(
                e.mean_wait_served_s,
                m.mean_wait_served_s,
                1e-5 * m.mean_wait_served_s,
                &what,
            );
            within(
                e.mean_wait_all_s,
                m.mean_wait_all_s,
                1e-5 * m.mean_wait_all_s,
                &what,
            );
        }
    }
    // M/D/1+D: Erlang's series (τ/D ≤ 10) in the tail-form range (τ > 2E[W]).
    for (lam, tau) in [(0.1, 5.0), (0.3, 8.0), (0.5, 10.0)] {
        let law = ServiceLaw::Deterministic { value_s: 1.0 };
        assert!(Patient::tail_form(&law, lam, tau).is_some());
        let m = md1d_series(lam, 1.0, tau, Abandonment::Renege).unwrap();
        let e = exact(&law, lam, tau, DEFAULT_GRID, Abandonment::Renege).unwrap();
        assert!(
            (e.loss_fraction / m.loss_fraction - 1.0).abs() < 1e-4,
            "M/D/1+D λ = {lam}, τ = {tau}: π {} vs {}",
            e.loss_fraction,
            m.loss_fraction
        );
        within(
            e.mean_wait_served_s,
            m.mean_wait_served_s,
            1e-7,
            "M/D/1+D W_qs",
        );
    }
}

#[test]
fn heavy_traffic_long_patience_is_not_a_coarse_grid_artefact() {
    // ρ = 0.999: waits of ~1000 s, τ = 10⁹ s. The cells (≈ 9 s) are far wider than the
    // service time (1 s); the tail form's linear-interpolation weights keep the decay right.
    let m = mm1d(0.999, 1.0, 1e9, Abandonment::Renege).unwrap();
    let e = exact(
        &ServiceLaw::Exponential { mean_s: 1.0 },
        0.999,
        1e9,
        DEFAULT_GRID,
        Abandonment::Renege,
    )
    .unwrap();
    assert!(e.loss_fraction < 1e-15 && m.loss_fraction < 1e-15);
    within(e.mean_wait_all_s, 999.0, 1e-9, "E[W_q]");
    assert_eq!(e.solver, SOLVER_TRUNCATED);
}

#[test]
fn shared_solve_gives_the_direct_answer_in_the_tail_form() {
    // token_limit shares one [0, τ] solve among limits with a·L + c ≥ τ; for a stable law in
    // the tail form from_level_crossing must still return exactly what `exact` returns.
    let law = ln_law(1600.0);
    let lc = solve_level_crossing(&ln_law(f64::INFINITY), 1.0 / 40.0, 30.0, 1000);
    for tau in [30.0, 3000.0] {
        let lc = if tau == 30.0 {
            lc
        } else {
            solve_level_crossing(&ln_law(f64::INFINITY), 1.0 / 40.0, tau, 1000)
        };
        let shared = from_level_crossing(&law, 1.0 / 40.0, tau, &lc, Abandonment::Renege);
        let direct = exact(&law, 1.0 / 40.0, tau, 1000, Abandonment::Renege).unwrap();
        assert_eq!(shared, direct, "τ = {tau}");
    }
}

#[test]
fn impatient_optimum_with_long_patience_is_the_patient_one() {
    // `optimize token-limit … --arrival-rate 0.02 --patience 1e6 --grid-step 500` recommended
    // L* = 500 (the coarse grid inflated the waits of the long limits); with τ far beyond the
    // waits the impatient curve must be the patient one.
    use crate::token_limit::{self, Impatience, Problem, StepUtility};
    let tokens = TokenDist::parse("lognormal:7,0.7").unwrap();
    let patient = Problem {
        tokens: &tokens,
        arrival_rate: 0.02,
        service: LinearService {
            per_token_s: 0.02,
            intercept_s: 0.0,
        },
        weight: 119.0 / 120.0,
        utility: &StepUtility,
        impatience: None,
    };
    let impatient = Problem {
        impatience: Some(Impatience {
            patience_s: 1e6,
            lost_cost: 1.0,
            abandonment: Abandonment::Renege,
            dekok_tijms: false,
            grid: DEFAULT_GRID,
        }),
        ..patient.clone()
    };
    let limits = token_limit::grid(500.0, 4000.0).unwrap();
    let (p, i) = (
        token_limit::optimize(&patient, &limits).unwrap(),
        token_limit::optimize(&impatient, &limits).unwrap(),
    );
    assert_eq!(i.best.max_tokens, p.best.max_tokens);
    for (a, b) in p.curve.iter().zip(&i.curve) {
        within(
            b.mean_wait_s.unwrap(),
            a.mean_wait_s.unwrap(),
            1e-9 * a.mean_wait_s.unwrap(),
            "curve wait",
        );
        assert!(b.loss_fraction.unwrap() < 1e-15);
    }
}

#[test]
fn grid_cells_are_bounded() {
    // `--grid-cells 4000000000` used to abort with "memory allocation of 32000000008 bytes
    // failed"; now it is refused before anything is allocated.
    for n in [0, 1, MAX_GRID_CELLS + 1, 4_000_000_000] {
        let e = exact(&ln_law(1300.0), 0.04, 60.0, n, Abandonment::Renege)
            .unwrap_err()
            .to_string();
        assert!(e.contains("grid_cells"), "{e}");
        assert!(e.contains(&MAX_GRID_CELLS.to_string()), "{e}");
    }
    // Also in the tail form and for a truncated answer.
    let e = exact(&repro_law(), 0.01, 1e6, 4_000_000_000, Abandonment::Renege).unwrap_err();
    assert!(e.to_string().contains("grid_cells"));
}

/// `(Ψ₁, Ψ₂)` by brute force: `∫_x^∞ P(S > u) du`, `∫_x^∞ (u − x) P(S > u) du`, with
/// `P(S > u)` from the token law's survival function (Gauss–Legendre on short panels; atoms
/// are handled by the panel edges, which are placed on them).
fn brute_tail(law: &ServiceLaw, x: f64, edges: &[f64]) -> (f64, f64) {
    let sf = |u: f64| match law {
        ServiceLaw::Tokens {
            tokens,
            max_tokens,
            service,
        } => {
            let (a, c) = (service.per_token_s, service.intercept_s);
            if u < c {
                1.0
            } else if (u - c) / a >= *max_tokens {
                0.0
            } else {
                tokens.sf((u - c) / a)
            }
        }
        ServiceLaw::Exponential { mean_s } => (-u / mean_s).exp(),
        ServiceLaw::Deterministic { value_s } => f64::from(u8::from(u < *value_s)),
    };
    let mut pts: Vec<f64> = edges.iter().copied().filter(|&e| e > x).collect();
    pts.insert(0, x);
    let (mut t1, mut t2) = (0.0, 0.0);
    for w in pts.windows(2) {
        let panels = 400;
        let h = (w[1] - w[0]) / panels as f64;
        for k in 0..panels {
            let (nodes, weights) = crate::numeric::gauss_legendre_on(
                8,
                w[0] + k as f64 * h,
                w[0] + (k + 1) as f64 * h,
            );
            for (u, wt) in nodes.iter().zip(&weights) {
                let s = sf(*u);
                t1 += wt * s;
                t2 += wt * (u - x) * s;
            }
        }
    }
    (t1, t2)
}

#[test]
fn tail_moments_of_every_law() {
    let svc = |a: f64, c: f64| LinearService {
        per_token_s: a,
        intercept_s: c,
    };
    let tokens = |spec: &str, l: f64, a: f64, c: f64| ServiceLaw::Tokens {
        tokens: TokenDist::parse(spec).unwrap(),
        max_tokens: l,
        service: svc(a, c),
    };
    let hist =
        crate::dist::Empirical::from_weights(&[100.0, 500.0, 2000.0], &[0.5, 0.3, 0.2], "A4")
            .unwrap();
    let cases: Vec<(ServiceLaw, Vec<f64>)> = vec![
        (
            tokens("lognormal:7,0.7", f64::INFINITY, 0.02, 0.0),
            vec![400.0, 4000.0, 2e4],
        ),
        (
            tokens("lognormal:7,0.7", 1300.0, A, C),
            vec![C + A * 1300.0],
        ),
        (
            tokens("uniform:100,2000", f64::INFINITY, 0.02, 0.5),
            vec![2.5, 40.5],
        ),
        (
            tokens("uniform:100,2000", 900.0, 0.02, 0.5),
            vec![2.5, 18.5],
        ),
        (
            tokens("normal:800,300", f64::INFINITY, 0.02, 0.5),
            vec![16.5, 60.0],
        ),
        (
            tokens("normal:800,300,200,1500", 1200.0, 0.02, 0.5),
            vec![4.5, 24.5],
        ),
        (tokens("const:700", 600.0, 0.02, 0.5), vec![12.5]),
        (tokens("duniform:10,60", 40.5, 0.1, 1.0), {
            // Panel edges on every atom and on the clip (S = 1 + 0.1·min(N, 40.5)).
            let mut e: Vec<f64> = (10..=40).map(|k| 1.0 + 0.1 * k as f64).collect();
            e.push(5.05);
            e
        }),
        (
            ServiceLaw::Tokens {
                tokens: TokenDist::Empirical(hist),
                max_tokens: 1000.0,
                service: svc(0.02, 0.5),
            },
            vec![2.5, 10.5, 20.5],
        ),
        (ServiceLaw::Exponential { mean_s: 2.0 }, vec![40.0, 120.0]),
        (ServiceLaw::Deterministic { value_s: 3.0 }, vec![3.0]),
    ];
    for (law, edges) in &cases {
        let (es, es2) = law.moments();
        let top = edges.last().copied().unwrap_or(1.0);
        // Bulk: against E[S] − E[min(S, x)] (no cancellation to fear there) and brute force.
        let xs: Vec<f64> = (0..=40).map(|k| k as f64 * 0.025 * top * 1.1).collect();
        let (p1, p2) = law.tail_moments_at(&xs);
        let r = law.expected_min_at(&xs);
        within(p1[0], es, 1e-12 * es, "Ψ₁(0) = E[S]");
        within(p2[0], 0.5 * es2, 1e-12 * es2, "Ψ₂(0) = E[S²]/2");
        for (k, &x) in xs.iter().enumerate() {
            let what = format!("{law:?} at x = {x}");
            within(p1[k], es - r[k], 1e-9 * es, &format!("Ψ₁ {what}"));
            let (b1, b2) = brute_tail(law, x, edges);
            within(p1[k], b1, 1e-7 * es, &format!("Ψ₁ brute {what}"));
            within(p2[k], b2, 1e-7 * es2, &format!("Ψ₂ brute {what}"));
            assert!(p1[k] >= 0.0 && p2[k] >= 0.0);
            if k > 0 {
                assert!(
                    p1[k] <= p1[k - 1] && p2[k] <= p2[k - 1],
                    "{what}: not decreasing"
                );
            }
        }
    }
    // Far tail of the unclipped lognormal: relative accuracy where E[S] − E[min(S, x)] is
    // pure rounding (Ψ₁ ~ 1e-20 s at x = 15000 s).
    let law = tokens("lognormal:7,0.7", f64::INFINITY, 0.02, 0.0);
    for x in [8000.0, 15000.0, 30000.0] {
        let (p1, p2) = law.tail_moments_at(&[x]);
        let (b1, b2) = brute_tail(&law, x, &[x * 4.0, x * 64.0]);
        assert!(
            p1[0] > 0.0 && (p1[0] / b1 - 1.0).abs() < 1e-8,
            "Ψ₁({x}) {} vs {b1}",
            p1[0]
        );
        assert!(
            p2[0] > 0.0 && (p2[0] / b2 - 1.0).abs() < 1e-8,
            "Ψ₂({x}) {} vs {b2}",
            p2[0]
        );
    }
}

/// A random stable token law: lognormal or uniform tokens, optional limit, ρ in (0.1, 0.9).
fn stable_law() -> impl Strategy<Value = (ServiceLaw, f64)> {
    (
        prop_oneof![
            (5.0f64..8.0, 0.2f64..0.7).prop_map(|(mu, s)| TokenDist::Lognormal { mu, sigma: s }),
            (0.0f64..500.0, 100.0f64..3000.0)
                .prop_map(|(lo, w)| TokenDist::Uniform { lo, hi: lo + w }),
        ],
        prop_oneof![Just(f64::INFINITY), 200.0f64..4000.0],
        0.005f64..0.05,
        0.0f64..1.0,
        0.1f64..0.9,
    )
        .prop_map(|(tokens, l, a, c, rho)| {
            let law = ServiceLaw::Tokens {
                tokens,
                max_tokens: l,
                service: LinearService {
                    per_token_s: a,
                    intercept_s: c,
                },
            };
            let lambda = rho / law.moments().0;
            (law, lambda)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn long_patience_converges_to_the_patient_queue((law, lam) in stable_law()) {
        let (es, es2) = law.moments();
        let ew = crate::mg1::pk_mean_wait(lam, es, es2).unwrap();
        let tau_inf = 50.0 * ew + 50.0 * es;
        let n = 1000;
        let r = exact(&law, lam, tau_inf, n, Abandonment::Renege).unwrap();
        prop_assert!(r.loss_fraction < 1e-6, "π = {}", r.loss_fraction);
        prop_assert!((r.mean_wait_all_s / ew - 1.0).abs() < 1e-5, "E[W_q] {} vs {ew}", r.mean_wait_all_s);
        prop_assert!((r.mean_wait_served_s / ew - 1.0).abs() < 1e-5, "E[W_qs] {} vs {ew}", r.mean_wait_served_s);
        // Monotone non-decreasing in τ (up to rounding), through the plain form (small τ),
        // the tail form and the truncated answer.
        let mut last: Option<ImpatienceResult> = None;
        for f in [1.0 / 32.0, 1.0 / 16.0, 1.0 / 8.0, 0.25, 0.5, 1.0, 2.0, 8.0, 1e3, 1e6] {
            let r = exact(&law, lam, f * tau_inf, n, Abandonment::Renege).unwrap();
            if let Some(p) = &last {
                prop_assert!(r.mean_wait_all_s >= p.mean_wait_all_s * (1.0 - 1e-12),
                    "E[W_q] fell from {} to {} at τ = {}", p.mean_wait_all_s, r.mean_wait_all_s, f * tau_inf);
                prop_assert!(r.mean_wait_served_s >= p.mean_wait_served_s * (1.0 - 1e-12),
                    "E[W_qs] fell from {} to {} at τ = {}", p.mean_wait_served_s, r.mean_wait_served_s, f * tau_inf);
                prop_assert!(r.loss_fraction <= p.loss_fraction + 1e-15);
            }
            prop_assert!(r.mean_wait_all_s <= ew * (1.0 + 1e-9));
            last = Some(r);
        }
        within(last.unwrap().mean_wait_all_s, ew, 1e-12 * ew, "τ → ∞");
    }
}
