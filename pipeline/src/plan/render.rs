//! The answers in words: [`render`] and [`render_goodputs`], the feasible table, a
//! configuration's label, and the routing and continuous-batching descriptions.

use tokenq_core::Method;

use super::evaluate::Candidate;
use super::goodput::GoodputPlan;
use super::search::PlanAnswer;
use super::{PlanConfig, PlanPolicy};

pub(super) fn trim_num(x: f64) -> String {
    let s = format!("{x:.6}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `dynamic batching, cap 8, max tokens 831 tokens`.
pub fn policy_label(c: &Candidate) -> String {
    config_label(c.policy, c.max_tokens)
}

/// `dynamic batching, cap 8, max tokens 831 tokens` from its parts.
pub fn config_label(policy: PlanPolicy, max_tokens: Option<f64>) -> String {
    format!(
        "{}, max tokens {}",
        policy_text(policy),
        limit_text(max_tokens)
    )
}

/// Continuous batching's engine, step model and replications, in words.
pub(super) fn continuous_text(cfg: &PlanConfig) -> Option<String> {
    cfg.continuous.as_ref().map(|cs| {
        format!(
            "{}; input tokens {}; max_batched_tokens {}, {} KV blocks of {} tokens; {} replications of {} Poisson arrivals (first {:.0}% warm-up), 95% Student-t intervals",
            cs.model_description,
            cs.input_spec,
            cs.engine.max_batched_tokens,
            cs.engine.kv_blocks,
            cs.engine.block_size,
            cs.replications,
            cs.requests,
            100.0 * crate::poisson_replay::WARMUP_FRACTION
        )
    })
}

/// The human-readable answer without a rate: the configurations, largest goodput first.
pub fn render_goodputs(a: &GoodputPlan, rows: usize) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "goodput plan: tokens {}, SLOs {}{}",
        a.tokens,
        a.slos.join(", "),
        if a.min_served_fraction > 0.0 {
            format!(
                ", at least {}% of requests served whole",
                trim_num(100.0 * a.min_served_fraction)
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(o, "GPUs: {}", a.gpus);
    if let Some(c) = &a.continuous {
        let _ = writeln!(o, "continuous batching: {c}");
    }
    let rate = |g: Option<f64>| g.map_or("none".into(), |g| format!("{g:.4} req/s"));
    if let Some(best) = a.goodputs.first().filter(|r| r.goodput_rps.is_some()) {
        let _ = writeln!(
            o,
            "answer: {}, max tokens {}: {} on 1 GPU ({}; {:.1}% of requests served whole)",
            policy_text(best.policy),
            limit_text(best.max_tokens),
            rate(best.goodput_rps),
            best.method,
            100.0 * best.served_whole_fraction
        );
    }
    let body: Vec<Vec<String>> = a
        .goodputs
        .iter()
        .take(rows)
        .map(|r| {
            vec![
                policy_text(r.policy),
                limit_text(r.max_tokens),
                format!("{:.1}%", 100.0 * r.served_whole_fraction),
                rate(r.goodput_rps),
                r.goodput_at_fit_upper_rps
                    .map_or("-".into(), |g| format!("{g:.4} req/s")),
                r.method.to_string(),
            ]
        })
        .collect();
    if !body.is_empty() {
        let _ = writeln!(
            o,
            "goodput on 1 GPU, largest first ({} of {}):",
            body.len(),
            a.goodputs.len()
        );
        o.push_str(&crate::text::columns(
            &[
                "policy",
                "max tokens",
                "served whole",
                "goodput",
                "at fit's 95% upper",
                "method",
            ],
            &body,
        ));
    }
    for n in &a.notes {
        let _ = writeln!(o, "note: {n}");
    }
    let _ = writeln!(
        o,
        "goodputs of {} configurations in {:.2} s",
        a.goodputs.len(),
        a.elapsed_s
    );
    o
}

/// How requests reach the GPUs, for each kind of policy searched.
pub(super) fn routing(policies: &[PlanPolicy], rule: sim::routing::Routing, trace: bool) -> String {
    let mut v = Vec::new();
    if policies
        .iter()
        .any(|p| !matches!(p, PlanPolicy::Continuous { .. }))
    {
        v.push(match rule {
            sim::routing::Routing::Random if trace => "one request at a time and dynamic batching: the trace's requests split at random over the n GPUs (simulated)",
            sim::routing::Routing::Random => "one request at a time and dynamic batching: random split, each of n GPUs sees a Poisson stream of R/n (round robin and join-shortest-queue do at least as well)",
            sim::routing::Routing::RoundRobin => "one request at a time and dynamic batching: round robin over the n GPUs (simulated for n > 1)",
            sim::routing::Routing::ShortestQueue => "one request at a time and dynamic batching: join-shortest-queue over the n GPUs (simulated for n > 1)",
        });
    }
    if policies
        .iter()
        .any(|p| matches!(p, PlanPolicy::Continuous { .. }))
    {
        v.push("continuous batching: n data-parallel engines behind vLLM's router (least 4·waiting + running)");
    }
    v.join("; ")
}

fn policy_text(p: PlanPolicy) -> String {
    match p {
        PlanPolicy::Single => "one request at a time".into(),
        PlanPolicy::Dynamic { cap } => format!("dynamic batching, cap {cap}"),
        PlanPolicy::Continuous { max_num_seqs } => {
            format!("continuous batching, max_num_seqs {max_num_seqs}")
        }
    }
}

fn limit_text(l: Option<f64>) -> String {
    l.map_or("no limit".into(), |l| format!("{l} tokens"))
}

/// The first `rows` feasible configurations as a table: header and cells (units in the cells).
pub fn feasible_table(a: &PlanAnswer, rows: usize) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec![
        "GPUs".to_string(),
        "policy".into(),
        "max tokens".into(),
        "served whole".into(),
        "busy/GPU".into(),
    ];
    header.extend(a.slos.iter().cloned());
    let body: Vec<Vec<String>> = a
        .feasible
        .iter()
        .take(rows)
        .map(|c| {
            let mut r = vec![
                c.gpus.to_string(),
                policy_text(c.policy),
                limit_text(c.max_tokens),
                format!("{:.1}%", 100.0 * c.served_whole_fraction),
                format!("{:.3}", c.utilisation),
            ];
            r.extend(c.slos.iter().map(|s| {
                let (v, h) = (s.value_s.value, s.value_s.half_width);
                match s.method {
                    Method::Simulation if h.is_finite() => format!("{v:.3} ± {h:.3} s (sim)"),
                    // One replay of a trace: the trace's own value, no interval.
                    Method::Simulation => format!("{v:.3} s (sim)"),
                    m => format!("{v:.3} s ({m})"),
                }
            }));
            r
        })
        .collect();
    (header, body)
}

/// The human-readable answer.
pub fn render(a: &PlanAnswer, rows: usize) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "capacity plan: tokens {}, {} req/s, SLOs {}",
        a.tokens,
        a.rate_rps,
        a.slos.join(", ")
    );
    let _ = writeln!(o, "routing: {}", a.routing);
    if let Some(c) = &a.continuous {
        let _ = writeln!(o, "continuous batching: {c}");
    }
    match a.min_gpus {
        Some(n) => {
            let b = &a.feasible[0];
            let _ = writeln!(
                o,
                "answer: {n} GPU(s), {}, max tokens {} ({:.1}% of requests served whole)",
                policy_text(b.policy),
                limit_text(b.max_tokens),
                100.0 * b.served_whole_fraction
            );
        }
        None => {
            let _ = writeln!(
                o,
                "answer: none of the {} configurations searched",
                a.evaluated
            );
        }
    }
    if !a.feasible.is_empty() {
        let (header, body) = feasible_table(a, rows);
        let h: Vec<&str> = header.iter().map(String::as_str).collect();
        let _ = writeln!(
            o,
            "feasible configurations, cheapest first ({} of {}):",
            a.feasible.len(),
            a.evaluated
        );
        o.push_str(&crate::text::columns(&h, &body));
    }
    for g in &a.goodput {
        let _ = writeln!(
            o,
            "goodput: {} GPU(s), {}, max tokens {}: {:.4} req/s ({}){}",
            g.gpus,
            policy_text(g.policy),
            limit_text(g.max_tokens),
            g.goodput_rps,
            g.method,
            match (g.goodput_at_fit_upper_rps, &g.fit_upper_note) {
                (Some(h), _) => format!("; {h:.4} req/s at the fit's 95% upper coefficients"),
                (None, Some(why)) => format!("; no capacity band: {why}"),
                (None, None) => String::new(),
            }
        );
    }
    for n in &a.notes {
        let _ = writeln!(o, "note: {n}");
    }
    let _ = writeln!(
        o,
        "searched {} configurations in {:.2} s",
        a.evaluated, a.elapsed_s
    );
    o
}
