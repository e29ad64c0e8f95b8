//! Memory before authentication: 500 connections from 500 source addresses (127.0.1.1 ...,
//! so no per-address back-off hides them) that never authenticate, each announcing a 16 MiB
//! frame and pushing what flow control lets through, against a real `stampede master`. Its
//! RSS is read from /proc while they come, and a real worker joins in the middle of it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use stampede_protocol::handshake::CLOSE_UNAUTHENTICATED;
use stampede_protocol::transport::{self, MasterTrust};

use super::{TOKEN, runtime, token_file, wait_joined, worker_with_file};
use crate::util::{MasterProc, TestDir};

/// How many strangers connect.
const PEERS: usize = 500;

/// What each announces.
const ANNOUNCED: u32 = 16 << 20;

/// A field of /proc/PID/status, in kB.
fn status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// What happened to one stranger.
#[derive(Debug, Default)]
struct Tally {
    /// Connection attempts refused before a handshake (the master's pending limit).
    refused: AtomicUsize,
    /// Strangers connected and waiting to authenticate when the go was given.
    waiting: AtomicUsize,
    /// Strangers that got to announce their frame.
    announced: AtomicUsize,
    /// Strangers the master closed with its "unauthenticated" code.
    closed_unauthenticated: AtomicUsize,
    /// Strangers whose connection ended otherwise (the idle timeout on a loaded machine).
    closed_otherwise: AtomicUsize,
    /// Strangers whose connection was still open 10 s after they announced.
    still_open: AtomicUsize,
    /// Body bytes the master's flow control let through, all strangers together.
    pushed: AtomicUsize,
    /// Strangers that gave up (no connection within the test's patience).
    gave_up: AtomicUsize,
}

