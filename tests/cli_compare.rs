//! `tokenq compare` through the binary. The measured run here is built from `tokenq replay
//! --records` of the same arrivals with the same step model (an independent path through the
//! replay command and its CSV), so predicted must equal measured; then a run 10 % slower must
//! show +10 % errors with the sign right. Bad input is one line naming the flag.
#![cfg(feature = "http")]

mod common;
use common::*;

use std::path::{Path, PathBuf};

fn data(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .display()
        .to_string()
}

/// A step model fitted to the RTX 4090 tables, the ShareGPT trace replayed with it, and the
/// replay's per-request records written as a `tokenq bench --records` JSONL whose latencies are
/// `slow` times the replay's.
fn setup(dir: &Path, slow: f64) -> (PathBuf, PathBuf) {
    let coef = dir.join("st.toml");
    ok(&tokenq(&[
        "fit",
        "--step-model-from",
        &data("datasets/llmservingsim/RTX4090"),
        "--kv-blocks",
        "2588",
        "-o",
        p(&coef),
        "--quiet",
    ]));
    // The trace alone, without the prefix file beside it: a load test's random prompts share
    // no prefix either.
    let trace = dir.join("sharegpt.lengths.csv");
    std::fs::copy(
        data("datasets/llmservingsim/sharegpt-llama-3.1-8b-300-sps10.lengths.csv"),
        &trace,
    )
    .unwrap();
    let csv = dir.join("replay.csv");
    ok(&tokenq(&[
        "replay",
        "--trace",
        p(&trace),
        "--coefficients",
        p(&coef),
        "--kv-blocks",
        "2588",
        "--records",
        p(&csv),
    ]));
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut jsonl = String::new();
    for line in text.lines().skip(1) {
        let f: Vec<f64> = line.split(',').map(|x| x.parse().unwrap()).collect();
        let (id, arrival, input, output, first, finish) = (f[0], f[1], f[2], f[3], f[4], f[5]);
        let first = arrival + slow * (first - arrival);
        let last = arrival + slow * (finish - arrival);
        let rec = serde_json::json!({
            "id": id as u64, "scheduled_send_s": arrival, "actual_send_s": arrival,
            "first_token_s": first, "last_token_s": last, "end_s": last,
            "token_times_s": [first, last], "token_chunks": 2, "empty_chunks": 0,
            "usage_prompt_tokens": input as u32, "usage_completion_tokens": output as u32,
            "requested_input_tokens": input as u32, "requested_output_tokens": output as u32,
            "error": null
        });
        jsonl.push_str(&rec.to_string());
        jsonl.push('\n');
    }
    let measured = dir.join(format!("run-{slow}.jsonl"));
    std::fs::write(&measured, jsonl).unwrap();
    (coef, measured)
}

fn errors(v: &serde_json::Value) -> Vec<(String, f64)> {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                format!(
                    "{} {}",
                    r["metric"].as_str().unwrap(),
                    r["statistic"].as_str().unwrap()
                ),
                r["error_pct"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_run_measured_as_the_model_predicts_has_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let (coef, measured) = setup(dir.path(), 1.0);
    let plot = dir.path().join("c.svg");
    let v: serde_json::Value = serde_json::from_str(&ok(&tokenq(&[
        "compare",
        p(&measured),
        "--coefficients",
        p(&coef),
        "--kv-blocks",
        "2588",
        "--plot",
        p(&plot),
        "--json",
    ])))
    .unwrap();
    assert_eq!(v["requests"], 300, "{v}");
    let e = errors(&v);
    assert_eq!(e.len(), 12, "{v}");
    for (what, err) in e {
        assert!(err.abs() < 1e-6, "{what}: {err}%");
    }
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("predicted"),
        "{}",
        &svg[..200.min(svg.len())]
    );
}

#[test]
fn a_slower_server_shows_as_negative_errors() {
    // Every measured latency 10 % longer: the model predicts 1/1.1 of it, −9.09 %.
    let dir = tempfile::tempdir().unwrap();
    let (coef, measured) = setup(dir.path(), 1.1);
    let v: serde_json::Value = serde_json::from_str(&ok(&tokenq(&[
        "compare",
        p(&measured),
        "--coefficients",
        p(&coef),
        "--kv-blocks",
        "2588",
        "--json",
    ])))
    .unwrap();
    for (what, err) in errors(&v) {
        assert!(
            (err - (1.0 / 1.1 - 1.0) * 100.0).abs() < 1e-6,
            "{what}: {err}%"
        );
    }
    let text = ok(&tokenq(&[
        "compare",
        p(&measured),
        "--coefficients",
        p(&coef),
        "--kv-blocks",
        "2588",
    ]));
    assert!(
        text.contains("-9.1%") && text.contains("ttft") && text.contains("± "),
        "{text}"
    );
}

#[test]
fn bad_input_is_one_line_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (coef, measured) = setup(dir.path(), 1.0);
    let plain = dir.path().join("plain.toml");
    std::fs::copy(
        data("datasets/coefficients/a100-llama-2-7b-vidur.toml"),
        &plain,
    )
    .unwrap();
    let garbage = dir.path().join("garbage.jsonl");
    std::fs::write(&garbage, "{not json\n").unwrap();
    for (args, want) in [
        (
            vec![
                "compare",
                p(&measured),
                "--coefficients",
                p(&plain),
                "--kv-blocks",
                "2588",
            ],
            "no [step_time]",
        ),
        (
            vec![
                "compare",
                p(&garbage),
                "--coefficients",
                p(&coef),
                "--kv-blocks",
                "2588",
            ],
            "garbage.jsonl",
        ),
        (
            vec!["compare", p(&measured), "--coefficients", p(&coef)],
            "--kv-blocks",
        ),
        (
            vec![
                "compare",
                p(&measured),
                "--coefficients",
                p(&coef),
                "--kv-blocks",
                "2588",
                "--plot",
                "x.png",
            ],
            "--plot",
        ),
    ] {
        let o = tokenq(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.starts_with("Error: ") && err.contains(want),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
