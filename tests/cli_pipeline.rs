//! `tokenq pipeline` end to end on the synthetic backend (a known linear latency model with
//! seeded noise): the fitted coefficients recover the synthetic truth, the exact answers agree
//! with the simulator, the report holds every section and every figure, and bad input fails
//! with a clear message and no report.
#![cfg(feature = "profiler")]

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn tokenq() -> Command {
    Command::cargo_bin("tokenq").unwrap()
}

/// Synthetic truth (`profiler::LinearLatency::default()`): a decode step of b requests with
/// context c takes 0.020 + 0.0004·b + 5e-7·b·c s; a prefill 0.015 + 0.001·b + 5e-5·b·p s.
const DECODE_BASE_S: f64 = 0.020;
const DECODE_PER_SEQ_S: f64 = 0.0004;

fn run_synthetic(out: &Path) -> serde_json::Value {
    let assert = tokenq()
        .args([
            "pipeline",
            "--backend",
            "synthetic",
            "--sim-requests",
            "40000",
            "--json",
            "--out",
        ])
        .arg(out)
        .assert()
        .success();
    serde_json::from_slice(&assert.get_output().stdout).expect("--json prints JSON")
}

#[test]
fn synthetic_pipeline_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    let s = run_synthetic(&out);

    // Files: the profile, the coefficients, the report and one SVG per figure.
    let html_path = out.join("report.html");
    assert_eq!(s["report"].as_str().unwrap(), html_path.to_str().unwrap());
    assert!(out.join("profile.parquet").is_file());
    let coeffs = tokenq_core::CoefficientsFile::read(&out.join("coefficients.toml")).unwrap();
    let svgs: Vec<String> = s["svgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    // Figs. 2a, 2b, 3, 4, 5, 6
    assert_eq!(svgs.len(), 6, "{svgs:?}");
    for p in &svgs {
        let text = std::fs::read_to_string(p).unwrap();
        assert!(
            text.trim_start().starts_with("<svg") && text.trim_end().ends_with("</svg>"),
            "{p}"
        );
    }

    // The fit recovers the synthetic decode line: k4 ≈ 0.020 s plus the context term at the
    // reference context (≤ 200 tokens → ≤ 1e-4 s per request), k3 ≈ 0.0004 s + 5e-7·ctx.
    let d = coeffs.decode_step.as_ref().expect("t2(b) fitted");
    assert!(
        (d.intercept_s - DECODE_BASE_S).abs() < 0.002,
        "k4 = {}",
        d.intercept_s
    );
    assert!(
        d.slope_s_per_req > DECODE_PER_SEQ_S && d.slope_s_per_req < DECODE_PER_SEQ_S + 2e-4,
        "k3 = {}",
        d.slope_s_per_req
    );
    let single = coeffs
        .single_request
        .as_ref()
        .expect("single-request line fitted");
    // one decode step of a single request: 0.020 + 0.0004 + small context term
    assert!(
        (single.per_token_s - 0.0204).abs() < 0.0015,
        "a = {}",
        single.per_token_s
    );

    // Each exact answer is checked by simulation; the model value must lie inside the
    // simulation's 95% interval widened to three half-widths (seeded, so deterministic).
    let mut checks = 0;
    for key in ["token_limit", "batch_size"] {
        for c in s[key]["checks"].as_array().unwrap() {
            let (m, sim, h) = (
                c["analytic"].as_f64().unwrap(),
                c["sim"].as_f64().unwrap(),
                c["sim_half_width"].as_f64().unwrap(),
            );
            assert!(h > 0.0 && (m - sim).abs() <= 3.0 * h, "{c}");
            checks += 1;
        }
    }
    assert_eq!(
        checks, 4,
        "L* (patient), L* (impatient loss), fixed K*, capped K*"
    );

    // The recommendations are consistent with the models' definitions.
    let l = &s["token_limit"];
    assert!(l["utilisation_at_best"].as_f64().unwrap() < 1.0);
    assert!(l["wait_at_best_s"].as_f64().unwrap() <= l["wait_without_limit_s"].as_f64().unwrap());
    let b = &s["batch_size"];
    let lambda = b["arrival_rate_rps"].as_f64().unwrap();
    // default load 0.7 of the best fixed-batching throughput
    assert!((lambda - 0.7 * b["speed_optimal_rps"].as_f64().unwrap()).abs() < 1e-12);
    // dynamic batching with the best cap never does worse than the best fixed batch
    assert!(b["cap_latency_s"].as_f64().unwrap() <= b["fixed_latency_s"].as_f64().unwrap() + 1e-9);

    // The report: every section, every figure inline, numbers with their method.
    let html = std::fs::read_to_string(&html_path).unwrap();
    for (id, _) in reports::html::SECTIONS {
        assert!(
            html.contains(&format!("<section id=\"{id}\">")),
            "section {id}"
        );
    }
    assert_eq!(html.matches("<svg").count(), 6);
    for needle in [
        "Which max-token limit?",
        "Which batch size?",
        "Which max-token limit if users give up after τ?",
        "De Kok–Tijms (approximation)",
        "simulation (95% CI)",
        "k3 = slope_s_per_req",
        "TTFT (time to first token)",
    ] {
        assert!(html.contains(needle), "{needle}");
    }
    let outline = reports::html::text_outline(&html);
    assert!(
        !outline.contains("NaN") && !outline.contains("inf "),
        "no raw non-finite numbers"
    );
    // nothing half-written left in the directory
    for e in std::fs::read_dir(&out).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp-"), "{name}");
    }
}

