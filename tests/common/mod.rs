//! Helpers shared by the CLI tests of the server commands (`mod common;` in each file): run the
//! built binary as a user would (no backtrace variables, no API key from the environment), and
//! read what it printed.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Run `tokenq ARGS`.
pub fn tokenq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tokenq"))
        .args(args)
        // anyhow appends a backtrace when these are set; users see one line without them
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env_remove("OPENAI_API_KEY")
        .output()
        .expect("run tokenq")
}

/// Its stdout, after checking that it succeeded (stderr in the failure message).
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Its stdout as JSON, after checking that it succeeded.
pub fn ok_json(o: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(o)).expect("JSON on stdout")
}

/// A path as a command-line argument.
pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}
