//! The master's single owner of state: the fleet of workers, the run state machine and its
//! aggregate. An actor: connection handlers and the API send it [`Event`]s; it answers
//! commands over oneshots and publishes a [`Snapshot`] after every change and every second.
//!
//! Run lifecycle: `assigning` (scenario sent, waiting for every worker's Ready) → `running`
//! (start time sent; reports merged; joiners get a share, lost workers' shares move to the
//! others) → `stopping` (duration reached or stop asked; waiting for final reports) →
//! finished (summary built, thresholds checked, results written). It never blocks on I/O
//! towards a worker: messages go through each worker's unbounded outbox.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use stampede_protocol::{Assign, FromWorker, Share, ToWorker};
use stampede_scenarios::{RequestInfo, ScenarioConfig};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::aggregate::{Aggregate, DecodedReport};
use crate::records::RecordFiles;
use crate::results::{self, HlogWriter};
use crate::snapshot::{RunView, Snapshot};
use crate::state::{RunEnd, RunState};
use crate::summary::{
    CERTIFICATE_HINT, INSECURE_WARNING, RunSummary, TlsSummary, all_certificate_failures,
};

mod archive;
mod clock;
#[cfg(test)]
mod tests;
mod view;

pub use archive::Archive;
pub use clock::{Clock, ManualClock, SystemClock};
pub(crate) use view::figures;
use view::view;
pub use view::{UNTIL_STOPPED, describe, describe_scaled, until_stopped};

/// Identifies a connected worker for the master's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerId(pub u64);

impl std::fmt::Display for WorkerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What reaches the coordinator.
pub enum Event {
    /// A worker passed the handshake.
    Joined {
        /// Its id.
        id: WorkerId,
        /// Its name.
        name: String,
        /// Its address.
        addr: String,
        /// Its cores.
        cores: u32,
        /// Its outbox; the connection's writer task drains it.
        outbox: mpsc::UnboundedSender<ToWorker>,
    },
    /// A control message from a worker.
    Message(WorkerId, FromWorker),
    /// A worker's answer to a clock probe, stamped when it arrived.
    Clock {
        /// The worker.
        id: WorkerId,
        /// The master's clock when the probe left (Unix ns).
        master_ns: u64,
        /// The worker's clock when it answered (Unix ns).
        worker_ns: u64,
        /// The master's clock when the answer arrived (Unix ns).
        received_ns: u64,
    },
    /// A decoded report from a worker.
    Report(WorkerId, Box<DecodedReport>),
    /// A worker's connection ended.
    Lost(WorkerId, String),
    /// A command from the API or the command line.
    Command(Box<Command>),
}

