//! The files of `--out DIR` and the end-of-run table: `summary.json` (described by
//! `master/schema/summary.schema.json`), Locust-compatible `stats.csv`, `stats_history.csv` and
//! `failures.csv`, the HdrHistogram interval log `latency.hlog`, and threshold verdicts.
//!
//! The master's run loop calls [`HlogWriter`] once a second and [`write()`] / [`table`] once at
//! the end. This module only formats a [`RunSummary`]: it does not aggregate, and it holds no
//! state besides the open hlog file.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use serde_json::{Map, Value, json};
use stampede_scenarios::Threshold;
use stampede_scenarios::threshold::Figure;

use crate::summary::{
    AGGREGATED, CONNECT, CONNECTIONS_NEW, CONNECTIONS_REUSED, FailureRow, HistoryEntry, HistoryRow,
    LOCUST_PERCENTILES, NameStats, RunSummary, TLS_HANDSHAKE, ThresholdOutcome, TlsSummary,
    WorkerSummary,
};

/// The layout version of `summary.json`; bump it on any incompatible change.
pub const SCHEMA_VERSION: u64 = 1;

/// Locust's `requests_csv` header (`*_stats.csv`).
pub const STATS_CSV_HEADER: &str = "Type,Name,Request Count,Failure Count,Median Response Time,\
Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,\
Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%";

/// Locust's `stats_history_csv` header (`*_stats_history.csv`).
pub const HISTORY_CSV_HEADER: &str = "Timestamp,User Count,Type,Name,Requests/s,Failures/s,\
50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,Total Request Count,Total Failure Count,\
Total Median Response Time,Total Average Response Time,Total Min Response Time,\
Total Max Response Time,Total Average Content Size";

/// Locust's `failures_csv` header (`*_failures.csv`).
pub const FAILURES_CSV_HEADER: &str = "Method,Name,Error,Occurrences";

/// What the hlog's `Interval_Max` column is divided by: histograms hold µs, tools read ms.
pub const HLOG_MAX_VALUE_UNIT_RATIO: f64 = 1000.0;

/// Python's `csv` writer ends rows with CRLF (the `excel` dialect), so Locust's files do too.
const CSV_EOL: &str = "\r\n";

/// Longest request name the end-of-run table shows before truncating it.
const TABLE_NAME_WIDTH: usize = 48;

