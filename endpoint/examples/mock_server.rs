//! An OpenAI-compatible mock server on 127.0.0.1 (a free port, printed), for benchmarking load
//! generators against it (docs/benchmarks.md "Load generator"): no latency, `max_tokens`
//! one-token chunks per request, model `tiny-llama`. Runs until killed.
//!
//! `cargo run --release -p endpoint --example mock_server -- [WORKER_THREADS]`

use endpoint::mock::{MockConfig, MockServer};

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let (addr, server) = MockServer::start(MockConfig {
        worker_threads: threads,
        models: vec!["tiny-llama".into()],
        ..MockConfig::default()
    })
    .expect("start the mock server");
    println!("mock server on http://{addr}");
    let _keep = server;
    loop {
        std::thread::park();
    }
}
