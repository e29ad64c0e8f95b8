//! `/metrics` against real tools: `promtool check metrics` on live scrapes before any worker,
//! during a run, while a worker is being lost and between runs; a real Prometheus server
//! scraping a master and answering a rate query and a `histogram_quantile` p99 that lands
//! within one bucket of `summary.json`'s p99.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{
    BEARER, MasterProc, PrometheusServer, Scenario, TOKEN, Target, TestDir, WorkerProc, http,
    wait_until,
};

/// `promtool check metrics` on `text`: `None` when promtool is not installed, else its verdict
/// (`Err` with what it said).
fn promtool_check(text: &str) -> Option<Result<(), String>> {
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(_) => return None,
    };
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    })
}

/// Scrape `api` and have promtool check it; returns the text.
fn scrape_checked(api: SocketAddr, when: &str) -> String {
    let r = http::get(api, "/metrics");
    assert_eq!(r.status, 200, "{when}: {r:?}");
    if let Some(Err(e)) = promtool_check(&r.body) {
        panic!(
            "promtool rejects /metrics {when}:\n{e}\n---- scrape ----\n{}",
            r.body
        );
    }
    r.body
}

/// The value of the sample whose line starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn live_metrics_pass_promtool_before_during_a_loss_and_between_runs() {
    if promtool_check("").is_none() {
        eprintln!("skipping: `promtool` is not installed (apt-get install prometheus)");
        return;
    }
    let target = Target::start();
    let dir = TestDir::new();
    // Long enough for the loss (noticed within about 4 s) to show while the run goes on.
    let scenario = Scenario::closed(&target.url, 10)
        .duration("12s")
        .write_to(&dir);
    let out = dir.join("out");
    let master = MasterProc::start(&[
        "--api",
        "127.0.0.1:0",
        "--token",
        TOKEN,
        "--scenario",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let api = master.api();
    let before = scrape_checked(api, "before any worker");
    assert_eq!(
        sample(&before, "stampede_workers{state=\"ready\"}"),
        Some(0.0)
    );

    let _w1 = WorkerProc::start(master.quic, TOKEN, "m1");
    let mut w2 = WorkerProc::start(master.quic, TOKEN, "m2");
    wait_until(Duration::from_secs(15), "two workers", || {
        (master.workers().len() == 2).then_some(())
    });
    let idle = scrape_checked(api, "with two idle workers");
    assert_eq!(
        sample(&idle, "stampede_workers{state=\"ready\"}"),
        Some(2.0)
    );

    let started = http::post_json(api, "/api/runs", &[("Authorization", BEARER)], "{}");
    assert_eq!(started.status, 201, "{started:?}");
    let during = wait_until(Duration::from_secs(10), "requests in /metrics", || {
        let text = scrape_checked(api, "during the run");
        (sample(&text, "stampede_requests_total{").unwrap_or(0.0) > 0.0).then_some(text)
    });
    assert!(
        during.contains("stampede_request_duration_seconds_bucket{"),
        "{during}"
    );
    assert_eq!(
        sample(&during, "stampede_workers{state=\"running\"}"),
        Some(2.0)
    );

    // A worker dies: every scrape while the master notices and moves its share is valid.
    w2.proc.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut scrapes = 0;
    let lost = loop {
        let text = scrape_checked(api, "while a worker is being lost");
        scrapes += 1;
        if sample(&text, "stampede_workers{state=\"lost\"}") == Some(1.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "the loss never showed:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        scrapes > 1,
        "the loss showed at once: nothing scraped during it"
    );
    assert!(
        lost.contains("stampede_worker_share{worker=\"m2\"} 0"),
        "{lost}"
    );

    let summary = wait_until(Duration::from_secs(20), "the run to finish", || {
        let r = http::get(api, "/api/runs");
        let v = r.json();
        let runs = v["runs"].as_array().cloned().unwrap_or_default();
        runs.iter()
            // The run lost a worker: it is degraded.
            .find(|r| r["status"] == "degraded")
            .and_then(|r| r["run_id"].as_u64())
            .map(|id| http::get(api, &format!("/api/runs/{id}")).json())
    });
    let between = scrape_checked(api, "between runs");
    let total = summary["metrics"]["total_requests"]
        .as_u64()
        .expect("total_requests");
    assert_eq!(
        sample(
            &between,
            "stampede_requests_total{scenario=\"e2e\",name=\"index\"}"
        ),
        Some(total as f64),
        "{between}"
    );
    assert!(
        between.contains(
            "stampede_run_info{scenario=\"e2e\",kind=\"http\",state=\"finished\",status=\"degraded\"} 1"
        ),
        "{between}"
    );
    assert_eq!(
        sample(&between, "stampede_request_duration_seconds_count{"),
        Some(total as f64)
    );
}

/// `summary.json` once it is there and whole (it may be seen while being written).
fn written_summary(path: &std::path::Path) -> serde_json::Value {
    wait_until(Duration::from_secs(30), "a complete summary.json", || {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
    })
}

/// The bucket of `DURATION_BUCKETS` a value in seconds falls in (index of its upper bound).
fn bucket_of(v: f64) -> usize {
    stampede_master::metrics::DURATION_BUCKETS
        .iter()
        .position(|&le| v <= le)
        .unwrap_or(stampede_master::metrics::DURATION_BUCKETS.len())
}

#[test]
fn prometheus_scraping_the_master_answers_rate_and_p99_within_a_bucket() {
    let target = Target::start_with(&["--delay", "1ms", "--jitter", "30ms"]);
    let dir = TestDir::new();
    let scenario = Scenario::closed(&target.url, 20)
        .duration("6s")
        .write_to(&dir);
    let out = dir.join("out");
    // Not headless: the master stays up after the run, so Prometheus scrapes its final
    // figures.
    let master = MasterProc::start(&[
        "--api",
        "127.0.0.1:0",
        "--token",
        TOKEN,
        "--expect-workers",
        "2",
        "--scenario",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let Some(prometheus) = PrometheusServer::start(&[master.api()]) else {
        return;
    };
    let _w1 = WorkerProc::start(master.quic, TOKEN, "p1");
    let _w2 = WorkerProc::start(master.quic, TOKEN, "p2");

    let summary = written_summary(&out.join("summary.json"));
    let total = summary["metrics"]["total_requests"].as_u64().unwrap();
    let p99_ms = summary["metrics"]["latency"]["p99_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("no p99 in summary.json: {summary:#}"));
    // Once Prometheus has scraped the finished run, its buckets hold every request.
    wait_until(Duration::from_secs(15), "the finished run scraped", || {
        prometheus
            .value("sum(stampede_request_duration_seconds_count)")
            .filter(|v| *v == total as f64)
    });
    // The request rate over the last minute (which holds the whole run), from two workers
    // merged; both were seen running.
    let rate = prometheus
        .value("sum(rate(stampede_requests_total[1m]))")
        .expect("a rate answer");
    assert!(rate > 0.0, "rate {rate}");
    let workers = prometheus.value("max_over_time(stampede_workers{state=\"running\"}[1m])");
    assert_eq!(workers, Some(2.0), "two workers were seen running");
    let p99_s = prometheus
        .value("histogram_quantile(0.99, sum by (le) (stampede_request_duration_seconds_bucket))")
        .expect("a histogram_quantile answer");
    let (ours, theirs) = (bucket_of(p99_s), bucket_of(p99_ms / 1000.0));
    assert!(
        ours.abs_diff(theirs) <= 1,
        "histogram_quantile p99 {p99_s} s (bucket {ours}) vs summary.json p99 {p99_ms} ms \
         (bucket {theirs})"
    );
    eprintln!(
        "rate {rate:.0} req/s; p99 {:.2} ms from Prometheus, {p99_ms:.2} ms in summary.json",
        p99_s * 1000.0
    );
}

#[test]
fn a_worker_serves_its_own_figures_with_metrics() {
    let target = Target::start();
    let dir = TestDir::new();
    let scenario = Scenario::closed(&target.url, 10)
        .duration("3s")
        .write_to(&dir);
    let out = dir.join("out");
    let master = MasterProc::start(&[
        "--token",
        TOKEN,
        "--expect-workers",
        "2",
        "--scenario",
        scenario.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let mut cmd = WorkerProc::command(master.quic);
    cmd.args([
        "--token",
        TOKEN,
        "--name",
        "own",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let own = WorkerProc::spawn("own", cmd);
    const AT: &str = "metrics on http://";
    let line = own.proc.wait_stderr_line(AT, Duration::from_secs(10));
    let addr: SocketAddr = line[line.find(AT).unwrap() + AT.len()..]
        .trim()
        .trim_end_matches("/metrics")
        .parse()
        .unwrap_or_else(|e| panic!("odd line {line:?}: {e}"));
    let before = scrape_checked(addr, "of a worker before any run");
    assert_eq!(
        sample(&before, "stampede_workers{state=\"ready\"}"),
        Some(1.0)
    );
    let _other = WorkerProc::start(master.quic, TOKEN, "other");

    let summary = written_summary(&out.join("summary.json"));
    let mine = summary["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "own")
        .and_then(|w| w["requests"].as_u64())
        .unwrap_or_else(|| panic!("no worker `own`: {summary:#}"));
    let total = summary["metrics"]["total_requests"].as_u64().unwrap();
    assert!(mine > 0 && mine < total, "own {mine} of {total}");
    let text = wait_until(
        Duration::from_secs(10),
        "the worker's final figures",
        || {
            let text = scrape_checked(addr, "of a worker after its run");
            (sample(
                &text,
                "stampede_requests_total{scenario=\"e2e\",name=\"index\"}",
            ) == Some(mine as f64))
            .then_some(text)
        },
    );
    assert!(
        text.contains("stampede_request_duration_seconds_count{scenario=\"e2e\",name=\"index\"}"),
        "{text}"
    );
}