/// Write `summary.json`, `stats.csv`, `stats_history.csv` and `failures.csv` into `dir`
/// (creating it). Returns the paths written, in that order.
pub fn write(dir: &Path, summary: &RunSummary) -> anyhow::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json =
        serde_json::to_string_pretty(&summary_json(summary)).context("serializing summary.json")?;
    let files = [
        ("summary.json", json + "\n"),
        ("stats.csv", stats_csv(summary)),
        ("stats_history.csv", history_csv(&summary.history)),
        ("failures.csv", failures_csv(&summary.failures)),
    ];
    files
        .into_iter()
        .map(|(name, body)| {
            let path = dir.join(name);
            fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// The `summary.json` document as a [`Value`] ([`write()`] serializes this, pretty).
///
/// Times are ms (the histograms hold µs), rates are per second of [`RunSummary::duration_s`].
pub fn summary_json(summary: &RunSummary) -> Value {
    let duration = summary.duration_s();
    let tls = summary.tls.is_some();
    let requests: Vec<Value> = summary
        .stats
        .iter()
        .map(|s| request_json(s, duration, &summary.failures, tls))
        .collect();
    json!({
        "schema_version": SCHEMA_VERSION,
        "run_id": summary.run_id,
        "scenario": summary.scenario,
        "kind": summary.kind,
        "target": summary.target,
        "load": summary.load,
        "started_at": rfc3339(summary.started_unix_ms),
        "completed_at": rfc3339(summary.ended_unix_ms),
        "duration_s": duration,
        "stop_reason": summary.stop_reason,
        "status": summary.status(),
        "metrics": metrics_json(&summary.total, duration),
        "requests": requests,
        "total": request_json(&summary.total, duration, &summary.failures, tls),
        "workers": summary.workers.iter().map(worker_json).collect::<Vec<_>>(),
        "failures": summary.failures.iter().map(failure_json).collect::<Vec<_>>(),
        "schedule_lag_ms": summary.schedule_lag.as_ref().map(lag_json),
        "start_spread_ms": summary.start_spread_ms(),
        "thresholds": summary.thresholds.iter().map(threshold_json).collect::<Vec<_>>(),
        "passed": summary.passed(),
        "events": summary.events,
        "llm": llm_json(&summary.total, duration),
        "connections": connections_json(&summary.total, tls),
        "tls": summary.tls.as_ref().map(tls_json),
    })
}

/// The `connections` block of a request name (or of all of them): requests that opened a new
/// connection and requests that reused one, with the TCP connect and TLS handshake times of
/// the new ones. `null` when the driver counts no connections (gRPC, ...). The handshake is
/// `null` on plain `http://` (`tls` false) unless one was recorded.
fn connections_json(s: &NameStats, tls: bool) -> Value {
    let new = s.counters.get(CONNECTIONS_NEW);
    let reused = s.counters.get(CONNECTIONS_REUSED);
    if new.is_none() && reused.is_none() {
        return Value::Null;
    }
    let figures = |name: &str| match s.metrics.get(name) {
        Some(h) => metric_json(h),
        // Every request of this name went on an open connection: no time, count 0.
        None => metric_json(&stampede_scenarios::recorder::new_histogram()),
    };
    let handshake = if tls || s.metrics.contains_key(TLS_HANDSHAKE) {
        figures(TLS_HANDSHAKE)
    } else {
        Value::Null
    };
    json!({
        "new": new.copied().unwrap_or(0),
        "reused": reused.copied().unwrap_or(0),
        "connect_ms": figures(CONNECT),
        "tls_handshake_ms": handshake,
    })
}

/// The `tls` block of an `https://` run: how the target was trusted.
fn tls_json(t: &TlsSummary) -> Value {
    json!({
        "insecure": t.insecure,
        "server_name": t.server_name,
        "ca": t.ca,
        "client_cert": t.client_cert,
    })
}

/// The line under the stats table of a run that counted connections: how many were opened and
/// reused, connect times and, on `https://`, handshake times.
fn connections_line(summary: &RunSummary) -> String {
    let total = &summary.total;
    let c = connections_json(total, summary.tls.is_some());
    if c.is_null() {
        return String::new();
    }
    let count = |k: &str| c[k].as_u64().unwrap_or(0);
    let times = |what: &str, name: &str| match total.metrics.get(name).filter(|h| !h.is_empty()) {
        Some(h) => format!(
            "{what} p50 {} ms, p99 {} ms",
            short_ms(quantile_ms(h, 0.50)),
            short_ms(quantile_ms(h, 0.99))
        ),
        None => format!("{what}: none measured"),
    };
    let mut out = format!(
        "\nconnections: {} new, {} reused; {}",
        thousands(count("new")),
        thousands(count("reused")),
        times("connect", CONNECT)
    );
    if !c["tls_handshake_ms"].is_null() {
        out.push_str("; ");
        out.push_str(&times("TLS handshake", TLS_HANDSHAKE));
    }
    out.push('\n');
    out
}

/// Token-counting methods, as `counted_by_<method>` counters of the `llm` driver.
const COUNT_METHODS: [&str; 4] = ["usage", "tokenizer", "chunks", "words"];

/// The `llm` block: streaming figures and tokens of an `llm` run; `null` for other kinds.
fn llm_json(total: &NameStats, duration: f64) -> Value {
    if !total.metrics.contains_key("ttft") && !total.counters.contains_key("output_tokens") {
        return Value::Null;
    }
    // A figure nothing measured (TTFT without streaming) is null, not a zero.
    let figures = |h: Option<&Histogram<u64>>| match h.filter(|h| !h.is_empty()) {
        Some(h) => json!({
            "p50": quantile_ms(h, 0.50),
            "p90": quantile_ms(h, 0.90),
            "p99": quantile_ms(h, 0.99),
            "mean": h.mean() / 1000.0,
            "min": min_ms(h),
            "max": max_ms(h),
            "count": h.len(),
        }),
        None => json!({
            "p50": null, "p90": null, "p99": null, "mean": null, "min": null, "max": null,
            "count": 0,
        }),
    };
    let counter = |name: &str| total.counters.get(name).copied().unwrap_or(0);
    let (input, output) = (counter("input_tokens"), counter("output_tokens"));
    let per_s = |n: u64| {
        if duration > 0.0 {
            n as f64 / duration
        } else {
            0.0
        }
    };
    let successes = total.requests.saturating_sub(total.failures);
    json!({
        "ttft_ms": figures(total.metrics.get("ttft")),
        "tpot_ms": figures(total.metrics.get("tpot")),
        "itl_ms": figures(total.metrics.get("itl")),
        // Successes only, as the other figures; `latency` also holds the failures.
        "e2e_ms": figures(total.metrics.get("e2e")),
        "latency_per_output_token_ms": figures(total.metrics.get("latency_per_output_token")),
        "input_tokens": input,
        "output_tokens": output,
        "output_tokens_per_second": per_s(output),
        "total_tokens_per_second": per_s(input + output),
        "request_throughput": per_s(successes),
        "goodput_rps": per_s(counter("good")),
        "good_requests": counter("good"),
        "token_count_method": token_count_method(total),
    })
}

/// The rule that counted output tokens: one name, or `mixed` when requests differed (a server
/// giving usage only sometimes).
fn token_count_method(total: &NameStats) -> &'static str {
    let used: Vec<&str> = COUNT_METHODS
        .into_iter()
        .filter(|m| {
            total
                .counters
                .get(&format!("counted_by_{m}"))
                .is_some_and(|&n| n > 0)
        })
        .collect();
    match used.as_slice() {
        [] => "none",
        [one] => one,
        _ => "mixed",
    }
}

/// The LLM figures under the stats table, for `llm` runs.
fn llm_section(total: &NameStats, duration: f64) -> String {
    let v = llm_json(total, duration);
    if v.is_null() {
        return String::new();
    }
    let mut out = String::from("\nLLM (ms)     p50       p90       p99      mean\n");
    for (label, key) in [
        ("TTFT", "ttft_ms"),
        ("TPOT", "tpot_ms"),
        ("ITL", "itl_ms"),
        ("E2E", "e2e_ms"),
    ] {
        let f = &v[key];
        let n = |k: &str| f[k].as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
        out.push_str(&format!(
            "  {label:<6} {:>9} {:>9} {:>9} {:>9}\n",
            n("p50"),
            n("p90"),
            n("p99"),
            n("mean")
        ));
    }
    if v["ttft_ms"]["count"] == 0 {
        // The seed's figure for answers read whole: E2E ÷ output tokens.
        let per_token = total.metrics.get("latency_per_output_token");
        if let Some(h) = per_token.filter(|h| !h.is_empty()) {
            out.push_str(&format!(
                "  not streamed: no TTFT, TPOT or ITL; time per output token (E2E ÷ tokens) p50 {:.1}, p90 {:.1}, p99 {:.1}, mean {:.1}\n",
                quantile_ms(h, 0.50),
                quantile_ms(h, 0.90),
                quantile_ms(h, 0.99),
                h.mean() / 1000.0,
            ));
        }
    }
    let n = |k: &str| v[k].as_f64().unwrap_or(0.0);
    out.push_str(&format!(
        "  tokens: {} in, {} out ({} counted) · {:.1} output tokens/s · {:.1} total tokens/s\n",
        v["input_tokens"],
        v["output_tokens"],
        v["token_count_method"].as_str().unwrap_or("?"),
        n("output_tokens_per_second"),
        n("total_tokens_per_second"),
    ));
    out.push_str(&format!(
        "  throughput {:.2} req/s · goodput {:.2} req/s ({} of {} requests met every SLO)\n",
        n("request_throughput"),
        n("goodput_rps"),
        v["good_requests"],
        total.requests.saturating_sub(total.failures),
    ));
    out
}

/// The end-of-run table for stdout: one row per request name and the aggregate, then the
/// failures, the threshold verdicts and the events (each only if there are any).
pub fn table(summary: &RunSummary) -> String {
    let duration = summary.duration_s();
    let mut out = format!(
        "Run {} of {} against {}: {:.1}s, {} ({})\n\n",
        summary.run_id,
        summary.scenario,
        summary.target,
        duration,
        summary.stop_reason,
        summary.load
    );
    out.push_str(&stats_table(summary, duration));
    out.push_str(&connections_line(summary));
    out.push_str(&llm_section(&summary.total, duration));
    out.push_str(&downloads_section(summary, duration));
    out.push_str(&failures_section(&summary.failures));
    out.push_str(&thresholds_section(&summary.thresholds));
    out.push_str(&events_section(&summary.events));
    out
}

/// Evaluate `thresholds` against the run's aggregate figures (`total`, over `duration_s`).
pub fn evaluate(
    thresholds: &[Threshold],
    total: &NameStats,
    duration_s: f64,
) -> Vec<ThresholdOutcome> {
    thresholds
        .iter()
        .map(|t| {
            let actual = figure_value(t.figure, total, duration_s);
            ThresholdOutcome {
                threshold: t.to_string(),
                actual,
                passed: t.holds(actual),
            }
        })
        .collect()
}

/// A streaming writer of the HdrHistogram interval log (`latency.hlog`), in the format of
/// HdrHistogram's `HistogramLogWriter` (log format 1.3): header comments, the legend, then one
/// line per interval histogram, optionally tagged:
///
/// ```text
/// #[Logged with stampede 0.1.0]
/// #[Histogram log format version 1.3]
/// #[StartTime: 1700000000.000 (seconds since epoch), Tue Nov 14 22:13:20 UTC 2023]
/// #[BaseTime: 1700000000.000 (seconds since epoch)]
/// "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
/// 0.000,1.000,12.345,HISTFAAAA...
/// Tag=GET_/items,0.000,1.000,12.345,HISTFAAAA...
/// ```
///
/// Timestamps are seconds since BaseTime (the run's start); `Interval_Max` is in ms
/// ([`HLOG_MAX_VALUE_UNIT_RATIO`]); the payload is the base64 of the V2 DEFLATE encoding.
pub struct HlogWriter {
    /// Buffered because every second adds a line per request name; [`HlogWriter::finish`]
    /// flushes it and reports the error a drop would swallow.
    out: BufWriter<File>,
    /// Reused for every interval, so its compression buffers are allocated once.
    serializer: V2DeflateSerializer,
    /// The serialized histogram, reused likewise.
    encoded: Vec<u8>,
    /// For error messages.
    path: PathBuf,
}

impl HlogWriter {
    /// Create (truncate) the log at `path` and write its header; the run started at
    /// `start_unix_ms`, which is also the base of the interval timestamps.
    pub fn create(path: &Path, start_unix_ms: u64) -> anyhow::Result<HlogWriter> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = HlogWriter {
            out: BufWriter::new(file),
            serializer: V2DeflateSerializer::new(),
            encoded: Vec::new(),
            path: path.to_path_buf(),
        };
        let header = hlog_header(start_unix_ms);
        writer.write_str(&header)?;
        Ok(writer)
    }

    /// Log one interval histogram (µs). `tag` is `None` for the aggregate (an untagged line) and
    /// the request name otherwise, with the characters tags cannot hold (commas, whitespace)
    /// replaced by `_`. Negative times are written as 0.
    pub fn interval(
        &mut self,
        tag: Option<&str>,
        start_offset_s: f64,
        length_s: f64,
        hist: &Histogram<u64>,
    ) -> anyhow::Result<()> {
        self.encoded.clear();
        self.serializer
            .serialize(hist, &mut self.encoded)
            .context("encoding an interval histogram")?;
        let mut line = match tag {
            Some(t) => format!("Tag={},", hlog_tag(t)),
            None => String::new(),
        };
        line.push_str(&format!(
            "{:.3},{:.3},{:.3},",
            start_offset_s.max(0.0),
            length_s.max(0.0),
            hist.max() as f64 / HLOG_MAX_VALUE_UNIT_RATIO
        ));
        base64_encode(&self.encoded, &mut line);
        line.push('\n');
        self.write_str(&line)
    }

    /// Flush the log to disk.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }

    fn write_str(&mut self, s: &str) -> anyhow::Result<()> {
        self.out
            .write_all(s.as_bytes())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

// ---------------------------------------------------------------------------------------------
// summary.json

/// Bytes in the seed's MB (its 37.48 MB/s are 39,296,263.99 bytes/s ÷ 2^20).
pub const MEGABYTE: f64 = 1_048_576.0;

/// The seed document's `metrics` block, from the aggregate, with time to first byte and
/// per-client throughput when the driver recorded them (`download`).
pub fn metrics_json(total: &NameStats, duration: f64) -> Value {
    let ttfb = total.metrics.get(TTFB).filter(|h| !h.is_empty()).map(|h| {
        json!({
            "mean": h.mean() / 1000.0,
            "p50": quantile_ms(h, 0.50),
            "p90": quantile_ms(h, 0.90),
            "p99": quantile_ms(h, 0.99),
            "min": min_ms(h),
            "max": max_ms(h),
            "count": h.len(),
        })
    });
    // Recorded in kB/s (1000 bytes per second).
    let per_client = total
        .metrics
        .get(CLIENT_THROUGHPUT)
        .filter(|h| !h.is_empty())
        .map(|h| {
            json!({
                "mean_bytes_per_second": h.mean() * 1000.0,
                "median_bytes_per_second": (h.value_at_quantile(0.5) * 1000) as f64,
                "min_bytes_per_second": (h.min() * 1000) as f64,
                "max_bytes_per_second": (h.max() * 1000) as f64,
                "count": h.len(),
            })
        });
    let bytes_per_second = per_second(total.bytes, duration);
    json!({
        "throughput": {
            "requests_per_second": per_second(total.requests, duration),
            "bytes_per_second": bytes_per_second,
            "megabytes_per_second": bytes_per_second / MEGABYTE,
        },
        "latency": {
            "mean_ms": total.mean_ms(),
            "median_ms": total.latency_ms(0.5),
            "p99_ms": total.latency_ms(0.99),
            "min_ms": min_ms(&total.latency),
            "max_ms": max_ms(&total.latency),
        },
        "error_rate": total.error_rate(),
        "total_requests": total.requests,
        "total_bytes": total.bytes,
        "ttfb_ms": ttfb,
        "per_client_throughput": per_client,
    })
}

/// The metric the `download` driver records time to first byte under (µs).
pub const TTFB: &str = "ttfb";
/// The metric the `download` driver records each download's throughput under (kB/s).
pub const CLIENT_THROUGHPUT: &str = "client_throughput";

/// The seed's figures under the stats table, for runs that recorded time to first byte
/// (`download`): throughput, latency, errors, totals, TTFB, per-client throughput and how
/// close together the clients started.
fn downloads_section(summary: &RunSummary, duration: f64) -> String {
    let m = metrics_json(&summary.total, duration);
    if m["ttfb_ms"].is_null() {
        return String::new();
    }
    let n = |v: &Value| v.as_f64().unwrap_or(0.0);
    let (t, l) = (&m["throughput"], &m["latency"]);
    let mut out = format!(
        "\nDownloads\n  throughput   {:.2} bytes/s · {:.2} MB/s · {:.2} requests/s\n",
        n(&t["bytes_per_second"]),
        n(&t["megabytes_per_second"]),
        n(&t["requests_per_second"])
    );
    out.push_str(&format!(
        "  latency      mean {:.2} ms · median {:.2} ms · p99 {:.2} ms · min {:.2} ms · max {:.2} ms\n",
        n(&l["mean_ms"]),
        n(&l["median_ms"]),
        n(&l["p99_ms"]),
        n(&l["min_ms"]),
        n(&l["max_ms"])
    ));
    out.push_str(&format!(
        "  errors       error rate {:.4} ({} of {} requests failed)\n  total        {} requests · {} bytes\n",
        n(&m["error_rate"]),
        summary.total.failures,
        summary.total.requests,
        m["total_requests"],
        m["total_bytes"]
    ));
    let f = &m["ttfb_ms"];
    out.push_str(&format!(
        "  TTFB         p50 {:.2} ms · p90 {:.2} ms · p99 {:.2} ms · max {:.2} ms\n",
        n(&f["p50"]),
        n(&f["p90"]),
        n(&f["p99"]),
        n(&f["max"])
    ));
    let c = &m["per_client_throughput"];
    if !c.is_null() {
        out.push_str(&format!(
            "  per client   min {:.2} MB/s · median {:.2} MB/s · mean {:.2} MB/s · max {:.2} MB/s\n",
            n(&c["min_bytes_per_second"]) / MEGABYTE,
            n(&c["median_bytes_per_second"]) / MEGABYTE,
            n(&c["mean_bytes_per_second"]) / MEGABYTE,
            n(&c["max_bytes_per_second"]) / MEGABYTE
        ));
    }
    if let Some(spread) = summary.start_spread_ms() {
        let workers = summary
            .workers
            .iter()
            .filter(|w| w.first_sends_ms.is_some())
            .count();
        out.push_str(&format!(
            "  start        first requests within {spread:.2} ms across {workers} worker(s)\n"
        ));
    }
    out
}

/// One entry of `requests` (or `total`, whose failures are those of every name).
/// `tls`: the run's target is `https://` (see [`connections_json`]).
fn request_json(s: &NameStats, duration: f64, failures: &[FailureRow], tls: bool) -> Value {
    let metrics: Map<String, Value> = s
        .metrics
        .iter()
        .map(|(name, h)| (name.clone(), metric_json(h)))
        .collect();
    json!({
        "type": s.kind,
        "name": s.name,
        "requests": s.requests,
        "failures": s.failures,
        "bytes": s.bytes,
        "requests_per_second": per_second(s.requests, duration),
        "failures_per_second": per_second(s.failures, duration),
        "error_rate": s.error_rate(),
        "latency_ms": {
            "mean": s.mean_ms(),
            "min": min_ms(&s.latency),
            "p50": s.latency_ms(0.50),
            "p90": s.latency_ms(0.90),
            "p95": s.latency_ms(0.95),
            "p99": s.latency_ms(0.99),
            "p999": s.latency_ms(0.999),
            "max": max_ms(&s.latency),
        },
        "failures_by_kind": failures_by_kind(s, failures),
        "metrics": metrics,
        "counters": s.counters,
        "connections": connections_json(s, tls),
    })
}

/// Occurrences by failure kind for `s` (every name for the aggregate).
fn failures_by_kind(s: &NameStats, failures: &[FailureRow]) -> BTreeMap<String, u64> {
    let mut kinds = BTreeMap::new();
    let aggregate = s.name == AGGREGATED && s.kind.is_empty();
    for f in failures
        .iter()
        .filter(|f| aggregate || (f.name == s.name && f.kind == s.kind))
    {
        *kinds.entry(f.error.clone()).or_insert(0) += f.occurrences;
    }
    kinds
}

/// An extra histogram metric. Drivers record times in µs, so values are divided by 1000 (ms).
fn metric_json(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "mean": if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
        "p50": quantile_ms(h, 0.50),
        "p90": quantile_ms(h, 0.90),
        "p99": quantile_ms(h, 0.99),
        "max": max_ms(h),
    })
}

