//! The client, load generator and metrics against the mock server: faults, closed-form
//! latencies, schedules and cancellation. Tolerances are wide enough for a loaded 2-core
//! machine but too narrow to pass by accident.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use endpoint::mock::{Fault, MockConfig, MockServer};
use endpoint::{
    Api, Client, ClientConfig, ClientError, DEFAULT_PERCENTILES, LoadConfig, Prompt, RequestError,
    RequestRecord, RequestSpec, Schedule, Summary, run_batch, run_load,
};

fn client_for(server: &MockServer, api: Api, stall_s: f64) -> Client {
    let mut config = ClientConfig::new(server.url());
    config.api = api;
    config.stall_timeout_s = stall_s;
    config.request_timeout_s = 20.0;
    config.worker_threads = Some(2);
    Client::new(config).expect("client")
}

fn text(prompt: &str, tokens: u32) -> RequestSpec {
    RequestSpec::fixed_length(Prompt::Text(prompt.into()), tokens)
}

fn no_cancel() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

fn ms(records: &[RequestRecord], f: impl Fn(&RequestRecord) -> Option<f64>) -> Vec<f64> {
    records.iter().filter_map(f).map(|s| s * 1000.0).collect()
}

#[test]
fn server_info_lists_models_and_optional_version() {
    let (_, server) = MockServer::start(MockConfig {
        models: vec!["first".into(), "second".into()],
        ..MockConfig::default()
    })
    .unwrap();
    let client = client_for(&server, Api::Completions, 1.0);
    assert_eq!(client.model(), "first");
    let info = client.server_info().unwrap();
    assert_eq!(info.models, vec!["first", "second"]);
    assert_eq!(info.default_model(), Some("first"));
    assert_eq!(info.version.as_deref(), Some("mock-0.1"));
    serde_json::to_string(&info).unwrap();

    let (_, bare) = MockServer::start(MockConfig {
        version: None,
        ..MockConfig::default()
    })
    .unwrap();
    let info = client_for(&bare, Api::Completions, 1.0)
        .server_info()
        .unwrap();
    assert_eq!(info.version, None);

    let (_, empty) = MockServer::start(MockConfig {
        models: vec![],
        ..MockConfig::default()
    })
    .unwrap();
    let err = Client::new(ClientConfig::new(format!("{}/v1/", empty.url()))).unwrap_err();
    assert!(matches!(err, ClientError::NoModel { .. }), "{err}");
}

/// Every fault in one run, with healthy requests between them, for both APIs.
#[test]
fn each_fault_becomes_its_error_and_the_rest_succeed() {
    let (_, server) = MockServer::start(MockConfig {
        tpot_s: 0.001,
        stall_s: 30.0,
        ..MockConfig::default()
    })
    .unwrap();
    let faults = [
        Fault::Reset { after_tokens: 3 },
        Fault::Http500,
        Fault::RateLimited,
        Fault::Stall { after_tokens: 2 },
        Fault::MalformedSse { after_tokens: 2 },
        Fault::EmptyChunk { at_token: 2 },
        Fault::WrongUsage { extra_tokens: 1 },
    ];
    for api in [Api::Completions, Api::Chat] {
        let client = client_for(&server, api, 0.4);
        let mut specs = Vec::new();
        for f in &faults {
            specs.push(text("hello there", 6));
            specs.push(text(&format!("hello {}", f.marker()), 6));
        }
        specs.push(text("hello there", 6));
        let n = specs.len();
        let mut done = 0;
        let config = LoadConfig::new(Schedule::ClosedLoop { concurrency: 4 });
        let records = run_load(&client, specs, &config, |_| done += 1, no_cancel()).unwrap();
        assert_eq!(records.len(), n);
        assert_eq!(done, n);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.id, i as u64);
            if i % 2 == 0 {
                assert!(r.is_ok(), "{api:?} healthy request {i}: {:?}", r.error);
                assert_eq!(r.token_chunks, 6);
                assert_eq!(r.usage_completion_tokens, Some(6));
                assert_eq!(r.usage_prompt_tokens, Some(2));
                assert_eq!(r.empty_chunks, 0);
                continue;
            }
            let fault = faults[i / 2];
            let err = r
                .error
                .clone()
                .unwrap_or_else(|| panic!("{api:?}: request {i} with {fault:?} succeeded: {r:?}"));
            let ok = match (fault, &err) {
                (Fault::Reset { .. }, RequestError::Reset { after_chunks, .. }) => {
                    *after_chunks == 3
                }
                (
                    Fault::Http500,
                    RequestError::Http {
                        status,
                        body_excerpt,
                    },
                ) => *status == 500 && body_excerpt.contains("mock internal error"),
                (Fault::RateLimited, RequestError::RateLimited { body_excerpt }) => {
                    body_excerpt.contains("rate limit")
                }
                (
                    Fault::Stall { .. },
                    RequestError::Stalled {
                        after_chunks,
                        stall_s,
                    },
                ) => *after_chunks == 2 && (*stall_s - 0.4).abs() < 1e-9,
                (
                    Fault::MalformedSse { .. },
                    RequestError::MalformedSse {
                        after_chunks,
                        line_excerpt,
                    },
                ) => *after_chunks == 2 && line_excerpt.contains("oops"),
                (
                    Fault::EmptyChunk { .. },
                    RequestError::NoToken {
                        token_chunks,
                        empty_chunks,
                        usage_completion_tokens,
                    },
                ) => {
                    *token_chunks == 5 && *empty_chunks == 1 && *usage_completion_tokens == Some(6)
                }
                (
                    Fault::WrongUsage { .. },
                    RequestError::UsageMismatch {
                        requested_tokens,
                        usage_completion_tokens,
                    },
                ) => *requested_tokens == 6 && *usage_completion_tokens == 7,
                _ => false,
            };
            assert!(ok, "{api:?}: {fault:?} gave {err:?}");
            let line = err.to_string();
            assert!(!line.contains('\n'));
        }
        let s = Summary::from_records(&records, &DEFAULT_PERCENTILES, None);
        assert_eq!((s.completed, s.failed), (faults.len() + 1, faults.len()));
    }
}

