//! The engine loop of vLLM's V1 scheduler (docs/serving.md "One iteration").
//!
//! Each iteration:
//! 1. Running requests first, in admission order: each gets `min(remaining, budget left)`
//!    tokens (1 in decode, the rest of its prompt — or of its recomputed sequence — chunked to
//!    the budget in prefill). If its new KV blocks do not fit, the most recently admitted running
//!    request is preempted (blocks freed, computed tokens reset to 0, put at the front of the
//!    waiting queue), repeatedly, until the blocks fit or the request itself was the victim.
//! 2. Only if nothing was preempted: waiting requests are admitted FCFS while budget remains and
//!    fewer than `max_num_seqs` run, prompt chunked to the remaining budget. Admission gate:
//!    the blocks of the whole current sequence (less prefix hits) must fit in the free blocks;
//!    admission never preempts. The head of the queue blocks the rest (FCFS).
//! 3. The step model times the iteration (plus the optional host overhead); the clock advances.
//! 4. A request whose computed tokens reach its current length samples one token: the first is
//!    its first token (TTFT), the O-th completes it and frees its blocks.
//!
//! Prefix caching: full blocks are registered in the pool's cache as they fill; a request being
//! admitted (fresh or resumed after preemption) re-uses the longest run of leading blocks still
//! cached — its own blocks after a preemption, or blocks of the `prefix_parent` the trace names
//! for its first `shared_prefix_blocks` blocks — at most `current length − 1` tokens (so at least
//! one token is computed; `P − 1` for a fresh request, as vLLM). Async scheduling: a busy engine
//! sees only arrivals up to the start of the previous iteration.
//!
//! A request of P prompt and O output tokens holds at most ⌈(P + O − 1)/block_size⌉ blocks
//! (the O-th token is sampled, not computed); a trace with a request over the cache is
//! rejected before the run, so the loop always makes progress.

use std::collections::VecDeque;

use tokenq_core::step::{EngineConfig, StepBatch, StepModel};

use super::error::ContinuousError;
use super::kv::{BlockPool, block_key};
use super::metrics::{ContinuousResult, RequestRecord, SeriesPoint, summarise};

use super::workload::Request;

/// What to record besides the per-request records and summaries.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimOptions {
    /// Keep every iteration's [`StepBatch`] and step time (for checking a fitted model on the
    /// steps a replay actually ran).
    pub record_steps: bool,
    /// Run the O(capacity) KV-pool consistency check after every iteration (tests).
    pub check_invariants: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Req {
    p: u32,
    o: u32,
    computed: u32,
    generated: u32,
    blocks: Vec<u32>,
    first_token_s: f64,
    finish_s: f64,
    preemptions: u32,
    cached_tokens: u64,
    admissions: u32,
}

impl Req {
    fn num_tokens(&self) -> u32 {
        self.p + self.generated
    }
}

/// Validate the trace against the engine (sorted-ness is not required).
pub(crate) fn validate_trace(reqs: &[Request], cfg: &EngineConfig) -> Result<(), ContinuousError> {
    for (i, r) in reqs.iter().enumerate() {
        let bad = |msg: String| ContinuousError::BadRequest { index: i, msg };
        if !(r.arrival_s.is_finite() && r.arrival_s >= 0.0) {
            return Err(bad(format!(
                "arrival {} s is not a finite time ≥ 0",
                r.arrival_s
            )));
        }
        if r.input_tokens == 0 {
            return Err(bad(
                "input_tokens is 0; every prompt has at least one token".into(),
            ));
        }
        if r.output_tokens == 0 {
            return Err(bad(
                "output_tokens is 0; the engine generates at least one token".into(),
            ));
        }
        let longest = u64::from(r.input_tokens) + u64::from(r.output_tokens) - 1;
        let needed = cfg.blocks_for(longest);
        if needed > u64::from(cfg.kv_blocks) {
            return Err(ContinuousError::RequestTooLong {
                index: i,
                input: r.input_tokens,
                output: r.output_tokens,
                needed,
                capacity: cfg.kv_blocks,
            });
        }
        if let Some(p) = r.prefix_parent {
            let p = p as usize;
            if p >= i {
                return Err(bad(format!("prefix_parent {p} is not an earlier request")));
            }
            let shared = u64::from(r.shared_prefix_blocks) * u64::from(cfg.block_size);
            let limit = u64::from(r.input_tokens.min(reqs[p].input_tokens));
            if shared > limit {
                return Err(bad(format!(
                    "shares {} blocks ({shared} tokens) with request {p}, more than the shorter prompt ({limit} tokens); check shared_prefix_blocks and --block-size",
                    r.shared_prefix_blocks
                )));
            }
        }
    }
    Ok(())
}

