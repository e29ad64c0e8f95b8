//! Report shapes that belong to a driver: the blocks of `summary.json` and the lines under the
//! end-of-run table that only some kinds fill (`llm`, the download figures, `connections`),
//! built from generic [`Figures`] by a [`Report`] in the driver's module.
//!
//! The master calls every report of [`crate::kinds::reports`] with a run's figures and writes
//! what they return; it knows none of their metric names. Also the small figure helpers every
//! report and sink shares (ms from µs histograms, rates). No I/O.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Bytes in a megabyte as the ACME performance track counts them (its 37.48 MB/s are
/// 39,296,263.99 bytes/s ÷ 2^20).
pub const MEGABYTE: f64 = 1_048_576.0;

/// One request name's figures (or all of them together), as recorded: histograms in the
/// unit of their spec (latency in µs).
#[derive(Debug, Clone, Copy)]
pub struct Figures<'a> {
    /// Requests completed (successes and failures).
    pub requests: u64,
    /// Requests that failed.
    pub failures: u64,
    /// Response bytes received.
    pub bytes: u64,
    /// Latency of every request, µs.
    pub latency: &'a Histogram<u64>,
    /// The driver's histograms by name.
    pub metrics: &'a BTreeMap<String, Histogram<u64>>,
    /// The driver's counters by name.
    pub counters: &'a BTreeMap<String, u64>,
}

impl Figures<'_> {
    /// The counter called `name`, 0 if not recorded.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// The histogram called `name`, if recorded and not empty.
    pub fn measured(&self, name: &str) -> Option<&Histogram<u64>> {
        self.metrics.get(name).filter(|h| !h.is_empty())
    }

    /// Latency at quantile `q`, ms; 0 before any request.
    pub fn latency_ms(&self, q: f64) -> f64 {
        quantile_ms(self.latency, q)
    }

    /// Mean latency, ms; 0 before any request.
    pub fn mean_ms(&self) -> f64 {
        if self.latency.is_empty() {
            0.0
        } else {
            self.latency.mean() / 1000.0
        }
    }

    /// Failures ÷ requests; 0 before any request.
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.failures as f64 / self.requests as f64
        }
    }
}

/// What a report knows of the run besides one name's figures.
#[derive(Debug, Clone, Copy)]
pub struct RunContext {
    /// Seconds the rates are over.
    pub duration_s: f64,
    /// The target is `https://`.
    pub tls: bool,
    /// How close together the workers' first requests went out, ms.
    pub start_spread_ms: Option<f64>,
    /// Workers that sent a first request.
    pub workers_started: usize,
}

/// Where a [`JsonBlock`] goes in `summary.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A key of the document, from the aggregate.
    Top,
    /// A key of each entry of `requests` and of `total`.
    PerRequest,
    /// A key of the `metrics` block, from the aggregate.
    Metrics,
}

/// One key a report adds to `summary.json`: always written, `null` when the run has none of
/// its figures.
#[derive(Debug, Clone, Copy)]
pub struct JsonBlock {
    /// Where.
    pub place: Place,
    /// The key.
    pub key: &'static str,
    /// Its value from one name's figures (the aggregate's for [`Place::Top`] and
    /// [`Place::Metrics`]).
    pub build: fn(&Figures, &RunContext) -> Value,
}

/// A driver's report shape: its `summary.json` keys and its lines under the end-of-run table.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// What it reports on (`connections`, `llm`), unique: kinds sharing a report (every HTTP
    /// kind's connections) list the same one.
    pub name: &'static str,
    /// The keys, in any order (the document's keys are sorted).
    pub json: &'static [JsonBlock],
    /// Its lines under the stats table from the aggregate; empty when the run has none of its
    /// figures.
    pub table: fn(&Figures, &RunContext) -> String,
}

/// `count / duration`, 0 for an empty duration.
pub fn per_second(count: u64, duration_s: f64) -> f64 {
    if duration_s > 0.0 {
        count as f64 / duration_s
    } else {
        0.0
    }
}

/// The value at quantile `q`, µs; 0 for an empty histogram.
pub fn quantile_us(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

/// The value at quantile `q`, ms; 0 for an empty histogram.
pub fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    quantile_us(h, q) as f64 / 1000.0
}

/// Smallest value, ms; 0 for an empty histogram.
pub fn min_ms(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.min() as f64 / 1000.0
    }
}

/// Largest value, ms; 0 for an empty histogram.
pub fn max_ms(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.max() as f64 / 1000.0
    }
}

/// A histogram of µs as `summary.json` writes an extra metric: count, mean, p50, p90, p99 and
/// max in ms.
pub fn metric_json(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "mean": if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
        "p50": quantile_ms(h, 0.50),
        "p90": quantile_ms(h, 0.90),
        "p99": quantile_ms(h, 0.99),
        "max": max_ms(h),
    })
}

/// ms with the precision that matters at its size: 0.123, 1.23, 12.3, 1234.
pub fn fmt_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{ms:.0}")
    } else if ms >= 100.0 {
        format!("{ms:.1}")
    } else if ms >= 1.0 {
        format!("{ms:.2}")
    } else {
        format!("{ms:.3}")
    }
}

/// ms as [`fmt_ms`] writes them, trailing zeros dropped: 0.08, 0.3, 1.2, 250.
pub fn short_ms(ms: f64) -> String {
    let s = fmt_ms(ms);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A count with thousands separated by commas: 99,950.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
