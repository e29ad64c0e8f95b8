//! The coordinator as a state machine: events in (joins, Ready, reports, losses, commands,
//! ticks of a [`ManualClock`]), decisions out (what each worker's outbox got, the snapshot,
//! the finished summary). No process, no socket, no sleep.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use stampede_protocol::{Counter, FromWorker, Report, Series, Share, ToWorker, metric};
use stampede_scenarios::recorder::new_histogram;
use stampede_scenarios::{Overrides, ScenarioConfig};
use tokio::sync::{mpsc, oneshot, watch};

use super::{Command, Coordinator, CoordinatorConfig, Event, ManualClock, WorkerId};
use crate::aggregate::DecodedReport;
use crate::snapshot::Snapshot;
use crate::state::{RunEnd, RunState, RunStatus, WorkerState};
use crate::summary::RunSummary;

/// The master's clock at the start of every test (Unix ms).
const T0_MS: u64 = 1_700_000_000_000;

fn scenario(load: &str) -> ScenarioConfig {
    let text = format!(
        "name = \"t\"\nkind = \"http\"\ntarget = \"http://127.0.0.1:9\"\nduration = \"10s\"\n\
         [load]\n{load}\n[[requests]]\nname = \"home\"\npath = \"/\"\n"
    );
    ScenarioConfig::parse(&text, "t.toml", &Overrides::default()).expect("a valid scenario")
}

/// A coordinator with its inputs and outputs in reach.
struct Bench {
    coord: Coordinator,
    clock: Arc<ManualClock>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    finished: mpsc::UnboundedReceiver<Arc<RunSummary>>,
    outboxes: BTreeMap<u64, mpsc::UnboundedReceiver<ToWorker>>,
    seq: BTreeMap<u64, u64>,
}

impl Bench {
    fn new(load: &str) -> Bench {
        Bench::with(load, Duration::from_secs(2))
    }

    fn with(load: &str, stop_grace: Duration) -> Bench {
        Bench::configured(load, stop_grace, false)
    }

    fn configured(load: &str, stop_grace: Duration, tolerate_worker_loss: bool) -> Bench {
        let clock = Arc::new(ManualClock::at_unix_ms(T0_MS));
        let (snap_tx, snapshots) = watch::channel(Arc::new(Snapshot::default()));
        let (fin_tx, finished) = mpsc::unbounded_channel();
        let coord = Coordinator::new(
            CoordinatorConfig {
                scenario: Some(scenario(load)),
                auto_start_at: None,
                out: None,
                records: BTreeMap::new(),
                runs_dir: None,
                stop_grace,
                tolerate_worker_loss,
                clock: clock.clone(),
            },
            snap_tx,
            fin_tx,
            Arc::default(),
        );
        Bench {
            coord,
            clock,
            snapshots,
            finished,
            outboxes: BTreeMap::new(),
            seq: BTreeMap::new(),
        }
    }

    /// Feed one event and publish, as the actor's loop does.
    fn feed(&mut self, ev: Event) {
        self.coord.handle(ev);
        self.coord.publish();
    }

    fn join(&mut self, id: u64, cores: u32) {
        let (outbox, rx) = mpsc::unbounded_channel();
        self.outboxes.insert(id, rx);
        self.feed(Event::Joined {
            id: WorkerId(id),
            name: format!("w{id}"),
            addr: format!("127.0.0.1:{}", 40_000 + id),
            cores,
            outbox,
        });
    }