/// Commands, each with its reply.
pub enum Command {
    /// Start a run of this scenario (or the master's own when `None`).
    Start {
        /// The scenario (`None`: the master's own).
        scenario: Option<Box<ScenarioConfig>>,
        /// Where this run's results go instead of the master's `--out` (sweep steps).
        out: Option<std::path::PathBuf>,
        /// The run's id, or why it cannot start.
        reply: oneshot::Sender<Result<u64, String>>,
    },
    /// Stop a run.
    Stop {
        /// Which.
        run_id: u64,
        /// Whether it was running.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Finish the current run now with what has been reported, without waiting for final
    /// reports (a second stop signal): its results are written as for any run.
    FinishNow,
    /// Multiply the current run's targets by a factor (relative to the scenario).
    Scale {
        /// The new scale.
        scale: f64,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// Settings of the coordinator.
pub struct CoordinatorConfig {
    /// The master's scenario, if one was given.
    pub scenario: Option<ScenarioConfig>,
    /// Start the master's scenario once this many workers are ready.
    pub auto_start_at: Option<usize>,
    /// Where to write results.
    pub out: Option<PathBuf>,
    /// Files for record streams by name (others go to `<out>/<stream>.csv`).
    pub records: BTreeMap<String, PathBuf>,
    /// Where every finished run is kept, in a directory named by its id.
    pub runs_dir: Option<PathBuf>,
    /// How long to wait for final reports after the run's end.
    pub stop_grace: Duration,
    /// Whether a run that lost a worker (its share moved) may still pass.
    pub tolerate_worker_loss: bool,
    /// Where the coordinator reads the time ([`SystemClock`] but in its tests).
    pub clock: Arc<dyn Clock>,
}

struct Worker {
    name: String,
    addr: String,
    cores: u32,
    outbox: mpsc::UnboundedSender<ToWorker>,
    last_seen: Instant,
    /// Worker clock minus master clock, ns, from the ping with the smallest round trip.
    offset_ns: i64,
    best_rtt_ns: u64,
    ping_seq: u64,
    last_rps: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Assigning { until: Instant },
    Running,
    Stopping { until: Instant },
}

#[derive(Debug, Default)]
struct Member {
    ready: bool,
    started: bool,
    /// Sent its final report, or left while the run was stopping: not waited for any more.
    finished: bool,
    lost_at_s: Option<f64>,
    slot: Option<u32>,
}

struct Run {
    id: u64,
    config: ScenarioConfig,
    /// The scenario as sent to workers ([`ScenarioConfig::to_assignment`]).
    toml: String,
    catalog: Vec<RequestInfo>,
    phase: Phase,
    scale: f64,
    /// When load started, master clock (Unix ms) and local instant.
    started_ms: u64,
    started: Option<Instant>,
    /// When load stopped (the duration's end, or a stop asked), Unix ms; the run then waits
    /// for the requests in flight.
    stopped_ms: Option<u64>,
    members: BTreeMap<WorkerId, Member>,
    /// Names and addresses of members, kept after they leave the fleet.
    info: BTreeMap<WorkerId, (String, String)>,
    /// The clock offset (worker minus master, ns) each member's start time was corrected by.
    offsets: BTreeMap<WorkerId, i64>,
    agg: Aggregate,
    /// `latency.hlog` in the run's results directory, open from the start of load to the end
    /// of the run; each closed interval of [`Run::agg`] is logged to it.
    hlog: Option<HlogWriter>,
    /// Whether logging to it failed (warned once).
    hlog_failed: bool,
    /// The record streams' files, open from the start of load to the end of the run.
    records: Option<RecordFiles>,
    /// `history.jsonl` in `out`, appended each second.
    history: Option<std::fs::File>,
    /// Whether writing the per-second checkpoint of `out` failed (said once).
    checkpoint_failed: bool,
    events: Vec<String>,
    /// Whether a report with failures has come: the first such report decides whether
    /// [`CERTIFICATE_HINT`] is given, so the hint comes once, and only when certificates are
    /// why requests fail from the start.
    failed_before: bool,
    stop_reason: Option<RunEnd>,
    /// The random seed every worker gets: arrivals shared across workers are drawn from it.
    run_seed: u64,
    /// Where the run's results go (the master's `--out`, or the run's own).
    out: Option<PathBuf>,
}

impl Run {
    /// Push the hlog's lines so far to its file (a failure is warned once).
    fn flush_hlog(&mut self) {
        if let Some(log) = self.hlog.as_mut()
            && let Err(e) = log.flush()
            && !self.hlog_failed
        {
            self.hlog_failed = true;
            warn!("latency.hlog: {e:#}");
        }
    }

    /// Close the aggregate's interval at `now_ms` and log its latency to the hlog.
    fn tick(&mut self, now_ms: u64) {
        self.agg.tick(now_ms);
        let Some(log) = self.hlog.as_mut() else {
            return;
        };
        let closed = self.agg.closed();
        let (start, length) = (closed.start_s, closed.length_s);
        let logged = closed
            .names
            .iter()
            .try_for_each(|(name, h)| log.interval(Some(name), start, length, h))
            .and_then(|()| match &closed.total {
                Some(h) => log.interval(None, start, length, h),
                None => Ok(()),
            });
        if let Err(e) = logged
            && !self.hlog_failed
        {
            self.hlog_failed = true;
            warn!("latency.hlog: {e:#}");
        }
    }
}

/// The coordinator actor.
pub struct Coordinator {
    config: CoordinatorConfig,
    workers: BTreeMap<WorkerId, Worker>,
    run: Option<Run>,
    last_view: Option<RunView>,
    /// Requests each worker reported in the last finished run: between runs, `/metrics` keeps
    /// the last run's final figures, these included.
    last_requests: BTreeMap<WorkerId, u64>,
    next_run: u64,
    snapshots: watch::Sender<Arc<Snapshot>>,
    finished: mpsc::UnboundedSender<Arc<RunSummary>>,
    archive: Arc<Archive>,
    /// The config's clock, kept apart so it can be read while other fields are borrowed.
    clock: Arc<dyn Clock>,
}

impl Coordinator {
    /// A coordinator publishing to `snapshots`, announcing finished runs on `finished`.
    pub fn new(
        config: CoordinatorConfig,
        snapshots: watch::Sender<Arc<Snapshot>>,
        finished: mpsc::UnboundedSender<Arc<RunSummary>>,
        archive: Arc<Archive>,
    ) -> Coordinator {
        // Ids grow with time and never repeat one kept on disk.
        let clock = config.clock.clone();
        let first_run =
            (clock.unix_ns() / 1_000_000_000).max(archive.ids().last().copied().unwrap_or(0));
        Coordinator {
            config,
            workers: BTreeMap::new(),
            run: None,
            last_view: None,
            last_requests: BTreeMap::new(),
            next_run: first_run,
            snapshots,
            finished,
            archive,
            clock,
        }
    }

    /// Serve events until `shutdown`; a run going on is stopped and finished first.
    pub async fn run(mut self, mut events: mpsc::Receiver<Event>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stopping_for_shutdown = false;
        loop {
            // Reports and pings are frequent and change nothing a reader must see at once:
            // they are published with the next tick. Everything else is published now.
            let publish_now = tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => {
                        let routine = matches!(
                            ev,
                            Event::Report(..) | Event::Clock { .. } | Event::Message(_, FromWorker::Heartbeat | FromWorker::Pong { .. })
                        );
                        let had_run = self.run.is_some();
                        self.handle(ev);
                        !routine || had_run != self.run.is_some()
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    self.on_tick();
                    true
                }
                _ = shutdown.cancelled(), if !stopping_for_shutdown => {
                    stopping_for_shutdown = true;
                    if self.run.is_some() {
                        self.stop_run(RunEnd::Shutdown);
                    } else {
                        break;
                    }
                    true
                }
            };
            if stopping_for_shutdown && self.run.is_none() {
                break;
            }
            if publish_now {
                self.publish();
            }
        }
        self.publish();
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Joined {
                id,
                name,
                addr,
                cores,
                outbox,
            } => self.on_join(id, name, addr, cores, outbox),
            Event::Message(id, msg) => self.on_message(id, msg),
            Event::Clock {
                id,
                master_ns,
                worker_ns,
                received_ns,
            } => self.on_clock(id, master_ns, worker_ns, received_ns),
            Event::Report(id, r) => self.on_report(id, *r),
            Event::Lost(id, reason) => self.on_lost(id, reason),
            Event::Command(c) => self.on_command(*c),
        }
    }

    fn on_join(
        &mut self,
        id: WorkerId,
        name: String,
        addr: String,
        cores: u32,
        outbox: mpsc::UnboundedSender<ToWorker>,
    ) {
        info!(worker = %id, %name, %addr, cores, "worker joined");
        let mut w = Worker {
            name,
            addr,
            cores: cores.max(1),
            outbox,
            last_seen: self.clock.now(),
            offset_ns: 0,
            best_rtt_ns: u64::MAX,
            ping_seq: 0,
            last_rps: 0.0,
        };
        let now_ns = self.clock.unix_ns();
        ping(&mut w, now_ns);
        ping(&mut w, now_ns);
        self.workers.insert(id, w);
        if let Some(run) = self.run.as_mut()
            && matches!(run.phase, Phase::Running | Phase::Assigning { .. })
        {
            // A joiner gets the scenario: while assigning it starts with the others; mid-run
            // it starts when ready, part-way through the plan, and the shares move.
            run.members.insert(id, Member::default());
            self.assign(id);
        }
        self.maybe_auto_start();
    }

    fn on_message(&mut self, id: WorkerId, msg: FromWorker) {
        if let Some(w) = self.workers.get_mut(&id) {
            w.last_seen = self.clock.now();
        }
        match msg {
            FromWorker::Heartbeat => {}
            FromWorker::Pong {
                master_ns,
                worker_ns,
                ..
            } => self.on_clock(id, master_ns, worker_ns, self.clock.unix_ns()),
            FromWorker::Ready { run_id } => self.on_ready(id, run_id),
            FromWorker::Rejected { run_id, reason } => {
                let Some(run) = self.run.as_mut().filter(|r| r.id == run_id) else {
                    return;
                };
                warn!(worker = %id, "rejected the scenario: {reason}");
                run.events
                    .push(format!("worker {id} rejected the scenario: {reason}"));
                run.members.remove(&id);
                if run.members.is_empty() {
                    run.stop_reason = Some(RunEnd::Rejected(reason));
                    self.finish_run();
                } else {
                    self.maybe_go();
                }
            }
        }
    }

    /// A clock probe came back: keep the offset of the probe with the smallest round trip
    /// (its error is at most half that round trip).
    fn on_clock(&mut self, id: WorkerId, master_ns: u64, worker_ns: u64, received_ns: u64) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        w.last_seen = self.clock.now();
        let rtt = received_ns.saturating_sub(master_ns);
        if rtt <= w.best_rtt_ns {
            w.best_rtt_ns = rtt;
            w.offset_ns = worker_ns as i64 - (master_ns + rtt / 2) as i64;
        }
    }

