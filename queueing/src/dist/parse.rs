//! Spec-string parser for [`TokenDist`] (docs/design.md "Workload"; grammar in the `dist` docs).

use super::{DistError, Empirical, TokenDist, builtin};

/// The accepted forms, quoted in every parse error.
pub(crate) const SPEC_FORMS: &str = "uniform:LO,HI | duniform:LO,HI | normal:MEAN,SD[,LO,HI] | \
lognormal:MU,SIGMA | const:N | empirical:PATH[:COLUMN] | a built-in name";

pub(crate) fn parse(spec: &str) -> Result<TokenDist, DistError> {
    let spec_t = spec.trim();
    let fail = |why: String| DistError::Spec {
        spec: spec.to_string(),
        why,
    };
    let Some((kind, rest)) = spec_t.split_once(':') else {
        if let Some(b) = builtin::lookup(spec_t) {
            let e = Empirical::from_csv_str(b.csv, None, b.name)?;
            return Ok(TokenDist::Empirical(e));
        }
        let names = builtin::names();
        return Err(fail(format!(
            "not a built-in dataset ({}) and no `KIND:` prefix; expected {SPEC_FORMS}",
            if names.is_empty() {
                "none built in"
            } else {
                &names
            }
        )));
    };
    let kind = kind.trim().to_ascii_lowercase();
    if kind == "empirical" {
        return parse_empirical(rest.trim()).map(TokenDist::Empirical);
    }
    let nums: Vec<f64> = rest
        .split(',')
        .map(|t| {
            let t = t.trim();
            match t.to_ascii_lowercase().as_str() {
                "inf" | "+inf" | "infinity" => Ok(f64::INFINITY),
                _ => t
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| fail(format!("`{t}` is not a finite number"))),
            }
        })
        .collect::<Result<_, _>>()?;
    let want = |forms: &str, ok: bool| {
        if ok {
            Ok(())
        } else {
            Err(fail(format!(
                "{kind} takes {forms}, got {} number(s)",
                nums.len()
            )))
        }
    };
    let dist = match kind.as_str() {
        "uniform" => {
            want("LO,HI", nums.len() == 2)?;
            TokenDist::Uniform {
                lo: nums[0],
                hi: nums[1],
            }
        }
        "duniform" => {
            want("LO,HI", nums.len() == 2)?;
            let as_u64 = |v: f64, name: &str| {
                if v >= 0.0 && v.fract() == 0.0 && v < 9.0e15 {
                    Ok(v as u64)
                } else {
                    Err(fail(format!(
                        "{name} must be a non-negative integer, got {v}"
                    )))
                }
            };
            TokenDist::DiscreteUniform {
                lo: as_u64(nums[0], "LO")?,
                hi: as_u64(nums[1], "HI")?,
            }
        }
        "normal" => {
            want(
                "MEAN,SD or MEAN,SD,LO,HI",
                nums.len() == 2 || nums.len() == 4,
            )?;
            let (lo, hi) = if nums.len() == 4 {
                (nums[2], nums[3])
            } else {
                (0.0, f64::INFINITY)
            };
            TokenDist::TruncNormal {
                mean: nums[0],
                sd: nums[1],
                lo,
                hi,
            }
        }
        "lognormal" => {
            want("MU,SIGMA", nums.len() == 2)?;
            TokenDist::Lognormal {
                mu: nums[0],
                sigma: nums[1],
            }
        }
        "const" => {
            want("N", nums.len() == 1)?;
            TokenDist::Constant { value: nums[0] }
        }
        other => {
            return Err(fail(format!(
                "unknown kind `{other}`; expected {SPEC_FORMS}"
            )));
        }
    };
    // `inf` is only meaningful as the upper truncation bound of `normal`.
    let inf_ok = matches!(dist, TokenDist::TruncNormal { .. });
    if nums.iter().any(|v| v.is_infinite()) && !inf_ok {
        return Err(fail(
            "`inf` is only allowed as HI of normal:MEAN,SD,LO,HI".into(),
        ));
    }
    dist.validate().map_err(fail)?;
    Ok(dist)
}

/// `PATH[:COLUMN]`: a path that exists as given wins, otherwise the part after the last `:`
/// is the column.
fn parse_empirical(rest: &str) -> Result<Empirical, DistError> {
    if rest.is_empty() {
        return Err(DistError::Spec {
            spec: format!("empirical:{rest}"),
            why: "missing PATH: write empirical:PATH[:COLUMN]".into(),
        });
    }
    if std::path::Path::new(rest).is_file() {
        return Empirical::from_csv_file(rest, None);
    }
    match rest.rsplit_once(':') {
        Some((path, col)) if !col.is_empty() && !col.contains(['/', '\\']) => {
            Empirical::from_csv_file(path, Some(col))
        }
        _ => Empirical::from_csv_file(rest, None),
    }
}