    /// What worker `id` was sent since the last look, clock probes left out.
    fn sent(&mut self, id: u64) -> Vec<ToWorker> {
        let rx = self.outboxes.get_mut(&id).expect("a joined worker");
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            if !matches!(m, ToWorker::Ping { .. }) {
                out.push(m);
            }
        }
        out
    }

    /// The clock probes worker `id` was sent since the last look: (seq, master_ns).
    fn pings(&mut self, id: u64) -> Vec<(u64, u64)> {
        let rx = self.outboxes.get_mut(&id).expect("a joined worker");
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            if let ToWorker::Ping { seq, master_ns } = m {
                out.push((seq, master_ns));
            }
        }
        out
    }

    fn command<T>(&mut self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> T {
        let (tx, mut rx) = oneshot::channel();
        self.feed(Event::Command(Box::new(make(tx))));
        rx.try_recv().expect("commands are answered at once")
    }

    fn start(&mut self) -> u64 {
        self.command(|reply| Command::Start {
            scenario: None,
            out: None,
            reply,
        })
        .expect("the run starts")
    }

    fn ready(&mut self, id: u64, run_id: u64) {
        self.feed(Event::Message(WorkerId(id), FromWorker::Ready { run_id }));
    }

    /// A report of `requests` requests of 1 ms each (the final one when `last`).
    fn report(&mut self, id: u64, run_id: u64, requests: u64, last: bool) {
        self.report_with(id, run_id, (requests, 0), last);
    }

    /// A report of `(requests, of which failed)`.
    fn report_with(&mut self, id: u64, run_id: u64, (requests, failed): (u64, u64), last: bool) {
        let mut h = new_histogram();
        for _ in 0..requests {
            h.record(1_000).expect("in range");
        }
        let mut hist = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&h, &mut hist)
            .expect("serializes");
        let seq = self.seq.entry(id).or_insert(0);
        let report = Report {
            run_id,
            seq: *seq,
            start_unix_ms: 0,
            end_unix_ms: 0,
            users: 1,
            target_rate: 0.0,
            series: vec![Series {
                name: "home".into(),
                metric: metric::LATENCY.into(),
                hist,
            }],
            counters: vec![
                Counter {
                    name: "home".into(),
                    counter: metric::REQUESTS.into(),
                    value: requests,
                },
                Counter {
                    name: "home".into(),
                    counter: metric::FAILURES.into(),
                    value: failed,
                },
            ],
            failures: vec![],
            records: vec![],
            gauges: vec![],
            last,
        };
        *seq += 1;
        let decoded = DecodedReport::decode(report).expect("a well-formed report");
        self.feed(Event::Report(WorkerId(id), Box::new(decoded)));
    }

    fn lose(&mut self, id: u64) {
        self.feed(Event::Lost(WorkerId(id), "connection closed".into()));
    }

    /// Move the clock and let one tick of the actor's loop happen.
    fn tick(&mut self, by: Duration) {
        self.clock.advance(by);
        self.coord.on_tick();
        self.coord.publish();
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.borrow().clone()
    }

    fn run_state(&self) -> Option<RunState> {
        self.snapshot().run.as_ref().map(|r| r.state)
    }

    fn events(&self) -> Vec<String> {
        self.snapshot()
            .run
            .as_ref()
            .map(|r| r.events.clone())
            .unwrap_or_default()
    }

    fn summary(&mut self) -> Arc<RunSummary> {
        self.finished.try_recv().expect("the run finished")
    }

    /// Start a run on workers `ids` (1 core each), all ready: the run is going on.
    fn running(load: &str, ids: &[u64]) -> (Bench, u64) {
        Bench::running_with(Bench::new(load), ids)
    }

    fn running_with(mut b: Bench, ids: &[u64]) -> (Bench, u64) {
        for id in ids {
            b.join(*id, 1);
        }
        let run = b.start();
        for id in ids {
            b.ready(*id, run);
        }
        for id in ids {
            b.sent(*id);
        }
        (b, run)
    }
}

fn share_of(m: &ToWorker) -> Option<&Share> {
    match m {
        ToWorker::Assign(a) => Some(&a.share),
        ToWorker::Update { share, .. } => Some(share),
        _ => None,
    }
}

const CLOSED: &str = "model = \"closed\"\nusers = 4";

