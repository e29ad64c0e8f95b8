//! Every message of the protocol. Encoded with postcard (varint integers, length-prefixed
//! strings and byte strings, enums as a varint variant index followed by the fields).
//!
//! The conversation (see SPEC.md for the full order):
//! - control stream (bidirectional, opened by the master): [`MasterProof`] → [`Hello`] →
//!   [`HelloReply`], then [`ToWorker`] frames from the master and [`FromWorker`] frames from
//!   the worker;
//! - report stream (unidirectional, opened by the worker after the welcome): [`Report`] frames.
//!
//! [`MasterProof`], the head of [`Hello`] (proof, then version) and [`HelloReply`] keep their
//! layout across protocol versions from 6 on, so that a mismatch between authenticated peers is
//! always reported rather than mis-decoded.

use serde::{Deserialize, Serialize};

/// Well-known metric names inside [`Series`] and [`Counter`]. Drivers add their own (`ttft`,
/// `output_tokens`, ...) without any change here: the master merges whatever names arrive.
pub mod metric {
    /// Request latency in microseconds (from the scheduled send time in the open model).
    pub const LATENCY: &str = "latency";
    /// How late a request was sent relative to its scheduled time, in microseconds.
    pub const SCHEDULE_LAG: &str = "schedule_lag";
    /// Counter: requests completed (successes and failures).
    pub const REQUESTS: &str = "requests";
    /// Counter: requests that failed.
    pub const FAILURES: &str = "failures";
    /// Counter: response body bytes received.
    pub const BYTES: &str = "bytes";
    /// Run-wide (name `""`), *not a delta*: when this worker's earliest user sent its first
    /// request, Unix µs in the worker's clock. Sent when it changes; the master keeps it per
    /// worker and moves it to its own clock with the measured offset.
    pub const FIRST_SEND_MIN: &str = "first_send_min_unix_us";
    /// Run-wide, not a delta: when this worker's latest-starting user sent its first request,
    /// Unix µs in the worker's clock (with [`FIRST_SEND_MIN`]: the spread of a simultaneous
    /// start on this worker).
    pub const FIRST_SEND_MAX: &str = "first_send_max_unix_us";
    /// Gauge: the worker host's CPU busy since the run started, percent of all its CPUs
    /// (`/proc/stat`; idle is the `idle` column, so I/O wait counts as busy, as node exporter's
    /// `mode="idle"` does).
    pub const HOST_CPU: &str = "host_cpu_percent";
    /// Gauge: used share of the worker host's root filesystem, percent (`1 - f_bavail /
    /// f_blocks` of `statvfs("/")`, node exporter's `1 - avail / size`).
    pub const HOST_DISK: &str = "host_disk_percent";
}

/// First frame on the control stream, from the master: it proves it knows the token before
/// the worker says anything ([`crate::handshake`]).
///
/// Layout (postcard): `proof: [u8; 32]` (raw bytes, no length prefix).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MasterProof {
    /// HMAC-SHA256 keyed by the token over the connection's TLS exporter secret and the
    /// master's role.
    pub proof: [u8; 32],
}

/// The worker's answer to a [`MasterProof`] it accepted: its own proof, then who it is.
///
/// Layout (postcard): `proof: [u8; 32] | version: varint u16 | name: str | cores: varint u32 |
/// build: str`. The token itself never travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// HMAC-SHA256 keyed by the token over the connection's TLS exporter secret and the
    /// worker's role; must stay the first field in every version.
    pub proof: [u8; 32],
    /// The worker's [`crate::PROTOCOL_VERSION`]; must stay the second field in every version.
    pub version: u16,
    /// A human name for the worker (host name and pid by default).
    pub name: String,
    /// Cores available to the worker: its weight when load is split.
    pub cores: u32,
    /// The worker's Stampede version string, for the master's report.
    pub build: String,
}

