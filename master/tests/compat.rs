//! Locust's control API on a real master (in process, real QUIC on 127.0.0.1:0) with a real
//! worker and the built-in HTTP target, driven over plain HTTP/1.1 as Locust's tools do:
//! `/swarm` starts and rescales, `/stats/requests` says what the snapshot says in Locust's
//! words, `/stop` stops, ai-on-gke's `/run` writes its result file, bad forms are 400s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use stampede_master::results::STATS_CSV_HEADER;
use stampede_master::snapshot::{RunState, RunView, Snapshot};
use stampede_master::state::RunEnd;
use stampede_master::summary::RunSummary;
use stampede_master::{Master, MasterConfig};
use stampede_scenarios::{Overrides, ScenarioConfig};
use stampede_targets::http::{HttpTargetConfig, HttpTargetStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A master with the API and `--out`, a worker, and a target, all on loopback.
struct Bench {
    master: Master,
    api: SocketAddr,
    out: tempfile::TempDir,
    target: String,
    stop: CancellationToken,
}

/// Start a target (one answer in five a 500), a master whose scenario (2 closed users, 30 s)
/// points at it, and `workers` workers; return once they have joined.
async fn start_bench(workers: usize) -> Bench {
    start_bench_with(workers, Setup::default()).await
}

/// What a bench's master differs in.
struct Setup {
    /// The scenario's duration.
    duration: &'static str,
    /// Whether the master has `--out` (the bench's `out`); else it keeps its runs in
    /// `out/runs` only, as `stampede master --api` without `--out` does in its data dir.
    with_out: bool,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            duration: "30s",
            with_out: true,
        }
    }
}

async fn start_bench_with(workers: usize, setup: Setup) -> Bench {
    let stop = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("http://{}", listener.local_addr().unwrap());
    let config = HttpTargetConfig {
        delay: Duration::from_millis(2),
        error_rate: 0.2,
        ..HttpTargetConfig::default()
    };
    tokio::spawn(stampede_targets::http::serve(
        listener,
        config,
        Arc::new(HttpTargetStats::new()),
        stop.clone(),
    ));
    let scenario = format!(
        r#"
name = "compat"
target = "{target}"
duration = "{duration}"
[load]
model = "closed"
users = 2
[[requests]]
name = "a"
path = "/"
"#,
        duration = setup.duration
    );
    let scenario = ScenarioConfig::parse(&scenario, "compat.toml", &Overrides::default()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let master = Master::start(
        MasterConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            token: stampede_protocol::handshake::Token::new(TOKEN).unwrap(),
            identity: None,
            scenario: Some(scenario),
            auto_start_at: None,
            out: setup.with_out.then(|| out.path().to_path_buf()),
            records: Default::default(),
            runs_dir: (!setup.with_out).then(|| out.path().join("runs")),
            target: None,
            api: Some("127.0.0.1:0".parse().unwrap()),
            stop_grace: Duration::from_secs(5),
            tolerate_worker_loss: false,
        },
        stop.child_token(),
    )
    .await
    .unwrap();
    for i in 0..workers {
        let config = stampede_worker::WorkerConfig {
            master: master.addr.to_string(),
            token: stampede_protocol::handshake::Token::new(TOKEN).unwrap(),
            trust: stampede_protocol::transport::MasterTrust::Token,
            policy: Default::default(),
            name: format!("compat-{i}"),
            cores: 1,
            connect_timeout: Duration::from_secs(10),
            clock_skew_ns: 0,
            tap: None,
        };
        tokio::spawn(stampede_worker::run(config, stop.clone()));
    }
    let api = master.api_addr.unwrap();
    let bench = Bench {
        master,
        api,
        out,
        target,
        stop,
    };
    bench
        .snapshot_where("the workers to join", |s| s.workers.len() == workers)
        .await;
    bench
}

impl Bench {
    /// The next finished run's summary; panics after `secs` s waiting for `what`.
    async fn finished(&mut self, secs: u64, what: &str) -> Arc<RunSummary> {
        tokio::time::timeout(Duration::from_secs(secs), self.master.next_finished())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("the master runs")
    }