#[test]
fn a_run_goes_assigning_running_stopping_finished() {
    let mut b = Bench::new(CLOSED);
    b.join(1, 1);
    b.join(2, 3);
    assert_eq!(b.run_state(), None);
    let run = b.start();
    assert_eq!(b.run_state(), Some(RunState::Assigning));
    for (id, slot) in [(1, 0), (2, 1)] {
        let sent = b.sent(id);
        assert_eq!(sent.len(), 1, "worker {id}: {sent:?}");
        let ToWorker::Assign(a) = &sent[0] else {
            panic!("worker {id} was sent {sent:?}")
        };
        assert_eq!(a.run_id, run);
        // Shares follow the cores.
        assert_eq!(
            a.share,
            Share {
                slot,
                weights: vec![1, 3]
            }
        );
    }
    b.ready(1, run);
    assert_eq!(
        b.run_state(),
        Some(RunState::Assigning),
        "one is not ready yet"
    );
    assert!(b.sent(1).is_empty());
    b.ready(2, run);
    assert_eq!(b.run_state(), Some(RunState::Running));
    for id in [1, 2] {
        let start = b
            .sent(id)
            .into_iter()
            .find_map(|m| match m {
                ToWorker::Start {
                    run_id,
                    at_unix_ns,
                    elapsed_ms,
                } => Some((run_id, at_unix_ns, elapsed_ms)),
                _ => None,
            })
            .expect("a start time");
        // Unanswered probes leave the offset at 0: the start is 250 ms from now.
        assert_eq!(start, (run, (T0_MS + 250) * 1_000_000, 0));
    }
    b.report(1, run, 10, false);
    b.report(2, run, 30, false);
    b.tick(Duration::from_secs(1));
    assert_eq!(b.snapshot().run.as_ref().unwrap().total.requests, 40);

    // The duration's end, by the master's clock.
    b.tick(Duration::from_secs(10));
    assert_eq!(b.run_state(), Some(RunState::Stopping));
    b.report(1, run, 1, true);
    assert_eq!(
        b.run_state(),
        Some(RunState::Stopping),
        "worker 2 is not done"
    );
    b.report(2, run, 2, true);
    assert_eq!(b.run_state(), Some(RunState::Finished));
    let s = b.summary();
    assert_eq!(s.total.requests, 43);
    assert_eq!(s.stop_reason, RunEnd::DurationReached);
    assert_eq!(s.status(), RunStatus::Completed);
    assert!(s.workers.iter().all(|w| w.state == WorkerState::Finished));
    assert_eq!(s.started_unix_ms, T0_MS + 250);
}

/// The offset each start time is corrected by comes from the probe with the smallest round
/// trip, whatever order the answers come in.
#[test]
fn start_times_are_corrected_by_the_best_probe() {
    // (round trip of each answered probe in ms, the worker's clock ahead by ms), expected
    // offset in ns.
    let cases: [(&[u64], i64, i64); 4] = [
        (&[4], 0, 0),
        (&[4], 1_000, 1_000_000_000),
        (&[10, 2, 6], -300, -300_000_000),
        (&[8, 8, 1], 50, 50_000_000),
    ];
    for (rtts, ahead_ms, want_offset_ns) in cases {
        let mut b = Bench::new(CLOSED);
        b.join(1, 1);
        let run = b.start();
        let pings = b.pings(1);
        assert!(pings.len() >= rtts.len(), "{pings:?}");
        for (&(_, master_ns), rtt_ms) in pings.iter().zip(rtts) {
            let rtt_ns = rtt_ms * 1_000_000;
            // The worker answers half-way through the round trip, by its own clock.
            let worker_ns = (master_ns + rtt_ns / 2) as i64 + ahead_ms * 1_000_000;
            b.feed(Event::Clock {
                id: WorkerId(1),
                master_ns,
                worker_ns: worker_ns as u64,
                received_ns: master_ns + rtt_ns,
            });
        }
        b.ready(1, run);
        let at = b
            .sent(1)
            .into_iter()
            .find_map(|m| match m {
                ToWorker::Start { at_unix_ns, .. } => Some(at_unix_ns),
                _ => None,
            })
            .expect("a start time");
        let master_at = ((T0_MS + 250) * 1_000_000) as i64;
        assert_eq!(
            at as i64 - master_at,
            want_offset_ns,
            "rtts {rtts:?}, ahead {ahead_ms} ms"
        );
        let view = b.snapshot();
        assert!(
            (view.workers[0].clock_offset_ms - want_offset_ns as f64 / 1e6).abs() < 1e-9,
            "{:?}",
            view.workers[0]
        );
    }
}

#[test]
fn a_worker_not_ready_in_time_is_left_out() {
    let mut b = Bench::new(CLOSED);
    b.join(1, 1);
    b.join(2, 1);
    let run = b.start();
    b.ready(1, run);
    b.tick(Duration::from_secs(9));
    assert_eq!(
        b.run_state(),
        Some(RunState::Assigning),
        "10 s to get ready"
    );
    b.tick(Duration::from_secs(1));
    assert_eq!(b.run_state(), Some(RunState::Running));
    assert!(
        b.events()
            .contains(&"worker 2 did not get ready in time and was left out".to_string()),
        "{:?}",
        b.events()
    );
    // The one left takes the whole load.
    let sent = b.sent(1);
    assert!(
        sent.iter()
            .filter_map(share_of)
            .any(|s| s.weights == vec![1] && s.slot == 0),
        "{sent:?}"
    );
    assert!(
        !b.sent(2)
            .iter()
            .any(|m| matches!(m, ToWorker::Start { .. })),
        "no start for the slow one"
    );
}

