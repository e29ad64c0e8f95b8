//! Locust's control API on the master's HTTP API, so tools written for Locust keep working
//! against Stampede: `POST /swarm`, `GET /stop`, `GET /stats/requests` (+ `/csv`), the
//! `GET /stats/custom_metrics` of ai-on-gke's Locust benchmark, and its `locust-runner`'s
//! `GET /run`. The HTTP API merges these routes next to its own.
//!
//! A translation layer only: it reads the published snapshot and the archive of finished runs,
//! changes runs through coordinator commands, and keeps no statistics of its own, so
//! `GET /stats/reset` answers 501 (a run's figures cannot be reset; start a new run).
//!
//! Security: the routes that start, stop or change a run (`/swarm`, `/stop`, `/run`) need the
//! master's token like `/api/runs`: `Authorization: Bearer <token>`, or HTTP Basic auth with the
//! token as the password, which Locust's clients and browsers send when the URL carries it
//! (`http://locust:TOKEN@host:8089`). A client that sends nothing gets 401 with
//! `WWW-Authenticate`. The statistics routes stay open, as reads are everywhere.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use stampede_scenarios::spec::{Role, Specs};
use stampede_scenarios::{LoadModel, ScenarioConfig};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::api_state::{ApiState, StartBody, authorized, scenario_for};
use crate::coordinator::{Command, UNTIL_STOPPED};
use crate::results::csv::{CSV_EOL, STATS_CSV_HEADER, csv_row, py_float};
use crate::results::dates::utc_datetime;
use crate::results::per_second;
use crate::snapshot::{Exported, MetricView, NameView, RunView, Snapshot, WorkerView};
use crate::state::{RunState, WorkerState};
use crate::summary::{AGGREGATED, LOCUST_PERCENTILES, NameStats, RunSummary};

/// How long `/swarm` and `/run` wait for a run that is stopping to finish before starting the
/// next (Locust's tools call `/stop` then `/swarm` at once; a run takes up to the stop grace
/// to collect its final reports).
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// The routes of Locust's web API and of ai-on-gke's `locust-runner`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/swarm", post(swarm))
        .route("/stop", get(stop))
        .route("/stats/requests", get(stats_requests))
        .route("/stats/requests/csv", get(stats_requests_csv))
        .route("/stats/reset", get(stats_reset))
        .route("/stats/custom_metrics", get(custom_metrics))
        .route("/run", get(run))
        .with_state(Compat {
            api: state,
            swarmed: Arc::new(Mutex::new(None)),
        })
}

/// What the handlers share.
#[derive(Clone)]
struct Compat {
    api: ApiState,
    /// The run `/swarm` or `/run` started last: a later `/swarm` while it runs divides its
    /// `user_count` by this run's users to get the coordinator's scale. A `std` mutex: held
    /// for a clone, never across an await.
    swarmed: Arc<Mutex<Option<Swarmed>>>,
}

/// A closed-model run started here.
#[derive(Debug, Clone)]
struct Swarmed {
    run_id: u64,
    /// Its users at scale 1.0.
    users: u64,
    /// Its target (Locust's `host`).
    host: String,
}

impl Compat {
    /// What this module started run `run_id` with, if it did.
    fn swarmed(&self, run_id: u64) -> Option<Swarmed> {
        // A poisoned lock only means a handler panicked; the value is plain data.
        let slot = self.swarmed.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().filter(|s| s.run_id == run_id).cloned()
    }

    fn remember(&self, started: Swarmed) {
        *self.swarmed.lock().unwrap_or_else(|p| p.into_inner()) = Some(started);
    }