    fn on_ready(&mut self, id: WorkerId, run_id: u64) {
        let Some(run) = self.run.as_mut().filter(|r| r.id == run_id) else {
            return;
        };
        let Some(m) = run.members.get_mut(&id) else {
            return;
        };
        m.ready = true;
        match run.phase {
            Phase::Assigning { .. } => self.maybe_go(),
            Phase::Running => {
                if run.config.load.requests_per_user().is_some() {
                    // Every user of a one-shot simultaneous start has started already.
                    run.events.push(format!(
                        "worker {id} joined after the simultaneous start and takes no share"
                    ));
                    return;
                }
                // A joiner: start it part-way through the plan, then move shares.
                let now_ms = self.clock.unix_ms();
                let at_ms = now_ms + 100;
                let elapsed_ms = at_ms.saturating_sub(run.started_ms);
                if elapsed_ms as u128 >= run.config.duration.as_millis() {
                    return;
                }
                m.started = true;
                run.events.push(format!(
                    "worker {id} joined at {:.1}s and took a share",
                    elapsed_ms as f64 / 1000.0
                ));
                self.send_start(id, run_id, at_ms, elapsed_ms);
                self.rebalance();
            }
            Phase::Stopping { .. } => {}
        }
    }

    fn on_report(&mut self, id: WorkerId, r: DecodedReport) {
        if let Some(w) = self.workers.get_mut(&id) {
            w.last_seen = self.clock.now();
            w.last_rps = r
                .counters
                .iter()
                .filter(|c| c.1 == "requests")
                .map(|c| c.2)
                .sum::<u64>() as f64;
        }
        let Some(run) = self.run.as_mut().filter(|run| run.id == r.run_id) else {
            return;
        };
        run.agg.apply(id.0, &r);
        if !run.failed_before && !r.failures.is_empty() {
            run.failed_before = true;
            if all_certificate_failures(r.failures.iter().map(|f| f.1.as_str())) {
                // Not logged: `stampede run` and `stampede master` print each hint among the
                // events as it comes, and a log line would say it twice.
                run.events.push(CERTIFICATE_HINT.to_string());
            }
        }
        if let Some(files) = run.records.as_mut() {
            for (stream, rows) in &r.rows {
                files.append(stream, rows);
            }
        }
        if r.last
            && let Some(m) = run.members.get_mut(&id)
        {
            m.finished = true;
            self.maybe_finish();
        }
    }

