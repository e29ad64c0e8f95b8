//! A Stampede worker: joins a master over QUIC, takes assignments, generates its share of the
//! load with the scenario's driver, and ships what it recorded every second.
//!
//! It keeps nothing between runs and never decides anything about the run itself: the master
//! says what, how much and when, once it has proved it knows the token (the worker says
//! nothing to a master that cannot). What it will do is bounded by its [`Policy`]. If the
//! master goes away, load stops within a few seconds (the QUIC idle timeout) and [`run`]
//! returns an error naming the cause.
//!
//! # Layout
//! - [`engine`]: the load engine (closed users, open arrivals) for one run.
//! - [`fit`]: whether an assignment fits the worker's memory, checked before Ready.
//! - [`host`]: the host's CPU and disk usage, sent as report gauges.
//! - [`policy`]: the targets a worker may load, and no local files named by an assignment.
//! - [`report`]: turns the recorder's intervals into protocol reports.

pub mod engine;
pub mod fit;
pub mod host;
pub mod policy;
pub mod report;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use stampede_protocol::handshake::{self, HandshakeError, Introduction, Token};
use stampede_protocol::transport::MasterTrust;
use stampede_protocol::{
    Assign, FromWorker, MAX_FRAME, Report, ToWorker, frame, read_frame, transport, unix_now_ns,
    write_frame,
};
use stampede_scenarios::{Kind, LoadPlan, Recorder, ScenarioConfig, driver};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::engine::{Engine, EngineSpec};
pub use crate::policy::Policy;

/// How a worker reaches its master.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The master's `host:port`.
    pub master: String,
    /// The shared token, which the master must prove it knows.
    pub token: Token,
    /// How the master's certificate is checked (by default it is not: the token proof
    /// authenticates the master).
    pub trust: MasterTrust,
    /// What this worker agrees to do.
    pub policy: Policy,
    /// This worker's name in the master's lists.
    pub name: String,
    /// Cores it offers: its weight in the split, and its recorder's shard count.
    pub cores: u32,
    /// How long to keep trying to reach a master that is not up yet.
    pub connect_timeout: Duration,
    /// Added to this worker's wall clock, ns (0 normally): plays a machine whose clock is off,
    /// to check that the master's clock alignment still starts workers together.
    pub clock_skew_ns: i64,
    /// Where a copy of every report sent goes, if anywhere (`stampede worker --metrics`
    /// serves the worker's own figures from them). Never blocks: an unbounded channel whose
    /// receiver going away is ignored.
    pub tap: Option<mpsc::UnboundedSender<Tapped>>,
}

/// A report as sent to the master, with the run's scenario name and kind.
#[derive(Debug, Clone)]
pub struct Tapped {
    /// The scenario's name.
    pub scenario: String,
    /// The scenario's kind (`http`, `llm`, ...).
    pub kind: Kind,
    /// The report, before it is split to fit frames.
    pub report: Report,
}

