//! Bad and hostile inputs, end to end through the binary (issue 17).
//!
//! A table of cases, each run in a fresh directory with `RUST_BACKTRACE=1` and
//! `RUST_LIB_BACKTRACE=1` set, asserts for every case: no panic (exit status not 101, no
//! "panicked" on stderr), the exit status (1 for a user error, 2 for a usage error from clap),
//! one error line (`Error: …` as the last line of stderr, or clap's `error: …`) that names the
//! flag or file at fault, and that nothing in the directory was written, replaced or left
//! half-written. Below the table, the cases that need more than one command: two profiles
//! writing one table at once, Ctrl-C during a profile, `--force` and `--resume` on unfinished
//! parts, a stale lock, the pipeline's stale outputs and `--resume`, and `replay --requests`
//! looping a trace.
#![cfg(feature = "profiler")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tokenq"));
    c.env("RUST_BACKTRACE", "1").env("RUST_LIB_BACKTRACE", "1");
    c
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

/// A synthetic timings table, made once: `t.parquet` with its `t.runs.json`, and `t.csv`.
fn fixture() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Under cargo's scratch directory for tests (target/tmp), one per test process.
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("bad-input-fixture-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // t.csv is made apart: beside t.parquet its sidecar would be t.parquet's (refused).
        for out in ["t.parquet", "csv/t.csv"] {
            let o = bin()
                .args([
                    "profile",
                    "--backend",
                    "synthetic",
                    "--batch",
                    "1,2,4",
                    "--input",
                    "8,16",
                    "--output",
                    "6",
                    "--reps",
                    "2",
                    "--quiet",
                    "--json",
                    "--out",
                ])
                .arg(dir.join(out))
                .output()
                .unwrap();
            assert!(o.status.success(), "fixture: {}", text(&o).1);
        }
        std::fs::copy(dir.join("csv/t.csv"), dir.join("t.csv")).unwrap();
        dir
    })
}

fn copy(from: &str, dir: &Path, to: &str) {
    std::fs::copy(fixture().join(from), dir.join(to)).unwrap();
}

fn write(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(p, body).unwrap();
}

/// Every file under `dir` with its bytes (directories as empty entries ending in `/`).
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            if p.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                walk(base, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// What a case sets up in its directory.
type Setup = fn(&Path);

struct Case {
    what: &'static str,
    args: &'static [&'static str],
    /// 1: a user error (`Error: …`); 2: a usage error (clap's `error: …`).
    code: i32,
    /// Each must appear in the error line (the flag or file at fault, the fix).
    names: &'static [&'static str],
    setup: Setup,
}

fn none(_: &Path) {}

const MG1: &[&str] = &[
    "queue",
    "mg1",
    "--tokens",
    "lognormal:7,0.7",
    "--arrival-rate",
    "0.025",
    "--per-token-s",
    "0.02203184157",
    "--intercept-s",
    "0.7764157233",
];
const BATCH_K: &[&str] = &[
    "--first-token-s",
    "0.0004,0.003",
    "--decode-step-s",
    "0.0003,0.002",
];
const SIM_BATCH: &[&str] = &[
    "simulate",
    "--policy",
    "fixed",
    "--tokens",
    "lognormal:5,0.7",
    "--first-token-s",
    "0.01,0.1",
    "--decode-step-s",
    "0.0005,0.02",
];
const SYN: &[&str] = &[
    "profile",
    "--backend",
    "synthetic",
    "--batch",
    "1,2",
    "--input",
    "8",
    "--output",
    "4",
    "--reps",
    "1",
    "--quiet",
];
const REPLAY: &[&str] = &[
    "replay",
    "--step-table",
    "datasets/llmservingsim/RTX4090",
    "--kv-blocks",
    "2588",
    "--trace",
    "TRACE",
];

/// The concatenation of argument lists (the table holds `'static` slices).
macro_rules! args {
    ($($part:expr),* $(,)?) => {{
        static ARGS: OnceLock<Vec<&'static str>> = OnceLock::new();
        ARGS.get_or_init(|| {
            let mut v: Vec<&'static str> = Vec::new();
            $(v.extend_from_slice($part);)*
            v
        })
        .as_slice()
    }};
}

fn c(
    what: &'static str,
    args: &'static [&'static str],
    code: i32,
    names: &'static [&'static str],
    setup: Setup,
) -> Case {
    Case {
        what,
        args,
        code,
        names,
        setup,
    }
}