    /// The user count a run's scale 1.0 stands for: what `/swarm` or `/run` started it with,
    /// else the master's scenario's (the run was auto-started or started by `/api/runs`).
    fn base_users(&self, run_id: u64) -> Result<u64, String> {
        if let Some(s) = self.swarmed(run_id) {
            return Ok(s.users);
        }
        match self.api.scenario.as_ref().map(|s| &s.load) {
            Some(LoadModel::Closed { users, .. }) if *users > 0 => Ok(*users),
            _ => Err(format!(
                "run {run_id} was not started with /swarm and the master's scenario is not a \
                 closed model, so its user count cannot be changed; stop it first"
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Control: /swarm, /stop, /run

/// `POST /swarm`, form-encoded like Locust's: `user_count` (required), `spawn_rate`, `host`,
/// `run_time` (`20`, `20s`, `1h30m`). Starts a closed-model run of the master's scenario that
/// lasts `run_time`, or without it (as in Locust) until `GET /stop`, whatever the scenario's
/// duration; while a run is going on, sets its user count live through the coordinator's
/// scale instead (`spawn_rate`, `host` and `run_time` then apply to the next run only).
async fn swarm(State(c): State<Compat>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = authorized(&c.api, &headers) {
        return *r;
    }
    let form = Params::parse(&String::from_utf8_lossy(&body));
    let request = match SwarmRequest::from_form(&form) {
        Ok(r) => r,
        Err(m) => return failure(StatusCode::BAD_REQUEST, m),
    };
    let snap = c.api.snapshots.borrow().clone();
    if let Some(run) = snap.run.as_ref().filter(|r| is_live(r)) {
        return rescale(&c, run, request.user_count).await;
    }
    let until_stopped = || {
        let text = stampede_scenarios::units::format_duration(UNTIL_STOPPED);
        (text, UNTIL_STOPPED)
    };
    let options = StartOptions {
        users: Some(request.user_count),
        spawn_rate: request.spawn_rate,
        host: request.host,
        duration: Some(request.run_time.clone().unwrap_or_else(until_stopped)),
    };
    match start(&c, options).await {
        Ok(started) => {
            let mut answer = json!({
                "success": true,
                "message": "Swarming started",
                "host": started.scenario.target.to_string(),
                "run_id": started.run_id,
            });
            if let Some((_, d)) = request.run_time {
                answer["run_time"] = json!(d.as_secs_f64());
            }
            Json(answer).into_response()
        }
        Err((status, m)) => failure(status, m),
    }
}

/// `user_count` of a `/swarm` request for the run going on: scale = user_count / its base.
async fn rescale(c: &Compat, run: &RunView, user_count: u64) -> Response {
    let base = match c.base_users(run.id) {
        Ok(b) => b,
        Err(m) => return failure(StatusCode::CONFLICT, m),
    };
    let scale = user_count as f64 / base as f64;
    match command(c, |reply| Command::Scale { scale, reply }).await {
        Ok(()) => {
            info!(
                run = run.id,
                user_count, scale, "user count set through /swarm"
            );
            let host = c
                .swarmed(run.id)
                .map(|s| s.host)
                .or_else(|| c.api.scenario.as_ref().map(|s| s.target.to_string()));
            Json(json!({
                "success": true,
                "message": "Swarming started",
                "host": host,
                "run_id": run.id,
                "note": format!(
                    "run {} now runs {user_count} users (scale {scale}); spawn_rate, host and \
                     run_time apply to the next run only", run.id
                ),
            }))
            .into_response()
        }
        Err((status, m)) => failure(status, m),
    }
}

/// `GET /stop`: stop the run going on. Like Locust, the answer is the same when none is.
async fn stop(State(c): State<Compat>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&c.api, &headers) {
        return *r;
    }
    let snap = c.api.snapshots.borrow().clone();
    if let Some(run) = snap.run.as_ref().filter(|r| r.state != RunState::Finished) {
        let run_id = run.id;
        // "Not going on" means it ended meanwhile: stopped either way.
        if let Err((StatusCode::SERVICE_UNAVAILABLE, m)) =
            command(&c, |reply| Command::Stop { run_id, reply }).await
        {
            return failure(StatusCode::SERVICE_UNAVAILABLE, m);
        }
    }
    Json(json!({ "success": true, "message": "Test stopped" })).into_response()
}

/// `GET /run?duration=&users=&rate=`, ai-on-gke's `locust-runner`: start a timed run and answer at
/// once; when it finishes, write `locust-run-<id>.json` ([`result_dir`]). As in the runner, `rate`
/// is the spawn rate (users started per second), not an arrival rate, and `duration` is in seconds
/// (Locust's `1h30m` syntax works too). Each is optional: the master's scenario gives what is
/// missing.
async fn run(State(c): State<Compat>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    if let Err(r) = authorized(&c.api, &headers) {
        return *r;
    }
    let options = match run_options(&Params::parse(query.as_deref().unwrap_or(""))) {
        Ok(o) => o,
        Err(m) => return failure(StatusCode::BAD_REQUEST, m),
    };
    let snap = c.api.snapshots.borrow().clone();
    if let Some(run) = snap.run.as_ref().filter(|r| is_live(r)) {
        return failure(
            StatusCode::CONFLICT,
            format!("run {} is going on; stop it first (GET /stop)", run.id),
        );
    }
    let started = match start(&c, options).await {
        Ok(s) => s,
        Err((status, m)) => return failure(status, m),
    };
    let path =
        result_dir(&c.api, started.run_id).join(format!("locust-run-{}.json", started.run_id));
    let (users, rate) = match started.scenario.load {
        LoadModel::Closed { users, spawn_rate } => {
            (Some(users), spawn_rate.is_finite().then_some(spawn_rate))
        }
        _ => (None, None),
    };
    let record = RunRecord {
        run_id: started.run_id,
        duration_s: started.scenario.duration.as_secs_f64(),
        users,
        rate,
        path: path.clone(),
    };
    // Not tracked by the master's shutdown: it ends when the run is archived or when the
    // coordinator is gone (the snapshot channel closes).
    tokio::spawn(write_when_finished(c.api.clone(), record));
    Json(json!({
        "message": "Swarming started",
        "run_id": started.run_id,
        "result_file": path.display().to_string(),
    }))
    .into_response()
}

/// Where `/run` writes run `run_id`'s result file: `--out`, else the run's own directory
/// among the kept runs (`$XDG_DATA_HOME/stampede/runs/<id>/` for `stampede master --api`
/// without `--out`), else (a master that keeps no runs) the temp dir.
fn result_dir(api: &ApiState, run_id: u64) -> PathBuf {
    match (&api.out, &api.runs_dir) {
        (Some(out), _) => out.clone(),
        (None, Some(runs)) => runs.join(run_id.to_string()),
        (None, None) => std::env::temp_dir().join("stampede-locust-runner"),
    }
}

/// The overrides of a `/run` query.
fn run_options(params: &Params) -> Result<StartOptions, String> {
    Ok(StartOptions {
        users: params.number::<u64>("users", "a whole number of users")?,
        spawn_rate: params.number::<f64>("rate", "users started per second")?,
        host: None,
        duration: params.duration("duration")?,
    })
}

/// What `/run` asked for, written into the result file with the run's figures.
struct RunRecord {
    run_id: u64,
    duration_s: f64,
    users: Option<u64>,
    rate: Option<f64>,
    path: PathBuf,
}

/// Wait for the run to be archived, then write the result file.
async fn write_when_finished(api: ApiState, record: RunRecord) {
    let mut snapshots = api.snapshots.clone();
    let summary = loop {
        // The coordinator archives a run before publishing the snapshot that shows it
        // finished, so checking before each wait misses nothing.
        if let Some(s) = api.archive.get(record.run_id) {
            break s;
        }
        if snapshots.changed().await.is_err() {
            match api.archive.get(record.run_id) {
                Some(s) => break s,
                None => {
                    warn!(
                        run = record.run_id,
                        "the master stopped before the run finished; no result file"
                    );
                    return;
                }
            }
        }
    };
    let snap = snapshots.borrow().clone();
    let view = snap.run.as_ref().filter(|v| v.id == record.run_id);
    let table = Table::finished(&snap, view, &summary);
    let document = json!({
        "run_id": summary.run_id,
        "scenario": summary.scenario,
        "target": summary.target,
        "test_duration_s": record.duration_s,
        // As in ai-on-gke's runner, the test ends when load stops (its `stop` call); the requests
        // in flight then, which the run waited for, are in the figures.
        "test_start": utc_datetime(summary.started_unix_ms),
        "test_end": utc_datetime(summary.stopped_unix_ms),
        "test_start_unix_ms": summary.started_unix_ms,
        "test_end_unix_ms": summary.stopped_unix_ms,
        "elapsed_s": summary.load_s(),
        "users": record.users,
        "rate": record.rate,
        "stop_reason": summary.stop_reason,
        "stats": table.rows.iter().map(Row::json).collect::<Vec<_>>(),
        "errors": table.errors,
        "stats_csv": table.csv(),
        "custom_metrics": table.custom_metrics(),
    });
    let text = match serde_json::to_string_pretty(&document) {
        Ok(t) => t + "\n",
        Err(e) => {
            warn!("serializing {}: {e}", record.path.display());
            return;
        }
    };
    let written = async {
        if let Some(dir) = record.path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::write(&record.path, text).await
    };
    match written.await {
        Ok(()) => {
            info!(run = record.run_id, path = %record.path.display(), "locust-runner result written")
        }
        Err(e) => warn!("writing {}: {e}", record.path.display()),
    }
}

/// A `/swarm` form, checked.
struct SwarmRequest {
    user_count: u64,
    spawn_rate: Option<f64>,
    host: Option<String>,
    /// As written (passed on to the scenario) and parsed (for the answer).
    run_time: Option<(String, Duration)>,
}

impl SwarmRequest {
    fn from_form(form: &Params) -> Result<SwarmRequest, String> {
        let user_count = form
            .number::<u64>("user_count", "a whole number of users")?
            .ok_or(
                "`user_count` is required: send the form field user_count=<users> \
                 (application/x-www-form-urlencoded, as Locust takes it)",
            )?;
        if user_count == 0 {
            return Err("`user_count` must be at least 1 (GET /stop stops a run)".into());
        }
        let run_time = match form.text("run_time") {
            Some(text) => Some((text.to_string(), parse_timespan("run_time", text)?)),
            None => None,
        };
        Ok(SwarmRequest {
            user_count,
            spawn_rate: form.number::<f64>("spawn_rate", "users started per second")?,
            // Locust strips `<` and `>` from the host; a URL never holds them anyway.
            host: form.text("host").map(|h| h.replace(['<', '>'], "")),
            run_time,
        })
    }
}

/// Overrides of the master's scenario for a new run.
struct StartOptions {
    users: Option<u64>,
    spawn_rate: Option<f64>,
    host: Option<String>,
    duration: Option<(String, Duration)>,
}

/// A run this module started.
struct Started {
    run_id: u64,
    scenario: ScenarioConfig,
}

/// Start a run of the master's scenario with `o` applied, after a stopping run has finished.
async fn start(c: &Compat, o: StartOptions) -> Result<Started, (StatusCode, String)> {
    if c.api.scenario.is_none() {
        return Err((
            StatusCode::CONFLICT,
            "the master has no scenario to run: start it with --scenario".into(),
        ));
    }
    let body = StartBody {
        users: o.users,
        spawn_rate: o.spawn_rate,
        target: o.host,
        duration: o.duration.map(|(text, _)| text),
        ..StartBody::default()
    };
    let scenario = match scenario_for(&c.api, &body) {
        Ok(Some(s)) => s,
        Ok(None) => return Err((StatusCode::BAD_REQUEST, "the master has no scenario".into())),
        Err(m) => return Err((StatusCode::BAD_REQUEST, m)),
    };
    let mut snapshots = c.api.snapshots.clone();
    let _ = tokio::time::timeout(
        SETTLE_LIMIT,
        snapshots.wait_for(|s| s.run.as_ref().is_none_or(|r| r.state != RunState::Stopping)),
    )
    .await;
    let boxed = Box::new(scenario.clone());
    let run_id = command(c, |reply| Command::Start {
        scenario: Some(boxed),
        out: None,
        reply,
    })
    .await?;
    if let LoadModel::Closed { users, .. } = scenario.load {
        c.remember(Swarmed {
            run_id,
            users,
            host: scenario.target.to_string(),
        });
    }
    info!(run = run_id, "run started through the Locust API");
    Ok(Started { run_id, scenario })
}

/// Send a command to the coordinator and wait for its answer; a refusal is a 409.
async fn command<T>(
    c: &Compat,
    make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Command,
) -> Result<T, (StatusCode, String)> {
    let gone = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "master shutting down".to_string(),
        )
    };
    let (reply, rx) = oneshot::channel();
    c.api
        .events
        .send(crate::coordinator::Event::Command(Box::new(make(reply))))
        .await
        .map_err(|_| gone())?;
    match rx.await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(m)) => Err((StatusCode::CONFLICT, m)),
        Err(_) => Err(gone()),
    }
}

