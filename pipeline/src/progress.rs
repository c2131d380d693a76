//! Profile progress on stderr (a bar with ETA on a terminal, one line per grid point otherwise,
//! nothing when quiet), shared by `tokenq profile` and `tokenq pipeline`, and the text of a
//! profile's plan and summary.

use std::fmt::Write as _;
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use profiler::roofline::Roofline;
use profiler::{Flow, GridPoint, Observer, PlanSummary, PointRecord, PointStats, ProfileSummary};

/// A [`profiler::Observer`] that shows progress.
#[derive(Debug)]
pub struct ProfileProgress {
    bar: Option<ProgressBar>,
    plain: bool,
    indent: &'static str,
}

impl ProfileProgress {
    /// Progress for a run; `indent` prefixes every line (the pipeline nests it under a step).
    pub fn new(quiet: bool, indent: &'static str) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = (!quiet && tty).then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(&format!(
                    "{indent}{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} points, ETA {{eta}} {{msg}}"
                ))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b
        });
        Self {
            bar,
            plain: !quiet && !tty,
            indent,
        }
    }

    /// Remove the bar (call when the run ends).
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
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
                "{}point {:>4}: batch {:>4}, input {:>5} tokens: {} ({} passes, {:.2} s)",
                self.indent,
                r.point_id,
                r.batch_size,
                r.input_tokens,
                r.status,
                r.reps,
                r.elapsed_s
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

/// Seconds as `12.34 ms` below a second, `1.23 s` above.
fn fmt_s(s: f64) -> String {
    if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// The plan of a profile (`--dry-run` and before a run).
pub fn render_plan(plan: &PlanSummary) -> String {
    let mut o = String::new();
    let todo = plan.points.len() - plan.already_done.len();
    let _ = writeln!(
        o,
        "plan: {} {} on {} ({}), grid {} batch sizes × {} input lengths = {} points{}",
        plan.backend,
        plan.model,
        plan.device,
        plan.dtype,
        plan.grid.batch_sizes.len(),
        plan.grid.input_tokens.len(),
        plan.grid_points,
        plan.shard
            .map(|s| format!(", shard {}/{} has {}", s.index, s.count, plan.points.len()))
            .unwrap_or_default()
    );
    let _ = writeln!(
        o,
        "  batch sizes {:?}, input tokens {:?}, max output {} tokens ({} timed steps per pass)",
        plan.grid.batch_sizes, plan.grid.input_tokens, plan.grid.max_output, plan.steps_per_pass
    );
    let _ = writeln!(
        o,
        "  per point: {} warm-up pass(es), then {}..{} timed passes (≥ {} s timed)",
        plan.rep_policy.warmup_passes,
        plan.rep_policy.min_reps,
        plan.rep_policy.max_reps,
        plan.rep_policy.min_time_s
    );
    if !plan.already_done.is_empty() {
        let _ = writeln!(
            o,
            "  resuming: {} point(s) already done, {todo} to go",
            plan.already_done.len()
        );
    }
    if let Some(kv) = &plan.kv_capacity {
        let caps: Vec<String> = kv
            .entries
            .iter()
            .map(|e| format!("{} tokens → batch ≤ {}", e.seq_tokens, e.max_batch))
            .collect();
        let _ = writeln!(
            o,
            "  KV-cache capacity ({:.2} GiB budget, {}): {}",
            kv.budget_bytes as f64 / profiler::capacity::GIB,
            kv.source,
            caps.join(", ")
        );
    }
    let _ = writeln!(
        o,
        "  estimated time: {} ({})",
        fmt_s(plan.estimated_s),
        plan.estimate_kind
    );
    o
}

/// The fraction of the roofline a measured time reaches, as a percentage.
fn pct_of(roofline_s: f64, measured_s: f64) -> String {
    format!("{:.0}%", 100.0 * roofline_s / measured_s)
}

/// What a finished profile wrote and measured, per point (host clock; no queueing), with the
/// achieved fraction of the roofline where the device's peaks are known.
pub fn render_summary(
    summary: &ProfileSummary,
    stats: &[PointStats],
    roofline: Option<&Roofline>,
) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "profiled {} point(s) ({} ok, {} failed{}) in {}: {} rows → {}",
        summary.points_ok + summary.points_failed,
        summary.points_ok,
        summary.points_failed,
        if summary.points_resumed > 0 {
            format!(", {} resumed", summary.points_resumed)
        } else {
            String::new()
        },
        fmt_s(summary.elapsed_s),
        summary.rows,
        summary.out.display()
    );
    let _ = writeln!(
        o,
        "metadata (runs, points, outliers, KV capacity) → {}",
        summary.meta.display()
    );
    let _ = writeln!(
        o,
        "outliers (Tukey fences, labelled and kept): {} mild, {} far-out",
        summary.outliers_mild, summary.outliers_far
    );
    if let Some(kv) = &summary.kv_capacity {
        let caps: Vec<String> = kv
            .entries
            .iter()
            .map(|e| format!("{} tokens → batch ≤ {}", e.seq_tokens, e.max_batch))
            .collect();
        let _ = writeln!(o, "KV-cache capacity ({}): {}", kv.source, caps.join(", "));
    }
    let _ = writeln!(
        o,
        "measured means per point (host clock; no queueing, so TTFT = prefill):"
    );
    let head = roofline.map_or(String::new(), |r| {
        format!("  {:>10} {:>10}", "TTFT/roof", "TPOT/roof")
            + &format!(
                "   (roofline: {}, {} TFLOP/s, {} GB/s)",
                r.peaks.device, r.peaks.tflops, r.peaks.bandwidth_gbs
            )
    });
    let _ = writeln!(
        o,
        "  {:>5} {:>6} {:>5} {:>12} {:>12} {:>14}{head}",
        "batch", "input", "reps", "TTFT", "TPOT", "e2e"
    );
    for s in stats {
        let roof = roofline.map_or(String::new(), |r| {
            let (b, p) = (u64::from(s.batch_size), u64::from(s.input_tokens));
            // TPOT is the mean decode step: take the roofline at the mean context.
            let mid = p + u64::from(s.output_tokens) / 2;
            format!(
                "  {:>10} {:>10}",
                pct_of(r.prefill_s(b, p), s.ttft_s),
                s.tpot_s
                    .map_or("-".into(), |t| pct_of(r.decode_s(b, mid), t))
            )
        });
        let _ = writeln!(
            o,
            "  {:>5} {:>6} {:>5} {:>12} {:>12} {:>14}{roof}",
            s.batch_size,
            s.input_tokens,
            s.reps,
            fmt_s(s.ttft_s),
            s.tpot_s.map(fmt_s).unwrap_or_else(|| "-".into()),
            format!("{} @{} tok", fmt_s(s.e2e_s), s.output_tokens)
        );
    }
    if roofline.is_some() {
        let _ = writeln!(
            o,
            "X/roof = the roofline time (max of FLOPs / peak and bytes / bandwidth) over the measured time: 100% is the device's limit"
        );
    }
    o
}
