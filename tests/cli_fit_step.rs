//! `tokenq fit --step-model-from DIR`: the `[step_time]` section learned from the shipped
//! RTX 4090 per-layer tables loads back into `tokenq simulate --policy continuous
//! --coefficients`, and its replay of the shipped ShareGPT workload agrees with the replay
//! that times every step with the tables themselves (an independent step model; README:
//! tables TPOT mean 0.033 s) within a few percent. Bad input gets a one-line error.

use std::path::PathBuf;

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;
use serde_json::Value;

/// Largest relative difference of the fitted model's TPOT/E2E means from the table model's
/// (the fit's summed-time bias on this replay is about 2%).
const TOLERANCE: f64 = 0.05;

fn data(p: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("datasets/llmservingsim")
        .join(p)
        .display()
        .to_string()
}

fn workload() -> String {
    data("sharegpt-llama-3.1-8b-300-sps10.lengths.csv")
}

fn tokenq() -> Command {
    Command::cargo_bin("tokenq").unwrap()
}

fn json(cmd: &mut Command) -> Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const LIMITS: [&str; 6] = [
    "--max-num-seqs",
    "256",
    "--max-batched-tokens",
    "2048",
    "--kv-blocks",
    "2588",
];

#[test]
fn fitted_step_model_reproduces_the_table_replay() {
    let dir = tempfile::tempdir().unwrap();
    let coef = dir.path().join("rtx4090-step.toml");
    let fit = json(
        tokenq()
            .args(["fit", "--step-model-from", &data("RTX4090")])
            .args(LIMITS)
            .args(["--check-trace", &workload(), "--json", "-o"])
            .arg(&coef),
    );
    let st = &fit["step_time"];
    let check = &st["replay_check"];
    assert!(check["steps"].as_u64().unwrap() > 1000, "{check}");
    assert!(check["mape_pct"].as_f64().unwrap() < 10.0, "{check}");
    assert!(
        check["sum_bias_pct"].as_f64().unwrap().abs() < 5.0,
        "{check}"
    );
    assert!(st["decode_fit"]["mape_pct"].as_f64().unwrap() < 5.0);
    let text = std::fs::read_to_string(&coef).unwrap();
    assert!(text.contains("[step_time.mixed]"), "{text}");

    let sim = |model: &[&str]| {
        json(
            tokenq()
                .args([
                    "simulate",
                    "--policy",
                    "continuous",
                    "--trace",
                    &workload(),
                    "--json",
                ])
                .args(LIMITS)
                .args(model),
        )
    };
    let coef_s = coef.display().to_string();
    let fitted = sim(&["--coefficients", &coef_s]);
    let table = sim(&["--step-table", &data("RTX4090")]);
    let f = &fitted["replays"][0];
    let t = &table["replays"][0];
    assert!(f["step_model"].as_str().unwrap().contains("fitted"));
    assert!(
        t["step_model"]
            .as_str()
            .unwrap()
            .contains("per-layer tables")
    );
    assert_eq!(f["completed"], 300);
    for m in ["tpot", "e2e"] {
        let (a, b) = (
            f[m]["mean_s"].as_f64().unwrap(),
            t[m]["mean_s"].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() / b < TOLERANCE,
            "{m}: fitted {a} s vs tables {b} s"
        );
    }
    // The README's table replay: TPOT mean 0.033 s.
    let tpot = f["tpot"]["mean_s"].as_f64().unwrap();
    assert!((tpot - 0.033).abs() < 0.033 * TOLERANCE, "TPOT {tpot} s");
}

#[test]
fn step_model_from_adds_to_an_existing_file_and_needs_kv_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let coef = dir.path().join("c.toml");
    tokenq()
        .args([
            "fit",
            "--from",
            "llmservingsim",
            &data("RTX4090"),
            "--device",
            "RTX 4090",
            "--model",
            "Llama-3.1-8B",
            "-q",
            "-o",
        ])
        .arg(&coef)
        .assert()
        .success();
    tokenq()
        .args(["fit", "--step-model-from", &data("RTX4090")])
        .args(LIMITS)
        .arg("-o")
        .arg(&coef)
        .assert()
        .success()
        .stdout(contains("MAPE").and(contains("replay check: not run")));
    let text = std::fs::read_to_string(&coef).unwrap();
    assert!(text.contains("[decode_step]") && text.contains("[step_time.decode]"));

    tokenq()
        .args(["fit", "--step-model-from", &data("RTX4090"), "-o"])
        .arg(dir.path().join("x.toml"))
        .assert()
        .failure()
        .stderr(contains("--kv-blocks"));
    tokenq()
        .args([
            "fit",
            "--step-model-from",
            &dir.path().display().to_string(),
        ])
        .args(LIMITS)
        .arg("-o")
        .arg(dir.path().join("y.toml"))
        .assert()
        .failure()
        .stderr(contains("--step-model-from"));
}
