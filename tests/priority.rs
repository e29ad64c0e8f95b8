//! `priority` traffic (the MLPerf-LoadGen priority runner's) end to end: `stampede loadgen` with 2
//! worker processes against `stampede target scheduler` (a separate process) over real gRPC, and
//! the files it writes, also on a fleet of joined `stampede worker`s (`--listen`); bad input: an
//! unknown workload, a bad URL, a scheduler that is down or slow; gRPC over TLS:
//! `target scheduler --tls` with `loadgen --scheduler-url https://` (`--ca`, `--insecure`, neither)
//! and a `priority` scenario under `stampede run`.

use std::collections::HashMap;
use std::time::Duration;

use stampede_master::priority::RUNNER_COLUMNS;

use crate::util::{Proc, STARTUP, TestDir, WorkerProc, stampede};

const RUN_LIMIT: Duration = Duration::from_secs(60);
const HEADER: &str = "timestamp_issued,sample_id,tier,slo,model,latency_ns,latency_ms,slo_met";

/// `stampede target scheduler` on 127.0.0.1:0 with extra flags; returns it and `HOST:PORT`.
fn scheduler(args: &[&str]) -> (Proc, String) {
    let mut cmd = stampede();
    cmd.args(["target", "scheduler", "--bind", "127.0.0.1:0"])
        .args(args);
    let p = Proc::spawn("stampede target scheduler", cmd);
    let line = p.wait_stdout_line("stampede target scheduler on", STARTUP);
    let addr = line
        .split_whitespace()
        .nth(4)
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    (p, addr)
}

/// Stop the scheduler with SIGINT and read its `received N requests` line.
fn received(mut p: Proc) -> (u64, String) {
    p.signal("INT", false);
    let done = p.wait_exit(Duration::from_secs(15));
    let line = done
        .stderr
        .lines()
        .find(|l| l.starts_with("received "))
        .unwrap_or_else(|| panic!("no count\n{}", done.show()))
        .to_string();
    let n = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    (n, line)
}

/// `stampede loadgen ARGS` in `dir`, writing its run files to `logs/` and its CSV to
/// `metrics.csv` there.
fn loadgen_command(dir: &TestDir, args: &[&str]) -> std::process::Command {
    let mut cmd = stampede();
    cmd.arg("loadgen")
        .arg("--output-dir")
        .arg(dir.join("logs"))
        .arg("--metrics-csv")
        .arg(dir.join("metrics.csv"))
        .args(args)
        .current_dir(dir.path());
    cmd
}

/// [`loadgen_command`] run to its end.
fn loadgen(dir: &TestDir, args: &[&str]) -> crate::util::Finished {
    let name = format!("stampede loadgen {}", args.join(" "));
    Proc::spawn(&name, loadgen_command(dir, args)).wait_exit(RUN_LIMIT)
}

/// A short run of the runner's command line against the scheduler at `addr`: 12 qps for 2.5 s, at
/// least one query per class.
fn short_run(addr: &str) -> [&str; 8] {
    [
        "--scheduler-url",
        addr,
        "--total-qps",
        "12",
        "--duration-ms",
        "2500",
        "--min-query-count",
        "1",
    ]
}

/// The LoadGen summaries of the nine classes, from `logs/tier{T}_{slo}/`.
fn class_summaries(dir: &TestDir) -> Vec<String> {
    (1..=3)
        .flat_map(|tier| {
            ["urgent", "normal", "relaxed"]
                .map(|slo| dir.read(&format!("logs/tier{tier}_{slo}/mlperf_log_summary.txt")))
        })
        .collect()
}