/// The master's answer to [`Hello`].
///
/// Layout: `variant: varint (0 Welcome, 1 Refused) | fields`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HelloReply {
    /// The worker is part of the fleet from now on.
    Welcome {
        /// The id the master gave this worker (unique for the master's lifetime).
        worker_id: u64,
        /// The master's protocol version (equal to the worker's).
        version: u16,
    },
    /// The worker is not accepted; the master closes the connection after this frame. Only
    /// sent to a worker that proved it knows the token: a peer that did not gets no answer.
    Refused {
        /// One line saying why (version mismatch, ...).
        reason: String,
    },
}

/// Which part of the load a worker generates.
///
/// Every integer quantity of a load model (users, per stage) is split among the workers by
/// largest remainder over `weights`, so the parts always sum to the whole; rates are split
/// proportionally (`weights[slot] / sum(weights)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Share {
    /// This worker's index in `weights`.
    pub slot: u32,
    /// The weights of all workers taking part, in slot order (their cores by default).
    pub weights: Vec<u32>,
}

impl Share {
    /// A share that is the whole load (a single worker).
    pub fn whole() -> Share {
        Share {
            slot: 0,
            weights: vec![1],
        }
    }

    /// This worker's fraction of any rate, in `0..=1` (0 for an invalid share).
    pub fn fraction(&self) -> f64 {
        let total: u64 = self.weights.iter().map(|&w| u64::from(w)).sum();
        match self.weights.get(self.slot as usize) {
            Some(&w) if total > 0 => f64::from(w) / total as f64,
            _ => 0.0,
        }
    }
}

/// An assignment: what to run and which part of it. Sent before [`ToWorker::Start`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assign {
    /// The run this assignment belongs to; every later message about it carries the same id.
    pub run_id: u64,
    /// The scenario as TOML text, with the user's overrides already applied by the master: the
    /// scenario file under `[scenario]`, and what the master prepared that a file cannot set
    /// (an `llm` scenario's prompts, `--requests-csv`) under `[llm]`.
    pub scenario: String,
    /// This worker's part of the load.
    pub share: Share,
    /// A factor on every users or rate target of the load model (1.0 = as written).
    pub scale: f64,
    /// The run's seed, the same for every worker: arrivals that must form one process across
    /// workers (gamma) are drawn from it by all, each taking its part.
    pub run_seed: u64,
}

/// Messages from the master on the control stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Prepare a run: parse the scenario, build the driver, answer [`FromWorker::Ready`] or
    /// [`FromWorker::Rejected`]. No load yet.
    Assign(Assign),
    /// Start the assigned run at this wall-clock instant, in the *worker's* clock (Unix ns):
    /// the master has already corrected its own start time by the clock offset it measured
    /// with [`ToWorker::Ping`], so workers on skewed clocks still start together.
    Start {
        /// The run to start.
        run_id: u64,
        /// When to start, in the worker's clock.
        at_unix_ns: u64,
        /// How far into the run that instant is, ms: 0 at the start, more for a worker that
        /// joins a run already going (it follows the plan from there and ends with the others).
        elapsed_ms: u64,
    },
    /// Change a running run's share (a worker joined or was lost) or scale (the user steered).
    Update {
        /// The run to change.
        run_id: u64,
        /// The new share.
        share: Share,
        /// The new scale.
        scale: f64,
    },
    /// Stop generating load for this run, send the last report and go back to idle.
    Stop {
        /// The run to stop.
        run_id: u64,
        /// Why, for the worker's log.
        reason: String,
    },
    /// A clock probe: the worker answers [`FromWorker::Pong`] at once.
    Ping {
        /// Matches the pong to the ping.
        seq: u64,
        /// The master's wall clock when it sent the ping (Unix ns).
        master_ns: u64,
    },
}

/// Messages from the worker on the control stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The assignment was accepted; the worker waits for [`ToWorker::Start`].
    Ready {
        /// The assigned run.
        run_id: u64,
    },
    /// The assignment could not be prepared (bad scenario, driver failed to build).
    Rejected {
        /// The assigned run.
        run_id: u64,
        /// One line naming the cause.
        reason: String,
    },
    /// Answer to [`ToWorker::Ping`].
    Pong {
        /// The ping's sequence number.
        seq: u64,
        /// Echo of the ping's master clock.
        master_ns: u64,
        /// The worker's wall clock when it answered (Unix ns).
        worker_ns: u64,
    },
    /// Sent every second while no run is going, so both ends see a live peer.
    Heartbeat,
}

