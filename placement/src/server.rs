//! The placement service: `POST /api/profiling` answers with the shapes of PEPPER's Profiler,
//! standalone (the body names the device and its load) or cluster (every node Prometheus knows,
//! fastest first); `GET /api/model` describes the model; `GET /health`.
//!
//! Started by `stampede placement serve`. The model file is read when a request needs it and
//! again whenever it changes on disk, so `fit` can replace it under a running service. Every
//! failure is a JSON answer (`{"status": "error", "message": ...}`), never a panic.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::model::PlacementModel;
use crate::prometheus::{Node, Prometheus};
use crate::request::{self, Body, Form};
use crate::row::{CPU, DEVICE, DISK, ModelSpec, NodeState};

/// The `message` of every successful answer (the Profiler's).
pub const RECEIVED: &str = "Profiling data received";

/// What the service needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The model file (it may appear or change while the service runs).
    pub model: PathBuf,
    /// Where cluster-form requests find the nodes; without it only the standalone form works.
    pub prometheus: Option<Prometheus>,
}

/// Serve until `shutdown` is cancelled.
/// Serve until `shutdown` is cancelled. The model file is read first (connections wait in the
/// listener's queue meanwhile); a missing or unusable one is logged, and requests say so.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let state = Arc::new(Shared {
        model: ModelSlot {
            path: config.model,
            cached: Mutex::new(None),
        },
        prometheus: config.prometheus,
    });
    if let Err(f) = state.model.current().await {
        tracing::warn!("{}", f.message);
    }
    axum::serve(listener, routes(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// The service's routes.
pub fn router(config: ServerConfig) -> Router {
    routes(Arc::new(Shared {
        model: ModelSlot {
            path: config.model,
            cached: Mutex::new(None),
        },
        prometheus: config.prometheus,
    }))
}

fn routes(state: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/profiling", post(profiling))
        .route("/api/model", get(model_info))
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .with_state(state)
}

struct Shared {
    model: ModelSlot,
    prometheus: Option<Prometheus>,
}

/// The model file and the model last read from it, keyed by the file's modification time and
/// length so a new file is picked up at the next request.
struct ModelSlot {
    path: PathBuf,
    /// A std mutex: held only to compare and swap the cached entry, never across an await.
    cached: Mutex<Option<Cached>>,
}

struct Cached {
    stamp: (SystemTime, u64),
    model: Result<Arc<PlacementModel>, String>,
}

impl ModelSlot {
    async fn current(&self) -> Result<Arc<PlacementModel>, Failure> {
        let path = self.path.display().to_string();
        let how = format!(
            "make one with `stampede placement fit --data runs.csv --out {path}` (rows come from \
             `stampede placement record`, or try `stampede placement generate`)"
        );
        let meta = match tokio::fs::metadata(&self.path).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Failure::unavailable(format!(
                    "no model file at {path}: {how}"
                )));
            }
            Err(e) => {
                return Err(Failure::unavailable(format!(
                    "cannot read the model file {path}: {e}"
                )));
            }
        };
        let stamp = (
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        );
        let cached = self.cached.lock().ok().and_then(|c| {
            c.as_ref()
                .filter(|c| c.stamp == stamp)
                .map(|c| c.model.clone())
        });
        let model = match cached {
            Some(m) => m,
            None => {
                let file = self.path.clone();
                let loaded = tokio::task::spawn_blocking(move || PlacementModel::load(&file))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
                    .map(Arc::new);
                match &loaded {
                    Ok(m) => tracing::info!(path = %path, devices = ?m.devices(), "model loaded"),
                    Err(e) => tracing::warn!(path = %path, "model file unusable: {e}"),
                }
                if let Ok(mut c) = self.cached.lock() {
                    *c = Some(Cached {
                        stamp,
                        model: loaded.clone(),
                    });
                }
                loaded
            }
        };
        model
            .map_err(|e| Failure::unavailable(format!("the model file cannot be used: {e}; {how}")))
    }
}

/// An answer other than success.
struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    fn unavailable(message: String) -> Failure {
        Failure::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({ "status": "error", "message": self.message })),
        )
            .into_response()
    }
}

/// The Profiler's answer; fields in its (alphabetical) order.
#[derive(Serialize)]
struct Answer<'a, P: Serialize> {
    message: &'static str,
    model_characteristics: &'a Body,
    /// Beyond the Profiler (cluster form): every node's prediction, fastest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    node_predictions: Option<&'a [NodePrediction]>,
    profiling_prediction: P,
    /// Beyond the Profiler (cluster form): nodes that could not be predicted, and why.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    skipped_nodes: &'a [Skipped],
    status: &'static str,
}

#[derive(Serialize)]
struct Standalone<'a> {
    model: &'a str,
    predicted_execution_time: f64,
}

/// One node's prediction: the Profiler's fields, then the inputs it was made from.
#[derive(Debug, Clone, Serialize)]
struct NodePrediction {
    class: String,
    device_model: String,
    model: String,
    node: String,
    node_uuid: String,
    predicted_execution_time: f64,
    instance: String,
    #[serde(rename = "cpu_usage(percentage)")]
    cpu_usage: f64,
    #[serde(rename = "disk_usage(percentage)")]
    disk_usage: f64,
}

/// The Profiler's `profiling_prediction` of the cluster form.
#[derive(Serialize)]
struct Fastest<'a> {
    class: &'a str,
    device_model: &'a str,
    model: &'a str,
    node: &'a str,
    node_uuid: &'a str,
    predicted_execution_time: f64,
}

