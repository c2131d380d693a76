//! Profile progress on stderr: a bar with ETA on a terminal, one line per grid point otherwise,
//! nothing when quiet. `tokenq profile` and `tokenq pipeline` share it.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use profiler::{Flow, GridPoint, Observer, PlanSummary, PointRecord};

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
