//! Several engines behind one front end: data parallelism as vLLM 0.19 runs it (docs/serving.md
//! "Several GPUs").
//!
//! - N engines, each a full scheduler ([`super::scheduler`]) with its own queue, limits and KV
//!   pool; a request stays on the engine it was routed to.
//! - Routing (vLLM's `DPLBAsyncMPClient`): on arrival, the engine with the lowest
//!   `4·waiting + running`, scanning from engine 0 (ties go to the lower index). The counts are
//!   the DP coordinator's snapshot, published every `stats_interval_s` (100 ms): each engine's
//!   (waiting, running) at the end of its last step before the publish; the front end adds 1
//!   waiting to the chosen engine for every request it sends until the next publish replaces
//!   the counts. With `stats_interval_s = 0` the router reads every engine's counts live.
//! - Lockstep (MoE models): every step's MoE layers are collectives over all DP ranks, so the
//!   engines step together. While any engine has work, an engine with nothing to run executes a
//!   dummy step (one decode of one token, as upstream); every rank is padded to the group's
//!   largest token count T_max ([`StepModel::padded_step_time_s`]: dense layers, lm_head and
//!   the MoE block see T_max, attention only the real requests); the group's step ends when the
//!   slowest rank ends. Without lockstep (dense models) the engines run independently.
//!
//! Events are taken in time order; at equal times, step ends first (their counts are then
//! recorded), then the coordinator's publish, then arrivals (routed), and only then do free
//! engines start their next step — so a step starting at t sees the arrivals at t, as with one
//! engine. With one engine the replay is [`super::simulate`] exactly.

use serde::Serialize;
use tokenq_core::CoreError;
use tokenq_core::step::{EngineConfig, StepBatch, StepModel};

use super::error::ContinuousError;
use super::metrics::{ContinuousResult, SeriesPoint, summarise};
use super::scheduler::{
    Engine, Req, SimOptions, arrival_order, initial_state, simulate, validate_trace,
};
use super::workload::Request;

/// vLLM's DP coordinator publishes the engines' request counts about every 100 ms.
pub const DP_STATS_INTERVAL_S: f64 = 0.1;

/// How many engines, and how they run together.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DataParallel {
    /// Engines (vLLM `data_parallel_size`), each with the full [`EngineConfig`].
    pub engines: u32,
    /// Step the engines together (MoE models), with dummy steps and padding to T_max.
    pub lockstep: bool,
    /// Period of the coordinator's published counts, seconds (0: the router sees live counts).
    pub stats_interval_s: f64,
}

impl Default for DataParallel {
    fn default() -> Self {
        Self {
            engines: 1,
            lockstep: false,
            stats_interval_s: DP_STATS_INTERVAL_S,
        }
    }
}

/// Result of a replay on several engines.
#[derive(Debug, Clone)]
pub struct ClusterResult {
    /// Every request of every engine (trace order); the series sums the engines' running,
    /// waiting and KV blocks over time; counters are summed over engines, the makespan is the
    /// last completion of any engine.
    pub merged: ContinuousResult,
    /// Each engine's own result: its requests (trace order, `engine` set) and its series.
    pub engines: Vec<ContinuousResult>,
}

/// vLLM's DP load balancer as the front end sees it.
#[derive(Debug)]
struct Router {
    /// The counts the front end routes by: the last snapshot plus its own increments.
    lb: Vec<(u32, u32)>,
    /// Each engine's (waiting, running) at the end of its last step.
    published: Vec<(u32, u32)>,
    interval: f64,
    /// Index of the next publish (at `next_tick · interval`).
    next_tick: u64,
}

impl Router {
    fn new(engines: usize, interval: f64) -> Self {
        Self {
            lb: vec![(0, 0); engines],
            published: vec![(0, 0); engines],
            interval,
            next_tick: 0,
        }
    }

    /// Apply the coordinator's publishes at k·interval before `x` (or at `x` too when
    /// `inclusive`); the counts at every skipped publish are the same, so only the last matters.
    fn publish_until(&mut self, x: f64, inclusive: bool) {
        if self.interval <= 0.0 {
            return;
        }
        let at = |k: f64| k * self.interval;
        let before = |tk: f64| if inclusive { tk <= x } else { tk < x };
        let mut k = (x / self.interval).floor();
        while k >= 0.0 && !before(at(k)) {
            k -= 1.0;
        }
        while before(at(k + 1.0)) {
            k += 1.0;
        }
        if k < 0.0 {
            return;
        }
        let k = k as u64;
        if k >= self.next_tick {
            self.lb.clone_from(&self.published);
            self.next_tick = k + 1;
        }
    }

