//! The `download` driver's figures and report: the [`MetricSpec`]s of time to first byte and
//! per-client throughput, their keys in `summary.json`'s `metrics` block (the ACME
//! performance track's document) and the `Downloads` section under the end-of-run table.
//!
//! Only formatting, from the figures the driver recorded.

use serde_json::{Value, json};

use crate::report::{
    Figures, JsonBlock, MEGABYTE, Place, Report, RunContext, max_ms, min_ms, per_second,
    quantile_ms,
};
use crate::spec::{Family, MetricSpec, Prometheus, Role, Section, Unit};

/// Time to the response head (µs).
pub const TTFB: MetricSpec = MetricSpec {
    role: Some(Role::TimeToFirstByte),
    prometheus: Some(Prometheus {
        name: "stampede_download_time_to_first_byte_seconds",
        help: "Downloads: time to the response head.",
        label: None,
    }),
    section: Some(Section::Downloads),
    tui: Some("TTFB"),
    ..MetricSpec::new(
        "ttfb",
        Family::Download,
        Unit::Micros,
        "Time from the request's scheduled send to the response head.",
    )
};

/// Bytes per second of one successful download (kB/s: 1000 bytes per second).
pub const CLIENT_THROUGHPUT: MetricSpec = MetricSpec {
    role: Some(Role::ClientThroughput),
    prometheus: Some(Prometheus {
        name: "stampede_download_client_throughput_bytes_per_second",
        help: "Downloads: bytes per second of each successful download.",
        label: None,
    }),
    section: Some(Section::Downloads),
    ..MetricSpec::new(
        "client_throughput",
        Family::Download,
        Unit::KilobytesPerSecond,
        "Bytes per second of each successful download.",
    )
};

/// The download keys of `metrics` and the `Downloads` section.
pub const REPORT: Report = Report {
    name: "download",
    json: &[
        JsonBlock {
            place: Place::Metrics,
            key: "ttfb_ms",
            build: ttfb_json,
        },
        JsonBlock {
            place: Place::Metrics,
            key: "per_client_throughput",
            build: per_client_json,
        },
    ],
    table: downloads_section,
};

/// Time to first byte in ms, `null` when none was measured.
fn ttfb_json(total: &Figures, _run: &RunContext) -> Value {
    match total.measured(TTFB.name) {
        Some(h) => json!({
            "mean": h.mean() / 1000.0,
            "p50": quantile_ms(h, 0.50),
            "p90": quantile_ms(h, 0.90),
            "p99": quantile_ms(h, 0.99),
            "min": min_ms(h),
            "max": max_ms(h),
            "count": h.len(),
        }),
        None => Value::Null,
    }
}

/// Per-download throughput in bytes per second (recorded in kB/s), `null` when none was.
fn per_client_json(total: &Figures, _run: &RunContext) -> Value {
    match total.measured(CLIENT_THROUGHPUT.name) {
        Some(h) => json!({
            "mean_bytes_per_second": h.mean() * 1000.0,
            "median_bytes_per_second": (h.value_at_quantile(0.5) * 1000) as f64,
            "min_bytes_per_second": (h.min() * 1000) as f64,
            "max_bytes_per_second": (h.max() * 1000) as f64,
            "count": h.len(),
        }),
        None => Value::Null,
    }
}

/// The ACME performance track's figures under the stats table, for runs that recorded time
/// to first byte (`download`): throughput, latency, errors, totals, TTFB, per-client
/// throughput and how close together the clients started.
fn downloads_section(total: &Figures, run: &RunContext) -> String {
    let ttfb = ttfb_json(total, run);
    if ttfb.is_null() {
        return String::new();
    }
    let n = |v: &Value| v.as_f64().unwrap_or(0.0);
    let bytes_per_second = per_second(total.bytes, run.duration_s);
    let mut out = format!(
        "\nDownloads\n  throughput   {:.2} bytes/s · {:.2} MB/s · {:.2} requests/s\n",
        bytes_per_second,
        bytes_per_second / MEGABYTE,
        per_second(total.requests, run.duration_s)
    );
    out.push_str(&format!(
        "  latency      mean {:.2} ms · median {:.2} ms · p99 {:.2} ms · min {:.2} ms · max {:.2} ms\n",
        total.mean_ms(),
        total.latency_ms(0.5),
        total.latency_ms(0.99),
        min_ms(total.latency),
        max_ms(total.latency)
    ));
    out.push_str(&format!(
        "  errors       error rate {:.4} ({} of {} requests failed)\n  total        {} requests · {} bytes\n",
        total.error_rate(),
        total.failures,
        total.requests,
        total.requests,
        total.bytes
    ));
    out.push_str(&format!(
        "  TTFB         p50 {:.2} ms · p90 {:.2} ms · p99 {:.2} ms · max {:.2} ms\n",
        n(&ttfb["p50"]),
        n(&ttfb["p90"]),
        n(&ttfb["p99"]),
        n(&ttfb["max"])
    ));
    let c = per_client_json(total, run);
    if !c.is_null() {
        out.push_str(&format!(
            "  per client   min {:.2} MB/s · median {:.2} MB/s · mean {:.2} MB/s · max {:.2} MB/s\n",
            n(&c["min_bytes_per_second"]) / MEGABYTE,
            n(&c["median_bytes_per_second"]) / MEGABYTE,
            n(&c["mean_bytes_per_second"]) / MEGABYTE,
            n(&c["max_bytes_per_second"]) / MEGABYTE
        ));
    }
    if let Some(spread) = run.start_spread_ms {
        out.push_str(&format!(
            "  start        first requests within {spread:.2} ms across {} worker(s)\n",
            run.workers_started
        ));
    }
    out
}
