//! `tokenq replay` (alias `tokenq simulate --policy continuous`): iteration-level continuous
//! batching as vLLM's V1 scheduler runs it (docs/serving.md; library `sim::continuous`),
//! replaying a trace with a step-time model from per-layer tables (`step_table`) or from the
//! `[step_time]` section of a coefficients file. Given both, or `fit_step_model` with a table,
//! it replays with both models and reports the fitted model's error on the steps the replay
//! actually ran (MAPE and bias of the summed time). The result is a deterministic replay of one
//! trace (a simulation without a confidence interval: there is no randomness).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use sim::continuous::{
    ContinuousResult, EngineConfig, LatencySummary, Request, SimOptions, StepModel,
    StepTimeCoefficients, TableStepModel, simulate, workload,
};
use tokenq_core::CoefficientsFile;

/// What to replay and with which engine and step model (validated flags).
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// The trace: a tokenq or LLMServingSim CSV, an Azure trace, or a built-in name.
    pub trace: PathBuf,
    /// The coefficients file given, if any (for messages).
    pub coefficients: Option<PathBuf>,
    /// Its contents (a `[step_time]` section is a step model).
    pub coefficients_file: Option<CoefficientsFile>,
    /// Engine limits.
    pub engine: EngineConfig,
    /// Per-layer tables directory.
    pub step_table: Option<PathBuf>,
    /// Apply the skew correction of the tables' attention.
    pub skew: bool,
    /// Decoder layers of the model.
    pub layers: u32,
    /// Also fit the step-time forms to the tables and replay with both.
    pub fit_step_model: bool,
    /// Write the fitted model into this coefficients file.
    pub save_step_model: Option<PathBuf>,
    /// Per-request records CSV.
    pub records: Option<PathBuf>,
    /// Running/waiting/KV time series CSV.
    pub series: Option<PathBuf>,
    /// HTML report directory.
    pub report: Option<PathBuf>,
    /// JSON instead of text on stdout.
    pub json: bool,
    /// Seed of the step-configuration sampling when fitting.
    pub seed: u64,
}

/// Read a trace: LLMServingSim's workload (`input_toks,output_toks,arrival_time_ns`, with
/// `X.prefix.csv` beside `X.lengths.csv`) here; anything else through `sim::trace` (the tokenq
/// CSV `arrival_s,input_tokens,output_tokens[,prefix_parent,shared_prefix_blocks]`, the Azure
/// format, or a built-in name such as `azure-conv`).
pub fn read_trace(path: &Path) -> Result<Vec<Request>> {
    let header = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.lines().next().map(str::to_owned))
        .unwrap_or_default();
    let reqs = if header.contains("input_toks") && header.contains("arrival_time_ns") {
        workload::read_trace(path).with_context(|| format!("--trace {}", path.display()))?
    } else {
        let t = sim::Trace::load(&path.to_string_lossy())
            .with_context(|| format!("--trace {}", path.display()))?;
        from_trace(&t).with_context(|| format!("--trace {}", path.display()))?
    };
    if reqs.is_empty() {
        bail!("--trace {}: no requests", path.display());
    }
    Ok(reqs)
}

/// Requests of a `sim::Trace` (token counts must fit in 32 bits).
fn from_trace(trace: &sim::Trace) -> Result<Vec<Request>> {
    let tok = |i: usize, v: u64, what: &str| {
        u32::try_from(v).map_err(|_| anyhow!("request {i}: {what} = {v} is too large"))
    };
    trace
        .requests
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Ok(Request {
                arrival_s: r.arrival_s,
                input_tokens: tok(i, r.input_tokens, "input_tokens")?,
                output_tokens: tok(i, r.output_tokens, "output_tokens")?,
                prefix_parent: match r.prefix_parent {
                    Some(p) => Some(tok(i, p as u64, "prefix_parent")?),
                    None => None,
                },
                shared_prefix_blocks: tok(i, r.shared_prefix_blocks, "shared_prefix_blocks")?,
            })
        })
        .collect()
}

/// One replay's output.
#[derive(Debug, Serialize)]
struct Replay {
    step_model: String,
    #[serde(flatten)]
    result: ContinuousResult,
    /// Wall-clock time of the replay on this machine, seconds.
    replay_wall_s: f64,
    /// Engine iterations simulated per wall-clock second.
    iterations_per_s: f64,
}

