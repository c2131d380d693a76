//! `tokenq pipeline`: the whole chain in one command (DESIGN.md "The pipeline"):
//! profile → timings table → fit → coefficients file → queueing questions → simulation checks →
//! report (HTML with inline SVG, plus one SVG per figure).
//!
//! With no arguments it profiles the `tiny` random-weight Llama on the CPU over a small grid
//! (`profiler::ProfileConfig::default_tiny`), fits `T(n) = a·n + c` and `t1(b)`, `t2(b)`
//! (paper Fig. 2), and answers two questions for the built-in ShareGPT output lengths:
//!
//! * **max-token limit** (MATH.md §1, §3; paper eqs 1–5, 10–13): M/G/1 with clipping, service
//!   `S = a·min(N, L) + c`, Poisson arrivals at `--load` × the unclipped capacity `1/E[S]`;
//!   `L* = argmax_L F(L)`, `F(L) = β·P(N ≤ L) − (1 − β)·E[W_q](L)` (utility "all or nothing",
//!   β = 119/120 as in the paper's §V-B);
//! * **batch size** (MATH.md §5–§7; paper eqs 18–25): fixed batching `K*` and the dynamic cap
//!   `K*` minimising mean latency by the exact embedded chains (random `T_b`), at `--load` ×
//!   the best fixed-batching throughput `max_K K/E[T_K]`; plus latency against arrival rate
//!   for dynamic and elastic batching with Inoue's bound (eq 16).
//!
//! Each answer is checked by the event-driven simulator (`sim`), and the report shows the
//! prediction beside the simulation's 95% interval. Every number carries its unit and method.
//! The report is written last and atomically: a failed run leaves no `report.html` behind (an
//! old one in `--out` is removed first).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use fit::coefficients::{CoefficientsFile, FitQuality, Provenance};
use fit::tables::{TimeColumn, read_steps};
use fit::{FitOptions, StepRow, fit_steps};
use indicatif::{ProgressBar, ProgressStyle};
use profiler::{
    BackendConfig, CandleSpec, DeviceChoice, Flow, GridPoint, Observer, PlanSummary, PointRecord,
    Precision, ProfileConfig, SyntheticSpec,
};
use queueing::batch::{
    BatchCoeffs, BatchConfig, ChainOptions, LlmBatch, Objective, PaddedTreatment, Policy, analyze,
    inoue_bound, optimize_cap, optimize_fixed,
};
use queueing::dist::TokenDist;
use queueing::impatience::{self, Abandonment, ServiceLaw};
use queueing::mg1::{self, LinearService};
use queueing::token_limit;
use reports::plots::{
    self, BatchSizeInput, BatchTimingInput, DistributionMoments, LatencyFitInput, RateSweepInput,
    TokenLimitInput,
};
use reports::{Figure, Method, Point, Quantity, Recommendation, Report, Series, Table};
use serde::Serialize;

/// Paper §V-B weight of utility against delay in the provider objective (eq 10).
const DEFAULT_BETA: f64 = 119.0 / 120.0;
/// Default offered load: arrival rate as a fraction of the capacity of the system analysed.
const DEFAULT_LOAD: f64 = 0.7;
/// Default patience τ as a multiple of the mean unclipped service time (the paper's §V-B has
/// τ = 60 s against E[S] ≈ 22–30 s).
const DEFAULT_PATIENCE_FACTOR: f64 = 3.0;
/// Paper §V-B cost of a lost user in the impatient objective (eq 11).
const DEFAULT_LOSS_COST: f64 = 4.0;
/// Grid cells of the level-crossing solve of M/G/1+D (second order; 2000 cells ≈ 1e-7 relative).
const IMPATIENCE_GRID: usize = 2000;
/// Largest batch size searched.
const DEFAULT_MAX_BATCH: usize = 64;
/// Points of the max-token-limit sweep.
const LIMIT_POINTS: usize = 40;
/// Max-token limits checked by simulation (as fractions of the sweep range), besides L*.
const SIM_LIMIT_FRACTIONS: [f64; 3] = [0.25, 0.5, 1.0];
/// Arrival rates of the rate sweep, as fractions of the largest stable rate.
const RATE_FRACTIONS: [f64; 9] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
/// Rates of the sweep checked by simulation (indices into RATE_FRACTIONS).
const SIM_RATE_IDX: [usize; 3] = [1, 4, 7];
/// Batch sizes for the E[M_b] / E[T_b] / speed figure.
const MOMENT_BATCHES: [usize; 10] = [1, 2, 3, 4, 6, 8, 12, 16, 32, 64];
/// Upper quantile used as the top of the limit sweep for unbounded laws.
const UNBOUNDED_TOP_QUANTILE: f64 = 0.999;

/// Which backend profiles the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PipelineBackend {
    /// A candle model (default: the tiny random-weight Llama on the CPU).
    Candle,
    /// A known linear latency model with seeded noise: seconds instead of minutes (tests, demos).
    Synthetic,
}

/// Run the whole pipeline and write a report: profile → fit → queueing answers → simulation
/// checks → report.html and one SVG per figure.
///
/// Metrics: TTFT = submission → first token (prefill + queueing); TPOT = (e2e − TTFT)/(output
/// tokens − 1); ITL = gap between consecutive tokens of one request; e2e = submission → last
/// token. Waiting time = arrival → start of service; latency = waiting time + own processing.
#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// Model preset to profile: tiny, tinyllama-1.1b, llama-2-7b, llama-3-8b, qwen2-tiny,
    /// qwen2-0.5b (random weights).
    #[arg(long, default_value = "tiny")]
    pub model: String,
    /// cpu, cuda or cuda:N (CUDA needs a `--features cuda` build).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Profiling backend.
    #[arg(long, value_enum, default_value_t = PipelineBackend::Candle)]
    pub backend: PipelineBackend,
    /// Output-token distribution of the workload: a built-in name (sharegpt, azure-conv,
    /// azure-code, arxiv) or uniform:LO,HI, normal:MEAN,SD[,LO,HI], lognormal:MU,SIGMA,
    /// empirical:PATH[:COLUMN].
    #[arg(long, default_value = "sharegpt")]
    pub workload: String,
    /// Use this timings table (Parquet/CSV) instead of profiling.
    #[arg(long, value_name = "FILE", conflicts_with = "coefficients")]
    pub profile: Option<PathBuf>,
    /// Use this coefficients file (TOML) instead of profiling and fitting.
    #[arg(long, value_name = "FILE")]
    pub coefficients: Option<PathBuf>,
    /// Output directory (created; an old report.html in it is removed first).
    #[arg(long, default_value = "tokenq-report", value_name = "DIR")]
    pub out: PathBuf,
    /// Arrival rate λ in req/s for both questions (default: --load × each system's capacity).
    #[arg(long, value_name = "REQ_PER_S", allow_hyphen_values = true)]
    pub rate: Option<f64>,
    /// Offered load when --rate is not given: λ = load × capacity (0 < load < 1).
    #[arg(long, default_value_t = DEFAULT_LOAD)]
    pub load: f64,
    /// Patience τ of impatient users in seconds (default: 3 × the mean service time without a
    /// limit).
    #[arg(long, value_name = "SECONDS")]
    pub patience: Option<f64>,
    /// Cost of a lost user in the impatient objective (paper eq 11, c_ℓ).
    #[arg(long, default_value_t = DEFAULT_LOSS_COST)]
    pub loss_cost: f64,
    /// Weight β of the expected utility against the mean wait in the objective (0 < β < 1).
    #[arg(long, default_value_t = DEFAULT_BETA)]
    pub beta: f64,
    /// Largest batch size searched.
    #[arg(long, default_value_t = DEFAULT_MAX_BATCH, value_name = "K")]
    pub max_batch: usize,
    /// Simulated arrivals per checked point.
    #[arg(long, default_value_t = 2_000_000, value_name = "N")]
    pub sim_requests: u64,
    /// Seed of the profile order, prompts and simulations.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print a JSON summary (paths, recommendations) on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
}

/// The validated configuration.
#[derive(Debug)]
struct Config {
    source: Source,
    workload_spec: String,
    workload: TokenDist,
    out: PathBuf,
    rate: Option<f64>,
    load: f64,
    beta: f64,
    patience: Option<f64>,
    loss_cost: f64,
    max_batch: usize,
    sim_requests: u64,
    seed: u64,
}

