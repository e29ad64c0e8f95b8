//! The `priority` driver (seed 001): MLPerf-LoadGen-style traffic of 9 request classes (tier
//! 1..3 × SLO urgent 100 ms / normal 500 ms / relaxed 2000 ms) to a GPU scheduler over gRPC
//! (`SchedulerService.Infer` of the seed's `scheduler.proto`).
//!
//! The class of each arrival is the schedule's pick ([`crate::load::Mix`]: one Poisson process
//! per class at `total × share`, split across workers); the driver picks the model (urgent →
//! resnet50; normal and relaxed → 70 % resnet50, 30 % vit, unless `[priority.models]` says
//! otherwise), stamps `deadline_ns = wall-clock Unix ns at dispatch + SLO`, and sends a fresh
//! random float32 tensor of shape [1, 3, 224, 224]. The tensor is never built as a `Vec<f32>`:
//! a thread of the driver's own fills the 150,528 floats as packed little-endian
//! bytes by xorshift ahead of their requests (600 KB each, no per-float encoding), and a custom
//! codec copies them into tonic's send buffer behind the stamped fields, so a due request only
//! stamps its deadline and sends.
//!
//! Recorded per request: the `scheduled` counter (the arrival the schedule drew, counted as
//! the call begins), latency (scheduled send → answer), the `slo_met` counter (an answer
//! with `success = true` within the class's SLO), failures by kind (`timeout`, `grpc
//! unavailable`, `success=false`, ...), and one row of the `metrics` record stream with the
//! seed's CSV columns. It does not decide when requests go out: the engine does.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes};
use prost::Message;
use rand::Rng;
use rand::rngs::SmallRng;
use serde::{Deserialize, Serialize};
use stampede_grpc::scheduler::InferResponse;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};

use super::grpc::{GrpcConnector, failure_under};
use super::{Call, CallFuture, Driver, DriverError, RequestInfo, Session};
use crate::load::{LoadModel, Mix, Spike, Until};
use crate::model::{ScenarioConfig, ScenarioFile, Target};
use crate::recorder::{Failure, RecordStream, Recorder};
use crate::spec::{Family, MetricSpec, Role, Specs, Unit};
use crate::units::{Count, HumanDuration};

/// The SLO classes: name and latency target, in the seed's order.
pub const SLOS: [(&str, Duration); 3] = [
    ("urgent", Duration::from_millis(100)),
    ("normal", Duration::from_millis(500)),
    ("relaxed", Duration::from_millis(2000)),
];

/// Request classes: tier 1..3 × [`SLOS`], in the seed's order (1U, 1N, 1R, 2U, ...).
pub const CLASSES: usize = 9;

/// The seed's workload distributions: fraction of the total rate per class, in class order.
pub const WORKLOADS: [(&str, [f64; CLASSES]); 3] = [
    (
        "balanced",
        [0.05, 0.10, 0.15, 0.10, 0.15, 0.10, 0.10, 0.15, 0.10],
    ),
    (
        "urgent_heavy",
        [0.20, 0.10, 0.05, 0.15, 0.10, 0.05, 0.15, 0.10, 0.10],
    ),
    (
        "batch_heavy",
        [0.05, 0.05, 0.20, 0.05, 0.10, 0.20, 0.05, 0.10, 0.20],
    ),
];

/// Classes below this rate (requests per second, across workers) are skipped, as the seed does.
pub const MIN_CLASS_QPS: f64 = 0.01;

/// The input tensor's shape (the same for both models in the seed).
pub const INPUT_SHAPE: [i32; 4] = [1, 3, 224, 224];
/// Floats per tensor: 1 × 3 × 224 × 224.
pub const TENSOR_LEN: usize = 150_528;

/// The seed's `stub.Infer(request, timeout=5.0)`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The per-request record stream (the seed's `--metrics-csv`).
pub const STREAM: &str = "metrics";
/// Its columns, exactly the seed's.
pub const HEADER: &str = "timestamp_issued,sample_id,tier,slo,model,latency_ns,latency_ms,slo_met";

/// Counter of requests answered with `success = true` within their class's SLO.
pub const COUNTER_SLO_MET: &str = "slo_met";
/// Counter of arrivals the schedule drew for a class and handed to the driver (counted before
/// anything can fail); with [`COUNTER_DROPPED`], every arrival drawn.
pub const COUNTER_SCHEDULED: &str = "scheduled";
/// Counter of arrivals the schedule drew for a class that the engine dropped, not sent (none
/// unless `max_in_flight` was reached).
pub const COUNTER_DROPPED: &str = "dropped";
const COUNTERS: &[MetricSpec] = &[
    MetricSpec {
        role: Some(Role::SloMet),
        ..MetricSpec::new(
            COUNTER_SLO_MET,
            Family::Slo,
            Unit::Count,
            "Requests answered with success within their class's SLO.",
        )
    },
    MetricSpec {
        role: Some(Role::Scheduled),
        ..MetricSpec::new(
            COUNTER_SCHEDULED,
            Family::Schedule,
            Unit::Count,
            "Arrivals the schedule drew for a class and handed to the driver.",
        )
    },
    MetricSpec {
        role: Some(Role::Dropped),
        ..MetricSpec::new(
            COUNTER_DROPPED,
            Family::Schedule,
            Unit::Count,
            "Arrivals the schedule drew for a class that the engine dropped (too many in flight).",
        )
    },
];

/// The figures of a `priority` run: its counters (no histograms besides latency).
pub const SPECS: Specs = Specs {
    metrics: &[],
    counters: COUNTERS,
};

/// The gRPC method.
const INFER_PATH: &str = "/scheduler.SchedulerService/Infer";

/// The name of class `i`: `tier{T}_{slo}` (the seed's LoadGen log folder, and the request
/// name in reports).
pub fn class_name(i: usize) -> String {
    format!("tier{}_{}", tier_of(i), SLOS[i % 3].0)
}

/// The tier (1..3) of class `i`.
pub fn tier_of(i: usize) -> i32 {
    (i / 3) as i32 + 1
}

/// The SLO latency target of class `i`.
pub fn slo_of(i: usize) -> Duration {
    SLOS[i % 3].1
}

