//! The end-of-run table for stdout: one row per request name and the aggregate, the lines of
//! drivers that recorded connections, LLM timings or downloads, then failures, threshold
//! verdicts and events.
//!
//! It reads the same figures as `summary.json` (`results::json`) and only formats them; the
//! drivers' sections come from their reports ([`kinds::reports`]).

use stampede_scenarios::kinds;
pub use stampede_scenarios::report::{fmt_ms, short_ms, thousands};
use stampede_scenarios::report::{max_ms, per_second};

use super::json::context;
use crate::summary::{FailureRow, NameStats, RunSummary, ThresholdOutcome};

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
    let (run, total) = (context(summary), summary.total.figures());
    for report in kinds::reports() {
        out.push_str(&(report.table)(&total, &run));
    }
    out.push_str(&failures_section(&summary.failures));
    out.push_str(&thresholds_section(&summary.thresholds));
    out.push_str(&events_section(&summary.events));
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
        plain.total.metrics.remove("tls_handshake");
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
