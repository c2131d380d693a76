//! The simulation loops (docs/models.md §11, "Semantics").
//!
//! * mg1: Lindley's recursion `W_i = max(0, D_{i−1} − t_i)`, `D_i = t_i + W_i + S_i` with
//!   `S_i = a·n_i + c`; with patience τ a request is served iff `W_i ≤ τ` (the workload it finds,
//!   docs/models.md §2.1), otherwise it is lost and adds no work.
//! * dynamic / elastic: when the server is free and requests wait, take the `m = min(queue, K)`
//!   oldest; an idle server starts a batch of one at the next arrival. fixed: start when K wait,
//!   take exactly K. Padded batch time `T = t1(m) + t2(m)·max n`; elastic: with
//!   `n_(1) ≤ … ≤ n_(m)`, the j-th finishes `t1(m) + Σ_{k≤j} t2(m−k+1)·(n_(k) − n_(k−1))` after
//!   the start, and the next batch starts when the last one is done (paper eq 26).
//!
//! Every arrival ends up served, lost, or still waiting at the end (fixed batching leaves fewer
//! than K behind); the loops are generic over the workload and the record sink, so nothing is
//! dispatched dynamically per request and nothing is allocated per request.

use std::collections::VecDeque;
use std::io::Write;

use rand_distr::{Distribution, Exp1};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::scenario::{Abandonment, BatchTime, Patience, Targets};
use crate::stats::{SECTIONS, Unit};
use crate::tokens::{AnySampler, TokenSampler};

/// Requests between two progress callbacks.
pub(crate) const PROGRESS_CHUNK: u64 = 1 << 16;
/// Waiting requests beyond which a run is stopped as unstable (64 MiB of queue).
pub const MAX_QUEUE: usize = 1 << 22;

/// A source of (arrival time s, clipped token count).
pub(crate) trait Workload {
    fn next(&mut self, rng: &mut Xoshiro256PlusPlus) -> (f64, f64);
}

/// Poisson arrivals with iid tokens.
pub(crate) struct PoissonWorkload<S> {
    pub t: f64,
    pub mean_gap: f64,
    pub tokens: S,
}

impl<S: TokenSampler> Workload for PoissonWorkload<S> {
    #[inline(always)]
    fn next(&mut self, rng: &mut Xoshiro256PlusPlus) -> (f64, f64) {
        let e: f64 = Exp1.sample(rng);
        self.t += e * self.mean_gap;
        (self.t, self.tokens.draw(rng))
    }
}

/// Token counts of a replayed trace: its own (clipped) or fresh draws.
pub(crate) enum TraceTokens {
    Own(std::sync::Arc<[f64]>),
    Law(AnySampler),
}

/// Replays arrival offsets (already rescaled, starting at 0), looping with `period`.
pub(crate) struct TraceWorkload {
    pub arrivals: std::sync::Arc<[f64]>,
    pub tokens: TraceTokens,
    pub period: f64,
    pub idx: usize,
    pub lap: f64,
}

impl Workload for TraceWorkload {
    #[inline]
    fn next(&mut self, rng: &mut Xoshiro256PlusPlus) -> (f64, f64) {
        if self.idx == self.arrivals.len() {
            self.idx = 0;
            self.lap += self.period;
        }
        let i = self.idx;
        self.idx += 1;
        let n = match &self.tokens {
            TraceTokens::Own(v) => v[i],
            TraceTokens::Law(s) => s.draw(rng),
        };
        (self.lap + self.arrivals[i], n)
    }
}

/// One per-request record (CSV row).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub index: u64,
    pub arrival: f64,
    pub tokens: f64,
    pub start: f64,
    pub finish: f64,
    pub batch_size: u32,
    pub lost: bool,
}

/// Where per-request records go.
pub(crate) trait Sink {
    const ON: bool;
    fn write(&mut self, r: Record);
}

/// No records (the default; compiled out).
pub(crate) struct NoSink;
impl Sink for NoSink {
    const ON: bool = false;
    #[inline(always)]
    fn write(&mut self, _r: Record) {}
}

