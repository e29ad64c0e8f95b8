//! A real master (in process, real QUIC on 127.0.0.1:0) driven by hand-made workers, to check
//! the protocol's edges: a worker that sends garbage is cut off with the cause named, and what
//! it had reported before is kept; a worker of another protocol version is refused.

use std::time::Duration;

use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use stampede_master::snapshot::WorkerState;
use stampede_master::{Master, MasterConfig};
use stampede_protocol::handshake::{Introduction, Role, Secret, Token};
use stampede_protocol::{
    Counter, FromWorker, Hello, HelloReply, MAX_FRAME, MasterProof, PRE_AUTH_FRAME,
    PROTOCOL_VERSION, Report, Series, ToWorker, handshake, metric, read_frame, transport,
    write_frame,
};
use stampede_scenarios::{Overrides, ScenarioConfig};
use tokio_util::sync::CancellationToken;

const SCENARIO: &str = r#"
name = "fleet"
target = "http://127.0.0.1:9"
duration = "30s"
[load]
model = "closed"
users = 4
[[requests]]
name = "a"
path = "/"
"#;

async fn start_master() -> Master {
    start_master_with(1, None).await
}

async fn start_master_with(workers: usize, out: Option<std::path::PathBuf>) -> Master {
    let scenario = ScenarioConfig::parse(SCENARIO, "fleet.toml", &Overrides::default()).unwrap();
    Master::start(
        MasterConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            token: token(),
            identity: None,
            scenario: Some(scenario),
            auto_start_at: Some(workers),
            out,
            records: Default::default(),
            runs_dir: None,
            target: None,
            api: None,
            stop_grace: Duration::from_secs(5),
            tolerate_worker_loss: false,
        },
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

async fn connect(master: &Master) -> (quinn::Endpoint, quinn::Connection) {
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(transport::client_config(&transport::MasterTrust::Token).unwrap());
    let conn = ep
        .connect(master.addr, transport::SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    (ep, conn)
}

fn token() -> Token {
    Token::new("fleet test token, 16+ bytes").unwrap()
}

fn me() -> Introduction {
    Introduction {
        name: "hand-made".into(),
        cores: 1,
        build: "test".into(),
    }
}

/// Follow the master's conversation like a worker (ready to every assignment, pong to every
/// ping) until `want` picks a message.
async fn until<T>(
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    want: impl Fn(&ToWorker) -> Option<T>,
) -> T {
    loop {
        let msg = read_frame::<_, ToWorker>(&mut *recv, MAX_FRAME)
            .await
            .unwrap();
        if let Some(t) = want(&msg) {
            return t;
        }
        match msg {
            ToWorker::Assign(a) => write_frame(&mut *send, &FromWorker::Ready { run_id: a.run_id })
                .await
                .unwrap(),
            ToWorker::Ping { seq, master_ns } => {
                let pong = FromWorker::Pong {
                    seq,
                    master_ns,
                    worker_ns: master_ns,
                };
                write_frame(&mut *send, &pong).await.unwrap()
            }
            _ => {}
        }
    }
}

/// A hand-made worker's streams once the master has started its run.
struct Started {
    _ep: quinn::Endpoint,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    reports: quinn::SendStream,
    run_id: u64,
}

/// Join the master as a worker and follow the conversation until the run starts.
async fn join_until_start(master: &Master) -> Started {
    let (ep, conn) = connect(master).await;
    let (mut send, mut recv, _) = handshake::join(&conn, &token(), &me()).await.unwrap();
    let reports = conn.open_uni().await.unwrap();
    let run_id = until(&mut send, &mut recv, |m| match m {
        ToWorker::Start { run_id, .. } => Some(*run_id),
        _ => None,
    })
    .await;
    Started {
        _ep: ep,
        send,
        recv,
        reports,
        run_id,
    }
}

/// Stop the run as its master's user would; the hand-made worker (its control streams and
/// report stream) answers the stop with `last`; the run's summary.
async fn stop_with(
    master: &mut Master,
    run_id: u64,
    (send, recv, reports): (
        &mut quinn::SendStream,
        &mut quinn::RecvStream,
        &mut quinn::SendStream,
    ),
    last: &Report,
) -> std::sync::Arc<stampede_master::summary::RunSummary> {
    master.handle().stop_run(run_id).await.unwrap();
    until(send, recv, |m| {
        matches!(m, ToWorker::Stop { .. }).then_some(())
    })
    .await;
    write_frame(reports, last).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), master.next_finished())
        .await
        .expect("the run ends")
        .expect("a summary")
}

