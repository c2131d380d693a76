//! Load generation: when each request is sent.
//!
//! Open loop ([`Schedule::Poisson`], [`Schedule::Gamma`], [`Schedule::Trace`]): every send
//! time is computed before the run from the seed, as seconds after the run's epoch. A
//! dispatcher sleeps until each absolute deadline (`sleep_until(epoch + t)`, never a sum of
//! relative sleeps, so lateness does not accumulate) and spawns every request that is due on
//! the client's multi-thread tokio runtime. Tokio's timer has millisecond granularity, so the
//! dispatcher wakes about a millisecond early and sleeps the rest with the OS's high-resolution
//! sleep (on the caller's thread, which no request task runs on); the records keep the scheduled
//! and the actual send time and the metrics report the difference as client lateness. An optional concurrency cap makes
//! a due request wait for a free slot; that wait is lateness too, and counts in its TTFT.
//!
//! Closed loop ([`Schedule::ClosedLoop`]): `concurrency` workers each send their next request as
//! soon as their previous one ends; a request's scheduled time is the moment its worker took
//! it, so its lateness is ~0.
//!
//! Cancellation: when the caller's flag is raised (checked every 20 ms), nothing more is sent;
//! requests in flight may finish during a grace period, after which they stop and are recorded
//! as [`crate::RequestError::Cancelled`]. Requests never sent have no record.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp, Gamma};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant as TokioInstant;

use crate::client::{Abort, Client, Inner, RequestRecord, RequestSpec, execute};

/// The dispatcher's timer is set this long before a send time and the rest is slept with the
/// OS's high-resolution sleep: tokio's timer has millisecond granularity, which would make
/// requests up to ~1 ms late.
const SPIN_AHEAD: Duration = Duration::from_micros(1100);

/// How often the dispatcher looks at the caller's cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// When requests are sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// Poisson arrivals: exponential inter-arrival times with mean `1 / rate_rps`; the first
    /// request is sent at 0.
    Poisson {
        /// Mean arrival rate, requests per second.
        rate_rps: f64,
    },
    /// `vllm bench serve --burstiness`: gamma inter-arrival times with shape `burstiness` and
    /// scale `1 / (rate_rps · burstiness)`, so the mean is `1 / rate_rps` and the variance
    /// `1 / (rate_rps² · burstiness)`; `burstiness = 1` is Poisson, smaller is burstier. The
    /// first request is sent at 0.
    Gamma {
        /// Mean arrival rate, requests per second.
        rate_rps: f64,
        /// Gamma shape: 1 / squared coefficient of variation of the inter-arrival times.
        burstiness: f64,
    },
    /// Given send times, seconds after the run's epoch, non-decreasing; request `i` is sent
    /// at `times_s[i]`.
    Trace {
        /// Send time of each request.
        times_s: Vec<f64>,
    },
    /// `concurrency` requests always in flight: each ending request is followed at once by the
    /// next.
    ClosedLoop {
        /// Requests in flight.
        concurrency: usize,
    },
}

/// Why a run could not start.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoadError {
    /// A schedule parameter is out of range.
    #[error("invalid schedule: {0}")]
    InvalidSchedule(String),
    /// A trace schedule lists fewer send times than there are requests.
    #[error(
        "the trace has {have_times} send times for {requests} requests; give one time per request"
    )]
    TraceTooShort {
        /// Send times in the trace.
        have_times: usize,
        /// Requests to send.
        requests: usize,
    },
    /// Send times were asked of a closed-loop schedule, which has none in advance.
    #[error("a closed-loop schedule has no precomputed send times")]
    ClosedLoop,
}

fn positive(name: &str, v: f64) -> Result<f64, LoadError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(LoadError::InvalidSchedule(format!(
            "{name} must be a positive finite number, got {v}"
        )))
    }
}

