//! Values of flags, checked: each check returns the value or a one-line error that names the
//! flag and the accepted range. Shared by the binary's flag validation and this crate's
//! configuration checks, so one flag is judged the same way by every command.

use anyhow::{Result, bail};
use queueing::dist::TokenDist;

/// Parse a token-distribution spec; the error names `flag` and lists the accepted forms.
pub fn parse_tokens(flag: &str, spec: &str) -> Result<TokenDist> {
    TokenDist::parse(spec).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

/// A finite number `> 0`, else a one-line error naming the flag.
pub fn positive(flag: &str, v: f64, unit: &str) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        bail!("{flag} must be a finite number > 0 {unit}, got {v}")
    }
}

/// A finite number `≥ 0`, else a one-line error naming the flag.
pub fn non_negative(flag: &str, v: f64, unit: &str) -> Result<f64> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        bail!("{flag} must be a finite number >= 0 {unit}, got {v}")
    }
}

/// Largest arrival rate of a flag, req/s (beyond it the models' moments overflow).
pub const MAX_RATE: f64 = 1e6;
/// Smallest arrival rate of a flag, req/s (below it the mean gap overflows).
pub const MIN_RATE: f64 = 1e-9;
/// Largest time coefficient or patience of a flag, seconds.
pub const MAX_SECONDS: f64 = 1e9;

/// An arrival rate in `[MIN_RATE, MAX_RATE]` req/s, else a one-line error naming the flag.
pub fn rate(flag: &str, v: f64) -> Result<f64> {
    positive(flag, v, "req/s")?;
    if !(MIN_RATE..=MAX_RATE).contains(&v) {
        bail!("{flag} {v}: give a rate between {MIN_RATE:e} and {MAX_RATE:e} requests per second");
    }
    Ok(v)
}

/// A value at most `max`, else a one-line error naming the flag.
pub fn at_most(flag: &str, v: f64, max: f64, unit: &str) -> Result<f64> {
    if v > max {
        bail!("{flag} {v}: at most {max:e} {unit}");
    }
    Ok(v)
}

/// A max-token limit: `≥ 1`, or `None` (no limit → `+∞`).
pub fn max_tokens(flag: &str, v: Option<f64>) -> Result<f64> {
    match v {
        None => Ok(f64::INFINITY),
        Some(l) if l.is_finite() && l >= 1.0 => at_most(
            flag,
            l,
            queueing::dist::MAX_TOKENS,
            "tokens (omit it for no limit)",
        ),
        Some(l) => bail!("{flag} must be a number of tokens >= 1 (omit it for no limit), got {l}"),
    }
}

/// Parse a number or a fraction `A/B` (e.g. `--weight 119/120`).
pub fn parse_fraction(s: &str) -> std::result::Result<f64, String> {
    let v = match s.split_once('/') {
        Some((a, b)) => {
            let a: f64 = a.trim().parse().map_err(|_| format!("`{s}` is not A/B"))?;
            let b: f64 = b.trim().parse().map_err(|_| format!("`{s}` is not A/B"))?;
            a / b
        }
        None => s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a number"))?,
    };
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("`{s}` is not a finite number"))
    }
}

/// A whole number of requests: `1000000`, `1_000_000` or `1e6`.
pub fn parse_count(s: &str) -> Result<u64> {
    let clean = s.replace('_', "");
    if let Ok(n) = clean.parse::<u64>() {
        return Ok(n);
    }
    match clean.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 && x.fract() == 0.0 && x < 1.8e19 => Ok(x as u64),
        _ => bail!("--requests {s}: expected a whole number of requests such as 1000000 or 1e6"),
    }
}

/// The prompt-length law of a continuous-batching workload: `--input-tokens` as given, else
/// `DIST-input` for a built-in output law `DIST` that has one (sharegpt → sharegpt-input).
pub fn input_tokens(given: Option<&str>, output_spec: &str) -> Result<(TokenDist, String)> {
    let spec = match given {
        Some(s) => s.to_string(),
        None => {
            let guess = format!("{output_spec}-input");
            if parse_tokens("--input-tokens", &guess).is_err() {
                bail!(
                    "--input-tokens is needed for continuous batching (prompt lengths), e.g. --input-tokens sharegpt-input or const:512"
                );
            }
            guess
        }
    };
    Ok((parse_tokens("--input-tokens", &spec)?, spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counts() {
        assert_eq!(parse_count("1e6").unwrap(), 1_000_000);
        assert_eq!(parse_count("2_000").unwrap(), 2000);
        assert!(parse_count("1.5").is_err());
        assert!(parse_count("-3").is_err());
    }

    #[test]
    fn fractions_and_limits() {
        assert_eq!(parse_fraction("119/120").unwrap(), 119.0 / 120.0);
        assert!(parse_fraction("x").is_err());
        assert!(parse_fraction("1/0").is_err());
        assert!(max_tokens("--max-tokens", Some(0.5)).is_err());
        assert!(max_tokens("--max-tokens", Some(f64::NAN)).is_err());
        assert_eq!(max_tokens("--max-tokens", None).unwrap(), f64::INFINITY);
        assert!(rate("--rate", 1e7).is_err() && rate("--rate", 0.0).is_err());
        assert_eq!(rate("--rate", 3.0).unwrap(), 3.0);
    }
}
