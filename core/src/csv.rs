//! The minimal CSV reader the shared table files need: comma-separated, a header line, no
//! quoting (the per-layer tables, traces and length files tokenq ships are all of this form).

use std::path::Path;

use crate::error::CoreError;

/// Header and rows of a CSV file; blank lines are skipped and cells trimmed.
pub fn read_csv(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>), CoreError> {
    let file_err = |msg: String| CoreError::File {
        path: path.to_path_buf(),
        msg,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| file_err(format!("cannot read ({e}); check the path")))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .ok_or_else(|| file_err("empty file; expected a header line".into()))?
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(|s| s.trim().to_string()).collect())
        .collect();
    Ok((header, rows))
}
