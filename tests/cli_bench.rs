//! `tokenq bench` end to end against the in-process mock server (`endpoint::mock`): a server of
//! known latency measured as such on a seeded Poisson schedule, goodput against SLOs it meets
//! and misses, injected faults counted by kind, a closed loop that keeps its concurrency, a
//! trace's times and lengths sent as given, Ctrl-C, and bad flags refused in one line before
//! anything is sent or written.
#![cfg(feature = "http")]

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use endpoint::mock::{Fault, MockConfig, MockServer};
use endpoint::{RequestRecord, Schedule, read_jsonl_file};
use serde_json::Value;

fn json(o: &Output) -> Value {
    ok_json(o)
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing: {v}"))
}

fn mock(ttft_s: f64, tpot_s: f64, faults: BTreeMap<u64, Fault>) -> MockServer {
    let (_, server) = MockServer::start(MockConfig {
        ttft_s,
        tpot_s,
        faults_by_arrival: faults,
        worker_threads: 2,
        ..MockConfig::default()
    })
    .unwrap();
    server
}

fn sent_at(records: &[RequestRecord]) -> Vec<f64> {
    records.iter().map(|r| r.scheduled_send_s).collect()
}

#[test]
fn a_poisson_run_measures_the_mock_latency() {
    // TTFT 50 ms, then a token every 10 ms; 40 requests at 20 req/s (~2 s).
    let server = mock(0.050, 0.010, BTreeMap::new());
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("r.jsonl");
    let v = json(&tokenq(&[
        "bench",
        "--url",
        &server.url(),
        "--request-rate",
        "20",
        "--num-prompts",
        "40",
        "--input",
        "const:16",
        "--output",
        "const:10",
        "--seed",
        "7",
        "--json",
        "--records",
        p(&rec),
    ]));
    assert_eq!(v["completed"], 40, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["total_output_tokens"], 400, "{v}");
    assert_eq!(v["total_input_tokens"], 640, "{v}");
    assert_eq!(v["schedule"]["kind"], "poisson", "{v}");
    assert_eq!(v["model"], "mock-model", "{v}");
    // TTFT from the scheduled send: 50 ms plus the client's lateness (~1 ms) and localhost HTTP.
    let ttft = f(&v, "mean_ttft_ms");
    assert!(
        (49.9..60.0).contains(&ttft),
        "mean TTFT {ttft} ms, mock 50 ms"
    );
    let tpot = f(&v, "mean_tpot_ms");
    assert!(
        (9.8..11.0).contains(&tpot),
        "mean TPOT {tpot} ms, mock 10 ms"
    );
    let itl = f(&v, "median_itl_ms");
    assert!(
        (8.0..12.0).contains(&itl),
        "median ITL {itl} ms, mock 10 ms"
    );
    assert!(f(&v, "p99_ttft_ms") >= f(&v, "median_ttft_ms"));
    // 40 requests over ~2 s + the last one's 140 ms.
    let rate = f(&v, "request_throughput");
    assert!(rate > 5.0 && rate < 40.0, "throughput {rate}");

    // One record per request, sent on the seeded Poisson schedule.
    let records = read_jsonl_file(&rec).unwrap();
    assert_eq!(records.len(), 40);
    let want = Schedule::Poisson { rate_rps: 20.0 }
        .send_times_s(40, 7)
        .unwrap();
    // (JSON reading without serde_json's float_roundtrip may differ in the last bit.)
    let got = sent_at(&records);
    assert!(
        got.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-12),
        "{got:?} vs {want:?}"
    );
    assert!(records.iter().all(|r| r.requested_input_tokens == Some(16)
        && r.requested_output_tokens == 10
        && r.usage_completion_tokens == Some(10)
        && r.lateness_s() < 0.05));
}

