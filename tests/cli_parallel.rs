//! `tokenq replay` on the four real runs' shapes, each from the run's own settings file
//! (`datasets/llmservingsim/runs/<RUN>/engine_meta.json`, with the `cluster_config.json` beside
//! it): Llama-3.1-8B on one GPU (RTX 4090, RTX PRO 6000), Qwen3-32B with tensor parallelism 2,
//! and Qwen3-30B-A3B as two data-parallel engines with expert parallelism 2 (docs/serving.md
//! "Several GPUs"). The settings file and the equivalent flags give the same replay; the JSON,
//! records, series and report carry every engine.

use std::path::PathBuf;

use assert_cmd::Command;
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use serde_json::Value;

fn data(p: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("datasets/llmservingsim")
        .join(p)
        .display()
        .to_string()
}

fn run_meta(run: &str) -> String {
    data(&format!("runs/{run}/engine_meta.json"))
}

fn tokenq() -> Command {
    Command::cargo_bin("tokenq").unwrap()
}

fn json(args: &[String]) -> Value {
    let out = tokenq().arg("replay").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

const LLAMA: &str = "sharegpt-llama-3.1-8b-300-sps10.lengths.csv";
const QWEN32: &str = "sharegpt-qwen3-32b-300-sps10.lengths.csv";
const QWEN_MOE: &str = "sharegpt-qwen3-30b-a3b-300-sps10.lengths.csv";

#[test]
fn llama_one_gpu_from_the_run_settings() {
    // RTX 4090: the settings file carries the engine's own KV block count (2588); the
    // profile's meta.yaml switches the skew correction off (as upstream runs this GPU), so the
    // default is the plain table model.
    let by_file = json(&args(&[
        "--trace",
        &data(LLAMA),
        "--engine-config",
        &run_meta("RTX4090_Llama-3.1-8B"),
        "--step-table",
        &data("RTX4090"),
        "--json",
    ]));
    assert_eq!(by_file["engine"]["kv_blocks"], 2588);
    assert_eq!(by_file["engine"]["max_num_seqs"], 256);
    assert!(by_file.get("parallel").is_none(), "one engine on one GPU");
    assert!(
        !by_file["replays"][0]["step_model"]
            .as_str()
            .unwrap()
            .contains("skew")
    );
    let by_flags = json(&args(&[
        "--trace",
        &data(LLAMA),
        "--step-table",
        &data("RTX4090"),
        "--max-num-seqs",
        "256",
        "--kv-blocks",
        "2588",
        "--no-skew",
        "--json",
    ]));
    assert_eq!(by_file["replays"][0]["e2e"], by_flags["replays"][0]["e2e"]);
    // RTX PRO 6000: skew_fit.csv is in the table folder, so the correction is on by default
    // (and says so); the same as --skew.
    let pro = |extra: &[&str]| {
        let mut a = args(&[
            "--trace",
            &data(LLAMA),
            "--engine-config",
            &run_meta("RTXPRO6000_Llama-3.1-8B"),
            "--step-table",
            &data("RTXPRO6000"),
            "--kv-blocks",
            "36578",
            "--json",
        ]);
        a.extend(args(extra));
        json(&a)
    };
    let default = pro(&[]);
    let skew = pro(&["--skew"]);
    let off = pro(&["--no-skew"]);
    assert_eq!(default["engine"]["max_num_seqs"], 128);
    assert!(
        default["replays"][0]["step_model"]
            .as_str()
            .unwrap()
            .contains("skew correction (on by default")
    );
    assert_eq!(default["replays"][0]["tpot"], skew["replays"][0]["tpot"]);
    assert_ne!(default["replays"][0]["tpot"], off["replays"][0]["tpot"]);
}

#[test]
fn qwen3_32b_tensor_parallel_2() {
    let by_file = json(&args(&[
        "--trace",
        &data(QWEN32),
        "--engine-config",
        &run_meta("RTXPRO6000_Qwen3-32B"),
        "--step-table",
        &data("RTXPRO6000/Qwen3-32B"),
        "--kv-blocks",
        "28614",
        "--json",
    ]));
    let p = &by_file["parallel"];
    assert_eq!(p["tensor_parallel"], 2);
    assert_eq!(p["data_parallel"], 1);
    assert_eq!(p["link"]["bandwidth_gb_s"], 16.0);
    assert_eq!(p["link"]["latency_ns"], 20000.0);
    let r = &by_file["replays"][0];
    assert_eq!(r["completed"], 300);
    let model = r["step_model"].as_str().unwrap();
    assert!(
        model.contains("tp2") && model.contains("64 layers") && model.contains("TP2"),
        "{model}"
    );
    // The all-reduces are about 28% of the step time on this workload (docs/serving.md).
    let share = r["collectives"]["share"].as_f64().unwrap();
    assert!((0.2..0.35).contains(&share), "collectives share {share}");
    let by_flags = json(&args(&[
        "--trace",
        &data(QWEN32),
        "--step-table",
        &data("RTXPRO6000/Qwen3-32B/tp2"),
        "--tensor-parallel",
        "2",
        "--max-num-seqs",
        "128",
        "--kv-blocks",
        "28614",
        "--json",
    ]));
    assert_eq!(r["ttft"], by_flags["replays"][0]["ttft"]);
    assert_eq!(r["e2e"], by_flags["replays"][0]["e2e"]);
    // Tables of the wrong degree are refused.
    tokenq()
        .args([
            "replay",
            "--trace",
            &data(LLAMA),
            "--step-table",
            &data("RTXPRO6000"),
        ])
        .args(["--tensor-parallel", "2", "--kv-blocks", "36578"])
        .assert()
        .failure()
        .stderr(contains("tp2/"));
}

#[test]
fn qwen3_moe_data_parallel_2_expert_parallel_2() {
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("records.csv");
    let ser = dir.path().join("series.csv");
    let rep = dir.path().join("report");
    let moe_tables = data("RTXPRO6000/Qwen3-30B-A3B-Instruct-2507");
    let out = tokenq()
        .args([
            "replay",
            "--trace",
            &data(QWEN_MOE),
            "--engine-config",
            &run_meta("RTXPRO6000_Qwen3-30B-A3B-Instruct-2507"),
            "--step-table",
            &moe_tables,
            "--kv-blocks",
            "38590",
            "--json",
        ])
        .arg("--records")
        .arg(&rec)
        .arg("--series")
        .arg(&ser)
        .arg("--report")
        .arg(&rep)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let p = &v["parallel"];
    assert_eq!(p["data_parallel"], 2);
    assert_eq!(p["expert_parallel"], 2);
    assert_eq!(p["tensor_parallel"], 1);
    assert_eq!(p["dp_lockstep"], true, "MoE engines step together");
    let r = &v["replays"][0];
    assert_eq!(r["completed"], 300);
    let engines = r["engines"].as_array().unwrap();
    assert_eq!(engines.len(), 2);
    let sum: u64 = engines
        .iter()
        .map(|e| e["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(sum, 300, "every request on exactly one engine");
    for e in engines {
        let n = e["requests"].as_u64().unwrap();
        assert!(
            (100..=200).contains(&n),
            "routing balances the engines: {n}"
        );
        assert_eq!(e["completed"].as_u64().unwrap(), n);
    }
    let dummies: u64 = engines
        .iter()
        .map(|e| e["dummy_steps"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(r["dummy_steps"].as_u64().unwrap(), dummies);
    // In lockstep both engines run the same number of steps (real + dummy).
    let steps: Vec<u64> = engines
        .iter()
        .map(|e| e["iterations"].as_u64().unwrap() + e["dummy_steps"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(steps[0], steps[1]);
    let model = r["step_model"].as_str().unwrap();
    assert!(model.contains("MoE") && model.contains("EP2"), "{model}");
    // Records and series name the engine.
    let text = std::fs::read_to_string(&rec).unwrap();
    assert!(text.lines().next().unwrap().ends_with(",engine"));
    let on: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap())
        .collect();
    assert_eq!(on.len(), 300);
    assert!(on.contains(&"0") && on.contains(&"1"));
    let series = std::fs::read_to_string(&ser).unwrap();
    assert!(series.lines().next().unwrap().ends_with(",engine"));
    assert_eq!(series.lines().count() as u64 - 1, steps[0] + steps[1]);
    // The report draws each engine's running / waiting / KV use.
    let html = std::fs::read_to_string(rep.join("report.html")).unwrap();
    for want in [
        "engine 0 running",
        "engine 1 waiting",
        "KV cache use per engine",
        "2 data-parallel engines",
    ] {
        assert!(html.contains(want), "report lacks {want:?}");
    }
    assert!(rep.join("continuous-engines-state.svg").is_file());
    // The same run from flags.
    let by_flags = json(&args(&[
        "--trace",
        &data(QWEN_MOE),
        "--step-table",
        &moe_tables,
        "--data-parallel",
        "2",
        "--expert-parallel",
        "--max-num-seqs",
        "128",
        "--kv-blocks",
        "38590",
        "--json",
    ]));
    assert_eq!(r["e2e"], by_flags["replays"][0]["e2e"]);
    // And from the cluster configuration alone (its DP group of two instances with ep_size 2).
    let by_cluster = json(&args(&[
        "--trace",
        &data(QWEN_MOE),
        "--engine-config",
        &data("runs/RTXPRO6000_Qwen3-30B-A3B-Instruct-2507/cluster_config.json"),
        "--step-table",
        &moe_tables,
        "--max-num-seqs",
        "128",
        "--kv-blocks",
        "38590",
        "--json",
    ]));
    assert_eq!(r["e2e"], by_cluster["replays"][0]["e2e"]);
}

#[test]
fn text_output_lists_every_engine() {
    tokenq()
        .args([
            "replay",
            "--trace",
            &data(QWEN_MOE),
            "--engine-config",
            &run_meta("RTXPRO6000_Qwen3-30B-A3B-Instruct-2507"),
            "--step-table",
            &data("RTXPRO6000/Qwen3-30B-A3B-Instruct-2507"),
            "--kv-blocks",
            "38590",
        ])
        .assert()
        .success()
        .stdout(
            contains("parallelism: TP 1 × DP 2 engines (GPUs: 2), experts over 2 EP ranks")
                .and(contains("engine 0: "))
                .and(contains("engine 1: "))
                .and(contains("collectives: "))
                .and(contains("engine (each): max_num_seqs 128")),
        );
}