/// Connect from `ip` until admitted, wait for `go`, then announce a 16 MiB frame and write
/// until the master closes the connection.
async fn stranger(
    ip: [u8; 4],
    master: SocketAddr,
    go: Arc<AtomicBool>,
    ready: Arc<AtomicUsize>,
    tally: Arc<Tally>,
) {
    let mut ep = quinn::Endpoint::client(SocketAddr::from((ip, 0))).unwrap();
    ep.set_default_client_config(transport::client_config(&MasterTrust::Token).unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut counted_ready = false;
    let (conn, mut send) = loop {
        let attempt = async {
            let conn = ep.connect(master, transport::SERVER_NAME).unwrap().await?;
            let (send, _recv) = conn.accept_bi().await?;
            Ok::<_, quinn::ConnectionError>((conn, send))
        };
        match attempt.await {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => {
                tally.refused.fetch_add(1, Ordering::SeqCst);
                if !counted_ready {
                    ready.fetch_add(1, Ordering::SeqCst);
                    counted_ready = true;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => {
                tally.gave_up.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
    };
    if !go.load(Ordering::SeqCst) {
        tally.waiting.fetch_add(1, Ordering::SeqCst);
    }
    if !counted_ready {
        ready.fetch_add(1, Ordering::SeqCst);
    }
    while !go.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tally.announced.fetch_add(1, Ordering::SeqCst);
    let _ = send.write_all(&ANNOUNCED.to_be_bytes()).await;
    let body = vec![0u8; 1 << 20];
    let mut pushed = 0;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(n) = send.write(&body).await {
            pushed += n;
        }
    })
    .await;
    tally.pushed.fetch_add(pushed, Ordering::SeqCst);
    let why = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
    let counter = match why {
        Ok(quinn::ConnectionError::ApplicationClosed(c))
            if c.error_code == CLOSE_UNAUTHENTICATED.into() =>
        {
            &tally.closed_unauthenticated
        }
        Ok(_) => &tally.closed_otherwise,
        Err(_) => &tally.still_open,
    };
    counter.fetch_add(1, Ordering::SeqCst);
    conn.close(0u32.into(), b"");
    ep.wait_idle().await;
}

#[test]
fn unauthenticated_flood_keeps_the_master_small_and_a_worker_joins() {
    let dir = TestDir::new();
    let file = token_file(&dir, TOKEN);
    let master = MasterProc::start(&[
        "--api",
        "127.0.0.1:0",
        "--token-file",
        file.to_str().unwrap(),
    ]);
    let pid = master.proc.pid();
    std::thread::sleep(Duration::from_millis(500));
    let before = status_kb(pid, "VmRSS");
    let hwm_before = status_kb(pid, "VmHWM");
    // Sample RSS every 20 ms while the flood lasts.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(Ordering::SeqCst) {
                peak = peak.max(status_kb(pid, "VmRSS"));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let rt = runtime();
    let (go, ready, tally) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Tally::default()),
    );
    let started = Instant::now();
    let strangers: Vec<_> = (0..PEERS)
        .map(|i| {
            let ip = [127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8];
            rt.spawn(stranger(
                ip,
                master.quic,
                go.clone(),
                ready.clone(),
                tally.clone(),
            ))
        })
        .collect();
    // Every stranger connected or was refused once; the admitted ones are all waiting to
    // authenticate at this moment. Then all announce at once.
    let deadline = Instant::now() + Duration::from_secs(4);
    while ready.load(Ordering::SeqCst) < PEERS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    go.store(true, Ordering::SeqCst);
    let joining = Instant::now();
    let _worker = worker_with_file(master.quic, &file, "during-flood", &[]);
    wait_joined(&master, "during-flood");
    let joined_after = joining.elapsed();
    rt.block_on(async {
        for s in strangers {
            s.await.unwrap();
        }
    });
    let flood_took = started.elapsed();
    sampling.store(false, Ordering::SeqCst);
    let peak = sampler.join().unwrap();
    let hwm = status_kb(pid, "VmHWM");
    let after = status_kb(pid, "VmRSS");
    assert!(master.proc.stderr().contains("failed to authenticate"));
    let warned = master
        .proc
        .stderr()
        .matches("failed to authenticate")
        .count();
    let t = &tally;
    println!(
        "flood: {PEERS} strangers announcing {ANNOUNCED}-byte frames in {flood_took:?}; \
         {} waiting to authenticate at once; {} refused attempts (pending limit); \
         {} announced; {} closed by the master as unauthenticated, {} otherwise, {} still open; \
         {} body bytes let through in all; {} gave up; {warned} warnings (one per source)",
        t.waiting.load(Ordering::SeqCst),
        t.refused.load(Ordering::SeqCst),
        t.announced.load(Ordering::SeqCst),
        t.closed_unauthenticated.load(Ordering::SeqCst),
        t.closed_otherwise.load(Ordering::SeqCst),
        t.still_open.load(Ordering::SeqCst),
        t.pushed.load(Ordering::SeqCst),
        t.gave_up.load(Ordering::SeqCst),
    );
    println!(
        "master RSS: {before} kB before, {peak} kB sampled peak (+{} kB), VmHWM {hwm_before} -> \
         {hwm} kB (+{} kB over the RSS before), {after} kB after; a worker joined {joined_after:?} \
         into the flood",
        peak.saturating_sub(before),
        hwm.saturating_sub(before)
    );
    assert_eq!(t.gave_up.load(Ordering::SeqCst), 0);
    assert_eq!(t.announced.load(Ordering::SeqCst), PEERS);
    // The master keeps none of them; on a loaded machine a few may end by the idle timeout
    // before its close arrives.
    assert_eq!(t.still_open.load(Ordering::SeqCst), 0);
    assert!(t.closed_unauthenticated.load(Ordering::SeqCst) >= PEERS * 9 / 10);
    assert!(
        hwm.saturating_sub(before) < 50 * 1024,
        "the master's peak RSS grew by {} kB",
        hwm.saturating_sub(before)
    );
    assert!(master.proc.stderr().lines().count() < PEERS + 100);
}