fn lag_json(h: &Histogram<u64>) -> Value {
    json!({
        "p50": quantile_ms(h, 0.50),
        "p99": quantile_ms(h, 0.99),
        "p999": quantile_ms(h, 0.999),
        "max": max_ms(h),
    })
}

fn worker_json(w: &WorkerSummary) -> Value {
    json!({
        "id": w.id,
        "name": w.name,
        "addr": w.addr,
        "requests": w.requests,
        "failures": w.failures,
        "state": w.state,
        "lost_at_s": w.lost_at_s,
        "first_request_ms": w.first_sends_ms.map(|f| f.0),
        "last_first_request_ms": w.first_sends_ms.map(|f| f.1),
        "mean_ms": w.mean_ms,
        "gauges": w.gauges,
    })
}

fn failure_json(f: &FailureRow) -> Value {
    json!({ "method": f.kind, "name": f.name, "error": f.error, "occurrences": f.occurrences })
}

fn threshold_json(t: &ThresholdOutcome) -> Value {
    json!({ "threshold": t.threshold, "actual": t.actual, "passed": t.passed })
}

// ---------------------------------------------------------------------------------------------
// Locust CSV files

/// `stats.csv`: one row per name in scenario order, then the aggregate (empty Type).
fn stats_csv(summary: &RunSummary) -> String {
    let duration = summary.duration_s();
    let mut out = format!("{STATS_CSV_HEADER}{CSV_EOL}");
    for s in summary.stats.iter().chain([&summary.total]) {
        csv_row(&mut out, &stats_row(s, duration));
    }
    out
}

/// Locust's `_requests_data_rows`: median and percentiles as integer ms, the average and the
/// rates as floats, percentiles `N/A` for a name without requests.
fn stats_row(s: &NameStats, duration: f64) -> Vec<String> {
    let mut row = vec![
        s.kind.clone(),
        s.name.clone(),
        s.requests.to_string(),
        s.failures.to_string(),
        int_ms(quantile_us(&s.latency, 0.5)),
        py_float(s.mean_ms()),
        py_float(min_ms(&s.latency)),
        py_float(max_ms(&s.latency)),
        average_size(s.requests, s.bytes as f64 / s.requests.max(1) as f64),
        py_float(per_second(s.requests, duration)),
        py_float(per_second(s.failures, duration)),
    ];
    if s.requests == 0 {
        row.extend(LOCUST_PERCENTILES.iter().map(|_| "N/A".to_string()));
    } else {
        row.extend(
            LOCUST_PERCENTILES
                .iter()
                .map(|&q| int_ms(quantile_us(&s.latency, q))),
        );
    }
    row
}