/// One interval of measurements, sent on the report stream every second while a run goes on,
/// and once more with `last = true` when the worker stops.
///
/// Intervals are *deltas*: the master adds them up. Nothing is sent twice and nothing is held
/// back, so what a worker reported before it was lost stays counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The run the measurements belong to.
    pub run_id: u64,
    /// 0, 1, 2, ... per run and worker; a gap means a lost report.
    pub seq: u64,
    /// Start of the interval, Unix ms (worker clock).
    pub start_unix_ms: u64,
    /// End of the interval, Unix ms (worker clock).
    pub end_unix_ms: u64,
    /// Users (closed model) or requests in flight (open model) at the end of the interval.
    pub users: u64,
    /// The worker's current arrival rate target (open model), requests per second; 0 if closed.
    pub target_rate: f64,
    /// Histograms of the interval, one per (request name, metric).
    pub series: Vec<Series>,
    /// Counters of the interval, one per (request name, counter).
    pub counters: Vec<Counter>,
    /// Failures of the interval, one per (request name, failure kind).
    pub failures: Vec<FailureCount>,
    /// Per-request records of the interval (CSV rows), one entry per record stream with rows.
    /// Each row is sent exactly once: the final report carries whatever is left.
    pub records: Vec<Rows>,
    /// Readings of the worker at the end of the interval (not deltas: the latest wins), e.g.
    /// [`metric::HOST_CPU`]; the master keeps them per worker.
    pub gauges: Vec<Gauge>,
    /// This is the worker's final report for the run.
    pub last: bool,
}

/// Rows of one record stream (a per-request CSV file the master appends to), in the order the
/// worker recorded them.
///
/// Layout (postcard): `stream: str | data: bytes`, where `data` is a zlib stream (RFC 1950,
/// DEFLATE) of CSV lines without the header, each ending in `\n`. The master writes the header
/// itself, once, from the scenario; it never parses the rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rows {
    /// The stream's name (the driver's; `requests` for per-request CSVs): the file it goes to.
    pub stream: String,
    /// The rows, zlib-compressed.
    #[serde(with = "serde_bytes_compat")]
    pub data: Vec<u8>,
}

/// A histogram of one metric for one request name, HdrHistogram V2 + DEFLATE serialized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// The request name (the scenario's `name`), or `""` for run-wide series.
    pub name: String,
    /// The metric (see [`metric`]): its unit is part of its definition.
    pub metric: String,
    /// The histogram, V2-deflate serialized.
    #[serde(with = "serde_bytes_compat")]
    pub hist: Vec<u8>,
}

/// A counter delta for one request name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    /// The request name, or `""` for run-wide counters.
    pub name: String,
    /// The counter (see [`metric`]).
    pub counter: String,
    /// How much it grew during the interval.
    pub value: u64,
}

/// A reading of the worker, such as its host's CPU usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gauge {
    /// What is read (see [`metric`]).
    pub name: String,
    /// Its value.
    pub value: f64,
}

/// How many requests of one name failed one way during the interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureCount {
    /// The request name.
    pub name: String,
    /// The failure kind as shown to users (`HTTP 503`, `timeout`, `connect: refused`, ...).
    pub kind: String,
    /// Occurrences during the interval.
    pub count: u64,
}

/// Serialize `Vec<u8>` as one byte string (postcard: varint length + bytes) rather than a
/// sequence of varints, so a histogram costs its own size on the wire.
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_bytes(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_of_share() {
        let s = Share {
            slot: 1,
            weights: vec![1, 3],
        };
        assert!((s.fraction() - 0.75).abs() < 1e-12);
        assert_eq!(
            Share {
                slot: 5,
                weights: vec![1]
            }
            .fraction(),
            0.0
        );
        assert_eq!(
            Share {
                slot: 0,
                weights: vec![0]
            }
            .fraction(),
            0.0
        );
        assert_eq!(Share::whole().fraction(), 1.0);
    }
}
