//! `tokenq simulate --policy continuous`: the shipped ShareGPT workload on both GPUs, the
//! JSON output checked against the per-request records written by the same run (an
//! independent aggregation), engine settings from a TOML file, the fitted step model saved and
//! read back, and clear errors on bad input.

use std::path::PathBuf;

use assert_cmd::Command;
use predicates::prelude::*;
use predicates::str::contains;
use serde_json::Value;

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

fn base(gpu: &str, seqs: &str, blocks: &str) -> Vec<String> {
    [
        "simulate",
        "--policy",
        "continuous",
        "--trace",
        &workload(),
        "--step-table",
        &data(gpu),
        "--max-num-seqs",
        seqs,
        "--max-batched-tokens",
        "2048",
        "--kv-blocks",
        blocks,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

#[test]
fn both_gpus_json_matches_records() {
    let dir = tempfile::tempdir().unwrap();
    for (gpu, seqs, blocks) in [("RTX4090", "256", "2588"), ("RTXPRO6000", "128", "36578")] {
        let rec = dir.path().join(format!("{gpu}.csv"));
        let out = tokenq()
            .args(base(gpu, seqs, blocks))
            .args(["--fit-step-model", "--json", "--records"])
            .arg(&rec)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["method"], "simulation");
        assert_eq!(v["requests"], 300);
        assert_eq!(
            v["engine"]["kv_blocks"].as_u64().unwrap().to_string(),
            blocks
        );
        let replays = v["replays"].as_array().unwrap();
        assert_eq!(replays.len(), 2, "table and fitted");
        let t = &replays[0];
        assert_eq!(t["completed"], 300);
        // Records: recompute TTFT / TPOT / E2E from the timestamps and compare with the JSON.
        let text = std::fs::read_to_string(&rec).unwrap();
        let rows: Vec<Vec<f64>> = text
            .lines()
            .skip(1)
            .map(|l| {
                l.split(',')
                    .map(|x| x.parse().unwrap_or(f64::NAN))
                    .collect()
            })
            .collect();
        assert_eq!(rows.len(), 300);
        let ttft: Vec<f64> = rows.iter().map(|r| r[4] - r[1]).collect();
        let e2e: Vec<f64> = rows.iter().map(|r| r[5] - r[1]).collect();
        let tpot: Vec<f64> = rows.iter().map(|r| (r[5] - r[4]) / (r[3] - 1.0)).collect();
        for (key, vals) in [("ttft", &ttft), ("e2e", &e2e), ("tpot", &tpot)] {
            let m = t[key]["mean_s"].as_f64().unwrap();
            assert!(
                (m - mean(vals)).abs() < 1e-9 * m.abs().max(1.0),
                "{gpu} {key}"
            );
        }
        let pre: f64 = rows.iter().map(|r| r[9]).sum();
        assert_eq!(pre as u64, t["preemptions"].as_u64().unwrap());
        // The fitted model's error on the replay's own steps is reported and small.
        let bias = v["fitted_check"]["sum_bias_pct"].as_f64().unwrap();
        assert!(bias.abs() < 10.0, "{gpu}: bias {bias}%");
    }
}

#[test]
fn engine_config_file_equals_flags_and_text_output_has_units() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("engine.toml");
    std::fs::write(
        &cfg,
        format!(
            "max_num_seqs = 128\nmax_batched_tokens = 2048\nkv_blocks = 36578\nstep_table = \"{}\"\n",
            data("RTXPRO6000")
        ),
    )
    .unwrap();
    let by_file = tokenq()
        .args([
            "simulate",
            "--policy",
            "continuous",
            "--trace",
            &workload(),
            "--json",
            "--engine-config",
        ])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        by_file.status.success(),
        "{}",
        String::from_utf8_lossy(&by_file.stderr)
    );
    let by_flags = tokenq()
        .args(base("RTXPRO6000", "128", "36578"))
        .arg("--json")
        .output()
        .unwrap();
    let a: Value = serde_json::from_slice(&by_file.stdout).unwrap();
    let b: Value = serde_json::from_slice(&by_flags.stdout).unwrap();
    assert_eq!(a["replays"][0]["e2e"], b["replays"][0]["e2e"]);
    tokenq()
        .args(base("RTXPRO6000", "128", "36578"))
        .assert()
        .success()
        .stdout(
            contains("TTFT")
                .and(contains("(s)"))
                .and(contains("tokens/step")),
        );
}

