//! What the master publishes about itself once a second (and on every change of state): the
//! fleet and the current run's live figures. Every reader (the API, /metrics, the progress
//! line, a terminal UI) takes the latest [`Snapshot`] from a `watch` channel and never touches
//! the coordinator, so no reader can slow aggregation or the protocol down.

use std::collections::BTreeMap;

use serde::Serialize;
use stampede_scenarios::Kind;
use stampede_scenarios::spec::{Specs, Unit};

pub use crate::state::{RunState, RunStatus, WorkerState};

/// Upper bounds of every time histogram's buckets, seconds: ten per decade from 100 µs to
/// 10 s (neighbours at most 4/3 apart), then up to 2 minutes, so a `histogram_quantile` p99
/// lands within one bucket of the exact one.
pub const DURATION_BUCKETS: [f64; 56] = [
    0.0001, 0.000125, 0.00015, 0.0002, 0.00025, 0.0003, 0.0004, 0.0005, 0.0006, 0.00075, //
    0.001, 0.00125, 0.0015, 0.002, 0.0025, 0.003, 0.004, 0.005, 0.006, 0.0075, //
    0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.075, //
    0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, //
    1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.5, //
    10.0, 15.0, 20.0, 30.0, 60.0, 120.0,
];

/// Upper bounds of throughput histograms, bytes per second: 1-2-5 steps from 1 kB/s to
/// 10 GB/s.
pub const THROUGHPUT_BUCKETS: [f64; 22] = [
    1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 2e7, 5e7, 1e8, 2e8, 5e8, 1e9,
    2e9, 5e9, 1e10,
];

/// How a histogram's recorded values convert to the unit readers get (seconds, bytes/s).
#[derive(Debug, Clone, Copy)]
pub struct Exported<'a> {
    /// The bucket bounds, in the exported unit.
    pub bounds: &'a [f64],
    /// Recorded value × scale = exported value.
    pub scale: f64,
}

impl Exported<'static> {
    /// Request latency and schedule lag: µs, exported as seconds.
    pub const TIME: Exported<'static> = Exported {
        bounds: &DURATION_BUCKETS,
        scale: 1e-6,
    };

    /// A driver histogram recorded in `unit`: kB/s exported as bytes/s, anything else as a
    /// time in µs (exported as seconds).
    pub fn of(unit: Unit) -> Exported<'static> {
        match unit {
            Unit::KilobytesPerSecond => Exported {
                bounds: &THROUGHPUT_BUCKETS,
                scale: 1000.0,
            },
            Unit::Micros | Unit::Count | Unit::Tokens => Exported::TIME,
        }
    }

    /// The exported unit of metric `name` of a run with `specs` (µs when it has no spec).
    pub fn of_metric(specs: &Specs, name: &str) -> Exported<'static> {
        specs
            .metric(name)
            .map_or(Exported::TIME, |s| Exported::of(s.unit))
    }
}

/// A worker as the master sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkerView {
    /// The master's id for it.
    pub id: u64,
    /// Its name (host and pid).
    pub name: String,
    /// Its address.
    pub addr: String,
    /// Cores it offers (its weight in the split).
    pub cores: u32,
    /// `ready` (idle), `assigned`, `running`, or `lost`.
    pub state: WorkerState,
    /// Its fraction of the current run's load, 0..1.
    pub share: f64,
    /// Requests it reported in the current run; between runs, in the last one.
    pub requests: u64,
    /// Requests per second in its last report interval.
    pub rps: f64,
    /// Seconds since anything was heard from it.
    pub last_seen_s: f64,
    /// Its clock minus the master's, ms (measured with pings).
    pub clock_offset_ms: f64,
    /// Its host's latest readings in the current run (`host_cpu_percent`,
    /// `host_disk_percent`), when it sent any.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub gauges: BTreeMap<String, f64>,
}

/// Live figures of one request name (or the aggregate).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NameView {
    /// Locust's "Type".
    #[serde(rename = "type")]
    pub kind: String,
    /// The request name.
    pub name: String,
    /// Requests so far.
    pub requests: u64,
    /// Failures so far.
    pub failures: u64,
    /// Requests per second, last interval.
    pub rps: f64,
    /// Failures per second, last interval.
    pub fps: f64,
    /// Median latency of the last interval alone, ms (0 when it had no request).
    pub interval_p50_ms: f64,
    /// p99 of the last interval alone, ms (0 when it had no request).
    pub interval_p99_ms: f64,
    /// Smallest latency so far, ms (0 before any request).
    pub min_ms: f64,
    /// Latency percentiles over the whole run so far, ms.
    pub p50_ms: f64,
    /// p90, ms.
    pub p90_ms: f64,
    /// p95, ms.
    pub p95_ms: f64,
    /// p99, ms.
    pub p99_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Latency over the whole run so far at [`crate::summary::LOCUST_PERCENTILES`] (50% ..
    /// 100%), ms: Locust's CSV columns, live. Not in the JSON: `p50_ms` .. `max_ms` are.
    #[serde(skip)]
    pub percentiles_ms: [f64; 11],
    /// Response bytes so far.
    pub bytes: u64,
    /// Extra counters the driver records (`input_tokens`, `output_tokens`, ...), totals so far.
    pub counters: BTreeMap<String, u64>,
    /// Extra metrics the driver records (`ttft`, `tpot`, `itl`, ...), over the run so far.
    pub metrics: BTreeMap<String, MetricView>,
    /// The whole run's latencies at the bounds of [`DURATION_BUCKETS`], for the Prometheus
    /// histogram.
    #[serde(skip)]
    pub latency: Buckets,
}

