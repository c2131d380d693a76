//! Requests of a continuous-batching replay and the two trace formats it reads
//! (docs/serving.md "Prefix caching"; workload format of LLMServingSim, `datasets/llmservingsim/`).
//!
//! - tokenq trace CSV: header `arrival_s,input_tokens,output_tokens` with optional
//!   `prefix_parent,shared_prefix_blocks` (−1 / 0 or empty for none).
//! - LLMServingSim workload: `input_toks,output_toks,arrival_time_ns` (nanoseconds), with an
//!   optional companion prefix file `request_index,prefix_parent,shared_prefix_blocks` (same
//!   order; found beside `X.lengths.csv` as `X.prefix.csv`).
//!
//! Output lengths are forced: the engine generates exactly `output_tokens`.

use std::path::{Path, PathBuf};

use super::error::ContinuousError;

/// One request of a trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    /// Arrival time, seconds from the start of the trace.
    pub arrival_s: f64,
    /// Prompt tokens P (≥ 1).
    pub input_tokens: u32,
    /// Output tokens O (≥ 1), generated exactly.
    pub output_tokens: u32,
    /// Earlier request whose prompt shares a prefix with this one.
    pub prefix_parent: Option<u32>,
    /// Full KV blocks of prompt shared with `prefix_parent`.
    pub shared_prefix_blocks: u32,
}

impl Request {
    /// A request without a shared prefix.
    pub fn new(arrival_s: f64, input_tokens: u32, output_tokens: u32) -> Self {
        Self {
            arrival_s,
            input_tokens,
            output_tokens,
            prefix_parent: None,
            shared_prefix_blocks: 0,
        }
    }
}

