//! Request drivers: what one request of a scenario is, and how to send it.
//!
//! The worker's engine owns the pacing (when to send, how many users); a driver owns the
//! protocol (what to send, how to read the answer, what to record) and its kind's table of the
//! scenario file (`[llm]`, `[download]`, ...), with that table's checks. A new scenario kind is
//! a new module here plus one line in the registry ([`crate::kinds`]); nothing in the protocol,
//! the worker's engine or the master changes. Drivers never decide when requests go out, and
//! read of the scenario only its common parts ([`crate::model::Common`]) and their own table.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use rand::rngs::SmallRng;

use crate::model::Target;
pub use crate::recorder::RecordStream;
use crate::recorder::Recorder;
use crate::spec::MetricSpec;

pub mod connections;
pub mod download;
pub mod grpc;
pub mod h1;
pub mod h2;
pub mod http;
pub mod llm;
pub mod priority;
pub mod transport;

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
    /// order (none by default). The master gets the same list from the scenario
    /// ([`crate::ScenarioConfig::record_streams`]).
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
    /// The scenario's driver settings are invalid.
    #[error("{0}")]
    Invalid(String),
}

/// The base URL of a scenario's target: a built-in target must have been started and given as
/// a URL before a driver is built.
pub(crate) fn base_url(target: &Target) -> Result<::http::Uri, DriverError> {
    match target {
        Target::Url(uri) => Ok(uri.clone()),
        Target::Builtin(kind) => Err(DriverError::UnresolvedTarget(format!("builtin:{kind}"))),
    }
}
