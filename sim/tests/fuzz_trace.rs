//! Fuzzing the trace readers (`--trace FILE` of `simulate` and `replay`): `sim::Trace::parse_str`
//! (tokenq and Azure CSVs) and the LLMServingSim workload reader
//! (`sim::continuous::workload::read_trace`, with its `.prefix.csv` companion). Random bytes and
//! mutations of valid traces must give `Ok` or `Err`, never a panic; an accepted trace is
//! sorted, starts at 0 and validates, and an error is one line naming the source.

use proptest::prelude::*;
use sim::Trace;

const TOKENQ: &str = "arrival_s,input_tokens,output_tokens,prefix_parent,shared_prefix_blocks\n\
0.0,128,40,,0\n0.5,64,12,0,2\n1.25,300,7,,0\n2.0,32,100,1,1\n";
const AZURE: &str = "TIMESTAMP,ContextTokens,GeneratedTokens\n\
2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n\
2023-11-16 18:15:51.0000000,12,3\n";
const SHORT: &str = "arrival_s,input_tokens,output_tokens\n0,1,1\n1e-3,2,2\n";
const LLMSERVINGSIM: &str =
    "input_toks,output_toks,arrival_time_ns\n12,4,0\n40,9,1000000\n7,2,2500000\n";
const PREFIX: &str = "request_index,prefix_parent,shared_prefix_blocks\n1,0,1\n2,1,0\n";

fn check(text: &str) {
    match Trace::parse_str(text, "fuzz.csv") {
        Ok(t) => {
            assert!(!t.requests.is_empty());
            assert!(t.validate().is_ok(), "an accepted trace validates");
            assert!(
                t.requests
                    .windows(2)
                    .all(|w| w[0].arrival_s <= w[1].arrival_s),
                "sorted"
            );
            let _ = t.mean_rate();
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("fuzz.csv"), "{msg}");
            assert!(!msg.contains('\n'), "not one line: {msg}");
        }
    }
}

/// The LLMServingSim reader takes a path (and a companion prefix file beside it).
fn check_llmservingsim(lengths: &str, prefix: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.lengths.csv");
    std::fs::write(&path, lengths).unwrap();
    if let Some(p) = prefix {
        std::fs::write(dir.path().join("w.prefix.csv"), p).unwrap();
    }
    if let Ok(reqs) = sim::continuous::workload::read_trace(&path) {
        for (i, r) in reqs.iter().enumerate() {
            assert!(r.arrival_s.is_finite());
            if let Some(p) = r.prefix_parent {
                assert!((p as usize) < i, "a prefix parent comes earlier");
            }
        }
    }
}

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
            ",",
            "\n",
            "-1",
            "nan",
            "inf",
            "1e400",
            "-0",
            "\"",
            "\u{feff}",
            "\r\n",
            "99999999999999999999",
            "18446744073709551615",
            "4294967296",
            "2023-02-30 25:61:61.0",
            "1970-01-01 00:00:00",
            "",
            "0,0,0\n",
            "5,3,1\n",
            "\u{0}",
            " ",
            "1e-320",
        ])
        .prop_map(str::to_string),
        any::<char>().prop_map(|c| c.to_string()),
        "[0-9.,e\n-]{1,10}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_rows_under_a_valid_header_never_panic(
        header in prop::sample::select(vec![
            "arrival_s,input_tokens,output_tokens",
            "arrival_s,input_tokens,output_tokens,prefix_parent,shared_prefix_blocks",
            "TIMESTAMP,ContextTokens,GeneratedTokens",
            "output_tokens,arrival_s,input_tokens",
        ]),
        rows in prop::collection::vec("[0-9.,e: -]{0,40}", 0..8),
    ) {
        check(&format!("{header}\n{}\n", rows.join("\n")));
    }

    #[test]
    fn mutated_valid_traces_never_panic(
        i in 0usize..3,
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), piece()), 1..4),
    ) {
        let mut s = [TOKENQ, AZURE, SHORT][i].to_string();
        for (at, op, p) in edits {
            s = mutate(&s, at, op, &p);
        }
        check(&s);
    }
}

proptest! {
    // Each case writes files: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn mutated_llmservingsim_workloads_never_panic(
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), piece()), 0..4),
        prefix_edits in prop::collection::vec((any::<usize>(), any::<u8>(), piece()), 0..3),
        with_prefix in any::<bool>(),
    ) {
        let mut s = LLMSERVINGSIM.to_string();
        for (at, op, p) in edits {
            s = mutate(&s, at, op, &p);
        }
        let mut p = PREFIX.to_string();
        for (at, op, x) in prefix_edits {
            p = mutate(&p, at, op, &x);
        }
        check_llmservingsim(&s, with_prefix.then_some(p.as_str()));
    }
}

#[test]
fn hostile_traces_are_errors() {
    for t in [
        "",
        "\n\n",
        "arrival_s,input_tokens,output_tokens\n",
        "arrival_s,input_tokens,output_tokens\n1,2\n",
        "arrival_s,input_tokens,output_tokens\n2,1,1\n1,1,1\n",
        "arrival_s,input_tokens,output_tokens\n-1,1,1\n",
        "arrival_s,input_tokens,output_tokens\nnan,1,1\n",
        "arrival_s,input_tokens,output_tokens\ninf,1,1\n",
        "arrival_s,input_tokens,output_tokens,prefix_parent,shared_prefix_blocks\n0,1,1,5,1\n",
        "arrival_s,input_tokens,output_tokens,prefix_parent,shared_prefix_blocks\n0,1,1,0,1\n",
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-13-45 99:99:99,1,1\n",
    ] {
        check(t);
    }
}