/// `[priority]`: the settings of a `priority` scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityFile {
    /// `balanced` (default), `urgent_heavy`, `batch_heavy`, or a name under `workloads`.
    #[serde(default = "default_workload")]
    pub workload: String,
    /// Custom workloads: name → class (`tier1_urgent`, ...) → share of the total rate. Classes
    /// left out get 0.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub workloads: BTreeMap<String, BTreeMap<String, f64>>,
    /// Model mix per SLO class (`urgent`, `normal`, `relaxed`) → model → weight; default the
    /// seed's (urgent: resnet50; normal and relaxed: 70 % resnet50, 30 % vit).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, BTreeMap<String, f64>>,
    /// MLPerf LoadGen's `min_query_count` per class, across workers: with it, each class goes
    /// on past the duration until it has this many arrivals (LoadGen's end rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_query_count: Option<Count>,
    /// The hard end of a run under `min_query_count` (default: long enough that each worker's
    /// and lane's part of every class has its count with probability 1 − 10⁻⁶, at least the
    /// duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<HumanDuration>,
    /// Per-request timeout (default 5 s, the seed's); a request past it is a `timeout` failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Bursts: windows in which the chosen classes arrive `factor` times as often.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub spikes: Vec<SpikeFile>,
}

/// `[[priority.spikes]]`: one burst.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpikeFile {
    /// When it begins, from the start of the run.
    pub start: HumanDuration,
    /// How long it lasts.
    pub duration: HumanDuration,
    /// The multiplier on the classes' rates (≥ 0).
    pub factor: f64,
    /// The classes it applies to: class names (`tier1_urgent`), tiers (`tier1`) or SLO names
    /// (`urgent`); all classes when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
}

fn default_workload() -> String {
    "balanced".into()
}

impl Default for PriorityFile {
    fn default() -> Self {
        PriorityFile {
            workload: default_workload(),
            workloads: BTreeMap::new(),
            models: BTreeMap::new(),
            min_query_count: None,
            max_duration: None,
            timeout: None,
            spikes: Vec::new(),
        }
    }
}

/// The model mix of one SLO class: names with cumulative weights (the last is the total).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMix {
    models: Vec<(String, f64)>,
}

impl ModelMix {
    /// A mix from (name, weight) pairs; weights need not sum to 1.
    pub fn new(pairs: &[(&str, f64)]) -> ModelMix {
        let mut acc = 0.0;
        let models = pairs
            .iter()
            .map(|(n, w)| {
                acc += w;
                (n.to_string(), acc)
            })
            .collect();
        ModelMix { models }
    }

    /// A model picked by weight (`random.choices` in the seed).
    pub fn pick(&self, rng: &mut SmallRng) -> &str {
        let total = self.models.last().map_or(0.0, |m| m.1);
        let x = rng.random::<f64>() * total;
        self.models
            .iter()
            .find(|m| x < m.1)
            .or(self.models.last())
            .map_or("", |m| m.0.as_str())
    }
}

/// The `[priority]` table checked and turned into parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The workload's name.
    pub workload: String,
    /// Share of the total rate per class, before the skip rule.
    pub shares: [f64; CLASSES],
    /// Model mix per SLO class.
    pub models: [ModelMix; 3],
    /// Per-request timeout.
    pub timeout: Duration,
    /// LoadGen's `min_query_count`, if set.
    pub min_query_count: Option<u64>,
    /// The hard end under `min_query_count`, if given.
    pub max_duration: Option<Duration>,
    /// Bursts.
    pub spikes: Vec<Spike>,
}

/// The names of the built-in workloads.
pub fn workload_names() -> Vec<&'static str> {
    WORKLOADS.iter().map(|w| w.0).collect()
}

/// The index of a class by its name (`tier2_normal`).
pub fn class_index(name: &str) -> Option<usize> {
    (0..CLASSES).find(|&i| class_name(i) == name)
}

impl Settings {
    /// Check a scenario's `[priority]` table (absent: all defaults); `Err((field, message))`.
    pub fn of(file: &ScenarioFile) -> Result<Settings, (String, String)> {
        let default = PriorityFile::default();
        let p = file.priority.as_ref().unwrap_or(&default);
        let err = |field: &str, m: String| (format!("priority.{field}"), m);
        for (name, table) in &p.workloads {
            if workload_names().contains(&name.as_str()) {
                return Err(err(
                    &format!("workloads.{name}"),
                    format!("`{name}` is a built-in workload; give yours another name"),
                ));
            }
            for (class, &share) in table {
                let field = format!("workloads.{name}.{class}");
                if class_index(class).is_none() {
                    return Err(err(
                        &field,
                        format!(
                            "unknown class `{class}` (classes are tier1_urgent .. tier3_relaxed)"
                        ),
                    ));
                }
                if !(share.is_finite() && share >= 0.0) {
                    return Err(err(&field, format!("share {share} must be 0 or more")));
                }
            }
            if table.values().sum::<f64>() <= 0.0 {
                return Err(err(
                    &format!("workloads.{name}"),
                    "needs at least one class with a share above 0".into(),
                ));
            }
        }
        let shares = match WORKLOADS.iter().find(|w| w.0 == p.workload) {
            Some(w) => w.1,
            None => match p.workloads.get(&p.workload) {
                Some(table) => {
                    let mut s = [0.0; CLASSES];
                    for (class, &share) in table {
                        if let Some(i) = class_index(class) {
                            s[i] = share;
                        }
                    }
                    s
                }
                None => {
                    let mut known: Vec<String> =
                        workload_names().into_iter().map(String::from).collect();
                    known.extend(p.workloads.keys().cloned());
                    return Err(err(
                        "workload",
                        format!(
                            "unknown workload `{}` (known: {})",
                            p.workload,
                            known.join(", ")
                        ),
                    ));
                }
            },
        };
        let mut models = [
            ModelMix::new(&[("resnet50", 1.0)]),
            ModelMix::new(&[("resnet50", 0.7), ("vit", 0.3)]),
            ModelMix::new(&[("resnet50", 0.7), ("vit", 0.3)]),
        ];
        for (slo, table) in &p.models {
            let field = format!("models.{slo}");
            let Some(k) = SLOS.iter().position(|s| s.0 == slo) else {
                return Err(err(
                    &field,
                    format!("unknown SLO class `{slo}` (urgent, normal or relaxed)"),
                ));
            };
            let mut pairs = Vec::new();
            for (model, &w) in table {
                if model.trim().is_empty() || model.contains([',', '"', '\n']) {
                    return Err(err(
                        &field,
                        format!("model name `{model}` must be non-empty, without commas or quotes"),
                    ));
                }
                if !(w.is_finite() && w >= 0.0) {
                    return Err(err(
                        &format!("{field}.{model}"),
                        format!("weight {w} must be 0 or more"),
                    ));
                }
                if w > 0.0 {
                    pairs.push((model.as_str(), w));
                }
            }
            if pairs.is_empty() {
                return Err(err(&field, "needs a model with a weight above 0".into()));
            }
            models[k] = ModelMix::new(&pairs);
        }
        let timeout = p.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0);
        if timeout.is_zero() {
            return Err(err("timeout", "must be above 0".into()));
        }
        let mut spikes = Vec::new();
        for (n, s) in p.spikes.iter().enumerate() {
            let field = format!("spikes[{n}]");
            if !(s.factor.is_finite() && s.factor >= 0.0) {
                return Err(err(
                    &format!("{field}.factor"),
                    format!("{} must be 0 or more", s.factor),
                ));
            }
            if s.duration.0.is_zero() {
                return Err(err(&format!("{field}.duration"), "must be above 0".into()));
            }
            let mut requests = Vec::new();
            for c in &s.classes {
                let matched: Vec<usize> = (0..CLASSES)
                    .filter(|&i| {
                        let name = class_name(i);
                        name == *c || format!("tier{}", tier_of(i)) == *c || SLOS[i % 3].0 == c
                    })
                    .collect();
                if matched.is_empty() {
                    return Err(err(
                        &format!("{field}.classes"),
                        format!(
                            "`{c}` is neither a class (tier1_urgent), a tier (tier1) nor an SLO class (urgent)"
                        ),
                    ));
                }
                requests.extend(matched);
            }
            if s.classes.is_empty() {
                requests = (0..CLASSES).collect();
            }
            requests.sort_unstable();
            requests.dedup();
            spikes.push(Spike {
                start: s.start.0,
                duration: s.duration.0,
                factor: s.factor,
                requests,
            });
        }
        if let Some(d) = p.max_duration
            && d.0.is_zero()
        {
            return Err(err("max_duration", "must be above 0".into()));
        }
        Ok(Settings {
            workload: p.workload.clone(),
            shares,
            models,
            timeout,
            min_query_count: p.min_query_count.map(|c| c.0),
            max_duration: p.max_duration.map(|d| d.0),
            spikes,
        })
    }

    /// The shares the schedule uses: a class whose rate (`total × share`) is below
    /// [`MIN_CLASS_QPS`] is skipped (share 0), as the seed does.
    pub fn active_shares(&self, total_qps: f64) -> [f64; CLASSES] {
        let mut s = self.shares;
        for share in &mut s {
            if total_qps * *share < MIN_CLASS_QPS {
                *share = 0.0;
            }
        }
        s
    }
}

