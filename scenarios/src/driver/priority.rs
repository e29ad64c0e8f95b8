//! The `priority` driver: the traffic of the MLPerf-LoadGen priority runner (`loadgen_runner.py`),
//! of 9 request classes (tier 1..3 × SLO urgent 100 ms / normal 500 ms / relaxed 2000 ms) to a GPU
//! scheduler over gRPC (`SchedulerService.Infer` of the runner's `scheduler.proto`).
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
//! runner's CSV columns. It does not decide when requests go out: the engine does.

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

use super::grpc::{Connections, GrpcConnector, failure_under};
use super::transport::{CONNECTION_COUNTERS, CONNECTION_METRICS, ConnectionSlots};
use super::{Call, CallFuture, Driver, DriverError, RequestInfo, Session};
use crate::load::{LoadModel, Mix, Spike, Until};
use crate::model::Common;
use crate::recorder::{Failure, RecordStream, Recorder};
use crate::spec::{Family, MetricSpec, Role, Specs, Unit};
use crate::units::{Count, HumanDuration};

/// The SLO classes: name and latency target, in the runner's order.
pub const SLOS: [(&str, Duration); 3] = [
    ("urgent", Duration::from_millis(100)),
    ("normal", Duration::from_millis(500)),
    ("relaxed", Duration::from_millis(2000)),
];

/// Request classes: tier 1..3 × [`SLOS`], in the runner's order (1U, 1N, 1R, 2U, ...).
pub const CLASSES: usize = 9;

/// The runner's workload distributions: fraction of the total rate per class, in class order.
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

/// Classes below this rate (requests per second, across workers) are skipped, as the runner does.
pub const MIN_CLASS_QPS: f64 = 0.01;

/// The input tensor's shape (the same for both models in the runner).
pub const INPUT_SHAPE: [i32; 4] = [1, 3, 224, 224];
/// Floats per tensor: 1 × 3 × 224 × 224.
pub const TENSOR_LEN: usize = 150_528;

/// The runner's `stub.Infer(request, timeout=5.0)`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The per-request record stream (the runner's `--metrics-csv`).
pub const STREAM: &str = "metrics";
/// Its columns, exactly the runner's.
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
    CONNECTION_COUNTERS[0],
    CONNECTION_COUNTERS[1],
];
/// Where the connection metrics and counters sit: after the three counters of its own.
const SLOTS: ConnectionSlots = ConnectionSlots::after(0, 3);

/// The figures of a `priority` run: the connection metrics (no histograms of its own besides
/// latency) and its counters, the connection ones ([`CONNECTION_COUNTERS`]) last.
pub const SPECS: Specs = Specs {
    metrics: CONNECTION_METRICS,
    counters: COUNTERS,
};

/// The gRPC method.
const INFER_PATH: &str = "/scheduler.SchedulerService/Infer";

/// The name of class `i`: `tier{T}_{slo}` (the runner's LoadGen log folder, and the request name in
/// reports).
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
    /// runner's (urgent: resnet50; normal and relaxed: 70 % resnet50, 30 % vit).
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
    /// Per-request timeout (default 5 s, the runner's); a request past it is a `timeout` failure.
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

    /// A model picked by weight (`random.choices` in the runner).
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
    pub fn of(priority: Option<&PriorityFile>) -> Result<Settings, (String, String)> {
        let default = PriorityFile::default();
        let p = priority.unwrap_or(&default);
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
    /// [`MIN_CLASS_QPS`] is skipped (share 0), as the runner does.
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
pub fn catalog() -> Vec<RequestInfo> {
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

/// Checks a priority scenario's `[priority]`; `Err((field, message))`.
pub fn validate(priority: Option<&PriorityFile>) -> Result<(), (String, String)> {
    Settings::of(priority).map(|_| ())
}

/// The per-request timeout of a priority scenario.
pub fn timeout(priority: Option<&PriorityFile>) -> Duration {
    Settings::of(priority).map_or(DEFAULT_TIMEOUT, |s| s.timeout)
}

/// The rates per class: one Poisson process per class at `rate × share` (classes under
/// [`MIN_CLASS_QPS`] skipped), the spikes, and LoadGen's end rule when `min_query_count` is set.
pub fn mix(
    priority: Option<&PriorityFile>,
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
    let s = Settings::of(priority)?;
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
    /// One channel (HTTP/2 connection) per class, as the runner has one per LoadGen instance.
    channels: Vec<Channel>,
    /// The connections each class's channel made, for its requests' connection figures.
    connections: Vec<Connections>,
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
    pub fn new(
        common: &Common,
        priority: Option<&PriorityFile>,
    ) -> Result<PriorityDriver, DriverError> {
        let base = super::base_url(common.target)?;
        let settings =
            Settings::of(priority).map_err(|(f, m)| DriverError::Invalid(format!("{f}: {m}")))?;
        // Connections are ours (TCP, then rustls on https://, as the HTTP drivers make them):
        // tonic's own TLS cannot skip verification (`insecure`) and would need a TLS feature
        // of tonic's that refuses https:// URLs given to a connector of one's own.
        let connector = GrpcConnector::new(super::transport::Endpoint::of(
            &base,
            common.tls,
            crate::tls::Alpn::Http2,
        )?);
        let endpoint = Endpoint::from_shared(base.to_string())
            .map_err(|e| DriverError::Invalid(format!("target `{base}`: {e}")))?
            // Covers the TCP connect and the TLS handshake.
            .connect_timeout(settings.timeout)
            // 600 KB requests: a window of a few requests avoids a round trip per 64 KB.
            .initial_stream_window_size(Some(4 << 20))
            .initial_connection_window_size(Some(16 << 20));
        let connections: Vec<Connections> = (0..CLASSES).map(|_| Connections::default()).collect();
        let channels = connections
            .iter()
            .map(|c| {
                let connector = connector.clone().with_connections(c.clone());
                endpoint.connect_with_connector_lazy(connector)
            })
            .collect();
        Ok(PriorityDriver {
            inner: Arc::new(Inner {
                catalog: catalog(),
                streams: record_streams(),
                channels,
                connections,
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

    fn metrics(&self) -> &'static [MetricSpec] {
        SPECS.metrics
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
            inner.connections[class].record(call.recorder, class, &SLOTS, outcome.as_ref().err());
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
    // Scramble the random seed (splitmix64's finalizer), so nearby seeds give unrelated tensors;
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
mod tests;
