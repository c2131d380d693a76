//! `tokenq plan --policy continuous` against a closed form. With `max_num_seqs = 1`, a constant
//! prompt and output length and a step model whose prefill step takes `P` and whose decode
//! step takes `D` seconds whatever the batch, continuous batching serves one request at a time
//! in `S = P + (N − 1)·D`: the engine is M/D/1. Its TTFT is the M/D/1 wait plus `P`, its E2E
//! the wait plus `S`, and its TPOT exactly `D`; the wait's quantiles are Erlang's formula. The
//! planner's replicated replay must put each exact value inside its 95 % interval.

mod common;

use common::{TABLE1, constant_steps_coefficients, md1_quantile, ok_json, p, tokenq};

/// Prefill step, decode step (seconds), output tokens.
const P_S: f64 = 0.1;
const D_S: f64 = 0.02;
const N: f64 = 20.0;

/// The shipped Table I coefficients with constant `P_S` prefill and `D_S` decode steps.
fn coefficients(dir: &std::path::Path) -> std::path::PathBuf {
    constant_steps_coefficients(dir, P_S, D_S)
}

#[test]
fn continuous_batching_one_at_a_time_is_md1() {
    let dir = tempfile::tempdir().unwrap();
    let coef = coefficients(dir.path());
    let rate = 1.2;
    let v = ok_json(&tokenq(&[
        "plan",
        "--coefficients",
        p(&coef),
        "--policy",
        "continuous",
        "--tokens",
        "const:20",
        "--input-tokens",
        "const:32",
        "--kv-blocks",
        "1000",
        "--caps",
        "1",
        "--limits",
        "1000",
        "--max-gpus",
        "1",
        "--rate",
        &rate.to_string(),
        "--slo",
        "ttft:p90<=100s",
        "--slo",
        "e2e:p99<=100s",
        "--slo",
        "tpot:mean<=1s",
        "--slo",
        "itl:p50<=1s",
        "--replications",
        "8",
        "--replay-requests",
        "4000",
        "--json",
    ]));
    let c = &v["feasible"][0];
    assert_eq!(c["policy"], "continuous", "{v}");
    assert_eq!(c["max_num_seqs"], 1, "{v}");
    let s = P_S + (N - 1.0) * D_S;
    // Busy share of one M/D/1 server: ρ = λS.
    let busy = c["utilisation"].as_f64().unwrap();
    assert!(
        (busy - rate * s).abs() < 0.03,
        "utilisation {busy} vs ρ {}",
        rate * s
    );
    let want = [
        md1_quantile(rate, s, 0.9) + P_S,
        md1_quantile(rate, s, 0.99) + s,
        D_S,
        D_S,
    ];
    for (k, w) in want.iter().enumerate() {
        let slo = &c["slos"][k];
        assert_eq!(slo["method"], "simulation");
        let (val, hw) = (
            slo["value_s"]["value"].as_f64().unwrap(),
            slo["value_s"]["half_width"].as_f64().unwrap(),
        );
        // Inside the 95 % interval (a 1e-9 s floor for the exact TPOT and ITL, whose
        // replications agree to rounding).
        assert!(
            (val - w).abs() <= hw + 1e-9,
            "{}: {val} ± {hw} s vs exact {w} s",
            slo["slo"]
        );
    }
    assert!(
        v["continuous"]
            .as_str()
            .unwrap()
            .contains("8 replications of 4000 Poisson arrivals"),
        "{v}"
    );
    // No capacity band: the step model has no intervals, and the answer says so.
    let g = &v["goodput"][0];
    assert!(
        g["goodput_at_fit_upper_rps"].is_null()
            && g["fit_upper_note"]
                .as_str()
                .unwrap()
                .contains("no 95% intervals"),
        "{g}"
    );
}

/// Replay-only SLOs without a step model, continuous batching without one, and a single
/// replication are one-line errors naming the flag.
#[test]
fn continuous_needs_a_step_model_and_replications() {
    let dir = tempfile::tempdir().unwrap();
    let coef = coefficients(dir.path());
    for (args, flag) in [
        (
            vec!["--coefficients", TABLE1, "--slo", "ttft:p99<=2s"],
            "--slo",
        ),
        (
            vec![
                "--coefficients",
                TABLE1,
                "--policy",
                "continuous",
                "--slo",
                "e2e:p99<=2s",
            ],
            "--policy continuous",
        ),
        (
            vec![
                "--coefficients",
                p(&coef),
                "--slo",
                "ttft:p99<=2s",
                "--replications",
                "1",
                "--kv-blocks",
                "1000",
            ],
            "--replications 1",
        ),
    ] {
        let mut all = vec!["plan", "--tokens", "sharegpt", "--rate", "1"];
        all.extend(args);
        let o = tokenq(&all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.starts_with(&format!("Error: {flag}")) && err.lines().count() == 1,
            "{err}"
        );
    }
}

