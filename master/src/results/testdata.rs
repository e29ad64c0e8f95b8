//! Fixtures for the tests of the result files: a realistic run, the same run over `https://`,
//! and helpers to build figures and read CSV lines back.

use std::collections::BTreeMap;

use serde_json::Value;
use stampede_scenarios::Threshold;
use stampede_scenarios::recorder::{new_histogram, record_clamped};

use super::thresholds::evaluate;
use crate::state::{RunEnd, WorkerState};
use crate::summary::{
    AGGREGATED, FailureRow, HistoryEntry, HistoryRow, NameStats, RunSummary, TlsSummary,
    WorkerSummary,
};

pub(super) const SCHEMA: &str = include_str!("../../schema/summary.schema.json");
pub(super) const START_MS: u64 = 1_700_000_000_250;

/// Stats for a name with latencies `from..=to` ms (one request each), `failures` of them failed.
pub(super) fn name_stats(kind: &str, name: &str, from: u64, to: u64, failures: u64) -> NameStats {
    let mut s = NameStats::new(kind, name);
    for ms in from..=to {
        record_clamped(&mut s.latency, ms * 1000);
    }
    s.requests = to - from + 1;
    s.failures = failures;
    s.bytes = s.requests * 512;
    s
}

pub(super) fn add(total: &mut NameStats, s: &NameStats) {
    total.requests += s.requests;
    total.failures += s.failures;
    total.bytes += s.bytes;
    total.latency.add(&s.latency).unwrap();
}

pub(super) fn history_entry(kind: &str, name: &str, total_requests: u64) -> HistoryEntry {
    HistoryEntry {
        kind: kind.into(),
        name: name.into(),
        rps: total_requests as f64,
        fps: 0.5,
        percentiles_us: [
            12_400, 13_000, 14_000, 15_000, 20_000, 25_000, 30_000, 40_000, 50_000, 60_000, 70_000,
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
pub(super) fn fixture() -> RunSummary {
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
        stop_reason: RunEnd::DurationReached,
        tolerate_worker_loss: false,
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
        events: vec!["worker host-b:202 lost at 12.5s; its 25 users moved to host-a:101".into()],
        tls: None,
        specs: stampede_scenarios::Kind::Http.specs(),
    }
}

/// Connections of `s`: `new` of them timed at `connect_us` (and `tls_us` on TLS), the rest
/// of its requests reused one.
pub(super) fn with_connections(s: &mut NameStats, new: u64, connect_us: &[u64], tls_us: &[u64]) {
    s.counters.insert("connections_new".into(), new);
    s.counters
        .insert("connections_reused".into(), s.requests - new);
    for (name, values) in [("connect", connect_us), ("tls_handshake", tls_us)] {
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
pub(super) fn https_fixture() -> RunSummary {
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

pub(super) fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    jsonschema::meta::validate(&schema).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// Split one CSV line (no embedded line breaks) into fields, undoing RFC 4180 quoting.
pub(super) fn parse_csv_line(line: &str) -> Vec<String> {
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
