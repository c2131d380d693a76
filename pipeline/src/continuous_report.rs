//! `tokenq replay --report DIR`: the continuous-batching report (drawn by
//! `reports::continuous`) and the capacity comparison with the paper's batching policies on the
//! same trace (Yang, Xu, Jiao 2024 §IV; docs/models.md §6–§8; `queueing::batch`).
//!
//! The paper-level coefficients come from the replay's own step model (docs/serving.md step times):
//! with p̄ and ō the trace's mean input and output lengths, c̄ = p̄ + ō/2 the mean context of a
//! decode, and K the batch cap,
//! * `t2(b)` = one decode step of b requests at context c̄ each; `k3, k4` the secant through
//!   b = 1 and b = K (`k3 = (t2(K) − t2(1))/(K − 1)`, `k4 = t2(1) − k3`);
//! * `t1(b)` = prefilling b prompts of p̄ tokens in chunks of the token budget (⌈b·p̄/budget⌉
//!   steps, no cached context); `k1, k2` the secant through b = 1 and b = K (intercepts clamped
//!   at 0; with K = 1 the slopes are 0);
//! * K = min(`max_num_seqs`, ⌊KV tokens/(p̄ + ō)⌋): the requests of mean size whose whole KV
//!   fits (the paper's models have no KV limit, so the cap stands in for it);
//! * the output law is the trace's empirical output-length distribution.
//!
//! For a cap K the load is ρ = λ·E[T_K]/K and the largest stable rate K/E[T_K] (exact for the
//! model: a capped policy serves at most K per batch): padded `E[T_K] = t1(K) + t2(K)·E[max of K
//! outputs]` for fixed and dynamic batching (docs/models.md §6–§7), `E[T^el_K]` for elastic (§8).
//!
//! With N data-parallel engines the comparison is per engine: the paper's policies at λ/N, the
//! continuous row the group's completion rate / N; the report also draws each engine's running,
//! waiting and KV use over time ([`engine_states`]).

use anyhow::Result;
use queueing::batch::{BatchTime, LlmBatch};
use queueing::dist::{Empirical, TokenDist};
use reports::Method;
use reports::continuous::{CapacityRow, ContinuousReport, EngineStates, LatencyData, StatePoint};
use sim::continuous::{
    ContinuousResult, EngineConfig, LatencySummary, Request, StepBatch, StepModel,
};

/// The simulation is called overloaded on a trace when more than this fraction of its requests
/// are still waiting (not admitted) at the last arrival.
pub const OVERLOAD_WAITING_FRACTION: f64 = 0.1;

/// The paper-level model derived from a step model, and how.
#[derive(Debug)]
pub struct PaperModel {
    /// Batch size the coefficients were read at.
    pub k: usize,
    /// The paper's batch-time model with the workload's output law.
    pub model: LlmBatch,
    /// How each coefficient was derived.
    pub basis: Vec<String>,
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    s / n.max(1) as f64
}

/// Empirical output-length law of the trace.
fn output_law(reqs: &[Request], source: &str) -> TokenDist {
    let mut v: Vec<f64> = reqs.iter().map(|r| f64::from(r.output_tokens)).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let (mut values, mut probs) = (Vec::new(), Vec::new());
    for x in v {
        if values.last() == Some(&x) {
            *probs.last_mut().unwrap() += 1.0 / n;
        } else {
            values.push(x);
            probs.push(1.0 / n);
        }
    }
    let mut acc = 0.0;
    let mut cdf: Vec<f64> = probs
        .iter()
        .map(|p| {
            acc += p;
            acc
        })
        .collect();
    if let Some(l) = cdf.last_mut() {
        *l = 1.0;
    }
    TokenDist::Empirical(Empirical {
        values,
        probs,
        cdf,
        source: format!("output_tokens of {source}"),
    })
}

