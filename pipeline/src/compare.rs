//! `tokenq compare`: a measured load test replayed through the model, predicted against
//! measured. This closes the loop profile a server → fit → predict a load → measure it.
//!
//! The measured run is the per-request JSONL of `tokenq bench --records`. Its requests (each
//! one's scheduled send time as its arrival, its `usage` token counts) are replayed through
//! continuous batching as vLLM's V1 scheduler runs it (`sim::continuous`, docs/serving.md) with
//! the `[step_time]` model of a coefficients file — fitted from an endpoint profile of the same
//! server (`tokenq fit PROFILE --step-model`). That profile times steps as the client sees them,
//! so the server's host overhead between engine steps is inside the fitted step times; the
//! engine settings (`--max-num-seqs`, `--max-batched-tokens`, `--kv-blocks`) are the server's.
//!
//! The replay is deterministic (a simulation without a confidence interval); the measured means
//! carry their 95 % interval over requests (`1.96·sd/√n`), the run's own sampling noise. Failed
//! requests are left out of both sides and counted.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use endpoint::{RequestError, RequestRecord, percentile};
use reports::{Axis, Figure, Method, Panel, Scale, Series};
use serde::Serialize;
use sim::continuous::{EngineConfig, Request, SimOptions, simulate};
use tokenq_core::CoefficientsFile;

use crate::replay::EngineFile;

/// The percentiles compared besides the mean.
pub const PERCENTILES: [f64; 3] = [50.0, 90.0, 99.0];

/// A validated `tokenq compare`.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// The measured run: `tokenq bench --records FILE.jsonl`.
    pub measured: PathBuf,
    /// Coefficients with a `[step_time]` section.
    pub coefficients: PathBuf,
    /// Engine settings given as flags (the settings file's keys).
    pub engine: EngineFile,
    /// `--engine-config FILE`.
    pub engine_config: Option<PathBuf>,
    /// Print JSON instead of the table.
    pub json: bool,
    /// Write the CDFs of predicted and measured TTFT, TPOT and E2E to this SVG file.
    pub plot: Option<PathBuf>,
}

/// One statistic of one metric.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `ttft`, `tpot` or `e2e`.
    pub metric: &'static str,
    /// `mean`, `p50`, `p90`, `p99`.
    pub statistic: String,
    /// The replay's value, ms.
    pub predicted_ms: f64,
    /// The measured value, ms.
    pub measured_ms: f64,
    /// 95 % half-width of the measured mean over requests, ms (means only).
    pub measured_half_width_ms: Option<f64>,
    /// (predicted − measured) / measured, %.
    pub error_pct: f64,
}

