//! The master's HTTP API (`--api ADDR`): `/metrics` for Prometheus and a small JSON API to
//! list workers and start, watch and stop runs.
//!
//! Reads only the published snapshot and the archive of finished runs; changes go to the
//! coordinator as commands. Every request that starts, stops or changes a run needs the token
//! (`Authorization: Bearer <token>`, or HTTP Basic with the token as password, which Locust's
//! clients can send); reads do not. The Locust-compatible routes of [`crate::compat`] and the
//! health API of [`crate::health`] are merged in.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::oneshot;

pub use crate::api_state::ApiState;
use crate::api_state::{StartBody, authorized, error, json_body, scenario_for};
use crate::coordinator::{Archive, Command, Event};
use crate::snapshot::RunView;
use crate::state::RunState;

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/workers", get(workers))
        .route("/api/runs", get(runs).post(start))
        .route("/api/runs/{id}", get(run))
        .route("/api/runs/{id}/stop", post(stop))
        .with_state(state.clone())
        .merge(crate::compat::router(state.clone()))
        .merge(crate::health::router(state))
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

/// `GET /api/runs`: every finished run kept (also those of earlier lifetimes of this master,
/// read back from its runs directory), oldest first, then the current one.
async fn runs(State(s): State<ApiState>) -> Response {
    let snap = s.snapshots.borrow().clone();
    Json(json!({ "runs": run_list(&s.archive, snap.run.as_ref()) })).into_response()
}

/// The archived runs, oldest first, then `live` unless it has finished or is archived already
/// (its snapshot can still say it is ending when its document has been archived).
fn run_list(archive: &Archive, live: Option<&RunView>) -> Vec<serde_json::Value> {
    let ids = archive.ids();
    let mut list: Vec<serde_json::Value> = ids
        .iter()
        .filter_map(|&id| archive.document(id))
        .map(|d| {
            json!({ "run_id": d["run_id"], "scenario": d["scenario"], "kind": d["kind"],
                    "status": d["status"], "started_at": d["started_at"],
                    "completed_at": d["completed_at"],
                    "total_requests": d["metrics"]["total_requests"], "passed": d["passed"] })
        })
        .collect();
    if let Some(run) = live.filter(|r| r.state != RunState::Finished && !ids.contains(&r.id)) {
        list.push(
            json!({ "run_id": run.id, "scenario": run.scenario, "status": run.state,
                          "total_requests": run.total.requests }),
        );
    }
    list
}

async fn run(State(s): State<ApiState>, Path(id): Path<u64>) -> Response {
    if let Some(doc) = s.archive.document(id) {
        return Json(doc.as_ref().clone()).into_response();
    }
    let snap = s.snapshots.borrow().clone();
    match snap.run.as_ref().filter(|r| r.id == id) {
        Some(view) => {
            Json(json!({ "run_id": id, "status": view.state, "live": view })).into_response()
        }
        None => error(StatusCode::NOT_FOUND, format!("no run {id}")),
    }
}

async fn start(State(s): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorized(&s, &headers) {
        return *r;
    }
    let body: StartBody = match json_body(&body) {
        Ok(b) => b.unwrap_or_default(),
        Err(r) => return *r,
    };
    let scenario = match scenario_for(&s, &body) {
        Ok(sc) => sc,
        Err(m) => return error(StatusCode::BAD_REQUEST, m),
    };
    let (reply, rx) = oneshot::channel();
    if s.events
        .send(Event::Command(Box::new(Command::Start {
            scenario: scenario.map(Box::new),
            out: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A run whose document is archived while its snapshot still says it is ending is listed
    /// once; a live run not yet archived is listed after the archived ones.
    #[test]
    fn a_run_is_listed_once_while_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("7")).unwrap();
        std::fs::write(
            dir.path().join("7/summary.json"),
            r#"{"run_id": 7, "status": "completed", "metrics": {"total_requests": 4}}"#,
        )
        .unwrap();
        let archive = Archive::load(dir.path());
        let mut live = crate::tui::testdata::running().run.unwrap();
        assert_eq!(live.id, 7);
        live.state = RunState::Stopping;
        let list = run_list(&archive, Some(&live));
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0]["status"], "completed");
        assert_eq!(list[0]["total_requests"], 4);
        live.id = 8;
        let list = run_list(&archive, Some(&live));
        let ids: Vec<_> = list.iter().map(|r| r["run_id"].as_u64()).collect();
        assert_eq!(ids, [Some(7), Some(8)]);
        assert_eq!(list[1]["status"], "stopping");
        live.state = RunState::Finished;
        assert_eq!(run_list(&archive, Some(&live)).len(), 1);
        assert_eq!(run_list(&archive, None).len(), 1);
    }
}
