//! The ACME performance track's health-dashboard API, merged into the master's HTTP API:
//! `GET /health/components` (the `performance` component with the latest download run's figures,
//! and the workers), `POST /health/performance/workload` (start `num_clients` simultaneous
//! downloads of `model_id` on the connected workers, against the master's target; answers 202 at
//! once) and `GET /health/performance/results/{run_id}`.
//!
//! A translation layer: it builds a `download` scenario and starts it through the coordinator,
//! and reads results from the archive (kept on disk, so they survive a restart) and the live
//! snapshot. Starting needs the token; reading does not.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use stampede_protocol::unix_now_ns;
use stampede_scenarios::{Kind, Overrides, ScenarioConfig, ScenarioFile};
use tokio::sync::oneshot;

use crate::api_state::{ApiState, authorized, error, json_body};
use crate::coordinator::{Command, Event};
use crate::results::MEGABYTE;
use crate::results::dates::rfc3339_seconds;
use crate::state::WorkerState;

/// The performance track's defaults for fields a workload request leaves out.
pub const DEFAULT_CLIENTS: u64 = 100;
/// The performance track's model.
pub const DEFAULT_MODEL: &str = "arnir0/Tiny-LLM";
/// The performance track's `duration_seconds`.
pub const DEFAULT_DURATION_S: f64 = 300.0;
/// Most clients one workload may ask for.
pub const MAX_CLIENTS: u64 = 100_000;

const DESCRIPTION: &str = "Performance testing component for measuring system throughput and \
latency. Workload can be triggered via POST /health/performance/workload. Results retrieved \
via GET /health/performance/results/{run_id}.";

/// The routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health/components", get(components))
        .route("/health/performance/workload", post(workload))
        .route("/health/performance/results/{run_id}", get(results))
        .with_state(state)
}

/// Body of `POST /health/performance/workload`; every field has the performance track's default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Workload {
    num_clients: Option<u64>,
    model_id: Option<String>,
    duration_seconds: Option<f64>,
}

async fn workload(State(s): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    let w: Workload = match json_body(&body) {
        Ok(Some(w)) => w,
        Ok(None) => Workload {
            num_clients: None,
            model_id: None,
            duration_seconds: None,
        },
        Err(r) => return *r,
    };
    let scenario = match scenario(&s, &w) {
        Ok(sc) => sc,
        Err((status, m)) => return error(status, m),
    };
    let duration = scenario.duration;
    let (reply, rx) = oneshot::channel();
    let sent = s
        .events
        .send(Event::Command(Box::new(Command::Start {
            scenario: Some(Box::new(scenario)),
            out: None,
            reply,
        })))
        .await;
    if sent.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "master shutting down");
    }
    match rx.await {
        Ok(Ok(id)) => {
            let done_ms = unix_now_ns() / 1_000_000 + duration.as_millis() as u64;
            (
                StatusCode::ACCEPTED,
                Json(json!({
                    "run_id": id.to_string(),
                    "status": "started",
                    "estimated_completion": rfc3339_seconds(done_ms),
                })),
            )
                .into_response()
        }
        Ok(Err(m)) => error(StatusCode::CONFLICT, m),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "master shutting down"),
    }
}

/// The download scenario of a workload: the master's own if it is a download scenario (its
/// path, checksum, timeout...), else the performance track's endpoint; with the request's clients,
/// model and duration, against the master's target.
fn scenario(s: &ApiState, w: &Workload) -> Result<ScenarioConfig, (StatusCode, String)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let clients = w.num_clients.unwrap_or(DEFAULT_CLIENTS);
    if !(1..=MAX_CLIENTS).contains(&clients) {
        return Err(bad(format!(
            "num_clients: {clients} must be between 1 and {MAX_CLIENTS}"
        )));
    }
    let seconds = w.duration_seconds.unwrap_or(DEFAULT_DURATION_S);
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
        return Err(bad(format!(
            "duration_seconds: {seconds} must be above 0 and at most 86400"
        )));
    }
    let model = w.model_id.as_deref().unwrap_or(DEFAULT_MODEL);
    let target = s
        .target
        .clone()
        .or_else(|| s.scenario.as_ref().map(|sc| sc.target.to_string()))
        .ok_or_else(|| {
            (
                StatusCode::CONFLICT,
                "the master has no target: start it with --target URL (or builtin:registry)"
                    .to_string(),
            )
        })?;
    let q = |v: &str| toml::Value::String(v.to_string()).to_string();
    let text = format!(
        "name = \"performance\"\ntarget = {}\nkind = \"download\"\nduration = \"{}ms\"\n\
         [load]\nmodel = \"simultaneous\"\nusers = {clients}\nmode = \"once\"\n\
         [download]\nmodel_id = {}\n",
        q(&target),
        (seconds * 1000.0).round() as u64,
        q(model)
    );
    let fresh: ScenarioFile =
        toml::from_str(&text).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let file = match s.scenario.as_ref().filter(|sc| sc.kind == Kind::Download) {
        Some(base) => {
            let mut file = base.file.clone();
            let mut download = file.download.take().unwrap_or_default();
            download.model_id = model.to_string();
            file.download = Some(download);
            file.load = fresh.load;
            file.duration = fresh.duration;
            file.target = target;
            file
        }
        None => fresh,
    };
    ScenarioConfig::from_file(file, "<workload>")
        .and_then(|c| c.with_overrides(&Overrides::default()))
        .map_err(|e| bad(workload_error(&e)))
}