    /// The engine for the next request: lowest `4·waiting + running`, the first on ties.
    fn choose(&mut self, live: &[(u32, u32)]) -> usize {
        let counts = if self.interval <= 0.0 { live } else { &self.lb };
        let mut best = 0usize;
        let mut min = u64::MAX;
        for (i, &(w, r)) in counts.iter().enumerate() {
            let score = 4 * u64::from(w) + u64::from(r);
            if score < min {
                min = score;
                best = i;
            }
        }
        if self.interval > 0.0 {
            self.lb[best].0 += 1;
        }
        best
    }
}

fn checked(value: f64, batch: StepBatch) -> Result<f64, ContinuousError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(ContinuousError::BadStepTime { value, batch })
    }
}

/// The dummy batch of an idle rank in lockstep (upstream: one decode of one token).
fn dummy_batch() -> StepBatch {
    let mut b = StepBatch::default();
    b.push_decode(1);
    b
}

struct Run<'m> {
    model: &'m dyn StepModel,
    cfg: EngineConfig,
    opts: SimOptions,
    lockstep: bool,
}

impl Run<'_> {
    /// Start a step on every free engine that has work at `now` (all together in lockstep).
    /// Returns whether any step started.
    fn start(
        &self,
        engines: &mut [Engine<'_>],
        st: &mut [Req],
        busy: &mut [Option<f64>],
        idle: &mut [bool],
        now: f64,
    ) -> Result<bool, ContinuousError> {
        let overhead = self.cfg.iteration_overhead_s;
        if !self.lockstep {
            let mut any = false;
            for e in 0..engines.len() {
                if busy[e].is_some() {
                    continue;
                }
                match engines[e].plan(st, now)? {
                    Some(batch) => {
                        let dt_model = checked(self.model.step_time_s(&batch), batch)?;
                        let dt = dt_model + overhead;
                        engines[e].record(now, dt, dt_model, batch, self.opts);
                        busy[e] = Some(now + dt);
                        idle[e] = false;
                        any = true;
                    }
                    None if !idle[e] => {
                        engines[e].mark_idle(now);
                        idle[e] = true;
                    }
                    None => {}
                }
            }
            return Ok(any);
        }
        if busy.iter().any(Option::is_some) {
            return Ok(false);
        }
        let mut plans = Vec::with_capacity(engines.len());
        for eng in engines.iter_mut() {
            plans.push(eng.plan(st, now)?);
        }
        if plans.iter().all(Option::is_none) {
            for (e, eng) in engines.iter_mut().enumerate() {
                if !idle[e] {
                    eng.mark_idle(now);
                    idle[e] = true;
                }
            }
            return Ok(false);
        }
        let dummy = dummy_batch();
        let t_max = plans
            .iter()
            .map(|p| p.as_ref().unwrap_or(&dummy).tokens())
            .max()
            .unwrap_or(1);
        let mut times = Vec::with_capacity(plans.len());
        for p in &plans {
            let b = p.as_ref().unwrap_or(&dummy);
            times.push(checked(self.model.padded_step_time_s(b, t_max), *b)?);
        }
        let dt_model = times.iter().copied().fold(0.0, f64::max);
        let dt = dt_model + overhead;
        for (e, (eng, plan)) in engines.iter_mut().zip(plans).enumerate() {
            match plan {
                Some(batch) => eng.record(now, dt, times[e], batch, self.opts),
                None => eng.record_dummy(now, dt),
            }
            busy[e] = Some(now + dt);
            idle[e] = false;
        }
        Ok(true)
    }
}

