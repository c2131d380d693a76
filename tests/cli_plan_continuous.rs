//! `tokenq plan --policy continuous` against a closed form. With `max_num_seqs = 1`, a constant
//! prompt and output length and a step model whose prefill step takes `P` and whose decode
//! step takes `D` seconds whatever the batch, continuous batching serves one request at a time
//! in `S = P + (N − 1)·D`: the engine is M/D/1. Its TTFT is the M/D/1 wait plus `P`, its E2E
//! the wait plus `S`, and its TPOT exactly `D`; the wait's quantiles are Erlang's formula. The
//! planner's replicated replay must put each exact value inside its 95 % interval.

mod common;

use common::{md1_quantile, ok_json, p, tokenq};

const TABLE1: &str = "datasets/coefficients/a100-llama-2-7b-table1.toml";

/// Prefill step, decode step (seconds), output tokens.
const P_S: f64 = 0.1;
const D_S: f64 = 0.02;
const N: f64 = 20.0;

/// The shipped Table I coefficients with a `[step_time]` section of constant steps.
fn coefficients(dir: &std::path::Path) -> std::path::PathBuf {
    let base = std::fs::read_to_string(TABLE1).unwrap();
    let step = format!(
        r#"
[step_time]
source = "test: constant prefill {P_S} s and decode {D_S} s steps"
kv_capacity_tokens = 16000

[step_time.decode]
intercept_s = {D_S}
per_decode_s = 0.0
per_decode_above_knee_s = 0.0
per_context_token_s = 0.0

[step_time.mixed]
intercept_s = {P_S}
per_token_s = 0.0
per_token_above_knee_s = 0.0
per_decode_s = 0.0
per_decode_context_token_s = 0.0
per_prefill_token_context_token_s = 0.0

[step_time.decode_fit]
n = 1
r2 = 1.0
mape_pct = 0.0
sum_bias_pct = 0.0

[step_time.mixed_fit]
n = 1
r2 = 1.0
mape_pct = 0.0
sum_bias_pct = 0.0
"#
    );
    let path = dir.join("constant-steps.toml");
    std::fs::write(&path, base + &step).unwrap();
    path
}

#[test]
fn continuous_batching_one_at_a_time_is_md1() {
    let dir = tempfile::tempdir().unwrap();
    let coef = coefficients(dir.path());
    let rate = 1.2;
    let v = ok_json(&tokenq(&[
        "plan",
        "--coefficients",
        p(&coef),
        "--policy",
        "continuous",
        "--tokens",
        "const:20",
        "--input-tokens",
        "const:32",
        "--kv-blocks",
        "1000",
        "--caps",
        "1",
        "--limits",
        "1000",
        "--max-gpus",
        "1",
        "--rate",
        &rate.to_string(),
        "--slo",
        "ttft:p90<=100s",
        "--slo",
        "e2e:p99<=100s",
        "--slo",
        "tpot:mean<=1s",
        "--slo",
        "itl:p50<=1s",
        "--replications",
        "8",
        "--replay-requests",
        "4000",
        "--json",
    ]));
    let c = &v["feasible"][0];
    assert_eq!(c["policy"], "continuous", "{v}");
    assert_eq!(c["max_num_seqs"], 1, "{v}");
    let s = P_S + (N - 1.0) * D_S;
    // Busy share of one M/D/1 server: ρ = λS.
    let busy = c["utilisation"].as_f64().unwrap();
    assert!(
        (busy - rate * s).abs() < 0.03,
        "utilisation {busy} vs ρ {}",
        rate * s
    );
    let want = [
        md1_quantile(rate, s, 0.9) + P_S,
        md1_quantile(rate, s, 0.99) + s,
        D_S,
        D_S,
    ];
    for (k, w) in want.iter().enumerate() {
        let slo = &c["slos"][k];
        assert_eq!(slo["method"], "simulation");
        let (val, hw) = (
            slo["value_s"]["value"].as_f64().unwrap(),
            slo["value_s"]["half_width"].as_f64().unwrap(),
        );
        // Inside the 95 % interval (a 1e-9 s floor for the exact TPOT and ITL, whose
        // replications agree to rounding).
        assert!(
            (val - w).abs() <= hw + 1e-9,
            "{}: {val} ± {hw} s vs exact {w} s",
            slo["slo"]
        );
    }
    assert!(
        v["continuous"]
            .as_str()
            .unwrap()
            .contains("8 replications of 4000 Poisson arrivals"),
        "{v}"
    );
}

