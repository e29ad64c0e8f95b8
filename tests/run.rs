//! `stampede run`: master, local worker processes and (for `builtin:http`) the built-in target
//! in one command.

use std::time::Duration;

use serde_json::Value;

use crate::util::{Proc, Scenario, Target, TestDir, workspace_root};

/// Locust's `stats.csv` header, which tools that read Locust output depend on.
const STATS_CSV_HEADER: &str = "Type,Name,Request Count,Failure Count,Median Response Time,\
Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,\
Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%";

/// Locust's `failures.csv` header.
const FAILURES_CSV_HEADER: &str = "Method,Name,Error,Occurrences";

/// The checked-in schema of summary.json.
const SUMMARY_SCHEMA: &str = include_str!("../master/schema/summary.schema.json");

/// A short run's time limit: its duration plus start-up, final reports and writing results.
const RUN_LIMIT: Duration = Duration::from_secs(20);

fn u64_at(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} is not an unsigned integer in {v:#}"))
}

pub(crate) fn validate_summary(summary: &Value) {
    let schema: Value = serde_json::from_str(SUMMARY_SCHEMA).expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(summary)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "summary.json breaks its schema:\n{}",
        errors.join("\n")
    );
}

#[test]
fn run_example_builtin() {
    let dir = TestDir::new();
    let out = dir.join("out");
    let done = Proc::run(
        &[
            "run",
            "scenarios/examples/http.toml",
            "--duration",
            "2s",
            "--out",
            out.to_str().unwrap(),
        ],
        workspace_root(),
        RUN_LIMIT,
    );
    done.assert_code(0);
    for word in ["Aggregated", "index", "item", "create", "Thresholds: PASS"] {
        assert!(
            done.stdout.contains(word),
            "no {word:?} in\n{}",
            done.show()
        );
    }
    for file in [
        "summary.json",
        "stats.csv",
        "stats_history.csv",
        "failures.csv",
        "latency.hlog",
    ] {
        assert!(out.join(file).is_file(), "{file} not written");
    }

    let summary = dir.read_json("out/summary.json");
    validate_summary(&summary);
    let workers = summary["workers"].as_array().expect("workers");
    assert_eq!(workers.len(), 2, "{workers:#?}");
    for w in workers {
        assert_eq!(w["state"], "finished", "{w:#}");
        assert!(w["lost_at_s"].is_null(), "{w:#}");
        assert!(u64_at(w, "/requests") > 0, "a worker did nothing: {w:#}");
    }
    let total = u64_at(&summary, "/metrics/total_requests");
    assert!(total > 0);
    let by_worker: u64 = workers.iter().map(|w| u64_at(w, "/requests")).sum();
    assert_eq!(total, by_worker, "total vs the workers' requests");
    let by_name: u64 = summary["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| u64_at(r, "/requests"))
        .sum();
    assert_eq!(total, by_name, "total vs the per-name requests");
    assert_eq!(u64_at(&summary, "/total/requests"), total);
    assert_eq!(summary["stop_reason"], "duration reached");

    let stats = dir.read("out/stats.csv");
    eqnice!(STATS_CSV_HEADER, stats.lines().next().unwrap_or(""));
    let aggregated = stats
        .lines()
        .find(|l| l.starts_with(",Aggregated,"))
        .unwrap_or_else(|| panic!("no Aggregated row in\n{stats}"));
    assert_eq!(
        aggregated.split(',').nth(2),
        Some(total.to_string().as_str()),
        "Aggregated request count in stats.csv"
    );
    let failures = dir.read("out/failures.csv");
    eqnice!(FAILURES_CSV_HEADER, failures.lines().next().unwrap_or(""));
}

#[test]
fn open_model_rate() {
    let target = Target::start();
    let dir = TestDir::new();
    let scenario = Scenario::closed(&target.url, 1).write_to(&dir);
    let done = Proc::run(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--rate",
            "500",
            "--duration",
            "3s",
            "--out",
            "out",
        ],
        dir.path(),
        RUN_LIMIT,
    );
    done.assert_code(0);
    let summary = dir.read_json("out/summary.json");
    assert!(
        summary["load"].as_str().unwrap_or("").starts_with("open"),
        "--rate should switch to the open model: {}",
        summary["load"]
    );
    let total = u64_at(&summary, "/metrics/total_requests");
    assert!(
        (1350..=1650).contains(&total),
        "500 req/s for 3 s gave {total} requests (want 1500 ± 10%)"
    );
    assert_eq!(target.stats().requests, total, "target count vs summary");
}

