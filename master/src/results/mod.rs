//! The files of `--out DIR` and the end-of-run table: `summary.json` (described by
//! `master/schema/summary.schema.json`), Locust-compatible `stats.csv`, `stats_history.csv` and
//! `failures.csv`, the HdrHistogram interval log `latency.hlog`, and threshold verdicts.
//!
//! The master's run loop calls [`HlogWriter`], [`history::append`] and [`write()`] once a
//! second, and [`write()`] / [`table()`] once at the end. This module only formats a
//! [`RunSummary`]: it does not aggregate, and holds no state (the run owns the open hlog).
//!
//! # Layout
//! - [`json`]: the `summary.json` document.
//! - [`csv`]: Locust's `stats.csv`, `stats_history.csv` and `failures.csv`, and the CSV and
//!   float formatting of Python they follow.
//! - [`mod@table`]: the end-of-run table for stdout.
//! - [`hlog`]: the streaming writer of `latency.hlog`.
//! - [`history`]: `history.jsonl`, one line per second of the run, appended as it goes.
//! - [`thresholds`]: threshold verdicts from the aggregate figures.
//! - [`dates`]: Unix milliseconds as the dates these files and the APIs write.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::summary::RunSummary;

pub mod csv;
pub mod dates;
pub mod history;
pub mod hlog;
pub mod json;
pub mod table;
pub mod thresholds;

#[cfg(test)]
mod testdata;

pub use csv::{FAILURES_CSV_HEADER, HISTORY_CSV_HEADER, STATS_CSV_HEADER};
pub use hlog::{HLOG_MAX_VALUE_UNIT_RATIO, HlogWriter};
pub use json::{SCHEMA_VERSION, metrics_json, summary_json};
pub use stampede_scenarios::report::{
    MEGABYTE, max_ms, min_ms, per_second, quantile_ms, quantile_us,
};
pub use table::table;
pub use thresholds::evaluate;

/// Write `summary.json`, `stats.csv`, `stats_history.csv` and `failures.csv` into `dir`
/// (creating it). Returns the paths written, in that order. Each file is written under a
/// temporary name and renamed over the old one, so a reader (or a master killed meanwhile)
/// never sees half a file: during a run the master calls this once a second with the run so
/// far (status `incomplete`), and once at its end.
pub fn write(dir: &Path, summary: &RunSummary) -> anyhow::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = serde_json::to_string_pretty(&json::summary_json(summary))
        .context("serializing summary.json")?;
    let files = [
        ("summary.json", json + "\n"),
        ("stats.csv", csv::stats_csv(summary)),
        ("stats_history.csv", csv::history_csv(&summary.history)),
        ("failures.csv", csv::failures_csv(&summary.failures)),
    ];
    files
        .into_iter()
        .map(|(name, body)| {
            let path = dir.join(name);
            replace(&path, body.as_bytes())?;
            Ok(path)
        })
        .collect()
}

/// Write `path` whole or not at all: into a temporary file beside it, then renamed over it.
pub fn replace(path: &Path, body: &[u8]) -> anyhow::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    fs::write(&tmp, body).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {} to {name}", tmp.display()))
}

/// The files a run leaves in `--out`, besides record streams (`<stream>.csv`).
pub const RUN_FILES: [&str; 6] = [
    "summary.json",
    "stats.csv",
    "stats_history.csv",
    "failures.csv",
    "latency.hlog",
    "history.jsonl",
];

/// Before a run writes into `dir`: if it holds an earlier run's results (its `summary.json`),
/// move that run's files into `dir/previous-run-<id>/`, so the folder never mixes two runs.
/// Returns where they went.
pub fn move_aside(dir: &Path, streams: &[String]) -> anyhow::Result<Option<PathBuf>> {
    let summary = dir.join("summary.json");
    let Ok(text) = fs::read_to_string(&summary) else {
        return Ok(None);
    };
    let id = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|d| d["run_id"].as_u64())
        .map_or_else(|| "unknown".to_string(), |id| id.to_string());
    let aside = dir.join(format!("previous-run-{id}"));
    fs::create_dir_all(&aside).with_context(|| format!("creating {}", aside.display()))?;
    let streams = streams.iter().map(|s| format!("{s}.csv"));
    for name in RUN_FILES.iter().map(|n| n.to_string()).chain(streams) {
        let from = dir.join(&name);
        if from.is_file() {
            fs::rename(&from, aside.join(&name))
                .with_context(|| format!("moving {} aside", from.display()))?;
        }
    }
    Ok(Some(aside))
}
