//! `tokenq plan --trace` against hand-computed answers. A trace of evenly spaced requests of one
//! length is a D/D/1 queue on each GPU: below the service rate nobody waits, so each latency is
//! the service time itself; above it each request waits longer than the one before. Round robin
//! over n GPUs gives each an evenly spaced stream of R/n. Both one request at a time (the
//! single-request line) and continuous batching with `max_num_seqs = 1` and constant steps are
//! checked.

mod common;

use std::path::{Path, PathBuf};

use common::{TABLE1, constant_steps_coefficients, ok_json, p, table1_service_s, tokenq};

/// Requests in the trace, one a second, each 32 prompt and `OUT` output tokens.
const REQUESTS: usize = 200;
const OUT: u32 = 100;

fn trace(dir: &Path, out: u32) -> PathBuf {
    let mut csv = String::from("arrival_s,input_tokens,output_tokens\n");
    for i in 0..REQUESTS {
        csv.push_str(&format!("{i}.0,32,{out}\n"));
    }
    let path = dir.join("even.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

#[test]
fn even_trace_is_d_d_n() {
    let dir = tempfile::tempdir().unwrap();
    let t = trace(dir.path(), OUT);
    let d = table1_service_s(f64::from(OUT));
    let plan = |rate: &str, extra: &[&str]| {
        let mut args = vec![
            "plan",
            "--coefficients",
            TABLE1,
            "--trace",
            p(&t),
            "--policy",
            "single",
            "--slo",
            "e2e:p99<=3s",
            "--limits",
            "1000",
            "--rate",
            rate,
            "--json",
        ];
        args.extend_from_slice(extra);
        ok_json(&tokenq(&args))
    };
    // 0.3 req/s: one GPU, nobody waits, every latency is D.
    let v = plan("0.3", &[]);
    assert_eq!(v["min_gpus"], 1);
    let best = &v["feasible"][0];
    let got = best["slos"][0]["value_s"]["value"].as_f64().unwrap();
    assert!((got - d).abs() < 1e-9, "{got} vs {d}");
    assert_eq!(best["slos"][0]["method"], "simulation");
    assert!(best["slos"][0]["value_s"]["half_width"].is_null());
    assert!(v["tokens"].as_str().unwrap().starts_with("trace "));
    // Goodput: past 1/D req/s the waits grow along the trace, and the p99 passes the target's
    // 3 − D s of slack once D − 1/R exceeds it over the ~198 requests before the p99.
    let g = v["goodput"][0]["goodput_rps"].as_f64().unwrap();
    assert!(
        g >= 0.999 / d && g <= 1.0 / (d - (3.0 - d) / 190.0),
        "{g} vs 1/D = {}",
        1.0 / d
    );
    assert_eq!(v["goodput"][0]["method"], "simulation");

    // 1 req/s behind round robin: each GPU sees R/n; n = ⌈R·D⌉ GPUs is the first where
    // nobody waits (R·D = 2.49: three), and two fall behind by far more than the target.
    let v = plan("1", &["--routing", "round-robin", "--max-gpus", "4"]);
    assert_eq!(v["min_gpus"], (d).ceil() as u64);
    let got = v["feasible"][0]["slos"][0]["value_s"]["value"]
        .as_f64()
        .unwrap();
    assert!((got - d).abs() < 1e-9, "{got} vs {d}");
}

/// Continuous batching, `max_num_seqs = 1`, a constant prefill step P and decode step D: each
/// request takes `P + (N − 1)·D`; below that rate nobody waits, so TTFT = P, TPOT = D and
/// E2E = P + (N − 1)·D exactly.
#[test]
fn even_trace_on_continuous_batching_one_at_a_time() {
    const P_S: f64 = 0.1;
    const D_S: f64 = 0.02;
    const N: u32 = 20;
    let dir = tempfile::tempdir().unwrap();
    let t = trace(dir.path(), N);
    let coef = constant_steps_coefficients(dir.path(), P_S, D_S);
    let v = ok_json(&tokenq(&[
        "plan",
        "--coefficients",
        p(&coef),
        "--trace",
        p(&t),
        "--policy",
        "continuous",
        "--kv-blocks",
        "1000",
        "--caps",
        "1",
        "--limits",
        "1000",
        "--rate",
        "1.5",
        "--slo",
        "ttft:p99<=1s",
        "--slo",
        "tpot:p50<=1s",
        "--slo",
        "e2e:p99<=2s",
        "--max-gpus",
        "1",
        "--json",
    ]));
    let s = &v["feasible"][0]["slos"];
    let want = [P_S, D_S, P_S + f64::from(N - 1) * D_S];
    for (i, w) in want.iter().enumerate() {
        let got = s[i]["value_s"]["value"].as_f64().unwrap();
        assert!((got - w).abs() < 1e-9, "{}: {got} vs {w}", s[i]["slo"]);
    }
}

#[test]
fn trace_errors_name_the_flag() {
    let o = tokenq(&[
        "plan",
        "--coefficients",
        TABLE1,
        "--trace",
        "no-such-trace.csv",
        "--rate",
        "1",
        "--slo",
        "e2e:p99<=3s",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--trace no-such-trace.csv"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let o = tokenq(&[
        "plan",
        "--coefficients",
        TABLE1,
        "--trace",
        "azure-conv",
        "--tokens",
        "sharegpt",
        "--slo",
        "e2e:p99<=3s",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--tokens"));
}
