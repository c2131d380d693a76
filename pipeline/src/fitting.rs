//! `tokenq fit`: timings tables (or imported third-party data) → the coefficients file
//! (docs/design.md "Contracts"; the fits are `fit::model` and `fit::steptime`).
//!
//! The binary validates its flags into a [`FitRequest`]; [`run`] checks the output path before
//! any work, fits, writes the file and prints the coefficients with their 95 % intervals, R²,
//! MAPE and the worst held-out error (or JSON).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use fit::FitOptions;
use fit::tables::{TimeColumn, read_steps};
use tokenq_core::CoefficientsFile;
use tokenq_core::coefficients::Provenance;

/// What to fit: timings tables, or a third-party source to import.
#[derive(Debug, Clone)]
pub enum FitInput {
    /// tokenq timings tables (Parquet or CSV; a directory = its shards).
    Profiles {
        /// The tables.
        paths: Vec<PathBuf>,
        /// Which time column to fit.
        time: TimeColumn,
        /// Also fit `[step_time]` to the tables (uniform batches).
        step_model: bool,
    },
    /// Real GPU data of another tool (`--from`).
    Import {
        /// The format.
        source: fit::import::Source,
        /// Its one path.
        path: PathBuf,
    },
    /// `--step-model-from DIR`: `[step_time]` alone, fitted to LLMServingSim per-layer tables.
    StepTables {
        /// The table directory.
        dir: PathBuf,
        /// Decoder layers of the model the tables describe.
        layers: u32,
        /// Apply the tables' skew correction.
        skew: bool,
        /// Replay this trace with the tables and report the fit's error on its steps.
        check_trace: Option<PathBuf>,
    },
}

/// A validated `tokenq fit` invocation.
#[derive(Debug, Clone)]
pub struct FitRequest {
    /// What to fit.
    pub input: FitInput,
    /// The coefficients file to write.
    pub output: PathBuf,
    /// Overwrite an existing output.
    pub force: bool,
    /// Held-out fraction and seed.
    pub options: FitOptions,
    /// Provenance: device, model and numeric type (`None` = unknown).
    pub device: Option<String>,
    /// Model name for the provenance.
    pub model: Option<String>,
    /// Numeric type for the provenance.
    pub dtype: Option<String>,
    /// Engine limits of the step model's feasible region (`kv_blocks` sizes the KV capacity).
    pub engine: sim::continuous::EngineConfig,
    /// Whether `--kv-blocks` was given (the profile step model records the capacity only then).
    pub kv_blocks_given: bool,
    /// Print JSON instead of the table.
    pub json: bool,
    /// Print nothing but errors.
    pub quiet: bool,
}

/// Run `tokenq fit`.
pub fn run(r: &FitRequest) -> Result<()> {
    r.options.validate()?;
    check_output(r)?;
    if let FitInput::StepTables {
        dir,
        layers,
        skew,
        check_trace,
    } = &r.input
    {
        return run_step_tables(r, dir, *layers, *skew, check_trace.as_deref());
    }
    let file = match &r.input {
        FitInput::Profiles {
            paths,
            time,
            step_model,
        } => fit_profiles(r, paths, *time, *step_model)?,
        FitInput::Import { source, path } => fit::import::fit_source(
            *source,
            path,
            r.device.as_deref(),
            r.model.as_deref(),
            r.dtype.as_deref(),
            &r.options,
        )?,
        FitInput::StepTables { .. } => unreachable!("handled above"),
    };
    file.write(&r.output)?;
    // Imports are virtual profiles of third-party data: more passes would not change them.
    if matches!(r.input, FitInput::Profiles { .. }) {
        for w in fit::report::quality_warnings(&file) {
            eprintln!("warning: {w}");
        }
    }
    if r.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "output": r.output.display().to_string(),
                "coefficients": file,
            }))?
        );
    } else if !r.quiet {
        print!("{}", fit::report::render(&file));
        if let Some(c) = &file.step_time {
            print!("{}", fit::report::render_step_time(c));
        }
        println!("wrote {}", r.output.display());
    }
    Ok(())
}