/// Assigning or running: a run whose user count `/swarm` can change.
fn is_live(run: &RunView) -> bool {
    matches!(run.state.as_str(), "assigning" | "running")
}

/// Locust's error shape, with a status that says what went wrong.
fn failure(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({ "success": false, "message": message.into() })),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// Statistics: /stats/requests, /stats/requests/csv, /stats/custom_metrics

/// `GET /stats/requests`: Locust's JSON for the current or last run.
async fn stats_requests(State(c): State<Compat>) -> Response {
    Json(Table::current(&c.api).json()).into_response()
}

/// `GET /stats/requests/csv`: Locust's `requests` CSV for the current or last run.
async fn stats_requests_csv(State(c): State<Compat>) -> Response {
    let csv = Table::current(&c.api).csv();
    (
        [
            (header::CONTENT_TYPE, "text/csv"),
            (
                header::CONTENT_DISPOSITION,
                "attachment;filename=requests.csv",
            ),
        ],
        csv,
    )
        .into_response()
}

/// `GET /stats/reset`: not supported (the coordinator's figures are the run's own).
async fn stats_reset() -> Response {
    failure(
        StatusCode::NOT_IMPLEMENTED,
        "Stampede cannot reset a run's statistics: stop the run and start a new one",
    )
}

/// `GET /stats/custom_metrics`: the token figures of ai-on-gke's Locust benchmark, from the LLM
/// driver's counters.
async fn custom_metrics(State(c): State<Compat>) -> Response {
    Json(Table::current(&c.api).custom_metrics()).into_response()
}

