//! The scenario file: its TOML shape ([`ScenarioFile`], serde with `deny_unknown_fields`) and
//! the validated [`ScenarioConfig`] that the rest of Stampede uses ("parse, don't validate").
//!
//! Called by the CLI (`check`, `run`, `master`) and by workers, which receive the scenario as
//! TOML text. Every error names the file, line and field. Command-line overrides are applied to
//! the file form and validated again, so a flag can never produce a config a file could not.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::load::{Arrival, LoadModel, Mix, Stage, StageTarget, UserMode};
use crate::threshold::Threshold;
use crate::units::{Count, HumanDuration, Rate};

/// A scenario that could not be read or is not valid. Displays as
/// `file:line: field: message` (line and field when known).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ScenarioError {
    /// The file (or `<inline>` for text with no file).
    pub file: String,
    /// 1-based line of the offending value, when it could be located.
    pub line: Option<usize>,
    /// Dotted path of the offending field (`load.users`, `requests[2].method`).
    pub field: Option<String>,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The scenario file as written. Every table refuses unknown fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// Shown in reports and used as the `scenario` label of metrics.
    pub name: String,
    /// Base URL of the system under test (`http://host:port`), or `builtin:http` to have
    /// Stampede start its own target.
    pub target: String,
    /// Which request driver generates the requests. `http` by default.
    #[serde(default = "default::kind")]
    pub kind: String,
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
    pub tls: Option<crate::tls::TlsFile>,
    /// Settings of the `llm` driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmFile>,
    /// Settings of the `download` driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<DownloadFile>,
    /// Settings of the `priority` driver (seed 001's 9-class traffic over gRPC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<crate::driver::priority::PriorityFile>,
    /// Latency objectives of one request (`llm`): a request meeting all of them counts
    /// towards goodput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo: Option<crate::llm::Slo>,
    /// The requests, picked at random by weight.
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
    /// The worker type an `llm` scenario measures (seed 000's `WorkerType`), written in every
    /// row of `stampede profile sweep`. Runs ignore it, and it is not sent to workers.
    #[serde(default, skip_serializing)]
    pub worker_type: Option<WorkerTypeFile>,
}

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

/// `[placement]`: the model a run measures (the seed's characteristics) and the device type of
/// each worker node, for `stampede placement record`.
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
    /// The seed's `filter_details`.
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

/// `[sweep]`: run the scenario once per value, one after another, each step reported on its
/// own (give `rates` or `users`, not both).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    /// Open-model rates, requests per second across all workers (each step `--rate v`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rates: Vec<Rate>,
    /// Closed-model users across all workers (each step `--users v`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<Count>,
}

/// A validated sweep: the values its steps run at, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Sweep {
    /// One open-model step per rate (requests per second).
    Rates(Vec<f64>),
    /// One closed-model step per number of users.
    Users(Vec<u64>),
}

impl Sweep {
    /// What the steps vary: `rate` or `users`.
    pub fn axis(&self) -> &'static str {
        match self {
            Sweep::Rates(_) => "rate",
            Sweep::Users(_) => "users",
        }
    }

    /// The steps' values, in order.
    pub fn values(&self) -> Vec<f64> {
        match self {
            Sweep::Rates(r) => r.clone(),
            Sweep::Users(u) => u.iter().map(|&u| u as f64).collect(),
        }
    }

    /// The overrides that make step `value` of this sweep out of its scenario.
    pub fn overrides(&self, value: f64) -> Overrides {
        match self {
            Sweep::Rates(_) => Overrides {
                rate: Some(value),
                ..Overrides::default()
            },
            Sweep::Users(_) => Overrides {
                users: Some(value.round() as u64),
                ..Overrides::default()
            },
        }
    }

    fn of(file: &SweepFile) -> Result<Sweep, (String, String)> {
        match (file.rates.is_empty(), file.users.is_empty()) {
            (false, false) => Err(("sweep".into(), "give `rates` or `users`, not both".into())),
            (true, true) => Err((
                "sweep".into(),
                "needs `rates = [...]` or `users = [...]`".into(),
            )),
            (false, true) => {
                for (i, r) in file.rates.iter().enumerate() {
                    if !(r.0 > 0.0 && r.0.is_finite()) {
                        return Err((
                            format!("sweep.rates[{i}]"),
                            "must be above 0 requests per second".into(),
                        ));
                    }
                }
                Ok(Sweep::Rates(file.rates.iter().map(|r| r.0).collect()))
            }
            (true, false) => {
                if let Some(i) = file.users.iter().position(|u| u.0 == 0) {
                    return Err((format!("sweep.users[{i}]"), "must be at least 1".into()));
                }
                Ok(Sweep::Users(file.users.iter().map(|u| u.0).collect()))
            }
        }
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
    fn arrival_mut(&mut self) -> Option<(&mut Arrival, &mut Option<f64>)> {
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

/// `[download]`: what the `download` driver fetches, and how it checks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadFile {
    /// The request's name in reports (default `GET <path>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Path appended to the target URL; `{model_id}` and `{version}` are replaced (default
    /// `/performance/{model_id}/{version}/model.zip`, the seed's endpoint).
    #[serde(default = "default::download_path")]
    pub path: String,
    /// The model, as Hugging Face names it (default `arnir0/Tiny-LLM`); sanitized into the
    /// path as the seed does (`/` → `_`: `arnir0_Tiny-LLM`).
    #[serde(default = "default::model_id")]
    pub model_id: String,
    /// The version in the path (default `main`).
    #[serde(default = "default::version")]
    pub version: String,
    /// Expected SHA-256 of every body (hex); a body that differs is a `checksum mismatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Expected body length; a complete body of another length is a `size mismatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_bytes: Option<Count>,
    /// Per-download timeout, from its scheduled start (default: the run's duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Bytes read from the socket at a time, per connection (default 64k): the only buffer a
    /// download has, whatever the body's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer: Option<Count>,
    /// Headers sent with every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl Default for DownloadFile {
    fn default() -> Self {
        DownloadFile {
            name: None,
            path: default::download_path(),
            model_id: default::model_id(),
            version: default::version(),
            sha256: None,
            expected_bytes: None,
            timeout: None,
            buffer: None,
            headers: BTreeMap::new(),
        }
    }
}

/// `[llm]`: what the `llm` driver sends and how it reads the answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmFile {
    /// The server's API: `openai`, `openai-chat`, `vllm`, `tgi`, `triton`, `sax`.
    #[serde(default = "default::backend")]
    pub backend: String,
    /// The model name sent to the server (OpenAI `model`, Triton's model in the path, SAX's
    /// `model`).
    #[serde(default = "default::model")]
    pub model: String,
    /// Ask for a streamed answer (where the backend has one): TTFT and ITL need it.
    #[serde(default = "default::yes")]
    pub stream: bool,
    /// Sampling temperature (default: the seed tool's, from `best_of` and beam search).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// The seed's `best_of`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_of: Option<u32>,
    /// The seed's `use_beam_search`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_beam_search: Option<bool>,
    /// Ask the server to generate `max_tokens` whatever the end-of-sequence token says
    /// (vLLM's `ignore_eos`; the seed sets it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_eos: Option<bool>,
    /// A Hugging Face `tokenizer.json` (read locally; relative to the scenario file) to count
    /// prompt and output tokens where the server gives no usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<std::path::PathBuf>,
    /// The text of `tokenizer`, read by the master ([`ScenarioConfig::resolve_files`]) and
    /// sent in the assignment, so workers open no file. Never read from a scenario file.
    #[serde(skip)]
    pub tokenizer_json: Option<String>,
    /// The preferred way to count output tokens: `usage` (default), `tokenizer`, `chunks`,
    /// `words`; the next available is used when it has nothing to count with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_count: Option<crate::llm::TokenCountMethod>,
    /// Per-request timeout (default 300 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Headers sent with every request (`Authorization = "Bearer ..."`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Seed of the prompt sampling (prompt choice, synthetic prompts); 0 by default.
    #[serde(default)]
    pub seed: u64,
    /// Where prompts come from: `{ source = "lines", path = "prompts.txt" }`, `sharegpt`, or
    /// `synthetic` with input and output length distributions.
    pub prompts: crate::llm::PromptSource,
    /// The prompts themselves, filled in by the master from `prompts` before it sends the
    /// scenario to its workers (so workers need no prompt file). Never read from a scenario
    /// file: they travel in the assignment ([`ScenarioConfig::to_assignment`]).
    #[serde(skip)]
    pub resolved: Vec<ResolvedPrompt>,
    /// Send one CSV row per request to the master (the `requests` record stream, written to
    /// `requests.csv`); set by `--requests-csv` only, and sent in the assignment.
    #[serde(skip)]
    pub requests_csv: bool,
}