/// Everything `tokenq compare` prints (its `--json` object).
#[derive(Debug, Serialize)]
pub struct Comparison {
    /// The measured run.
    pub measured: String,
    /// The coefficients file of the step model.
    pub coefficients: String,
    /// Requests replayed (the measured run's successes).
    pub requests: usize,
    /// Requests of the measured run that failed, left out.
    pub failed: usize,
    /// Measured arrival rate over the run, req/s.
    pub arrival_rate_rps: f64,
    /// The engine the replay ran.
    pub engine: EngineConfig,
    /// Predicted against measured.
    pub rows: Vec<Row>,
    /// How each side was obtained.
    pub methods: [(&'static str, Method); 2],
}

/// Whether a record's token times are usable: a success, or a stream whose every chunk carried
/// one token but some with empty text (`NoToken` with the counts adding up).
fn usable(r: &RequestRecord) -> bool {
    match &r.error {
        None => true,
        Some(RequestError::NoToken { .. }) => {
            r.usage_completion_tokens == Some(r.token_chunks + r.empty_chunks)
        }
        Some(_) => false,
    }
}

/// Per-request TTFT, TPOT (requests with > 1 token), E2E in seconds.
type Latencies = [Vec<f64>; 3];

fn measured_latencies(records: &[&RequestRecord]) -> Latencies {
    let mut out: Latencies = Default::default();
    for r in records {
        // A last chunk with empty text still ends the stream: take the later of the two.
        let last = r
            .last_token_s
            .into_iter()
            .chain(r.empty_times_s.last().copied())
            .fold(f64::NEG_INFINITY, f64::max);
        let (Some(first), true) = (r.first_token_s, last.is_finite()) else {
            continue;
        };
        let ttft = first - r.scheduled_send_s;
        let e2e = last - r.scheduled_send_s;
        out[0].push(ttft);
        let n = r.output_tokens();
        if n > 1 {
            out[1].push((e2e - ttft) / f64::from(n - 1));
        }
        out[2].push(e2e);
    }
    out
}

fn mean_and_half_width(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, 1.96 * (var / n).sqrt())
}

/// Predicted against measured for each metric: mean (with the measured interval) and the
/// percentiles, in ms.
pub fn rows(predicted: &Latencies, measured: &Latencies) -> Vec<Row> {
    let mut out = Vec::new();
    for (i, metric) in ["ttft", "tpot", "e2e"].into_iter().enumerate() {
        let (mut p, mut m) = (predicted[i].clone(), measured[i].clone());
        if p.is_empty() || m.is_empty() {
            continue;
        }
        p.sort_by(f64::total_cmp);
        m.sort_by(f64::total_cmp);
        let (pm, _) = mean_and_half_width(&p);
        let (mm, hw) = mean_and_half_width(&m);
        let mut push = |statistic: String, pv: f64, mv: f64, hw: Option<f64>| {
            out.push(Row {
                metric,
                statistic,
                predicted_ms: pv * 1e3,
                measured_ms: mv * 1e3,
                measured_half_width_ms: hw.map(|h| h * 1e3),
                error_pct: 100.0 * (pv - mv) / mv,
            })
        };
        push("mean".into(), pm, mm, Some(hw));
        for q in PERCENTILES {
            push(format!("p{q}"), percentile(&p, q), percentile(&m, q), None);
        }
    }
    out
}

/// Replay the measured run and compare.
pub fn compare(cfg: &CompareConfig) -> Result<(Comparison, Latencies, Latencies)> {
    let records = endpoint::read_jsonl_file(&cfg.measured)
        .map_err(|e| anyhow!("{}: {e}", cfg.measured.display()))?;
    let coef = CoefficientsFile::read(&cfg.coefficients)
        .with_context(|| format!("--coefficients {}", cfg.coefficients.display()))?;
    let step = coef.step_time.clone().ok_or_else(|| {
        anyhow!(
            "--coefficients {}: no [step_time] section; fit one to an endpoint profile of the server with `tokenq fit PROFILE --step-model -o FILE`",
            cfg.coefficients.display()
        )
    })?;
    let settings =
        crate::replay::settings(&cfg.engine, cfg.engine_config.as_deref(), None, Some(&coef))?;
    let mut ok: Vec<&RequestRecord> = records.iter().filter(|r| usable(r)).collect();
    let failed = records.len() - ok.len();
    if ok.is_empty() {
        bail!(
            "{}: no successful request to replay ({failed} failed)",
            cfg.measured.display()
        );
    }
    ok.sort_by(|a, b| a.scheduled_send_s.total_cmp(&b.scheduled_send_s));
    let t0 = 0.0_f64.min(ok[0].scheduled_send_s);
    let reqs: Vec<Request> = ok
        .iter()
        .map(|r| {
            Request::new(
                r.scheduled_send_s - t0,
                r.input_tokens().max(1),
                r.output_tokens().max(1),
            )
        })
        .collect();
    let span = reqs.last().map_or(0.0, |r| r.arrival_s);
    let result = simulate(&reqs, &settings.engine, &step, SimOptions::default())
        .map_err(|e| anyhow!("replaying {}: {e}", cfg.measured.display()))?;
    let mut predicted: Latencies = Default::default();
    for r in &result.records {
        predicted[0].push(r.ttft_s);
        if let Some(t) = r.tpot_s {
            predicted[1].push(t);
        }
        predicted[2].push(r.e2e_s);
    }
    let measured = measured_latencies(&ok);
    let c = Comparison {
        measured: cfg.measured.display().to_string(),
        coefficients: cfg.coefficients.display().to_string(),
        requests: ok.len(),
        failed,
        arrival_rate_rps: if span > 0.0 {
            (reqs.len() - 1) as f64 / span
        } else {
            f64::NAN
        },
        engine: settings.engine,
        rows: rows(&predicted, &measured),
        methods: [
            ("predicted", Method::Simulation),
            ("measured", Method::Measured),
        ],
    };
    Ok((c, predicted, measured))
}

/// The comparison as text.
pub fn render(c: &Comparison) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} requests of {} ({} failed, left out), {:.3} req/s, replayed with the [step_time] of {}",
        c.requests, c.measured, c.failed, c.arrival_rate_rps, c.coefficients
    );
    let _ = writeln!(
        o,
        "engine: max_num_seqs {}, max_batched_tokens {}, kv_blocks {} × {} tokens, prefix caching {}",
        c.engine.max_num_seqs,
        c.engine.max_batched_tokens,
        c.engine.kv_blocks,
        c.engine.block_size,
        if c.engine.prefix_caching { "on" } else { "off" }
    );
    let _ = writeln!(
        o,
        "\n{:<6} {:<6} {:>14} {:>22} {:>9}",
        "metric", "stat", "predicted ms", "measured ms", "error"
    );
    for r in &c.rows {
        let measured = match r.measured_half_width_ms {
            Some(h) => format!("{:.2} ± {:.2}", r.measured_ms, h),
            None => format!("{:.2}", r.measured_ms),
        };
        let _ = writeln!(
            o,
            "{:<6} {:<6} {:>14.2} {:>22} {:>+8.1}%",
            r.metric, r.statistic, r.predicted_ms, measured, r.error_pct
        );
    }
    o.push_str(
        "\npredicted: deterministic replay of these arrivals and token counts (simulation, no interval); \
measured: the run's values, means with their 95% interval over requests. \
TTFT and E2E from the scheduled send time; TPOT = (E2E − TTFT)/(output tokens − 1).\n",
    );
    o
}