/// CSV header of the records file.
pub const RECORDS_HEADER: &str =
    "index,arrival_s,tokens,start_s,finish_s,wait_s,latency_s,batch_size,lost";

/// Buffered CSV writer; the first IO error is kept and reported at the end.
pub(crate) struct CsvSink<W: Write> {
    pub out: W,
    pub err: Option<std::io::Error>,
}
impl<W: Write> Sink for CsvSink<W> {
    const ON: bool = true;
    fn write(&mut self, r: Record) {
        if self.err.is_some() {
            return;
        }
        let res = if r.lost {
            writeln!(
                self.out,
                "{},{},{},,{},{},,0,1",
                r.index,
                r.arrival,
                r.tokens,
                r.finish,
                r.finish - r.arrival
            )
        } else {
            writeln!(
                self.out,
                "{},{},{},{},{},{},{},{},0",
                r.index,
                r.arrival,
                r.tokens,
                r.start,
                r.finish,
                r.start - r.arrival,
                r.finish - r.arrival,
                r.batch_size
            )
        };
        if let Err(e) = res {
            self.err = Some(e);
        }
    }
}

/// Accumulates statistics: unit 0 swallows the warm-up, units 1..=SECTIONS are the sections.
pub(crate) struct Recorder {
    pub units: Vec<Unit>,
    cur: usize,
    next_boundary: u64,
    sec_len: u64,
    starts: [f64; SECTIONS + 1],
    lost_wait: f64,
    /// Attainment targets (wait, latency), s; infinite when none were asked.
    targets: (f64, f64),
}

impl Recorder {
    pub fn new(
        requests: u64,
        warmup: u64,
        patience: Option<Patience>,
        targets: Option<Targets>,
    ) -> Self {
        let sec_len = (requests - warmup) / SECTIONS as u64;
        let lost_wait = match patience {
            Some(Patience {
                patience_s,
                mode: Abandonment::Renege,
            }) => patience_s,
            _ => 0.0,
        };
        Self {
            units: (0..=SECTIONS).map(|_| Unit::default()).collect(),
            cur: 0,
            next_boundary: warmup,
            sec_len,
            starts: [f64::NAN; SECTIONS + 1],
            lost_wait,
            targets: targets.map_or((f64::INFINITY, f64::INFINITY), |t| (t.wait_s, t.latency_s)),
        }
    }

    #[inline(always)]
    fn enter(&mut self, idx: u64, t: f64) -> usize {
        if idx >= self.next_boundary {
            self.advance(t);
        }
        self.cur
    }

    #[cold]
    fn advance(&mut self, t: f64) {
        self.cur += 1;
        self.starts[self.cur] = t;
        self.next_boundary = if self.cur == SECTIONS {
            u64::MAX
        } else {
            self.next_boundary + self.sec_len
        };
    }

    /// A served request of a batch (batch time counted by [`Recorder::batch`]).
    #[inline(always)]
    pub fn served(&mut self, idx: u64, t: f64, wait: f64, latency: f64) {
        let c = self.enter(idx, t);
        let u = &mut self.units[c];
        u.arrivals += 1;
        u.served += 1;
        u.sum_wait += wait;
        u.sum_latency += latency;
        u.sum_wait_all += wait;
        u.wait_hist.add(wait);
        u.latency_hist.add(latency);
        u.met += u64::from(wait <= self.targets.0 && latency <= self.targets.1);
    }

    /// A request served alone (single-server policies).
    #[inline(always)]
    pub fn single(&mut self, idx: u64, t: f64, wait: f64, service: f64) {
        let c = self.enter(idx, t);
        let u = &mut self.units[c];
        u.busy += service;
        u.batches += 1;
        u.batch_requests += 1;
        self.served(idx, t, wait, wait + service);
    }

    /// A batch of `m` whose first request is `idx` (arrival `t`), busy for `busy` s.
    #[inline(always)]
    pub fn batch(&mut self, idx: u64, t: f64, m: usize, busy: f64) {
        let c = self.enter(idx, t);
        let u = &mut self.units[c];
        u.batches += 1;
        u.batch_requests += m as u64;
        u.busy += busy;
    }

