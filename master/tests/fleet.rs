//! A real master (in process, real QUIC on 127.0.0.1:0) driven by hand-made workers, to check
//! the protocol's edges: a worker that sends garbage is cut off with the cause named, and what
//! it had reported before is kept; a worker of another protocol version is refused.

use std::time::Duration;

use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use stampede_master::{Master, MasterConfig};
use stampede_protocol::{
    Counter, FromWorker, Hello, PROTOCOL_VERSION, Report, Series, ToWorker, handshake, metric,
    read_frame, transport, write_frame,
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
    let scenario = ScenarioConfig::parse(SCENARIO, "fleet.toml", &Overrides::default()).unwrap();
    Master::start(
        MasterConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            token: "t".into(),
            scenario: Some(scenario),
            auto_start_at: Some(1),
            out: None,
            api: None,
            stop_grace: Duration::from_secs(5),
        },
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

async fn connect(master: &Master) -> (quinn::Endpoint, quinn::Connection) {
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(transport::client_config().unwrap());
    let conn = ep
        .connect(master.addr, transport::SERVER_NAME)
        .unwrap()
        .await
        .unwrap();
    (ep, conn)
}

fn hello(version: u16) -> Hello {
    Hello {
        version,
        token: "t".into(),
        name: "hand-made".into(),
        cores: 1,
        build: "test".into(),
    }
}

#[tokio::test]
async fn garbage_report_cuts_the_worker_off_but_keeps_its_data() {
    let mut master = start_master().await;
    let (_ep, conn) = connect(&master).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    handshake::introduce(&mut send, &mut recv, &hello(PROTOCOL_VERSION))
        .await
        .unwrap();
    let mut reports = conn.open_uni().await.unwrap();
    // Follow the conversation until the start.
    let run_id = loop {
        match read_frame::<_, ToWorker>(&mut recv).await.unwrap() {
            ToWorker::Assign(a) => write_frame(&mut send, &FromWorker::Ready { run_id: a.run_id })
                .await
                .unwrap(),
            ToWorker::Ping { seq, master_ns } => {
                let pong = FromWorker::Pong {
                    seq,
                    master_ns,
                    worker_ns: master_ns,
                };
                write_frame(&mut send, &pong).await.unwrap()
            }
            ToWorker::Start { run_id, .. } => break run_id,
            _ => {}
        }
    };
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
    assert_eq!(summary.stop_reason, "no workers left");
    assert_eq!(summary.workers.len(), 1);
    assert_eq!(summary.workers[0].state, "lost");
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

#[tokio::test]
async fn other_protocol_version_is_refused_with_the_reason() {
    let master = start_master().await;
    let (_ep, conn) = connect(&master).await;
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let err = handshake::introduce(&mut send, &mut recv, &hello(PROTOCOL_VERSION + 1))
        .await
        .unwrap_err();
    assert!(err.is_refusal());
    let text = err.to_string();
    assert!(text.contains("protocol version mismatch"), "{text}");
    assert!(
        text.contains(&format!("v{}", PROTOCOL_VERSION + 1)),
        "{text}"
    );
    assert!(master.snapshots.borrow().workers.is_empty());
    master.shutdown().await;
}
