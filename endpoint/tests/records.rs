//! Summary arithmetic on hand-built records, and the JSONL round trip. No network.

use endpoint::{
    DEFAULT_PERCENTILES, JsonlError, RequestError, RequestRecord, Slo, Summary, read_jsonl,
    read_jsonl_file, write_jsonl, write_jsonl_file,
};

fn rec(
    id: u64,
    scheduled: f64,
    actual: f64,
    tokens: &[f64],
    usage: Option<(u32, u32)>,
    end: f64,
    error: Option<RequestError>,
) -> RequestRecord {
    RequestRecord {
        id,
        scheduled_send_s: scheduled,
        actual_send_s: actual,
        first_token_s: tokens.first().copied(),
        last_token_s: tokens.last().copied(),
        end_s: end,
        token_times_s: tokens.to_vec(),
        token_chunks: tokens.len() as u32,
        empty_chunks: 0,
        empty_times_s: Vec::new(),
        usage_prompt_tokens: usage.map(|u| u.0),
        usage_completion_tokens: usage.map(|u| u.1),
        requested_input_tokens: None,
        requested_output_tokens: 8,
        error,
    }
}

/// Three successes and one failure with round numbers:
/// * r0: TTFT 100, E2EL 150, TPOT (150−100)/2 = 25, ITL 20, 30; usage 10 in / 3 out.
/// * r1: TTFT 200, E2EL 240, TPOT 40/4 = 10, ITL 10 ×4; usage 20 / 5.
/// * r2: TTFT 300, E2EL 300, one token (no TPOT, no ITL); usage 5 / 1.
/// * r3: failed (reset); counts for `failed`, lateness and duration only.
fn records() -> Vec<RequestRecord> {
    vec![
        rec(
            0,
            0.0,
            0.001,
            &[0.100, 0.120, 0.150],
            Some((10, 3)),
            0.151,
            None,
        ),
        rec(
            1,
            0.5,
            0.5,
            &[0.700, 0.710, 0.720, 0.730, 0.740],
            Some((20, 5)),
            0.75,
            None,
        ),
        rec(2, 1.0, 1.003, &[1.3], Some((5, 1)), 1.31, None),
        rec(
            3,
            1.5,
            1.502,
            &[1.6],
            None,
            2.0,
            Some(RequestError::Reset {
                after_chunks: 1,
                message: "gone".into(),
            }),
        ),
    ]
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

macro_rules! assert_close {
    ($a:expr, $b:expr) => {
        assert!(close($a, $b), "{} = {} ≠ {}", stringify!($a), $a, $b)
    };
}

#[test]
fn summary_fields_match_hand_arithmetic() {
    let s = Summary::from_records(&records(), &DEFAULT_PERCENTILES, None);
    assert_eq!((s.completed, s.failed), (3, 1));
    assert_eq!(s.errors.get("reset"), Some(&1));
    // Earliest scheduled send 0, latest end 2.0.
    assert_close!(s.duration_s, 2.0);
    assert_eq!(s.total_input_tokens, 35);
    assert_eq!(s.total_output_tokens, 9);
    assert_close!(s.request_throughput, 1.5);
    assert_close!(s.output_throughput, 4.5);
    assert_close!(s.total_token_throughput, 22.0);
    assert_eq!(s.request_goodput, None);

    // TTFT [100, 200, 300]: population std sqrt(20000/3); p90 at rank 1.8, p99 at 1.98.
    assert_eq!(s.ttft.count, 3);
    assert_close!(s.ttft.mean_ms, 200.0);
    assert_close!(s.ttft.median_ms, 200.0);
    assert_close!(s.ttft.std_ms, (20_000.0f64 / 3.0).sqrt());
    assert_close!(s.ttft.percentile_ms(90.0).unwrap(), 280.0);
    assert_close!(s.ttft.percentile_ms(99.0).unwrap(), 298.0);

    // TPOT [25, 10].
    assert_eq!(s.tpot.count, 2);
    assert_close!(s.tpot.mean_ms, 17.5);
    assert_close!(s.tpot.std_ms, 7.5);
    assert_close!(s.tpot.percentile_ms(90.0).unwrap(), 23.5);
    assert_close!(s.tpot.percentile_ms(99.0).unwrap(), 24.85);

    // ITL pooled: [10, 10, 10, 10, 20, 30].
    assert_eq!(s.itl.count, 6);
    assert_close!(s.itl.mean_ms, 15.0);
    assert_close!(s.itl.median_ms, 10.0);
    assert_close!(s.itl.std_ms, (350.0f64 / 6.0).sqrt());
    assert_close!(s.itl.percentile_ms(90.0).unwrap(), 25.0);
    assert_close!(s.itl.percentile_ms(99.0).unwrap(), 29.5);

    // E2EL [150, 240, 300].
    assert_close!(s.e2el.mean_ms, 230.0);
    assert_close!(s.e2el.median_ms, 240.0);
    assert_close!(s.e2el.percentile_ms(99.0).unwrap(), 298.8);

    // Lateness over all four: [1, 0, 3, 2] ms.
    assert_close!(s.lateness.mean_ms, 1.5);
    assert_close!(s.lateness.p50_ms, 1.5);
    assert_close!(s.lateness.p99_ms, 2.97);
    assert_close!(s.lateness.max_ms, 3.0);
}

#[test]
fn goodput_counts_requests_meeting_every_slo() {
    let recs = records();
    // r0 fails TPOT (25 > 20), r2 fails TTFT (300 > 250): one good request in 2 s.
    let slo = Slo {
        ttft_ms: Some(250.0),
        tpot_ms: Some(20.0),
        e2el_ms: None,
    };
    let s = Summary::from_records(&recs, &DEFAULT_PERCENTILES, Some(&slo));
    assert_close!(s.request_goodput.unwrap(), 0.5);
    // E2EL ≤ 200: only r0. A one-token request's TPOT counts as 0: r2 meets TPOT ≤ 1.
    let slo = Slo {
        e2el_ms: Some(200.0),
        ..Slo::default()
    };
    let s = Summary::from_records(&recs, &DEFAULT_PERCENTILES, Some(&slo));
    assert_close!(s.request_goodput.unwrap(), 0.5);
    let slo = Slo {
        tpot_ms: Some(1.0),
        ..Slo::default()
    };
    let s = Summary::from_records(&recs, &DEFAULT_PERCENTILES, Some(&slo));
    assert_close!(s.request_goodput.unwrap(), 0.5);
}

#[test]
fn summary_json_uses_vllm_keys() {
    let s = Summary::from_records(&records(), &[50.0, 99.9], None);
    let j = serde_json::to_value(&s).unwrap();
    for key in [
        "completed",
        "failed",
        "duration_s",
        "total_input_tokens",
        "total_output_tokens",
        "request_throughput",
        "request_goodput",
        "output_throughput",
        "total_token_throughput",
        "mean_ttft_ms",
        "median_ttft_ms",
        "std_ttft_ms",
        "p50_ttft_ms",
        "p99.9_ttft_ms",
        "mean_tpot_ms",
        "p99.9_itl_ms",
        "std_e2el_ms",
        "mean_lateness_ms",
        "max_lateness_ms",
    ] {
        assert!(j.get(key).is_some(), "missing {key} in {j}");
    }
    assert_eq!(j["completed"], 3);
    assert_eq!(j["errors"]["reset"], 1);
    assert!(j["request_goodput"].is_null());
}

#[test]
fn empty_summary_is_all_zero() {
    let s = Summary::from_records(&[], &DEFAULT_PERCENTILES, Some(&Slo::default()));
    assert_eq!((s.completed, s.failed), (0, 0));
    assert_eq!(s.duration_s, 0.0);
    assert_eq!(s.ttft.mean_ms, 0.0);
    assert_eq!(s.request_goodput, Some(0.0));
    serde_json::to_string(&s).unwrap();
}

#[test]
fn jsonl_round_trip() {
    let mut recs = records();
    recs[1].requested_input_tokens = Some(20);
    recs[2].error = Some(RequestError::NoToken {
        token_chunks: 1,
        empty_chunks: 2,
        usage_completion_tokens: None,
    });
    let mut buf = Vec::new();
    write_jsonl(&mut buf, &recs).unwrap();
    let text = String::from_utf8(buf.clone()).unwrap();
    assert_eq!(text.lines().count(), recs.len());
    assert!(text.lines().all(|l| l.starts_with('{') && l.ends_with('}')));
    assert!(text.contains("\"kind\":\"reset\""));
    assert_eq!(read_jsonl(buf.as_slice()).unwrap(), recs);

    let path = std::env::temp_dir().join(format!("endpoint-jsonl-{}.jsonl", std::process::id()));
    write_jsonl_file(&path, &recs).unwrap();
    let back = read_jsonl_file(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(back, recs);
}

#[test]
fn jsonl_reports_the_bad_line() {
    let mut buf = Vec::new();
    write_jsonl(&mut buf, &records()[..1]).unwrap();
    buf.extend_from_slice(b"\n{\"id\": 1}\n");
    match read_jsonl(buf.as_slice()) {
        Err(JsonlError::Parse { line, .. }) => assert_eq!(line, 3),
        other => panic!("expected a parse error, got {other:?}"),
    }
}
