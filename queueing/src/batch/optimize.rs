//! Optimal batch size (docs/models.md §6 "Optimal K", §7, §10 item 16; paper eq 24–25).
//!
//! * speed: `K_v = argmax_{K ≤ Kmax} K/E[T_K]` (eq 24);
//! * fixed batching: the feasible `K` (`λE[T_K] < K`) minimising latency (default) or wait, by
//!   the exact chain (random `T_K`) or the paper's roots formula (`T_K := E[T_K]`). The search
//!   stops early using the lower bound `latency ≥ (K − 1)/(2λ) + E[T_K]` (a request is the
//!   `j`-th of its batch with `j` uniform on `1..K` and waits at least for the `K − j` later
//!   arrivals), which increases with `K`;
//! * dynamic (or elastic) batching: the cap `K` minimising latency or wait by exact chains; the
//!   search stops once `P(X ≥ K) < 1e-12` (the cap no longer binds).

use super::chain::{ChainOptions, solve_dynamic, solve_fixed};
use super::llm::{Elastic, LlmBatch, Padded, PaddedTreatment};
use super::roots::fixed_roots;
use super::{BatchError, check_batch, check_rate};
use crate::Method;

/// Probability below which a cap is considered never to bind.
pub const CAP_BINDS_TOL: f64 = 1e-12;

/// What to optimise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// Mean latency (wait + own processing).
    Latency,
    /// Mean wait to batch start.
    Wait,
    /// Inference speed `K/E[T_K]`.
    Speed,
}

/// The speed optimum.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SpeedOptimum {
    /// `K_v`.
    pub k: usize,
    /// `v(K_v)` (req/s).
    pub speed: f64,
    /// Whether `K_v = Kmax` (speed still increasing at the end of the range).
    pub at_range_end: bool,
}

/// Speed-optimal batch size over `1..=kmax`.
pub fn speed_optimum(model: &LlmBatch, kmax: usize) -> Result<SpeedOptimum, BatchError> {
    check_batch(kmax)?;
    let (k, speed) = model.speed_optimum(kmax);
    Ok(SpeedOptimum {
        k,
        speed,
        at_range_end: k == kmax,
    })
}

/// One candidate `K` (seconds).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Candidate {
    /// Batch size or cap.
    pub k: usize,
    /// Mean wait (s).
    pub wait_s: f64,
    /// Mean latency (s).
    pub latency_s: f64,
}

/// Best fixed batch size.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FixedChoice {
    /// The optimum.
    pub best: Candidate,
    /// How the candidates were evaluated.
    pub method: Method,
    /// Every candidate evaluated, ascending `K` (infeasible and pruned `K` left out).
    pub candidates: Vec<Candidate>,
    /// Largest `K` evaluated before the lower bound ruled out the rest.
    pub searched_up_to: usize,
    /// Stable sizes whose chain did not converge (ρ within a hair of 1): left out of the
    /// candidates, since their latency is far above any converged candidate's.
    pub not_converged: Vec<usize>,
}

/// Best cap for dynamic (or elastic) batching.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CapChoice {
    /// The optimum.
    pub best: Candidate,
    /// Exact (padded) or approximation (elastic gamma closure).
    pub method: Method,
    /// Every cap evaluated.
    pub candidates: Vec<Candidate>,
    /// Whether the search stopped because the cap no longer binds (larger caps are equivalent).
    pub cap_stops_binding: bool,
    /// Stable caps whose chain did not converge (ρ within a hair of 1): left out of the
    /// candidates, since their latency is far above any converged candidate's.
    pub not_converged: Vec<usize>,
}

fn pick(c: &[Candidate], objective: Objective) -> Option<Candidate> {
    let key = |x: &Candidate| match objective {
        Objective::Wait => x.wait_s,
        _ => x.latency_s,
    };
    c.iter().min_by(|a, b| key(a).total_cmp(&key(b))).cloned()
}

/// Why no candidate is left: every size unstable, or the stable ones all within a hair of ρ = 1.
fn no_candidate(model: &LlmBatch, lambda: f64, kmax: usize, not_converged: &[usize]) -> BatchError {
    if not_converged.is_empty() {
        return no_feasible(model, lambda, kmax);
    }
    let (_, v) = model.speed_optimum(kmax);
    BatchError::NotConverged {
        why: format!(
            "the chain of every stable batch size (K = {}) is too long for its truncation at \
             λ = {lambda:.6} req/s (ρ = {:.4} at the fastest K): too close to instability; lower the \
             arrival rate",
            ranges(not_converged),
            lambda / v
        ),
    }
}

/// `[1, 2, 3, 5, 7, 8]` as `1–3, 5, 7–8`.
pub fn ranges(ks: &[usize]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ks.len() {
        let mut j = i;
        while j + 1 < ks.len() && ks[j + 1] == ks[j] + 1 {
            j += 1;
        }
        out.push(if j > i {
            format!("{}–{}", ks[i], ks[j])
        } else {
            ks[i].to_string()
        });
        i = j + 1;
    }
    out.join(", ")
}