#[test]
fn goodput_counts_requests_within_the_slo_and_runs_repeat() {
    let server = mock(0.010, 0.010, BTreeMap::new());
    let dir = tempfile::tempdir().unwrap();
    let run = |slo: &str, rec: &Path, extra: &[&str]| {
        let url = server.url();
        let mut args = vec![
            "bench",
            "--url",
            &url,
            "--request-rate",
            "50",
            "--num-prompts",
            "20",
            "--input",
            "const:4",
            "--output",
            "const:6",
            "--seed",
            "3",
            "--goodput",
            slo,
            "--records",
            p(rec),
        ];
        args.extend_from_slice(extra);
        tokenq(&args)
    };
    // TPOT is 10 ms: nothing meets 5 ms.
    let strict = json(&run("tpot:5", &dir.path().join("a.jsonl"), &["--json"]));
    assert_eq!(strict["completed"], 20, "{strict}");
    assert_eq!(f(&strict, "request_goodput"), 0.0, "{strict}");
    // Everything meets 50 ms; the text names the SLO and the file has the same numbers.
    let saved = dir.path().join("s.json");
    let text = ok(&run(
        "tpot:50",
        &dir.path().join("b.jsonl"),
        &["--save-result", p(&saved)],
    ));
    assert!(text.contains("goodput SLO: TPOT <= 50 ms"), "{text}");
    let loose: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(loose["goodput_slo"]["tpot_ms"], 50.0, "{loose}");
    assert!(f(&loose, "request_goodput") > 0.0);
    assert_eq!(
        f(&loose, "request_goodput"),
        f(&loose, "request_throughput")
    );
    // Same seed, same send times.
    let a = read_jsonl_file(&dir.path().join("a.jsonl")).unwrap();
    let b = read_jsonl_file(&dir.path().join("b.jsonl")).unwrap();
    assert_eq!(a.len(), 20);
    assert_eq!(sent_at(&a), sent_at(&b));
}

#[test]
fn failed_requests_are_counted_by_kind() {
    let faults = BTreeMap::from([(3, Fault::Http500), (5, Fault::Reset { after_tokens: 2 })]);
    let server = mock(0.005, 0.002, faults);
    let o = tokenq(&[
        "bench",
        "--url",
        &server.url(),
        "--request-rate",
        "100",
        "--num-prompts",
        "10",
        "--input",
        "const:8",
        "--output",
        "const:5",
    ]);
    let text = ok(&o);
    let value = |label: &str| {
        let line = text
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label} line: {text}"));
        line.split_whitespace().last().unwrap().to_owned()
    };
    assert_eq!(value("Successful requests:"), "8", "{text}");
    assert_eq!(value("Failed requests:"), "2", "{text}");
    assert!(text.contains("failed: 1 × http, first: HTTP 500"), "{text}");
    assert!(
        text.contains("failed: 1 × reset, first: connection dropped"),
        "{text}"
    );
    assert!(text.contains("Mean TTFT (ms):"), "{text}");
    // A model the server does not list is refused before anything is sent.
    let before = server.requests_received();
    let o = tokenq(&[
        "bench",
        "--url",
        &server.url(),
        "--model",
        "nope",
        "--request-rate",
        "100",
        "--num-prompts",
        "2",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("Error: --model nope:") && err.contains("mock-model"),
        "{err}"
    );
    assert_eq!(server.requests_received(), before);
}

#[test]
fn a_closed_loop_keeps_its_concurrency() {
    let server = mock(0.020, 0.005, BTreeMap::new());
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("r.jsonl");
    let v = json(&tokenq(&[
        "bench",
        "--url",
        &server.url(),
        "--max-concurrency",
        "2",
        "--num-prompts",
        "6",
        "--input",
        "const:4",
        "--output",
        "const:4",
        "--json",
        "--records",
        p(&rec),
    ]));
    assert_eq!(v["completed"], 6, "{v}");
    assert_eq!(v["schedule"]["kind"], "closed_loop", "{v}");
    let records = read_jsonl_file(&rec).unwrap();
    let in_flight = |t: f64| {
        records
            .iter()
            .filter(|q| q.actual_send_s <= t && t < q.end_s)
            .count()
    };
    let most = records
        .iter()
        .map(|r| in_flight(r.actual_send_s))
        .max()
        .unwrap();
    assert_eq!(most, 2, "{records:?}");
    // Each request takes ≥ 35 ms, three rounds of two.
    assert!(f(&v, "duration_s") >= 0.105, "{v}");
}

