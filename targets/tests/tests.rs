//! Integration tests for the HTTP target: real server on `127.0.0.1:0`, real HTTP/1.1 requests.
//!
//! Delay tests use the real clock with short delays: the server and client talk over real
//! sockets, which paused tokio time would not make deterministic anyway.

mod util;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use stampede_targets::http::{HttpTargetConfig, HttpTargetStats, MAX_BYTES, serve};
use tokio_util::sync::CancellationToken;

use util::{Client, start_target};

#[tokio::test]
async fn default_config_answers_200_with_static_body() {
    let target = start_target(HttpTargetConfig::default()).await;
    let mut client = Client::connect(target.addr).await;

    let reply = client.get("/any/path?x=1").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.len(), 1024);
    assert_eq!(reply.header("content-length"), Some("1024"));
    assert_eq!(
        reply.header("content-type"),
        Some("application/octet-stream")
    );

    let reply = client.send(Method::DELETE, "/other", Bytes::new()).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.len(), 1024);
    assert_eq!(target.stats.requests(), 2);
    assert_eq!(target.stats.errors(), 0);
}

#[tokio::test]
async fn body_size_is_configurable_including_zero() {
    for body_size in [0, 1, 100_000] {
        let target = start_target(HttpTargetConfig {
            body_size,
            ..HttpTargetConfig::default()
        })
        .await;
        let reply = Client::connect(target.addr).await.get("/").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body.len(), body_size);
    }
}

#[tokio::test]
async fn status_path_answers_that_code() {
    let target = start_target(HttpTargetConfig::default()).await;
    let mut client = Client::connect(target.addr).await;

    assert_eq!(
        client.get("/status/503").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        client.get("/status/404").await.status,
        StatusCode::NOT_FOUND
    );
    let reply = client.get("/status/204").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.body.is_empty());
    assert_eq!(
        client.get("/status/abc").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        client.get("/status/100").await.status,
        StatusCode::BAD_REQUEST
    );
    // Asked-for statuses are not injected errors.
    assert_eq!(target.stats.requests(), 5);
    assert_eq!(target.stats.errors(), 0);
}

#[tokio::test]
async fn bytes_path_streams_that_many_zeros() {
    let target = start_target(HttpTargetConfig::default()).await;
    let mut client = Client::connect(target.addr).await;

    let reply = client.get("/bytes/1000003").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-length"), Some("1000003"));
    assert_eq!(reply.body.len(), 1_000_003);
    assert!(reply.body.iter().all(|&byte| byte == 0));

    assert!(client.get("/bytes/0").await.body.is_empty());

    // Over the cap: announced as MAX_BYTES; no need to read 64 MiB to check that.
    let mut capped = Client::connect(target.addr).await;
    let head = capped
        .send_head(Method::GET, "/bytes/999999999999", Bytes::new())
        .await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()["content-length"]
            .to_str()
            .expect("ascii header"),
        MAX_BYTES.to_string()
    );
}

#[tokio::test]
async fn error_rate_one_always_answers_error_status() {
    let target = start_target(HttpTargetConfig {
        error_rate: 1.0,
        error_status: 503,
        ..HttpTargetConfig::default()
    })
    .await;
    let mut client = Client::connect(target.addr).await;

    for _ in 0..10 {
        let reply = client.get("/").await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.body, "injected error");
    }
    assert_eq!(target.stats.requests(), 10);
    assert_eq!(target.stats.errors(), 10);
    let stats = client.get("/__stampede/stats").await.json();
    assert_eq!(stats, serde_json::json!({"requests": 10, "errors": 10}));
}