    /// Wait (up to 20 s) for a snapshot that satisfies `pred`.
    async fn snapshot_where(&self, what: &str, pred: impl Fn(&Snapshot) -> bool) -> Arc<Snapshot> {
        let mut rx = self.master.snapshots.clone();
        let found = tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|s| pred(s))).await;
        match found {
            Ok(snap) => snap.unwrap().clone(),
            Err(_) => panic!(
                "timed out waiting for {what}: {:#?}",
                self.master.snapshots.borrow()
            ),
        }
    }

    /// Wait for the run `id` to be in a state.
    async fn run_where(&self, id: u64, what: &str, pred: impl Fn(&RunView) -> bool) -> RunView {
        let snap = self
            .snapshot_where(what, |s| {
                s.run.as_ref().is_some_and(|r| r.id == id && pred(r))
            })
            .await;
        snap.run.clone().unwrap()
    }

    async fn get(&self, path: &str) -> Reply {
        request(self.api, "GET", path, "", Some(LOCUST_AUTH)).await
    }

    async fn post_form(&self, path: &str, form: &str) -> Reply {
        request(self.api, "POST", path, form, Some(LOCUST_AUTH)).await
    }

    /// `GET path` answered from a snapshot that did not change while it was served, and that
    /// snapshot.
    async fn get_steady(&self, path: &str) -> (Reply, Arc<Snapshot>) {
        loop {
            let before = self.master.snapshots.borrow().clone();
            let reply = self.get(path).await;
            let after = self.master.snapshots.borrow().clone();
            if Arc::ptr_eq(&before, &after) {
                return (reply, after);
            }
        }
    }

    async fn shutdown(self) {
        self.master.shutdown().await;
        self.stop.cancel();
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    /// The status line and headers, lower-cased.
    head: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// The master's token.
const TOKEN: &str = "compat-test-token";

/// What a Locust client sends for `http://locust:compat-test-token@host/`: HTTP Basic, the
/// token as password.
const LOCUST_AUTH: &str = "Basic bG9jdXN0OmNvbXBhdC10ZXN0LXRva2Vu";

/// One HTTP/1.1 request on its own connection, body form-encoded as Locust's clients send it,
/// with an `Authorization` header if given.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    form: &str,
    auth: Option<&str>,
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let head = head.to_lowercase();
    assert!(
        !head.contains("chunked"),
        "a sized body was expected: {head}"
    );
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        head,
        body: body.to_string(),
    }
}

/// The fields of a Locust 2.x `StatsEntry.to_dict()` row, and of Locust 1.x rows.
const ROW_FIELDS: [&str; 18] = [
    "method",
    "name",
    "safe_name",
    "num_requests",
    "num_failures",
    "avg_response_time",
    "min_response_time",
    "max_response_time",
    "current_rps",
    "current_fail_per_sec",
    "median_response_time",
    "ninetieth_response_time",
    "ninety_ninth_response_time",
    "response_time_percentile_0.95",
    "response_time_percentile_0.99",
    "total_rps",
    "total_fail_per_sec",
    "avg_content_length",
];

/// The fields of `/stats/custom_metrics` in ai-on-gke's Locust benchmark, then the totals.
const CUSTOM_FIELDS: [&str; 10] = [
    "average-tokens-sent",
    "average-tokens-received",
    "average-output-token-latency",
    "average-test-time",
    "average-time-to-first-token",
    "tokens-sent",
    "tokens-received",
    "test-time",
    "success-count",
    "failure-count",
];

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// `a == b` but for the last bit: serde_json's default float parsing may be 1 ULP off.
#[track_caller]
fn assert_close(json: &Value, expected: f64) {
    let got = f(json);
    assert!(
        (got - expected).abs() <= expected.abs() * 1e-12,
        "{got} != {expected}"
    );
}

