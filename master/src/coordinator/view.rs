//! What the coordinator publishes and keeps of a run: the live [`RunView`] and snapshot,
//! the finished run's [`RunSummary`], and the one-line descriptions of load models.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use stampede_scenarios::spec::Specs;
use stampede_scenarios::{LoadModel, Threshold, load::StageTarget};
use tokio::time::Instant;

use super::{Coordinator, Phase, Run, Worker, WorkerId, share_of};
use crate::aggregate::Aggregate;
use crate::results;
use crate::snapshot::{
    Buckets, Exported, FailureView, MetricView, NameView, RunView, Snapshot, WorkerView,
};
use crate::state::{RunEnd, RunState, WorkerState};
use crate::summary::{LOCUST_PERCENTILES, NameStats, RunSummary, TlsSummary, WorkerSummary};

/// How early (ms, by the master's clock) the workers' final reports may come and still mark the
/// planned end of a run they ended by themselves.
const END_SLACK_MS: u64 = 500;

impl Coordinator {
    pub(super) fn summarize(&self, run: &Run, now_ms: u64) -> RunSummary {
        let total = run.agg.total().clone();
        let started = if run.started_ms > 0 {
            run.started_ms
        } else {
            now_ms
        };
        let duration_s = (now_ms.saturating_sub(started) as f64 / 1000.0).max(1e-3);
        // Not stopped before: every worker ended by itself (at the duration's end, or its users
        // done) or none is left, by now and at the duration's end at the latest. Workers stop
        // at the end by their own clocks, corrected to within half a round trip: final reports
        // that come just before the master's clock reaches the end still mark the planned end.
        let planned = started + run.config.limit().as_millis() as u64;
        let stopped = match run.stopped_ms {
            Some(ms) => ms.clamp(started, now_ms.max(started)),
            None if run.stop_reason.is_none() && now_ms + END_SLACK_MS >= planned => planned,
            None => now_ms.min(planned).max(started),
        };
        let workers = run
            .info
            .iter()
            .filter(|(id, _)| run.members.contains_key(id) || run.agg.workers().contains_key(&id.0))
            .map(|(id, (name, addr))| {
                let t = run.agg.workers().get(&id.0).cloned().unwrap_or_default();
                let m = run.members.get(id);
                let lost_at_s = m.and_then(|m| m.lost_at_s);
                WorkerSummary {
                    id: id.0,
                    name: name.clone(),
                    addr: addr.clone(),
                    requests: t.requests,
                    failures: t.failures,
                    state: if lost_at_s.is_some() {
                        WorkerState::Lost
                    } else if t.finished {
                        WorkerState::Finished
                    } else {
                        WorkerState::Unfinished
                    },
                    lost_at_s,
                    first_sends_ms: t.first_sends_unix_us.map(|(min, max)| {
                        // Worker clock (µs) → master clock → ms after the run's start.
                        let offset_us = run.offsets.get(id).copied().unwrap_or(0) as f64 / 1e3;
                        let at = |us: u64| (us as f64 - offset_us) / 1e3 - started as f64;
                        (at(min), at(max))
                    }),
                    mean_ms: t.mean_ms(),
                    gauges: t.gauges.clone(),
                }
            })
            .collect();
        let thresholds: Vec<Threshold> = run.config.thresholds.clone();
        RunSummary {
            run_id: run.id,
            scenario: run.config.name.clone(),
            kind: run.config.kind.to_string(),
            target: run.config.target.to_string(),
            load: describe_scaled(&run.config.load, run.config.duration, run.scale),
            started_unix_ms: started,
            stopped_unix_ms: stopped,
            ended_unix_ms: now_ms.max(stopped),
            stop_reason: run.stop_reason.clone().unwrap_or(RunEnd::DurationReached),
            tolerate_worker_loss: self.config.tolerate_worker_loss,
            stats: run.agg.names().to_vec(),
            thresholds: results::evaluate(&thresholds, &total, duration_s),
            total,
            failures: run.agg.failure_rows(),
            history: run.agg.history().to_vec(),
            workers,
            schedule_lag: run.agg.lag().cloned(),
            events: run.events.clone(),
            tls: TlsSummary::of(&run.config.target, run.config.file.tls.as_ref()),
            specs: run.config.kind.specs(),
        }
    }

