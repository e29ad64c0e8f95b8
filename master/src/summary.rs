//! The figures of a run as the master holds them: merged per request name, per interval for
//! the history, per worker. Built by the aggregator; read by every sink (results files, the
//! end-of-run table, the API, /metrics).
//!
//! Plain data with exact HDR histograms (µs); nothing here does I/O.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use stampede_scenarios::report::Figures;
use stampede_scenarios::spec::Specs;

use crate::state::{RunEnd, RunStatus, WorkerState};

/// The name of the row that sums every request name, as Locust calls it.
pub const AGGREGATED: &str = "Aggregated";

/// The percentiles of Locust's CSV columns, in column order (`50%` .. `100%`).
pub const LOCUST_PERCENTILES: [f64; 11] = [
    0.50, 0.66, 0.75, 0.80, 0.90, 0.95, 0.98, 0.99, 0.999, 0.9999, 1.0,
];

/// Everything recorded for one request name (or for all of them: [`AGGREGATED`]).
#[derive(Debug, Clone)]
pub struct NameStats {
    /// Locust's "Type": the HTTP method or the driver's word for it (empty for the aggregate).
    pub kind: String,
    /// The request name.
    pub name: String,
    /// Requests completed (successes and failures).
    pub requests: u64,
    /// Requests that failed.
    pub failures: u64,
    /// Response bytes received.
    pub bytes: u64,
    /// Latency of every request, µs.
    pub latency: Histogram<u64>,
    /// Extra metrics a driver recorded (`ttft`, ...), by metric name.
    pub metrics: BTreeMap<String, Histogram<u64>>,
    /// Extra counters a driver recorded, by counter name.
    pub counters: BTreeMap<String, u64>,
}

/// Failures of one kind for one request name.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureRow {
    /// Locust's "Method".
    pub kind: String,
    /// The request name.
    pub name: String,
    /// The failure kind (`HTTP 503`, `timeout`, ...).
    pub error: String,
    /// How many times.
    pub occurrences: u64,
}

/// The state of one request name at one second of the run (a `stats_history.csv` row).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// Locust's "Type".
    pub kind: String,
    /// The request name or [`AGGREGATED`].
    pub name: String,
    /// Requests per second over the last interval.
    pub rps: f64,
    /// Failures per second over the last interval.
    pub fps: f64,
    /// Latency at [`LOCUST_PERCENTILES`] over the last interval, µs (0 when it had no request).
    pub percentiles_us: [u64; 11],
    /// Requests so far.
    pub total_requests: u64,
    /// Failures so far.
    pub total_failures: u64,
    /// Median latency so far, µs.
    pub total_median_us: u64,
    /// Mean latency so far, µs.
    pub total_mean_us: f64,
    /// Smallest latency so far, µs.
    pub total_min_us: u64,
    /// Largest latency so far, µs.
    pub total_max_us: u64,
    /// Mean response size so far, bytes.
    pub total_avg_bytes: f64,
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// Wall clock, Unix seconds.
    pub unix_s: u64,
    /// Users (closed) or requests in flight (open) across workers.
    pub users: u64,
    /// One entry per request name that has had a request, then the aggregate.
    pub entries: Vec<HistoryEntry>,
}

/// How a worker took part in the run.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerSummary {
    /// The master's id for the worker.
    pub id: u64,
    /// The worker's name (host and pid).
    pub name: String,
    /// Its address as the master saw it.
    pub addr: String,
    /// Requests it reported.
    pub requests: u64,
    /// Failures it reported.
    pub failures: u64,
    /// `finished`, or `lost` if the connection dropped before its last report.
    pub state: WorkerState,
    /// Seconds into the run when it was lost.
    pub lost_at_s: Option<f64>,
    /// When its earliest and its latest user sent their first request, ms after the run's
    /// start instant, in the master's clock (the worker's report corrected by the measured
    /// clock offset); `None` if none did.
    pub first_sends_ms: Option<(f64, f64)>,
    /// Mean latency of its requests, ms (0 if it reported none).
    pub mean_ms: f64,
    /// Its latest readings by name: `host_cpu_percent` (its host's CPU busy over the run) and
    /// `host_disk_percent` (used share of its root filesystem), when it could read them.
    pub gauges: BTreeMap<String, f64>,
}

/// The verdict of one threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdOutcome {
    /// The threshold as written (`p99_ms < 250`).
    pub threshold: String,
    /// The run's figure.
    pub actual: f64,
    /// Whether it holds.
    pub passed: bool,
}