/// Replay-only SLOs without a step model, continuous batching without one, and a single
/// replication are one-line errors naming the flag.
#[test]
fn continuous_needs_a_step_model_and_replications() {
    let dir = tempfile::tempdir().unwrap();
    let coef = coefficients(dir.path());
    for (args, flag) in [
        (
            vec!["--coefficients", TABLE1, "--slo", "ttft:p99<=2s"],
            "--slo",
        ),
        (
            vec![
                "--coefficients",
                TABLE1,
                "--policy",
                "continuous",
                "--slo",
                "e2e:p99<=2s",
            ],
            "--policy continuous",
        ),
        (
            vec![
                "--coefficients",
                p(&coef),
                "--slo",
                "ttft:p99<=2s",
                "--replications",
                "1",
                "--kv-blocks",
                "1000",
            ],
            "--replications 1",
        ),
    ] {
        let mut all = vec!["plan", "--tokens", "sharegpt", "--rate", "1"];
        all.extend(args);
        let o = tokenq(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.starts_with(&format!("Error: {flag}")) && err.lines().count() == 1,
            "{err}"
        );
    }
}

/// `tokenq replay --rate`: the same M/D/1 engine, every latency's percentiles with intervals.
#[test]
fn replay_under_poisson_arrivals_gives_md1_percentiles() {
    let dir = tempfile::tempdir().unwrap();
    let coef = coefficients(dir.path());
    let rate = 1.5;
    let v = ok_json(&tokenq(&[
        "replay",
        "--coefficients",
        p(&coef),
        "--rate",
        &rate.to_string(),
        "--tokens",
        "const:20",
        "--input-tokens",
        "const:32",
        "--kv-blocks",
        "1000",
        "--max-num-seqs",
        "1",
        "--requests",
        "4000",
        "--replications",
        "8",
        "--percentiles",
        "50,90,99",
        "--json",
    ]));
    let s = P_S + (N - 1.0) * D_S;
    let l = &v["latencies"];
    for (metric, key, want) in [
        ("ttft", "p50", md1_quantile(rate, s, 0.5) + P_S),
        ("ttft", "p99", md1_quantile(rate, s, 0.99) + P_S),
        ("e2e", "p90", md1_quantile(rate, s, 0.9) + s),
        ("tpot", "p99", D_S),
        ("itl", "p90", D_S),
    ] {
        let (val, hw) = (
            l[metric][key]["value"].as_f64().unwrap(),
            l[metric][key]["half_width"].as_f64().unwrap(),
        );
        assert!(
            (val - want).abs() <= hw + 1e-9,
            "{metric} {key}: {val} ± {hw} s vs exact {want} s"
        );
    }
    // The mean TTFT is Pollaczek–Khinchine's M/D/1 wait ρS/(2(1 − ρ)) plus the prefill step.
    let rho = rate * s;
    let want = rho * s / (2.0 * (1.0 - rho)) + P_S;
    let m = &l["ttft"]["mean"];
    let (val, hw) = (
        m["value"].as_f64().unwrap(),
        m["half_width"].as_f64().unwrap(),
    );
    assert!((val - want).abs() <= hw, "mean ttft {val} ± {hw} vs {want}");
    assert_eq!(v["overloaded"], false);
    assert_eq!(v["method"], "simulation");
}