    pub(super) fn publish(&mut self) {
        let now = self.clock.now();
        let mut workers: Vec<WorkerView> = self
            .workers
            .iter()
            .map(|(id, w)| {
                let (state, share, requests) = match &self.run {
                    Some(run) => match run.members.get(id) {
                        Some(m) if m.started && !m.finished => (
                            WorkerState::Running,
                            share_of(&self.workers, &run.members, *id),
                            worker_requests(run, *id),
                        ),
                        Some(m) if !m.started => (WorkerState::Assigned, 0.0, 0),
                        _ => (WorkerState::Ready, 0.0, worker_requests(run, *id)),
                    },
                    None => (
                        WorkerState::Ready,
                        0.0,
                        self.last_requests.get(id).copied().unwrap_or(0),
                    ),
                };
                WorkerView {
                    id: id.0,
                    name: w.name.clone(),
                    addr: w.addr.clone(),
                    cores: w.cores,
                    state,
                    share,
                    requests,
                    rps: w.last_rps,
                    last_seen_s: now.saturating_duration_since(w.last_seen).as_secs_f64(),
                    clock_offset_ms: w.offset_ns as f64 / 1e6,
                    gauges: worker_gauges(self.run.as_ref(), *id),
                }
            })
            .collect();
        if let Some(run) = &self.run {
            for (id, m) in &run.members {
                if let (Some(_), Some((name, addr))) = (m.lost_at_s, run.info.get(id)) {
                    workers.push(WorkerView {
                        id: id.0,
                        name: name.clone(),
                        addr: addr.clone(),
                        cores: 0,
                        state: WorkerState::Lost,
                        share: 0.0,
                        requests: worker_requests(run, *id),
                        rps: 0.0,
                        last_seen_s: 0.0,
                        clock_offset_ms: 0.0,
                        gauges: worker_gauges(Some(run), *id),
                    });
                }
            }
        }
        let run = match &self.run {
            Some(run) => {
                let state = match run.phase {
                    Phase::Assigning { .. } => RunState::Assigning,
                    Phase::Running => RunState::Running,
                    Phase::Stopping { .. } => RunState::Stopping,
                };
                Some(view(run, &self.workers, state, now))
            }
            None => self.last_view.clone(),
        };
        self.snapshots
            .send_replace(Arc::new(Snapshot { workers, run }));
    }
}

fn worker_gauges(run: Option<&Run>, id: WorkerId) -> BTreeMap<String, f64> {
    run.and_then(|run| run.agg.workers().get(&id.0))
        .map(|w| w.gauges.clone())
        .unwrap_or_default()
}

fn worker_requests(run: &Run, id: WorkerId) -> u64 {
    run.agg.workers().get(&id.0).map_or(0, |w| w.requests)
}