/// The request names of a priority scenario: the 9 classes, in order.
pub fn catalog(_file: &ScenarioFile) -> Vec<RequestInfo> {
    (0..CLASSES)
        .map(|i| RequestInfo {
            kind: "grpc".into(),
            name: class_name(i),
        })
        .collect()
}

/// The record streams: the per-request CSV.
pub fn record_streams() -> Vec<RecordStream> {
    vec![RecordStream {
        name: STREAM.into(),
        header: HEADER.into(),
    }]
}

/// Kind-specific checks; `Err((field, message))`.
pub fn validate(file: &ScenarioFile) -> Result<(), (String, String)> {
    Settings::of(file).map(|_| ())
}

/// The per-request timeout of a priority scenario.
pub fn timeout(config: &ScenarioConfig) -> Duration {
    Settings::of(&config.file).map_or(DEFAULT_TIMEOUT, |s| s.timeout)
}

/// The rates per class: one Poisson process per class at `rate × share` (classes under
/// [`MIN_CLASS_QPS`] skipped), the spikes, and LoadGen's end rule when `min_query_count` is set.
pub fn mix(
    file: &ScenarioFile,
    load: &LoadModel,
    duration: Duration,
) -> Result<Mix, (String, String)> {
    if !load.is_open() {
        return Err((
            "load.model".into(),
            "a priority scenario needs an open load (`model = \"open\"` with `rate` = the total \
             qps, or rate stages): each class is a Poisson process of its own rate"
                .into(),
        ));
    }
    let s = Settings::of(file)?;
    let shares = s.active_shares(load.peak());
    if shares.iter().all(|&x| x <= 0.0) {
        return Err((
            "load.rate".into(),
            format!("every class is under {MIN_CLASS_QPS} qps at this rate: nothing would be sent"),
        ));
    }
    let until = s.min_query_count.map(|min_count| {
        let slowest = shares
            .iter()
            .filter(|&&x| x > 0.0)
            .map(|x| x * load.peak())
            .fold(f64::INFINITY, f64::min);
        Until {
            min_duration: duration,
            min_count,
            max_duration: s
                .max_duration
                .unwrap_or_else(|| count_reached_by(min_count, slowest))
                .max(duration),
        }
    });
    Ok(Mix {
        shares: shares.to_vec(),
        spikes: s.spikes,
        until,
    })
}

/// The most pieces (workers × lanes) a class's count and rate may be split into that the
/// default hard end allows for.
const MAX_PIECES: u64 = 64;

/// The default hard end under LoadGen's end rule: the time by which each piece of a class of
/// `rate` per second and `count` arrivals has had its part with probability 1 − 10⁻⁶, however
/// the count and rate are split over up to [`MAX_PIECES`] workers × lanes. Each piece needs
/// `⌈count / n⌉` arrivals at `rate / n`, a Gamma(k, λ) time, which exceeds
/// `(k + x + √(2kx)) / λ` with probability at most `e^-x` (the sub-gamma tail bound).
/// Reached only when a class is that unlucky: a run ends as soon as every class has its count.
fn count_reached_by(count: u64, rate: f64) -> Duration {
    let x = 1e6f64.ln();
    let worst = (1..=MAX_PIECES)
        .map(|n| {
            let k = count.div_ceil(n) as f64;
            (k + x + (2.0 * k * x).sqrt()) * n as f64 / rate
        })
        .fold(0.0, f64::max);
    Duration::from_secs_f64(worst.min(1e9))
}

struct Inner {
    catalog: Vec<RequestInfo>,
    streams: Vec<RecordStream>,
    /// One channel (HTTP/2 connection) per class, as the seed has one per LoadGen instance.
    channels: Vec<Channel>,
    settings: Settings,
    /// Tensors made ahead of their requests.
    tensors: Tensors,
    /// This driver's random prefix of sample ids (high 32 bits), so ids from different
    /// workers do not collide.
    sample_base: u64,
    next_sample: AtomicU64,
}

/// The priority driver of one run on one worker.
pub struct PriorityDriver {
    inner: Arc<Inner>,
}

