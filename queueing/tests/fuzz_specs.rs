//! Fuzzing the readers of user input in `queueing`: token-distribution specs
//! (`TokenDist::parse`, the `--tokens` / `--workload` flags) and the CSV histograms of
//! `empirical:PATH[:COLUMN]` (`Empirical::from_csv_str`). Random strings, random bytes and
//! mutations of valid inputs must give `Ok` or `Err`, never a panic; a spec that parses gives
//! finite moments and a quantile inside its support.

use proptest::prelude::*;
use queueing::dist::{Empirical, TokenDist};

const VALID_SPECS: [&str; 12] = [
    "uniform:0,1000",
    "duniform:1,2048",
    "normal:500,100",
    "normal:500,100,0,inf",
    "normal:500,100,10,900",
    "lognormal:7,0.7",
    "lognormal:5,3",
    "const:128",
    "sharegpt",
    "azure-conv",
    "arxiv-input",
    "azure-code",
];

const VALID_CSV: [&str; 4] = [
    "value,count\n1,3\n2,5\n10,1\n",
    "value,prob\n5,0.25\n6,0.75\n",
    "tokens\n12\n40\n7\n",
    "a,b,c\n1,2,3\n4,5,6\n",
];

/// Parse, and exercise a parsed law's moments and quantiles.
fn check_spec(spec: &str) {
    // `empirical:` reads a file: fuzz its parser on text instead (below).
    if spec.to_ascii_lowercase().contains("empirical") {
        return;
    }
    if let Ok(d) = TokenDist::parse(spec) {
        let m = d.mean();
        assert!(m.is_finite() || m == f64::INFINITY, "{spec}: mean {m}");
        let (lo, hi) = d.support();
        let q = d.quantile(0.5);
        assert!(
            q.is_nan() || (q >= lo - 1e-9 && q <= hi + 1e-9),
            "{spec}: median {q}"
        );
        let (c1, c2) = d.clipped_moments(1000.0);
        assert!(c1 >= 0.0 && c2 >= 0.0, "{spec}: clipped moments {c1}, {c2}");
        let _ = d.cdf(100.0);
        let _ = d.sf(100.0);
        let _ = d.describe();
    }
}

fn check_csv(text: &str, column: Option<&str>) {
    if let Ok(e) = Empirical::from_csv_str(text, column, "fuzz.csv") {
        assert!(!e.values.is_empty());
        assert!(e.probs.iter().all(|p| p.is_finite() && *p >= 0.0));
        let d = TokenDist::Empirical(e);
        let _ = d.mean();
        let _ = d.quantile(0.9);
    }
}

/// Replace, insert or delete one character of `s` at `at` (modulo its length).
fn mutate(s: &str, at: usize, op: u8, c: char) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return c.to_string();
    }
    let i = at % chars.len();
    match op % 3 {
        0 => chars[i] = c,
        1 => chars.insert(i, c),
        _ => {
            chars.remove(i);
        }
    }
    chars.into_iter().collect()
}

fn interesting_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::sample::select(vec![
            ',', ':', '-', '.', 'e', 'E', '0', '9', 'i', 'n', 'f', ' ', '\n', '"', '\0',
            '\u{feff}', '\u{2212}', 'N', 'a',
        ]),
        any::<char>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_strings_never_panic(s in ".{0,40}") {
        check_spec(&s);
    }

    #[test]
    fn kind_with_random_numbers_never_panics(
        kind in prop::sample::select(vec!["uniform", "duniform", "normal", "lognormal", "const", "UNIFORM", ""]),
        nums in prop::collection::vec(
            prop_oneof![
                any::<f64>().prop_map(|x| x.to_string()),
                (-1e20f64..1e20).prop_map(|x| x.to_string()),
                (0u64..u64::MAX).prop_map(|x| x.to_string()),
                prop::sample::select(vec!["inf".to_string(), "-inf".into(), "nan".into(), "".into(), "1e308".into(), "1e-320".into(), "-0".into()]),
            ],
            0..6,
        ),
    ) {
        check_spec(&format!("{kind}:{}", nums.join(",")));
    }

    #[test]
    fn mutated_valid_specs_never_panic(
        i in 0..VALID_SPECS.len(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), interesting_char()), 1..4),
    ) {
        let mut s = VALID_SPECS[i].to_string();
        for (at, op, c) in edits {
            s = mutate(&s, at, op, c);
        }
        check_spec(&s);
    }

    #[test]
    fn random_csv_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), col in prop::option::of("[a-z0-9]{0,3}")) {
        check_csv(&String::from_utf8_lossy(&bytes), col.as_deref());
    }

    #[test]
    fn mutated_valid_csv_never_panics(
        i in 0..VALID_CSV.len(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), interesting_char()), 1..5),
        col in prop::option::of(prop::sample::select(vec!["0", "1", "2", "7", "value", "tokens", "b", ""])),
    ) {
        let mut s = VALID_CSV[i].to_string();
        for (at, op, c) in edits {
            s = mutate(&s, at, op, c);
        }
        check_csv(&s, col);
    }
}

#[test]
fn hostile_specs_are_errors_or_sane() {
    for s in [
        "duniform:0,8999999999999999",
        "duniform:5,4",
        "normal:0,1e-300,1e300,inf",
        "normal:1e300,1,0,inf",
        "lognormal:700,20",
        "lognormal:-700,0.001",
        "uniform:0,1e308",
        "const:1e308",
        ":",
        "::::",
        "uniform:",
        "uniform:1,2,3",
        "\u{0}",
    ] {
        check_spec(s);
    }
}