/// Locust's view of one run: rows per name then "Aggregated", from the exact summary when the
/// run is archived, else from the live snapshot (its run-so-far percentiles and failures).
struct Table {
    /// Locust's runner state: `ready`, `spawning`, `running`, `stopping`, `stopped`.
    state: &'static str,
    /// Users running now (0 once stopped, as in Locust).
    user_count: u64,
    /// Per name, sorted by name as Locust sorts them, then the aggregate.
    rows: Vec<Row>,
    /// Locust's `errors`: one per request name and failure kind, with its occurrences so far.
    errors: Vec<Value>,
    /// Seconds since load started.
    elapsed_s: f64,
    /// Locust's `workers`: id (our name), state in Locust's words, user count.
    workers: Vec<Value>,
    /// The aggregate's prompt and output tokens and time to first token (by their specs'
    /// roles), for the custom metrics.
    tokens: (u64, u64),
    ttft: Option<MetricView>,
}

impl Table {
    fn current(api: &ApiState) -> Table {
        let snap = api.snapshots.borrow().clone();
        match &snap.run {
            None => Table::ready(&snap),
            Some(view) => match api
                .archive
                .get(view.id)
                .filter(|_| view.state == RunState::Finished)
            {
                Some(summary) => Table::finished(&snap, Some(view), &summary),
                None => Table::live(&snap, view),
            },
        }
    }