impl Schedule {
    /// The send times of `n` requests, seconds after the epoch, drawn from `seed` (the same
    /// seed always gives the same times). Pure computation; nothing is slept.
    pub fn send_times_s(&self, n: usize, seed: u64) -> Result<Vec<f64>, LoadError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let gaps = |dist: &dyn Fn(&mut StdRng) -> f64, rng: &mut StdRng| {
            let mut t = 0.0;
            (0..n)
                .map(|i| {
                    if i > 0 {
                        t += dist(rng);
                    }
                    t
                })
                .collect::<Vec<f64>>()
        };
        match self {
            Schedule::Poisson { rate_rps } => {
                let exp = Exp::new(positive("rate_rps", *rate_rps)?)
                    .map_err(|e| LoadError::InvalidSchedule(e.to_string()))?;
                Ok(gaps(&|r| exp.sample(r), &mut rng))
            }
            Schedule::Gamma {
                rate_rps,
                burstiness,
            } => {
                let rate = positive("rate_rps", *rate_rps)?;
                let shape = positive("burstiness", *burstiness)?;
                let gamma = Gamma::new(shape, 1.0 / (rate * shape))
                    .map_err(|e| LoadError::InvalidSchedule(e.to_string()))?;
                Ok(gaps(&|r| gamma.sample(r), &mut rng))
            }
            Schedule::Trace { times_s } => {
                if times_s.len() < n {
                    return Err(LoadError::TraceTooShort {
                        have_times: times_s.len(),
                        requests: n,
                    });
                }
                let times = &times_s[..n];
                if let Some(bad) = times.iter().find(|t| !(t.is_finite() && **t >= 0.0)) {
                    return Err(LoadError::InvalidSchedule(format!(
                        "trace times must be finite and >= 0, got {bad}"
                    )));
                }
                if times.windows(2).any(|w| w[1] < w[0]) {
                    return Err(LoadError::InvalidSchedule(
                        "trace times must be non-decreasing".into(),
                    ));
                }
                Ok(times.to_vec())
            }
            Schedule::ClosedLoop { .. } => Err(LoadError::ClosedLoop),
        }
    }
}

/// How a run is driven.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadConfig {
    /// When requests are sent.
    pub schedule: Schedule,
    /// Seed of the inter-arrival draws.
    pub seed: u64,
    /// Open loop only: at most this many requests in flight; a due request waits for a slot.
    pub max_concurrency: Option<usize>,
    /// After cancellation, how long requests in flight may still run before they are stopped.
    pub cancel_grace_s: f64,
}

impl LoadConfig {
    /// `schedule` with seed 0, no concurrency cap and a 5 s cancellation grace.
    pub fn new(schedule: Schedule) -> Self {
        LoadConfig {
            schedule,
            seed: 0,
            max_concurrency: None,
            cancel_grace_s: 5.0,
        }
    }
}