/// How often reports (or heartbeats, when idle) are sent.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Join the master and serve it until it closes the connection (`Ok`), `shutdown` is
/// cancelled (`Ok`), or the connection is lost or refused (`Err`).
pub async fn run(config: WorkerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    // The master's name may not resolve yet (a container starting): retry it, as the
    // connection, within the connect timeout.
    let deadline = Instant::now() + config.connect_timeout;
    let addr = resolve_until(&config.master, deadline, &shutdown).await?;
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse()?
    } else {
        "0.0.0.0:0".parse()?
    };
    let mut endpoint = quinn::Endpoint::client(bind).context("opening a UDP socket")?;
    endpoint.set_default_client_config(transport::client_config(&config.trust)?);
    let server_name = if config.trust.checks_name() {
        host_of(&config.master)
    } else {
        transport::SERVER_NAME.to_string()
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let conn = connect(&endpoint, addr, &server_name, left, &shutdown).await?;
    let me = Introduction {
        name: config.name.clone(),
        cores: config.cores,
        build: env!("CARGO_PKG_VERSION").to_string(),
    };
    let joined = tokio::time::timeout(
        handshake::AUTH_TIMEOUT,
        handshake::join(&conn, &config.token, &me),
    )
    .await
    .map_err(|_| {
        anyhow!(
            "the master at {addr} did not prove it knows the token within {:?} (is it `stampede master` of this release?)",
            handshake::AUTH_TIMEOUT
        )
    })
    .and_then(|r| r.map_err(anyhow::Error::from));
    let (send, mut recv, id) = match joined {
        Ok(j) => j,
        Err(e) => {
            let unproven = e
                .downcast_ref::<HandshakeError>()
                .is_some_and(|e| matches!(e, HandshakeError::MasterUnproven));
            if unproven {
                conn.close(
                    handshake::CLOSE_MASTER_UNPROVEN.into(),
                    b"master proof refused",
                );
            } else {
                conn.close(1u32.into(), b"refused");
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
            return Err(match e.downcast::<HandshakeError>() {
                Ok(HandshakeError::Refused(reason)) => {
                    anyhow!("the master at {addr} refused this worker: {reason}")
                }
                Ok(HandshakeError::MasterUnproven) => {
                    anyhow!(
                        "the master at {addr} did not prove it knows this worker's token: the tokens differ (check --token-file or STAMPEDE_TOKEN on both sides), or it is not your master; nothing was sent to it"
                    )
                }
                Ok(other) => anyhow!("handshake with the master at {addr} failed: {other}"),
                Err(other) => other,
            });
        }
    };
    info!(worker = id, master = %addr, "joined the master");
    let reports = conn.open_uni().await.context("opening the report stream")?;
    // The control stream is read by its own task: a frame read is not cancel-safe, so it must
    // not race the report timer in the session's `select!`.
    let (inbox_tx, inbox) = mpsc::channel(16);
    let reader = tokio::spawn(async move {
        loop {
            let msg = read_frame::<_, ToWorker>(&mut recv, MAX_FRAME).await;
            let end = msg.is_err();
            if inbox_tx.send(msg).await.is_err() || end {
                break;
            }
        }
    });
    let mut session = Session {
        id,
        cores: config.cores,
        skew_ns: config.clock_skew_ns,
        send,
        inbox,
        reports,
        run: None,
        tap: config.tap.clone(),
        policy: config.policy.clone(),
    };
    let result = match session.serve(&shutdown).await {
        // The master closing the connection on purpose (run over, master stopping) is the
        // normal end, whatever the stream error that revealed it.
        Err(_)
            if matches!(
                conn.close_reason(),
                Some(quinn::ConnectionError::ApplicationClosed(_))
            ) =>
        {
            info!("the master closed the connection");
            Ok(())
        }
        Err(e) => Err(anyhow!("lost the master at {addr}: {e:#}; load stopped")),
        Ok(()) => Ok(()),
    };
    reader.abort();
    // Closing the connection drops what was written but not yet sent (the last report, when
    // stopping on Ctrl-C): finish the report stream and give the master a moment to have it
    // all. Returns at once when the master already closed the connection.
    if session.reports.finish().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), session.reports.stopped()).await;
    }
    conn.close(0u32.into(), b"bye");
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    result
}

/// The host part of a `HOST[:PORT]` master address: the name its certificate must hold when
/// `--master-ca` checks it.
fn host_of(master: &str) -> String {
    let host = match master.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() && !master.ends_with(']') => host,
        _ => master,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

async fn resolve(master: &str) -> anyhow::Result<SocketAddr> {
    let with_port = if master
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !master.ends_with(']')
    {
        master.to_string()
    } else {
        format!("{master}:{}", stampede_protocol::DEFAULT_PORT)
    };
    tokio::net::lookup_host(&with_port)
        .await
        .with_context(|| format!("resolving master address `{master}`"))?
        .next()
        .ok_or_else(|| anyhow!("master address `{master}` resolves to nothing"))
}

/// [`resolve`], retrying every second until `deadline`.
async fn resolve_until(
    master: &str,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> anyhow::Result<SocketAddr> {
    loop {
        let err = match resolve(master).await {
            Ok(addr) => return Ok(addr),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(e) => e,
        };
        warn!("{err:#}; retrying");
        retry_pause(shutdown).await?;
    }
}

/// A second between attempts to reach the master; an error if `shutdown` comes first.
async fn retry_pause(shutdown: &CancellationToken) -> anyhow::Result<()> {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(1)) => Ok(()),
        _ = shutdown.cancelled() => bail!("stopped before reaching the master"),
    }
}

