//! `tokenq simulate` (policies mg1, dynamic, fixed, elastic): results against docs/models.md's exact
//! values, the JSON document, records, determinism across thread counts, instability and bad
//! input.

use assert_cmd::Command;
use predicates::str::contains;
use serde_json::Value;

fn tokenq() -> Command {
    Command::cargo_bin("tokenq").unwrap()
}

fn json(args: &[&str]) -> Value {
    let out = tokenq()
        .arg("simulate")
        .args(args)
        .arg("--json")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).expect("valid JSON")
}

fn inside(v: &Value, exact: f64) -> bool {
    let (x, h) = (
        v["value"].as_f64().unwrap(),
        v["half_width"].as_f64().unwrap(),
    );
    (x - exact).abs() <= h
}

#[test]
fn md1_with_patience_matches_exact_loss_and_wait() {
    // docs/models.md §9 B2: M/D/1+D, λ = 0.8, D = 1, τ = 2: π = 0.1032989898, E[W_q] (eq 9) = 0.7994403551.
    let v = json(&[
        "--policy",
        "mg1",
        "--tokens",
        "const:1",
        "--per-token-s",
        "1",
        "--intercept-s",
        "0",
        "--patience",
        "2",
        "--arrival-rate",
        "0.8",
        "--requests",
        "1e6",
        "--continuous-tokens",
    ]);
    assert_eq!(v["method"], "simulation");
    assert_eq!(v["policy"], "mg1_impatient");
    assert_eq!(v["stability"]["status"], "stable");
    assert!(
        inside(&v["loss_fraction"], 0.1032989898),
        "{}",
        v["loss_fraction"]
    );
    assert!(
        inside(&v["wait_all_s"], 0.7994403551),
        "{}",
        v["wait_all_s"]
    );
    assert!(
        inside(&v["wait_s"]["mean"], 0.6611371781),
        "{}",
        v["wait_s"]
    );
    let c = &v["counts"];
    assert_eq!(c["arrivals"].as_u64().unwrap(), 1_000_000);
    assert_eq!(
        c["arrivals"].as_u64().unwrap(),
        c["served"].as_u64().unwrap()
            + c["lost"].as_u64().unwrap()
            + c["waiting_at_end"].as_u64().unwrap()
    );
}

#[test]
fn fixed_batching_matches_roots_formula_and_prints_units() {
    // docs/models.md §9 E1: deterministic T = 5 s, K = 4, λ = 0.5: E[W_q] = 3.579568734 s.
    let args = [
        "simulate",
        "--policy",
        "fixed",
        "--max-batch",
        "4",
        "--tokens",
        "const:1",
        "--first-token-s",
        "0,5",
        "--decode-step-s",
        "0,0",
        "--arrival-rate",
        "0.5",
        "--requests",
        "1e6",
    ];
    let v = json(&args[1..]);
    assert!(inside(&v["wait_s"]["mean"], 3.579568734), "{}", v["wait_s"]);
    assert_eq!(v["mean_batch_size"]["value"].as_f64().unwrap(), 4.0);
    tokenq()
        .args(args)
        .assert()
        .success()
        .stdout(contains("wait (s)"))
        .stdout(contains("latency (s)"))
        .stdout(contains("method: simulation"))
        .stdout(contains("95% CI from 30 batch means"))
        .stdout(contains("throughput (req/s)"));
}

#[test]
fn same_seed_same_json_whatever_the_thread_count() {
    let base = [
        "--policy",
        "elastic",
        "--tokens",
        "uniform:1,1000",
        "--first-token-s",
        "0.004,0.03",
        "--decode-step-s",
        "0.0002,0.02",
        "--arrival-rate",
        "0.5",
        "--requests",
        "20000",
        "--replications",
        "4",
        "--seed",
        "7",
    ];
    let strip = |mut v: Value| {
        v["elapsed_s"] = Value::Null;
        v["sim_requests_per_s"] = Value::Null;
        v
    };
    let one = strip(json(&[&base[..], &["--threads", "1"]].concat()));
    let two = strip(json(&[&base[..], &["--threads", "2"]].concat()));
    assert_eq!(one, two);
    assert_eq!(one["ci"]["kind"], "replications");
}

