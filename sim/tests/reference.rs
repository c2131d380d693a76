//! The simulator against independent references:
//! * docs/models.md §9's exact values (closed forms and exact Markov chains) must lie inside the
//!   simulation's 95% intervals (mg1 A1/A4, impatience B1–B3, dynamic C1/C-U1, capped dynamic
//!   F1/F2, fixed E1/E2a–c, elastic G1);
//! * docs/models.md §11's reference estimates (SimPy/Ciw/numba/C simulators, n = 1e6) must agree with
//!   ours within the combined interval of the two independent estimates;
//! * Little's law, conservation, determinism across thread counts, instability detection,
//!   bounded state, bad input.
//!
//! Each test uses one fixed seed; run lengths keep each test to a few seconds in the dev profile
//! while the interval stays narrow enough (asserted) for the comparison to mean something.

use std::sync::Arc;

use queueing::dist::{Empirical, TokenDist};
use sim::{
    Abandonment, Arrivals, BatchTime, Estimate, LinearService, Patience, Policy, Report, RunConfig,
    Scenario, Stability, TokenLaw, TokenMode, Tokens, Trace,
};

fn lognormal() -> TokenLaw {
    TokenLaw::Dist(TokenDist::Lognormal {
        mu: 7.0,
        sigma: 0.7,
    })
}

fn sc(
    policy: Policy,
    rate: f64,
    tokens: TokenLaw,
    limit: Option<f64>,
    mode: TokenMode,
) -> Scenario {
    Scenario {
        policy,
        arrivals: Arrivals::Poisson { rate_rps: rate },
        tokens: Tokens::Law(tokens),
        max_tokens: limit,
        token_mode: mode,
    }
}

fn run(s: &Scenario, requests: u64, seed: u64) -> Report {
    let r = sim::run(
        s,
        &RunConfig {
            requests,
            seed,
            ..RunConfig::default()
        },
    )
    .expect("valid scenario");
    assert!(r.is_stable(), "{:?}", r.stability);
    r
}

/// `exact` inside the interval, and the interval no wider than `max_rel` of `exact`.
#[track_caller]
fn inside(what: &str, e: Estimate, exact: f64, max_rel: f64) {
    assert!(
        e.half_width.is_finite() && e.half_width <= max_rel * exact.abs(),
        "{what}: interval too wide: {e:?} vs {exact}"
    );
    assert!(
        e.contains(exact),
        "{what}: exact {exact} outside {:.6} ± {:.6}",
        e.value,
        e.half_width
    );
}

// docs/models.md §9.1 -------------------------------------------------------------------------------

const A: f64 = 0.02203184157;
const C: f64 = 0.7764157233;

fn mg1(a: f64, c: f64, patience: Option<Patience>) -> Policy {
    Policy::Mg1 {
        service: LinearService {
            per_token_s: a,
            intercept_s: c,
        },
        patience,
    }
}

#[test]
fn a1_mg1_clipped_lognormal_pollaczek_khinchine() {
    let s = sc(
        mg1(A, C, None),
        1.0 / 40.0,
        lognormal(),
        Some(1600.0),
        TokenMode::Continuous,
    );
    let r = run(&s, 2_000_000, 11);
    inside("A1 wait", r.wait_s.mean, 23.00000, 0.02);
    inside("A1 latency", r.latency_s.mean, 23.00000 + 24.63351910, 0.02);
    inside("A1 utilisation", r.utilisation, 0.61583798, 0.01);
    assert_eq!(r.loss_fraction.value, 0.0);
    assert_eq!(r.mean_batch_size.value, 1.0);
}

