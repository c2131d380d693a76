//! Ctrl-C during a long command (`tokenq profile`, `tokenq bench`): finish the work in flight,
//! stop, and say what was kept and how to continue (exit status 130, as a shell reports a
//! process ended by SIGINT).
//!
//! [`install`] sets a SIGINT handler that only raises a flag (and restores the default action,
//! so a second Ctrl-C stops at once); [`StopOnInterrupt`] (feature `profiler`) turns the flag
//! into the profiler's `Flow::Stop` after the current point, so every finished point is on disk
//! for `--resume`.

use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(feature = "profiler")]
use profiler::{Flow, GridPoint, Observer, PlanSummary, PointRecord};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether SIGINT arrived since [`install`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

#[cfg(unix)]
extern "C" fn on_sigint(_signal: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
    let msg: &[u8] =
        b"\ninterrupt: stopping after the work in flight (Ctrl-C again to stop at once)\n";
    // SAFETY: write(2) and signal(2) are async-signal-safe; `msg` is a valid static buffer.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
}

/// Catch SIGINT (the first one) for a clean stop.
pub fn install() {
    #[cfg(unix)]
    {
        let handler: extern "C" fn(libc::c_int) = on_sigint;
        // SAFETY: the handler only touches an atomic and calls async-signal-safe functions.
        unsafe {
            libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        }
    }
}

/// The error of an interrupted command: printed as one line, exit status 130.
#[derive(Debug)]
pub struct Interrupted(pub String);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Interrupted {}

/// An observer that asks the profiler to stop after the current point once SIGINT arrived.
#[cfg(feature = "profiler")]
pub struct StopOnInterrupt<'a>(pub &'a mut dyn Observer);

#[cfg(feature = "profiler")]
impl std::fmt::Debug for StopOnInterrupt<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopOnInterrupt")
    }
}

#[cfg(feature = "profiler")]
impl Observer for StopOnInterrupt<'_> {
    fn planned(&mut self, plan: &PlanSummary) {
        self.0.planned(plan);
    }
    fn point_started(&mut self, point: &GridPoint, index: usize, total: usize) {
        self.0.point_started(point, index, total);
    }
    fn point_finished(&mut self, record: &PointRecord) -> Flow {
        let flow = self.0.point_finished(record);
        if interrupted() { Flow::Stop } else { flow }
    }
    fn warning(&mut self, message: &str) {
        self.0.warning(message);
    }
}