/// Sends `requests` (request `i` gets id `i`) on `config`'s schedule and returns the records of
/// every request that was sent, sorted by id. `on_done` is called on the caller's thread as
/// each request ends (for progress). Raising `cancel` stops the run as described in the module
/// documentation. A failing request never aborts the run; it is a record with an error.
///
/// Blocking: runs on the client's runtime; call it from synchronous code.
pub fn run_load(
    client: &Client,
    requests: Vec<RequestSpec>,
    config: &LoadConfig,
    mut on_done: impl FnMut(&RequestRecord),
    cancel: Arc<AtomicBool>,
) -> Result<Vec<RequestRecord>, LoadError> {
    let n = requests.len();
    let times = match &config.schedule {
        Schedule::ClosedLoop { concurrency } if *concurrency == 0 => {
            return Err(LoadError::InvalidSchedule(
                "closed-loop concurrency must be at least 1".into(),
            ));
        }
        Schedule::ClosedLoop { .. } => None,
        s => Some(s.send_times_s(n, config.seed)?),
    };
    if config.max_concurrency == Some(0) {
        return Err(LoadError::InvalidSchedule(
            "max_concurrency must be at least 1".into(),
        ));
    }
    let grace = Duration::try_from_secs_f64(config.cancel_grace_s.max(0.0))
        .unwrap_or(Duration::from_secs(5));
    let inner = client.shared();
    let mut records = client.runtime().block_on(async {
        let epoch = Instant::now();
        let t0 = TokioInstant::from_std(epoch);
        let far = t0 + Duration::from_secs(86_400 * 365);
        let (tx, mut rx) = mpsc::unbounded_channel::<Option<RequestRecord>>();
        let (abort_tx, abort_rx) = watch::channel(false);
        let stop = Arc::new(AtomicBool::new(false));
        let mut records = Vec::with_capacity(n);

        // Open loop: (id, spec, send time) still to dispatch. Closed loop: workers now.
        let mut queue = Vec::new().into_iter().peekable();
        match (&config.schedule, times) {
            (Schedule::ClosedLoop { concurrency }, _) => {
                let shared = Arc::new(Mutex::new(requests.into_iter().enumerate()));
                for _ in 0..(*concurrency).min(n) {
                    let worker = Worker {
                        inner: Arc::clone(&inner),
                        queue: Arc::clone(&shared),
                        stop: Arc::clone(&stop),
                        tx: tx.clone(),
                        abort: abort_rx.clone(),
                        epoch,
                    };
                    tokio::spawn(worker.run());
                }
            }
            (_, times) => {
                let times = times.unwrap_or_default();
                queue = requests
                    .into_iter()
                    .zip(times)
                    .enumerate()
                    .map(|(i, (spec, t))| (i, spec, t))
                    .collect::<Vec<_>>()
                    .into_iter()
                    .peekable();
            }
        }
        let slots = config.max_concurrency.map(|c| Arc::new(Semaphore::new(c)));
        let mut tx = (queue.peek().is_some()).then_some(tx);
        let mut poll = tokio::time::interval(CANCEL_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut grace_until: Option<TokioInstant> = None;
        let mut aborted = false;
        loop {
            let send_at = queue
                .peek()
                .map_or(far, |(_, _, t)| t0 + Duration::from_secs_f64(*t));
            // Sending on time comes first, then collecting results, then cancellation.
            tokio::select! {
                biased;
                () = tokio::time::sleep_until(send_at.checked_sub(SPIN_AHEAD).unwrap_or(send_at)), if tx.is_some() => {
                    // The timer wakes up to a millisecond late: it is set SPIN_AHEAD early and
                    // the last stretch is slept here.
                    // The dispatcher runs in `block_on` on the caller's thread, not on a worker:
                    // a high-resolution OS sleep here delays no request task.
                    let rest = send_at.saturating_duration_since(TokioInstant::now());
                    if !rest.is_zero() {
                        std::thread::sleep(rest);
                    }
                    let now = TokioInstant::now();
                    while let Some((id, spec, t)) =
                        queue.next_if(|(_, _, t)| t0 + Duration::from_secs_f64(*t) <= now)
                    {
                        let Some(sender) = tx.as_ref() else { break };
                        let task = Dispatched {
                            inner: Arc::clone(&inner),
                            id: id as u64,
                            spec,
                            scheduled_send_s: t,
                            slots: slots.clone(),
                            stop: Arc::clone(&stop),
                            tx: sender.clone(),
                            abort: abort_rx.clone(),
                            epoch,
                        };
                        tokio::spawn(task.run());
                    }
                    if queue.peek().is_none() {
                        tx = None;
                    }
                }
                msg = rx.recv() => match msg {
                    Some(Some(rec)) => {
                        on_done(&rec);
                        records.push(rec);
                    }
                    Some(None) => {}
                    None => break,
                },
                _ = poll.tick(), if grace_until.is_none() => {
                    if cancel.load(Ordering::Relaxed) {
                        stop.store(true, Ordering::Relaxed);
                        tx = None;
                        grace_until = Some(TokioInstant::now() + grace);
                    }
                }
                () = tokio::time::sleep_until(grace_until.unwrap_or(far)),
                    if grace_until.is_some() && !aborted =>
                {
                    aborted = true;
                    abort_tx.send_replace(true);
                }
            }
        }
        records
    });
    records.sort_by_key(|r| r.id);
    Ok(records)
}

/// Sends all `specs` at the same instant (request `i` gets id `i`) and waits for all of them;
/// what one point of a batch-size profile does. Records are sorted by id.
pub fn run_batch(client: &Client, specs: Vec<RequestSpec>) -> Vec<RequestRecord> {
    let config = LoadConfig::new(Schedule::Trace {
        times_s: vec![0.0; specs.len()],
    });
    // A trace of zeros is always valid.
    run_load(
        client,
        specs,
        &config,
        |_| {},
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap_or_default()
}

/// One open-loop request, spawned at its send time.
struct Dispatched {
    inner: Arc<Inner>,
    id: u64,
    spec: RequestSpec,
    scheduled_send_s: f64,
    slots: Option<Arc<Semaphore>>,
    stop: Arc<AtomicBool>,
    tx: mpsc::UnboundedSender<Option<RequestRecord>>,
    abort: watch::Receiver<bool>,
    epoch: Instant,
}

impl Dispatched {
    async fn run(self) {
        let mut abort = Abort::on(self.abort);
        let _permit = match &self.slots {
            Some(slots) => Arc::clone(slots).acquire_owned().await.ok(),
            None => None,
        };
        // Cancelled while waiting for a slot: never sent, no record.
        let record = if self.stop.load(Ordering::Relaxed) && self.slots.is_some() {
            None
        } else {
            Some(
                execute(
                    &self.inner,
                    self.id,
                    &self.spec,
                    self.epoch,
                    self.scheduled_send_s,
                    &mut abort,
                )
                .await,
            )
        };
        // The receiver outlives every sender; ignore a closed channel all the same.
        let _ = self.tx.send(record);
    }
}

/// One closed-loop worker.
struct Worker {
    inner: Arc<Inner>,
    queue: Arc<Mutex<std::iter::Enumerate<std::vec::IntoIter<RequestSpec>>>>,
    stop: Arc<AtomicBool>,
    tx: mpsc::UnboundedSender<Option<RequestRecord>>,
    abort: watch::Receiver<bool>,
    epoch: Instant,
}

impl Worker {
    async fn run(self) {
        let mut abort = Abort::on(self.abort.clone());
        while !self.stop.load(Ordering::Relaxed) {
            let next = match self.queue.lock() {
                Ok(mut q) => q.next(),
                Err(poisoned) => poisoned.into_inner().next(),
            };
            let Some((id, spec)) = next else { break };
            let scheduled = self.epoch.elapsed().as_secs_f64();
            let rec = execute(
                &self.inner,
                id as u64,
                &spec,
                self.epoch,
                scheduled,
                &mut abort,
            )
            .await;
            let _ = self.tx.send(Some(rec));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_var(xs: &[f64]) -> (f64, f64) {
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        (mean, var)
    }

    fn gaps(times: &[f64]) -> Vec<f64> {
        times.windows(2).map(|w| w[1] - w[0]).collect()
    }

    #[test]
    fn poisson_mean_within_standard_errors() {
        let rate = 50.0;
        let times = Schedule::Poisson { rate_rps: rate }
            .send_times_s(20_000, 7)
            .unwrap();
        assert_eq!(times.len(), 20_000);
        assert_eq!(times[0], 0.0);
        let g = gaps(&times);
        let (mean, var) = mean_var(&g);
        // Exponential: sd = mean = 1/rate; standard error of the mean = (1/rate)/sqrt(n).
        let se = (1.0 / rate) / (g.len() as f64).sqrt();
        assert!((mean - 1.0 / rate).abs() < 4.0 * se, "mean {mean}");
        // Variance 1/rate² within 6 %: the estimate's relative s.e. is sqrt(8/n) = 2 %.
        assert!((var * rate * rate - 1.0).abs() < 0.06, "var {var}");
        // Same seed, same times; another seed, other times.
        let again = Schedule::Poisson { rate_rps: rate }
            .send_times_s(20_000, 7)
            .unwrap();
        assert_eq!(times, again);
        let other = Schedule::Poisson { rate_rps: rate }
            .send_times_s(20_000, 8)
            .unwrap();
        assert_ne!(times, other);
    }

    #[test]
    fn gamma_burstiness_sets_the_variance() {
        let rate = 20.0;
        for burstiness in [0.5, 1.0, 4.0] {
            let times = Schedule::Gamma {
                rate_rps: rate,
                burstiness,
            }
            .send_times_s(20_001, 3)
            .unwrap();
            let (mean, var) = mean_var(&gaps(&times));
            let want_var = 1.0 / (rate * rate * burstiness);
            // Mean within 4 standard errors sqrt(var / n).
            let se = (want_var / 20_000.0).sqrt();
            assert!(
                (mean - 1.0 / rate).abs() < 4.0 * se,
                "b {burstiness} mean {mean}"
            );
            // Relative s.e. of the sample variance of a gamma: sqrt((2 + 6/b)/n) ≤ 2.6 %.
            assert!(
                (var / want_var - 1.0).abs() < 0.12,
                "b {burstiness}: var {var} want {want_var}"
            );
        }
    }

    #[test]
    fn trace_is_used_as_given_and_validated() {
        let s = Schedule::Trace {
            times_s: vec![0.0, 0.5, 0.5, 2.0],
        };
        assert_eq!(s.send_times_s(3, 99).unwrap(), vec![0.0, 0.5, 0.5]);
        assert!(matches!(
            s.send_times_s(5, 0),
            Err(LoadError::TraceTooShort { .. })
        ));
        let bad = Schedule::Trace {
            times_s: vec![1.0, 0.5],
        };
        assert!(bad.send_times_s(2, 0).is_err());
        assert!(
            Schedule::Poisson { rate_rps: 0.0 }
                .send_times_s(2, 0)
                .is_err()
        );
        assert_eq!(
            Schedule::ClosedLoop { concurrency: 2 }.send_times_s(2, 0),
            Err(LoadError::ClosedLoop)
        );
    }
}