#[test]
fn a4_mg1_empirical_tokens() {
    let e = Empirical {
        values: vec![100.0, 500.0, 2000.0],
        probs: vec![0.5, 0.3, 0.2],
        cdf: vec![0.5, 0.8, 1.0],
        source: "docs/models.md §9 A4".into(),
    };
    let s = sc(
        mg1(0.02, 0.5, None),
        0.05,
        TokenLaw::Dist(TokenDist::Empirical(e)),
        Some(1000.0),
        TokenMode::Integer,
    );
    let r = run(&s, 1_000_000, 12);
    inside("A4 wait", r.wait_s.mean, 5.228261, 0.02);
    inside("A4 utilisation", r.utilisation, 0.425, 0.01);
}

// docs/models.md §9.2 -------------------------------------------------------------------------------

fn patience(tau: f64, mode: Abandonment) -> Option<Patience> {
    Some(Patience {
        patience_s: tau,
        mode,
    })
}

#[test]
fn b1_mm1_with_deterministic_patience() {
    for (mode, w_all) in [
        (Abandonment::Renege, 0.8068547349),
        (Abandonment::Balk, 0.4311905860),
    ] {
        let s = sc(
            mg1(1.0, 0.0, patience(2.0, mode)),
            0.8,
            TokenLaw::Exponential { mean: 1.0 },
            None,
            TokenMode::Continuous,
        );
        let r = run(&s, 2_000_000, 21);
        inside("B1 loss", r.loss_fraction, 0.1878320744, 0.01);
        inside("B1 served wait", r.wait_s.mean, 0.5309130938, 0.01);
        inside("B1 wait over all users", r.wait_all_s.unwrap(), w_all, 0.01);
    }
}

/// Attainment is per request: in M/M/1 (λ = 0.8, μ = 1) the wait W (atom 1 − ρ at 0, density
/// ρ(μ − λ)e^{−(μ−λ)w}) and the own service S ~ Exp(μ) are independent, so
/// `P(W ≤ a, W + S ≤ b) = (1 − ρ)(1 − e^{−μb}) + ρ(1 − e^{−(μ−λ)m}) − ρ(μ − λ)e^{−μb}(e^{λm} − 1)/λ`
/// with `m = min(a, b)`; with no wait target it is the sojourn law `1 − e^{−(μ−λ)b}`. The
/// product of the two marginal shares (0.156 here) is not the joint share (0.323).
#[test]
fn attainment_is_the_joint_per_request_share_of_mm1() {
    let (lambda, mu) = (0.8, 1.0);
    let rho = lambda / mu;
    let joint = |a: f64, b: f64| {
        let m = a.min(b);
        (1.0 - rho) * (1.0 - (-mu * b).exp()) + rho * (1.0 - (-(mu - lambda) * m).exp())
            - rho * (mu - lambda) * (-mu * b).exp() * ((lambda * m).exp() - 1.0) / lambda
    };
    let s = sc(
        mg1(1.0, 0.0, None),
        lambda,
        TokenLaw::Exponential { mean: 1.0 },
        None,
        TokenMode::Continuous,
    );
    for (a, b, exact) in [
        (1.0, 3.0, joint(1.0, 3.0)),
        (f64::INFINITY, 3.0, 1.0 - (-(mu - lambda) * 3.0).exp()),
    ] {
        let r = sim::run(
            &s,
            &RunConfig {
                requests: 2_000_000,
                seed: 31,
                attainment: Some(sim::Targets {
                    wait_s: a,
                    latency_s: b,
                }),
                ..RunConfig::default()
            },
        )
        .unwrap();
        inside("attainment", r.attainment.unwrap(), exact, 0.02);
    }
    let marginals = (1.0 - rho * (-(mu - lambda) * 1.0f64).exp()) * (1.0 - (-0.6f64).exp());
    assert!((joint(1.0, 3.0) - 0.3229).abs() < 1e-3 && (marginals - 0.1557).abs() < 1e-3);
    // Without targets there is no attainment estimate.
    assert!(run(&s, 100_000, 1).attainment.is_none());
}

