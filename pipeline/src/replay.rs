//! `tokenq replay` (alias `tokenq simulate --policy continuous`): iteration-level continuous
//! batching as vLLM's V1 scheduler runs it (docs/serving.md; library `sim::continuous`),
//! replaying a trace with a step-time model from per-layer tables (`step_table`) or from the
//! `[step_time]` section of a coefficients file. Given both, or `fit_step_model` with a table,
//! it replays with both models and reports the fitted model's error on the steps the replay
//! actually ran (MAPE and bias of the summed time). The result is a deterministic replay of one
//! trace (a simulation without a confidence interval: there is no randomness).
//!
//! Several GPUs (docs/serving.md "Several GPUs"): the tables are read for the engine's
//! tensor-parallel degree and expert parallelism (`sim::continuous::Parallelism`: one rank's
//! shard plus its collectives), and `data_parallel` engines are replayed together
//! (`sim::continuous::simulate_data_parallel`: vLLM's DP routing, and for an MoE model the
//! lockstep of the engines). Results are reported merged and per engine.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use sim::continuous::{
    ContinuousResult, DataParallel, EngineConfig, LatencySummary, Link, Parallelism, Request,
    SimOptions, StepModel, StepTimeCoefficients, TableOptions, TableStepModel, simulate,
    simulate_data_parallel, workload,
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
    /// Apply the skew correction of the tables' attention (`None`: when the table directory
    /// holds skew_fit.csv).
    pub skew: Option<bool>,
    /// Decoder layers of the model (`None`: the tables' model_config.json, else 32).
    pub layers: Option<u32>,
    /// Tensor-parallel degree, expert-parallel ranks and the link of each engine.
    pub parallel: Parallelism,
    /// Data-parallel engines and their routing (`lockstep` is set from `dp_lockstep`).
    pub data_parallel: DataParallel,
    /// Step the DP engines together (`None`: for an MoE model).
    pub dp_lockstep: Option<bool>,
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
    /// Replay this many requests: the first ones of the trace, or the trace looped end to end
    /// ([`loop_requests`]); `None` = the trace once.
    pub requests: Option<u64>,
}

/// What a replay writes besides its summary (the flags of the same names).
#[derive(Debug, Clone, Default)]
pub struct ReplayOutputs {
    /// `--fit-step-model`.
    pub fit_step_model: bool,
    /// `--save-step-model`.
    pub save_step_model: Option<PathBuf>,
    /// `--records`.
    pub records: Option<PathBuf>,
    /// `--series`.
    pub series: Option<PathBuf>,
    /// `--report`.
    pub report: Option<PathBuf>,
}

impl ReplayConfig {
    /// The configuration from the flags: the engine settings merged with `--engine-config` and
    /// the defaults ([`settings`]), the coefficients file read; `(json, seed)` as given.
    pub fn from_flags(
        engine: &EngineFile,
        engine_config: Option<&Path>,
        kv_memory_gib: Option<f64>,
        trace: &Path,
        coefficients: Option<&Path>,
        out: ReplayOutputs,
        (json, seed): (bool, u64),
    ) -> Result<Self> {
        let coefficients_file = match coefficients {
            Some(p) => Some(
                CoefficientsFile::read(p)
                    .with_context(|| format!("--coefficients {}", p.display()))?,
            ),
            None => None,
        };
        let s = settings(
            engine,
            engine_config,
            kv_memory_gib,
            coefficients_file.as_ref(),
        )?;
        Ok(ReplayConfig {
            trace: trace.to_path_buf(),
            coefficients: coefficients.map(Path::to_path_buf),
            coefficients_file,
            engine: s.engine,
            step_table: s.step_table,
            skew: s.skew,
            layers: s.layers,
            parallel: s.parallel,
            data_parallel: s.data_parallel,
            dp_lockstep: s.dp_lockstep,
            fit_step_model: out.fit_step_model,
            save_step_model: out.save_step_model,
            records: out.records,
            series: out.series,
            report: out.report,
            json,
            seed,
            requests: None,
        })
    }
}

