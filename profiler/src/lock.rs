//! One writer per timings table, and the checks on its output paths that must run under the
//! lock (docs/design.md "Errors and files").
//!
//! [`prepare`] runs before a profile plans anything:
//!
//! 1. `OUT` must not be a directory (else the whole grid would run, then fail to rename).
//! 2. An exclusive advisory lock: `OUT.lock`, created with `create_new` (atomic on every local
//!    file system), holds the writer's PID and its start time. A second writer is refused with
//!    `another tokenq (pid N) is writing OUT`. A lock whose process is gone (killed with
//!    SIGKILL, say; on Linux `/proc/PID` is checked, start time included, so a reused PID is
//!    not mistaken for the writer) is stale and taken over. The lock is released when the
//!    returned [`OutputLock`] is dropped, on success and on every error.
//! 3. The metadata sidecar `x.runs.json` is shared by `x.parquet` and `x.csv`: writing one
//!    while the other exists (with its sidecar) would replace the other's metadata, so it is
//!    refused.
//! 4. An unfinished `OUT.parts/`: `--force` (overwrite) without `--resume` removes it and starts
//!    over; without either it is refused, saying how many points it holds and both ways out;
//!    with `--resume` whatever setting changed since it was started is named.

use crate::error::ProfileError;
use crate::plan::{Grid, RepPolicy, Shard};
use crate::runner::{BackendConfig, ProfileConfig, RunMeta, meta_path, parts_dir};
use serde::Deserialize;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `OUT.lock` beside `OUT`.
pub fn lock_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    out.with_file_name(name)
}

/// The held lock on a table's outputs; dropping it releases the lock.
#[derive(Debug)]
pub struct OutputLock {
    path: PathBuf,
    content: String,
}

impl OutputLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Take the lock on `out` (see the module docs), or say who holds it.
    pub fn acquire(out: &Path) -> Result<Self, ProfileError> {
        let path = lock_path(out);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ProfileError::io(dir, e))?;
        }
        let me = Holder::me();
        let content = me.to_line();
        for _ in 0..5 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut f) => {
                    let written = f.write_all(content.as_bytes()).and_then(|()| f.sync_all());
                    if let Err(e) = written {
                        let _ = std::fs::remove_file(&path);
                        return Err(ProfileError::io(&path, e));
                    }
                    return Ok(Self { path, content });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = read_settled(&path);
                    match text.as_deref().and_then(Holder::parse) {
                        Some(h) if h.alive() != Some(false) => return Err(busy(out, &path, h.pid)),
                        // Dead holder, or a file its writer never filled: stale.
                        _ => take_over_stale(&path, text.as_deref().unwrap_or(""))?,
                    }
                }
                Err(e) => return Err(ProfileError::io(&path, e)),
            }
        }
        Err(ProfileError::output(
            &path,
            "could not be taken (other processes keep replacing it): retry, or choose another --out",
        ))
    }
}

impl Drop for OutputLock {
    fn drop(&mut self) {
        // Remove the lock only while it is still ours.
        if std::fs::read_to_string(&self.path).is_ok_and(|t| t == self.content) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn busy(out: &Path, lock: &Path, pid: u32) -> ProfileError {
    ProfileError::Config(format!(
        "another tokenq (pid {pid}) is writing {}: wait for it to finish, or choose another --out (its lock is {}; delete that only if no tokenq is running)",
        out.display(),
        lock.display()
    ))
}

/// The lock file's text, waiting briefly while it is empty (its writer is between creating it
/// and writing its PID).
fn read_settled(path: &Path) -> Option<String> {
    for _ in 0..40 {
        match std::fs::read_to_string(path) {
            Ok(t) if !t.trim().is_empty() => return Some(t),
            Ok(_) => std::thread::sleep(Duration::from_millis(25)),
            Err(_) => return None,
        }
    }
    Some(String::new())
}

/// Remove a stale lock: rename it to a name of our own first, so that two processes that both
/// found it stale cannot remove a fresh lock the other has just taken.
fn take_over_stale(path: &Path, seen: &str) -> Result<(), ProfileError> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".stale-{}", std::process::id()));
    let aside = path.with_file_name(name);
    match std::fs::rename(path, &aside) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ProfileError::io(path, e)),
    }
    let now = std::fs::read_to_string(&aside).unwrap_or_default();
    if now != seen {
        // Someone took the lock between our read and the rename: give it back.
        let _ = std::fs::hard_link(&aside, path);
    }
    let _ = std::fs::remove_file(&aside);
    Ok(())
}

/// A lock holder: PID and, where the system says, the process's start time (clock ticks after
/// boot), which tells a live writer from a new process that reused its PID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Holder {
    pid: u32,
    start: Option<u64>,
}

impl Holder {
    fn me() -> Self {
        let pid = std::process::id();
        Self {
            pid,
            start: start_time(pid),
        }
    }