/// Derive k1..k4, K and the output law (module doc).
pub fn paper_model(
    reqs: &[Request],
    cfg: &EngineConfig,
    step: &dyn StepModel,
    source: &str,
) -> Result<PaperModel> {
    let p = mean(reqs.iter().map(|r| f64::from(r.input_tokens)));
    let o = mean(reqs.iter().map(|r| f64::from(r.output_tokens)));
    let kv_tokens = f64::from(cfg.kv_blocks) * f64::from(cfg.block_size);
    let k_kv = (kv_tokens / (p + o)).floor().max(1.0) as u32;
    let k = cfg.max_num_seqs.min(k_kv).max(1);
    let ctx = (p + o / 2.0).round().max(1.0) as u32;
    let t2 = |b: u32| {
        let sb = StepBatch {
            n_decode: b,
            decode_context_sum: u64::from(b) * u64::from(ctx),
            decode_context_min: ctx,
            decode_context_max: ctx,
            ..StepBatch::default()
        };
        step.step_time_s(&sb)
    };
    let budget = u64::from(cfg.max_batched_tokens);
    let pi = p.round().max(1.0) as u64;
    let t1 = |b: u32| {
        let mut left = u64::from(b) * pi;
        let mut t = 0.0;
        while left > 0 {
            let c = left.min(budget);
            let mut sb = StepBatch::default();
            sb.push_prefill(c as u32, 0);
            t += step.step_time_s(&sb);
            left -= c;
        }
        t
    };
    // K = 1 has no secant: the lines are flat in b (slope 0, intercept the b = 1 time).
    let kf = f64::from(k.saturating_sub(1).max(1));
    let slope = |hi: f64, lo: f64| {
        if k > 1 {
            ((hi - lo) / kf).max(0.0)
        } else {
            0.0
        }
    };
    let k3 = slope(t2(k), t2(1));
    let k4 = (t2(1) - k3).max(0.0);
    let k1 = slope(t1(k), t1(1));
    let k2 = (t1(1) - k1).max(0.0);
    let coeffs = BatchTime::new(k1, k2, k3, k4)?;
    let model = LlmBatch::new(coeffs, output_law(reqs, source))?;
    let basis = vec![
        format!(
            "Paper-level coefficients derived from the replay's step model ({}): t2(b) = one decode step of b requests at the mean decode context c̄ = p̄ + ō/2 = {ctx} tokens (p̄ = {p:.1}, ō = {o:.1} tokens, trace means); t1(b) = prefilling b prompts of {pi} tokens in chunks of the {budget}-token budget; each line is the secant through b = 1 and b = K.",
            step.describe()
        ),
        format!(
            "k1 = {:.4e} s/req, k2 = {:.4e} s (first-token time t1(b) = k1·b + k2), k3 = {:.4e} s/req, k4 = {:.4e} s (decode-step time t2(b) = k3·b + k4); batch cap K = min(max_num_seqs {}, ⌊KV {} tokens / (p̄ + ō)⌋ = {k_kv}) = {k} requests (the paper's models have no KV limit; the cap stands in for it). Output law: the trace's empirical output lengths (E[max of K] = {:.1} tokens).",
            k1,
            k2,
            k3,
            k4,
            cfg.max_num_seqs,
            kv_tokens,
            model.tokens.max_moments(k as usize).0
        ),
    ];
    Ok(PaperModel {
        k: k as usize,
        model,
        basis,
    })
}

fn verdict(rho: f64, max_rate: f64) -> String {
    if rho < 1.0 {
        "stable (ρ < 1)".to_string()
    } else {
        format!("unstable (ρ ≥ 1): lower the rate below {max_rate:.3} req/s")
    }
}

/// The capacity rows: fixed, dynamic and elastic batching with cap K, then the simulation.
pub fn capacity_rows(
    pm: &PaperModel,
    lambda: f64,
    result: &ContinuousResult,
    requests: usize,
    last_arrival_s: f64,
    first_arrival_s: f64,
) -> Vec<CapacityRow> {
    let k = pm.k;
    let kf = k as f64;
    let padded = pm.model.padded_moments(k).0;
    let elastic = pm.model.elastic_moments(k).0;
    let mut rows = Vec::new();
    for (name, et, how) in [
        (
            format!("fixed batching, K = {k} (paper §IV-B)"),
            padded,
            format!(
                "E[T_K] = t1(K) + t2(K)·E[max of K outputs] = {padded:.3} s; ρ = λE[T_K]/K; max rate K/E[T_K]"
            ),
        ),
        (
            format!("dynamic batching, cap K = {k} (paper §IV-A, docs/models.md §7)"),
            padded,
            "a batch serves at most K, so the capped dynamic policy's capacity equals fixed K's"
                .to_string(),
        ),
        (
            format!("elastic batching, cap K = {k} (docs/models.md §8)"),
            elastic,
            format!(
                "E[T^el_K] = t1(K) + k3·E[Σ outputs] + k4·E[max] = {elastic:.3} s; each request leaves at its own length"
            ),
        ),
    ] {
        let max_rate = kf / et;
        let rho = lambda * et / kf;
        rows.push(CapacityRow {
            policy: name,
            load: rho,
            max_rate_req_s: max_rate,
            method: Method::Exact,
            verdict: verdict(rho, max_rate),
            note: how,
        });
    }
    let waiting_at_last = result
        .series
        .iter()
        .take_while(|s| s.t_s <= last_arrival_s)
        .last()
        .map(|s| s.waiting)
        .unwrap_or(0);
    let served = result.completed as f64 / (result.makespan_s - first_arrival_s).max(1e-12);
    let overloaded = f64::from(waiting_at_last) > OVERLOAD_WAITING_FRACTION * requests as f64;
    rows.push(CapacityRow {
        policy: "continuous batching (vLLM V1 scheduler, this replay)".into(),
        load: f64::NAN,
        max_rate_req_s: served,
        method: Method::Simulation,
        verdict: if overloaded {
            format!(
                "overloaded on this trace: {waiting_at_last} requests waiting at the last arrival (> {:.0}% of the trace)",
                100.0 * OVERLOAD_WAITING_FRACTION
            )
        } else {
            format!("keeps up: {waiting_at_last} requests waiting at the last arrival")
        },
        note: format!(
            "rate column: completions per second over the replay, completed / (makespan − first arrival); when overloaded the engine is busy nearly throughout, so this approximates its capacity on this request mix (ramp-up and drain included); {} preemptions; one deterministic replay, no CI",
            result.preemptions
        ),
    });
    rows
}