#[derive(Debug)]
enum Source {
    Profile(Box<ProfileConfig>),
    Table(PathBuf),
    Coefficients(PathBuf),
}

fn validate(a: &PipelineArgs) -> Result<Config> {
    let workload = TokenDist::parse(&a.workload)
        .map_err(|e| anyhow::anyhow!("--workload `{}`: {e}", a.workload))?;
    if let Some(r) = a.rate
        && !(r.is_finite() && r > 0.0)
    {
        bail!("--rate {r}: give a positive arrival rate in req/s, e.g. 0.5");
    }
    if !(a.load > 0.0 && a.load < 1.0) {
        bail!(
            "--load {}: give a fraction of capacity strictly between 0 and 1, e.g. 0.7",
            a.load
        );
    }
    if !(a.beta > 0.0 && a.beta < 1.0) {
        bail!(
            "--beta {}: give a weight strictly between 0 and 1, e.g. 0.99",
            a.beta
        );
    }
    if let Some(t) = a.patience
        && !(t.is_finite() && t > 0.0)
    {
        bail!("--patience {t}: give a positive number of seconds, e.g. 60");
    }
    if !(a.loss_cost.is_finite() && a.loss_cost >= 0.0) {
        bail!(
            "--loss-cost {}: give a cost ≥ 0 per lost user, e.g. 4",
            a.loss_cost
        );
    }
    if a.max_batch == 0 || a.max_batch > 4096 {
        bail!(
            "--max-batch {}: give a batch size between 1 and 4096",
            a.max_batch
        );
    }
    if a.sim_requests < 10_000 {
        bail!(
            "--sim-requests {}: give at least 10000 so the 95% intervals mean something",
            a.sim_requests
        );
    }
    let source = if let Some(c) = &a.coefficients {
        Source::Coefficients(c.clone())
    } else if let Some(p) = &a.profile {
        Source::Table(p.clone())
    } else {
        let table = a.out.join("profile.parquet");
        let mut cfg = ProfileConfig::default_tiny(table)?;
        cfg.seed = a.seed;
        cfg.backend = match a.backend {
            PipelineBackend::Candle => BackendConfig::Candle(CandleSpec::resolve(
                Some(&a.model),
                None,
                0,
                DeviceChoice::parse(&a.device)?,
                Precision::parse(&a.dtype)?,
            )?),
            PipelineBackend::Synthetic => {
                if a.model != "tiny" {
                    bail!(
                        "--backend synthetic takes no --model (its latency is a fixed linear model)"
                    );
                }
                BackendConfig::Synthetic(SyntheticSpec {
                    seed: a.seed,
                    ..SyntheticSpec::default()
                })
            }
        };
        Source::Profile(Box::new(cfg))
    };
    Ok(Config {
        source,
        workload_spec: a.workload.clone(),
        workload,
        out: a.out.clone(),
        rate: a.rate,
        load: a.load,
        beta: a.beta,
        patience: a.patience,
        loss_cost: a.loss_cost,
        max_batch: a.max_batch,
        sim_requests: a.sim_requests,
        seed: a.seed,
    })
}

// ---------------------------------------------------------------------------------------------
// Progress

struct Steps {
    quiet: bool,
    total: usize,
    current: usize,
    started: Instant,
}

impl Steps {
    fn begin(&mut self, what: &str) {
        self.current += 1;
        if !self.quiet {
            eprintln!(
                "[{}/{}] {what} ({:.1} s elapsed)",
                self.current,
                self.total,
                self.started.elapsed().as_secs_f64()
            );
        }
    }
    fn note(&self, what: &str) {
        if !self.quiet {
            eprintln!("      {what}");
        }
    }
}

/// Profiler progress: a bar with ETA on a terminal, a line per point otherwise.
struct ProfileProgress {
    bar: Option<ProgressBar>,
    plain: bool,
}

