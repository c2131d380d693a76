//! Errors of the vocabulary types. Every message is one line that names the file, key, flag or
//! quantity at fault and, where there is one, the fix.

use std::path::PathBuf;

/// What can go wrong reading the shared files or validating the shared types.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A file could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (not a `source`, so that the binary prints one line).
        cause: std::io::Error,
    },
    /// A coefficients file uses a schema this build does not know.
    #[error(
        "{path}: coefficients schema_version {found} is not supported (this tokenq reads version {supported}); regenerate the file with `tokenq fit` or upgrade tokenq"
    )]
    UnsupportedSchema {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// The version this build reads.
        supported: u32,
    },
    /// A coefficients file is not valid TOML or lacks a field.
    #[error("{path}: not a valid coefficients file: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message, first line.
        message: String,
    },
    /// A coefficients file parses but its values are unusable.
    #[error("{path}: invalid coefficients: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A table file (CSV) is missing, malformed or lacks what a reader needs.
    #[error("{}: {msg}", path.display())]
    File {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong and how to fix it.
        msg: String,
    },
    /// A setting (flag) is out of range.
    #[error("--{flag} must be {need} (got {got}); {fix}")]
    Setting {
        /// Flag name without dashes.
        flag: &'static str,
        /// What it must be.
        need: &'static str,
        /// What was given.
        got: String,
        /// How to fix it.
        fix: &'static str,
    },
    /// A model parameter is out of range.
    #[error(transparent)]
    Parameter(#[from] InvalidParameter),
}

/// A model parameter out of range (e.g. a negative per-token time). Cloneable and comparable,
/// so that the models' own error types can carry it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {what} = {value}: {why}")]
pub struct InvalidParameter {
    /// The parameter, e.g. `per_token_s` or `k1`.
    pub what: &'static str,
    /// The value given.
    pub value: f64,
    /// What it must be.
    pub why: &'static str,
}

/// First non-empty line of a message (parsers produce multi-line errors; ours are one line).
pub fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("")
        .to_string()
}
