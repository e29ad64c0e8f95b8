//! The figures every HTTP driver records about its connections: new and reused connections,
//! connect and TLS handshake times, as [`MetricSpec`]s, and their report: `connections` in
//! `summary.json` and the `connections:` line under the end-of-run table.
//!
//! [`super::transport`] opens the connections and records these; this module only says what
//! they are and how reports show them.

use serde_json::{Value, json};

use crate::report::{
    Figures, JsonBlock, Place, Report, RunContext, metric_json, quantile_ms, short_ms, thousands,
};
use crate::spec::{Family, MetricSpec, Prometheus, Role, Section, Unit};

/// The TCP connect time of each new connection, under the request that opened it (µs).
pub const CONNECT: MetricSpec = MetricSpec {
    role: Some(Role::ConnectTime),
    prometheus: Some(Prometheus {
        name: "stampede_connect_seconds",
        help: "TCP connect time of each new connection, under the request that opened it.",
        label: None,
    }),
    section: Some(Section::Connections),
    tui: Some("conn"),
    ..MetricSpec::new(
        "connect",
        Family::Connection,
        Unit::Micros,
        "TCP connect time of each new connection.",
    )
};

/// The TLS handshake time of each new connection to an `https://` target (µs).
pub const TLS_HANDSHAKE: MetricSpec = MetricSpec {
    role: Some(Role::TlsHandshakeTime),
    prometheus: Some(Prometheus {
        name: "stampede_tls_handshake_seconds",
        help: "TLS handshake time of each new connection (https:// targets).",
        label: None,
    }),
    section: Some(Section::Connections),
    tui: Some("tls"),
    ..MetricSpec::new(
        "tls_handshake",
        Family::Connection,
        Unit::Micros,
        "TLS handshake time of each new connection.",
    )
};

/// The family of the connection counters, one series per request name and `kind`.
const CONNECTIONS_FAMILY: &str = "stampede_connections_total";
const CONNECTIONS_HELP: &str =
    "Requests that opened a new connection (kind=new) or reused an open one (kind=reused).";

/// Requests that opened a new connection.
pub const CONNECTIONS_NEW: MetricSpec = MetricSpec {
    role: Some(Role::NewConnections),
    prometheus: Some(Prometheus {
        name: CONNECTIONS_FAMILY,
        help: CONNECTIONS_HELP,
        label: Some(("kind", "new")),
    }),
    section: Some(Section::Connections),
    ..MetricSpec::new(
        "connections_new",
        Family::Connection,
        Unit::Count,
        "Requests that opened a new connection.",
    )
};

/// Requests sent on a connection already open.
pub const CONNECTIONS_REUSED: MetricSpec = MetricSpec {
    role: Some(Role::ReusedConnections),
    prometheus: Some(Prometheus {
        name: CONNECTIONS_FAMILY,
        help: CONNECTIONS_HELP,
        label: Some(("kind", "reused")),
    }),
    section: Some(Section::Connections),
    ..MetricSpec::new(
        "connections_reused",
        Family::Connection,
        Unit::Count,
        "Requests sent on a connection already open.",
    )
};

/// The histograms every HTTP driver records besides its own, in this order (µs): the TCP
/// connect and the TLS handshake of each new connection, under the request that opened it.
pub const CONNECTION_METRICS: &[MetricSpec] = &[CONNECT, TLS_HANDSHAKE];

/// The counters every HTTP driver records besides its own, in this order: requests that opened
/// a new connection, and requests sent on one already open.
pub const CONNECTION_COUNTERS: &[MetricSpec] = &[CONNECTIONS_NEW, CONNECTIONS_REUSED];

/// The connection report: `connections` in `summary.json` (per request name and in total)
/// and the `connections:` line under the table.
pub const REPORT: Report = Report {
    name: "connections",
    json: &[
        JsonBlock {
            place: Place::Top,
            key: "connections",
            build: connections_json,
        },
        JsonBlock {
            place: Place::PerRequest,
            key: "connections",
            build: connections_json,
        },
    ],
    table: connections_line,
};

/// The `connections` block of a request name (or of all of them): requests that opened a new
/// connection and requests that reused one, with the TCP connect and TLS handshake times of
/// the new ones. `null` when the driver counts no connections (gRPC, ...). The handshake is
/// `null` on plain `http://` (`tls` false) unless one was recorded.
fn connections_json(s: &Figures, run: &RunContext) -> Value {
    let new = s.counters.get(CONNECTIONS_NEW.name);
    let reused = s.counters.get(CONNECTIONS_REUSED.name);
    if new.is_none() && reused.is_none() {
        return Value::Null;
    }
    let figures = |name: &str| match s.metrics.get(name) {
        Some(h) => metric_json(h),
        // Every request of this name went on an open connection: no time, count 0.
        None => metric_json(&crate::recorder::new_histogram()),
    };
    let handshake = if run.tls || s.metrics.contains_key(TLS_HANDSHAKE.name) {
        figures(TLS_HANDSHAKE.name)
    } else {
        Value::Null
    };
    json!({
        "new": new.copied().unwrap_or(0),
        "reused": reused.copied().unwrap_or(0),
        "connect_ms": figures(CONNECT.name),
        "tls_handshake_ms": handshake,
    })
}

/// The line under the stats table of a run that counted connections: how many were opened and
/// reused, connect times and, on `https://`, handshake times.
fn connections_line(total: &Figures, run: &RunContext) -> String {
    let c = connections_json(total, run);
    if c.is_null() {
        return String::new();
    }
    let count = |k: &str| c[k].as_u64().unwrap_or(0);
    let times = |what: &str, name: &str| match total.measured(name) {
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
        times("connect", CONNECT.name)
    );
    if !c["tls_handshake_ms"].is_null() {
        out.push_str("; ");
        out.push_str(&times("TLS handshake", TLS_HANDSHAKE.name));
    }
    out.push('\n');
    out
}