#[test]
fn no_worker_ready_fails_the_run() {
    let mut b = Bench::new(CLOSED);
    b.join(1, 1);
    b.start();
    b.tick(Duration::from_secs(10));
    let s = b.summary();
    assert_eq!(s.stop_reason, RunEnd::NoneReady);
    assert_eq!(s.status(), RunStatus::Failed);
    assert_eq!(b.run_state(), Some(RunState::Finished));
}

#[test]
fn every_worker_rejecting_fails_the_run_with_the_reason() {
    let mut b = Bench::new(CLOSED);
    b.join(1, 1);
    let run = b.start();
    b.feed(Event::Message(
        WorkerId(1),
        FromWorker::Rejected {
            run_id: run,
            reason: "no such backend".into(),
        },
    ));
    let s = b.summary();
    assert_eq!(s.stop_reason, RunEnd::Rejected("no such backend".into()));
    assert_eq!(
        s.stop_reason.to_string(),
        "every worker rejected the scenario: no such backend"
    );
    assert_eq!(s.status(), RunStatus::Failed);
}

#[test]
fn a_lost_worker_keeps_its_data_and_its_share_moves() {
    let (mut b, run) = Bench::running(CLOSED, &[1, 2, 3]);
    b.report(2, run, 25, false);
    b.tick(Duration::from_secs(3));
    b.lose(2);
    assert_eq!(b.run_state(), Some(RunState::Running));
    for (id, slot) in [(1, 0), (3, 1)] {
        let sent = b.sent(id);
        let share = sent.iter().filter_map(share_of).next_back();
        assert_eq!(
            share,
            Some(&Share {
                slot,
                weights: vec![1, 1]
            }),
            "worker {id}: {sent:?}"
        );
    }
    let snap = b.snapshot();
    assert_eq!(snap.count(WorkerState::Lost), 1);
    assert_eq!(snap.count(WorkerState::Running), 2);
    assert!(
        b.events()
            .iter()
            .any(|e| e.starts_with("worker 2 (w2) lost at 2.8s")
                && e.ends_with("its share moved to 2 worker(s)")),
        "{:?}",
        b.events()
    );
    let stopped = b.command(|reply| Command::Stop { run_id: run, reply });
    assert_eq!(stopped, Ok(()));
    b.report(1, run, 0, true);
    b.report(3, run, 0, true);
    let s = b.summary();
    assert_eq!(s.total.requests, 25, "the lost worker's requests are kept");
    let lost = s.workers.iter().find(|w| w.id == 2).unwrap();
    assert_eq!(lost.state, WorkerState::Lost);
    // Load started 250 ms after the run did.
    assert_eq!(lost.lost_at_s, Some(2.75));
}

#[test]
fn losing_the_last_worker_ends_the_run() {
    let (mut b, run) = Bench::running(CLOSED, &[1]);
    b.report(1, run, 5, false);
    b.lose(1);
    let s = b.summary();
    assert_eq!(s.stop_reason, RunEnd::NoWorkersLeft);
    assert_eq!(s.total.requests, 5);
}

#[test]
fn reports_of_other_runs_are_ignored() {
    let (mut b, run) = Bench::running(CLOSED, &[1]);
    b.report(1, run + 1, 100, false);
    b.report(1, run, 7, false);
    b.tick(Duration::from_secs(1));
    assert_eq!(b.snapshot().run.as_ref().unwrap().total.requests, 7);
    b.command(|reply| Command::Stop { run_id: run, reply })
        .unwrap();
    b.report(1, run, 1, true);
    assert_eq!(b.summary().total.requests, 8);
    // A report after the run finished changes nothing.
    b.report(1, run, 50, true);
    assert_eq!(b.snapshot().run.as_ref().unwrap().total.requests, 8);
    assert!(b.finished.try_recv().is_err(), "finished once");
}

