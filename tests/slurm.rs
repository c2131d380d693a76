//! `scripts/slurm-profile.sh` on a real Slurm scheduler, end to end: a job array of `tokenq
//! profile --shard I/N` tasks on the tiny CPU model merges into exactly the grid of a
//! single-process profile; a task requeued while it runs resumes its finished points; a task
//! cancelled for good leaves no merge, and merging the shards that exist names the missing points.
//!
//! Runs only where `SLURM_CONF` is set and `sbatch` works; `.ci/run` starts a one-node cluster
//! for it with `scripts/slurm-local.sh` (by hand: `scripts/slurm-local.sh start DIR`, then
//! `eval "$(scripts/slurm-local.sh env DIR)"`). Elsewhere each test prints "skipped: …".
//! Tasks are submitted as the CPU recipe documents: `--gres=none --cpus-per-task=1`.
#![cfg(feature = "profiler")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The tests share one small cluster; run them one at a time so that timings stay predictable.
static CLUSTER: Mutex<()> = Mutex::new(());

/// How long a job array may take before the test gives up (and cancels it).
const JOB_TIMEOUT: Duration = Duration::from_secs(240);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-profile.sh")
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `None` when a cluster is usable, else why not (asked once per test run).
fn unavailable() -> Option<String> {
    static ANSWER: OnceLock<Option<String>> = OnceLock::new();
    ANSWER.get_or_init(ask_cluster).clone()
}

fn ask_cluster() -> Option<String> {
    if std::env::var_os("SLURM_CONF").is_none() {
        return Some(
            "SLURM_CONF is not set (scripts/slurm-local.sh start DIR; eval \"$(scripts/slurm-local.sh env DIR)\")"
                .into(),
        );
    }
    match Command::new("sbatch")
        .args([
            "--test-only",
            "--gres=none",
            "--cpus-per-task=1",
            "--wrap=true",
        ])
        .output()
    {
        Err(e) => Some(format!("cannot run sbatch: {e}")),
        Ok(o) if !o.status.success() => {
            Some(format!("sbatch --test-only fails: {}", text(&o).trim()))
        }
        Ok(_) => None,
    }
}

/// Take the cluster, or say why the test is skipped.
fn cluster(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    if let Some(why) = unavailable() {
        println!("skipped: {test}: {why}");
        return None;
    }
    Some(CLUSTER.lock().unwrap_or_else(|e| e.into_inner()))
}

/// One profile grid: the script's environment variables.
struct Grid {
    batch: &'static str,
    input: &'static str,
    output: &'static str,
    reps: &'static str,
}

impl Grid {
    fn points(&self) -> u32 {
        (self.batch.split(',').count() * self.input.split(',').count()) as u32
    }
}

/// Submit `sbatch --array=1-N scripts/slurm-profile.sh` (CPU recipe) from `dir`; the job id.
fn submit(dir: &Path, grid: &Grid, tasks: u32) -> String {
    submit_tasks(dir, grid, &format!("1-{tasks}"), None)
}

/// Submit the tasks `array` (sbatch's `--array`), with `SHARDS` when given; the job id.
fn submit_tasks(dir: &Path, grid: &Grid, array: &str, shards: Option<u32>) -> String {
    let mut cmd = Command::new("sbatch");
    cmd.current_dir(dir)
        .args(["--parsable", "--gres=none", "--cpus-per-task=1"])
        .arg(format!("--array={array}"))
        .arg(script())
        .env("TOKENQ", env!("CARGO_BIN_EXE_tokenq"))
        .env("MODEL", "tiny")
        .env("DEVICE", "cpu")
        .env("DTYPE", "f32")
        .env("BATCH", grid.batch)
        .env("INPUT", grid.input)
        .env("OUTPUT", grid.output)
        .env("REPS", grid.reps)
        .env("OUTDIR", dir.join("run"))
        .env_remove("WEIGHTS")
        .env_remove("SHARDS")
        .env_remove("RAYON_NUM_THREADS")
        .env_remove("RUST_BACKTRACE");
    if let Some(n) = shards {
        cmd.env("SHARDS", n.to_string());
    }
    let o = run(&mut cmd);
    assert!(o.status.success(), "sbatch failed: {}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let id = out.trim().split(';').next().unwrap().to_string();
    assert!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
        "sbatch --parsable printed {out:?}"
    );
    id
}

