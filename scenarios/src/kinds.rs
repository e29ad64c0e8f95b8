//! The registry of scenario kinds: every kind this build knows (`kind = "llm"`), each
//! registered in one line of the table at the end of this file with its name and its [`Entry`]:
//! its table of the scenario file, its checks, its default request timeout, its catalog
//! (request names), its record streams, its rates per request and its driver.
//!
//! A new kind is a driver module ([`crate::driver`]) plus one line in that table; a kind with
//! a table of its own also adds the table to the file ([`crate::ScenarioFile`]) and to
//! [`Parts`]. The [`Kind`] is resolved once, when the file is parsed, and everything else
//! (the scenario, the master, the CLI) asks its entry instead of comparing names.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::driver::{Driver, DriverError, RequestInfo, connections, download, http, llm, priority};
use crate::llm::Slo;
use crate::load::Mix;
use crate::model::Common;
use crate::recorder::RecordStream;
use crate::report::Report;
use crate::spec::Specs;

/// A scenario as a kind's [`Entry`] sees it: the parts every kind shares and the tables of the
/// kinds that have one (from [`crate::ScenarioConfig::parts`], or from the file while it is
/// validated).
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    /// Target, duration, load, `[http]`, `[tls]`.
    pub common: Common<'a>,
    /// `[[requests]]`: the `http` kind's table.
    pub requests: &'a [http::RequestFile],
    /// `[llm]`.
    pub llm: Option<&'a llm::LlmFile>,
    /// `[slo]`: the `llm` kind's latency objectives.
    pub slo: Option<Slo>,
    /// `[download]`.
    pub download: Option<&'a download::DownloadFile>,
    /// `[priority]`.
    pub priority: Option<&'a priority::PriorityFile>,
}

/// A failed check, as `Err((field, message))`: the dotted field and what is wrong with it.
pub type Invalid = (String, String);

/// What the registry knows of one kind: functions of the scenario's [`Parts`], each calling
/// the kind's driver module.
pub struct Entry {
    /// Whether the file has the kind's own table (`[llm]` for `llm`; `false` for a kind with
    /// none): a file with another kind's table was likely meant to be that kind.
    pub has_table: fn(&Parts) -> bool,
    /// The kind's checks, after those of the common parts it reads; `Err((field, message))`.
    pub validate: fn(&Parts) -> Result<(), Invalid>,
    /// The rates per request of a kind that fixes them (a [`Mix`]; `priority`: one process
    /// per class), from the validated load and duration; `None` for the others.
    pub mix: fn(&Parts) -> Result<Option<Mix>, Invalid>,
    /// How long one request may take at most by the kind's settings: what a run's end waits
    /// for in-flight requests.
    pub timeout: fn(&Parts) -> Duration,
    /// The request names and types, in the index order the driver records them with, without
    /// building a driver (for the master).
    pub catalog: fn(&Parts) -> Vec<RequestInfo>,
    /// The record streams the driver writes, without building it (the master writes each
    /// stream's header and appends the rows workers send).
    pub record_streams: fn(&Parts) -> Vec<RecordStream>,
    /// The driver, built once per run on each worker.
    pub build: fn(&Parts) -> Result<Arc<dyn Driver>, DriverError>,
    /// What the driver's histograms and counters are (the lists its `metrics` and
    /// `counters` return): every sink of the master iterates these.
    pub specs: Specs,
    /// The report shapes that show the kind's figures (`summary.json` blocks and table
    /// sections), in the order the table shows them.
    pub reports: &'static [Report],
}

/// The kind the file's tables say it was likely meant to be: the first kind, in [`Kind::ALL`]
/// order, whose own table the file has.
pub fn likely(parts: &Parts) -> Option<Kind> {
    Kind::ALL
        .iter()
        .copied()
        .find(|k| (k.entry().has_table)(parts))
}

