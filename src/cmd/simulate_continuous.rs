//! `tokenq simulate --policy continuous`: iteration-level continuous batching as vLLM's V1
//! scheduler runs it (SERVING.md; library `sim::continuous`), replaying a trace with a
//! step-time model from per-layer tables (`--step-table DIR`) or from the `[step_time]` section
//! of a coefficients file (`--coefficients FILE`). Given both, or `--fit-step-model` with a
//! table, it replays with both models and reports the fitted model's error on the steps the
//! replay actually ran (MAPE and bias of the summed time).
//!
//! `simulate.rs` owns the shared flags (`--trace`, `--coefficients`, `--json`, `--seed`) and
//! flattens [`EngineArgs`]; it calls [`run`] with what it parsed. The result is a deterministic
//! replay of one trace (a simulation without a confidence interval: there is no randomness).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use sim::continuous::{
    ContinuousResult, EngineConfig, FittedStepModel, LatencySummary, Request, SimOptions,
    StepModel, TableStepModel, fit_from_tables, simulate, table::LLAMA_3_1_8B_LAYERS, workload,
};

/// vLLM's defaults for the engine limits.
const DEFAULT_MAX_NUM_SEQS: u32 = 256;
const DEFAULT_MAX_BATCHED_TOKENS: u32 = 2048;
/// KV bytes per token of Llama-3.1-8B in bf16: 2 (K, V) × 32 layers × 8 KV heads × 128 × 2 B.
const LLAMA_3_1_8B_KV_BYTES_PER_TOKEN: f64 = 131_072.0;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Engine settings of the continuous-batching policy (flags, or a TOML file whose keys are the
/// flag names with `_` for `-`; a flag given on the command line wins over the file).
#[derive(Debug, Clone, Default, Args)]
pub struct EngineArgs {
    /// Most requests running at once (vLLM `max_num_seqs`) [default: 256].
    #[arg(long, value_name = "N")]
    pub max_num_seqs: Option<u32>,
    /// Per-iteration token budget (vLLM `max_num_batched_tokens`) [default: 2048].
    #[arg(long, value_name = "TOKENS")]
    pub max_batched_tokens: Option<u32>,
    /// KV cache size in blocks, as the engine reports it at start-up (vLLM logs "# GPU blocks"
    /// / "GPU KV cache size"). Required, here or in --engine-config, unless --kv-memory-gib.
    #[arg(long, value_name = "BLOCKS")]
    pub kv_blocks: Option<u32>,
    /// Tokens per KV block [default: 16].
    #[arg(long, value_name = "TOKENS")]
    pub block_size: Option<u32>,
    /// Prefix caching: re-use cached blocks (a preempted request's own blocks on resume; shared
    /// prefixes named by the trace) [default: on, as vLLM 0.19].
    #[arg(long, value_name = "on|off")]
    pub prefix_caching: Option<OnOff>,
    /// Async scheduling: a busy scheduler sees arrivals one step late [default: off].
    #[arg(long, value_name = "on|off")]
    pub async_scheduling: Option<OnOff>,
    /// Host overhead added to every iteration, seconds [default: 0; vLLM 0.19 with CUDA graphs
    /// hides it, synchronous engines need it].
    #[arg(long, value_name = "SECONDS")]
    pub iteration_overhead_s: Option<f64>,
    /// Directory of per-layer tables (LLMServingSim layout: dense.csv, per_sequence.csv,
    /// attention.csv, optional skew_fit.csv), e.g. datasets/llmservingsim/RTX4090.
    #[arg(long, value_name = "DIR")]
    pub step_table: Option<PathBuf>,
    /// Apply the skew correction for uneven decode contexts (needs skew_fit.csv in the table
    /// directory) [default: off].
    #[arg(long)]
    pub skew: bool,
    /// Decoder layers of the model the tables describe [default: 32, Llama-3.1-8B].
    #[arg(long, value_name = "N")]
    pub layers: Option<u32>,
    /// With --step-table: fit the decode-only and mixed step-time forms to the tables on the
    /// KV-feasible region, replay with both models and report the fit's error on the replay.
    #[arg(long)]
    pub fit_step_model: bool,
    /// Write the fitted step-time model as the [step_time] section of this coefficients file
    /// (added to the file if it exists, else a new file). Implies --fit-step-model.
    #[arg(long, value_name = "FILE.toml")]
    pub save_step_model: Option<PathBuf>,
    /// TOML file with any of the engine settings above.
    #[arg(long, value_name = "FILE.toml")]
    pub engine_config: Option<PathBuf>,
    /// Write one CSV row per request (arrival, first token, finish, TTFT, TPOT, E2E in seconds;
    /// preemptions, cached tokens) to this file, from the first step model's replay.
    /// TTFT = first token − arrival; TPOT = (last − first token)/(output − 1); E2E = last token −
    /// arrival (vLLM's definitions).
    #[arg(long, value_name = "FILE.csv")]
    pub records: Option<PathBuf>,
    /// Write the running/waiting/KV-use time series (one row per iteration) to this CSV file.
    #[arg(long, value_name = "FILE.csv")]
    pub series: Option<PathBuf>,
    /// Write a self-contained HTML report (report.html plus one SVG per figure) to this
    /// directory: TTFT/TPOT/E2E distributions, running/waiting/KV use over time, and the
    /// capacity comparison with the paper's batching policies on the same trace.
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Estimate --kv-blocks from the memory left for the KV cache, in GiB, assuming
    /// Llama-3.1-8B bf16 (128 KiB per token). Overshoots the engine's own figure (SERVING.md:
    /// ~30%, TTFT off by ~20%), so a warning is printed; prefer --kv-blocks.
    #[arg(long, value_name = "GIB")]
    pub kv_memory_gib: Option<f64>,
}

/// `on` / `off` switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    /// Enabled.
    On,
    /// Disabled.
    Off,
}