/// The runner's command line on 2 workers: the scheduler received exactly as many requests as the
/// CSV has rows; the CSV has the runner's columns; urgent classes used resnet50 only; each class
/// has its LoadGen folder with a verdict; the per-class table is on stdout.
#[test]
fn loadgen_rows_equal_what_the_scheduler_received() {
    let (sched, addr) = scheduler(&["--gpus", "4"]);
    let dir = TestDir::new();
    let done = loadgen(&dir, &[&short_run(&addr)[..], &["--workers", "2"]].concat());
    done.assert_code(0);
    let (count, line) = received(sched);
    let csv = dir.read("metrics.csv");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(HEADER));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(count > 0, "{line}");
    assert_eq!(
        rows.len() as u64,
        count,
        "CSV rows vs {line}\n{}",
        done.show()
    );
    let mut ids = std::collections::HashSet::new();
    let mut per_class: HashMap<(String, String), u64> = HashMap::new();
    for r in &rows {
        assert_eq!(r.len(), 8, "{r:?}");
        let ts: i64 = r[0].parse().unwrap();
        assert!(ts > 1_700_000_000_000_000_000, "Unix ns: {ts}");
        assert!(
            ids.insert(r[1].to_string()),
            "sample ids are unique: {}",
            r[1]
        );
        assert!(["1", "2", "3"].contains(&r[2]), "{r:?}");
        assert!(["urgent", "normal", "relaxed"].contains(&r[3]), "{r:?}");
        assert!(["resnet50", "vit"].contains(&r[4]), "{r:?}");
        if r[3] == "urgent" {
            assert_eq!(r[4], "resnet50", "urgent → resnet50 only");
        }
        let ns: u64 = r[5].parse().unwrap();
        let ms: f64 = r[6].parse().unwrap();
        assert!((ms - ns as f64 / 1e6).abs() < 0.001, "{r:?}");
        assert!(["True", "False"].contains(&r[7]), "{r:?}");
        *per_class
            .entry((r[2].to_string(), r[3].to_string()))
            .or_default() += 1;
    }
    // Every class sent something (min query count 1 per class).
    assert_eq!(per_class.len(), 9, "{per_class:?}");
    for summary in class_summaries(&dir) {
        assert!(summary.contains("Scenario : Server"), "{summary}");
        assert!(
            summary.contains("Result is : VALID") || summary.contains("Result is : INVALID"),
            "{summary}"
        );
    }
    let table = done.stdout.lines().next().unwrap_or_default().to_string();
    for col in RUNNER_COLUMNS {
        assert!(table.contains(col), "{}", done.show());
    }
    let summary = dir.read_json("logs/summary.json");
    assert_eq!(summary["total"]["requests"].as_u64(), Some(count));
}

/// Fleet mode: `stampede loadgen --listen` is a master that starts when 2 `stampede worker`
/// processes have joined over loopback QUIC; the scheduler received exactly as many requests
/// as the CSV has rows, both workers sent some, and each class's drawn arrivals equal its
/// completed requests.
#[test]
fn loadgen_on_a_fleet_of_joined_workers() {
    let (sched, addr) = scheduler(&["--gpus", "4"]);
    let dir = TestDir::new();
    let fleet = [
        "--listen",
        "127.0.0.1:0",
        "--expect-workers",
        "2",
        "--token",
        "fleet-test-token",
    ];
    let cmd = loadgen_command(&dir, &[&fleet[..], &short_run(&addr)].concat());
    let master = Proc::spawn("stampede loadgen --listen", cmd);
    let line = master.wait_stderr_line("loadgen master on ", STARTUP);
    let quic: std::net::SocketAddr = line
        .split_whitespace()
        .nth(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let _w1 = WorkerProc::start(quic, "fleet-test-token", "fleet-one");
    let _w2 = WorkerProc::start(quic, "fleet-test-token", "fleet-two");
    let mut master = master;
    let done = master.wait_exit(RUN_LIMIT);
    done.assert_code(0);
    let (count, line) = received(sched);
    let text = dir.read("metrics.csv");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(HEADER));
    let rows = lines.count() as u64;
    assert!(count > 0, "{line}");
    assert_eq!(rows, count, "CSV rows vs {line}\n{}", done.show());
    let summary = dir.read_json("logs/summary.json");
    assert_eq!(summary["total"]["requests"].as_u64(), Some(count));
    let workers = summary["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2, "{summary}");
    assert!(
        workers.iter().all(|w| w["requests"].as_u64() > Some(0)),
        "each joined worker sent some: {summary}"
    );
    for s in class_summaries(&dir) {
        assert!(s.contains("Completed vs scheduled          : equal"), "{s}");
    }
    assert!(done.stdout.contains("slo_attainment_%"), "{}", done.show());
}

/// Unknown workload and bad URLs: one line naming the flag, exit 1, nothing run.
#[test]
fn bad_flags_are_named() {
    let dir = TestDir::new();
    let done = loadgen(&dir, &["--workload", "heavy", "--duration-ms", "100"]);
    done.assert_code(1);
    assert!(
        done.stderr.contains(
            "--workload: unknown workload `heavy` (known: balanced, urgent_heavy, batch_heavy)"
        ),
        "{}",
        done.show()
    );
    for url in ["grpc://localhost:50051", "http://", "local host:50051"] {
        let done = loadgen(&dir, &["--scheduler-url", url, "--duration-ms", "100"]);
        done.assert_code(1);
        assert!(
            done.stderr.contains("--scheduler-url"),
            "{url}: {}",
            done.show()
        );
    }
    assert!(!dir.join("metrics.csv").exists());
}

/// A scheduler that is down: every request is a recorded failure, the run still ends and
/// writes its CSV (every row `False`) and its LoadGen summaries (INVALID).
#[test]
fn scheduler_down_is_recorded_not_fatal() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = TestDir::new();
    let done = loadgen(
        &dir,
        &[
            "--scheduler-url",
            &format!("127.0.0.1:{port}"),
            "--total-qps",
            "10",
            "--duration-ms",
            "1500",
            "--min-query-count",
            "1",
        ],
    );
    done.assert_code(0);
    let csv = dir.read("metrics.csv");
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert!(!rows.is_empty(), "{}", done.show());
    assert!(rows.iter().all(|r| r.ends_with(",False")), "{csv}");
    let summary = dir.read_json("logs/summary.json");
    assert_eq!(
        summary["total"]["failures"].as_u64(),
        Some(rows.len() as u64)
    );
    let s = dir.read("logs/tier1_relaxed/mlperf_log_summary.txt");
    assert!(s.contains("Result is : INVALID"), "{s}");
}