impl PriorityDriver {
    /// Prepare the channels (connected lazily, on first use), over TLS for an `https://`
    /// target (the scenario's `[tls]`, ALPN `h2`). Must run inside a tokio runtime: the
    /// channels' connection tasks run there, off the pacing lanes.
    pub fn new(config: &ScenarioConfig) -> Result<PriorityDriver, DriverError> {
        let base = match &config.target {
            Target::Url(uri) => uri.clone(),
            Target::Builtin(kind) => {
                return Err(DriverError::UnresolvedTarget(format!("builtin:{kind}")));
            }
        };
        let settings = Settings::of(&config.file)
            .map_err(|(f, m)| DriverError::Invalid(format!("{f}: {m}")))?;
        // Connections are ours (TCP, then rustls on https://, as the HTTP drivers make them):
        // tonic's own TLS cannot skip verification (`insecure`) and would need a TLS feature
        // of tonic's that refuses https:// URLs given to a connector of one's own.
        let connector = GrpcConnector::new(super::transport::Endpoint::of(
            &base,
            config.file.tls.as_ref(),
            crate::tls::Alpn::Http2,
        )?);
        let endpoint = Endpoint::from_shared(base.to_string())
            .map_err(|e| DriverError::Invalid(format!("target `{base}`: {e}")))?
            // Covers the TCP connect and the TLS handshake.
            .connect_timeout(settings.timeout)
            // 600 KB requests: a window of a few requests avoids a round trip per 64 KB.
            .initial_stream_window_size(Some(4 << 20))
            .initial_connection_window_size(Some(16 << 20));
        let channels = (0..CLASSES)
            .map(|_| endpoint.connect_with_connector_lazy(connector.clone()))
            .collect();
        Ok(PriorityDriver {
            inner: Arc::new(Inner {
                catalog: catalog(&config.file),
                streams: record_streams(),
                channels,
                settings,
                tensors: Tensors::start(),
                sample_base: rand::rng().random::<u32>() as u64 * (1 << 32),
                next_sample: AtomicU64::new(0),
            }),
        })
    }
}

impl Driver for PriorityDriver {
    fn requests(&self) -> &[RequestInfo] {
        &self.inner.catalog
    }

    fn counters(&self) -> &'static [MetricSpec] {
        SPECS.counters
    }

    fn record_streams(&self) -> &[RecordStream] {
        &self.inner.streams
    }

    fn session(&self) -> Box<dyn Session> {
        Box::new(PrioritySession {
            inner: self.inner.clone(),
        })
    }

    /// Counted for the schedule's class; an arrival without one (the driver would have picked
    /// the class itself) has no class to count it for.
    fn dropped(&self, request: Option<usize>, recorder: &Recorder) {
        if let Some(class) = request {
            // COUNTERS[2].
            recorder.count(class.min(CLASSES - 1), 2, 1);
        }
    }
}

struct PrioritySession {
    inner: Arc<Inner>,
}

/// Wall-clock Unix time in ns (0 before 1970, which no scheduler will see).
pub fn unix_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

impl Session for PrioritySession {
    fn call<'a>(&'a mut self, call: Call<'a>) -> CallFuture<'a> {
        Box::pin(async move {
            let inner = &self.inner;
            let s = &inner.settings;
            let class = call.request.unwrap_or_else(|| {
                let total: f64 = s.shares.iter().sum();
                let mut x = call.rng.random::<f64>() * total;
                (0..CLASSES)
                    .find(|&i| {
                        x -= s.shares[i];
                        x < 0.0
                    })
                    .unwrap_or(0)
            });
            let class = class.min(CLASSES - 1);
            // COUNTERS[1]: the arrival, before anything can fail.
            call.recorder.count(class, 1, 1);
            let slo = slo_of(class);
            let model = s.models[class % 3].pick(call.rng).to_string();
            let tensor = inner.tensors.take(call.rng);
            let issued_ns = unix_ns();
            let payload = InferPayload {
                tier: tier_of(class),
                deadline_ns: issued_ns.saturating_add(slo.as_nanos() as i64),
                model: model.clone(),
                tensor,
            };
            let sample_id = inner.sample_base | inner.next_sample.fetch_add(1, Ordering::Relaxed);
            let outcome = tokio::time::timeout(
                s.timeout,
                infer(inner.channels[class].clone(), payload, s.timeout),
            )
            .await
            .unwrap_or(Err(Failure::Timeout));
            let latency = call.scheduled.elapsed();
            let slo_met = outcome.is_ok() && latency <= slo;
            call.recorder.request(class, latency, 0, outcome.err());
            if slo_met {
                call.recorder.count(class, 0, 1);
            }
            let ns = latency.as_nanos();
            call.recorder.row(0, |buf| {
                // Writing into a Vec cannot fail.
                let _ = writeln!(
                    buf,
                    "{issued_ns},{sample_id},{},{},{model},{ns},{:.3},{}",
                    tier_of(class),
                    SLOS[class % 3].0,
                    ns as f64 / 1e6,
                    if slo_met { "True" } else { "False" }
                );
            });
        })
    }
}

/// One `Infer` call; `Ok` when the scheduler answered `success = true`.
async fn infer(channel: Channel, payload: InferPayload, timeout: Duration) -> Result<(), Failure> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|_| Failure::Connect("unavailable"))?;
    let mut request = tonic::Request::new(payload);
    request.set_timeout(timeout);
    let path = http::uri::PathAndQuery::from_static(INFER_PATH);
    match grpc.unary(request, path, TensorCodec).await {
        Ok(r) if r.get_ref().success => Ok(()),
        Ok(_) => Err(Failure::Other("success=false".into())),
        Err(status) => Err(status_failure(&status)),
    }
}

/// A gRPC status as a failure kind: a few fixed names, or the connection's own failure when
/// the status stands for one (`tls: invalid peer certificate: UnknownIssuer`, `connect:
/// connection refused`), found under it ([`failure_under`]).
pub fn status_failure(status: &tonic::Status) -> Failure {
    use tonic::Code;
    if let Some(f) = failure_under(status) {
        return f;
    }
    match status.code() {
        Code::DeadlineExceeded => Failure::Timeout,
        Code::Unavailable => Failure::Connect("unavailable"),
        code => Failure::Other(format!("grpc {}", code_name(code))),
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid argument",
        DeadlineExceeded => "deadline exceeded",
        NotFound => "not found",
        AlreadyExists => "already exists",
        PermissionDenied => "permission denied",
        ResourceExhausted => "resource exhausted",
        FailedPrecondition => "failed precondition",
        Aborted => "aborted",
        OutOfRange => "out of range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data loss",
        Unauthenticated => "unauthenticated",
    }
}