fn file_err(path: &Path, msg: impl Into<String>) -> ContinuousError {
    ContinuousError::File {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Minimal numeric CSV: header names and rows of trimmed fields.
fn read_csv(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>), ContinuousError> {
    Ok(tokenq_core::csv::read_csv(path)?)
}

fn col(header: &[String], name: &str) -> Option<usize> {
    header.iter().position(|h| h == name)
}

fn parse<T: std::str::FromStr>(
    path: &Path,
    line: usize,
    name: &str,
    s: &str,
) -> Result<T, ContinuousError> {
    s.parse().map_err(|_| {
        file_err(
            path,
            format!("line {line}: column `{name}` = `{s}` is not a valid number"),
        )
    })
}

/// Read a trace in either format (detected from the header). For the LLMServingSim format the
/// prefix file `X.prefix.csv` beside `X.lengths.csv` is read when it exists.
pub fn read_trace(path: &Path) -> Result<Vec<Request>, ContinuousError> {
    let (header, rows) = read_csv(path)?;
    let mut out = Vec::with_capacity(rows.len());
    if let (Some(a), Some(i), Some(o)) = (
        col(&header, "arrival_s"),
        col(&header, "input_tokens"),
        col(&header, "output_tokens"),
    ) {
        let pp = col(&header, "prefix_parent");
        let sb = col(&header, "shared_prefix_blocks");
        for (k, r) in rows.iter().enumerate() {
            let line = k + 2;
            let get = |c: usize| r.get(c).map(String::as_str).unwrap_or("");
            let arrival_s: f64 = parse(path, line, "arrival_s", get(a))?;
            if !(arrival_s.is_finite() && arrival_s >= 0.0) {
                return Err(file_err(
                    path,
                    format!(
                        "line {line}: column `arrival_s` = `{}` must be a finite number of seconds ≥ 0",
                        get(a)
                    ),
                ));
            }
            let mut req = Request::new(
                arrival_s,
                parse(path, line, "input_tokens", get(i))?,
                parse(path, line, "output_tokens", get(o))?,
            );
            if let (Some(pc), Some(sc)) = (pp, sb) {
                let p = get(pc);
                if !p.is_empty() {
                    let p: i64 = parse(path, line, "prefix_parent", p)?;
                    if p >= 0 {
                        req.prefix_parent = Some(parent_index(path, line, p, k)?);
                        let s = get(sc);
                        req.shared_prefix_blocks = if s.is_empty() {
                            0
                        } else {
                            parse(path, line, "shared_prefix_blocks", s)?
                        };
                    }
                }
            }
            out.push(req);
        }
    } else if let (Some(i), Some(o), Some(a)) = (
        col(&header, "input_toks"),
        col(&header, "output_toks"),
        col(&header, "arrival_time_ns"),
    ) {
        for (k, r) in rows.iter().enumerate() {
            let line = k + 2;
            let get = |c: usize| r.get(c).map(String::as_str).unwrap_or("");
            let ns: f64 = parse(path, line, "arrival_time_ns", get(a))?;
            if !(ns.is_finite() && ns >= 0.0) {
                return Err(file_err(
                    path,
                    format!(
                        "line {line}: column `arrival_time_ns` = `{}` must be a finite number ≥ 0",
                        get(a)
                    ),
                ));
            }
            out.push(Request::new(
                ns * 1e-9,
                parse(path, line, "input_toks", get(i))?,
                parse(path, line, "output_toks", get(o))?,
            ));
        }
        if let Some(p) = companion_prefix_file(path)
            && p.exists()
        {
            apply_prefix_file(&p, &mut out)?;
        }
    } else {
        return Err(file_err(
            path,
            format!(
                "unknown trace header {header:?}; expected `arrival_s,input_tokens,output_tokens[,prefix_parent,shared_prefix_blocks]` or LLMServingSim's `input_toks,output_toks,arrival_time_ns`"
            ),
        ));
    }
    Ok(out)
}

/// A `prefix_parent` of request `index`: an earlier request.
fn parent_index(path: &Path, line: usize, p: i64, index: usize) -> Result<u32, ContinuousError> {
    match u32::try_from(p) {
        Ok(v) if (v as usize) < index => Ok(v),
        _ => Err(file_err(
            path,
            format!("line {line}: prefix_parent {p} is not an earlier request (request {index})"),
        )),
    }
}

/// `X.prefix.csv` for `X.lengths.csv`.
pub fn companion_prefix_file(lengths: &Path) -> Option<PathBuf> {
    let name = lengths.file_name()?.to_str()?;
    let stem = name.strip_suffix(".lengths.csv")?;
    Some(lengths.with_file_name(format!("{stem}.prefix.csv")))
}

/// Read LLMServingSim-derived prefix links into `reqs` (same order).
pub fn apply_prefix_file(path: &Path, reqs: &mut [Request]) -> Result<(), ContinuousError> {
    let (header, rows) = read_csv(path)?;
    let (Some(ix), Some(pp), Some(sb)) = (
        col(&header, "request_index"),
        col(&header, "prefix_parent"),
        col(&header, "shared_prefix_blocks"),
    ) else {
        return Err(file_err(
            path,
            "expected header `request_index,prefix_parent,shared_prefix_blocks`",
        ));
    };
    for (k, r) in rows.iter().enumerate() {
        let line = k + 2;
        let get = |c: usize| r.get(c).map(String::as_str).unwrap_or("");
        let i: usize = parse(path, line, "request_index", get(ix))?;
        let p: i64 = parse(path, line, "prefix_parent", get(pp))?;
        let s: u32 = parse(path, line, "shared_prefix_blocks", get(sb))?;
        let n = reqs.len();
        let req = reqs.get_mut(i).ok_or_else(|| {
            file_err(
                path,
                format!("line {line}: request_index {i} but the workload has {n} requests"),
            )
        })?;
        if p >= 0 && s > 0 {
            req.prefix_parent = Some(parent_index(path, line, p, i)?);
            req.shared_prefix_blocks = s;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_formats() {
        let dir = std::env::temp_dir().join(format!("tokenq-wl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = dir.join("a.csv");
        std::fs::write(
            &a,
            "arrival_s,input_tokens,output_tokens,prefix_parent,shared_prefix_blocks\n0.5,40,3,-1,0\n1.25,64,2,0,2\n",
        )
        .unwrap();
        let r = read_trace(&a).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].prefix_parent, Some(0));
        assert_eq!(r[1].shared_prefix_blocks, 2);
        let b = dir.join("w.lengths.csv");
        std::fs::write(
            &b,
            "input_toks,output_toks,arrival_time_ns\n10,5,1500000000\n20,6,2000000000\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("w.prefix.csv"),
            "request_index,prefix_parent,shared_prefix_blocks\n0,-1,0\n1,0,1\n",
        )
        .unwrap();
        let r = read_trace(&b).unwrap();
        assert_eq!(r[0].arrival_s, 1.5);
        assert_eq!(r[1].prefix_parent, Some(0));
        let c = dir.join("bad.csv");
        std::fs::write(&c, "x,y\n1,2\n").unwrap();
        assert!(
            read_trace(&c)
                .unwrap_err()
                .to_string()
                .contains("unknown trace header")
        );
        std::fs::write(&c, "arrival_s,input_tokens,output_tokens\n0.1,abc,3\n").unwrap();
        let e = read_trace(&c).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("input_tokens"), "{e}");
    }
}
