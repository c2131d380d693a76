//! From timings tables to the coefficients file (docs/design.md "Data contracts").
//!
//! * [`profile`] — timed steps, aggregation per grid point and step (median, spread), e2e curves;
//! * [`regress`] — weighted least squares, standard errors, intervals, error statistics;
//! * [`model`] — the paper's quantities (single-request line, t1(b), t2(b)) with held-out
//!   model selection, written as a [`tokenq_core::CoefficientsFile`];
//! * [`steptime`] — the continuous-batching step-time model fitted from step samples;
//! * [`import`] — real GPU data (the paper's Table I, Vidur operator profiles, LLMServingSim
//!   per-layer tables) turned into timed steps;
//! * `tables` (feature `tables`, polars) — reading Parquet/CSV timings tables.
//!
//! The schema types (timings table, coefficients file, step-time model) are `tokenq_core`'s;
//! this crate builds without polars unless `tables` is on.

pub mod error;
pub mod import;
pub mod model;
pub mod profile;
pub mod regress;
pub mod report;
pub mod steptime;
#[cfg(feature = "tables")]
pub mod tables;

pub use error::{FitError, Result};
pub use model::{FitOptions, ProfileFit, fit_e2e, fit_steps};
pub use tokenq_core::{StepRow, TIMINGS_COLUMNS};