/// Content key of block `j` of request `r`: blocks inside a declared shared prefix carry the
/// key of the request that first wrote them.
fn content_key(reqs: &[Request], r: usize, j: u32) -> u64 {
    let mut cur = r;
    while let Some(p) = reqs[cur].prefix_parent {
        if j < reqs[cur].shared_prefix_blocks {
            cur = p as usize;
        } else {
            break;
        }
    }
    block_key(cur as u32, j)
}

/// One engine: its queues, its KV pool and its accounting. The state of the requests lives in
/// a slice shared by all engines of a cluster (each request is routed to exactly one engine).
#[derive(Debug)]
pub(crate) struct Engine<'a> {
    reqs: &'a [Request],
    cfg: EngineConfig,
    index: u32,
    pool: BlockPool,
    /// Requests routed here that the scheduler has not seen yet, in arrival order.
    inbox: VecDeque<usize>,
    waiting: VecDeque<usize>,
    running: Vec<usize>,
    prev_start: f64,
    scheduled: Vec<(usize, u32)>,
    hits: Vec<u32>,
    /// Requests routed here (trace indices, routing order).
    pub(crate) routed: Vec<usize>,
    pub(crate) finished: usize,
    pub(crate) series: Vec<SeriesPoint>,
    /// The engine's state when it went idle (for merging the series of several engines).
    pub(crate) idle_points: Vec<SeriesPoint>,
    pub(crate) steps: Vec<(StepBatch, f64)>,
    pub(crate) preemptions: u64,
    pub(crate) iterations: u64,
    pub(crate) dummy_steps: u64,
    pub(crate) busy_s: f64,
    pub(crate) last_finish_s: f64,
}

/// Fresh state of every request of a trace.
pub(crate) fn initial_state(reqs: &[Request]) -> Vec<Req> {
    reqs.iter()
        .map(|r| Req {
            p: r.input_tokens,
            o: r.output_tokens,
            computed: 0,
            generated: 0,
            blocks: Vec::new(),
            first_token_s: f64::NAN,
            finish_s: f64::NAN,
            preemptions: 0,
            cached_tokens: 0,
            admissions: 0,
        })
        .collect()
}

/// Trace indices in arrival order (ties keep trace order).
pub(crate) fn arrival_order(reqs: &[Request]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..reqs.len()).collect();
    order.sort_by(|&a, &b| reqs[a].arrival_s.total_cmp(&reqs[b].arrival_s));
    order
}

impl<'a> Engine<'a> {
    pub(crate) fn new(reqs: &'a [Request], cfg: EngineConfig, index: u32) -> Self {
        Self {
            reqs,
            cfg,
            index,
            pool: BlockPool::new(cfg.kv_blocks),
            inbox: VecDeque::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            prev_start: f64::NEG_INFINITY,
            scheduled: Vec::new(),
            hits: Vec::new(),
            routed: Vec::new(),
            finished: 0,
            series: Vec::new(),
            idle_points: Vec::new(),
            steps: Vec::new(),
            preemptions: 0,
            iterations: 0,
            dummy_steps: 0,
            busy_s: 0.0,
            last_finish_s: f64::NAN,
        }
    }

    /// Hand request `r` to this engine (it reaches the scheduler once visible).
    pub(crate) fn route(&mut self, r: usize) {
        self.inbox.push_back(r);
        self.routed.push(r);
    }