#[derive(Debug, Serialize)]
struct Output {
    method: queueing::Method,
    policy: &'static str,
    note: &'static str,
    trace: String,
    requests: usize,
    arrival_span_s: f64,
    engine: EngineConfig,
    replays: Vec<Replay>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fitted_check: Option<tokenq_core::step::ReplayCheck>,
}

fn replay(
    reqs: &[Request],
    cfg: &EngineConfig,
    model: &dyn StepModel,
    record_steps: bool,
) -> Result<Replay> {
    let t0 = Instant::now();
    let result = simulate(
        reqs,
        cfg,
        model,
        SimOptions {
            record_steps,
            check_invariants: false,
        },
    )?;
    let wall = t0.elapsed().as_secs_f64();
    Ok(Replay {
        step_model: model.describe(),
        iterations_per_s: result.iterations as f64 / wall.max(1e-9),
        replay_wall_s: wall,
        result,
    })
}

/// Replay `rc.trace` and print (or write) what `rc` asks for.
pub fn run(rc: &ReplayConfig) -> Result<()> {
    let (trace, coefficients, json, seed) = (
        rc.trace.as_path(),
        rc.coefficients.as_deref(),
        rc.json,
        rc.seed,
    );
    let coef_file = rc.coefficients_file.clone();
    if let Some(p) = &rc.records {
        check_csv_name("--records", p)?;
    }
    if let Some(p) = &rc.series {
        check_csv_name("--series", p)?;
    }
    let reqs = read_trace(trace)?;
    let cfg = rc.engine;
    let table = match &rc.step_table {
        Some(dir) => Some(
            TableStepModel::load(dir, rc.layers, rc.skew)
                .with_context(|| format!("--step-table {}", dir.display()))?,
        ),
        None => None,
    };
    let from_file = coef_file.and_then(|f| f.step_time);
    if let (None, None, Some(p)) = (&table, &from_file, coefficients) {
        bail!(
            "--coefficients {}: no [step_time] section; create one with `tokenq replay --step-table DIR --save-step-model FILE ...`, or give --step-table",
            p.display()
        );
    }
    let want_fit = rc.fit_step_model || rc.save_step_model.is_some();
    if want_fit && table.is_none() {
        bail!(
            "--fit-step-model/--save-step-model need --step-table DIR (the tables the model is fitted to)"
        );
    }
    let fitted_now = match (&table, want_fit) {
        (Some(t), true) => Some(fit_tables(
            t,
            rc.step_table.as_deref().unwrap_or(Path::new("")),
            rc.layers,
            &cfg,
            seed,
        )?),
        _ => None,
    };
    let fitted = fitted_now.or(from_file);

    let mut replays = Vec::new();
    let mut check = None;
    match (&table, &fitted) {
        (None, None) => bail!(
            "no step-time model: give --step-table DIR (per-layer tables, e.g. datasets/llmservingsim/RTX4090) or --coefficients FILE with a [step_time] section"
        ),
        (Some(t), f) => {
            let r = replay(&reqs, &cfg, t, f.is_some())?;
            if let Some(f) = f {
                check = Some(check_on_steps(f, &r.result, trace, t));
            }
            replays.push(r);
            if let Some(f) = f {
                replays.push(replay(&reqs, &cfg, f, false)?);
            }
        }
        (None, Some(f)) => replays.push(replay(&reqs, &cfg, f, false)?),
    }

    if let (Some(path), Some(f)) = (&rc.save_step_model, &fitted) {
        let mut coef = f.clone();
        coef.replay_check = check.clone();
        save_step_model(
            path,
            coef,
            rc.step_table.as_deref(),
            "--save-step-model",
            "tokenq replay",
        )?;
    }
    if let Some(p) = &rc.records {
        write_records(p, &replays[0].result)?;
    }
    if let Some(p) = &rc.series {
        write_series(p, &replays[0].result)?;
    }

    if let Some(dir) = &rc.report {
        let model: &dyn StepModel = match (&table, &fitted) {
            (Some(t), _) => t,
            (None, Some(f)) => f,
            (None, None) => unreachable!("a replay ran, so a step model exists"),
        };
        let e = &cfg;
        let data = crate::continuous_report::build(
            format!("Continuous batching — {}", trace.display()),
            vec![
                ("tool".into(), format!("tokenq {}", env!("CARGO_PKG_VERSION"))),
                ("trace".into(), trace.display().to_string()),
                ("step model".into(), model.describe()),
                (
                    "engine".into(),
                    format!(
                        "max_num_seqs {}, token budget {} tokens/step, KV cache {} blocks × {} tokens, prefix caching {}, async scheduling {}, overhead {} s/step",
                        e.max_num_seqs,
                        e.max_batched_tokens,
                        e.kv_blocks,
                        e.block_size,
                        if e.prefix_caching { "on" } else { "off" },
                        if e.async_scheduling { "on" } else { "off" },
                        e.iteration_overhead_s
                    ),
                ),
            ],
            &reqs,
            &cfg,
            model,
            &replays[0].result,
            &trace.display().to_string(),
        )
        .context("--report: capacity comparison")?;
        let w = reports::continuous::write_continuous_report(&data, dir)
            .with_context(|| format!("--report {}", dir.display()))?;
        eprintln!("wrote {}", w.html.display());
    }
    let span = reqs.iter().map(|r| r.arrival_s).fold(0.0, f64::max)
        - reqs
            .iter()
            .map(|r| r.arrival_s)
            .fold(f64::INFINITY, f64::min);
    let out = Output {
        method: queueing::Method::Simulation,
        policy: "continuous",
        note: "deterministic replay of one trace through vLLM's V1 scheduler; no confidence interval (no randomness); latencies are as exact as the step-time model",
        trace: trace.display().to_string(),
        requests: reqs.len(),
        arrival_span_s: span,
        engine: cfg,
        replays,
        fitted_check: check,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_text(&out);
    }
    Ok(())
}

