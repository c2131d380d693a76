//! The vocabulary of tokenq: the types two or more of its crates must agree on, and nothing else
//! (docs/design.md "Crates"). Peer crates (`profiler`, `fit`, `queueing`, `sim`, `reports`)
//! depend on this crate instead of on each other.
//!
//! * [`timings`] — the timings-table schema (one row per timed model step);
//! * [`coefficients`] — the coefficients file (TOML, versioned schema) that joins measurement
//!   and prediction;
//! * [`service`] — the single-request service line `S = a·n + c`, the batch time
//!   `T = t1(m) + t2(m)·max n`, and patience;
//! * [`method`] — how a number was obtained (exact, bound, approximation, simulation, …) and an
//!   estimate with its confidence interval;
//! * [`step`] — one engine iteration of continuous batching, the step-time model trait, the
//!   fitted step-time coefficients and the engine settings;
//! * [`layers`] — the one reader of per-layer kernel tables (LLMServingSim layout) and the
//!   step time composed from them.
//!
//! Light by design: serde, toml and thiserror only.

pub mod coefficients;
pub mod csv;
pub mod error;
pub mod layers;
pub mod method;
pub mod service;
pub mod step;
pub mod timings;

pub use coefficients::{CoefficientsFile, Provenance, SCHEMA_VERSION, describe_toml_error};
pub use error::CoreError;
pub use layers::TableStepModel;
pub use method::{Estimate, Method};
pub use service::{Abandonment, BatchTime, LinearService, Patience};
pub use step::{EngineConfig, StepBatch, StepFeatures, StepModel, StepTimeCoefficients};
pub use timings::{StepRow, TIMINGS_COLUMNS};