/// Defines [`Kind`] from one line per kind: its doc, variant, name in files, and [`Entry`].
macro_rules! registry {
    ($($(#[$attr:meta])* $variant:ident = $name:literal => $entry:expr;)+) => {
        /// A scenario kind: which request driver sends a scenario's requests.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub enum Kind {
            $($(#[$attr])* $variant,)+
        }

        impl Kind {
            /// Every kind this build knows, in the order messages list them.
            pub const ALL: &[Kind] = &[$(Kind::$variant),+];

            /// The kind as scenario files write it (`llm`).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)+
                }
            }

            /// The kind's registry entry.
            pub fn entry(self) -> &'static Entry {
                match self {
                    $(Kind::$variant => {
                        const ENTRY: &Entry = &$entry;
                        ENTRY
                    })+
                }
            }
        }
    };
}

registry! {
    /// `http`: the `[[requests]]`, picked by weight.
    #[default]
    Http = "http" => Entry {
        has_table: |_| false,
        validate: |p| {
            http::validate(p.requests, p.common.http, likely(p).map(Kind::as_str))
        },
        mix: |_| Ok(None),
        timeout: |p| http::timeout(p.common.http),
        catalog: |p| http::catalog(p.requests),
        record_streams: |_| Vec::new(),
        build: |p| Ok(Arc::new(http::HttpDriver::new(&p.common, p.requests)?)),
        specs: http::SPECS,
        reports: &[connections::REPORT],
    };
    /// `llm`: prompts to an LLM server (`[llm]`), timed token by token.
    Llm = "llm" => Entry {
        has_table: |p| p.llm.is_some(),
        validate: |p| llm::validate(p.llm, p.requests.len()),
        mix: |_| Ok(None),
        timeout: |p| llm::timeout(p.llm),
        catalog: |p| llm::catalog(p.llm),
        record_streams: |p| llm::record_streams(p.llm),
        build: |p| Ok(Arc::new(llm::LlmDriver::new(&p.common, p.llm, p.slo)?)),
        specs: llm::SPECS,
        reports: &[connections::REPORT, crate::llm::report::REPORT],
    };
    /// `download`: one large body per call, checked as it arrives (`[download]`).
    Download = "download" => Entry {
        has_table: |p| p.download.is_some(),
        validate: |p| download::validate(p.download, p.requests.len()),
        mix: |_| Ok(None),
        timeout: |p| download::timeout(p.download, p.common.duration),
        catalog: |p| download::catalog(p.download),
        record_streams: |_| Vec::new(),
        build: |p| Ok(Arc::new(download::DownloadDriver::new(&p.common, p.download)?)),
        specs: download::SPECS,
        reports: &[connections::REPORT, download::REPORT],
    };
    /// `priority`: 9 classes of gRPC inference requests (`[priority]`).
    Priority = "priority" => Entry {
        has_table: |p| p.priority.is_some(),
        validate: |p| priority::validate(p.priority),
        mix: |p| priority::mix(p.priority, p.common.load, p.common.duration).map(Some),
        timeout: |p| priority::timeout(p.priority),
        catalog: |_| priority::catalog(),
        record_streams: |_| priority::record_streams(),
        build: |p| Ok(Arc::new(priority::PriorityDriver::new(&p.common, p.priority)?)),
        specs: priority::SPECS,
        reports: &[connections::REPORT],
    };
}

impl Kind {
    /// What the kind's driver records ([`Entry::specs`]).
    pub fn specs(self) -> Specs {
        self.entry().specs
    }
}

/// The figures of the kind called `name`; none for a name this build does not know.
pub fn specs_of(name: &str) -> Specs {
    name.parse().map_or(Specs::NONE, Kind::specs)
}

/// Every report shape of this build's kinds, each once, in [`Kind::ALL`] order and each kind's
/// own order: what the end-of-run table and `summary.json` ask for every run (a report whose
/// figures a run lacks writes `null` and no lines).
pub fn reports() -> Vec<&'static Report> {
    let mut out: Vec<&'static Report> = Vec::new();
    for kind in Kind::ALL {
        for report in kind.entry().reports {
            if !out.iter().any(|r| r.name == report.name) {
                out.push(report);
            }
        }
    }
    out
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `kind` this build has no driver for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scenario kind `{0}` (known: {known})", known = known())]
pub struct UnknownKind(pub String);

/// The known kinds, as the unknown-kind message lists them.
fn known() -> String {
    let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    names.join(", ")
}

impl FromStr for Kind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Kind, UnknownKind> {
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

impl Serialize for Kind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Kind, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