/// Tensors made ahead of their requests: a thread fills a few (enough for a burst) while the
/// pacing is idle, and each request takes a fresh one, never shared. When the thread is behind
/// (a spike), the request makes its own. The thread ends when the driver is dropped.
struct Tensors {
    /// Filled tensors; a `std` mutex: held only for a `try_recv`, never across an await.
    ready: Mutex<Receiver<Bytes>>,
}

/// Tensors kept ready (600 KB each).
const TENSORS_AHEAD: usize = 8;

impl Tensors {
    fn start() -> Tensors {
        let (tx, rx) = std::sync::mpsc::sync_channel(TENSORS_AHEAD);
        let seed = rand::rng().random::<u64>();
        let made = std::thread::Builder::new()
            .name("stampede-tensors".into())
            .spawn(move || fill_ahead(&tx, seed));
        if let Err(e) = made {
            // Requests then make their tensors themselves.
            tracing::warn!("cannot start the tensor thread: {e}");
        }
        Tensors {
            ready: Mutex::new(rx),
        }
    }

    /// A fresh tensor: a ready one, or one made now.
    fn take(&self, rng: &mut SmallRng) -> Bytes {
        let ready = self
            .ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_recv();
        match ready {
            Ok(t) => t,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => random_tensor(rng.random()),
        }
    }
}

/// The tensor thread: make tensors until the driver (the receiver) is gone.
fn fill_ahead(tx: &SyncSender<Bytes>, mut seed: u64) {
    loop {
        seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        if tx.send(random_tensor(seed)).is_err() {
            return;
        }
    }
}

/// [`TENSOR_LEN`] floats drawn uniformly from [0, 1) by xorshift64 from `seed`, as the packed
/// little-endian bytes of the `input_tensor` field.
pub fn random_tensor(seed: u64) -> Bytes {
    let mut buf = Vec::with_capacity(TENSOR_LEN * 4);
    fill_tensor(seed, &mut buf);
    Bytes::from(buf)
}

/// What one `InferRequest` carries.
#[derive(Debug, Clone, PartialEq)]
pub struct InferPayload {
    /// Priority tier.
    pub tier: i32,
    /// Absolute deadline, Unix ns.
    pub deadline_ns: i64,
    /// The model.
    pub model: String,
    /// The tensor's packed little-endian f32 values ([`random_tensor`]).
    pub tensor: Bytes,
}

impl InferPayload {
    /// Encode as `scheduler.InferRequest` (fields in number order, packed repeated fields, as
    /// prost would); the tensor's bytes are copied in as they are.
    pub fn encode(&self, buf: &mut impl BufMut) {
        use prost::encoding::{WireType, encode_key, encode_varint, int32, int64, string};
        if self.tier != 0 {
            int32::encode(1, &self.tier, buf);
        }
        if self.deadline_ns != 0 {
            int64::encode(2, &self.deadline_ns, buf);
        }
        if !self.model.is_empty() {
            string::encode(3, &self.model, buf);
        }
        if !self.tensor.is_empty() {
            encode_key(4, WireType::LengthDelimited, buf);
            encode_varint(self.tensor.len() as u64, buf);
            buf.put_slice(&self.tensor);
        }
        int32::encode_packed(5, &INPUT_SHAPE, buf);
    }

    /// The encoded size, bytes.
    pub fn encoded_len(&self) -> usize {
        use prost::encoding::{encoded_len_varint, int32, int64, key_len, string};
        let tensor = self.tensor.len();
        (if self.tier != 0 {
            int32::encoded_len(1, &self.tier)
        } else {
            0
        }) + (if self.deadline_ns != 0 {
            int64::encoded_len(2, &self.deadline_ns)
        } else {
            0
        }) + (if self.model.is_empty() {
            0
        } else {
            string::encoded_len(3, &self.model)
        }) + (if tensor == 0 {
            0
        } else {
            key_len(4) + encoded_len_varint(tensor as u64) + tensor
        }) + int32::encoded_len_packed(5, &INPUT_SHAPE)
    }
}

/// Write [`TENSOR_LEN`] little-endian f32 values in [0, 1) to `buf`: two 24-bit draws per
/// xorshift64 step, through an 8 KB block on the stack.
fn fill_tensor(seed: u64, buf: &mut impl BufMut) {
    const BLOCK: usize = 8192;
    const SCALE: f32 = 1.0 / (1u32 << 24) as f32;
    // Scramble the seed (splitmix64's finalizer), so nearby seeds give unrelated tensors;
    // xorshift64 must not start at 0.
    let mut x = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x = (x ^ (x >> 31)).max(1);
    let mut block = [0u8; BLOCK];
    let mut left = TENSOR_LEN * 4;
    while left > 0 {
        let n = left.min(BLOCK);
        for pair in block[..n].chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = ((x >> 40) as u32) as f32 * SCALE;
            let b = (((x >> 8) & 0xFF_FFFF) as u32) as f32 * SCALE;
            pair[..4].copy_from_slice(&a.to_le_bytes());
            pair[4..].copy_from_slice(&b.to_le_bytes());
        }
        buf.put_slice(&block[..n]);
        left -= n;
    }
}

/// Encodes [`InferPayload`]s, decodes `InferResponse`s with prost.
#[derive(Debug, Clone, Copy, Default)]
pub struct TensorCodec;

/// The encoder half of [`TensorCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct PayloadEncoder;

/// The decoder half of [`TensorCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseDecoder;

