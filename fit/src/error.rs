//! Typed errors of the `fit` crate. Every message is one line that names the file, column or
//! quantity at fault and, where there is one, the fix.

use std::path::PathBuf;

/// Everything that can go wrong between a timings table and a coefficients file.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// A coefficients file, a shared table or a model parameter is invalid.
    #[error(transparent)]
    Core(#[from] tokenq_core::CoreError),
    /// A file could not be read or written.
    #[error("{path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error (not a `source`, so that the binary prints one line).
        cause: std::io::Error,
    },
    /// A required column is absent from a table.
    #[error("{path}: missing column `{column}` (a timings table needs {expected})")]
    MissingColumn {
        /// The table.
        path: PathBuf,
        /// The absent column.
        column: String,
        /// The columns the reader expects.
        expected: String,
    },
    /// A cell could not be parsed or holds an impossible value.
    #[error("{path}: {what}")]
    BadValue {
        /// The table or file.
        path: PathBuf,
        /// What is wrong, with row and column.
        what: String,
    },
    /// A value is NaN or infinite.
    #[error(
        "{path}: column `{column}` row {row} is {value} (every time must be a finite number of seconds)"
    )]
    NonFinite {
        /// The table.
        path: PathBuf,
        /// The column.
        column: String,
        /// Row number (1-based, header excluded).
        row: usize,
        /// The offending value.
        value: f64,
    },
    /// A table, or the union of all tables given, has no rows.
    #[error("{what} is empty: no timed steps to fit (profile first, or pass a non-empty table)")]
    Empty {
        /// The table(s).
        what: String,
    },
    /// Not enough distinct points to fit a quantity.
    #[error("cannot fit {quantity}: {found} distinct point(s), need at least {needed} ({hint})")]
    TooFewPoints {
        /// The quantity, e.g. "decode step t2(b)".
        quantity: String,
        /// Distinct points available.
        found: usize,
        /// Points needed.
        needed: usize,
        /// How to get more.
        hint: String,
    },
    /// The design matrix is rank-deficient (e.g. a single batch size for a line in b).
    #[error("cannot fit {quantity}: the points do not vary in {variable} ({hint})")]
    Degenerate {
        /// The quantity.
        quantity: String,
        /// The variable without spread.
        variable: String,
        /// How to fix it.
        hint: String,
    },
    /// A bad configuration value (flag).
    #[error("{0}")]
    Config(String),
    /// Polars failed while reading a table.
    #[cfg(feature = "tables")]
    #[error("{path}: {message}")]
    Polars {
        /// The table.
        path: PathBuf,
        /// Polars' message, first line.
        message: String,
    },
}

/// Result alias of the crate.
pub type Result<T> = std::result::Result<T, FitError>;
