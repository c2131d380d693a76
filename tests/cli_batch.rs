//! `tokenq queue batch` and `tokenq optimize batch-size` end to end (docs/models.md §9.4–§9.7 values).

mod common;

use assert_cmd::Command;
use predicates::str::contains;

fn tokenq() -> Command {
    Command::cargo_bin("tokenq").unwrap()
}

const SET_L: [&str; 6] = [
    "--tokens",
    "lognormal:7,0.7",
    "--first-token-s",
    "0.0004,0.003",
    "--decode-step-s",
    "0.0003,0.002",
];

fn json(args: &[&str]) -> serde_json::Value {
    let out = tokenq().args(args).arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// docs/models.md §9.4 C-U1: Set U, λ = 0.5, exact 30.36332, paper 30.24668, bound 33.67434.
#[test]
fn dynamic_set_u_json() {
    let v = json(&[
        "queue",
        "batch",
        "--policy",
        "dynamic",
        "--tokens",
        "uniform:0,1000",
        "--arrival-rate",
        "0.5",
        "--first-token-s",
        "0.004,0.03",
        "--decode-step-s",
        "0.0002,0.02",
    ]);
    let e = v["estimates"].as_array().unwrap();
    assert_eq!(e[0]["method"], "exact");
    assert!((e[0]["latency_s"].as_f64().unwrap() - 30.36332).abs() < 5e-6);
    assert!((e[0]["wait_s"].as_f64().unwrap() - 10.06824).abs() < 5e-6);
    assert_eq!(e[1]["method"], "approximation");
    assert!((e[1]["latency_s"].as_f64().unwrap() - 30.24668).abs() < 5e-6);
    assert_eq!(e[2]["method"], "bound");
    assert_eq!(e[2]["heuristic"], true);
    assert!((e[2]["latency_s"].as_f64().unwrap() - 33.67434).abs() < 5e-6);
    assert!((v["max_stable_rate_req_s"].as_f64().unwrap() - 1.0 / 0.204).abs() < 1e-9);
}

/// docs/models.md §9.6 E2b: fixed K = 8, λ = 0.3: exact 27.517747, roots 26.276612 (latency).
#[test]
fn fixed_set_l_text_and_json() {
    let mut args = vec![
        "queue",
        "batch",
        "--policy",
        "fixed",
        "--max-batch",
        "8",
        "--arrival-rate",
        "0.3",
    ];
    args.extend(SET_L);
    tokenq()
        .args(&args)
        .assert()
        .success()
        .stdout(contains("27.5177"))
        .stdout(contains("26.276612"))
        .stdout(contains("exact"))
        .stdout(contains("approximation"))
        .stdout(contains("req/s"));
    let v = json(&args);
    let e = v["estimates"].as_array().unwrap();
    assert!((e[0]["latency_s"].as_f64().unwrap() - 27.517747).abs() < 3e-6);
    assert!((e[1]["latency_s"].as_f64().unwrap() - 26.276612).abs() < 5e-7);
}

/// §9.7 F1 through the CLI, and the unbounded lognormal case is refused with advice.
#[test]
fn capped_dynamic_and_never_stable() {
    let mut args = vec![
        "queue",
        "batch",
        "--policy",
        "dynamic",
        "--max-batch",
        "8",
        "--arrival-rate",
        "0.3",
    ];
    args.extend(SET_L);
    let v = json(&args);
    assert!((v["estimates"][0]["latency_s"].as_f64().unwrap() - 9.253232).abs() < 1e-6);
    let mut args = vec![
        "queue",
        "batch",
        "--policy",
        "dynamic",
        "--arrival-rate",
        "0.3",
    ];
    args.extend(SET_L);
    tokenq()
        .args(&args)
        .assert()
        .failure()
        .stderr(contains("every arrival rate"))
        .stderr(contains("--max-batch"));
}

#[test]
fn bad_input_is_a_one_line_error() {
    let cases: [(&[&str], &str); 5] = [
        (
            &[
                "--policy",
                "fixed",
                "--max-batch",
                "0",
                "--arrival-rate",
                "0.3",
            ],
            "--max-batch 0",
        ),
        (
            &["--policy", "fixed", "--arrival-rate", "0.3"],
            "needs --max-batch",
        ),
        (
            &[
                "--policy",
                "dynamic",
                "--max-batch",
                "8",
                "--arrival-rate",
                "-1",
            ],
            "--arrival-rate",
        ),
        (
            &[
                "--policy",
                "fixed",
                "--max-batch",
                "8",
                "--arrival-rate",
                "0.9",
            ],
            "largest stable arrival rate is 0.555407",
        ),
        (
            &["--policy", "elastic", "--arrival-rate", "nan"],
            "--arrival-rate",
        ),
    ];
    for (extra, msg) in cases {
        let mut args = vec!["queue", "batch"];
        args.extend(extra);
        args.extend(SET_L);
        tokenq()
            .args(&args)
            .assert()
            .failure()
            .stderr(contains(msg));
    }
    tokenq()
        .args([
            "queue",
            "batch",
            "--policy",
            "dynamic",
            "--max-batch",
            "4",
            "--arrival-rate",
            "0.3",
            "--tokens",
            "lognormal:7,0.7",
            "--first-token-s",
            "-0.1,0.003",
            "--decode-step-s",
            "0.0003,0.002",
        ])
        .assert()
        .failure()
        .stderr(contains("--first-token-s: K1 = -0.1"));
}

/// §9.5: K_v = 15 for Set L; §9.6 E3: the paper's latency-optimal fixed K is 2 (10.083957 s).
#[test]
fn optimize_batch_size() {
    let mut args = vec!["optimize", "batch-size", "--objective", "speed"];
    args.extend(SET_L);
    let v = json(&args);
    assert_eq!(v["speed_optimal_k"], 15);
    assert!((v["speed_req_s"].as_f64().unwrap() - 0.57693325).abs() < 5e-9);
    let mut args = vec![
        "optimize",
        "batch-size",
        "--policy",
        "fixed",
        "--arrival-rate",
        "0.3",
        "--max-k",
        "79",
    ];
    args.extend(SET_L);
    let v = json(&args);
    assert_eq!(v["paper_best"]["k"], 2);
    assert!((v["paper_best"]["latency_s"].as_f64().unwrap() - 10.083957).abs() < 5e-7);
    assert_eq!(v["best"]["method"], "exact");
}

/// `--max-tokens`: the simulator's integer tokens (docs/models.md §11, dynamic λ = 0.2, K = 16): the
/// exact chain lies inside the reference simulators' intervals (wait 25.052 ± 0.023 s,
/// sojourn 75.089 ± 0.040 s, 10 replications).
#[test]
fn max_tokens_matches_simulator_scenario() {
    let v = json(&[
        "queue",
        "batch",
        "--policy",
        "dynamic",
        "--max-batch",
        "16",
        "--arrival-rate",
        "0.2",
        "--tokens",
        "lognormal:7,0.7",
        "--max-tokens",
        "2000",
        "--first-token-s",
        "0.01,0.1",
        "--decode-step-s",
        "0.0005,0.02",
    ]);
    let e = &v["estimates"][0];
    assert!((e["wait_s"].as_f64().unwrap() - 25.052).abs() < 0.023);
    assert!((e["latency_s"].as_f64().unwrap() - 75.089).abs() < 0.040);
    tokenq()
        .args([
            "queue",
            "batch",
            "--policy",
            "dynamic",
            "--arrival-rate",
            "0.2",
            "--tokens",
            "lognormal:7,0.7",
            "--max-tokens",
            "0",
            "--first-token-s",
            "0.01,0.1",
            "--decode-step-s",
            "0.0005,0.02",
        ])
        .assert()
        .failure()
        .stderr(contains("--max-tokens 0"));
}

/// `queue batch --percentiles`: with batch cap 1, dynamic batching is M/D/1 (constant 100
/// decode tokens: T_1 = 0.5 + 0.005·100 = 1 s). The simulated p90 of the wait and of the
/// latency must contain Erlang's exact M/D/1 values (tests/common's `md1_quantile`): `P(W ≤ x) = (1 − ρ)
/// Σ_{k ≤ x/D} (λ(kD − x))^k/k!·e^{−λ(kD − x)}`, latency = wait + D.
/// Rule: two checks, so each 95% interval is widened by the Bonferroni factor
/// `t₂₉(1 − 0.05/4)/t₂₉(0.975) = 2.36/2.045 ≈ 1.16`, rounded up to 1.2.
#[test]
fn dynamic_cap_one_percentiles_contain_erlangs_md1() {
    let v = json(&[
        "queue",
        "batch",
        "--policy",
        "dynamic",
        "--max-batch",
        "1",
        "--tokens",
        "const:100",
        "--arrival-rate",
        "0.7",
        "--first-token-s",
        "0,0.5",
        "--decode-step-s",
        "0,0.005",
        "--percentiles",
        "50,90,99",
    ]);
    let (lambda, d) = (0.7, 1.0);
    let p90 = common::md1_quantile(lambda, d, 0.9);
    let p = &v["percentiles"];
    assert_eq!(p["method"], "simulation");
    for (what, exact) in [("wait", p90), ("latency", p90 + d)] {
        let e = &p[what]["p90"];
        let (val, hw) = (
            e["value"].as_f64().unwrap(),
            e["half_width"].as_f64().unwrap(),
        );
        assert!(hw > 0.0 && hw < 0.05 * exact, "{what}: {e}");
        assert!(
            (val - exact).abs() <= 1.2 * hw,
            "{what} p90: simulated {val} ± {hw} s, Erlang {exact} s"
        );
    }
    for key in ["p50", "p99"] {
        assert!(p["wait"][key]["value"].as_f64().is_some(), "{p}");
    }
}

/// Percentiles other than 50, 90, 99 are refused, naming the flag and the choices.
#[test]
fn batch_percentiles_other_than_the_simulated_ones_are_refused() {
    tokenq()
        .args([
            "queue",
            "batch",
            "--policy",
            "dynamic",
            "--max-batch",
            "4",
            "--tokens",
            "const:100",
            "--arrival-rate",
            "0.7",
            "--first-token-s",
            "0,0.5",
            "--decode-step-s",
            "0,0.005",
            "--percentiles",
            "95",
        ])
        .assert()
        .failure()
        .stderr(contains("--percentiles 95"))
        .stderr(contains("50,90,99"));
}