/// A scenario as the master assigns it to workers: the file form (overrides applied) and what
/// the master filled in that a scenario file cannot set.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Assignment {
    /// The scenario.
    scenario: ScenarioFile,
    /// `[llm]`'s prepared parts, for an `llm` scenario.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    llm: Option<PreparedLlm>,
    /// The PEM text of the files `[tls]` names, read by the master.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls: Option<crate::tls::TlsMaterial>,
}

/// The parts of `[llm]` the master prepares: [`LlmFile::resolved`], [`LlmFile::requests_csv`],
/// [`LlmFile::tokenizer_json`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PreparedLlm {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    resolved: Vec<ResolvedPrompt>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    requests_csv: bool,
    /// [`LlmFile::tokenizer_json`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokenizer: Option<String>,
}

/// One prompt as the master sends it to workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolvedPrompt {
    /// The text.
    pub text: String,
    /// Its length in tokens, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u32>,
    /// The `max_tokens` to ask for.
    pub max_tokens: u32,
}

/// `[[requests]]`: one kind of request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestFile {
    /// Name in reports (unique in the scenario). Default: `METHOD path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// HTTP method, `GET` by default.
    #[serde(default = "default::method")]
    pub method: String,
    /// Path and query, appended to the target URL.
    pub path: String,
    /// Extra headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body, sent as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Relative frequency (default 1).
    #[serde(default = "default::weight")]
    pub weight: u32,
}

mod default {
    pub fn kind() -> String {
        "http".into()
    }
    pub fn accelerator_count() -> u32 {
        1
    }
    pub fn method() -> String {
        "GET".into()
    }
    pub fn weight() -> u32 {
        1
    }
    pub fn backend() -> String {
        "openai".into()
    }
    pub fn model() -> String {
        "stampede-sim".into()
    }
    pub fn yes() -> bool {
        true
    }
    pub fn download_path() -> String {
        "/performance/{model_id}/{version}/model.zip".into()
    }
    pub fn model_id() -> String {
        "arnir0/Tiny-LLM".into()
    }
    pub fn version() -> String {
        "main".into()
    }
}

/// What the command line may override in a scenario (`--duration`, `--users`, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--duration`.
    pub duration: Option<Duration>,
    /// `--users`: switches to the closed model with this many users.
    pub users: Option<u64>,
    /// `--spawn-rate`.
    pub spawn_rate: Option<f64>,
    /// `--rate`: switches to the open model at this rate.
    pub rate: Option<f64>,
    /// `--arrival`.
    pub arrival: Option<Arrival>,
    /// `--burstiness`: gamma arrivals of this shape (open and rate-stages models).
    pub burstiness: Option<f64>,
    /// `--sweep-rates` / `--sweep-users`: replaces the scenario's `[sweep]`.
    pub sweep: Option<SweepFile>,
    /// `--requests-csv`: one row per request (`llm`).
    pub requests_csv: bool,
    /// `--target`.
    pub target: Option<String>,
    /// `--backend` (`llm`).
    pub backend: Option<String>,
    /// `--model` (`llm`).
    pub model: Option<String>,
    /// `--ca`, `--insecure`, `--client-cert`, `--client-key`, `--server-name`.
    pub tls: TlsOverrides,
    /// `--http-version`.
    pub http_version: Option<HttpVersion>,
}

/// The `[tls]` settings the command line gives; each replaces the file's. Paths are as given
/// (relative to the working directory).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsOverrides {
    /// `--ca FILE`.
    pub ca: Option<PathBuf>,
    /// `--insecure`.
    pub insecure: bool,
    /// `--client-cert FILE`.
    pub client_cert: Option<PathBuf>,
    /// `--client-key FILE`.
    pub client_key: Option<PathBuf>,
    /// `--server-name NAME`.
    pub server_name: Option<String>,
}

impl TlsOverrides {
    /// Whether no TLS flag was given.
    pub fn is_empty(&self) -> bool {
        *self == TlsOverrides::default()
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
    pub kind: String,
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

/// Where requests go.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A built-in target that Stampede starts itself (`builtin:http`).
    Builtin(String),
    /// A base URL.
    Url(http::Uri),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Builtin(kind) => write!(f, "builtin:{kind}"),
            Target::Url(uri) => write!(f, "{uri}"),
        }
    }
}

/// Users of a simultaneous start when the scenario gives none (the seed's 100 clients).
pub const DEFAULT_SIMULTANEOUS_USERS: u64 = 100;

/// The default run duration when a scenario gives none.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(30);

