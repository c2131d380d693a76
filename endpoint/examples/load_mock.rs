//! Benchmark of the load generator: drives the in-process mock server with Poisson arrivals and
//! prints how late requests left (actual − scheduled send time) and the CPU time the whole
//! process (client and mock) used.
//!
//! ```text
//! cargo run --release -p endpoint --example load_mock -- [rate_rps=5000] [seconds=5] [tokens=4]
//! ```

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use endpoint::mock::{MockConfig, MockServer};
use endpoint::{
    Client, ClientConfig, DEFAULT_PERCENTILES, LoadConfig, Prompt, RequestSpec, Schedule, Summary,
    run_load,
};

/// User and system CPU seconds of this process so far.
fn cpu_time_s() -> (f64, f64) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer it is given, which is valid for it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return (f64::NAN, f64::NAN);
    }
    // SAFETY: getrusage succeeded, so the struct is initialised (and it was zeroed before).
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    (secs(usage.ru_utime), secs(usage.ru_stime))
}

fn arg(i: usize, default: f64) -> f64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rate_rps = arg(1, 5000.0);
    let seconds = arg(2, 5.0);
    let tokens = arg(3, 4.0) as u32;
    let n = (rate_rps * seconds).round() as usize;

    let (_, server) = MockServer::start(MockConfig {
        ttft_s: 0.001,
        tpot_s: 0.0005,
        ..MockConfig::default()
    })
    .expect("mock server");
    let mut config = ClientConfig::new(server.url());
    config.stall_timeout_s = 5.0;
    config.request_timeout_s = 30.0;
    let client = Client::new(config).expect("client");

    let specs = vec![RequestSpec::fixed_length(Prompt::Text("hello".into()), tokens); n];
    let load = LoadConfig {
        seed: 1,
        ..LoadConfig::new(Schedule::Poisson { rate_rps })
    };
    let (user0, sys0) = cpu_time_s();
    let wall = Instant::now();
    let records = run_load(
        &client,
        specs,
        &load,
        |_| {},
        Arc::new(AtomicBool::new(false)),
    )
    .expect("valid schedule");
    let wall_s = wall.elapsed().as_secs_f64();
    let (user1, sys1) = cpu_time_s();
    let s = Summary::from_records(&records, &DEFAULT_PERCENTILES, None);

    let cpu_s = (user1 - user0) + (sys1 - sys0);
    println!("requests      {n} at {rate_rps} req/s Poisson, {tokens} tokens each");
    println!(
        "completed     {} ok, {} failed {:?}",
        s.completed, s.failed, s.errors
    );
    println!(
        "wall          {wall_s:.2} s ({:.0} req/s achieved)",
        s.request_throughput
    );
    println!(
        "lateness      p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, mean {:.3} ms",
        s.lateness.p50_ms, s.lateness.p99_ms, s.lateness.max_ms, s.lateness.mean_ms
    );
    println!(
        "ttft          p50 {:.3} ms, p99 {:.3} ms",
        s.ttft.median_ms,
        s.ttft.percentile_ms(99.0).unwrap_or(f64::NAN)
    );
    println!(
        "cpu           {cpu_s:.2} s ({:.2} user + {:.2} sys) = {:.0} µs per request, {:.2} cores",
        user1 - user0,
        sys1 - sys0,
        cpu_s / n.max(1) as f64 * 1e6,
        cpu_s / wall_s
    );
    server.shutdown();
}