/// A report of `names` series, each a histogram of `per_name` spread values, and the counters.
fn big_report(run_id: u64, seq: u64, names: usize, per_name: u64, last: bool) -> Report {
    let mut ser = V2DeflateSerializer::new();
    let mut series = Vec::new();
    let mut counters = Vec::new();
    for n in 0..names {
        let mut h = stampede_scenarios::recorder::new_histogram();
        for v in 0..per_name {
            // Spread over many buckets so the compressed histogram is not tiny.
            h.record(1 + (v * 7919 + n as u64 * 104_729 + seq * 31) % 5_000_000)
                .unwrap();
        }
        let mut hist = Vec::new();
        ser.serialize(&h, &mut hist).unwrap();
        let name = if n == 0 {
            "a".to_string()
        } else {
            format!("extra{n}")
        };
        series.push(Series {
            name: name.clone(),
            metric: metric::LATENCY.into(),
            hist,
        });
        counters.push(Counter {
            name,
            counter: metric::REQUESTS.into(),
            value: per_name,
        });
    }
    Report {
        run_id,
        seq,
        start_unix_ms: 0,
        end_unix_ms: 0,
        users: 4,
        target_rate: 0.0,
        series,
        counters,
        failures: vec![],
        records: vec![],
        gauges: vec![],
        last,
    }
}

/// Control messages written while a multi-packet report is on its way must not disturb the
/// report's reading (frame reads are not cancel-safe; the master reads each stream on its own).
#[tokio::test]
async fn control_messages_during_large_reports_lose_nothing() {
    let mut master = start_master().await;
    let Started {
        _ep,
        mut send,
        mut recv,
        mut reports,
        run_id,
    } = join_until_start(&master).await;
    let (names, per_name, count) = (20usize, 500u64, 4u64);
    for seq in 0..count {
        // The report's frame is written in two halves with control messages in between, so
        // the master has half a report read when the control stream has a whole message.
        let body = postcard::to_stdvec(&big_report(run_id, seq, names, per_name, false)).unwrap();
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        let (first, rest) = frame.split_at(frame.len() / 2);
        reports.write_all(first).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..3 {
            write_frame(&mut send, &FromWorker::Heartbeat)
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        reports.write_all(rest).await.unwrap();
    }
    master.handle().stop_run(run_id).await.unwrap();
    until(&mut send, &mut recv, |m| {
        matches!(m, ToWorker::Stop { .. }).then_some(())
    })
    .await;
    write_frame(
        &mut reports,
        &big_report(run_id, count, names, per_name, true),
    )
    .await
    .unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(20), master.next_finished())
        .await
        .expect("the run ends after the last report")
        .expect("a summary");
    let expected = (count + 1) * names as u64 * per_name;
    assert_eq!(
        summary.total.requests, expected,
        "events: {:?}",
        summary.events
    );
    assert_eq!(summary.total.latency.len(), expected);
    assert_eq!(
        summary.workers[0].state,
        WorkerState::Finished,
        "events: {:?}",
        summary.events
    );
    master.shutdown().await;
}

