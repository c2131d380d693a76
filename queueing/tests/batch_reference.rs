//! Batch models against docs/models.md §9.4–§9.8: values computed independently (Python, numpy / scipy /
//! mpmath) and, where printed, event-driven Monte-Carlo intervals.
//!
//! `printed(x, "3.7496563")` asserts `x` rounds to the printed digits: `|x − v| ≤ ½·10^-d` (plus
//! 1e-12 relative for the last-bit fuzz of the reference itself), `d` = printed decimals.

use queueing::Method;
use queueing::batch::{
    BatchConfig, BatchTime, ChainOptions, LlmBatch, Objective, PaddedTreatment, Policy, analyze,
    optimize_cap, optimize_fixed, solve_dynamic, solve_fixed,
};
use queueing::batch::{Elastic, Padded};
use queueing::dist::{Empirical, TokenDist};

fn printed(x: f64, s: &str) {
    let v: f64 = s.parse().unwrap();
    let decimals = s.split('.').nth(1).map_or(0, |d| d.len()) as i32;
    let tol = 0.5 * 10f64.powi(-decimals) + 1e-12 * v.abs();
    assert!(
        (x - v).abs() <= tol,
        "{x} does not round to the printed {s} (|diff| = {:.3e} > {tol:.1e})",
        (x - v).abs()
    );
}

/// Like [`printed`], but also accepts a relative difference up to `rel`: for values that
/// docs/models.md computed with a stated relative accuracy (random-`T` chains: "200–400 nodes give
/// 1e-7 relative accuracy", §5), or whose table is internally inconsistent at the last digit.
fn printed_rel(x: f64, s: &str, rel: f64) {
    let v: f64 = s.parse().unwrap();
    if (x - v).abs() <= rel * v.abs() {
        return;
    }
    printed(x, s);
}

/// docs/models.md §5: the reference chains with random T are accurate to 1e-7 relative.
const MATH_CHAIN_REL: f64 = 1e-7;

fn in_ci(x: f64, centre: f64, half: f64) {
    assert!(
        (x - centre).abs() <= half,
        "{x} outside the Monte-Carlo interval {centre} ± {half}"
    );
}

fn set_u() -> LlmBatch {
    LlmBatch::new(
        BatchTime::new(0.004, 0.03, 0.0002, 0.02).unwrap(),
        TokenDist::Uniform {
            lo: 0.0,
            hi: 1000.0,
        },
    )
    .unwrap()
}

fn lognormal() -> TokenDist {
    TokenDist::Lognormal {
        mu: 7.0,
        sigma: 0.7,
    }
}

fn set_l() -> LlmBatch {
    LlmBatch::new(
        BatchTime::new(0.0004, 0.003, 0.0003, 0.002).unwrap(),
        lognormal(),
    )
    .unwrap()
}

fn law(d: TokenDist) -> queueing::batch::TokenLaw {
    queueing::batch::TokenLaw::new(d).unwrap()
}

fn empirical() -> TokenDist {
    let values = vec![100.0, 500.0, 2000.0];
    let probs = vec![0.5, 0.3, 0.2];
    TokenDist::Empirical(Empirical {
        values,
        cdf: vec![0.5, 0.8, 1.0],
        probs,
        source: "docs/models.md §9.5".into(),
    })
}

fn opts() -> ChainOptions {
    ChainOptions::default()
}

#[test]
fn max_moments_table_9_5() {
    let bs = [1, 2, 8, 32];
    let table: [(TokenDist, [&str; 4], [&str; 4]); 5] = [
        (
            TokenDist::Uniform {
                lo: 0.0,
                hi: 1000.0,
            },
            ["500", "666.6666667", "888.8888889", "969.6969697"],
            ["333333.3333", "500000", "800000", "941176.4706"],
        ),
        (
            TokenDist::TruncNormal {
                mean: 800.0,
                sd: 20.0,
                lo: 0.0,
                hi: 2000.0,
            },
            ["800", "811.2837917", "828.4720061", "841.3933766"],
            ["640400", "658454.0667", "686515.0238", "708039.4611"],
        ),
        (
            TokenDist::TruncNormal {
                mean: 0.0,
                sd: 1.0,
                lo: 0.0,
                hi: f64::INFINITY,
            },
            ["0.7978845608", "1.128379167", "1.783367078", "2.347079199"],
            ["1", "1.636619772", "3.457433802", "5.709505303"],
        ),
        (
            lognormal(),
            ["1401.081896", "1932.627223", "3272.192484", "4974.473244"],
            ["3204286.492", "5376155.701", "13322019.35", "28646302.84"],
        ),
        (
            empirical(),
            ["600", "940", "1746.77926", "1998.811577"],
            ["880000", "1540000", "3369916.9", "3997028.944"],
        ),
    ];
    for (d, m1s, m2s) in table {
        let l = law(d);
        for (i, &b) in bs.iter().enumerate() {
            let (m1, m2) = l.max_moments(b);
            printed(m1, m1s[i]);
            printed(m2, m2s[i]);
        }
    }
    // Discrete uniform {0..1000}, b = 8 (docs/models.md §5).
    let l = law(TokenDist::DiscreteUniform { lo: 0, hi: 1000 });
    printed(l.max_moments(8).0, "889.2771");
}