#[test]
fn b2_md1_with_deterministic_patience() {
    let s = sc(
        mg1(1.0, 0.0, patience(2.0, Abandonment::Renege)),
        0.8,
        TokenLaw::Dist(TokenDist::Constant { value: 1.0 }),
        None,
        TokenMode::Continuous,
    );
    let r = run(&s, 2_000_000, 22);
    inside("B2 loss", r.loss_fraction, 0.1032989898, 0.01);
    inside("B2 served wait", r.wait_s.mean, 0.6611371781, 0.01);
    inside("B2 wait (eq 9)", r.wait_all_s.unwrap(), 0.7994403551, 0.01);
}

#[test]
fn b3_clipped_lognormal_with_patience_level_crossing() {
    let s = sc(
        mg1(A, C, patience(60.0, Abandonment::Renege)),
        1.0 / 25.0,
        lognormal(),
        Some(1300.0),
        TokenMode::Continuous,
    );
    let r = run(&s, 2_000_000, 23);
    inside("B3 loss", r.loss_fraction, 0.1131288, 0.02);
    inside("B3 served wait", r.wait_s.mean, 22.52551, 0.01);
    inside("B3 wait (eq 9)", r.wait_all_s.unwrap(), 26.76496, 0.01);
    let c = r.counts;
    assert_eq!(c.arrivals, c.served + c.lost + c.waiting_at_end);
    assert_eq!(c.waiting_at_end, 0);
}

// docs/models.md §9.4, §9.7, §9.8: dynamic, capped dynamic, elastic ---------------------------------

fn set_u() -> (BatchTime, TokenLaw) {
    (
        BatchTime::new(0.004, 0.03, 0.0002, 0.02).unwrap(),
        TokenLaw::Dist(TokenDist::Uniform {
            lo: 0.0,
            hi: 1000.0,
        }),
    )
}
fn set_l() -> (BatchTime, TokenLaw) {
    (
        BatchTime::new(0.0004, 0.003, 0.0003, 0.002).unwrap(),
        lognormal(),
    )
}

#[test]
fn c1_dynamic_deterministic_batch_time_inoue() {
    let bt = BatchTime::new(0.5, 1.0, 0.0, 0.0).unwrap();
    let s = sc(
        Policy::Dynamic {
            batch: bt,
            max_batch: None,
        },
        1.0,
        TokenLaw::Dist(TokenDist::Constant { value: 1.0 }),
        None,
        TokenMode::Continuous,
    );
    let r = run(&s, 2_000_000, 31);
    inside("C1 latency", r.latency_s.mean, 3.7496563, 0.005);
    inside("C1 wait", r.wait_s.mean, 1.1248282, 0.01);
    inside("C1 batch size", r.mean_batch_size, 2.2870616, 0.01);
}

#[test]
fn cu1_dynamic_set_u_exact_chain() {
    let (bt, tok) = set_u();
    let s = sc(
        Policy::Dynamic {
            batch: bt,
            max_batch: None,
        },
        0.5,
        tok,
        None,
        TokenMode::Continuous,
    );
    let r = run(&s, 1_000_000, 32);
    inside("C-U1 latency", r.latency_s.mean, 30.36332, 0.003);
    inside("C-U1 wait", r.wait_s.mean, 10.06824, 0.005);
    inside("C-U1 batch size", r.mean_batch_size, 9.9023, 0.01);
    // Inoue's bound min(φ0, φ1) = 33.67434 lies above.
    assert!(r.latency_s.mean.hi() < 33.67434);
}

#[test]
fn f1_f2_capped_dynamic_set_l() {
    for (k, lat, wait, b, seed) in [
        (8, 9.253232, 3.186454, 1.70062, 41),
        (4, 9.367067, 3.901082, 1.67711, 42),
    ] {
        let (bt, tok) = set_l();
        let s = sc(
            Policy::Dynamic {
                batch: bt,
                max_batch: Some(k),
            },
            0.3,
            tok,
            None,
            TokenMode::Continuous,
        );
        let r = run(&s, 3_000_000, seed);
        inside(&format!("F K={k} latency"), r.latency_s.mean, lat, 0.02);
        inside(&format!("F K={k} wait"), r.wait_s.mean, wait, 0.03);
        inside(&format!("F K={k} batch size"), r.mean_batch_size, b, 0.01);
    }
}