fn cases() -> Vec<Case> {
    vec![
        // ---- numbers, negative numbers and clap's parsing (items 6)
        c(
            "negative arrival rate",
            args!(&MG1[..4], &["--arrival-rate", "-3"], &MG1[6..]),
            1,
            &["--arrival-rate"],
            none,
        ),
        c(
            "zero arrival rate",
            args!(&MG1[..4], &["--arrival-rate", "0"], &MG1[6..]),
            1,
            &["--arrival-rate"],
            none,
        ),
        c(
            "arrival rate not a number",
            args!(&MG1[..4], &["--arrival-rate", "fast"], &MG1[6..]),
            2,
            &["--arrival-rate"],
            none,
        ),
        c(
            "negative max tokens",
            args!(MG1, &["--max-tokens", "-3"]),
            1,
            &["--max-tokens"],
            none,
        ),
        c(
            "fractional max tokens",
            args!(MG1, &["--max-tokens", "0.5"]),
            1,
            &["--max-tokens"],
            none,
        ),
        c(
            "negative patience",
            args!(MG1, &["--patience", "-1"]),
            1,
            &["--patience"],
            none,
        ),
        c(
            "negative per-token time",
            args!(&MG1[..6], &["--per-token-s", "-0.1"], &MG1[8..]),
            1,
            &["--per-token-s"],
            none,
        ),
        c(
            "negative grid cells",
            args!(MG1, &["--patience", "10", "--grid-cells", "-5"]),
            2,
            &["--grid-cells"],
            none,
        ),
        c(
            "too few grid cells",
            args!(MG1, &["--patience", "10", "--grid-cells", "5"]),
            1,
            &["--grid-cells"],
            none,
        ),
        c(
            "4e9 grid cells (item 5)",
            args!(MG1, &["--patience", "10", "--grid-cells", "4000000000"]),
            1,
            &["--grid-cells", "1000000"],
            none,
        ),
        c(
            "balking without patience",
            args!(MG1, &["--balking"]),
            1,
            &["--patience"],
            none,
        ),
        c(
            "validate: fractional requests",
            args!(MG1, &["--validate", "--requests", "1.5"]),
            1,
            &["--requests"],
            none,
        ),
        c(
            "validate: 1e12 requests",
            args!(MG1, &["--validate", "--requests", "1e12"]),
            1,
            &["--requests"],
            none,
        ),
        c(
            "validate: zero replications",
            args!(MG1, &["--validate", "--replications", "0"]),
            1,
            &["--replications"],
            none,
        ),
        c(
            "unknown flag",
            args!(MG1, &["--frobnicate"]),
            2,
            &["--frobnicate"],
            none,
        ),
        c(
            "-inf as a number",
            args!(&MG1[..4], &["--arrival-rate", "-inf"], &MG1[6..]),
            1,
            &["--arrival-rate"],
            none,
        ),
        c(
            "subnormal arrival rate (NaN rate in the simulator)",
            args!(SIM_BATCH, &["--max-batch", "4", "--arrival-rate", "1e-320"]),
            1,
            &["--arrival-rate"],
            none,
        ),
        c(
            "max tokens 1e308 (moments overflow)",
            args!(MG1, &["--max-tokens", "1e308"]),
            1,
            &["--max-tokens"],
            none,
        ),
        c(
            "arrival rate 1e308 with patience (n/a results)",
            args!(
                &MG1[..4],
                &["--arrival-rate", "1e308"],
                &MG1[6..],
                &["--patience", "60"]
            ),
            1,
            &["--arrival-rate"],
            none,
        ),
        c(
            "duniform of 8e15 values (allocation abort)",
            args!(
                &[
                    "queue",
                    "batch",
                    "--policy",
                    "dynamic",
                    "--max-batch",
                    "4",
                    "--arrival-rate",
                    "0.001"
                ],
                &["--tokens", "duniform:0,8000000000000000"],
                BATCH_K
            ),
            1,
            &["--tokens", "duniform"],
            none,
        ),
        c(
            "uniform up to 1e308 (integer overflow in the simulator)",
            args!(&[
                "simulate",
                "--policy",
                "mg1",
                "--tokens",
                "uniform:0,1e308",
                "--arrival-rate",
                "0.001",
                "--per-token-s",
                "0.01",
                "--intercept-s",
                "0"
            ]),
            1,
            &["--tokens", "uniform:0,1e308"],
            none,
        ),
        c(
            "normal with mean 1e300 (NaN moments)",
            args!(&MG1[..2], &["--tokens", "normal:1e300,1"], &MG1[4..]),
            1,
            &["--tokens", "MEAN"],
            none,
        ),
        c(
            "exponential mean 1e308 in the simulator",
            args!(&[
                "simulate",
                "--policy",
                "mg1",
                "--tokens",
                "exponential:1e308",
                "--arrival-rate",
                "0.001",
                "--per-token-s",
                "0.01",
                "--intercept-s",
                "0"
            ]),
            1,
            &["--tokens", "exponential"],
            none,
        ),
        c(
            "synthetic noise inf (NaN timings)",
            args!(SYN, &["--synthetic-noise", "inf", "--out", "p.csv"]),
            1,
            &["--synthetic-noise"],
            none,
        ),
        c(
            "replay: iteration overhead 1e308 (inf latencies)",
            args!(REPLAY, &["--iteration-overhead-s", "1e308"]),
            1,
            &["--iteration-overhead-s"],
            none,
        ),
        c(
            "pipeline: 2^32 simulated requests",
            args!(&[
                "pipeline",
                "--backend",
                "synthetic",
                "--out",
                "rep",
                "--sim-requests",
                "4294967296"
            ]),
            1,
            &["--sim-requests"],
            none,
        ),
        // ---- distribution specs
        c(
            "spec without sigma",
            args!(&MG1[..2], &["--tokens", "lognormal:7"], &MG1[4..]),
            1,
            &["--tokens", "lognormal:7"],
            none,
        ),
        c(
            "unknown spec kind",
            args!(&MG1[..2], &["--tokens", "zipf:1.1"], &MG1[4..]),
            1,
            &["--tokens", "zipf"],
            none,
        ),
        c(
            "spec with NaN",
            args!(&MG1[..2], &["--tokens", "normal:nan,1"], &MG1[4..]),
            1,
            &["--tokens"],
            none,
        ),
        c(
            "uniform with LO > HI",
            args!(&MG1[..2], &["--tokens", "uniform:10,5"], &MG1[4..]),
            1,
            &["--tokens"],
            none,
        ),
        c(
            "empirical file missing",
            args!(&MG1[..2], &["--tokens", "empirical:missing.csv"], &MG1[4..]),
            1,
            &["--tokens", "missing.csv"],
            none,
        ),
        c(
            "empirical file without numbers",
            args!(&MG1[..2], &["--tokens", "empirical:h.csv"], &MG1[4..]),
            1,
            &["--tokens", "h.csv"],
            |d| write(d, "h.csv", "value,count\nx,y\n"),
        ),
        // ---- coefficients files
        c(
            "coefficients file missing",
            args!(&MG1[..6], &["--coefficients", "missing.toml"]),
            1,
            &["--coefficients", "missing.toml"],
            none,
        ),
        c(
            "coefficients TOML type error names the key",
            args!(&MG1[..6], &["--coefficients", "c.toml"]),
            1,
            &["c.toml", "line 5", "single_request.per_token_s"],
            |d| {
                write(
                    d,
                    "c.toml",
                    "schema_version = 1\n[single_request]\nintercept_s = 0.1\ninput_tokens = 8\nper_token_s = \"fast\"\n",
                )
            },
        ),
        c(
            "coefficients TOML syntax error",
            args!(&MG1[..6], &["--coefficients", "c.toml"]),
            1,
            &["c.toml", "line 2"],
            |d| write(d, "c.toml", "schema_version = 1\n[single_request\n"),
        ),
        c(
            "coefficients of another schema",
            args!(&MG1[..6], &["--coefficients", "c.toml"]),
            1,
            &["c.toml", "schema_version 2"],
            |d| write(d, "c.toml", "schema_version = 2\n"),
        ),
        c(
            "coefficients file and raw numbers",
            args!(MG1, &["--coefficients", "c.toml"]),
            1,
            &["--coefficients"],
            none,
        ),
        c(
            "coefficients without the batch lines",
            args!(
                &[
                    "queue",
                    "batch",
                    "--policy",
                    "dynamic",
                    "--tokens",
                    "const:10",
                    "--arrival-rate",
                    "0.1",
                    "--coefficients"
                ],
                &["datasets/coefficients/a100-llama-2-7b-table1.toml"]
            ),
            1,
            &["--coefficients", "[first_token]"],
            none,
        ),
        // ---- optimize token-limit (item 5)
        c(
            "token-limit grid of 1e8 limits",
            args!(
                &["optimize", "token-limit"],
                &MG1[2..],
                &["--grid-step", "1", "--max-limit", "100000000"]
            ),
            1,
            &["--grid-step", "--max-limit", "100000"],
            none,
        ),
        c(
            "token-limit refine window of 2e6",
            args!(
                &["optimize", "token-limit"],
                &MG1[2..],
                &[
                    "--grid-step",
                    "1000000",
                    "--max-limit",
                    "2000000",
                    "--refine"
                ]
            ),
            1,
            &["--refine", "--grid-step"],
            none,
        ),
        c(
            "token-limit zero grid step",
            args!(
                &["optimize", "token-limit"],
                &MG1[2..],
                &["--grid-step", "0"]
            ),
            1,
            &["--grid-step"],
            none,
        ),
        c(
            "token-limit weight above 1",
            args!(&["optimize", "token-limit"], &MG1[2..], &["--weight", "2"]),
            1,
            &["--weight"],
            none,
        ),
        c(
            "token-limit weight 1/0",
            args!(
                &["optimize", "token-limit"],
                &MG1[2..],
                &["--weight", "1/0"]
            ),
            2,
            &["--weight"],
            none,
        ),
        c(
            "token-limit negative weight",
            args!(
                &["optimize", "token-limit"],
                &MG1[2..],
                &["--weight", "-0.5"]
            ),
            1,
            &["--weight"],
            none,
        ),
        c(
            "lost cost without patience",
            args!(
                &["optimize", "token-limit"],
                &MG1[2..],
                &["--lost-cost", "4"]
            ),
            1,
            &["--lost-cost", "--patience"],
            none,
        ),
        c(
            "impatient grid too much work",
            args!(
                &["optimize", "token-limit"],
                &MG1[2..],
                &[
                    "--patience",
                    "60",
                    "--grid-step",
                    "1",
                    "--max-limit",
                    "50000",
                    "--grid-cells",
                    "100000"
                ]
            ),
            1,
            &["--patience", "--grid-cells"],
            none,
        ),
        // ---- optimize batch-size (item 5)
        c(
            "batch-size max-k 1e8",
            args!(
                &[
                    "optimize",
                    "batch-size",
                    "--arrival-rate",
                    "0.3",
                    "--tokens",
                    "lognormal:7,0.7"
                ],
                BATCH_K,
                &["--max-k", "100000000"]
            ),
            1,
            &["--max-k", "4096"],
            none,
        ),
        c(
            "batch-size dynamic max-k 1000",
            args!(
                &[
                    "optimize",
                    "batch-size",
                    "--policy",
                    "dynamic",
                    "--arrival-rate",
                    "0.3",
                    "--tokens",
                    "lognormal:7,0.7"
                ],
                BATCH_K,
                &["--max-k", "1000"]
            ),
            1,
            &["--max-k", "256", "--policy dynamic"],
            none,
        ),
        c(
            "batch-size max-k 0",
            args!(
                &[
                    "optimize",
                    "batch-size",
                    "--arrival-rate",
                    "0.3",
                    "--tokens",
                    "const:100"
                ],
                BATCH_K,
                &["--max-k", "0"]
            ),
            1,
            &["--max-k"],
            none,
        ),
        c(
            "batch-size negative max-k",
            args!(
                &[
                    "optimize",
                    "batch-size",
                    "--arrival-rate",
                    "0.3",
                    "--tokens",
                    "const:100"
                ],
                BATCH_K,
                &["--max-k", "-1"]
            ),
            2,
            &["--max-k"],
            none,
        ),
        c(
            "batch-size one first-token number",
            args!(&[
                "optimize",
                "batch-size",
                "--arrival-rate",
                "0.3",
                "--tokens",
                "const:100",
                "--first-token-s",
                "0.1",
                "--decode-step-s",
                "0.0003,0.002"
            ]),
            1,
            &["--first-token-s"],
            none,
        ),
        c(
            "batch-size latency without a rate",
            args!(
                &["optimize", "batch-size", "--tokens", "const:100"],
                BATCH_K
            ),
            1,
            &["--arrival-rate"],
            none,
        ),
        // ---- queue batch (σ = 3 does not converge: say what to change; item 6)
        c(
            "fixed batching without a size",
            args!(
                &[
                    "queue",
                    "batch",
                    "--policy",
                    "fixed",
                    "--tokens",
                    "const:10",
                    "--arrival-rate",
                    "0.1"
                ],
                BATCH_K
            ),
            1,
            &["--max-batch"],
            none,
        ),
        c(
            "batch size 0",
            args!(
                &[
                    "queue",
                    "batch",
                    "--policy",
                    "dynamic",
                    "--max-batch",
                    "0",
                    "--tokens",
                    "const:10",
                    "--arrival-rate",
                    "0.1"
                ],
                BATCH_K
            ),
            1,
            &["--max-batch"],
            none,
        ),
        c(
            "negative decode step",
            args!(&[
                "queue",
                "batch",
                "--policy",
                "dynamic",
                "--tokens",
                "const:10",
                "--arrival-rate",
                "0.1",
                "--first-token-s",
                "0.0004,0.003",
                "--decode-step-s",
                "-1,0.02"
            ]),
            1,
            &["--decode-step-s"],
            none,
        ),
        c(
            "dynamic batching, lognormal σ = 3",
            args!(
                &[
                    "queue",
                    "batch",
                    "--policy",
                    "dynamic",
                    "--max-batch",
                    "16",
                    "--tokens",
                    "lognormal:5,3",
                    "--arrival-rate",
                    "0.005"
                ],
                BATCH_K
            ),
            1,
            &["did not converge", "--max-tokens"],
            none,
        ),
        c(
            "elastic batching, lognormal σ = 3, no cap",
            args!(
                &[
                    "queue",
                    "batch",
                    "--policy",
                    "elastic",
                    "--tokens",
                    "lognormal:5,3",
                    "--arrival-rate",
                    "0.005"
                ],
                BATCH_K
            ),
            1,
            &["did not converge", "--max-tokens", "--max-batch"],
            none,
        ),
        c(
            "fixed batching validated with too few requests",
            args!(
                &[
                    "queue",
                    "batch",
                    "--policy",
                    "fixed",
                    "--max-batch",
                    "100000",
                    "--tokens",
                    "const:10",
                    "--arrival-rate",
                    "0.1",
                    "--validate",
                    "--requests",
                    "1e5"
                ],
                BATCH_K
            ),
            1,
            &["--max-batch", "--requests"],
            none,
        ),
        // ---- simulate (items 6)
        c(
            "simulate: zero threads",
            args!(&[
                "simulate",
                "--policy",
                "mg1",
                "--tokens",
                "const:5",
                "--arrival-rate",
                "1",
                "--per-token-s",
                "0.01",
                "--intercept-s",
                "0",
                "--threads",
                "0"
            ]),
            1,
            &["--threads"],
            none,
        ),
        c(
            "simulate: negative arrival rate",
            args!(&[
                "simulate",
                "--policy",
                "mg1",
                "--tokens",
                "const:5",
                "--arrival-rate",
                "-1",
                "--per-token-s",
                "0.01",
                "--intercept-s",
                "0"
            ]),
            1,
            &["--arrival-rate"],
            none,
        ),
        c(
            "simulate: fixed batches of 1e6 (NaN rate)",
            args!(
                SIM_BATCH,
                &["--max-batch", "1000000", "--arrival-rate", "1"]
            ),
            1,
            &["--max-batch", "1000000"],
            none,
        ),
        c(
            "simulate: too few requests",
            args!(&[
                "simulate",
                "--policy",
                "mg1",
                "--tokens",
                "const:5",
                "--arrival-rate",
                "1",
                "--per-token-s",
                "0.01",
                "--intercept-s",
                "0",
                "--requests",
                "10"
            ]),
            1,
            &["--requests"],
            none,
        ),
        c(
            "simulate: zero replications",
            args!(&[
                "simulate",
                "--policy",
                "mg1",
                "--tokens",
                "const:5",
                "--arrival-rate",
                "1",
                "--per-token-s",
                "0.01",
                "--intercept-s",
                "0",
                "--replications",
                "0"
            ]),
            1,
            &["--replications"],
            none,
        ),
        c(
            "simulate: trace missing",
            args!(SIM_BATCH, &["--max-batch", "4", "--trace", "missing.csv"]),
            1,
            &["--trace", "missing.csv"],
            none,
        ),
        c(
            "simulate: unsorted trace",
            args!(SIM_BATCH, &["--max-batch", "1", "--trace", "u.csv"]),
            1,
            &["u.csv"],
            |d| {
                write(
                    d,
                    "u.csv",
                    "arrival_s,input_tokens,output_tokens\n2,1,1\n1,1,1\n",
                )
            },
        ),
        c(
            "simulate: trace with a year beyond 9999",
            args!(SIM_BATCH, &["--max-batch", "1", "--trace", "y.csv"]),
            1,
            &["y.csv", "TIMESTAMP"],
            |d| {
                write(
                    d,
                    "y.csv",
                    "TIMESTAMP,ContextTokens,GeneratedTokens\n99999999999999999-01-01 00:00:00,1,1\n",
                )
            },
        ),
        c(
            "simulate: trace and arrival rate",
            args!(
                SIM_BATCH,
                &[
                    "--max-batch",
                    "4",
                    "--trace",
                    "azure-conv",
                    "--arrival-rate",
                    "1"
                ]
            ),
            1,
            &["--arrival-rate", "--trace"],
            none,
        ),
        c(
            "simulate: NaN max tokens",
            args!(
                SIM_BATCH,
                &[
                    "--max-batch",
                    "4",
                    "--arrival-rate",
                    "1",
                    "--max-tokens",
                    "nan"
                ]
            ),
            1,
            &["--max-tokens"],
            none,
        ),
        // ---- replay (items 6, 9)
        c(
            "replay: engine config type error names the key",
            args!(&[
                "replay",
                "--trace",
                "azure-conv",
                "--kv-blocks",
                "100",
                "--engine-config",
                "e.toml"
            ]),
            1,
            &["e.toml", "line 1", "max_num_seqs"],
            |d| write(d, "e.toml", "max_num_seqs = \"lots\"\n"),
        ),
        c(
            "replay: zero requests",
            args!(REPLAY, &["--requests", "0"]),
            1,
            &["--requests"],
            none,
        ),
        c(
            "replay: 1e9 requests",
            args!(REPLAY, &["--requests", "1e9"]),
            1,
            &["--requests", "10000000"],
            none,
        ),
        c(
            "replay: trace missing",
            args!(&["replay", "--kv-blocks", "100", "--trace", "missing.csv"]),
            1,
            &["missing.csv"],
            none,
        ),
        c(
            "replay: no KV blocks",
            args!(&["replay", "--trace", "azure-conv"]),
            1,
            &["--kv-blocks"],
            none,
        ),
        // ---- fit (items 3, 6)
        c(
            "fit: -o is a table name",
            args!(&["fit", "t.parquet", "-o", "t.parquet"]),
            1,
            &["-o t.parquet", "TOML"],
            |d| copy("t.parquet", d, "t.parquet"),
        ),
        c(
            "fit: -o is the input",
            args!(&["fit", "timings", "-o", "timings"]),
            1,
            &["-o timings", "also an input"],
            |d| copy("t.parquet", d, "timings"),
        ),
        c(
            "fit: -o exists",
            args!(&["fit", "t.parquet", "-o", "c.toml"]),
            1,
            &["-o c.toml", "--force"],
            |d| {
                copy("t.parquet", d, "t.parquet");
                write(d, "c.toml", "# someone's file\n");
            },
        ),
        c(
            "fit: -o is a directory",
            args!(&["fit", "t.parquet", "-o", "out"]),
            1,
            &["-o out", "directory"],
            |d| {
                copy("t.parquet", d, "t.parquet");
                std::fs::create_dir(d.join("out")).unwrap();
            },
        ),
        c(
            "fit: CSV renamed .parquet",
            args!(&["fit", "fake.parquet", "-o", "c.toml"]),
            1,
            &["fake.parquet", "CSV", "rename it to .csv"],
            |d| copy("t.csv", d, "fake.parquet"),
        ),
        c(
            "fit: Parquet renamed .csv",
            args!(&["fit", "fake.csv", "-o", "c.toml"]),
            1,
            &["fake.csv", "rename it to .parquet"],
            |d| copy("t.parquet", d, "fake.csv"),
        ),
        c(
            "fit: empty .parquet",
            args!(&["fit", "e.parquet", "-o", "c.toml"]),
            1,
            &["e.parquet", "empty"],
            |d| write(d, "e.parquet", ""),
        ),
        c(
            "fit: table missing",
            args!(&["fit", "missing.parquet", "-o", "c.toml"]),
            1,
            &["missing.parquet"],
            none,
        ),
        c(
            "fit: CSV without the columns",
            args!(&["fit", "x.csv", "-o", "c.toml"]),
            1,
            &["x.csv", "device_s"],
            |d| write(d, "x.csv", "a,b\n1,2\n"),
        ),
        c(
            "fit: holdout above 1",
            args!(&["fit", "t.csv", "--holdout", "1.5", "-o", "c.toml"]),
            1,
            &["--holdout"],
            |d| copy("t.csv", d, "t.csv"),
        ),
        c(
            "fit: negative holdout",
            args!(&["fit", "t.csv", "--holdout", "-0.2", "-o", "c.toml"]),
            1,
            &["--holdout"],
            |d| copy("t.csv", d, "t.csv"),
        ),
        // ---- profile (items 1, 4, 5, 6)
        c(
            "profile: --reps 0",
            args!(&SYN[..9], &["--reps", "0", "--out", "p.parquet"]),
            1,
            &["--reps"],
            none,
        ),
        c(
            "profile: --out is a directory",
            args!(SYN, &["--out", "dir", "--force"]),
            1,
            &["dir", "is a directory"],
            |d| std::fs::create_dir(d.join("dir")).unwrap(),
        ),
        c(
            "profile: 4e9 output tokens",
            args!(&SYN[..7], &["--output", "4000000000", "--out", "p.parquet"]),
            1,
            &["--output"],
            none,
        ),
        c(
            "profile: batch 0",
            args!(&SYN[..3], &["--batch", "0", "--out", "p.parquet"]),
            1,
            &["--batch"],
            none,
        ),
        c(
            "profile: negative batch",
            args!(&SYN[..3], &["--batch", "-1", "--out", "p.parquet"]),
            2,
            &["--batch"],
            none,
        ),
        c(
            "profile: negative min time",
            args!(&SYN[..3], &["--min-time", "-1", "--out", "p.parquet"]),
            1,
            &["--min-time"],
            none,
        ),
        c(
            "profile: shard 5/4",
            args!(SYN, &["--shard", "5/4", "--out", "p.parquet"]),
            1,
            &["--shard"],
            none,
        ),
        c(
            "profile: huge prompts",
            args!(
                &SYN[..3],
                &[
                    "--batch",
                    "100000",
                    "--input",
                    "100000",
                    "--out",
                    "p.parquet"
                ]
            ),
            1,
            &["--batch", "--input"],
            none,
        ),
        c(
            "profile: existing table without --force",
            args!(SYN, &["--out", "t.parquet"]),
            1,
            &["t.parquet", "--force"],
            |d| {
                copy("t.parquet", d, "t.parquet");
                copy("t.runs.json", d, "t.runs.json");
            },
        ),
        c(
            "profile: x.csv beside x.parquet's sidecar (item 4)",
            args!(SYN, &["--out", "t.csv"]),
            1,
            &["t.csv", "t.runs.json", "t.parquet"],
            |d| {
                copy("t.parquet", d, "t.parquet");
                copy("t.runs.json", d, "t.runs.json");
            },
        ),
        c(
            "profile: unfinished parts without --resume",
            args!(SYN, &["--out", "p.parquet"]),
            1,
            &["p.parquet.parts", "--resume", "--force"],
            |d| write(d, "p.parquet.parts/manifest.json", "{}"),
        ),
        c(
            "profile: --resume with an unreadable manifest",
            args!(SYN, &["--out", "p.parquet", "--resume"]),
            1,
            &["manifest.json", "--force"],
            |d| write(d, "p.parquet.parts/manifest.json", "{not json"),
        ),
        c(
            "profile: another writer holds the lock",
            args!(SYN, &["--out", "p.parquet"]),
            1,
            &["another tokenq (pid 1)", "p.parquet"],
            |d| {
                // pid 1 (init) is alive, whatever its start time on this machine: give none.
                write(d, "p.parquet.lock", "1\n")
            },
        ),
        c(
            "profile: negative memory budget",
            args!(SYN, &["--memory-budget", "-4", "--out", "p.parquet"]),
            1,
            &["--memory-budget"],
            none,
        ),
        // ---- merge
        c(
            "merge: --out is an input",
            args!(&["merge", "t.parquet", "--out", "t.parquet", "--force"]),
            1,
            &["t.parquet", "also an input"],
            |d| {
                copy("t.parquet", d, "t.parquet");
                copy("t.runs.json", d, "t.runs.json");
            },
        ),
        c(
            "merge: sidecar missing",
            args!(&["merge", "t.parquet", "--out", "all.parquet"]),
            1,
            &["t.runs.json"],
            |d| copy("t.parquet", d, "t.parquet"),
        ),
        c(
            "merge: CSV renamed .parquet",
            args!(&["merge", "fake.parquet", "--out", "all.parquet"]),
            1,
            &["fake.parquet", "rename it to .csv"],
            |d| {
                copy("t.csv", d, "fake.parquet");
                copy("t.runs.json", d, "fake.runs.json");
            },
        ),
        // ---- pipeline (item 7)
        c(
            "pipeline: --resume with nothing to resume",
            args!(&[
                "pipeline",
                "--backend",
                "synthetic",
                "--out",
                "rep",
                "--resume"
            ]),
            1,
            &["--resume", "profile.parquet.parts"],
            none,
        ),
        c(
            "pipeline: --resume with --coefficients",
            args!(&["pipeline", "--coefficients", "c.toml", "--resume"]),
            2,
            &["--resume"],
            none,
        ),
        c(
            "pipeline: unfinished profile without --resume",
            args!(&["pipeline", "--backend", "synthetic", "--out", "rep"]),
            1,
            &["profile.parquet.parts", "--resume", "--force"],
            |d| write(d, "rep/profile.parquet.parts/manifest.json", "{}"),
        ),
        c(
            "pipeline: load above 1",
            args!(&[
                "pipeline",
                "--backend",
                "synthetic",
                "--out",
                "rep",
                "--load",
                "1.5"
            ]),
            1,
            &["--load"],
            none,
        ),
        c(
            "pipeline: max batch 0",
            args!(&[
                "pipeline",
                "--backend",
                "synthetic",
                "--out",
                "rep",
                "--max-batch",
                "0"
            ]),
            1,
            &["--max-batch"],
            none,
        ),
        c(
            "pipeline: bad workload",
            args!(&[
                "pipeline",
                "--backend",
                "synthetic",
                "--out",
                "rep",
                "--workload",
                "lognormal:x,1"
            ]),
            1,
            &["--workload"],
            none,
        ),
    ]
}

