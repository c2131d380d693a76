//! Fuzzing the coefficients-file reader (`CoefficientsFile::from_toml_str`, behind every
//! `--coefficients FILE`): random bytes, random TOML-ish text and mutations of the shipped
//! files must give `Ok` or `Err`, never a panic; an error is one line naming the file, and a
//! file that is accepted validates and survives a write/read round trip.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use tokenq_core::CoefficientsFile;

fn shipped() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/coefficients");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 3,
        "shipped coefficient files in {}",
        dir.display()
    );
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

fn check(text: &str) {
    let path = Path::new("fuzz.toml");
    match CoefficientsFile::from_toml_str(text, path) {
        Ok(f) => {
            assert!(f.validate().is_ok());
            let back = CoefficientsFile::from_toml_str(&f.to_toml_string(), path)
                .expect("an accepted file round-trips");
            assert_eq!(back.single_request_line(), f.single_request_line());
            let _ = f.batch_k();
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("fuzz.toml"), "{msg}");
            assert!(!msg.contains('\n'), "not one line: {msg}");
        }
    }
}

/// Replace, insert or delete one byte-sized piece of `s` (at a char boundary).
fn mutate(s: &str, at: usize, op: u8, piece: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return piece.to_string();
    }
    let i = at % chars.len();
    match op % 4 {
        0 => {
            chars.splice(i..=i, piece.chars());
        }
        1 => {
            chars.splice(i..i, piece.chars());
        }
        2 => {
            chars.remove(i);
        }
        _ => {
            // cut a line: the key, a bracket or a whole section header goes
            let end = chars[i..]
                .iter()
                .position(|&c| c == '\n')
                .map_or(chars.len(), |p| i + p);
            chars.drain(i..end);
        }
    }
    chars.into_iter().collect()
}

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "\"x\"",
            "-1",
            "nan",
            "inf",
            "-inf",
            "1e400",
            "[",
            "]",
            "[[",
            "=",
            "\n",
            "#",
            "0",
            "[1, 2]",
            "[]",
            "{}",
            "true",
            "1979-05-27",
            "\"\"\"",
            "'",
            "\\",
            ".",
            "\u{0}",
            "schema_version = 2\n",
            "[single_request]\n",
            "per_token_s = -0.5\n",
        ])
        .prop_map(str::to_string),
        any::<char>().prop_map(|c| c.to_string()),
        "[a-z_.=\\[\\]0-9 \n\"-]{1,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_tomlish_text_never_panics(s in "(schema_version = 1\n)?(\\[[a-z_.]{1,20}\\]\n|[a-z_]{1,16} = ([0-9.e-]{1,8}|\"[a-z]{0,5}\"|\\[[0-9., ]{0,12}\\]|true)\n){0,12}") {
        check(&s);
    }

    #[test]
    fn mutated_shipped_files_never_panic(
        i in 0usize..8,
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), piece()), 1..4),
    ) {
        let files = shipped();
        let mut s = files[i % files.len()].clone();
        for (at, op, p) in edits {
            s = mutate(&s, at, op, &p);
        }
        check(&s);
    }
}

#[test]
fn shipped_files_read_and_hostile_values_are_refused() {
    for text in shipped() {
        check(&text);
        assert!(CoefficientsFile::from_toml_str(&text, Path::new("x.toml")).is_ok());
    }
    let base = "schema_version = 1\n[single_request]\nintercept_s = 0.1\ninput_tokens = 8\n";
    for v in ["nan", "inf", "-inf", "1e308", "-1", "0", "\"a\"", "[1]"] {
        check(&format!("{base}per_token_s = {v}\n"));
    }
    // A type error names its line and key.
    let e = CoefficientsFile::from_toml_str(
        &format!("{base}per_token_s = \"fast\"\n"),
        Path::new("t.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("line 5") && e.contains("single_request.per_token_s"),
        "{e}"
    );
}