    /// A request lost to impatience.
    #[inline(always)]
    pub fn lost(&mut self, idx: u64, t: f64) {
        let c = self.enter(idx, t);
        let u = &mut self.units[c];
        u.arrivals += 1;
        u.lost += 1;
        u.sum_wait_all += self.lost_wait;
    }

    /// Close the sections: spans from section starts to the last arrival.
    pub fn finish(mut self, last_arrival: f64) -> Vec<Unit> {
        for s in 1..=SECTIONS {
            let end = if s < SECTIONS && self.starts[s + 1].is_finite() {
                self.starts[s + 1]
            } else {
                last_arrival
            };
            if self.starts[s].is_finite() {
                self.units[s].span = (end - self.starts[s]).max(0.0);
            }
        }
        self.units.remove(0);
        self.units
    }
}

/// How a run ended.
#[derive(Debug, Clone, Default)]
pub(crate) struct End {
    pub arrivals: u64,
    pub served: u64,
    pub lost: u64,
    pub waiting_at_end: u64,
    pub max_queue: usize,
    pub last_arrival: f64,
    pub aborted: Option<String>,
}

/// Progress reporting in chunks.
pub(crate) struct Ticker<'a> {
    pub f: Option<&'a (dyn Fn(u64) + Send + Sync)>,
    pub done: u64,
    pub reported: u64,
}
impl Ticker<'_> {
    #[inline(always)]
    fn tick(&mut self, done: u64) {
        if done >= self.reported + PROGRESS_CHUNK {
            self.flush(done);
        }
    }
    #[cold]
    fn flush(&mut self, done: u64) {
        if let Some(f) = self.f {
            f(done - self.reported);
        }
        self.reported = done;
        self.done = done;
    }
}

/// mg1 with an optional patience (a const generic so the patient loop carries no test).
#[allow(clippy::too_many_arguments)]
pub(crate) fn mg1<W: Workload, K: Sink, const IMPATIENT: bool>(
    w: &mut W,
    rng: &mut Xoshiro256PlusPlus,
    n: u64,
    a: f64,
    c: f64,
    patience: f64,
    rec: &mut Recorder,
    sink: &mut K,
    ticker: &mut Ticker,
) -> End {
    let mut depart = 0.0f64;
    let mut lost = 0u64;
    let mut last = 0.0;
    let mut i = 0u64;
    while i < n {
        let end = (i + PROGRESS_CHUNK).min(n);
        for idx in i..end {
            let (t, tok) = w.next(rng);
            let s = a * tok + c;
            let wait = (depart - t).max(0.0);
            if IMPATIENT && wait > patience {
                lost += 1;
                rec.lost(idx, t);
                if K::ON {
                    let finish = t + rec.lost_wait;
                    sink.write(Record {
                        index: idx,
                        arrival: t,
                        tokens: tok,
                        start: f64::NAN,
                        finish,
                        batch_size: 0,
                        lost: true,
                    });
                }
                last = t;
                continue;
            }
            let start = t + wait;
            depart = start + s;
            rec.single(idx, t, wait, s);
            if K::ON {
                sink.write(Record {
                    index: idx,
                    arrival: t,
                    tokens: tok,
                    start,
                    finish: depart,
                    batch_size: 1,
                    lost: false,
                });
            }
            last = t;
        }
        i = end;
        ticker.tick(i);
    }
    End {
        arrivals: n,
        served: n - lost,
        lost,
        waiting_at_end: 0,
        max_queue: 0,
        last_arrival: last,
        aborted: None,
    }
}