#[test]
fn order_statistics_9_5() {
    let l = law(lognormal());
    let os = l.order_stat_means(8);
    let want = [
        "441.5564",
        "639.6602",
        "826.9741",
        "1031.7219",
        "1277.6220",
        "1604.6159",
        "2114.3122",
        "3272.1925",
    ];
    for (x, w) in os.iter().zip(want) {
        printed(*x, w);
    }
    printed(os.iter().sum::<f64>() / 8.0, "1401.0819");
    // Uniform closed form and the empirical (incomplete-beta) route: the largest order statistic
    // is M_b, whose mean is in the table above; the mean of all of them is E[X].
    let u = law(TokenDist::Uniform {
        lo: 0.0,
        hi: 1000.0,
    });
    printed(u.order_stat_mean(8, 8), "888.8888889");
    let e = law(empirical());
    let os = e.order_stat_means(8);
    printed(os[7], "1746.77926");
    printed(os.iter().sum::<f64>() / 8.0, "600");
    // Truncated normal: same identities.
    let t = law(TokenDist::TruncNormal {
        mean: 800.0,
        sd: 20.0,
        lo: 0.0,
        hi: 2000.0,
    });
    let os = t.order_stat_means(32);
    printed(os[31], "841.3933766");
    printed(os.iter().sum::<f64>() / 32.0, "800");
}

#[test]
fn batch_time_table_9_5() {
    // (set, b, E[T], E[T²], v, E[T^el], c̄)
    let u = set_u();
    let l = set_l();
    let rows: [(&LlmBatch, usize, &str, &str, &str, &str, &str); 6] = [
        (
            &u,
            1,
            "10.134",
            "136.7012893",
            "0.098677719",
            "10.134",
            "10.134",
        ),
        (
            &u,
            8,
            "19.262",
            "375.632644",
            "0.41532551",
            "18.63977778",
            "10.62866667",
        ),
        (
            &u,
            32,
            "25.758",
            "664.0769169",
            "1.2423325",
            "22.75193939",
            "12.32466667",
        ),
        (
            &l,
            1,
            "3.225888361",
            "16.97260002",
            "0.30999213",
            "3.225888",
            "3.225888",
        ),
        (
            &l,
            8,
            "14.40384693",
            "258.0928638",
            "0.55540718",
            "9.913181523",
            "5.054715172",
        ),
        (
            &l,
            32,
            "57.71968963",
            "3856.470203",
            "0.55440354",
            "23.41513271",
            "11.32497851",
        ),
    ];
    for (m, b, t1, t2, v, tel, cbar) in rows {
        let (e1, e2) = m.padded_moments(b);
        printed(e1, t1);
        printed(e2, t2);
        printed(m.speed(b), v);
        // docs/models.md's E[T^el_8] for Set L (9.913181523) differs by 5e-9 from
        // t1 + k3·8·E[X] + k4·E[M_8] = 9.913181518 computed from the same table's E[X] and
        // E[M_8] (both matched to all printed digits above), so allow 1e-9 relative.
        printed_rel(m.elastic_moments(b).0, tel, 1e-9);
        // docs/models.md's c̄ for Set L is off by ≤ 6e-9 relative from the closed form checked in
        // `elastic_completion_closed_form_lognormal` below; allow 1e-8.
        printed_rel(m.elastic_completion(b), cbar, 1e-8);
    }
    printed(u.elastic_moments(8).1, "351.7741551");
    // Elastic second moment at b = 1 is the padded one (a single request).
    let (p1, p2) = l.padded_moments(1);
    let (q1, q2) = l.elastic_moments(1);
    assert!((p1 - q1).abs() < 1e-12 && (p2 - q2).abs() < 1e-9 * p2);
}

