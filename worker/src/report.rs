//! Turns one interval of the recorder into a protocol [`Report`]: histograms V2+DEFLATE
//! serialized, counters and failures by name, record rows zlib-compressed. Names with nothing
//! in the interval are left out.
//!
//! Called by the worker session once a second; it does no I/O. [`spill`] splits a report whose
//! rows are too many for one frame into several.

use std::io::Write;

use flate2::Compression;
use flate2::write::ZlibEncoder;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use stampede_protocol::{Counter, FailureCount, Gauge, Report, Rows, Series, metric};
use stampede_scenarios::Recorder;

/// Raw bytes of rows compressed into one [`Rows`] entry at most (whole lines only), so a burst
/// of rows can be spread over several reports.
pub const ROWS_CHUNK: usize = 1 << 20;

/// Compressed bytes of rows one report carries at most; the rest go in the reports [`spill`]
/// makes (well under the protocol's 16 MiB frame limit).
pub const ROWS_PER_REPORT: usize = 8 << 20;

/// What a report says besides the recorder's interval.
pub struct Meta<'a> {
    /// The run.
    pub run_id: u64,
    /// The report's sequence number.
    pub seq: u64,
    /// Interval start, Unix ms.
    pub start_unix_ms: u64,
    /// Interval end, Unix ms.
    pub end_unix_ms: u64,
    /// Users or requests in flight.
    pub users: u64,
    /// Current open-model rate of this worker.
    pub target_rate: f64,
    /// Arrivals dropped during the interval.
    pub dropped: u64,
    /// When this worker's first and last user sent their first request (Unix µs, worker
    /// clock), if it changed since the last report.
    pub first_sends_unix_us: Option<(u64, u64)>,
    /// Whether this is the final report of the run.
    pub last: bool,
    /// The recorder to take the interval from.
    pub recorder: &'a Recorder,
    /// Readings of the worker (its host's CPU and disk usage).
    pub gauges: Vec<Gauge>,
}

/// Take the recorder's interval and encode it.
pub fn encode(m: Meta<'_>) -> Report {
    let iv = m.recorder.take();
    let mut ser = V2DeflateSerializer::new();
    let mut series = Vec::new();
    let mut counters = Vec::new();
    let mut failures = Vec::new();
    let names = m.recorder.names();
    let metrics = m.recorder.metrics();
    let extra = m.recorder.counters();
    for (i, n) in iv.names.iter().enumerate() {
        let name = &names[i];
        for (h, metric_name) in n.hists.iter().zip(metrics) {
            if let Some(h) = h {
                let mut buf = Vec::new();
                if ser.serialize(h, &mut buf).is_ok() {
                    series.push(Series {
                        name: name.clone(),
                        metric: metric_name.clone(),
                        hist: buf,
                    });
                }
            }
        }
        if n.requests > 0 {
            let base = [
                (metric::REQUESTS, n.requests),
                (metric::FAILURES, n.failures),
                (metric::BYTES, n.bytes),
            ];
            for (c, v) in base {
                counters.push(Counter {
                    name: name.clone(),
                    counter: c.to_string(),
                    value: v,
                });
            }
        }
        for (v, c) in n.counters.iter().zip(extra) {
            if *v > 0 {
                counters.push(Counter {
                    name: name.clone(),
                    counter: c.clone(),
                    value: *v,
                });
            }
        }
        for (kind, count) in &n.failure_kinds {
            failures.push(FailureCount {
                name: name.clone(),
                kind: kind.clone(),
                count: *count,
            });
        }
    }
    if let Some(lag) = &iv.lag {
        let mut buf = Vec::new();
        if ser.serialize(lag, &mut buf).is_ok() {
            series.push(Series {
                name: String::new(),
                metric: metric::SCHEDULE_LAG.into(),
                hist: buf,
            });
        }
    }
    let mut records = Vec::new();
    for (stream, rows) in m.recorder.streams().iter().zip(&iv.rows) {
        for chunk in line_chunks(rows, ROWS_CHUNK) {
            records.push(Rows {
                stream: stream.clone(),
                data: compress(chunk),
            });
        }
    }
    if let Some((min, max)) = m.first_sends_unix_us {
        for (counter, value) in [(metric::FIRST_SEND_MIN, min), (metric::FIRST_SEND_MAX, max)] {
            counters.push(Counter {
                name: String::new(),
                counter: counter.into(),
                value,
            });
        }
    }
    if m.dropped > 0 {
        counters.push(Counter {
            name: String::new(),
            counter: "dropped".into(),
            value: m.dropped,
        });
    }
    Report {
        run_id: m.run_id,
        seq: m.seq,
        start_unix_ms: m.start_unix_ms,
        end_unix_ms: m.end_unix_ms,
        users: m.users,
        target_rate: m.target_rate,
        series,
        counters,
        failures,
        records,
        gauges: m.gauges,
        last: m.last,
    }
}

