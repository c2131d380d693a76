//! Impatient percentiles against the event simulator (docs/models.md §2.5, §11).

use super::*;

/// Served users' wait and latency percentiles of M/G/1+D (exact, `queueing::impatience::served`)
/// inside the simulator's 95% intervals, at ρ = 0.89 (the docs/usage.md example) and ρ = 1.34
/// (overload, stable only through the patience), reneging and balking, fixed seeds.
///
/// Rule: six quantiles are checked per case, so each interval is widened by the Bonferroni
/// factor `t₂₉(1 − 0.05/12)/t₂₉(0.975) = 2.86/2.045 ≈ 1.40`, rounded up to 1.5 (30 batch
/// means; a family-wise 95% check). The simulated histograms are of served users, like the
/// analytic laws.
#[test]
fn impatient_percentiles_agree_with_the_simulator() {
    let cases = [
        (0.04, 60.0, Abandonment::Renege, 11),
        (0.06, 30.0, Abandonment::Balk, 12),
    ];
    for (lambda, tau, abandonment, seed) in cases {
        let w = Workload {
            tokens: TokenDist::parse("lognormal:7,0.7").unwrap(),
            tokens_spec: "lognormal:7,0.7".into(),
            arrival_rate: lambda,
            service: LinearService {
                per_token_s: 0.02203184157,
                intercept_s: 0.7764157233,
            },
            patience: Some(tau),
            approx: Approx::Exact,
            abandonment,
            grid_cells: DEFAULT_GRID,
        }
        .validated()
        .unwrap();
        let sim = SimSettings {
            requests: 300_000,
            seed,
            replications: 1,
        };
        let a = answer(&w, Some(1300.0), 1300.0, Some(&sim), &[0.5, 0.9, 0.99]).unwrap();
        let p = a.percentiles.as_ref().unwrap();
        assert_eq!(p.population, "served users");
        assert_eq!(p.method, Method::Exact);
        let v = a.validation.as_ref().unwrap();
        assert!(v.stable, "λ = {lambda}: {:?}", v.unstable_reason);
        let pct: Vec<&Comparison> = v
            .comparisons
            .iter()
            .filter(|c| c.quantity.starts_with("served "))
            .collect();
        assert_eq!(pct.len(), 6, "{:?}", v.comparisons);
        for c in pct {
            assert!(
                (c.analytic - c.sim).abs() <= 1.5 * c.sim_half_width,
                "λ = {lambda}, τ = {tau}: {} exact {} s vs simulated {} ± {} s",
                c.quantity,
                c.analytic,
                c.sim,
                c.sim_half_width
            );
        }
    }
}
