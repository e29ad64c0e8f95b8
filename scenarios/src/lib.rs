//! What a Stampede run is made of: the scenario file and its validation, load models and how
//! they are split among workers, the request drivers, and the recorder they write into.
//!
//! Neither the master nor the worker is imported here; both use this crate. It does no
//! networking of its own except inside drivers, which send the requests under test.
//!
//! # Layout
//! - [`model`]: the scenario file (TOML) and the validated [`ScenarioConfig`], with errors
//!   naming file, line and field.
//! - [`load`]: load models (closed, open, stages), one worker's [`LoadPlan`], and [`split`].
//! - [`driver`]: the [`Driver`] and [`Session`] traits and the drivers (`http`, `llm`,
//!   `download`, `priority`).
//! - [`llm`]: LLM protocol parts for the `llm` driver: SSE, backends, prompts, tokens, timings.
//! - [`recorder`]: per-name HDR histograms, counters and failures, taken once per interval.
//! - [`report`]: report shapes drivers own (`llm`, downloads, connections) from generic figures.
//! - [`spec`]: what each driver figure is ([`spec::MetricSpec`]) and how sinks show it.
//! - [`threshold`]: k6-style pass/fail criteria.
//! - [`tls`]: the `[tls]` table, the drivers' rustls client, and TLS failure kinds.
//! - [`units`]: human units (`30s`, `10k`, `250/s`).

pub mod driver;
pub mod llm;
pub mod load;
pub mod model;
pub mod recorder;
pub mod report;
pub mod spec;
pub mod threshold;
pub mod tls;
pub mod units;

pub use driver::{Call, Driver, RequestInfo, Session};
pub use load::{Arrival, LoadModel, LoadPlan, UserMode, split};
pub use model::{
    Overrides, PlacementFile, ScenarioConfig, ScenarioError, ScenarioFile, Sweep, SweepFile,
    Target, WorkerTypeFile,
};
pub use recorder::{Failure, RecordStream, Recorder};
pub use threshold::Threshold;

/// Built-in targets a scenario may name as `builtin:<kind>`.
pub const BUILTIN_TARGETS: &[&str] = &["http", "llm", "registry", "scheduler"];

/// The latency metric's name (same as the protocol's `metric::LATENCY`).
pub const METRIC_LATENCY: &str = "latency";
