//! What a Stampede run is made of: the scenario file and its validation, load models and how
//! they are split among workers, the request drivers, and the recorder they write into.
//!
//! Neither the master nor the worker is imported here; both use this crate. It does no
//! networking of its own except inside drivers, which send the requests under test.
//!
//! # Layout
//! Listed from the top down: each module uses only those below it.
//! - [`scenario`]: the scenario file (TOML) as a whole and the validated [`ScenarioConfig`],
//!   with errors naming file, line and field; the sent-to-workers assignment.
//! - [`kinds`]: the registry of scenario kinds ([`Kind`]): per kind, its table, checks,
//!   timeout, catalog, record streams and driver.
//! - [`driver`]: the [`Driver`] and [`Session`] traits and the drivers (`http`, `llm`,
//!   `download`, `priority`), each with its kind's table of the scenario file.
//! - [`model`]: the parts every scenario shares (target, load, `[http]`, `[tls]`, thresholds,
//!   sweeps), their checks and command-line overrides.
//! - [`load`]: load models (closed, open, stages), one worker's [`LoadPlan`], and [`split`].
//! - [`llm`]: LLM protocol parts for the `llm` driver: SSE, backends, prompts, tokens, timings.
//! - [`recorder`]: per-name HDR histograms, counters and failures, taken once per interval.
//! - [`report`]: report shapes drivers own (`llm`, downloads, connections) from generic figures.
//! - [`spec`]: what each driver figure is ([`spec::MetricSpec`]) and how sinks show it.
//! - [`threshold`]: k6-style pass/fail criteria.
//! - [`tls`]: the `[tls]` table, the drivers' rustls client, and TLS failure kinds.
//! - [`units`]: human units (`30s`, `10k`, `250/s`).

pub mod driver;
pub mod kinds;
pub mod llm;
pub mod load;
pub mod model;
pub mod recorder;
pub mod report;
pub mod scenario;
pub mod spec;
pub mod threshold;
pub mod tls;
pub mod units;

pub use driver::{Call, Driver, RequestInfo, Session};
pub use kinds::Kind;
pub use load::{Arrival, LoadModel, LoadPlan, UserMode, split};
pub use model::{
    BUILTIN_TARGETS, Overrides, PlacementFile, ScenarioError, Sweep, SweepFile, Target,
    WorkerTypeFile,
};
pub use recorder::{Failure, METRIC_LATENCY, RecordStream, Recorder};
pub use scenario::{ScenarioConfig, ScenarioFile};
pub use threshold::Threshold;
