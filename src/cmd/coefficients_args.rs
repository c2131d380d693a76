//! `--coefficients FILE` or raw numbers: the latency coefficients the `queue`, `optimize` and
//! `simulate` commands need, from a coefficients file written by `tokenq fit` (DESIGN.md
//! "Contracts") or from flags. Exactly one of the two must be given for each quantity a
//! command uses.
//!
//! Flatten [`CoefficientsArgs`] into a command's clap struct, then call
//! [`CoefficientsArgs::single_request`] (paper Fig. 2a: `S = a·n + c`, MATH.md §1) or
//! [`CoefficientsArgs::batch`] (Fig. 2b: `t1(b) = k1·b + k2`, `t2(b) = k3·b + k4`, MATH.md §5).
//! Commands that already have their own raw flags can call [`resolve_single_request`] and
//! [`resolve_batch`] directly.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

/// Where the coefficients come from.
#[derive(Debug, Clone, Default, Args)]
pub struct CoefficientsArgs {
    /// Coefficients file written by `tokenq fit` (e.g. datasets/coefficients/a100-llama-2-7b-table1.toml),
    /// instead of raw numbers.
    #[arg(long, value_name = "FILE")]
    pub coefficients: Option<PathBuf>,
    /// Single-request slope a, seconds per output token (paper: S = a·n + c).
    #[arg(long, value_name = "S")]
    pub per_token_s: Option<f64>,
    /// Single-request intercept c, seconds.
    #[arg(long, value_name = "S")]
    pub intercept_s: Option<f64>,
    /// First-token slope k1, seconds per request in the batch (t1(b) = k1·b + k2).
    #[arg(long, value_name = "S")]
    pub k1: Option<f64>,
    /// First-token intercept k2, seconds.
    #[arg(long, value_name = "S")]
    pub k2: Option<f64>,
    /// Decode-step slope k3, seconds per request in the batch (t2(b) = k3·b + k4).
    #[arg(long, value_name = "S")]
    pub k3: Option<f64>,
    /// Decode-step intercept k4, seconds.
    #[arg(long, value_name = "S")]
    pub k4: Option<f64>,
}

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

/// k1..k4 and where they came from.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchCoefficients {
    /// [k1, k2, k3, k4]: seconds per request, seconds, seconds per request, seconds.
    pub k: [f64; 4],
    /// "FILE" or "flags".
    pub source: String,
}

/// Read and validate a coefficients file (one-line error naming the file).
pub fn load(path: &Path) -> Result<fit::CoefficientsFile> {
    fit::CoefficientsFile::read(path).map_err(|e| anyhow::anyhow!("--coefficients: {e}"))
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

/// `[k1, k2, k3, k4]` from a file or from raw flags: exactly one source.
pub fn resolve_batch(file: Option<&Path>, k: [Option<f64>; 4]) -> Result<BatchCoefficients> {
    let given = k.iter().filter(|v| v.is_some()).count();
    match (file, given) {
        (Some(f), 0) => {
            let c = load(f)?;
            let k = c.batch_k().with_context(|| {
                format!(
                    "--coefficients {}: the file has no [first_token] and [decode_step] lines (profile two or more batch sizes, or pass --k1..--k4)",
                    f.display()
                )
            })?;
            Ok(BatchCoefficients {
                k,
                source: f.display().to_string(),
            })
        }
        (Some(_), _) => bail!("give either --coefficients FILE or --k1..--k4, not both"),
        (None, 4) => {
            let mut out = [0.0; 4];
            for (i, v) in k.iter().enumerate() {
                out[i] = finite(&format!("k{}", i + 1), v.unwrap_or(f64::NAN))?;
            }
            if out[0] + out[1] <= 0.0 || out[2] + out[3] <= 0.0 {
                bail!(
                    "--k1..--k4 give a non-positive first-token or decode-step time at batch size 1"
                );
            }
            Ok(BatchCoefficients {
                k: out,
                source: "flags".into(),
            })
        }
        (None, 0) => bail!(
            "no batch coefficients: pass --coefficients FILE (from `tokenq fit`, e.g. datasets/coefficients/a100-llama-2-7b-vidur.toml) or all of --k1 --k2 --k3 --k4"
        ),
        (None, n) => {
            bail!("--k1 --k2 --k3 --k4 go together ({n} of 4 given), or use --coefficients FILE")
        }
    }
}

impl CoefficientsArgs {
    /// The single-request line `S = a·n + c`.
    pub fn single_request(&self) -> Result<SingleRequestLine> {
        resolve_single_request(
            self.coefficients.as_deref(),
            self.per_token_s,
            self.intercept_s,
        )
    }

    /// The batch coefficients k1..k4.
    pub fn batch(&self) -> Result<BatchCoefficients> {
        resolve_batch(
            self.coefficients.as_deref(),
            [self.k1, self.k2, self.k3, self.k4],
        )
    }
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
        let e = resolve_batch(None, [Some(1.0), None, None, None])
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 of 4"), "{e}");
        let b = resolve_batch(None, [Some(0.01), Some(0.1), Some(0.001), Some(0.02)]).unwrap();
        assert_eq!(b.k, [0.01, 0.1, 0.001, 0.02]);
    }

    #[test]
    fn missing_file_names_the_flag_and_file() {
        let e = resolve_single_request(Some(Path::new("/no/such.toml")), None, None)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--coefficients: /no/such.toml"), "{e}");
    }
}
