//! Rows from a finished run: one per worker node, from the run's `summary.json` (each worker's
//! mean request time and its host's CPU and disk usage during the run) and the scenario's
//! `[placement]` table (the model, and the device of each node).
//!
//! Called by `stampede placement record`. It reads the files a user has after
//! `stampede run --out DIR` or `stampede master --out DIR`, never the master itself. A worker
//! is taken to run on the node it measures, beside the model server it sends requests to.

use std::path::{Path, PathBuf};

use serde_json::Value;
use stampede_scenarios::PlacementFile;

use crate::row::{ModelSpec, NodeState, Row};

/// The summary gauge with the node's CPU busy over the run, percent.
pub const CPU_GAUGE: &str = "host_cpu_percent";
/// The summary gauge with the used share of the node's `/`, percent.
pub const DISK_GAUGE: &str = "host_disk_percent";

/// The run's results could not be turned into rows.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The summary could not be read.
    #[error("{path}: {message}")]
    Summary {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// No worker gave a row.
    #[error("no row to record: {}", .0.iter().map(|s| format!("{} {}", s.worker, s.reason)).collect::<Vec<_>>().join("; "))]
    Empty(Vec<Skipped>),
}

/// A worker that gave no row, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// The worker's name.
    pub worker: String,
    /// Why (`was lost during the run`, ...).
    pub reason: String,
}

/// What a run gives.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// `(worker name, row)`, in the summary's order.
    pub rows: Vec<(String, Row)>,
    /// Workers that gave none.
    pub skipped: Vec<Skipped>,
    /// Things the user should know about rows that were made (failures in the mean).
    pub notes: Vec<String>,
}