#[test]
fn g1_elastic_set_u() {
    let (bt, tok) = set_u();
    let s = sc(
        Policy::Elastic {
            batch: bt,
            max_batch: None,
        },
        0.5,
        tok,
        None,
        TokenMode::Continuous,
    );
    let r = run(&s, 1_000_000, 51);
    // The two exact chains of docs/models.md §9.8 (gamma-T 20.3902, sampled-T 20.3881) must both fit.
    inside("G1 latency (gamma chain)", r.latency_s.mean, 20.3902, 0.003);
    inside(
        "G1 latency (sampled chain)",
        r.latency_s.mean,
        20.3881,
        0.003,
    );
    assert!(
        (r.wait_s.mean.value - 9.577).abs() <= r.wait_s.mean.half_width + 0.0005,
        "{:?}",
        r.wait_s.mean
    );
    assert!((r.mean_batch_size.value - 9.419).abs() <= r.mean_batch_size.half_width + 0.0005);
}

// docs/models.md §9.6: fixed batching -----------------------------------------------------------------

#[test]
fn e1_fixed_deterministic_roots() {
    let bt = BatchTime::new(0.0, 5.0, 0.0, 0.0).unwrap();
    let s = sc(
        Policy::Fixed {
            batch: bt,
            batch_size: 4,
        },
        0.5,
        TokenLaw::Dist(TokenDist::Constant { value: 1.0 }),
        None,
        TokenMode::Continuous,
    );
    let r = run(&s, 2_000_000, 61);
    inside("E1 wait", r.wait_s.mean, 3.579568734, 0.01);
    inside("E1 latency", r.latency_s.mean, 8.579568734, 0.005);
    assert_eq!(r.mean_batch_size.value, 4.0);
    assert!(r.counts.waiting_at_end < 4);
    assert_eq!(r.counts.arrivals, r.counts.served + r.counts.waiting_at_end);
}

#[test]
fn e2_fixed_set_l_random_batch_time() {
    for (k, w, lat, seed) in [
        (4, 7.5885177, 15.776037, 62),
        (8, 13.113900, 27.517747, 63),
        (16, 26.240775, 53.976173, 64),
    ] {
        let (bt, tok) = set_l();
        let s = sc(
            Policy::Fixed {
                batch: bt,
                batch_size: k,
            },
            0.3,
            tok,
            None,
            TokenMode::Continuous,
        );
        let r = run(&s, 2_000_000, seed);
        inside(&format!("E2 K={k} wait"), r.wait_s.mean, w, 0.02);
        inside(&format!("E2 K={k} latency"), r.latency_s.mean, lat, 0.02);
    }
}

// docs/models.md §11: reference simulators --------------------------------------------------------------

