//! A worker's own figures for `stampede worker --metrics ADDR`: the reports the worker sends
//! its master, aggregated here the same way the master does (one worker's share only) and
//! served as `/metrics` with the master's families.
//!
//! Fed by the worker's report tap; knows nothing of the fleet (its `stampede_workers` shows
//! this worker alone). Between runs it keeps the last run's figures, as the master does.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use stampede_protocol::{Report, unix_now_ns};
use stampede_scenarios::Kind;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::aggregate::{Aggregate, DecodedReport};
use crate::metrics::Exporter;
use crate::snapshot::{Buckets, RunView, Snapshot, WorkerView};
use crate::state::{RunState, WorkerState};

/// One worker's runs, aggregated from its own reports.
pub struct OwnFigures {
    name: String,
    run: Option<OwnRun>,
}

struct OwnRun {
    id: u64,
    scenario: String,
    kind: Kind,
    agg: Aggregate,
    started_ms: u64,
    finished: bool,
}

impl OwnFigures {
    /// Figures of the worker called `name`.
    pub fn new(name: &str) -> OwnFigures {
        OwnFigures {
            name: name.to_string(),
            run: None,
        }
    }

    /// Add a report of the run of scenario `scenario` (kind `kind`); a new run id starts
    /// afresh. A report that does not decode is skipped (it was sent to the master as is).
    pub fn apply(&mut self, scenario: &str, kind: Kind, mut report: Report) {
        report.records.clear();
        let now_ms = unix_now_ns() / 1_000_000;
        if self.run.as_ref().is_none_or(|r| r.id != report.run_id) {
            self.run = Some(OwnRun {
                id: report.run_id,
                scenario: scenario.to_string(),
                kind,
                agg: Aggregate::new(&[], now_ms),
                started_ms: now_ms,
                finished: false,
            });
        }
        let Ok(decoded) = DecodedReport::decode(report) else {
            return;
        };
        let Some(run) = self.run.as_mut() else {
            return;
        };
        run.agg.apply(0, &decoded);
        run.agg.tick(now_ms);
        run.finished |= decoded.last;
    }

    /// The figures as a snapshot: this worker alone in the fleet, its run.
    pub fn snapshot(&self) -> Snapshot {
        let Some(run) = &self.run else {
            return Snapshot {
                workers: vec![self.worker(WorkerState::Ready, 0, Default::default())],
                run: None,
            };
        };
        let totals = run.agg.workers().get(&0).cloned().unwrap_or_default();
        let specs = run.kind.specs();
        let (names, total, failures) = crate::coordinator::figures(&run.agg, &specs);
        let state = if run.finished {
            RunState::Finished
        } else {
            RunState::Running
        };
        let now_ms = unix_now_ns() / 1_000_000;
        Snapshot {
            workers: vec![self.worker(
                if run.finished {
                    WorkerState::Ready
                } else {
                    WorkerState::Running
                },
                totals.requests,
                totals.gauges.clone(),
            )],
            run: Some(RunView {
                id: run.id,
                scenario: run.scenario.clone(),
                kind: run.kind,
                load: String::new(),
                state,
                elapsed_s: now_ms.saturating_sub(run.started_ms) as f64 / 1000.0,
                duration_s: 0.0,
                users: if run.finished { 0 } else { totals.users },
                target_rate: if run.finished {
                    0.0
                } else {
                    totals.target_rate
                },
                scale: 1.0,
                intervals: run.agg.history().len() as u64,
                names,
                total,
                failures,
                events: Vec::new(),
                stop_reason: None,
                status: None,
                schedule_lag: run.agg.lag().map_or_else(Buckets::default, Buckets::time),
                specs,
            }),
        }
    }

    fn worker(
        &self,
        state: WorkerState,
        requests: u64,
        gauges: std::collections::BTreeMap<String, f64>,
    ) -> WorkerView {
        WorkerView {
            id: 0,
            name: self.name.clone(),
            addr: String::new(),
            cores: 0,
            state,
            share: 0.0,
            requests,
            rps: 0.0,
            last_seen_s: 0.0,
            clock_offset_ms: 0.0,
            gauges,
        }
    }
}

/// A report the worker sent, with its run's scenario name and kind.
#[derive(Debug, Clone)]
pub struct OwnReport {
    /// The scenario's name.
    pub scenario: String,
    /// The scenario's kind.
    pub kind: Kind,
    /// The report.
    pub report: Report,
}

/// Serve `GET /metrics` on `addr` with the figures of the reports arriving on `reports`,
/// until `stop`. Returns the bound address once listening; the serving goes on in a task.
pub async fn serve(
    addr: SocketAddr,
    name: &str,
    mut reports: mpsc::UnboundedReceiver<OwnReport>,
    stop: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics address {addr}"))?;
    let bound = listener.local_addr()?;
    // A std Mutex: held only to apply one report or to copy the snapshot out, never across
    // an await.
    let figures = Arc::new(Mutex::new(OwnFigures::new(name)));
    let feed = figures.clone();
    let feed_stop = stop.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = reports.recv() => match r {
                    Some(t) => {
                        if let Ok(mut f) = feed.lock() {
                            f.apply(&t.scenario, t.kind, t.report);
                        }
                    }
                    None => break,
                },
                _ = feed_stop.cancelled() => break,
            }
        }
    });
    let router = Router::new()
        .route("/metrics", get(metrics))
        .with_state(figures);
    tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::error!("metrics server: {e}");
        }
    });
    Ok(bound)
}

async fn metrics(State(figures): State<Arc<Mutex<OwnFigures>>>) -> Response {
    let snap = match figures.lock() {
        Ok(f) => f.snapshot(),
        Err(_) => Snapshot::default(),
    };
    match Exporter.render(&snap) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}"),
        )
            .into_response(),
    }
}