#[test]
fn coefficients_only_skips_profile_figures() {
    let dir = tempfile::tempdir().unwrap();
    // The paper's Table I fit shipped in datasets/: only the single-request line.
    let coeffs = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("datasets/coefficients/a100-llama-2-7b-table1.toml");
    if !coeffs.is_file() {
        panic!("missing {}", coeffs.display());
    }
    let out = dir.path().join("r");
    tokenq()
        .args([
            "pipeline",
            "--quiet",
            "--sim-requests",
            "20000",
            "--coefficients",
        ])
        .arg(&coeffs)
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("No profile in this run"));
    assert!(html.contains("Which max-token limit?"));
    assert!(html.contains("the batch size is not analysed"));
    // only the token-limit figure
    assert_eq!(html.matches("<svg").count(), 1);
}

#[test]
fn empty_profile_is_a_clear_error_and_leaves_no_report() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("empty.csv");
    std::fs::write(
        &table,
        "run_id,point_id,rep,batch_size,input_tokens,step,context_tokens,wall_s,device_s\n",
    )
    .unwrap();
    let out = dir.path().join("r");
    std::fs::create_dir_all(&out).unwrap();
    // a report from an earlier run must not survive as if it were this run's
    std::fs::write(out.join("report.html"), "old").unwrap();
    tokenq()
        .args(["pipeline", "--quiet", "--profile"])
        .arg(&table)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .stderr(predicate::str::contains("empty.csv"));
    assert!(!out.join("report.html").exists());
}

#[test]
fn coefficients_of_another_schema_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c.toml");
    std::fs::write(&c, "schema_version = 99\n[provenance]\ndevice = \"x\"\n").unwrap();
    let out = dir.path().join("r");
    tokenq()
        .args(["pipeline", "--quiet", "--coefficients"])
        .arg(&c)
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .stderr(predicate::str::contains("--coefficients").and(predicate::str::contains("c.toml")));
    assert!(!out.join("report.html").exists());
}

#[test]
fn bad_flags_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (args, flag) in [
        (vec!["--load", "1.5"], "--load"),
        (vec!["--beta", "0"], "--beta"),
        (vec!["--rate", "-1"], "--rate"),
        (vec!["--workload", "lognormal:7"], "--workload"),
        (vec!["--sim-requests", "10"], "--sim-requests"),
        (vec!["--patience", "0"], "--patience"),
    ] {
        tokenq()
            .arg("pipeline")
            .args(&args)
            .args(["--backend", "synthetic", "--out"])
            .arg(dir.path().join("x"))
            .assert()
            .failure()
            .stderr(predicate::str::contains(flag));
    }
    assert!(!dir.path().join("x").join("report.html").exists());
}

/// The main job on its embedded default (the tiny candle model on the CPU), with the device's
/// peaks given: the report carries the measured-against-roofline table, one row per grid point.
#[test]
fn default_candle_pipeline_with_roofline() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    tokenq()
        .args([
            "pipeline",
            "--quiet",
            "--sim-requests",
            "20000",
            "--peak-tflops",
            "0.05",
            "--peak-bandwidth-gbs",
            "5",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("Measured against the roofline"),
        "no roofline table"
    );
    assert!(
        html.contains("on given (0.05 TFLOP/s"),
        "caption names the peaks"
    );
}