#[tokio::test]
async fn garbage_report_cuts_the_worker_off_but_keeps_its_data() {
    let mut master = start_master().await;
    // The control stream stays open (held, unused) so only the reports can end the connection.
    let Started {
        _ep,
        send: _send,
        recv: _recv,
        mut reports,
        run_id,
    } = join_until_start(&master).await;
    let mut h = stampede_scenarios::recorder::new_histogram();
    for v in 1..=10u64 {
        h.record(v * 1000).unwrap();
    }
    let mut hist = Vec::new();
    V2DeflateSerializer::new().serialize(&h, &mut hist).unwrap();
    let report = Report {
        run_id,
        seq: 0,
        start_unix_ms: 0,
        end_unix_ms: 0,
        users: 4,
        target_rate: 0.0,
        series: vec![Series {
            name: "a".into(),
            metric: metric::LATENCY.into(),
            hist,
        }],
        counters: vec![Counter {
            name: "a".into(),
            counter: metric::REQUESTS.into(),
            value: 10,
        }],
        failures: vec![],
        records: vec![],
        gauges: vec![],
        last: false,
    };
    write_frame(&mut reports, &report).await.unwrap();
    // A frame whose body is not a report.
    reports.write_all(&5u32.to_be_bytes()).await.unwrap();
    reports
        .write_all(&[0xff, 0xff, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let summary = tokio::time::timeout(Duration::from_secs(10), master.next_finished())
        .await
        .expect("the run ends when its only worker is cut off")
        .expect("a summary");
    assert_eq!(
        summary.total.requests, 10,
        "the data reported before the garbage is kept"
    );
    assert_eq!(summary.total.latency.len(), 10);
    assert_eq!(
        summary.stop_reason,
        stampede_master::state::RunEnd::NoWorkersLeft
    );
    assert_eq!(summary.workers.len(), 1);
    assert_eq!(summary.workers[0].state, WorkerState::Lost);
    assert!(
        summary
            .events
            .iter()
            .any(|e| e.contains("undecodable report")),
        "the cause is named: {:?}",
        summary.events
    );
    master.shutdown().await;
}

/// A report of `n` requests of name `a`, with one record row per request (`worker,seq,i`).
fn report_with_rows(run_id: u64, worker: u32, seq: u64, n: u64, last: bool) -> Report {
    use std::io::Write;
    let mut rows = Vec::new();
    for i in 0..n {
        writeln!(rows, "{worker},{seq},{i}").unwrap();
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&rows).unwrap();
    Report {
        run_id,
        seq,
        start_unix_ms: 0,
        end_unix_ms: 0,
        users: 1,
        target_rate: 0.0,
        series: vec![],
        counters: vec![Counter {
            name: "a".into(),
            counter: metric::REQUESTS.into(),
            value: n,
        }],
        failures: vec![],
        records: vec![stampede_protocol::Rows {
            stream: "requests".into(),
            data: z.finish().unwrap(),
        }],
        gauges: vec![],
        last,
    }
}

/// Record rows from two workers all reach the stream's file as they arrive, those of a worker
/// lost mid-run included: the file's rows equal the requests the run counted.
#[tokio::test]
async fn record_rows_of_every_worker_reach_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut master = start_master_with(2, Some(dir.path().to_path_buf())).await;
    let (a, b) = tokio::join!(join_until_start(&master), join_until_start(&master));
    let (
        Started {
            _ep: _ep_a,
            send: mut send_a,
            recv: mut recv_a,
            reports: mut reports_a,
            run_id,
        },
        Started {
            _ep: ep_b,
            reports: mut reports_b,
            ..
        },
    ) = (a, b);
    for seq in 0..3 {
        write_frame(
            &mut reports_a,
            &report_with_rows(run_id, 1, seq, 100 + seq, false),
        )
        .await
        .unwrap();
        write_frame(&mut reports_b, &report_with_rows(run_id, 2, seq, 50, false))
            .await
            .unwrap();
    }
    // Rows are on disk while the run goes on (flushed every second), not held to the end.
    let file = dir.path().join("requests.csv");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&file).map_or(0, |t| t.lines().count()) < 453 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rows not written while running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Worker 2 disappears; what it sent stays.
    ep_b.close(0u32.into(), b"gone");
    drop(reports_b);
    let last = report_with_rows(run_id, 1, 3, 7, true);
    let summary = stop_with(
        &mut master,
        run_id,
        (&mut send_a, &mut recv_a, &mut reports_a),
        &last,
    )
    .await;
    let text = std::fs::read_to_string(&file).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(summary.total.requests, 100 + 101 + 102 + 7 + 3 * 50);
    assert_eq!(rows.len() as u64, summary.total.requests);
    let from = |w: &str| rows.iter().filter(|r| r.starts_with(w)).count();
    assert_eq!((from("1,"), from("2,")), (310, 150));
    master.shutdown().await;
}