impl ScenarioConfig {
    /// Read, parse and validate a scenario file.
    pub fn load(path: &Path) -> Result<ScenarioConfig, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.display().to_string(),
            line: None,
            field: None,
            message: format!("cannot read the scenario: {e}"),
        })?;
        let mut config =
            ScenarioConfig::parse(&text, &path.display().to_string(), &Overrides::default())?;
        // Files the scenario names are relative to the scenario's folder.
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Some(tls) = &mut config.file.tls {
            *tls = tls.relative_to(dir);
        }
        if let Some(llm) = &mut config.file.llm {
            llm.prompts = llm.prompts.relative_to(dir);
            if let Some(t) = llm.tokenizer.as_mut().filter(|t| t.is_relative()) {
                *t = dir.join(&*t);
            }
        }
        Ok(config)
    }

    /// Read the files the scenario names into the scenario itself, so workers on other
    /// machines need none (and open none): `[tls]`'s certificates and key
    /// ([`crate::tls::TlsFile::resolve`]), an `llm` scenario's tokenizer and its prompts
    /// ([`ScenarioConfig::resolve_prompts`]).
    pub fn resolve_files(&mut self, origin: &str) -> Result<(), ScenarioError> {
        if let Some(llm) = self.file.llm.as_mut()
            && let Some(path) = llm
                .tokenizer
                .as_ref()
                .filter(|_| llm.tokenizer_json.is_none())
        {
            let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
                file: origin.to_string(),
                line: None,
                field: Some("llm.tokenizer".into()),
                message: format!("{}: {e}", path.display()),
            })?;
            llm.tokenizer_json = Some(text);
        }
        if let Some(tls) = self.file.tls.as_mut() {
            tls.resolve().map_err(|e| ScenarioError {
                file: origin.to_string(),
                line: None,
                field: Some(e.field()),
                message: e.detail(),
            })?;
        }
        self.resolve_prompts(origin)
    }

    /// For an `llm` scenario: read the prompts (and tokenizer) here and put the prompts in the
    /// scenario itself, so workers on other machines need no files. `origin` is the scenario
    /// file, which errors name with the setting (`llm.prompts.path`); the message names the
    /// prompt file, and its line or JSON path.
    pub fn resolve_prompts(&mut self, origin: &str) -> Result<(), ScenarioError> {
        let Some(llm) = self.file.llm.as_mut() else {
            return Ok(());
        };
        if !llm.resolved.is_empty() {
            return Ok(());
        }
        let error = |field: String, message: String| ScenarioError {
            file: origin.to_string(),
            line: None,
            field: Some(field),
            message,
        };
        let settings = crate::driver::llm::Settings::of(llm)
            .map_err(|(field, message)| error(field, message))?;
        let prompts = crate::llm::PromptSet::load(&llm.prompts, &settings.counter, llm.seed)
            .map_err(|e| {
                let field = e
                    .field()
                    .map_or("llm.prompts".to_string(), |f| format!("llm.prompts.{f}"));
                error(field, e.detail())
            })?;
        llm.resolved = prompts
            .prompts()
            .iter()
            .map(|p| ResolvedPrompt {
                text: p.text.clone(),
                input_tokens: p.input_tokens,
                max_tokens: p.max_output_tokens,
            })
            .collect();
        Ok(())
    }

    /// Parse and validate scenario text, applying `overrides`. `origin` names the text in errors.
    pub fn parse(
        text: &str,
        origin: &str,
        overrides: &Overrides,
    ) -> Result<ScenarioConfig, ScenarioError> {
        let mut file: ScenarioFile = toml::from_str(text).map_err(|e| {
            missing_table(text, origin).unwrap_or_else(|| toml_error(&e, text, origin))
        })?;
        file.apply(overrides);
        file.validate().map_err(|(field, message)| ScenarioError {
            file: origin.to_string(),
            line: locate(text, &field),
            field: Some(field),
            message,
        })
    }

    /// Validate a scenario file built in code (the master's API builds one from a request).
    pub fn from_file(file: ScenarioFile, origin: &str) -> Result<ScenarioConfig, ScenarioError> {
        file.validate().map_err(|(field, message)| ScenarioError {
            file: origin.to_string(),
            line: None,
            field: Some(field),
            message,
        })
    }

    /// How long one request may take at most, by the driver's settings: what a run's end waits
    /// for in-flight requests.
    pub fn request_timeout(&self) -> Duration {
        match self.kind.as_str() {
            "download" => crate::driver::download::timeout(self),
            "priority" => crate::driver::priority::timeout(self),
            "llm" => self
                .file
                .llm
                .as_ref()
                .and_then(|l| l.timeout)
                .map_or(crate::driver::llm::DEFAULT_TIMEOUT, |t| t.0),
            _ => self
                .file
                .http
                .as_ref()
                .and_then(|h| h.timeout)
                .map_or(crate::driver::http::DEFAULT_TIMEOUT, |t| t.0),
        }
    }

    /// Apply overrides to a loaded scenario and validate again.
    pub fn with_overrides(&self, overrides: &Overrides) -> Result<ScenarioConfig, ScenarioError> {
        let mut file = self.file.clone();
        file.apply(overrides);
        file.validate().map_err(|(field, message)| ScenarioError {
            file: "<command line>".into(),
            line: None,
            field: Some(field),
            message,
        })
    }

    /// Step `value` of this scenario's sweep (`sweep`, or the scenario's own): the scenario at
    /// that rate or users, without the sweep. Errors name the field.
    pub fn sweep_step(&self, sweep: &Sweep, value: f64) -> Result<ScenarioConfig, ScenarioError> {
        let mut step = self.with_overrides(&sweep.overrides(value))?;
        step.file.sweep = None;
        step.sweep = None;
        Ok(step)
    }

    /// When the run ends at the latest: its duration, or for a mix under LoadGen's end rule
    /// ([`crate::load::Until`]) the hard end that rule allows.
    pub fn limit(&self) -> Duration {
        self.mix
            .as_ref()
            .and_then(|m| m.until.as_ref())
            .map_or(self.duration, |u| u.max_duration.max(self.duration))
    }

    /// The scenario as TOML text, as sent to workers: the file form under `[scenario]`, and
    /// what the master prepared that a file cannot set (the prompts, `--requests-csv`) under
    /// `[llm]`. Read back by [`ScenarioConfig::from_assignment`].
    pub fn to_assignment(&self) -> String {
        let mut scenario = self.file.clone();
        let llm = scenario.llm.as_mut().map(|l| PreparedLlm {
            resolved: std::mem::take(&mut l.resolved),
            requests_csv: l.requests_csv,
            tokenizer: l.tokenizer_json.take(),
        });
        let tls = scenario
            .tls
            .as_mut()
            .map(|t| std::mem::take(&mut t.material))
            .filter(|m| !m.is_empty());
        // The invariant: an Assignment holds only strings, numbers, tables and arrays, which
        // TOML can always represent, so serialization cannot fail.
        toml::to_string(&Assignment { scenario, llm, tls })
            .expect("an Assignment is always representable as TOML")
    }

    /// Parse and validate an assignment ([`ScenarioConfig::to_assignment`]); `origin` names
    /// the text in errors.
    pub fn from_assignment(text: &str, origin: &str) -> Result<ScenarioConfig, ScenarioError> {
        let assignment: Assignment =
            toml::from_str(text).map_err(|e| toml_error(&e, text, origin))?;
        let mut file = assignment.scenario;
        if let (Some(llm), Some(prepared)) = (file.llm.as_mut(), assignment.llm) {
            llm.resolved = prepared.resolved;
            llm.requests_csv = prepared.requests_csv;
            llm.tokenizer_json = prepared.tokenizer;
        }
        if let (Some(tls), Some(material)) = (file.tls.as_mut(), assignment.tls) {
            tls.material = material;
        }
        ScenarioConfig::from_file(file, origin)
    }

    /// The seed that makes a run's random draws repeatable, if the scenario has one: an llm
    /// scenario's `[llm] seed` (0 unless set), as vLLM's bench and guidellm seed theirs. The
    /// master derives the run's seed from it and each worker its own from that and its slot,
    /// so every user draws the same prompts (and the open model the same arrivals) each run.
    pub fn sampling_seed(&self) -> Option<u64> {
        self.file.llm.as_ref().map(|llm| llm.seed)
    }

    /// The same scenario pointed at another target (used when a built-in target is started).
    pub fn retarget(&self, url: &str) -> Result<ScenarioConfig, ScenarioError> {
        self.with_overrides(&Overrides {
            target: Some(url.to_string()),
            ..Overrides::default()
        })
    }
}

