//! `tokenq queue mg1` and `tokenq optimize token-limit` end to end, against docs/models.md §9.1–§9.3
//! and §3 (paper figures from the implied coefficients a = 0.02203184157, c = 0.7764157233).

mod common;

use assert_cmd::Command;
use serde_json::Value;

const A: &str = "0.02203184157";
const C: &str = "0.7764157233";

fn tokenq() -> Command {
    Command::cargo_bin("tokenq").unwrap()
}

fn json(args: &[&str]) -> Value {
    let out = tokenq().args(args).arg("--json").output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn close(x: f64, y: f64, tol: f64, what: &str) {
    assert!((x - y).abs() <= tol, "{what}: {x} vs {y}");
}

/// The command fails with a single stderr line containing every `needle`.
fn fails_with(args: &[&str], needles: &[&str]) {
    let out = tokenq()
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env("RUST_LIB_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "{args:?}: `{n}` missing from: {err}");
    }
}

fn mg1_args<'a>(l: &'a str, lam: &'a str) -> Vec<&'a str> {
    vec![
        "queue",
        "mg1",
        "--tokens",
        "lognormal:7,0.7",
        "--max-tokens",
        l,
        "--arrival-rate",
        lam,
        "--per-token-s",
        A,
        "--intercept-s",
        C,
    ]
}

#[test]
fn mg1_reproduces_math_9_1_a1_and_a2() {
    let v = json(&mg1_args("1600", "0.025"));
    let m = &v["mg1"];
    close(f(&m["mean_tokens"]), 1082.846538, 5e-7, "E[N_L]");
    close(f(&m["second_moment_tokens"]), 1378670.010, 5e-3, "E[N_L²]");
    close(f(&m["mean_service_s"]), 24.63351910, 5e-9, "E[S]");
    close(f(&m["second_moment_service_s2"]), 706.858121, 5e-7, "E[S²]");
    close(f(&m["utilisation"]), 0.61583798, 5e-9, "rho");
    close(f(&m["mean_wait_s"]), 23.00000, 5e-6, "E[W_q]");
    assert_eq!(m["method"], "exact");
    assert!(v["impatience"].is_null());
    let v = json(&mg1_args("3000", "0.025"));
    close(f(&v["mg1"]["mean_wait_s"]), 56.00195, 5e-6, "E[W_q](3000)");
}

#[test]
fn mg1_human_output_has_units_and_methods() {
    let out = tokenq().args(mg1_args("1600", "0.025")).output().unwrap();
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    let wait = s
        .lines()
        .find(|l| l.starts_with("E[W_q] mean wait"))
        .unwrap();
    assert!(
        wait.contains("23.00000") && wait.contains(" s ") && wait.ends_with("exact"),
        "{wait}"
    );
    assert!(s.contains("req/s"));
}

#[test]
fn impatience_reproduces_math_9_2_b3() {
    let mut args = mg1_args("1300", "0.04");
    args.extend(["--patience", "60"]);
    let v = json(&args);
    let r = &v["impatience"];
    // Exact level crossing; the reference is itself numerical (one unit in the last digit).
    close(f(&r["loss_fraction"]), 0.1131288, 1e-7, "π");
    close(f(&r["mean_wait_served_s"]), 22.52551, 1e-5, "W_qs");
    close(f(&r["mean_wait_all_s"]), 26.76496, 1e-5, "W_q");
    close(f(&r["prob_idle"]), 0.2073535, 1e-7, "P0");
    assert_eq!(r["method"], "exact");
    assert_eq!(r["abandonment"], "renege");

    args.push("--balking");
    let v = json(&args);
    close(
        f(&v["impatience"]["mean_wait_all_s"]),
        19.97722,
        1e-5,
        "balk",
    );

    let mut dkt = mg1_args("1300", "0.04");
    dkt.extend(["--patience", "60", "--approx", "dekok-tijms"]);
    let v = json(&dkt);
    let r = &v["impatience"];
    close(f(&r["loss_fraction"]), 0.1100570, 5e-7, "π DKT");
    close(f(&r["mean_wait_all_s"]), 26.56786, 1e-5, "W_q DKT");
    assert_eq!(r["method"], "approximation");
    close(
        f(&v["dekok_tijms_parts"]["exponential"]["loss_fraction"]),
        0.1787053,
        5e-8,
        "π_M",
    );
}

#[test]
fn impatience_works_when_rho_exceeds_one() {
    let mut args = mg1_args("3000", "0.04");
    args.extend(["--patience", "60"]);
    let v = json(&args);
    assert!(v["mg1"].is_null());
    assert!(v["mg1_unstable"].as_str().unwrap().contains("rho = 1.1803"));
    close(
        f(&v["impatience"]["loss_fraction"]),
        0.2708955,
        1e-7,
        "π B4",
    );
    close(f(&v["impatience"]["offered_load"]), 1.1803465, 5e-8, "rho");
}

#[test]
fn optimize_reproduces_paper_patient_figures() {
    let v = json(&[
        "optimize",
        "token-limit",
        "--tokens",
        "lognormal:7,0.7",
        "--arrival-rate",
        "0.025",
        "--per-token-s",
        A,
        "--intercept-s",
        C,
        "--max-limit",
        "3000",
    ]);
    let curve = v["optimum"]["curve"].as_array().unwrap();
    let at = |l: f64| curve.iter().find(|p| f(&p["max_tokens"]) == l).unwrap();
    // P(N < 1600) = 70.53%.
    assert_eq!(
        format!("{:.2}", 100.0 * f(&at(1600.0)["expected_utility"])),
        "70.53"
    );
    // E[W_q](1600) = 23 s, 58.93% lower than at L = 3000.
    let w1600 = f(&at(1600.0)["mean_wait_s"]);
    let w3000 = f(&v["baseline"]["mean_wait_s"]);
    close(w1600, 23.0, 5e-5, "W(1600)");
    assert_eq!(format!("{:.2}", 100.0 * (1.0 - w1600 / w3000)), "58.93");
    // docs/models.md §9.3: U = 1{n ≤ L}, β = 119/120 (the default), grid 100: L* = 1900, F = 0.52229154.
    assert_eq!(f(&v["optimum"]["best"]["max_tokens"]), 1900.0);
    close(
        f(&v["optimum"]["best"]["objective"]),
        0.52229154,
        5e-9,
        "F(1900)",
    );
    let v = json(&[
        "optimize",
        "token-limit",
        "--tokens",
        "lognormal:7,0.7",
        "--arrival-rate",
        "0.025",
        "--per-token-s",
        A,
        "--intercept-s",
        C,
        "--utility",
        "fraction",
        "--weight",
        "119/120",
    ]);
    assert_eq!(f(&v["optimum"]["best"]["max_tokens"]), 1300.0);
    close(
        f(&v["optimum"]["best"]["objective"]),
        0.71898763,
        5e-9,
        "F(1300) fraction",
    );
}

#[test]
fn optimize_impatient_curve() {
    let v = json(&[
        "optimize",
        "token-limit",
        "--tokens",
        "lognormal:7,0.7",
        "--arrival-rate",
        "0.04",
        "--per-token-s",
        A,
        "--intercept-s",
        C,
        "--patience",
        "60",
        "--weight",
        "0.95",
        "--lost-cost",
        "4",
        "--grid-step",
        "500",
        "--max-limit",
        "3000",
    ]);
    let curve = v["optimum"]["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 6);
    // docs/models.md §9.2 §V-B table, exact π at L = 1000 and 3000.
    close(f(&curve[1]["loss_fraction"]), 0.05274, 5e-6, "π(1000)");
    close(f(&curve[5]["loss_fraction"]), 0.27090, 5e-6, "π(3000)");
}

#[test]
fn builtin_dataset_runs() {
    let v = json(&[
        "queue",
        "mg1",
        "--tokens",
        "sharegpt",
        "--arrival-rate",
        "0.05",
        "--per-token-s",
        A,
        "--intercept-s",
        C,
    ]);
    // No limit: E[N] is the trace mean (datasets/README.md).
    close(f(&v["mg1"]["mean_tokens"]), 438.7097, 1e-4, "sharegpt mean");
}

#[test]
fn bad_input_is_one_line_naming_the_flag_or_file() {
    let base = |l: &'static str, lam: &'static str| mg1_args(l, lam);
    fails_with(&base("1600", "0"), &["--arrival-rate"]);
    fails_with(&base("1600", "-0.1"), &["--arrival-rate"]);
    fails_with(&base("1600", "NaN"), &["--arrival-rate"]);
    fails_with(&base("0.5", "0.025"), &["--max-tokens"]);
    fails_with(&base("NaN", "0.025"), &["--max-tokens"]);
    let mut a = base("1600", "0.025");
    a[3] = "lognormal:7";
    fails_with(&a, &["--tokens", "lognormal:7"]);
    let mut a = base("1600", "0.025");
    a.extend(["--patience", "-1"]);
    fails_with(&a, &["--patience"]);
    fails_with(
        &base("3000", "0.05"),
        &["rho = 1.4754", "largest stable arrival rate"],
    );

    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "value,count\n100,abc\n").unwrap();
    for (p, why) in [(&empty, "empty"), (&bad, "not a number")] {
        let spec = format!("empirical:{}", p.display());
        let mut a = base("1600", "0.025");
        a[3] = &spec;
        fails_with(
            &a,
            &["--tokens", p.file_name().unwrap().to_str().unwrap(), why],
        );
    }
    fails_with(
        &[
            "optimize",
            "token-limit",
            "--tokens",
            "lognormal:7,0.7",
            "--arrival-rate",
            "0.025",
            "--per-token-s",
            A,
            "--intercept-s",
            C,
            "--weight",
            "1.5",
        ],
        &["--weight"],
    );
}

/// `queue mg1 --patience --percentiles`: served users' quantiles, checked against Erlang's M/D/1
/// series (docs/models.md §2.3, computed independently by tests/common's `md1_series`): with `F(x) = Σ_{k ≤ x/D}
/// (−U_k)^k/k!·e^{U_k}`, `U_k = λ(x − kD)`, the served wait has `P(W ≤ x) = F(x)/F(τ)` (§2.5).
/// M/D/1+D with D = 1 s (100 tokens × 0.01 s), λ = 1.2 req/s (ρ = 1.2 > 1), τ = 3 s.
#[test]
fn impatient_percentiles_match_erlangs_md1_series() {
    let v = json(&[
        "queue",
        "mg1",
        "--tokens",
        "const:100",
        "--per-token-s",
        "0.01",
        "--intercept-s",
        "0",
        "--arrival-rate",
        "1.2",
        "--patience",
        "3",
        "--percentiles",
        "50,90,99",
    ]);
    let (lambda, d, tau) = (1.2, 1.0, 3.0);
    let erlang = |x: f64| common::md1_series(lambda, d, x);
    let p = &v["percentiles"];
    assert_eq!(p["population"], "served users");
    assert_eq!(p["method"], "exact");
    let tol = f(&p["tolerance"]);
    assert!(tol < 1e-5, "tolerance {tol}");
    for (key, prob) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        let q = f(&p["wait"][key]);
        assert!(q > 0.0 && q < tau, "{key}: {q}");
        close(erlang(q) / erlang(tau), prob, tol + 1e-9, key);
        // Latency = wait + D exactly (deterministic service).
        close(f(&p["latency"][key]), q + d, 1e-6, key);
        assert!(f(&p["error_s"]["wait"][key]) < 1e-3, "{key}");
    }
}