/// A scenario error in the workload's words (`download.model_id` is the request's `model_id`).
fn workload_error(e: &stampede_scenarios::ScenarioError) -> String {
    let field = match e.field.as_deref() {
        Some("download.model_id") => "model_id",
        Some("load.users") => "num_clients",
        Some("duration") => "duration_seconds",
        Some(other) => other,
        None => "workload",
    };
    format!("{field}: {}", e.message)
}

async fn results(State(s): State<ApiState>, Path(run_id): Path<String>) -> Response {
    let not_found = || error(StatusCode::NOT_FOUND, format!("no run {run_id}"));
    let Ok(id) = run_id.trim().parse::<u64>() else {
        return not_found();
    };
    if let Some(doc) = s.archive.document(id) {
        let mut answer = json!({
            "run_id": run_id,
            "status": doc["status"].as_str().unwrap_or("completed"),
            "started_at": doc["started_at"],
            "completed_at": doc["completed_at"],
            "metrics": doc["metrics"],
        });
        if answer["status"] == "failed" {
            answer["error"] = doc["stop_reason"].clone();
        }
        return Json(answer).into_response();
    }
    let snap = s.snapshots.borrow().clone();
    match snap.run.as_ref().filter(|r| r.id == id) {
        Some(run) => {
            let now_ms = unix_now_ns() / 1_000_000;
            let started = (run.elapsed_s > 0.0)
                .then(|| rfc3339_seconds(now_ms.saturating_sub((run.elapsed_s * 1000.0) as u64)));
            Json(json!({
                "run_id": run_id,
                "status": "running",
                "started_at": started,
                "completed_at": null,
                "metrics": null,
                "progress": {
                    "state": run.state,
                    "elapsed_s": run.elapsed_s,
                    "duration_s": run.duration_s,
                    "clients": run.users,
                    "total_requests": run.total.requests,
                    "failures": run.total.failures,
                    "total_bytes": run.total.bytes,
                },
            }))
            .into_response()
        }
        None => not_found(),
    }
}

async fn components(State(s): State<ApiState>) -> Response {
    let docs: Vec<std::sync::Arc<Value>> = s
        .archive
        .ids()
        .into_iter()
        .filter_map(|id| s.archive.document(id))
        .filter(|d| d["kind"].as_str().and_then(|k| k.parse().ok()) == Some(Kind::Download))
        .collect();
    let completed = docs.iter().filter(|d| d["status"] == "completed").count();
    let latest = docs.last();
    let figure = |pick: &dyn Fn(&Value) -> Option<f64>| latest.and_then(|d| pick(d));
    let metrics = json!({
        "latest_run_id": latest.and_then(|d| d["run_id"].as_u64()).map(|id| id.to_string()),
        "latest_throughput_mbps": figure(&|d| d["metrics"]["throughput"]["bytes_per_second"]
            .as_f64()
            .map(|b| b / MEGABYTE)),
        "latest_p99_latency_ms": figure(&|d| d["metrics"]["latency"]["p99_ms"].as_f64()),
        "latest_mean_latency_ms": figure(&|d| d["metrics"]["latency"]["mean_ms"].as_f64()),
        "latest_median_latency_ms": figure(&|d| d["metrics"]["latency"]["median_ms"].as_f64()),
        "latest_success_rate": figure(&|d| d["metrics"]["error_rate"]
            .as_f64()
            .map(|e| 100.0 * (1.0 - e))),
        "total_runs_completed": completed,
        "last_run_started_at": latest.map(|d| d["started_at"].clone()),
        "last_run_completed_at": latest.map(|d| d["completed_at"].clone()),
    });
    let status = match latest {
        Some(d) if d["status"] == "failed" => "degraded",
        _ => "ok",
    };
    let snap = s.snapshots.borrow().clone();
    let connected = snap
        .workers
        .iter()
        .filter(|w| w.state != WorkerState::Lost)
        .count();
    Json(json!({
        "components": [
            {
                "id": "performance",
                "status": status,
                "display_name": "Performance Testing",
                "description": DESCRIPTION,
                "metrics": metrics,
            },
            {
                "id": "load_workers",
                "status": if connected > 0 { "ok" } else { "down" },
                "display_name": "Load Generation Workers",
                "description": "Stampede workers connected to this master; workloads run on them.",
                "metrics": { "connected": connected },
            },
        ]
    }))
    .into_response()
}