impl ScenarioFile {
    fn apply(&mut self, o: &Overrides) {
        if let Some(d) = o.duration {
            self.duration = Some(HumanDuration(d));
        }
        if let Some(t) = &o.target {
            self.target = t.clone();
        }
        if !o.tls.is_empty() {
            let tls = self.tls.get_or_insert_with(Default::default);
            let t = &o.tls;
            if let Some(ca) = &t.ca {
                tls.ca = Some(ca.clone());
            }
            if t.insecure {
                tls.insecure = true;
            }
            if let Some(c) = &t.client_cert {
                tls.client_cert = Some(c.clone());
            }
            if let Some(k) = &t.client_key {
                tls.client_key = Some(k.clone());
            }
            if let Some(n) = &t.server_name {
                tls.server_name = Some(n.clone());
            }
        }
        if let Some(v) = o.http_version {
            self.http.get_or_insert_with(Default::default).version = Some(v);
        }
        if let Some(sweep) = &o.sweep {
            self.sweep = Some(sweep.clone());
        }
        if let Some(llm) = &mut self.llm {
            if let Some(b) = &o.backend {
                llm.backend = b.clone();
            }
            if let Some(m) = &o.model {
                llm.model = m.clone();
            }
            if o.requests_csv {
                llm.requests_csv = true;
            }
        }
        if let Some(rate) = o.rate {
            let (arrival, burstiness, max_in_flight) = match &self.load {
                LoadFile::Open {
                    arrival,
                    burstiness,
                    max_in_flight,
                    ..
                }
                | LoadFile::Stages {
                    arrival,
                    burstiness,
                    max_in_flight,
                    ..
                } => (*arrival, *burstiness, *max_in_flight),
                LoadFile::Closed { .. } | LoadFile::Simultaneous { .. } => {
                    (Arrival::default(), None, None)
                }
            };
            self.load = LoadFile::Open {
                rate: Rate(rate),
                arrival,
                burstiness,
                max_in_flight,
            };
        }
        if let Some(users) = o.users {
            self.load = match &self.load {
                // A simultaneous start stays one: only its number of users changes.
                LoadFile::Simultaneous { mode, .. } if o.rate.is_none() => LoadFile::Simultaneous {
                    users: Some(Count(users)),
                    mode: *mode,
                },
                LoadFile::Closed { spawn_rate, .. } => LoadFile::Closed {
                    users: Count(users),
                    spawn_rate: *spawn_rate,
                },
                _ => LoadFile::Closed {
                    users: Count(users),
                    spawn_rate: None,
                },
            };
        }
        if let Some(sr) = o.spawn_rate
            && let LoadFile::Closed { spawn_rate, .. } = &mut self.load
        {
            *spawn_rate = Some(Rate(sr));
        }
        if let Some(a) = o.arrival
            && let Some((arrival, burstiness)) = self.load.arrival_mut()
        {
            *arrival = a;
            // `--arrival poisson|constant` replaces the file's gamma arrivals.
            if a != Arrival::Gamma {
                *burstiness = None;
            }
        }
        if let Some(b) = o.burstiness
            && let Some((arrival, burstiness)) = self.load.arrival_mut()
        {
            *arrival = Arrival::Gamma;
            *burstiness = Some(b);
        }
    }

