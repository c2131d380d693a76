//! `--validate` and `--coefficients` on the analytic commands, end to end.
//!
//! `--validate`: docs/models.md §9's exact values (A1 M/G/1 23.00000 s, B3 impatience, C1 dynamic
//! batching, E1 fixed batching) must lie inside the confidence interval of the simulation the
//! command runs beside the analytic model, and the JSON `validation` object carries its fields.
//! `--coefficients`: a shipped coefficients file (datasets/coefficients/, written by `tokenq
//! fit`) gives exactly the numbers of the same coefficients passed as raw flags (read from the
//! file here with `toml`, independently of the binary); both or neither give a one-line error.

use assert_cmd::Command;
use serde_json::Value;

fn tokenq() -> Command {
    let mut c = Command::cargo_bin("tokenq").unwrap();
    c.env("RUST_BACKTRACE", "0");
    c
}

fn json(args: &[&str]) -> Value {
    let out = tokenq().args(args).arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// stderr of a command that must fail, checked to be one line.
fn one_line_error(args: &[&str]) -> String {
    let out = tokenq().args(args).output().unwrap();
    assert!(!out.status.success(), "expected failure: {args:?}");
    let e = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(e.lines().count(), 1, "not one line: {e}");
    e
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The comparison whose quantity contains `name`.
fn comparison<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["validation"]["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["quantity"].as_str().unwrap().contains(name))
        .unwrap_or_else(|| panic!("no comparison {name} in {}", v["validation"]))
}

/// The reference value `exact` (docs/models.md) lies inside the simulation's interval and the
/// comparison reports the analytic value as exact and unflagged.
fn inside_ci(c: &Value, exact: f64, tol: f64) {
    let (sim, hw) = (f(&c["sim"]), f(&c["sim_half_width"]));
    assert!(hw > 0.0 && hw < 0.05 * exact.abs().max(1.0), "{c}");
    assert!(
        (sim - exact).abs() <= hw,
        "docs/models.md value {exact} outside the simulation's CI {sim} ± {hw}: {c}"
    );
    assert!((f(&c["analytic"]) - exact).abs() <= tol, "{c}");
    assert_eq!(c["analytic_method"], "exact");
    assert_eq!(c["flagged"], false);
    let d = f(&c["diff_half_widths"]);
    assert!(((sim - f(&c["analytic"])) / hw - d).abs() < 1e-9, "{c}");
}

const A: &str = "0.02203184157";
const C: &str = "0.7764157233";

/// docs/models.md §9.1 A1: L = 1600, λ = 1/40, E[W_q] = 23.00000 s exact.
#[test]
fn validate_mg1_a1() {
    let v = json(&[
        "queue",
        "mg1",
        "--tokens",
        "lognormal:7,0.7",
        "--max-tokens",
        "1600",
        "--arrival-rate",
        "0.025",
        "--per-token-s",
        A,
        "--intercept-s",
        C,
        "--validate",
    ]);
    let val = &v["validation"];
    for key in [
        "requests",
        "replications",
        "seed",
        "ci_kind",
        "ci_units",
        "confidence",
        "token_mode",
        "stable",
        "unstable_reason",
        "comparisons",
        "flagged",
    ] {
        assert!(val.get(key).is_some(), "validation.{key} missing: {val}");
    }
    assert_eq!(val["requests"], 200_000);
    assert_eq!(val["token_mode"], "continuous");
    assert_eq!(val["stable"], true);
    assert_eq!(val["flagged"], 0);
    inside_ci(comparison(&v, "E[W_q] mean wait"), 23.00000, 5e-6);
    inside_ci(comparison(&v, "mean sojourn"), 23.00000 + 24.63351910, 5e-6);
    inside_ci(comparison(&v, "rho"), 0.61583798, 5e-8);
}

/// docs/models.md §9.2 B3: clipped lognormal, L = 1300, λ = 1/25, τ = 60 s (reneging):
/// π = 0.1131288, E[W_q] = 26.76496 s, E[W_qs] = 22.52551 s, exact level crossing.
#[test]
fn validate_mg1_impatient_b3() {
    let v = json(&[
        "queue",
        "mg1",
        "--tokens",
        "lognormal:7,0.7",
        "--max-tokens",
        "1300",
        "--arrival-rate",
        "0.04",
        "--per-token-s",
        A,
        "--intercept-s",
        C,
        "--patience",
        "60",
        "--validate",
        "--replications",
        "4",
    ]);
    assert_eq!(v["validation"]["ci_kind"], "replications");
    inside_ci(comparison(&v, "loss fraction"), 0.1131288, 1e-6);
    inside_ci(comparison(&v, "wait of all users"), 26.76496, 1e-4);
    inside_ci(comparison(&v, "wait of served"), 22.52551, 1e-4);
}

/// docs/models.md §9.4 C1: deterministic h(b) = 0.5·b + 1, λ = 1: latency 3.7496563 s, wait
/// 1.1248282 s, E[B] = 2.2870616 exact; Inoue's bound 3.8333333 is labelled a bound.
#[test]
fn validate_dynamic_c1() {
    let v = json(&[
        "queue",
        "batch",
        "--policy",
        "dynamic",
        "--tokens",
        "const:0",
        "--first-token-s",
        "0.5,1",
        "--decode-step-s",
        "0,0",
        "--arrival-rate",
        "1",
        "--validate",
    ]);
    inside_ci(
        comparison(&v, "exact embedded chain (deterministic T_b): latency"),
        3.7496563,
        1e-6,
    );
    inside_ci(
        comparison(&v, "exact embedded chain (deterministic T_b): wait"),
        1.1248282,
        1e-6,
    );
    inside_ci(
        comparison(&v, "exact embedded chain (deterministic T_b): mean batch"),
        2.2870616,
        1e-6,
    );
    let bound = comparison(&v, "Inoue");
    assert_eq!(bound["analytic_method"], "bound");
    assert_eq!(bound["flagged"], false);
    assert!(bound["note"].as_str().unwrap().contains("bound"));
    // The bound is above the simulated latency, as a bound must be.
    assert!(f(&bound["sim"]) + f(&bound["sim_half_width"]) < 3.8333333);
}

/// docs/models.md §9.6 E1: fixed K = 4, T = 5 s, λ = 0.5: E[W_q] = 3.579568734 s, latency 8.579568734 s.
#[test]
fn validate_fixed_e1_human_output() {
    let args = [
        "queue",
        "batch",
        "--policy",
        "fixed",
        "--max-batch",
        "4",
        "--tokens",
        "const:0",
        "--first-token-s",
        "0,5",
        "--decode-step-s",
        "0,0",
        "--arrival-rate",
        "0.5",
        "--validate",
    ];
    let v = json(&args);
    inside_ci(
        comparison(&v, "exact embedded chain (deterministic T_K): wait"),
        3.579568734,
        1e-7,
    );
    inside_ci(
        comparison(&v, "roots formula, T_K := E[T_K] (paper eq 25): latency"),
        8.579568734,
        1e-7,
    );
    let out = tokenq().args(args).output().unwrap();
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    let line = s
        .lines()
        .find(|l| l.contains("(deterministic T_K): wait") && l.contains("analytic"))
        .unwrap_or_else(|| panic!("{s}"));
    assert!(
        line.contains("analytic 3.579569 s (exact)")
            && line.contains("| sim ")
            && line.contains(" ± ")
            && line.ends_with(" CI"),
        "{line}"
    );
}

/// With --max-tokens the analytic batch model uses the simulator's integer lengths; the
/// validation runs the simulator in its integer mode and the approximation is labelled so.
#[test]
fn validate_elastic_integer_tokens() {
    let v = json(&[
        "queue",
        "batch",
        "--policy",
        "elastic",
        "--max-batch",
        "8",
        "--tokens",
        "lognormal:7,0.7",
        "--first-token-s",
        "0.0004,0.003",
        "--decode-step-s",
        "0.0003,0.002",
        "--max-tokens",
        "2000",
        "--arrival-rate",
        "0.3",
        "--validate",
        "--requests",
        "1e5",
        "--seed",
        "7",
    ]);
    let val = &v["validation"];
    assert_eq!(val["token_mode"], "integer");
    assert_eq!(val["requests"], 100_000);
    assert_eq!(val["seed"], 7);
    let c = comparison(&v, "latency");
    assert_eq!(c["analytic_method"], "approximation");
    assert!(c["note"].as_str().unwrap().contains("approximation"));
    assert_eq!(c["flagged"], false);
}

#[test]
fn validate_absent_is_null_and_sim_flags_need_it() {
    let v = json(&[
        "queue",
        "mg1",
        "--tokens",
        "const:100",
        "--arrival-rate",
        "0.1",
        "--per-token-s",
        "0.02",
        "--intercept-s",
        "0.5",
    ]);
    assert!(v["validation"].is_null());
    let out = tokenq()
        .args([
            "queue",
            "mg1",
            "--tokens",
            "const:100",
            "--arrival-rate",
            "0.1",
            "--per-token-s",
            "0.02",
            "--intercept-s",
            "0.5",
            "--seed",
            "3",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--validate"));
    let e = one_line_error(&[
        "queue",
        "mg1",
        "--tokens",
        "const:100",
        "--arrival-rate",
        "0.1",
        "--per-token-s",
        "0.02",
        "--intercept-s",
        "0.5",
        "--validate",
        "--requests",
        "lots",
    ]);
    assert!(e.contains("--requests"), "{e}");
}

// ---- --coefficients -------------------------------------------------------------------------

const TABLE1: &str = "datasets/coefficients/a100-llama-2-7b-table1.toml";
const VIDUR: &str = "datasets/coefficients/a100-llama-2-7b-vidur.toml";

fn file_table(path: &str) -> toml::Table {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .parse()
        .unwrap()
}

fn num_at(t: &toml::Table, section: &str, key: &str) -> String {
    let v = t[section][key].as_float().unwrap();
    // `{}` prints the shortest string that parses back to the same f64.
    format!("{v}")
}

fn path(p: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(p)
        .display()
        .to_string()
}

#[test]
fn coefficients_file_equals_raw_flags_single_request() {
    let t = file_table(TABLE1);
    let (a, c) = (
        num_at(&t, "single_request", "per_token_s"),
        num_at(&t, "single_request", "intercept_s"),
    );
    let file = path(TABLE1);
    let base = [
        "queue",
        "mg1",
        "--tokens",
        "lognormal:7,0.7",
        "--max-tokens",
        "1600",
        "--arrival-rate",
        "0.025",
    ];
    let from_file = json(&[&base[..], &["--coefficients", &file]].concat());
    let from_flags = json(&[&base[..], &["--per-token-s", &a, "--intercept-s", &c]].concat());
    assert_eq!(from_file, from_flags);
    assert!(f(&from_file["mg1"]["mean_wait_s"]) > 0.0);
    // optimize token-limit: same answer from the file and from the flags.
    let base = [
        "optimize",
        "token-limit",
        "--tokens",
        "lognormal:7,0.7",
        "--arrival-rate",
        "0.025",
    ];
    let from_file = json(&[&base[..], &["--coefficients", &file]].concat());
    let from_flags = json(&[&base[..], &["--per-token-s", &a, "--intercept-s", &c]].concat());
    assert_eq!(from_file, from_flags);
}

#[test]
fn coefficients_file_equals_raw_flags_batch() {
    let t = file_table(VIDUR);
    let ft = format!(
        "{},{}",
        num_at(&t, "first_token", "slope_s_per_req"),
        num_at(&t, "first_token", "intercept_s")
    );
    let ds = format!(
        "{},{}",
        num_at(&t, "decode_step", "slope_s_per_req"),
        num_at(&t, "decode_step", "intercept_s")
    );
    let file = path(VIDUR);
    let base = [
        "queue",
        "batch",
        "--policy",
        "dynamic",
        "--max-batch",
        "16",
        "--tokens",
        "uniform:0,200",
        "--arrival-rate",
        "0.5",
    ];
    let from_file = json(&[&base[..], &["--coefficients", &file]].concat());
    let from_flags = json(&[&base[..], &["--first-token-s", &ft, "--decode-step-s", &ds]].concat());
    assert_eq!(from_file, from_flags);
    assert_eq!(
        format!("{}", f(&from_file["k2"])),
        num_at(&t, "first_token", "intercept_s")
    );
    let base = [
        "optimize",
        "batch-size",
        "--tokens",
        "uniform:0,200",
        "--arrival-rate",
        "0.2",
        "--max-k",
        "32",
    ];
    let from_file = json(&[&base[..], &["--coefficients", &file]].concat());
    let from_flags = json(&[&base[..], &["--first-token-s", &ft, "--decode-step-s", &ds]].concat());
    assert_eq!(from_file, from_flags);
}

#[test]
fn coefficients_and_raw_flags_both_or_neither_is_one_line_error() {
    let file = path(TABLE1);
    let e = one_line_error(&[
        "queue",
        "mg1",
        "--tokens",
        "const:100",
        "--arrival-rate",
        "0.01",
        "--coefficients",
        &file,
        "--per-token-s",
        "0.02",
        "--intercept-s",
        "0.5",
    ]);
    assert!(
        e.contains("not both") && e.contains("--coefficients"),
        "{e}"
    );
    let e = one_line_error(&[
        "queue",
        "mg1",
        "--tokens",
        "const:100",
        "--arrival-rate",
        "0.01",
    ]);
    assert!(
        e.contains("--coefficients FILE") && e.contains("--per-token-s"),
        "{e}"
    );
    let vidur = path(VIDUR);
    let e = one_line_error(&[
        "queue",
        "batch",
        "--policy",
        "dynamic",
        "--tokens",
        "const:100",
        "--arrival-rate",
        "0.1",
        "--coefficients",
        &vidur,
        "--first-token-s",
        "0.01,0.1",
    ]);
    assert!(e.contains("not both"), "{e}");
    let e = one_line_error(&["optimize", "batch-size", "--tokens", "const:100"]);
    assert!(
        e.contains("--coefficients FILE") && e.contains("--first-token-s"),
        "{e}"
    );
    // A single-request file has no batch lines: the error names the file and the fix.
    let e = one_line_error(&[
        "queue",
        "batch",
        "--policy",
        "dynamic",
        "--tokens",
        "const:100",
        "--arrival-rate",
        "0.1",
        "--coefficients",
        &file,
    ]);
    assert!(
        e.contains("a100-llama-2-7b-table1.toml") && e.contains("--first-token-s"),
        "{e}"
    );
    let e = one_line_error(&[
        "queue",
        "mg1",
        "--tokens",
        "const:100",
        "--arrival-rate",
        "0.01",
        "--coefficients",
        "/no/such/file.toml",
    ]);
    assert!(
        e.contains("--coefficients") && e.contains("/no/such/file.toml"),
        "{e}"
    );
}