/// Dynamic, fixed and elastic batching.
#[allow(clippy::too_many_arguments)]
pub(crate) fn batching<W: Workload, K: Sink, const ELASTIC: bool>(
    w: &mut W,
    rng: &mut Xoshiro256PlusPlus,
    n: u64,
    bt: BatchTime,
    cap: usize,
    fixed: bool,
    rec: &mut Recorder,
    sink: &mut K,
    ticker: &mut Ticker,
) -> End {
    let mut q: VecDeque<(f64, f64)> = VecDeque::with_capacity(1024);
    let mut head: u64 = 0; // index of q.front()
    let mut generated: u64 = 0;
    let mut look: Option<(f64, f64)> = None;
    let mut free = 0.0f64;
    let mut max_queue = 0usize;
    let mut last = 0.0f64;
    // Elastic scratch (reused, never shrunk).
    let mut order: Vec<(f64, u32)> = Vec::new();
    let mut completion: Vec<f64> = Vec::new();
    let need = if fixed { cap } else { 1 };
    let mut aborted = None;

    macro_rules! fill_look {
        () => {
            if look.is_none() && generated < n {
                let a = w.next(rng);
                last = a.0;
                look = Some(a);
                generated += 1;
            }
        };
    }

    loop {
        while q.len() < need {
            fill_look!();
            match look.take() {
                Some(a) => q.push_back(a),
                None => break,
            }
        }
        if q.len() < need {
            break;
        }
        let start = free.max(q[need - 1].0);
        loop {
            fill_look!();
            match look {
                Some((t, _)) if t <= start => {
                    q.push_back(look.take().expect("just matched"));
                }
                _ => break,
            }
        }
        max_queue = max_queue.max(q.len());
        if q.len() > MAX_QUEUE {
            aborted = Some(format!(
                "more than {MAX_QUEUE} requests waiting at t = {start:.1} s after {generated} arrivals: the queue grows without bound"
            ));
            break;
        }
        let m = q.len().min(cap);
        let mf = m as f64;
        let t1 = bt.t1(mf);
        let first_t = q[0].0;
        if ELASTIC {
            order.clear();
            order.extend(
                q.iter()
                    .take(m)
                    .enumerate()
                    .map(|(j, &(_, tok))| (tok, j as u32)),
            );
            order.sort_unstable_by(|x, y| x.0.total_cmp(&y.0));
            completion.resize(m, 0.0);
            let mut acc = t1;
            let mut prev = 0.0;
            for (k, &(tok, j)) in order.iter().enumerate() {
                acc += bt.t2((m - k) as f64) * (tok - prev);
                prev = tok;
                completion[j as usize] = acc;
            }
            rec.batch(head, first_t, m, acc);
            for &c in completion.iter().take(m) {
                let (t, tok) = q.pop_front().expect("m <= len");
                let wait = start - t;
                rec.served(head, t, wait, wait + c);
                if K::ON {
                    sink.write(Record {
                        index: head,
                        arrival: t,
                        tokens: tok,
                        start,
                        finish: start + c,
                        batch_size: m as u32,
                        lost: false,
                    });
                }
                head += 1;
            }
            free = start + acc;
        } else {
            let maxn = q.iter().take(m).fold(0.0f64, |a, &(_, tok)| a.max(tok));
            let tb = t1 + bt.t2(mf) * maxn;
            rec.batch(head, first_t, m, tb);
            for _ in 0..m {
                let (t, tok) = q.pop_front().expect("m <= len");
                let wait = start - t;
                rec.served(head, t, wait, wait + tb);
                if K::ON {
                    sink.write(Record {
                        index: head,
                        arrival: t,
                        tokens: tok,
                        start,
                        finish: start + tb,
                        batch_size: m as u32,
                        lost: false,
                    });
                }
                head += 1;
            }
            free = start + tb;
        }
        ticker.tick(head);
    }
    let waiting = q.len() as u64 + u64::from(look.is_some());
    End {
        arrivals: generated,
        served: head,
        lost: 0,
        waiting_at_end: waiting,
        max_queue,
        last_arrival: last,
        aborted,
    }
}

/// Deterministic per-replication seed (SplitMix64 finaliser of the master seed and the index).
pub(crate) fn replication_seed(seed: u64, rep: u32) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    mix(seed ^ mix(u64::from(rep).wrapping_add(0xD1B5_4A32_D192_ED03)))
}
