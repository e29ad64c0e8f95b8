//! `stampede master` and `stampede worker` as separate processes over QUIC on loopback,
//! against a separate `stampede target http`.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{MasterProc, Scenario, TOKEN, Target, TestDir, WorkerProc, stampede, wait_until};

fn u64_at(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} is not an unsigned integer in {v:#}"))
}

/// A headless master that runs `scenario` into `out` once `workers` have joined with `token`.
fn headless_master(
    workers: usize,
    token: &str,
    scenario: &std::path::Path,
    out: &std::path::Path,
) -> MasterProc {
    let workers = workers.to_string();
    MasterProc::start(&[
        "--headless",
        "--expect-workers",
        &workers,
        "--token",
        token,
        "--scenario",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
}

/// Wait until the target has served a request: the run has started.
fn wait_for_load(target: &Target) {
    wait_until(
        Duration::from_secs(15),
        "the first request at the target",
        || (target.stats().requests > 0).then_some(()),
    );
}

#[test]
fn master_two_workers_count_matches_target() {
    let target = Target::start();
    let dir = TestDir::new();
    let scenario = Scenario::closed(&target.url, 20)
        .duration("3s")
        .write_to(&dir);
    let out = dir.join("out");
    let mut master = headless_master(2, TOKEN, &scenario, &out);
    let _w1 = WorkerProc::start(master.quic, TOKEN, "w1");
    // The second worker takes its token from the environment.
    let mut cmd = WorkerProc::command(master.quic);
    cmd.env("STAMPEDE_TOKEN", TOKEN).args(["--name", "w2"]);
    let _w2 = WorkerProc::spawn("w2", cmd);

    let done = master.proc.wait_exit(Duration::from_secs(20));
    done.assert_code(0);
    let summary = dir.read_json("out/summary.json");
    let total = u64_at(&summary, "/metrics/total_requests");
    assert!(total > 0);
    let served = target.stats();
    assert_eq!(
        served.requests, total,
        "the target served {} requests, the master counted {total}",
        served.requests
    );
    assert_eq!(served.errors, 0);
    let workers = summary["workers"].as_array().expect("workers");
    let mut names: Vec<&str> = workers.iter().filter_map(|w| w["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["w1", "w2"]);
    for w in workers {
        assert_eq!(w["state"], "finished", "{w:#}");
        assert!(u64_at(w, "/requests") > 0, "{w:#}");
    }
}

#[test]
fn killed_worker_share_moves() {
    worker_leaving_mid_run_moves_its_share(|w| w.proc.kill(), "killed");
}

/// A `stampede worker` given Ctrl-C mid-run sends its final report and leaves: no longer
/// needed for the run's stop, so it is lost as a killed one is, and its share moves.
#[test]
fn interrupted_worker_share_moves() {
    worker_leaving_mid_run_moves_its_share(|w| w.proc.signal("INT", false), "interrupted");
}

/// One of two workers leaves 3 s into an 8 s run (`leave`): the run still ends on time, the
/// worker is `lost` with its reported data kept, and the survivor took over its share. The
/// run is `degraded`: it does not pass (exit 6) without `--tolerate-worker-loss`.
fn worker_leaving_mid_run_moves_its_share(leave: fn(&mut WorkerProc), how: &str) {
    const DURATION_S: u64 = 8;
    let target = Target::start();
    let dir = TestDir::new();
    let scenario = Scenario::closed(&target.url, 20)
        .duration(&format!("{DURATION_S}s"))
        .write_to(&dir);
    let out = dir.join("out");
    let mut master = headless_master(2, TOKEN, &scenario, &out);
    let mut doomed = WorkerProc::start(master.quic, TOKEN, "doomed");
    let _survivor = WorkerProc::start(master.quic, TOKEN, "survivor");
    wait_for_load(&target);
    std::thread::sleep(Duration::from_secs(3));
    leave(&mut doomed);

    // The run still ends on time (give or take the 4 s it takes to notice the loss).
    let done = master.proc.wait_exit(Duration::from_secs(DURATION_S + 10));
    assert_ne!(done.code(), 4, "the run could not finish\n{}", done.show());
    done.assert_code(6);
    assert!(
        done.stderr
            .contains("the run is degraded: a worker was lost"),
        "{}",
        done.show()
    );

    let summary = dir.read_json("out/summary.json");
    assert_eq!(summary["status"], "degraded", "{how}");
    assert_eq!(summary["passed"], false, "{how}");
    let workers = summary["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2, "{workers:#?}");
    let by_name = |name: &str| {
        workers
            .iter()
            .find(|w| w["name"] == name)
            .unwrap_or_else(|| panic!("no worker {name} in {workers:#?}"))
    };
    let (lost, kept) = (by_name("doomed"), by_name("survivor"));
    assert_eq!(lost["state"], "lost", "{how}: {lost:#}");
    let lost_at = lost["lost_at_s"].as_f64().expect("lost_at_s set");
    assert!(
        (0.0..=DURATION_S as f64).contains(&lost_at),
        "lost_at_s {lost_at}"
    );
    assert_eq!(kept["state"], "finished", "{kept:#}");
    assert!(u64_at(kept, "/requests") > 0, "{kept:#}");
    let events = crate::util::events(&summary);
    let about_the_loss =
        |e: &&str| e.contains("doomed") && e.contains("lost") && e.contains("moved to 1 worker");
    assert!(
        events.iter().any(about_the_loss),
        "{how}: no event about the lost worker and its share: {events:?}"
    );
    let total = u64_at(&summary, "/metrics/total_requests");
    let lost_requests = u64_at(lost, "/requests");
    assert!(
        lost_requests > 0,
        "the doomed worker reported before it died"
    );
    assert!(total >= lost_requests, "the lost worker's data is kept");
    assert_eq!(
        total,
        lost_requests + u64_at(kept, "/requests"),
        "total vs the workers' requests"
    );
    // The lost worker's unreported requests reached the target but not the master.
    assert!(target.stats().requests >= total);
}

#[test]
fn killed_master_stops_workers() {
    let target = Target::start();
    let dir = TestDir::new();
    let scenario = Scenario::closed(&target.url, 10)
        .duration("60s")
        .write_to(&dir);
    let mut master = MasterProc::start(&[
        "--headless",
        "--expect-workers",
        "1",
        "--token",
        TOKEN,
        "--scenario",
        scenario.to_str().unwrap(),
    ]);
    let mut worker = WorkerProc::start(master.quic, TOKEN, "orphan");
    wait_for_load(&target);
    std::thread::sleep(Duration::from_secs(2));
    master.proc.kill();

    let done = worker.proc.wait_exit(Duration::from_secs(8));
    assert_eq!(
        done.status.code(),
        Some(1),
        "the worker should exit on its own, with an error\n{}",
        done.show()
    );
    // The wording depends on whether reading or writing noticed first (see the report); both
    // say the connection was lost.
    let last = done.stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: ") && last.contains("connection lost"),
        "the worker should say why it stopped\n{}",
        done.show()
    );
    let before = target.stats().requests;
    assert!(before > 0);
    std::thread::sleep(Duration::from_secs(1));
    let after = target.stats().requests;
    assert_eq!(before, after, "load went on after the worker exited");
}

#[test]
fn wrong_token_is_refused() {
    let master = MasterProc::start(&["--token", "the right token, 16+ bytes"]);
    let started = Instant::now();
    let mut worker = WorkerProc::start(master.quic, "another token, 16+ bytes", "intruder");
    let done = worker.proc.wait_exit(Duration::from_secs(10));
    assert_ne!(done.code(), 0, "{}", done.show());
    assert!(started.elapsed() < Duration::from_secs(10));
    let last = done.stderr.lines().last().unwrap_or("");
    // The worker checks the master's proof first: with another token it fails, and the worker
    // leaves without sending its own.
    assert!(
        last.starts_with("error: ")
            && last.contains("did not prove it knows this worker's token")
            && last.contains("nothing was sent to it"),
        "want a one-line refusal on stderr\n{}",
        done.show()
    );
    assert!(!done.stderr.contains("panicked"), "{}", done.show());
    master.proc.wait_stderr_line(
        "refused this master's token proof (a worker with another token?)",
        Duration::from_secs(5),
    );
}

#[test]
fn lost_worker_users_leave_the_history() {
    const USERS: u64 = 20;
    let target = Target::start();
    let dir = TestDir::new();
    let scenario = Scenario::closed(&target.url, USERS)
        .duration("10s")
        .write_to(&dir);
    let out = dir.join("out");
    let mut master = headless_master(2, TOKEN, &scenario, &out);
    let mut doomed = WorkerProc::start(master.quic, TOKEN, "doomed");
    let _survivor = WorkerProc::start(master.quic, TOKEN, "survivor");
    wait_for_load(&target);
    std::thread::sleep(Duration::from_secs(2));
    doomed.proc.kill();
    // A lost worker makes the run degraded: exit 6.
    master
        .proc
        .wait_exit(Duration::from_secs(20))
        .assert_code(6);

    let history = dir.read("out/stats_history.csv");
    let users: Vec<u64> = history
        .lines()
        .filter(|l| l.split(',').nth(3) == Some("Aggregated"))
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(
        users.iter().all(|&u| u <= USERS),
        "User Count above the scenario's {USERS} users: {users:?}"
    );
    assert_eq!(
        users.last(),
        Some(&0),
        "users after the run ended: {users:?}"
    );
}

#[test]
fn worker_gives_up_at_connect_timeout() {
    // A UDP socket that never answers: the "master" is silent.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let started = Instant::now();
    let mut cmd = stampede();
    cmd.args([
        "worker",
        "--master",
        &silent.local_addr().unwrap().to_string(),
        "--token",
        TOKEN,
        "--connect-timeout",
        "1s",
    ]);
    let done = WorkerProc::spawn("worker", cmd)
        .proc
        .wait_exit(Duration::from_secs(15));
    let took = started.elapsed();
    assert_eq!(done.code(), 1, "{}", done.show());
    assert!(
        done.stderr.contains("cannot reach the master"),
        "{}",
        done.show()
    );
    assert!(
        took < Duration::from_millis(3500),
        "--connect-timeout 1s gave up after {took:?}"
    );
}

/// A master name that does not resolve (yet: a container starting) is tried again until the
/// connect timeout, then named in the error.
#[test]
fn worker_retries_an_unresolved_master_name() {
    let mut cmd = stampede();
    cmd.args([
        "worker",
        "--master",
        "master.invalid:7400",
        "--token",
        TOKEN,
    ])
    .args(["--connect-timeout", "2s"]);
    let done = WorkerProc::spawn("worker", cmd)
        .proc
        .wait_exit(Duration::from_secs(30));
    assert_eq!(done.code(), 1, "{}", done.show());
    assert!(
        done.stderr
            .contains("resolving master address `master.invalid:7400`"),
        "{}",
        done.show()
    );
    assert!(done.stderr.contains("retrying"), "{}", done.show());
}

/// SIGTERM (`docker stop`, Kubernetes) and SIGHUP to a headless master mid-run do what Ctrl-C
/// does: the load stops, the workers' final reports are gathered, every result is written,
/// the status is `stopped` and the exit code 5 says so; the target's count equals the
/// master's.
#[test]
fn headless_master_stops_cleanly_on_sigterm_sighup_and_sigint() {
    const TOKEN: &str = "signals-test-token-0123";
    for signal in ["TERM", "HUP", "INT"] {
        let target = Target::start();
        let dir = TestDir::new();
        let scenario = Scenario::closed(&target.url, 10)
            .duration("60s")
            .write_to(&dir);
        let out = dir.join("out");
        let mut master = headless_master(1, TOKEN, &scenario, &out);
        let _worker = WorkerProc::start(master.quic, TOKEN, "w");
        wait_for_load(&target);
        master.proc.signal(signal, false);
        let started = Instant::now();
        let done = master.proc.wait_exit(Duration::from_secs(20));
        done.assert_code(5);
        println!(
            "SIG{signal}: the master wrote its results and exited {:.1} s after the signal",
            started.elapsed().as_secs_f64()
        );
        let summary = dir.read_json("out/summary.json");
        assert_eq!(summary["status"], "stopped", "SIG{signal}: {summary:#}");
        assert_eq!(
            summary["stop_reason"], "master shutting down",
            "SIG{signal}"
        );
        assert_eq!(summary["passed"], false, "SIG{signal}");
        for f in [
            "stats.csv",
            "stats_history.csv",
            "failures.csv",
            "latency.hlog",
        ] {
            assert!(out.join(f).is_file(), "SIG{signal}: no {f}");
        }
        let workers = summary["workers"].as_array().expect("workers");
        assert_eq!(workers.len(), 1);
        assert_eq!(
            workers[0]["state"], "finished",
            "SIG{signal}: {:#}",
            workers[0]
        );
        let total = u64_at(&summary, "/metrics/total_requests");
        assert!(total > 0, "SIG{signal}");
        assert_eq!(
            target.stats().requests,
            total,
            "SIG{signal}: every request the target served is counted"
        );
    }
}

/// kill -9 of a headless master mid-run leaves `--out` consistent, up to its last second:
/// summary.json says `incomplete` and validates, the CSVs and `history.jsonl` are whole, and
/// the requests it counted trail what the target had served by at most the last reports
/// (one report interval and one tick: two seconds' worth).
#[test]
fn kill_9_leaves_a_consistent_incomplete_out_dir() {
    const TOKEN: &str = "kill-nine-test-token-01";
    let target = Target::start();
    let dir = TestDir::new();
    let scenario = Scenario::closed(&target.url, 10)
        .duration("60s")
        .write_to(&dir);
    let out = dir.join("out");
    let mut master = headless_master(1, TOKEN, &scenario, &out);
    let _worker = WorkerProc::start(master.quic, TOKEN, "w");
    // Three seconds of checkpoints: the summary the master keeps current has counted load.
    wait_until(
        Duration::from_secs(20),
        "a checkpoint with 3 seconds of history",
        || {
            let text = std::fs::read_to_string(out.join("history.jsonl")).ok()?;
            (text.lines().count() >= 3).then_some(())
        },
    );
    let served_before = target.stats().requests;
    master.proc.kill();
    let served_at_kill = target.stats().requests;

    let summary = dir.read_json("out/summary.json");
    crate::run::validate_summary(&summary);
    assert_eq!(summary["status"], "incomplete", "{summary:#}");
    assert_eq!(summary["stop_reason"], "still going on when written");
    assert_eq!(summary["passed"], false);
    let counted = u64_at(&summary, "/metrics/total_requests");
    let history = dir.read("out/history.jsonl");
    let lines: Vec<Value> = history
        .lines()
        .map(|l| serde_json::from_str(l).expect("every history.jsonl line is whole JSON"))
        .collect();
    let last = lines.last().expect("a line per second");
    let aggregate = last["entries"].as_array().unwrap().last().unwrap();
    assert_eq!(aggregate["name"], "Aggregated");
    let per_second = aggregate["rps"].as_f64().unwrap();
    println!(
        "kill -9: summary.json counted {counted} requests, the target had served {served_before}..{served_at_kill} \
         at the kill, {per_second:.0} req/s in the last second, {} seconds of history",
        lines.len()
    );
    assert!(
        counted > 0 && counted <= served_at_kill,
        "{counted} vs {served_at_kill}"
    );
    assert!(
        (served_before.saturating_sub(counted) as f64) <= 2.0 * per_second + 1.0,
        "counted {counted}, served {served_before}: more than 2 s of load missing"
    );
    let stats = dir.read("out/stats.csv");
    let aggregated = stats
        .lines()
        .find(|l| l.contains(",Aggregated,"))
        .expect("an Aggregated row");
    assert!(
        aggregated.contains(&format!(",{counted},")),
        "stats.csv agrees with summary.json: {aggregated}"
    );
    let hlog = dir.read("out/latency.hlog");
    assert!(hlog.lines().count() > 3, "the hlog is flushed each second");
}

/// A second run into the same `--out` moves the first run's files into
/// `previous-run-<id>/`: the folder never mixes two runs.
#[test]
fn a_new_run_moves_the_previous_runs_files_aside() {
    let target = Target::start();
    let dir = TestDir::new();
    let scenario = Scenario::closed(&target.url, 2)
        .duration("1s")
        .write_to(&dir);
    let out = dir.join("out");
    let run = || {
        crate::util::Proc::run(
            &[
                "run",
                scenario.to_str().unwrap(),
                "--workers",
                "1",
                "--out",
                out.to_str().unwrap(),
            ],
            crate::util::workspace_root(),
            Duration::from_secs(30),
        )
    };
    run().assert_code(0);
    let first = dir.read_json("out/summary.json");
    run().assert_code(0);
    let second = dir.read_json("out/summary.json");
    assert_ne!(first["run_id"], second["run_id"]);
    let aside = out.join(format!("previous-run-{}", first["run_id"]));
    let moved: Value =
        serde_json::from_str(&std::fs::read_to_string(aside.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(
        moved,
        first,
        "the first run's summary, whole, in {}",
        aside.display()
    );
    for f in [
        "stats.csv",
        "stats_history.csv",
        "failures.csv",
        "latency.hlog",
        "history.jsonl",
    ] {
        assert!(aside.join(f).is_file(), "{f} moved aside");
        assert!(out.join(f).is_file(), "the second run wrote {f}");
    }
    let events = crate::util::events(&second);
    assert!(
        events
            .iter()
            .any(|e| e.contains("held an earlier run's results: moved to")),
        "{events:?}"
    );
}