/// A histogram as Prometheus wants it: cumulative counts at fixed upper bounds, the count and
/// the sum, in the exported unit. Computed when a snapshot is made, so a scrape only formats.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    /// Values at or below each bound, in the bounds' order.
    pub cumulative: Vec<u64>,
    /// Every value (the `+Inf` bucket).
    pub count: u64,
    /// Their sum, in the exported unit.
    pub sum: f64,
}

impl Buckets {
    /// `h`'s values times `scale` (µs × 1e-6 → seconds), counted at `bounds`, in one pass over
    /// its recorded values. A value counts in a bucket when the lowest value of its HDR bucket
    /// is within the bound.
    pub fn of(h: &hdrhistogram::Histogram<u64>, bounds: &[f64], scale: f64) -> Buckets {
        Buckets::exported(h, Exported { bounds, scale })
    }

    /// `h`, a histogram of µs, as seconds at [`DURATION_BUCKETS`].
    pub fn time(h: &hdrhistogram::Histogram<u64>) -> Buckets {
        Buckets::exported(h, Exported::TIME)
    }

    /// `h` at the bounds and scale of `unit`.
    pub fn exported(h: &hdrhistogram::Histogram<u64>, unit: Exported<'_>) -> Buckets {
        let (bounds, scale) = (unit.bounds, unit.scale);
        let mut cumulative = vec![0u64; bounds.len()];
        let mut below = 0u64;
        let mut i = 0;
        for v in h.iter_recorded() {
            let value = h.lowest_equivalent(v.value_iterated_to()) as f64 * scale;
            while i < bounds.len() && value > bounds[i] {
                cumulative[i] = below;
                i += 1;
            }
            below += v.count_at_value();
        }
        for slot in cumulative.iter_mut().skip(i) {
            *slot = below;
        }
        Buckets {
            cumulative,
            count: h.len(),
            sum: if h.is_empty() {
                0.0
            } else {
                h.mean() * h.len() as f64 * scale
            },
        }
    }
}

/// A driver's extra histogram metric (times in ms).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricView {
    /// Values recorded.
    pub count: u64,
    /// Median, ms.
    pub p50_ms: f64,
    /// p90, ms.
    pub p90_ms: f64,
    /// p99, ms.
    pub p99_ms: f64,
    /// Mean, ms.
    pub mean_ms: f64,
    /// Largest, ms.
    pub max_ms: f64,
    /// The values at the bounds of the metric's unit ([`Exported::of`]).
    #[serde(skip)]
    pub buckets: Buckets,
}

impl MetricView {
    /// The view of a metric exported as `unit`, a histogram of µs (or of the unit its
    /// driver states).
    pub fn of(unit: Exported<'_>, h: &hdrhistogram::Histogram<u64>) -> MetricView {
        let ms = |us: u64| us as f64 / 1000.0;
        let buckets = Buckets::exported(h, unit);
        if h.is_empty() {
            return MetricView {
                count: 0,
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                mean_ms: 0.0,
                max_ms: 0.0,
                buckets,
            };
        }
        MetricView {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            mean_ms: h.mean() / 1000.0,
            max_ms: ms(h.max()),
            buckets,
        }
    }
}

/// The current (or last) run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunView {
    /// The run's id.
    pub id: u64,
    /// The scenario's name.
    pub scenario: String,
    /// The scenario's kind (its request driver: `http`, `llm`, ...).
    pub kind: Kind,
    /// The load as the scenario states it, one line (`closed: 10 users for 30s`), before
    /// [`RunView::scale`].
    pub load: String,
    /// `assigning`, `running`, `stopping`, `finished`.
    pub state: RunState,
    /// Seconds since load started.
    pub elapsed_s: f64,
    /// The run's planned length, seconds; 0 when it lasts until stopped (Locust's `/swarm`
    /// without `run_time`).
    pub duration_s: f64,
    /// Users (closed) or requests in flight (open) across workers.
    pub users: u64,
    /// The whole open-model rate workers are producing now (0 for closed models).
    pub target_rate: f64,
    /// The scale the user set (1.0 = as written).
    pub scale: f64,
    /// Intervals (seconds) aggregated so far: it moves when the per-interval figures do, so a
    /// reader keeping a time series takes one point per value.
    pub intervals: u64,
    /// Per request name.
    pub names: Vec<NameView>,
    /// All names together.
    pub total: NameView,
    /// Failures by request name and kind, most frequent first.
    pub failures: Vec<FailureView>,
    /// Noteworthy events (workers lost, shares moved).
    pub events: Vec<String>,
    /// Why it ended, once it has.
    pub stop_reason: Option<String>,
    /// How it ended, once it has (summary.json's `status`).
    pub status: Option<RunStatus>,
    /// Schedule lag (open model) at the bounds of [`DURATION_BUCKETS`].
    #[serde(skip)]
    pub schedule_lag: Buckets,
    /// What the driver's metrics and counters are: every sink iterates these.
    #[serde(skip)]
    pub specs: Specs,
}

/// Failures of one kind for one request name, so far.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailureView {
    /// Locust's "Method" (the name's "Type").
    #[serde(rename = "type")]
    pub kind: String,
    /// The request name.
    pub name: String,
    /// The failure kind (`HTTP 503`, `timeout`, ...).
    pub error: String,
    /// How many times.
    pub occurrences: u64,
}

/// Everything published.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Snapshot {
    /// Connected workers, and lost ones of the current run.
    pub workers: Vec<WorkerView>,
    /// The current run, or the last one.
    pub run: Option<RunView>,
}

impl Snapshot {
    /// Workers in a state.
    pub fn count(&self, state: WorkerState) -> usize {
        self.workers.iter().filter(|w| w.state == state).count()
    }
}
