//! The stages of `tokenq pipeline` (docs/usage.md "Reports"): profile → timings table → fit →
//! coefficients file → queueing questions → simulation checks → report (HTML with inline SVG,
//! plus one SVG per figure). The binary validates its flags into a [`PipelineConfig`] and calls
//! [`run`]; the tests call the same function.
//!
//! With the default configuration it profiles the `tiny` random-weight Llama on the CPU over a
//! small grid (`profiler::ProfileConfig::default_tiny`), fits `T(n) = a·n + c` and `t1(b)`,
//! `t2(b)` (paper Fig. 2), and answers two questions for the workload's output lengths:
//!
//! * **max-token limit** ([`limit`]; docs/models.md §1, §3; paper eqs 1–5, 10–13): M/G/1 with
//!   clipping, service `S = a·min(N, L) + c`, Poisson arrivals at `load` × the unclipped
//!   capacity `1/E[S]`; `L* = argmax_L F(L)`, `F(L) = β·P(N ≤ L) − (1 − β)·E[W_q](L)`
//!   (utility "all or nothing", β = 119/120 as in the paper's §V-B);
//! * **batch size** ([`batching`]; docs/models.md §5–§7; paper eqs 18–25): fixed batching `K*`
//!   and the dynamic cap `K*` minimising mean latency by the exact embedded chains (random
//!   `T_b`), at `load` × the best fixed-batching throughput `max_K K/E[T_K]`; plus latency
//!   against arrival rate for dynamic and elastic batching with Inoue's bound (eq 16).
//!
//! Each answer is checked by the event-driven simulator (`sim`), and the report
//! ([`summary`]) shows the prediction beside the simulation's 95% interval. Every number
//! carries its unit and method. The report is written last and atomically: a failed run leaves
//! no `report.html` behind (an old one in the output directory is removed first).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use fit::tables::{TimeColumn, read_steps};
use fit::{FitOptions, StepRow, fit_steps};
use profiler::roofline::{Peaks, Roofline};
use profiler::{BackendConfig, ProfileConfig};
use queueing::batch::{
    BatchConfig, BatchTime, ChainOptions, LlmBatch, Objective, PaddedTreatment, Policy, analyze,
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
use tokenq_core::coefficients::{CoefficientsFile, FitQuality, Provenance};

use tokenq_core::Estimate;

use crate::check::Comparison;
use crate::progress::ProfileProgress;

mod answers;
mod batching;
mod capacity;
mod coefficients;
mod limit;
mod summary;

use batching::*;
use capacity::*;
use coefficients::*;
use limit::*;
use summary::*;

pub use answers::{BatchAnswer, ImpatientAnswer, LimitAnswer, Percentiles, Summary};
pub use capacity::CapacityQuestion;

/// Paper §V-B weight of utility against delay in the provider objective (eq 10).
pub const DEFAULT_BETA: f64 = 119.0 / 120.0;
/// Default offered load: arrival rate as a fraction of the capacity of the system analysed.
pub const DEFAULT_LOAD: f64 = 0.7;
/// Default patience τ as a multiple of the mean unclipped service time (the paper's §V-B has
/// τ = 60 s against E[S] ≈ 22–30 s).
pub(crate) const DEFAULT_PATIENCE_FACTOR: f64 = 3.0;
/// Paper §V-B cost of a lost user in the impatient objective (eq 11).
pub const DEFAULT_LOSS_COST: f64 = 4.0;
/// Grid cells of the level-crossing solve of M/G/1+D (second order; 2000 cells ≈ 1e-7 relative).
pub(crate) const IMPATIENCE_GRID: usize = 2000;
/// Largest batch size searched.
pub const DEFAULT_MAX_BATCH: usize = 64;
/// Points of the max-token-limit sweep.
pub(crate) const LIMIT_POINTS: usize = 40;
/// Max-token limits checked by simulation (as fractions of the sweep range), besides L*.
pub(crate) const SIM_LIMIT_FRACTIONS: [f64; 3] = [0.25, 0.5, 1.0];
/// Arrival rates of the rate sweep below half the largest stable rate, as fractions of it;
/// [`rate_fractions`] adds the steep part towards ρ → 1.
pub(crate) const LOW_RATE_FRACTIONS: [f64; 6] = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5];
/// Points of the rate sweep above half the largest stable rate, spaced geometrically in
/// 1 − ρ from 0.5 down to [`CLOSEST_TO_SATURATION`].
pub(crate) const HIGH_RATE_POINTS: usize = 7;
/// The last rate of the sweep is this close to the largest stable rate: 1 − ρ = 0.05 (the
/// exact chains grow as 1/(1 − ρ): closer points cost seconds each).
pub(crate) const CLOSEST_TO_SATURATION: f64 = 0.05;
/// Rates of the sweep checked by simulation (the nearest sweep point to each fraction).
pub(crate) const SIM_RATE_FRACTIONS: [f64; 3] = [0.2, 0.5, 0.8];
/// Optimiser ties: the smallest L (K) whose objective is within this relative distance of the
/// best is reported, so rounding noise in flat optima does not pick the answer.
pub(crate) const TIE_REL: f64 = 1e-3;