/// (name, scenario, [mean wait ± hw, mean sojourn ± hw] by batch means, the same by 10
/// replications, sojourn p50/p90/p99), all from docs/models.md §11's table (n = 1e6).
#[allow(clippy::type_complexity)]
fn section11() -> Vec<(
    &'static str,
    Scenario,
    [(f64, f64); 2],
    [(f64, f64); 2],
    [f64; 3],
)> {
    let a = LinearService {
        per_token_s: 0.0229,
        intercept_s: 0.0,
    };
    let bt = BatchTime::new(0.01, 0.1, 0.0005, 0.02).unwrap();
    let lam = 0.029621031639601243;
    let s = |p: Policy, rate: f64| sc(p, rate, lognormal(), Some(2000.0), TokenMode::Integer);
    vec![
        (
            "mg1",
            s(
                Policy::Mg1 {
                    service: a,
                    patience: None,
                },
                lam,
            ),
            [(68.14, 1.31), (95.17, 1.32)],
            [(67.22, 0.50), (94.23, 0.50)],
            [71.0, 200.7, 386.2],
        ),
        (
            "mg1_impatient",
            s(
                Policy::Mg1 {
                    service: a,
                    patience: patience(60.0, Abandonment::Renege),
                },
                lam,
            ),
            [(19.119, 0.060), (46.152, 0.072)],
            [(19.118, 0.022), (46.127, 0.022)],
            [45.8, 79.0, 100.5],
        ),
        (
            "dynamic K16",
            s(
                Policy::Dynamic {
                    batch: bt,
                    max_batch: Some(16),
                },
                0.2,
            ),
            [(25.070, 0.045), (75.133, 0.078)],
            [(25.052, 0.023), (75.089, 0.040)],
            [74.8, 96.5, 108.3],
        ),
        (
            "fixed K16",
            s(
                Policy::Fixed {
                    batch: bt,
                    batch_size: 16,
                },
                0.2,
            ),
            [(38.438, 0.078), (94.530, 0.079)],
            [(38.419, 0.033), (94.507, 0.032)],
            [92.7, 130.4, 161.2],
        ),
        (
            "elastic K16",
            s(
                Policy::Elastic {
                    batch: bt,
                    max_batch: Some(16),
                },
                0.2,
            ),
            [(22.421, 0.035), (50.599, 0.051)],
            [(22.398, 0.011), (50.546, 0.015)],
            [50.5, 76.1, 90.7],
        ),
        (
            "dynamic K∞",
            s(
                Policy::Dynamic {
                    batch: bt,
                    max_batch: None,
                },
                0.5,
            ),
            [(40.948, 0.082), (123.49, 0.24)],
            [(40.878, 0.053), (123.30, 0.14)],
            [122.8, 158.3, 179.3],
        ),
        (
            "elastic K∞",
            s(
                Policy::Elastic {
                    batch: bt,
                    max_batch: None,
                },
                0.5,
            ),
            [(28.812, 0.040), (65.679, 0.084)],
            [(28.750, 0.015), (65.554, 0.032)],
            [65.5, 97.3, 115.6],
        ),
    ]
}

/// Two independent estimates agree when their difference lies within the combined 95%
/// half-width `sqrt(h1² + h2²)` (the interval of the difference).
#[track_caller]
fn agree(what: &str, mine: Estimate, reference: (f64, f64)) {
    let tol = (mine.half_width.powi(2) + reference.1.powi(2)).sqrt();
    assert!(
        (mine.value - reference.0).abs() <= tol,
        "{what}: {:.4} ± {:.4} vs reference {:.4} ± {:.4}",
        mine.value,
        mine.half_width,
        reference.0,
        reference.1
    );
}

#[test]
fn section11_batch_means_agree_with_reference_simulators() {
    for (name, s, bm, _, pct) in section11() {
        let r = run(&s, 1_000_000, 1);
        agree(&format!("{name} wait"), r.wait_s.mean, bm[0]);
        agree(&format!("{name} sojourn"), r.latency_s.mean, bm[1]);
        // The reference percentiles have no interval; allow ours √2 times (equal-size
        // independent estimates) plus the histogram's relative error.
        for (e, p) in [r.latency_s.p50, r.latency_s.p90, r.latency_s.p99]
            .into_iter()
            .zip(pct)
        {
            let tol = std::f64::consts::SQRT_2 * e.half_width + sim::QUANTILE_REL_ERROR * p + 0.05;
            assert!(
                (e.value - p).abs() <= tol,
                "{name} percentile: {e:?} vs reference {p}"
            );
        }
        if name == "mg1" {
            // P-K exact values (docs/models.md §11): wait 66.932, sojourn 93.940.
            assert!(r.wait_s.mean.contains(66.932), "{:?}", r.wait_s.mean);
            assert!(r.latency_s.mean.contains(93.940), "{:?}", r.latency_s.mean);
        }
    }
}