    /// (waiting, running) as the engine would publish them: requests routed here and not
    /// admitted, and requests running.
    pub(crate) fn counts(&self) -> (u32, u32) {
        (
            (self.waiting.len() + self.inbox.len()) as u32,
            self.running.len() as u32,
        )
    }

    /// Arrival of the next request routed here that the scheduler has not seen.
    pub(crate) fn next_unseen_arrival(&self) -> Option<f64> {
        self.inbox.front().map(|&r| self.reqs[r].arrival_s)
    }

    /// The state after scheduling, as one series point.
    fn point(&self, t: f64, step_s: f64, tokens: u32, decodes: u32) -> SeriesPoint {
        SeriesPoint {
            t_s: t,
            running: self.running.len() as u32,
            waiting: self.waiting.len() as u32,
            kv_blocks_used: self.pool.num_used(),
            step_s,
            tokens,
            decodes,
        }
    }

    /// Steps 1–2 of an iteration starting at `t`: make the visible arrivals wait, schedule the
    /// running requests and admit waiting ones. `None` when the engine has nothing to run.
    pub(crate) fn plan(
        &mut self,
        st: &mut [Req],
        t: f64,
    ) -> Result<Option<StepBatch>, ContinuousError> {
        let cfg = self.cfg;
        let bs = cfg.block_size;
        let reqs = self.reqs;
        self.scheduled.clear();
        loop {
            // Arrivals the scheduler can see.
            let visible = if cfg.async_scheduling && !self.running.is_empty() {
                self.prev_start
            } else {
                t
            };
            while let Some(&r) = self.inbox.front() {
                if reqs[r].arrival_s > visible {
                    break;
                }
                self.waiting.push_back(r);
                self.inbox.pop_front();
            }
            if self.running.is_empty() && self.waiting.is_empty() {
                return Ok(None);
            }
            let (pool, waiting, running) = (&mut self.pool, &mut self.waiting, &mut self.running);
            let (scheduled, hits) = (&mut self.scheduled, &mut self.hits);

            // 1. Running requests first.
            scheduled.clear();
            let mut budget = cfg.max_batched_tokens;
            let mut preempted = false;
            let mut i = 0usize;
            while i < running.len() && budget > 0 {
                let r = running[i];
                let want = st[r].num_tokens() - st[r].computed;
                let k = want.min(budget);
                let need_total = cfg.blocks_for(u64::from(st[r].computed + k)) as usize;
                let need_new = need_total.saturating_sub(st[r].blocks.len());
                let mut can = true;
                while (pool.num_free() as usize) < need_new {
                    let victim = running.pop().expect("running holds the request itself");
                    let v = &mut st[victim];
                    pool.free(&v.blocks);
                    v.blocks.clear();
                    v.computed = 0;
                    v.preemptions += 1;
                    self.preemptions += 1;
                    waiting.push_front(victim);
                    preempted = true;
                    if victim == r {
                        can = false;
                        break;
                    }
                }
                if !can {
                    break;
                }
                for _ in 0..need_new {
                    let b = pool.allocate().expect("free blocks checked");
                    st[r].blocks.push(b);
                }
                scheduled.push((r, k));
                budget -= k;
                i += 1;
            }

            // 2. Admission, FCFS, only if nothing was preempted.
            if !preempted {
                while budget > 0 && (running.len() as u32) < cfg.max_num_seqs {
                    let Some(&r) = waiting.front() else { break };
                    let len = st[r].num_tokens();
                    let max_hit = if cfg.prefix_caching {
                        (len - 1) / bs
                    } else {
                        0
                    };
                    // Fast reject: even if every re-usable block were cached and held, the
                    // gate needs at least total − max_hit free blocks.
                    if cfg.blocks_for(u64::from(len)) - u64::from(max_hit)
                        > u64::from(pool.num_free())
                    {
                        break;
                    }
                    hits.clear();
                    if cfg.prefix_caching {
                        for j in 0..max_hit {
                            match pool.lookup(content_key(reqs, r, j)) {
                                Some(b) => hits.push(b),
                                None => break,
                            }
                        }
                    }
                    let hit_free = hits.iter().filter(|&&b| pool.is_free(b)).count() as u64;
                    let need_whole = cfg.blocks_for(u64::from(len)) - hits.len() as u64;
                    if need_whole + hit_free > u64::from(pool.num_free()) {
                        break; // the gate: the whole sequence must fit; never preempt
                    }
                    waiting.pop_front();
                    let cached = hits.len() as u32 * bs;
                    let k = (len - cached).min(budget);
                    for &b in hits.iter() {
                        pool.touch(b);
                    }
                    let s = &mut st[r];
                    s.blocks.clear();
                    s.blocks.extend_from_slice(hits);
                    s.computed = cached;
                    s.cached_tokens += u64::from(cached);
                    s.admissions += 1;
                    let need_new = cfg.blocks_for(u64::from(cached + k)) as usize - s.blocks.len();
                    for _ in 0..need_new {
                        let b = pool
                            .allocate()
                            .expect("gate checked the whole sequence fits");
                        s.blocks.push(b);
                    }
                    running.push(r);
                    scheduled.push((r, k));
                    budget -= k;
                }
            }

            if scheduled.is_empty() && preempted {
                // Everything that ran was preempted: admit again (no time passes).
                continue;
            }
            if scheduled.is_empty() {
                // Cannot happen for a validated trace (a lone request always fits); never hang.
                return Err(ContinuousError::BadRequest {
                    index: waiting.front().copied().unwrap_or(0),
                    msg: "the engine cannot schedule anything (KV cache too small for the queue head); raise --kv-blocks".into(),
                });
            }

            // 3. The iteration as the step model sees it.
            let mut batch = StepBatch::default();
            for &(r, k) in scheduled.iter() {
                let s = &st[r];
                if k == 1 && s.generated > 0 && s.computed + 1 == s.num_tokens() {
                    batch.push_decode(s.computed + 1);
                } else {
                    batch.push_prefill(k, s.computed);
                }
            }
            return Ok(Some(batch));
        }
    }