/// The rate sweep as fractions of the largest stable rate: even steps up to 0.5, then
/// geometric in 1 − ρ (0.5 → 0.05), where the latency rises steeply.
pub(crate) fn rate_fractions() -> Vec<f64> {
    let mut f = LOW_RATE_FRACTIONS.to_vec();
    let ratio = (CLOSEST_TO_SATURATION / 0.5).powf(1.0 / HIGH_RATE_POINTS as f64);
    f.extend((1..=HIGH_RATE_POINTS).map(|i| 1.0 - 0.5 * ratio.powi(i as i32)));
    f
}
/// Batch sizes for the E[M_b] / E[T_b] / speed figure.
pub(crate) const MOMENT_BATCHES: [usize; 10] = [1, 2, 3, 4, 6, 8, 12, 16, 32, 64];
/// Upper quantile used as the top of the limit sweep for unbounded laws.
pub(crate) const UNBOUNDED_TOP_QUANTILE: f64 = 0.999;

/// The validated configuration of one pipeline run (the binary builds it from its flags).
#[derive(Debug)]
pub struct PipelineConfig {
    /// Where the latency coefficients come from.
    pub source: Source,
    /// The workload spec as given (for labels).
    pub workload_spec: String,
    /// Output-token law of the workload.
    pub workload: TokenDist,
    /// Output directory.
    pub out: PathBuf,
    /// Arrival rate λ (req/s) for both questions; `None` = `load` × each system's capacity.
    pub rate: Option<f64>,
    /// Offered load when `rate` is `None`.
    pub load: f64,
    /// Weight β of utility against mean wait (paper eq 10).
    pub beta: f64,
    /// Patience τ of impatient users (s); `None` = a multiple of the mean service time.
    pub patience: Option<f64>,
    /// Cost c_ℓ of a lost user (paper eq 11).
    pub loss_cost: f64,
    /// Largest batch size searched.
    pub max_batch: usize,
    /// Simulated arrivals per checked point.
    pub sim_requests: u64,
    /// Seed of the profile order, prompts and simulations.
    pub seed: u64,
    /// Device label written into the coefficients' provenance when profiling.
    pub device: String,
    /// Dtype label written into the coefficients' provenance when profiling.
    pub dtype: String,
    /// No progress output on stderr.
    pub quiet: bool,
    /// Device peaks for the roofline (dense 16-bit TFLOP/s, memory GB/s); each defaults to the
    /// table's value for the profiled device.
    pub peaks: (Option<f64>, Option<f64>),
    /// The capacity question at `rate` (`--slo`), when asked.
    pub capacity: Option<CapacityQuestion>,
}

