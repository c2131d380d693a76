//! Request traces: arrival times and token counts, replayed by the simulator.
//!
//! Native CSV format (header required, columns in any order, extra columns ignored):
//! `arrival_s,input_tokens,output_tokens[,prefix_parent,shared_prefix_blocks]` — arrival in
//! seconds from any origin (non-negative, non-decreasing), token counts as non-negative integers;
//! `prefix_parent` is the index of an earlier request whose prompt prefix this one shares
//! (−1 or empty for none) and `shared_prefix_blocks` how many KV blocks it shares (docs/serving.md).
//!
//! Azure format (Patel et al., "Splitwise", ISCA 2024; AzurePublicDataset 2023 LLM inference
//! traces): `TIMESTAMP,ContextTokens,GeneratedTokens` with timestamps `YYYY-MM-DD HH:MM:SS[.f]`
//! (UTC); arrivals are converted to seconds after the first request. The two Azure traces ship
//! with tokenq (`datasets/traces/`, provenance in `datasets/README.md`) and are embedded in the
//! binary under the names `azure-conv` and `azure-code`.

use std::path::Path;

/// The conversation trace (19,366 requests, one hour, 2023-11-16), CC-BY 4.0.
const AZURE_CONV: &str = include_str!("../../datasets/traces/AzureLLMInferenceTrace_conv.csv");
/// The code-completion trace (8,819 requests, same hour), CC-BY 4.0.
const AZURE_CODE: &str = include_str!("../../datasets/traces/AzureLLMInferenceTrace_code.csv");

/// Names of the embedded traces accepted by [`Trace::builtin`] and [`Trace::load`].
pub const BUILTIN_TRACES: [&str; 2] = ["azure-conv", "azure-code"];

/// One request of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRequest {
    /// Arrival time (s), non-decreasing along the trace.
    pub arrival_s: f64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Output tokens the request wants.
    pub output_tokens: u64,
    /// Index of an earlier request sharing a prompt prefix, if any.
    pub prefix_parent: Option<usize>,
    /// KV blocks shared with `prefix_parent` (0 when none).
    pub shared_prefix_blocks: u64,
}

/// A whole trace, in arrival order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trace {
    /// The requests, sorted by arrival.
    pub requests: Vec<TraceRequest>,
    /// Where it came from (path or built-in name).
    pub source: String,
}

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be opened or read.
    #[error("{source_name}: cannot read the trace: {err}")]
    Io {
        /// File name.
        source_name: String,
        /// Underlying error.
        err: std::io::Error,
    },
    /// A required column is absent from the header.
    #[error("{source_name}: missing column `{column}` (header has: {header}); expected {expected}")]
    MissingColumn {
        /// File name.
        source_name: String,
        /// The column.
        column: String,
        /// The header found.
        header: String,
        /// The columns expected.
        expected: String,
    },
    /// A field could not be parsed.
    #[error("{source_name}:{line}: column `{column}`: {why}")]
    Field {
        /// File name.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// Column name.
        column: String,
        /// What was wrong.
        why: String,
    },
    /// Arrivals go backwards.
    #[error(
        "{source_name}:{line}: arrival {arrival} s is earlier than the previous one ({previous} s); sort the trace by arrival time"
    )]
    Unsorted {
        /// File name.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// This arrival (s).
        arrival: f64,
        /// The previous one (s).
        previous: f64,
    },
    /// No data rows.
    #[error("{source_name}: the trace has no requests")]
    Empty {
        /// File name.
        source_name: String,
    },
    /// Neither a native nor an Azure header.
    #[error(
        "{source_name}: unknown trace format (header: {header}); expected `arrival_s,input_tokens,output_tokens` or Azure `TIMESTAMP,ContextTokens,GeneratedTokens`"
    )]
    UnknownFormat {
        /// File name.
        source_name: String,
        /// The header found.
        header: String,
    },
}