/// The coefficients of tokenq timings tables, with their provenance.
fn fit_profiles(
    r: &FitRequest,
    paths: &[PathBuf],
    time: TimeColumn,
    step_model: bool,
) -> Result<CoefficientsFile> {
    let steps = read_steps(paths, time)?;
    let fitted = fit::fit_steps(&steps.rows, &r.options)?;
    let files: Vec<String> = steps
        .files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let step_time = if step_model {
        let cap = if r.kv_blocks_given {
            u64::from(r.engine.kv_blocks) * u64::from(r.engine.block_size)
        } else {
            0
        };
        let server = is_server_profile(&steps.files);
        let source = format!(
            "tokenq profile {} ({} step rows; uniform batches; mixed steps: prefill form{} plus the decode-only form's decode costs)",
            files.join(", "),
            steps.rows.len(),
            if server {
                " from single requests (a server admits a batch's requests one by one)"
            } else {
                ""
            }
        );
        Some(
            fit::steptime::fit_profile_step_time(
                &source,
                cap,
                &steps.rows,
                r.engine.max_batched_tokens,
                server,
            )
            .context("--step-model")?,
        )
    } else {
        None
    };
    let known = |v: &Option<String>, flag: &str| {
        v.clone()
            .unwrap_or_else(|| format!("unknown (pass --{flag})"))
    };
    let provenance = Provenance {
        device: known(&r.device, "device"),
        model: known(&r.model, "model"),
        dtype: known(&r.dtype, "dtype"),
        sources: files,
        method: format!(
            "tokenq timings tables: median over repetitions per grid point and step, {} rows",
            steps.rows.len()
        ),
        time_column: steps.time_column.into(),
        tool: fit::import::tool(),
        profile_tool: None,
        license: None,
        notes: Vec::new(),
    };
    let mut f = fitted.into_file(provenance, Vec::new());
    f.step_time = step_time;
    Ok(f)
}

/// Whether a timings table was measured at a server (`profile --backend openai`): its run
/// metadata (`X.runs.json` beside `X.parquet`) names the backend.
fn is_server_profile(files: &[PathBuf]) -> bool {
    files.iter().any(|f| {
        let meta = f.with_extension("runs.json");
        std::fs::read_to_string(meta)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| {
                v["runs"]
                    .as_array()
                    .map(|runs| runs.iter().any(|r| r["backend"]["backend"] == "openai"))
            })
            .unwrap_or(false)
    })
}

/// `--step-model-from DIR`: fit, check on a replay, write, print.
fn run_step_tables(
    r: &FitRequest,
    dir: &Path,
    layers: u32,
    skew: bool,
    check_trace: Option<&Path>,
) -> Result<()> {
    let cfg = &r.engine;
    cfg.validate()?;
    let table = sim::continuous::TableStepModel::load(dir, layers, skew)
        .with_context(|| format!("--step-model-from {}", dir.display()))?;
    let mut coef = crate::replay::fit_tables(&table, dir, layers, cfg, r.options.seed)?;
    if let Some(trace) = check_trace {
        coef.replay_check = Some(
            crate::replay::replay_check_on_trace(&coef, trace, cfg, &table)
                .with_context(|| format!("--check-trace {}", trace.display()))?,
        );
    }
    crate::replay::save_step_model(
        &r.output,
        coef.clone(),
        Some(dir),
        "--output",
        "tokenq fit --step-model-from",
    )?;
    if r.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "output": r.output.display().to_string(),
                "step_time": coef,
            }))?
        );
    } else if !r.quiet {
        print!("{}", fit::report::render_step_time(&coef));
        println!("wrote [step_time] to {}", r.output.display());
    }
    Ok(())
}

/// `-o FILE` before any work: not a directory, not a table name, not one of the inputs, and
/// not an existing file without `--force` (`--step-model-from` adds its section to an existing
/// file, so it may exist there).
fn check_output(r: &FitRequest) -> Result<()> {
    let out = &r.output;
    if out.is_dir() {
        bail!(
            "-o {}: is a directory; -o names the coefficients file, e.g. -o coefficients.toml",
            out.display()
        );
    }
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if let Some(e) = ext.as_deref()
        && matches!(e, "parquet" | "pq" | "csv" | "json")
    {
        bail!(
            "-o {}: the coefficients file is TOML, not .{e}; give a name such as -o coefficients.toml",
            out.display()
        );
    }
    if !out.exists() {
        return Ok(());
    }
    let same = |p: &Path| {
        std::fs::canonicalize(p)
            .ok()
            .zip(std::fs::canonicalize(out).ok())
            .is_some_and(|(x, y)| x == y)
    };
    let named: Vec<PathBuf> = match &r.input {
        FitInput::Profiles { paths, .. } => paths.clone(),
        FitInput::Import { path, .. } => vec![path.clone()],
        FitInput::StepTables { check_trace, .. } => check_trace.iter().cloned().collect(),
    };
    let mut inputs = named.clone();
    for p in &named {
        if p.is_dir()
            && let Ok(rd) = std::fs::read_dir(p)
        {
            inputs.extend(rd.filter_map(|e| e.ok().map(|e| e.path())));
        }
    }
    if let Some(i) = inputs.iter().find(|p| same(p)) {
        bail!(
            "-o {} is also an input ({}): writing it would replace that data with TOML; give another -o FILE",
            out.display(),
            i.display()
        );
    }
    if !r.force && !matches!(r.input, FitInput::StepTables { .. }) {
        bail!(
            "-o {}: already exists: choose another -o FILE, or pass --force to overwrite it",
            out.display()
        );
    }
    Ok(())
}