fn no_feasible(model: &LlmBatch, lambda: f64, kmax: usize) -> BatchError {
    let (k, v) = model.speed_optimum(kmax);
    BatchError::Unstable {
        rho: lambda / v,
        max_rate: v,
        what: format!("no K ≤ {kmax} is stable; the fastest is K = {k}"),
    }
}

/// The fixed batch size `K ≤ kmax` minimising `objective` (latency or wait).
pub fn optimize_fixed(
    model: &LlmBatch,
    lambda: f64,
    kmax: usize,
    objective: Objective,
    treatment: PaddedTreatment,
    opts: &ChainOptions,
) -> Result<FixedChoice, BatchError> {
    check_rate(lambda)?;
    check_batch(kmax)?;
    let svc = Padded {
        llm: model,
        treatment,
    };
    let exact_chain = treatment == PaddedTreatment::Random;
    let mut cands: Vec<Candidate> = Vec::new();
    let mut not_converged = Vec::new();
    let mut searched = 0;
    for k in 1..=kmax {
        let t = model.padded_moments(k).0;
        let lower = (k as f64 - 1.0) / (2.0 * lambda);
        if let Some(best) = pick(&cands, objective) {
            let bound = match objective {
                Objective::Wait => lower,
                _ => lower + t,
            };
            let cur = match objective {
                Objective::Wait => best.wait_s,
                _ => best.latency_s,
            };
            if bound > cur {
                break;
            }
        }
        searched = k;
        if lambda * t >= k as f64 {
            continue;
        }
        let (w, l) = if exact_chain {
            match solve_fixed(&svc, lambda, k, opts) {
                Ok(s) => (s.wait_s, s.latency_s),
                Err(BatchError::NotConverged { .. }) => {
                    not_converged.push(k);
                    continue;
                }
                Err(e) => return Err(e),
            }
        } else {
            let r = fixed_roots(lambda, k, t)?;
            (r.wait_s, r.latency_s)
        };
        cands.push(Candidate {
            k,
            wait_s: w,
            latency_s: l,
        });
    }
    let best =
        pick(&cands, objective).ok_or_else(|| no_candidate(model, lambda, kmax, &not_converged))?;
    let deterministic = model.tokens.is_constant();
    Ok(FixedChoice {
        best,
        method: if exact_chain || deterministic {
            Method::Exact
        } else {
            Method::Approximation
        },
        candidates: cands,
        searched_up_to: searched,
        not_converged,
    })
}

/// The cap `K ≤ kmax` minimising `objective` for dynamic (`elastic = false`) or elastic batching.
pub fn optimize_cap(
    model: &LlmBatch,
    lambda: f64,
    kmax: usize,
    objective: Objective,
    elastic: bool,
    opts: &ChainOptions,
) -> Result<CapChoice, BatchError> {
    check_rate(lambda)?;
    check_batch(kmax)?;
    let padded = Padded {
        llm: model,
        treatment: PaddedTreatment::Random,
    };
    let el = Elastic { llm: model };
    let mut cands = Vec::new();
    let mut not_converged = Vec::new();
    let mut stops = false;
    for k in 1..=kmax {
        let m = if elastic {
            model.elastic_moments(k).0
        } else {
            model.padded_moments(k).0
        };
        if lambda * m >= k as f64 {
            continue;
        }
        let solved = if elastic {
            solve_dynamic(&el, lambda, Some(k), opts)
        } else {
            solve_dynamic(&padded, lambda, Some(k), opts)
        };
        let s = match solved {
            Ok(s) => s,
            Err(BatchError::NotConverged { .. }) => {
                not_converged.push(k);
                continue;
            }
            Err(e) => return Err(e),
        };
        // P(X ≥ K + 1): the cap would bind for a larger K only in these states.
        let binds: f64 =
            s.pi.iter()
                .enumerate()
                .filter(|(i, _)| s.first_state + i > k)
                .map(|(_, p)| p)
                .sum();
        cands.push(Candidate {
            k,
            wait_s: s.wait_s,
            latency_s: s.latency_s,
        });
        if binds < CAP_BINDS_TOL {
            stops = true;
            break;
        }
    }
    let best =
        pick(&cands, objective).ok_or_else(|| no_candidate(model, lambda, kmax, &not_converged))?;
    Ok(CapChoice {
        best,
        method: if elastic && !model.tokens.is_constant() {
            Method::Approximation
        } else {
            Method::Exact
        },
        candidates: cands,
        cap_stops_binding: stops,
        not_converged,
    })
}

#[cfg(test)]
mod tests {
    use super::ranges;

    #[test]
    fn ranges_collapse_runs() {
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[4]), "4");
        assert_eq!(ranges(&[1, 2, 3, 5, 7, 8]), "1–3, 5, 7–8");
    }
}
