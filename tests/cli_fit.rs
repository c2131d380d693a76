//! `tokenq fit` end to end: real data (Table I against docs/models.md §1), synthetic timings tables,
//! and one-line errors for bad input.
#![cfg(feature = "tables")]

use std::fmt::Write as _;
use std::path::Path;

use assert_cmd::Command;

fn tokenq() -> Command {
    // anyhow prints a backtrace under RUST_BACKTRACE=1 (set in some CI shells); users see one line.
    let mut c = Command::cargo_bin("tokenq").unwrap();
    c.env("RUST_LIB_BACKTRACE", "0");
    c
}

const HEADER: &str =
    "run_id,point_id,rep,batch_size,input_tokens,step,context_tokens,wall_s,device_s\n";

/// t1(b) = 0.004·b + 0.03, t2(b) = 0.0004·b + 0.02 with a small deterministic ripple
/// (±1%, period 3 in rep and step) standing in for noise.
fn synthetic_csv(batches: &[u32], steps: u32) -> String {
    let mut s = String::from(HEADER);
    for (point, &b) in batches.iter().enumerate() {
        for rep in 0..3u32 {
            for step in 0..steps {
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

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn table1_import_reproduces_math_md_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t1.toml");
    let o = tokenq()
        .args(["fit", "--from", "table1", "--json", "-o"])
        .arg(&out)
        .arg(repo("datasets/paper/table1.csv"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let s = &v["coefficients"]["single_request"];
    assert!((s["per_token_s"].as_f64().unwrap() - 0.02299253).abs() < 5e-9);
    assert!((s["intercept_s"].as_f64().unwrap() - 0.186087).abs() < 5e-7);
    assert!((s["quality"]["r2"].as_f64().unwrap() - 0.99758).abs() < 5e-6);
    assert_eq!(
        v["coefficients"]["kv_capacity"][0]["max_concurrent_requests"],
        49
    );
    let back = tokenq_core::CoefficientsFile::read(&out).unwrap();
    assert!(back.single_request.is_some());
}

#[test]
fn synthetic_table_and_shards() {
    let dir = tempfile::tempdir().unwrap();
    let csv = synthetic_csv(&[1, 2, 4, 8, 16, 32], 24);
    let table = write(dir.path(), "profile.csv", &csv);
    let out = dir.path().join("c.toml");
    let o = tokenq()
        .arg("fit")
        .arg(&table)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for needle in [
        "single_request",
        "first_token",
        "decode_step",
        "held-out MAPE",
        "s/req",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    let f = tokenq_core::CoefficientsFile::read(&out).unwrap();
    let k = f.batch_k().unwrap();
    // The ripple is ±1%: coefficients within 3% of the truth.
    for (got, want) in k.iter().zip([0.004, 0.03, 0.0004, 0.02]) {
        assert!((got / want - 1.0).abs() < 0.03, "{k:?}");
    }
    assert_eq!(f.provenance.time_column, "wall_s");

    // The same rows split into two shards in a directory give the same file.
    let shards = dir.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    let lines: Vec<&str> = csv.lines().skip(1).collect();
    let half = lines.len() / 2;
    write(
        &shards,
        "part-0.csv",
        &format!("{HEADER}{}\n", lines[..half].join("\n")),
    );
    write(
        &shards,
        "part-1.csv",
        &format!("{HEADER}{}\n", lines[half..].join("\n")),
    );
    let out2 = dir.path().join("c2.toml");
    tokenq()
        .arg("fit")
        .arg(&shards)
        .arg("-o")
        .arg(&out2)
        .arg("--quiet")
        .assert()
        .success();
    let g = tokenq_core::CoefficientsFile::read(&out2).unwrap();
    assert_eq!(g.batch_k(), f.batch_k());
}

fn one_line_error(args: &[&str], table: &Path, expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let o = tokenq()
        .arg("fit")
        .arg(table)
        .args(args)
        .arg("-o")
        .arg(dir.path().join("x.toml"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(expect), "expected {expect:?} in {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(!dir.path().join("x.toml").exists());
}

#[test]
fn bad_input_gets_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = write(
        dir.path(),
        "missing.csv",
        "run_id,point_id,rep,batch_size,input_tokens,step,context_tokens,wall_s\nr,0,0,1,8,0,0,0.1\n",
    );
    one_line_error(&[], &missing, "missing column `device_s`");
    let empty = write(dir.path(), "empty.csv", HEADER);
    one_line_error(&[], &empty, "is empty");
    let one = write(
        dir.path(),
        "one.csv",
        &format!("{HEADER}r,0,0,1,8,0,0,0.1,\n"),
    );
    one_line_error(&[], &one, "cannot fit");
    let nan = write(
        dir.path(),
        "nan.csv",
        &format!("{HEADER}r,0,0,1,8,0,0,0.1,\nr,0,0,1,8,1,8,NaN,\n"),
    );
    one_line_error(&[], &nan, "NaN");
    let csv = synthetic_csv(&[1, 2], 4);
    let ok = write(dir.path(), "ok.csv", &csv);
    one_line_error(&["--holdout", "1.5"], &ok, "--holdout 1.5");
    one_line_error(&["--time", "device"], &ok, "device_s is null");
    one_line_error(&[], &dir.path().join("absent.parquet"), "absent.parquet");
}

/// tokenq's first real GPU profile (Llama-2-7B f16 on an H200): the `--warmup 1 --reps 1`
/// table fits with held-out errors of 13–18 %, so `fit` must warn and name the flags that fix
/// it; the `--warmup 2 --reps 3` table fits within 4 % and must not warn.
#[test]
fn noisy_gpu_profile_warns_and_steady_one_does_not() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/h200-candle-llama-2-7b");
    if !data.is_dir() {
        eprintln!("skipped: {} is not here", data.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (table, warns) in [
        ("grid24-reps1.parquet", true),
        ("grid6-reps3.parquet", false),
    ] {
        let out = tokenq()
            .arg("fit")
            .arg(data.join(table))
            .arg("-o")
            .arg(dir.path().join(format!("{table}.toml")))
            .assert()
            .success();
        let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        let warned = err.lines().filter(|l| l.starts_with("warning:")).count();
        if warns {
            assert!(warned >= 1, "{table}: expected a warning, stderr: {err}");
            assert!(err.contains("--warmup") && err.contains("--reps"), "{err}");
            assert!(
                err.lines()
                    .all(|l| !l.starts_with("warning:") || l.contains("held-out error"))
            );
        } else {
            assert_eq!(warned, 0, "{table}: unexpected warning: {err}");
        }
    }
}
