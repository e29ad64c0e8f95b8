//! The simulated model registry on `127.0.0.1:0`, spoken to over raw HTTP/1.1: keep-alive,
//! byte ranges, 404s, faults that cut the body, the bandwidth limit and the counters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::Digest;
use stampede_targets::registry::{
    RegistryConfig, RegistryStats, TINY_LLM_BYTES, TINY_LLM_SHA256, serve,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const ZIP: &str = "/performance/arnir0_Tiny-LLM/main/model.zip";

async fn start(config: RegistryConfig) -> (SocketAddr, Arc<RegistryStats>, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stats = Arc::new(RegistryStats::new());
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, config, stats.clone(), stop.clone()));
    (addr, stats, stop)
}

/// A response read off a keep-alive connection: status, head, body digest and length.
struct Reply {
    status: u16,
    head: String,
    len: u64,
    sha256: String,
    body_prefix: Vec<u8>,
}

/// Send `GET path` with extra header lines and read one response, hashing the body as it comes.
async fn get(conn: &mut TcpStream, path: &str, extra: &str) -> Result<Reply, String> {
    let req = format!("GET {path} HTTP/1.1\r\nhost: r\r\n{extra}\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before the head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let status = head[9..12].parse().unwrap();
    let want: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut hasher = sha2::Sha256::new();
    let mut prefix = buf[end..].to_vec();
    hasher.update(&buf[end..]);
    let mut len = (buf.len() - end) as u64;
    while len < want {
        match conn.read(&mut chunk).await {
            Ok(0) => return Err(format!("closed after {len} of {want} bytes")),
            Ok(n) => {
                let n = n.min((want - len) as usize);
                hasher.update(&chunk[..n]);
                if prefix.len() < 64 {
                    prefix.extend_from_slice(&chunk[..n.min(64)]);
                }
                len += n as u64;
            }
            Err(e) => return Err(format!("{:?} after {len} of {want} bytes", e.kind())),
        }
    }
    Ok(Reply {
        status,
        head,
        len,
        sha256: hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        body_prefix: prefix,
    })
}

#[tokio::test]
async fn serves_tiny_llm_ranges_and_404_on_one_connection() {
    let (addr, stats, stop) = start(RegistryConfig::default()).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    let whole = get(&mut c, ZIP, "").await.unwrap();
    assert_eq!(whole.status, 200, "{}", whole.head);
    assert_eq!(whole.len, TINY_LLM_BYTES);
    assert_eq!(whole.sha256, TINY_LLM_SHA256);
    assert!(
        whole.head.contains("accept-ranges: bytes"),
        "{}",
        whole.head
    );

    let part = get(&mut c, ZIP, "range: bytes=10-19\r\n").await.unwrap();
    assert_eq!(part.status, 206, "{}", part.head);
    assert!(
        part.head
            .contains(&format!("content-range: bytes 10-19/{TINY_LLM_BYTES}")),
        "{}",
        part.head
    );
    assert_eq!(part.len, 10);
    let first = get(&mut c, ZIP, "range: bytes=0-19\r\n").await.unwrap();
    assert_eq!(
        part.body_prefix,
        first.body_prefix[10..20],
        "a range is the same bytes"
    );

    let tail = get(&mut c, ZIP, "range: bytes=-5\r\n").await.unwrap();
    assert_eq!((tail.status, tail.len), (206, 5));
    let beyond = get(&mut c, ZIP, &format!("range: bytes={TINY_LLM_BYTES}-\r\n"))
        .await
        .unwrap();
    assert_eq!(beyond.status, 416, "{}", beyond.head);
    assert!(
        beyond
            .head
            .contains(&format!("content-range: bytes */{TINY_LLM_BYTES}"))
    );

    let missing = get(&mut c, "/performance/nobody_Nothing/main/model.zip", "")
        .await
        .unwrap();
    assert_eq!(missing.status, 404);
    let other = get(
        &mut c,
        "/performance/stampede-sim_model-042/main/model.zip",
        "",
    )
    .await
    .unwrap();
    assert_eq!(other.status, 404, "only Tiny-LLM has a model.zip");
    let config = get(
        &mut c,
        "/performance/stampede-sim_model-042/main/config.json",
        "",
    )
    .await
    .unwrap();
    assert_eq!(config.status, 200);
    let models = get(&mut c, "/models", "").await.unwrap();
    assert_eq!(models.status, 200);

    let counts = stats.counts();
    assert_eq!(counts.requests, 9);
    assert_eq!(counts.not_found, 2);
    assert_eq!(counts.partial, 3);
    assert_eq!(
        counts.bytes,
        TINY_LLM_BYTES + 10 + 20 + 5 + config.len,
        "body bytes of the files (not of 404s or /models)"
    );
    stop.cancel();
}

#[tokio::test]
async fn faults_cut_the_body_where_asked() {
    let (addr, stats, stop) = start(RegistryConfig::default()).await;
    let mut c = TcpStream::connect(addr).await.unwrap();
    let short = get(&mut c, &format!("{ZIP}?truncate_at=100000"), "").await;
    assert_eq!(
        short.err().as_deref(),
        Some(&*format!("closed after 100000 of {TINY_LLM_BYTES} bytes"))
    );
    let mut c = TcpStream::connect(addr).await.unwrap();
    let reset = get(&mut c, &format!("{ZIP}?reset_at=100000"), "").await;
    let err = reset.err().unwrap_or_default();
    assert!(
        err.starts_with("ConnectionReset after"),
        "a reset, not a clean close: {err}"
    );
    assert_eq!(stats.counts().faults, 2);
    stop.cancel();
}

#[tokio::test]
async fn bandwidth_limit_is_shared_by_connections() {
    let rate = 4_000_000.0;
    let (addr, _stats, stop) = start(RegistryConfig {
        bandwidth: Some(rate),
        ..RegistryConfig::default()
    })
    .await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        tasks.push(tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            get(&mut c, ZIP, "range: bytes=0-499999\r\n")
                .await
                .unwrap()
                .len
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 2_000_000);
    // Each block waits for its slot on the shared timeline, so the whole cannot arrive sooner
    // than total / rate (minus the first block, sent at once).
    let floor = Duration::from_secs_f64((total - 64 * 1024) as f64 / rate);
    assert!(
        started.elapsed() >= floor,
        "2 MB at 4 MB/s took {:?}",
        started.elapsed()
    );
    stop.cancel();
}