/// Gamma arrivals across 2 worker processes: the run's rate is achieved, and the workers take
/// alternate arrivals of the one shared sequence (equal weights), so their counts differ by
/// at most one.
#[test]
fn gamma_arrivals_split_across_two_workers() {
    let target = Target::start();
    let dir = TestDir::new();
    let scenario = Scenario::closed(&target.url, 1).write_to(&dir);
    let done = Proc::run(
        &[
            "run",
            scenario.to_str().unwrap(),
            "--workers",
            "2",
            "--rate",
            "400",
            "--burstiness",
            "0.25",
            "--duration",
            "3s",
            "--out",
            "out",
        ],
        dir.path(),
        RUN_LIMIT,
    );
    done.assert_code(0);
    let summary = dir.read_json("out/summary.json");
    let load = summary["load"].as_str().unwrap_or("");
    assert!(load.contains("gamma") && load.contains("0.25"), "{load}");
    let total = u64_at(&summary, "/metrics/total_requests");
    // Shape 0.25: counts vary 2× as much as Poisson's (σ ≈ 70 here); ±25 % is over 4σ.
    assert!(
        (900..=1500).contains(&total),
        "400 req/s for 3 s gave {total} requests (want 1200 ± 25%)"
    );
    assert_eq!(target.stats().requests, total, "target count vs summary");
    let workers: Vec<u64> = summary["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| u64_at(w, "/requests"))
        .collect();
    assert_eq!(workers.len(), 2);
    assert!(
        workers[0].abs_diff(workers[1]) <= 1,
        "alternate arrivals of one sequence: {workers:?}"
    );
    // --burstiness needs an open load.
    let bad = Proc::run(
        &["check", scenario.to_str().unwrap()],
        dir.path(),
        RUN_LIMIT,
    );
    bad.assert_code(0);
    let bad = Proc::run(
        &["run", scenario.to_str().unwrap(), "--burstiness", "0.5"],
        dir.path(),
        RUN_LIMIT,
    );
    bad.assert_code(1);
    assert!(bad.stderr.contains("--burstiness"), "{}", bad.show());
}

#[test]
fn unreachable_target_is_recorded_as_failures() {
    let dir = TestDir::new();
    let scenario = Scenario::closed("http://127.0.0.1:1", 2)
        .threshold("error_rate", "< 0.5")
        .write_to(&dir);
    let done = Proc::run(
        &["run", scenario.to_str().unwrap(), "--out", "out"],
        dir.path(),
        RUN_LIMIT,
    );
    done.assert_code(3);
    assert!(!done.stderr.contains("panicked"), "{}", done.show());

    let failures = dir.read("out/failures.csv");
    eqnice!(FAILURES_CSV_HEADER, failures.lines().next().unwrap_or(""));
    let row = failures
        .lines()
        .find(|l| l.contains("connect: connection refused"))
        .unwrap_or_else(|| panic!("no connection-refused row in failures.csv:\n{failures}"));
    let fields: Vec<&str> = row.split(',').collect();
    assert_eq!(
        fields[..3],
        ["GET", "index", "connect: connection refused"],
        "{row}"
    );
    let occurrences: u64 = fields[3].trim().parse().expect("occurrences");

    let summary = dir.read_json("out/summary.json");
    let total = u64_at(&summary, "/metrics/total_requests");
    assert!(total > 0, "no attempts recorded");
    assert_eq!(occurrences, total, "every attempt failed the same way");
    assert_eq!(u64_at(&summary, "/total/failures"), total);
    assert_eq!(summary["metrics"]["error_rate"].as_f64(), Some(1.0));
    assert_eq!(summary["passed"], false);
}

#[test]
fn thresholds_breached_exit_3() {
    let target = Target::start_with(&["--delay", "30ms"]);
    let dir = TestDir::new();
    let scenario = Scenario::closed(&target.url, 4)
        .threshold("p99_ms", "< 5")
        .write_to(&dir);
    let done = Proc::run(
        &["run", scenario.to_str().unwrap(), "--out", "out"],
        dir.path(),
        RUN_LIMIT,
    );
    done.assert_code(3);
    assert!(
        done.stdout.contains("Thresholds: FAIL"),
        "no verdict in\n{}",
        done.show()
    );
    let summary = dir.read_json("out/summary.json");
    assert_eq!(summary["passed"], false);
    let thresholds = summary["thresholds"].as_array().expect("thresholds");
    assert_eq!(thresholds.len(), 1, "{thresholds:#?}");
    assert_eq!(thresholds[0]["passed"], false);
    let p99 = thresholds[0]["actual"].as_f64().expect("actual");
    assert!(
        p99 >= 30.0,
        "p99 {p99} ms with a 30 ms delay on every answer"
    );
}

/// Ctrl-C in a terminal (SIGINT to `run`'s whole process group: its local workers get it
/// too) or SIGINT to `run` alone stops the run without losing a worker: no loss event, no
/// worker `lost`, and every request counted has its row in requests.csv.
#[test]
fn sigint_mid_run_loses_no_worker() {
    use std::os::unix::process::CommandExt;
    for whole_group in [true, false] {
        let dir = TestDir::new();
        let out = dir.join("out");
        let mut cmd = crate::util::stampede();
        cmd.args(["run", "scenarios/examples/llm-prompts.toml"])
            .args(["--duration", "30s", "--headless", "--requests-csv", "--out"])
            .arg(&out)
            .current_dir(workspace_root())
            // Its own process group, as a shell gives a foreground job.
            .process_group(0);
        let mut run = Proc::spawn("stampede run (interrupted)", cmd);
        // Streams in flight on both workers when the signal comes.
        run.wait_stderr_line("s/30s running", RUN_LIMIT);
        std::thread::sleep(Duration::from_secs(2));
        run.signal("INT", whole_group);
        let done = run.wait_exit(RUN_LIMIT);
        let what = if whole_group {
            "process group"
        } else {
            "run alone"
        };

        done.assert_code(5);
        let summary = dir.read_json("out/summary.json");
        assert_eq!(summary["stop_reason"], "stopped by user", "{what}");
        assert_eq!(summary["status"], "stopped", "{what}");
        let events = crate::util::events(&summary);
        assert!(
            !events.iter().any(|e| e.contains("lost")),
            "SIGINT to the {what}: {events:#?}\n{}",
            done.show()
        );
        let workers = summary["workers"].as_array().expect("workers");
        assert_eq!(workers.len(), 2, "{what}: {workers:#?}");
        for w in workers {
            assert_eq!(w["state"], "finished", "{what}: {w:#}");
            assert!(w["lost_at_s"].is_null(), "{what}: {w:#}");
        }
        let total = u64_at(&summary, "/total/requests");
        let by_worker: u64 = workers.iter().map(|w| u64_at(w, "/requests")).sum();
        assert_eq!(total, by_worker, "{what}: total vs the workers' requests");
        let rows = dir.read("out/requests.csv").lines().count() as u64 - 1;
        assert_eq!(rows, total, "{what}: one requests.csv row per request");
    }
}