/// Connect, retrying every second until `timeout` (a master may start after its workers).
async fn connect(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    server_name: &str,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> anyhow::Result<quinn::Connection> {
    let deadline = Instant::now() + timeout;
    loop {
        let attempt = endpoint.connect(addr, server_name)?;
        let err = tokio::select! {
            r = attempt => match r {
                Ok(c) => return Ok(c),
                // The master's certificate is not the one pinned: retrying cannot help.
                Err(quinn::ConnectionError::TransportError(e)) if is_tls_failure(e.code) => {
                    bail!("the TLS handshake with {addr} failed: {e} (the master's certificate does not match --master-fingerprint or --master-ca)");
                }
                Err(e) => e.to_string(),
            },
            _ = tokio::time::sleep_until(deadline) => "no answer".to_string(),
            _ = shutdown.cancelled() => bail!("stopped before reaching the master"),
        };
        if Instant::now() >= deadline {
            bail!("cannot reach the master at {addr}: {err} (is `stampede master` running there?)");
        }
        warn!(master = %addr, "master not reachable yet ({err}); retrying");
        retry_pause(shutdown).await?;
    }
}

/// A TLS alert or failure (QUIC crypto error codes 0x100-0x1ff), rather than no answer.
fn is_tls_failure(code: quinn::TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

/// The run a worker is assigned to.
struct Run {
    id: u64,
    config: ScenarioConfig,
    driver: Arc<dyn driver::Driver>,
    recorder: Arc<Recorder>,
    plan: LoadPlan,
    engine: Option<Engine>,
    seq: u64,
    interval_start_ms: u64,
    /// The start instant, Unix ns in this worker's clock.
    start_unix_ns: u64,
    /// The first sends last reported (Unix µs).
    first_sends_sent: Option<(u64, u64)>,
    /// The host's CPU counters when the run started here, for its CPU usage over the run.
    cpu_at_start: Option<host::CpuTimes>,
    /// The run's seed from the master, the same on every worker.
    run_seed: u64,
}

struct Session {
    id: u64,
    cores: u32,
    /// Added to the wall clock (see [`WorkerConfig::clock_skew_ns`]).
    skew_ns: i64,
    send: quinn::SendStream,
    /// Frames read from the control stream, in order; the reader ends after an error.
    inbox: mpsc::Receiver<Result<ToWorker, frame::FrameError>>,
    reports: quinn::SendStream,
    run: Option<Run>,
    /// See [`WorkerConfig::tap`].
    tap: Option<mpsc::UnboundedSender<Tapped>>,
    /// See [`WorkerConfig::policy`].
    policy: Policy,
}

impl Session {
    /// This worker's wall clock, Unix ns.
    fn now_ns(&self) -> u64 {
        (unix_now_ns() as i64).saturating_add(self.skew_ns).max(0) as u64
    }

    /// Serve the master; on any failure, stop the load at once before returning it.
    async fn serve(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let mut engine_done: Option<tokio::task::JoinHandle<()>> = None;
        let result = self.serve_until_done(shutdown, &mut engine_done).await;
        if result.is_err() {
            self.abandon(&mut engine_done).await;
        }
        result
    }

    async fn serve_until_done(
        &mut self,
        shutdown: &CancellationToken,
        engine_done: &mut Option<tokio::task::JoinHandle<()>>,
    ) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(REPORT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.finish_run(engine_done, Duration::from_secs(5)).await?;
                    return Ok(());
                }
                msg = self.inbox.recv() => match msg.unwrap_or(Err(frame::FrameError::Closed)) {
                    Ok(msg) => self.handle(msg, engine_done).await?,
                    Err(frame::FrameError::Closed) => {
                        self.abandon(engine_done).await;
                        info!("the master closed the connection");
                        return Ok(());
                    }
                    Err(e) => bail!(e),
                },
                _ = async { if let Some(h) = engine_done.as_mut() { let _ = h.await; } }, if engine_done.is_some() => {
                    *engine_done = None;
                    self.send_report(true).await?;
                    self.run = None;
                }
                _ = tick.tick() => {
                    if self.run.as_ref().is_some_and(|r| r.engine.is_some()) {
                        self.send_report(false).await?;
                    } else {
                        write_frame(&mut self.send, &FromWorker::Heartbeat).await?;
                    }
                }
            }
        }
    }

    async fn handle(
        &mut self,
        msg: ToWorker,
        engine_done: &mut Option<tokio::task::JoinHandle<()>>,
    ) -> anyhow::Result<()> {
        match msg {
            ToWorker::Assign(a) => {
                let run_id = a.run_id;
                let reply = match self.prepare(a) {
                    Ok(run) => {
                        info!(run = run_id, scenario = %run.config.name, "assigned");
                        self.run = Some(run);
                        FromWorker::Ready { run_id }
                    }
                    Err(reason) => {
                        warn!(run = run_id, "assignment rejected: {reason}");
                        FromWorker::Rejected { run_id, reason }
                    }
                };
                write_frame(&mut self.send, &reply).await?;
            }
            ToWorker::Start {
                run_id,
                at_unix_ns,
                elapsed_ms,
            } => {
                let now_ns = self.now_ns();
                let Some(run) = self
                    .run
                    .as_mut()
                    .filter(|r| r.id == run_id && r.engine.is_none())
                else {
                    warn!(run = run_id, "start for a run not assigned here; ignored");
                    return Ok(());
                };
                let delay = Duration::from_nanos(at_unix_ns.saturating_sub(now_ns));
                let (engine, done) = Engine::start(EngineSpec {
                    driver: run.driver.clone(),
                    recorder: run.recorder.clone(),
                    plan: run.plan.clone(),
                    start: Instant::now() + delay,
                    elapsed: Duration::from_millis(elapsed_ms),
                    duration: run.config.limit(),
                    seed: match run.config.sampling_seed() {
                        // Seeded: the same draws every run; this worker's depend on its slot.
                        Some(_) => {
                            run.run_seed
                                ^ (run.plan.slot as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D)
                        }
                        None => self.id.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ run_id ^ at_unix_ns,
                    },
                    run_seed: run.run_seed,
                });
                run.engine = Some(engine);
                run.interval_start_ms = now_ns / 1_000_000;
                run.start_unix_ns = at_unix_ns.max(now_ns);
                run.cpu_at_start = host::CpuTimes::now();
                *engine_done = Some(done);
                info!(run = run_id, in_ms = delay.as_millis() as u64, "starting");
            }
            ToWorker::Update {
                run_id,
                share,
                scale,
            } => {
                if let Some(run) = self.run.as_mut().filter(|r| r.id == run_id) {
                    run.plan.slot = share.slot as usize;
                    run.plan.weights = share.weights;
                    run.plan.scale = scale;
                    if let Some(e) = &run.engine {
                        e.update(run.plan.clone());
                    }
                    info!(
                        run = run_id,
                        fraction = run.plan.fraction(),
                        scale,
                        "share updated"
                    );
                }
            }
            ToWorker::Stop { run_id, reason } => {
                if let Some(run) = self.run.as_ref().filter(|r| r.id == run_id) {
                    info!(run = run_id, "stopping: {reason}");
                    match &run.engine {
                        Some(e) => e.stop(),
                        // Assigned but never started: nothing to report, go back to idle.
                        None => self.run = None,
                    }
                }
            }
            ToWorker::Ping { seq, master_ns } => {
                let pong = FromWorker::Pong {
                    seq,
                    master_ns,
                    worker_ns: self.now_ns(),
                };
                write_frame(&mut self.send, &pong).await?;
            }
        }
        Ok(())
    }

    fn prepare(&self, a: Assign) -> Result<Run, String> {
        let config = ScenarioConfig::from_assignment(&a.scenario, "<assigned scenario>")
            .map_err(|e| e.to_string())?;
        self.policy.check(&config)?;
        let driver = config.driver().map_err(|e| e.to_string())?;
        let names = driver.requests().iter().map(|r| r.name.clone()).collect();
        let recorder = Arc::new(Recorder::for_driver(
            names,
            driver.as_ref(),
            self.cores as usize,
        ));
        let plan = LoadPlan {
            model: config.load.clone(),
            slot: a.share.slot as usize,
            weights: a.share.weights,
            scale: a.scale,
            mix: config.mix.clone(),
        };
        fit::check(&plan, fit::available_memory())?;
        Ok(Run {
            id: a.run_id,
            config,
            driver,
            recorder,
            plan,
            engine: None,
            seq: 0,
            interval_start_ms: 0,
            start_unix_ns: 0,
            first_sends_sent: None,
            cpu_at_start: None,
            run_seed: a.run_seed,
        })
    }

    /// Send what was recorded since the last report.
    async fn send_report(&mut self, last: bool) -> anyhow::Result<()> {
        let now_ms = self.now_ns() / 1_000_000;
        let Some(run) = self.run.as_mut() else {
            return Ok(());
        };
        let (users, rate, dropped) = match &run.engine {
            Some(e) => (e.active(), e.rate(), e.take_dropped()),
            None => (0, 0.0, 0),
        };
        let first_sends = run
            .engine
            .as_ref()
            .and_then(Engine::first_sends)
            .map(|(min, max)| {
                let unix_us = |after_start_ns: u64| (run.start_unix_ns + after_start_ns) / 1000;
                (unix_us(min), unix_us(max))
            })
            .filter(|f| run.first_sends_sent != Some(*f));
        if first_sends.is_some() {
            run.first_sends_sent = first_sends;
        }
        let report: Report = report::encode(report::Meta {
            run_id: run.id,
            seq: run.seq,
            start_unix_ms: run.interval_start_ms,
            end_unix_ms: now_ms,
            users,
            target_rate: rate,
            dropped,
            first_sends_unix_us: first_sends,
            last,
            recorder: &run.recorder,
            gauges: host::gauges(run.cpu_at_start.as_ref()),
        });
        run.interval_start_ms = now_ms;
        if let Some(tap) = &self.tap {
            let _ = tap.send(Tapped {
                scenario: run.config.name.clone(),
                kind: run.config.kind,
                report: report.clone(),
            });
        }
        for mut part in report::spill(report, report::ROWS_PER_REPORT) {
            part.seq = run.seq;
            run.seq += 1;
            write_frame(&mut self.reports, &part).await?;
        }
        Ok(())
    }

    /// Stop the current run, if any, and send its last report (waiting at most `grace`).
    async fn finish_run(
        &mut self,
        engine_done: &mut Option<tokio::task::JoinHandle<()>>,
        grace: Duration,
    ) -> anyhow::Result<()> {
        if let Some(e) = self.run.as_ref().and_then(|r| r.engine.as_ref()) {
            e.stop();
        }
        if let Some(done) = engine_done.take() {
            let _ = tokio::time::timeout(grace, done).await;
            self.send_report(true).await?;
        }
        self.run = None;
        Ok(())
    }

    /// The master is gone: stop load at once (in-flight calls get one second).
    async fn abandon(&mut self, engine_done: &mut Option<tokio::task::JoinHandle<()>>) {
        if let Some(e) = self.run.as_ref().and_then(|r| r.engine.as_ref()) {
            e.stop();
        }
        if let Some(done) = engine_done.take() {
            let abort = done.abort_handle();
            if tokio::time::timeout(Duration::from_secs(1), done)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        self.run = None;
    }
}
