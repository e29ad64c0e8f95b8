//! The end-of-run table for stdout: one row per request name and the aggregate, the lines of
//! drivers that recorded connections, LLM timings or downloads, then failures, threshold
//! verdicts and events.
//!
//! It reads the same figures as `summary.json` ([`super::json`]) and only formats them.

use serde_json::Value;

use super::json::{MEGABYTE, connections_json, llm_json, metrics_json};
use super::{max_ms, per_second, quantile_ms};
use crate::summary::{CONNECT, FailureRow, NameStats, RunSummary, TLS_HANDSHAKE, ThresholdOutcome};

/// Longest request name the end-of-run table shows before truncating it.
pub(super) const TABLE_NAME_WIDTH: usize = 48;

/// The end-of-run table for stdout: one row per request name and the aggregate, then the
/// failures, the threshold verdicts and the events (each only if there are any).
pub fn table(summary: &RunSummary) -> String {
    let duration = summary.duration_s();
    let mut out = format!(
        "Run {} of {} against {}: {:.1}s, {}: {} ({})\n\n",
        summary.run_id,
        summary.scenario,
        summary.target,
        duration,
        summary.status(),
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

/// The line under the stats table of a run that counted connections: how many were opened and
/// reused, connect times and, on `https://`, handshake times.
pub(super) fn connections_line(summary: &RunSummary) -> String {
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

/// The LLM figures under the stats table, for `llm` runs.
pub(super) fn llm_section(total: &NameStats, duration: f64) -> String {
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
        // ig-wva's Performance Profile Generator's figure for answers read whole: E2E ÷
        // output tokens.
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

/// The ACME performance track's figures under the stats table, for runs that recorded time
/// to first byte (`download`): throughput, latency, errors, totals, TTFB, per-client
/// throughput and how close together the clients started.
pub(super) fn downloads_section(summary: &RunSummary, duration: f64) -> String {
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

pub(super) const TABLE_HEADER: [&str; 11] = [
    "Type", "Name", "# reqs", "# fails", "req/s", "p50", "p90", "p99", "p99.9", "max", "avg size",
];

pub(super) fn stats_table(summary: &RunSummary, duration: f64) -> String {
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

pub(super) fn table_row(s: &NameStats, duration: f64) -> Vec<String> {
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
pub(super) fn table_line(cells: &[String], widths: &[usize]) -> String {
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

pub(super) fn failures_section(failures: &[FailureRow]) -> String {
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

pub(super) fn thresholds_section(thresholds: &[ThresholdOutcome]) -> String {
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

pub(super) fn events_section(events: &[String]) -> String {
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
pub(super) fn fmt_ms(ms: f64) -> String {
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
pub(super) fn short_ms(ms: f64) -> String {
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

/// A threshold's figure with up to 4 decimals, trailing zeros dropped.
pub(super) fn fmt_actual(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// At most `max` characters, the last one an ellipsis when cut.
pub(super) fn truncate(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        return name.to_string();
    }
    let mut cut: String = name.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::testdata::*;
    use crate::summary::AGGREGATED;

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
}