/// `stats_history.csv`: one row per entry of every second.
fn history_csv(history: &[HistoryRow]) -> String {
    let mut out = format!("{HISTORY_CSV_HEADER}{CSV_EOL}");
    for row in history {
        for entry in &row.entries {
            csv_row(&mut out, &history_row(row, entry));
        }
    }
    out
}

/// Locust's `_stats_history_data_rows`: rates as `f"{x:2f}"` (six decimals), percentiles of
/// the last interval as integer ms, `N/A` while the name has had no request at all (an empty
/// interval after that reads 0, as in Locust).
fn history_row(row: &HistoryRow, e: &HistoryEntry) -> Vec<String> {
    let mut fields = vec![
        row.unix_s.to_string(),
        row.users.to_string(),
        e.kind.clone(),
        e.name.clone(),
        format!("{:.6}", e.rps),
        format!("{:.6}", e.fps),
    ];
    if e.total_requests == 0 {
        fields.extend(e.percentiles_us.iter().map(|_| "N/A".to_string()));
    } else {
        fields.extend(e.percentiles_us.iter().map(|&us| int_ms(us)));
    }
    fields.extend([
        e.total_requests.to_string(),
        e.total_failures.to_string(),
        int_ms(e.total_median_us),
        py_float(e.total_mean_us / 1000.0),
        py_float(e.total_min_us as f64 / 1000.0),
        py_float(e.total_max_us as f64 / 1000.0),
        average_size(e.total_requests, e.total_avg_bytes),
    ]);
    fields
}

fn failures_csv(failures: &[FailureRow]) -> String {
    let mut out = format!("{FAILURES_CSV_HEADER}{CSV_EOL}");
    for f in failures {
        let row = [
            f.kind.clone(),
            f.name.clone(),
            f.error.clone(),
            f.occurrences.to_string(),
        ];
        csv_row(&mut out, &row);
    }
    out
}

/// Append one CSV row, quoting as Python's `csv.writer` does by default (`QUOTE_MINIMAL`).
fn csv_row(out: &mut String, fields: &[String]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, field);
    }
    out.push_str(CSV_EOL);
}

/// A field is quoted when it holds the delimiter, the quote or a line break; quotes double.
fn csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// A float as Python's `str(float)` writes it: shortest round-trip digits, at least one decimal.
fn py_float(x: f64) -> String {
    let s = x.to_string();
    if s.contains(['.', 'e', 'N', 'i']) {
        s
    } else {
        s + ".0"
    }
}

/// µs as whole ms, rounded (Locust's response-time buckets are whole ms).
fn int_ms(us: u64) -> String {
    ((us as f64 / 1000.0).round() as u64).to_string()
}

/// Locust's `avg_content_length`: a float, or the integer 0 without requests.
fn average_size(requests: u64, average: f64) -> String {
    if requests == 0 {
        "0".to_string()
    } else {
        py_float(average)
    }
}

// ---------------------------------------------------------------------------------------------
// The end-of-run table

const TABLE_HEADER: [&str; 11] = [
    "Type", "Name", "# reqs", "# fails", "req/s", "p50", "p90", "p99", "p99.9", "max", "avg size",
];

fn stats_table(summary: &RunSummary, duration: f64) -> String {
    let header: Vec<String> = TABLE_HEADER.iter().map(|h| h.to_string()).collect();
    let names: Vec<Vec<String>> = summary
        .stats
        .iter()
        .map(|s| table_row(s, duration))
        .collect();
    let total = table_row(&summary.total, duration);
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in names.iter().chain([&total]) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
    let mut out = table_line(&header, &widths);
    out.push_str(&table_line(&rule, &widths));
    for row in &names {
        out.push_str(&table_line(row, &widths));
    }
    out.push_str(&table_line(&rule, &widths));
    out.push_str(&table_line(&total, &widths));
    out
}

fn table_row(s: &NameStats, duration: f64) -> Vec<String> {
    let latency = |q: f64| {
        if s.requests == 0 {
            "-".to_string()
        } else {
            fmt_ms(s.latency_ms(q))
        }
    };
    let avg_size = if s.requests == 0 {
        0.0
    } else {
        s.bytes as f64 / s.requests as f64
    };
    vec![
        s.kind.clone(),
        truncate(&s.name, TABLE_NAME_WIDTH),
        s.requests.to_string(),
        format!("{} ({:.2}%)", s.failures, s.error_rate() * 100.0),
        format!("{:.2}", per_second(s.requests, duration)),
        latency(0.50),
        latency(0.90),
        latency(0.99),
        latency(0.999),
        if s.requests == 0 {
            "-".to_string()
        } else {
            fmt_ms(max_ms(&s.latency))
        },
        format!("{avg_size:.0}"),
    ]
}

/// One aligned line: Type and Name to the left, numbers to the right.
fn table_line(cells: &[String], widths: &[usize]) -> String {
    let padded: Vec<String> = cells
        .iter()
        .zip(widths)
        .enumerate()
        .map(|(i, (cell, &w))| {
            if i < 2 {
                format!("{cell:<w$}")
            } else {
                format!("{cell:>w$}")
            }
        })
        .collect();
    format!("{}\n", padded.join("  ").trim_end())
}

fn failures_section(failures: &[FailureRow]) -> String {
    if failures.is_empty() {
        return String::new();
    }
    let mut out = "\nFailures\n".to_string();
    for f in failures {
        let who = if f.kind.is_empty() {
            f.name.clone()
        } else {
            format!("{} {}", f.kind, f.name)
        };
        out.push_str(&format!("  {:>8}  {}: {}\n", f.occurrences, who, f.error));
    }
    out
}

fn thresholds_section(thresholds: &[ThresholdOutcome]) -> String {
    if thresholds.is_empty() {
        return String::new();
    }
    let passed = thresholds.iter().all(|t| t.passed);
    let mut out = format!("\nThresholds: {}\n", if passed { "PASS" } else { "FAIL" });
    let width = thresholds
        .iter()
        .map(|t| t.threshold.chars().count())
        .max()
        .unwrap_or(0);
    for t in thresholds {
        let mark = if t.passed { "✓" } else { "✗" };
        let actual = fmt_actual(t.actual);
        out.push_str(&format!(
            "  {mark} {:<width$}  actual {actual}\n",
            t.threshold
        ));
    }
    out
}

fn events_section(events: &[String]) -> String {
    if events.is_empty() {
        return String::new();
    }
    let mut out = "\nEvents\n".to_string();
    for e in events {
        out.push_str(&format!("  - {e}\n"));
    }
    out
}