    fn ready(snap: &Snapshot) -> Table {
        Table {
            state: "ready",
            user_count: 0,
            rows: vec![Row::empty()],
            errors: Vec::new(),
            elapsed_s: 0.0,
            workers: workers(snap, None),
            tokens: (0, 0),
            ttft: None,
        }
    }

    fn live(snap: &Snapshot, view: &RunView) -> Table {
        let mut rows: Vec<Row> = view
            .names
            .iter()
            .map(|n| Row::of_view(n, view.elapsed_s))
            .collect();
        sort(&mut rows);
        rows.push(Row::of_view(&view.total, view.elapsed_s));
        let (state, user_count) = match view.state.as_str() {
            "assigning" => ("spawning", view.users),
            "running" => ("running", view.users),
            "stopping" => ("stopping", view.users),
            _ => ("stopped", 0),
        };
        let errors = view
            .failures
            .iter()
            .map(|f| error_json(&f.kind, &f.name, &f.error, f.occurrences))
            .collect();
        Table {
            state,
            user_count,
            rows,
            errors,
            elapsed_s: view.elapsed_s,
            workers: workers(snap, Some(view)),
            tokens: tokens(&view.specs, &view.total.counters),
            ttft: view
                .specs
                .name_of(Role::TimeToFirstToken)
                .and_then(|name| view.total.metrics.get(name))
                .cloned(),
        }
    }

