//! `tokenq profile` and `tokenq merge` end to end through the binary, on the synthetic
//! backend (and one tiny candle run): JSON output, dry run, a really killed and resumed run,
//! shards + merge, one-line errors.
#![cfg(feature = "profiler")]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn tokenq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenq"))
        .args(args)
        // anyhow appends a backtrace when these are set; users see one line without them
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .expect("run tokenq")
}

fn json(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn synthetic_profile_json_reports_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.parquet");
    let v = json(&tokenq(&[
        "profile",
        "--backend",
        "synthetic",
        "--synthetic-noise",
        "0",
        "--batch",
        "1,2",
        "--input",
        "8",
        "--output",
        "4",
        "--reps",
        "2",
        "--out",
        p(&out),
        "--json",
    ]));
    assert_eq!(v["summary"]["rows"], 2 * 2 * 4);
    assert_eq!(v["summary"]["points_ok"], 2);
    let pts = v["points"].as_array().unwrap();
    // batch 1, input 8: TTFT = 15 + 1 + 0.05·8 ms = 16.4 ms (the synthetic model, noiseless)
    let b1 = pts.iter().find(|x| x["batch_size"] == 1).unwrap();
    assert!((b1["ttft_s"].as_f64().unwrap() - 0.0164).abs() < 1e-12);
    assert_eq!(b1["output_tokens"], 4);
    assert!(out.exists() && out.with_extension("runs.json").exists());
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d.parquet");
    let o = tokenq(&[
        "profile",
        "--model",
        "tiny",
        "--batch",
        "1,2,4,8",
        "--input",
        "32,128",
        "--output",
        "64",
        "--out",
        p(&out),
        "--dry-run",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        text.contains("8 points") && text.contains("estimated time"),
        "{text}"
    );
    assert!(text.contains("KV-cache capacity"), "{text}");
    assert!(!out.exists());
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn bad_input_is_one_line_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("e.parquet");
    let cases: [(&[&str], &str); 6] = [
        (&["--model", "gpt-5"], "unknown model"),
        (&["--dtype", "f8"], "--dtype"),
        (&["--device", "cuda"], "--features cuda"),
        (&["--weights", "/nonexistent/dir"], "config.json"),
        (&["--memory-budget", "0.001"], "--memory-budget"),
        (&["--shard", "5/4"], "--shard"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["profile", "--output", "8", "--out", p(&out)];
        args.extend_from_slice(extra);
        let o = tokenq(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{extra:?} succeeded");
        assert!(err.contains(needle), "{extra:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{extra:?}: {err}");
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing written"
    );
}

#[test]
fn a_killed_profile_resumes_to_the_same_point_set() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("k.parquet");
    // 6 points of ≈ 0.25 s each (sleeping synthetic clock)
    let args = [
        "profile",
        "--backend",
        "synthetic",
        "--synthetic-clock",
        "sleep",
        "--batch",
        "1,2,4",
        "--input",
        "8,16",
        "--output",
        "4",
        "--reps",
        "2",
        "--warmup",
        "0",
        "--quiet",
        "--out",
        p(&out),
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenq"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let parts = dir.path().join("k.parquet.parts");
    let t0 = Instant::now();
    let done = || {
        std::fs::read_dir(&parts)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| {
                        let n = e.file_name().to_string_lossy().to_string();
                        n.starts_with("point-") && n.ends_with(".json")
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    while done() < 2 && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let finished_before_kill = done();
    assert!(
        (2..6).contains(&finished_before_kill),
        "{finished_before_kill}"
    );
    assert!(!out.exists(), "a killed run leaves no half table");

    let mut resumed: Vec<&str> = args.to_vec();
    resumed.push("--resume");
    resumed.push("--json");
    let v = json(&tokenq(&resumed));
    assert_eq!(v["summary"]["points_resumed"], finished_before_kill);
    let ids: Vec<u64> = v["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["point_id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![0, 1, 2, 3, 4, 5]);
    assert!(
        v["points"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["reps"] == 2)
    );
}

#[test]
fn shards_merge_into_the_whole_grid() {
    let dir = tempfile::tempdir().unwrap();
    let mut outs = vec![];
    for i in 1..=3 {
        let out = dir.path().join(format!("shard{i}.csv"));
        let shard = format!("{i}/3");
        json(&tokenq(&[
            "profile",
            "--backend",
            "synthetic",
            "--batch",
            "1,2,4,8",
            "--input",
            "16",
            "--output",
            "3",
            "--reps",
            "1",
            "--shard",
            &shard,
            "--out",
            p(&out),
            "--json",
        ]));
        outs.push(out);
    }
    let merged = dir.path().join("all.parquet");
    let mut args = vec!["merge"];
    args.extend(outs.iter().map(|o| p(o)));
    args.extend(["--out", p(&merged), "--json"]);
    let v = json(&tokenq(&args));
    assert_eq!(v["points"], 4);
    assert_eq!(v["rows"], 4 * 3);
    assert_eq!(v["missing_points"].as_array().unwrap().len(), 0);
}

#[test]
fn tiny_candle_profile_on_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny.parquet");
    let v = json(&tokenq(&[
        "profile",
        "--model",
        "tiny",
        "--device",
        "cpu",
        "--batch",
        "1,2",
        "--input",
        "8",
        "--output",
        "4",
        "--reps",
        "2",
        "--out",
        p(&out),
        "--json",
    ]));
    assert_eq!(v["summary"]["rows"], 2 * 2 * 4);
    for pt in v["points"].as_array().unwrap() {
        assert!(pt["ttft_s"].as_f64().unwrap() > 0.0);
        assert!(pt["e2e_s"].as_f64().unwrap() > pt["ttft_s"].as_f64().unwrap());
    }
}

/// With the device's peaks given, the summary puts each point beside its roofline: the
/// fraction is the model's roofline time (independently: 2·params·tokens FLOPs at the given
/// peak, or the weights' bytes at the given bandwidth) over the measured time.
#[test]
fn roofline_columns_with_given_peaks() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("roof.parquet");
    let o = tokenq(&[
        "profile",
        "--model",
        "tiny",
        "--device",
        "cpu",
        "--batch",
        "1,2",
        "--input",
        "8",
        "--output",
        "4",
        "--reps",
        "2",
        "--quiet",
        "--peak-tflops",
        "0.05",
        "--peak-bandwidth-gbs",
        "5",
        "--out",
        p(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("TTFT/roof") && text.contains("given, 0.05 TFLOP/s, 5 GB/s"),
        "{text}"
    );
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.ends_with('%'))
        .collect();
    assert_eq!(rows.len(), 2, "{text}");
    for r in rows {
        for pct in r.split_whitespace().filter(|w| w.ends_with('%')) {
            let v: f64 = pct.trim_end_matches('%').parse().unwrap();
            assert!(v > 0.0 && v.is_finite(), "{r}");
        }
    }
    // Without peaks on a CPU there is no roofline to show.
    let o = tokenq(&[
        "profile",
        "--model",
        "tiny",
        "--device",
        "cpu",
        "--batch",
        "1",
        "--input",
        "8",
        "--output",
        "2",
        "--reps",
        "1",
        "--quiet",
        "--force",
        "--out",
        p(&out),
    ]);
    assert!(o.status.success());
    assert!(!String::from_utf8_lossy(&o.stdout).contains("TTFT/roof"));
}

#[test]
fn bad_peaks_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.parquet");
    let o = tokenq(&[
        "profile",
        "--backend",
        "synthetic",
        "--batch",
        "1",
        "--input",
        "8",
        "--output",
        "2",
        "--peak-tflops=-1",
        "--peak-bandwidth-gbs",
        "5",
        "--out",
        p(&out),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--peak-tflops"), "{err}");
}