#[tokio::test]
async fn swarm_starts_rescales_and_stop_stops_with_locust_stats() {
    let mut bench = start_bench(1).await;

    let started = bench
        .post_form("/swarm", "user_count=3&spawn_rate=100&run_time=60s")
        .await;
    assert_eq!(started.status, 200, "{started:?}");
    let answer = started.json();
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["message"], "Swarming started");
    assert_eq!(answer["run_time"], 60.0);
    assert!(
        answer["host"].as_str().unwrap().starts_with(&bench.target),
        "{answer}"
    );
    let id = answer["run_id"].as_u64().unwrap();
    let view = bench
        .run_where(id, "3 users running with requests and failures", |r| {
            r.state == RunState::Running && r.users == 3 && r.total.failures > 0
        })
        .await;
    assert_eq!(view.duration_s, 60.0, "run_time is the run's duration");

    // Live: Locust's fields, with the snapshot's numbers.
    let (reply, snap) = bench.get_steady("/stats/requests").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let stats = reply.json();
    let view = snap.run.as_ref().unwrap();
    for key in [
        "stats",
        "errors",
        "total_rps",
        "total_fail_per_sec",
        "fail_ratio",
        "current_response_time_percentiles",
        "state",
        "user_count",
        "worker_count",
        "workers",
    ] {
        assert!(stats.get(key).is_some(), "no `{key}`: {stats:#}");
    }
    assert_eq!(stats["state"], "running");
    assert_eq!(stats["user_count"], view.users);
    assert_eq!(stats["worker_count"], 1);
    assert_eq!(stats["workers"][0]["state"], "running");
    let rows = stats["stats"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "`a` then the aggregate: {stats:#}");
    for row in rows {
        for key in ROW_FIELDS {
            assert!(row.get(key).is_some(), "no `{key}` in {row:#}");
        }
    }
    let (a, total) = (&rows[0], &rows[1]);
    assert_eq!(a["name"], "a");
    assert_eq!(total["name"], "Aggregated");
    assert_eq!(total["method"], Value::Null);
    for (row, name) in [(a, &view.names[0]), (total, &view.total)] {
        assert_eq!(row["num_requests"], name.requests);
        assert_eq!(row["num_failures"], name.failures);
        assert_close(&row["avg_response_time"], name.mean_ms);
        assert_close(&row["median_response_time"], name.p50_ms);
        assert_close(&row["ninetieth_response_time"], name.p90_ms);
        assert_close(&row["ninety_ninth_response_time"], name.p99_ms);
        assert_close(&row["max_response_time"], name.max_ms);
        // Live min and p95 come from the snapshot too (not left empty).
        assert_close(&row["min_response_time"], name.min_ms);
        assert_close(&row["response_time_percentile_0.95"], name.p95_ms);
        assert!(name.requests == 0 || name.min_ms > 0.0, "{row:#}");
        assert!(
            name.p95_ms >= name.p90_ms && name.p95_ms <= name.p99_ms,
            "{row:#}"
        );
        assert_close(&row["current_rps"], name.rps);
        assert_close(&row["current_fail_per_sec"], name.fps);
    }
    assert_close(&stats["total_rps"], view.total.rps);
    assert_close(
        &stats["current_response_time_percentiles"]["response_time_percentile_0.5"],
        view.total.p50_ms,
    );
    // Live errors: the snapshot's failures, in Locust's words (not empty until /stop).
    let errors = stats["errors"].as_array().unwrap();
    assert!(!view.failures.is_empty(), "{view:#?}");
    assert_eq!(errors.len(), view.failures.len(), "{stats:#}");
    for (error, failure) in errors.iter().zip(&view.failures) {
        assert_eq!(error["method"], "GET");
        assert_eq!(error["name"], "a");
        assert_eq!(error["error"], failure.error.as_str());
        assert_eq!(error["occurrences"], failure.occurrences);
    }
    assert_eq!(errors[0]["error"], "HTTP 500", "{stats:#}");
    let occurrences: u64 = view.failures.iter().map(|f| f.occurrences).sum();
    assert_eq!(occurrences, view.total.failures);

    // Live CSV: every percentile column filled, from the run-so-far histogram.
    let (csv, snap) = bench.get_steady("/stats/requests/csv").await;
    let view = snap.run.as_ref().unwrap();
    let lines: Vec<&str> = csv.body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3, "{}", csv.body);
    for (line, name) in lines[1..].iter().zip([&view.names[0], &view.total]) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), 22, "{line}");
        // 50%, 66%, 75%, 80%, 90%, 95%, 98%, 99%, 99.9%, 99.99%, 100%.
        let want: Vec<String> = name
            .percentiles_ms
            .iter()
            .map(|ms| (ms.round() as u64).to_string())
            .collect();
        assert_eq!(fields[11..], want, "{line}");
        assert!(name.percentiles_ms[1] > 0.0, "{name:#?}");
    }

    // A second /swarm while running sets the user count live: scale 6 / 3.
    let rescaled = bench
        .post_form("/swarm", "user_count=6&spawn_rate=100")
        .await;
    assert_eq!(rescaled.status, 200, "{rescaled:?}");
    let answer = rescaled.json();
    assert_eq!(answer["run_id"], id, "the same run goes on: {answer}");
    assert!(
        answer["host"].as_str().unwrap().starts_with(&bench.target),
        "{answer}"
    );
    let view = bench
        .run_where(id, "6 users at scale 2", |r| r.scale == 2.0 && r.users == 6)
        .await;
    assert_eq!(view.state, RunState::Running);

    // An HTTP scenario records no tokens: the Locust benchmark's figures are there, at 0.
    let custom = bench.get("/stats/custom_metrics").await.json();
    for key in CUSTOM_FIELDS {
        assert!(custom.get(key).is_some(), "no `{key}`: {custom:#}");
    }
    assert_eq!(custom["tokens-sent"], 0);
    assert_eq!(custom["average-tokens-received"], 0.0);
    assert_eq!(custom["average-time-to-first-token"], 0.0);
    assert!(f(&custom["average-test-time"]) > 0.0, "{custom:#}");

    let stopped = bench.get("/stop").await;
    assert_eq!(stopped.status, 200, "{stopped:?}");
    assert_eq!(
        stopped.json(),
        serde_json::json!({ "success": true, "message": "Test stopped" })
    );
    let summary = bench.finished(20, "the run ends after /stop").await;
    assert_eq!(summary.run_id, id);
    assert_eq!(summary.stop_reason, RunEnd::StoppedByUser);
    assert_eq!(
        summary.load, "closed: 6 users (3 at start), spawn 100/s, for 1m",
        "the latest user count"
    );

    // Stopped: the archived run's exact figures.
    let stats = bench.get("/stats/requests").await.json();
    assert_eq!(stats["state"], "stopped");
    assert_eq!(stats["user_count"], 0);
    let total = stats["stats"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(total["num_requests"], summary.total.requests);
    assert_close(&total["avg_response_time"], summary.total.mean_ms());
    assert_close(
        &total["min_response_time"],
        summary.total.latency.min() as f64 / 1000.0,
    );
    assert_close(
        &total["response_time_percentile_0.95"],
        summary.total.latency_ms(0.95),
    );

    let csv = bench.get("/stats/requests/csv").await;
    assert_eq!(csv.status, 200, "{csv:?}");
    assert!(csv.head.contains("content-type: text/csv"), "{csv:?}");
    let lines: Vec<&str> = csv.body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], STATS_CSV_HEADER);
    assert_eq!(lines.len(), 3, "{}", csv.body);
    assert!(
        lines[1].starts_with(",a,") || lines[1].contains(",a,"),
        "{}",
        lines[1]
    );
    let aggregate = format!(
        ",Aggregated,{},{},",
        summary.total.requests, summary.total.failures
    );
    assert!(lines[2].starts_with(&aggregate), "{}", lines[2]);
    assert_eq!(lines[2].split(',').count(), 22, "{}", lines[2]);

    let reset = bench.get("/stats/reset").await;
    assert_eq!(reset.status, 501, "{reset:?}");
    bench.shutdown().await;
}