    fn on_lost(&mut self, id: WorkerId, reason: String) {
        let Some(w) = self.workers.remove(&id) else {
            return;
        };
        warn!(worker = %id, name = %w.name, "worker lost: {reason}");
        let Some(run) = self.run.as_mut() else { return };
        let elapsed = run
            .started
            .map(|s| self.clock.now().saturating_duration_since(s).as_secs_f64())
            .unwrap_or(0.0);
        let Some(m) = run.members.get_mut(&id) else {
            return;
        };
        // A worker that sent its final report is done, unless it sent it mid-run and left (a
        // `stampede worker` given Ctrl-C): then its share is missing as a lost one's is.
        let left_mid_run = run.phase == Phase::Running
            && run.config.load.requests_per_user().is_none()
            && run.started.is_some_and(|s| {
                self.clock.now().saturating_duration_since(s) + Duration::from_secs(1)
                    < run.config.limit()
            });
        if m.finished && !left_mid_run {
            return;
        }
        if let Phase::Stopping { .. } = run.phase {
            // Leaving once the run is stopping (often for the same Ctrl-C that stopped it) is
            // no loss: its share is not needed any more and what it reported is kept. Only
            // its final report, if it never came, is missing.
            m.finished = true;
            run.events.push(format!(
                "worker {id} ({}) left while the run was stopping, before its final report: {reason}",
                w.name
            ));
            self.maybe_finish();
            return;
        }
        m.lost_at_s = Some(elapsed);
        run.agg.mark_lost(id.0);
        let left = run
            .members
            .values()
            .filter(|m| m.lost_at_s.is_none() && !m.finished)
            .count();
        run.events.push(format!(
            "worker {id} ({}) lost at {elapsed:.1}s: {reason}; its reported data is kept and its share moved to {left} worker(s)",
            w.name
        ));
        match run.phase {
            Phase::Assigning { .. } => {
                run.members.remove(&id);
                self.maybe_go();
            }
            Phase::Running => {
                if left == 0 {
                    run.stop_reason = Some(RunEnd::NoWorkersLeft);
                    self.finish_run();
                } else if run.config.load.requests_per_user().is_none() {
                    self.rebalance();
                } else {
                    // A one-shot start cannot be redone by others at the same instant: the
                    // lost worker's users are missing from the run, as the events say.
                    self.maybe_finish();
                }
            }
            // Handled above: not a loss.
            Phase::Stopping { .. } => {}
        }
    }