/// Fit the step-time forms to per-layer tables on the KV-feasible region of `cfg` (shared by
/// `--fit-step-model` here and `tokenq fit --step-model-from`).
pub fn fit_tables(
    table: &TableStepModel,
    dir: &Path,
    layers: u32,
    cfg: &EngineConfig,
    seed: u64,
) -> Result<StepTimeCoefficients> {
    let source = format!(
        "per-layer tables {} ({} layers), KV-feasible region of {} blocks × {} tokens, max_num_seqs {}, budget {} tokens, seed {seed}",
        dir.display(),
        layers,
        cfg.kv_blocks,
        cfg.block_size,
        cfg.max_num_seqs,
        cfg.max_batched_tokens
    );
    Ok(fit::steptime::fit_from_tables(table, &source, cfg, seed)?)
}

/// The fitted model's error on the steps a table-model replay ran (`result` must have been
/// simulated with `record_steps`).
pub fn check_on_steps(
    coef: &StepTimeCoefficients,
    result: &ContinuousResult,
    trace: &Path,
    table: &TableStepModel,
) -> tokenq_core::step::ReplayCheck {
    let steps: Vec<_> = result
        .steps
        .iter()
        .map(|(b, dt)| (b.features(), *dt))
        .collect();
    fit::steptime::replay_check(
        coef,
        &format!("{} with {}", trace.display(), table.describe()),
        &steps,
    )
}

/// Replay `trace` with the table model and check `coef` on the steps it ran (for `tokenq fit`).
pub fn replay_check_on_trace(
    coef: &StepTimeCoefficients,
    trace: &Path,
    cfg: &EngineConfig,
    table: &TableStepModel,
) -> Result<tokenq_core::step::ReplayCheck> {
    let reqs = read_trace(trace)?;
    let r = replay(&reqs, cfg, table, true)?;
    Ok(check_on_steps(coef, &r.result, trace, table))
}

/// Put `coef` as the `[step_time]` section into `path` (kept as read if it exists, else a new
/// file whose provenance names `table` and `tool`). `flag` names the option in errors.
pub fn save_step_model(
    path: &Path,
    coef: StepTimeCoefficients,
    table: Option<&Path>,
    flag: &str,
    tool: &str,
) -> Result<()> {
    let mut file = if path.exists() {
        tokenq_core::CoefficientsFile::read(path)
            .with_context(|| format!("{flag} {}", path.display()))?
    } else {
        tokenq_core::CoefficientsFile::new(tokenq_core::Provenance {
            device: table
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            model: String::new(),
            dtype: String::new(),
            sources: table
                .map(|p| vec![p.display().to_string()])
                .unwrap_or_default(),
            method: format!(
                "step-time forms fitted to per-layer tables on the KV-feasible region ({tool})"
            ),
            time_column: "time_us (per-layer tables)".into(),
            tool: format!("tokenq {}", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        })
    };
    file.step_time = Some(coef);
    file.write(path)
        .with_context(|| format!("{flag} {}", path.display()))?;
    Ok(())
}

/// Refuse an output name whose extension promises another format.
fn check_csv_name(flag: &str, path: &Path) -> Result<()> {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if !e.eq_ignore_ascii_case("csv") => bail!(
            "{flag} {}: writes CSV; name the file .csv (convert with any CSV reader, e.g. polars, for Parquet)",
            path.display()
        ),
        _ => Ok(()),
    }
}