#[test]
fn a_missing_final_report_ends_the_run_after_the_grace() {
    let (mut b, run) = Bench::running(CLOSED, &[1, 2]);
    b.command(|reply| Command::Stop { run_id: run, reply })
        .unwrap();
    for id in [1, 2] {
        assert!(
            b.sent(id)
                .iter()
                .any(|m| matches!(m, ToWorker::Stop { run_id, .. } if *run_id == run)),
            "worker {id} is told to stop"
        );
    }
    b.report(1, run, 3, true);
    assert_eq!(b.run_state(), Some(RunState::Stopping));
    // The grace is the longer of the master's (2 s here) and the request timeout + 5 s.
    let grace = super::grace(Duration::from_secs(2), &scenario(CLOSED));
    b.tick(grace - Duration::from_millis(100));
    assert_eq!(b.run_state(), Some(RunState::Stopping));
    b.tick(Duration::from_millis(100));
    let s = b.summary();
    assert_eq!(s.stop_reason, RunEnd::StoppedByUser);
    assert!(
        s.events
            .contains(&"worker 2 did not send its final report in time".to_string()),
        "{:?}",
        s.events
    );
    let late = s.workers.iter().find(|w| w.id == 2).unwrap();
    assert_eq!(late.state, WorkerState::Unfinished);
}

#[test]
fn commands_answer_what_they_did() {
    let mut b = Bench::new(CLOSED);
    let no_workers = b.command(|reply| Command::Start {
        scenario: None,
        out: None,
        reply,
    });
    assert_eq!(no_workers, Err("no workers connected".to_string()));
    b.join(1, 1);
    let run = b.start();
    let again = b.command(|reply| Command::Start {
        scenario: None,
        out: None,
        reply,
    });
    assert_eq!(again, Err(format!("run {run} is still going on")));
    let other = b.command(|reply| Command::Stop {
        run_id: run + 5,
        reply,
    });
    assert_eq!(other, Err(format!("run {} is not going on", run + 5)));
    // (scale, answer)
    let scales: [(f64, Result<(), String>); 3] = [
        (2.0, Ok(())),
        (0.0, Err("scale 0 must be above 0".into())),
        (f64::NAN, Err("scale NaN must be above 0".into())),
    ];
    for (scale, want) in scales {
        assert_eq!(b.command(|reply| Command::Scale { scale, reply }), want);
    }
    let updates: Vec<f64> = b
        .sent(1)
        .into_iter()
        .filter_map(|m| match m {
            ToWorker::Update { scale, .. } => Some(scale),
            _ => None,
        })
        .collect();
    assert_eq!(updates, vec![2.0], "one update, for the valid scale");
    assert_eq!(b.snapshot().run.as_ref().unwrap().scale, 2.0);
}

#[test]
fn a_worker_joining_mid_run_starts_part_way_and_shares_move() {
    let (mut b, run) = Bench::running(CLOSED, &[1]);
    b.tick(Duration::from_secs(4));
    b.join(2, 1);
    let sent = b.sent(2);
    let Some(ToWorker::Assign(a)) = sent.first() else {
        panic!("the joiner gets the scenario: {sent:?}")
    };
    assert_eq!(a.run_id, run);
    b.ready(2, run);
    let start = b.sent(2).into_iter().find_map(|m| match m {
        ToWorker::Start { elapsed_ms, .. } => Some(elapsed_ms),
        _ => None,
    });
    // Load started 250 ms after the run did; the joiner starts 100 ms from now.
    assert_eq!(start, Some(4_000 - 250 + 100));
    let share = b.sent(1).iter().filter_map(share_of).next_back().cloned();
    assert_eq!(
        share,
        Some(Share {
            slot: 0,
            weights: vec![1, 1]
        })
    );
    assert!(
        b.events()
            .contains(&"worker 2 joined at 3.9s and took a share".to_string()),
        "{:?}",
        b.events()
    );
}

#[test]
fn a_simultaneous_start_gives_joiners_no_share() {
    let load = "model = \"simultaneous\"\nusers = 4\nmode = \"once\"";
    let (mut b, run) = Bench::running(load, &[1]);
    b.join(2, 1);
    b.ready(2, run);
    assert!(
        !b.sent(2)
            .iter()
            .any(|m| matches!(m, ToWorker::Start { .. })),
        "no start for a late joiner"
    );
    assert!(
        b.events()
            .contains(&"worker 2 joined after the simultaneous start and takes no share".into()),
        "{:?}",
        b.events()
    );
}