impl Codec for TensorCodec {
    type Encode = InferPayload;
    type Decode = InferResponse;
    type Encoder = PayloadEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> PayloadEncoder {
        PayloadEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl Encoder for PayloadEncoder {
    type Item = InferPayload;
    type Error = tonic::Status;

    fn encode(&mut self, item: InferPayload, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.reserve(item.encoded_len());
        item.encode(dst);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = InferResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<InferResponse>, tonic::Status> {
        InferResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("bad InferResponse: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use stampede_grpc::scheduler::InferRequest;

    fn file(extra: &str) -> ScenarioFile {
        let text = format!(
            "name = \"p\"\ntarget = \"http://127.0.0.1:50051\"\nkind = \"priority\"\n[load]\nmodel = \"open\"\nrate = 30\n{extra}"
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn the_seeds_workloads_and_classes() {
        assert_eq!(class_name(0), "tier1_urgent");
        assert_eq!(class_name(4), "tier2_normal");
        assert_eq!(class_name(8), "tier3_relaxed");
        for (name, shares) in WORKLOADS {
            let sum: f64 = shares.iter().sum();
            assert!((sum - 1.0).abs() < 1e-9, "{name}: {sum}");
        }
        let s = Settings::of(&file("[priority]\nworkload = \"urgent_heavy\"\n")).unwrap();
        assert_eq!(s.shares[0], 0.20);
        assert_eq!(s.shares[8], 0.10);
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        // Defaults without a [priority] table: balanced.
        let s = Settings::of(&file("")).unwrap();
        assert_eq!(s.shares, WORKLOADS[0].1);
        // Below 0.01 qps a class is skipped.
        let a = s.active_shares(0.1);
        assert_eq!(a[0], 0.0, "0.1 × 0.05 = 0.005 qps");
        assert_eq!(a[1], 0.10, "0.1 × 0.10 = 0.01 qps is kept");
    }

    #[test]
    fn custom_workloads_models_and_spikes() {
        let f = file(
            "[priority]\nworkload = \"mine\"\n[priority.workloads.mine]\ntier1_urgent = 3\ntier3_relaxed = 1\n\
             [priority.models]\nurgent = { resnet50 = 1, mobilenet = 1 }\n\
             [[priority.spikes]]\nstart = \"2s\"\nduration = \"1s\"\nfactor = 4\nclasses = [\"tier1\", \"relaxed\"]\n",
        );
        let s = Settings::of(&f).unwrap();
        assert_eq!(s.shares[0], 3.0);
        assert_eq!(s.shares[8], 1.0);
        assert_eq!(s.shares[1], 0.0);
        assert_eq!(s.spikes[0].requests, vec![0, 1, 2, 5, 8]);
        let mut rng = SmallRng::seed_from_u64(1);
        let mobile = (0..10_000)
            .filter(|_| s.models[0].pick(&mut rng) == "mobilenet")
            .count();
        assert!((mobile as f64 / 10_000.0 - 0.5).abs() < 0.03, "{mobile}");
    }

    #[test]
    fn bad_settings_name_the_field() {
        let e = Settings::of(&file("[priority]\nworkload = \"heavy\"\n")).unwrap_err();
        assert_eq!(e.0, "priority.workload");
        assert!(
            e.1.contains("unknown workload `heavy`") && e.1.contains("batch_heavy"),
            "{e:?}"
        );
        let e = Settings::of(&file("[priority.workloads.x]\ntier4_urgent = 1\n")).unwrap_err();
        assert_eq!(e.0, "priority.workloads.x.tier4_urgent");
        let e =
            Settings::of(&file("[priority.workloads.balanced]\ntier1_urgent = 1\n")).unwrap_err();
        assert!(e.1.contains("built-in"), "{e:?}");
        let e = Settings::of(&file("[priority.models]\nfast = { resnet50 = 1 }\n")).unwrap_err();
        assert_eq!(e.0, "priority.models.fast");
        let e = Settings::of(&file(
            "[[priority.spikes]]\nstart = \"1s\"\nduration = \"1s\"\nfactor = 2\nclasses = [\"tier9\"]\n",
        ))
        .unwrap_err();
        assert_eq!(e.0, "priority.spikes[0].classes");
    }

    /// The seed's model mix: urgent → resnet50 only; normal and relaxed 70/30, within 4σ over
    /// 20,000 draws with a fixed seed.
    #[test]
    fn model_mix_is_the_seeds() {
        let s = Settings::of(&file("")).unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        let n = 20_000;
        assert!((0..n).all(|_| s.models[0].pick(&mut rng) == "resnet50"));
        for k in [1, 2] {
            let resnet = (0..n)
                .filter(|_| s.models[k].pick(&mut rng) == "resnet50")
                .count() as f64;
            let sigma = (n as f64 * 0.7 * 0.3).sqrt();
            assert!(
                (resnet - 0.7 * n as f64).abs() < 4.0 * sigma,
                "{k}: {resnet}"
            );
        }
    }

    /// The hand-written encoding is a valid `InferRequest`: prost decodes it to the same
    /// fields, 150,528 floats in [0, 1) with the seed's shape, fresh for each seed.
    #[test]
    fn payload_decodes_as_an_infer_request() {
        let p = InferPayload {
            tier: 2,
            deadline_ns: 1_740_888_024_000_000_000,
            model: "vit".into(),
            tensor: random_tensor(42),
        };
        let mut buf = Vec::new();
        p.encode(&mut buf);
        assert_eq!(buf.len(), p.encoded_len());
        let r = InferRequest::decode(buf.as_slice()).unwrap();
        assert_eq!(r.tier, 2);
        assert_eq!(r.deadline_ns, 1_740_888_024_000_000_000);
        assert_eq!(r.model_name, "vit");
        assert_eq!(r.input_shape, INPUT_SHAPE.to_vec());
        assert_eq!(r.input_tensor.len(), TENSOR_LEN);
        assert!(r.input_tensor.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mean = r.input_tensor.iter().map(|&x| f64::from(x)).sum::<f64>() / TENSOR_LEN as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        // The same encoding prost makes from the decoded message.
        assert_eq!(r.encode_to_vec(), buf);
        let mut other = Vec::new();
        InferPayload {
            tensor: random_tensor(43),
            ..p
        }
        .encode(&mut other);
        let r2 = InferRequest::decode(other.as_slice()).unwrap();
        assert_ne!(r.input_tensor[..16], r2.input_tensor[..16]);
    }

    #[test]
    fn mix_needs_an_open_load_and_sets_loadgens_end_rule() {
        let f = file("[priority]\nmin_query_count = 100\n");
        let open = LoadModel::Open {
            rate: 30.0,
            arrival: crate::Arrival::Poisson,
            burstiness: 1.0,
            max_in_flight: 100,
        };
        let m = mix(&f, &open, Duration::from_secs(60)).unwrap();
        let until = m.until.unwrap();
        assert_eq!(until.min_count, 100);
        assert_eq!(until.min_duration, Duration::from_secs(60));
        // The slowest class: 30 × 0.05 = 1.5 qps needs 66.7 s on average for 100; the hard
        // end leaves room for a piece's unlucky tail.
        assert!(until.max_duration > Duration::from_secs(133), "{until:?}");
        let given = mix(
            &file("[priority]\nmin_query_count = 100\nmax_duration = \"90s\"\n"),
            &open,
            Duration::from_secs(60),
        );
        assert_eq!(
            given.unwrap().until.unwrap().max_duration,
            Duration::from_secs(90)
        );
        let closed = LoadModel::Closed {
            users: 1,
            spawn_rate: 1.0,
        };
        assert_eq!(
            mix(&f, &closed, Duration::from_secs(1)).unwrap_err().0,
            "load.model"
        );
    }

    /// The default hard end: every piece of every split (1..=64 pieces) has had its part of the
    /// count by then with probability ≥ 1 − 10⁻⁶, computed exactly as P(Poisson(λt) < k).
    #[test]
    fn the_default_hard_end_leaves_a_one_in_a_million_tail() {
        for (count, rate) in [(1, 0.6), (1, 30.0), (7, 0.05), (100, 1.5), (5000, 200.0)] {
            let t = count_reached_by(count, rate).as_secs_f64();
            for n in 1..=MAX_PIECES {
                let k = count.div_ceil(n);
                let mu = rate / n as f64 * t;
                // P(N < k) for N ~ Poisson(mu), summed in log space.
                let mut log_term = -mu;
                let mut missed = log_term.exp();
                for j in 1..k {
                    log_term += mu.ln() - (j as f64).ln();
                    missed += log_term.exp();
                }
                assert!(
                    missed <= 1e-6,
                    "count {count} at {rate}/s over {n}: {missed}"
                );
            }
        }
    }

    /// Every workload of the seed, 200 qps over 2 equal workers for 600 s: each class's count
    /// across the fleet is within 4σ of total × share × time, and (balanced) the fleet's
    /// arrivals of each class have exponential gaps of the class's rate (KS test, α = 0.01).
    #[test]
    fn every_workload_gives_each_class_its_share_across_two_workers() {
        use crate::load::{LoadPlan, Next, Schedule};
        use rand::SeedableRng;
        let horizon = 600.0;
        let end = Duration::from_secs_f64(horizon);
        let load = LoadModel::Open {
            rate: 200.0,
            arrival: crate::Arrival::Poisson,
            burstiness: 1.0,
            max_in_flight: 1000,
        };
        for (w, (name, shares)) in WORKLOADS.iter().enumerate() {
            let f = file(&format!("[priority]\nworkload = \"{name}\"\n"));
            let m = mix(&f, &load, end).unwrap();
            let mut times: Vec<Vec<f64>> = vec![Vec::new(); CLASSES];
            for slot in 0..2 {
                let plan = LoadPlan {
                    model: load.clone(),
                    slot,
                    weights: vec![1, 1],
                    scale: 1.0,
                    mix: Some(m.clone()),
                };
                let mut rng = SmallRng::seed_from_u64(1000 + 10 * w as u64 + slot as u64);
                let mut sched = Schedule::new(Duration::ZERO, 0, 1);
                loop {
                    match sched.next(&plan, end, &mut rng) {
                        Next::Arrival { at, request } => {
                            times[request.unwrap()].push(at.as_secs_f64())
                        }
                        Next::Idle { at } => sched.resume_at(at),
                        Next::End => break,
                    }
                }
            }
            for (i, t) in times.iter_mut().enumerate() {
                let rate = 200.0 * shares[i];
                let expected = rate * horizon;
                let n = t.len() as f64;
                assert!(
                    (n - expected).abs() < 4.0 * expected.sqrt(),
                    "{name} {}: {n} arrivals, expected {expected}",
                    class_name(i)
                );
                if w == 0 {
                    t.sort_by(f64::total_cmp);
                    let mut gaps: Vec<f64> = t.windows(2).map(|p| p[1] - p[0]).collect();
                    gaps.sort_by(f64::total_cmp);
                    let m = gaps.len() as f64;
                    let d = gaps
                        .iter()
                        .enumerate()
                        .map(|(k, &x)| {
                            let cdf = 1.0 - (-rate * x).exp();
                            (cdf - k as f64 / m).max((k + 1) as f64 / m - cdf)
                        })
                        .fold(0.0, f64::max);
                    assert!(d < 1.63 / m.sqrt(), "{}: KS statistic {d}", class_name(i));
                }
            }
        }
    }

    /// A driver of an open priority scenario sending to `addr`, and a recorder for it. Must run
    /// inside a tokio runtime (see [`PriorityDriver::new`]).
    fn driver_to(addr: &str) -> (PriorityDriver, Recorder) {
        driver_of(&format!("http://{addr}"), "")
    }

    /// [`driver_to`] for a target URL, with more scenario text (`[tls]`); its files resolved.
    fn driver_of(url: &str, extra: &str) -> (PriorityDriver, Recorder) {
        let text = format!(
            "name = \"p\"\nkind = \"priority\"\ntarget = \"{url}\"\n[load]\nmodel = \"open\"\nrate = 10\n{extra}"
        );
        let mut config =
            ScenarioConfig::parse(&text, "t.toml", &crate::Overrides::default()).unwrap();
        config.resolve_files("t.toml").unwrap();
        let driver = PriorityDriver::new(&config).unwrap();
        let names = driver.requests().iter().map(|r| r.name.clone()).collect();
        let recorder = Recorder::for_driver(names, &driver, 1);
        (driver, recorder)
    }

    /// Arrivals the engine dropped are counted for their class, beside its scheduled ones;
    /// nothing is sent for them.
    #[tokio::test]
    async fn dropped_arrivals_count_per_class() {
        // Nothing listens there: a request sent would fail, but none is.
        let (driver, recorder) = driver_to("127.0.0.1:9");
        driver.dropped(Some(4), &recorder);
        driver.dropped(Some(4), &recorder);
        driver.dropped(Some(7), &recorder);
        // No class from the schedule: none to count it for.
        driver.dropped(None, &recorder);
        let interval = recorder.take();
        let dropped = COUNTERS
            .iter()
            .position(|c| c.name == COUNTER_DROPPED)
            .unwrap();
        let scheduled = COUNTERS
            .iter()
            .position(|c| c.name == COUNTER_SCHEDULED)
            .unwrap();
        for (class, n) in interval.names.iter().enumerate() {
            let want = match class {
                4 => 2,
                7 => 1,
                _ => 0,
            };
            assert_eq!(n.counters[dropped], want, "{}", class_name(class));
            assert_eq!(n.counters[scheduled], 0);
            assert_eq!(n.requests, 0);
        }
    }

    /// A real gRPC server (tonic, loopback) sees each class's tier, model and tensor; its
    /// `deadline_ns` is exactly the row's `timestamp_issued` + the class's SLO, and never
    /// later than the server's clock at receipt + the SLO. The CSV rows carry the seed's columns.
    #[tokio::test]
    async fn requests_carry_tier_model_tensor_and_deadline() {
        use stampede_grpc::scheduler::InferRequest;
        use stampede_grpc::scheduler::scheduler_service_server::{
            SchedulerService, SchedulerServiceServer,
        };
        use tokio::sync::mpsc;

        struct Capture(mpsc::UnboundedSender<(InferRequest, i64)>);
        #[tonic::async_trait]
        impl SchedulerService for Capture {
            async fn infer(
                &self,
                r: tonic::Request<InferRequest>,
            ) -> Result<tonic::Response<InferResponse>, tonic::Status> {
                let r = r.into_inner();
                let deadline_ns = r.deadline_ns;
                let _ = self.0.send((r, unix_ns()));
                Ok(tonic::Response::new(InferResponse {
                    deadline_ns,
                    success: true,
                    message: "ok".into(),
                }))
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(SchedulerServiceServer::new(Capture(tx)))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        let (driver, recorder) = driver_to(&addr.to_string());
        let mut session = driver.session();
        let mut rng = SmallRng::seed_from_u64(5);
        for class in 0..CLASSES {
            session
                .call(Call {
                    rng: &mut rng,
                    recorder: &recorder,
                    scheduled: std::time::Instant::now(),
                    elapsed: Duration::ZERO,
                    request: Some(class),
                })
                .await;
        }
        let interval = recorder.take();
        let rows = String::from_utf8(interval.rows[0].clone()).unwrap();
        let rows: Vec<Vec<&str>> = rows.lines().map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), CLASSES);
        for (class, row) in rows.iter().enumerate() {
            let (r, received_ns) = rx.recv().await.unwrap();
            assert_eq!(r.tier, tier_of(class));
            assert_eq!(r.input_tensor.len(), TENSOR_LEN);
            assert_eq!(r.input_shape, INPUT_SHAPE.to_vec());
            let slo = slo_of(class).as_nanos() as i64;
            let issued: i64 = row[0].parse().unwrap();
            assert_eq!(r.deadline_ns, issued + slo, "{row:?}");
            assert!(r.deadline_ns <= received_ns + slo);
            assert_eq!(row[2], r.tier.to_string());
            assert_eq!(row[3], SLOS[class % 3].0);
            assert_eq!(row[4], r.model_name);
            if class % 3 == 0 {
                assert_eq!(r.model_name, "resnet50");
            }
        }
        // Every class answered: one request each, none failed.
        assert!(
            interval
                .names
                .iter()
                .all(|n| n.requests == 1 && n.failures == 0)
        );
    }

    /// The scheduler target over TLS (a fresh self-signed certificate) on loopback: its
    /// `https://` URL, its certificate (PEM) and its counters.
    async fn tls_scheduler() -> (
        String,
        String,
        Arc<stampede_targets::scheduler::SchedulerStats>,
    ) {
        use stampede_targets::scheduler::{SchedulerConfig, SchedulerStats, serve, tls};
        let tls = tls::SchedulerTls::self_signed().unwrap();
        let cert = tls.cert_pem().to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let stats = Arc::new(SchedulerStats::default());
        let config = SchedulerConfig {
            tls: Some(tls),
            ..SchedulerConfig::default()
        };
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(serve(listener, config, stats.clone(), shutdown));
        (url, cert, stats)
    }

    /// One request of each class through `driver`; how many requests there were, and the
    /// failure kinds recorded other than `success=false`.
    async fn one_per_class(driver: &PriorityDriver, recorder: &Recorder) -> (u64, Vec<String>) {
        let mut session = driver.session();
        let mut rng = SmallRng::from_rng(&mut rand::rng());
        for class in 0..CLASSES {
            session
                .call(Call {
                    rng: &mut rng,
                    recorder,
                    scheduled: std::time::Instant::now(),
                    elapsed: Duration::ZERO,
                    request: Some(class),
                })
                .await;
        }
        let interval = recorder.take();
        let requests = interval.names.iter().map(|n| n.requests).sum();
        // `success=false`: answered, but expired in the queue (an unoptimized build's first
        // handshakes can outlast an urgent class's 100 ms); the exchange itself worked.
        let kinds = interval
            .names
            .iter()
            .flat_map(|n| n.failure_kinds.iter().map(|(k, _)| k.clone()))
            .filter(|k| k != "success=false")
            .collect();
        (requests, kinds)
    }

    /// `https://` with the scheduler's certificate as `[tls] ca`: every class is answered over
    /// TLS and the scheduler received each; `insecure` works without the certificate; with
    /// neither, each request is a failure naming the TLS cause, not a bare `unavailable`.
    #[tokio::test]
    async fn https_targets_use_the_scenarios_tls() {
        let (url, cert, stats) = tls_scheduler().await;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, &cert).unwrap();
        let trusted = format!("[tls]\nca = \"{}\"\n", ca.display());
        let (driver, recorder) = driver_of(&url, &trusted);
        let (requests, kinds) = one_per_class(&driver, &recorder).await;
        assert_eq!((requests, kinds.len()), (CLASSES as u64, 0), "{kinds:?}");
        assert_eq!(stats.counts().received, CLASSES as u64);

        let (driver, recorder) = driver_of(&url, "[tls]\ninsecure = true\n");
        let (requests, kinds) = one_per_class(&driver, &recorder).await;
        assert_eq!((requests, kinds.len()), (CLASSES as u64, 0), "{kinds:?}");

        let (driver, recorder) = driver_of(&url, "");
        let (requests, kinds) = one_per_class(&driver, &recorder).await;
        assert_eq!(requests, CLASSES as u64);
        assert_eq!(kinds.len(), CLASSES, "one kind per class: {kinds:?}");
        assert!(
            kinds
                .iter()
                .all(|k| k == "tls: invalid peer certificate: UnknownIssuer"),
            "{kinds:?}"
        );
        assert_eq!(stats.counts().received, 2 * CLASSES as u64);
    }

    /// A refused connection is named as such (`connect: connection refused`), found under
    /// tonic's `unavailable` status.
    #[tokio::test]
    async fn a_refused_connect_is_named() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (driver, recorder) = driver_to(&format!("127.0.0.1:{port}"));
        let (_, kinds) = one_per_class(&driver, &recorder).await;
        assert!(
            !kinds.is_empty() && kinds.iter().all(|k| k == "connect: connection refused"),
            "{kinds:?}"
        );
    }
}
