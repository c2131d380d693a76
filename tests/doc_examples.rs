//! Every example output in README.md and docs/*.md is the real output of its command.
//!
//! A ```console block holds examples: a line `$ tokenq ARGS…` (continued on the next line while
//! it ends with ` \`), then the expected output, line for line; a line `...` stands for any
//! number of lines. Commands run from the repository root; stdout and then stderr are matched
//! (trailing spaces ignored). Blocks in other languages (```sh, ```text) are not run.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One example: where it is, the arguments after `tokenq`, the expected lines.
#[derive(Debug)]
struct Example {
    at: String,
    args: Vec<String>,
    expected: Vec<String>,
}

/// Split a command line into words: whitespace-separated, with '…' and "…" quoting.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn examples(file: &Path) -> Vec<Example> {
    let text = std::fs::read_to_string(file).unwrap();
    let name = file
        .strip_prefix(root())
        .unwrap_or(file)
        .display()
        .to_string();
    let mut out: Vec<Example> = Vec::new();
    let mut in_block = false;
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        if !in_block {
            in_block = line.trim_start() == "```console";
            continue;
        }
        if line.trim_start().starts_with("```") {
            in_block = false;
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            let mut cmd = cmd.to_string();
            while cmd.ends_with('\\') {
                cmd.pop();
                let (_, next) = lines.next().expect("continuation line");
                cmd.push(' ');
                cmd.push_str(next.trim());
            }
            let mut w = words(&cmd);
            assert_eq!(
                w.first().map(String::as_str),
                Some("tokenq"),
                "{name}:{}: examples run tokenq only",
                i + 1
            );
            w.remove(0);
            out.push(Example {
                at: format!("{name}:{}", i + 1),
                args: w,
                expected: Vec::new(),
            });
        } else {
            let ex = out
                .last_mut()
                .unwrap_or_else(|| panic!("{name}:{}: output before a `$ tokenq` line", i + 1));
            ex.expected.push(line.trim_end().to_string());
        }
    }
    out
}

/// Whether `actual` matches `expected`, where a `...` line matches any run of lines.
fn matches(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((e, rest)) if e == "..." => (0..=actual.len()).any(|k| matches(rest, &actual[k..])),
        Some((e, rest)) => actual
            .split_first()
            .is_some_and(|(a, more)| a.trim_end() == e && matches(rest, more)),
    }
}

#[test]
fn matcher_and_words() {
    let e = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(matches(&e(&["a", "...", "d"]), &["a", "b", "c", "d"]));
    assert!(matches(&e(&["a", "...", "b"]), &["a", "b"]));
    assert!(!matches(&e(&["a", "c"]), &["a", "b"]));
    assert!(!matches(&e(&["a"]), &["a", "b"]));
    assert_eq!(words("a 'b c' \"d\" e"), ["a", "b c", "d", "e"]);
}

#[test]
fn documented_outputs_are_real() {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut failures = Vec::new();
    let mut ran = 0;
    for f in &files {
        for ex in examples(f) {
            let out = Command::new(env!("CARGO_BIN_EXE_tokenq"))
                .args(&ex.args)
                .current_dir(root())
                .env_remove("RUST_BACKTRACE")
                .output()
                .unwrap();
            ran += 1;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let actual: Vec<&str> = text.lines().collect();
            if out.status.code() == Some(101) || !matches(&ex.expected, &actual) {
                failures.push(format!(
                    "{}: tokenq {}\n--- expected\n{}\n--- actual (exit {:?})\n{}",
                    ex.at,
                    ex.args.join(" "),
                    ex.expected.join("\n"),
                    out.status.code(),
                    text
                ));
            }
        }
    }
    assert!(ran >= 10, "only {ran} documented examples found");
    assert!(
        failures.is_empty(),
        "{} of {ran} documented examples differ from the real output:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