#[derive(Serialize)]
struct Skipped {
    node: String,
    instance: String,
    reason: String,
}

async fn profiling(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match answer(&s, &body).await {
        Ok(r) => r,
        Err(f) => {
            tracing::debug!(status = %f.status, "profiling: {}", f.message);
            f.into_response()
        }
    }
}

async fn answer(s: &Shared, bytes: &[u8]) -> Result<Response, Failure> {
    let p =
        request::parse(bytes).map_err(|e| Failure::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let model = s.model.current().await?;
    match p.form {
        Form::Standalone(spec, node) => {
            if let Err(e) = model.check_device(&node.device_type) {
                return Err(Failure::new(
                    StatusCode::BAD_REQUEST,
                    format!("{DEVICE}: {e}"),
                ));
            }
            let times = predict(model, vec![(spec.clone(), node)]).await?;
            Ok(Json(Answer {
                message: RECEIVED,
                model_characteristics: &p.body,
                node_predictions: None,
                profiling_prediction: Standalone {
                    model: &spec.model,
                    predicted_execution_time: times[0],
                },
                skipped_nodes: &[],
                status: "success",
            })
            .into_response())
        }
        Form::Cluster(spec) => {
            let prometheus = s.prometheus.as_ref().ok_or_else(|| {
                Failure::unavailable(format!(
                    "this request names no device, so it asks about the cluster, and no \
                     Prometheus is configured: start the service with --prometheus URL or \
                     PROMETHEUS_IP=host:port, or send {DEVICE}, {CPU} and {DISK} (the \
                     standalone form)"
                ))
            })?;
            let nodes = prometheus
                .nodes()
                .await
                .map_err(|e| Failure::new(StatusCode::BAD_GATEWAY, e.to_string()))?;
            let (usable, skipped) = usable_nodes(nodes, &model);
            if usable.is_empty() {
                let why: Vec<String> = skipped
                    .iter()
                    .map(|k| format!("{} ({}): {}", k.node, k.instance, k.reason))
                    .collect();
                return Err(Failure::new(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "Prometheus at {} has no node to predict for: {}",
                        prometheus.addr(),
                        why.join("; ")
                    ),
                ));
            }
            let inputs = usable
                .iter()
                .map(|(_, st)| (spec.clone(), st.clone()))
                .collect();
            let times = predict(model, inputs).await?;
            let mut predictions: Vec<NodePrediction> = usable
                .into_iter()
                .zip(times)
                .map(|((n, st), t)| NodePrediction {
                    class: n.class,
                    device_model: n.device_model,
                    model: spec.model.clone(),
                    node: n.name,
                    node_uuid: n.uuid,
                    predicted_execution_time: t,
                    instance: n.instance,
                    cpu_usage: st.cpu_usage,
                    disk_usage: st.disk_usage,
                })
                .collect();
            predictions.sort_by(|a, b| {
                a.predicted_execution_time
                    .total_cmp(&b.predicted_execution_time)
            });
            let f = &predictions[0];
            let fastest = Fastest {
                class: &f.class,
                device_model: &f.device_model,
                model: &f.model,
                node: &f.node,
                node_uuid: &f.node_uuid,
                predicted_execution_time: f.predicted_execution_time,
            };
            Ok(Json(Answer {
                message: RECEIVED,
                model_characteristics: &p.body,
                node_predictions: Some(&predictions),
                profiling_prediction: fastest,
                skipped_nodes: &skipped,
                status: "success",
            })
            .into_response())
        }
    }
}

/// Nodes with a known device, CPU and disk usage, and the others with the reason.
fn usable_nodes(
    nodes: Vec<Node>,
    model: &PlacementModel,
) -> (Vec<(Node, NodeState)>, Vec<Skipped>) {
    let mut usable = Vec::new();
    let mut skipped = Vec::new();
    for n in nodes {
        let reason = match (n.cpu_usage, n.disk_usage) {
            (None, _) => Some("no node_cpu_seconds_total rate for its instance (node exporter not scraped, or fewer than two samples in the last minute)".to_string()),
            (_, None) => Some("no node_filesystem_avail_bytes/size_bytes for `/` on its instance".to_string()),
            (Some(cpu), Some(disk)) => {
                let state = NodeState {
                    cpu_usage: cpu,
                    disk_usage: disk,
                    device_type: n.device_model.clone(),
                };
                match model.check_device(&state.device_type) {
                    Err(e) => Some(e.to_string()),
                    Ok(_) => {
                        usable.push((n.clone(), state));
                        None
                    }
                }
            }
        };
        if let Some(reason) = reason {
            skipped.push(Skipped {
                node: n.name,
                instance: n.instance,
                reason,
            });
        }
    }
    (usable, skipped)
}

/// Predict off the async threads; a panic in the learner becomes a 500, not a dead service.
async fn predict(
    model: Arc<PlacementModel>,
    inputs: Vec<(ModelSpec, NodeState)>,
) -> Result<Vec<f64>, Failure> {
    let internal = |m: String| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, m);
    tokio::task::spawn_blocking(move || {
        let refs: Vec<(&ModelSpec, &NodeState)> = inputs.iter().map(|(s, n)| (s, n)).collect();
        model.predict_many(&refs)
    })
    .await
    .map_err(|e| internal(format!("prediction failed: {e}")))?
    .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, format!("{DEVICE}: {e}")))
}

async fn model_info(State(s): State<Arc<Shared>>) -> Response {
    match s.model.current().await {
        Ok(m) => Json(&m.file).into_response(),
        Err(f) => f.into_response(),
    }
}
