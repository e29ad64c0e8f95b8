//! The common tables of a scenario file as written: `[load]`, `[http]`, `[placement]`,
//! `[worker_type]`. Serde shapes only, with `deny_unknown_fields`; their checks are
//! [`super::validate`]'s, and a kind's own table is its driver's.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::load::{Arrival, UserMode};
use crate::units::{Count, HumanDuration, Rate};

/// `[worker_type]`: the model server a capacity-profile sweep measures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerTypeFile {
    /// The accelerator (`NVIDIA_L4`): what profiles match worker types on.
    pub accelerator_type: String,
    /// Accelerators per replica (default 1).
    #[serde(default = "default::accelerator_count")]
    pub accelerator_count: u32,
    /// The model's name (default: `[llm] model`).
    #[serde(default)]
    pub model_name: Option<String>,
    /// The model server (`vLLM`, `TGI`, ...).
    #[serde(default)]
    pub model_server_type: String,
    /// The model server's image.
    #[serde(default)]
    pub model_server_image: String,
}

/// `[placement]`: the model a run measures (as PEPPER's Profiler characterizes it) and the device
/// type of each worker node, for `stampede placement record`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementFile {
    /// The model's name.
    pub model: String,
    /// Convolution layers.
    pub conv_layers: Count,
    /// Pooling layers.
    pub pool_layers: Count,
    /// Fully connected layers.
    pub fc_layers: Count,
    /// PEPPER's Profiler's `filter_details`.
    pub filter_details: Count,
    /// Trainable parameters (`25.6M`, or a string for counts past 2^63).
    pub total_parameters: Count,
    /// Input size, elements.
    pub model_input_size: Count,
    /// Output size, elements.
    pub model_output_size: Count,
    /// The device type of every node not named in `devices`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    /// Device type by worker name (`stampede worker --name`), e.g. `{ "rpi-1" = "Raspberry Pi
    /// 4B" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub devices: BTreeMap<String, String>,
}

impl PlacementFile {
    /// The device type of the worker called `worker`, if the table gives one.
    pub fn device_of(&self, worker: &str) -> Option<&str> {
        self.devices
            .get(worker)
            .or(self.device_type.as_ref())
            .map(String::as_str)
    }
}

/// `[load]`: which model and its numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "model", rename_all = "lowercase")]
pub enum LoadFile {
    /// A fixed number of users, each sending its next request when the previous one answered.
    Closed {
        /// Users across all workers.
        users: Count,
        /// Users started per second until all run (default: all at once).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spawn_rate: Option<Rate>,
    },
    /// Requests arrive at a rate, whatever the target's answers; latency counts from the
    /// scheduled time.
    Open {
        /// Requests per second across all workers.
        rate: Rate,
        /// `poisson` (default), `constant` or `gamma` spacing.
        #[serde(default)]
        arrival: Arrival,
        /// The shape of gamma gaps: below 1 bursty, 1 Poisson, above 1 regular. Giving it
        /// makes the arrivals `gamma`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        burstiness: Option<f64>,
        /// Most requests in flight at once per worker (default 10k); beyond it an arrival is
        /// recorded as a `dropped: too many in flight` failure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_in_flight: Option<Count>,
    },
    /// Users (clients) that all send their first request at the same instant, on every worker;
    /// then each stops (`mode = "once"`) or repeats until the duration (`mode = "repeat"`).
    Simultaneous {
        /// Users across all workers (default 100).
        #[serde(default, alias = "clients", skip_serializing_if = "Option::is_none")]
        users: Option<Count>,
        /// `once` (default): one request each; `repeat`: back to back until the duration.
        #[serde(default)]
        mode: UserMode,
    },
    /// Users or rate changing over time, like k6's ramping executors: each stage goes linearly
    /// from the previous target (0 at the start) to its own over its duration.
    Stages {
        /// `poisson` (default), `constant` or `gamma` spacing, for rate stages.
        #[serde(default)]
        arrival: Arrival,
        /// The shape of gamma gaps, for rate stages (see `open`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        burstiness: Option<f64>,
        /// Most requests in flight per worker, for rate stages.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_in_flight: Option<Count>,
        /// The stages, in order.
        stages: Vec<StageFile>,
    },
}

impl LoadFile {
    /// The arrival process and gamma shape of the models that pace by rate (`open` and
    /// `stages`); `None` for the ones that pace by users.
    pub(crate) fn arrival_mut(&mut self) -> Option<(&mut Arrival, &mut Option<f64>)> {
        match self {
            LoadFile::Open {
                arrival,
                burstiness,
                ..
            }
            | LoadFile::Stages {
                arrival,
                burstiness,
                ..
            } => Some((arrival, burstiness)),
            LoadFile::Closed { .. } | LoadFile::Simultaneous { .. } => None,
        }
    }
}

/// One stage: a duration and either a `users` or a `rate` target (all stages the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageFile {
    /// How long the stage lasts.
    pub duration: HumanDuration,
    /// Users reached at the end of the stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Count>,
    /// Rate reached at the end of the stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

/// `[http]`: settings of the HTTP driver.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    /// Per-request timeout (default 10 s); a request that takes longer is a `timeout` failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Headers sent with every request (a request's own headers win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// HTTP version: `"1.1"`, `"2"` or `"auto"` (the default: ALPN decides on `https://`,
    /// `http://` stays HTTP/1.1). `"2"` on `http://` is h2c with prior knowledge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<HttpVersion>,
    /// HTTP/2 connections per worker that the users' streams share (h2load's `-c`); one per
    /// 100 users when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<Count>,
}

/// `[http] version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum HttpVersion {
    /// HTTP/1.1 only.
    #[serde(rename = "1.1")]
    Http1,
    /// HTTP/2 only: by ALPN on `https://`, h2c with prior knowledge on `http://`.
    #[serde(rename = "2")]
    Http2,
    /// ALPN decides on `https://` (h2 preferred); `http://` is HTTP/1.1.
    #[default]
    #[serde(rename = "auto")]
    Auto,
}

impl std::str::FromStr for HttpVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "1.1" | "1" | "http/1.1" => Ok(HttpVersion::Http1),
            "2" | "h2" | "http/2" => Ok(HttpVersion::Http2),
            "auto" => Ok(HttpVersion::Auto),
            other => Err(format!("`{other}` is not an HTTP version (1.1, 2 or auto)")),
        }
    }
}

impl fmt::Display for HttpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpVersion::Http1 => "1.1",
            HttpVersion::Http2 => "2",
            HttpVersion::Auto => "auto",
        })
    }
}

mod default {
    pub fn accelerator_count() -> u32 {
        1
    }
}