    /// Account for the planned iteration: it starts at `t` and lasts `dt` (of which `dt_model`
    /// from the step model).
    pub(crate) fn record(
        &mut self,
        t: f64,
        dt: f64,
        dt_model: f64,
        batch: StepBatch,
        opts: SimOptions,
    ) {
        self.series
            .push(self.point(t, dt, batch.tokens(), batch.n_decode));
        if opts.record_steps {
            self.steps.push((batch, dt_model));
        }
        self.iterations += 1;
        self.busy_s += dt;
        self.prev_start = t;
    }

    /// A dummy step (data parallelism in lockstep: nothing to run while a peer has work).
    pub(crate) fn record_dummy(&mut self, t: f64, dt: f64) {
        self.scheduled.clear();
        self.series.push(self.point(t, dt, 0, 0));
        self.dummy_steps += 1;
    }

    /// Note that the engine went idle at `t`.
    pub(crate) fn mark_idle(&mut self, t: f64) {
        self.idle_points.push(self.point(t, 0.0, 0, 0));
    }

    /// Step 4, at the end `t` of the planned iteration: commit computed tokens, register full
    /// blocks, sample; returns the requests completed.
    pub(crate) fn commit(
        &mut self,
        st: &mut [Req],
        t: f64,
        opts: SimOptions,
    ) -> Result<usize, ContinuousError> {
        let cfg = self.cfg;
        let bs = cfg.block_size;
        let mut done = 0usize;
        for &(r, k) in &self.scheduled {
            let before_full = st[r].computed / bs;
            st[r].computed += k;
            let after_full = st[r].computed / bs;
            if cfg.prefix_caching {
                for j in before_full..after_full {
                    let b = st[r].blocks[j as usize];
                    self.pool.register(b, content_key(self.reqs, r, j));
                }
            }
            let s = &mut st[r];
            if s.computed == s.num_tokens() {
                s.generated += 1;
                if s.generated == 1 {
                    s.first_token_s = t;
                }
                if s.generated == s.o {
                    debug_assert!(s.finish_s.is_nan(), "request {r} completed twice");
                    s.finish_s = t;
                    self.pool.free(&s.blocks);
                    s.blocks.clear();
                    done += 1;
                }
            }
        }
        self.scheduled.clear();
        if done > 0 {
            self.running.retain(|&r| st[r].generated < st[r].o);
            self.finished += done;
            self.last_finish_s = t;
        }
        debug_assert!(self.pool.num_used() <= self.pool.capacity());
        if opts.check_invariants {
            self.pool.check().map_err(|m| ContinuousError::BadRequest {
                index: 0,
                msg: format!("KV pool invariant broken: {m}"),
            })?;
            let held: u64 = self
                .running
                .iter()
                .map(|&r| st[r].blocks.len() as u64)
                .sum();
            // Shared prefix blocks are counted once per holder, so held ≥ used.
            assert!(
                held >= u64::from(self.pool.num_used()),
                "blocks held {held} < used"
            );
            for &r in &self.running {
                let s = &st[r];
                assert!(
                    s.blocks.len() as u64 >= cfg.blocks_for(u64::from(s.computed)),
                    "request {r} holds too few blocks"
                );
            }
        }
        Ok(done)
    }