    fn on_command(&mut self, c: Command) {
        match c {
            Command::Start {
                scenario,
                out,
                reply,
            } => {
                let started = self.start_run(scenario.map(|s| *s), out);
                // Publish before answering, so a client that asks about the run next finds it.
                self.publish();
                let _ = reply.send(started);
            }
            Command::Stop { run_id, reply } => {
                let r = match &self.run {
                    Some(run) if run.id == run_id => {
                        self.stop_run(RunEnd::StoppedByUser);
                        Ok(())
                    }
                    _ => Err(format!("run {run_id} is not going on")),
                };
                let _ = reply.send(r);
            }
            Command::FinishNow => {
                if self.run.is_some() {
                    self.stop_run(RunEnd::Shutdown);
                    if let Some(run) = self.run.as_mut() {
                        run.events
                            .push("finished at once, without waiting for final reports".into());
                    }
                    self.finish_run();
                }
            }
            Command::Scale { scale, reply } => {
                let r = match self.run.as_mut() {
                    Some(run) if scale.is_finite() && scale > 0.0 => {
                        run.scale = scale;
                        self.rebalance();
                        Ok(())
                    }
                    Some(_) => Err(format!("scale {scale} must be above 0")),
                    None => Err("no run is going on".into()),
                };
                let _ = reply.send(r);
            }
        }
    }

    fn on_tick(&mut self) {
        let now = self.clock.now();
        let now_ns = self.clock.unix_ns();
        for w in self.workers.values_mut() {
            if w.ping_seq % 10 == 0 || w.best_rtt_ns == u64::MAX {
                ping(w, now_ns);
            } else {
                w.ping_seq += 1;
            }
        }
        self.maybe_auto_start();
        let Some(run) = self.run.as_mut() else { return };
        let now_ms = self.clock.unix_ms();
        match run.phase {
            Phase::Assigning { until } if now >= until => {
                let slow: Vec<WorkerId> = run
                    .members
                    .iter()
                    .filter(|(_, m)| !m.ready)
                    .map(|(id, _)| *id)
                    .collect();
                for id in slow {
                    run.events.push(format!(
                        "worker {id} did not get ready in time and was left out"
                    ));
                    run.members.remove(&id);
                }
                self.maybe_go();
            }
            Phase::Running => {
                run.tick(now_ms);
                if let Some(files) = run.records.as_mut() {
                    files.flush();
                }
                if run.started.is_some_and(|s| now >= s + run.config.limit()) {
                    // Workers stop at the duration's end by their own (corrected) clocks;
                    // this tick may come up to a second later.
                    let end_ms = run.started_ms + run.config.limit().as_millis() as u64;
                    run.stopped_ms.get_or_insert(end_ms);
                    run.phase = Phase::Stopping {
                        until: now + grace(self.config.stop_grace, &run.config),
                    };
                    run.stop_reason.get_or_insert(RunEnd::DurationReached);
                }
            }
            Phase::Stopping { until } => {
                run.tick(now_ms);
                if let Some(files) = run.records.as_mut() {
                    files.flush();
                }
                if now >= until {
                    let late: Vec<WorkerId> = run
                        .members
                        .iter()
                        .filter(|(_, m)| m.started && !m.finished && m.lost_at_s.is_none())
                        .map(|(id, _)| *id)
                        .collect();
                    for id in late {
                        run.events
                            .push(format!("worker {id} did not send its final report in time"));
                    }
                    self.finish_run();
                }
            }
            Phase::Assigning { .. } => {}
        }
        self.checkpoint(now_ms);
    }

    /// Once a second during load: `--out` gets the run so far (summary.json with status
    /// `incomplete`, the CSVs), `history.jsonl` the second just closed, and the hlog is flushed,
    /// so a master killed outright leaves a consistent partial run.
    fn checkpoint(&mut self, now_ms: u64) {
        let Some(run) = self.run.as_ref() else { return };
        let Some(dir) = run.out.clone() else { return };
        if !matches!(run.phase, Phase::Running | Phase::Stopping { .. }) {
            return;
        }
        let mut partial = self.summarize(run, now_ms);
        partial.stop_reason = RunEnd::InProgress;
        let written = results::write(&dir, &partial).map(|_| ());
        let Some(run) = self.run.as_mut() else { return };
        run.flush_hlog();
        let appended = match run.agg.history().last() {
            Some(row) => results::history::append(&mut run.history, &dir, row)
                .map_err(|e| anyhow::anyhow!("history.jsonl: {e}")),
            None => Ok(()),
        };
        if let Err(e) = written.and(appended)
            && !run.checkpoint_failed
        {
            run.checkpoint_failed = true;
            warn!("writing the run so far to {}: {e:#}", dir.display());
        }
    }

