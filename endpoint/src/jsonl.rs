//! Raw measurements as JSON Lines: one [`RequestRecord`] per line, as a JSON object.
//!
//! Fields (see [`RequestRecord`]; times in seconds since the run's epoch): `id`,
//! `scheduled_send_s`, `actual_send_s`, `first_token_s`, `last_token_s`, `end_s`,
//! `token_times_s` (array), `token_chunks`, `empty_chunks`, `usage_prompt_tokens`,
//! `usage_completion_tokens`, `requested_input_tokens`, `requested_output_tokens`, and `error`
//! (`null`, or an object whose `kind` names the [`crate::RequestError`] variant, with that
//! variant's fields). Absent values are `null`. Like AIPerf's `profile_export.jsonl`, a file
//! can be summarised again later ([`crate::Summary::from_records`]).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use crate::client::RequestRecord;

/// Why records could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    /// The file or stream failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not a record.
    #[error("line {line}: not a request record: {message}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What serde said.
        message: String,
    },
    /// A record could not be encoded (a non-finite time).
    #[error("record {id} cannot be written as JSON: {message}")]
    Encode {
        /// The record's id.
        id: u64,
        /// What serde said.
        message: String,
    },
}

/// Writes one JSON object per record, each followed by `\n`.
pub fn write_jsonl<W: Write>(mut out: W, records: &[RequestRecord]) -> Result<(), JsonlError> {
    for r in records {
        serde_json::to_writer(&mut out, r).map_err(|e| JsonlError::Encode {
            id: r.id,
            message: e.to_string(),
        })?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Reads records written by [`write_jsonl`]; blank lines are skipped.
pub fn read_jsonl<R: BufRead>(input: R) -> Result<Vec<RequestRecord>, JsonlError> {
    let mut records = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let rec = serde_json::from_str(&line).map_err(|e| JsonlError::Parse {
            line: i + 1,
            message: e.to_string(),
        })?;
        records.push(rec);
    }
    Ok(records)
}

/// [`write_jsonl`] to a new (or truncated) file.
pub fn write_jsonl_file(path: &Path, records: &[RequestRecord]) -> Result<(), JsonlError> {
    write_jsonl(BufWriter::new(File::create(path)?), records)
}

/// [`read_jsonl`] from a file.
pub fn read_jsonl_file(path: &Path) -> Result<Vec<RequestRecord>, JsonlError> {
    read_jsonl(BufReader::new(File::open(path)?))
}
