//! `tokenq pipeline --rate R --slo …`: one rate everywhere, a question the rate leaves
//! unstable is named with its reason instead of stopping the run, and the report opens with the
//! capacity plan. Checked against closed forms: with a constant output length one request at a
//! time is M/D/1, so the fewest GPUs (random split, each GPU a Poisson stream of R/n) and the
//! planner's exact p90 wait follow from Erlang's waiting-time formula.

mod common;

use common::{TABLE1, md1_quantile, ok_json, p, table1_line, table1_service_s, tokenq};

const RATE: f64 = 6.0;
const TARGET_S: f64 = 5.0;

#[test]
fn unstable_question_is_named_and_the_capacity_plan_answers() {
    let s = table1_line();
    let d = table1_service_s(100.0);
    // At 6 req/s one GPU is unstable at every max-token limit (even L = 1 costs more than
    // 1/6 s), so the pipeline's max-token question has no answer.
    assert!(RATE * (s.per_token_s + s.intercept_s) > 1.0);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let v = ok_json(&tokenq(&[
        "pipeline",
        "--coefficients",
        TABLE1,
        "--workload",
        "const:100",
        "--rate",
        "6",
        "--slo",
        "wait:p90<=5s",
        "--max-gpus",
        "32",
        "--json",
        "--out",
        p(&out),
    ]));
    let unanswered = v["unanswered"].as_array().unwrap();
    assert_eq!(unanswered.len(), 1, "{unanswered:?}");
    let why = unanswered[0].as_str().unwrap();
    assert!(
        why.starts_with("Max-token limit") && why.contains("unstable"),
        "{why}"
    );
    assert!(v["token_limit"].is_null());

    // (c) the fewest GPUs: the first n at which M/D/1 with λ = R/n is stable and its p90 wait
    // meets the target.
    let want_n = (1..=32u32)
        .find(|&n| {
            let lambda = RATE / f64::from(n);
            lambda * d < 1.0 && md1_quantile(lambda, d, 0.9) <= TARGET_S
        })
        .unwrap();
    let plan = &v["capacity"];
    assert_eq!(plan["min_gpus"], want_n);
    let best = &plan["feasible"][0];
    assert_eq!(best["policy"], "single");
    let got = best["slos"][0]["value_s"]["value"].as_f64().unwrap();
    let want = md1_quantile(RATE / f64::from(want_n), d, 0.9);
    assert!((got - want).abs() < 1e-5 * want.max(1.0), "{got} vs {want}");
    assert_eq!(best["slos"][0]["method"], "exact");
    // (b) goodput: at the rate found, Erlang's p90 wait is the target (bisection to 0.1 %).
    let g = &plan["goodput"][0];
    let per_gpu = g["goodput_rps"].as_f64().unwrap() / g["gpus"].as_f64().unwrap();
    let p90 = md1_quantile(per_gpu, d, 0.9);
    assert!((p90 - TARGET_S).abs() < 0.02 * TARGET_S, "{p90}");

    // The summary opens with the plan, then names the unanswered question.
    let summary: Vec<&str> = v["summary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        summary[2].contains(&format!("fewest GPUs for 6 req/s: {want_n}.")),
        "{summary:?}"
    );
    assert!(
        summary
            .iter()
            .any(|s| s.starts_with("Max-token limit: not answered"))
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Capacity plan"));
    for id in ["plan-slo-vs-rate", "plan-gpus-vs-rate"] {
        assert!(out.join(format!("{id}.svg")).is_file(), "{id}");
    }
}

#[test]
fn no_answerable_question_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = tokenq(&[
        "pipeline",
        "--coefficients",
        TABLE1,
        "--workload",
        "const:100",
        "--rate",
        "6",
        "--out",
        p(&dir.path().join("r")),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    let last = err.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("Error: no question could be answered")
            && last.contains("--slo")
            && last.contains("lower --rate"),
        "{err}"
    );
    // --slo without --rate.
    let o = tokenq(&[
        "pipeline",
        "--coefficients",
        TABLE1,
        "--slo",
        "e2e:p99<=10s",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--rate"));
}