    /// Records of `indices` (trace order).
    pub(crate) fn records(
        reqs: &[Request],
        st: &[Req],
        engine_of: &dyn Fn(usize) -> u32,
        indices: impl Iterator<Item = usize>,
    ) -> Vec<RequestRecord> {
        indices
            .map(|i| {
                let (r, s) = (&reqs[i], &st[i]);
                RequestRecord {
                    index: i,
                    arrival_s: r.arrival_s,
                    input_tokens: s.p,
                    output_tokens: s.o,
                    first_token_s: s.first_token_s,
                    finish_s: s.finish_s,
                    ttft_s: s.first_token_s - r.arrival_s,
                    tpot_s: if s.o > 1 {
                        Some((s.finish_s - s.first_token_s) / f64::from(s.o - 1))
                    } else {
                        None
                    },
                    e2e_s: s.finish_s - r.arrival_s,
                    preemptions: s.preemptions,
                    cached_tokens: s.cached_tokens,
                    admissions: s.admissions,
                    engine: engine_of(i),
                }
            })
            .collect()
    }

    /// This engine's result: its requests' records (trace order) and its own series.
    pub(crate) fn result(&mut self, st: &[Req], end_s: f64) -> ContinuousResult {
        let mut mine = self.routed.clone();
        mine.sort_unstable();
        let e = self.index;
        let records = Self::records(self.reqs, st, &|_| e, mine.into_iter());
        let mut r = summarise(
            records,
            std::mem::take(&mut self.series),
            std::mem::take(&mut self.steps),
            self.preemptions,
            self.iterations,
            self.busy_s,
            end_s,
        );
        r.dummy_steps = self.dummy_steps;
        r
    }
}

/// Replay `reqs` through the engine with step model `model`.
pub fn simulate(
    reqs: &[Request],
    cfg: &EngineConfig,
    model: &dyn StepModel,
    opts: SimOptions,
) -> Result<ContinuousResult, ContinuousError> {
    cfg.validate()?;
    validate_trace(reqs, cfg)?;
    let n = reqs.len();
    let mut st = initial_state(reqs);
    let mut engine = Engine::new(reqs, *cfg, 0);
    for r in arrival_order(reqs) {
        engine.route(r);
    }
    let mut t = 0.0f64;
    while engine.finished < n {
        let Some(batch) = engine.plan(&mut st, t)? else {
            // Idle: jump to the next arrival.
            let next = engine
                .next_unseen_arrival()
                .expect("an unfinished request is queued somewhere");
            t = t.max(next);
            continue;
        };
        let dt_model = model.step_time_s(&batch);
        if !(dt_model.is_finite() && dt_model >= 0.0) {
            return Err(ContinuousError::BadStepTime {
                value: dt_model,
                batch,
            });
        }
        let dt = dt_model + cfg.iteration_overhead_s;
        engine.record(t, dt, dt_model, batch, opts);
        t += dt;
        engine.commit(&mut st, t, opts)?;
    }
    Ok(engine.result(&st, t))
}