/// Lognormal: E[min(X1, X2)] = 2 E[X] Φ(−σ/√2), so c̄(b) = t1(b) + k3 (E[X] + (b−1)·that) +
/// k4 E[X] in closed form (scipy: 5.054715155793066 at b = 8, 11.324978453106219 at b = 32).
#[test]
fn elastic_completion_closed_form_lognormal() {
    let l = set_l();
    assert!((l.elastic_completion(8) - 5.054_715_155_793_066).abs() < 1e-12);
    assert!((l.elastic_completion(32) - 11.324_978_453_106_219).abs() < 1e-11);
    // The order-statistic route of docs/models.md §8 agrees: c̄ = t1 + (k3/b) Σ (2(b−i)+1) E[X_(i)] + k4 E[X].
    let os = l.tokens.order_stat_means(8);
    let s: f64 = os
        .iter()
        .enumerate()
        .map(|(i, x)| (2.0 * (8.0 - (i as f64 + 1.0)) + 1.0) * x)
        .sum();
    let via_os = l.coeffs.t1(8.0) + 0.0003 / 8.0 * s + 0.002 * l.tokens.mean();
    assert!((via_os - 5.054_715_155_793_066).abs() < 1e-10);
}

#[test]
fn speed_optimum_9_5() {
    let (k, v) = set_l().speed_optimum(256);
    assert_eq!(k, 15);
    printed(v, "0.57693325");
    let (k, v) = set_u().speed_optimum(256);
    assert_eq!(k, 256);
    printed(v, "3.5566938");
    let f3b = BatchTime::new(0.004, 0.03, 0.005, 0.02).unwrap();
    let m = LlmBatch::new(f3b, lognormal()).unwrap();
    let (k, v) = m.speed_optimum(256);
    assert_eq!(k, 8);
    printed(v, "0.04073454");
    printed(m.speed(1), "0.02852168");
    printed(m.speed(16), "0.03923210");
    let un = LlmBatch::new(
        f3b,
        TokenDist::Uniform {
            lo: 0.0,
            hi: 2000.0,
        },
    )
    .unwrap();
    let tn = LlmBatch::new(
        f3b,
        TokenDist::TruncNormal {
            mean: 800.0,
            sd: 20.0,
            lo: 0.0,
            hi: 2000.0,
        },
    )
    .unwrap();
    for m in [&un, &tn] {
        assert!((1..128).all(|k| m.speed(k + 1) > m.speed(k)));
    }
    printed(un.speed(128), "0.097687");
    printed(tn.speed(128), "0.227438");
}

/// §9.4 C-U1, C-U2: exact chain with random T_b (uniform outputs), the paper's T_b := E[T_b]
/// chain, the heuristic eq-16 bound, and the Monte-Carlo intervals.
#[test]
fn dynamic_set_u_9_4() {
    let m = set_u();
    let cases = [
        (
            0.5,
            "30.36332",
            "10.06824",
            "9.9023",
            "33.67434",
            "30.24668",
            (30.371, 0.015),
            (10.073, 0.007),
        ),
        (
            2.0,
            "49.79529",
            "16.55112",
            "65.976",
            "51.04636",
            "49.78725",
            (49.790, 0.035),
            (16.547, 0.014),
        ),
    ];
    for (lambda, lat, wait, eb, bound, det, mc_lat, mc_wait) in cases {
        let r = analyze(&BatchConfig {
            policy: Policy::Dynamic,
            max_batch: None,
            arrival_rate: lambda,
            model: m.clone(),
            chain: opts(),
        })
        .unwrap();
        let exact = &r.estimates[0];
        assert_eq!(exact.method, Method::Exact);
        printed(exact.latency_s, lat);
        printed(exact.wait_s.unwrap(), wait);
        printed(exact.mean_batch.unwrap(), eb);
        in_ci(exact.latency_s, mc_lat.0, mc_lat.1);
        in_ci(exact.wait_s.unwrap(), mc_wait.0, mc_wait.1);
        let paper = &r.estimates[1];
        assert_eq!(paper.method, Method::Approximation);
        printed(paper.latency_s, det);
        let b = &r.estimates[2];
        assert_eq!(b.method, Method::Bound);
        assert!(b.heuristic, "eq 16 with random batch times is heuristic");
        printed(b.latency_s, bound);
        assert!(b.latency_s >= exact.latency_s);
        printed(r.max_stable_rate, "4.901960784");
    }
}

