//! The download driver against raw servers on 127.0.0.1:0 that answer exactly as each case
//! needs: whole bodies (counted and hashed), a body far larger than the buffer, 404, a body cut
//! short by a clean close, a connection reset mid-body, a wrong checksum; and the same over
//! HTTP/2 (h2c, the `h2` crate's server), where a short body is a stream ended early and a
//! reset is a stream's.

use std::time::Instant;

use bytes::Bytes;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::recorder::NameInterval;
use crate::{Overrides, ScenarioConfig};

/// Deterministic body bytes: byte `i` of the body.
fn byte(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

fn digest(len: u64) -> String {
    let mut h = Sha256::new();
    let mut buf = Vec::with_capacity(1 << 16);
    let mut at = 0;
    while at < len {
        buf.clear();
        let n = (len - at).min(1 << 16);
        buf.extend((at..at + n).map(byte));
        h.update(&buf);
        at += n;
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// How the test server answers each request.
#[derive(Clone, Copy)]
enum Answer {
    /// 200 with `len` body bytes, keep-alive.
    Body(u64),
    /// 404 with a small JSON body.
    NotFound,
    /// Content-Length `len`, then only `sent` bytes and a clean close.
    Short { len: u64, sent: u64 },
    /// Content-Length `len`, then `sent` bytes and a reset.
    Reset { len: u64, sent: u64 },
}

/// A server answering every request on every connection with `answer`; returns its URL.
async fn server(answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut req = vec![0u8; 4096];
                loop {
                    let mut got = 0;
                    while !req[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut req[got..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got += n,
                        }
                    }
                    let (status, len, sent) = match answer {
                        Answer::Body(n) => (200, n, n),
                        Answer::NotFound => (404, 22, 22),
                        Answer::Short { len, sent } | Answer::Reset { len, sent } => {
                            (200, len, sent)
                        }
                    };
                    let head = format!("HTTP/1.1 {status} X\r\ncontent-length: {len}\r\n\r\n");
                    s.write_all(head.as_bytes()).await.unwrap();
                    if let Answer::NotFound = answer {
                        s.write_all(b"{\"detail\":\"Not Found\"}").await.unwrap();
                        continue;
                    }
                    let mut at = 0;
                    let mut block = vec![0u8; 1 << 16];
                    while at < sent {
                        let n = (sent - at).min(1 << 16) as usize;
                        for (k, b) in block[..n].iter_mut().enumerate() {
                            *b = byte(at + k as u64);
                        }
                        if s.write_all(&block[..n]).await.is_err() {
                            return;
                        }
                        at += n as u64;
                    }
                    match answer {
                        Answer::Short { .. } => return,
                        Answer::Reset { .. } => {
                            s.flush().await.unwrap();
                            #[allow(deprecated)]
                            s.set_linger(Some(std::time::Duration::ZERO)).unwrap();
                            return;
                        }
                        _ => {}
                    }
                }
            });
        }
    });
    url
}

fn scenario(url: &str, download: &str) -> ScenarioConfig {
    let text = format!(
        "name = \"d\"\ntarget = \"{url}\"\nkind = \"download\"\nduration = \"20s\"\n\
         [load]\nmodel = \"simultaneous\"\nusers = 1\n[download]\n{download}\n"
    );
    ScenarioConfig::parse(&text, "d.toml", &Overrides::default()).unwrap()
}

/// Run `calls` downloads on one session; the interval of the only request name.
async fn run(config: &ScenarioConfig, calls: usize) -> NameInterval {
    let driver = DownloadDriver::new(&config.common(), config.file.download.as_ref()).unwrap();
    let rec = Recorder::for_driver(vec!["d".into()], &driver, 1);
    let mut session = driver.session();
    let mut rng = SmallRng::seed_from_u64(1);
    for _ in 0..calls {
        session
            .call(Call {
                rng: &mut rng,
                recorder: &rec,
                scheduled: Instant::now(),
                elapsed: std::time::Duration::ZERO,
                request: None,
            })
            .await;
    }
    rec.take().names.remove(0)
}

