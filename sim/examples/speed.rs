//! One whole simulation run of docs/models.md §11's scenarios, timed: for long runs (1e8 requests) and
//! memory checks with `/usr/bin/time`, which the criterion bench cannot do quickly.
//!
//! `cargo run --release -p sim --example speed -- mg1|dynamic|elastic [REQUESTS]`

use queueing::dist::TokenDist;
use sim::{
    Arrivals, BatchTime, LinearService, Policy, RunConfig, Scenario, TokenLaw, TokenMode, Tokens,
};

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "mg1".into());
    let n = std::env::args()
        .nth(2)
        .map(|s| s.parse::<f64>().expect("REQUESTS is a number such as 1e8") as u64)
        .unwrap_or(10_000_000);
    let bt = BatchTime::new(0.01, 0.1, 0.0005, 0.02).unwrap();
    let (policy, rate) = match which.as_str() {
        "mg1" => (
            Policy::Mg1 {
                service: LinearService {
                    per_token_s: 0.0229,
                    intercept_s: 0.0,
                },
                patience: None,
            },
            0.029621031639601243,
        ),
        "dynamic" => (
            Policy::Dynamic {
                batch: bt,
                max_batch: Some(16),
            },
            0.2,
        ),
        "elastic" => (
            Policy::Elastic {
                batch: bt,
                max_batch: Some(16),
            },
            0.2,
        ),
        other => panic!("unknown scenario {other}: use mg1, dynamic or elastic"),
    };
    let sc = Scenario {
        policy,
        arrivals: Arrivals::Poisson { rate_rps: rate },
        tokens: Tokens::Law(TokenLaw::Dist(TokenDist::Lognormal {
            mu: 7.0,
            sigma: 0.7,
        })),
        max_tokens: Some(2000.0),
        token_mode: TokenMode::Integer,
    };
    let r = sim::run(
        &sc,
        &RunConfig {
            requests: n,
            ..RunConfig::default()
        },
    )
    .expect("valid scenario");
    let w = r.wait_s.mean;
    println!(
        "{which}: {n} requests in {:.3} s wall ({:.2} M req/s); mean wait {:.3} ± {:.3} s; state {} bytes",
        r.elapsed_s,
        r.sim_requests_per_s / 1e6,
        w.value,
        w.half_width,
        r.state_bytes
    );
}
