//! The `summary.json` document of a finished run, as a [`Value`]: the run, its figures per
//! request name and in total, workers, failures, thresholds, and the blocks of drivers that
//! recorded them (`llm`, `connections`, the download `metrics`).
//!
//! [`super::write`] serializes it; the API serves it. It only formats a [`RunSummary`].

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};

use super::dates::rfc3339;
use super::{max_ms, min_ms, per_second, quantile_ms};
use crate::summary::{
    AGGREGATED, CONNECT, CONNECTIONS_NEW, CONNECTIONS_REUSED, FailureRow, NameStats, RunSummary,
    TLS_HANDSHAKE, ThresholdOutcome, TlsSummary, WorkerSummary,
};

/// The layout version of `summary.json`; bump it on any incompatible change.
pub const SCHEMA_VERSION: u64 = 1;

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
pub(super) fn connections_json(s: &NameStats, tls: bool) -> Value {
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
pub(super) fn tls_json(t: &TlsSummary) -> Value {
    json!({
        "insecure": t.insecure,
        "server_name": t.server_name,
        "ca": t.ca,
        "client_cert": t.client_cert,
    })
}

/// Token-counting methods, as `counted_by_<method>` counters of the `llm` driver.
pub(super) const COUNT_METHODS: [&str; 4] = ["usage", "tokenizer", "chunks", "words"];

/// The `llm` block: streaming figures and tokens of an `llm` run; `null` for other kinds.
pub(super) fn llm_json(total: &NameStats, duration: f64) -> Value {
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
pub(super) fn token_count_method(total: &NameStats) -> &'static str {
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

/// Bytes in the ACME performance track's MB (its 37.48 MB/s are 39,296,263.99 bytes/s ÷ 2^20).
pub const MEGABYTE: f64 = 1_048_576.0;

/// The ACME performance track's `metrics` block, from the aggregate, with time to first byte
/// and per-client throughput when the driver recorded them (`download`).
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

/// One entry of `requests` (or `total`, whose failures are those of every name).
/// `tls`: the run's target is `https://` (see [`connections_json`]).
pub(super) fn request_json(
    s: &NameStats,
    duration: f64,
    failures: &[FailureRow],
    tls: bool,
) -> Value {
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
pub(super) fn failures_by_kind(s: &NameStats, failures: &[FailureRow]) -> BTreeMap<String, u64> {
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
pub(super) fn metric_json(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "mean": if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
        "p50": quantile_ms(h, 0.50),
        "p90": quantile_ms(h, 0.90),
        "p99": quantile_ms(h, 0.99),
        "max": max_ms(h),
    })
}

pub(super) fn lag_json(h: &Histogram<u64>) -> Value {
    json!({
        "p50": quantile_ms(h, 0.50),
        "p99": quantile_ms(h, 0.99),
        "p999": quantile_ms(h, 0.999),
        "max": max_ms(h),
    })
}

pub(super) fn worker_json(w: &WorkerSummary) -> Value {
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

pub(super) fn failure_json(f: &FailureRow) -> Value {
    json!({ "method": f.kind, "name": f.name, "error": f.error, "occurrences": f.occurrences })
}

pub(super) fn threshold_json(t: &ThresholdOutcome) -> Value {
    json!({ "threshold": t.threshold, "actual": t.actual, "passed": t.passed })
}

#[cfg(test)]
mod tests {
    use stampede_scenarios::recorder::{new_histogram, record_clamped};

    use super::*;
    use crate::results::table::{llm_section, table};
    use crate::results::testdata::*;

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
        // One of the fixture's two workers was lost: the run is degraded.
        assert_eq!(doc["status"], "degraded");
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
        // No threshold, but a lost worker: degraded, which passes only when tolerated.
        assert_eq!(doc["passed"], false);
        let tolerated = summary_json(&RunSummary {
            tolerate_worker_loss: true,
            ..closed.clone()
        });
        assert_eq!(tolerated["passed"], true);
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

    /// A download run: the ACME performance track's figures (its own example numbers:
    /// 100 × 24,834,009 bytes in 63.197 s is 37.48 MB/s), TTFB and per-client throughput in
    /// summary.json and the table.
    #[test]
    fn download_figures_follow_the_acme_performance_track() {
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
        assert!(!crate::results::table(&fixture()).contains("Downloads"));
    }

    /// The `llm` block's E2E counts the successes only (a fast HTTP 500 must not pull it
    /// down); what nothing measured (TTFT, TPOT, ITL of answers read whole) is null in the
    /// JSON and `-` in the table, which shows the time per output token of ig-wva's
    /// Performance Profile Generator instead.
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
}