    fn to_line(self) -> String {
        match self.start {
            Some(s) => format!("{} {s}\n", self.pid),
            None => format!("{}\n", self.pid),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let mut it = text.split_whitespace();
        let pid = it.next()?.parse().ok()?;
        let start = it.next().and_then(|s| s.parse().ok());
        Some(Self { pid, start })
    }

    /// `Some(true)` alive, `Some(false)` gone, `None` unknown (no `/proc`).
    fn alive(self) -> Option<bool> {
        if !Path::new("/proc/self/stat").exists() {
            return None;
        }
        match start_time(self.pid) {
            None => Some(false),
            Some(now) => Some(self.start.is_none_or(|s| s == now)),
        }
    }
}

/// Field 22 of `/proc/PID/stat` (start time in clock ticks), or `None`.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The manifest of a parts directory, as far as the messages need it.
#[derive(Debug, Deserialize)]
struct Manifest {
    fingerprint: String,
    grid: Grid,
    shard: Option<Shard>,
    seed: u64,
    rep_policy: RepPolicy,
}

/// Check the outputs of `config` and take the lock on them (see the module docs). Call before
/// planning; keep the lock until the table and its sidecar are written.
pub fn prepare(config: &ProfileConfig) -> Result<OutputLock, ProfileError> {
    let out = &config.out;
    if out.is_dir() {
        return Err(ProfileError::output(
            out,
            "is a directory: --out names the table file, e.g. --out DIR/profile.parquet",
        ));
    }
    if out.file_name().is_none() {
        return Err(ProfileError::output(
            out,
            "names no file: --out names the table file, e.g. --out profiles/run.parquet",
        ));
    }
    let lock = OutputLock::acquire(out)?;
    check_sidecar(out)?;
    check_unfinished(config)?;
    let parts = parts_dir(out);
    if parts.exists() && config.overwrite && !config.resume {
        std::fs::remove_dir_all(&parts).map_err(|e| ProfileError::io(&parts, e))?;
    }
    Ok(lock)
}

/// An unfinished `OUT.parts/`: resumable with `--resume` (else name what changed), discarded
/// with `--force` (by [`prepare`]), refused otherwise with both ways out. Also what a dry run
/// checks.
pub fn check_unfinished(config: &ProfileConfig) -> Result<(), ProfileError> {
    let parts = parts_dir(&config.out);
    if !parts.exists() {
        return Ok(());
    }
    if config.resume {
        return check_resumable(config, &parts);
    }
    if config.overwrite {
        return Ok(());
    }
    let done = count_points(&parts);
    Err(ProfileError::output(
        &parts,
        format!(
            "holds an unfinished profile ({done} point(s) done): pass --resume to continue it, or --force to discard it and start over"
        ),
    ))
}

/// Refuse to write `x.csv` (and its `x.runs.json`) while `x.parquet` and `x.runs.json` exist,
/// and the other way round: both tables map to the one sidecar.
pub fn check_sidecar(out: &Path) -> Result<(), ProfileError> {
    let meta = meta_path(out);
    if !meta.exists() {
        return Ok(());
    }
    let ext = out.extension().map(|e| e.to_ascii_lowercase());
    for other in ["parquet", "csv", "pq"] {
        if ext.as_deref() == Some(std::ffi::OsStr::new(other)) {
            continue;
        }
        let sibling = out.with_extension(other);
        if sibling.is_file() {
            return Err(ProfileError::output(
                out,
                format!(
                    "its metadata {} belongs to {} (both tables map to that sidecar; writing this one would replace it): choose another --out name",
                    meta.display(),
                    sibling.display()
                ),
            ));
        }
    }
    Ok(())
}

fn count_points(parts: &Path) -> usize {
    std::fs::read_dir(parts)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    n.starts_with("point-") && n.ends_with(".json")
                })
                .count()
        })
        .unwrap_or(0)
}

fn list<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The repetition flags of a policy: `--reps N` when it is fixed.
fn reps_flags(r: &RepPolicy) -> String {
    if r.min_reps == r.max_reps {
        format!("--reps {}", r.min_reps)
    } else {
        format!(
            "--min-time {} --min-reps {} --max-reps {}",
            r.min_time_s, r.min_reps, r.max_reps
        )
    }
}