/// §9.6 E2a–c: Set L, λ = 0.3, fixed K: random-T exact chain and the paper's roots formula.
#[test]
fn fixed_set_l_9_6() {
    let m = set_l();
    let cases = [
        (
            4,
            "8.1875189",
            "5.8834545",
            "7.5885177",
            "14.070973",
            "15.776037",
            (7.584, 0.032),
            (15.769, 0.036),
        ),
        (
            8,
            "14.403847",
            "11.872765",
            "13.113900",
            "26.276612",
            "27.517747",
            (13.114, 0.034),
            (27.512, 0.042),
        ),
        (
            16,
            "27.735398",
            "25.032539",
            "26.240775",
            "52.767937",
            "53.976173",
            (26.249, 0.047),
            (53.94, 0.11),
        ),
    ];
    for (k, t, wdet, wexact, ldet, lexact, mc_w, mc_l) in cases {
        printed(m.padded_moments(k).0, t);
        let r = analyze(&BatchConfig {
            policy: Policy::Fixed,
            max_batch: Some(k),
            arrival_rate: 0.3,
            model: m.clone(),
            chain: opts(),
        })
        .unwrap();
        let (ex, roots) = (&r.estimates[0], &r.estimates[1]);
        assert_eq!(ex.method, Method::Exact);
        assert_eq!(roots.method, Method::Approximation);
        printed_rel(ex.wait_s.unwrap(), wexact, MATH_CHAIN_REL);
        printed_rel(ex.latency_s, lexact, MATH_CHAIN_REL);
        printed(roots.wait_s.unwrap(), wdet);
        printed(roots.latency_s, ldet);
        in_ci(ex.wait_s.unwrap(), mc_w.0, mc_w.1);
        in_ci(ex.latency_s, mc_l.0, mc_l.1);
        // The deterministic chain reproduces the roots formula.
        let det = Padded {
            llm: &m,
            treatment: PaddedTreatment::MeanOnly,
        };
        let s = solve_fixed(&det, 0.3, k, &opts()).unwrap();
        assert!((s.wait_s - roots.wait_s.unwrap()).abs() < 1e-8);
    }
}

/// §9.6 E3: latency-optimal fixed K (paper's deterministic T_K) over 1..79.
#[test]
fn optimal_fixed_k_9_6_e3() {
    let m = set_l();
    let c = optimize_fixed(
        &m,
        0.3,
        79,
        Objective::Latency,
        PaddedTreatment::MeanOnly,
        &opts(),
    )
    .unwrap();
    assert_eq!(c.best.k, 2);
    printed(c.best.latency_s, "10.083957");
    // The exact (random-T) optimum and the wait optimum are computed too.
    let c = optimize_fixed(
        &m,
        0.3,
        79,
        Objective::Wait,
        PaddedTreatment::Random,
        &opts(),
    )
    .unwrap();
    assert!(
        c.best.wait_s
            <= c.candidates
                .iter()
                .map(|x| x.wait_s)
                .fold(f64::INFINITY, f64::min)
    );
}

/// §9.7 F1, F2: dynamic batching with a cap, Set L, λ = 0.3.
#[test]
fn capped_dynamic_set_l_9_7() {
    let m = set_l();
    let cases = [
        (
            8,
            "9.253232",
            "3.186454",
            "1.70062",
            "7.130256",
            (9.260, 0.042),
            (3.184, 0.021),
        ),
        (
            4,
            "9.367067",
            "3.901082",
            "1.67711",
            "7.154973",
            (9.376, 0.021),
            (3.909, 0.016),
        ),
    ];
    for (k, lat, wait, eb, det, mc_l, mc_w) in cases {
        let r = analyze(&BatchConfig {
            policy: Policy::Dynamic,
            max_batch: Some(k),
            arrival_rate: 0.3,
            model: m.clone(),
            chain: opts(),
        })
        .unwrap();
        let ex = &r.estimates[0];
        printed_rel(ex.latency_s, lat, MATH_CHAIN_REL);
        printed_rel(ex.wait_s.unwrap(), wait, MATH_CHAIN_REL);
        printed(ex.mean_batch.unwrap(), eb);
        printed(r.estimates[1].latency_s, det);
        in_ci(ex.latency_s, mc_l.0, mc_l.1);
        in_ci(ex.wait_s.unwrap(), mc_w.0, mc_w.1);
    }
    // The best cap is computed by exact chains; unbounded padded dynamic is never stable here.
    let c = optimize_cap(&m, 0.3, 32, Objective::Latency, false, &opts()).unwrap();
    assert!(c.best.latency_s <= 9.253232);
    let e = analyze(&BatchConfig {
        policy: Policy::Dynamic,
        max_batch: None,
        arrival_rate: 0.3,
        model: m.clone(),
        chain: opts(),
    })
    .unwrap_err();
    assert!(e.to_string().contains("never") || e.to_string().contains("every arrival rate"));
}

