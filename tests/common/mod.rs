//! Helpers shared by the CLI tests of the server commands (`mod common;` in each file): run the
//! built binary as a user would (no backtrace variables, no API key from the environment), and
//! read what it printed.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Run `tokenq ARGS`.
pub fn tokenq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenq"))
        .args(args)
        // anyhow appends a backtrace when these are set; users see one line without them
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env_remove("OPENAI_API_KEY")
        .output()
        .expect("run tokenq")
}

/// Its stdout, after checking that it succeeded (stderr in the failure message).
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Its stdout as JSON, after checking that it succeeded.
pub fn ok_json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(o)).expect("JSON on stdout")
}

/// A path as a command-line argument.
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Erlang's M/D/1 series `F(x) = Σ_{k ≤ x/D} (λ(kD − x))^k/k!·e^{−λ(kD − x)}`: the waiting-time
/// CDF is `P(W ≤ x) = (1 − ρ)F(x)` for ρ = λD < 1, and F is the unnormalised level-crossing
/// solution for any ρ (docs/models.md §2.3).
pub fn md1_series(lambda: f64, d: f64, x: f64) -> f64 {
    let mut sum = 0.0;
    let mut k = 0u32;
    while f64::from(k) * d <= x {
        let u = lambda * (f64::from(k) * d - x);
        let mut term = (-u).exp();
        for j in 1..=k {
            term *= u / f64::from(j);
        }
        sum += term;
        k += 1;
    }
    sum
}

/// Erlang's M/D/1 waiting-time CDF `P(W ≤ t)`.
pub fn md1_cdf(lambda: f64, d: f64, t: f64) -> f64 {
    (1.0 - lambda * d) * md1_series(lambda, d, t)
}

/// The M/D/1 wait's q-quantile: 0 within the atom `P(W = 0) = 1 − ρ`, else bracketed by walking
/// up from 0 in steps of D/64 (the alternating series cancels badly far out, so only the t it
/// needs are evaluated), then bisected.
pub fn md1_quantile(lambda: f64, d: f64, q: f64) -> f64 {
    if md1_cdf(lambda, d, 0.0) >= q {
        return 0.0;
    }
    let step = d / 64.0;
    let mut hi = step;
    while md1_cdf(lambda, d, hi) < q {
        hi += step;
    }
    let mut lo = hi - step;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if md1_cdf(lambda, d, mid) < q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The shipped Table I coefficients (`datasets/coefficients/a100-llama-2-7b-table1.toml`) with a
/// `[step_time]` section of constant steps: every prefill step takes `p_s` and every decode
/// step `d_s` seconds, whatever the batch. Written into `dir`.
pub fn constant_steps_coefficients(dir: &Path, p_s: f64, d_s: f64) -> std::path::PathBuf {
    let base = std::fs::read_to_string(TABLE1).unwrap();
    let step = format!(
        r#"
[step_time]
source = "test: constant prefill {p_s} s and decode {d_s} s steps"
kv_capacity_tokens = 16000

[step_time.decode]
intercept_s = {d_s}
per_decode_s = 0.0
per_decode_above_knee_s = 0.0
per_context_token_s = 0.0

[step_time.mixed]
intercept_s = {p_s}
per_token_s = 0.0
per_token_above_knee_s = 0.0
per_decode_s = 0.0
per_decode_context_token_s = 0.0
per_prefill_token_context_token_s = 0.0

[step_time.decode_fit]
n = 1
r2 = 1.0
mape_pct = 0.0
sum_bias_pct = 0.0

[step_time.mixed_fit]
n = 1
r2 = 1.0
mape_pct = 0.0
sum_bias_pct = 0.0
"#
    );
    let path = dir.join("constant-steps.toml");
    std::fs::write(&path, base + &step).unwrap();
    path
}

/// The shipped Table I coefficients: the paper's A100 single-request line.
pub const TABLE1: &str = "datasets/coefficients/a100-llama-2-7b-table1.toml";

/// Table I's single-request line `(a, c)`: one request of n tokens takes `a·n + c` seconds.
pub fn table1_line() -> tokenq_core::LinearService {
    let c =
        tokenq_core::CoefficientsFile::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join(TABLE1))
            .expect("read Table I");
    let s = c.single_request.expect("Table I has a single-request line");
    tokenq_core::LinearService {
        per_token_s: s.per_token_s,
        intercept_s: s.intercept_s,
    }
}

/// Table I's service time of one request of `n` tokens, seconds.
pub fn table1_service_s(n: f64) -> f64 {
    let s = table1_line();
    s.per_token_s * n + s.intercept_s
}