/// With `--resume`: the parts must come from the same plan; name what changed.
fn check_resumable(config: &ProfileConfig, parts: &Path) -> Result<(), ProfileError> {
    let manifest_path = parts.join("manifest.json");
    let text = match std::fs::read_to_string(&manifest_path) {
        Ok(t) => t,
        Err(_) => {
            return Err(ProfileError::output(
                parts,
                "has no readable manifest.json, so it cannot be resumed: pass --force without --resume to discard it and start over",
            ));
        }
    };
    let m: Manifest = serde_json::from_str(&text).map_err(|e| {
        ProfileError::output(
            &manifest_path,
            format!(
                "unreadable ({e}), so the parts cannot be resumed: pass --force without --resume to discard them and start over"
            ),
        )
    })?;
    if m.fingerprint == crate::runner::fingerprint(config) && m.shard == config.shard {
        return Ok(());
    }
    let mut changed = Vec::new();
    let g = &config.grid;
    if m.grid.batch_sizes != g.batch_sizes {
        changed.push(format!(
            "--batch {} (was {})",
            list(&g.batch_sizes),
            list(&m.grid.batch_sizes)
        ));
    }
    if m.grid.input_tokens != g.input_tokens {
        changed.push(format!(
            "--input {} (was {})",
            list(&g.input_tokens),
            list(&m.grid.input_tokens)
        ));
    }
    if m.grid.max_output != g.max_output {
        changed.push(format!(
            "--output {} (was {})",
            g.max_output, m.grid.max_output
        ));
    }
    if m.shard != config.shard {
        let s = |s: Option<Shard>| s.map_or("none".into(), |s| format!("{}/{}", s.index, s.count));
        changed.push(format!("--shard {} (was {})", s(config.shard), s(m.shard)));
    }
    if m.seed != config.seed {
        changed.push(format!("--seed {} (was {})", config.seed, m.seed));
    }
    let (r, was) = (config.reps, m.rep_policy);
    if r.warmup_passes != was.warmup_passes {
        changed.push(format!(
            "--warmup {} (was {})",
            r.warmup_passes, was.warmup_passes
        ));
    }
    if (r.min_time_s, r.min_reps, r.max_reps) != (was.min_time_s, was.min_reps, was.max_reps) {
        changed.push(format!("{} (was {})", reps_flags(&r), reps_flags(&was)));
    }
    if changed.is_empty() {
        changed.push(backend_change(config, parts));
    }
    Err(ProfileError::output(
        parts,
        format!(
            "was started with other settings, so --resume cannot continue it: {}; rerun with the original flags plus --resume, or pass --force without --resume to discard it and start over",
            changed.join(", ")
        ),
    ))
}

/// What changed in the backend since the parts were started (their last run record).
fn backend_change(config: &ProfileConfig, parts: &Path) -> String {
    let last = std::fs::read_dir(parts)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.starts_with("run-") && n.ends_with(".json")
        })
        .filter_map(|e| {
            let t = std::fs::read_to_string(e.path()).ok()?;
            serde_json::from_str::<RunMeta>(&t).ok()
        })
        .max_by(|a, b| a.started_at.cmp(&b.started_at));
    let now = match &config.backend {
        BackendConfig::Candle(c) => (
            "candle".to_string(),
            c.model.name.clone(),
            c.precision.name().to_string(),
            c.weights.describe(),
        ),
        BackendConfig::Synthetic(_) => (
            "synthetic".into(),
            "synthetic-linear".into(),
            "none".into(),
            String::new(),
        ),
        BackendConfig::External(e) => (
            e.backend.clone(),
            e.model.clone(),
            e.dtype.clone(),
            e.identity.clone(),
        ),
    };
    let mut out = Vec::new();
    if let Some(was) = last {
        let b = &was.backend;
        if b.backend != now.0 {
            out.push(format!("--backend {} (was {})", now.0, b.backend));
        } else {
            if b.model != now.1 {
                out.push(format!("--model {} (was {})", now.1, b.model));
            }
            if b.dtype != now.2 && now.0 == "candle" {
                out.push(format!("--dtype {} (was {})", now.2, b.dtype));
            }
            if b.weights != now.3 && now.0 == "candle" {
                out.push(format!("weights {} (was {})", now.3, b.weights));
            }
        }
    }
    if out.is_empty() {
        "the backend settings (device, model configuration, weights or synthetic settings)".into()
    } else {
        out.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_lines_round_trip_and_this_process_is_alive() {
        let me = Holder::me();
        assert_eq!(Holder::parse(&me.to_line()), Some(me));
        assert_eq!(Holder::parse("123\n").map(|h| h.pid), Some(123));
        assert!(Holder::parse("").is_none() && Holder::parse("x").is_none());
        assert_ne!(me.alive(), Some(false));
        if me.start.is_some() {
            let reused = Holder {
                start: me.start.map(|s| s + 1),
                ..me
            };
            assert_eq!(
                reused.alive(),
                Some(false),
                "a reused PID is not the writer"
            );
        }
    }

    #[test]
    fn a_second_lock_is_refused_and_a_stale_one_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("t.parquet");
        let first = OutputLock::acquire(&out).unwrap();
        let e = OutputLock::acquire(&out).unwrap_err().to_string();
        assert!(
            e.contains(&format!("another tokenq (pid {})", std::process::id())),
            "{e}"
        );
        drop(first);
        assert!(!lock_path(&out).exists(), "released on drop");
        // A PID that cannot be running (beyond pid_max) leaves a stale lock.
        if Path::new("/proc/self/stat").exists() {
            std::fs::write(lock_path(&out), "4294967294 1\n").unwrap();
            let l = OutputLock::acquire(&out).unwrap();
            assert!(
                std::fs::read_to_string(l.path())
                    .unwrap()
                    .starts_with(&format!("{} ", std::process::id()))
            );
        }
    }
}