impl PipelineConfig {
    /// Check the numbers of the questions; each error names the flag and the fix.
    pub fn validate(&self) -> Result<()> {
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            bail!("--rate {r}: give a positive arrival rate in req/s, e.g. 0.5");
        }
        if let Some(r) = self.rate {
            crate::values::rate("--rate", r)?;
        }
        if let Some(q) = &self.capacity {
            if self.rate.is_none() {
                bail!(
                    "--slo needs --rate: give the arrival rate in req/s at which the SLOs must hold, e.g. --rate 3"
                );
            }
            if q.max_gpus == 0 || q.max_gpus > 1024 {
                bail!("--max-gpus {}: give 1 to 1024", q.max_gpus);
            }
            if !(0.0..=1.0).contains(&q.min_served_fraction) {
                bail!(
                    "--min-served-fraction {}: give a fraction in [0, 1]",
                    q.min_served_fraction
                );
            }
        }
        if !(self.load >= 1e-3 && self.load < 1.0) {
            bail!(
                "--load {}: give a fraction of capacity from 0.001 to below 1, e.g. 0.7",
                self.load
            );
        }
        if !(self.beta > 0.0 && self.beta < 1.0) {
            bail!(
                "--beta {}: give a weight strictly between 0 and 1, e.g. 0.99",
                self.beta
            );
        }
        for (flag, v) in [
            ("--peak-tflops", self.peaks.0),
            ("--peak-bandwidth-gbs", self.peaks.1),
        ] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                bail!("{flag} {v}: give the device's peak as a positive number");
            }
        }
        if let Some(t) = self.patience
            && !(t.is_finite() && t > 0.0)
        {
            bail!("--patience {t}: give a positive number of seconds, e.g. 60");
        }
        if !(self.loss_cost.is_finite() && self.loss_cost >= 0.0) {
            bail!(
                "--loss-cost {}: give a cost ≥ 0 per lost user, e.g. 4",
                self.loss_cost
            );
        }
        if self.max_batch == 0 || self.max_batch > 4096 {
            bail!(
                "--max-batch {}: give a batch size between 1 and 4096",
                self.max_batch
            );
        }
        if self.sim_requests > 1_000_000_000 {
            bail!(
                "--sim-requests {}: at most 1000000000 per check (about a minute each)",
                self.sim_requests
            );
        }
        if self.sim_requests < 10_000 {
            bail!(
                "--sim-requests {}: give at least 10000 so the 95% intervals mean something",
                self.sim_requests
            );
        }
        Ok(())
    }
}

/// An interrupted run leaves `DIR/profile.parquet.parts`: continue it with `--resume`, or
/// discard it with `--force`; without either, say so before anything is removed or run.
pub fn check_unfinished(table: &std::path::Path, resume: bool, force: bool) -> Result<()> {
    let parts = profiler::parts_dir(table);
    match (parts.is_dir(), resume, force) {
        (true, false, false) => bail!(
            "{} holds the unfinished profile of an interrupted pipeline: pass --resume (with the same flags) to continue it, or --force to discard it and start over",
            parts.display()
        ),
        (false, true, _) => bail!(
            "--resume: {} holds no unfinished profile to continue (a finished one can be reused with --profile {}); drop --resume",
            parts.display(),
            table.display()
        ),
        _ => Ok(()),
    }
}

/// Where the latency coefficients come from.
#[derive(Debug)]
pub enum Source {
    /// Profile a model, then fit.
    Profile(Box<ProfileConfig>),
    /// Fit this timings table.
    Table(PathBuf),
    /// Read this coefficients file.
    Coefficients(PathBuf),
}

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

