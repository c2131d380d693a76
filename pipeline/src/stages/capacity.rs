//! The pipeline's capacity question (`tokenq pipeline --rate R --slo …`): the planner of
//! [`crate::plan`] run on the pipeline's own coefficients and workload, its answers to
//! (a) which configurations meet every SLO at R, (b) each best one's goodput and (c) the fewest
//! GPUs, as summary sentences, a recommendation, a table and the planner's figures.

use super::*;
use crate::plan::{self, PlanAnswer, PlanConfig, PlanPolicy, Slo};

/// Simulated arrivals per batching configuration (as `tokenq plan`'s default): the planner
/// evaluates hundreds of configurations, so each gets fewer than the pipeline's checks.
pub(crate) const PLAN_SIM_REQUESTS: u64 = 100_000;
/// Poisson arrivals per replication and replications of the continuous-batching replay (as
/// `tokenq plan`'s defaults).
const PLAN_REPLAY_REQUESTS: &str = "2000";
const PLAN_REPLICATIONS: u32 = 5;
/// Goodputs computed (the best configurations).
const PLAN_GOODPUT_TOP: usize = 3;
/// Rows of the report's table of feasible configurations.
const PLAN_TABLE_ROWS: usize = 10;

/// The capacity question: SLOs that must all hold at `--rate`.
#[derive(Debug, Clone)]
pub struct CapacityQuestion {
    /// The SLOs (`--slo`).
    pub slos: Vec<Slo>,
    /// GPU counts searched, 1..=max_gpus (`--max-gpus`).
    pub max_gpus: u32,
    /// Least share of requests the limit may leave whole (`--min-served-fraction`).
    pub min_served_fraction: f64,
}

/// The planner's configuration and answer, for the report.
pub(crate) struct CapacityAnalysis {
    pub config: PlanConfig,
    pub answer: PlanAnswer,
}

/// Batch caps searched: 1, 2, 4, … up to the pipeline's `--max-batch`.
fn caps(max_batch: usize) -> Vec<u32> {
    let top = u32::try_from(max_batch).unwrap_or(u32::MAX);
    let mut v: Vec<u32> = std::iter::successors(Some(1u32), |k| k.checked_mul(2))
        .take_while(|&k| k <= top)
        .collect();
    if v.last() != Some(&top) {
        v.push(top);
    }
    v
}

/// Run the planner on the coefficients the pipeline fitted or read.
pub(crate) fn capacity_analysis(
    cfg: &PipelineConfig,
    q: &CapacityQuestion,
    rate: f64,
    coeffs: &CoefficientsFile,
    coeff_path: &std::path::Path,
    notes: &mut Vec<String>,
) -> Result<CapacityAnalysis> {
    let (service, service_hi, batch) = plan::service_models(coeffs)?;
    // Continuous batching when the coefficients carry a step model and the workload names a
    // prompt-length law (e.g. sharegpt → sharegpt-input).
    let continuous = match coeffs.step_time {
        Some(_) => match plan::continuous_setup(&plan::ContinuousFlags {
            engine: crate::replay::EngineFile::default(),
            engine_config: None,
            coefficients: (coeff_path, coeffs),
            tokens: &cfg.workload_spec,
            input_tokens: None,
            requests: PLAN_REPLAY_REQUESTS,
            replications: PLAN_REPLICATIONS,
            input_law: None,
        }) {
            Ok(c) => Some(c),
            Err(e) => {
                notes.push(format!(
                    "Capacity plan: continuous batching not searched ({e:#}); tokenq plan --policy continuous takes its flags."
                ));
                None
            }
        },
        None => None,
    };
    let config = PlanConfig {
        tokens: cfg.workload.clone(),
        tokens_spec: cfg.workload_spec.clone(),
        rate,
        slos: q.slos.clone(),
        min_served_fraction: q.min_served_fraction,
        max_gpus: q.max_gpus,
        service,
        batch,
        service_hi,
        batch_hi: plan::batch_hi(coeffs),
        caps: caps(cfg.max_batch),
        limits: plan::default_limits(&cfg.workload),
        sim_requests: PLAN_SIM_REQUESTS,
        seed: cfg.seed,
        goodput_top: PLAN_GOODPUT_TOP,
        routing: sim::routing::Routing::Random,
        continuous,
        paper_policies: true,
        trace: None,
    };
    let answer = plan::plan(&config)?;
    Ok(CapacityAnalysis { config, answer })
}