#[tokio::test]
async fn error_rate_half_injects_some_errors() {
    let target = start_target(HttpTargetConfig {
        error_rate: 0.5,
        ..HttpTargetConfig::default()
    })
    .await;
    let mut client = Client::connect(target.addr).await;

    let mut errors = 0;
    for _ in 0..200 {
        let reply = client.get("/").await;
        match reply.status {
            StatusCode::OK => assert_eq!(reply.body.len(), 1024),
            StatusCode::INTERNAL_SERVER_ERROR => errors += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    // 200 fair coin flips land outside 40..=160 with probability far below 1e-15.
    assert!((40..=160).contains(&errors), "errors = {errors}");
    assert_eq!(target.stats.errors(), errors);
}

#[tokio::test]
async fn stats_endpoint_counts_load_requests_only() {
    let target = start_target(HttpTargetConfig::default()).await;
    let mut client = Client::connect(target.addr).await;

    client.get("/").await;
    client.get("/status/404").await;
    client.get("/bytes/10").await;
    client
        .send(Method::POST, "/submit", Bytes::from_static(b"payload"))
        .await;
    client.get("/?delay_ms=1").await;

    for _ in 0..3 {
        let reply = client.get("/__stampede/stats").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(
            reply.json(),
            serde_json::json!({"requests": 5, "errors": 0})
        );
    }
    assert_eq!(
        client.get("/__stampede/nope").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        client.get("/__stampede/reset").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(target.stats.requests(), 5);

    let reset = client
        .send(Method::POST, "/__stampede/reset", Bytes::new())
        .await;
    assert_eq!(reset.status, StatusCode::NO_CONTENT);
    assert_eq!(target.stats.requests(), 0);
    assert_eq!(
        client.get("/__stampede/stats").await.json(),
        serde_json::json!({"requests": 0, "errors": 0})
    );

    client.get("/").await;
    assert_eq!(target.stats.requests(), 1);
}

#[tokio::test]
async fn delay_ms_query_delays_the_answer() {
    let target = start_target(HttpTargetConfig::default()).await;
    let mut client = Client::connect(target.addr).await;

    let started = Instant::now();
    let reply = client.get("/?foo=bar&delay_ms=150").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );

    assert_eq!(
        client.get("/?delay_ms=later").await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn configured_delay_applies_to_every_request() {
    let target = start_target(HttpTargetConfig {
        delay: Duration::from_millis(100),
        jitter: Duration::from_millis(20),
        ..HttpTargetConfig::default()
    })
    .await;
    let mut client = Client::connect(target.addr).await;

    for path in ["/", "/status/201"] {
        let started = Instant::now();
        client.get(path).await;
        assert!(
            started.elapsed() >= Duration::from_millis(100),
            "{path}: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_connection() {
    let target = start_target(HttpTargetConfig::default()).await;
    let mut client = Client::connect(target.addr).await;

    for i in 0..20 {
        let reply = client.get(&format!("/req/{i}")).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body.len(), 1024);
    }
    assert!(
        !client.connection.is_finished(),
        "server closed the keep-alive connection"
    );
    assert_eq!(target.stats.requests(), 20);
}

#[tokio::test]
async fn request_bodies_are_drained_and_connection_reused() {
    let target = start_target(HttpTargetConfig::default()).await;
    let mut client = Client::connect(target.addr).await;

    let upload = Bytes::from(vec![7u8; 1024 * 1024]);
    for _ in 0..3 {
        let reply = client.send(Method::POST, "/upload", upload.clone()).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    assert_eq!(client.get("/").await.status, StatusCode::OK);
    assert!(!client.connection.is_finished());
    assert_eq!(target.stats.requests(), 4);
}

#[tokio::test]
async fn many_concurrent_connections() {
    let target = start_target(HttpTargetConfig::default()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let addr = target.addr;
        tasks.spawn(async move {
            let mut client = Client::connect(addr).await;
            for _ in 0..25 {
                assert_eq!(client.get("/").await.status, StatusCode::OK);
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("client task");
    }
    assert_eq!(target.stats.requests(), 32 * 25);
}

#[tokio::test]
async fn shutdown_closes_idle_connections_promptly() {
    let target = start_target(HttpTargetConfig::default()).await;
    let mut client = Client::connect(target.addr).await;
    assert_eq!(client.get("/").await.status, StatusCode::OK);

    let started = Instant::now();
    target.shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(3), target.task)
        .await
        .expect("serve returns after shutdown")
        .expect("serve task did not panic");
    assert!(result.is_ok());
    // Idle keep-alive connections close right away rather than waiting out the grace period.
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    tokio::time::timeout(Duration::from_secs(1), &mut client.connection)
        .await
        .expect("server closed the idle connection")
        .expect("connection task did not panic")
        .expect("clean close");
    assert!(tokio::net::TcpStream::connect(target.addr).await.is_err());
}

#[tokio::test]
async fn shutdown_lets_in_flight_request_finish() {
    let target = start_target(HttpTargetConfig::default()).await;
    let mut client = Client::connect(target.addr).await;

    let request = tokio::spawn(async move { client.get("/?delay_ms=300").await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    target.shutdown.cancel();

    let reply = request.await.expect("request task");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.len(), 1024);
    let result = tokio::time::timeout(Duration::from_secs(3), target.task)
        .await
        .expect("serve returns after shutdown")
        .expect("serve task did not panic");
    assert!(result.is_ok());
}

#[tokio::test]
async fn shutdown_is_bounded_when_a_request_hangs() {
    let target = start_target(HttpTargetConfig::default()).await;
    let mut client = Client::connect(target.addr).await;

    let request = tokio::spawn(async move {
        client
            .try_send(Method::GET, "/?delay_ms=60000", Bytes::new())
            .await
            .map(|response| response.status())
    });
    tokio::time::sleep(Duration::from_millis(50)).await;

    let started = Instant::now();
    target.shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(3), target.task)
        .await
        .expect("serve returns within the grace period")
        .expect("serve task did not panic");
    assert!(result.is_ok());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900),
        "grace period skipped: {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    // The hung request was cut off, not answered.
    assert!(request.await.expect("request task").is_err());
}

#[tokio::test]
async fn serve_rejects_invalid_config() {
    for config in [
        HttpTargetConfig {
            error_rate: -0.1,
            ..HttpTargetConfig::default()
        },
        HttpTargetConfig {
            error_status: 1000,
            ..HttpTargetConfig::default()
        },
    ] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let result = serve(
            listener,
            config,
            std::sync::Arc::new(HttpTargetStats::new()),
            CancellationToken::new(),
        )
        .await;
        assert!(result.is_err());
    }
}
