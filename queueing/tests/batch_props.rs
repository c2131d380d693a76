//! Property tests of the batch models (docs/models.md §4, §6).

use proptest::prelude::*;
use queueing::batch::{
    ChainOptions, LinearDeterministic, fixed_roots, inoue_bound, inoue_phi, solve_dynamic,
    solve_fixed,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Inoue's bound is ≥ the exact latency for deterministic linear batch times (docs/models.md §4:
    /// held on 150 random sets there), and Φ(π0) at the chain's π0 is the chain's latency.
    #[test]
    fn bound_dominates_exact_deterministic(
        alpha in 0.01f64..2.0,
        tau0 in 0.01f64..5.0,
        load in 0.02f64..0.9,
    ) {
        let lambda = load / alpha;
        let svc = LinearDeterministic::new(alpha, tau0).unwrap();
        let s = solve_dynamic(&svc, lambda, None, &ChainOptions::default()).unwrap();
        let b = inoue_bound(lambda, alpha, tau0).unwrap();
        prop_assert!(b.bound >= s.latency_s * (1.0 - 1e-9), "bound {} < exact {}", b.bound, s.latency_s);
        let phi = inoue_phi(lambda, alpha, tau0, s.p_no_arrival);
        prop_assert!((phi - s.latency_s).abs() <= 1e-8 * s.latency_s);
    }

    /// Fixed batching with deterministic T: the roots formula and the exact chain agree.
    #[test]
    fn roots_equal_chain(k in 1usize..24, t in 0.1f64..10.0, load in 0.05f64..0.9) {
        let lambda = load * k as f64 / t;
        let svc = LinearDeterministic::new(0.0, t).unwrap();
        let s = solve_fixed(&svc, lambda, k, &ChainOptions::default()).unwrap();
        let r = fixed_roots(lambda, k, t).unwrap();
        prop_assert!((s.wait_s - r.wait_s).abs() <= 1e-8 * r.wait_s.max(t), "chain {} roots {}", s.wait_s, r.wait_s);
    }
}