    /// Check everything serde cannot; `Err((field, message))`.
    fn validate(self) -> Result<ScenarioConfig, (String, String)> {
        let err = |field: &str, msg: String| Err((field.to_string(), msg));
        if self.name.trim().is_empty() {
            return err("name", "must not be empty".into());
        }
        let target = match self.target.strip_prefix("builtin:") {
            Some(kind) if crate::BUILTIN_TARGETS.contains(&kind) => {
                Target::Builtin(kind.to_string())
            }
            Some(kind) => {
                return err(
                    "target",
                    format!(
                        "unknown built-in target `{kind}` (known: {})",
                        crate::BUILTIN_TARGETS.join(", ")
                    ),
                );
            }
            None => {
                Target::Url(parse_base_url(&self.target).map_err(|m| ("target".to_string(), m))?)
            }
        };
        if !crate::driver::KINDS.contains(&self.kind.as_str()) {
            return err(
                "kind",
                format!(
                    "unknown scenario kind `{}` (known: {})",
                    self.kind,
                    crate::driver::KINDS.join(", ")
                ),
            );
        }
        let load = match &self.load {
            LoadFile::Closed { users, spawn_rate } => {
                if users.0 == 0 {
                    return err("load.users", "must be at least 1".into());
                }
                let spawn_rate = spawn_rate.map(|r| r.0).unwrap_or(f64::INFINITY);
                if spawn_rate.is_nan() || spawn_rate <= 0.0 {
                    return err("load.spawn_rate", "must be above 0 users per second".into());
                }
                LoadModel::Closed {
                    users: users.0,
                    spawn_rate,
                }
            }
            LoadFile::Simultaneous { users, mode } => {
                let users = users.map_or(DEFAULT_SIMULTANEOUS_USERS, |u| u.0);
                if users == 0 {
                    return err("load.users", "must be at least 1".into());
                }
                LoadModel::Simultaneous { users, mode: *mode }
            }
            LoadFile::Open {
                rate,
                arrival,
                burstiness,
                max_in_flight,
            } => {
                if rate.0 <= 0.0 {
                    return err("load.rate", "must be above 0 requests per second".into());
                }
                let (arrival, burstiness) = validate_arrival(*arrival, *burstiness)?;
                LoadModel::Open {
                    rate: rate.0,
                    arrival,
                    burstiness,
                    max_in_flight: validate_in_flight(*max_in_flight)?,
                }
            }
            LoadFile::Stages {
                arrival,
                burstiness,
                max_in_flight,
                stages,
            } => {
                let (arrival, burstiness) = validate_arrival(*arrival, *burstiness)?;
                if stages.is_empty() {
                    return err("load.stages", "needs at least one stage".into());
                }
                let by_users = stages[0].users.is_some();
                let mut out = Vec::with_capacity(stages.len());
                for (i, s) in stages.iter().enumerate() {
                    let field = format!("load.stages[{i}]");
                    let target = match (s.users, s.rate) {
                        (Some(u), None) if by_users => u.0 as f64,
                        (None, Some(r)) if !by_users => r.0,
                        (Some(_), Some(_)) => return Err((field, "give `users` or `rate`, not both".into())),
                        (None, None) => return Err((field, "needs `users` or `rate`".into())),
                        _ => return Err((field, "all stages must use the same kind of target (all `users` or all `rate`)".into())),
                    };
                    if s.duration.0.is_zero() {
                        return Err((format!("{field}.duration"), "must be above 0".into()));
                    }
                    out.push(Stage {
                        duration: s.duration.0,
                        target,
                    });
                }
                LoadModel::Stages {
                    target: if by_users {
                        StageTarget::Users
                    } else {
                        StageTarget::Rate
                    },
                    stages: out,
                    arrival,
                    burstiness,
                    max_in_flight: validate_in_flight(*max_in_flight)?,
                }
            }
        };
        let duration = match (self.duration, &load) {
            (Some(d), _) => d.0,
            (None, LoadModel::Stages { stages, .. }) => stages.iter().map(|s| s.duration).sum(),
            (None, _) => DEFAULT_DURATION,
        };
        if duration.is_zero() {
            return err("duration", "must be above 0".into());
        }
        crate::driver::validate(&self)?;
        if let Some(name) = self.tls.as_ref().and_then(|t| t.server_name.as_ref()) {
            crate::tls::check_server_name(name).map_err(|m| ("tls.server_name".to_string(), m))?;
        }
        if let Some(h) = &self.http
            && h.connections.is_some_and(|c| c.0 == 0)
        {
            return err("http.connections", "must be at least 1".into());
        }
        let mix = crate::driver::mix(&self, &load, duration)?;
        if let Some(w) = &self.worker_type
            && w.accelerator_type.trim().is_empty()
        {
            return err("worker_type.accelerator_type", "must not be empty".into());
        }
        if let Some(p) = &self.placement {
            if p.model.trim().is_empty() {
                return err("placement.model", "must not be empty".into());
            }
            if p.device_type.is_none() && p.devices.is_empty() {
                return err(
                    "placement",
                    "needs `device_type` (every node's device) or `devices` (by worker name)"
                        .into(),
                );
            }
            let empty = |d: &String| d.trim().is_empty();
            if p.device_type.as_ref().is_some_and(empty) || p.devices.values().any(empty) {
                return err(
                    "placement.devices",
                    "a device type must not be empty".into(),
                );
            }
        }
        let mut thresholds = Vec::new();
        for (key, expr) in &self.thresholds {
            thresholds
                .push(Threshold::parse(key, expr).map_err(|m| (format!("thresholds.{key}"), m))?);
        }
        let sweep = self.sweep.as_ref().map(Sweep::of).transpose()?;
        Ok(ScenarioConfig {
            name: self.name.clone(),
            kind: self.kind.clone(),
            target,
            duration,
            load,
            mix,
            thresholds,
            sweep,
            file: self,
        })
    }
}

/// The arrivals and their gamma shape: `burstiness` makes them gamma (it must be a positive
/// number, and makes no sense with `constant`); gamma without it has shape 1 (Poisson).
fn validate_arrival(
    arrival: Arrival,
    burstiness: Option<f64>,
) -> Result<(Arrival, f64), (String, String)> {
    match (arrival, burstiness) {
        (_, Some(b)) if !(b.is_finite() && b > 0.0) => Err((
            "load.burstiness".into(),
            format!("must be a number above 0 (1 is Poisson, below 1 bursty), not {b}"),
        )),
        (Arrival::Constant, Some(_)) => Err((
            "load.burstiness".into(),
            "applies to gamma arrivals; `arrival = \"constant\"` has none".into(),
        )),
        (_, Some(b)) => Ok((Arrival::Gamma, b)),
        (a, None) => Ok((a, 1.0)),
    }
}

fn validate_in_flight(v: Option<Count>) -> Result<u64, (String, String)> {
    match v {
        Some(Count(0)) => Err(("load.max_in_flight".into(), "must be at least 1".into())),
        Some(Count(n)) => Ok(n),
        None => Ok(crate::load::DEFAULT_MAX_IN_FLIGHT),
    }
}

/// Check a base URL: `http[s]://host:port[/base]`, no query or fragment.
fn parse_base_url(s: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(format!(
                "`{s}`: unsupported scheme `{other}` (use http:// or https://)"
            ));
        }
        None => return Err(format!("`{s}` has no scheme (write http://{s})")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("`{s}` has no host"));
    }
    if uri.query().is_some() {
        return Err(format!(
            "`{s}`: a target URL takes no query; put it in the request path"
        ));
    }
    Ok(uri)
}

/// A scenario error from toml's, with the line and field when its message or span shows them.
fn toml_error(e: &toml::de::Error, text: &str, origin: &str) -> ScenarioError {
    let (field, message) = split_toml_message(e.message(), text, e.span());
    let line = e
        .span()
        .map(|s| key_line_from(text, s.start, field.as_deref()));
    ScenarioError {
        file: origin.to_string(),
        line,
        field,
        message,
    }
}

/// For well-formed TOML that lacks a required top-level key: an error saying which, with no
/// line (toml blames the document's first key for a missing one). `None` when none is missing.
fn missing_table(text: &str, origin: &str) -> Option<ScenarioError> {
    let doc: toml::Table = toml::from_str(text).ok()?;
    let message = if !doc.contains_key("load") {
        "missing table [load] (model = \"closed\" with users, \"open\" with rate, \
         \"simultaneous\" or \"stages\")"
            .to_string()
    } else {
        let key = ["name", "target"]
            .into_iter()
            .find(|k| !doc.contains_key(*k))?;
        format!("missing `{key}` (a top-level key, before any [table])")
    };
    Some(ScenarioError {
        file: origin.to_string(),
        line: None,
        field: None,
        message,
    })
}