/// Read a run's summary: `path` is its `--out` directory or its `summary.json`.
pub fn read_summary(path: &Path) -> Result<(PathBuf, Value), RecordError> {
    let file = if path.is_dir() {
        path.join("summary.json")
    } else {
        path.to_path_buf()
    };
    let error = |message: String| RecordError::Summary {
        path: file.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(&file).map_err(|e| error(format!("cannot read: {e}")))?;
    let doc: Value =
        serde_json::from_str(&text).map_err(|e| error(format!("not a run summary: {e}")))?;
    if !doc.get("workers").is_some_and(Value::is_array) {
        return Err(error(
            "not a run summary (no `workers` list; write one with `stampede run --out DIR`)".into(),
        ));
    }
    Ok((file, doc))
}

/// One row per worker that finished the run with requests and host figures.
pub fn rows_from_run(placement: &PlacementFile, summary: &Value) -> Result<Recorded, RecordError> {
    let spec = ModelSpec {
        model: placement.model.clone(),
        conv_layers: placement.conv_layers.0,
        pool_layers: placement.pool_layers.0,
        fc_layers: placement.fc_layers.0,
        filter_details: placement.filter_details.0,
        total_parameters: placement.total_parameters.0,
        model_input_size: placement.model_input_size.0,
        model_output_size: placement.model_output_size.0,
    };
    let mut out = Recorded {
        rows: Vec::new(),
        skipped: Vec::new(),
        notes: Vec::new(),
    };
    let workers = summary["workers"].as_array().map_or(&[][..], Vec::as_slice);
    for w in workers {
        let name = w["name"].as_str().unwrap_or("?").to_string();
        let skip = |reason: &str| Skipped {
            worker: name.clone(),
            reason: reason.to_string(),
        };
        let requests = w["requests"].as_u64().unwrap_or(0);
        let failures = w["failures"].as_u64().unwrap_or(0);
        let mean_ms = w["mean_ms"].as_f64().unwrap_or(0.0);
        let gauge = |g: &str| {
            w["gauges"][g]
                .as_f64()
                .filter(|v| (0.0..=100.0).contains(v))
        };
        let reason = if w["state"] != "finished" {
            Some(format!(
                "did not finish the run (state `{}`)",
                w["state"].as_str().unwrap_or("?")
            ))
        } else if requests == 0 || mean_ms <= 0.0 {
            Some("sent no request".into())
        } else if gauge(CPU_GAUGE).is_none() || gauge(DISK_GAUGE).is_none() {
            Some(format!(
                "reported no {CPU_GAUGE}/{DISK_GAUGE} (a worker that cannot read /proc/stat, or \
                 a summary from before Stampede recorded them)"
            ))
        } else if placement.device_of(&name).is_none() {
            Some(format!(
                "has no device: name it in [placement.devices] (\"{name}\" = \"...\") or set \
                 [placement] device_type"
            ))
        } else {
            None
        };
        if let Some(reason) = reason {
            out.skipped.push(skip(&reason));
            continue;
        }
        if failures > 0 {
            out.notes.push(format!(
                "{name}: {failures} of its {requests} requests failed; its mean includes them"
            ));
        }
        let (Some(cpu_usage), Some(disk_usage), Some(device)) = (
            gauge(CPU_GAUGE),
            gauge(DISK_GAUGE),
            placement.device_of(&name),
        ) else {
            continue;
        };
        out.rows.push((
            name,
            Row {
                spec: spec.clone(),
                node: NodeState {
                    cpu_usage,
                    disk_usage,
                    device_type: device.to_string(),
                },
                execution_time: mean_ms / 1000.0,
            },
        ));
    }
    if out.rows.is_empty() {
        return Err(RecordError::Empty(out.skipped));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use stampede_scenarios::units::Count;

    fn placement() -> PlacementFile {
        PlacementFile {
            model: "resnet50".into(),
            conv_layers: Count(53),
            pool_layers: Count(2),
            fc_layers: Count(1),
            filter_details: Count(64),
            total_parameters: Count(25_557_032),
            model_input_size: Count(150_528),
            model_output_size: Count(1000),
            device_type: None,
            devices: [("rpi-1".to_string(), "Raspberry Pi 4B".to_string())].into(),
        }
    }

    fn worker(name: &str, state: &str, requests: u64, gauges: Value) -> Value {
        json!({ "name": name, "state": state, "requests": requests, "failures": 1,
                "mean_ms": 12.5, "gauges": gauges })
    }

    #[test]
    fn each_finished_worker_with_a_device_and_host_figures_gives_a_row() {
        let g = json!({ "host_cpu_percent": 41.5, "host_disk_percent": 63.0 });
        let summary = json!({ "workers": [
            worker("rpi-1", "finished", 100, g.clone()),
            worker("nuc-1", "finished", 100, g.clone()),
            worker("rpi-2", "lost", 100, g.clone()),
            worker("rpi-3", "finished", 100, json!({})),
        ]});
        let mut p = placement();
        p.devices.insert("rpi-2".into(), "Raspberry Pi 4B".into());
        p.devices.insert("rpi-3".into(), "Raspberry Pi 4B".into());
        let r = rows_from_run(&p, &summary).unwrap();
        assert_eq!(r.rows.len(), 1);
        let (name, row) = &r.rows[0];
        assert_eq!(name, "rpi-1");
        assert_eq!(row.execution_time, 0.0125);
        assert_eq!(row.node.cpu_usage, 41.5);
        assert_eq!(row.node.device_type, "Raspberry Pi 4B");
        assert_eq!(row.spec.total_parameters, 25_557_032);
        let why: Vec<&str> = r.skipped.iter().map(|s| s.worker.as_str()).collect();
        assert_eq!(why, ["nuc-1", "rpi-2", "rpi-3"]);
        assert!(
            r.skipped[0].reason.contains("has no device"),
            "{:?}",
            r.skipped
        );
        assert!(
            r.notes[0].contains("1 of its 100 requests failed"),
            "{:?}",
            r.notes
        );

        // A default device covers every unnamed worker.
        p.device_type = Some("Intel NUC".into());
        let r = rows_from_run(&p, &summary).unwrap();
        assert_eq!(r.rows[1].1.node.device_type, "Intel NUC");

        let e = rows_from_run(&placement(), &json!({ "workers": [] })).unwrap_err();
        assert!(e.to_string().starts_with("no row to record"), "{e}");
    }
}
