//! Device placement, as PEPPER's Profiler does it: learn how long a model takes on a device from
//! recorded runs, then say on which node of a cluster a model will run fastest, given each node's
//! device and its current CPU and disk usage.
//!
//! Used by `stampede placement {generate, fit, record, serve}`. It reads runs the way a user
//! does (CSV rows, a run's `summary.json`, the scenario file), never the master's internals.
//!
//! # Layout
//! - [`row`]: one recorded run as a row of the Profiler's columns; CSV reading and appending.
//! - [`law`]: runs made up from a known law, for tests and demos.
//! - [`model`]: the gradient-boosted trees, cross-validation, importances, the model file.
//! - [`record`]: rows from a finished run's `summary.json` and the scenario's `\[placement\]`.
//! - [`request`]: the body of `POST /api/profiling`, checked field by field, echoed exactly.
//! - [`prometheus`]: node CPU, disk and device from a Prometheus server, joined per node.
//! - [`server`]: the HTTP service answering `/api/profiling`.

pub mod law;
pub mod model;
pub mod prometheus;
pub mod record;
pub mod request;
pub mod row;
pub mod server;

pub use model::{Params, PlacementModel};
pub use row::{ModelSpec, NodeState, Row};