/// `tokenq simulate … --policy continuous …` is `tokenq replay …` (scripts written before the
/// replay had its own command keep working): drop the policy flag and rename the command
/// (tested in tests/cli_continuous.rs).
pub fn alias_args(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if args.get(1).is_none_or(|a| a != "simulate") {
        return args;
    }
    let pos = args.iter().position(|a| a == "--policy=continuous");
    let pair = args
        .windows(2)
        .position(|w| w[0] == "--policy" && w[1] == "continuous");
    match (pos, pair) {
        (Some(i), _) => {
            args.remove(i);
        }
        (None, Some(i)) => {
            args.drain(i..i + 2);
        }
        (None, None) => return args,
    }
    args[1] = "replay".into();
    args
}

/// Most requests a replay holds (one record each).
pub const MAX_REPLAY_REQUESTS: u64 = 10_000_000;

/// `n` requests from a trace: its first `n`, or the trace looped end to end as the
/// simulator loops a trace for `simulate --requests` — each lap's arrivals shifted by the
/// trace's span plus its mean gap (so laps do not overlap), its prefix links kept within the
/// lap.
pub fn loop_requests(reqs: &[Request], n: u64) -> Result<Vec<Request>> {
    if n == 0 {
        bail!("--requests 0: give at least 1 request");
    }
    if n > MAX_REPLAY_REQUESTS {
        bail!(
            "--requests {n}: at most {MAX_REPLAY_REQUESTS} (the replay keeps a record per request)"
        );
    }
    let len = reqs.len();
    if len == 0 {
        bail!("--requests {n}: the trace has no requests to loop");
    }
    let first = reqs[0].arrival_s;
    let span = reqs[len - 1].arrival_s - first;
    let gap = if len > 1 && span > 0.0 {
        span / (len - 1) as f64
    } else {
        1.0
    };
    let period = span + gap;
    let mut out = Vec::with_capacity(n as usize);
    for k in 0..n as usize {
        let (lap, i) = (k / len, k % len);
        let mut r = reqs[i];
        r.arrival_s += lap as f64 * period;
        if let Some(p) = r.prefix_parent {
            let shifted = u32::try_from(p as usize + lap * len)
                .map_err(|_| anyhow!("--requests {n}: too many requests to index"))?;
            r.prefix_parent = Some(shifted);
        }
        out.push(r);
    }
    Ok(out)
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
    /// Each data-parallel engine's own result (empty with one engine).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    engines: Vec<EngineReplay>,
    /// Time in collectives (TP all-reduces, EP all-gather/reduce-scatter), table model only.
    #[serde(skip_serializing_if = "Option::is_none")]
    collectives: Option<Collectives>,
    /// Wall-clock time of the replay on this machine, seconds.
    replay_wall_s: f64,
    /// Engine iterations simulated per wall-clock second.
    iterations_per_s: f64,
}

/// One data-parallel engine's result.
#[derive(Debug, Serialize)]
struct EngineReplay {
    engine: usize,
    requests: usize,
    #[serde(flatten)]
    result: ContinuousResult,
}

/// The collectives' share of the step time over a replay.
#[derive(Debug, Serialize)]
struct Collectives {
    /// Seconds of the steps spent in collectives (one rank; a lockstep group step counted once).
    seconds: f64,
    /// Seconds of step time (the same steps).
    step_seconds: f64,
    /// seconds / step_seconds.
    share: f64,
}

/// The multi-GPU layout, in the JSON output when there is one.
#[derive(Debug, Serialize)]
struct ParallelOut {
    tensor_parallel: u32,
    data_parallel: u32,
    expert_parallel: u32,
    dp_lockstep: bool,
    dp_stats_interval_s: f64,
    link: Link,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    parallel: Option<ParallelOut>,
    replays: Vec<Replay>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fitted_check: Option<tokenq_core::step::ReplayCheck>,
}

fn replay(
    reqs: &[Request],
    cfg: &EngineConfig,
    dp: &DataParallel,
    model: &dyn StepModel,
    record_steps: bool,
) -> Result<Replay> {
    let t0 = Instant::now();
    let opts = SimOptions {
        record_steps,
        check_invariants: false,
    };
    let (result, engines) = if dp.engines > 1 {
        let r = simulate_data_parallel(reqs, cfg, dp, model, opts)?;
        let engines = r
            .engines
            .into_iter()
            .enumerate()
            .map(|(engine, result)| EngineReplay {
                engine,
                requests: result.records.len(),
                result,
            })
            .collect();
        (r.merged, engines)
    } else {
        (simulate(reqs, cfg, model, opts)?, Vec::new())
    };
    let wall = t0.elapsed().as_secs_f64();
    Ok(Replay {
        step_model: model.describe(),
        iterations_per_s: result.iterations as f64 / wall.max(1e-9),
        replay_wall_s: wall,
        result,
        engines,
        collectives: None,
    })
}