fn latency(name: &str, def: &str, values: Vec<f64>, s: &LatencySummary) -> LatencyData {
    LatencyData {
        name: name.into(),
        definition: def.into(),
        values_s: values,
        mean_s: s.mean_s,
        p50_s: s.p50_s,
        p90_s: s.p90_s,
        p99_s: s.p99_s,
    }
}

/// Each engine's state over time (data parallelism; empty for one engine), times from the
/// first arrival.
pub fn engine_states(
    reqs: &[Request],
    cfg: &EngineConfig,
    engines: &[&ContinuousResult],
) -> Vec<EngineStates> {
    if engines.len() < 2 {
        return Vec::new();
    }
    let first = reqs
        .iter()
        .map(|r| r.arrival_s)
        .fold(f64::INFINITY, f64::min);
    engines
        .iter()
        .enumerate()
        .map(|(i, r)| EngineStates {
            name: format!("engine {i}"),
            kv_blocks: cfg.kv_blocks,
            preemptions: r.preemptions,
            states: r
                .series
                .iter()
                .map(|s| StatePoint {
                    t_s: s.t_s - first,
                    running: s.running,
                    waiting: s.waiting,
                    kv_blocks_used: s.kv_blocks_used,
                })
                .collect(),
        })
        .collect()
}

/// Build the report data for one replay on `engines` data-parallel engines (1: one engine).
#[allow(clippy::too_many_arguments)]
pub fn build(
    title: String,
    metadata: Vec<(String, String)>,
    reqs: &[Request],
    cfg: &EngineConfig,
    step: &dyn StepModel,
    result: &ContinuousResult,
    trace_name: &str,
    engines: u32,
) -> Result<ContinuousReport> {
    let first = reqs
        .iter()
        .map(|r| r.arrival_s)
        .fold(f64::INFINITY, f64::min);
    let last = reqs
        .iter()
        .map(|r| r.arrival_s)
        .fold(f64::NEG_INFINITY, f64::max);
    let lambda = if last > first {
        (reqs.len() as f64 - 1.0) / (last - first)
    } else {
        f64::NAN
    };
    let pm = paper_model(reqs, cfg, step, trace_name)?;
    let n = f64::from(engines.max(1));
    let mut rows = capacity_rows(&pm, lambda / n, result, reqs.len(), last, first);
    let mut basis = pm.basis;
    if engines > 1 {
        if let Some(c) = rows.last_mut() {
            c.max_rate_req_s /= n;
            c.note.push_str(&format!(
                "; per engine: the {engines} engines' completion rate / {engines}"
            ));
        }
        basis.push(format!(
            "{engines} data-parallel engines, each with these limits and KV cache: the paper's policies are evaluated for one engine at λ/{engines} = {} req/s, and the continuous row gives the group's rate per engine.",
            lambda / n
        ));
    }
    let r = &result.records;
    Ok(ContinuousReport {
        title,
        metadata,
        latencies: vec![
            latency(
                "TTFT",
                "first token − arrival",
                r.iter().map(|x| x.ttft_s).collect(),
                &result.ttft,
            ),
            latency(
                "TPOT",
                "(last − first token)/(output − 1), requests with ≥ 2 output tokens",
                r.iter().filter_map(|x| x.tpot_s).collect(),
                &result.tpot,
            ),
            latency(
                "E2E",
                "last token − arrival",
                r.iter().map(|x| x.e2e_s).collect(),
                &result.e2e,
            ),
        ],
        states: result
            .series
            .iter()
            .map(|s| StatePoint {
                t_s: s.t_s - first,
                running: s.running,
                waiting: s.waiting,
                kv_blocks_used: s.kv_blocks_used,
            })
            .collect(),
        kv_blocks: cfg.kv_blocks * engines.max(1),
        preemptions: result.preemptions,
        requests: reqs.len(),
        completed: result.completed,
        arrival_rate_req_s: lambda,
        capacity: rows,
        capacity_basis: basis,
        notes: vec![
            "Continuous-batching numbers are one deterministic replay of the trace (method: simulation, no confidence interval); the paper-level capacities are exact for the stated coefficients (method: exact), which are themselves an approximation of the step model.".into(),
        ],
    })
}