    fn maybe_auto_start(&mut self) {
        let Some(n) = self.config.auto_start_at else {
            return;
        };
        if self.run.is_none() && self.workers.len() >= n && self.config.scenario.is_some() {
            self.config.auto_start_at = None;
            if let Err(e) = self.start_run(None, None) {
                warn!("cannot start the run: {e}");
            }
        }
    }

    /// Start a run on every connected worker.
    fn start_run(
        &mut self,
        scenario: Option<ScenarioConfig>,
        out: Option<PathBuf>,
    ) -> Result<u64, String> {
        if let Some(run) = &self.run {
            return Err(format!("run {} is still going on", run.id));
        }
        let config = scenario
            .or_else(|| self.config.scenario.clone())
            .ok_or("no scenario: give one with --scenario or in the request")?;
        if self.workers.is_empty() {
            return Err("no workers connected".into());
        }
        self.next_run += 1;
        let id = self.next_run;
        let catalog = config.catalog();
        let members = self
            .workers
            .keys()
            .map(|id| (*id, Member::default()))
            .collect();
        let info = self
            .workers
            .iter()
            .map(|(id, w)| (*id, (w.name.clone(), w.addr.clone())))
            .collect();
        // Fresh clock probes before the scenario: their answers arrive before the workers'
        // Ready (one ordered stream), so the start time is set with an offset measured now.
        let now_ns = self.clock.unix_ns();
        for w in self.workers.values_mut() {
            w.best_rtt_ns = u64::MAX;
            for _ in 0..CLOCK_PROBES {
                ping(w, now_ns);
            }
        }
        info!(run = id, scenario = %config.name, workers = self.workers.len(), "starting run");
        let mut events = Vec::new();
        if TlsSummary::of(&config.target, config.file.tls.as_ref()).is_some_and(|t| t.insecure) {
            warn!(run = id, "{INSECURE_WARNING}");
            events.push(INSECURE_WARNING.to_string());
        }
        let run_seed = config
            .sampling_seed()
            .map_or_else(rand::random, |s| s ^ 0x5851_F42D_4C95_7F2D);
        self.run = Some(Run {
            id,
            toml: config.to_assignment(),
            catalog: catalog.clone(),
            config,
            phase: Phase::Assigning {
                until: self.clock.now() + Duration::from_secs(10),
            },
            scale: 1.0,
            started_ms: 0,
            started: None,
            stopped_ms: None,
            members,
            info,
            offsets: BTreeMap::new(),
            agg: Aggregate::new(&catalog, self.clock.unix_ms()),
            hlog: None,
            hlog_failed: false,
            records: None,
            history: None,
            checkpoint_failed: false,
            events,
            failed_before: false,
            stop_reason: None,
            run_seed,
            out: out.or_else(|| self.config.out.clone()),
        });
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for wid in ids {
            self.assign(wid);
        }
        Ok(id)
    }

    /// Send the run's scenario to a worker, with the share it will have.
    fn assign(&mut self, id: WorkerId) {
        let Some(run) = self.run.as_mut() else { return };
        let (share, slots) = shares(&self.workers, &run.members, Some(id));
        for (wid, slot) in slots {
            if let Some(m) = run.members.get_mut(&wid) {
                m.slot = Some(slot);
            }
        }
        if let Some(w) = self.workers.get(&id) {
            run.info.insert(id, (w.name.clone(), w.addr.clone()));
            let _ = w.outbox.send(ToWorker::Assign(Assign {
                run_id: run.id,
                scenario: run.toml.clone(),
                share: share.unwrap_or_else(Share::whole),
                scale: run.scale,
                run_seed: run.run_seed,
            }));
        }
    }

    /// When every member is ready, send the start time.
    fn maybe_go(&mut self) {
        let Some(run) = self.run.as_mut() else { return };
        if !matches!(run.phase, Phase::Assigning { .. }) || run.members.values().any(|m| !m.ready) {
            return;
        }
        if run.members.is_empty() {
            run.stop_reason.get_or_insert(RunEnd::NoneReady);
            self.finish_run();
            return;
        }
        let at_ms = self.clock.unix_ms() + 250;
        run.started_ms = at_ms;
        run.started = Some(self.clock.now() + Duration::from_millis(250));
        run.phase = Phase::Running;
        if let Some(dir) = &run.out {
            // A folder holding an earlier run's results gets them moved aside: one run each.
            let streams: Vec<String> = run
                .config
                .record_streams()
                .into_iter()
                .map(|s| s.name)
                .collect();
            match results::move_aside(dir, &streams) {
                Ok(Some(aside)) => run.events.push(format!(
                    "{} held an earlier run's results: moved to {}",
                    dir.display(),
                    aside.display()
                )),
                Ok(None) => {}
                Err(e) => {
                    warn!("{e:#}");
                    run.events.push(format!("{e:#}"));
                }
            }
        }
        run.hlog = run.out.as_ref().and_then(|dir| {
            let _ = std::fs::create_dir_all(dir);
            HlogWriter::create(&dir.join("latency.hlog"), at_ms)
                .map_err(|e| warn!("cannot write latency.hlog: {e:#}"))
                .ok()
        });
        run.agg = Aggregate::new(&run.catalog, at_ms);
        run.records = Some(RecordFiles::create(
            &run.config.record_streams(),
            run.out.as_deref(),
            &self.config.records,
        ));
        let ids: Vec<WorkerId> = run.members.keys().copied().collect();
        let run_id = run.id;
        for id in &ids {
            if let Some(m) = run.members.get_mut(id) {
                m.started = true;
            }
        }
        // Shares were computed when assigning; re-send in case the membership changed since.
        self.rebalance();
        for id in ids {
            self.send_start(id, run_id, at_ms, 0);
        }
    }