impl Observer for ProfileProgress {
    fn planned(&mut self, plan: &PlanSummary) {
        if let Some(b) = &self.bar {
            b.set_length((plan.points.len() - plan.already_done.len()) as u64);
        }
    }
    fn point_started(&mut self, p: &GridPoint, _i: usize, _n: usize) {
        if let Some(b) = &self.bar {
            b.set_message(format!(
                "batch {} × input {} tokens",
                p.batch_size, p.input_tokens
            ));
        }
    }
    fn point_finished(&mut self, r: &PointRecord) -> Flow {
        if let Some(b) = &self.bar {
            b.inc(1);
        } else if self.plain {
            eprintln!(
                "      point {:>3}: batch {:>3}, input {:>4} tokens: {} ({} passes, {:.2} s)",
                r.point_id, r.batch_size, r.input_tokens, r.status, r.reps, r.elapsed_s
            );
        }
        Flow::Continue
    }
    fn warning(&mut self, message: &str) {
        match &self.bar {
            Some(b) => b.println(format!("warning: {message}")),
            None => eprintln!("warning: {message}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Results

/// One simulation check: the model's prediction and the simulation's estimate.
#[derive(Debug, Clone, Serialize)]
struct Check {
    what: String,
    unit: &'static str,
    model: f64,
    model_method: Method,
    sim: f64,
    sim_half_width: f64,
}

impl Check {
    fn agrees(&self) -> bool {
        (self.model - self.sim).abs() <= self.sim_half_width
    }
    /// (simulation − model) in units of the interval's half-width, as `queue … --validate` prints.
    fn half_widths(&self) -> f64 {
        (self.sim - self.model) / self.sim_half_width
    }
    /// A 95% interval misses the true value in one check of twenty, so a model value just outside
    /// it is no evidence against an exact model; more than two half-widths is.
    fn verdict(&self) -> String {
        let d = self.half_widths();
        if self.agrees() {
            format!("inside the interval, {d:+.2} half-widths")
        } else if d.abs() <= 2.0 {
            format!("just outside the 95% interval, {d:+.2} half-widths: expected in 1 check of 20")
        } else {
            format!("DISAGREES: {d:+.2} half-widths")
        }
    }
    fn rel_diff(&self) -> f64 {
        (self.sim - self.model) / self.model
    }
}

#[derive(Debug, Clone, Serialize)]
struct LimitAnswer {
    arrival_rate_rps: f64,
    best_limit_tokens: f64,
    wait_at_best_s: f64,
    sojourn_at_best_s: f64,
    utilisation_at_best: f64,
    served_whole_at_best: f64,
    wait_without_limit_s: f64,
    objective_at_best: f64,
    impatient: Option<ImpatientAnswer>,
    checks: Vec<Check>,
}

#[derive(Debug, Clone, Serialize)]
struct ImpatientAnswer {
    patience_s: f64,
    loss_cost: f64,
    best_limit_tokens: f64,
    loss_fraction_at_best: f64,
    wait_all_at_best_s: f64,
    loss_fraction_at_top_limit: f64,
    objective_at_best: f64,
}

#[derive(Debug, Clone, Serialize)]
struct BatchAnswer {
    arrival_rate_rps: f64,
    speed_optimal_k: usize,
    speed_optimal_rps: f64,
    fixed_k: usize,
    fixed_latency_s: f64,
    fixed_wait_s: f64,
    cap_k: usize,
    cap_latency_s: f64,
    cap_wait_s: f64,
    /// Larger caps give the same latency: the cap no longer binds.
    cap_stops_binding: bool,
    checks: Vec<Check>,
}

#[derive(Debug, Serialize)]
struct Summary {
    out: PathBuf,
    report: PathBuf,
    svgs: Vec<PathBuf>,
    coefficients: PathBuf,
    workload: String,
    token_limit: Option<LimitAnswer>,
    batch_size: Option<BatchAnswer>,
    notes: Vec<String>,
    elapsed_s: f64,
}

// ---------------------------------------------------------------------------------------------

/// Run `tokenq pipeline`.
pub fn run(a: PipelineArgs) -> Result<()> {
    let started = Instant::now();
    let cfg = validate(&a)?;
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("--out {}: cannot create the directory", cfg.out.display()))?;
    let report_path = cfg.out.join(reports::html::REPORT_FILE);
    if report_path.exists() {
        std::fs::remove_file(&report_path)
            .with_context(|| format!("cannot remove the old report {}", report_path.display()))?;
    }
    let quiet = a.quiet || a.json;
    let mut steps = Steps {
        quiet,
        total: match cfg.source {
            Source::Profile(_) => 5,
            Source::Table(_) => 4,
            Source::Coefficients(_) => 3,
        },
        current: 0,
        started,
    };
    let mut notes: Vec<String> = Vec::new();
    let mut metadata: Vec<(String, String)> = vec![
        (
            "tool".into(),
            format!("tokenq {}", env!("CARGO_PKG_VERSION")),
        ),
        (
            "command".into(),
            std::env::args().collect::<Vec<_>>().join(" "),
        ),
        ("started".into(), profiler::runner::rfc3339(unix_now())),
    ];

    // 1. profile
    let mut table: Option<PathBuf> = None;
    if let Source::Profile(pc) = &cfg.source {
        let what = match &pc.backend {
            BackendConfig::Candle(s) => format!(
                "profiling {} ({}) on {}",
                s.model.name, "random weights", a.device
            ),
            BackendConfig::Synthetic(_) => {
                "profiling the synthetic backend (modelled clock)".into()
            }
        };
        steps.begin(&what);
        let tty = std::io::stderr().is_terminal();
        let mut obs = ProfileProgress {
            bar: (!quiet && tty).then(|| {
                let b = ProgressBar::new(0);
                b.set_style(ProfileProgressStyle::style());
                b
            }),
            plain: !quiet && !tty,
        };
        let summary = profiler::run(pc, &mut obs).context("profiling failed")?;
        if let Some(b) = &obs.bar {
            b.finish_and_clear();
        }
        steps.note(&format!(
            "{} points, {} timed steps in {:.1} s → {}",
            summary.points_ok,
            summary.rows,
            summary.elapsed_s,
            summary.out.display()
        ));
        if summary.points_failed > 0 {
            notes.push(format!(
                "{} grid point(s) failed while profiling; see {}",
                summary.points_failed,
                summary.meta.display()
            ));
        }
        metadata.push(("profile".into(), summary.out.display().to_string()));
        metadata.push((
            "grid".into(),
            format!(
                "batch sizes {:?}, input tokens {:?}, max output {} tokens",
                pc.grid.batch_sizes, pc.grid.input_tokens, pc.grid.max_output
            ),
        ));
        table = Some(summary.out);
    } else if let Source::Table(p) = &cfg.source {
        metadata.push(("profile".into(), p.display().to_string()));
        table = Some(p.clone());
    }

    // 2. fit
    let coeff_path = cfg.out.join("coefficients.toml");
    let (coeffs, rows, coeff_source) = match (&cfg.source, &table) {
        (Source::Coefficients(p), _) => {
            let c = CoefficientsFile::read(p)
                .map_err(|e| anyhow::anyhow!("--coefficients {}: {e}", p.display()))?;
            metadata.push((
                "coefficients".into(),
                format!("{} (read, not fitted)", p.display()),
            ));
            (c, Vec::new(), p.clone())
        }
        (_, Some(t)) => {
            steps.begin("fitting T(n) = a·n + c, t1(b) = k1·b + k2, t2(b) = k3·b + k4");
            let st = read_steps(std::slice::from_ref(t), TimeColumn::Auto)
                .map_err(|e| anyhow::anyhow!("profile {}: {e}", t.display()))?;
            let fitted = fit_steps(&st.rows, &FitOptions::default())
                .map_err(|e| anyhow::anyhow!("fitting profile {}: {e}", t.display()))?;
            let (device, model, dtype) = match &cfg.source {
                Source::Profile(pc) => match &pc.backend {
                    BackendConfig::Candle(s) => (
                        a.device.clone(),
                        format!("{} (random weights)", s.model.name),
                        a.dtype.clone(),
                    ),
                    BackendConfig::Synthetic(_) => (
                        "synthetic".into(),
                        "synthetic linear latency model".into(),
                        "n/a".into(),
                    ),
                },
                _ => ("unknown".into(), "unknown".into(), "unknown".into()),
            };
            let provenance = Provenance {
                device,
                model,
                dtype,
                sources: st.files.iter().map(|p| p.display().to_string()).collect(),
                method: format!(
                    "tokenq pipeline: median over repetitions per grid point and step, {} rows",
                    st.rows.len()
                ),
                time_column: st.time_column.into(),
                tool: fit::import::tool(),
                profile_tool: None,
                license: None,
                notes: Vec::new(),
            };
            let file = fitted.into_file(provenance, Vec::new());
            file.write(&coeff_path)
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", coeff_path.display()))?;
            steps.note(&format!("wrote {}", coeff_path.display()));
            (file, st.rows, coeff_path.clone())
        }
        _ => unreachable!("a profile or a table precedes the fit"),
    };
    let p = &coeffs.provenance;
    metadata.push(("device".into(), p.device.clone()));
    metadata.push(("model".into(), p.model.clone()));
    metadata.push(("dtype".into(), p.dtype.clone()));
    metadata.push((
        "workload (output tokens)".into(),
        format!("{} — {}", cfg.workload_spec, cfg.workload.describe()),
    ));
    metadata.push((
        "workload mean / sd".into(),
        format!(
            "{:.1} / {:.1} tokens",
            cfg.workload.mean(),
            cfg.workload.variance().sqrt()
        ),
    ));

    // 3. queueing questions
    steps.begin("answering the queueing questions (exact models)");
    let single = single_request_line(&coeffs, &mut notes);
    let batch = batch_coeffs(&coeffs, &mut notes);
    if single.is_none() && batch.is_none() {
        bail!(
            "coefficients {}: neither the single-request line nor t1(b)/t2(b) is present; \
             profile batch size 1 and at least two batch sizes (tokenq profile --batch 1,2,4,8), \
             then tokenq fit",
            coeff_source.display()
        );
    }
    let limit = match single {
        Some(svc) => Some(limit_analysis(&cfg, svc)?),
        None => None,
    };
    let batching = match batch {
        Some(k) => Some(batch_analysis(&cfg, k)?),
        None => None,
    };
    if let Some(l) = &limit {
        steps.note(&format!(
            "max-token limit L* = {} tokens at λ = {:.4} req/s: E[W_q] = {:.3} s (exact)",
            l.answer.best_limit_tokens, l.answer.arrival_rate_rps, l.answer.wait_at_best_s
        ));
    }
    if let Some(b) = &batching {
        steps.note(&format!(
            "fixed batch K* = {} (latency {:.3} s), dynamic cap K* = {} (latency {:.3} s) at λ = {:.4} req/s (exact)",
            b.answer.fixed_k, b.answer.fixed_latency_s, b.answer.cap_k, b.answer.cap_latency_s, b.answer.arrival_rate_rps
        ));
    }

    // 4. simulation checks
    steps.begin("checking the answers by simulation (95% intervals)");
    let mut limit = limit;
    let mut batching = batching;
    if let (Some(l), Some(svc)) = (&mut limit, single) {
        simulate_limit(&cfg, svc, l)?;
    }
    if let (Some(b), Some(k)) = (&mut batching, batch) {
        simulate_batching(&cfg, k, b)?;
    }
    for c in limit
        .iter()
        .flat_map(|l| &l.answer.checks)
        .chain(batching.iter().flat_map(|b| &b.answer.checks))
    {
        steps.note(&format!(
            "{}: model {:.4} {u}, simulation {:.4} ± {:.4} {u} ({})",
            c.what,
            c.model,
            c.sim,
            c.sim_half_width,
            c.verdict(),
            u = if c.unit == "1" { "" } else { c.unit }
        ));
    }

    // 5. report
    steps.begin("writing the report");
    let mut figures: Vec<Figure> = Vec::new();
    if !rows.is_empty() {
        figures.extend(profile_figures(&rows, &coeffs, &p.model)?);
    } else {
        notes.push("No profile in this run: Figs. 2a/2b (measurements) are omitted.".into());
    }
    if let Some(l) = &limit {
        figures.push(l.figure.clone());
    }
    if let Some(b) = &batching {
        figures.extend(b.figures.iter().cloned());
    }
    metadata.push((
        "simulation".into(),
        format!(
            "{} arrivals per checked point, 30 batch means, seed {}, first 1% dropped as warm-up",
            cfg.sim_requests, cfg.seed
        ),
    ));
    metadata.push((
        "elapsed before writing".into(),
        format!("{:.1} s", started.elapsed().as_secs_f64()),
    ));
    let report = Report {
        title: format!("tokenq report — {} on {}", p.model, p.device),
        metadata,
        fit_table: fit_table(&coeffs),
        coefficients: coefficient_quantities(&coeffs),
        recommendations: recommendations(&cfg, limit.as_ref(), batching.as_ref()),
        figures,
        notes: notes.clone(),
    };
    let written = reports::write_report(&report, &cfg.out).context("writing the report")?;
    steps.note(&format!(
        "wrote {} and {} SVG files",
        written.html.display(),
        written.svgs.len()
    ));
    if !quiet {
        eprintln!(
            "done in {:.1} s: open {}",
            started.elapsed().as_secs_f64(),
            written.html.display()
        );
    }
    if a.json {
        let summary = Summary {
            out: cfg.out.clone(),
            report: written.html,
            svgs: written.svgs,
            coefficients: coeff_source,
            workload: cfg.workload_spec.clone(),
            token_limit: limit.map(|l| l.answer),
            batch_size: batching.map(|b| b.answer),
            notes,
            elapsed_s: started.elapsed().as_secs_f64(),
        };
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}

struct ProfileProgressStyle;
impl ProfileProgressStyle {
    fn style() -> ProgressStyle {
        ProgressStyle::with_template(
            "      {spinner} [{elapsed_precise}] {bar:30} {pos}/{len} points, ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `(a, c)` of `S = a·n + c`: the fitted single-request line, or `t2(1)`, `t1(1) − t2(1)` from
/// the batch lines (one prefill and n − 1 decode steps) when only those were fitted.
fn single_request_line(c: &CoefficientsFile, notes: &mut Vec<String>) -> Option<LinearService> {
    if let Some((a, c0)) = c.single_request_line() {
        return Some(LinearService {
            per_token_s: a,
            intercept_s: c0.max(0.0),
        });
    }
    match (&c.first_token, &c.decode_step) {
        (Some(f), Some(d)) => {
            let (t1, t2) = (f.time_s(1.0), d.time_s(1.0));
            notes.push(format!(
                "No single-request line in the coefficients: S = a·n + c taken from the batch lines \
                 at b = 1 (a = t2(1) = {t2:.6} s/token, c = t1(1) − t2(1))."
            ));
            Some(LinearService {
                per_token_s: t2,
                intercept_s: (t1 - t2).max(0.0),
            })
        }
        _ => {
            notes.push(
                "No single-request line and no batch lines: the max-token limit is not analysed."
                    .into(),
            );
            None
        }
    }
}

fn batch_coeffs(c: &CoefficientsFile, notes: &mut Vec<String>) -> Option<BatchCoeffs> {
    match c.batch_k() {
        Some([k1, k2, k3, k4]) => {
            // Negative fitted slopes (noise on a flat line) are clipped to zero for the models.
            let clip = |v: f64| v.max(0.0);
            if k1 < 0.0 || k3 < 0.0 {
                notes.push(format!(
                    "A fitted batch slope is negative (k1 = {k1:.3e}, k3 = {k3:.3e} s); the models use 0."
                ));
            }
            BatchCoeffs::new(clip(k1), clip(k2), clip(k3), clip(k4)).ok()
        }
        None => {
            notes.push(
                "No t1(b)/t2(b) lines in the coefficients: the batch size is not analysed.".into(),
            );
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Max-token limit

struct LimitAnalysis {
    answer: LimitAnswer,
    figure: Figure,
    input: TokenLimitInput,
    grid: Vec<f64>,
}

/// The sweep of limits: a linear grid from the workload's low quantile to its top.
fn limit_grid(d: &TokenDist) -> Vec<f64> {
    let (lo, hi) = d.support();
    let top = if hi.is_finite() {
        hi
    } else {
        d.quantile(UNBOUNDED_TOP_QUANTILE)
    };
    let bottom = d.quantile(0.05).max(lo).max(1.0);
    let step = ((top - bottom) / (LIMIT_POINTS - 1) as f64).max(1.0);
    let mut g: Vec<f64> = (0..LIMIT_POINTS)
        .map(|i| (bottom + step * i as f64).round().min(top.round()))
        .collect();
    g.dedup();
    g
}

fn limit_analysis(cfg: &Config, svc: LinearService) -> Result<LimitAnalysis> {
    let d = &cfg.workload;
    let unclipped = mg1::solve(d, f64::INFINITY, 1e-9, svc)
        .map_err(|e| anyhow::anyhow!("service model: {e}"))?;
    let lambda = cfg.rate.unwrap_or(cfg.load / unclipped.mean_service_s);
    let grid = limit_grid(d);
    let mut wait = Vec::new();
    let mut objective = Vec::new();
    for &l in &grid {
        match mg1::solve(d, l, lambda, svc) {
            Ok(r) => {
                wait.push((l, r.mean_wait_s));
                objective.push((l, cfg.beta * d.cdf(l) - (1.0 - cfg.beta) * r.mean_wait_s));
            }
            Err(mg1::QueueError::Unstable { .. }) => {}
            Err(e) => bail!("M/G/1 at L = {l}: {e}"),
        }
    }
    let Some(&(best_l, best_f)) = objective.iter().max_by(|a, b| a.1.total_cmp(&b.1)) else {
        // Unstable at every limit: say how far off.
        let r = mg1::solve(d, grid[0], lambda, svc).unwrap_err();
        bail!(
            "--rate {lambda:.6} req/s: every max-token limit from {} tokens up is unstable: {r}",
            grid[0]
        );
    };
    let best = mg1::solve(d, best_l, lambda, svc)?;

    // Impatient users (MATH.md §2, paper eqs 6–9 and 11): exact level crossing and the
    // De Kok–Tijms approximation, at the same λ.
    let tau = cfg
        .patience
        .unwrap_or(DEFAULT_PATIENCE_FACTOR * unclipped.mean_service_s);
    // Exact curve and argmax of eq. 11 through the library's optimiser (rayon over limits, one
    // shared level-crossing solve for the limits with a·L + c ≥ τ).
    let exact_imp = token_limit::optimize(
        &token_limit::Problem {
            tokens: d,
            arrival_rate: lambda,
            service: svc,
            weight: cfg.beta,
            utility: &token_limit::StepUtility,
            impatience: Some(token_limit::Impatience {
                patience_s: tau,
                lost_cost: cfg.loss_cost,
                abandonment: Abandonment::Renege,
                dekok_tijms: false,
                grid: IMPATIENCE_GRID,
            }),
        },
        &grid,
    )
    .map_err(|e| anyhow::anyhow!("M/G/1+D, τ = {tau} s: {e}"))?;
    let point = |p: &token_limit::CurvePoint| {
        (
            p.max_tokens,
            p.mean_wait_s.unwrap_or(f64::NAN),
            p.loss_fraction.unwrap_or(f64::NAN),
        )
    };
    let imp_wait: Vec<(f64, f64)> = exact_imp
        .curve
        .iter()
        .map(|p| (point(p).0, point(p).1))
        .collect();
    let imp_loss: Vec<(f64, f64)> = exact_imp
        .curve
        .iter()
        .map(|p| (point(p).0, point(p).2))
        .collect();
    let mut dkt_wait = Vec::new();
    let mut dkt_loss = Vec::new();
    for &l in &grid {
        let law = ServiceLaw::Tokens {
            tokens: d.clone(),
            max_tokens: l,
            service: svc,
        };
        if let Ok(k) = impatience::dekok_tijms(&law, lambda, tau, Abandonment::Renege) {
            dkt_wait.push((l, k.combined.mean_wait_all_s));
            dkt_loss.push((l, k.combined.loss_fraction));
        }
    }
    let imp_obj: Vec<(f64, f64)> = exact_imp
        .curve
        .iter()
        .filter_map(|p| Some((p.max_tokens, p.objective?)))
        .collect();
    let (best_imp_l, best_imp_w, best_imp_p) = point(&exact_imp.best);
    let impatient = Some(ImpatientAnswer {
        patience_s: tau,
        loss_cost: cfg.loss_cost,
        best_limit_tokens: best_imp_l,
        loss_fraction_at_best: best_imp_p,
        wait_all_at_best_s: best_imp_w,
        loss_fraction_at_top_limit: imp_loss.last().map_or(f64::NAN, |x| x.1),
        objective_at_best: exact_imp.best.objective.unwrap_or(f64::NAN),
    });
    let no_limit = mg1::solve(d, f64::INFINITY, lambda, svc)
        .map(|r| r.mean_wait_s)
        .unwrap_or(f64::INFINITY);
    let answer = LimitAnswer {
        arrival_rate_rps: lambda,
        best_limit_tokens: best_l,
        wait_at_best_s: best.mean_wait_s,
        sojourn_at_best_s: best.mean_sojourn_s,
        utilisation_at_best: best.utilisation,
        served_whole_at_best: d.cdf(best_l),
        wait_without_limit_s: no_limit,
        objective_at_best: best_f,
        impatient: impatient.clone(),
        checks: Vec::new(),
    };
    let tau_label = format!("impatient, τ = {} s", plots::sig(tau));
    let input = TokenLimitInput {
        setting: format!("{}, λ = {} req/s", cfg.workload_spec, plots::sig(lambda)),
        wait: vec![
            Series::from_xy("M/G/1, patient users", Method::Exact, wait).in_group("patient"),
            Series::from_xy(
                format!("{tau_label}, all users (eq 9)"),
                Method::Exact,
                imp_wait,
            )
            .in_group("impatient"),
            Series::from_xy("impatient, De Kok–Tijms", Method::Approximation, dkt_wait)
                .in_group("impatient"),
        ],
        loss: vec![
            Series::from_xy(tau_label.clone(), Method::Exact, imp_loss).in_group("impatient"),
            Series::from_xy("De Kok–Tijms", Method::Approximation, dkt_loss).in_group("impatient"),
        ],
        objective_patient: vec![
            Series::from_xy(
                format!("F(L), U = 1{{n ≤ L}}, β = {}", plots::sig(cfg.beta)),
                Method::Exact,
                objective,
            )
            .in_group("patient"),
        ],
        objective_impatient: vec![
            Series::from_xy(
                format!(
                    "F(L) − {}·π, β = {}",
                    plots::sig(cfg.loss_cost),
                    plots::sig(cfg.beta)
                ),
                Method::Exact,
                imp_obj,
            )
            .in_group("impatient"),
        ],
        best_patient: Some(best_l),
        best_impatient: impatient.as_ref().map(|i| i.best_limit_tokens),
    };
    let figure = plots::token_limit(&input)?;
    Ok(LimitAnalysis {
        answer,
        figure,
        input,
        grid,
    })
}

fn run_sim(cfg: &Config, scenario: &sim::Scenario, salt: u64) -> Result<sim::Report> {
    let rc = sim::RunConfig {
        requests: cfg.sim_requests,
        seed: cfg.seed.wrapping_mul(1_000_003).wrapping_add(salt),
        ..sim::RunConfig::default()
    };
    Ok(sim::run(scenario, &rc)?)
}

fn simulate_limit(cfg: &Config, svc: LinearService, l: &mut LimitAnalysis) -> Result<()> {
    let lambda = l.answer.arrival_rate_rps;
    let mut limits: Vec<f64> = SIM_LIMIT_FRACTIONS
        .iter()
        .map(|f| l.grid[((l.grid.len() - 1) as f64 * f).round() as usize])
        .collect();
    limits.push(l.answer.best_limit_tokens);
    limits.sort_by(f64::total_cmp);
    limits.dedup();
    let mut pts = Vec::new();
    for (i, &lim) in limits.iter().enumerate() {
        let Ok(exact) = mg1::solve(&cfg.workload, lim, lambda, svc) else {
            continue;
        };
        let scenario = sim::Scenario {
            policy: sim::Policy::Mg1 {
                service: sim::LinearService {
                    per_token_s: svc.per_token_s,
                    intercept_s: svc.intercept_s,
                },
                patience: None,
            },
            arrivals: sim::Arrivals::Poisson { rate_rps: lambda },
            tokens: sim::Tokens::Law(sim::TokenLaw::Dist(cfg.workload.clone())),
            max_tokens: Some(lim),
            token_mode: TOKEN_MODE,
        };
        let r = run_sim(cfg, &scenario, 100 + i as u64)?;
        let w = r.wait_s.mean;
        pts.push(Point::with_ci(lim, w.value, w.half_width));
        if lim == l.answer.best_limit_tokens {
            l.answer.checks.push(Check {
                what: format!("M/G/1 mean wait at L* = {lim}"),
                unit: "s",
                model: exact.mean_wait_s,
                model_method: Method::Exact,
                sim: w.value,
                sim_half_width: w.half_width,
            });
        }
    }
    if let Some(imp) = l.answer.impatient.clone() {
        let scenario = sim::Scenario {
            policy: sim::Policy::Mg1 {
                service: sim::LinearService {
                    per_token_s: svc.per_token_s,
                    intercept_s: svc.intercept_s,
                },
                patience: Some(sim::Patience {
                    patience_s: imp.patience_s,
                    mode: sim::ImpatienceMode::Renege,
                }),
            },
            arrivals: sim::Arrivals::Poisson { rate_rps: lambda },
            tokens: sim::Tokens::Law(sim::TokenLaw::Dist(cfg.workload.clone())),
            max_tokens: Some(imp.best_limit_tokens),
            token_mode: TOKEN_MODE,
        };
        let r = run_sim(cfg, &scenario, 150)?;
        let p = r.loss_fraction;
        l.answer.checks.push(Check {
            what: format!(
                "M/G/1+D loss fraction at L* = {} (τ = {} s)",
                imp.best_limit_tokens,
                plots::sig(imp.patience_s)
            ),
            unit: "1",
            model: imp.loss_fraction_at_best,
            model_method: Method::Exact,
            sim: p.value,
            sim_half_width: p.half_width,
        });
        let pt = Point::with_ci(imp.best_limit_tokens, p.value, p.half_width);
        l.input
            .loss
            .push(Series::new("impatient", Method::Simulation, [pt]).in_group("impatient"));
        if let Some(w) = r.wait_all_s {
            let pt = Point::with_ci(imp.best_limit_tokens, w.value, w.half_width);
            l.input.wait.push(
                Series::new("impatient, all users", Method::Simulation, [pt]).in_group("impatient"),
            );
        }
    }
    l.input
        .wait
        .push(Series::new("M/G/1, patient users", Method::Simulation, pts).in_group("patient"));
    l.figure = plots::token_limit(&l.input)?;
    Ok(())
}

/// The analytic models read the workload law as it is (a built-in histogram's atoms are bin means,
/// not integers), so the simulation must too: rounding them to integers (MATH.md §11's semantics)
/// shifts the loss fraction by several confidence half-widths at 2e6 requests.
const TOKEN_MODE: sim::TokenMode = sim::TokenMode::Continuous;

// ---------------------------------------------------------------------------------------------
// Batch size

struct BatchAnalysis {
    answer: BatchAnswer,
    figures: Vec<Figure>,
    sizes: BatchSizeInput,
    rates: RateSweepInput,
    rate_grid: Vec<f64>,
    dynamic_cap: Option<usize>,
}

fn batch_analysis(cfg: &Config, k: BatchCoeffs) -> Result<BatchAnalysis> {
    let model =
        LlmBatch::new(k, cfg.workload.clone()).map_err(|e| anyhow::anyhow!("batch model: {e}"))?;
    let opts = ChainOptions::default();
    let (kv, v) = model.speed_optimum(cfg.max_batch);
    let lambda = cfg.rate.unwrap_or(cfg.load * v);
    let fixed = optimize_fixed(
        &model,
        lambda,
        cfg.max_batch,
        Objective::Latency,
        PaddedTreatment::Random,
        &opts,
    )
    .map_err(|e| anyhow::anyhow!("fixed batching at λ = {lambda:.6} req/s: {e}"))?;
    let fixed_det = optimize_fixed(
        &model,
        lambda,
        cfg.max_batch,
        Objective::Latency,
        PaddedTreatment::MeanOnly,
        &opts,
    )
    .ok();
    let cap = optimize_cap(
        &model,
        lambda,
        cfg.max_batch,
        Objective::Latency,
        false,
        &opts,
    )
    .map_err(|e| anyhow::anyhow!("dynamic batching at λ = {lambda:.6} req/s: {e}"))?;

    // Fig. 3: E[M_b], E[T_b], speed for the workload and two laws with the same mean.
    let mean = cfg.workload.mean();
    let sd = cfg.workload.variance().sqrt();
    let sigma2 = (1.0 + (sd / mean).powi(2)).ln();
    let comparators = [
        (cfg.workload_spec.clone(), cfg.workload.clone()),
        (
            format!("uniform(0, {})", plots::sig(2.0 * mean)),
            TokenDist::Uniform {
                lo: 0.0,
                hi: 2.0 * mean,
            },
        ),
        (
            "lognormal, same mean and sd".to_string(),
            TokenDist::Lognormal {
                mu: mean.ln() - sigma2 / 2.0,
                sigma: sigma2.sqrt(),
            },
        ),
    ];
    let mut curves = Vec::new();
    for (name, d) in comparators {
        let m = LlmBatch::new(k, d).map_err(|e| anyhow::anyhow!("batch model for {name}: {e}"))?;
        let bs: Vec<usize> = MOMENT_BATCHES
            .iter()
            .copied()
            .filter(|&b| b <= cfg.max_batch.max(2))
            .collect();
        curves.push(DistributionMoments {
            distribution: name,
            e_max_tokens: bs
                .iter()
                .map(|&b| (b as f64, m.tokens.max_moments(b).0))
                .collect(),
            e_batch_time_s: bs
                .iter()
                .map(|&b| (b as f64, m.padded_moments(b).0))
                .collect(),
            sim_e_max_tokens: Vec::new(),
            sim_e_batch_time_s: Vec::new(),
        });
    }
    let fig3 = plots::batch_moments(
        &curves,
        &format!(
            "k1..k4 = {}, {}, {}, {} s",
            plots::sig(k.k1),
            plots::sig(k.k2),
            plots::sig(k.k3),
            plots::sig(k.k4)
        ),
    )?;

    // Fig. 6 inputs (simulation points added later).
    let fixed_pts: Vec<(f64, f64)> = fixed
        .candidates
        .iter()
        .map(|c| (c.k as f64, c.latency_s))
        .collect();
    let mut fixed_series =
        vec![Series::from_xy("fixed K", Method::Exact, fixed_pts).in_group("fixed")];
    if let Some(fd) = &fixed_det {
        fixed_series.push(
            Series::from_xy(
                "fixed K, T_K := E[T_K] (paper eq 25)",
                Method::Approximation,
                fd.candidates.iter().map(|c| (c.k as f64, c.latency_s)),
            )
            .in_group("fixed"),
        );
    }
    let sizes = BatchSizeInput {
        setting: format!("{}, λ = {} req/s", cfg.workload_spec, plots::sig(lambda)),
        fixed: fixed_series,
        capped: vec![
            Series::from_xy(
                "dynamic, cap K",
                Method::Exact,
                cap.candidates.iter().map(|c| (c.k as f64, c.latency_s)),
            )
            .in_group("cap"),
        ],
        best_fixed: Some(fixed.best.k as f64),
        best_cap: Some(cap.best.k as f64),
    };

    // Fig. 5: latency against λ, dynamic (unbounded when stable, else capped) and elastic.
    let dynamic_cap = if model.padded_slope().is_some() {
        None
    } else {
        Some(cfg.max_batch)
    };
    let max_rate = match dynamic_cap {
        None => 1.0 / model.padded_slope().unwrap_or(f64::INFINITY),
        Some(kc) => kc as f64 / model.padded_moments(kc).0,
    };
    let rate_grid: Vec<f64> = RATE_FRACTIONS.iter().map(|f| f * max_rate).collect();
    let mut dyn_pts = Vec::new();
    let mut el_pts = Vec::new();
    let mut bound_pts = Vec::new();
    for &r in &rate_grid {
        let d = analyze(&BatchConfig {
            policy: Policy::Dynamic,
            max_batch: dynamic_cap,
            arrival_rate: r,
            model: model.clone(),
            chain: opts.clone(),
        });
        if let Ok(rep) = d {
            dyn_pts.push((r, rep.estimates[0].latency_s));
        }
        if dynamic_cap.is_none()
            && let Some((alpha, tau0)) = model.linearisation()
            && let Ok(b) = inoue_bound(r, alpha, tau0)
        {
            bound_pts.push((r, b.bound));
        }
        let e = analyze(&BatchConfig {
            policy: Policy::Elastic,
            max_batch: dynamic_cap,
            arrival_rate: r,
            model: model.clone(),
            chain: opts.clone(),
        });
        if let Ok(rep) = e {
            el_pts.push((r, rep.estimates[0].latency_s, rep.estimates[0].method));
        }
    }
    let el_method = el_pts
        .first()
        .map_or(Method::Approximation, |p| to_method(p.2));
    let dyn_label = match dynamic_cap {
        None => "dynamic".to_string(),
        Some(kc) => format!("dynamic, cap {kc}"),
    };
    let el_label = match dynamic_cap {
        None => "elastic".to_string(),
        Some(kc) => format!("elastic, cap {kc}"),
    };
    let mut latency = vec![
        Series::from_xy(dyn_label.clone(), Method::Exact, dyn_pts).in_group("dynamic"),
        Series::from_xy(
            el_label.clone(),
            el_method,
            el_pts.iter().map(|p| (p.0, p.1)),
        )
        .in_group("elastic"),
    ];
    if !bound_pts.is_empty() {
        latency.push(
            Series::from_xy("Inoue eq 16 (linearised E[T_b])", Method::Bound, bound_pts)
                .in_group("dynamic"),
        );
    }
    let rates = RateSweepInput {
        setting: cfg.workload_spec.clone(),
        latency,
        stability_limits: vec![(dyn_label, max_rate)],
    };
    let answer = BatchAnswer {
        arrival_rate_rps: lambda,
        speed_optimal_k: kv,
        speed_optimal_rps: v,
        fixed_k: fixed.best.k,
        fixed_latency_s: fixed.best.latency_s,
        fixed_wait_s: fixed.best.wait_s,
        cap_k: cap.best.k,
        cap_latency_s: cap.best.latency_s,
        cap_wait_s: cap.best.wait_s,
        cap_stops_binding: cap.cap_stops_binding,
        checks: Vec::new(),
    };
    let figures = vec![
        fig3,
        plots::delay_vs_rate(&rates)?,
        plots::batch_size(&sizes)?,
    ];
    Ok(BatchAnalysis {
        answer,
        figures,
        sizes,
        rates,
        rate_grid,
        dynamic_cap,
    })
}

fn to_method(m: queueing::Method) -> Method {
    match m {
        queueing::Method::Exact => Method::Exact,
        queueing::Method::Bound => Method::Bound,
        queueing::Method::Approximation => Method::Approximation,
        queueing::Method::Simulation => Method::Simulation,
    }
}

fn batch_time(k: BatchCoeffs) -> sim::BatchTime {
    sim::BatchTime::new(k.k1, k.k2, k.k3, k.k4)
}

fn batch_scenario(cfg: &Config, policy: sim::Policy, lambda: f64) -> sim::Scenario {
    sim::Scenario {
        policy,
        arrivals: sim::Arrivals::Poisson { rate_rps: lambda },
        tokens: sim::Tokens::Law(sim::TokenLaw::Dist(cfg.workload.clone())),
        max_tokens: None,
        token_mode: TOKEN_MODE,
    }
}

fn simulate_batching(cfg: &Config, k: BatchCoeffs, b: &mut BatchAnalysis) -> Result<()> {
    let lambda = b.answer.arrival_rate_rps;
    let bt = batch_time(k);
    // Fixed batching at K* and at its neighbours on the grid of candidates.
    let fixed_ks: Vec<usize> = {
        let ks: Vec<usize> = b.sizes.fixed[0]
            .points
            .iter()
            .map(|p| p.x as usize)
            .collect();
        let mut pick = vec![b.answer.fixed_k];
        if let Some(&last) = ks.last() {
            pick.push(last);
        }
        if let Some(&first) = ks.first() {
            pick.push(first);
        }
        pick.sort_unstable();
        pick.dedup();
        pick
    };
    let mut pts = Vec::new();
    for (i, &kk) in fixed_ks.iter().enumerate() {
        let r = run_sim(
            cfg,
            &batch_scenario(
                cfg,
                sim::Policy::Fixed {
                    batch: bt,
                    batch_size: kk as u32,
                },
                lambda,
            ),
            200 + i as u64,
        )?;
        if !r.is_stable() {
            continue;
        }
        let l = r.latency_s.mean;
        pts.push(Point::with_ci(kk as f64, l.value, l.half_width));
        if kk == b.answer.fixed_k {
            b.answer.checks.push(Check {
                what: format!("fixed batching mean latency at K* = {kk}"),
                unit: "s",
                model: b.answer.fixed_latency_s,
                model_method: Method::Exact,
                sim: l.value,
                sim_half_width: l.half_width,
            });
        }
    }
    b.sizes
        .fixed
        .push(Series::new("fixed K", Method::Simulation, pts).in_group("fixed"));
    let r = run_sim(
        cfg,
        &batch_scenario(
            cfg,
            sim::Policy::Dynamic {
                batch: bt,
                max_batch: Some(b.answer.cap_k as u32),
            },
            lambda,
        ),
        300,
    )?;
    let l = r.latency_s.mean;
    b.sizes.capped.push(
        Series::new(
            "dynamic, cap K",
            Method::Simulation,
            [Point::with_ci(b.answer.cap_k as f64, l.value, l.half_width)],
        )
        .in_group("cap"),
    );
    b.answer.checks.push(Check {
        what: format!(
            "dynamic batching mean latency with cap K* = {}",
            b.answer.cap_k
        ),
        unit: "s",
        model: b.answer.cap_latency_s,
        model_method: Method::Exact,
        sim: l.value,
        sim_half_width: l.half_width,
    });

    // Rate sweep: dynamic and elastic at three rates.
    let cap = b.dynamic_cap.map(|c| c as u32);
    let mut dyn_pts = Vec::new();
    let mut el_pts = Vec::new();
    for (j, &i) in SIM_RATE_IDX.iter().enumerate() {
        let Some(&r) = b.rate_grid.get(i) else {
            continue;
        };
        let d = run_sim(
            cfg,
            &batch_scenario(
                cfg,
                sim::Policy::Dynamic {
                    batch: bt,
                    max_batch: cap,
                },
                r,
            ),
            400 + j as u64,
        )?;
        if d.is_stable() {
            dyn_pts.push(Point::with_ci(
                r,
                d.latency_s.mean.value,
                d.latency_s.mean.half_width,
            ));
        }
        let e = run_sim(
            cfg,
            &batch_scenario(
                cfg,
                sim::Policy::Elastic {
                    batch: bt,
                    max_batch: cap,
                },
                r,
            ),
            500 + j as u64,
        )?;
        if e.is_stable() {
            el_pts.push(Point::with_ci(
                r,
                e.latency_s.mean.value,
                e.latency_s.mean.half_width,
            ));
        }
    }
    let dyn_label = b.rates.latency[0].label.clone();
    let el_label = b.rates.latency[1].label.clone();
    b.rates
        .latency
        .push(Series::new(dyn_label, Method::Simulation, dyn_pts).in_group("dynamic"));
    b.rates
        .latency
        .push(Series::new(el_label, Method::Simulation, el_pts).in_group("elastic"));
    b.figures[1] = plots::delay_vs_rate(&b.rates)?;
    b.figures[2] = plots::batch_size(&b.sizes)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Report parts

/// Figs. 2a and 2b from the profile rows and the fitted lines.
fn profile_figures(rows: &[StepRow], c: &CoefficientsFile, model: &str) -> Result<Vec<Figure>> {
    let mut out = Vec::new();
    if let Some(s) = &c.single_request {
        // e2e(n) per output length at batch 1 and the line's reference prompt length.
        let e2e = fit::profile::e2e_curves(rows, 64);
        let measured: Vec<Point> = e2e
            .iter()
            .filter(|p| u64::from(p.input_tokens) == s.input_tokens)
            .map(|p| {
                let sd = fit::profile::sample_sd(&p.per_rep_s).unwrap_or(0.0);
                Point::with_ci(
                    f64::from(p.output_tokens),
                    p.mean_s(),
                    1.96 * sd / (p.per_rep_s.len() as f64).sqrt(),
                )
            })
            .collect();
        if !measured.is_empty() {
            out.push(plots::latency_vs_tokens(&LatencyFitInput {
                model: model.to_string(),
                measured,
                per_token_s: s.per_token_s,
                intercept_s: s.intercept_s,
                r2: Some(s.quality.r2),
            })?);
        }
    }
    if c.first_token.is_some() || c.decode_step.is_some() {
        let agg = fit::profile::aggregate_steps(rows);
        // First token: step 0 at the reference prompt length; per token: median decode step
        // per batch size at the smallest prompt.
        let ref_input = c.first_token.as_ref().map(|f| f.input_tokens).unwrap_or(0);
        let mut first: Vec<Point> = agg
            .iter()
            .filter(|p| p.step == 0 && u64::from(p.input_tokens) == ref_input)
            .map(|p| Point::new(f64::from(p.batch_size), p.median_s))
            .collect();
        first.sort_by(|a, b| a.x.total_cmp(&b.x));
        let min_input = agg.iter().map(|p| p.input_tokens).min().unwrap_or(0);
        let mut per: std::collections::BTreeMap<u32, Vec<f64>> = Default::default();
        for p in agg
            .iter()
            .filter(|p| p.step > 0 && p.input_tokens == min_input)
        {
            per.entry(p.batch_size).or_default().push(p.median_s);
        }
        let per_token: Vec<Point> = per
            .iter()
            .map(|(b, v)| {
                let m = fit::profile::median(v);
                let sd = fit::profile::sample_sd(v).unwrap_or(0.0);
                Point::with_ci(f64::from(*b), m, 1.96 * sd / (v.len() as f64).sqrt())
            })
            .collect();
        if !first.is_empty() || !per_token.is_empty() {
            out.push(plots::batch_timing(&BatchTimingInput {
                model: model.to_string(),
                first_token: first,
                per_token,
                first_token_fit: c
                    .first_token
                    .as_ref()
                    .map(|f| (f.slope_s_per_req, f.intercept_s)),
                per_token_fit: c
                    .decode_step
                    .as_ref()
                    .map(|d| (d.slope_s_per_req, d.intercept_s)),
            })?);
        }
    }
    Ok(out)
}

fn quality_cells(q: &FitQuality) -> [String; 4] {
    [
        format!("{:.5}", q.r2),
        format!("{:.2}%", q.mape_pct),
        q.holdout_mape_pct.map_or("-".into(), |v| {
            format!("{v:.2}% ({} points)", q.holdout_points)
        }),
        q.points_fitted.to_string(),
    ]
}

fn ci_cell(ci: &std::collections::BTreeMap<String, [f64; 2]>, key: &str, unit: &str) -> String {
    ci.get(key).map_or("-".into(), |[lo, hi]| {
        format!("[{}, {}] {unit}", plots::sig(*lo), plots::sig(*hi))
    })
}

fn fit_table(c: &CoefficientsFile) -> Table {
    let mut rows = Vec::new();
    let mut push = |quantity: &str, name: &str, v: f64, unit: &str, ci: String, q: &FitQuality| {
        let [r2, mape, held, n] = quality_cells(q);
        rows.push(vec![
            quantity.to_string(),
            name.to_string(),
            format!("{} {unit}", plots::sig(v)),
            ci,
            q.model.clone(),
            r2,
            mape,
            held,
            n,
        ]);
    };
    if let Some(s) = &c.single_request {
        push(
            "T(n) single request",
            "a = per_token_s",
            s.per_token_s,
            "s/token",
            ci_cell(&s.ci95, "per_token_s", "s/token"),
            &s.quality,
        );
        push(
            "T(n) single request",
            "c = intercept_s",
            s.intercept_s,
            "s",
            ci_cell(&s.ci95, "intercept_s", "s"),
            &s.quality,
        );
    }
    if let Some(f) = &c.first_token {
        push(
            "t1(b) first token",
            "k1 = slope_s_per_req",
            f.slope_s_per_req,
            "s/req",
            ci_cell(&f.ci95, "slope_s_per_req", "s/req"),
            &f.quality,
        );
        push(
            "t1(b) first token",
            "k2 = intercept_s",
            f.intercept_s,
            "s",
            ci_cell(&f.ci95, "intercept_s", "s"),
            &f.quality,
        );
    }
    if let Some(d) = &c.decode_step {
        push(
            "t2(b) per token",
            "k3 = slope_s_per_req",
            d.slope_s_per_req,
            "s/req",
            ci_cell(&d.ci95, "slope_s_per_req", "s/req"),
            &d.quality,
        );
        push(
            "t2(b) per token",
            "k4 = intercept_s",
            d.intercept_s,
            "s",
            ci_cell(&d.ci95, "intercept_s", "s"),
            &d.quality,
        );
    }
    Table {
        caption: format!(
            "Least-squares fits ({}; time column {}). R² and MAPE on the fitted points; held-out MAPE on points left out of the fit.",
            c.provenance.method, c.provenance.time_column
        ),
        columns: [
            "quantity",
            "coefficient",
            "value",
            "95% interval",
            "model",
            "R²",
            "MAPE",
            "held-out MAPE",
            "points",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

fn coefficient_quantities(c: &CoefficientsFile) -> Vec<Quantity> {
    let mut q = Vec::new();
    if let Some(s) = &c.single_request {
        q.push(Quantity::new(
            "a: time per output token (single request)",
            s.per_token_s,
            "s/token",
            Method::Fitted,
        ));
        q.push(
            Quantity::new(
                "c: fixed time per request",
                s.intercept_s,
                "s",
                Method::Fitted,
            )
            .note(format!("at {} prompt tokens", s.input_tokens)),
        );
    }
    if let Some(f) = &c.first_token {
        q.push(Quantity::new(
            "k1: first-token time per request in the batch",
            f.slope_s_per_req,
            "s/req",
            Method::Fitted,
        ));
        q.push(
            Quantity::new(
                "k2: first-token time intercept",
                f.intercept_s,
                "s",
                Method::Fitted,
            )
            .note(format!("at {} prompt tokens", f.input_tokens)),
        );
    }
    if let Some(d) = &c.decode_step {
        q.push(Quantity::new(
            "k3: decode-step time per request in the batch",
            d.slope_s_per_req,
            "s/req",
            Method::Fitted,
        ));
        q.push(
            Quantity::new(
                "k4: decode-step time intercept",
                d.intercept_s,
                "s",
                Method::Fitted,
            )
            .note(format!("at {} context tokens", d.context_tokens)),
        );
    }
    q
}

fn check_quantity(c: &Check) -> Quantity {
    let unit = if c.unit == "1" {
        String::new()
    } else {
        format!(" {}", c.unit)
    };
    Quantity::new(
        format!("{} (simulation)", c.what),
        c.sim,
        c.unit,
        Method::Simulation,
    )
    .with_ci(c.sim_half_width)
    .note(format!(
        "model value {}{}: {} ({:+.2}%)",
        plots::sig(c.model),
        unit,
        c.verdict(),
        100.0 * c.rel_diff()
    ))
}

fn recommendations(
    cfg: &Config,
    l: Option<&LimitAnalysis>,
    b: Option<&BatchAnalysis>,
) -> Vec<Recommendation> {
    let mut out = Vec::new();
    if let Some(l) = l {
        let a = &l.answer;
        let mut basis = vec![
            Quantity::new("arrival rate λ", a.arrival_rate_rps, "req/s", Method::Exact).note(
                match cfg.rate {
                    Some(_) => "given by --rate".to_string(),
                    None => format!(
                        "{} × the capacity 1/E[S] without a limit",
                        plots::sig(cfg.load)
                    ),
                },
            ),
            Quantity::new(
                "mean wait E[W_q] at L*",
                a.wait_at_best_s,
                "s",
                Method::Exact,
            )
            .note("Pollaczek–Khinchine, MATH.md §1"),
            Quantity::new(
                "mean latency (wait + service) at L*",
                a.sojourn_at_best_s,
                "s",
                Method::Exact,
            ),
            Quantity::new(
                "utilisation ρ at L*",
                a.utilisation_at_best,
                "1",
                Method::Exact,
            ),
            Quantity::new(
                "requests served in full, P(N ≤ L*)",
                a.served_whole_at_best,
                "1",
                Method::Exact,
            ),
            Quantity::new(
                "mean wait without a limit",
                a.wait_without_limit_s,
                "s",
                Method::Exact,
            ),
            Quantity::new(
                "objective F(L*)",
                a.objective_at_best,
                "utility",
                Method::Exact,
            ),
        ];
        basis.extend(
            a.checks
                .iter()
                .filter(|c| !c.what.starts_with("M/G/1+D"))
                .map(check_quantity),
        );
        out.push(Recommendation {
            question: "Which max-token limit?".into(),
            answer: Quantity::new("max-token limit L*", a.best_limit_tokens, "tokens", Method::Exact),
            basis,
            note: format!(
                "Maximises F(L) = β·P(N ≤ L) − (1 − β)·E[W_q](L) with β = {} over {} limits (MATH.md §3, paper eq 10): \
                 a single server, FCFS, service S = a·min(N, L) + c, Poisson arrivals, patient users.",
                plots::sig(cfg.beta),
                l.grid.len()
            ),
        });
    }
    if let Some(i) = l.and_then(|l| l.answer.impatient.as_ref()) {
        let mut basis = vec![
            Quantity::new("patience τ", i.patience_s, "s", Method::Exact).note(
                match cfg.patience {
                    Some(_) => "given by --patience".to_string(),
                    None => {
                        format!("{DEFAULT_PATIENCE_FACTOR} × the mean service time without a limit")
                    }
                },
            ),
            Quantity::new(
                "users lost π(τ) at L*",
                i.loss_fraction_at_best,
                "1",
                Method::Exact,
            )
            .note("level crossing, MATH.md §2.2"),
            Quantity::new(
                "users lost at the largest limit of the sweep",
                i.loss_fraction_at_top_limit,
                "1",
                Method::Exact,
            ),
            Quantity::new(
                "mean wait of all users at L* (eq 9)",
                i.wait_all_at_best_s,
                "s",
                Method::Exact,
            ),
            Quantity::new(
                "objective at L*",
                i.objective_at_best,
                "utility",
                Method::Exact,
            ),
        ];
        basis.extend(
            l.iter()
                .flat_map(|l| &l.answer.checks)
                .filter(|c| c.what.starts_with("M/G/1+D"))
                .map(check_quantity),
        );
        out.push(Recommendation {
            question: "Which max-token limit if users give up after τ?".into(),
            answer: Quantity::new("max-token limit L* (impatient)", i.best_limit_tokens, "tokens", Method::Exact),
            basis,
            note: format!(
                "Maximises β·P(N ≤ L) − (1 − β)·E[W_q](L) − c·π(τ; L) with β = {}, c = {} per lost user \
                 (MATH.md §3, paper eq 11); a user whose wait would exceed τ leaves (reneging, paper eq 9).",
                plots::sig(cfg.beta),
                plots::sig(i.loss_cost)
            ),
        });
    }
    if let Some(b) = b {
        let a = &b.answer;
        let mut basis = vec![
            Quantity::new("arrival rate λ", a.arrival_rate_rps, "req/s", Method::Exact).note(
                match cfg.rate {
                    Some(_) => "given by --rate".to_string(),
                    None => format!(
                        "{} × the best fixed-batching throughput",
                        plots::sig(cfg.load)
                    ),
                },
            ),
            Quantity::new(
                "speed-optimal batch size K_v = argmax K/E[T_K]",
                a.speed_optimal_k as f64,
                "requests",
                Method::Exact,
            ),
            Quantity::new(
                "throughput at K_v",
                a.speed_optimal_rps,
                "req/s",
                Method::Exact,
            ),
            Quantity::new(
                "fixed batching: mean latency at K*",
                a.fixed_latency_s,
                "s",
                Method::Exact,
            )
            .note("embedded chain, random T_K (MATH.md §6)"),
            Quantity::new(
                "fixed batching: mean wait at K*",
                a.fixed_wait_s,
                "s",
                Method::Exact,
            ),
            Quantity::new(
                "dynamic batching: best cap K*",
                a.cap_k as f64,
                "requests",
                Method::Exact,
            )
            .note(if a.cap_stops_binding {
                "larger caps give the same latency: the cap no longer binds"
            } else {
                ""
            }),
            Quantity::new(
                "dynamic batching: mean latency with cap K*",
                a.cap_latency_s,
                "s",
                Method::Exact,
            )
            .note("embedded chain (MATH.md §7)"),
            Quantity::new(
                "dynamic batching: mean wait with cap K*",
                a.cap_wait_s,
                "s",
                Method::Exact,
            ),
        ];
        basis.extend(a.checks.iter().map(check_quantity));
        out.push(Recommendation {
            question: "Which batch size?".into(),
            answer: Quantity::new("fixed batch size K*", a.fixed_k as f64, "requests", Method::Exact),
            basis,
            note: format!(
                "Minimises the mean latency (arrival to the end of the request's batch) over K ≤ {}; batch time \
                 T_b = t1(b) + t2(b)·M_b with M_b the longest of b replies (MATH.md §5, paper eq 18).",
                cfg.max_batch
            ),
        });
    }
    out
}