#[tokio::test]
async fn worker_requests_of_the_last_run_stay_after_it() {
    let mut master = start_master().await;
    let Started {
        _ep,
        mut send,
        mut recv,
        mut reports,
        run_id,
    } = join_until_start(&master).await;
    write_frame(&mut reports, &report_with_rows(run_id, 1, 0, 7, false))
        .await
        .unwrap();
    let last = report_with_rows(run_id, 1, 1, 3, true);
    let summary = stop_with(
        &mut master,
        run_id,
        (&mut send, &mut recv, &mut reports),
        &last,
    )
    .await;
    assert_eq!(summary.total.requests, 10);
    // The snapshot of the finished run went out before its summary.
    let snap = master.snapshots.borrow().clone();
    assert_eq!(snap.workers.len(), 1, "{:?}", snap.workers);
    assert_eq!(snap.workers[0].state, WorkerState::Ready);
    assert_eq!(snap.workers[0].requests, 10, "the last run's count is kept");
    master.shutdown().await;
}

#[tokio::test]
async fn other_protocol_version_is_refused_with_the_reason() {
    let master = start_master().await;
    let (_ep, conn) = connect(&master).await;
    // By hand: the right proof, another version.
    let secret = Secret::of(&conn).unwrap();
    let (mut send, mut recv) = conn.accept_bi().await.unwrap();
    let _: MasterProof = read_frame(&mut recv, PRE_AUTH_FRAME).await.unwrap();
    let hello = Hello {
        proof: handshake::prove(&token(), &secret, Role::Worker),
        version: PROTOCOL_VERSION + 1,
        name: "hand-made".into(),
        cores: 1,
        build: "test".into(),
    };
    write_frame(&mut send, &hello).await.unwrap();
    let text = match read_frame::<_, HelloReply>(&mut recv, PRE_AUTH_FRAME).await {
        Ok(HelloReply::Refused { reason }) => reason,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(text.contains("protocol version mismatch"), "{text}");
    assert!(
        text.contains(&format!("v{}", PROTOCOL_VERSION + 1)),
        "{text}"
    );
    assert!(master.snapshots.borrow().workers.is_empty());
    master.shutdown().await;
}

/// A report of `kinds` failures (one each) of request `a`.
fn failing_report(run_id: u64, seq: u64, kinds: &[&str], last: bool) -> Report {
    Report {
        counters: vec![
            Counter {
                name: "a".into(),
                counter: metric::REQUESTS.into(),
                value: kinds.len() as u64,
            },
            Counter {
                name: "a".into(),
                counter: metric::FAILURES.into(),
                value: kinds.len() as u64,
            },
        ],
        failures: kinds
            .iter()
            .map(|k| stampede_protocol::FailureCount {
                name: "a".into(),
                kind: (*k).into(),
                count: 1,
            })
            .collect(),
        ..big_report(run_id, seq, 0, 0, last)
    }
}

/// The run's events after reports of failures `first` then `then`.
async fn events_after(first: &[&str], then: &[&str]) -> Vec<String> {
    let mut master = start_master().await;
    let Started {
        _ep,
        mut send,
        mut recv,
        mut reports,
        run_id,
    } = join_until_start(&master).await;
    write_frame(&mut reports, &failing_report(run_id, 0, first, false))
        .await
        .unwrap();
    let last = failing_report(run_id, 1, then, true);
    let summary = stop_with(
        &mut master,
        run_id,
        (&mut send, &mut recv, &mut reports),
        &last,
    )
    .await;
    master.shutdown().await;
    summary.events.clone()
}

/// Certificate failures from the first failing report on give the hint, once; a run whose
/// first failures are anything else gets none, even if certificate failures follow.
#[tokio::test]
async fn certificate_failures_first_give_the_hint_once() {
    use stampede_master::summary::CERTIFICATE_HINT;
    let unknown = "tls: invalid peer certificate: UnknownIssuer";
    let expired = "tls: invalid peer certificate: Expired";
    let events = events_after(&[unknown, expired], &[unknown]).await;
    let hints = events.iter().filter(|e| *e == CERTIFICATE_HINT).count();
    assert_eq!(hints, 1, "{events:#?}");

    let events = events_after(&["HTTP 503", unknown], &[unknown]).await;
    assert!(!events.iter().any(|e| e == CERTIFICATE_HINT), "{events:#?}");
    let events = events_after(&["connect: connection refused"], &[unknown]).await;
    assert!(!events.iter().any(|e| e == CERTIFICATE_HINT), "{events:#?}");
}
