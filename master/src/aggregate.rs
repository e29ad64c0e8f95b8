//! Exact aggregation of worker reports: every interval histogram is *added* into the run's
//! histograms (HDR addition is exact, so merged percentiles equal those of one histogram of
//! every sample), counters are summed, and once a second the interval becomes a history row.
//!
//! Owned by the coordinator; fed with reports already decoded by the connection handlers.
//! Keeps what lost workers reported. Writes nothing: the run logs each closed interval's
//! latency ([`ClosedInterval`]) to its hlog.

use std::collections::{BTreeMap, HashMap};

use hdrhistogram::Histogram;
use stampede_protocol::metric;
use stampede_scenarios::RequestInfo;
use stampede_scenarios::recorder::new_histogram;

use crate::sparse::{Decoder, Dense, Sparse};
use crate::summary::{
    AGGREGATED, FailureRow, HistoryEntry, HistoryRow, LOCUST_PERCENTILES, NameStats,
};

/// A report with its histograms decoded (done on the connection's task, off the coordinator).
#[derive(Debug, Clone)]
pub struct DecodedReport {
    /// The run.
    pub run_id: u64,
    /// Sequence number.
    pub seq: u64,
    /// Users or requests in flight at the worker.
    pub users: u64,
    /// The worker's open-model rate.
    pub target_rate: f64,
    /// (name, metric, histogram as its non-zero buckets).
    pub series: Vec<(String, String, Sparse)>,
    /// (name, counter, value).
    pub counters: Vec<(String, String, u64)>,
    /// (name, failure kind, count).
    pub failures: Vec<(String, String, u64)>,
    /// (record stream, rows): CSV lines, decompressed, in the worker's order.
    pub rows: Vec<(String, Vec<u8>)>,
    /// (name, value) readings of the worker (host CPU and disk usage).
    pub gauges: Vec<(String, f64)>,
    /// Final report of the worker for this run.
    pub last: bool,
}

/// Why a report could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A histogram did not decode.
    #[error("series `{name}`/`{metric}`: undecodable histogram ({reason})")]
    Histogram {
        /// Request name.
        name: String,
        /// Metric.
        metric: String,
        /// What the decoder said.
        reason: String,
    },
    /// A record stream's rows did not decompress.
    #[error("rows of stream `{stream}`: {reason}")]
    Rows {
        /// The stream.
        stream: String,
        /// What the decompressor said.
        reason: String,
    },
}

/// Decompressed rows of one [`stampede_protocol::Rows`] are refused beyond this size (a
/// worker compresses at most 1 MiB of rows per entry).
pub const MAX_ROWS_BYTES: u64 = 64 << 20;

impl DecodedReport {
    /// Decode a wire report's histograms.
    pub fn decode(r: stampede_protocol::Report) -> Result<DecodedReport, ReportError> {
        DecodedReport::decode_with(r, &mut Decoder::default())
    }

    /// Decode a wire report's histograms with a decoder kept from report to report.
    pub fn decode_with(
        r: stampede_protocol::Report,
        decoder: &mut Decoder,
    ) -> Result<DecodedReport, ReportError> {
        let mut series = Vec::with_capacity(r.series.len());
        for s in r.series {
            let h = decoder
                .decode(&s.hist)
                .map_err(|e| ReportError::Histogram {
                    name: s.name.clone(),
                    metric: s.metric.clone(),
                    reason: e.to_string(),
                })?;
            series.push((s.name, s.metric, h));
        }
        let mut rows = Vec::with_capacity(r.records.len());
        for rec in r.records {
            let data = inflate(&rec.data).map_err(|reason| ReportError::Rows {
                stream: rec.stream.clone(),
                reason,
            })?;
            rows.push((rec.stream, data));
        }
        Ok(DecodedReport {
            run_id: r.run_id,
            seq: r.seq,
            users: r.users,
            target_rate: r.target_rate,
            series,
            counters: r
                .counters
                .into_iter()
                .map(|c| (c.name, c.counter, c.value))
                .collect(),
            failures: r
                .failures
                .into_iter()
                .map(|f| (f.name, f.kind, f.count))
                .collect(),
            rows,
            gauges: r.gauges.into_iter().map(|g| (g.name, g.value)).collect(),
            last: r.last,
        })
    }
}

