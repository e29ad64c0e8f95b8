//! The master's HTTP API (`--api ADDR`): `/metrics` for Prometheus and a small JSON API to
//! list workers and start, watch and stop runs.
//!
//! Reads only the published snapshot and the archive of finished runs; changes go to the
//! coordinator as commands. Every request that starts, stops or changes a run needs the token
//! (`Authorization: Bearer <token>`, or HTTP Basic with the token as password, which Locust's
//! clients can send); reads do not. The Locust-compatible routes of [`crate::compat`] and the
//! health API of [`crate::health`] are merged in.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use serde_json::json;
use stampede_scenarios::{Arrival, Overrides, ScenarioConfig};
use tokio::sync::{mpsc, oneshot, watch};

use crate::coordinator::{Archive, Command, Event};
use crate::metrics::Exporter;
use crate::snapshot::{RunView, Snapshot};

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
    /// Where finished runs are kept (`<runs_dir>/<run_id>/`): `GET /run`'s result file goes
    /// into its run's directory there when there is no `--out`.
    pub runs_dir: Option<PathBuf>,
    /// The master's `--target`, for runs the API builds (the health workload).
    pub target: Option<String>,
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
        .merge(crate::compat::router(state.clone()))
        .merge(crate::health::router(state))
}

/// A JSON error answer: `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The token a request presents: `Authorization: Bearer <token>`, or `Basic` credentials
/// whose password is the token (any user name), as Locust's clients and browsers send.
fn presented_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    if let Some(t) = value.strip_prefix("Bearer ") {
        return Some(t.trim().to_string());
    }
    let decoded = BASIC_CREDENTIALS
        .decode(value.strip_prefix("Basic ")?.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_string())
}

/// Check the token of a request that starts, stops or changes a run: 401 without it or with
/// another (with `WWW-Authenticate`, so a browser or Locust client can ask for it).
pub(crate) fn authorized(state: &ApiState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let refuse = |m: &str| {
        let mut r = error(StatusCode::UNAUTHORIZED, m);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer, Basic realm=\"stampede\""),
        );
        Err(Box::new(r))
    };
    match presented_token(headers) {
        Some(t) if t.as_bytes() == state.token.as_bytes() => Ok(()),
        Some(_) => refuse("wrong token"),
        None => refuse(
            "this endpoint needs the master's token: `Authorization: Bearer <token>` (or HTTP \
             Basic auth with the token as password)",
        ),
    }
}

/// Parse a JSON request body: `Ok(None)` when empty, 400 naming the reason when it is not
/// valid JSON or not the expected shape.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<Option<T>, Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {e}"),
        ))
    })
}

/// Standard base64 with or without padding, as browsers and Locust's clients send Basic
/// credentials.
const BASIC_CREDENTIALS: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

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
    if let Some(run) = live.filter(|r| r.state != "finished" && !ids.contains(&r.id)) {
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
    /// Gamma arrivals of this shape (open models).
    pub(crate) burstiness: Option<f64>,
    pub(crate) target: Option<String>,
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
        burstiness: b.burstiness,
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
    let config = base.with_overrides(&overrides).map_err(|e| e.to_string())?;
    if b.burstiness.is_some() && !config.load.is_open() {
        return Err(
            "`burstiness` shapes open-model arrivals; this run's load is closed (give `rate` too)"
                .into(),
        );
    }
    Ok(Some(config))
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

    /// Basic credentials decode with or without padding; the password is the token.
    #[test]
    fn basic_credentials_give_the_password() {
        let token = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            presented_token(&headers)
        };
        // "locust:t" and "u:secret".
        assert_eq!(token("Basic bG9jdXN0OnQ="), Some("t".into()));
        assert_eq!(token("Basic bG9jdXN0OnQ"), Some("t".into()));
        assert_eq!(token("Basic dTpzZWNyZXQ="), Some("secret".into()));
        assert_eq!(token("Bearer abc "), Some("abc".into()));
        assert_eq!(token("Basic not*base64"), None);
        assert_eq!(token("Basic bm9jb2xvbg=="), None, "no colon");
    }

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
        live.state = "stopping".into();
        let list = run_list(&archive, Some(&live));
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!(list[0]["status"], "completed");
        assert_eq!(list[0]["total_requests"], 4);
        live.id = 8;
        let list = run_list(&archive, Some(&live));
        let ids: Vec<_> = list.iter().map(|r| r["run_id"].as_u64()).collect();
        assert_eq!(ids, [Some(7), Some(8)]);
        assert_eq!(list[1]["status"], "stopping");
        live.state = "finished".into();
        assert_eq!(run_list(&archive, Some(&live)).len(), 1);
        assert_eq!(run_list(&archive, None).len(), 1);
    }
}