/// A scheduler slower than the timeout: requests end as `timeout` failures at the scenario's
/// timeout; the run is not stalled by them.
#[test]
fn slow_scheduler_times_out_per_request() {
    let (sched, addr) = scheduler(&["--model", "resnet50=3s", "--model", "vit=3s"]);
    let dir = TestDir::new();
    let scenario = dir.write(
        "p.toml",
        "name = \"slow\"\nkind = \"priority\"\ntarget = \"builtin:scheduler\"\n[load]\nmodel = \"open\"\nrate = 5\n\
         [priority]\ntimeout = \"300ms\"\n[priority.workloads.relaxed_only]\ntier1_relaxed = 1\n",
    );
    let done = loadgen(
        &dir,
        &[
            "--scenario",
            scenario.to_str().unwrap(),
            "--workload",
            "relaxed_only",
            "--scheduler-url",
            &addr,
            "--total-qps",
            "6",
            "--duration-ms",
            "1500",
            "--min-query-count",
            "1",
        ],
    );
    done.assert_code(0);
    let summary = dir.read_json("logs/summary.json");
    let requests = summary["total"]["requests"].as_u64().unwrap();
    assert!(requests > 1, "{}", done.show());
    let failures = dir.read("logs/failures.csv");
    assert!(failures.contains("timeout"), "{failures}");
    // Only the one class of the custom workload was sent.
    let csv = dir.read("metrics.csv");
    assert!(
        csv.lines().skip(1).all(|r| r.contains(",1,relaxed,")),
        "{csv}"
    );
    // Timeouts are bounded by the 300 ms timeout, not the 3 s service time.
    let slowest = csv
        .lines()
        .skip(1)
        .map(|r| r.split(',').nth(5).unwrap().parse::<u64>().unwrap())
        .max()
        .unwrap();
    assert!(slowest < 2_500_000_000, "{slowest} ns");
    let (n, _) = received(sched);
    assert!(n > 0);
}

/// `stampede target scheduler --tls` (a self-signed certificate, written to `ca.pem` in `dir`);
/// returns it and its `https://HOST:PORT`.
fn tls_scheduler(dir: &TestDir) -> (Proc, String) {
    let ca = dir.join("ca.pem");
    let (p, addr) = scheduler(&["--gpus", "4", "--tls", "--cert-out", ca.to_str().unwrap()]);
    assert!(
        dir.read("ca.pem").contains("-----BEGIN CERTIFICATE-----"),
        "--cert-out wrote the certificate"
    );
    (p, format!("https://{addr}"))
}