/// ms with the precision that matters at its size: 0.123, 1.23, 12.3, 1234.
fn fmt_ms(ms: f64) -> String {
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
fn short_ms(ms: f64) -> String {
    let s = fmt_ms(ms);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A count with thousands separated by commas: 99,950.
pub(crate) fn thousands(n: u64) -> String {
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

/// A threshold's figure with up to 4 decimals, trailing zeros dropped.
fn fmt_actual(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// At most `max` characters, the last one an ellipsis when cut.
fn truncate(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        return name.to_string();
    }
    let mut cut: String = name.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

// ---------------------------------------------------------------------------------------------
// Figures

/// The aggregate figure a threshold bounds.
fn figure_value(figure: Figure, total: &NameStats, duration_s: f64) -> f64 {
    match figure {
        Figure::PercentileMs(tenths) => total.latency_ms(f64::from(tenths) / 1000.0),
        Figure::MeanMs => total.mean_ms(),
        Figure::MaxMs => max_ms(&total.latency),
        Figure::ErrorRate => total.error_rate(),
        Figure::Rps => per_second(total.requests, duration_s),
        Figure::Failures => total.failures as f64,
    }
}

/// `count / duration`, 0 for an empty duration.
fn per_second(count: u64, duration_s: f64) -> f64 {
    if duration_s > 0.0 {
        count as f64 / duration_s
    } else {
        0.0
    }
}

/// The value at quantile `q`, µs; 0 for an empty histogram.
fn quantile_us(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    quantile_us(h, q) as f64 / 1000.0
}

/// Smallest value, ms; 0 for an empty histogram.
fn min_ms(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.min() as f64 / 1000.0
    }
}

/// Largest value, ms; 0 for an empty histogram.
fn max_ms(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.max() as f64 / 1000.0
    }
}

// ---------------------------------------------------------------------------------------------
// Time and encoding helpers (no chrono, no base64 crate)

/// A UTC calendar date and time.
struct Civil {
    year: u64,
    /// 1..=12
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
    milli: u64,
    /// 0 = Sunday.
    weekday: u64,
}

/// Split Unix ms into a UTC date (Howard Hinnant's `civil_from_days`, for days ≥ 0).
fn civil(unix_ms: u64) -> Civil {
    let days = unix_ms / 86_400_000;
    let ms_of_day = unix_ms % 86_400_000;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    Civil {
        year,
        month,
        day: doy - (153 * mp + 2) / 5 + 1,
        hour: ms_of_day / 3_600_000,
        minute: ms_of_day / 60_000 % 60,
        second: ms_of_day / 1_000 % 60,
        milli: ms_of_day % 1_000,
        // 1970-01-01 was a Thursday.
        weekday: (days + 4) % 7,
    }
}

/// RFC 3339 UTC with milliseconds: `2024-05-01T12:00:00.250Z`.
fn rfc3339(unix_ms: u64) -> String {
    let c = civil(unix_ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.milli
    )
}

/// RFC 3339 UTC to the second, as the seed's API writes times: `2024-01-15T10:05:00Z`.
pub fn rfc3339_seconds(unix_ms: u64) -> String {
    let c = civil(unix_ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// Java's `Date.toString()` in UTC, as `HistogramLogWriter` puts in StartTime:
/// `Thu Jan 01 00:00:00 UTC 1970`.
fn java_date(unix_ms: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = civil(unix_ms);
    // In bounds: `weekday` is taken modulo 7 and `civil` yields months 1..=12.
    let (day_name, month_name) = (DAYS[c.weekday as usize], MONTHS[c.month as usize - 1]);
    format!(
        "{day_name} {month_name} {:02} {:02}:{:02}:{:02} UTC {}",
        c.day, c.hour, c.minute, c.second, c.year
    )
}

/// Unix ms as `%.3f` seconds, exactly.
fn seconds_3(unix_ms: u64) -> String {
    format!("{}.{:03}", unix_ms / 1000, unix_ms % 1000)
}

fn hlog_header(start_unix_ms: u64) -> String {
    let start = seconds_3(start_unix_ms);
    format!(
        "#[Logged with stampede {}]\n\
         #[Histogram log format version 1.3]\n\
         #[StartTime: {start} (seconds since epoch), {}]\n\
         #[BaseTime: {start} (seconds since epoch)]\n\
         \"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
        env!("CARGO_PKG_VERSION"),
        java_date(start_unix_ms),
    )
}

/// A request name as an hlog tag: no commas or whitespace (they delimit the line), not empty.
fn hlog_tag(name: &str) -> String {
    let tag: String = name
        .chars()
        .map(|c| {
            if c == ',' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if tag.is_empty() { "_".to_string() } else { tag }
}

/// Standard base64 with padding (RFC 4648 §4), appended to `out`.
fn base64_encode(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let mut group = [0u8; 3];
        group[..chunk.len()].copy_from_slice(chunk);
        let n = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                // In bounds: the index is masked to 6 bits.
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use stampede_scenarios::recorder::{new_histogram, record_clamped};

    use super::*;
    use crate::state::WorkerState;

    const SCHEMA: &str = include_str!("../schema/summary.schema.json");
    const START_MS: u64 = 1_700_000_000_250;

    /// Stats for a name with latencies `from..=to` ms (one request each), `failures` of them failed.
    fn name_stats(kind: &str, name: &str, from: u64, to: u64, failures: u64) -> NameStats {
        let mut s = NameStats::new(kind, name);
        for ms in from..=to {
            record_clamped(&mut s.latency, ms * 1000);
        }
        s.requests = to - from + 1;
        s.failures = failures;
        s.bytes = s.requests * 512;
        s
    }

    fn add(total: &mut NameStats, s: &NameStats) {
        total.requests += s.requests;
        total.failures += s.failures;
        total.bytes += s.bytes;
        total.latency.add(&s.latency).unwrap();
    }

    fn history_entry(kind: &str, name: &str, total_requests: u64) -> HistoryEntry {
        HistoryEntry {
            kind: kind.into(),
            name: name.into(),
            rps: total_requests as f64,
            fps: 0.5,
            percentiles_us: [
                12_400, 13_000, 14_000, 15_000, 20_000, 25_000, 30_000, 40_000, 50_000, 60_000,
                70_000,
            ],
            total_requests,
            total_failures: 1,
            total_median_us: 12_600,
            total_mean_us: 15_250.5,
            total_min_us: 1_500,
            total_max_us: 70_000,
            total_avg_bytes: 512.0,
        }
    }

    /// A realistic run: three names (one with a comma, one never requested), failures, two
    /// seconds of history, two workers (one lost), thresholds, schedule lag and an event.
    fn fixture() -> RunSummary {
        let mut items = name_stats("GET", "/api/items", 1, 1000, 2);
        let mut ttft = new_histogram();
        for us in [800, 1_200, 5_000] {
            record_clamped(&mut ttft, us);
        }
        items.metrics.insert("ttft".into(), ttft);
        items.counters.insert("tokens".into(), 4_200);
        let bulk = name_stats("POST", "/api/items, bulk \"v2\"", 100, 299, 5);
        let health = NameStats::new("GET", "/health");
        let mut total = NameStats::new("", AGGREGATED);
        for s in [&items, &bulk, &health] {
            add(&mut total, s);
        }
        let mut lag = new_histogram();
        for us in 1..=100 {
            record_clamped(&mut lag, us * 10);
        }
        let duration = 60.0;
        let thresholds = [
            Threshold::parse("p99_ms", "< 2000").unwrap(),
            Threshold::parse("error_rate", "< 0.001").unwrap(),
        ];
        RunSummary {
            run_id: 42,
            scenario: "shop".into(),
            kind: "http".into(),
            target: "http://127.0.0.1:8080".into(),
            load: "closed: 50 users, spawn 10/s".into(),
            started_unix_ms: START_MS,
            stopped_unix_ms: START_MS + 60_000,
            ended_unix_ms: START_MS + 60_000,
            stop_reason: "duration reached".into(),
            thresholds: evaluate(&thresholds, &total, duration),
            stats: vec![items, bulk, health],
            total,
            failures: vec![
                FailureRow {
                    kind: "GET".into(),
                    name: "/api/items".into(),
                    error: "timeout".into(),
                    occurrences: 2,
                },
                FailureRow {
                    kind: "POST".into(),
                    name: "/api/items, bulk \"v2\"".into(),
                    error: "HTTP 503".into(),
                    occurrences: 5,
                },
            ],
            history: vec![
                HistoryRow {
                    unix_s: 1_700_000_001,
                    users: 10,
                    entries: vec![history_entry("", AGGREGATED, 0)],
                },
                HistoryRow {
                    unix_s: 1_700_000_002,
                    users: 20,
                    entries: vec![
                        history_entry("GET", "/api/items", 7),
                        history_entry("", AGGREGATED, 7),
                    ],
                },
            ],
            workers: vec![
                WorkerSummary {
                    id: 1,
                    name: "host-a:101".into(),
                    addr: "10.0.0.1:5000".into(),
                    requests: 900,
                    failures: 4,
                    state: WorkerState::Finished,
                    lost_at_s: None,
                    first_sends_ms: Some((0.25, 1.75)),
                    mean_ms: 12.5,
                    gauges: BTreeMap::from([("host_cpu_percent".into(), 41.5)]),
                },
                WorkerSummary {
                    id: 2,
                    name: "host-b:202".into(),
                    addr: "10.0.0.2:5000".into(),
                    requests: 300,
                    failures: 3,
                    state: WorkerState::Lost,
                    lost_at_s: Some(12.5),
                    first_sends_ms: Some((-0.5, 0.75)),
                    mean_ms: 0.0,
                    gauges: BTreeMap::new(),
                },
            ],
            schedule_lag: Some(lag),
            events: vec![
                "worker host-b:202 lost at 12.5s; its 25 users moved to host-a:101".into(),
            ],
            tls: None,
        }
    }

    /// Connections of `s`: `new` of them timed at `connect_us` (and `tls_us` on TLS), the rest
    /// of its requests reused one.
    fn with_connections(s: &mut NameStats, new: u64, connect_us: &[u64], tls_us: &[u64]) {
        s.counters.insert(CONNECTIONS_NEW.into(), new);
        s.counters
            .insert(CONNECTIONS_REUSED.into(), s.requests - new);
        for (name, values) in [(CONNECT, connect_us), (TLS_HANDSHAKE, tls_us)] {
            if values.is_empty() {
                continue;
            }
            let h = s.metrics.entry(name.into()).or_insert_with(new_histogram);
            for &us in values {
                record_clamped(h, us);
            }
        }
    }

    /// The fixture as an `https://` run: `/api/items` opened 40 connections (connect 80 µs,
    /// handshake 1.2 ms, the slowest 300 µs and 3.4 ms), the bulk name reused them all, and
    /// `/health` had no request.
    fn https_fixture() -> RunSummary {
        let mut summary = fixture();
        let connect: Vec<u64> = (0..40).map(|i| if i < 38 { 80 } else { 300 }).collect();
        let tls: Vec<u64> = (0..40)
            .map(|i| if i < 38 { 1_200 } else { 3_400 })
            .collect();
        with_connections(&mut summary.stats[0], 40, &connect, &tls);
        with_connections(&mut summary.stats[1], 0, &[], &[]);
        with_connections(&mut summary.total, 40, &connect, &tls);
        summary.target = "https://127.0.0.1:8443".into();
        summary.tls = Some(TlsSummary {
            insecure: true,
            server_name: Some("api.example".into()),
            ca: false,
            client_cert: true,
        });
        summary
    }

    fn validator() -> jsonschema::Validator {
        let schema: Value = serde_json::from_str(SCHEMA).unwrap();
        jsonschema::meta::validate(&schema).unwrap();
        jsonschema::validator_for(&schema).unwrap()
    }

    /// Split one CSV line (no embedded line breaks) into fields, undoing RFC 4180 quoting.
    fn parse_csv_line(line: &str) -> Vec<String> {
        let (mut fields, mut field, mut quoted, mut chars) =
            (Vec::new(), String::new(), false, line.chars().peekable());
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                ('"', _) => quoted = !quoted,
                (',', false) => fields.push(std::mem::take(&mut field)),
                (c, _) => field.push(c),
            }
        }
        fields.push(field);
        fields
    }

    fn base64_decode(s: &str) -> Vec<u8> {
        let value = |c: u8| match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        };
        let mut out = Vec::new();
        for chunk in s.as_bytes().chunks(4) {
            let digits: Vec<u8> = chunk
                .iter()
                .filter(|&&c| c != b'=')
                .map(|&c| value(c))
                .collect();
            let n = digits
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &d)| n | u32::from(d) << (18 - 6 * i));
            out.extend((0..digits.len() - 1).map(|i| (n >> (16 - 8 * i)) as u8));
        }
        out
    }

    #[test]
    fn summary_json_validates_against_the_schema() {
        let summary = fixture();
        let doc = summary_json(&summary);
        let validator = validator();
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");

        assert_eq!(doc["schema_version"], 1);
        assert_eq!(doc["started_at"], "2023-11-14T22:13:20.250Z");
        assert_eq!(doc["completed_at"], "2023-11-14T22:14:20.250Z");
        assert_eq!(doc["duration_s"], 60.0);
        assert_eq!(doc["status"], "completed");
        let metrics = &doc["metrics"];
        assert_eq!(metrics["total_requests"], 1200);
        assert_eq!(metrics["total_bytes"], 1200 * 512);
        assert_eq!(metrics["throughput"]["requests_per_second"], 20.0);
        assert_eq!(metrics["error_rate"], 7.0 / 1200.0);
        assert_eq!(metrics["latency"]["p99_ms"], summary.total.latency_ms(0.99));
        assert_eq!(metrics["latency"]["min_ms"], 1.0);
        assert_eq!(doc["requests"].as_array().unwrap().len(), 3);
        assert_eq!(doc["requests"][0]["metrics"]["ttft"]["count"], 3);
        let ttft_max = doc["requests"][0]["metrics"]["ttft"]["max"]
            .as_f64()
            .unwrap();
        assert!(
            (ttft_max - 5.0).abs() < 0.01,
            "5000 µs is about 5 ms, got {ttft_max}"
        );
        assert_eq!(doc["requests"][0]["counters"]["tokens"], 4200);
        assert_eq!(doc["requests"][1]["failures_by_kind"]["HTTP 503"], 5);
        assert_eq!(doc["total"]["name"], AGGREGATED);
        assert_eq!(
            doc["total"]["failures_by_kind"],
            json!({"HTTP 503": 5, "timeout": 2})
        );
        assert_eq!(doc["workers"][0]["lost_at_s"], Value::Null);
        assert_eq!(doc["workers"][1]["lost_at_s"], 12.5);
        assert_eq!(doc["schedule_lag_ms"]["max"], 1.0);
        assert_eq!(doc["thresholds"][0]["passed"], true);
        assert_eq!(doc["thresholds"][1]["threshold"], "error_rate < 0.001");
        assert_eq!(doc["passed"], false);

        assert_eq!(doc["kind"], "http");
        assert_eq!(doc["workers"][1]["first_request_ms"], -0.5);
        assert_eq!(doc["start_spread_ms"], 2.25, "from -0.5 ms to 1.75 ms");
        assert_eq!(metrics["ttfb_ms"], Value::Null, "no download figures");
        assert_eq!(metrics["per_client_throughput"], Value::Null);
        assert_eq!(
            metrics["throughput"]["megabytes_per_second"],
            1200.0 * 512.0 / 60.0 / MEGABYTE
        );

        let closed = RunSummary {
            schedule_lag: None,
            thresholds: vec![],
            ..fixture()
        };
        let doc = summary_json(&closed);
        assert!(validator.is_valid(&doc));
        assert_eq!(doc["schedule_lag_ms"], Value::Null);
        assert_eq!(doc["passed"], true);
        assert_eq!(doc["connections"], Value::Null, "no connection counters");
        assert_eq!(doc["requests"][0]["connections"], Value::Null);
        assert_eq!(doc["tls"], Value::Null, "plain http://");
    }

    /// An `https://` run: the `connections` blocks (top level, per name, total) with connect
    /// and handshake figures in ms, and the `tls` block recording `insecure`.
    #[test]
    fn summary_json_has_connections_and_tls() {
        let summary = https_fixture();
        let doc = summary_json(&summary);
        let errors: Vec<String> = validator()
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");

        let c = &doc["connections"];
        assert_eq!(c["new"], 40);
        assert_eq!(c["reused"], 1200 - 40);
        assert_eq!(c["connect_ms"]["count"], 40);
        let ms = |v: &Value| v.as_f64().unwrap();
        assert!((ms(&c["connect_ms"]["p50"]) - 0.08).abs() < 0.001, "{c:#}");
        assert!((ms(&c["connect_ms"]["max"]) - 0.3).abs() < 0.001, "{c:#}");
        assert!(
            (ms(&c["tls_handshake_ms"]["p50"]) - 1.2).abs() < 0.01,
            "{c:#}"
        );
        assert!(
            (ms(&c["tls_handshake_ms"]["p99"]) - 3.4).abs() < 0.01,
            "{c:#}"
        );
        assert_eq!(doc["total"]["connections"], *c);

        let items = &doc["requests"][0]["connections"];
        assert_eq!((&items["new"], &items["reused"]), (&json!(40), &json!(960)));
        // Reusing only: counts, a connect of count 0, and still a handshake block (TLS run).
        let bulk = &doc["requests"][1]["connections"];
        assert_eq!((&bulk["new"], &bulk["reused"]), (&json!(0), &json!(200)));
        assert_eq!(bulk["connect_ms"]["count"], 0);
        assert_eq!(bulk["tls_handshake_ms"]["count"], 0);
        assert_eq!(doc["requests"][2]["connections"], Value::Null);

        assert_eq!(
            doc["tls"],
            json!({"insecure": true, "server_name": "api.example", "ca": false, "client_cert": true})
        );

        // On plain http:// the handshake is null, the rest stays.
        let mut plain = https_fixture();
        plain.tls = None;
        for s in plain.stats.iter_mut().chain([&mut plain.total]) {
            s.metrics.remove(TLS_HANDSHAKE);
        }
        let doc = summary_json(&plain);
        assert!(validator().is_valid(&doc), "{doc:#}");
        assert_eq!(doc["connections"]["tls_handshake_ms"], Value::Null);
        assert_eq!(doc["connections"]["connect_ms"]["count"], 40);
        assert_eq!(doc["tls"], Value::Null);
    }

    #[test]
    fn schema_refuses_a_tls_block_without_insecure() {
        let mut doc = summary_json(&https_fixture());
        doc["tls"].as_object_mut().unwrap().remove("insecure");
        assert!(!validator().is_valid(&doc));
        let mut doc = summary_json(&https_fixture());
        doc["connections"]["opened"] = json!(1);
        assert!(!validator().is_valid(&doc));
    }

    #[test]
    fn table_has_a_connections_line() {
        let out = table(&https_fixture());
        let line = out
            .lines()
            .find(|l| l.starts_with("connections:"))
            .unwrap_or_else(|| panic!("no connections line:\n{out}"));
        assert_eq!(
            line,
            "connections: 40 new, 1,160 reused; connect p50 0.08 ms, p99 0.3 ms; \
             TLS handshake p50 1.2 ms, p99 3.4 ms"
        );
        // Under the stats table: after the aggregate row, before the failures.
        let agg = out.find(AGGREGATED).unwrap();
        let at = out.find("connections:").unwrap();
        assert!(agg < at && at < out.find("Failures").unwrap(), "{out}");

        let mut plain = https_fixture();
        plain.tls = None;
        plain.total.metrics.remove(TLS_HANDSHAKE);
        let out = table(&plain);
        assert!(
            out.contains("connections: 40 new, 1,160 reused; connect p50 0.08 ms, p99 0.3 ms\n"),
            "{out}"
        );
        assert!(!out.contains("TLS"), "{out}");
        assert!(
            !table(&fixture()).contains("connections:"),
            "no counters, no line"
        );

        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(99_950), "99,950");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(short_ms(0.08), "0.08");
        assert_eq!(short_ms(0.3), "0.3");
        assert_eq!(short_ms(250.0), "250");
        assert_eq!(short_ms(1234.0), "1234");
    }

    /// A download run: the seed's figures (its own example numbers: 100 × 24,834,009 bytes in
    /// 63.197 s is 37.48 MB/s), TTFB and per-client throughput in summary.json and the table.
    #[test]
    fn download_figures_follow_the_seed() {
        let mut total = NameStats::new("", AGGREGATED);
        total.requests = 100;
        total.bytes = 2_483_400_900;
        let (mut ttfb, mut tp) = (new_histogram(), new_histogram());
        for i in 0..100u64 {
            record_clamped(&mut total.latency, 12_706_160 + i * 500_000);
            record_clamped(&mut ttfb, 2_000 + i * 10);
            record_clamped(&mut tp, 390 + i);
        }
        total.metrics.insert(TTFB.into(), ttfb);
        total.metrics.insert(CLIENT_THROUGHPUT.into(), tp);
        let summary = RunSummary {
            kind: "download".into(),
            started_unix_ms: START_MS,
            stopped_unix_ms: START_MS + 60_000,
            ended_unix_ms: START_MS + 63_197,
            stats: vec![],
            failures: vec![],
            thresholds: vec![],
            total,
            ..fixture()
        };
        let doc = summary_json(&summary);
        assert!(validator().is_valid(&doc), "{doc:#}");
        let m = &doc["metrics"];
        let mbps = m["throughput"]["megabytes_per_second"].as_f64().unwrap();
        assert_eq!(format!("{mbps:.2}"), "37.48");
        assert_eq!(m["total_bytes"], 2_483_400_900u64);
        assert_eq!(m["ttfb_ms"]["count"], 100);
        assert!((m["ttfb_ms"]["p50"].as_f64().unwrap() - 2.5).abs() < 0.01);
        assert_eq!(
            m["per_client_throughput"]["min_bytes_per_second"],
            390_000.0
        );
        let table = table(&summary);
        for needle in [
            "Downloads",
            "MB/s",
            "bytes/s",
            "requests/s",
            "median",
            "p99",
            "TTFB",
            "per client",
            "2483400900 bytes",
            "within 2.25 ms across 2 worker(s)",
        ] {
            assert!(table.contains(needle), "{needle} missing:\n{table}");
        }
        assert!(!super::table(&fixture()).contains("Downloads"));
    }

    #[test]
    fn schema_rejects_incomplete_or_unknown_fields() {
        let validator = validator();
        let mut doc = summary_json(&fixture());
        doc["metrics"]["latency"]
            .as_object_mut()
            .unwrap()
            .remove("p99_ms");
        assert!(!validator.is_valid(&doc));
        let error = validator.iter_errors(&doc).next().unwrap();
        assert!(error.to_string().contains("p99_ms"), "{error}");

        let mut doc = summary_json(&fixture());
        doc["metrics"]["latency_p42"] = json!(1.0);
        assert!(!validator.is_valid(&doc));
        let mut doc = summary_json(&fixture());
        doc["extra"] = json!(true);
        assert!(!validator.is_valid(&doc));
    }

    #[test]
    fn write_creates_locust_compatible_files() {
        let summary = fixture();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("out");
        let paths = write(&dir, &summary).unwrap();
        let names: Vec<_> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "summary.json",
                "stats.csv",
                "stats_history.csv",
                "failures.csv"
            ]
        );

        let json = fs::read_to_string(&paths[0]).unwrap();
        assert_eq!(
            json,
            serde_json::to_string_pretty(&summary_json(&summary)).unwrap() + "\n"
        );

        let stats = fs::read_to_string(&paths[1]).unwrap();
        assert!(stats.ends_with("\r\n"));
        let lines: Vec<&str> = stats.lines().collect();
        assert_eq!(
            lines[0],
            "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,\
             Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,\
             99.99%,100%"
        );
        assert_eq!(lines.len(), 1 + 3 + 1);
        let rows: Vec<Vec<String>> = lines[1..].iter().map(|l| parse_csv_line(l)).collect();
        assert_eq!(rows[0][..2], ["GET", "/api/items"]);
        assert_eq!(rows[1][1], "/api/items, bulk \"v2\"");
        assert_eq!(rows[2][1], "/health");
        assert_eq!(rows[2][11..], ["N/A"; 11]);

        let agg = &rows[3];
        let total = &summary.total;
        assert_eq!(agg.len(), 22);
        assert_eq!(agg[..4], ["", AGGREGATED, "1200", "7"]);
        let ms = |q: f64| {
            ((total.latency.value_at_quantile(q) as f64) / 1000.0)
                .round()
                .to_string()
        };
        assert_eq!(agg[4], ms(0.5));
        assert_eq!(agg[5].parse::<f64>().unwrap(), total.mean_ms());
        assert_eq!(agg[6], "1.0");
        assert_eq!(
            agg[7].parse::<f64>().unwrap(),
            total.latency.max() as f64 / 1000.0
        );
        assert_eq!(agg[8], "512.0");
        assert_eq!(agg[9], "20.0");
        let percentiles: Vec<String> = LOCUST_PERCENTILES.iter().map(|&q| ms(q)).collect();
        assert_eq!(agg[11..], percentiles[..]);
        assert_eq!(agg[11], "400");
        assert_eq!(agg[18], "988");

        let history = fs::read_to_string(&paths[2]).unwrap();
        let lines: Vec<&str> = history.lines().collect();
        assert_eq!(
            lines[0],
            "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,\
             Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,\
             Total Min Response Time,Total Max Response Time,Total Average Content Size"
        );
        assert_eq!(lines.len(), 1 + 3);
        assert_eq!(
            lines[1],
            "1700000001,10,,Aggregated,0.000000,0.500000,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,0,1,13,15.2505,1.5,70.0,0"
        );
        assert_eq!(
            lines[2],
            "1700000002,20,GET,/api/items,7.000000,0.500000,12,13,14,15,20,25,30,40,50,60,70,7,1,13,15.2505,1.5,70.0,512.0"
        );

        let failures = fs::read_to_string(&paths[3]).unwrap();
        let lines: Vec<&str> = failures.lines().collect();
        assert_eq!(lines[0], "Method,Name,Error,Occurrences");
        assert_eq!(lines[1], "GET,/api/items,timeout,2");
        assert_eq!(lines[2], "POST,\"/api/items, bulk \"\"v2\"\"\",HTTP 503,5");
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let mut out = String::new();
        let row = ["plain", "a,b", "say \"hi\"", "two\nlines", ""].map(String::from);
        csv_row(&mut out, &row);
        assert_eq!(out, "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n");
        assert_eq!(
            parse_csv_line("plain,\"a,b\",\"say \"\"hi\"\"\""),
            ["plain", "a,b", "say \"hi\""]
        );
    }

    #[test]
    fn hlog_round_trips_through_hdrhistogram_parsers() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("latency.hlog");
        let first = name_stats("GET", "/a", 1, 500, 0).latency;
        let second = name_stats("POST", "/b", 20, 3_000, 0).latency;
        let mut log = HlogWriter::create(&path, START_MS).unwrap();
        log.interval(None, 0.0, 1.0, &first).unwrap();
        log.interval(Some("POST /items, bulk"), 1.0, 1.0, &second)
            .unwrap();
        log.interval(None, 1.0, 1.0, &new_histogram()).unwrap();
        log.finish().unwrap();

        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!("#[Logged with stampede {}]", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(lines[1], "#[Histogram log format version 1.3]");
        assert_eq!(
            lines[2],
            "#[StartTime: 1700000000.250 (seconds since epoch), Tue Nov 14 22:13:20 UTC 2023]"
        );
        assert_eq!(
            lines[3],
            "#[BaseTime: 1700000000.250 (seconds since epoch)]"
        );
        assert_eq!(
            lines[4],
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
        );
        assert!(lines[5].starts_with(&format!(
            "0.000,1.000,{:.3},HISTF",
            first.max() as f64 / 1000.0
        )));
        let tagged = format!(
            "Tag=POST_/items__bulk,1.000,1.000,{:.3},HISTF",
            second.max() as f64 / 1000.0
        );
        assert!(lines[6].starts_with(&tagged), "{}", lines[6]);
        assert!(lines[7].starts_with("1.000,1.000,0.000,"));

        let entries: Vec<LogEntry> = IntervalLogIterator::new(text.as_bytes())
            .map(Result::unwrap)
            .collect();
        assert_eq!(entries.len(), 2 + 3);
        assert!(
            matches!(entries[0], LogEntry::StartTime(d) if d.as_millis() == u128::from(START_MS))
        );
        assert!(
            matches!(entries[1], LogEntry::BaseTime(d) if d.as_millis() == u128::from(START_MS))
        );
        let intervals: Vec<_> = entries[2..]
            .iter()
            .map(|e| match e {
                LogEntry::Interval(h) => h,
                _ => panic!("expected an interval"),
            })
            .collect();
        assert_eq!(intervals[0].tag(), None);
        assert_eq!(intervals[1].tag().unwrap().as_str(), "POST_/items__bulk");
        assert_eq!(intervals[1].start_timestamp().as_secs(), 1);
        assert_eq!(intervals[1].duration().as_secs(), 1);
        for (interval, written) in intervals.iter().zip([&first, &second, &new_histogram()]) {
            let bytes = base64_decode(interval.encoded_histogram());
            let decoded: Histogram<u64> = Deserializer::new().deserialize(&mut &bytes[..]).unwrap();
            assert_eq!(decoded.len(), written.len());
            assert_eq!(decoded.max(), written.max());
            assert_eq!(
                decoded.value_at_quantile(0.99),
                written.value_at_quantile(0.99)
            );
            assert_eq!(interval.max(), written.max() as f64 / 1000.0);
        }
    }

    #[test]
    fn evaluate_checks_every_figure() {
        // 1..=1000 ms, 10 failures, over 10 s.
        let total = name_stats("", AGGREGATED, 1, 1000, 10);
        let cases = [
            ("p99_ms", "< 1000", true),
            ("p99_ms", "< 900", false),
            ("p50_ms", "<= 500.5", true),
            ("error_rate", "<= 0.01", true),
            ("error_rate", "< 0.01", false),
            ("rps", ">= 100", true),
            ("rps", "> 100", false),
            ("failures", "< 11", true),
            ("failures", "< 10", false),
            ("mean_ms", "< 501", true),
            ("mean_ms", "< 400", false),
            ("max_ms", "<= 1000.5", true),
            ("max_ms", "< 999", false),
        ];
        let thresholds: Vec<Threshold> = cases
            .iter()
            .map(|(k, e, _)| Threshold::parse(k, e).unwrap())
            .collect();
        let outcomes = evaluate(&thresholds, &total, 10.0);
        for ((key, expr, passed), outcome) in cases.iter().zip(&outcomes) {
            assert_eq!(
                outcome.passed, *passed,
                "{key} {expr}: actual {}",
                outcome.actual
            );
        }
        assert_eq!(outcomes[0].threshold, "p99_ms < 1000");
        assert_eq!(outcomes[0].actual, total.latency_ms(0.99));
        assert_eq!(outcomes[3].actual, 0.01);
        assert_eq!(outcomes[5].actual, 100.0);
        assert_eq!(outcomes[7].actual, 10.0);
        assert!(
            (outcomes[9].actual - 500.5).abs() < 0.5,
            "{}",
            outcomes[9].actual
        );
    }

    #[test]
    fn table_shows_rows_failures_verdicts_and_events() {
        let summary = fixture();
        let out = table(&summary);
        for needle in [
            "/api/items",
            "/health",
            AGGREGATED,
            "# reqs",
            "p99.9",
            "timeout",
            "HTTP 503",
            "Events",
        ] {
            assert!(out.contains(needle), "missing {needle}:\n{out}");
        }
        let p99 = fmt_ms(summary.total.latency_ms(0.99));
        let agg = out
            .lines()
            .find(|l| l.trim_start().starts_with(AGGREGATED))
            .unwrap();
        assert!(agg.contains(&p99), "{agg} lacks {p99}");
        assert!(agg.contains("1200") && agg.contains("7 (0.58%)"), "{agg}");
        assert!(out.contains("Thresholds: FAIL"));
        assert!(out.contains("  ✓ p99_ms < 2000"), "{out}");
        assert!(
            out.contains("  ✗ error_rate < 0.001  actual 0.0058"),
            "{out}"
        );
        // Columns line up: the header and every row put `# reqs` right-aligned at the same end.
        let header = out.lines().find(|l| l.starts_with("Type")).unwrap();
        let end = header.find("# reqs").unwrap() + "# reqs".len();
        let health = out.lines().find(|l| l.contains("/health")).unwrap();
        assert_eq!(health.chars().nth(end - 1), Some('0'), "{out}");

        let long = "x".repeat(100);
        assert_eq!(truncate(&long, 10).chars().count(), 10);
        assert!(truncate(&long, 10).ends_with('…'));
        assert_eq!(truncate("short", 10), "short");
    }

    /// The `llm` block's E2E counts the successes only (a fast HTTP 500 must not pull it
    /// down); what nothing measured (TTFT, TPOT, ITL of answers read whole) is null in the
    /// JSON and `-` in the table, which shows the seed's time per output token instead.
    #[test]
    fn llm_block_counts_successes_and_leaves_unmeasured_figures_null() {
        let mut total = NameStats::new("", AGGREGATED);
        let (mut e2e, mut per_token) = (new_histogram(), new_histogram());
        for _ in 0..3 {
            record_clamped(&mut total.latency, 200_000);
            record_clamped(&mut e2e, 200_000);
            record_clamped(&mut per_token, 20_000);
        }
        // Two failures, answered in 0.2 ms: in the latency, not in the llm block's E2E.
        for _ in 0..2 {
            record_clamped(&mut total.latency, 200);
        }
        (total.requests, total.failures) = (5, 2);
        total.metrics.insert("e2e".into(), e2e);
        total
            .metrics
            .insert("latency_per_output_token".into(), per_token);
        total.counters.insert("output_tokens".into(), 30);
        total.counters.insert("counted_by_words".into(), 3);

        let mut summary = fixture();
        summary.total = total.clone();
        let doc = summary_json(&summary);
        let errors: Vec<String> = validator()
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
        let v = &doc["llm"];
        assert_eq!(v["e2e_ms"]["count"], 3, "{v:#}");
        let min = v["e2e_ms"]["min"].as_f64().unwrap();
        assert!((199.0..=201.0).contains(&min), "E2E min {min} ms");
        let per_token = v["latency_per_output_token_ms"]["p50"].as_f64().unwrap();
        assert!((19.9..=20.1).contains(&per_token), "{per_token}");
        for key in ["ttft_ms", "tpot_ms", "itl_ms"] {
            assert_eq!(v[key]["count"], 0, "{key}");
            for f in ["p50", "p90", "p99", "mean", "min", "max"] {
                assert!(v[key][f].is_null(), "{key}.{f} = {}", v[key][f]);
            }
        }
        let table = llm_section(&total, 1.0);
        let ttft = table.lines().find(|l| l.trim_start().starts_with("TTFT"));
        assert_eq!(
            ttft.map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>()),
            Some(vec!["-"; 4]),
            "{table}"
        );
        assert!(
            table.contains("time per output token (E2E ÷ tokens) p50 20.0"),
            "{table}"
        );
    }

    #[test]
    fn time_and_encoding_helpers() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_007), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(java_date(951_782_400_000), "Tue Feb 29 00:00:00 UTC 2000");
        for (raw, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = String::new();
            base64_encode(raw.as_bytes(), &mut out);
            assert_eq!(out, encoded);
            assert_eq!(base64_decode(&out), raw.as_bytes());
        }
        assert_eq!(py_float(20.0), "20.0");
        assert_eq!(py_float(15.2505), "15.2505");
        assert_eq!(hlog_tag("a b,c\td"), "a_b_c_d");
        assert_eq!(hlog_tag(""), "_");
    }
}