#[test]
fn section11_replications_agree_with_reference_simulators() {
    for (name, s, _, reps, _) in section11() {
        let r = sim::run(
            &s,
            &RunConfig {
                requests: 1_000_000,
                seed: 2,
                replications: 10,
                ..RunConfig::default()
            },
        )
        .unwrap();
        assert_eq!(r.ci.kind, "replications");
        assert_eq!(r.ci.units, 10);
        agree(&format!("{name} wait (10 reps)"), r.wait_s.mean, reps[0]);
        agree(
            &format!("{name} sojourn (10 reps)"),
            r.latency_s.mean,
            reps[1],
        );
    }
}

#[test]
fn section11_loss_fraction_of_impatient_reference() {
    let (_, s, _, _, _) = section11().into_iter().nth(1).unwrap();
    let r = run(&s, 1_000_000, 3);
    agree("mg1_impatient loss", r.loss_fraction, (0.1178, 0.0008));
}

// Laws, conservation, determinism, stability, memory, bad input --------------------------------

#[test]
fn littles_law_from_per_request_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.csv");
    let (bt, tok) = set_u();
    let lambda = 0.5;
    let s = sc(
        Policy::Elastic {
            batch: bt,
            max_batch: Some(16),
        },
        lambda,
        tok,
        None,
        TokenMode::Continuous,
    );
    let r = sim::run(
        &s,
        &RunConfig {
            requests: 200_000,
            seed: 5,
            records: Some(path.clone()),
            ..RunConfig::default()
        },
    )
    .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "index,arrival_s,tokens,start_s,finish_s,wait_s,latency_s,batch_size,lost"
    );
    // Time-average number in system over [t_a, t_b] by sweeping arrival (+1) and finish (−1)
    // events of all requests, then Little: L = λ W with the configured λ and the report's W.
    let mut events: Vec<(f64, i32)> = Vec::new();
    let mut n = 0;
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let (a, fin): (f64, f64) = (f[1].parse().unwrap(), f[4].parse().unwrap());
        assert!(fin >= a);
        events.push((a, 1));
        events.push((fin, -1));
        n += 1;
    }
    assert_eq!(n, 200_000);
    events.sort_by(|x, y| x.0.total_cmp(&y.0));
    let t_a = events.iter().find(|e| e.1 == 1).unwrap().0 + 2000.0; // skip the start-up
    let t_b = events.iter().rev().find(|e| e.1 == 1).unwrap().0 - 2000.0;
    let (mut in_sys, mut area, mut prev) = (0i64, 0.0, t_a);
    for &(t, d) in &events {
        if t > t_a && t < t_b {
            area += in_sys as f64 * (t - prev);
            prev = t;
        } else if t >= t_b {
            area += in_sys as f64 * (t_b - prev);
            break;
        }
        in_sys += d as i64;
    }
    let l_bar = area / (t_b - t_a);
    let little = lambda * r.latency_s.mean.value;
    assert!(
        (l_bar - little).abs() / little < 0.02,
        "L = {l_bar}, λW = {little}"
    );
}

#[test]
fn conservation_every_arrival_served_lost_or_waiting() {
    let (bt, tok) = set_l();
    for (p, seed) in [
        (
            Policy::Fixed {
                batch: bt,
                batch_size: 7,
            },
            1,
        ),
        (
            Policy::Dynamic {
                batch: bt,
                max_batch: Some(3),
            },
            2,
        ),
        (
            Policy::Elastic {
                batch: bt,
                max_batch: None,
            },
            3,
        ),
        (mg1(0.001, 0.1, patience(0.5, Abandonment::Balk)), 4),
    ] {
        let s = sc(p, 0.3, tok.clone(), Some(3000.0), TokenMode::Integer);
        let r = sim::run(
            &s,
            &RunConfig {
                requests: 100_003,
                seed,
                replications: 3,
                ..RunConfig::default()
            },
        )
        .unwrap();
        let c = r.counts;
        assert_eq!(c.arrivals, 3 * 100_003);
        assert_eq!(c.arrivals, c.served + c.lost + c.waiting_at_end, "{c:?}");
    }
}