/// The failures of a run, from summary.json: (error, occurrences).
fn failure_rows(dir: &TestDir) -> Vec<(String, u64)> {
    let summary = dir.read_json("logs/summary.json");
    summary["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["error"].as_str().unwrap().to_string(),
                f["occurrences"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// `--scheduler-url https://` with `--ca` the scheduler's certificate, then with `--insecure`:
/// every request answered over TLS (none failed), and the scheduler received exactly as many
/// as the CSVs have rows.
#[test]
fn loadgen_over_tls_with_ca_or_insecure() {
    let dir = TestDir::new();
    let (sched, url) = tls_scheduler(&dir);
    let mut rows = 0;
    for trust in [&["--ca", "ca.pem"][..], &["--insecure"][..]] {
        let done = loadgen(&dir, &[&short_run(&url)[..], trust].concat());
        done.assert_code(0);
        let summary = dir.read_json("logs/summary.json");
        let requests = summary["total"]["requests"].as_u64().unwrap();
        assert!(requests >= 9, "{}", done.show());
        // An answer that expired in the queue is `success=false`; nothing else may fail.
        let failed: Vec<_> = failure_rows(&dir)
            .into_iter()
            .filter(|(e, _)| e != "success=false")
            .collect();
        assert!(failed.is_empty(), "{trust:?}: {failed:?}\n{}", done.show());
        let csv_rows = dir.read("metrics.csv").lines().skip(1).count() as u64;
        assert_eq!(csv_rows, requests, "{trust:?}");
        rows += requests;
    }
    let (count, line) = received(sched);
    assert_eq!(count, rows, "requests of both runs vs {line}");
}

/// Without `--ca` the self-signed scheduler is not trusted: every request is a failure whose
/// kind names the cause, the scheduler received none, and the run still ends on time.
#[test]
fn loadgen_over_tls_without_ca_names_the_cause() {
    let dir = TestDir::new();
    let (sched, url) = tls_scheduler(&dir);
    let started = std::time::Instant::now();
    let done = loadgen(&dir, &short_run(&url));
    done.assert_code(0);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a 2.5 s run took {:?}",
        started.elapsed()
    );
    let summary = dir.read_json("logs/summary.json");
    let requests = summary["total"]["requests"].as_u64().unwrap();
    assert!(requests >= 9, "{}", done.show());
    assert_eq!(summary["total"]["failures"].as_u64(), Some(requests));
    let rows = failure_rows(&dir);
    assert!(
        rows.iter()
            .all(|(e, _)| e == "tls: invalid peer certificate: UnknownIssuer"),
        "{rows:?}"
    );
    assert_eq!(rows.iter().map(|r| r.1).sum::<u64>(), requests);
    let (count, line) = received(sched);
    assert_eq!(count, 0, "{line}");
}

/// TLS flags with a plaintext URL, or a CA file that is not there: one line naming the flag,
/// exit 1, nothing run.
#[test]
fn loadgen_tls_flags_are_checked() {
    let dir = TestDir::new();
    let done = loadgen(&dir, &["--scheduler-url", "127.0.0.1:9", "--insecure"]);
    done.assert_code(1);
    assert!(
        done.stderr.contains("apply to an https://"),
        "{}",
        done.show()
    );
    let done = loadgen(
        &dir,
        &["--scheduler-url", "https://127.0.0.1:9", "--ca", "nope.pem"],
    );
    done.assert_code(1);
    assert!(done.stderr.contains("--ca: nope.pem"), "{}", done.show());
    assert!(!dir.join("metrics.csv").exists());
}

/// A `kind = "priority"` scenario under `stampede run` against the TLS scheduler, trusting it
/// by `[tls] ca` (relative to the scenario): no request failed on the way, and the scheduler
/// received each one. Its gRPC connections are counted and timed as HTTP's are: summary.json's
/// `connections` block (one TLS handshake per new connection, new + reused = requests) and
/// `tls` block, and /metrics' connection families while it runs.
#[test]
fn priority_scenario_runs_over_tls() {
    let dir = TestDir::new();
    let (sched, url) = tls_scheduler(&dir);
    let scenario = dir.write(
        "p.toml",
        &format!(
            "name = \"tls\"\nkind = \"priority\"\ntarget = \"{url}\"\nduration = \"4s\"\n\
             [load]\nmodel = \"open\"\nrate = 12\n[tls]\nca = \"ca.pem\"\n"
        ),
    );
    let out = dir.join("out");
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut cmd = stampede();
    cmd.args(["run", scenario.to_str().unwrap(), "--workers", "1"])
        .args(["--headless", "--api", &api.to_string()])
        .arg("--out")
        .arg(&out)
        .current_dir(crate::util::workspace_root());
    let mut run = Proc::spawn("stampede run (priority over TLS)", cmd);
    let scrape =
        crate::util::wait_until(Duration::from_secs(20), "connections in /metrics", || {
            // Not listening yet, or the run just ended: try again.
            let text = crate::util::http::request(api, "GET", "/metrics", &[], None)
                .ok()?
                .body;
            let has = |prefix: &str| text.lines().any(|l| l.starts_with(prefix));
            (has("stampede_connections_total{") && has("stampede_tls_handshake_seconds_count{"))
                .then_some(text)
        });
    assert!(
        scrape
            .lines()
            .any(|l| l.starts_with("stampede_connections_total{") && l.contains("kind=\"new\"")),
        "{scrape}"
    );
    let done = run.wait_exit(RUN_LIMIT);
    done.assert_code(0);
    let summary = dir.read_json("out/summary.json");
    let requests = summary["total"]["requests"].as_u64().unwrap();
    assert!(requests > 0, "{}", done.show());
    let failed: Vec<_> = summary["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["error"] != "success=false")
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    let (count, line) = received(sched);
    assert_eq!(count, requests, "{line}");

    let c = &summary["connections"];
    let new = c["new"].as_u64().unwrap_or(0);
    // One lazily made channel per class on the one worker.
    assert!((1..=9).contains(&new), "{new} new connections: {c:#}");
    assert_eq!(new + c["reused"].as_u64().unwrap_or(0), requests, "{c:#}");
    assert_eq!(c["connect_ms"]["count"], new, "{c:#}");
    assert_eq!(c["tls_handshake_ms"]["count"], new, "{c:#}");
    assert!(!summary["tls"].is_null(), "{summary:#}");
    assert!(done.stdout.contains("connections: "), "{}", done.stdout);
}
