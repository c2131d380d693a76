//! `tokenq fit --step-model-from DIR`: the `[step_time]` section learned from the shipped
//! RTX 4090 per-layer tables loads back into `tokenq simulate --policy continuous
//! --coefficients`, and its replay of the shipped ShareGPT workload agrees with the replay
//! that times every step with the tables themselves (an independent step model; README:
//! tables TPOT mean 0.033 s) within a few percent. `--step-model` learns it from a synthetic
//! tokenq profile whose step times are known lines. Bad input gets a one-line error.
#![cfg(feature = "tables")]

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

/// A timings table whose prefill takes 0.004·b + 0.03 s and whose decode step takes
/// 0.0004·b + 0.02 s (no context dependence) with a ±1% deterministic ripple, for 14 batch
/// sizes × 3 repetitions × 8 steps.
fn synthetic_profile() -> String {
    use std::fmt::Write as _;
    let mut s = String::from(
        "run_id,point_id,rep,batch_size,input_tokens,step,context_tokens,wall_s,device_s\n",
    );
    for (point, b) in (1..=14u32).enumerate() {
        for rep in 0..3u32 {
            for step in 0..8u32 {
                let mean = if step == 0 {
                    0.004 * f64::from(b) + 0.03
                } else {
                    0.0004 * f64::from(b) + 0.02
                };
                let ripple = 0.01 * (f64::from((rep + step + b) % 3) - 1.0);
                let ctx = if step == 0 { 0 } else { 32 + step - 1 };
                writeln!(
                    s,
                    "r0,{point},{rep},{b},32,{step},{ctx},{},",
                    mean * (1.0 + ripple)
                )
                .unwrap();
            }
        }
    }
    s
}

#[test]
fn step_model_from_a_profile_recovers_the_lines() {
    let dir = tempfile::tempdir().unwrap();
    let prof = dir.path().join("profile.csv");
    std::fs::write(&prof, synthetic_profile()).unwrap();
    let coef = dir.path().join("c.toml");
    let v = json(
        tokenq()
            .arg("fit")
            .arg(&prof)
            .args(["--step-model", "--json", "-o"])
            .arg(&coef),
    );
    let st = &v["coefficients"]["step_time"];
    let g = |a: &str, b: &str| st[a][b].as_f64().unwrap();
    // Decode form: c0 + c1·n_d + c3·Σctx with the line's 0.02 s and 0.0004 s/req, no context term.
    let ctx_effect = g("decode", "per_context_token_s") * 14.0 * 40.0;
    assert!(
        (g("decode", "intercept_s") - 0.02).abs() < 0.02 * 0.03,
        "{st}"
    );
    assert!(
        (g("decode", "per_decode_s") - 0.0004).abs() < 0.0004 * 0.1,
        "{st}"
    );
    assert!(ctx_effect.abs() < 0.02 * 0.02, "{st}");
    // Mixed form on prefill steps of T = 32·b tokens: t1(8) = 0.062 s.
    let t = 256.0;
    let p8 = g("mixed", "intercept_s")
        + g("mixed", "per_token_s") * t
        + g("mixed", "per_token_above_knee_s") * (t - 128.0);
    assert!((p8 - 0.062).abs() < 0.062 * 0.02, "t1(8) = {p8} s; {st}");
    for form in ["decode_fit", "mixed_fit"] {
        assert!(st[form]["mape_pct"].as_f64().unwrap() < 2.0, "{form}: {st}");
    }
    assert!(
        std::fs::read_to_string(&coef)
            .unwrap()
            .contains("[step_time.decode]")
    );
}
