//! Token-length distributions and the queueing models of tokenq.
//!
//! Specification: `MATH.md` (shared with the project). Every public result type says which
//! [`Method`] produced it: an exact value, a bound, an approximation or a simulation.

pub mod batch;
pub mod dist;
pub mod impatience;
pub mod mg1;
pub mod numeric;
pub mod token_limit;

use serde::{Deserialize, Serialize};

/// How a number was obtained. Every model result carries one, and the CLI prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Exact up to floating point and a stated numerical tolerance.
    Exact,
    /// A proven (or, where stated, heuristic) upper bound.
    Bound,
    /// An approximation whose error is not controlled (e.g. De Kok–Tijms interpolation).
    Approximation,
    /// An estimate from the event-driven simulator, with a confidence interval.
    Simulation,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Exact => "exact",
            Method::Bound => "bound",
            Method::Approximation => "approximation",
            Method::Simulation => "simulation",
        })
    }
}