/// A cap whose chain does not converge (its truncation is too short for its queue) is left out of
/// the search and named; it must not abort the search, nor change the optimum found among the others.
#[test]
fn caps_that_do_not_converge_are_named_not_fatal() {
    let m = set_l();
    let full = optimize_cap(&m, 0.3, 32, Objective::Latency, false, &opts()).unwrap();
    assert!(full.not_converged.is_empty(), "{:?}", full.not_converged);
    // 300 states are too few for cap 1 (the most loaded, ρ = λ·E[T_1] the largest), enough for the rest.
    let short = ChainOptions {
        max_states: 300,
        ..opts()
    };
    let rho = |k: usize| 0.3 * m.padded_moments(k).0 / k as f64;
    assert!((2..=32).all(|k| rho(1) > rho(k)));
    let c = optimize_cap(&m, 0.3, 32, Objective::Latency, false, &short).unwrap();
    assert_eq!(c.not_converged, vec![1]);
    assert_eq!(c.best.k, full.best.k);
    assert!((c.best.latency_s - full.best.latency_s).abs() <= 1e-9 * full.best.latency_s);
    // Fixed batching: the same treatment.
    let f = optimize_fixed(
        &m,
        0.3,
        32,
        Objective::Latency,
        PaddedTreatment::Random,
        &short,
    );
    let ff = optimize_fixed(
        &m,
        0.3,
        32,
        Objective::Latency,
        PaddedTreatment::Random,
        &opts(),
    );
    assert_eq!(f.unwrap().best.k, ff.unwrap().best.k);
    // When every stable cap fails, the error says so (not "no K is stable") and names the caps.
    let tiny = ChainOptions {
        max_states: 100,
        ..opts()
    };
    let e = optimize_cap(&m, 0.3, 32, Objective::Latency, false, &tiny).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("too close to instability") && msg.contains("K = 1–32"),
        "{msg}"
    );
}

/// §9.8 G1, G2: elastic batching, Set U, unbounded (gamma two-moment chain).
#[test]
fn elastic_set_u_9_8() {
    let m = set_u();
    let cases = [
        (
            0.5,
            "20.3902",
            "9.577",
            "9.419",
            "31.80",
            (20.395, 0.010),
            (9.581, 0.007),
        ),
        (
            2.0,
            "26.0542",
            "12.412",
            "49.56",
            "38.06",
            (26.058, 0.018),
            (12.412, 0.009),
        ),
    ];
    for (lambda, lat, wait, eb, bound, mc_l, mc_w) in cases {
        let r = analyze(&BatchConfig {
            policy: Policy::Elastic,
            max_batch: None,
            arrival_rate: lambda,
            model: m.clone(),
            chain: opts(),
        })
        .unwrap();
        let ex = &r.estimates[0];
        assert_eq!(ex.method, Method::Approximation);
        // The gamma closure is itself an approximation; docs/models.md's two chain variants differ by
        // 1e-4 relative (20.3902 gamma vs 20.3881 sampled at λ = 0.5). Ours matches G2 to all
        // printed digits and G1 to 5e-6 relative on latency, 3e-4 on wait (9.5792 vs 9.577)
        // and 6e-4 on E[B] (9.4242 vs 9.419); the Monte-Carlo intervals below are the
        // independent check.
        printed_rel(ex.latency_s, lat, 1e-5);
        printed_rel(ex.wait_s.unwrap(), wait, 5e-4);
        printed_rel(ex.mean_batch.unwrap(), eb, 1e-3);
        in_ci(ex.latency_s, mc_l.0, mc_l.1);
        in_ci(ex.wait_s.unwrap(), mc_w.0, mc_w.1);
        let b = &r.estimates[1];
        assert!(b.heuristic && b.method == Method::Bound);
        printed(b.latency_s, bound);
    }
    // Elastic with a cap equal to a batch that never binds reproduces unbounded.
    let el = Elastic { llm: &m };
    let a = solve_dynamic(&el, 0.5, None, &opts()).unwrap();
    let b = solve_dynamic(&el, 0.5, Some(10_000), &opts()).unwrap();
    assert!((a.latency_s - b.latency_s).abs() < 1e-9);
}