#[test]
fn faults_by_arrival_index() {
    let (_, server) = MockServer::start(MockConfig {
        faults_by_arrival: BTreeMap::from([(1, Fault::Http500)]),
        ..MockConfig::default()
    })
    .unwrap();
    let client = client_for(&server, Api::Completions, 1.0);
    let records: Vec<_> = (0..3)
        .map(|_| {
            client.send(&RequestSpec::fixed_length(
                Prompt::TokenIds(vec![1, 2, 3]),
                4,
            ))
        })
        .collect();
    assert!(records[0].is_ok() && records[2].is_ok());
    assert!(matches!(
        records[1].error,
        Some(RequestError::Http { status: 500, .. })
    ));
    assert_eq!(records[0].usage_prompt_tokens, Some(3));
    assert_eq!(records[0].requested_input_tokens, Some(3));
    assert_eq!(server.requests_received(), 3);
}

#[test]
fn server_ignoring_length_controls_is_a_usage_mismatch() {
    let start = |honour| {
        MockServer::start(MockConfig {
            eos_after_tokens: Some(5),
            honour_length_controls: honour,
            ..MockConfig::default()
        })
        .unwrap()
        .1
    };
    let forced = text("a b c", 20);
    let loose = RequestSpec {
        min_tokens: None,
        ignore_eos: false,
        ..forced.clone()
    };
    let ignoring = start(false);
    let client = client_for(&ignoring, Api::Completions, 1.0);
    let r = client.send(&forced);
    assert_eq!(
        r.error,
        Some(RequestError::UsageMismatch {
            requested_tokens: 20,
            usage_completion_tokens: 5
        })
    );
    assert!(r.error.unwrap().to_string().contains("ignores min_tokens"));
    // Without forcing, an early stop is a normal answer.
    let r = client.send(&loose);
    assert!(r.is_ok(), "{:?}", r.error);
    assert_eq!(r.output_tokens(), 5);

    let honouring = start(true);
    let r = client_for(&honouring, Api::Completions, 1.0).send(&forced);
    assert!(r.is_ok(), "{:?}", r.error);
    assert_eq!(r.output_tokens(), 20);
}