/// `tokenq replay --rate`: the same M/D/1 engine, every latency's percentiles with intervals.
#[test]
fn replay_under_poisson_arrivals_gives_md1_percentiles() {
    let dir = tempfile::tempdir().unwrap();
    let coef = coefficients(dir.path());
    let rate = 1.5;
    let v = ok_json(&tokenq(&[
        "replay",
        "--coefficients",
        p(&coef),
        "--rate",
        &rate.to_string(),
        "--tokens",
        "const:20",
        "--input-tokens",
        "const:32",
        "--kv-blocks",
        "1000",
        "--max-num-seqs",
        "1",
        "--requests",
        "4000",
        "--replications",
        "8",
        "--percentiles",
        "50,90,99",
        "--json",
    ]));
    let s = P_S + (N - 1.0) * D_S;
    let l = &v["latencies"];
    for (metric, key, want) in [
        ("ttft", "p50", md1_quantile(rate, s, 0.5) + P_S),
        ("ttft", "p99", md1_quantile(rate, s, 0.99) + P_S),
        ("e2e", "p90", md1_quantile(rate, s, 0.9) + s),
        ("tpot", "p99", D_S),
        ("itl", "p90", D_S),
    ] {
        let (val, hw) = (
            l[metric][key]["value"].as_f64().unwrap(),
            l[metric][key]["half_width"].as_f64().unwrap(),
        );
        assert!(
            (val - want).abs() <= hw + 1e-9,
            "{metric} {key}: {val} ± {hw} s vs exact {want} s"
        );
    }
    // The mean TTFT is Pollaczek–Khinchine's M/D/1 wait ρS/(2(1 − ρ)) plus the prefill step.
    let rho = rate * s;
    let want = rho * s / (2.0 * (1.0 - rho)) + P_S;
    let m = &l["ttft"]["mean"];
    let (val, hw) = (
        m["value"].as_f64().unwrap(),
        m["half_width"].as_f64().unwrap(),
    );
    assert!((val - want).abs() <= hw, "mean ttft {val} ± {hw} vs {want}");
    assert_eq!(v["overloaded"], false);
    assert_eq!(v["method"], "simulation");
}

/// Goodput of continuous batching (`plan --plots`' goodput figure) counts each replayed request
/// against every bound at once: with the M/D/1 engine above, TTFT = W + P and E2E = W + S, so
/// the share within `ttft ≤ P + a` and `e2e ≤ S + b` is Erlang's `P(W ≤ min(a, b))`; TPOT is
/// exactly D (a mean SLO's target bounds each request: met), and an ITL SLO bounds no request.
/// The replications' 95 % interval at the asked rate holds it.
#[test]
fn continuous_goodput_share_is_erlangs_md1_share() {
    use pipeline::plan::{ContinuousFlags, PlanConfig, Slo};
    let dir = tempfile::tempdir().unwrap();
    let coef = coefficients(dir.path());
    let file = tokenq_core::CoefficientsFile::read(&coef).unwrap();
    let cs = pipeline::plan::continuous_setup(&ContinuousFlags {
        engine: pipeline::replay::EngineFile {
            kv_blocks: Some(1000),
            ..Default::default()
        },
        engine_config: None,
        coefficients: (&coef, &file),
        tokens: "const:20",
        input_tokens: Some("const:32"),
        requests: "4000",
        replications: 8,
        input_law: None,
    })
    .unwrap();
    let (rate, s) = (1.2, P_S + (N - 1.0) * D_S);
    let (a, b) = (1.2, 2.5);
    let slos = [
        format!("ttft:p90<={}s", P_S + a),
        format!("e2e:p99<={}s", s + b),
        "tpot:mean<=1s".into(),
        "itl:p50<=1s".into(),
    ];
    let q = PlanConfig {
        tokens: queueing::dist::TokenDist::parse("const:20").unwrap(),
        tokens_spec: "const:20".into(),
        rate,
        slos: Slo::parse_all(&slos).unwrap(),
        min_served_fraction: 0.0,
        max_gpus: 1,
        service: None,
        batch: None,
        service_hi: None,
        batch_hi: None,
        caps: vec![1],
        limits: vec![1000.0],
        sim_requests: 100_000,
        seed: 1,
        goodput_top: 0,
        routing: sim::routing::Routing::Random,
        continuous: Some(cs),
        paper_policies: false,
        trace: None,
    };
    let ans = pipeline::plan::plan(&q).unwrap();
    let figs = pipeline::plan_plots::figures(&q, &ans).unwrap();
    let f = figs
        .iter()
        .find(|f| f.id == "plan-goodput-vs-rate")
        .unwrap();
    assert!(
        f.caption.contains("Mean SLOs (tpot:mean<=1s)") && f.caption.contains("ITL SLOs bound no"),
        "{}",
        f.caption
    );
    let series = &f.panels[0].series[0];
    assert_eq!(series.method, reports::Method::Simulation);
    let p = series
        .points
        .iter()
        .find(|p| (p.x - rate).abs() < 1e-12)
        .unwrap();
    let want = rate * common::md1_cdf(rate, s, a.min(b));
    let hw = p.ci95.unwrap();
    assert!(
        hw > 0.0 && (p.y - want).abs() <= hw,
        "goodput {} ± {hw} req/s vs Erlang {want}",
        p.y
    );
}