fn slo_text(c: &plan::Candidate) -> String {
    c.slos
        .iter()
        .map(|s| {
            let v = &s.value_s;
            let value = if v.half_width > 0.0 {
                format!("{} ± {} s", plots::sig(v.value), plots::sig(v.half_width))
            } else {
                format!("{} s", plots::sig(v.value))
            };
            format!(
                "{} {value} ({})",
                s.slo.split("<=").next().unwrap_or(&s.slo),
                s.method
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The summary's sentences answering (a), (b) and (c).
pub(crate) fn capacity_sentences(c: &CapacityAnalysis) -> Vec<String> {
    let sig = plots::sig;
    let a = &c.answer;
    let slos = a.slos.join(", ");
    let mut out = Vec::new();
    match a.feasible.first() {
        Some(best) => {
            out.push(format!(
                "Capacity at λ = {} req/s for {slos}: (a) {} of the {} configurations searched meet every SLO; the cheapest is {} on {} GPU(s), serving {}% of requests whole: {}.",
                sig(a.rate_rps),
                a.feasible.len(),
                a.evaluated,
                plan::policy_label(best),
                best.gpus,
                sig(100.0 * best.served_whole_fraction),
                slo_text(best),
            ));
            if let Some(g) = a.goodput.first() {
                let band = g.goodput_at_fit_upper_rps.map_or(String::new(), |h| {
                    format!(
                        "; {} req/s at the upper ends of the fit's 95% intervals",
                        sig(h)
                    )
                });
                out.push(format!(
                    "(b) Its goodput, the largest total rate at which it still meets every SLO, is {} req/s ({}){band}.",
                    sig(g.goodput_rps),
                    g.method
                ));
            }
            out.push(format!(
                "(c) The fewest GPUs for {} req/s: {}.",
                sig(a.rate_rps),
                best.gpus
            ));
        }
        None => out.push(format!(
            "Capacity at λ = {} req/s for {slos}: no configuration of the {} searched (up to {} \
             GPUs) meets every SLO; see the capacity plan's notes.",
            sig(a.rate_rps),
            a.evaluated,
            c.config.max_gpus
        )),
    }
    out
}

/// The report's recommendation: the fewest GPUs, with the best configuration's SLO values and
/// goodputs as its basis.
pub(crate) fn capacity_recommendation(c: &CapacityAnalysis) -> Recommendation {
    let a = &c.answer;
    let question = format!(
        "How many GPUs, which policy and which max-token limit keep {} at {} req/s?",
        a.slos.join(", "),
        plots::sig(a.rate_rps)
    );
    let Some(best) = a.feasible.first() else {
        return Recommendation {
            question,
            answer: Quantity::new("GPUs needed", f64::NAN, "GPUs", Method::Exact).note(format!(
                "none of the {} configurations searched",
                a.evaluated
            )),
            basis: Vec::new(),
            note: a.notes.join(" "),
        };
    };
    let mut basis: Vec<Quantity> = best
        .slos
        .iter()
        .map(|s| {
            let q = Quantity::new(s.slo.clone(), s.value_s.value, "s", s.method);
            let q = if s.value_s.half_width > 0.0 {
                q.with_ci(s.value_s.half_width)
            } else {
                q
            };
            q.note(if s.met { "met" } else { "not met" })
        })
        .collect();
    basis.push(Quantity::new(
        "requests served whole",
        best.served_whole_fraction,
        "1",
        Method::Exact,
    ));
    basis.push(Quantity::new(
        "utilisation of each GPU",
        best.utilisation,
        "1",
        best.slos.first().map_or(Method::Exact, |s| s.method),
    ));
    for g in &a.goodput {
        let name = format!(
            "goodput, {} GPU(s), {}",
            g.gpus,
            plan::config_label(g.policy, g.max_tokens)
        );
        let mut q = Quantity::new(name, g.goodput_rps, "req/s", g.method);
        if let Some(h) = g.goodput_at_fit_upper_rps {
            q = q.note(format!(
                "{} req/s at the fit's 95% upper coefficients",
                plots::sig(h)
            ));
        }
        basis.push(q);
    }
    let policy = match best.policy {
        PlanPolicy::Single => "one request at a time",
        PlanPolicy::Dynamic { .. } => "dynamic batching",
        PlanPolicy::Continuous { .. } => "continuous batching",
    };
    Recommendation {
        question,
        answer: Quantity::new(
            "GPUs needed",
            f64::from(best.gpus),
            "GPUs",
            best.slos.first().map_or(Method::Exact, |s| s.method),
        )
        .note(plan::policy_label(best)),
        basis,
        note: format!(
            "Searched {} configurations ({policy} is the cheapest): policies, max-token limits \
             (the workload's p50 … p99.9 and none) and 1 to {} GPUs. Routing: {}. A simulated \
             SLO counts as met only when its 95% interval's upper end meets it. {}",
            a.evaluated,
            c.config.max_gpus,
            a.routing,
            a.notes.join(" ")
        ),
    }
}

/// The feasible configurations, cheapest first, as a report table.
pub(crate) fn capacity_table(c: &CapacityAnalysis) -> Table {
    let (columns, rows) = plan::feasible_table(&c.answer, PLAN_TABLE_ROWS);
    Table {
        caption: format!(
            "Configurations that meet every SLO at {} req/s, cheapest first ({} of {} shown).",
            plots::sig(c.answer.rate_rps),
            rows.len(),
            c.answer.feasible.len()
        ),
        columns,
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_powers_of_two_up_to_the_largest_batch() {
        assert_eq!(caps(64), vec![1, 2, 4, 8, 16, 32, 64]);
        assert_eq!(caps(48), vec![1, 2, 4, 8, 16, 32, 48]);
        assert_eq!(caps(1), vec![1]);
    }
}
