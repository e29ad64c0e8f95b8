//! Request drivers: what one request of a scenario is, and how to send it.
//!
//! The worker's engine owns the pacing (when to send, how many users); a driver owns the
//! protocol (what to send, how to read the answer, what to record). A new scenario kind is a new
//! module here plus a line in [`build`], `validate` and [`KINDS`]; nothing in the protocol,
//! the worker's engine or the master changes. Drivers never decide when requests go out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::SmallRng;

use crate::model::{ScenarioConfig, ScenarioFile};
pub use crate::recorder::RecordStream;
use crate::recorder::Recorder;
use crate::report::Report;
use crate::spec::{MetricSpec, Specs};

pub mod connections;
pub mod download;
pub mod grpc;
pub mod h1;
pub mod h2;
pub mod http;
pub mod llm;
pub mod priority;
pub mod transport;

/// The scenario kinds (`kind = "..."`) this build knows.
pub const KINDS: &[&str] = &["http", "llm", "download", "priority"];

/// A boxed future, as sessions return from [`Session::call`].
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One kind of request as reports show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// Locust's "Type" column: the HTTP method, or the driver's word for it.
    pub kind: String,
    /// The request's name, unique in the scenario.
    pub name: String,
}

/// A driver: built once per run on each worker, shared by all users.
pub trait Driver: Send + Sync + 'static {
    /// The request names, in the index order the driver records them with.
    fn requests(&self) -> &[RequestInfo];

    /// Histogram metrics the driver records besides latency, in its recorder index order: what
    /// each is and how reports show it.
    fn metrics(&self) -> &'static [MetricSpec] {
        &[]
    }

    /// Counters the driver records besides requests, failures and bytes, in index order.
    fn counters(&self) -> &'static [MetricSpec] {
        &[]
    }

    /// Per-request record streams the driver writes rows to with [`Recorder::row`], in index
    /// order (none by default). The master gets the same list from [`record_streams`].
    fn record_streams(&self) -> &[RecordStream] {
        &[]
    }

    /// A new session: what one user (or one in-flight slot of the open model) keeps between
    /// requests, such as its connection.
    fn session(&self) -> Box<dyn Session>;

    /// An arrival the engine drew but did not send (too many requests in flight), for
    /// `request` as in [`Call::request`]. A driver that counts arrivals per request counts it
    /// here; nothing by default (the engine counts every drop for the run either way).
    fn dropped(&self, _request: Option<usize>, _recorder: &Recorder) {}
}

/// What a driver needs for one call.
pub struct Call<'a> {
    /// The user's random source (request choice, payloads).
    pub rng: &'a mut SmallRng,
    /// Where to record the outcome.
    pub recorder: &'a Recorder,
    /// When the request was due: latency counts from here, so a late send shows as latency.
    pub scheduled: Instant,
    /// The same instant, as time from the start of the run.
    pub elapsed: std::time::Duration,
    /// The request this arrival is for, when the load plan fixes a rate per request (a
    /// [`crate::load::Mix`]); `None`: the driver picks (by weight, in turn, ...).
    pub request: Option<usize>,
}

/// One user's state in a driver.
pub trait Session: Send {
    /// Send one request (picked by the driver), wait for its answer and record it. Never fails:
    /// a failed request is recorded as a failure.
    fn call<'a>(&'a mut self, call: Call<'a>) -> CallFuture<'a>;
}

/// Why a driver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The built-in target was not replaced by an address before building.
    #[error("target `{0}` must be started and given as a URL before the driver is built")]
    UnresolvedTarget(String),
    /// The scenario kind has no driver in this build.
    #[error("unknown scenario kind `{0}`")]
    UnknownKind(String),
    /// The scenario's driver settings are invalid.
    #[error("{0}")]
    Invalid(String),
}

/// Build the driver of a scenario.
pub fn build(config: &ScenarioConfig) -> Result<Arc<dyn Driver>, DriverError> {
    match config.kind.as_str() {
        "http" => Ok(Arc::new(http::HttpDriver::new(config)?)),
        "llm" => Ok(Arc::new(llm::LlmDriver::new(config)?)),
        "download" => Ok(Arc::new(download::DownloadDriver::new(config)?)),
        "priority" => Ok(Arc::new(priority::PriorityDriver::new(config)?)),
        other => Err(DriverError::UnknownKind(other.to_string())),
    }
}

/// The request names and kinds of a scenario, without building a driver (for the master).
pub fn catalog(config: &ScenarioConfig) -> Vec<RequestInfo> {
    match config.kind.as_str() {
        "http" => http::catalog(&config.file),
        "llm" => llm::catalog(&config.file),
        "download" => download::catalog(&config.file),
        "priority" => priority::catalog(&config.file),
        _ => Vec::new(),
    }
}

/// The figures a scenario kind's driver records, without building a driver (for the master,
/// whose sinks iterate them). [`Specs::NONE`] for an unknown kind.
pub fn specs(kind: &str) -> Specs {
    // A kind adds its line here, with the same lists its driver's `metrics` and `counters`
    // return.
    match kind {
        "http" => http::SPECS,
        "llm" => llm::SPECS,
        "download" => download::SPECS,
        "priority" => priority::SPECS,
        _ => Specs::NONE,
    }
}

/// Every report shape of this build's kinds, in the order the end-of-run table shows their
/// sections. Every report is asked for every run: one whose figures a run lacks writes
/// `null` and no lines.
pub fn reports() -> &'static [Report] {
    &[
        connections::REPORT,
        crate::llm::report::REPORT,
        download::REPORT,
    ]
}

/// The record streams a scenario's driver writes, without building a driver (for the master,
/// which writes each stream's header and appends the rows workers send).
pub fn record_streams(config: &ScenarioConfig) -> Vec<RecordStream> {
    match config.kind.as_str() {
        "llm" => llm::record_streams(&config.file),
        "priority" => priority::record_streams(),
        _ => Vec::new(),
    }
}

/// The rates per request of a scenario whose kind fixes them (a [`crate::load::Mix`]), from
/// its validated load and duration; `Err((field, message))`.
pub(crate) fn mix(
    file: &ScenarioFile,
    load: &crate::load::LoadModel,
    duration: std::time::Duration,
) -> Result<Option<crate::load::Mix>, (String, String)> {
    // A kind with a mix adds its line here.
    match file.kind.as_str() {
        "priority" => priority::mix(file, load, duration).map(Some),
        _ => Ok(None),
    }
}

/// The kinds other than `http` whose own table (`[llm]`, `[download]`, `[priority]`) the file
/// has, in [`KINDS`] order: what its `kind` was likely meant to be.
pub(crate) fn kinds_with_table(file: &ScenarioFile) -> Vec<&'static str> {
    // A kind with a table of its own adds its line here.
    let tables = [
        ("llm", file.llm.is_some()),
        ("download", file.download.is_some()),
        ("priority", file.priority.is_some()),
    ];
    tables
        .into_iter()
        .filter_map(|(kind, present)| present.then_some(kind))
        .collect()
}

/// Kind-specific checks of a scenario file; `Err((field, message))`.
pub(crate) fn validate(file: &ScenarioFile) -> Result<(), (String, String)> {
    match file.kind.as_str() {
        "http" => http::validate(file),
        "llm" => llm::validate(file),
        "download" => download::validate(file),
        "priority" => priority::validate(file),
        _ => Ok(()),
    }
}
