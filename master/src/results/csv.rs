//! Locust-compatible CSV files: `stats.csv`, `stats_history.csv` and `failures.csv`, in the
//! columns, number forms and quoting of Locust's own (Python's `csv` writer, `str(float)`).
//!
//! `results::write` writes them at the end of a run; the Locust-compatible API serves the same
//! rows live through [`csv_row`] and [`py_float`].

use stampede_scenarios::report::{max_ms, min_ms, per_second, quantile_us};

use crate::summary::{
    FailureRow, HistoryEntry, HistoryRow, LOCUST_PERCENTILES, NameStats, RunSummary,
};

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

/// Python's `csv` writer ends rows with CRLF (the `excel` dialect), so Locust's files do too.
pub const CSV_EOL: &str = "\r\n";

/// `stats.csv`: one row per name in scenario order, then the aggregate (empty Type).
pub(super) fn stats_csv(summary: &RunSummary) -> String {
    let duration = summary.duration_s();
    let mut out = format!("{STATS_CSV_HEADER}{CSV_EOL}");
    for s in summary.stats.iter().chain([&summary.total]) {
        csv_row(&mut out, &stats_row(s, duration));
    }
    out
}

/// Locust's `_requests_data_rows`: median and percentiles as integer ms, the average and the
/// rates as floats, percentiles `N/A` for a name without requests.
pub(super) fn stats_row(s: &NameStats, duration: f64) -> Vec<String> {
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
pub(super) fn history_csv(history: &[HistoryRow]) -> String {
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
pub(super) fn history_row(row: &HistoryRow, e: &HistoryEntry) -> Vec<String> {
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

pub(super) fn failures_csv(failures: &[FailureRow]) -> String {
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
pub fn csv_row(out: &mut String, fields: &[String]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, field);
    }
    out.push_str(CSV_EOL);
}

/// A field is quoted when it holds the delimiter, the quote or a line break; quotes double.
pub(super) fn csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

/// A float as Python's `str(float)` writes it: shortest round-trip digits, at least one decimal.
pub fn py_float(x: f64) -> String {
    let s = x.to_string();
    if s.contains(['.', 'e', 'N', 'i']) {
        s
    } else {
        s + ".0"
    }
}

/// µs as whole ms, rounded (Locust's response-time buckets are whole ms).
pub(super) fn int_ms(us: u64) -> String {
    ((us as f64 / 1000.0).round() as u64).to_string()
}

/// Locust's `avg_content_length`: a float, or the integer 0 without requests.
pub(super) fn average_size(requests: u64, average: f64) -> String {
    if requests == 0 {
        "0".to_string()
    } else {
        py_float(average)
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::results::testdata::*;
    use crate::results::{json::summary_json, write};
    use crate::summary::AGGREGATED;

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
        assert_eq!(py_float(20.0), "20.0");
        assert_eq!(py_float(15.2505), "15.2505");
    }
}