impl OnOff {
    fn on(self) -> bool {
        self == OnOff::On
    }
}

/// The TOML form of the engine settings.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineFile {
    max_num_seqs: Option<u32>,
    max_batched_tokens: Option<u32>,
    kv_blocks: Option<u32>,
    block_size: Option<u32>,
    prefix_caching: Option<bool>,
    async_scheduling: Option<bool>,
    iteration_overhead_s: Option<f64>,
    step_table: Option<PathBuf>,
    skew: Option<bool>,
    layers: Option<u32>,
}

/// Settings after merging flags, file and defaults.
#[derive(Debug)]
struct Settings {
    engine: EngineConfig,
    step_table: Option<PathBuf>,
    skew: bool,
    layers: u32,
}

fn settings(args: &EngineArgs, coef: Option<&fit::CoefficientsFile>) -> Result<Settings> {
    let file: EngineFile = match &args.engine_config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("--engine-config {}: cannot read", p.display()))?;
            toml::from_str(&text).map_err(|e| {
                anyhow!(
                    "--engine-config {}: {}; keys are max_num_seqs, max_batched_tokens, kv_blocks, block_size, prefix_caching, async_scheduling, iteration_overhead_s, step_table, skew, layers",
                    p.display(),
                    e.message()
                )
            })?
        }
        None => EngineFile::default(),
    };
    let block_size = args.block_size.or(file.block_size).unwrap_or(16);
    let measured = coef.and_then(|c| measured_kv_blocks(c, block_size));
    let kv_blocks = match (
        args.kv_blocks.or(file.kv_blocks),
        measured,
        args.kv_memory_gib,
    ) {
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
            "--kv-blocks is required: give the KV cache size in blocks that the engine reports at start-up (vLLM: \"# GPU blocks\"), e.g. --kv-blocks 2588 for Llama-3.1-8B on an RTX 4090 (or a --coefficients file with a measured [[kv_capacity]])"
        ),
    };
    // A relative step_table in the file is relative to the file.
    let file_table = file.step_table.map(|t| match &args.engine_config {
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
        prefix_caching: args
            .prefix_caching
            .map(OnOff::on)
            .or(file.prefix_caching)
            .unwrap_or(true),
        async_scheduling: args
            .async_scheduling
            .map(OnOff::on)
            .or(file.async_scheduling)
            .unwrap_or(false),
        iteration_overhead_s: args
            .iteration_overhead_s
            .or(file.iteration_overhead_s)
            .unwrap_or(0.0),
    };
    engine.validate()?;
    Ok(Settings {
        engine,
        step_table: args.step_table.clone().or(file_table),
        skew: args.skew || file.skew.unwrap_or(false),
        layers: args.layers.or(file.layers).unwrap_or(LLAMA_3_1_8B_LAYERS),
    })
}

