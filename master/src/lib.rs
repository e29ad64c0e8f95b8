//! The Stampede master: accepts workers over QUIC, runs the run state machine, merges the
//! workers' reports exactly, and serves the results live (snapshots, `/metrics`, the JSON API)
//! and at the end (summary, Locust-compatible CSVs, HDR log, the end-of-run table).
//!
//! It generates no load itself and knows no request driver: scenarios are validated and
//! forwarded, and whatever series and counters workers report are merged by name.
//!
//! # Layout
//! - [`server`]: the QUIC accept loop and one handler per worker connection, authentication
//!   and the bounds on peers that have not authenticated.
//! - [`throttle`]: authentication failures per source address and their back-off.
//! - [`coordinator`]: the actor owning the fleet, the run state machine and the aggregate.
//! - [`aggregate`]: exact merging of interval histograms and counters, history rows.
//! - [`sparse`]: reading a worker's V2 histogram as its non-zero buckets only.
//! - [`snapshot`]: what the master publishes each second for readers.
//! - [`state`]: the run and worker states every reader sees.
//! - [`summary`]: the finished run's figures, as every sink reads them.
//! - [`results`]: the files of `--out DIR` and the end-of-run table.
//! - [`records`]: record streams (per-request CSV rows from workers) appended to files.
//! - [`api`]: the HTTP API and `/metrics`.
//! - [`api_state`]: what the API's handlers share: state, the token check, JSON bodies.
//! - [`compat`]: Locust's control API (`/swarm`, `/stop`, `/stats/requests`) and the
//!   `/run` and `/stats/custom_metrics` of ai-on-gke's Locust benchmark, merged into the HTTP API.
//! - [`health`]: the ACME performance track's health-dashboard API (`/health/components`, the
//!   performance workload and its results).
//! - [`metrics`]: Prometheus exposition from snapshots.
//! - [`own`]: a worker's own figures from its reports, for `stampede worker --metrics`.
//! - [`priority`]: per-class tables and LoadGen-style summaries of `priority` runs, as the
//!   MLPerf-LoadGen priority runner (`loadgen_runner.py`) writes them.
//! - [`tui`]: the terminal UI (`--tui`): watch a run, start, stop and rescale it with keys.

pub mod aggregate;
pub mod api;
pub mod api_state;
pub mod compat;
pub mod coordinator;
pub mod health;
pub mod metrics;
pub mod own;
pub mod priority;
pub mod records;
pub mod results;
pub mod server;
pub mod snapshot;
pub mod sparse;
pub mod state;
pub mod summary;
pub mod throttle;
pub mod tui;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use stampede_protocol::handshake::Token;
use stampede_protocol::transport::MasterIdentity;
use stampede_scenarios::ScenarioConfig;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::coordinator::{Archive, Command, Coordinator, CoordinatorConfig, Event};
use crate::snapshot::Snapshot;
use crate::summary::RunSummary;

/// How a master is set up.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// Where workers connect (QUIC/UDP).
    pub bind: SocketAddr,
    /// The token workers must prove they know and API clients must present.
    pub token: Token,
    /// The certificate the master presents to workers (`None`: a self-signed one made now).
    pub identity: Option<MasterIdentity>,
    /// The scenario to run (its target already a URL).
    pub scenario: Option<ScenarioConfig>,
    /// Start the scenario as soon as this many workers have joined.
    pub auto_start_at: Option<usize>,
    /// Where to write the latest run's result files.
    pub out: Option<PathBuf>,
    /// Files for record streams (per-request CSVs) by stream name; a stream not named here
    /// goes to `<out>/<stream>.csv`.
    pub records: BTreeMap<String, PathBuf>,
    /// Where to keep every finished run (`<runs_dir>/<run_id>/summary.json`, the CSVs, the
    /// hlog); read back at start-up, so `GET /api/runs` lists runs of earlier lifetimes too.
    pub runs_dir: Option<PathBuf>,
    /// The system under test for runs the API builds (`POST /health/performance/workload`),
    /// a base URL; the scenario's target when `None`.
    pub target: Option<String>,
    /// Where to serve the HTTP API, if anywhere.
    pub api: Option<SocketAddr>,
    /// How long to wait for the workers' final reports after a run's end.
    pub stop_grace: Duration,
    /// Whether a run that lost a worker (its share moved) may still pass.
    pub tolerate_worker_loss: bool,
}

/// A running master.
pub struct Master {
    /// The QUIC address workers connect to.
    pub addr: SocketAddr,
    /// The API's address, if served.
    pub api_addr: Option<SocketAddr>,
    /// The SHA-256 fingerprint of the certificate workers see (what `stampede worker
    /// --master-fingerprint` pins), lower-case hex.
    pub fingerprint: String,
    /// The latest snapshot.
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    events: mpsc::Sender<Event>,
    finished: mpsc::UnboundedReceiver<Arc<RunSummary>>,
    tasks: tokio_util::task::TaskTracker,
    stop: CancellationToken,
}

