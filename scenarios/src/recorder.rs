//! Where drivers write what happened: per request name, a latency HDR histogram (1 µs .. 1 h,
//! 3 significant digits), counts, bytes, failures by kind, and any extra metrics a driver
//! declares (TTFT, tokens, ...); plus the run-wide schedule lag and the rows of the driver's
//! record streams (per-request CSV lines).
//!
//! The hot path locks one shard picked by the calling thread (uncontended in practice: one
//! shard per runtime thread), so recording costs a few tens of nanoseconds. [`Recorder::take`]
//! swaps every shard out once a second and merges them into an [`Interval`]. Nothing is
//! serialized here: the worker encodes intervals for the wire.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

/// The latency metric's name (same as the protocol's `metric::LATENCY`).
pub const METRIC_LATENCY: &str = "latency";

/// Lowest latency tracked, µs.
pub const LOWEST_US: u64 = 1;
/// Highest latency tracked, µs (1 hour). Larger values are recorded as 1 hour.
pub const HIGHEST_US: u64 = 3_600_000_000;
/// Significant digits kept.
pub const SIGFIG: u8 = 3;

/// A histogram with Stampede's bounds, for latencies in microseconds.
pub fn new_histogram() -> Histogram<u64> {
    // The invariant: these bounds are valid (low ≥ 1, high ≥ 2·low, sigfig ≤ 5).
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG).expect("valid histogram bounds")
}

/// Record `us` into `h`, clamped into the tracked range (never fails).
pub fn record_clamped(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(LOWEST_US, HIGHEST_US));
}

