//! The scenario as a whole: the file as written ([`ScenarioFile`]: the common parts of
//! [`crate::model`] and the tables of each kind, owned by its driver) and the validated
//! [`ScenarioConfig`] that the rest of Stampede uses ("parse, don't validate").
//!
//! Called by the CLI (`check`, `run`, `master`) and by workers, which receive the scenario as
//! TOML text. Every error names the file, line and field. Command-line overrides are applied to
//! the file form and validated again, so a flag can never produce a config a file could not.
//! What depends on the kind is asked of its registry entry ([`crate::kinds`]).
//!
//! # Layout
//! - this file: the two types, and what a config answers through its kind's entry.
//! - [`parse`]: reading, overriding and validating a scenario.
//! - [`assignment`]: the text the master sends to workers, and reading it back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::driver::download::DownloadFile;
use crate::driver::http::RequestFile;
use crate::driver::llm::LlmFile;
use crate::driver::priority::PriorityFile;
use crate::driver::{Driver, DriverError, RequestInfo};
use crate::kinds::{Kind, Parts};
use crate::llm::Slo;
use crate::load::{LoadModel, Mix};
use crate::model::{
    Common, HttpFile, LoadFile, PlacementFile, Sweep, SweepFile, Target, WorkerTypeFile,
};
use crate::recorder::RecordStream;
use crate::threshold::Threshold;
use crate::tls::TlsFile;
use crate::units::HumanDuration;

pub mod assignment;
pub mod parse;
#[cfg(test)]
mod tests;

/// The scenario file as written. Every table refuses unknown fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Shown in reports and used as the `scenario` label of metrics.
    pub name: String,
    /// Base URL of the system under test (`http://host:port`), or `builtin:http` to have
    /// Stampede start its own target.
    pub target: String,
    /// Which request driver generates the requests. `http` by default; a name no kind has is
    /// an error when the file is parsed.
    #[serde(default)]
    pub kind: Kind,
    /// How long the run lasts (stages: their sum, unless this is given). 30 s by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<HumanDuration>,
    /// The load model.
    pub load: LoadFile,
    /// Settings of the HTTP connections (`http`, `llm` and `download` kinds): timeout,
    /// headers, version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpFile>,
    /// TLS settings for an `https://` target: roots to trust, client certificate, SNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFile>,
    /// Settings of the `llm` driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmFile>,
    /// Settings of the `download` driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<DownloadFile>,
    /// Settings of the `priority` driver (the MLPerf-LoadGen priority runner's 9-class traffic over
    /// gRPC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<PriorityFile>,
    /// Latency objectives of one request (`llm`): a request meeting all of them counts
    /// towards goodput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<Slo>,
    /// The requests of an `http` scenario, picked at random by weight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<RequestFile>,
    /// A sweep: the scenario once per rate or users value, each step a run of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepFile>,
    /// Pass/fail criteria on the final figures, e.g. `p99_ms = "< 250"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub thresholds: BTreeMap<String, String>,
    /// What `stampede placement record` needs to make rows of this scenario's runs: the model
    /// the target serves and each node's device. Runs ignore it, and it is not sent to workers
    /// (counts past 2^63 have no TOML integer form).
    #[serde(default, skip_serializing)]
    pub placement: Option<PlacementFile>,
    /// The worker type an `llm` scenario measures (the `WorkerType` of ig-wva's Performance Profile
    /// Generator), written in every row of `stampede profile sweep`. Runs ignore it, and it is not
    /// sent to workers.
    #[serde(default, skip_serializing)]
    pub worker_type: Option<WorkerTypeFile>,
}

impl ScenarioFile {
    /// The file's parts as a kind's entry reads them, with the common parts validation has
    /// made (`common`).
    pub fn parts<'a>(&'a self, common: Common<'a>) -> Parts<'a> {
        Parts {
            common,
            requests: &self.requests,
            llm: self.llm.as_ref(),
            slo: self.slo,
            download: self.download.as_ref(),
            priority: self.priority.as_ref(),
        }
    }
}

/// A validated scenario, ready to split and run.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioConfig {
    /// The file form it came from (with overrides applied); what the master sends to workers.
    pub file: ScenarioFile,
    /// The scenario's name.
    pub name: String,
    /// The target: a base URL, or `builtin:<kind>`.
    pub target: Target,
    /// The driver kind (`http`).
    pub kind: Kind,
    /// How long the run lasts.
    pub duration: Duration,
    /// The validated load model.
    pub load: LoadModel,
    /// Rates per request, for kinds that fix them (`priority`: one process per class).
    pub mix: Option<Mix>,
    /// Validated thresholds.
    pub thresholds: Vec<Threshold>,
    /// The sweep, when the scenario (or the command line) asks for one.
    pub sweep: Option<Sweep>,
}

impl ScenarioConfig {
    /// The parts every kind shares, as drivers read them.
    pub fn common(&self) -> Common<'_> {
        Common {
            target: &self.target,
            duration: self.duration,
            load: &self.load,
            http: self.file.http.as_ref(),
            tls: self.file.tls.as_ref(),
        }
    }

    /// The scenario's parts as its kind's registry entry reads them.
    pub fn parts(&self) -> Parts<'_> {
        self.file.parts(self.common())
    }

    /// The request names and types, in the driver's index order, without building a driver
    /// (for the master).
    pub fn catalog(&self) -> Vec<RequestInfo> {
        (self.kind.entry().catalog)(&self.parts())
    }

    /// The record streams the scenario's driver writes, without building it (for the master,
    /// which writes each stream's header and appends the rows workers send).
    pub fn record_streams(&self) -> Vec<RecordStream> {
        (self.kind.entry().record_streams)(&self.parts())
    }

    /// Build the scenario's driver (once per run on each worker). The target must be a URL.
    pub fn driver(&self) -> Result<Arc<dyn Driver>, DriverError> {
        (self.kind.entry().build)(&self.parts())
    }

    /// How long one request may take at most, by the driver's settings: what a run's end waits
    /// for in-flight requests.
    pub fn request_timeout(&self) -> Duration {
        (self.kind.entry().timeout)(&self.parts())
    }

    /// When the run ends at the latest: its duration, or for a mix under LoadGen's end rule
    /// ([`crate::load::Until`]) the hard end that rule allows.
    pub fn limit(&self) -> Duration {
        self.mix
            .as_ref()
            .and_then(|m| m.until.as_ref())
            .map_or(self.duration, |u| u.max_duration.max(self.duration))
    }

    /// The random seed that makes a run's random draws repeatable, if the scenario has one: an llm
    /// scenario's `[llm] seed` (0 unless set), as vLLM's bench and guidellm seed theirs. The
    /// master derives the run's seed from it and each worker its own from that and its slot,
    /// so every user draws the same prompts (and the open model the same arrivals) each run.
    pub fn sampling_seed(&self) -> Option<u64> {
        self.file.llm.as_ref().map(|llm| llm.seed)
    }
}