/// Without `run_time`, as in Locust, a swarm runs until `/stop`, past the scenario's
/// duration; the summary says it was stopped and that it had no planned end.
#[tokio::test]
async fn swarm_without_run_time_runs_until_stop() {
    let mut bench = start_bench_with(
        1,
        Setup {
            duration: "1s",
            ..Setup::default()
        },
    )
    .await;
    let started = bench.post_form("/swarm", "user_count=2").await;
    assert_eq!(started.status, 200, "{started:?}");
    let answer = started.json();
    assert_eq!(answer["run_time"], Value::Null, "{answer}");
    let id = answer["run_id"].as_u64().unwrap();
    let view = bench
        .run_where(id, "2 users running", |r| {
            r.state == RunState::Running && r.users == 2
        })
        .await;
    assert_eq!(view.duration_s, 0.0, "no planned length: {view:#?}");
    assert!(view.load.contains("until stopped"), "{}", view.load);
    // Well past the scenario's 1 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let view = bench.run_where(id, "the run", |_| true).await;
    assert_eq!(view.state, RunState::Running, "{view:#?}");
    assert!(view.elapsed_s > 2.0, "{view:#?}");
    assert!(bench.master.try_next_finished().is_none());

    let stopped = bench.get("/stop").await;
    assert_eq!(stopped.status, 200, "{stopped:?}");
    let summary = bench.finished(20, "the run ends after /stop").await;
    assert_eq!(summary.run_id, id);
    assert_eq!(summary.stop_reason, RunEnd::StoppedByUser);
    assert_eq!(summary.load, "closed: 2 users until stopped");
    assert!(
        summary.stopped_unix_ms > summary.started_unix_ms
            && summary.stopped_unix_ms <= summary.ended_unix_ms,
        "{summary:?}"
    );
    assert!(summary.duration_s() > 2.0, "{}", summary.duration_s());
    bench.shutdown().await;
}