fn strip_timing(mut r: Report) -> String {
    r.elapsed_s = 0.0;
    r.sim_requests_per_s = 0.0;
    serde_json::to_string(&r).unwrap()
}

#[test]
fn same_seed_same_numbers_whatever_the_thread_count() {
    let (bt, tok) = set_l();
    let s = sc(
        Policy::Elastic {
            batch: bt,
            max_batch: Some(8),
        },
        0.3,
        tok,
        Some(2000.0),
        TokenMode::Integer,
    );
    let cfg = |t| RunConfig {
        requests: 50_000,
        seed: 9,
        replications: 6,
        threads: Some(t),
        ..RunConfig::default()
    };
    let one = strip_timing(sim::run(&s, &cfg(1)).unwrap());
    let three = strip_timing(sim::run(&s, &cfg(3)).unwrap());
    assert_eq!(one, three);
    let other = strip_timing(sim::run(&s, &RunConfig { seed: 10, ..cfg(1) }).unwrap());
    assert_ne!(one, other);
}

#[test]
fn unstable_systems_are_reported_with_rho_and_max_rate() {
    // docs/models.md §11: dynamic λ = 0.5 with K = 16 is unstable (16-batches take ≈ 56 s).
    let bt = BatchTime::new(0.01, 0.1, 0.0005, 0.02).unwrap();
    let s = sc(
        Policy::Dynamic {
            batch: bt,
            max_batch: Some(16),
        },
        0.5,
        lognormal(),
        Some(2000.0),
        TokenMode::Integer,
    );
    let r = sim::run(
        &s,
        &RunConfig {
            requests: 200_000,
            ..RunConfig::default()
        },
    )
    .unwrap();
    match r.stability {
        Stability::Unstable {
            rho,
            max_stable_rate_rps,
            ..
        } => {
            assert!(rho > 1.0, "{rho}");
            // Saturated: every batch has 16 requests; E[T_16] ≈ 0.26 + 0.028·E[max of 16] ≈ 56 s.
            assert!(
                (0.25..0.32).contains(&max_stable_rate_rps),
                "{max_stable_rate_rps}"
            );
        }
        Stability::Stable => panic!("not detected"),
    }
    // mg1 at ρ = 1.2 (E[S] = 0.0229 · 1179.4 s, docs/models.md §11's mg1 scenario at ρ = 0.8).
    let s = sc(
        mg1(0.0229, 0.0, None),
        1.2 / (0.0229 * 1179.4),
        lognormal(),
        Some(2000.0),
        TokenMode::Integer,
    );
    let r = sim::run(
        &s,
        &RunConfig {
            requests: 100_000,
            ..RunConfig::default()
        },
    )
    .unwrap();
    assert!(
        matches!(r.stability, Stability::Unstable { rho, .. } if rho > 1.1),
        "{:?}",
        r.stability
    );
    // Impatient users keep any load stable (docs/models.md §2.1).
    let s = sc(
        mg1(0.0229, 0.0, patience(60.0, Abandonment::Renege)),
        0.05,
        lognormal(),
        None,
        TokenMode::Integer,
    );
    assert!(
        sim::run(
            &s,
            &RunConfig {
                requests: 100_000,
                ..RunConfig::default()
            }
        )
        .unwrap()
        .is_stable()
    );
}