/// Sum the engines' states over time: at every time an engine's state changes, the sum of each
/// engine's latest state (running, waiting, KV blocks); step time the longest and tokens the
/// sum of the steps starting then.
fn merge_series(engines: &[Engine<'_>]) -> Vec<SeriesPoint> {
    let mut pts: Vec<(f64, usize, SeriesPoint)> = Vec::new();
    for (e, eng) in engines.iter().enumerate() {
        pts.extend(eng.series.iter().map(|p| (p.t_s, e, *p)));
        pts.extend(eng.idle_points.iter().map(|p| (p.t_s, e, *p)));
    }
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let zero = SeriesPoint {
        t_s: 0.0,
        running: 0,
        waiting: 0,
        kv_blocks_used: 0,
        step_s: 0.0,
        tokens: 0,
        decodes: 0,
    };
    let mut last = vec![zero; engines.len()];
    let mut out: Vec<SeriesPoint> = Vec::new();
    let mut i = 0;
    while i < pts.len() {
        let t = pts[i].0;
        let (mut step, mut tokens, mut decodes) = (0.0f64, 0u32, 0u32);
        while i < pts.len() && pts[i].0 == t {
            let (_, e, p) = pts[i];
            last[e] = p;
            step = step.max(p.step_s);
            tokens += p.tokens;
            decodes += p.decodes;
            i += 1;
        }
        out.push(SeriesPoint {
            t_s: t,
            running: last.iter().map(|p| p.running).sum(),
            waiting: last.iter().map(|p| p.waiting).sum(),
            kv_blocks_used: last.iter().map(|p| p.kv_blocks_used).sum(),
            step_s: step,
            tokens,
            decodes,
        });
    }
    out
}

/// Replay `reqs` on `dp.engines` engines, each with the limits and KV cache of `cfg`, routed as
/// vLLM's DP front end routes them (module doc). One engine is [`simulate`].
pub fn simulate_data_parallel(
    reqs: &[Request],
    cfg: &EngineConfig,
    dp: &DataParallel,
    model: &dyn StepModel,
    opts: SimOptions,
) -> Result<ClusterResult, ContinuousError> {
    if dp.engines == 0 {
        return Err(CoreError::Setting {
            flag: "data-parallel",
            need: "at least 1",
            got: "0".into(),
            fix: "use 1 for one engine",
        }
        .into());
    }
    if !(dp.stats_interval_s.is_finite() && dp.stats_interval_s >= 0.0) {
        return Err(CoreError::Setting {
            flag: "dp-stats-interval-s",
            need: "a finite number of seconds ≥ 0",
            got: dp.stats_interval_s.to_string(),
            fix: "vLLM's coordinator publishes every 0.1 s; 0 routes on live counts",
        }
        .into());
    }
    if dp.engines == 1 {
        let r = simulate(reqs, cfg, model, opts)?;
        return Ok(ClusterResult {
            merged: r.clone(),
            engines: vec![r],
        });
    }
    cfg.validate()?;
    validate_trace(reqs, cfg)?;
    let n = reqs.len();
    let ne = dp.engines as usize;
    let order = arrival_order(reqs);
    let mut st = initial_state(reqs);
    let mut engines: Vec<Engine<'_>> = (0..ne).map(|i| Engine::new(reqs, *cfg, i as u32)).collect();
    let mut engine_of = vec![0u32; n];
    let mut busy: Vec<Option<f64>> = vec![None; ne];
    let mut idle = vec![true; ne];
    let mut router = Router::new(ne, dp.stats_interval_s);
    let run = Run {
        model,
        cfg: *cfg,
        opts,
        lockstep: dp.lockstep,
    };
    let next_end =
        |busy: &[Option<f64>]| busy.iter().flatten().copied().fold(f64::INFINITY, f64::min);
    let arrival = |next: usize| {
        order
            .get(next)
            .map_or(f64::INFINITY, |&r| reqs[r].arrival_s)
    };
    let mut next = 0usize;
    let mut finished = 0usize;
    let mut now = 0.0f64;
    while finished < n {
        let (end, arr) = (next_end(&busy), arrival(next));
        if end.is_infinite() && arr.is_infinite() {
            if !run.start(&mut engines, &mut st, &mut busy, &mut idle, now)? {
                return Err(ContinuousError::BadRequest {
                    index: 0,
                    msg: "the engines cannot schedule anything (KV cache too small for a queue head); raise --kv-blocks".into(),
                });
            }
            continue;
        }
        if end <= arr {
            now = end;
            router.publish_until(now, false);
            for e in 0..ne {
                if busy[e] == Some(now) {
                    busy[e] = None;
                    finished += engines[e].commit(&mut st, now, opts)?;
                    router.published[e] = engines[e].counts();
                }
            }
        } else {
            now = arr;
            router.publish_until(now, true);
            let r = order[next];
            next += 1;
            let live: Vec<(u32, u32)> = engines.iter().map(Engine::counts).collect();
            let e = router.choose(&live);
            engines[e].route(r);
            engine_of[r] = e as u32;
        }
        if next_end(&busy) > now && arrival(next) > now {
            run.start(&mut engines, &mut st, &mut busy, &mut idle, now)?;
        }
    }

    let series = merge_series(&engines);
    let mut steps = Vec::new();
    for eng in &engines {
        steps.extend_from_slice(&eng.steps);
    }
    let end = engines
        .iter()
        .map(|e| e.last_finish_s)
        .filter(|t| t.is_finite())
        .fold(0.0, f64::max);
    let records = Engine::records(reqs, &st, &|i| engine_of[i], 0..n);
    let mut merged = summarise(
        records,
        series,
        steps,
        engines.iter().map(|e| e.preemptions).sum(),
        engines.iter().map(|e| e.iterations).sum(),
        engines.iter().map(|e| e.busy_s).sum(),
        end,
    );
    merged.dummy_steps = engines.iter().map(|e| e.dummy_steps).sum();
    let per_engine = engines
        .iter_mut()
        .map(|e| {
            let end = if e.last_finish_s.is_finite() {
                e.last_finish_s
            } else {
                0.0
            };
            e.result(&st, end)
        })
        .collect();
    Ok(ClusterResult {
        merged,
        engines: per_engine,
    })
}
