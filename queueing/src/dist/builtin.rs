//! Built-in token-length datasets, embedded in the binary with `include_str!`.
//!
//! Each is a compact `value,count` histogram derived from a public trace by
//! `scripts/derive-lengths.py`; provenance and licences are in `datasets/README.md`.
//! The product never reads `../shared` at run time.

/// A built-in dataset: spec name, one-line description, embedded CSV text.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// The spec-string name (`--tokens sharegpt`).
    pub name: &'static str,
    /// What it is and where it came from.
    pub description: &'static str,
    /// The embedded `value,count` CSV.
    pub csv: &'static str,
}

/// Every built-in dataset, output lengths first.
pub const BUILTINS: &[Builtin] = &[];

/// Look up a built-in dataset by name (case-insensitive).
pub fn lookup(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name.eq_ignore_ascii_case(name))
}

/// Comma-separated list of the built-in names, for error messages.
pub fn names() -> String {
    BUILTINS
        .iter()
        .map(|b| b.name)
        .collect::<Vec<_>>()
        .join(", ")
}