#[test]
fn a_trace_is_sent_at_its_times_with_its_lengths() {
    let server = mock(0.005, 0.002, BTreeMap::new());
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.csv");
    std::fs::write(
        &trace,
        "arrival_s,input_tokens,output_tokens\n10.0,8,3\n10.2,16,5\n10.5,4,7\n",
    )
    .unwrap();
    let run = |rec: &Path, extra: &[&str]| {
        let url = server.url();
        let mut args = vec![
            "bench",
            "--url",
            &url,
            "--trace",
            p(&trace),
            "--json",
            "--records",
            p(rec),
        ];
        args.extend_from_slice(extra);
        let v = json(&tokenq(&args));
        assert_eq!(v["completed"], 3, "{v}");
        assert_eq!(v["schedule"]["kind"], "trace", "{v}");
        read_jsonl_file(rec).unwrap()
    };
    let close = |got: Vec<f64>, want: [f64; 3]| {
        assert!(
            got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-9),
            "{got:?} vs {want:?}"
        );
    };
    let records = run(&dir.path().join("a.jsonl"), &[]);
    close(sent_at(&records), [0.0, 0.2, 0.5]);
    let outs: Vec<u32> = records.iter().map(|r| r.requested_output_tokens).collect();
    assert_eq!(outs, [3, 5, 7]);
    let ins: Vec<Option<u32>> = records.iter().map(|r| r.usage_prompt_tokens).collect();
    assert_eq!(ins, [Some(8), Some(16), Some(4)]);
    assert!(
        records
            .iter()
            .all(|r| r.usage_completion_tokens == Some(r.requested_output_tokens))
    );
    // The trace's mean rate is 4 req/s; at 8 req/s its times are halved.
    let fast = run(&dir.path().join("b.jsonl"), &["--request-rate", "8"]);
    close(sent_at(&fast), [0.0, 0.1, 0.25]);
}

#[cfg(unix)]
#[test]
fn ctrl_c_keeps_what_finished() {
    let server = mock(0.005, 0.002, BTreeMap::new());
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("r.jsonl");
    let child = Command::new(env!("CARGO_BIN_EXE_tokenq"))
        .args([
            "bench",
            "--url",
            &server.url(),
            "--request-rate",
            "20",
            "--num-prompts",
            "1000",
            "--input",
            "const:4",
            "--output",
            "const:3",
            "--records",
            p(&rec),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the run is under way (its handler is installed before the first send).
    let start = std::time::Instant::now();
    while server.requests_received() < 3 && start.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains("Error: interrupted:") && err.contains(p(&rec)),
        "{err}"
    );
    let records = read_jsonl_file(&rec).unwrap();
    assert!(
        (3..1000).contains(&records.len()),
        "{} records",
        records.len()
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("Successful requests:"));
}

#[test]
fn bad_flags_are_refused_in_one_line_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("r.jsonl");
    let existing = dir.path().join("old.jsonl");
    std::fs::write(&existing, "keep\n").unwrap();
    let trace = dir.path().join("t.csv");
    std::fs::write(&trace, "arrival_s,input_tokens,output_tokens\n0,8,3\n").unwrap();
    let dead = "http://127.0.0.1:1";
    let base = ["bench", "--url", dead, "--num-prompts", "4"];
    let cases: [(&[&str], &str); 7] = [
        (
            &["--request-rate", "1", "--records", p(&rec)],
            "--url http://127.0.0.1:1: could not reach",
        ),
        (&["--request-rate", "0"], "--request-rate"),
        (&["--request-rate", "-2"], "--request-rate"),
        (&[], "no schedule: give --request-rate"),
        (
            &["--request-rate", "1", "--records", p(&existing)],
            "--records",
        ),
        (&["--trace", p(&trace), "--input", "const:4"], "--trace"),
        (
            &["--max-concurrency", "1", "--goodput", "ttft:abc"],
            "--goodput ttft:abc",
        ),
    ];
    for (extra, want) in cases {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let o = tokenq(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.starts_with(&format!("Error: {want}")),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
    assert!(!rec.exists());
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep\n");
    // A usage error is clap's (status 2).
    let o = tokenq(&[
        "bench",
        "--url",
        dead,
        "--max-concurrency",
        "1",
        "--api",
        "grpc",
    ]);
    assert_eq!(o.status.code(), Some(2));
}