#[tokio::test]
async fn whole_bodies_are_counted_hashed_and_timed_on_one_connection() {
    let len = 1_000_003;
    let url = server(Answer::Body(len)).await;
    let config = scenario(
        &url,
        &format!(
            "path = \"/x\"\nsha256 = \"{}\"\nexpected_bytes = {len}",
            digest(len)
        ),
    );
    let n = run(&config, 3).await;
    assert_eq!((n.requests, n.failures, n.bytes), (3, 0, 3 * len), "{n:?}");
    assert_eq!(
        n.hists[1].as_ref().map(|h| h.len()),
        Some(3),
        "ttfb per download"
    );
    let tp = n.hists[2].as_ref().expect("client throughput");
    assert_eq!(tp.len(), 3);
    assert!(tp.min() > 0);
}

/// A body 64 times the read buffer streams through it: exact count and digest, nothing held.
#[tokio::test]
async fn a_body_far_larger_than_the_buffer_streams_through_it() {
    let len = 64 * 64 * 1024 + 17;
    let url = server(Answer::Body(len)).await;
    let config = scenario(
        &url,
        &format!(
            "path = \"/big\"\nbuffer = \"64k\"\nsha256 = \"{}\"",
            digest(len)
        ),
    );
    let n = run(&config, 1).await;
    assert_eq!((n.requests, n.failures, n.bytes), (1, 0, len), "{n:?}");
}

#[tokio::test]
async fn bad_answers_are_failures_of_their_kind_with_the_bytes_received() {
    let len = 300_000;
    let cases = [
        (Answer::NotFound, "HTTP 404", 22),
        (Answer::Short { len, sent: 100_000 }, "short body", 100_000),
        (
            Answer::Reset { len, sent: 200_000 },
            "io: connection reset",
            0,
        ),
        (Answer::Body(len), "checksum mismatch", len),
    ];
    for (answer, kind, bytes) in cases {
        let url = server(answer).await;
        let config = scenario(&url, &format!("sha256 = \"{}\"", "ab".repeat(32)));
        let n = run(&config, 1).await;
        assert_eq!((n.requests, n.failures), (1, 1), "{kind}: {n:?}");
        assert_eq!(n.failure_kinds, vec![(kind.to_string(), 1)], "{n:?}");
        if kind == "io: connection reset" {
            // The reset may discard data still in flight; what arrived is counted.
            assert!(n.bytes <= 200_000, "{n:?}");
        } else {
            assert_eq!(n.bytes, bytes, "{kind}: {n:?}");
        }
        assert!(n.hists[2].is_none(), "no throughput for a failed download");
    }
}

/// An HTTP/2 (h2c) server answering every request on every connection with `answer` (`Short`:
/// the stream ends after `sent` bytes; `Reset`: RST_STREAM INTERNAL_ERROR after them); its URL
/// and the connections it accepted.
async fn h2_server(answer: Answer) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    tokio::spawn(async move {
                        let (status, len, sent) = match answer {
                            Answer::Body(n) => (200, n, n),
                            Answer::NotFound => (404, 22, 22),
                            Answer::Short { len, sent } | Answer::Reset { len, sent } => {
                                (200, len, sent)
                            }
                        };
                        let head = http::Response::builder()
                            .status(status)
                            .header("content-length", len)
                            .body(())
                            .unwrap();
                        let mut body = respond.send_response(head, false).unwrap();
                        let mut at = 0;
                        while at < sent {
                            let n = (sent - at).min(1 << 14);
                            body.reserve_capacity(n as usize);
                            let Some(Ok(cap)) =
                                std::future::poll_fn(|cx| body.poll_capacity(cx)).await
                            else {
                                return;
                            };
                            let n = n.min(cap as u64);
                            let chunk: Vec<u8> = (at..at + n).map(byte).collect();
                            at += n;
                            let end = at == len;
                            if body.send_data(Bytes::from(chunk), end).is_err() {
                                return;
                            }
                        }
                        match answer {
                            Answer::Short { .. } => {
                                let _ = body.send_data(Bytes::new(), true);
                            }
                            Answer::Reset { .. } => body.send_reset(h2::Reason::INTERNAL_ERROR),
                            _ if sent == 0 => {
                                let _ = body.send_data(Bytes::new(), true);
                            }
                            _ => {}
                        }
                    });
                }
            });
        }
    });
    (url, accepted)
}