    /// An archived run; `view` (its last live view, if still published) gives current rates.
    /// Rates are over the time load ran (Locust's), not the wait for the requests in flight.
    fn finished(snap: &Snapshot, view: Option<&RunView>, summary: &RunSummary) -> Table {
        let duration = summary.load_s();
        let rates = |name: &str| {
            view.and_then(|v| {
                v.names
                    .iter()
                    .chain([&v.total])
                    .find(|n| n.name == name)
                    .map(|n| (n.rps, n.fps))
            })
            .unwrap_or((0.0, 0.0))
        };
        let mut rows: Vec<Row> = summary
            .stats
            .iter()
            .map(|s| Row::of_stats(s, duration, rates(&s.name)))
            .collect();
        sort(&mut rows);
        rows.push(Row::of_stats(&summary.total, duration, rates(AGGREGATED)));
        let errors = summary
            .failures
            .iter()
            .map(|f| error_json(&f.kind, &f.name, &f.error, f.occurrences))
            .collect();
        Table {
            state: "stopped",
            user_count: 0,
            rows,
            errors,
            elapsed_s: duration,
            workers: workers(snap, None),
            tokens: tokens(&summary.specs, &summary.total.counters),
            ttft: summary
                .specs
                .name_of(Role::TimeToFirstToken)
                .and_then(|name| {
                    let h = summary.total.metrics.get(name)?;
                    Some(MetricView::of(Exported::of_metric(&summary.specs, name), h))
                }),
        }
    }

    fn total(&self) -> &Row {
        // The invariant: every constructor ends the rows with the aggregate.
        self.rows
            .last()
            .expect("the aggregate row is always present")
    }

    /// Locust's `/stats/requests` document.
    fn json(&self) -> Value {
        let total = self.total();
        let worker_count = self
            .workers
            .iter()
            .filter(|w| w["state"] != "missing")
            .count();
        json!({
            "stats": self.rows.iter().map(Row::json).collect::<Vec<_>>(),
            "errors": self.errors,
            "total_rps": total.current_rps,
            "total_fail_per_sec": total.current_fps,
            "fail_ratio": ratio(total.failures, total.requests),
            // Over the run so far (Locust's are over its last 10 seconds).
            "current_response_time_percentiles": {
                "response_time_percentile_0.5": total.median_ms,
                "response_time_percentile_0.95": total.p95_ms,
            },
            "state": self.state,
            "user_count": self.user_count,
            "worker_count": worker_count,
            "workers": self.workers,
        })
    }

    /// Locust's requests CSV (`results::STATS_CSV_HEADER`), quoted as Python's `csv` does.
    fn csv(&self) -> String {
        let mut out = format!("{STATS_CSV_HEADER}{CSV_EOL}");
        for row in &self.rows {
            let mut fields = vec![
                if row.is_aggregate() {
                    String::new()
                } else {
                    row.kind.clone()
                },
                row.name.clone(),
                row.requests.to_string(),
                row.failures.to_string(),
                whole_ms(row.median_ms),
                py_float(row.mean_ms),
                row.min_ms.map_or_else(String::new, py_float),
                py_float(row.max_ms),
                if row.requests == 0 {
                    "0".into()
                } else {
                    py_float(row.avg_content_length)
                },
                py_float(row.total_rps),
                py_float(row.total_fps),
            ];
            for p in &row.percentiles_ms {
                fields.push(match p {
                    _ if row.requests == 0 => "N/A".into(),
                    Some(ms) => whole_ms(*ms),
                    None => String::new(),
                });
            }
            csv_row(&mut out, &fields);
        }
        out
    }

    /// The `/stats/custom_metrics` fields of ai-on-gke's Locust benchmark (averages per successful
    /// request, times in seconds as it measures them), then totals under its worker-report names.
    fn custom_metrics(&self) -> Value {
        let total = self.total();
        let (sent, received) = self.tokens;
        let successes = total.requests.saturating_sub(total.failures);
        let per_success = |n: u64| ratio(n, successes);
        let test_time_s = if successes == 0 {
            0.0
        } else {
            total.mean_ms / 1000.0
        };
        // The Locust benchmark averages received/time per request; without per-request figures this
        // is the ratio of the averages.
        let output_token_latency = if test_time_s > 0.0 {
            per_success(received) / test_time_s
        } else {
            0.0
        };
        let ttft_s = self.ttft.as_ref().map_or(0.0, |m| m.mean_ms / 1000.0);
        json!({
            "average-tokens-sent": per_success(sent),
            "average-tokens-received": per_success(received),
            "average-output-token-latency": output_token_latency,
            "average-test-time": test_time_s,
            "average-time-to-first-token": ttft_s,
            "tokens-sent": sent,
            "tokens-received": received,
            "test-time": self.elapsed_s,
            "success-count": successes,
            "failure-count": total.failures,
            "time-to-first-token-ms": self.ttft,
        })
    }
}