fn write_records(path: &Path, r: &ContinuousResult) -> Result<()> {
    use std::fmt::Write as _;
    let mut s = String::from(
        "index,arrival_s,input_tokens,output_tokens,first_token_s,finish_s,ttft_s,tpot_s,e2e_s,preemptions,cached_tokens\n",
    );
    for x in &r.records {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{}",
            x.index,
            x.arrival_s,
            x.input_tokens,
            x.output_tokens,
            x.first_token_s,
            x.finish_s,
            x.ttft_s,
            x.tpot_s.map(|v| v.to_string()).unwrap_or_default(),
            x.e2e_s,
            x.preemptions,
            x.cached_tokens
        );
    }
    std::fs::write(path, s).with_context(|| format!("--records {}: cannot write", path.display()))
}

fn write_series(path: &Path, r: &ContinuousResult) -> Result<()> {
    use std::fmt::Write as _;
    let mut s = String::from("t_s,running,waiting,kv_blocks_used,step_s,tokens\n");
    for p in &r.series {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{}",
            p.t_s, p.running, p.waiting, p.kv_blocks_used, p.step_s, p.tokens
        );
    }
    std::fs::write(path, s).with_context(|| format!("--series {}: cannot write", path.display()))
}

fn row(name: &str, l: &LatencySummary) -> String {
    format!(
        "  {name:<5} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
        l.mean_s, l.p50_s, l.p90_s, l.p99_s, l.max_s
    )
}

fn print_text(o: &Output) {
    let e = &o.engine;
    println!(
        "continuous batching (vLLM V1 scheduler) — simulation: {}",
        o.note
    );
    println!(
        "trace: {} ({} requests over {:.1} s, {:.2} req/s)",
        o.trace,
        o.requests,
        o.arrival_span_s,
        if o.arrival_span_s > 0.0 {
            (o.requests as f64 - 1.0) / o.arrival_span_s
        } else {
            f64::NAN
        }
    );
    println!(
        "engine: max_num_seqs {}, token budget {} tokens/step, KV cache {} blocks × {} tokens = {} tokens, prefix caching {}, async scheduling {}, overhead {} s/step",
        e.max_num_seqs,
        e.max_batched_tokens,
        e.kv_blocks,
        e.block_size,
        u64::from(e.kv_blocks) * u64::from(e.block_size),
        if e.prefix_caching { "on" } else { "off" },
        if e.async_scheduling { "on" } else { "off" },
        e.iteration_overhead_s
    );
    for r in &o.replays {
        let x = &r.result;
        println!();
        println!("step model: {}", r.step_model);
        println!(
            "  {:<5} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "(s)", "mean", "p50", "p90", "p99", "max"
        );
        println!("{}", row("TTFT", &x.ttft));
        println!("{}", row("TPOT", &x.tpot));
        println!("{}", row("E2E", &x.e2e));
        println!(
            "  completed {} requests, {} preemptions, {} iterations, makespan {:.2} s, {:.0} output tokens/s",
            x.completed, x.preemptions, x.iterations, x.makespan_s, x.output_tokens_per_s
        );
        println!(
            "  peak running {} requests, peak KV {} blocks ({:.1}% of the cache), {} prompt tokens from cached blocks",
            x.peak_running,
            x.peak_kv_blocks,
            100.0 * f64::from(x.peak_kv_blocks) / f64::from(e.kv_blocks),
            x.cached_tokens
        );
        println!(
            "  replay took {:.1} ms wall ({:.2} M iterations/s)",
            r.replay_wall_s * 1e3,
            r.iterations_per_s / 1e6
        );
    }
    if let Some(c) = &o.fitted_check {
        println!();
        println!(
            "fitted step model on the {} steps this replay ran: MAPE {:.2}%, bias of summed time {:+.2}%",
            c.steps, c.mape_pct, c.sum_bias_pct
        );
    }
    println!();
    println!(
        "TTFT = first token − arrival; TPOT = (last − first token)/(output − 1); E2E = last token − arrival (vLLM definitions)."
    );
}