/// Decompress a zlib stream of rows, refusing more than [`MAX_ROWS_BYTES`].
fn inflate(data: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::with_capacity(data.len() * 4);
    flate2::read::ZlibDecoder::new(data)
        .take(MAX_ROWS_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not a zlib stream ({e})"))?;
    if out.len() as u64 > MAX_ROWS_BYTES {
        return Err(format!("more than {MAX_ROWS_BYTES} bytes once inflated"));
    }
    Ok(out)
}

#[derive(Default)]
struct IntervalAcc {
    /// Where reports add during the interval (kept, emptied, from one interval to the next).
    incoming: Option<Dense>,
    /// The interval's latencies, made from `incoming` at the tick.
    latency: Option<Histogram<u64>>,
    requests: u64,
    failures: u64,
}

/// What one worker contributed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerTotals {
    /// Requests it reported.
    pub requests: u64,
    /// Failures it reported.
    pub failures: u64,
    /// Users or in-flight at its last report.
    pub users: u64,
    /// Its open-model rate at its last report.
    pub target_rate: f64,
    /// Reports received.
    pub reports: u64,
    /// Reports missing (gaps in sequence numbers).
    pub missing: u64,
    /// Whether its final report arrived.
    pub finished: bool,
    /// Whether its connection was lost before that.
    pub lost: bool,
    /// When its earliest and latest user sent their first request, Unix µs in the worker's
    /// clock (see `metric::FIRST_SEND_MIN`).
    pub first_sends_unix_us: Option<(u64, u64)>,
    /// Latencies it reported (all names), for its mean.
    pub latency_count: u64,
    /// Their sum, µs (each value at the middle of its histogram bucket, as HDR means are).
    pub latency_sum_us: f64,
    /// Its latest gauge readings (host CPU and disk usage), by name.
    pub gauges: BTreeMap<String, f64>,
}

impl WorkerTotals {
    /// Mean latency of its requests, ms (0 when it reported none).
    pub fn mean_ms(&self) -> f64 {
        if self.latency_count == 0 {
            0.0
        } else {
            self.latency_sum_us / self.latency_count as f64 / 1000.0
        }
    }
}

/// The merged figures of one run.
pub struct Aggregate {
    index: HashMap<String, usize>,
    names: Vec<NameStats>,
    total: NameStats,
    failures: BTreeMap<(usize, String), u64>,
    lag: Option<Histogram<u64>>,
    interval: Vec<IntervalAcc>,
    interval_total: IntervalAcc,
    last_tick_ms: u64,
    start_ms: u64,
    history: Vec<HistoryRow>,
    workers: BTreeMap<u64, WorkerTotals>,
    dropped: u64,
    /// The latency of the interval the last [`Aggregate::tick`] closed.
    closed: ClosedInterval,
}

/// The latency histograms of one closed interval, per request name (those with requests in
/// it) and for all names, with its start and length: what the run's `latency.hlog` logs.
#[derive(Debug, Default)]
pub struct ClosedInterval {
    /// Seconds from the run's start to the interval's.
    pub start_s: f64,
    /// Its length, seconds.
    pub length_s: f64,
    /// Per request name that had a request in it, in name order.
    pub names: Vec<(String, Histogram<u64>)>,
    /// All names together, if any request completed in it.
    pub total: Option<Histogram<u64>>,
}

impl Aggregate {
    /// An empty aggregate for these request names, starting at `start_ms` (Unix ms).
    pub fn new(catalog: &[RequestInfo], start_ms: u64) -> Aggregate {
        let mut a = Aggregate {
            index: HashMap::new(),
            names: Vec::new(),
            total: NameStats::new("", AGGREGATED),
            failures: BTreeMap::new(),
            lag: None,
            interval: Vec::new(),
            interval_total: IntervalAcc::default(),
            last_tick_ms: start_ms,
            start_ms,
            history: Vec::new(),
            workers: BTreeMap::new(),
            dropped: 0,
            closed: ClosedInterval::default(),
        };
        for r in catalog {
            a.slot(&r.name, &r.kind);
        }
        a
    }