impl Master {
    /// Bind the worker port and the API, and start serving.
    pub async fn start(
        config: MasterConfig,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Master> {
        let identity = match config.identity {
            Some(identity) => identity,
            None => MasterIdentity::self_signed()?,
        };
        let fingerprint = identity.fingerprint();
        let endpoint = server::bind(config.bind, identity)?;
        let addr = endpoint
            .local_addr()
            .context("reading the bound worker address")?;
        let (events_tx, events_rx) = mpsc::channel(4096);
        let (snap_tx, snap_rx) = watch::channel(Arc::new(Snapshot::default()));
        let (fin_tx, fin_rx) = mpsc::unbounded_channel();
        let archive = Arc::new(match &config.runs_dir {
            Some(dir) => Archive::load(dir),
            None => Archive::default(),
        });
        let token: Arc<str> = config.token.as_str().into();
        let tasks = tokio_util::task::TaskTracker::new();
        // Shutdown order: the coordinator first (it stops a run going on and waits for the
        // final reports, which need the connections), then the listener and the API.
        let stop = shutdown.child_token();
        let connections_stop = CancellationToken::new();
        let api_addr = match config.api {
            Some(api) => {
                let listener = tokio::net::TcpListener::bind(api)
                    .await
                    .with_context(|| format!("binding the API address {api}"))?;
                let api_addr = listener.local_addr()?;
                let router = api::router(api::ApiState {
                    snapshots: snap_rx.clone(),
                    events: events_tx.clone(),
                    archive: archive.clone(),
                    token: token.clone(),
                    scenario: config.scenario.clone(),
                    exporter: Arc::new(metrics::Exporter),
                    out: config.out.clone(),
                    runs_dir: config.runs_dir.clone(),
                    target: config.target.clone(),
                });
                let api_stop = connections_stop.clone();
                tasks.spawn(async move {
                    let serve = axum::serve(listener, router)
                        .with_graceful_shutdown(api_stop.cancelled_owned());
                    if let Err(e) = serve.await {
                        tracing::error!("API server: {e}");
                    }
                });
                info!(%api_addr, "API listening");
                Some(api_addr)
            }
            None => None,
        };
        let coordinator = Coordinator::new(
            CoordinatorConfig {
                scenario: config.scenario,
                auto_start_at: config.auto_start_at,
                out: config.out,
                records: config.records,
                runs_dir: config.runs_dir,
                stop_grace: config.stop_grace,
                tolerate_worker_loss: config.tolerate_worker_loss,
                clock: Arc::new(coordinator::SystemClock),
            },
            snap_tx,
            fin_tx,
            archive,
        );
        let after = connections_stop.clone();
        let coordinator_stop = stop.clone();
        tasks.spawn(async move {
            coordinator.run(events_rx, coordinator_stop).await;
            after.cancel();
        });
        let listener = server::Listener {
            endpoint,
            token: config.token,
            events: events_tx.clone(),
        };
        tasks.spawn(listener.run(connections_stop));
        tasks.close();
        info!(%addr, "master listening for workers");
        Ok(Master {
            addr,
            api_addr,
            fingerprint,
            snapshots: snap_rx,
            events: events_tx,
            finished: fin_rx,
            tasks,
            stop,
        })
    }

    /// Wait for the next finished run (`None` when the master has stopped).
    pub async fn next_finished(&mut self) -> Option<Arc<RunSummary>> {
        self.finished.recv().await
    }

    /// A finished run already announced and not yet taken, without waiting.
    pub fn try_next_finished(&mut self) -> Option<Arc<RunSummary>> {
        self.finished.try_recv().ok()
    }

    /// A handle to send commands from elsewhere.
    pub fn handle(&self) -> MasterHandle {
        MasterHandle {
            events: self.events.clone(),
        }
    }

    /// Stop (finishing a run going on), close worker connections, wait for every task.
    /// Returns the runs that finished and were not taken with [`Master::next_finished`]
    /// (such as the one going on, finished by the shutdown).
    pub async fn shutdown(mut self) -> Vec<Arc<RunSummary>> {
        self.stop.cancel();
        drop(self.events);
        let _ = tokio::time::timeout(Duration::from_secs(30), self.tasks.wait()).await;
        std::iter::from_fn(|| self.finished.try_recv().ok()).collect()
    }
}

/// Sends commands to a master; cheap to clone.
#[derive(Clone)]
pub struct MasterHandle {
    events: mpsc::Sender<Event>,
}

impl MasterHandle {
    /// Finish the current run now with what has been reported (a second stop signal): no
    /// waiting for the workers' final reports; the results are written as for any run.
    pub async fn finish_now(&self) {
        let _ = self
            .events
            .send(Event::Command(Box::new(Command::FinishNow)))
            .await;
    }

    /// Start a run of the master's own scenario on the connected workers; its id, or why not.
    pub async fn start(&self) -> Result<u64, String> {
        self.start_run(None, None).await
    }

    /// Start a run on the connected workers: of `scenario` (`None`: the master's own), with its
    /// results in `out` (`None`: the master's `--out`). Its id, or why not (a run is going on,
    /// no workers). The summary comes from [`Master::next_finished`] like any run's.
    pub async fn start_run(
        &self,
        scenario: Option<ScenarioConfig>,
        out: Option<PathBuf>,
    ) -> Result<u64, String> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.events
            .send(Event::Command(Box::new(Command::Start {
                scenario: scenario.map(Box::new),
                out,
                reply,
            })))
            .await
            .map_err(|_| "master stopped".to_string())?;
        rx.await.map_err(|_| "master stopped".to_string())?
    }

    /// Ask to stop a run.
    pub async fn stop_run(&self, run_id: u64) -> Result<(), String> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.events
            .send(Event::Command(Box::new(Command::Stop { run_id, reply })))
            .await
            .map_err(|_| "master stopped".to_string())?;
        rx.await.map_err(|_| "master stopped".to_string())?
    }

    /// Set the current run's scale (1.0 = as written).
    pub async fn scale(&self, scale: f64) -> Result<(), String> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.events
            .send(Event::Command(Box::new(Command::Scale { scale, reply })))
            .await
            .map_err(|_| "master stopped".to_string())?;
        rx.await.map_err(|_| "master stopped".to_string())?
    }
}
