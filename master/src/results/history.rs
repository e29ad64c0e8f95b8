//! `history.jsonl`: one JSON line per second of the run, appended and flushed as the run goes,
//! so a master killed outright leaves every second it aggregated. The same figures as
//! `stats_history.csv` (which is rewritten whole each second), in a form a reader can follow
//! with `tail -f`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::summary::HistoryRow;

/// Append `row` to `dir/history.jsonl` (created on the first call of a run).
pub fn append(file: &mut Option<File>, dir: &Path, row: &HistoryRow) -> std::io::Result<()> {
    if file.is_none() {
        *file = Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("history.jsonl"))?,
        );
    }
    let Some(f) = file.as_mut() else {
        return Ok(());
    };
    let mut line = serde_json::to_string(&line(row)).map_err(std::io::Error::other)?;
    line.push('\n');
    f.write_all(line.as_bytes())?;
    f.flush()
}

/// One second as JSON: per request name (and the aggregate, last) its rates this second, its
/// p50/p99 this second and its totals so far.
fn line(row: &HistoryRow) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = row
        .entries
        .iter()
        .map(|e| {
            json!({
                "type": e.kind,
                "name": e.name,
                "rps": e.rps,
                "fps": e.fps,
                "p50_ms": e.percentiles_us[0] as f64 / 1000.0,
                "p99_ms": e.percentiles_us[7] as f64 / 1000.0,
                "total_requests": e.total_requests,
                "total_failures": e.total_failures,
            })
        })
        .collect();
    json!({ "unix_s": row.unix_s, "users": row.users, "entries": entries })
}
