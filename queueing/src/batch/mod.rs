//! Batch-service queueing models of LLM inference (docs/models.md §4–§8; paper §IV, eqs 14–26).
//!
//! Poisson(λ) requests are served in batches. A batch of `b` requests takes `T_b`; for an LLM the
//! padded batch time is `T_b = t1(b) + t2(b)·M_b` with `t1(b) = k1·b + k2` (first token),
//! `t2(b) = k3·b + k4` (each later token) and `M_b` the largest decode length in the batch
//! (docs/models.md §5, eq 18). Policies:
//!
//! * **dynamic** (§4, Inoue 2021): a free server takes every waiting request (optionally at most
//!   `K`, §7); Inoue's closed-form upper bound `min(φ0, φ1)` (eq 16) and the exact embedded chain;
//! * **fixed** (§6, M/D^K/1, Chang 2006): the server starts only with exactly `K` requests; the
//!   roots formula (deterministic `T_K`, the paper's reading of eq 25) and the exact chain;
//! * **elastic** (§8, eq 26): each request completes at its own length, the next batch starts
//!   after the whole batch.
//!
//! Every result carries a [`crate::Method`]. Sub-modules:
//! [`inoue`] (eq 16 and its Φ(π0) structure), [`service`] (the batch-time law seen by a chain),
//! [`chain`] (embedded Markov chains: truncation, GTH / power-iteration solvers, metrics),
//! [`roots`] (the M/D^K/1 roots formula), [`llm`] (moments and quadrature of the LLM batch time),
//! [`policy`] (one call per policy with all its estimates) and [`optimize`] (batch size).

pub mod chain;
pub mod inoue;
pub mod llm;
pub mod optimize;
pub mod policy;
pub mod roots;
pub mod service;

pub use chain::{ChainOptions, ChainSolution, Solver, solve_dynamic, solve_fixed};
pub use inoue::{InoueBound, inoue_bound, inoue_phi};
pub use llm::{BatchTime, Elastic, LlmBatch, Padded, PaddedTreatment, TokenLaw, integer_tokens};
pub use optimize::{
    Candidate, CapChoice, FixedChoice, Objective, SpeedOptimum, optimize_cap, optimize_fixed,
    speed_optimum,
};
pub use policy::{BatchConfig, BatchReport, Estimate, Policy, analyze};
pub use roots::{FixedRoots, fixed_roots};
pub use service::{BatchService, LinearDeterministic, TimeLaw};

/// Errors of the batch models. Each message is one line that says what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    /// A parameter out of its domain (negative coefficient, zero batch size, …).
    #[error("invalid {name} = {value}: {why}")]
    Invalid {
        name: &'static str,
        value: f64,
        why: String,
    },
    /// The queue is unstable at this arrival rate.
    #[error(
        "unstable: ρ = {rho:.4} ≥ 1 ({what}); the largest stable arrival rate is {max_rate:.6} req/s"
    )]
    Unstable {
        rho: f64,
        max_rate: f64,
        what: String,
    },
    /// The policy is unstable at every positive arrival rate.
    #[error("unstable at every arrival rate: {why}")]
    NeverStable { why: String },
    /// A numerical solver did not reach its tolerance; no number is returned.
    #[error("did not converge: {why}")]
    NotConverged { why: String },
    /// The token distribution cannot be used for this model.
    #[error("token distribution: {why}")]
    Tokens { why: String },
    /// A batch-time coefficient is out of range.
    #[error(transparent)]
    Parameter(#[from] tokenq_core::error::InvalidParameter),
}

pub(crate) fn check_rate(lambda: f64) -> Result<(), BatchError> {
    if !(lambda.is_finite() && lambda > 0.0) {
        return Err(BatchError::Invalid {
            name: "arrival rate",
            value: lambda,
            why: "must be a positive number of requests per second".into(),
        });
    }
    Ok(())
}

pub(crate) fn check_batch(k: usize) -> Result<(), BatchError> {
    if k == 0 {
        return Err(BatchError::Invalid {
            name: "batch size K",
            value: 0.0,
            why: "must be at least 1".into(),
        });
    }
    Ok(())
}