/// Replace the placeholders of the replay cases by shipped files.
fn resolve(arg: &str) -> String {
    match arg {
        "TRACE" => root()
            .join("datasets/llmservingsim/sharegpt-llama-3.1-8b-300-sps10.lengths.csv")
            .display()
            .to_string(),
        a if a.starts_with("datasets/") => root().join(a).display().to_string(),
        a => a.to_string(),
    }
}

#[test]
fn every_bad_input_is_one_line_naming_the_culprit_and_writes_nothing() {
    let cases = cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let dir = tempfile::tempdir().unwrap();
        (case.setup)(dir.path());
        let before = snapshot(dir.path());
        let args: Vec<String> = case.args.iter().map(|a| resolve(a)).collect();
        let t0 = Instant::now();
        let o = bin().args(&args).current_dir(dir.path()).output().unwrap();
        let took = t0.elapsed();
        let (_, err) = text(&o);
        let code = o.status.code();
        let mut why = Vec::new();
        if code == Some(101) || err.contains("panicked") {
            why.push("panicked".to_string());
        }
        if code != Some(case.code) {
            why.push(format!("exit {code:?}, expected {}", case.code));
        }
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let error_lines: Vec<&&str> = lines
            .iter()
            .filter(|l| l.starts_with("Error: ") || l.starts_with("error:"))
            .collect();
        match (case.code, error_lines.as_slice()) {
            (1, [line]) if line.starts_with("Error: ") && lines.last() == Some(line) => {
                for n in case.names {
                    if !line.contains(n) {
                        why.push(format!("`{n}` not named"));
                    }
                }
            }
            (2, [line]) if line.starts_with("error:") => {
                for n in case.names {
                    if !line.contains(n) {
                        why.push(format!("`{n}` not named"));
                    }
                }
            }
            _ => why.push("not exactly one error line (last on stderr for `Error:`)".into()),
        }
        if err.contains("stack backtrace") || err.contains("Stack backtrace") {
            why.push("a backtrace was printed".into());
        }
        let after = snapshot(dir.path());
        if after != before {
            let changed: Vec<&String> = after
                .keys()
                .chain(before.keys())
                .filter(|k| after.get(*k) != before.get(*k))
                .collect();
            why.push(format!("files written, replaced or removed: {changed:?}"));
        }
        if took > Duration::from_secs(20) {
            why.push(format!("took {took:?} to refuse"));
        }
        // `TOKENQ_LIST_CASES=1 cargo test --test bad_input -- --nocapture`: each case and the
        // line it prints, for a person to read.
        if std::env::var_os("TOKENQ_LIST_CASES").is_some() {
            let line = error_lines.first().map_or("", |l| l.trim());
            println!("- {} → `{line}`", case.what);
        }
        if !why.is_empty() {
            failures.push(format!(
                "{}: tokenq {}\n  {}\n  stderr: {}",
                case.what,
                args.join(" "),
                why.join("; "),
                err.trim_end()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Item 1: two writers, one table.

fn slow_profile(out: &Path) -> Vec<String> {
    [
        "profile",
        "--backend",
        "synthetic",
        "--synthetic-clock",
        "sleep",
        "--batch",
        "1,2,4",
        "--input",
        "8,16",
        "--output",
        "4",
        "--reps",
        "3",
        "--warmup",
        "0",
        "--quiet",
        "--json",
        "--out",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([out.display().to_string()])
    .collect()
}

fn rows_of_csv(p: &Path) -> usize {
    std::fs::read_to_string(p).unwrap().lines().count() - 1
}

#[test]
fn two_profiles_writing_one_table_one_is_refused_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.csv");
    let spawn = || {
        bin()
            .args(slow_profile(&out))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let ok: Vec<&Output> = outs.iter().filter(|o| o.status.success()).collect();
    let refused: Vec<&Output> = outs.iter().filter(|o| !o.status.success()).collect();
    assert_eq!(
        (ok.len(), refused.len()),
        (1, 1),
        "one wins, one is refused"
    );
    let err = text(refused[0]).1;
    assert_eq!(refused[0].status.code(), Some(1));
    assert!(
        err.contains("another tokenq (pid ") && err.contains("is writing") && err.contains("c.csv"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    let v: serde_json::Value = serde_json::from_slice(&ok[0].stdout).unwrap();
    assert_eq!(v["summary"]["rows"], 6 * 3 * 4);
    assert_eq!(rows_of_csv(&out), 6 * 3 * 4, "the winner's table is whole");
    assert!(
        !dir.path().join("c.csv.lock").exists(),
        "the lock is released"
    );
    assert!(!dir.path().join("c.csv.parts").exists());
}

#[test]
fn a_stale_lock_of_a_dead_process_is_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.csv");
    // A PID beyond any pid_max: no such process.
    std::fs::write(dir.path().join("s.csv.lock"), "4194305 12345\n").unwrap();
    let o = bin()
        .args([
            "profile",
            "--backend",
            "synthetic",
            "--batch",
            "1",
            "--input",
            "8",
        ])
        .args(["--output", "3", "--reps", "1", "--quiet", "--json", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(!dir.path().join("s.csv.lock").exists());
}

// ---------------------------------------------------------------------------------------------
// Item 8 (Ctrl-C) and the ways out of an unfinished parts directory (item 1).

/// Start a slow profile, wait for `points` finished points, send SIGINT; the output.
fn interrupt_after(out: &Path, points: usize) -> Output {
    let child = bin()
        .args(slow_profile(out))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let parts = out.with_file_name(format!(
        "{}.parts",
        out.file_name().unwrap().to_string_lossy()
    ));
    let done = || {
        std::fs::read_dir(&parts)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| {
                        let n = e.file_name().to_string_lossy().to_string();
                        n.starts_with("point-") && n.ends_with(".json")
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let t0 = Instant::now();
    while done() < points && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    child.wait_with_output().unwrap()
}

#[test]
fn ctrl_c_keeps_the_finished_points_and_says_how_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("i.csv");
    let o = interrupt_after(&out, 1);
    let err = text(&o).1;
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let last = err.trim_end().lines().last().unwrap_or("");
    assert!(
        last.starts_with("Error: interrupted: ")
            && last.contains("points kept in")
            && last.contains("i.csv.parts")
            && last.contains("--resume"),
        "{err}"
    );
    assert!(!out.exists(), "no half table");
    assert!(
        !dir.path().join("i.csv.lock").exists(),
        "the lock is released"
    );

    // A changed setting is named, not just refused.
    let mut changed = slow_profile(&out);
    let b = changed.iter().position(|a| a == "1,2,4").unwrap();
    changed[b] = "1,2".into();
    changed.push("--resume".into());
    let o = bin().args(&changed).output().unwrap();
    let err = text(&o).1;
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err.contains("--batch 1,2 (was 1,2,4)") && err.contains("--force"),
        "{err}"
    );

    // The same flags plus --resume finish the grid.
    let mut resumed = slow_profile(&out);
    resumed.push("--resume".into());
    let o = bin().args(&resumed).output().unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let kept = v["summary"]["points_resumed"].as_u64().unwrap();
    assert!((1..6).contains(&kept), "{v}");
    assert_eq!(rows_of_csv(&out), 6 * 3 * 4);
}

#[test]
fn force_discards_an_unfinished_profile_and_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.csv");
    let o = interrupt_after(&out, 1);
    assert_eq!(o.status.code(), Some(130), "{}", text(&o).1);
    assert!(dir.path().join("f.csv.parts").exists());
    let mut forced = slow_profile(&out);
    forced.push("--force".into());
    let o = bin().args(&forced).output().unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["summary"]["points_resumed"], 0);
    assert_eq!(v["summary"]["points_ok"], 6);
    assert!(!dir.path().join("f.csv.parts").exists());
}

// ---------------------------------------------------------------------------------------------
// Item 7: the pipeline's output directory and --resume.

#[test]
fn pipeline_removes_what_an_earlier_run_left_but_never_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let rep = dir.path().join("rep");
    std::fs::create_dir(&rep).unwrap();
    let coef = rep.join("coefficients.toml");
    std::fs::copy(
        root().join("datasets/coefficients/a100-llama-2-7b-vidur.toml"),
        &coef,
    )
    .unwrap();
    let coef_before = std::fs::read(&coef).unwrap();
    for stale in [
        "fig9-old.svg",
        "profile.parquet",
        "profile.runs.json",
        "report.html",
    ] {
        std::fs::write(rep.join(stale), "stale").unwrap();
    }
    std::fs::write(rep.join("notes.txt"), "mine").unwrap();
    let o = bin()
        .args(["pipeline", "--coefficients"])
        .arg(&coef)
        .args(["--sim-requests", "10000", "--quiet", "--out"])
        .arg(&rep)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    for gone in ["fig9-old.svg", "profile.parquet", "profile.runs.json"] {
        assert!(
            !rep.join(gone).exists(),
            "{gone} left beside the new report"
        );
    }
    assert_ne!(std::fs::read(rep.join("report.html")).unwrap(), b"stale");
    assert_eq!(
        std::fs::read(&coef).unwrap(),
        coef_before,
        "the input is kept"
    );
    assert_eq!(std::fs::read(rep.join("notes.txt")).unwrap(), b"mine");
}

#[test]
fn a_killed_pipeline_resumes_its_profile() {
    let dir = tempfile::tempdir().unwrap();
    let rep = dir.path().join("rep");
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = ["pipeline", "--sim-requests", "10000", "--quiet", "--json"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.push("--out".into());
        v.push(rep.display().to_string());
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let mut child = bin()
        .args(args(&[]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let parts = rep.join("profile.parquet.parts");
    let t0 = Instant::now();
    let done = || {
        std::fs::read_dir(&parts)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
                    .count()
            })
            .unwrap_or(0)
    };
    while done() < 1 && t0.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(parts.is_dir(), "the killed run left its parts");

    // Without --resume (or --force) the rerun says what to do.
    let o = bin().args(args(&[])).output().unwrap();
    let err = text(&o).1;
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--resume") && err.contains("--force"), "{err}");

    let o = bin().args(args(&["--resume"])).output().unwrap();
    assert!(o.status.success(), "{}", text(&o).1);
    assert!(rep.join("report.html").exists() && rep.join("profile.parquet").exists());
    assert!(!parts.exists());
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rep.join("profile.runs.json")).unwrap())
            .unwrap();
    let runs = meta["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{meta}");
    assert!(runs.iter().any(|r| r["resumed"] == true), "{meta}");
}

// ---------------------------------------------------------------------------------------------
// Item 9: replay --requests loops the trace.

#[test]
fn replay_requests_loops_the_trace_end_to_end() {
    let run = |n: &str| {
        let o = bin()
            .args(REPLAY.iter().map(|a| resolve(a)))
            .args(["--requests", n, "--json"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o).1);
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let once = run("300");
    let looped = run("700");
    let first = run("100");
    assert_eq!(once["requests"], 300);
    assert_eq!(looped["requests"], 700);
    assert_eq!(first["requests"], 100);
    assert_eq!(looped["replays"][0]["completed"], 700);
    // 700 = 2 laps + 100: the span is 2 periods plus the first 100 arrivals of a lap, a period
    // being the trace's span plus its mean gap.
    let span = once["arrival_span_s"].as_f64().unwrap();
    let period = span + span / 299.0;
    let want = 2.0 * period + first["arrival_span_s"].as_f64().unwrap();
    let got = looped["arrival_span_s"].as_f64().unwrap();
    assert!(
        (got - want).abs() < 1e-6 * want,
        "span {got}, expected {want}"
    );
}