    fn send_start(&mut self, id: WorkerId, run_id: u64, at_ms: u64, elapsed_ms: u64) {
        if let Some(w) = self.workers.get(&id) {
            if let Some(run) = self.run.as_mut() {
                run.offsets.insert(id, w.offset_ns);
            }
            let at_worker = (at_ms as i128 * 1_000_000 + i128::from(w.offset_ns)).max(0) as u64;
            let _ = w.outbox.send(ToWorker::Start {
                run_id,
                at_unix_ns: at_worker,
                elapsed_ms,
            });
        }
    }

    /// Give every running member its share of the load (after a join, a loss or a rescale).
    fn rebalance(&mut self) {
        let Some(run) = self.run.as_mut() else { return };
        let (_, slots) = shares(&self.workers, &run.members, None);
        let weights: Vec<u32> = {
            let mut v = vec![0; slots.len()];
            for (wid, slot) in &slots {
                v[*slot as usize] = self.workers.get(wid).map_or(1, |w| w.cores);
            }
            v
        };
        for (wid, slot) in slots {
            if let Some(m) = run.members.get_mut(&wid) {
                m.slot = Some(slot);
            }
            if let Some(w) = self.workers.get(&wid) {
                let _ = w.outbox.send(ToWorker::Update {
                    run_id: run.id,
                    share: Share {
                        slot,
                        weights: weights.clone(),
                    },
                    scale: run.scale,
                });
            }
        }
    }

    fn stop_run(&mut self, why: RunEnd) {
        let Some(run) = self.run.as_mut() else { return };
        let reason = why.to_string();
        run.stop_reason.get_or_insert(why);
        match run.phase {
            Phase::Assigning { .. } => {
                for id in run.members.keys() {
                    if let Some(w) = self.workers.get(id) {
                        let _ = w.outbox.send(ToWorker::Stop {
                            run_id: run.id,
                            reason: reason.clone(),
                        });
                    }
                }
                self.finish_run();
            }
            Phase::Running | Phase::Stopping { .. } => {
                for id in run.members.keys() {
                    if let Some(w) = self.workers.get(id) {
                        let _ = w.outbox.send(ToWorker::Stop {
                            run_id: run.id,
                            reason: reason.clone(),
                        });
                    }
                }
                if run.phase == Phase::Running {
                    run.stopped_ms.get_or_insert(self.clock.unix_ms());
                    run.phase = Phase::Stopping {
                        until: self.clock.now() + grace(self.config.stop_grace, &run.config),
                    };
                }
                self.maybe_finish();
            }
        }
    }

    fn maybe_finish(&mut self) {
        let Some(run) = self.run.as_ref() else { return };
        if !matches!(run.phase, Phase::Stopping { .. } | Phase::Running) {
            return;
        }
        let open = run
            .members
            .values()
            .any(|m| m.started && !m.finished && m.lost_at_s.is_none());
        if !open {
            if run.phase == Phase::Running && run.config.load.requests_per_user().is_some() {
                // Every worker ended: each user has sent its requests.
                if let Some(run) = self.run.as_mut() {
                    run.stop_reason.get_or_insert(RunEnd::RequestsDone);
                }
            }
            self.finish_run();
        }
    }