/// 1-based line number of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text[..at.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// The line of `key = ...` at or after byte `start` (an internally tagged table reports the
/// table's span, not the key's), else the line of `start`.
fn key_line_from(text: &str, start: usize, key: Option<&str>) -> usize {
    let first = line_of(text, start);
    if let Some(key) = key {
        for (i, line) in text[start.min(text.len())..].lines().enumerate() {
            if line.trim_start().starts_with('[') && i > 0 {
                break;
            }
            if line
                .split_once('=')
                .is_some_and(|(k, _)| k.trim().trim_matches('"') == key)
            {
                return first + i;
            }
        }
    }
    first
}

/// Turn toml's message into (field, message), naming the field when the message or the span
/// shows it.
fn split_toml_message(
    msg: &str,
    text: &str,
    span: Option<std::ops::Range<usize>>,
) -> (Option<String>, String) {
    let msg = msg.trim().to_string();
    // "unknown field `x`, expected ..." names the field itself.
    if let Some(rest) = msg.strip_prefix("unknown field `")
        && let Some(end) = rest.find('`')
    {
        return (Some(rest[..end].to_string()), msg);
    }
    // Otherwise the span usually covers `key = value` or the value; take the key on that line.
    let field = span.and_then(|s| {
        let start = text[..s.start.min(text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line = text[start..].lines().next()?;
        let (key, _) = line.split_once('=')?;
        let key = key.trim();
        (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
    });
    (field, msg)
}

/// Find the line of a dotted field path (`load.users`, `requests[1].method`, `thresholds.p99_ms`)
/// by walking the document's table headers. Good for the plain layouts scenarios use; `None`
/// when it cannot tell.
pub(crate) fn locate(text: &str, field: &str) -> Option<usize> {
    // Split "requests[1].method" into ("requests", Some(1), "method").
    let mut parts: Vec<&str> = field.split('.').collect();
    let key = parts.pop()?;
    let (key, _) = split_index(key);
    let table: Vec<(&str, Option<usize>)> = parts.iter().map(|p| split_index(p)).collect();
    let table_name: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
    let wanted_index = table.last().and_then(|(_, i)| *i);
    let mut current: Vec<String> = Vec::new();
    let mut seen_of_array = 0usize;
    let mut in_wanted = table.is_empty();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(h) = line.strip_prefix("[[").and_then(|l| l.split(']').next()) {
            current = h.trim().split('.').map(|s| s.trim().to_string()).collect();
            let is_wanted = current == table_name;
            if is_wanted {
                in_wanted = wanted_index.is_none_or(|i| i == seen_of_array);
                seen_of_array += 1;
            } else {
                in_wanted = false;
            }
        } else if let Some(h) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            current = h.trim().split('.').map(|s| s.trim().to_string()).collect();
            in_wanted = current == table_name;
        } else if (in_wanted || (table.is_empty() && current.is_empty()))
            && let Some((k, _)) = line.split_once('=')
            && k.trim().trim_matches('"') == key
        {
            // For "stages[2]" inside an inline array, the key's line is the best we know.
            return Some(n + 1);
        }
    }
    None
}

fn split_index(s: &str) -> (&str, Option<usize>) {
    match s.split_once('[') {
        Some((name, rest)) => (name, rest.trim_end_matches(']').parse().ok()),
        None => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "demo"
target = "http://127.0.0.1:8080"
duration = "10s"

[load]
model = "closed"
users = 20
spawn_rate = 5

[[requests]]
name = "index"
path = "/"
weight = 3

[[requests]]
name = "post"
method = "POST"
path = "/items"
body = '{"a": 1}'
headers = { "content-type" = "application/json" }

[thresholds]
p99_ms = "< 250"
error_rate = "< 0.01"
"#;

    fn parse(text: &str) -> Result<ScenarioConfig, ScenarioError> {
        ScenarioConfig::parse(text, "t.toml", &Overrides::default())
    }

    #[test]
    fn worker_type_table_is_read_checked_and_not_sent_to_workers() {
        let text = format!(
            "{GOOD}\n[worker_type]\naccelerator_type = \"NVIDIA_L4\"\nmodel_server_type = \"vLLM\"\n"
        );
        let c = ScenarioConfig::parse(&text, "s.toml", &Overrides::default()).unwrap();
        let w = c.file.worker_type.as_ref().unwrap();
        assert_eq!(
            (w.accelerator_type.as_str(), w.accelerator_count),
            ("NVIDIA_L4", 1)
        );
        assert!(
            !c.to_assignment().contains("worker_type"),
            "{}",
            c.to_assignment()
        );
        let text = format!("{GOOD}\n[worker_type]\naccelerator_type = \" \"\n");
        let e = ScenarioConfig::parse(&text, "s.toml", &Overrides::default()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("worker_type.accelerator_type"));
        let text = format!("{GOOD}\n[worker_type]\naccelerator = \"x\"\n");
        assert!(ScenarioConfig::parse(&text, "s.toml", &Overrides::default()).is_err());
    }

    #[test]
    fn placement_table_is_read_checked_and_not_sent_to_workers() {
        let text = format!(
            "{GOOD}\n[placement]\nmodel = \"resnet50\"\nconv_layers = 53\npool_layers = 2\nfc_layers = 1\n\
             filter_details = 64\ntotal_parameters = \"10000000000000000000\"\nmodel_input_size = \"150k\"\n\
             model_output_size = 1000\ndevice_type = \"Raspberry Pi 4B\"\ndevices = {{ \"nuc-1\" = \"Intel NUC\" }}\n"
        );
        let c = parse(&text).unwrap();
        let p = c.file.placement.as_ref().unwrap();
        assert_eq!(p.total_parameters, Count(10_000_000_000_000_000_000));
        assert_eq!(p.model_input_size, Count(150_000));
        assert_eq!(p.device_of("nuc-1"), Some("Intel NUC"));
        assert_eq!(p.device_of("local-1"), Some("Raspberry Pi 4B"));
        assert!(
            !c.to_assignment().contains("placement"),
            "{}",
            c.to_assignment()
        );
        let e = parse(&text.replace(
            "device_type = \"Raspberry Pi 4B\"\ndevices = { \"nuc-1\" = \"Intel NUC\" }\n",
            "",
        ))
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("placement"));
        assert!(e.message.contains("needs `device_type`"), "{e}");
        let e = parse(&text.replace("fc_layers = 1", "fc_layer = 1")).unwrap_err();
        assert!(e.to_string().contains("unknown field `fc_layer`"), "{e}");
        let e = parse(&text.replace("pool_layers = 2", "pool_layers = -2")).unwrap_err();
        assert!(e.to_string().contains("must not be negative"), "{e}");
    }

    #[test]
    fn good_scenario_parses() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.name, "demo");
        assert_eq!(c.duration, Duration::from_secs(10));
        assert_eq!(
            c.load,
            LoadModel::Closed {
                users: 20,
                spawn_rate: 5.0
            }
        );
        assert_eq!(c.thresholds.len(), 2);
        assert_eq!(c.file.requests[1].method, "POST");
    }

    #[test]
    fn round_trips_through_toml() {
        let c = parse(GOOD).unwrap();
        let again = ScenarioConfig::from_assignment(&c.to_assignment(), "a").unwrap();
        assert_eq!(again, c);
    }

    /// An `llm` scenario reading its prompts from `{path}` (one a line).
    const LLM: &str = r#"