/// Split `report` so that no part carries more than `budget` compressed bytes of rows (a part
/// always carries at least one [`Rows`]). The first part keeps the measurements; the others
/// carry only rows, with the same interval. Only the final part keeps `last`. The caller
/// numbers them (`seq`) in order.
pub fn spill(mut report: Report, budget: usize) -> Vec<Report> {
    let total: usize = report.records.iter().map(|r| r.data.len()).sum();
    if total <= budget {
        return vec![report];
    }
    let last = report.last;
    let mut rest = std::mem::take(&mut report.records).into_iter().peekable();
    let mut parts = Vec::new();
    let mut current = report;
    loop {
        let mut size = 0;
        while let Some(r) = rest.next_if(|r| size == 0 || size + r.data.len() <= budget) {
            size += r.data.len();
            current.records.push(r);
        }
        let done = rest.peek().is_none();
        current.last = last && done;
        let next = Report {
            series: Vec::new(),
            counters: Vec::new(),
            failures: Vec::new(),
            records: Vec::new(),
            ..current.clone()
        };
        parts.push(current);
        if done {
            return parts;
        }
        current = next;
    }
}

/// `rows` cut into pieces of at most `max` bytes that end at line ends (a single longer line
/// is a piece of its own).
fn line_chunks(rows: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let cut = if rest.len() <= max {
            rest.len()
        } else {
            match rest[..max].iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => rest
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(rest.len(), |i| i + 1),
            }
        };
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

/// zlib-compress `bytes` at the fastest level (rows are repetitive text: ~5x smaller at a
/// fraction of the cost of producing them).
fn compress(bytes: &[u8]) -> Vec<u8> {
    let mut enc = ZlibEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(bytes);
    enc.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_scenarios::RecordStream;

    fn inflate(data: &[u8]) -> Vec<u8> {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(data)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn chunks_end_at_line_ends() {
        let rows = b"aaa\nbb\ncccccc\nd\n";
        let pieces: Vec<&[u8]> = line_chunks(rows, 7).collect();
        assert_eq!(pieces, vec![&b"aaa\nbb\n"[..], b"cccccc\n", b"d\n"]);
        let pieces: Vec<&[u8]> = line_chunks(b"0123456789\nx", 4).collect();
        assert_eq!(pieces, vec![&b"0123456789\n"[..], b"x"]);
        assert_eq!(line_chunks(b"", 4).count(), 0);
    }

    /// Rows go out compressed, whole and once; a report too big for one frame spills its rows
    /// into follow-up reports, the last of which keeps `last`.
    #[test]
    fn rows_are_encoded_and_spilled() {
        let rec = Recorder::new(vec!["a".into()], &[], &[], 2).with_streams(&[RecordStream {
            name: "requests".into(),
            header: "i".into(),
        }]);
        for i in 0..300_000u32 {
            rec.row(0, |b| {
                let _ = writeln!(b, "{i},{}", i.wrapping_mul(2_654_435_761));
            });
        }
        let report = encode(Meta {
            run_id: 1,
            seq: 0,
            start_unix_ms: 0,
            end_unix_ms: 1000,
            users: 0,
            target_rate: 0.0,
            dropped: 0,
            first_sends_unix_us: None,
            last: true,
            recorder: &rec,
            gauges: vec![],
        });
        assert!(report.records.len() > 1, "several 1 MiB chunks");
        let parts = spill(report.clone(), 200_000);
        assert!(parts.len() > 1);
        assert!(parts[..parts.len() - 1].iter().all(|p| !p.last));
        assert!(parts.last().unwrap().last);
        let mut all = Vec::new();
        for p in &parts {
            for r in &p.records {
                assert_eq!(r.stream, "requests");
                all.extend(inflate(&r.data));
            }
        }
        let text = String::from_utf8(all).unwrap();
        let ids: Vec<u32> = text
            .lines()
            .map(|l| l.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(ids, (0..300_000).collect::<Vec<_>>());
        // Within budget: one report, untouched.
        assert_eq!(spill(report.clone(), usize::MAX), vec![report]);
    }
}