/// `version = "2"` on `http://` (h2c): whole bodies counted, hashed and timed as over
/// HTTP/1.1, the session's downloads all on one connection (one counted new, the others
/// reused).
#[tokio::test]
async fn http2_bodies_are_counted_hashed_and_timed_on_one_connection() {
    let len = 1_000_003;
    let (url, accepted) = h2_server(Answer::Body(len)).await;
    let config = scenario(
        &url,
        &format!(
            "path = \"/x\"\nsha256 = \"{}\"\nexpected_bytes = {len}\n[http]\nversion = \"2\"",
            digest(len)
        ),
    );
    let n = run(&config, 3).await;
    assert_eq!((n.requests, n.failures, n.bytes), (3, 0, 3 * len), "{n:?}");
    assert_eq!(n.hists[1].as_ref().map(|h| h.len()), Some(3), "ttfb");
    assert_eq!(n.hists[2].as_ref().map(|h| h.len()), Some(3), "throughput");
    assert_eq!(n.hists[3].as_ref().map(|h| h.len()), Some(1), "one connect");
    // connections_new, connections_reused.
    assert_eq!(&n.counters[..2], &[1, 2], "{n:?}");
    assert_eq!(accepted.load(std::sync::atomic::Ordering::Relaxed), 1);
}

/// Over HTTP/2 a stream ended before its content-length is a short body, a reset stream is
/// named by its reason, and the bytes that arrived are counted.
#[tokio::test]
async fn http2_bad_answers_are_failures_of_their_kind() {
    let len = 300_000;
    let cases = [
        (Answer::NotFound, "HTTP 404"),
        (Answer::Short { len, sent: 100_000 }, "short body"),
        (
            Answer::Reset { len, sent: 200_000 },
            "http2: stream reset (INTERNAL_ERROR)",
        ),
        (Answer::Body(len), "checksum mismatch"),
    ];
    for (answer, kind) in cases {
        let (url, _) = h2_server(answer).await;
        let config = scenario(
            &url,
            &format!("sha256 = \"{}\"\n[http]\nversion = \"2\"", "ab".repeat(32)),
        );
        let n = run(&config, 1).await;
        assert_eq!((n.requests, n.failures), (1, 1), "{kind}: {n:?}");
        assert_eq!(n.failure_kinds, vec![(kind.to_string(), 1)], "{n:?}");
        match answer {
            Answer::Short { sent, .. } => assert_eq!(n.bytes, sent, "{n:?}"),
            Answer::Reset { sent, .. } => assert!(n.bytes <= sent, "{n:?}"),
            Answer::NotFound => assert_eq!(n.bytes, 22, "{n:?}"),
            Answer::Body(len) => assert_eq!(n.bytes, len, "{n:?}"),
        }
        assert!(n.hists[2].is_none(), "no throughput for a failed download");
    }
}

#[test]
fn paths_are_filled_in_and_checked() {
    let d = DownloadFile::default();
    assert_eq!(
        resolve_path(&d),
        "/performance/arnir0_Tiny-LLM/main/model.zip"
    );
    assert_eq!(sanitize_model_id("arnir0/Tiny-LLM"), "arnir0_Tiny-LLM");
    let parse = |download: &str| {
        ScenarioConfig::parse(
            &format!(
                "name = \"d\"\ntarget = \"http://h:1\"\nkind = \"download\"\n[load]\n\
                 model = \"simultaneous\"\n[download]\n{download}\n"
            ),
            "d.toml",
            &Overrides::default(),
        )
    };
    let ok = parse("model_id = \"org/m-1.5\"").unwrap();
    assert_eq!(
        catalog(ok.file.download.as_ref())[0].name,
        "GET /performance/org_m-1.5/main/model.zip"
    );
    assert_eq!(
        ok.load,
        crate::LoadModel::Simultaneous {
            users: 100,
            mode: crate::UserMode::Once
        }
    );
    assert_eq!(
        ok.request_timeout(),
        ok.duration,
        "timeout defaults to the duration"
    );
    for (bad, field) in [
        ("model_id = \"a b\"", "download.model_id"),
        ("path = \"/{org}/x\"", "download.path"),
        ("sha256 = \"xyz\"", "download.sha256"),
        ("buffer = 10", "download.buffer"),
    ] {
        let e = parse(bad).unwrap_err();
        assert_eq!(e.field.as_deref(), Some(field), "{bad}: {e}");
        assert!(e.line.is_some(), "{e}");
    }
}