/// Time in collectives over the steps of a table-model replay: Σ of the step's collectives at
/// its tokens (a lockstep group step at the group's padded tokens, counted once) over Σ step
/// time. `None` when the layout has no collectives.
fn collectives(table: &TableStepModel, r: &Replay, lockstep: bool) -> Option<Collectives> {
    let p = table.parallelism();
    if p.tensor_parallel <= 1 && p.expert_parallel <= 1 {
        return None;
    }
    let (mut comm, mut total) = (0.0, 0.0);
    if lockstep && r.engines.len() > 1 {
        // Every engine records one point per group step (real or dummy): aligned by index.
        let first = &r.engines[0].result.series;
        for (i, pt) in first.iter().enumerate() {
            let t_max = r
                .engines
                .iter()
                .filter_map(|e| e.result.series.get(i))
                .map(|q| q.tokens.max(1))
                .max()
                .unwrap_or(1);
            comm += table.step_collectives_s(t_max);
            total += pt.step_s;
        }
    } else {
        let all: Vec<&ContinuousResult> = if r.engines.is_empty() {
            vec![&r.result]
        } else {
            r.engines.iter().map(|e| &e.result).collect()
        };
        for res in all {
            for pt in &res.series {
                comm += table.step_collectives_s(pt.tokens);
                total += pt.step_s;
            }
        }
    }
    Some(Collectives {
        seconds: comm,
        step_seconds: total,
        share: comm / total,
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
    let reqs = match rc.requests {
        Some(n) => loop_requests(&reqs, n)?,
        None => reqs,
    };
    if rc.engine.iteration_overhead_s > 3600.0 {
        bail!(
            "--iteration-overhead-s {}: at most 3600 s of host time per iteration",
            rc.engine.iteration_overhead_s
        );
    }
    let cfg = rc.engine;
    let table = match &rc.step_table {
        Some(dir) => Some(
            TableStepModel::open(
                dir,
                &TableOptions {
                    layers: rc.layers,
                    skew: rc.skew,
                    parallel: rc.parallel,
                },
            )
            .with_context(|| format!("--step-table {}", dir.display()))?,
        ),
        None => None,
    };
    let par = rc.parallel;
    if table.is_none() && (par.tensor_parallel > 1 || par.expert_parallel > 1) {
        eprintln!(
            "note: --tensor-parallel/--expert-parallel shape the per-layer tables' step time; the fitted [step_time] forms are used as fitted"
        );
    }
    let dp = DataParallel {
        lockstep: rc
            .dp_lockstep
            .unwrap_or_else(|| table.as_ref().is_some_and(TableStepModel::is_moe)),
        ..rc.data_parallel
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
            t.layers(),
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
            let mut r = replay(&reqs, &cfg, &dp, t, f.is_some())?;
            r.collectives = collectives(t, &r, dp.lockstep);
            if let Some(f) = f {
                check = Some(check_on_steps(f, &r.result, trace, t));
            }
            replays.push(r);
            if let Some(f) = f {
                replays.push(replay(&reqs, &cfg, &dp, f, false)?);
            }
        }
        (None, Some(f)) => replays.push(replay(&reqs, &cfg, &dp, f, false)?),
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
        write_records(p, &replays[0].result, dp.engines > 1)?;
    }
    if let Some(p) = &rc.series {
        write_series(p, &replays[0])?;
    }

    if let Some(dir) = &rc.report {
        let model: &dyn StepModel = match (&table, &fitted) {
            (Some(t), _) => t,
            (None, Some(f)) => f,
            (None, None) => unreachable!("a replay ran, so a step model exists"),
        };
        let e = &cfg;
        let mut data = crate::continuous_report::build(
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
            dp.engines,
        )
        .context("--report: capacity comparison")?;
        if let Some(p) = parallel_out(rc, &dp) {
            data.metadata
                .push(("parallelism".into(), describe_parallel(&p)));
        }
        let engine_results: Vec<&ContinuousResult> =
            replays[0].engines.iter().map(|e| &e.result).collect();
        let states = crate::continuous_report::engine_states(&reqs, &cfg, &engine_results);
        let w = reports::continuous::write_continuous_report_with_engines(&data, &states, dir)
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
        parallel: parallel_out(rc, &dp),
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

/// The layout for the output, when it is not one engine on one GPU.
fn parallel_out(rc: &ReplayConfig, dp: &DataParallel) -> Option<ParallelOut> {
    let p = rc.parallel;
    if p.tensor_parallel == 1 && p.expert_parallel == 1 && dp.engines == 1 {
        return None;
    }
    Some(ParallelOut {
        tensor_parallel: p.tensor_parallel,
        data_parallel: dp.engines,
        expert_parallel: p.expert_parallel,
        dp_lockstep: dp.lockstep && dp.engines > 1,
        dp_stats_interval_s: dp.stats_interval_s,
        link: p.link,
    })
}

fn describe_parallel(p: &ParallelOut) -> String {
    let mut s = format!(
        "TP {} × DP {} engines (GPUs: {})",
        p.tensor_parallel,
        p.data_parallel,
        p.tensor_parallel * p.data_parallel
    );
    if p.expert_parallel > 1 {
        s += &format!(", experts over {} EP ranks", p.expert_parallel);
    }
    if p.data_parallel > 1 {
        s += &format!(
            ", requests routed by vLLM's DP balancer (least 4·waiting + running, counts published every {} s){}",
            p.dp_stats_interval_s,
            if p.dp_lockstep {
                ", engines in lockstep (dummy steps, padded to the group's largest step)"
            } else {
                ", engines independent"
            }
        );
    }
    if p.tensor_parallel > 1 || p.expert_parallel > 1 {
        s += &format!(
            ", collectives on a ring of {} GB/s links, {} µs per message",
            p.link.bandwidth_gb_s,
            p.link.latency_ns / 1e3
        );
    }
    s
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
    let r = replay(&reqs, cfg, &DataParallel::default(), table, true)?;
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

/// One row per request; with several engines a last column `engine` says which served it.
fn write_records(path: &Path, r: &ContinuousResult, with_engine: bool) -> Result<()> {
    use std::fmt::Write as _;
    let mut s = String::from(
        "index,arrival_s,input_tokens,output_tokens,first_token_s,finish_s,ttft_s,tpot_s,e2e_s,preemptions,cached_tokens",
    );
    s.push_str(if with_engine { ",engine\n" } else { "\n" });
    for x in &r.records {
        let _ = write!(
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
        if with_engine {
            let _ = write!(s, ",{}", x.engine);
        }
        s.push('\n');
    }
    std::fs::write(path, s).with_context(|| format!("--records {}: cannot write", path.display()))
}

/// One row per iteration; with several engines, one row per engine iteration (dummy steps
/// included, with 0 tokens) and a last column `engine`.
fn write_series(path: &Path, r: &Replay) -> Result<()> {
    use std::fmt::Write as _;
    let mut s = String::from("t_s,running,waiting,kv_blocks_used,step_s,tokens");
    if r.engines.is_empty() {
        s.push('\n');
        for p in &r.result.series {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{}",
                p.t_s, p.running, p.waiting, p.kv_blocks_used, p.step_s, p.tokens
            );
        }
    } else {
        s.push_str(",engine\n");
        for e in &r.engines {
            for p in &e.result.series {
                let _ = writeln!(
                    s,
                    "{},{},{},{},{},{},{}",
                    p.t_s, p.running, p.waiting, p.kv_blocks_used, p.step_s, p.tokens, e.engine
                );
            }
        }
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
        "engine{}: max_num_seqs {}, token budget {} tokens/step, KV cache {} blocks × {} tokens = {} tokens, prefix caching {}, async scheduling {}, overhead {} s/step",
        if o.parallel.as_ref().is_some_and(|p| p.data_parallel > 1) {
            " (each)"
        } else {
            ""
        },
        e.max_num_seqs,
        e.max_batched_tokens,
        e.kv_blocks,
        e.block_size,
        u64::from(e.kv_blocks) * u64::from(e.block_size),
        if e.prefix_caching { "on" } else { "off" },
        if e.async_scheduling { "on" } else { "off" },
        e.iteration_overhead_s
    );
    if let Some(p) = &o.parallel {
        println!("parallelism: {}", describe_parallel(p));
    }
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
        let engines = r.engines.len().max(1) as f64;
        println!(
            "  peak running {} requests, peak KV {} blocks ({:.1}% of the cache{}), {} prompt tokens from cached blocks",
            x.peak_running,
            x.peak_kv_blocks,
            100.0 * f64::from(x.peak_kv_blocks) / (f64::from(e.kv_blocks) * engines),
            if r.engines.is_empty() {
                ""
            } else {
                "s, all engines together"
            },
            x.cached_tokens
        );
        if let Some(c) = &r.collectives {
            println!(
                "  collectives: {:.2} s of {:.2} s of step time ({:.1}%)",
                c.seconds,
                c.step_seconds,
                100.0 * c.share
            );
        }
        for en in &r.engines {
            let y = &en.result;
            println!(
                "  engine {}: {} requests; TTFT mean {:.3} p50 {:.3} p90 {:.3} p99 {:.3}; TPOT mean {:.4}; E2E mean {:.3} p99 {:.3} s; {} preemptions, {} iterations{}, peak running {}, peak KV {} blocks, last completion {:.2} s",
                en.engine,
                en.requests,
                y.ttft.mean_s,
                y.ttft.p50_s,
                y.ttft.p90_s,
                y.ttft.p99_s,
                y.tpot.mean_s,
                y.e2e.mean_s,
                y.e2e.p99_s,
                y.preemptions,
                y.iterations,
                if y.dummy_steps > 0 {
                    format!(" (+{} dummy)", y.dummy_steps)
                } else {
                    String::new()
                },
                y.peak_running,
                y.peak_kv_blocks,
                y.makespan_s
            );
        }
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

// ---------------------------------------------------------------------------------------------
// Engine settings files (`--engine-config`)

/// The engine settings by name: the TOML file's form, and the flags' (`None` = not given).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineFile {
    /// `max_num_seqs`.
    pub max_num_seqs: Option<u32>,
    /// `max_batched_tokens`.
    pub max_batched_tokens: Option<u32>,
    /// `kv_blocks`.
    pub kv_blocks: Option<u32>,
    /// `block_size`.
    pub block_size: Option<u32>,
    /// `prefix_caching`.
    pub prefix_caching: Option<bool>,
    /// `async_scheduling`.
    pub async_scheduling: Option<bool>,
    /// `iteration_overhead_s`.
    pub iteration_overhead_s: Option<f64>,
    /// `step_table`.
    pub step_table: Option<PathBuf>,
    /// `skew`.
    pub skew: Option<bool>,
    /// `layers`.
    pub layers: Option<u32>,
    /// `tensor_parallel`.
    pub tensor_parallel: Option<u32>,
    /// `data_parallel`.
    pub data_parallel: Option<u32>,
    /// `expert_parallel`.
    pub expert_parallel: Option<bool>,
    /// `dp_lockstep`.
    pub dp_lockstep: Option<bool>,
    /// `dp_stats_interval_s`.
    pub dp_stats_interval_s: Option<f64>,
    /// `link_bandwidth_gb_s`.
    pub link_bandwidth_gb_s: Option<f64>,
    /// `link_latency_ns`.
    pub link_latency_ns: Option<f64>,
}

/// vLLM's defaults for the engine limits.
const DEFAULT_MAX_NUM_SEQS: u32 = 256;
const DEFAULT_MAX_BATCHED_TOKENS: u32 = 2048;
/// KV bytes per token of Llama-3.1-8B in bf16: 2 (K, V) × 32 layers × 8 KV heads × 128 × 2 B.
const LLAMA_3_1_8B_KV_BYTES_PER_TOKEN: f64 = 131_072.0;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Engine settings after merging flags, the settings file and vLLM's defaults, in that order.
#[derive(Debug)]
pub struct Settings {
    pub engine: EngineConfig,
    pub step_table: Option<PathBuf>,
    /// `None`: on when the table directory holds skew_fit.csv.
    pub skew: Option<bool>,
    /// `None`: from the tables' model_config.json, else 32.
    pub layers: Option<u32>,
    pub parallel: Parallelism,
    pub data_parallel: DataParallel,
    /// `None`: on for an MoE model.
    pub dp_lockstep: Option<bool>,
}

/// The step model of a continuous-batching question: the per-layer tables of `s.step_table`
/// when given, else the `[step_time]` section of `coef` (`coef_flag` names the file in errors).
/// Returns the model and its description.
pub fn open_step_model(
    s: &Settings,
    coef: Option<&CoefficientsFile>,
    coef_flag: &str,
) -> Result<(std::sync::Arc<dyn StepModel + Send + Sync>, String)> {
    if let Some(dir) = &s.step_table {
        let t = TableStepModel::open(
            dir,
            &TableOptions {
                layers: s.layers,
                skew: s.skew,
                parallel: s.parallel,
            },
        )
        .with_context(|| format!("--step-table {}", dir.display()))?;
        let d = t.describe();
        return Ok((std::sync::Arc::new(t), d));
    }
    match coef.map(|c| c.step_time.clone()) {
        Some(Some(st)) => {
            let d = st.describe();
            Ok((std::sync::Arc::new(st), d))
        }
        None => bail!(
            "no step model: give --step-table DIR (per-layer tables) or --coefficients FILE with a [step_time] section"
        ),
        Some(None) => bail!(
            "{coef_flag}: no [step_time] section; give --step-table DIR, or fit one with `tokenq fit --step-model` or `tokenq replay --step-table DIR --save-step-model FILE`"
        ),
    }
}

/// Merge the engine settings given as flags (`args`, the file's keys), the `--engine-config`
/// file and the defaults; `--kv-blocks` may come from a measured capacity in `coef` or, with a
/// warning, from `--kv-memory-gib`.
pub fn settings(
    args: &EngineFile,
    engine_config: Option<&Path>,
    kv_memory_gib: Option<f64>,
    coef: Option<&CoefficientsFile>,
) -> Result<Settings> {
    let file: EngineFile = match engine_config {
        Some(p) => read_engine_file(p)?,
        None => EngineFile::default(),
    };
    let block_size = args.block_size.or(file.block_size).unwrap_or(16);
    let measured = coef.and_then(|c| measured_kv_blocks(c, block_size));
    let kv_blocks = match (args.kv_blocks.or(file.kv_blocks), measured, kv_memory_gib) {
        (Some(b), _, _) => b,
        (None, Some((b, why)), _) => {
            eprintln!("note: --kv-blocks not given; using {b} blocks derived from {why}");
            b
        }
        (None, None, Some(gib)) => {
            if !(gib.is_finite() && gib > 0.0) {
                bail!("--kv-memory-gib must be a positive number of GiB (got {gib})");
            }
            let blocks =
                (gib * GIB / (LLAMA_3_1_8B_KV_BYTES_PER_TOKEN * f64::from(block_size))).floor();
            eprintln!(
                "warning: --kv-blocks estimated from memory as {blocks} blocks (Llama-3.1-8B bf16, 128 KiB/token); estimates like this overshoot the engine's figure by ~30% and move TTFT by ~20% — use the \"# GPU blocks\" the engine logs at start-up"
            );
            blocks as u32
        }
        (None, None, None) => bail!(
            "--kv-blocks is required: give the KV cache size in blocks that the engine reports at start-up (vLLM: \"# GPU blocks\"), e.g. --kv-blocks 2588 for Llama-3.1-8B on an RTX 4090 (or a --coefficients file with a measured [[kv_capacity]]); under --data-parallel it is each engine's"
        ),
    };
    // A relative step_table in the file is relative to the file.
    let file_table = file.step_table.map(|t| match engine_config {
        Some(cfg) if t.is_relative() => cfg.parent().unwrap_or(Path::new(".")).join(t),
        _ => t,
    });
    let engine = EngineConfig {
        max_num_seqs: args
            .max_num_seqs
            .or(file.max_num_seqs)
            .unwrap_or(DEFAULT_MAX_NUM_SEQS),
        max_batched_tokens: args
            .max_batched_tokens
            .or(file.max_batched_tokens)
            .unwrap_or(DEFAULT_MAX_BATCHED_TOKENS),
        kv_blocks,
        block_size,
        prefix_caching: args.prefix_caching.or(file.prefix_caching).unwrap_or(true),
        async_scheduling: args
            .async_scheduling
            .or(file.async_scheduling)
            .unwrap_or(false),
        iteration_overhead_s: args
            .iteration_overhead_s
            .or(file.iteration_overhead_s)
            .unwrap_or(0.0),
    };
    engine.validate()?;
    let skew = args.skew.or(file.skew);
    let tp = args.tensor_parallel.or(file.tensor_parallel).unwrap_or(1);
    let dp = args.data_parallel.or(file.data_parallel).unwrap_or(1);
    if tp == 0 {
        bail!("--tensor-parallel must be at least 1 (got 0)");
    }
    if dp == 0 {
        bail!("--data-parallel must be at least 1 (got 0)");
    }
    let ep_on = args
        .expert_parallel
        .or(file.expert_parallel)
        .unwrap_or(false);
    let link = Link {
        bandwidth_gb_s: args
            .link_bandwidth_gb_s
            .or(file.link_bandwidth_gb_s)
            .unwrap_or(Link::default().bandwidth_gb_s),
        latency_ns: args
            .link_latency_ns
            .or(file.link_latency_ns)
            .unwrap_or(Link::default().latency_ns),
    };
    if !(link.bandwidth_gb_s.is_finite() && link.bandwidth_gb_s > 0.0) {
        bail!(
            "--link-bandwidth-gb-s must be a positive number of GB/s (got {})",
            link.bandwidth_gb_s
        );
    }
    if !(link.latency_ns.is_finite() && link.latency_ns >= 0.0) {
        bail!(
            "--link-latency-ns must be a number of ns ≥ 0 (got {})",
            link.latency_ns
        );
    }
    let stats = args
        .dp_stats_interval_s
        .or(file.dp_stats_interval_s)
        .unwrap_or(sim::continuous::cluster::DP_STATS_INTERVAL_S);
    if !(stats.is_finite() && stats >= 0.0) {
        bail!("--dp-stats-interval-s must be a number of seconds ≥ 0 (got {stats})");
    }
    Ok(Settings {
        engine,
        step_table: args.step_table.clone().or(file_table),
        skew,
        layers: args.layers.or(file.layers),
        parallel: Parallelism {
            tensor_parallel: tp,
            // vLLM: the expert-parallel group spans the data-parallel × tensor-parallel ranks.
            expert_parallel: if ep_on { dp * tp } else { 1 },
            link,
        },
        data_parallel: DataParallel {
            engines: dp,
            lockstep: false,
            stats_interval_s: stats,
        },
        dp_lockstep: args.dp_lockstep.or(file.dp_lockstep),
    })
}

/// The keys of a TOML engine-settings file.
pub const TOML_KEYS: &str = "max_num_seqs, max_batched_tokens, kv_blocks, block_size, prefix_caching, async_scheduling, iteration_overhead_s, step_table, skew, layers, tensor_parallel, data_parallel, expert_parallel, dp_lockstep, dp_stats_interval_s, link_bandwidth_gb_s, link_latency_ns";

/// Read `--engine-config`: TOML, or (by a `.json` name or a leading `{`) a run's settings.
pub fn read_engine_file(p: &Path) -> Result<EngineFile> {
    let text = std::fs::read_to_string(p)
        .with_context(|| format!("--engine-config {}: cannot read", p.display()))?;
    let is_json = p
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        || text.trim_start().starts_with('{');
    if is_json {
        return run_settings(p, &text);
    }
    toml::from_str(&text).map_err(|e: toml::de::Error| {
        anyhow!(
            "--engine-config {}: {}; keys are {TOML_KEYS}",
            p.display(),
            tokenq_core::describe_toml_error(&text, &e)
        )
    })
}

/// The settings of a real run as LLMServingSim's benchmark records them: `engine_meta.json`
/// (vLLM's engine kwargs: `max_num_seqs`, `max_num_batched_tokens`, `tensor_parallel_size`,
/// `data_parallel_size`, `enable_expert_parallel`; and `kv_cache` — the engine's own block
/// count — when the run logged it) with the `cluster_config.json` beside it (`link_bw` GB/s,
/// `link_latency` ns), or a `cluster_config.json` alone (its first instance's `tp_size`,
/// `ep_size`, and the instances of its DP group).
fn run_settings(p: &Path, text: &str) -> Result<EngineFile> {
    let bad = |what: String| anyhow!("--engine-config {}: {what}", p.display());
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON ({e})")))?;
    let u32_at = |v: &serde_json::Value, key: &str| -> Result<Option<u32>> {
        match v.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(x) => x
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| bad(format!("`{key}` = {x} is not a non-negative integer"))),
        }
    };
    let mut f = EngineFile::default();
    let cluster = if let Some(kw) = v.get("engine_kwargs") {
        f.max_num_seqs = u32_at(kw, "max_num_seqs")?;
        f.max_batched_tokens = u32_at(kw, "max_num_batched_tokens")?;
        f.tensor_parallel = u32_at(kw, "tensor_parallel_size")?;
        f.data_parallel = u32_at(kw, "data_parallel_size")?;
        f.expert_parallel = kw.get("enable_expert_parallel").and_then(|b| b.as_bool());
        if let Some(kv) = v.get("kv_cache") {
            f.kv_blocks = u32_at(kv, "num_gpu_blocks")?;
            f.block_size = u32_at(kv, "block_size")?;
            f.prefix_caching = kv.get("enable_prefix_caching").and_then(|b| b.as_bool());
        }
        let beside = p
            .parent()
            .unwrap_or(Path::new("."))
            .join("cluster_config.json");
        if beside.is_file() {
            let t = std::fs::read_to_string(&beside)
                .with_context(|| format!("{}: cannot read", beside.display()))?;
            Some(
                serde_json::from_str::<serde_json::Value>(&t)
                    .map_err(|e| anyhow!("{}: not valid JSON ({e})", beside.display()))?,
            )
        } else {
            None
        }
    } else if v.get("nodes").is_some() {
        let inst: Vec<&serde_json::Value> = v["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|n| n["instances"].as_array().into_iter().flatten())
            .collect();
        if let Some(first) = inst.first() {
            f.tensor_parallel = u32_at(first, "tp_size")?;
            let ep = u32_at(first, "ep_size")?.unwrap_or(1);
            f.expert_parallel = Some(ep > 1);
            let group = first.get("dp_group").filter(|g| !g.is_null());
            f.data_parallel = Some(match group {
                Some(g) => inst.iter().filter(|i| i.get("dp_group") == Some(g)).count() as u32,
                None => 1,
            });
        }
        Some(v.clone())
    } else {
        return Err(bad(
            "neither a run's engine_meta.json (engine_kwargs) nor a cluster_config.json (nodes)"
                .into(),
        ));
    };
    if let Some(c) = cluster {
        f.link_bandwidth_gb_s = c.get("link_bw").and_then(|x| x.as_f64());
        f.link_latency_ns = c.get("link_latency").and_then(|x| x.as_f64());
    }
    Ok(f)
}

/// KV blocks implied by the measured capacity in a coefficients file: the largest
/// `max_concurrent_requests × ⌈sequence_tokens / block_size⌉` over its `[[kv_capacity]]` rows
/// (each such batch was seen to fit, so the cache holds at least that many blocks).
pub fn measured_kv_blocks(c: &CoefficientsFile, block_size: u32) -> Option<(u32, String)> {
    c.kv_capacity
        .iter()
        .filter(|k| k.max_concurrent_requests > 0 && k.sequence_tokens > 0)
        .map(|k| {
            let b = k.max_concurrent_requests * k.sequence_tokens.div_ceil(u64::from(block_size));
            (b, k)
        })
        .max_by_key(|(b, _)| *b)
        .and_then(|(b, k)| {
            let b = u32::try_from(b).ok()?;
            Some((
                b,
                format!(
                    "the coefficients file's measured KV capacity ({} requests of {} tokens, {})",
                    k.max_concurrent_requests, k.sequence_tokens, k.source
                ),
            ))
        })
}