/// The state of job (or array task) `id` as squeue shows it; `None` once it has left the queue.
fn state(id: &str) -> Option<String> {
    let o = run(Command::new("squeue").args(["-h", "-j", id, "-o", "%T"]));
    // squeue refuses ids that have left the controller entirely.
    let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
    (o.status.success() && !s.is_empty()).then_some(s)
}

/// Everything the tasks logged (slurm-JOB_I.out in `dir`), for failure messages.
fn logs(dir: &Path) -> String {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    names.retain(|p| p.extension().is_some_and(|e| e == "out"));
    names.sort();
    names
        .iter()
        .map(|p| {
            format!(
                "---- {}\n{}",
                p.display(),
                std::fs::read_to_string(p).unwrap_or_default()
            )
        })
        .collect()
}

fn give_up(job: &str, dir: &Path, what: &str) -> ! {
    let q = run(Command::new("squeue").args(["-j", job]));
    let _ = Command::new("scancel").arg(job).output();
    panic!(
        "{what}; job {job} cancelled. squeue:\n{}\n{}",
        text(&q),
        logs(dir)
    );
}

/// Poll until `pred` holds, or give up (cancelling `job`).
fn wait_for(job: &str, dir: &Path, what: &str, mut pred: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !pred() {
        if t0.elapsed() > JOB_TIMEOUT {
            give_up(
                job,
                dir,
                &format!("timed out after {JOB_TIMEOUT:?} waiting for {what}"),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until the job (every task of the array) has left the queue.
fn wait_done(job: &str, dir: &Path) {
    wait_for(job, dir, "the job array to finish", || state(job).is_none());
}

fn tokenq(args: &[&str]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_tokenq"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE"))
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// One grid point of a timings table: its shape, passes, steps per pass and rows.
#[derive(Debug, PartialEq)]
struct Point {
    batch: u32,
    input: u32,
    reps: u32,
    output_tokens: u32,
    rows: usize,
}

/// The grid points of a timings table, by point_id.
fn table_points(path: &Path) -> BTreeMap<u32, Point> {
    let df = profiler::read_frame(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows: BTreeMap<u32, usize> = BTreeMap::new();
    let ids = df.column("point_id").unwrap().u32().unwrap();
    for i in 0..ids.len() {
        *rows
            .entry(ids.get(i).expect("point_id is never null"))
            .or_default() += 1;
    }
    let stats = profiler::point_stats(&df).unwrap();
    assert_eq!(stats.len(), rows.len());
    stats
        .into_iter()
        .map(|s| {
            let p = Point {
                batch: s.batch_size,
                input: s.input_tokens,
                reps: s.reps,
                output_tokens: s.output_tokens,
                rows: rows[&s.point_id],
            };
            (s.point_id, p)
        })
        .collect()
}

fn shard(dir: &Path, i: u32, n: u32) -> PathBuf {
    dir.join(format!("run/shard-{i}-of-{n}.parquet"))
}

fn task_log(dir: &Path, job: &str, i: u32) -> String {
    let f = dir.join(format!("slurm-{job}_{i}.out"));
    std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}\n{}", f.display(), logs(dir)))
}

#[test]
fn job_array_merges_into_the_single_process_grid() {
    let Some(_cluster) = cluster("job_array_merges_into_the_single_process_grid") else {
        return;
    };
    let t0 = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("tokenq-slurm")
        .tempdir()
        .unwrap();
    let d = dir.path();
    let grid = Grid {
        batch: "1,2",
        input: "8,16",
        output: "4",
        reps: "1",
    };
    let job = submit(d, &grid, 4);
    wait_done(&job, d);
    for i in 1..=4 {
        let log = task_log(d, &job, i);
        assert!(log.contains(&format!("task {i}/4")), "{log}");
        assert!(shard(d, i, 4).exists(), "shard {i} missing\n{}", logs(d));
    }
    let merged = d.join("run.parquet");
    assert!(
        merged.exists(),
        "the last task did not merge into {}\n{}",
        merged.display(),
        logs(d)
    );
    let merges = logs(d).matches("merged 4 shards into").count();
    assert_eq!(merges, 1, "exactly one task merges\n{}", logs(d));

    // The same grid in one process.
    let single = d.join("single.parquet");
    let o = tokenq(&[
        "profile",
        "--model",
        "tiny",
        "--device",
        "cpu",
        "--dtype",
        "f32",
        "--batch",
        grid.batch,
        "--input",
        grid.input,
        "--output",
        grid.output,
        "--reps",
        grid.reps,
        "--out",
        p(&single),
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));

    let a = table_points(&merged);
    let b = table_points(&single);
    assert_eq!(a.len() as u32, grid.points());
    assert_eq!(
        a, b,
        "merged array vs single process: same points, same rows per point"
    );
    println!(
        "slurm job array: {} points in 4 shards, merged = single process; {:.1} s",
        a.len(),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn a_requeued_task_resumes_and_the_merge_is_complete() {
    let Some(_cluster) = cluster("a_requeued_task_resumes_and_the_merge_is_complete") else {
        return;
    };
    let t0 = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("tokenq-slurm")
        .tempdir()
        .unwrap();
    let d = dir.path();
    // 9 points, 5 in shard 1 (point_id mod 2 = 0): several seconds of work, so the task is
    // caught running after its first point.
    let grid = Grid {
        batch: "1,2,4",
        input: "8,16,32",
        output: "64",
        reps: "2",
    };
    let job = submit(d, &grid, 2);
    let task = format!("{job}_1");
    let parts = d.join("run/shard-1-of-2.parquet.parts");
    let finished_points = || {
        std::fs::read_dir(&parts)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| {
                        let n = e.file_name();
                        let n = n.to_string_lossy();
                        n.starts_with("point-") && n.ends_with(".parquet")
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    wait_for(&job, d, "task 1's first finished point", || {
        finished_points() >= 1
    });
    let o = run(Command::new("scontrol").args(["requeue", &task]));
    assert!(o.status.success(), "scontrol requeue {task}: {}", text(&o));
    let kept = finished_points();
    // Slurm holds a requeued job back (BeginTime, about two minutes): release it now.
    wait_for(&job, d, "the requeued task to be pending", || {
        state(&task).is_some_and(|s| s == "PENDING")
    });
    let o =
        run(Command::new("scontrol").args(["update", &format!("JobId={task}"), "StartTime=now"]));
    assert!(
        o.status.success(),
        "scontrol update {task} StartTime=now: {}",
        text(&o)
    );
    wait_done(&job, d);

    let log = task_log(d, &job, 1);
    assert!(
        log.contains("DUE TO JOB REQUEUE"),
        "not requeued while running:\n{log}"
    );
    assert!(
        log.contains("task 1/2") && log.contains("attempt 2"),
        "{log}"
    );
    let resumed_line = log
        .lines()
        .find(|l| l.starts_with("resuming: an earlier attempt left"))
        .unwrap_or_else(|| panic!("the second attempt did not resume:\n{log}"));
    let resumed: usize = resumed_line
        .trim_start_matches("resuming: an earlier attempt left ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{resumed_line}"));
    assert!(
        resumed >= kept && resumed >= 1,
        "{resumed_line} (≥ {kept} were on disk)"
    );
    assert!(
        log.contains(&format!("{resumed} resumed)")),
        "tokenq did not keep the {resumed} finished point(s):\n{log}"
    );
    // Both attempts are in the shard's metadata.
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.join("run/shard-1-of-2.runs.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["runs"].as_array().unwrap().len(), 2, "{meta}");

    let merged = d.join("run.parquet");
    assert!(merged.exists(), "no merge\n{}", logs(d));
    let pts = table_points(&merged);
    assert_eq!(pts.len() as u32, grid.points(), "the merge is complete");
    for (id, pt) in &pts {
        assert_eq!((pt.reps, pt.output_tokens), (2, 64), "point {id}");
        assert_eq!(
            pt.rows,
            2 * 64,
            "point {id}: each point once, no duplicate rows"
        );
    }
    println!(
        "slurm requeue: task 1 requeued after {kept} point(s), resumed {resumed}, merge complete; {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn a_cancelled_task_leaves_the_merge_naming_the_missing_points() {
    let Some(_cluster) = cluster("a_cancelled_task_leaves_the_merge_naming_the_missing_points")
    else {
        return;
    };
    let t0 = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("tokenq-slurm")
        .tempdir()
        .unwrap();
    let d = dir.path();
    let grid = Grid {
        batch: "1,2,4",
        input: "8,16,32",
        output: "64",
        reps: "2",
    };
    let job = submit(d, &grid, 4);
    let task = format!("{job}_3");
    wait_for(&job, d, "task 3 to run", || {
        state(&task).is_some_and(|s| s == "RUNNING")
    });
    let o = run(Command::new("scancel").arg(&task));
    assert!(o.status.success(), "scancel {task}: {}", text(&o));
    wait_done(&job, d);

    assert!(
        !shard(d, 3, 4).exists(),
        "task 3 finished before it was cancelled\n{}",
        logs(d)
    );
    assert!(
        !d.join("run.parquet").exists(),
        "merged without shard 3\n{}",
        logs(d)
    );
    assert!(
        logs(d).contains("shard 3/4 not complete yet"),
        "{}",
        logs(d)
    );

    // Merge what exists: the points of shard 3 (point_id mod 4 = 2) are named as missing.
    let missing: Vec<u32> = (0..grid.points()).filter(|id| id % 4 == 2).collect();
    let inputs: Vec<PathBuf> = [1, 2, 4].iter().map(|&i| shard(d, i, 4)).collect();
    let partial = d.join("partial.parquet");
    let mut args = vec!["merge"];
    args.extend(inputs.iter().map(|x| p(x)));
    args.extend(["--out", p(&partial)]);
    let o = tokenq(&args);
    let said = text(&o);
    assert!(
        said.contains(&format!("{missing:?}")),
        "merge does not name the missing points {missing:?}:\n{said}"
    );
    // The merge refuses a partial grid and writes nothing; --allow-partial merges what is there.
    assert_eq!(
        o.status.code(),
        Some(1),
        "merge of 3 of 4 shards must be refused:\n{said}"
    );
    assert!(
        !partial.exists(),
        "a refused merge wrote {}",
        partial.display()
    );
    args.push("--allow-partial");
    let o = tokenq(&args);
    assert!(o.status.success(), "{}", text(&o));
    {
        let pts = table_points(&partial);
        let expected: Vec<u32> = (0..grid.points())
            .filter(|id| !missing.contains(id))
            .collect();
        assert_eq!(pts.keys().copied().collect::<Vec<_>>(), expected);
    }

    // Rerunning the cancelled task alone (SHARDS=4 sbatch --array=3) completes the grid.
    let rerun = submit_tasks(d, &grid, "3", Some(4));
    wait_done(&rerun, d);
    let log = task_log(d, &rerun, 3);
    assert!(log.contains("task 3/4"), "{log}");
    assert!(log.contains("merged 4 shards into"), "{log}");
    let pts = table_points(&d.join("run.parquet"));
    assert_eq!(pts.len() as u32, grid.points(), "the merge is complete");
    println!(
        "slurm scancel: no merge; merging the 3 shards left names {missing:?} ({}); rerunning task 3 completes it; {:.1} s",
        said.lines().last().unwrap_or("").trim(),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn the_script_asks_for_a_gpu_unless_submitted_with_gres_none() {
    let Some(_cluster) = cluster("the_script_asks_for_a_gpu_unless_submitted_with_gres_none")
    else {
        return;
    };
    let test_only = |extra: &[&str]| {
        run(Command::new("sbatch")
            .arg("--test-only")
            .args(extra)
            .args(["--cpus-per-task=1", "--array=1-2"])
            .arg(script()))
    };
    // --test-only validates the request and submits nothing.
    let cpu = test_only(&["--gres=none"]);
    assert!(cpu.status.success(), "{}", text(&cpu));
    let gres = run(Command::new("sinfo").args(["-h", "-o", "%G"]));
    let no_gpus = String::from_utf8_lossy(&gres.stdout)
        .lines()
        .all(|l| l.trim() == "(null)");
    if no_gpus {
        // The script's `#SBATCH --gres=gpu:1` is still there: refused where no node has a GPU.
        let gpu = test_only(&[]);
        assert!(!gpu.status.success(), "{}", text(&gpu));
        assert!(text(&gpu).contains("gres"), "{}", text(&gpu));
    }
}