/// A name's figures of the last interval: rate, failure rate, p50 and p99 (ms).
#[derive(Default)]
struct Interval {
    rps: f64,
    fps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn name_view(n: &NameStats, specs: &Specs, now: Interval) -> NameView {
    let percentiles_ms = LOCUST_PERCENTILES.map(|q| n.latency_ms(q));
    // Indices into LOCUST_PERCENTILES: 50%, 90%, 95%, 99%, 100%.
    let [p50_ms, _, _, _, p90_ms, p95_ms, _, p99_ms, _, _, max_ms] = percentiles_ms;
    NameView {
        kind: n.kind.clone(),
        name: n.name.clone(),
        requests: n.requests,
        failures: n.failures,
        rps: now.rps,
        fps: now.fps,
        interval_p50_ms: now.p50_ms,
        interval_p99_ms: now.p99_ms,
        min_ms: if n.latency.is_empty() {
            0.0
        } else {
            n.latency.min() as f64 / 1000.0
        },
        p50_ms,
        p90_ms,
        p95_ms,
        p99_ms,
        max_ms,
        mean_ms: n.mean_ms(),
        percentiles_ms,
        bytes: n.bytes,
        counters: n.counters.clone(),
        metrics: n
            .metrics
            .iter()
            .map(|(k, h)| (k.clone(), MetricView::of(Exported::of_metric(specs, k), h)))
            .collect(),
        latency: Buckets::time(&n.latency),
    }
}

/// The live figures of `agg`, whose driver records `specs`: per name, all names together, and
/// failures by name and kind (most frequent first), with the rates and percentiles of its
/// last interval.
pub(crate) fn figures(
    agg: &Aggregate,
    specs: &Specs,
) -> (Vec<NameView>, NameView, Vec<FailureView>) {
    let last = agg.history().last();
    let interval = |name: &str| {
        // Percentile columns: LOCUST_PERCENTILES[0] is the median, [7] the 99th.
        last.and_then(|row| row.entries.iter().find(|e| e.name == name))
            .map_or_else(Interval::default, |e| Interval {
                rps: e.rps,
                fps: e.fps,
                p50_ms: e.percentiles_us[0] as f64 / 1000.0,
                p99_ms: e.percentiles_us[7] as f64 / 1000.0,
            })
    };
    let names = agg
        .names()
        .iter()
        .map(|n| name_view(n, specs, interval(&n.name)))
        .collect();
    let mut failures: Vec<FailureView> = agg
        .failure_rows()
        .into_iter()
        .map(|f| FailureView {
            kind: f.kind,
            name: f.name,
            error: f.error,
            occurrences: f.occurrences,
        })
        .collect();
    failures.sort_by_key(|f| std::cmp::Reverse(f.occurrences));
    let total = name_view(agg.total(), specs, interval(crate::summary::AGGREGATED));
    (names, total, failures)
}

pub(super) fn view(
    run: &Run,
    workers: &BTreeMap<WorkerId, Worker>,
    state: RunState,
    now: Instant,
) -> RunView {
    let specs = run.config.kind.specs();
    let (names, total, failures) = figures(&run.agg, &specs);
    let totals = run.agg.workers();
    let live = |id: &WorkerId| {
        workers.contains_key(id) && run.members.get(id).is_some_and(|m| !m.finished)
    };
    RunView {
        id: run.id,
        scenario: run.config.name.clone(),
        kind: run.config.kind,
        load: describe(&run.config.load, run.config.duration),
        state,
        elapsed_s: run
            .started
            .map_or(0.0, |s| now.saturating_duration_since(s).as_secs_f64()),
        // 0: no planned length (the run lasts until stopped).
        duration_s: if until_stopped(run.config.duration) {
            0.0
        } else {
            run.config.duration.as_secs_f64()
        },
        users: totals
            .iter()
            .filter(|(id, _)| live(&WorkerId(**id)))
            .map(|(_, t)| t.users)
            .sum(),
        target_rate: totals
            .iter()
            .filter(|(id, _)| live(&WorkerId(**id)))
            .map(|(_, t)| t.target_rate)
            .sum(),
        scale: run.scale,
        intervals: run.agg.history().len() as u64,
        names,
        total,
        failures,
        events: run.events.clone(),
        stop_reason: run.stop_reason.as_ref().map(ToString::to_string),
        status: None,
        schedule_lag: run.agg.lag().map_or_else(Buckets::default, Buckets::time),
        specs,
    }
}

/// The duration of a run that lasts until it is stopped (Locust's `/swarm` without
/// `run_time`): a year, which workers and timers handle like any duration, and which
/// [`describe`], the snapshot's planned length and the summary read as "until stopped".
pub const UNTIL_STOPPED: Duration = Duration::from_secs(365 * 86_400);

/// Whether a run of this duration lasts until it is stopped ([`UNTIL_STOPPED`]).
pub fn until_stopped(duration: Duration) -> bool {
    duration >= UNTIL_STOPPED
}

/// [`describe`] for a run whose targets were rescaled (`scale` ≠ 1, by `/swarm`, the API or
/// the TUI): the latest users or rate, and the run's first beside them
/// (`closed: 2 users (8 at start), ...`).
pub fn describe_scaled(load: &LoadModel, duration: Duration, scale: f64) -> String {
    let line = describe(load, duration);
    if scale == 1.0 {
        return line;
    }
    match load {
        LoadModel::Closed { users, .. } => {
            let now = (*users as f64 * scale).round() as u64;
            let from = format!("closed: {users} users");
            line.replacen(&from, &format!("closed: {now} users ({users} at start)"), 1)
        }
        LoadModel::Open { rate, .. } => {
            let now = rate * scale;
            let from = format!("open: {rate} req/s");
            line.replacen(&from, &format!("open: {now} req/s ({rate} at start)"), 1)
        }
        _ => format!("{line}, at scale {scale}"),
    }
}

/// One line describing a load model.
pub fn describe(load: &LoadModel, duration: Duration) -> String {
    let span = if until_stopped(duration) {
        "until stopped".to_string()
    } else {
        format!(
            "for {}",
            stampede_scenarios::units::format_duration(duration)
        )
    };
    match load {
        LoadModel::Closed { users, spawn_rate } if spawn_rate.is_infinite() => {
            format!("closed: {users} users {span}")
        }
        LoadModel::Closed { users, spawn_rate } => {
            format!("closed: {users} users, spawn {spawn_rate}/s, {span}")
        }
        LoadModel::Simultaneous { users, mode } => match mode {
            stampede_scenarios::UserMode::Once => {
                let d = stampede_scenarios::units::format_duration(duration);
                format!(
                    "simultaneous: {users} users, one request each at the same instant (at most {d})"
                )
            }
            stampede_scenarios::UserMode::Repeat => {
                format!("simultaneous: {users} users from the same instant, repeating {span}")
            }
        },
        LoadModel::Open {
            rate,
            arrival: stampede_scenarios::Arrival::Gamma,
            burstiness,
            ..
        } => format!("open: {rate} req/s gamma arrivals (burstiness {burstiness}) {span}"),
        LoadModel::Open { rate, arrival, .. } => {
            format!("open: {rate} req/s {arrival:?} arrivals {span}").to_lowercase()
        }
        LoadModel::Stages { target, stages, .. } => {
            let unit = match target {
                StageTarget::Users => "users",
                StageTarget::Rate => "req/s",
            };
            let steps: Vec<String> = stages
                .iter()
                .map(|s| {
                    format!(
                        "{}→{}",
                        stampede_scenarios::units::format_duration(s.duration),
                        s.target
                    )
                })
                .collect();
            format!("stages ({unit}): {}", steps.join(", "))
        }
    }
}