/// How a request failed. A failure is data, not an error: it is counted by kind.
///
/// Kinds are kept few (no addresses or ids in them) so reports and metric labels stay bounded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The server answered with an error status (≥ 400).
    Status(u16),
    /// No answer within the request timeout.
    Timeout,
    /// The connection could not be made (`refused`, `reset`, `unreachable`, ...).
    Connect(&'static str),
    /// The connection failed during the exchange.
    Io(&'static str),
    /// The server answered something that is not valid for the protocol.
    Protocol(&'static str),
    /// The TLS connection failed: certificate, handshake or record (`invalid peer
    /// certificate: UnknownIssuer`, `handshake: received alert HandshakeFailure`).
    Tls(String),
    /// HTTP/2 refused or ended the request (`GOAWAY (ENHANCE_YOUR_CALM)`, `stream reset
    /// (REFUSED_STREAM)`).
    Http2(String),
    /// The request was never sent (too many in flight, ...).
    Dropped(&'static str),
    /// Anything else, with a short fixed description.
    Other(String),
}

impl Failure {
    /// Whether the request ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Failure::Timeout)
    }

    /// Whether the server answered (with an error status).
    pub fn is_status(&self) -> bool {
        matches!(self, Failure::Status(_))
    }

    /// A body that ended before its `content-length` bytes: the HTTP/1.1 connection closed
    /// cleanly, or the HTTP/2 stream ended, too early.
    pub fn short_body() -> Failure {
        Failure::Other("short body".into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status(code) => write!(f, "HTTP {code}"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Connect(why) => write!(f, "connect: {why}"),
            Failure::Io(why) => write!(f, "io: {why}"),
            Failure::Protocol(why) => write!(f, "protocol: {why}"),
            Failure::Tls(why) => write!(f, "tls: {why}"),
            Failure::Http2(why) => write!(f, "http2: {why}"),
            Failure::Dropped(why) => write!(f, "dropped: {why}"),
            Failure::Other(why) => f.write_str(why),
        }
    }
}

/// A short, fixed name for an I/O error kind, for [`Failure`] kinds.
pub fn io_kind(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset",
        ConnectionAborted => "connection aborted",
        NotConnected => "not connected",
        AddrNotAvailable => "address not available",
        AddrInUse => "address in use",
        BrokenPipe => "broken pipe",
        TimedOut => "timed out",
        UnexpectedEof => "unexpected eof",
        HostUnreachable => "host unreachable",
        NetworkUnreachable => "network unreachable",
        NotFound => "not found",
        PermissionDenied => "permission denied",
        // The resolver's failure (std names no kind for it): a host name that does not resolve.
        _ if e.to_string().starts_with("failed to lookup address") => "name not resolved",
        _ => "other",
    }
}

/// A stream of per-request records a driver writes (one CSV row per request), which the
/// master appends to a file (`<out>/<name>.csv` unless mapped elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordStream {
    /// The stream's name, also its default file name (without `.csv`).
    pub name: String,
    /// The CSV header line, without a line end; rows must have the same columns.
    pub header: String,
}

/// The recorder of one worker, shared by all its users.
pub struct Recorder {
    names: Vec<String>,
    metrics: Vec<String>,
    counters: Vec<String>,
    streams: Vec<String>,
    shards: Box<[Mutex<Shard>]>,
}

/// What happened to one request name during an interval.
#[derive(Debug, Clone, Default)]
pub struct NameInterval {
    /// Requests completed (successes and failures).
    pub requests: u64,
    /// Requests that failed.
    pub failures: u64,
    /// Response bytes received.
    pub bytes: u64,
    /// One histogram per metric of [`Recorder::metrics`] (index 0: latency); `None` if empty.
    pub hists: Vec<Option<Histogram<u64>>>,
    /// One value per counter of [`Recorder::counters`].
    pub counters: Vec<u64>,
    /// Failures by kind.
    pub failure_kinds: Vec<(String, u64)>,
}

/// Everything recorded since the previous [`Recorder::take`].
#[derive(Debug, Clone, Default)]
pub struct Interval {
    /// Per request name, in [`Recorder::names`] order.
    pub names: Vec<NameInterval>,
    /// Schedule lag, µs (open model), if any was recorded.
    pub lag: Option<Histogram<u64>>,
    /// Per record stream (in [`Recorder::streams`] order), the rows recorded: CSV lines, each
    /// ending in `\n`, in the order each shard recorded them.
    pub rows: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Slot {
    requests: u64,
    failures: u64,
    bytes: u64,
    hists: Vec<Option<Histogram<u64>>>,
    counters: Vec<u64>,
    failure_kinds: HashMap<Failure, u64>,
}

struct Shard {
    slots: Vec<Slot>,
    lag: Option<Histogram<u64>>,
    rows: Vec<Vec<u8>>,
}

impl Shard {
    fn new(names: usize, metrics: usize, counters: usize, streams: usize) -> Shard {
        Shard {
            slots: (0..names)
                .map(|_| Slot {
                    hists: (0..metrics).map(|_| None).collect(),
                    counters: vec![0; counters],
                    ..Slot::default()
                })
                .collect(),
            lag: None,
            rows: vec![Vec::new(); streams],
        }
    }
}

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Each thread keeps using the shard it was first given, so two runtime threads rarely
    /// share a lock.
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
}

impl Recorder {
    /// A recorder for these request names, extra metrics (histograms, after `latency`) and extra
    /// counters, with `shards` locks (one per runtime thread is right).
    pub fn new(
        names: Vec<String>,
        extra_metrics: &[&str],
        counters: &[&str],
        shards: usize,
    ) -> Recorder {
        let mut metrics = vec![METRIC_LATENCY.to_string()];
        metrics.extend(extra_metrics.iter().map(|m| m.to_string()));
        let shards = (0..shards.max(1))
            .map(|_| Mutex::new(Shard::new(names.len(), metrics.len(), counters.len(), 0)))
            .collect();
        Recorder {
            names,
            metrics,
            counters: counters.iter().map(|c| c.to_string()).collect(),
            streams: Vec::new(),
            shards,
        }
    }

    /// A recorder for `driver`'s requests `names`, histograms, counters and record streams.
    pub fn for_driver(names: Vec<String>, driver: &dyn crate::Driver, shards: usize) -> Recorder {
        let metrics = crate::spec::names(driver.metrics());
        let counters = crate::spec::names(driver.counters());
        Recorder::new(names, &metrics, &counters, shards).with_streams(driver.record_streams())
    }

    /// The same recorder, also collecting rows for these record streams (indexed in this
    /// order by [`Recorder::row`]). Call before anything is recorded.
    pub fn with_streams(mut self, streams: &[RecordStream]) -> Recorder {
        self.streams = streams.iter().map(|s| s.name.clone()).collect();
        for shard in self.shards.iter_mut() {
            let shard = shard.get_mut().unwrap_or_else(|p| p.into_inner());
            shard.rows = vec![Vec::new(); streams.len()];
        }
        self
    }

    /// The record streams' names, by index.
    pub fn streams(&self) -> &[String] {
        &self.streams
    }

    /// The request names, by index.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The histogram metrics, by index (0 is latency).
    pub fn metrics(&self) -> &[String] {
        &self.metrics
    }

    /// The extra counters, by index.
    pub fn counters(&self) -> &[String] {
        &self.counters
    }

    fn with_shard<R>(&self, f: impl FnOnce(&mut Shard) -> R) -> R {
        let i = SHARD.with(|s| *s) % self.shards.len();
        // A poisoned shard only means a panic elsewhere mid-record; the counts are still sound.
        let mut shard = self.shards[i].lock().unwrap_or_else(|p| p.into_inner());
        f(&mut shard)
    }

    /// Record one finished request of name `name`: its latency, response bytes and failure.
    pub fn request(&self, name: usize, latency: Duration, bytes: u64, failure: Option<Failure>) {
        // No counter has index usize::MAX: nothing is counted.
        self.request_counted(name, latency, bytes, failure, usize::MAX);
    }

    /// [`Recorder::request`], also adding 1 to counter `counter` under the same lock (the
    /// connection-reuse count an HTTP driver keeps per request, at no extra cost).
    pub fn request_counted(
        &self,
        name: usize,
        latency: Duration,
        bytes: u64,
        failure: Option<Failure>,
        counter: usize,
    ) {
        let us = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        self.with_shard(|s| {
            let Some(slot) = s.slots.get_mut(name) else {
                return;
            };
            slot.requests += 1;
            slot.bytes += bytes;
            record_clamped(slot.hists[0].get_or_insert_with(new_histogram), us);
            if let Some(c) = slot.counters.get_mut(counter) {
                *c += 1;
            }
            if let Some(f) = failure {
                slot.failures += 1;
                *slot.failure_kinds.entry(f).or_insert(0) += 1;
            }
        })
    }

    /// Record a value of an extra metric (`metric` ≥ 1, in the metric's unit, µs for times).
    pub fn sample(&self, name: usize, metric: usize, value: u64) {
        self.with_shard(|s| {
            if let Some(h) = s
                .slots
                .get_mut(name)
                .and_then(|sl| sl.hists.get_mut(metric))
            {
                record_clamped(h.get_or_insert_with(new_histogram), value);
            }
        })
    }

    /// Add to an extra counter.
    pub fn count(&self, name: usize, counter: usize, value: u64) {
        self.with_shard(|s| {
            if let Some(c) = s
                .slots
                .get_mut(name)
                .and_then(|sl| sl.counters.get_mut(counter))
            {
                *c += value;
            }
        })
    }

    /// Record how late a request was sent relative to its schedule.
    pub fn lag(&self, lag: Duration) {
        let us = lag.as_micros().min(u128::from(u64::MAX)) as u64;
        self.with_shard(|s| record_clamped(s.lag.get_or_insert_with(new_histogram), us))
    }

    /// Append one row to record stream `stream`: `write` appends one CSV line, ending in
    /// `\n`, to the buffer it is given (the shard's buffer of that stream, so nothing is
    /// allocated per row once it has grown). An unknown stream is ignored.
    pub fn row(&self, stream: usize, write: impl FnOnce(&mut Vec<u8>)) {
        self.with_shard(|s| {
            if let Some(buf) = s.rows.get_mut(stream) {
                write(buf);
            }
        })
    }

    /// Take everything recorded so far, leaving the recorder empty.
    pub fn take(&self) -> Interval {
        let mut out = Interval {
            names: (0..self.names.len())
                .map(|_| NameInterval {
                    hists: (0..self.metrics.len()).map(|_| None).collect(),
                    counters: vec![0; self.counters.len()],
                    ..NameInterval::default()
                })
                .collect(),
            lag: None,
            rows: vec![Vec::new(); self.streams.len()],
        };
        let mut kinds: Vec<HashMap<Failure, u64>> = vec![HashMap::new(); self.names.len()];
        for shard in self.shards.iter() {
            // Swap the shard's contents out under the lock; merge outside it.
            let taken = {
                let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
                let fresh = Shard::new(
                    self.names.len(),
                    self.metrics.len(),
                    self.counters.len(),
                    self.streams.len(),
                );
                std::mem::replace(&mut *s, fresh)
            };
            for (acc, rows) in out.rows.iter_mut().zip(taken.rows) {
                if acc.is_empty() {
                    *acc = rows;
                } else {
                    acc.extend_from_slice(&rows);
                }
            }
            for (i, slot) in taken.slots.into_iter().enumerate() {
                let o = &mut out.names[i];
                o.requests += slot.requests;
                o.failures += slot.failures;
                o.bytes += slot.bytes;
                for (acc, h) in o.hists.iter_mut().zip(slot.hists) {
                    merge_into(acc, h);
                }
                for (acc, c) in o.counters.iter_mut().zip(slot.counters) {
                    *acc += c;
                }
                for (k, n) in slot.failure_kinds {
                    *kinds[i].entry(k).or_insert(0) += n;
                }
            }
            merge_into(&mut out.lag, taken.lag);
        }
        for (o, k) in out.names.iter_mut().zip(kinds) {
            o.failure_kinds = k.into_iter().map(|(f, n)| (f.to_string(), n)).collect();
            o.failure_kinds.sort();
        }
        out
    }
}

/// Add `h` into `acc` (both with Stampede's bounds, so adding cannot fail).
fn merge_into(acc: &mut Option<Histogram<u64>>, h: Option<Histogram<u64>>) {
    match (acc.as_mut(), h) {
        (_, None) => {}
        (None, Some(h)) => *acc = Some(h),
        (Some(a), Some(h)) => {
            // The invariant: both histograms share the same bounds, so `add` cannot overflow
            // the range; a count overflow would need 2^64 requests.
            a.add(&h).expect("histograms with equal bounds always add");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host name that does not resolve is named as such, not `other`.
    #[tokio::test]
    async fn an_unresolved_name_is_its_own_kind() {
        let e = tokio::net::TcpStream::connect("target.invalid:80")
            .await
            .expect_err("`.invalid` never resolves");
        assert_eq!(io_kind(&e), "name not resolved", "{e}");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(io_kind(&refused), "connection refused");
    }

    #[test]
    fn records_and_takes_across_threads() {
        let rec = std::sync::Arc::new(Recorder::new(
            vec!["a".into(), "b".into()],
            &["ttft"],
            &["tokens"],
            4,
        ));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let rec = rec.clone();
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        let failure =
                            (i % 10 == 0).then_some(Failure::Status(500 + (t % 2) as u16));
                        rec.request(
                            (i % 2) as usize,
                            Duration::from_micros(100 + i),
                            10,
                            failure,
                        );
                        rec.sample(0, 1, 5);
                        rec.count(1, 0, 2);
                    }
                    rec.lag(Duration::from_micros(3));
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let iv = rec.take();
        assert_eq!(iv.names[0].requests + iv.names[1].requests, 4000);
        assert_eq!(iv.names[0].failures, 400);
        assert_eq!(iv.names[1].failures, 0);
        assert_eq!(iv.names[0].bytes, 20_000);
        assert_eq!(iv.names[0].hists[0].as_ref().unwrap().len(), 2000);
        assert_eq!(iv.names[0].hists[1].as_ref().unwrap().len(), 4000);
        assert!(iv.names[1].hists[1].is_none());
        assert_eq!(iv.names[1].counters, vec![8000]);
        assert_eq!(
            iv.names[0].failure_kinds,
            vec![("HTTP 500".to_string(), 200), ("HTTP 501".to_string(), 200)]
        );
        assert_eq!(iv.lag.as_ref().unwrap().len(), 4);
        // Taking empties the recorder.
        let again = rec.take();
        assert_eq!(again.names[0].requests, 0);
        assert!(again.names[0].hists[0].is_none() && again.lag.is_none());
    }

    /// Rows from many threads all come out of `take`, each whole, once.
    #[test]
    fn rows_are_taken_once_and_whole() {
        let streams = [
            RecordStream {
                name: "requests".into(),
                header: "id,value".into(),
            },
            RecordStream {
                name: "other".into(),
                header: "x".into(),
            },
        ];
        let rec = std::sync::Arc::new(
            Recorder::new(vec!["a".into()], &[], &[], 3).with_streams(&streams),
        );
        assert_eq!(
            rec.streams(),
            &["requests".to_string(), "other".to_string()]
        );
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let rec = rec.clone();
                std::thread::spawn(move || {
                    for i in 0..500u64 {
                        rec.row(0, |b| {
                            use std::io::Write;
                            let _ = writeln!(b, "{},{}", t * 1000 + i, i * 2);
                        });
                    }
                    rec.row(9, |b| b.push(b'!')); // unknown stream: ignored
                })
            })
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        let mut take = |rec: &Recorder| {
            let iv = rec.take();
            assert!(iv.rows[1].is_empty());
            for line in std::str::from_utf8(&iv.rows[0]).unwrap().lines() {
                let (id, v) = line.split_once(',').unwrap();
                let (id, v): (u64, u64) = (id.parse().unwrap(), v.parse().unwrap());
                assert_eq!(v, (id % 1000) * 2, "row {line:?} is whole");
                assert!(seen.insert(id), "row {id} taken twice");
            }
        };
        take(&rec);
        for h in handles {
            h.join().unwrap();
        }
        take(&rec);
        assert_eq!(seen.len(), 2000);
        assert!(rec.take().rows[0].is_empty());
    }

    #[test]
    fn out_of_range_values_are_clamped_not_lost() {
        let rec = Recorder::new(vec!["a".into()], &[], &[], 1);
        rec.request(0, Duration::ZERO, 0, None);
        rec.request(0, Duration::from_secs(10_000), 0, Some(Failure::Timeout));
        rec.request(7, Duration::from_secs(1), 0, None); // unknown name: ignored, no panic
        let iv = rec.take();
        let h = iv.names[0].hists[0].as_ref().unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h.min(), 1);
        assert!(h.max() >= HIGHEST_US);
        assert_eq!(iv.names[0].failure_kinds, vec![("timeout".to_string(), 1)]);
    }
}
