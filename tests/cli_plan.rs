//! `tokenq plan` against closed forms: with a constant output length the single-server model is
//! M/D/1, whose waiting-time distribution is Erlang's formula
//! `P(W ≤ t) = (1 − ρ) Σ_{k=0}^{⌊t/D⌋} [λ(kD − t)]^k / k! · e^{−λ(kD − t)}`; the planner's exact
//! percentile and its goodput (the largest rate meeting the SLO) must agree with it.

mod common;

use std::path::Path;
use std::process::Command;

use common::{TABLE1, md1_cdf, md1_quantile, table1_service_s};
use pipeline::plan::{PlanConfig, Slo};

fn tokenq(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tokenq"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap()
}

#[test]
fn single_server_percentile_and_goodput_match_erlang() {
    let d = table1_service_s(100.0);
    let o = tokenq(&[
        "plan",
        "--coefficients",
        TABLE1,
        "--tokens",
        "const:100",
        "--rate",
        "0.2",
        "--slo",
        "wait:p90<=5s",
        "--max-gpus",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["min_gpus"], 1);
    for cand in v["feasible"].as_array().unwrap() {
        let n = cand["gpus"].as_f64().unwrap();
        let got = cand["slos"][0]["value_s"]["value"].as_f64().unwrap();
        let want = md1_quantile(0.2 / n, d, 0.9);
        assert!(
            (got - want).abs() < 1e-5 * want.max(1.0),
            "{n} GPUs: {got} vs {want}"
        );
        assert_eq!(cand["slos"][0]["method"], "exact");
    }
    // Goodput: at the reported rate the p90 wait is the target (bisection to 0.1%).
    let g = &v["goodput"][0];
    let rate = g["goodput_rps"].as_f64().unwrap() / g["gpus"].as_f64().unwrap();
    let p90 = md1_quantile(rate, d, 0.9);
    assert!(
        (p90 - 5.0).abs() < 0.02 * 5.0,
        "p90 at goodput {rate}: {p90}"
    );
    assert!(md1_quantile(rate * 1.01, d, 0.9) > 5.0 - 1e-9);
    // The fit's upper coefficients make a slower device: a lower goodput.
    assert!(g["goodput_at_fit_upper_rps"].as_f64().unwrap() < g["goodput_rps"].as_f64().unwrap());
}

#[test]
fn no_feasible_configuration_says_so_and_bad_slos_name_the_flag() {
    let o = tokenq(&[
        "plan",
        "--coefficients",
        TABLE1,
        "--tokens",
        "const:100",
        "--rate",
        "50",
        "--slo",
        "e2e:p99<=1s",
        "--max-gpus",
        "2",
    ]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("answer: none") && text.contains("= search end"),
        "{text}"
    );
    for bad in ["e2e:p99", "ttft:p99<=2s", "e2e:p101<=1s"] {
        let o = tokenq(&[
            "plan",
            "--coefficients",
            TABLE1,
            "--tokens",
            "sharegpt",
            "--rate",
            "1",
            "--slo",
            bad,
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.starts_with("Error: --slo") && err.lines().count() == 1,
            "{err}"
        );
    }
}

/// Batching configurations are simulated: their percentiles carry 95% intervals, and a
/// configuration counts as feasible only when the interval's upper end meets the SLO.
#[test]
fn batching_percentiles_are_simulations_with_intervals() {
    let o = tokenq(&[
        "plan",
        "--coefficients",
        "datasets/coefficients/a100-llama-2-7b-vidur.toml",
        "--tokens",
        "sharegpt",
        "--rate",
        "1",
        "--slo",
        "e2e:p99<=20s",
        "--max-gpus",
        "1",
        "--limits",
        "1000",
        "--caps",
        "8,16",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let batch: Vec<_> = v["feasible"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["policy"] == "dynamic")
        .collect();
    assert!(!batch.is_empty(), "{v}");
    for c in batch {
        let s = &c["slos"][0];
        assert_eq!(s["method"], "simulation");
        let (val, hw) = (
            s["value_s"]["value"].as_f64().unwrap(),
            s["value_s"]["half_width"].as_f64().unwrap(),
        );
        assert!(hw > 0.0 && val + hw <= 20.0, "{s}");
    }
}

/// `queue mg1 --percentiles`: exact quantiles of the wait and the latency in JSON under `p50`,
/// `p90`, `p99` keys, each inside the simulator's 95% interval of the same quantile
/// (`--validate` flags an exact value more than two half-widths away).
#[test]
fn mg1_percentiles_agree_with_the_simulator() {
    let o = tokenq(&[
        "queue",
        "mg1",
        "--tokens",
        "lognormal:7,0.7",
        "--max-tokens",
        "1600",
        "--arrival-rate",
        "0.025",
        "--per-token-s",
        "0.02203184157",
        "--intercept-s",
        "0.7764157233",
        "--percentiles",
        "50,90,99",
        "--validate",
        "--requests",
        "4e5",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let p = &v["percentiles"];
    for key in ["p50", "p90", "p99"] {
        let (w, l) = (
            p["wait"][key].as_f64().unwrap(),
            p["latency"][key].as_f64().unwrap(),
        );
        assert!(l > w && w >= 0.0, "{key}: {w} {l}");
    }
    assert_eq!(p["method"], "exact");
    let cmp = v["validation"]["comparisons"].as_array().unwrap();
    assert_eq!(
        cmp.iter()
            .filter(|c| c["quantity"].as_str().unwrap().contains(" p"))
            .count(),
        6
    );
    assert_eq!(v["validation"]["flagged"], 0, "{}", v["validation"]);
}

/// `--routing shortest-queue`: two GPUs behind join-shortest-queue are simulated (with an
/// interval), and wait less than the random split, whose p90 is Erlang's M/D/1 at λ/2.
#[test]
fn shortest_queue_routing_is_simulated_and_beats_the_random_split() {
    let d = table1_service_s(100.0);
    // Total rate 1.5 ρ per GPU at 2 GPUs: one GPU alone would be unstable.
    let rate = 1.5 / d;
    let o = tokenq(&[
        "plan",
        "--coefficients",
        TABLE1,
        "--policy",
        "single",
        "--tokens",
        "const:100",
        "--rate",
        &rate.to_string(),
        "--slo",
        "wait:p90<=1000s",
        "--max-gpus",
        "2",
        "--routing",
        "shortest-queue",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cand = &v["feasible"][0];
    assert_eq!(cand["gpus"], 2, "{v}");
    let slo = &cand["slos"][0];
    assert_eq!(slo["method"], "simulation");
    let (val, hw) = (
        slo["value_s"]["value"].as_f64().unwrap(),
        slo["value_s"]["half_width"].as_f64().unwrap(),
    );
    let random = md1_quantile(rate / 2.0, d, 0.9);
    assert!(
        hw > 0.0 && val + hw < random,
        "JSQ {val} ± {hw} s vs random split {random} s"
    );
}

/// `--plots DIR`: the SLO statistic of the best configurations against the rate, beside the
/// target, the GPUs needed and the goodput against the rate. With a constant output length the single
/// server's p90 wait is Erlang's M/D/1 at every rate, so the GPUs needed at a rate are the
/// fewest n whose λ/n keeps the p90 wait under the target: the figure's points must be those.
#[test]
fn plots_draw_the_slo_and_the_gpus_needed_against_the_rate() {
    let d = table1_service_s(100.0);
    let dir = tempfile::tempdir().unwrap();
    let rate = 0.6 / d;
    let o = tokenq(&[
        "plan",
        "--coefficients",
        TABLE1,
        "--policy",
        "single",
        "--tokens",
        "const:100",
        "--rate",
        &rate.to_string(),
        "--slo",
        &format!("wait:p90<={}s", 2.0 * d),
        "--max-gpus",
        "4",
        "--plots",
        dir.path().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let slo = std::fs::read_to_string(dir.path().join("plan-slo-vs-rate.svg")).unwrap();
    assert!(
        slo.contains("<svg") && slo.contains("target wait:p90"),
        "{slo}"
    );
    let gpus = std::fs::read_to_string(dir.path().join("plan-gpus-vs-rate.svg")).unwrap();
    assert!(gpus.contains("GPUs needed"));
    let good = std::fs::read_to_string(dir.path().join("plan-goodput-vs-rate.svg")).unwrap();
    assert!(good.contains("<svg") && good.contains("(y = x)"), "{good}");
    // The expected GPU counts at the figure's ten rates (2R·i/10), from Erlang's formula.
    let want: Vec<u32> = (1..=10)
        .map(|i| {
            let r = 2.0 * rate * f64::from(i) / 10.0;
            (1..=4u32)
                .find(|&n| {
                    r / f64::from(n) * d < 1.0 && md1_quantile(r / f64::from(n), d, 0.9) <= 2.0 * d
                })
                .unwrap()
        })
        .collect();
    assert!(
        want.windows(2).all(|w| w[0] <= w[1]) && want[9] > want[0],
        "{want:?}"
    );
    // The plan at each of those rates answers the same count (the figure's data).
    for (i, &n) in want.iter().enumerate() {
        let r = 2.0 * rate * (i + 1) as f64 / 10.0;
        let o = tokenq(&[
            "plan",
            "--coefficients",
            TABLE1,
            "--policy",
            "single",
            "--tokens",
            "const:100",
            "--rate",
            &r.to_string(),
            "--slo",
            &format!("wait:p90<={}s", 2.0 * d),
            "--max-gpus",
            "4",
            "--json",
        ]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["min_gpus"], n, "rate {r}");
    }
}

/// A planner question on `file` for constant 100-token outputs, no limit, one GPU.
fn question(file: &str, single: bool, caps: &[u32], rate: f64, slos: &[&str]) -> PlanConfig {
    let c = tokenq_core::CoefficientsFile::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join(file))
        .unwrap();
    let (service, service_hi, batch) = pipeline::plan::service_models(&c).unwrap();
    PlanConfig {
        tokens: queueing::dist::TokenDist::parse("const:100").unwrap(),
        tokens_spec: "const:100".into(),
        rate,
        slos: slos.iter().map(|s| Slo::parse(s).unwrap()).collect(),
        min_served_fraction: 0.0,
        max_gpus: 1,
        service: service.filter(|_| single),
        batch: batch.filter(|_| !caps.is_empty()),
        service_hi,
        batch_hi: pipeline::plan::batch_hi(&c),
        caps: caps.to_vec(),
        limits: vec![f64::INFINITY],
        sim_requests: 100_000,
        seed: 1,
        goodput_top: 0,
        routing: sim::routing::Routing::Random,
        continuous: None,
        paper_policies: true,
        trace: None,
    }
}

/// The goodput figure's series (the diagonal left out) of the planner's answer to `q`.
fn goodput_series(q: &PlanConfig) -> Vec<reports::Series> {
    let a = pipeline::plan::plan(q).unwrap();
    let figs = pipeline::plan_plots::figures(q, &a).unwrap();
    let f = figs
        .iter()
        .find(|f| f.id == "plan-goodput-vs-rate")
        .unwrap();
    let series = &f.panels[0].series;
    // The diagonal y = x is the reference.
    let diag = series.last().unwrap();
    assert!(diag.label.contains("y = x") && diag.points.iter().all(|p| p.x == p.y));
    series[..series.len() - 1].to_vec()
}

/// Goodput at rate R (vLLM's `--goodput`): R × the share of requests within their targets. One
/// request at a time with constant 100-token outputs is M/D/1, so with an e2e target t the
/// share is Erlang's `P(W ≤ t − D)`; a wait target no tighter than the e2e one changes nothing
/// (W ≤ W + D), and the share stays exact. Every drawn point (ρ < 1) matches to 1e-5.
#[test]
fn goodput_of_one_at_a_time_is_erlangs_md1_share() {
    let d = table1_service_s(100.0);
    let (rate, target) = (0.6 / d, 4.0 * d);
    let q = question(
        TABLE1,
        true,
        &[],
        rate,
        &[
            &format!("e2e:p90<={target}s"),
            &format!("wait:p50<={}s", 10.0 * d),
        ],
    );
    let series = goodput_series(&q);
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].method, reports::Method::Exact);
    let stable = (1..=10).filter(|&i| 2.0 * rate * f64::from(i) / 10.0 * d < 1.0);
    assert_eq!(series[0].points.len(), stable.count());
    for p in &series[0].points {
        let want = p.x * md1_cdf(p.x, d, target - d);
        assert!(
            (p.y - want).abs() < 1e-5 && p.ci95.is_none(),
            "rate {}: {} vs Erlang {want}",
            p.x,
            p.y
        );
    }
}

/// Simulated goodputs carry 95 % intervals that hold the exact value: dynamic batching with cap
/// 1 and constant outputs is M/D/1 with D = t1(1) + t2(1)·100; and one request at a time with a
/// wait target tighter than the e2e one is simulated per request, its share
/// `P(W ≤ a, W + D ≤ b) = P(W ≤ min(a, b − D))` — not the product of the two marginal shares.
#[test]
fn simulated_goodput_intervals_hold_erlangs_md1_share() {
    let vidur = "datasets/coefficients/a100-llama-2-7b-vidur.toml";
    let c = tokenq_core::CoefficientsFile::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join(vidur))
        .unwrap();
    let k = c.batch_k().unwrap();
    let d = k[0] + k[1] + (k[2] + k[3]) * 100.0;
    let (rate, target) = (0.6 / d, 4.0 * d);
    let q = question(vidur, false, &[1], rate, &[&format!("e2e:p90<={target}s")]);
    let series = goodput_series(&q);
    assert_eq!(series[0].method, reports::Method::Simulation);
    assert_eq!(series[0].points.len(), 8, "ρ < 1 at 8 of the 10 rates");
    for p in &series[0].points {
        let want = p.x * md1_cdf(p.x, d, target - d);
        let hw = p.ci95.unwrap();
        // The asked rate's interval holds it; every point lies within two half-widths.
        let k = if (p.x - rate).abs() < 1e-12 { 1.0 } else { 2.0 };
        assert!(
            hw > 0.0 && (p.y - want).abs() <= k * hw,
            "rate {}: {} ± {hw} vs Erlang {want}",
            p.x,
            p.y
        );
    }

    let s = c.single_request.unwrap();
    let d = s.per_token_s * 100.0 + s.intercept_s;
    let rate = 0.6 / d;
    // ρ = 0.6: Erlang's p50 wait is 0.37 D and p90 2.1 D, so both SLOs hold at the rate.
    let (a, b) = (0.5 * d, 3.2 * d);
    let q = question(
        vidur,
        true,
        &[],
        rate,
        &[&format!("wait:p50<={a}s"), &format!("e2e:p90<={b}s")],
    );
    let series = goodput_series(&q);
    assert_eq!(series[0].method, reports::Method::Simulation);
    let p = series[0]
        .points
        .iter()
        .find(|p| (p.x - rate).abs() < 1e-12)
        .unwrap();
    let (share, hw) = (p.y / rate, p.ci95.unwrap() / rate);
    let joint = md1_cdf(rate, d, a.min(b - d));
    let product = md1_cdf(rate, d, a) * md1_cdf(rate, d, b - d);
    assert!(
        (share - joint).abs() <= hw && (share - product).abs() > 3.0 * hw,
        "share {share} ± {hw}: joint {joint}, product of marginals {product}"
    );
}

/// The largest rate whose M/D/1 p90 wait is at most `x` (Erlang's formula, bisection).
fn md1_goodput(d: f64, x: f64) -> f64 {
    let (mut lo, mut hi) = (1e-9 / d, (1.0 - 1e-9) / d);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if md1_quantile(mid, d, 0.9) <= x {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The capacity band of dynamic batching: its goodput again with the batch lines at the upper
/// ends of their 95 % intervals. With cap 1 and constant 100-token outputs the queue is M/D/1
/// with D = t1(1) + t2(1)·100, so each goodput is Erlang's largest rate with p90 wait ≤ the
/// target, for D from the fit and for D from the intervals' upper ends (here 20 % above the fit,
/// a test file). The simulated goodputs count an SLO as met only when the interval's upper end
/// meets it (bisection to 1 %): within 5 % below Erlang's rate and at most 1 % above it.
#[test]
fn dynamic_batching_goodput_has_a_capacity_band_from_the_batch_lines_intervals() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text =
        std::fs::read_to_string(root.join("datasets/coefficients/a100-llama-2-7b-vidur.toml"))
            .unwrap();
    let mut t: toml::Table = text.parse().unwrap();
    let mut k = [0.0; 4];
    for (i, (sec, key)) in [
        ("first_token", "slope_s_per_req"),
        ("first_token", "intercept_s"),
        ("decode_step", "slope_s_per_req"),
        ("decode_step", "intercept_s"),
    ]
    .into_iter()
    .enumerate()
    {
        let s = t[sec].as_table_mut().unwrap();
        k[i] = s[key].as_float().unwrap();
        let ci = s["ci95"].as_table_mut().unwrap();
        ci[key] = toml::Value::Array(vec![(0.8 * k[i]).into(), (1.2 * k[i]).into()]);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide-intervals.toml");
    std::fs::write(&path, toml::to_string(&t).unwrap()).unwrap();
    let d = k[0] + k[1] + (k[2] + k[3]) * 100.0;
    let target = 2.0 * d;
    let o = tokenq(&[
        "plan",
        "--coefficients",
        path.to_str().unwrap(),
        "--policy",
        "dynamic",
        "--caps",
        "1",
        "--tokens",
        "const:100",
        "--limits",
        "1000",
        "--max-gpus",
        "1",
        "--rate",
        &(0.3 / d).to_string(),
        "--slo",
        &format!("wait:p90<={target}s"),
        "--sim-requests",
        "4e5",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let g = &v["goodput"][0];
    assert_eq!(
        (g["policy"].as_str(), g["cap"].as_u64()),
        (Some("dynamic"), Some(1))
    );
    for (got, d) in [
        (g["goodput_rps"].as_f64().unwrap(), d),
        (g["goodput_at_fit_upper_rps"].as_f64().unwrap(), 1.2 * d),
    ] {
        let want = md1_goodput(d, target);
        assert!(
            got <= 1.01 * want && got >= 0.95 * want,
            "D = {d} s: goodput {got} req/s vs Erlang {want} req/s"
        );
    }
    assert!(g["fit_upper_note"].is_null(), "{g}");
}

/// Without `--rate` the planner answers question (b) alone: each policy and limit's goodput on
/// one GPU, largest first. With constant 100-token outputs both policies are M/D/1 (one request
/// at a time with D = a·100 + c; dynamic batching with cap 1 with D = t1(1) + t2(1)·100), so
/// each goodput is Erlang's largest rate with p90 wait ≤ the target: exact (bisection to 0.1 %)
/// for one at a time, simulated (interval's upper end, bisection to 1 %) within 5 % below for
/// batching. The bisection starts at the capacity scale, 1/D for one at a time.
#[test]
fn without_a_rate_each_configuration_gets_its_goodput_on_one_gpu() {
    let vidur = "datasets/coefficients/a100-llama-2-7b-vidur.toml";
    let c = tokenq_core::CoefficientsFile::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join(vidur))
        .unwrap();
    let s = c.single_request.as_ref().unwrap();
    let d_single = s.per_token_s * 100.0 + s.intercept_s;
    let k = c.batch_k().unwrap();
    let d_batch = k[0] + k[1] + (k[2] + k[3]) * 100.0;
    let target = 1.5;
    let o = tokenq(&[
        "plan",
        "--coefficients",
        vidur,
        "--policy",
        "single,dynamic",
        "--caps",
        "1",
        "--tokens",
        "const:100",
        "--limits",
        "1000",
        "--slo",
        &format!("wait:p90<={target}s"),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v["goodputs"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    assert!(v["gpus"].as_str().unwrap().contains("n × it"), "{v}");
    let g = |r: &serde_json::Value| r["goodput_rps"].as_f64().unwrap();
    assert!(g(&rows[0]) >= g(&rows[1]), "largest first: {v}");
    for r in rows {
        let (d, exact) = match r["policy"].as_str().unwrap() {
            "single" => (d_single, true),
            _ => (d_batch, false),
        };
        let want = md1_goodput(d, target);
        let got = g(r);
        if exact {
            assert_eq!(r["method"], "exact");
            assert!(
                got <= want * (1.0 + 1e-6) && got >= want * (1.0 - 2e-3),
                "one at a time: {got} vs Erlang {want} req/s"
            );
            let scale = r["capacity_scale_rps"].as_f64().unwrap();
            assert!((scale * d_single - 1.0).abs() < 1e-12, "{scale}");
        } else {
            assert_eq!(r["method"], "simulation");
            assert!(
                got <= 1.01 * want && got >= 0.95 * want,
                "batching: {got} vs Erlang {want} req/s"
            );
        }
        assert!(g(r) > 0.0 && r["served_whole_fraction"] == 1.0);
    }
}

/// `--min-served-fraction` leaves out the limits that truncate too many requests (the default
/// limits are the workload's p50 … p99.9 and none: with 0.9, p50 and p75 go), the rows come
/// largest goodput first, and the human answer names its assumption about GPUs. `--plots`
/// without `--rate` is a one-line error naming both flags.
#[test]
fn without_a_rate_min_served_fraction_applies_and_rows_are_best_first() {
    let v = {
        let o = tokenq(&[
            "plan",
            "--coefficients",
            TABLE1,
            "--tokens",
            "sharegpt",
            "--slo",
            "e2e:p90<=60s",
            "--min-served-fraction",
            "0.9",
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let tokens = queueing::dist::TokenDist::parse("sharegpt").unwrap();
    let limits = pipeline::plan::default_limits(&tokens);
    let short = limits.iter().filter(|&&l| tokens.cdf(l) < 0.9).count();
    assert_eq!(short, 2);
    assert_eq!(v["excluded"], short as u64, "{v}");
    let rows = v["goodputs"].as_array().unwrap();
    assert_eq!(rows.len(), limits.len() - short);
    let g: Vec<f64> = rows
        .iter()
        .map(|r| r["goodput_rps"].as_f64().unwrap())
        .collect();
    assert!(g.windows(2).all(|w| w[0] >= w[1]), "{g:?}");
    assert!(rows.iter().all(|r| {
        r["served_whole_fraction"].as_f64().unwrap() >= 0.9 && r["method"] == "exact"
    }));
    let o = tokenq(&[
        "plan",
        "--coefficients",
        TABLE1,
        "--tokens",
        "sharegpt",
        "--slo",
        "e2e:p90<=60s",
    ]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("goodput on 1 GPU, largest first") && text.contains("GPUs: goodput on 1 GPU"),
        "{text}"
    );
    let o = tokenq(&[
        "plan",
        "--coefficients",
        TABLE1,
        "--tokens",
        "sharegpt",
        "--slo",
        "e2e:p90<=60s",
        "--plots",
        "/tmp/never-written",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with("Error: --plots") && err.contains("--rate") && err.lines().count() == 1,
        "{err}"
    );
}
