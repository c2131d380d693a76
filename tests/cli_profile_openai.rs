//! `tokenq profile --backend openai` end to end against the in-process mock server
//! (`endpoint::mock`): a server with known latencies profiled and fitted (the fit must find
//! them), a failing request recorded with its point while the run goes on, a server that
//! ignores `min_tokens` named, an unreachable URL refused before any work. The same command
//! against a real vLLM server is in tests/vllm.rs.
#![cfg(feature = "http")]

mod common;
use common::*;

use std::collections::BTreeMap;

use endpoint::mock::{Fault, MockConfig, MockServer};

/// Mock: first token after 20 ms + 0.25 ms per prompt token, then one token every 8 ms.
const TTFT_S: f64 = 0.020;
const PREFILL_PER_TOKEN_S: f64 = 0.000_25;
const TPOT_S: f64 = 0.008;

fn mock(faults: BTreeMap<u64, Fault>) -> MockServer {
    let (_, server) = MockServer::start(MockConfig {
        ttft_s: TTFT_S,
        prefill_per_token_s: PREFILL_PER_TOKEN_S,
        tpot_s: TPOT_S,
        faults_by_arrival: faults,
        worker_threads: 2,
        ..MockConfig::default()
    })
    .unwrap();
    server
}

fn profile_args<'a>(url: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "profile",
        "--backend",
        "openai",
        "--url",
        url,
        "--batch",
        "1,2",
        "--input",
        "16,64",
        "--output",
        "6",
        "--reps",
        "2",
        "--warmup",
        "0",
        "--quiet",
        "--json",
        "--out",
        out,
    ]
}

#[test]
fn a_server_with_known_latency_is_profiled_and_fitted() {
    let server = mock(BTreeMap::new());
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("server.parquet");
    let v: serde_json::Value =
        serde_json::from_str(&ok(&tokenq(&profile_args(&url, p(&table))))).unwrap();
    assert_eq!(v["summary"]["points_ok"], 4, "{v}");
    // The run metadata names the server, its model and version.
    let meta = std::fs::read_to_string(dir.path().join("server.runs.json")).unwrap();
    for want in ["openai", "mock-model", "mock-0.1", url.as_str()] {
        assert!(
            meta.contains(want),
            "{want} missing from the runs metadata: {meta}"
        );
    }
    // `tokenq fit` reads the table unchanged and finds the mock's latencies.
    let coef = dir.path().join("c.toml");
    let f: serde_json::Value = serde_json::from_str(&ok(&tokenq(&[
        "fit",
        p(&table),
        "-o",
        p(&coef),
        "--json",
        "--quiet",
    ])))
    .unwrap();
    let c = &f["coefficients"];
    // Decode: the mock's requests are independent, so a step is 8 ms at any batch size.
    let k4 = c["decode_step"]["intercept_s"].as_f64().unwrap();
    let k3 = c["decode_step"]["slope_s_per_req"].as_f64().unwrap();
    assert!(
        (k4 - TPOT_S).abs() < 0.002,
        "decode intercept {k4} s vs {TPOT_S} s: {c}"
    );
    assert!(
        k3.abs() < 0.001,
        "decode slope {k3} s/request should be ~0: {c}"
    );
    // Single request: e2e(n) = TTFT + (n − 1)·TPOT, so the per-token slope is the mock's TPOT.
    let a = c["single_request"]["per_token_s"].as_f64().unwrap();
    assert!(
        (a - TPOT_S).abs() < 0.002,
        "per-token slope {a} s vs {TPOT_S} s: {c}"
    );
}

#[test]
fn a_failed_request_is_retried_then_fails_its_point_and_the_run_goes_on() {
    let run = |faults: &[u64]| {
        let server = mock(faults.iter().map(|&i| (i, Fault::Http500)).collect());
        let url = server.url();
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("t.parquet");
        let o = tokenq(&[
            "profile",
            "--backend",
            "openai",
            "--url",
            &url,
            "--batch",
            "1",
            "--input",
            "8,16",
            "--output",
            "4",
            "--reps",
            "2",
            "--warmup",
            "0",
            "--quiet",
            "--json",
            "--out",
            p(&table),
        ]);
        let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
        let meta = std::fs::read_to_string(dir.path().join("t.runs.json")).unwrap();
        (v, meta)
    };
    // The 3rd request the server sees gets HTTP 500 once: the batch is sent again and both
    // points (batch 1, 2 passes each) are measured.
    let (v, _) = run(&[2]);
    assert_eq!(v["summary"]["points_ok"], 2, "{v}");
    // The 3rd, 4th and 5th fail: the pass is tried three times, its point fails with the
    // reason, and the other point is measured.
    let (v, meta) = run(&[2, 3, 4]);
    assert_eq!(v["summary"]["points_ok"], 1, "{v}");
    assert_eq!(v["summary"]["points_failed"], 1, "{v}");
    assert!(meta.contains("HTTP 500"), "{meta}");
}

#[test]
fn a_server_that_ignores_min_tokens_is_named() {
    let (_, server) = MockServer::start(MockConfig {
        eos_after_tokens: Some(2),
        honour_length_controls: false,
        ..MockConfig::default()
    })
    .unwrap();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.parquet");
    let o = tokenq(&profile_args(&url, p(&table)));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let meta = std::fs::read_to_string(dir.path().join("t.runs.json")).unwrap_or_default();
    assert!(
        text.contains("min_tokens") || meta.contains("ignores min_tokens"),
        "{text}\n{meta}"
    );
}

#[test]
fn an_unreachable_server_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("t.parquet");
    let o = tokenq(&profile_args("http://127.0.0.1:9", p(&table)));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("Error: --url http://127.0.0.1:9"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!table.exists() && !dir.path().join("t.parquet.parts").exists());
    let o = tokenq(&["profile", "--backend", "openai", "--out", p(&table)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("--url"));
}
