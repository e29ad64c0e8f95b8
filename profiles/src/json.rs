//! JSON in and out, as grpcurl speaks it: a workload file is the body of the Performance Profile
//! Generator's grpcurl
//! request (`{"workload_definition": {...}}`, or the workload alone; snake_case or the proto
//! JSON lowerCamelCase names), and a profile prints like grpcurl prints the answer.
//!
//! Used by `stampede profile generate`; the gRPC service speaks protobuf, not this.

use std::path::Path;

use serde::Deserialize;
use stampede_grpc::common::{RequestType, WorkerType};
use stampede_grpc::profiler_service::WorkloadDefinition;

use crate::profile::Profile;

/// Why a workload file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadFileError {
    /// Unreadable.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Not the JSON of a workload.
    #[error("{origin}:{line}:{column}: {message}")]
    Json {
        /// The file.
        origin: String,
        /// Line of the problem.
        line: usize,
        /// Column of the problem.
        column: usize,
        /// What serde said.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestJson {
    #[serde(alias = "workloadDefinition")]
    workload_definition: WorkloadJson,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct WorkloadJson {
    #[serde(default, alias = "workerTypes")]
    worker_types: Vec<WorkerJson>,
    #[serde(default, alias = "requestTypes")]
    request_types: Vec<RequestTypeJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkerJson {
    #[serde(default)]
    id: String,
    #[serde(default, alias = "acceleratorType")]
    accelerator_type: String,
    #[serde(default, alias = "acceleratorCount")]
    accelerator_count: i32,
    #[serde(default, alias = "modelName")]
    model_name: String,
    #[serde(default, alias = "modelServerType")]
    model_server_type: String,
    #[serde(default, alias = "modelServerImage")]
    model_server_image: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestTypeJson {
    #[serde(default)]
    id: String,
    #[serde(default, alias = "inputSizeBucket")]
    input_size_bucket: String,
    #[serde(default, alias = "outputSizeBucket")]
    output_size_bucket: String,
    #[serde(default, alias = "latencySloTpotMs")]
    latency_slo_tpot_ms: f32,
}

/// Parse a workload from JSON text; `origin` names it in errors.
pub fn parse_workload(text: &str, origin: &str) -> Result<WorkloadDefinition, WorkloadFileError> {
    let err = |e: serde_json::Error| WorkloadFileError::Json {
        origin: origin.to_string(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    };
    let shape: serde_json::Value = serde_json::from_str(text).map_err(err)?;
    let wrapped = shape.as_object().is_some_and(|o| {
        o.contains_key("workload_definition") || o.contains_key("workloadDefinition")
    });
    let w = if wrapped {
        serde_json::from_str::<RequestJson>(text)
            .map_err(err)?
            .workload_definition
    } else {
        serde_json::from_str::<WorkloadJson>(text).map_err(err)?
    };
    Ok(WorkloadDefinition {
        worker_types: w
            .worker_types
            .into_iter()
            .map(|w| WorkerType {
                id: w.id,
                accelerator_type: w.accelerator_type,
                accelerator_count: w.accelerator_count,
                model_name: w.model_name,
                model_server_type: w.model_server_type,
                model_server_image: w.model_server_image,
            })
            .collect(),
        request_types: w
            .request_types
            .into_iter()
            .map(|r| RequestType {
                id: r.id,
                input_size_bucket: r.input_size_bucket,
                output_size_bucket: r.output_size_bucket,
                latency_slo_tpot_ms: r.latency_slo_tpot_ms,
            })
            .collect(),
    })
}

/// Read a workload file.
pub fn read_workload(path: &Path) -> Result<WorkloadDefinition, WorkloadFileError> {
    let text = std::fs::read_to_string(path).map_err(|error| WorkloadFileError::Read {
        path: path.to_path_buf(),
        error,
    })?;
    parse_workload(&text, &path.display().to_string())
}

/// The profile as grpcurl prints a `GenerateProfileResponse`: two-space indents, proto JSON
/// names, defaults included, `f32` numbers in their shortest form (`23.333334`, `25`, `0`).
pub fn profile_json(profile: &Profile) -> String {
    let mut out = String::from("{\n  \"performanceProfile\": {\n    \"entries\": [");
    for (i, e) in profile.entries.iter().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        out.push_str(&format!(
            "      {{\n        \"workerTypeId\": {},\n        \"requestTypeId\": {},\n        \"maxThroughputRps\": {},\n        \"status\": \"{}\"\n      }}",
            quote(&e.worker.id),
            quote(&e.request.id),
            number(e.choice.max_rps),
            e.choice.status.as_str_name()
        ));
    }
    if !profile.entries.is_empty() {
        out.push_str("\n    ");
    }
    out.push_str("]\n  }\n}");
    out
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// An `f32` in its shortest round-trip form; JSON has no NaN or infinity, so those print as
/// strings, as proto JSON does.
fn number(v: f32) -> String {
    if v.is_nan() {
        "\"NaN\"".to_string()
    } else if v.is_infinite() {
        if v > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        }
        .to_string()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Data;
    use crate::profile::generate;

    /// The grpcurl request body of the Performance Profile Generator's README, verbatim.
    pub const README_REQUEST: &str = r#"{
  "workload_definition": {
    "worker_types": [
      {
        "id": "worker_mock_01",
        "model_name": "mock_model_gemma",
        "accelerator_type": "mock_accel_l4",
        "accelerator_count": 1,
        "model_server_type": "TGI",
        "model_server_image": "tgi_image_v1"
      }
    ],
    "request_types": [
      {
        "id": "request_mock_01",
        "latency_slo_tpot_ms": 250.0,
        "input_size_bucket": "S",
        "output_size_bucket": "S"
      },
      {
        "id": "request_mock_02_slo_unattainable",
        "latency_slo_tpot_ms": 50.0,
        "input_size_bucket": "M",
        "output_size_bucket": "M"
      },
      {
        "id": "request_mock_03_ok_highest_rate",
        "latency_slo_tpot_ms": 150.0,
        "input_size_bucket": "L",
        "output_size_bucket": "L"
      }
    ]
  }
}"#;

    /// The README's expected grpcurl output, verbatim.
    const README_ANSWER: &str = r#"{
  "performanceProfile": {
    "entries": [
      {
        "workerTypeId": "worker_mock_01",
        "requestTypeId": "request_mock_01",
        "maxThroughputRps": 23.333334,
        "status": "OK"
      },
      {
        "workerTypeId": "worker_mock_01",
        "requestTypeId": "request_mock_02_slo_unattainable",
        "maxThroughputRps": 0,
        "status": "SLO_UNATTAINABLE"
      },
      {
        "workerTypeId": "worker_mock_01",
        "requestTypeId": "request_mock_03_ok_highest_rate",
        "maxThroughputRps": 25,
        "status": "OK_USING_HIGHEST_RATE"
      }
    ]
  }
}"#;

    #[test]
    fn the_readme_request_gives_the_readme_answer_text() {
        let w = parse_workload(README_REQUEST, "workload.json").unwrap();
        assert_eq!(w.worker_types[0].accelerator_count, 1);
        assert_eq!(w.request_types[2].latency_slo_tpot_ms, 150.0);
        let profile = generate(&w, &Data::Mock).unwrap();
        assert_eq!(profile_json(&profile), README_ANSWER);
    }

    #[test]
    fn camel_case_and_bare_workloads() {
        let w = parse_workload(
            r#"{"workerTypes":[{"id":"w","acceleratorType":"L4"}],"requestTypes":[{"id":"r","latencySloTpotMs":5}]}"#,
            "w.json",
        )
        .unwrap();
        assert_eq!(w.worker_types[0].accelerator_type, "L4");
        assert_eq!(w.request_types[0].latency_slo_tpot_ms, 5.0);
    }

    #[test]
    fn bad_workloads_name_file_line_and_field() {
        let e = parse_workload("{\n  \"worker_typez\": []\n}", "w.json").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("w.json:2:"), "{msg}");
        assert!(msg.contains("worker_typez"), "{msg}");
        let e = parse_workload(
            "{\"workload_definition\": {\"request_types\": [{\"latency_slo_tpot_ms\": \"fast\"}]}}",
            "w.json",
        )
        .unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
    }
}
