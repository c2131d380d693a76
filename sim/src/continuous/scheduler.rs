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
struct Req {
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
fn validate_trace(reqs: &[Request], cfg: &EngineConfig) -> Result<(), ContinuousError> {
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
    let bs = cfg.block_size;
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| reqs[a].arrival_s.total_cmp(&reqs[b].arrival_s));
    let mut st: Vec<Req> = reqs
        .iter()
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
        .collect();
    let mut pool = BlockPool::new(cfg.kv_blocks);
    let mut waiting: VecDeque<usize> = VecDeque::new();
    let mut running: Vec<usize> = Vec::new();
    let mut next_arrival = 0usize;
    let mut t = 0.0f64;
    let mut prev_start = f64::NEG_INFINITY;
    let mut finished = 0usize;
    let mut series: Vec<SeriesPoint> = Vec::new();
    let mut steps: Vec<(StepBatch, f64)> = Vec::new();
    let mut total_preemptions = 0u64;
    let mut iterations = 0u64;
    let mut busy_s = 0.0f64;
    let mut scheduled: Vec<(usize, u32)> = Vec::new();
    let mut hits: Vec<u32> = Vec::new();

    while finished < n {
        // Arrivals the scheduler can see.
        let visible = if cfg.async_scheduling && !running.is_empty() {
            prev_start
        } else {
            t
        };
        while next_arrival < n && reqs[order[next_arrival]].arrival_s <= visible {
            waiting.push_back(order[next_arrival]);
            next_arrival += 1;
        }
        if running.is_empty() && waiting.is_empty() {
            // Idle: jump to the next arrival.
            debug_assert!(next_arrival < n);
            t = t.max(reqs[order[next_arrival]].arrival_s);
            continue;
        }

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
                total_preemptions += 1;
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
                // Fast reject: even if every re-usable block were cached and held, the gate
                // needs at least total − max_hit free blocks.
                if cfg.blocks_for(u64::from(len)) - u64::from(max_hit) > u64::from(pool.num_free())
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
                for &b in &hits {
                    pool.touch(b);
                }
                let s = &mut st[r];
                s.blocks.clear();
                s.blocks.extend_from_slice(&hits);
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
            // Everything that ran was preempted: admit again next iteration (no time passes).
            continue;
        }
        if scheduled.is_empty() {
            // Cannot happen for a validated trace (a lone request always fits); never hang.
            return Err(ContinuousError::BadRequest {
                index: waiting.front().copied().unwrap_or(0),
                msg: "the engine cannot schedule anything (KV cache too small for the queue head); raise --kv-blocks".into(),
            });
        }

        // 3. Time the step.
        let mut batch = StepBatch::default();
        for &(r, k) in &scheduled {
            let s = &st[r];
            if k == 1 && s.generated > 0 && s.computed + 1 == s.num_tokens() {
                batch.push_decode(s.computed + 1);
            } else {
                batch.push_prefill(k, s.computed);
            }
        }
        let dt_model = model.step_time_s(&batch);
        if !(dt_model.is_finite() && dt_model >= 0.0) {
            return Err(ContinuousError::BadStepTime {
                value: dt_model,
                batch,
            });
        }
        let dt = dt_model + cfg.iteration_overhead_s;
        series.push(SeriesPoint {
            t_s: t,
            running: running.len() as u32,
            waiting: waiting.len() as u32,
            kv_blocks_used: pool.num_used(),
            step_s: dt,
            tokens: batch.tokens(),
        });
        if opts.record_steps {
            steps.push((batch, dt_model));
        }
        iterations += 1;
        busy_s += dt;
        prev_start = t;
        t += dt;

        // 4. Commit computed tokens, register full blocks, sample.
        let mut any_done = false;
        for &(r, k) in &scheduled {
            let before_full = st[r].computed / bs;
            st[r].computed += k;
            let after_full = st[r].computed / bs;
            if cfg.prefix_caching {
                for j in before_full..after_full {
                    let b = st[r].blocks[j as usize];
                    pool.register(b, content_key(reqs, r, j));
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
                    pool.free(&s.blocks);
                    s.blocks.clear();
                    finished += 1;
                    any_done = true;
                }
            }
        }
        if any_done {
            running.retain(|&r| st[r].generated < st[r].o);
        }
        debug_assert!(pool.num_used() <= pool.capacity());
        if opts.check_invariants {
            pool.check().map_err(|m| ContinuousError::BadRequest {
                index: 0,
                msg: format!("KV pool invariant broken: {m}"),
            })?;
            let held: u64 = running.iter().map(|&r| st[r].blocks.len() as u64).sum();
            // Shared prefix blocks are counted once per holder, so held ≥ used.
            assert!(
                held >= u64::from(pool.num_used()),
                "blocks held {held} < used"
            );
            for &r in &running {
                let s = &st[r];
                assert!(
                    s.blocks.len() as u64 >= cfg.blocks_for(u64::from(s.computed)),
                    "request {r} holds too few blocks"
                );
            }
        }
    }

    let records: Vec<RequestRecord> = reqs
        .iter()
        .zip(&st)
        .enumerate()
        .map(|(i, (r, s))| RequestRecord {
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
        })
        .collect();
    Ok(summarise(
        records,
        series,
        steps,
        total_preemptions,
        iterations,
        busy_s,
        t,
    ))
}
