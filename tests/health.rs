//! The ACME performance track's health API on the master's `--api` port, against
//! `--target builtin:registry`: the workload answers 202 at once, its results go from `running` to
//! `completed` with the track's figures, the dashboard component shows the latest run, a start
//! without the token is 401, bad bodies are 400 naming the reason, and every run is still there
//! after the master is killed and started again on the same `--out`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::{BEARER, MasterProc, TOKEN, TestDir, WorkerProc, http, wait_until};

const TINY_BYTES: u64 = 24_834_009;
const AUTH: (&str, &str) = ("Authorization", BEARER);

fn start_master(out: &Path) -> MasterProc {
    MasterProc::start(&[
        "--api",
        "127.0.0.1:0",
        "--token",
        TOKEN,
        "--target",
        "builtin:registry",
        "--out",
        out.to_str().unwrap(),
    ])
}

fn post(api: SocketAddr, body: &str, auth: bool) -> http::Response {
    let headers: &[(&str, &str)] = if auth { &[AUTH] } else { &[] };
    http::post_json(api, "/health/performance/workload", headers, body)
}

/// Poll the results until the run is no longer running; every poll has the performance track's
/// shape.
fn wait_done(api: SocketAddr, run_id: &str) -> Value {
    wait_until(Duration::from_secs(90), "the workload to finish", || {
        let r = http::get(api, &format!("/health/performance/results/{run_id}"));
        assert_eq!(r.status, 200, "{r:?}");
        let v = r.json();
        assert_eq!(v["run_id"], run_id, "{v:#}");
        (v["status"] != "running").then_some(v)
    })
}

fn performance(api: SocketAddr) -> Value {
    let r = http::get(api, "/health/components");
    assert_eq!(r.status, 200, "{r:?}");
    let v = r.json();
    v["components"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["id"] == "performance"))
        .unwrap_or_else(|| panic!("no performance component: {v:#}"))
        .clone()
}

#[test]
fn workload_cycle_auth_bad_input_and_restart() {
    let dir = TestDir::new();
    let out = dir.join("out");
    let mut master = start_master(&out);
    let api = master.api();
    let _worker = WorkerProc::start(master.quic, TOKEN, "health-1");
    wait_until(Duration::from_secs(15), "the worker to join", || {
        (master.workers().len() == 1).then_some(())
    });

    let idle = performance(api);
    assert_eq!(idle["status"], "ok", "{idle:#}");
    assert_eq!(idle["metrics"]["total_runs_completed"], 0);
    assert_eq!(idle["metrics"]["latest_run_id"], Value::Null);
    assert!(
        idle["description"]
            .as_str()
            .unwrap()
            .contains("POST /health/performance/workload")
    );

    let body = r#"{"num_clients": 4, "model_id": "arnir0/Tiny-LLM", "duration_seconds": 60}"#;
    // Starting needs the token.
    let anonymous = post(api, body, false);
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    let wrong = http::post_json(
        api,
        "/health/performance/workload",
        &[("Authorization", "Bearer nope")],
        body,
    );
    assert_eq!(wrong.status, 401, "{wrong:?}");
    // Bad bodies are 400 with the reason.
    for (bad, reason) in [
        ("{\"num_clients\": 4,", "invalid JSON body"),
        ("[1, 2]", "invalid JSON body"),
        ("{\"num_clients\": \"many\"}", "invalid JSON body"),
        ("{\"clients\": 4}", "unknown field `clients`"),
        ("{\"num_clients\": 0}", "num_clients"),
        ("{\"duration_seconds\": -1}", "duration_seconds"),
        ("{\"model_id\": \"not a model\"}", "model_id"),
    ] {
        let r = post(api, bad, true);
        assert_eq!(r.status, 400, "{bad}: {r:?}");
        let message = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(message.contains(reason), "{bad}: {message}");
    }
    assert_eq!(
        performance(api)["metrics"]["total_runs_completed"],
        0,
        "nothing started"
    );

    // 202 at once, then running → completed with the performance track's figures.
    let started = post(api, body, true);
    assert_eq!(started.status, 202, "{started:?}");
    let s = started.json();
    assert_eq!(s["status"], "started", "{s:#}");
    let run_id = s["run_id"]
        .as_str()
        .expect("run_id is a string")
        .to_string();
    let eta = s["estimated_completion"].as_str().unwrap();
    assert!(eta.ends_with('Z') && eta.len() == 20, "{eta}");
    let done = wait_done(api, &run_id);
    assert_eq!(done["status"], "completed", "{done:#}");
    let m = &done["metrics"];
    assert_eq!(m["total_requests"], 4, "{done:#}");
    assert_eq!(m["total_bytes"], 4 * TINY_BYTES);
    assert_eq!(m["error_rate"], 0.0);
    for key in ["mean_ms", "median_ms", "p99_ms", "min_ms", "max_ms"] {
        assert!(m["latency"][key].as_f64().unwrap() > 0.0, "{key}: {done:#}");
    }
    assert!(m["throughput"]["bytes_per_second"].as_f64().unwrap() > 0.0);
    assert!(m["throughput"]["requests_per_second"].as_f64().unwrap() > 0.0);
    assert!(done["started_at"].is_string() && done["completed_at"].is_string());

    // A model the registry does not have: the run completes, every download failed.
    let missing = post(
        api,
        r#"{"num_clients": 2, "model_id": "nobody/Missing", "duration_seconds": 30}"#,
        true,
    );
    assert_eq!(missing.status, 202, "{missing:?}");
    let missing_id = missing.json()["run_id"].as_str().unwrap().to_string();
    let failed = wait_done(api, &missing_id);
    assert_eq!(failed["metrics"]["error_rate"], 1.0, "{failed:#}");

    let component = performance(api);
    assert_eq!(
        component["metrics"]["total_runs_completed"], 2,
        "{component:#}"
    );
    assert_eq!(component["metrics"]["latest_run_id"], missing_id.as_str());
    assert_eq!(component["metrics"]["latest_success_rate"], 0.0);
    let unknown = http::get(api, "/health/performance/results/12345");
    assert_eq!(unknown.status, 404, "{unknown:?}");

    // Killed and started again on the same --out: the runs are still there.
    let before = http::get(api, "/api/runs").json();
    master.proc.kill();
    let master = start_master(&out);
    let api = master.api();
    let after = http::get(api, "/api/runs").json();
    let ids = |v: &Value| -> Vec<Value> {
        v["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["run_id"].clone())
            .collect()
    };
    assert_eq!(ids(&after), ids(&before), "{after:#}");
    assert_eq!(ids(&after).len(), 2);
    assert_eq!(after["runs"][0]["status"], "completed");
    let again = http::get(api, &format!("/health/performance/results/{run_id}")).json();
    assert_eq!(again["metrics"], done["metrics"], "{again:#}");
    assert_eq!(again["status"], "completed");
    let full = http::get(api, &format!("/api/runs/{run_id}"));
    assert_eq!(full.status, 200);
    assert_eq!(full.json()["metrics"]["total_bytes"], json!(4 * TINY_BYTES));
    assert_eq!(performance(api)["metrics"]["total_runs_completed"], 2);
    assert!(
        out.join("runs")
            .join(&run_id)
            .join("summary.json")
            .is_file()
    );
}
