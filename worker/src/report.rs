//! Turns one interval of the recorder into a protocol [`Report`]: histograms V2+DEFLATE
//! serialized, counters and failures by name. Names with nothing in the interval are left out.
//!
//! Called by the worker session once a second; it does no I/O.

use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use stampede_protocol::{Counter, FailureCount, Report, Series, metric};
use stampede_scenarios::Recorder;

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
    /// Whether this is the final report of the run.
    pub last: bool,
    /// The recorder to take the interval from.
    pub recorder: &'a Recorder,
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
        last: m.last,
    }
}