/// docs/models.md §11: the independent reference simulators (SimPy, Ciw, numba, C; 1e6 requests,
/// 95% CIs by batch means and by 10 replications) with integer tokens
/// n = min(max(1, round(X)), 2000), X ~ lognormal(7, 0.7), T = (0.1 + 0.01 m) + (0.02 + 0.0005 m)·max n.
/// The exact chains (and the elastic gamma closure) must land inside both intervals.
#[test]
fn simulator_scenarios_11() {
    let dist = queueing::batch::integer_tokens(&lognormal(), Some(2000)).unwrap();
    let m = LlmBatch::new(BatchTime::new(0.01, 0.1, 0.0005, 0.02).unwrap(), dist).unwrap();
    // (policy, λ, K, wait CIs, sojourn CIs)
    type Ci = (f64, f64);
    type Case = (Policy, f64, Option<usize>, [Ci; 2], [Ci; 2]);
    let cases: [Case; 5] = [
        (
            Policy::Dynamic,
            0.2,
            Some(16),
            [(25.070, 0.045), (25.052, 0.023)],
            [(75.133, 0.078), (75.089, 0.040)],
        ),
        (
            Policy::Fixed,
            0.2,
            Some(16),
            [(38.438, 0.078), (38.419, 0.033)],
            [(94.530, 0.079), (94.507, 0.032)],
        ),
        (
            Policy::Elastic,
            0.2,
            Some(16),
            [(22.421, 0.035), (22.398, 0.011)],
            [(50.599, 0.051), (50.546, 0.015)],
        ),
        (
            Policy::Dynamic,
            0.5,
            None,
            [(40.948, 0.082), (40.878, 0.053)],
            [(123.49, 0.24), (123.30, 0.14)],
        ),
        (
            Policy::Elastic,
            0.5,
            None,
            [(28.812, 0.040), (28.750, 0.015)],
            [(65.679, 0.084), (65.554, 0.032)],
        ),
    ];
    for (policy, lambda, k, waits, sojourns) in cases {
        let r = analyze(&BatchConfig {
            policy,
            max_batch: k,
            arrival_rate: lambda,
            model: m.clone(),
            chain: opts(),
        })
        .unwrap();
        let e = &r.estimates[0];
        eprintln!(
            "{policy} λ={lambda} K={k:?}: wait {} latency {}",
            e.wait_s.unwrap(),
            e.latency_s
        );
        // The elastic chain uses the gamma two-moment closure (Method::Approximation): allow
        // it 5e-4 relative beyond the intervals (it misses the tight replication interval of
        // the λ = 0.2 wait, 22.398 ± 0.011, by 0.0004 s). Exact chains get no allowance.
        let slack = |c: f64| match e.method {
            Method::Exact => 0.0,
            _ => 5e-4 * c,
        };
        // waits[0], sojourns[0]: 30 batch means of one run; [1]: 10 independent replications.
        // The replication interval is the reliable one; batch means of a strongly correlated
        // run undercover (for unbounded dynamic batching at λ = 0.5 the two simulator
        // intervals barely overlap: 40.948 ± 0.082 vs 40.878 ± 0.053), so the batch-means
        // interval is checked at twice its half-width.
        in_ci(
            e.wait_s.unwrap(),
            waits[1].0,
            waits[1].1 + slack(waits[1].0),
        );
        in_ci(
            e.latency_s,
            sojourns[1].0,
            sojourns[1].1 + slack(sojourns[1].0),
        );
        in_ci(
            e.wait_s.unwrap(),
            waits[0].0,
            2.0 * waits[0].1 + slack(waits[0].0),
        );
        in_ci(
            e.latency_s,
            sojourns[0].0,
            2.0 * sojourns[0].1 + slack(sojourns[0].0),
        );
    }
}