fn split(line: &str) -> Vec<&str> {
    line.split(',')
        .map(|f| f.trim().trim_matches('"'))
        .collect()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parse `YYYY-MM-DD HH:MM:SS[.fraction]` (or with `T`) into seconds since the Unix epoch.
pub fn parse_timestamp(s: &str) -> Option<f64> {
    let s = s.trim();
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let mo: i64 = d.next()?.parse().ok()?;
    let da: i64 = d.next()?.parse().ok()?;
    if d.next().is_some()
        || !(0..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&da)
    {
        return None;
    }
    let time = time.trim_end_matches('Z');
    let mut t = time.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let sec: f64 = t.next()?.parse().ok()?;
    if t.next().is_some()
        || !(0..24).contains(&h)
        || !(0..60).contains(&mi)
        || !(0.0..61.0).contains(&sec)
    {
        return None;
    }
    Some((days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60) as f64 + sec)
}

fn col(header: &[&str], name: &str) -> Option<usize> {
    header.iter().position(|h| h.eq_ignore_ascii_case(name))
}

impl Trace {
    /// One of the embedded traces (`azure-conv`, `azure-code`).
    pub fn builtin(name: &str) -> Option<Result<Trace, TraceError>> {
        match name {
            "azure-conv" => Some(Trace::parse_str(AZURE_CONV, name)),
            "azure-code" => Some(Trace::parse_str(AZURE_CODE, name)),
            _ => None,
        }
    }

    /// A built-in name or a CSV file in either format.
    pub fn load(spec: &str) -> Result<Trace, TraceError> {
        if let Some(t) = Trace::builtin(spec) {
            return t;
        }
        Trace::from_path(Path::new(spec))
    }

    /// Read a CSV file in either format.
    pub fn from_path(path: &Path) -> Result<Trace, TraceError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| TraceError::Io {
            source_name: name.clone(),
            err,
        })?;
        Trace::parse_str(&text, &name)
    }

    /// Parse CSV text; the header decides the format.
    pub fn parse_str(text: &str, source_name: &str) -> Result<Trace, TraceError> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let Some((_, header_line)) = lines.next() else {
            return Err(TraceError::Empty {
                source_name: source_name.into(),
            });
        };
        let header = split(header_line.trim_start_matches('\u{feff}'));
        let missing = |column: &str, expected: &str| TraceError::MissingColumn {
            source_name: source_name.into(),
            column: column.into(),
            header: header_line.trim().into(),
            expected: expected.into(),
        };
        let field_err = |line: usize, column: &str, why: String| TraceError::Field {
            source_name: source_name.into(),
            line: line + 1,
            column: column.into(),
            why,
        };
        let get = |fields: &[&str],
                   idx: usize,
                   line: usize,
                   column: &str|
         -> Result<String, TraceError> {
            fields
                .get(idx)
                .map(|s| s.to_string())
                .ok_or_else(|| field_err(line, column, "the row has too few fields".into()))
        };
        let parse_tokens = |v: String, line: usize, column: &str| -> Result<u64, TraceError> {
            v.parse::<u64>().map_err(|_| {
                field_err(line, column, format!("`{v}` is not a non-negative integer"))
            })
        };

        let azure = col(&header, "TIMESTAMP").is_some();
        let native = col(&header, "arrival_s").is_some();
        let mut requests = Vec::new();
        if azure {
            const EXP: &str = "TIMESTAMP,ContextTokens,GeneratedTokens";
            let ts = col(&header, "TIMESTAMP").ok_or_else(|| missing("TIMESTAMP", EXP))?;
            let ctx = col(&header, "ContextTokens").ok_or_else(|| missing("ContextTokens", EXP))?;
            let gen_ =
                col(&header, "GeneratedTokens").ok_or_else(|| missing("GeneratedTokens", EXP))?;
            let mut t0 = None;
            for (line, l) in lines {
                let f = split(l);
                let raw = get(&f, ts, line, "TIMESTAMP")?;
                let t = parse_timestamp(&raw).ok_or_else(|| {
                    field_err(
                        line,
                        "TIMESTAMP",
                        format!("`{raw}` is not `YYYY-MM-DD HH:MM:SS[.fraction]`"),
                    )
                })?;
                let origin = *t0.get_or_insert(t);
                requests.push(TraceRequest {
                    arrival_s: t - origin,
                    input_tokens: parse_tokens(
                        get(&f, ctx, line, "ContextTokens")?,
                        line,
                        "ContextTokens",
                    )?,
                    output_tokens: parse_tokens(
                        get(&f, gen_, line, "GeneratedTokens")?,
                        line,
                        "GeneratedTokens",
                    )?,
                    prefix_parent: None,
                    shared_prefix_blocks: 0,
                });
                // A timestamp earlier than the first row is caught as unsorted below.
            }
        } else if native {
            const EXP: &str =
                "arrival_s,input_tokens,output_tokens[,prefix_parent,shared_prefix_blocks]";
            let a = col(&header, "arrival_s").ok_or_else(|| missing("arrival_s", EXP))?;
            let i = col(&header, "input_tokens").ok_or_else(|| missing("input_tokens", EXP))?;
            let o = col(&header, "output_tokens").ok_or_else(|| missing("output_tokens", EXP))?;
            let pp = col(&header, "prefix_parent");
            let sb = col(&header, "shared_prefix_blocks");
            for (line, l) in lines {
                let f = split(l);
                let raw = get(&f, a, line, "arrival_s")?;
                let t: f64 = raw
                    .parse()
                    .ok()
                    .filter(|t: &f64| t.is_finite())
                    .ok_or_else(|| {
                        field_err(
                            line,
                            "arrival_s",
                            format!("`{raw}` is not a number of seconds"),
                        )
                    })?;
                let parent = match pp.and_then(|c| f.get(c)).copied() {
                    None | Some("") | Some("-1") => None,
                    Some(v) => Some(v.parse::<usize>().map_err(|_| {
                        field_err(
                            line,
                            "prefix_parent",
                            format!("`{v}` is not a request index or -1"),
                        )
                    })?),
                };
                if let Some(p) = parent
                    && p >= requests.len()
                {
                    return Err(field_err(
                        line,
                        "prefix_parent",
                        format!("{p} is not an earlier request"),
                    ));
                }
                let blocks = match sb.and_then(|c| f.get(c)).copied() {
                    None | Some("") => 0,
                    Some(v) => parse_tokens(v.to_string(), line, "shared_prefix_blocks")?,
                };
                requests.push(TraceRequest {
                    arrival_s: t,
                    input_tokens: parse_tokens(
                        get(&f, i, line, "input_tokens")?,
                        line,
                        "input_tokens",
                    )?,
                    output_tokens: parse_tokens(
                        get(&f, o, line, "output_tokens")?,
                        line,
                        "output_tokens",
                    )?,
                    prefix_parent: parent,
                    shared_prefix_blocks: blocks,
                });
            }
        } else {
            return Err(TraceError::UnknownFormat {
                source_name: source_name.into(),
                header: header_line.trim().into(),
            });
        }
        let trace = Trace {
            requests,
            source: source_name.to_string(),
        };
        trace.validate()?;
        Ok(trace)
    }

    /// Check non-empty, non-negative and sorted arrivals (line numbers assume one header line).
    pub fn validate(&self) -> Result<(), TraceError> {
        if self.requests.is_empty() {
            return Err(TraceError::Empty {
                source_name: self.source.clone(),
            });
        }
        let mut prev = 0.0f64;
        for (k, r) in self.requests.iter().enumerate() {
            if k > 0 && r.arrival_s < prev {
                return Err(TraceError::Unsorted {
                    source_name: self.source.clone(),
                    line: k + 2,
                    arrival: r.arrival_s,
                    previous: prev,
                });
            }
            if r.arrival_s.is_nan() || r.arrival_s < 0.0 {
                return Err(TraceError::Field {
                    source_name: self.source.clone(),
                    line: k + 2,
                    column: "arrival".into(),
                    why: format!(
                        "arrival {} s is negative; shift the trace so that it starts at 0",
                        r.arrival_s
                    ),
                });
            }
            prev = r.arrival_s;
        }
        Ok(())
    }

    /// Mean arrival rate (req/s): `(n − 1) / (last − first)`; `None` for a single request or
    /// all arrivals at one instant.
    pub fn mean_rate(&self) -> Option<f64> {
        let n = self.requests.len();
        if n < 2 {
            return None;
        }
        let span = self.requests[n - 1].arrival_s - self.requests[0].arrival_s;
        (span > 0.0).then(|| (n - 1) as f64 / span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_timestamps_become_seconds_after_first() {
        let t = Trace::parse_str(
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n2023-11-17 00:00:00,1,2\n",
            "x",
        )
        .unwrap();
        assert_eq!(t.requests.len(), 3);
        assert!((t.requests[1].arrival_s - 4.314579).abs() < 1e-6);
        // 18:15:46.68059 → next midnight = 5h44m13.31941s = 20653.31941 s.
        assert!((t.requests[2].arrival_s - 20653.31941).abs() < 1e-5);
        assert_eq!(t.requests[1].output_tokens, 109);
        assert_eq!(t.requests[1].input_tokens, 396);
    }

    #[test]
    fn civil_days_known_values() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(
            parse_timestamp("2023-11-16 00:00:00").unwrap(),
            1_700_092_800.0
        );
        assert!(parse_timestamp("2023-13-16 00:00:00").is_none());
        assert!(parse_timestamp("yesterday").is_none());
    }

    #[test]
    fn builtin_traces_load_with_documented_sizes() {
        let conv = Trace::builtin("azure-conv").unwrap().unwrap();
        let code = Trace::builtin("azure-code").unwrap().unwrap();
        assert_eq!(conv.requests.len(), 19_366);
        assert_eq!(code.requests.len(), 8_819);
        // Mean rates stated in the data README: 5.53 and 2.57 req/s.
        assert!((conv.mean_rate().unwrap() - 5.53).abs() < 0.01);
        assert!((code.mean_rate().unwrap() - 2.57).abs() < 0.01);
        assert_eq!(
            conv.requests.iter().map(|r| r.output_tokens).max(),
            Some(1000)
        );
    }

    #[test]
    fn native_format_with_prefix_columns() {
        let t = Trace::parse_str(
            "output_tokens,arrival_s,input_tokens,prefix_parent,shared_prefix_blocks\n5,0.0,10,-1,0\n6,0.5,11,0,3\n",
            "f.csv",
        )
        .unwrap();
        assert_eq!(t.requests[1].prefix_parent, Some(0));
        assert_eq!(t.requests[1].shared_prefix_blocks, 3);
        assert_eq!(t.requests[0].output_tokens, 5);
        assert_eq!(t.mean_rate(), Some(2.0));
    }

    #[test]
    fn bad_traces_get_clear_errors() {
        let e = Trace::parse_str(
            "arrival_s,input_tokens,output_tokens\n1.0,1,1\n0.5,1,1\n",
            "u.csv",
        )
        .unwrap_err();
        assert!(matches!(e, TraceError::Unsorted { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("sort the trace"));
        let e = Trace::parse_str("arrival_s,input_tokens,output_tokens\n-1.0,1,1\n", "n.csv")
            .unwrap_err();
        assert!(e.to_string().contains("negative"), "{e}");
        let e = Trace::parse_str("arrival_s,input_tokens\n1.0,1\n", "m.csv").unwrap_err();
        assert!(
            matches!(&e, TraceError::MissingColumn { column, .. } if column == "output_tokens"),
            "{e}"
        );
        let e = Trace::parse_str("TIMESTAMP,ContextTokens\n2023-11-16 18:15:46,1\n", "a.csv")
            .unwrap_err();
        assert!(
            matches!(&e, TraceError::MissingColumn { column, .. } if column == "GeneratedTokens"),
            "{e}"
        );
        let e = Trace::parse_str("arrival_s,input_tokens,output_tokens\n", "e.csv").unwrap_err();
        assert!(matches!(e, TraceError::Empty { .. }), "{e}");
        let e = Trace::parse_str("", "e.csv").unwrap_err();
        assert!(matches!(e, TraceError::Empty { .. }), "{e}");
        let e = Trace::parse_str("a,b\n1,2\n", "x.csv").unwrap_err();
        assert!(matches!(e, TraceError::UnknownFormat { .. }), "{e}");
        let e =
            Trace::parse_str("arrival_s,input_tokens,output_tokens\n0,1,x\n", "x.csv").unwrap_err();
        assert!(
            e.to_string().contains("x.csv:2: column `output_tokens`"),
            "{e}"
        );
        let e = Trace::parse_str("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,1,1\n2023-11-16 18:15:45,1,1\n", "a.csv")
            .unwrap_err();
        assert!(matches!(e, TraceError::Unsorted { line: 3, .. }), "{e}");
        assert!(Trace::from_path(Path::new("/nonexistent/t.csv")).is_err());
    }
}