name = "chat"
target = "http://127.0.0.1:8000"
kind = "llm"

[load]
model = "closed"
users = 2

[llm]
model = "m"

[llm.prompts]
source = "lines"
path = "{path}"
"#;

    /// `text`, loaded from `bad.toml` in a new folder that holds `files` (name, content).
    fn load_in_dir(
        text: &str,
        files: &[(&str, &str)],
    ) -> (tempfile::TempDir, Result<ScenarioConfig, ScenarioError>) {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let scenario = dir.path().join("bad.toml");
        std::fs::write(&scenario, text).unwrap();
        let loaded = ScenarioConfig::load(&scenario);
        (dir, loaded)
    }

    #[test]
    fn assignment_carries_what_the_master_prepared() {
        let (dir, loaded) =
            load_in_dir(&LLM.replace("{path}", "p.txt"), &[("p.txt", "a b c d e\n")]);
        let mut c = loaded.unwrap();
        c.resolve_prompts("bad.toml").unwrap();
        let c = c
            .with_overrides(&Overrides {
                requests_csv: true,
                ..Overrides::default()
            })
            .unwrap();
        let again = ScenarioConfig::from_assignment(&c.to_assignment(), "a").unwrap();
        let llm = again.file.llm.as_ref().unwrap();
        assert_eq!(llm.resolved.len(), 1);
        assert_eq!(llm.resolved[0].text, "a b c d e");
        assert!(llm.requests_csv);
        assert_eq!(again, c);
        drop(dir);
    }

    #[test]
    fn llm_typo_lists_only_settable_fields() {
        let text = LLM.replace("model = \"m\"", "model = \"m\"\nstreem = true");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("streem"), "{e}");
        assert!(
            e.message.contains("'stream'") || e.message.contains("`stream`"),
            "{e}"
        );
        for internal in ["resolved", "requests_csv"] {
            assert!(!e.message.contains(internal), "{e}");
            let text = LLM.replace("model = \"m\"", &format!("model = \"m\"\n{internal} = []"));
            let e = parse(&text).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(internal), "{e}");
            assert!(e.message.starts_with("unknown field"), "{e}");
        }
    }

    #[test]
    fn prompt_errors_name_the_scenario_file_and_setting() {
        // A missing prompt file.
        let (dir, loaded) = load_in_dir(&LLM.replace("{path}", "nope.txt"), &[]);
        let mut c = loaded.unwrap();
        let e = c.resolve_prompts("bad.toml").unwrap_err();
        let nope = dir.path().join("nope.txt");
        let want = format!("bad.toml: llm.prompts.path: {}: ", nope.display());
        assert!(e.to_string().starts_with(&want), "{e}");

        // A text file given as ShareGPT.
        let text = LLM
            .replace("{path}", "p.txt")
            .replace("\"lines\"", "\"sharegpt\"");
        let (_dir, loaded) = load_in_dir(&text, &[("p.txt", "hello there\n")]);
        let e = loaded.unwrap().resolve_prompts("bad.toml").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("llm.prompts.path"), "{e}");
        assert!(
            e.to_string().starts_with("bad.toml: llm.prompts.path: "),
            "{e}"
        );
        assert!(e.message.contains("p.txt: not ShareGPT JSON"), "{e}");

        // A missing tokenizer.
        let text = LLM
            .replace("{path}", "p.txt")
            .replace("model = \"m\"", "model = \"m\"\ntokenizer = \"tok.json\"");
        let (_dir, loaded) = load_in_dir(&text, &[("p.txt", "a b c d e\n")]);
        let e = loaded.unwrap().resolve_prompts("bad.toml").unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.field.as_deref()),
            ("bad.toml", Some("llm.tokenizer")),
            "{e}"
        );
        assert!(e.message.contains("tok.json"), "{e}");

        // Bad length distributions.
        for (input, field) in [
            (
                "{ dist = \"uniform\", min = 9, max = 3 }",
                "llm.prompts.input",
            ),
            (
                "{ dist = \"normal\", mean = 9, stddev = -1 }",
                "llm.prompts.input",
            ),
        ] {
            let text = LLM.replace(
                "source = \"lines\"\npath = \"{path}\"",
                &format!("source = \"synthetic\"\ninput = {input}\noutput = {{ dist = \"fixed\", tokens = 8 }}"),
            );
            let mut c = parse(&text).unwrap();
            let e = c.resolve_prompts("bad.toml").unwrap_err();
            assert_eq!(
                (e.file.as_str(), e.field.as_deref()),
                ("bad.toml", Some(field)),
                "{e}"
            );
            assert!(!e.to_string().contains("<scenario>"), "{e}");
        }
    }

    #[test]
    fn missing_load_names_the_table_not_line_one() {
        let text = GOOD.replace(
            "[load]\nmodel = \"closed\"\nusers = 20\nspawn_rate = 5\n",
            "",
        );
        let e = parse(&text).unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (None, None), "{e}");
        assert!(
            e.to_string()
                .starts_with("t.toml: missing table [load] (model = \"closed\""),
            "{e}"
        );
        let e = parse(&GOOD.replace("target = \"http://127.0.0.1:8080\"", "")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.toml: missing `target` (a top-level key, before any [table])"
        );
    }

    #[test]
    fn http_without_requests_hints_at_the_kind_of_its_table() {
        let text = LLM
            .replace("kind = \"llm\"\n", "")
            .replace("{path}", "p.txt");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("requests"), "{e}");
        assert!(
            e.message
                .ends_with("; this file has an [llm] table: did you mean kind = \"llm\"?"),
            "{e}"
        );
        let text = format!(
            "{}\n[download]\nmodel_id = \"a/b\"\n",
            GOOD.split("[[requests]]").next().unwrap()
        );
        let e = parse(&text).unwrap_err();
        assert!(
            e.message.ends_with("did you mean kind = \"download\"?"),
            "{e}"
        );
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let text = GOOD.replace("spawn_rate = 5", "spawn_rate = 5\nusres = 3");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.file, "t.toml");
        assert_eq!(e.line, Some(10), "{e}");
        assert_eq!(e.field.as_deref(), Some("usres"), "{e}");
        assert!(
            e.to_string().starts_with("t.toml:10: usres: unknown field"),
            "{e}"
        );
    }

    #[test]
    fn semantic_errors_are_located() {
        let e = parse(&GOOD.replace("users = 20", "users = 0")).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(8), Some("load.users")),
            "{e}"
        );
        let e = parse(&GOOD.replace("method = \"POST\"", "method = \"P O\"")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("requests[1].method"), "{e}");
        assert_eq!(e.line, Some(18), "{e}");
        let e = parse(&GOOD.replace("< 250", "about 250")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("thresholds.p99_ms"), "{e}");
        assert_eq!(e.line, Some(24), "{e}");
        let e = parse(&GOOD.replace("http://127.0.0.1:8080", "ftp://x")).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(3), Some("target")),
            "{e}"
        );
    }

    #[test]
    fn bad_values_and_syntax() {
        let e =
            parse(&GOOD.replace("duration = \"10s\"", "duration = \"10 fortnights\"")).unwrap_err();
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.message.contains("unknown unit"), "{e}");
        let e = parse("name = \"x\"\ntarget = \n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        let e = parse(&GOOD.replace("model = \"closed\"", "model = \"chaos\"")).unwrap_err();
        assert!(e.message.contains("unknown variant"), "{e}");
        let e = parse(
            &GOOD
                .replace("builtin", "x")
                .replace("http://127.0.0.1:8080", "builtin:nope"),
        )
        .unwrap_err();
        assert!(e.message.contains("unknown built-in target"), "{e}");
    }

    #[test]
    fn sweeps_step_by_rate_or_users() {
        let text = format!("{GOOD}\n[sweep]\nrates = [2, \"4\", \"600/m\"]\n");
        let c = parse(&text).unwrap();
        let sweep = c.sweep.clone().unwrap();
        assert_eq!(sweep, Sweep::Rates(vec![2.0, 4.0, 10.0]));
        assert_eq!(sweep.axis(), "rate");
        let step = c.sweep_step(&sweep, 4.0).unwrap();
        assert!(step.load.is_open() && step.load.total_at(Duration::ZERO) == 4.0);
        assert!(step.sweep.is_none() && !step.to_assignment().contains("sweep"));
        let users = c
            .with_overrides(&Overrides {
                sweep: Some(SweepFile {
                    users: vec![Count(1), Count(3)],
                    ..SweepFile::default()
                }),
                ..Default::default()
            })
            .unwrap();
        let sweep = users.sweep.clone().unwrap();
        assert_eq!(sweep.values(), vec![1.0, 3.0]);
        let step = users.sweep_step(&sweep, 3.0).unwrap();
        assert_eq!(step.load.peak(), 3.0);
        let e = parse(&format!("{GOOD}\n[sweep]\nrates = [1]\nusers = [2]\n")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("sweep"), "{e}");
        let e = parse(&format!("{GOOD}\n[sweep]\nrates = [1, 0]\n")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("sweep.rates[1]"), "{e}");
        let e = parse(&format!("{GOOD}\n[sweep]\n")).unwrap_err();
        assert!(e.message.contains("needs"), "{e}");
    }

    #[test]
    fn burstiness_makes_gamma_arrivals() {
        let open = GOOD.replace(
            "model = \"closed\"\nusers = 20\nspawn_rate = 5",
            "model = \"open\"\nrate = 50\nburstiness = 0.5",
        );
        assert_ne!(open, GOOD, "the fixture changed");
        let c = parse(&open).unwrap();
        assert_eq!(
            (c.load.arrival(), c.load.burstiness()),
            (Arrival::Gamma, 0.5)
        );
        let gamma = parse(&open.replace("burstiness = 0.5", "arrival = \"gamma\"")).unwrap();
        assert_eq!(
            (gamma.load.arrival(), gamma.load.burstiness()),
            (Arrival::Gamma, 1.0)
        );
        let e = parse(&open.replace("0.5", "0")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("load.burstiness"), "{e}");
        let e =
            parse(&open.replace("burstiness", "arrival = \"constant\"\nburstiness")).unwrap_err();
        assert!(e.message.contains("gamma"), "{e}");
    }

    #[test]
    fn overrides_switch_models() {
        let base = parse(GOOD).unwrap();
        let open = base
            .with_overrides(&Overrides {
                rate: Some(100.0),
                arrival: Some(Arrival::Constant),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            open.load,
            LoadModel::Open {
                rate: 100.0,
                arrival: Arrival::Constant,
                burstiness: 1.0,
                max_in_flight: 10_000
            }
        );
        let bursty = open
            .with_overrides(&Overrides {
                burstiness: Some(0.25),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(bursty.load.arrival(), Arrival::Gamma);
        assert_eq!(bursty.load.burstiness(), 0.25);
        // Back to Poisson: the shape goes with the gamma arrivals.
        let poisson = bursty
            .with_overrides(&Overrides {
                arrival: Some(Arrival::Poisson),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            (poisson.load.arrival(), poisson.load.burstiness()),
            (Arrival::Poisson, 1.0)
        );
        let closed = open
            .with_overrides(&Overrides {
                users: Some(7),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            closed.load,
            LoadModel::Closed {
                users: 7,
                spawn_rate: f64::INFINITY
            }
        );
        let d = base
            .with_overrides(&Overrides {
                duration: Some(Duration::from_secs(2)),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(d.duration, Duration::from_secs(2));
        let e = base
            .with_overrides(&Overrides {
                users: Some(0),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("load.users"));
    }

    #[test]
    fn stages_sum_their_durations() {
        let text = r#"
name = "ramp"
target = "builtin:http"
[load]
model = "stages"
stages = [ { duration = "10s", rate = 100 }, { duration = "20s", rate = 100 }, { duration = "5s", rate = 0 } ]
[[requests]]
path = "/"
"#;
        let c = parse(text).unwrap();
        assert_eq!(c.duration, Duration::from_secs(35));
        assert_eq!(c.target, Target::Builtin("http".into()));
        let mixed = text.replace(
            "{ duration = \"20s\", rate = 100 }",
            "{ duration = \"20s\", users = 100 }",
        );
        let e = parse(&mixed).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("load.stages[1]"), "{e}");
        assert_eq!(e.line, Some(6), "{e}");
    }
}