/// The CDFs of predicted and measured TTFT, TPOT and E2E, one panel each.
pub fn figure(predicted: &Latencies, measured: &Latencies) -> Figure {
    let cdf = |v: &[f64]| {
        let mut v: Vec<f64> = v.iter().map(|x| x * 1e3).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        v.into_iter()
            .enumerate()
            .map(|(i, x)| (x, (i as f64 + 1.0) / n))
            .collect::<Vec<_>>()
    };
    let panels = ["TTFT", "TPOT", "E2E"]
        .iter()
        .enumerate()
        .filter(|(i, _)| !predicted[*i].is_empty() && !measured[*i].is_empty())
        .map(|(i, name)| {
            Panel::new(
                format!("{name}: predicted vs measured"),
                Axis::new(*name, "ms").from_zero(),
                Axis::new("fraction of requests ≤ x", "")
                    .scale(Scale::Linear)
                    .from_zero(),
            )
            .with(Series::from_xy(
                "measured",
                Method::Measured,
                cdf(&measured[i]),
            ))
            .with(Series::from_xy(
                "predicted (replay)",
                Method::Simulation,
                cdf(&predicted[i]),
            ))
        })
        .collect();
    Figure {
        id: "compare-cdf".into(),
        title: "Predicted against measured latency".into(),
        caption: "Empirical CDFs over the requests of the measured run and of its replay.".into(),
        panels,
    }
}

/// Run `tokenq compare`.
pub fn run(cfg: &CompareConfig) -> Result<()> {
    if let Some(p) = &cfg.plot
        && p.extension().is_none_or(|e| !e.eq_ignore_ascii_case("svg"))
    {
        bail!("--plot {}: give an .svg file name", p.display());
    }
    let (c, predicted, measured) = compare(cfg)?;
    if cfg.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print!("{}", render(&c));
    }
    if let Some(p) = &cfg.plot {
        let svg = reports::render::render_svg(&figure(&predicted, &measured))
            .map_err(|e| anyhow!("--plot {}: {e}", p.display()))?;
        crate::bench::write_atomic(p, "--plot", |w| {
            use std::io::Write as _;
            w.write_all(svg.as_bytes())?;
            Ok(())
        })?;
        if !cfg.json {
            println!("plot: {}", p.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_compare_means_and_percentiles() {
        let predicted: Latencies = [vec![0.1, 0.2, 0.3], vec![0.01; 3], vec![1.0, 2.0, 3.0]];
        let measured: Latencies = [vec![0.1, 0.2, 0.3], vec![0.02; 3], vec![1.0, 2.0, 5.0]];
        let r = rows(&predicted, &measured);
        assert_eq!(r.len(), 12);
        let find = |m: &str, s: &str| {
            r.iter()
                .find(|x| x.metric == m && x.statistic == s)
                .unwrap()
        };
        assert!(find("ttft", "mean").error_pct.abs() < 1e-9);
        assert!((find("tpot", "p50").error_pct + 50.0).abs() < 1e-9);
        // E2E mean 2 vs 8/3: −25 %; p99 by numpy interpolation (rank 1.98): 2.98 vs 4.94.
        assert!((find("e2e", "mean").error_pct + 25.0).abs() < 1e-9);
        let p99 = find("e2e", "p99");
        assert!(
            (p99.predicted_ms - 2980.0).abs() < 1e-6 && (p99.measured_ms - 4940.0).abs() < 1e-6
        );
        // The measured interval: sd of (1, 2, 5) = 2.0817, /√3 · 1.96 = 2.3556 s.
        let hw = find("e2e", "mean").measured_half_width_ms.unwrap();
        assert!((hw - 2355.6).abs() < 0.1, "{hw}");
    }
}