    fn slot(&mut self, name: &str, kind: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.names.push(NameStats::new(kind, name));
        self.interval.push(IntervalAcc::default());
        self.index.insert(name.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }

    /// Add a worker's report. Histograms that do not fit the master's bounds are clamped by
    /// re-recording their values, so nothing is dropped.
    pub fn apply(&mut self, worker: u64, r: &DecodedReport) {
        let w = self.workers.entry(worker).or_default();
        if r.seq > w.reports {
            w.missing += r.seq - w.reports;
        }
        w.reports += 1;
        w.users = r.users;
        w.target_rate = r.target_rate;
        w.finished |= r.last;
        for (name, value) in &r.gauges {
            w.gauges.insert(name.clone(), *value);
        }
        for (name, metric_name, h) in &r.series {
            if metric_name == metric::SCHEDULE_LAG {
                h.add_to(self.lag.get_or_insert_with(new_histogram));
                continue;
            }
            let i = self.slot(name, "");
            if metric_name == metric::LATENCY {
                let w = self.workers.entry(worker).or_default();
                w.latency_count += h.len();
                w.latency_sum_us += h.sum();
                // Only the interval's histogram here: the run's own and the aggregate's grow
                // once per tick, so a report costs one addition per name, not four.
                self.interval[i]
                    .incoming
                    .get_or_insert_with(|| Dense::like(&new_histogram()))
                    .add(h);
            } else {
                h.add_to(
                    self.names[i]
                        .metrics
                        .entry(metric_name.clone())
                        .or_insert_with(new_histogram),
                );
                h.add_to(
                    self.total
                        .metrics
                        .entry(metric_name.clone())
                        .or_insert_with(new_histogram),
                );
            }
        }
        for (name, counter, v) in &r.counters {
            if name.is_empty() && counter == "dropped" {
                self.dropped += v;
                continue;
            }
            if name.is_empty()
                && (counter == metric::FIRST_SEND_MIN || counter == metric::FIRST_SEND_MAX)
            {
                // Times, not deltas: the latest value stands.
                let w = self.workers.entry(worker).or_default();
                let (mut min, mut max) = w.first_sends_unix_us.unwrap_or((*v, *v));
                if counter == metric::FIRST_SEND_MIN {
                    min = *v;
                } else {
                    max = *v;
                }
                w.first_sends_unix_us = Some((min, max.max(min)));
                continue;
            }
            let i = self.slot(name, "");
            let (n, t) = (&mut self.names[i], &mut self.total);
            match counter.as_str() {
                metric::REQUESTS => {
                    n.requests += v;
                    t.requests += v;
                    self.interval[i].requests += v;
                    self.interval_total.requests += v;
                    let w = self.workers.entry(worker).or_default();
                    w.requests += v;
                }
                metric::FAILURES => {
                    n.failures += v;
                    t.failures += v;
                    self.interval[i].failures += v;
                    self.interval_total.failures += v;
                    self.workers.entry(worker).or_default().failures += v;
                }
                metric::BYTES => {
                    n.bytes += v;
                    t.bytes += v;
                }
                other => {
                    *n.counters.entry(other.to_string()).or_insert(0) += v;
                    *t.counters.entry(other.to_string()).or_insert(0) += v;
                }
            }
        }
        for (name, kind, count) in &r.failures {
            let i = self.slot(name, "");
            *self.failures.entry((i, kind.clone())).or_insert(0) += count;
        }
    }

    /// Close the current interval at `now_ms`: fold it into the run's histograms and make a
    /// history row; returns the row. Its latency stays readable in [`Aggregate::closed`].
    pub fn tick(&mut self, now_ms: u64) -> &HistoryRow {
        for (acc, n) in self.interval.iter_mut().zip(self.names.iter_mut()) {
            if let Some(incoming) = acc.incoming.as_mut().filter(|d| !d.is_empty()) {
                let mut h = new_histogram();
                incoming.drain_into(&mut h);
                acc.latency = Some(h);
            }
            if let Some(h) = &acc.latency {
                add(&mut n.latency, h);
                add(&mut self.total.latency, h);
                add(
                    self.interval_total
                        .latency
                        .get_or_insert_with(new_histogram),
                    h,
                );
            }
        }
        let secs = (now_ms.saturating_sub(self.last_tick_ms) as f64 / 1000.0).max(1e-3);
        let users = self
            .workers
            .values()
            .filter(|w| !w.finished)
            .map(|w| w.users)
            .sum();
        let mut entries = Vec::new();
        let mut closed = ClosedInterval {
            start_s: self.last_tick_ms.saturating_sub(self.start_ms) as f64 / 1000.0,
            length_s: secs,
            ..ClosedInterval::default()
        };
        for (i, acc) in self.interval.iter_mut().enumerate() {
            let n = &self.names[i];
            if n.requests == 0 {
                continue;
            }
            entries.push(entry(n, acc, secs));
            if let Some(h) = acc.latency.take() {
                closed.names.push((n.name.clone(), h));
            }
            *acc = IntervalAcc {
                incoming: acc.incoming.take(),
                ..IntervalAcc::default()
            };
        }
        entries.push(entry(&self.total, &self.interval_total, secs));
        closed.total = std::mem::take(&mut self.interval_total).latency;
        self.closed = closed;
        self.last_tick_ms = now_ms;
        self.history.push(HistoryRow {
            unix_s: now_ms / 1000,
            users,
            entries,
        });
        // The invariant: a row was pushed just above.
        self.history.last().expect("history row just pushed")
    }

    /// A worker was lost: its users no longer count (its data stays).
    pub fn mark_lost(&mut self, worker: u64) {
        let w = self.workers.entry(worker).or_default();
        w.lost = true;
        w.users = 0;
        w.target_rate = 0.0;
    }

    /// Per request name, in order of first appearance (scenario order first).
    pub fn names(&self) -> &[NameStats] {
        &self.names
    }

    /// All names together.
    pub fn total(&self) -> &NameStats {
        &self.total
    }

    /// Second-by-second rows so far.
    pub fn history(&self) -> &[HistoryRow] {
        &self.history
    }

    /// Per worker totals.
    pub fn workers(&self) -> &BTreeMap<u64, WorkerTotals> {
        &self.workers
    }

    /// Schedule lag so far.
    pub fn lag(&self) -> Option<&Histogram<u64>> {
        self.lag.as_ref()
    }

    /// Arrivals dropped (too many in flight) so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The latency of the interval the last [`Aggregate::tick`] closed.
    pub fn closed(&self) -> &ClosedInterval {
        &self.closed
    }

    /// Failures by name and kind.
    pub fn failure_rows(&self) -> Vec<FailureRow> {
        self.failures
            .iter()
            .map(|((i, kind), n)| FailureRow {
                kind: self.names[*i].kind.clone(),
                name: self.names[*i].name.clone(),
                error: kind.clone(),
                occurrences: *n,
            })
            .collect()
    }
}

/// Add `h` into `acc`; values outside `acc`'s range are recorded clamped rather than lost.
fn add(acc: &mut Histogram<u64>, h: &Histogram<u64>) {
    if acc.add(h).is_err() {
        for v in h.iter_recorded() {
            let value = v.value_iterated_to().clamp(acc.low(), acc.high());
            let _ = acc.record_n(value, v.count_at_value());
        }
    }
}

fn entry(n: &NameStats, acc: &IntervalAcc, secs: f64) -> HistoryEntry {
    let mut percentiles_us = [0u64; 11];
    if let Some(h) = acc.latency.as_ref().filter(|h| !h.is_empty()) {
        for (p, q) in percentiles_us.iter_mut().zip(LOCUST_PERCENTILES) {
            *p = h.value_at_quantile(q);
        }
    }
    let lat = &n.latency;
    let some = !lat.is_empty();
    HistoryEntry {
        kind: n.kind.clone(),
        name: n.name.clone(),
        rps: acc.requests as f64 / secs,
        fps: acc.failures as f64 / secs,
        percentiles_us,
        total_requests: n.requests,
        total_failures: n.failures,
        total_median_us: if some { lat.value_at_quantile(0.5) } else { 0 },
        total_mean_us: if some { lat.mean() } else { 0.0 },
        total_min_us: if some { lat.min() } else { 0 },
        total_max_us: if some { lat.max() } else { 0 },
        total_avg_bytes: if n.requests > 0 {
            n.bytes as f64 / n.requests as f64
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};
    use stampede_protocol::{Counter, Report, Series};

    fn wire(h: &Histogram<u64>) -> Vec<u8> {
        let mut buf = Vec::new();
        V2DeflateSerializer::new().serialize(h, &mut buf).unwrap();
        buf
    }

    fn report(seq: u64, name: &str, h: &Histogram<u64>, last: bool) -> DecodedReport {
        DecodedReport::decode(Report {
            run_id: 1,
            seq,
            start_unix_ms: 0,
            end_unix_ms: 0,
            users: 1,
            target_rate: 0.0,
            series: vec![Series {
                name: name.into(),
                metric: metric::LATENCY.into(),
                hist: wire(h),
            }],
            counters: vec![Counter {
                name: name.into(),
                counter: metric::REQUESTS.into(),
                value: h.len(),
            }],
            failures: vec![],
            records: vec![],
            gauges: vec![],
            last,
        })
        .unwrap()
    }

    /// The merge is exact: percentiles of the merged workers' intervals equal those of one
    /// histogram that saw every sample, through the wire encoding.
    #[test]
    fn merge_is_exact() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut all = new_histogram();
        let catalog = vec![RequestInfo {
            kind: "GET".into(),
            name: "a".into(),
        }];
        let mut agg = Aggregate::new(&catalog, 0);
        for worker in 0..5u64 {
            for seq in 0..10u64 {
                let mut interval = new_histogram();
                for _ in 0..rng.random_range(0..2000) {
                    // A heavy tail: mostly ~1 ms, some up to seconds.
                    let v = if rng.random_bool(0.01) {
                        rng.random_range(1..5_000_000)
                    } else {
                        rng.random_range(200..2000)
                    };
                    interval.record(v).unwrap();
                    all.record(v).unwrap();
                }
                agg.apply(worker, &report(seq, "a", &interval, seq == 9));
            }
            agg.tick(1_000 * (worker + 1));
        }
        let merged = &agg.names()[0].latency;
        assert_eq!(merged.len(), all.len());
        assert_eq!(agg.total().requests, all.len());
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0] {
            assert_eq!(
                merged.value_at_quantile(q),
                all.value_at_quantile(q),
                "q={q}"
            );
            assert_eq!(
                agg.total().latency.value_at_quantile(q),
                all.value_at_quantile(q),
                "q={q}"
            );
        }
        assert_eq!(merged.mean(), all.mean());
        let per_second: u64 = agg
            .history()
            .iter()
            .map(|r| r.entries.last().unwrap().rps as u64)
            .sum();
        assert_eq!(
            per_second,
            all.len(),
            "every request shows in exactly one interval"
        );
        assert_eq!(merged.max(), all.max());
        assert!(
            agg.workers()
                .values()
                .all(|w| w.finished && w.missing == 0 && w.reports == 10)
        );
    }