#[tokio::test]
async fn run_writes_the_locust_runner_result_file_when_the_run_ends() {
    let mut bench = start_bench(1).await;
    let reply = bench.get("/run?duration=2&users=2&rate=50").await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let answer = reply.json();
    assert_eq!(answer["message"], "Swarming started", "{answer}");
    let id = answer["run_id"].as_u64().unwrap();
    let path = std::path::PathBuf::from(answer["result_file"].as_str().unwrap());
    assert!(path.starts_with(bench.out.path()), "{answer}");

    let again = bench.get("/run?duration=2").await;
    assert_eq!(again.status, 409, "one timed run at a time: {again:?}");

    let summary = bench.finished(30, "the timed run ends by itself").await;
    assert_eq!(summary.run_id, id);
    assert_eq!(summary.stop_reason, RunEnd::DurationReached);
    let mut text = None;
    for _ in 0..100 {
        if let Ok(t) = std::fs::read_to_string(&path) {
            text = Some(t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let doc: Value = serde_json::from_str(&text.expect("the result file is written")).unwrap();
    assert_eq!(doc["run_id"], id);
    assert_eq!(doc["test_duration_s"], 2.0);
    assert_eq!(doc["users"], 2);
    assert_eq!(
        doc["rate"], 50.0,
        "rate is the spawn rate, as in ai-on-gke's runner"
    );
    assert_eq!(doc["stop_reason"], "duration reached");
    for key in ["test_start", "test_end"] {
        let t = doc[key].as_str().unwrap();
        assert_eq!(t.len(), "2024-01-01 00:00:00".len(), "{key}: {t}");
    }
    // As in ai-on-gke's runner, the test ends when load stops: end - start is the duration, and the
    // rates are over it, though the run waited for the requests in flight after it.
    assert_eq!(doc["test_start_unix_ms"], summary.started_unix_ms);
    assert_eq!(doc["test_end_unix_ms"], summary.stopped_unix_ms);
    assert_eq!(summary.stopped_unix_ms, summary.started_unix_ms + 2000);
    assert!(summary.ended_unix_ms >= summary.stopped_unix_ms);
    assert_eq!(doc["elapsed_s"], 2.0);
    let total = doc["stats"].as_array().unwrap().last().unwrap();
    assert_eq!(total["name"], "Aggregated");
    assert!(summary.total.requests > 0);
    assert_eq!(total["num_requests"], summary.total.requests);
    assert_close(&total["total_rps"], summary.total.requests as f64 / 2.0);
    assert_eq!(doc["custom_metrics"]["test-time"], 2.0);
    assert!(
        doc["stats_csv"]
            .as_str()
            .unwrap()
            .starts_with(STATS_CSV_HEADER),
        "{doc:#}"
    );
    for key in CUSTOM_FIELDS {
        assert!(
            doc["custom_metrics"].get(key).is_some(),
            "no `{key}`: {doc:#}"
        );
    }
    assert_eq!(
        doc["custom_metrics"]["success-count"],
        summary.total.requests - summary.total.failures
    );
    bench.shutdown().await;
}

/// Without `--out`, `/run`'s result file goes with the run into the master's runs directory.
#[tokio::test]
async fn run_without_out_keeps_the_result_file_with_the_run() {
    let mut bench = start_bench_with(
        1,
        Setup {
            with_out: false,
            ..Setup::default()
        },
    )
    .await;
    let answer = bench.get("/run?duration=1&users=1").await.json();
    let id = answer["run_id"].as_u64().expect("a run id");
    let path = std::path::PathBuf::from(answer["result_file"].as_str().unwrap());
    let kept = bench.out.path().join("runs").join(id.to_string());
    assert_eq!(path, kept.join(format!("locust-run-{id}.json")), "{answer}");
    bench.finished(30, "the timed run ends by itself").await;
    let mut written = false;
    for _ in 0..100 {
        if path.is_file() {
            written = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(written, "no {}", path.display());
    assert!(
        kept.join("summary.json").is_file(),
        "the run is kept beside it"
    );
    bench.shutdown().await;
}

#[tokio::test]
async fn bad_forms_are_400_naming_the_field() {
    let bench = start_bench(0).await;
    for (form, field) in [
        ("", "user_count"),
        ("spawn_rate=5", "user_count"),
        ("user_count=abc", "user_count"),
        ("user_count=2.5", "user_count"),
        ("user_count=3&spawn_rate=fast", "spawn_rate"),
        ("user_count=3&run_time=soon", "run_time"),
    ] {
        let reply = bench.post_form("/swarm", form).await;
        assert_eq!(reply.status, 400, "{form}: {reply:?}");
        let answer = reply.json();
        assert_eq!(answer["success"], false, "{form}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(field), "{form}: {message}");
    }
    for (query, field) in [
        ("users=x", "users"),
        ("rate=y", "rate"),
        ("duration=never", "duration"),
    ] {
        let reply = bench.get(&format!("/run?{query}")).await;
        assert_eq!(reply.status, 400, "{query}: {reply:?}");
        let message = reply.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains(field), "{query}: {message}");
    }
    // A good form with no worker to run it: refused, with the coordinator's reason.
    let reply = bench.post_form("/swarm", "user_count=2&spawn_rate=1").await;
    assert_eq!(reply.status, 409, "{reply:?}");
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("no workers"),
        "{reply:?}"
    );
    assert!(bench.master.snapshots.borrow().run.is_none());
    bench.shutdown().await;
}

/// `/swarm`, `/stop` and `/run` start, stop or change runs: 401 without the token (or with
/// another), with `WWW-Authenticate`; the statistics stay readable; Bearer works too.
#[tokio::test]
async fn control_routes_need_the_token() {
    let bench = start_bench(1).await;
    for (method, path, form) in [
        ("POST", "/swarm", "user_count=2"),
        ("GET", "/stop", ""),
        ("GET", "/run?duration=2", ""),
    ] {
        for auth in [None, Some("Basic bG9jdXN0Om5vcGU="), Some("Bearer nope")] {
            let reply = request(bench.api, method, path, form, auth).await;
            assert_eq!(
                reply.status, 401,
                "{method} {path} with {auth:?}: {reply:?}"
            );
            assert!(reply.head.contains("www-authenticate"), "{reply:?}");
        }
    }
    let snap = bench.master.snapshots.borrow().clone();
    assert!(snap.run.is_none(), "a refused request started a run");
    let stats = request(bench.api, "GET", "/stats/requests", "", None).await;
    assert_eq!(stats.status, 200, "{stats:?}");
    let started = request(
        bench.api,
        "POST",
        "/swarm",
        "user_count=1",
        Some(concat!("Bearer ", "compat-test-token")),
    )
    .await;
    assert_eq!(started.status, 200, "{started:?}");
    let stopped = request(
        bench.api,
        "GET",
        "/stop",
        "",
        Some(concat!("Bearer ", "compat-test-token")),
    )
    .await;
    assert_eq!(stopped.status, 200, "{stopped:?}");
    bench.shutdown().await;
}