#[test]
fn trace_replay_rescaled_with_records() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("r.csv");
    let v = json(&[
        "--policy",
        "dynamic",
        "--trace",
        "azure-code",
        "--rate",
        "0.5",
        "--first-token-s",
        "0.01,0.1",
        "--decode-step-s",
        "0.0005,0.02",
        "--max-batch",
        "16",
        "--records",
        rec.to_str().unwrap(),
    ]);
    assert_eq!(v["counts"]["arrivals"].as_u64().unwrap(), 8819);
    assert_eq!(v["counts"]["served"].as_u64().unwrap(), 8819);
    let text = std::fs::read_to_string(&rec).unwrap();
    assert_eq!(text.lines().count(), 8819 + 1);
    assert!(
        text.starts_with(
            "index,arrival_s,tokens,start_s,finish_s,wait_s,latency_s,batch_size,lost"
        )
    );
    // The whole trace's mean rate, (n − 1)/(last − first), is rescaled to exactly 0.5 req/s.
    let arrivals: Vec<f64> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    let rate = (arrivals.len() - 1) as f64 / (arrivals[arrivals.len() - 1] - arrivals[0]);
    assert!((rate - 0.5).abs() < 1e-9, "{rate}");
    // Tokens come from the trace (Azure code: max 1899 output tokens, mean 27.9).
    let tokens: Vec<f64> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    let mean = tokens.iter().sum::<f64>() / tokens.len() as f64;
    assert!((mean - 27.9).abs() < 0.1, "{mean}");
}

#[test]
fn unstable_runs_say_so_with_the_largest_stable_rate() {
    // docs/models.md §11: λ = 0.5 with K = 16 is unstable.
    tokenq()
        .args([
            "simulate",
            "--policy",
            "dynamic",
            "--tokens",
            "lognormal:7,0.7",
            "--max-tokens",
            "2000",
            "--first-token-s",
            "0.01,0.1",
            "--decode-step-s",
            "0.0005,0.02",
            "--max-batch",
            "16",
            "--arrival-rate",
            "0.5",
            "--requests",
            "1e5",
        ])
        .assert()
        .failure()
        .stderr(contains("unstable"))
        .stderr(contains("req/s"))
        .stdout(predicates::str::is_empty());
}

#[test]
fn bad_input_gets_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let unsorted = dir.path().join("u.csv");
    std::fs::write(
        &unsorted,
        "arrival_s,input_tokens,output_tokens\n1.0,5,5\n0.5,5,5\n",
    )
    .unwrap();
    let nocol = dir.path().join("n.csv");
    std::fs::write(&nocol, "arrival_s,input_tokens\n1.0,5\n").unwrap();
    let mg1 = [
        "simulate",
        "--policy",
        "mg1",
        "--per-token-s",
        "0.02",
        "--intercept-s",
        "0.1",
    ];
    for (extra, msg) in [
        (
            vec!["--trace", unsorted.to_str().unwrap()],
            "sort the trace",
        ),
        (
            vec!["--trace", nocol.to_str().unwrap()],
            "missing column `output_tokens`",
        ),
        (
            vec![
                "--tokens",
                "lognormal:7,0.7",
                "--arrival-rate",
                "0.01",
                "--requests",
                "0",
            ],
            "too few",
        ),
        (vec!["--tokens", "lognormal:7,0.7"], "--arrival-rate"),
        (vec!["--arrival-rate", "0.01"], "--tokens"),
        (
            vec!["--tokens", "lognormal:7", "--arrival-rate", "0.01"],
            "--tokens",
        ),
        (
            vec!["--tokens", "lognormal:7,0.7", "--arrival-rate=-1"],
            "--arrival-rate",
        ),
    ] {
        tokenq()
            .args(mg1)
            .args(&extra)
            .assert()
            .failure()
            .stderr(contains(msg));
    }
    tokenq()
        .args([
            "simulate",
            "--policy",
            "fixed",
            "--tokens",
            "const:1",
            "--first-token-s",
            "0,5",
            "--decode-step-s",
        ])
        .args(["0,0", "--arrival-rate", "0.5"])
        .assert()
        .failure()
        .stderr(contains("--max-batch"));
}
