//! docker-compose.yml on the Docker engine: `scripts/build-images` makes the image from this
//! test's own binary (`FROM scratch`, nothing pulled), `up -d --scale worker=3 master worker`
//! gives a master listing 3 workers, one worker container killed mid-run is detected, its share
//! moves, the run ends normally and the report names it; the headless profile leaves its
//! results in the mounted folder. Skips, saying why, without an engine or Compose. Removes its
//! containers, network and image.

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::util::{TestDir, http, wait_until, workspace_root};

/// `docker-compose` (v1) or `docker compose` (the v2 plugin), whichever answers.
fn compose_command() -> Option<Vec<&'static str>> {
    let answers = |cmd: &[&str]| {
        Command::new(cmd[0])
            .args(&cmd[1..])
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    [vec!["docker-compose"], vec!["docker", "compose"]]
        .into_iter()
        .find(|c| answers(c))
}

fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn ok(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Compose project of the repository's docker-compose.yml under its own name, image and API
/// port; taken down (containers, network, image) when dropped.
struct Project {
    compose: Vec<&'static str>,
    name: String,
    image: String,
    env: Vec<(&'static str, String)>,
}

impl Project {
    fn command(&self) -> Command {
        let root = workspace_root();
        let mut cmd = Command::new(self.compose[0]);
        cmd.args(&self.compose[1..])
            .arg("-f")
            .arg(root.join("docker-compose.yml"))
            .arg("--project-directory")
            .arg(root)
            .args(["-p", &self.name])
            .current_dir(root);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn containers(&self, service: &str) -> Vec<String> {
        ok(Command::new("docker").args([
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.name),
            "--filter",
            &format!("label=com.docker.compose.service={service}"),
        ]))
        .split_whitespace()
        .map(str::to_string)
        .collect()
    }

    fn logs(&self) -> String {
        let out = output(self.command().args(["logs", "--no-color", "--tail", "40"]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self
            .command()
            .args([
                "--profile",
                "headless",
                "down",
                "-v",
                "--remove-orphans",
                "-t",
                "1",
            ])
            .output();
        let _ = Command::new("docker")
            .args(["rmi", "-f", &self.image])
            .output();
    }
}

#[test]
fn compose_scales_workers_and_a_killed_worker_container_is_reported() {
    let engine = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    if !engine.as_ref().is_ok_and(|o| o.status.success()) {
        eprintln!("skipping: no Docker engine answers (`docker info` failed)");
        return;
    }
    let Some(compose) = compose_command() else {
        eprintln!("skipping: neither `docker-compose` nor `docker compose` is installed");
        return;
    };
    let pid = std::process::id();
    let image = format!("stampede:test-{pid}");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let results = TestDir::new();
    let project = Project {
        compose,
        name: format!("stampedetest{pid}"),
        image: image.clone(),
        env: vec![
            ("STAMPEDE_IMAGE", image.clone()),
            ("STAMPEDE_TOKEN", "compose-test-token".into()),
            ("STAMPEDE_API_PORT", port.to_string()),
            ("STAMPEDE_RESULTS", results.path().display().to_string()),
            ("STAMPEDE_DURATION", "2s".into()),
        ],
    };
    // The image from this test's own (debug) binary, offline.
    ok(
        Command::new(workspace_root().join("scripts/build-images")).args([
            "--binary",
            env!("CARGO_BIN_EXE_stampede"),
            "--tag",
            &image,
        ]),
    );
    ok(project
        .command()
        .args(["up", "-d", "--scale", "worker=3", "master", "worker"]));

    let api: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let workers = wait_until(Duration::from_secs(60), "3 workers in /api/workers", || {
        let r = http::request(api, "GET", "/api/workers", &[], None).ok()?;
        let list = r.json()["workers"].as_array().cloned()?;
        (list.len() == 3).then_some(list)
    });
    assert!(
        workers.iter().all(|w| w["state"] == "ready"),
        "{workers:#?}"
    );

    let started = http::post_json(
        api,
        "/api/runs",
        &[("Authorization", "Bearer compose-test-token")],
        r#"{"duration": "14s", "users": 12}"#,
    );
    assert_eq!(started.status, 201, "{started:?}\n{}", project.logs());
    let run_id = started.json()["run_id"].as_u64().unwrap();
    wait_until(Duration::from_secs(20), "requests from 3 workers", || {
        let r = http::get(api, "/api/workers");
        let list = r.json()["workers"].as_array().cloned()?;
        list.iter()
            .all(|w| w["state"] == "running" && w["requests"].as_u64() > Some(0))
            .then_some(())
    });

    // Kill one worker container (SIGKILL, as `docker-compose kill` does) mid-run.
    let containers = project.containers("worker");
    assert_eq!(containers.len(), 3, "{containers:?}");
    let victim = &containers[1];
    let hostname =
        ok(Command::new("docker").args(["inspect", "--format", "{{.Config.Hostname}}", victim]))
            .trim()
            .to_string();
    ok(Command::new("docker").args(["kill", victim]));

    let summary: Value = wait_until(Duration::from_secs(60), "the run to complete", || {
        let r = http::get(api, &format!("/api/runs/{run_id}"));
        let v = r.json();
        // A killed worker's run is degraded: its share moved.
        (v["status"] == "degraded").then_some(v)
    });
    assert_eq!(summary["stop_reason"], "duration reached", "{summary:#}");
    let listed = summary["workers"].as_array().expect("workers");
    let lost: Vec<&Value> = listed.iter().filter(|w| w["state"] == "lost").collect();
    assert_eq!(lost.len(), 1, "{listed:#?}");
    let name = lost[0]["name"].as_str().unwrap_or_default();
    assert!(
        name.starts_with(&hostname),
        "the lost worker `{name}` is not the killed container {hostname}"
    );
    assert!(
        listed.iter().filter(|w| w["state"] == "finished").count() == 2,
        "{listed:#?}"
    );
    let events = summary["events"].to_string();
    assert!(
        events.contains(name),
        "the events do not name {name}: {events}"
    );
    assert!(summary["metrics"]["total_requests"].as_u64() > Some(0));
    let now = http::get(api, "/api/workers").json()["workers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(now.len(), 2, "{now:#?}");
    assert!(
        results.path().join("master/summary.json").exists(),
        "the master's results are not in the mounted folder"
    );

    // The one-shot headless profile: a whole run, its files in the mounted folder. Its exit
    // code is the run's verdict: 0, or 3 when the example's p99 threshold is breached on a
    // busy machine (a timing, not a failure of the profile).
    let headless =
        output(
            project
                .command()
                .args(["--profile", "headless", "run", "--rm", "headless"]),
        );
    assert!(
        matches!(headless.status.code(), Some(0 | 3)),
        "the headless run failed:\n{}{}",
        String::from_utf8_lossy(&headless.stdout),
        String::from_utf8_lossy(&headless.stderr)
    );
    let headless = results.read_json("headless/summary.json");
    assert!(
        headless["metrics"]["total_requests"].as_u64() > Some(0),
        "{headless:#}"
    );

    // The LLM example against the built-in LLM target's container, as the file's header
    // shows: its prompt file (`../data/prompts.txt`) is mounted too.
    let llm = output(
        project
            .command()
            .env("STAMPEDE_SCENARIO", "llm-prompts.toml")
            .env("STAMPEDE_TARGET", "http://target-llm:8000")
            .args(["--profile", "headless", "run", "--rm", "headless"]),
    );
    assert!(
        matches!(llm.status.code(), Some(0 | 3)),
        "the headless LLM run failed:\n{}{}",
        String::from_utf8_lossy(&llm.stdout),
        String::from_utf8_lossy(&llm.stderr)
    );
    let llm = results.read_json("headless/summary.json");
    assert_eq!(llm["scenario"], "llm-prompts", "{llm:#}");
    assert!(llm["total"]["requests"].as_u64() > Some(0), "{llm:#}");
    assert_eq!(llm["total"]["failures"].as_u64(), Some(0), "{llm:#}");
    assert!(llm["llm"]["output_tokens"].as_u64() > Some(0), "{llm:#}");
}
