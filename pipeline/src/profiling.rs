//! `tokenq profile` once its flags are validated: the dry-run plan, or the timed grid with a
//! progress bar and a clean stop on Ctrl-C, then the per-point summary with the roofline of the
//! device (docs/design.md "Contracts" for the timings table; docs/usage.md for the output).

use anyhow::{Context, Result};
use profiler::roofline::{Peaks, Roofline};
use profiler::{BackendConfig, ProfileConfig};

use crate::interrupt::{Interrupted, StopOnInterrupt};
use crate::progress::ProfileProgress;

/// How to report a profile.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Print the plan, time nothing.
    pub dry_run: bool,
    /// JSON on stdout instead of text (and no progress bar).
    pub json: bool,
    /// No progress bar.
    pub quiet: bool,
    /// The device's peak compute, TFLOP/s (else from its name).
    pub peak_tflops: Option<f64>,
    /// The device's peak memory bandwidth, GB/s (else from its name).
    pub peak_bandwidth_gbs: Option<f64>,
}

/// Profile the grid of `cfg` and print its summary (or only its plan). `backend`: one the caller
/// built (`BackendConfig::External`, a server); `None` builds the one `cfg` names.
pub fn run(
    cfg: &ProfileConfig,
    out: &Output,
    backend: Option<&mut dyn profiler::Backend>,
) -> Result<()> {
    if out.dry_run {
        profiler::lock::check_unfinished(cfg)?;
        let plan = profiler::plan(cfg)?;
        if out.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print!("{}", crate::progress::render_plan(&plan));
            println!("dry run: nothing was timed or written");
        }
        return Ok(());
    }
    let mut progress = ProfileProgress::new(out.quiet || out.json, "");
    crate::interrupt::install();
    let mut observer = StopOnInterrupt(&mut progress);
    let result = match backend {
        Some(b) => profiler::run_with_backend(cfg, b, &mut observer),
        None => profiler::run(cfg, &mut observer),
    };
    let summary = match result {
        Err(profiler::ProfileError::Interrupted { done, total }) => {
            progress.finish();
            return Err(Interrupted(format!(
                "interrupted: {done} of {total} points kept in {}; rerun with the same flags plus --resume to continue",
                profiler::parts_dir(&cfg.out).display()
            ))
            .into());
        }
        r => r?,
    };
    progress.finish();
    let df = profiler::read_frame(&summary.out)?;
    let stats = profiler::point_stats(&df).context("summarising the timings table")?;
    if out.json {
        let v = serde_json::json!({ "summary": summary, "points": stats });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let roofline = roofline(cfg, out, &summary);
    print!(
        "{}",
        crate::progress::render_summary(&summary, &stats, roofline.as_ref())
    );
    Ok(())
}

/// The roofline of the profiled model on its device: peaks from the flags, else from the
/// device's name; none for the synthetic backend or an unknown device without flags.
fn roofline(
    cfg: &ProfileConfig,
    out: &Output,
    summary: &profiler::ProfileSummary,
) -> Option<Roofline> {
    let BackendConfig::Candle(spec) = &cfg.backend else {
        return None;
    };
    let device = profiler::read_meta(&summary.meta)
        .ok()
        .and_then(|m| m.runs.last().map(|r| r.backend.device.clone()))
        .unwrap_or_default();
    Peaks::resolve(&device, out.peak_tflops, out.peak_bandwidth_gbs)
        .map(|p| Roofline::new(spec.model.clone(), spec.precision.bytes(), p))
}

/// `--reps`, `--synthetic-noise` and `--synthetic-spike-prob`, checked.
pub fn check_sizes(reps: Option<u32>, noise: f64, spike_prob: f64) -> Result<()> {
    if reps == Some(0) {
        anyhow::bail!("--reps 0: give at least 1 timed pass per point, e.g. --reps 3");
    }
    if !(noise.is_finite() && (0.0..=10.0).contains(&noise)) {
        anyhow::bail!(
            "--synthetic-noise {noise}: give the lognormal σ of the noise, between 0 and 10"
        );
    }
    if !(0.0..=1.0).contains(&spike_prob) {
        anyhow::bail!("--synthetic-spike-prob {spike_prob}: give a probability between 0 and 1");
    }
    Ok(())
}
