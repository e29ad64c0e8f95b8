//! The master's HTTP API (`--api`), and a master that keeps working after garbage arrives on
//! its ports.

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::util::{
    BEARER, MasterProc, Scenario, TOKEN, Target, TestDir, WorkerProc, http, wait_until,
};

/// Wait until `GET /api/workers` lists `n` workers; their names.
fn wait_for_workers(master: &MasterProc, n: usize) -> Vec<String> {
    wait_until(
        Duration::from_secs(15),
        &format!("{n} worker(s) in /api/workers"),
        || {
            let workers = master.workers();
            (workers.len() >= n).then(|| {
                workers
                    .iter()
                    .filter_map(|w| w["name"].as_str().map(String::from))
                    .collect()
            })
        },
    )
}

#[test]
fn api_lists_workers_and_needs_token() {
    let target = Target::start();
    let dir = TestDir::new();
    let scenario = Scenario::closed(&target.url, 10)
        .duration("30s")
        .write_to(&dir);
    let master = MasterProc::start(&[
        "--api",
        "127.0.0.1:0",
        "--token",
        TOKEN,
        "--scenario",
        scenario.to_str().unwrap(),
    ]);
    let api = master.api();
    let _w1 = WorkerProc::start(master.quic, TOKEN, "api-1");
    let _w2 = WorkerProc::start(master.quic, TOKEN, "api-2");
    let mut names = wait_for_workers(&master, 2);
    names.sort();
    assert_eq!(names, ["api-1", "api-2"]);
    for w in master.workers() {
        assert!(w["id"].is_u64(), "{w:#}");
        assert_eq!(w["state"], "ready", "no run yet: {w:#}");
    }
    assert_eq!(target.stats().requests, 0, "no run was started");

    let body = r#"{"duration":"2s"}"#;
    let anonymous = http::post_json(api, "/api/runs", &[], body);
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    let wrong = http::post_json(api, "/api/runs", &[("Authorization", "Bearer nope")], body);
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert_eq!(target.stats().requests, 0, "a refused POST started a run");

    let started = http::post_json(api, "/api/runs", &[("Authorization", BEARER)], body);
    assert_eq!(started.status, 201, "{started:?}");
    let run_id = started.json()["run_id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no run_id: {started:?}"));

    // The coordinator answers the POST before it publishes the new run, so a GET right
    // after it may say 404 "no run" for a moment (reported as a product bug). Once the run
    // has been seen, it must stay visible.
    let mut seen = false;
    let summary: Value = wait_until(Duration::from_secs(15), "the run to complete", || {
        let r = http::get(api, &format!("/api/runs/{run_id}"));
        if r.status == 404 && !seen {
            return None;
        }
        assert_eq!(r.status, 200, "{r:?}");
        seen = true;
        let v = r.json();
        (v["status"] == "completed").then_some(v)
    });
    assert_eq!(summary["run_id"].as_u64(), Some(run_id));
    assert_eq!(summary["stop_reason"], "duration reached");
    let seconds = summary["duration_s"].as_f64().expect("duration_s");
    assert!(
        (1.5..6.0).contains(&seconds),
        "the body's 2s should replace the scenario's 30s: ran {seconds} s"
    );
    let total = summary["metrics"]["total_requests"]
        .as_u64()
        .expect("total_requests");
    assert!(total > 0);
    assert_eq!(target.stats().requests, total, "target count vs the run's");

    let metrics = http::get(api, "/metrics");
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert!(
        metrics
            .headers
            .to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{metrics:?}"
    );
    let line = metrics
        .body
        .lines()
        .find(|l| l.starts_with("stampede_requests_total{"))
        .unwrap_or_else(|| panic!("no stampede_requests_total sample:\n{}", metrics.body));
    let value: f64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("odd sample {line:?}"));
    assert_eq!(value, total as f64, "{line}");
    let unknown = http::get(api, "/api/runs/1");
    assert_eq!(unknown.status, 404, "{unknown:?}");
}

/// A small xorshift generator: reproducible garbage without a crate.
struct Garbage(u64);

impl Garbage {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}

#[test]
fn garbage_peer_does_not_hurt_the_master() {
    let mut master = MasterProc::start(&["--api", "127.0.0.1:0", "--token", TOKEN]);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut garbage = Garbage(seed);

    let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
    let mut datagrams: Vec<Vec<u8>> = vec![Vec::new(), vec![0xff], garbage.bytes(1200)];
    // Long headers that look like QUIC Initials (v1, an unknown version, version 0) with
    // garbage where the connection ids, token and payload should be.
    for version in [[0, 0, 0, 1], [0x0a, 0x0a, 0x0a, 0x0a], [0, 0, 0, 0]] {
        let mut d = vec![0xc3];
        d.extend_from_slice(&version);
        d.extend(garbage.bytes(1195));
        datagrams.push(d);
    }
    // A short header packet for a connection that does not exist.
    let mut short = vec![0x40];
    short.extend(garbage.bytes(60));
    datagrams.push(short);
    for _ in 0..50 {
        let n = (garbage.bytes(1)[0] as usize) * 5 + 1;
        datagrams.push(garbage.bytes(n));
    }
    for d in &datagrams {
        udp.send_to(d, master.quic).expect("send garbage");
    }

    // TCP garbage at the API port, and a TCP connection to the QUIC port (UDP only there).
    if let Ok(mut s) = TcpStream::connect(master.api()) {
        let _ = s.write_all(&garbage.bytes(4096));
    }
    let _ = TcpStream::connect_timeout(&master.quic, Duration::from_secs(1));

    std::thread::sleep(Duration::from_millis(300));
    assert!(master.proc.is_running(), "{}", master.proc.stderr());
    let _worker = WorkerProc::start(master.quic, TOKEN, "after-garbage");
    let names = wait_for_workers(&master, 1);
    assert_eq!(names, ["after-garbage"]);
    let metrics = http::get(master.api(), "/metrics");
    assert_eq!(metrics.status, 200, "{metrics:?}");
}