#[test]
fn connect_failure_and_timeout_and_chat_token_ids() {
    // A port with nothing listening.
    let port = {
        let l = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        l.local_addr().unwrap().port()
    };
    let mut config = ClientConfig::new(format!("http://127.0.0.1:{port}"));
    config.model = Some("m".into());
    config.worker_threads = Some(1);
    let client = Client::new(config).unwrap();
    let r = client.send(&text("x", 2));
    assert!(
        matches!(r.error, Some(RequestError::Connect { .. })),
        "{:?}",
        r.error
    );
    let records = run_batch(&client, vec![text("x", 2); 3]);
    assert_eq!(records.len(), 3);
    assert!(
        records
            .iter()
            .all(|r| r.error.as_ref().map(RequestError::kind) == Some("connect"))
    );

    let (_, server) = MockServer::start(MockConfig {
        tpot_s: 0.05,
        ..MockConfig::default()
    })
    .unwrap();
    let mut config = ClientConfig::new(server.url());
    config.request_timeout_s = 0.3;
    config.stall_timeout_s = 1.0;
    config.worker_threads = Some(1);
    let client = Client::new(config).unwrap();
    let started = Instant::now();
    let r = client.send(&text("x", 40));
    assert!(started.elapsed() < Duration::from_secs(2));
    match r.error {
        Some(RequestError::Timeout {
            timeout_s,
            after_chunks,
        }) => {
            assert!((timeout_s - 0.3).abs() < 1e-9);
            assert!((3..=8).contains(&after_chunks), "{after_chunks}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }

    let chat = client_for(&server, Api::Chat, 1.0);
    let r = chat.send(&RequestSpec::fixed_length(Prompt::TokenIds(vec![1]), 2));
    assert_eq!(
        r.error.as_ref().map(RequestError::kind),
        Some("invalid_request")
    );
}

/// Mock at TTFT 50 ms, TPOT 10 ms, 20 tokens, two requests in flight: the measured latencies
/// must be the closed forms TTFT = 50, TPOT = ITL = 10, E2EL = 50 + 19·10 = 240 ms.
#[test]
fn latencies_match_the_mock_closed_form() {
    let (_, server) = MockServer::start(MockConfig {
        ttft_s: 0.050,
        tpot_s: 0.010,
        ..MockConfig::default()
    })
    .unwrap();
    for api in [Api::Completions, Api::Chat] {
        let client = client_for(&server, api, 2.0);
        let specs = vec![text("one two three", 20); 8];
        let config = LoadConfig::new(Schedule::ClosedLoop { concurrency: 2 });
        let records = run_load(&client, specs, &config, |_| {}, no_cancel()).unwrap();
        let s = Summary::from_records(&records, &DEFAULT_PERCENTILES, None);
        assert_eq!((s.completed, s.failed), (8, 0), "{:?}", s.errors);
        assert_eq!(s.total_output_tokens, 160);
        assert_eq!(s.total_input_tokens, 24);
        assert_eq!(s.itl.count, 8 * 19);
        assert_eq!(s.tpot.count, 8);
        // Never below the mock's own delays; a few ms above at most on a busy machine.
        let ttft = ms(&records, RequestRecord::ttft_s);
        assert!(ttft.iter().all(|&t| t >= 49.9), "{ttft:?}");
        assert!(
            (50.0..56.0).contains(&s.ttft.median_ms),
            "ttft {:?}",
            s.ttft
        );
        assert!((9.5..10.8).contains(&s.tpot.median_ms), "tpot {:?}", s.tpot);
        assert!((8.5..11.5).contains(&s.itl.median_ms), "itl {:?}", s.itl);
        assert!(
            (239.0..250.0).contains(&s.e2el.median_ms),
            "e2el {:?}",
            s.e2el
        );
        // Closed loop: each request is scheduled when its worker takes it.
        assert!(s.lateness.max_ms < 5.0, "{:?}", s.lateness);
        // Four rounds of ~240 ms.
        assert!((0.9..1.6).contains(&s.duration_s), "{}", s.duration_s);
    }
}

/// Prefill delay per prompt token, and a batch sent at one instant.
#[test]
fn batch_with_prefill_delay() {
    let (_, server) = MockServer::start(MockConfig {
        ttft_s: 0.050,
        prefill_per_token_s: 0.002,
        tpot_s: 0.005,
        ..MockConfig::default()
    })
    .unwrap();
    let client = client_for(&server, Api::Completions, 2.0);
    let specs = vec![RequestSpec::fixed_length(Prompt::TokenIds(vec![7; 25]), 3); 6];
    let records = run_batch(&client, specs);
    assert_eq!(records.len(), 6);
    for r in &records {
        assert!(r.is_ok(), "{:?}", r.error);
        assert_eq!(r.scheduled_send_s, 0.0);
        // 50 + 2·25 = 100 ms, plus six simultaneous connection set-ups (without the prefill
        // term it would be 50).
        let ttft = r.ttft_s().unwrap() * 1000.0;
        assert!((100.0..125.0).contains(&ttft), "{ttft}");
    }
}

#[test]
fn open_loop_sends_on_schedule() {
    let (_, server) = MockServer::start(MockConfig {
        ttft_s: 0.001,
        ..MockConfig::default()
    })
    .unwrap();
    let client = client_for(&server, Api::Completions, 2.0);
    let times = vec![0.0, 0.05, 0.10, 0.10, 0.25];
    let config = LoadConfig::new(Schedule::Trace {
        times_s: times.clone(),
    });
    let records = run_load(&client, vec![text("x", 2); 5], &config, |_| {}, no_cancel()).unwrap();
    let scheduled: Vec<f64> = records.iter().map(|r| r.scheduled_send_s).collect();
    assert_eq!(scheduled, times);
    for r in &records {
        assert!(r.is_ok());
        let late = r.lateness_s() * 1000.0;
        assert!((0.0..30.0).contains(&late), "lateness {late} ms");
    }

    // Poisson, 300 requests at 1,000/s: all sent, in order, about 0.3 s.
    let config = LoadConfig {
        seed: 11,
        ..LoadConfig::new(Schedule::Poisson { rate_rps: 1000.0 })
    };
    let want = config.schedule.send_times_s(300, 11).unwrap();
    let records = run_load(
        &client,
        vec![text("x", 2); 300],
        &config,
        |_| {},
        no_cancel(),
    )
    .unwrap();
    assert_eq!(records.len(), 300);
    assert!(records.iter().all(RequestRecord::is_ok));
    let got: Vec<f64> = records.iter().map(|r| r.scheduled_send_s).collect();
    assert_eq!(got, want);
    let s = Summary::from_records(&records, &DEFAULT_PERCENTILES, None);
    assert!(s.lateness.p50_ms < 20.0, "{:?}", s.lateness);
}

/// With a cap of 2 in flight, six requests due at 0 leave in three waves of ~100 ms, and the
/// wait counts as lateness (and TTFT).
#[test]
fn concurrency_cap_delays_sends() {
    let (_, server) = MockServer::start(MockConfig {
        ttft_s: 0.100,
        ..MockConfig::default()
    })
    .unwrap();
    let client = client_for(&server, Api::Completions, 2.0);
    let config = LoadConfig {
        max_concurrency: Some(2),
        ..LoadConfig::new(Schedule::Trace {
            times_s: vec![0.0; 6],
        })
    };
    let records = run_load(&client, vec![text("x", 1); 6], &config, |_| {}, no_cancel()).unwrap();
    let mut late: Vec<f64> = records.iter().map(|r| r.lateness_s() * 1000.0).collect();
    late.sort_by(f64::total_cmp);
    assert!(
        late[1] < 30.0 && late[2] > 95.0 && late[3] < 140.0 && late[4] > 195.0,
        "{late:?}"
    );
    let mut ttft = ms(&records, RequestRecord::ttft_s);
    ttft.sort_by(f64::total_cmp);
    assert!(ttft[5] > 295.0, "{ttft:?}");
}

#[test]
fn cancel_stops_sending_and_keeps_finished_records() {
    let (_, server) = MockServer::start(MockConfig::default()).unwrap();
    let client = client_for(&server, Api::Completions, 2.0);
    let cancel = no_cancel();
    let flag = Arc::clone(&cancel);
    let mut seen = 0;
    let config = LoadConfig::new(Schedule::Poisson { rate_rps: 50.0 });
    let started = Instant::now();
    // 1,000 requests would take ~20 s; cancel after the fifth.
    let records = run_load(
        &client,
        vec![text("x", 2); 1000],
        &config,
        |_| {
            seen += 1;
            if seen == 5 {
                flag.store(true, Ordering::Relaxed);
            }
        },
        cancel,
    )
    .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!((5..20).contains(&records.len()), "{}", records.len());
    assert!(records.iter().all(RequestRecord::is_ok));
    assert_eq!(seen, records.len());
}

#[test]
fn cancel_aborts_in_flight_requests_after_the_grace() {
    // Each request streams for ~10 s.
    let (_, server) = MockServer::start(MockConfig {
        tpot_s: 0.2,
        ..MockConfig::default()
    })
    .unwrap();
    let client = client_for(&server, Api::Completions, 2.0);
    let cancel = no_cancel();
    let flag = Arc::clone(&cancel);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        flag.store(true, Ordering::Relaxed);
    });
    let config = LoadConfig {
        cancel_grace_s: 0.2,
        ..LoadConfig::new(Schedule::ClosedLoop { concurrency: 3 })
    };
    let started = Instant::now();
    let records = run_load(&client, vec![text("x", 50); 10], &config, |_| {}, cancel).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(records.len(), 3);
    for r in &records {
        match r.error {
            Some(RequestError::Cancelled { after_chunks }) => {
                assert!((1..=4).contains(&after_chunks), "{after_chunks}")
            }
            ref other => panic!("expected cancelled, got {other:?}"),
        }
    }
}
