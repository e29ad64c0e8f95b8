//! The master's HTTP API (`--api ADDR`): `/metrics` for Prometheus and a small JSON API to
//! list workers and start, watch and stop runs.
//!
//! Reads only the published snapshot and the archive of finished runs; changes go to the
//! coordinator as commands. Requests that start or stop a run need the token
//! (`Authorization: Bearer <token>`); reads do not. The Locust-compatible routes merged from
//! [`crate::compat`] take no token, as Locust's do.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use stampede_scenarios::{Arrival, Overrides, ScenarioConfig};
use tokio::sync::{mpsc, oneshot, watch};

use crate::coordinator::{Archive, Command, Event};
use crate::metrics::Exporter;
use crate::results;
use crate::snapshot::Snapshot;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// Latest snapshot.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// To the coordinator.
    pub events: mpsc::Sender<Event>,
    /// Finished runs.
    pub archive: Arc<Archive>,
    /// The token for changes.
    pub token: Arc<str>,
    /// The master's scenario, the base for `POST /api/runs` overrides.
    pub scenario: Option<ScenarioConfig>,
    /// The Prometheus exporter.
    pub exporter: Arc<Exporter>,
    /// The master's `--out` directory, where `GET /run` (Locust compatibility) writes its
    /// result files.
    pub out: Option<PathBuf>,
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/workers", get(workers))
        .route("/api/runs", get(runs).post(start))
        .route("/api/runs/{id}", get(run))
        .route("/api/runs/{id}/stop", post(stop))
        .with_state(state.clone())
        .merge(crate::compat::router(state))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

fn authorized(state: &ApiState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(t) if t.as_bytes() == state.token.as_bytes() => Ok(()),
        Some(_) => Err(Box::new(error(StatusCode::UNAUTHORIZED, "wrong token"))),
        None => Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs `Authorization: Bearer <token>`",
        ))),
    }
}

async fn metrics(State(s): State<ApiState>) -> Response {
    let snap = s.snapshots.borrow().clone();
    match s.exporter.render(&snap) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}"),
        ),
    }
}

async fn workers(State(s): State<ApiState>) -> Response {
    let snap = s.snapshots.borrow().clone();
    Json(json!({ "workers": snap.workers })).into_response()
}

async fn runs(State(s): State<ApiState>) -> Response {
    let snap = s.snapshots.borrow().clone();
    let mut list: Vec<serde_json::Value> = s
        .archive
        .ids()
        .into_iter()
        .filter_map(|id| s.archive.get(id))
        .map(|r| {
            json!({ "run_id": r.run_id, "scenario": r.scenario, "status": "completed",
                    "total_requests": r.total.requests, "passed": r.passed() })
        })
        .collect();
    if let Some(run) = snap.run.as_ref().filter(|r| r.state != "finished") {
        list.push(
            json!({ "run_id": run.id, "scenario": run.scenario, "status": run.state,
                          "total_requests": run.total.requests }),
        );
    }
    Json(json!({ "runs": list })).into_response()
}

async fn run(State(s): State<ApiState>, Path(id): Path<u64>) -> Response {
    if let Some(summary) = s.archive.get(id) {
        return Json(results::summary_json(&summary)).into_response();
    }
    let snap = s.snapshots.borrow().clone();
    match snap.run.as_ref().filter(|r| r.id == id) {
        Some(view) => {
            Json(json!({ "run_id": id, "status": view.state, "live": view })).into_response()
        }
        None => error(StatusCode::NOT_FOUND, format!("no run {id}")),
    }
}

/// Body of `POST /api/runs`: every field optional; overrides of the master's scenario, or a
/// whole scenario as TOML text.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartBody {
    pub(crate) scenario_toml: Option<String>,
    pub(crate) duration: Option<String>,
    pub(crate) users: Option<u64>,
    pub(crate) spawn_rate: Option<f64>,
    pub(crate) rate: Option<f64>,
    pub(crate) arrival: Option<String>,
    pub(crate) target: Option<String>,
}

async fn start(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Option<Json<StartBody>>,
) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let scenario = match scenario_for(&s, &body) {
        Ok(sc) => sc,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let (reply, rx) = oneshot::channel();
    if s.events
        .send(Event::Command(Box::new(Command::Start {
            scenario: scenario.map(Box::new),
            reply,
        })))
        .await
        .is_err()
    {
        return error(StatusCode::SERVICE_UNAVAILABLE, "master shutting down");
    }
    match rx.await {
        Ok(Ok(id)) => (
            StatusCode::CREATED,
            Json(json!({ "run_id": id, "status": "started" })),
        )
            .into_response(),
        Ok(Err(m)) => error(StatusCode::CONFLICT, m),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "master shutting down"),
    }
}

/// The scenario a start request asks for: the master's (or the body's TOML) with overrides.
pub(crate) fn scenario_for(s: &ApiState, b: &StartBody) -> Result<Option<ScenarioConfig>, String> {
    let arrival = b
        .arrival
        .as_deref()
        .map(str::parse::<Arrival>)
        .transpose()?;
    let duration = b
        .duration
        .as_deref()
        .map(stampede_scenarios::units::parse_duration)
        .transpose()?;
    let overrides = Overrides {
        duration,
        users: b.users,
        spawn_rate: b.spawn_rate,
        rate: b.rate,
        arrival,
        target: b.target.clone(),
        ..Overrides::default()
    };
    let base = match &b.scenario_toml {
        Some(text) => ScenarioConfig::parse(text, "<request body>", &Overrides::default())
            .map_err(|e| e.to_string())?,
        None => match &s.scenario {
            Some(sc) => sc.clone(),
            None => return Err("the master has no scenario: send `scenario_toml`".into()),
        },
    };
    if matches!(base.target, stampede_scenarios::Target::Builtin(_)) && overrides.target.is_none() {
        return Err("the scenario's target is built in; give a `target` URL".into());
    }
    base.with_overrides(&overrides)
        .map(Some)
        .map_err(|e| e.to_string())
}

async fn stop(State(s): State<ApiState>, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    let (reply, rx) = oneshot::channel();
    if s.events
        .send(Event::Command(Box::new(Command::Stop {
            run_id: id,
            reply,
        })))
        .await
        .is_err()
    {
        return error(StatusCode::SERVICE_UNAVAILABLE, "master shutting down");
    }
    match rx.await {
        Ok(Ok(())) => (
            StatusCode::ACCEPTED,
            Json(json!({ "run_id": id, "status": "stopping" })),
        )
            .into_response(),
        Ok(Err(m)) => error(StatusCode::CONFLICT, m),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "master shutting down"),
    }
}
