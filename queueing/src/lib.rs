//! Token-length distributions and the queueing models of tokenq.
//!
//! Specification: docs/models.md. Every public result type says which
//! [`Method`] produced it: an exact value, a bound, an approximation or a simulation.

pub mod batch;
pub mod dist;
pub mod impatience;
pub mod mg1;
pub mod numeric;
pub mod token_limit;
pub mod waiting;

pub use tokenq_core::Method;