/// The prompt and output tokens among `counters`, by the roles of the run's `specs` (0 for a
/// driver that counts none).
fn tokens(specs: &Specs, counters: &BTreeMap<String, u64>) -> (u64, u64) {
    let count = |role| {
        specs
            .name_of(role)
            .and_then(|name| counters.get(name))
            .copied()
            .unwrap_or(0)
    };
    (count(Role::InputTokens), count(Role::OutputTokens))
}

/// One row of Locust's statistics; times in ms.
struct Row {
    kind: String,
    name: String,
    requests: u64,
    failures: u64,
    mean_ms: f64,
    /// The smallest latency (`None` never happens today; kept optional as Locust prints an
    /// empty cell for an unknown figure).
    min_ms: Option<f64>,
    max_ms: f64,
    median_ms: f64,
    p90_ms: f64,
    /// p95 (live: from the snapshot's run-so-far histogram, like the others).
    p95_ms: Option<f64>,
    p99_ms: f64,
    current_rps: f64,
    current_fps: f64,
    /// Over the whole run (Locust's `total_rps`, the CSV's `Requests/s`).
    total_rps: f64,
    total_fps: f64,
    avg_content_length: f64,
    /// At [`LOCUST_PERCENTILES`] (`None`, an empty cell, is never produced today; kept as
    /// Locust prints one for an unknown figure).
    percentiles_ms: [Option<f64>; 11],
}

impl Row {
    fn empty() -> Row {
        Row {
            kind: String::new(),
            name: AGGREGATED.into(),
            requests: 0,
            failures: 0,
            mean_ms: 0.0,
            min_ms: Some(0.0),
            max_ms: 0.0,
            median_ms: 0.0,
            p90_ms: 0.0,
            p95_ms: Some(0.0),
            p99_ms: 0.0,
            current_rps: 0.0,
            current_fps: 0.0,
            total_rps: 0.0,
            total_fps: 0.0,
            avg_content_length: 0.0,
            percentiles_ms: [Some(0.0); 11],
        }
    }

    fn of_view(n: &NameView, elapsed_s: f64) -> Row {
        Row {
            kind: n.kind.clone(),
            name: n.name.clone(),
            requests: n.requests,
            failures: n.failures,
            mean_ms: n.mean_ms,
            min_ms: Some(n.min_ms),
            max_ms: n.max_ms,
            median_ms: n.p50_ms,
            p90_ms: n.p90_ms,
            p95_ms: Some(n.p95_ms),
            p99_ms: n.p99_ms,
            current_rps: n.rps,
            current_fps: n.fps,
            total_rps: per_second(n.requests, elapsed_s),
            total_fps: per_second(n.failures, elapsed_s),
            avg_content_length: ratio(n.bytes, n.requests),
            percentiles_ms: n.percentiles_ms.map(Some),
        }
    }

    fn of_stats(s: &NameStats, duration_s: f64, (current_rps, current_fps): (f64, f64)) -> Row {
        let min_ms = if s.latency.is_empty() {
            0.0
        } else {
            s.latency.min() as f64 / 1000.0
        };
        Row {
            kind: s.kind.clone(),
            name: s.name.clone(),
            requests: s.requests,
            failures: s.failures,
            mean_ms: s.mean_ms(),
            min_ms: Some(min_ms),
            max_ms: s.latency_ms(1.0),
            median_ms: s.latency_ms(0.5),
            p90_ms: s.latency_ms(0.9),
            p95_ms: Some(s.latency_ms(0.95)),
            p99_ms: s.latency_ms(0.99),
            current_rps,
            current_fps,
            total_rps: per_second(s.requests, duration_s),
            total_fps: per_second(s.failures, duration_s),
            avg_content_length: ratio(s.bytes, s.requests),
            percentiles_ms: LOCUST_PERCENTILES.map(|q| Some(s.latency_ms(q))),
        }
    }

    fn is_aggregate(&self) -> bool {
        self.name == AGGREGATED && self.kind.is_empty()
    }