    #[test]
    fn tick_makes_history_and_counts_gaps() {
        let mut agg = Aggregate::new(&[], 1_000);
        let mut h = new_histogram();
        h.record(1500).unwrap();
        h.record(2500).unwrap();
        agg.apply(9, &report(0, "dyn", &h, false));
        agg.apply(9, &report(3, "dyn", &h, false));
        assert_eq!(agg.workers()[&9].missing, 2);
        let row = agg.tick(3_000).clone();
        assert_eq!(row.entries.len(), 2);
        assert_eq!(row.entries[0].name, "dyn");
        assert_eq!(row.entries[1].name, AGGREGATED);
        assert!((row.entries[1].rps - 2.0).abs() < 1e-9, "{} req in 2 s", 4);
        assert_eq!(row.entries[1].total_requests, 4);
        assert_eq!(row.entries[1].total_max_us, h.max());
        let next = agg.tick(4_000).clone();
        assert_eq!(next.entries[1].rps, 0.0);
        assert_eq!(next.entries[1].percentiles_us, [0; 11]);
        assert_eq!(next.entries[1].total_requests, 4);
    }

    #[test]
    fn foreign_bounds_are_clamped_not_lost() {
        let mut odd = Histogram::<u64>::new_with_bounds(1, u64::MAX / 4, 2).unwrap();
        odd.record(1 << 60).unwrap();
        odd.record(10).unwrap();
        let mut acc = new_histogram();
        add(&mut acc, &odd);
        assert_eq!(acc.len(), 2);
    }

    #[test]
    fn garbage_histogram_is_an_error() {
        let r = Report {
            run_id: 1,
            seq: 0,
            start_unix_ms: 0,
            end_unix_ms: 0,
            users: 0,
            target_rate: 0.0,
            series: vec![Series {
                name: "a".into(),
                metric: "latency".into(),
                hist: vec![1, 2, 3],
            }],
            counters: vec![],
            failures: vec![],
            records: vec![],
            gauges: vec![],
            last: false,
        };
        let e = DecodedReport::decode(r.clone()).unwrap_err();
        assert!(e.to_string().contains("undecodable histogram"), "{e}");
        let r = Report {
            series: vec![],
            records: vec![stampede_protocol::Rows {
                stream: "requests".into(),
                data: vec![1, 2, 3],
            }],
            ..r
        };
        let e = DecodedReport::decode(r).unwrap_err();
        assert!(e.to_string().contains("rows of stream `requests`"), "{e}");
    }
}