/// The whole run, as written to `summary.json` and the CSV files.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run's id.
    pub run_id: u64,
    /// The scenario's name.
    pub scenario: String,
    /// The scenario kind (`http`, `llm`, `download`, ...).
    pub kind: String,
    /// The target (URL).
    pub target: String,
    /// A one-line description of the load model (`closed: 50 users, spawn 10/s`), with the
    /// latest users or rate when the run was rescaled (`closed: 2 users (8 at start), ...`).
    pub load: String,
    /// When load started, Unix ms.
    pub started_unix_ms: u64,
    /// When load stopped, Unix ms: the duration's end, or when a stop was asked (or the last
    /// worker finished or was lost). Between the start and the end: the end also waits for
    /// the requests in flight, whose figures count.
    pub stopped_unix_ms: u64,
    /// When the last report arrived, Unix ms.
    pub ended_unix_ms: u64,
    /// Why the run ended (`duration reached`, `stopped by user`, `no workers left`).
    pub stop_reason: RunEnd,
    /// Whether a degraded run (a worker lost, its share moved) may still pass
    /// (`--tolerate-worker-loss`).
    pub tolerate_worker_loss: bool,
    /// Per request name, in scenario order (names with no request included).
    pub stats: Vec<NameStats>,
    /// All names together.
    pub total: NameStats,
    /// Failures by name and kind.
    pub failures: Vec<FailureRow>,
    /// Second by second.
    pub history: Vec<HistoryRow>,
    /// Every worker that took part.
    pub workers: Vec<WorkerSummary>,
    /// Schedule lag (open model), µs.
    pub schedule_lag: Option<Histogram<u64>>,
    /// Threshold verdicts (empty if the scenario has none).
    pub thresholds: Vec<ThresholdOutcome>,
    /// Things the user should know (a worker lost, its share moved, reports missing).
    pub events: Vec<String>,
    /// How an `https://` target was trusted; `None` for plain `http://` (and non-URL targets).
    pub tls: Option<TlsSummary>,
    /// What the driver's metrics and counters are: every sink iterates these.
    pub specs: Specs,
}

/// The prefix of the failure kinds of a certificate the client did not accept
/// (`tls: invalid peer certificate: UnknownIssuer`).
pub const CERTIFICATE_FAILURE: &str = "tls: invalid peer certificate";

/// Whether a run event is a hint to the user ([`CERTIFICATE_HINT`], ...): what `stampede run`
/// prints on stderr as it happens, besides keeping it with the other events.
pub fn is_hint(event: &str) -> bool {
    event.starts_with("hint: ")
}

/// What to tell a user whose run fails on the target's certificate alone.
pub const CERTIFICATE_HINT: &str = "hint: the target's certificate is not trusted: pass --ca FILE \
(or [tls] ca) to trust its CA, or --insecure to skip verification";

/// What a run against a target whose certificate is not verified says, once, at its start.
pub const INSECURE_WARNING: &str = "TLS certificate verification is OFF (--insecure / [tls] \
insecure): any server can pose as the target, and this run's figures may not be its";

/// Whether failure kinds (at least one) are all certificate failures ([`CERTIFICATE_FAILURE`]):
/// then [`CERTIFICATE_HINT`] applies. The kinds arrive from workers as text, so the prefix is
/// all there is to classify them by.
pub fn all_certificate_failures<'a>(kinds: impl IntoIterator<Item = &'a str>) -> bool {
    let mut any = false;
    for kind in kinds {
        if !kind.starts_with(CERTIFICATE_FAILURE) {
            return false;
        }
        any = true;
    }
    any
}

/// The TLS settings of a run against an `https://` target, as `summary.json` records them:
/// whether verification was skipped must be on record with the figures it produced. File
/// contents and paths stay out (a key's path says nothing about the run).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsSummary {
    /// Certificate verification was skipped (`--insecure`, `[tls] insecure`).
    pub insecure: bool,
    /// The name sent as SNI and checked in the certificate, when it was not the target's host.
    pub server_name: Option<String>,
    /// A custom CA was trusted besides the system's roots (`--ca`, `[tls] ca`).
    pub ca: bool,
    /// A client certificate was presented (mutual TLS).
    pub client_cert: bool,
}

impl TlsSummary {
    /// The summary for a run against `target` with the scenario's `[tls]` table: `None` unless
    /// the target is an `https://` URL (defaults when the table is absent).
    pub fn of(
        target: &stampede_scenarios::Target,
        tls: Option<&stampede_scenarios::tls::TlsFile>,
    ) -> Option<TlsSummary> {
        let stampede_scenarios::Target::Url(uri) = target else {
            return None;
        };
        if uri.scheme_str() != Some("https") {
            return None;
        }
        let Some(file) = tls else {
            return Some(TlsSummary::default());
        };
        Some(TlsSummary {
            insecure: file.insecure,
            server_name: file.server_name.clone(),
            ca: file.ca.is_some() || file.material.ca.is_some(),
            client_cert: file.client_cert.is_some() || file.material.client_cert.is_some(),
        })
    }
}

impl RunSummary {
    /// Seconds between the start and the end.
    pub fn duration_s(&self) -> f64 {
        (self.ended_unix_ms.saturating_sub(self.started_unix_ms)) as f64 / 1000.0
    }

    /// Seconds between the start and when load stopped (without waiting for the requests in
    /// flight): the test duration of ai-on-gke's `locust-runner`.
    pub fn load_s(&self) -> f64 {
        (self.stopped_unix_ms.saturating_sub(self.started_unix_ms)) as f64 / 1000.0
    }

