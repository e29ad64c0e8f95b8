//! The `summary.json` document of a finished run, as a [`Value`]: the run, its figures per
//! request name and in total, workers, failures, thresholds, and the blocks of drivers that
//! recorded them (`llm`, `connections`, the download `metrics`).
//!
//! `results::write` serializes it; the API serves it. It only formats a [`RunSummary`].

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde_json::{Map, Value, json};
use stampede_scenarios::kinds;
use stampede_scenarios::report::{
    MEGABYTE, Place, RunContext, max_ms, metric_json, min_ms, per_second, quantile_ms,
};

use super::dates::rfc3339;
use crate::summary::{
    AGGREGATED, FailureRow, NameStats, RunSummary, ThresholdOutcome, TlsSummary, WorkerSummary,
};

/// The layout version of `summary.json`; bump it on any incompatible change.
pub const SCHEMA_VERSION: u64 = 1;

/// The `summary.json` document as a [`Value`] ([`super::write()`] serializes this, pretty).
///
/// Times are ms (the histograms hold µs), rates are per second of [`RunSummary::duration_s`].
/// The blocks of driver reports ([`kinds::reports`]) are keys of their own, `null` for a run
/// without their figures.
pub fn summary_json(summary: &RunSummary) -> Value {
    let run = context(summary);
    let requests: Vec<Value> = summary
        .stats
        .iter()
        .map(|s| request_json(s, &run, &summary.failures))
        .collect();
    let mut doc = json!({
        "schema_version": SCHEMA_VERSION,
        "run_id": summary.run_id,
        "scenario": summary.scenario,
        "kind": summary.kind,
        "target": summary.target,
        "load": summary.load,
        "started_at": rfc3339(summary.started_unix_ms),
        "completed_at": rfc3339(summary.ended_unix_ms),
        "duration_s": run.duration_s,
        "stop_reason": summary.stop_reason,
        "status": summary.status(),
        "metrics": metrics_json(&summary.total, &run),
        "requests": requests,
        "total": request_json(&summary.total, &run, &summary.failures),
        "workers": summary.workers.iter().map(worker_json).collect::<Vec<_>>(),
        "failures": summary.failures.iter().map(failure_json).collect::<Vec<_>>(),
        "schedule_lag_ms": summary.schedule_lag.as_ref().map(lag_json),
        "start_spread_ms": summary.start_spread_ms(),
        "thresholds": summary.thresholds.iter().map(threshold_json).collect::<Vec<_>>(),
        "passed": summary.passed(),
        "events": summary.events,
        "tls": summary.tls.as_ref().map(tls_json),
    });
    add_blocks(&mut doc, Place::Top, &summary.total, &run);
    doc
}

/// What driver reports know of `summary`'s run besides one name's figures.
pub fn context(summary: &RunSummary) -> RunContext {
    RunContext {
        duration_s: summary.duration_s(),
        tls: summary.tls.is_some(),
        start_spread_ms: summary.start_spread_ms(),
        workers_started: summary
            .workers
            .iter()
            .filter(|w| w.first_sends_ms.is_some())
            .count(),
    }
}

/// Add to the object `doc` the keys every driver report puts at `place`, from `s`.
fn add_blocks(doc: &mut Value, place: Place, s: &NameStats, run: &RunContext) {
    let figures = s.figures();
    for block in kinds::reports()
        .iter()
        .flat_map(|r| r.json)
        .filter(|b| b.place == place)
    {
        doc[block.key] = (block.build)(&figures, run);
    }
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

/// The ACME performance track's `metrics` block, from the aggregate, with the keys driver
/// reports put there (time to first byte and per-client throughput of a `download` run).
pub fn metrics_json(total: &NameStats, run: &RunContext) -> Value {
    let duration = run.duration_s;
    let bytes_per_second = per_second(total.bytes, duration);
    let mut block = json!({
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
    });
    add_blocks(&mut block, Place::Metrics, total, run);
    block
}

/// One entry of `requests` (or `total`, whose failures are those of every name).
pub(super) fn request_json(s: &NameStats, run: &RunContext, failures: &[FailureRow]) -> Value {
    let duration = run.duration_s;
    let metrics: Map<String, Value> = s
        .metrics
        .iter()
        .map(|(name, h)| (name.clone(), metric_json(h)))
        .collect();
    let mut entry = json!({
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
    });
    add_blocks(&mut entry, Place::PerRequest, s, run);
    entry
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
    use stampede_scenarios::llm::report::llm_section;

    use crate::results::table::table;
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
            s.metrics.remove("tls_handshake");
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
    /// 100 × 24,834,009 bytes in 63.197 s is 37.48 MB/s), "ttfb" and per-client throughput in
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
        total.metrics.insert("ttfb".into(), ttfb);
        total.metrics.insert("client_throughput".into(), tp);
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
        let run = RunContext {
            duration_s: 1.0,
            tls: false,
            start_spread_ms: None,
            workers_started: 0,
        };
        let table = llm_section(&total.figures(), &run);
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
