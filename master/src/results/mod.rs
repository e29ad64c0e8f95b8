//! The files of `--out DIR` and the end-of-run table: `summary.json` (described by
//! `master/schema/summary.schema.json`), Locust-compatible `stats.csv`, `stats_history.csv` and
//! `failures.csv`, the HdrHistogram interval log `latency.hlog`, and threshold verdicts.
//!
//! The master's run loop calls [`HlogWriter`] once a second and [`write()`] / [`table`] once at
//! the end. This module only formats a [`RunSummary`]: it does not aggregate, and it holds no
//! state besides the open hlog file.
//!
//! # Layout
//! - [`json`]: the `summary.json` document.
//! - [`csv`]: Locust's `stats.csv`, `stats_history.csv` and `failures.csv`, and the CSV and
//!   float formatting of Python they follow.
//! - [`table`]: the end-of-run table for stdout.
//! - [`hlog`]: the streaming writer of `latency.hlog`.
//! - [`thresholds`]: threshold verdicts from the aggregate figures.
//! - [`dates`]: Unix milliseconds as the dates these files and the APIs write.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::summary::RunSummary;

pub mod csv;
pub mod dates;
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
/// (creating it). Returns the paths written, in that order.
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
            fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        })
        .collect()
}