    /// Locust's row: `StatsEntry.to_dict` (2.x) plus the 1.x names of the same figures.
    fn json(&self) -> Value {
        json!({
            // Locust's aggregate has no method (`None`).
            "method": if self.is_aggregate() { Value::Null } else { json!(self.kind) },
            "name": self.name,
            "safe_name": html_escape(&self.name),
            "num_requests": self.requests,
            "num_failures": self.failures,
            "avg_response_time": self.mean_ms,
            "min_response_time": self.min_ms,
            "max_response_time": self.max_ms,
            "current_rps": self.current_rps,
            "current_fail_per_sec": self.current_fps,
            "median_response_time": self.median_ms,
            "ninetieth_response_time": self.p90_ms,
            "ninety_ninth_response_time": self.p99_ms,
            "response_time_percentile_0.95": self.p95_ms,
            "response_time_percentile_0.99": self.p99_ms,
            "total_rps": self.total_rps,
            "total_fail_per_sec": self.total_fps,
            "avg_content_length": self.avg_content_length,
        })
    }
}

/// One entry of Locust's `errors` (`StatsError.to_dict`).
fn error_json(method: &str, name: &str, error: &str, occurrences: u64) -> Value {
    json!({ "method": method, "name": name, "error": error, "occurrences": occurrences })
}

/// Locust sorts its entries by (name, method).
fn sort(rows: &mut [Row]) {
    rows.sort_by(|a, b| (&a.name, &a.kind).cmp(&(&b.name, &b.kind)));
}

/// Locust's `workers` list; users per worker are its share of the run's users.
fn workers(snap: &Snapshot, run: Option<&RunView>) -> Vec<Value> {
    snap.workers
        .iter()
        .map(|w: &WorkerView| {
            let state = match w.state.as_str() {
                "assigned" => "spawning",
                "lost" => "missing",
                other => other,
            };
            let users = match run {
                Some(r) if w.state == WorkerState::Running => {
                    (w.share * r.users as f64).round() as u64
                }
                _ => 0,
            };
            json!({ "id": w.name, "state": state, "user_count": users,
                    "cpu_usage": 0.0, "memory_usage": 0 })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// The pairs of a form body or a query string, `+` and `%XX` decoded.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(text: &str) -> Params {
        Params(
            text.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }

    /// The first value of `key`, trimmed, if not empty (Locust skips an empty `run_time`, and
    /// its web form sends empty fields).
    fn text(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// `key` as a number; the error names the field and what it should be.
    fn number<T: FromStr>(&self, key: &str, what: &str) -> Result<Option<T>, String> {
        self.text(key)
            .map(|v| {
                v.parse::<T>()
                    .map_err(|_| format!("`{key}` must be {what}, got `{v}`"))
            })
            .transpose()
    }

    /// `key` as a duration: seconds, or Locust's timespan (`20s`, `1h30m`).
    fn duration(&self, key: &str) -> Result<Option<(String, Duration)>, String> {
        self.text(key)
            .map(|v| parse_timespan(key, v).map(|d| (v.to_string(), d)))
            .transpose()
    }
}

fn parse_timespan(key: &str, text: &str) -> Result<Duration, String> {
    match stampede_scenarios::units::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "`{key}` `{text}` is not a duration: valid formats are 20, 20s, 3m, 2h, 1h20m, \
             3h30m10s, etc."
        )),
    }
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes.get(i..i + 3) {
            Some([b'%', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some(b), _) => {
                out.push(b);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Escape as Python's `html.escape(s, quote=False)`.
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// ms as Locust writes whole-ms figures.
fn whole_ms(ms: f64) -> String {
    (ms.round() as u64).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_like_urlencoded() {
        let p = Params::parse("user_count=10&spawn_rate=2.5&host=http%3A%2F%2Fa%3A8080&x=a+b&e=");
        assert_eq!(p.text("host"), Some("http://a:8080"));
        assert_eq!(p.text("x"), Some("a b"));
        assert_eq!(p.text("e"), None);
        assert_eq!(p.number::<u64>("user_count", "n").unwrap(), Some(10));
        assert_eq!(p.number::<f64>("spawn_rate", "n").unwrap(), Some(2.5));
        let err = Params::parse("user_count=ten")
            .number::<u64>("user_count", "a whole number")
            .unwrap_err();
        assert!(err.contains("user_count") && err.contains("ten"), "{err}");
        assert_eq!(Params::parse("a=%zz%4").text("a"), Some("%zz%4"));
    }

    #[test]
    fn timespans_are_locusts() {
        assert_eq!(parse_timespan("t", "20").unwrap(), Duration::from_secs(20));
        assert_eq!(
            parse_timespan("t", "1h30m").unwrap(),
            Duration::from_secs(5400)
        );
        assert!(
            parse_timespan("run_time", "soon")
                .unwrap_err()
                .contains("run_time")
        );
    }
}
