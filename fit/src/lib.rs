//! From timings tables to the coefficients file (DESIGN.md "Contracts").
//!
//! * [`profile`] — timed steps, aggregation per grid point and step (median, spread), e2e curves;
//! * [`regress`] — weighted least squares, standard errors, intervals, error statistics;
//! * [`model`] — the paper's quantities (single-request line, t1(b), t2(b)) with held-out
//!   model selection;
//! * [`coefficients`] — the coefficients file (TOML, versioned schema): read, write, validate;
//! * [`import`] — real GPU data (the paper's Table I, Vidur operator profiles, LLMServingSim
//!   per-layer tables) turned into timed steps;
//! * `tables` (feature `tables`, polars) — reading Parquet/CSV timings tables.
//!
//! The core builds without polars: `queueing`/`sim` users only read coefficients files.

pub mod coefficients;
pub mod error;
pub mod import;
pub mod model;
pub mod profile;
pub mod regress;
pub mod report;
pub mod steptime;
#[cfg(feature = "tables")]
pub mod tables;

pub use coefficients::{CoefficientsFile, Provenance, SCHEMA_VERSION};
pub use error::{FitError, Result};
pub use model::{FitOptions, ProfileFit, fit_e2e, fit_steps};
pub use profile::{StepRow, TIMINGS_COLUMNS};