/// Run the whole pipeline: profile (or read) → fit → queueing answers → simulation checks →
/// `report.html` and one SVG per figure in `cfg.out`. Returns what was written and answered.
pub fn run(cfg: &PipelineConfig) -> Result<Summary> {
    cfg.validate()?;
    let started = Instant::now();
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("--out {}: cannot create the directory", cfg.out.display()))?;
    // What an earlier run left here (report, figures, coefficients, profile), never an input.
    let keep: Vec<PathBuf> = match &cfg.source {
        Source::Table(p) => vec![p.clone(), profiler::meta_path(p)],
        Source::Coefficients(p) => vec![p.clone()],
        Source::Profile(_) => vec![],
    };
    crate::outdir::remove_previous_outputs(&cfg.out, &keep)?;
    let quiet = cfg.quiet;
    let mut steps = Steps {
        quiet,
        total: match cfg.source {
            Source::Profile(_) => 5,
            Source::Table(_) => 4,
            Source::Coefficients(_) => 3,
        } + usize::from(cfg.capacity.is_some()),
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
    let mut roofline: Option<Roofline> = None;
    if let Source::Profile(pc) = &cfg.source {
        let what = match &pc.backend {
            BackendConfig::Candle(s) => format!(
                "profiling {} ({}) on {}",
                s.model.name, "random weights", cfg.device
            ),
            BackendConfig::Synthetic(_) => {
                "profiling the synthetic backend (modelled clock)".into()
            }
            BackendConfig::External(e) => format!("profiling {} at {}", e.model, e.device),
        };
        steps.begin(&what);
        let mut obs = ProfileProgress::new(quiet, "      ");
        let summary = profiler::run(pc, &mut obs).context("profiling failed")?;
        obs.finish();
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
        if let BackendConfig::Candle(spec) = &pc.backend {
            let device = profiler::read_meta(&summary.meta)
                .ok()
                .and_then(|m| m.runs.last().map(|r| r.backend.device.clone()))
                .unwrap_or_default();
            roofline = Peaks::resolve(&device, cfg.peaks.0, cfg.peaks.1)
                .map(|p| Roofline::new(spec.model.clone(), spec.precision.bytes(), p));
        }
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
                        cfg.device.clone(),
                        format!("{} (random weights)", s.model.name),
                        cfg.dtype.clone(),
                    ),
                    BackendConfig::Synthetic(_) => (
                        "synthetic".into(),
                        "synthetic linear latency model".into(),
                        "n/a".into(),
                    ),
                    BackendConfig::External(e) => {
                        (e.device.clone(), e.model.clone(), e.dtype.clone())
                    }
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
            let mut file = fitted.into_file(provenance, Vec::new());
            // A noisy profile can fit a single-request line that is not positive over its
            // range; the questions then use the batch lines (t1(1), t2(1)) instead of stopping.
            if let Err(why) = file.validate()
                && file.single_request.is_some()
            {
                let mut without = file.clone();
                without.single_request = None;
                if without.validate().is_ok() {
                    let note = format!(
                        "The fitted single-request line was dropped ({why}): the profile is too noisy for it; the token-limit question uses t1(1) and t2(1) instead."
                    );
                    steps.note(&format!("warning: {note}"));
                    notes.push(note);
                    file = without;
                }
            }
            file.write(&coeff_path)
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", coeff_path.display()))?;
            steps.note(&format!("wrote {}", coeff_path.display()));
            for w in poor_fit_warnings(&file) {
                steps.note(&format!("warning: {w}"));
            }
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
    // At a given --rate a question may have no stable setting; it is then left unanswered,
    // with the reason, and the run goes on (without --rate every question is asked at a load
    // below its capacity).
    let mut unanswered: Vec<String> = Vec::new();
    let limit = match single {
        Some(svc) => answered(
            cfg,
            &steps,
            &mut unanswered,
            "Max-token limit",
            limit_analysis(cfg, svc),
        )?,
        None => None,
    };
    let batching = match batch {
        Some(k) => answered(
            cfg,
            &steps,
            &mut unanswered,
            "Batch size",
            batch_analysis(cfg, k),
        )?,
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
        simulate_limit(cfg, svc, l)?;
    }
    if let (Some(b), Some(k)) = (&mut batching, batch) {
        simulate_batching(cfg, k, b)?;
    }
    for c in limit
        .iter()
        .flat_map(|l| &l.answer.checks)
        .chain(batching.iter().flat_map(|b| &b.answer.checks))
    {
        steps.note(&format!(
            "{}: model {:.4} {u}, simulation {:.4} ± {:.4} {u} ({})",
            c.quantity,
            c.analytic,
            c.sim,
            c.sim_half_width,
            c.verdict(),
            u = if c.unit == "1" { "" } else { c.unit }
        ));
    }

    // 5. capacity plan (SLOs)
    let capacity = match (&cfg.capacity, cfg.rate) {
        (Some(q), Some(rate)) => {
            steps.begin(&format!(
                "planning capacity for {} at {rate} req/s",
                q.slos
                    .iter()
                    .map(|s| s.label())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let c = capacity_analysis(cfg, q, rate, &coeffs, &coeff_source, &mut notes)?;
            steps.note(&format!(
                "{} configurations in {:.1} s; {}",
                c.answer.evaluated,
                c.answer.elapsed_s,
                match c.answer.min_gpus {
                    Some(n) => format!("fewest GPUs meeting every SLO: {n}"),
                    None => "no configuration meets every SLO".into(),
                }
            ));
            Some(c)
        }
        _ => None,
    };
    if limit.is_none() && batching.is_none() && capacity.is_none() {
        bail!(
            "no question could be answered: {}; lower --rate, or ask for SLOs with --slo (the capacity plan spreads the rate over several GPUs)",
            unanswered.join("; ")
        );
    }

    // 6. report
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
    if let Some(c) = &capacity {
        figures.extend(crate::plan_plots::figures(&c.config, &c.answer)?);
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
    // Fits read from a coefficients file are flagged too: the file carries their quality.
    let fit_warnings = poor_fit_warnings(&coeffs);
    if matches!(cfg.source, Source::Coefficients(_)) {
        for w in &fit_warnings {
            steps.note(&format!("warning: {w}"));
        }
    }
    let mut summary_lines = capacity
        .iter()
        .flat_map(capacity_sentences)
        .collect::<Vec<_>>();
    summary_lines.extend(summary_sentences(cfg, limit.as_ref(), batching.as_ref()));
    summary_lines.extend(unanswered.iter().cloned());
    let mut recommendations = capacity
        .iter()
        .map(capacity_recommendation)
        .collect::<Vec<_>>();
    recommendations.extend(summary::recommendations(
        cfg,
        limit.as_ref(),
        batching.as_ref(),
    ));
    let report = Report {
        title: format!("tokenq report — {} on {}", p.model, p.device),
        summary: summary_lines.clone(),
        fit_warnings: fit_warnings.clone(),
        metadata,
        fit_table: fit_table(&coeffs),
        roofline: roofline.as_ref().map(|r| roofline_table(&rows, r)),
        coefficients: coefficient_quantities(&coeffs),
        recommendations,
        capacity_plan: capacity.as_ref().map(capacity_table),
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
        eprintln!("summary:");
        for line in &summary_lines {
            eprintln!("  {line}");
        }
        if !fit_warnings.is_empty() {
            eprintln!(
                "  Warning: {} poor fit(s) (R² < {R2_WARN} or held-out MAPE > {HOLDOUT_WARN_PCT}%): the answers rest on doubtful coefficients; see the warnings above and the report's Fit section.",
                fit_warnings.len()
            );
        }
        eprintln!(
            "done in {:.1} s: open {}",
            started.elapsed().as_secs_f64(),
            written.html.display()
        );
    }
    Ok(Summary {
        out: cfg.out.clone(),
        report: written.html,
        svgs: written.svgs,
        coefficients: coeff_source,
        workload: cfg.workload_spec.clone(),
        token_limit: limit.map(|l| l.answer),
        batch_size: batching.map(|b| b.answer),
        capacity: capacity.map(|c| c.answer),
        unanswered,
        summary: summary_lines,
        fit_warnings,
        notes,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

/// A question's answer, or — at a given `--rate`, where it may have no stable setting — `None`
/// with the reason noted in `unanswered`.
fn answered<T>(
    cfg: &PipelineConfig,
    steps: &Steps,
    unanswered: &mut Vec<String>,
    what: &str,
    r: Result<T>,
) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if cfg.rate.is_some() => {
            let why = format!("{what}: not answered at this --rate on one GPU — {e:#}");
            steps.note(&format!("warning: {why}"));
            unanswered.push(why);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