    /// Whether the run passed: it completed (or was degraded, with `--tolerate-worker-loss`),
    /// at least one request succeeded, and every threshold held.
    pub fn passed(&self) -> bool {
        let went = match self.status() {
            RunStatus::Completed => true,
            RunStatus::Degraded => self.tolerate_worker_loss,
            RunStatus::Stopped | RunStatus::Failed | RunStatus::Incomplete => false,
        };
        went && !self.all_failed() && self.thresholds.iter().all(|t| t.passed)
    }

    /// Whether requests were made and every one failed.
    pub fn all_failed(&self) -> bool {
        self.total.requests > 0 && self.total.failures >= self.total.requests
    }

    /// How the run ended, in the one set of words every sink uses (see [`RunStatus`]):
    /// `failed` when it could not take place, lost every worker or made no request;
    /// `stopped` when someone stopped it early; `degraded` when a worker was lost and its
    /// share moved; else `completed`. A run whose requests all failed still took place: it is
    /// `completed`, and does not pass.
    pub fn status(&self) -> RunStatus {
        if self.stop_reason == RunEnd::InProgress {
            return RunStatus::Incomplete;
        }
        if self.stop_reason.is_failure() {
            return RunStatus::Failed;
        }
        if self.stop_reason.is_stop() {
            return RunStatus::Stopped;
        }
        if self.total.requests == 0 {
            return RunStatus::Failed;
        }
        if self.workers.iter().any(|w| w.state == WorkerState::Lost) {
            return RunStatus::Degraded;
        }
        RunStatus::Completed
    }

    /// Spread of the first requests across every worker, ms: from the earliest user's first
    /// request to the latest's, in the master's clock (`None` when no worker said).
    pub fn start_spread_ms(&self) -> Option<f64> {
        let sends = self.workers.iter().filter_map(|w| w.first_sends_ms);
        let (min, max) = sends.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (a, b)| {
            (lo.min(a), hi.max(b))
        });
        (min.is_finite() && max.is_finite()).then_some(max - min)
    }
}

impl NameStats {
    /// Empty stats for a name.
    pub fn new(kind: &str, name: &str) -> NameStats {
        NameStats {
            kind: kind.to_string(),
            name: name.to_string(),
            requests: 0,
            failures: 0,
            bytes: 0,
            latency: stampede_scenarios::recorder::new_histogram(),
            metrics: BTreeMap::new(),
            counters: BTreeMap::new(),
        }
    }

    /// Latency at quantile `q` (0..=1), ms; 0 when there were no requests.
    pub fn latency_ms(&self, q: f64) -> f64 {
        self.figures().latency_ms(q)
    }

    /// Mean latency, ms.
    pub fn mean_ms(&self) -> f64 {
        self.figures().mean_ms()
    }

    /// Failed / all, 0 when there were no requests.
    pub fn error_rate(&self) -> f64 {
        self.figures().error_rate()
    }

    /// These figures as driver reports read them.
    pub fn figures(&self) -> Figures<'_> {
        Figures {
            requests: self.requests,
            failures: self.failures,
            bytes: self.bytes,
            latency: &self.latency,
            metrics: &self.metrics,
            counters: &self.counters,
        }
    }
}

#[cfg(test)]
mod tests {
    use stampede_scenarios::Target;
    use stampede_scenarios::tls::TlsFile;

    use super::*;

    #[test]
    fn the_hint_needs_certificate_failures_only() {
        let bad = "tls: invalid peer certificate: UnknownIssuer";
        assert!(all_certificate_failures([bad]));
        assert!(all_certificate_failures([
            bad,
            "tls: invalid peer certificate: NotValidForName"
        ]));
        assert!(!all_certificate_failures([bad, "HTTP 503"]));
        assert!(!all_certificate_failures([
            "tls: handshake: unexpected eof"
        ]));
        assert!(!all_certificate_failures(std::iter::empty()));
        assert!(is_hint(CERTIFICATE_HINT));
        assert!(!is_hint(INSECURE_WARNING));
    }

    #[test]
    fn tls_summary_only_for_https_targets() {
        let url = |u: &str| Target::Url(u.parse().unwrap());
        let file = TlsFile {
            insecure: true,
            server_name: Some("api.example".into()),
            ca: Some("ca.pem".into()),
            ..TlsFile::default()
        };
        assert_eq!(
            TlsSummary::of(&url("http://127.0.0.1:80"), Some(&file)),
            None
        );
        assert_eq!(TlsSummary::of(&Target::Builtin("http".into()), None), None);
        assert_eq!(
            TlsSummary::of(&url("https://10.0.0.5"), None),
            Some(TlsSummary::default())
        );
        assert_eq!(
            TlsSummary::of(&url("https://10.0.0.5"), Some(&file)),
            Some(TlsSummary {
                insecure: true,
                server_name: Some("api.example".into()),
                ca: true,
                client_cert: false,
            })
        );
    }
}