#[test]
fn state_does_not_grow_with_the_number_of_requests() {
    let (bt, tok) = set_l();
    let s = sc(
        Policy::Dynamic {
            batch: bt,
            max_batch: Some(8),
        },
        0.3,
        tok,
        None,
        TokenMode::Integer,
    );
    let small = run(&s, 100_000, 1);
    let large = run(&s, 2_000_000, 1);
    // Histograms and sections are fixed; only the queue's high-water mark may move a little.
    assert!(
        large.state_bytes <= small.state_bytes + 4096,
        "{} vs {}",
        large.state_bytes,
        small.state_bytes
    );
    assert!(large.state_bytes < 8 << 20);
    let s = sc(mg1(A, C, None), 0.02, lognormal(), None, TokenMode::Integer);
    assert_eq!(
        run(&s, 100_000, 1).state_bytes,
        run(&s, 1_000_000, 1).state_bytes
    );
}

#[test]
fn trace_replay_and_rescaling() {
    let trace = Arc::new(Trace::load("azure-conv").unwrap());
    let s = Scenario {
        policy: Policy::Dynamic {
            batch: BatchTime::new(0.01, 0.1, 0.0005, 0.02).unwrap(),
            max_batch: Some(32),
        },
        arrivals: Arrivals::Trace {
            trace: trace.clone(),
            rate_rps: Some(1.0),
        },
        tokens: Tokens::FromTrace,
        max_tokens: None,
        token_mode: TokenMode::Integer,
    };
    let n = trace.requests.len() as u64;
    let r = sim::run(
        &s,
        &RunConfig {
            requests: n,
            ..RunConfig::default()
        },
    )
    .unwrap();
    assert!(
        (r.arrival_rate_rps - 1.0).abs() < 0.02,
        "{}",
        r.arrival_rate_rps
    );
    assert_eq!(r.counts.served, n);
    // Looping the trace: twice as many requests as it holds.
    let r2 = sim::run(
        &s,
        &RunConfig {
            requests: 2 * n,
            ..RunConfig::default()
        },
    )
    .unwrap();
    assert_eq!(r2.counts.arrivals, 2 * n);
    assert!((r2.arrival_rate_rps - 1.0).abs() < 0.02);
    // Replications of a trace with its own tokens would be identical.
    assert!(
        sim::run(
            &s,
            &RunConfig {
                requests: n,
                replications: 2,
                ..RunConfig::default()
            }
        )
        .is_err()
    );
}

#[test]
fn bad_input_is_rejected_with_clear_errors() {
    let s = sc(mg1(A, C, None), 0.02, lognormal(), None, TokenMode::Integer);
    let e = sim::run(
        &s,
        &RunConfig {
            requests: 0,
            ..RunConfig::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("too few"), "{e}");
    let e = sim::run(
        &sc(mg1(A, C, None), -1.0, lognormal(), None, TokenMode::Integer),
        &RunConfig::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("arrival rate"), "{e}");
    let mut bad = s.clone();
    bad.tokens = Tokens::FromTrace;
    assert!(
        sim::run(&bad, &RunConfig::default())
            .unwrap_err()
            .to_string()
            .contains("trace")
    );
    let bad = sc(
        Policy::Fixed {
            batch: BatchTime::new(0.0, 1.0, 0.0, 0.0).unwrap(),
            batch_size: 0,
        },
        1.0,
        lognormal(),
        None,
        TokenMode::Integer,
    );
    assert!(
        sim::run(&bad, &RunConfig::default())
            .unwrap_err()
            .to_string()
            .contains("batch size")
    );
    let unsorted = Trace {
        requests: vec![
            sim::TraceRequest {
                arrival_s: 1.0,
                input_tokens: 1,
                output_tokens: 1,
                prefix_parent: None,
                shared_prefix_blocks: 0,
            },
            sim::TraceRequest {
                arrival_s: 0.5,
                input_tokens: 1,
                output_tokens: 1,
                prefix_parent: None,
                shared_prefix_blocks: 0,
            },
        ],
        source: "mem".into(),
    };
    let bad = Scenario {
        arrivals: Arrivals::Trace {
            trace: Arc::new(unsorted),
            rate_rps: None,
        },
        ..s
    };
    assert!(
        sim::run(&bad, &RunConfig::default())
            .unwrap_err()
            .to_string()
            .contains("sort")
    );
}
