//! `--coefficients FILE` or raw numbers: the latency coefficients the `queue`, `optimize` and
//! `simulate` commands need, from a coefficients file written by `tokenq fit` (docs/design.md
//! "Contracts") or from flags. Exactly one of the two must be given for each quantity a
//! command uses.
//!
//! [`resolve_single_request`] gives the single-request line (paper Fig. 2a: `S = a·n + c`,
//! docs/models.md §1) from a file or the raw flags; [`load`] reads a file for commands that take the
//! batch coefficients (Fig. 2b: `t1(b) = k1·b + k2`, `t2(b) = k3·b + k4`) from its
//! `[first_token]` / `[decode_step]` lines, and [`resolve_batch_k`] gives those from a file or
//! the raw flags.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// The single-request line and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct SingleRequestLine {
    /// a, seconds per output token.
    pub per_token_s: f64,
    /// c, seconds.
    pub intercept_s: f64,
    /// "FILE" or "flags".
    pub source: String,
}

/// Read and validate a coefficients file (one-line error naming the file).
pub fn load(path: &Path) -> Result<tokenq_core::CoefficientsFile> {
    tokenq_core::CoefficientsFile::read(path).map_err(|e| anyhow::anyhow!("--coefficients: {e}"))
}

fn finite(name: &str, v: f64) -> Result<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        bail!("--{name} {v} is not a finite number of seconds")
    }
}

/// `(a, c)` from a file or from raw flags: exactly one source.
pub fn resolve_single_request(
    file: Option<&Path>,
    per_token_s: Option<f64>,
    intercept_s: Option<f64>,
) -> Result<SingleRequestLine> {
    match (file, per_token_s, intercept_s) {
        (Some(f), None, None) => {
            let c = load(f)?;
            let (a, i) = c.single_request_line().with_context(|| {
                format!(
                    "--coefficients {}: the file has no [single_request] line (profile batch size 1, or pass --per-token-s and --intercept-s)",
                    f.display()
                )
            })?;
            Ok(SingleRequestLine {
                per_token_s: a,
                intercept_s: i,
                source: f.display().to_string(),
            })
        }
        (Some(_), _, _) => {
            bail!("give either --coefficients FILE or --per-token-s/--intercept-s, not both")
        }
        (None, Some(a), Some(c)) => {
            let (a, c) = (finite("per-token-s", a)?, finite("intercept-s", c)?);
            if a <= 0.0 {
                bail!("--per-token-s {a} must be positive (seconds per output token)");
            }
            if a + c <= 0.0 {
                bail!(
                    "--per-token-s {a} with --intercept-s {c} gives a non-positive service time for one token"
                );
            }
            Ok(SingleRequestLine {
                per_token_s: a,
                intercept_s: c,
                source: "flags".into(),
            })
        }
        (None, Some(_), None) | (None, None, Some(_)) => {
            bail!("--per-token-s and --intercept-s go together (or use --coefficients FILE)")
        }
        (None, None, None) => bail!(
            "no latency coefficients: pass --coefficients FILE (from `tokenq fit`, e.g. datasets/coefficients/a100-llama-2-7b-table1.toml) or --per-token-s S --intercept-s S"
        ),
    }
}

fn pair(flag: &str, names: [&str; 2], v: &[f64]) -> Result<[f64; 2]> {
    if v.len() != 2 {
        bail!(
            "--{flag} needs two comma-separated numbers {},{} (seconds), got {}",
            names[0],
            names[1],
            v.len()
        );
    }
    for (n, x) in names.iter().zip(v) {
        if !(x.is_finite() && *x >= 0.0) {
            bail!("--{flag}: {n} = {x} must be a finite number ≥ 0 seconds");
        }
    }
    Ok([v[0], v[1]])
}

/// `[k1, k2, k3, k4]` of the batch time (paper eq 18) from a file's `[first_token]` /
/// `[decode_step]` lines or from `--first-token-s K1,K2 --decode-step-s K3,K4`: exactly one
/// source.
pub fn resolve_batch_k(file: Option<&Path>, first: &[f64], decode: &[f64]) -> Result<[f64; 4]> {
    let raw = !first.is_empty() || !decode.is_empty();
    let k = match (file, raw) {
        (Some(_), true) => {
            bail!("give either --coefficients FILE or --first-token-s/--decode-step-s, not both")
        }
        (Some(f), false) => load(f)?.batch_k().ok_or_else(|| {
            anyhow::anyhow!(
                "--coefficients {}: the file has no [first_token] and [decode_step] lines (fit a profile with two or more batch sizes, or pass --first-token-s K1,K2 --decode-step-s K3,K4)",
                f.display()
            )
        })?,
        (None, false) => bail!(
            "no batch coefficients: pass --coefficients FILE (from `tokenq fit`, e.g. datasets/coefficients/a100-llama-2-7b-vidur.toml) or --first-token-s K1,K2 --decode-step-s K3,K4"
        ),
        (None, true) => {
            let [k1, k2] = pair("first-token-s", ["K1", "K2"], first)?;
            let [k3, k4] = pair("decode-step-s", ["K3", "K4"], decode)?;
            [k1, k2, k3, k4]
        }
    };
    if k[0] + k[1] <= 0.0 {
        bail!("--first-token-s: t1(1) = K1 + K2 must be > 0 seconds");
    }
    Ok(k)
}

/// `(a, c)` of `S = a·n + c` from `--per-token-s/--intercept-s` or `--coefficients`.
pub fn single_line(
    coefficients: Option<&Path>,
    per_token_s: Option<f64>,
    intercept_s: Option<f64>,
) -> Result<(f64, f64)> {
    let (per_token_s, intercept_s) = match (coefficients, per_token_s, intercept_s) {
        (Some(f), None, None) => load(f)?.single_request_line().with_context(|| {
            format!(
                "--coefficients {}: the file has no [single_request] line (pass --per-token-s and --intercept-s)",
                f.display()
            )
        })?,
        (Some(_), _, _) => bail!("give either --coefficients FILE or --per-token-s/--intercept-s, not both"),
        (None, Some(p), Some(c)) => (p, c),
        (None, None, None) => bail!(
            "mg1 needs the service-time line: pass --per-token-s S --intercept-s S, or --coefficients FILE (from `tokenq fit`)"
        ),
        _ => bail!("--per-token-s and --intercept-s go together (or use --coefficients FILE)"),
    };
    if !(per_token_s.is_finite()
        && per_token_s >= 0.0
        && intercept_s.is_finite()
        && intercept_s >= 0.0)
    {
        bail!(
            "--per-token-s {per_token_s} and --intercept-s {intercept_s} must be finite and ≥ 0 seconds"
        );
    }
    Ok((per_token_s, intercept_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_flags_and_errors() {
        let l = resolve_single_request(None, Some(0.02), Some(0.2)).unwrap();
        assert_eq!((l.per_token_s, l.intercept_s), (0.02, 0.2));
        let e = resolve_single_request(None, None, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--coefficients FILE"), "{e}");
        let e = resolve_single_request(Some(Path::new("x.toml")), Some(0.1), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not both"), "{e}");
        let e = resolve_single_request(None, Some(0.1), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("go together"), "{e}");
        assert!(resolve_single_request(None, Some(-0.1), Some(1.0)).is_err());
    }

    #[test]
    fn missing_file_names_the_flag_and_file() {
        let e = resolve_single_request(Some(Path::new("/no/such.toml")), None, None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--coefficients: /no/such.toml"), "{e}");
    }
}