/// Every way a run ends, with the status and verdict summary.json, the API, `/metrics` and
/// the exit code take from it.
#[test]
fn each_ending_has_its_status_and_verdict() {
    enum Ending {
        /// Both workers report and the duration passes.
        Planned,
        /// Both report, the user stops it.
        UserStop,
        /// Both report, the master shuts down.
        Shutdown,
        /// Worker 2 is lost mid-run; worker 1 goes on to the end.
        LostOne,
        /// Both are lost.
        LostAll,
        /// Every request fails.
        AllFail,
        /// The duration passes with no request made.
        Nothing,
    }
    // (ending, tolerate worker loss, status, passed)
    let cases = [
        (Ending::Planned, false, RunStatus::Completed, true),
        (Ending::UserStop, false, RunStatus::Stopped, false),
        (Ending::Shutdown, false, RunStatus::Stopped, false),
        (Ending::LostOne, false, RunStatus::Degraded, false),
        (Ending::LostOne, true, RunStatus::Degraded, true),
        (Ending::LostAll, true, RunStatus::Failed, false),
        (Ending::AllFail, false, RunStatus::Completed, false),
        (Ending::Nothing, false, RunStatus::Failed, false),
    ];
    for (ending, tolerate, status, passed) in cases {
        let bench = Bench::configured(CLOSED, Duration::from_secs(2), tolerate);
        let (mut b, run) = Bench::running_with(bench, &[1, 2]);
        let (requests, failed) = match ending {
            Ending::AllFail => (5, 5),
            Ending::Nothing => (0, 0),
            _ => (5, 0),
        };
        b.report_with(1, run, (requests, failed), false);
        b.report_with(2, run, (requests, failed), false);
        b.tick(Duration::from_secs(2));
        let done = |b: &mut Bench| {
            b.report(1, run, 0, true);
            b.report(2, run, 0, true);
        };
        match ending {
            Ending::Planned | Ending::AllFail | Ending::Nothing => {
                b.tick(Duration::from_secs(9));
                done(&mut b);
            }
            Ending::UserStop => {
                b.command(|reply| Command::Stop { run_id: run, reply })
                    .unwrap();
                done(&mut b);
            }
            Ending::Shutdown => {
                b.coord.stop_run(RunEnd::Shutdown);
                done(&mut b);
            }
            Ending::LostOne => {
                b.lose(2);
                b.tick(Duration::from_secs(9));
                b.report(1, run, 0, true);
            }
            Ending::LostAll => {
                b.lose(1);
                b.lose(2);
            }
        }
        let s = b.summary();
        let what = format!("{} (tolerate: {tolerate})", s.stop_reason);
        assert_eq!(s.status(), status, "{what}");
        assert_eq!(s.passed(), passed, "{what}");
        let view = b.snapshot();
        let view = view.run.as_ref().unwrap();
        assert_eq!(view.status, Some(status), "the snapshot agrees: {what}");
        let doc = crate::results::summary_json(&s);
        assert_eq!(
            doc["status"],
            status.as_str(),
            "summary.json agrees: {what}"
        );
        assert_eq!(doc["passed"], passed, "summary.json agrees: {what}");
    }
}

/// Workers end a run at its duration by their own (corrected) clocks: final reports that come
/// just before the master's clock reaches the end mark the planned end, not the moment they
/// arrived; reports long before it mark when they came.
#[test]
fn final_reports_just_before_the_end_mark_the_planned_end() {
    // (ms before the planned end when the last final report comes, the stop the summary says,
    // as ms after the start)
    for (early_ms, stopped_after_ms) in [(0, 10_000), (200, 10_000), (3_000, 7_000)] {
        let (mut b, run) = Bench::running(CLOSED, &[1]);
        // Load starts 250 ms after the run.
        b.clock
            .advance(Duration::from_millis(250 + 10_000 - early_ms));
        b.report(1, run, 4, true);
        let s = b.summary();
        assert_eq!(
            s.stopped_unix_ms - s.started_unix_ms,
            stopped_after_ms,
            "{early_ms} ms early"
        );
        assert!(s.ended_unix_ms >= s.stopped_unix_ms);
    }
}