    /// Build the summary, check thresholds, write results, announce.
    fn finish_run(&mut self) {
        let Some(mut run) = self.run.take() else {
            return;
        };
        let now_ms = self.clock.unix_ms();
        if run.started.is_some() {
            run.tick(now_ms);
        }
        if let Some(h) = run.hlog.take()
            && let Err(e) = h.finish()
        {
            warn!("latency.hlog: {e:#}");
        }
        for f in run
            .records
            .take()
            .map(RecordFiles::finish)
            .unwrap_or_default()
        {
            match (&f.path, &f.error) {
                (Some(path), None) => {
                    info!(stream = %f.stream, rows = f.rows, path = %path.display(), "record stream written")
                }
                (Some(path), Some(e)) => run.events.push(format!(
                    "record stream `{}`: writing {} failed ({e}); rows after the failure are missing",
                    f.stream,
                    path.display()
                )),
                (None, _) => {}
            }
        }
        if run.agg.dropped() > 0 {
            run.events.push(format!(
                "{} arrivals were not sent: too many requests in flight (raise load.max_in_flight or lower the rate)",
                run.agg.dropped()
            ));
        }
        for (id, w) in run.agg.workers() {
            if w.missing > 0 {
                run.events
                    .push(format!("worker {id}: {} report(s) missing", w.missing));
            }
        }
        let summary = self.summarize(&run, now_ms);
        if let Some(dir) = &run.out {
            match results::write(dir, &summary) {
                Ok(paths) => info!(files = paths.len(), dir = %dir.display(), "results written"),
                Err(e) => warn!("writing results to {}: {e:#}", dir.display()),
            }
        }
        if let Some(runs) = &self.config.runs_dir {
            let dir = runs.join(run.id.to_string());
            let kept = results::write(&dir, &summary).and_then(|_| {
                // The hlog was streamed into `--out`; keep a copy with the run.
                if let Some(out) = &run.out {
                    let hlog = out.join("latency.hlog");
                    if hlog.is_file() {
                        std::fs::copy(&hlog, dir.join("latency.hlog"))?;
                    }
                }
                Ok(())
            });
            match kept {
                Ok(()) => info!(dir = %dir.display(), "run kept"),
                Err(e) => warn!("keeping the run in {}: {e:#}", dir.display()),
            }
        }
        info!(run = run.id, requests = summary.total.requests, reason = %summary.stop_reason, "run finished");
        let summary = Arc::new(summary);
        let mut last = view(&run, &self.workers, RunState::Finished, self.clock.now());
        // The run's own length, as its summary counts it: a reader dividing totals by it (the
        // terminal UI's rates of a finished run) gets the summary's figures.
        last.elapsed_s = summary.duration_s();
        last.status = Some(summary.status());
        self.last_view = Some(last);
        self.last_requests = run
            .agg
            .workers()
            .iter()
            .map(|(id, w)| (WorkerId(*id), w.requests))
            .collect();
        // The final snapshot goes out before the document is archived: a reader who sees the
        // run completed must not read an older snapshot on `/metrics` after that.
        self.publish();
        self.archive.insert(summary.clone());
        let _ = self.finished.send(summary);
    }
}

/// Clock probes sent to every worker when a run starts; the one with the smallest round trip
/// sets the offset its start time is corrected by.
const CLOCK_PROBES: usize = 5;

fn ping(w: &mut Worker, master_ns: u64) {
    w.ping_seq += 1;
    let _ = w.outbox.send(ToWorker::Ping {
        seq: w.ping_seq,
        master_ns,
    });
}

/// Slots of the members taking load (connected, not lost, not finished), in id order.
/// Returns `extra`'s share (a worker being assigned) and every slot.
fn shares(
    workers: &BTreeMap<WorkerId, Worker>,
    members: &BTreeMap<WorkerId, Member>,
    extra: Option<WorkerId>,
) -> (Option<Share>, Vec<(WorkerId, u32)>) {
    let active: Vec<WorkerId> = members
        .iter()
        .filter(|(id, m)| m.lost_at_s.is_none() && !m.finished && workers.contains_key(id))
        .map(|(id, _)| *id)
        .collect();
    let weights: Vec<u32> = active
        .iter()
        .map(|id| workers.get(id).map_or(1, |w| w.cores))
        .collect();
    let slots: Vec<(WorkerId, u32)> = active
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i as u32))
        .collect();
    let share = extra
        .and_then(|x| slots.iter().find(|(id, _)| *id == x))
        .map(|(_, slot)| Share {
            slot: *slot,
            weights: weights.clone(),
        });
    (share, slots)
}

fn share_of(
    workers: &BTreeMap<WorkerId, Worker>,
    members: &BTreeMap<WorkerId, Member>,
    id: WorkerId,
) -> f64 {
    let (share, _) = shares(workers, members, Some(id));
    share.map_or(0.0, |s| s.fraction())
}

/// How long a run's end waits for the workers' final reports: the master's grace, or the
/// scenario's request timeout and 5 s when in-flight requests may take longer.
fn grace(stop_grace: Duration, config: &ScenarioConfig) -> Duration {
    stop_grace.max(config.request_timeout() + Duration::from_secs(5))
}
