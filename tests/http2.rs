//! `[http] version = "2"`: `stampede run` over h2c against an in-test HTTP/2 server (the `h2`
//! crate's) and, when installed, nginx (`listen ... http2`), counting what each saw.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::util::{Proc, TestDir, wait_until};

/// A short run's time limit: its duration plus start-up, final reports and writing results.
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// What the in-test server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicU64,
    requests: AtomicU64,
}

/// An HTTP/2 (h2c, prior knowledge) server on 127.0.0.1 from its own thread, answering 1 KiB
/// to every request; its address and what it saw.
fn start_h2c() -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap().to_string();
    let counts = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                counts.connections.fetch_add(1, Ordering::SeqCst);
                let counts = counts.clone();
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(tcp).await else {
                        return;
                    };
                    while let Some(Ok((_req, mut respond))) = conn.accept().await {
                        counts.requests.fetch_add(1, Ordering::SeqCst);
                        let Ok(mut body) = respond.send_response(http::Response::new(()), false)
                        else {
                            continue;
                        };
                        let _ = body.send_data(bytes::Bytes::from_static(&[b'x'; 1024]), true);
                    }
                });
            }
        });
    });
    (addr, seen)
}

fn scenario(target: &str, path: &str, users: u64, connections: Option<u64>) -> String {
    let connections = connections
        .map(|c| format!("connections = {c}\n"))
        .unwrap_or_default();
    format!(
        r#"name = "h2"
target = "{target}"
duration = "2s"

[load]
model = "closed"
users = {users}
spawn_rate = {}

[http]
timeout = "2s"
version = "2"
{connections}
[[requests]]
name = "one_k"
method = "GET"
path = "{path}"
"#,
        users * 10
    )
}

fn u64_at(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{pointer} is not an unsigned integer in {v:#}"))
}

/// Run `toml` with 2 local workers; the summary.
fn run(dir: &TestDir, toml: &str) -> Value {
    let scenario = dir.write("scenario.toml", toml);
    let done = Proc::run(
        &["run", scenario.to_str().unwrap(), "--out", "out"],
        dir.path(),
        RUN_LIMIT,
    );
    done.assert_code(0);
    dir.read_json("out/summary.json")
}

/// 40 users on 2 workers, 2 connections each: the server saw exactly the requests the summary
/// counts, all of them successes, on exactly 4 connections, and the connection counters say so.
#[test]
fn h2c_requests_and_connections_match_the_server() {
    let (addr, seen) = start_h2c();
    let dir = TestDir::new();
    let summary = run(
        &dir,
        &scenario(&format!("http://{addr}"), "/1k", 40, Some(2)),
    );
    crate::run::validate_summary(&summary);
    let total = u64_at(&summary, "/metrics/total_requests");
    assert!(total > 100, "too few requests: {total}");
    assert_eq!(u64_at(&summary, "/total/failures"), 0, "{summary:#}");
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        total,
        "server vs summary"
    );
    assert_eq!(u64_at(&summary, "/total/bytes"), total * 1024);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 4, "2 workers x 2");
    let request = &summary["requests"][0];
    assert_eq!(
        u64_at(request, "/counters/connections_new"),
        4,
        "{request:#}"
    );
    assert_eq!(
        u64_at(request, "/counters/connections_reused"),
        total - 4,
        "{request:#}"
    );
}

/// `version = "2"` against a plaintext HTTP/1.1-only server: every request is the named
/// failure, none a timeout.
#[test]
fn h2c_against_an_http1_server_is_a_named_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let _ = tcp.read(&mut buf);
                let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
            });
        }
    });
    let dir = TestDir::new();
    let scenario = dir.write(
        "scenario.toml",
        &scenario(&format!("http://{addr}"), "/", 2, None),
    );
    let done = Proc::run(
        &["run", scenario.to_str().unwrap(), "--out", "out"],
        dir.path(),
        RUN_LIMIT,
    );
    assert!(!done.stderr.contains("panicked"), "{}", done.show());
    let failures = dir.read("out/failures.csv");
    let summary = dir.read_json("out/summary.json");
    let total = u64_at(&summary, "/metrics/total_requests");
    assert!(total > 0);
    let row = failures
        .lines()
        .find(|l| l.contains("http2: server answered HTTP/1.1 (no h2c)"))
        .unwrap_or_else(|| panic!("no named h2c failure in\n{failures}"));
    let occurrences: u64 = row.rsplit(',').next().unwrap().trim().parse().unwrap();
    assert_eq!(
        occurrences, total,
        "every request failed the same way:\n{failures}"
    );
}

/// Against nginx's h2c (`listen ... http2`): the access log has exactly the summary's
/// requests, every one `HTTP/2.0 200`. Skipped (with a note) without nginx.
#[test]
fn h2c_against_nginx_matches_its_access_log() {
    let Some(nginx) = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
    else {
        eprintln!("skipped: nginx is not installed");
        return;
    };
    let dir = TestDir::new();
    let root = dir.path();
    std::fs::write(root.join("1k"), [b'n'; 1024]).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = root.display();
    let conf = format!(
        // One process (no master): killing it, as the test's guard does, leaves no worker.
        r#"master_process off;
daemon off;
pid {r}/nginx.pid;
error_log {r}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format proto '$server_protocol $status $body_bytes_sent';
    access_log {r}/access.log proto;
    client_body_temp_path {r}/tmp_body;
    proxy_temp_path {r}/tmp_proxy;
    fastcgi_temp_path {r}/tmp_fastcgi;
    uwsgi_temp_path {r}/tmp_uwsgi;
    scgi_temp_path {r}/tmp_scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} http2;
        location = /1k {{ root {r}; default_type application/octet-stream; }}
    }}
}}
"#
    );
    let conf_path = dir.write("nginx.conf", &conf);
    let mut cmd = std::process::Command::new(nginx);
    cmd.args([
        "-e",
        &format!("{r}/error.log"),
        "-c",
        conf_path.to_str().unwrap(),
    ]);
    let mut server = Proc::spawn("nginx", cmd);
    wait_until(Duration::from_secs(10), "nginx to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let summary = run(
        &dir,
        &scenario(&format!("http://127.0.0.1:{port}"), "/1k", 20, None),
    );
    let total = u64_at(&summary, "/metrics/total_requests");
    assert!(total > 100, "too few requests: {total}");
    assert_eq!(u64_at(&summary, "/total/failures"), 0, "{summary:#}");
    let lines = wait_until(Duration::from_secs(5), "nginx's access log", || {
        let log = std::fs::read_to_string(root.join("access.log")).unwrap_or_default();
        (log.lines().count() as u64 >= total).then_some(log)
    });
    server.kill();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len() as u64, total, "access log lines vs summary");
    let other: Vec<&&str> = lines
        .iter()
        .filter(|l| **l != "HTTP/2.0 200 1024")
        .collect();
    assert!(
        other.is_empty(),
        "not HTTP/2.0 200 1024: {:?}",
        &other[..other.len().min(5)]
    );
    // Default connections: one per 100 users per worker, 2 workers.
    let request = &summary["requests"][0];
    assert_eq!(
        u64_at(request, "/counters/connections_new"),
        2,
        "{request:#}"
    );
}