#[test]
fn fitted_model_round_trips_through_the_coefficients_file() {
    let dir = tempfile::tempdir().unwrap();
    let coef = dir.path().join("c.toml");
    tokenq()
        .args(base("RTX4090", "256", "2588"))
        .arg("--save-step-model")
        .arg(&coef)
        .assert()
        .success();
    let text = std::fs::read_to_string(&coef).unwrap();
    assert!(text.contains("[step_time.decode]") && text.contains("per_context_token_s"));
    let out = tokenq()
        .args([
            "simulate",
            "--policy",
            "continuous",
            "--trace",
            &workload(),
            "--kv-blocks",
            "2588",
            "--json",
        ])
        .arg("--coefficients")
        .arg(&coef)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["replays"].as_array().unwrap().len(), 1);
    assert!(
        v["replays"][0]["step_model"]
            .as_str()
            .unwrap()
            .contains("fitted")
    );
    assert_eq!(v["replays"][0]["completed"], 300);
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // No KV size.
    tokenq()
        .args([
            "simulate",
            "--policy",
            "continuous",
            "--trace",
            &workload(),
            "--step-table",
            &data("RTX4090"),
        ])
        .assert()
        .failure()
        .stderr(contains("--kv-blocks is required"));
    // Budget 0.
    let mut a = base("RTX4090", "256", "2588");
    a[10] = "0".into();
    tokenq()
        .args(&a)
        .assert()
        .failure()
        .stderr(contains("--max-batched-tokens must be at least 1"));
    // A request longer than the cache (request 0: 2358 + 531 tokens need 181 blocks).
    tokenq()
        .args(base("RTX4090", "256", "100"))
        .assert()
        .failure()
        .stderr(
            contains("request 0")
                .and(contains("181 KV blocks"))
                .and(contains("--kv-blocks")),
        );
    // A table directory with a layer missing.
    let t = dir.path().join("tables");
    std::fs::create_dir(&t).unwrap();
    let dense = std::fs::read_to_string(data("RTX4090/dense.csv")).unwrap();
    let cut: String = dense
        .lines()
        .filter(|l| !l.starts_with("qkv_proj,"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(t.join("dense.csv"), cut).unwrap();
    for f in ["per_sequence.csv", "attention.csv"] {
        std::fs::copy(data(&format!("RTX4090/{f}")), t.join(f)).unwrap();
    }
    let mut a = base("RTX4090", "256", "2588");
    a[6] = t.display().to_string();
    tokenq()
        .args(&a)
        .assert()
        .failure()
        .stderr(contains("qkv_proj").and(contains("dense.csv")));
    // Records in a format this build does not write.
    let mut a = base("RTX4090", "256", "2588");
    a.push("--records".into());
    a.push(dir.path().join("r.parquet").display().to_string());
    tokenq()
        .args(&a)
        .assert()
        .failure()
        .stderr(contains("writes CSV"));
    // No step model at all.
    tokenq()
        .args([
            "simulate",
            "--policy",
            "continuous",
            "--trace",
            &workload(),
            "--kv-blocks",
            "2588",
        ])
        .assert()
        .failure()
        .stderr(contains("no step-time model"));
}

/// The tokenq trace CSV (read by `sim::trace`) with a shared prefix: request 1 re-uses the
/// two 16-token blocks it shares with request 0 (32 cached tokens in its record).
#[test]
fn native_trace_with_shared_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.csv");
    std::fs::write(
        &trace,
        "arrival_s,input_tokens,output_tokens,prefix_parent,shared_prefix_blocks\n0.0,40,4,-1,0\n2.0,40,4,0,2\n",
    )
    .unwrap();
    let rec = dir.path().join("r.csv");
    tokenq()
        .args([
            "simulate",
            "--policy",
            "continuous",
            "--kv-blocks",
            "100",
            "--step-table",
        ])
        .arg(data("RTX4090"))
        .arg("--trace")
        .arg(&trace)
        .arg("--records")
        .arg(&rec)
        .assert()
        .success();
    let text = std::fs::read_to_string(&rec).unwrap();
    let last: Vec<&str> = text.lines().nth(2).unwrap().split(',').collect();
    assert_eq!(last[10], "32");
}