/// KV blocks implied by the measured capacity in a coefficients file: the largest
/// `max_concurrent_requests × ⌈sequence_tokens / block_size⌉` over its `[[kv_capacity]]` rows
/// (each such batch was seen to fit, so the cache holds at least that many blocks).
fn measured_kv_blocks(c: &fit::CoefficientsFile, block_size: u32) -> Option<(u32, String)> {
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

/// Read a trace: LLMServingSim's workload (`input_toks,output_toks,arrival_time_ns`, with
/// `X.prefix.csv` beside `X.lengths.csv`) here; anything else through `sim::trace` (the tokenq
/// CSV `arrival_s,input_tokens,output_tokens[,prefix_parent,shared_prefix_blocks]`, the Azure
/// format, or a built-in name such as `azure-conv`).
pub(crate) fn read_trace(path: &Path) -> Result<Vec<Request>> {
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
    fitted_check: Option<fit::steptime::ReplayCheck>,
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

/// Run the continuous policy. `trace` and `coefficients` come from `simulate`'s shared flags;
/// `seed` drives the sampling of step configurations when a step model is fitted.
pub fn run(
    args: &EngineArgs,
    trace: &Path,
    coefficients: Option<&Path>,
    json: bool,
    seed: u64,
) -> Result<()> {
    let coef_file = match coefficients {
        Some(p) => Some(
            fit::CoefficientsFile::read(p)
                .with_context(|| format!("--coefficients {}", p.display()))?,
        ),
        None => None,
    };
    let s = settings(args, coef_file.as_ref())?;
    if let Some(p) = &args.records {
        check_csv_name("--records", p)?;
    }
    if let Some(p) = &args.series {
        check_csv_name("--series", p)?;
    }
    let reqs = read_trace(trace)?;
    let cfg = s.engine;
    let table = match &s.step_table {
        Some(dir) => Some(
            TableStepModel::load(dir, s.layers, s.skew)
                .with_context(|| format!("--step-table {}", dir.display()))?,
        ),
        None => None,
    };
    let from_file = coef_file
        .and_then(|f| f.step_time)
        .map(|c| FittedStepModel { coefficients: c });
    if let (None, None, Some(p)) = (&table, &from_file, coefficients) {
        bail!(
            "--coefficients {}: no [step_time] section; create one with `tokenq simulate --policy continuous --step-table DIR --save-step-model FILE ...`, or give --step-table",
            p.display()
        );
    }
    let want_fit = args.fit_step_model || args.save_step_model.is_some();
    if want_fit && table.is_none() {
        bail!(
            "--fit-step-model/--save-step-model need --step-table DIR (the tables the model is fitted to)"
        );
    }
    let fitted_now = match (&table, want_fit) {
        (Some(t), true) => Some(FittedStepModel {
            coefficients: fit_tables(
                t,
                s.step_table.as_deref().unwrap_or(Path::new("")),
                s.layers,
                &cfg,
                seed,
            )?,
        }),
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
                check = Some(check_on_steps(&f.coefficients, &r.result, trace, t));
            }
            replays.push(r);
            if let Some(f) = f {
                replays.push(replay(&reqs, &cfg, f, false)?);
            }
        }
        (None, Some(f)) => replays.push(replay(&reqs, &cfg, f, false)?),
    }

    if let (Some(path), Some(f)) = (&args.save_step_model, &fitted) {
        let mut coef = f.coefficients.clone();
        coef.replay_check = check.clone();
        save_step_model(
            path,
            coef,
            s.step_table.as_deref(),
            "--save-step-model",
            "tokenq simulate --policy continuous",
        )?;
    }
    if let Some(p) = &args.records {
        write_records(p, &replays[0].result)?;
    }
    if let Some(p) = &args.series {
        write_series(p, &replays[0].result)?;
    }

    if let Some(dir) = &args.report {
        let model: &dyn StepModel = match (&table, &fitted) {
            (Some(t), _) => t,
            (None, Some(f)) => f,
            (None, None) => unreachable!("a replay ran, so a step model exists"),
        };
        let e = &cfg;
        let data = super::continuous_report::build(
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
pub(crate) fn fit_tables(
    table: &TableStepModel,
    dir: &Path,
    layers: u32,
    cfg: &EngineConfig,
    seed: u64,
) -> Result<fit::steptime::StepTimeCoefficients> {
    let source = format!(
        "per-layer tables {} ({} layers), KV-feasible region of {} blocks × {} tokens, max_num_seqs {}, budget {} tokens, seed {seed}",
        dir.display(),
        layers,
        cfg.kv_blocks,
        cfg.block_size,
        cfg.max_num_seqs,
        cfg.max_batched_tokens
    );
    Ok(fit_from_tables(table, &source, cfg, seed)?)
}

/// The fitted model's error on the steps a table-model replay ran (`result` must have been
/// simulated with `record_steps`).
pub(crate) fn check_on_steps(
    coef: &fit::steptime::StepTimeCoefficients,
    result: &ContinuousResult,
    trace: &Path,
    table: &TableStepModel,
) -> fit::steptime::ReplayCheck {
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
pub(crate) fn replay_check_on_trace(
    coef: &fit::steptime::StepTimeCoefficients,
    trace: &Path,
    cfg: &EngineConfig,
    table: &TableStepModel,
) -> Result<fit::steptime::ReplayCheck> {
    let reqs = read_trace(trace)?;
    let r = replay(&reqs, cfg, table, true)?;
    Ok(check_on_steps(coef, &r.result, trace, table))
}

/// Put `coef` as the `[step_time]` section into `path` (kept as read if it exists, else a new
/// file whose provenance names `table` and `tool`). `flag` names the option in errors.
pub(crate) fn save_step_model(
    path: &Path,
    coef: fit::steptime::StepTimeCoefficients,
    table: Option<&Path>,
    flag: &str,
    tool: &str,
) -> Result<()> {
    let mut file = if path.exists() {
        fit::CoefficientsFile::read(path).with_context(|| format!("{flag} {}", path.display()))?
    } else {
        fit::CoefficientsFile::new(fit::Provenance {
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