/// Without --kv-blocks, a coefficients file's measured KV capacity fills it:
/// 10 requests of 4096 tokens fit → at least 10 × 256 = 2560 blocks of 16.
#[test]
fn kv_blocks_from_measured_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let coef = dir.path().join("c.toml");
    tokenq()
        .args(base("RTX4090", "256", "2588"))
        .arg("--save-step-model")
        .arg(&coef)
        .assert()
        .success();
    let mut text = std::fs::read_to_string(&coef).unwrap();
    text.push_str("\n[[kv_capacity]]\nsequence_tokens = 4096\nmax_concurrent_requests = 10\nsource = \"test\"\n");
    std::fs::write(&coef, text).unwrap();
    let out = tokenq()
        .args([
            "simulate",
            "--policy",
            "continuous",
            "--trace",
            &workload(),
            "--json",
            "--coefficients",
        ])
        .arg(&coef)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["engine"]["kv_blocks"], 2560);
    assert!(String::from_utf8_lossy(&out.stderr).contains("measured KV capacity"));
}

/// `--report DIR` on the RTX PRO 6000 workload: the HTML has every section, both SVGs parse
/// as XML, and the capacity comparison names the three paper policies with their rates. The
/// paper-level capacity is checked against the closed form K/E[T_K] with E[T_K] read back from
/// the report's own "how" column (an independent division).
#[test]
fn report_on_the_pro_6000_workload() {
    let dir = tempfile::tempdir().unwrap();
    let rep = dir.path().join("report");
    tokenq()
        .args(base("RTXPRO6000", "128", "36578"))
        .args(["--skew", "--report"])
        .arg(&rep)
        .assert()
        .success();
    let html = std::fs::read_to_string(rep.join("report.html")).unwrap();
    for id in ["run", "latency", "state", "capacity", "definitions"] {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "section {id}"
        );
    }
    for want in [
        "TTFT empirical CDF",
        "TPOT empirical CDF",
        "E2E empirical CDF",
        "waiting",
        "KV blocks in use",
        "fixed batching, K = 128",
        "dynamic batching, cap K = 128",
        "elastic batching, cap K = 128",
        "continuous batching (vLLM V1 scheduler, this replay)",
        "0 preemptions",
        "req/s",
    ] {
        assert!(html.contains(want), "report lacks {want:?}");
    }
    for svg in ["continuous-latency-cdf.svg", "continuous-engine-state.svg"] {
        let text = std::fs::read_to_string(rep.join(svg)).unwrap();
        assert!(text.starts_with("<svg") || text.contains("<svg"), "{svg}");
        assert!(text.contains("no CI"), "{svg}: replay points carry no CI");
    }
    // Fixed K = 128: max rate = K / E[T_K] with E[T_K] as printed in the same row.
    let row = html
        .split("<tr>")
        .find(|r| r.contains("fixed batching, K = 128"))
        .unwrap();
    let et: f64 = row
        .split("E[max of K outputs] = ")
        .nth(1)
        .and_then(|s| s.split(" s").next())
        .unwrap()
        .parse()
        .unwrap();
    let cells: Vec<&str> = row
        .split("<td class=\"num\">")
        .skip(1)
        .map(|c| c.split("</td>").next().unwrap())
        .collect();
    let max_rate: f64 = cells[1].parse().unwrap();
    assert!(
        (max_rate - 128.0 / et).abs() / max_rate < 2e-3,
        "{max_rate} vs 128/{et}"
    );
    let rho: f64 = cells[0].parse().unwrap();
    assert!(rho > 1.0, "10 req/s overloads fixed K = 128 (ρ = {rho})");
}

/// `simulate --policy continuous` and `simulate --policy=continuous` are `replay` with the same
/// flags (main.rs rewrites the command line); other commands keep their `--policy`.
#[test]
fn simulate_policy_continuous_is_replay() {
    let run = |args: Vec<String>| {
        let o = tokenq().args(&args).arg("--json").output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut v: Value = serde_json::from_slice(&o.stdout).unwrap();
        // The replay's own speed differs between runs; everything else must not.
        for r in v["replays"].as_array_mut().unwrap() {
            let r = r.as_object_mut().unwrap();
            r.remove("replay_wall_s");
            r.remove("iterations_per_s");
        }
        v
    };
    let spaced = base("RTX4090", "256", "2588");
    let mut replay = spaced.clone();
    replay.drain(0..3);
    replay.insert(0, "replay".into());
    let mut equals = spaced.clone();
    equals.drain(1..3);
    equals.push("--policy=continuous".into());
    let want = run(replay)["replays"].clone();
    assert!(want.as_array().is_some_and(|r| !r.is_empty()), "{want}");
    assert_eq!(run(spaced)["replays"], want);
    assert_eq!(run(equals)["replays"], want);
    tokenq()
        .args(["queue", "mg1", "--policy", "continuous"])
        .assert()
        .failure()
        .stderr(contains("--policy"));
}
