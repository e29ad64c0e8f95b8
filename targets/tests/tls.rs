//! The built-in targets over TLS (HTTP/1.1 and HTTP/2 by ALPN) and h2c, on `127.0.0.1:0`, spoken
//! to by hyper's clients on tokio-rustls that trust only the certificate PEM the target gives
//! out (what `--cert-out` writes). Also: the errors `--cert/--key` give, and graceful shutdown
//! of an HTTP/2 connection.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use stampede_targets::http::{HttpTargetConfig, HttpTargetStats};
use stampede_targets::llm::{Dist, LlmTargetConfig, LlmTargetStats};
use stampede_targets::registry::{RegistryConfig, RegistryStats};
use stampede_targets::tls::{ServerTls, TlsError, Transport};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

const ZIP: &str = "/performance/arnir0_Tiny-LLM/main/model.zip";
const H2: &[u8] = b"h2";
const HTTP1: &[u8] = b"http/1.1";

/// A target serving in the background; stops when dropped.
struct Running {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn bind() -> (TcpListener, SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr, CancellationToken::new())
}

async fn start_http(transport: Transport) -> Running {
    let (listener, addr, stop) = bind().await;
    let config = HttpTargetConfig {
        transport,
        ..HttpTargetConfig::default()
    };
    let task = tokio::spawn(stampede_targets::http::serve(
        listener,
        config,
        Arc::new(HttpTargetStats::new()),
        stop.clone(),
    ));
    Running { addr, stop, task }
}

async fn start_llm(transport: Transport) -> Running {
    let (listener, addr, stop) = bind().await;
    let config = LlmTargetConfig {
        ttft: Dist::Const(Duration::from_millis(5)),
        tpot: Dist::Const(Duration::from_millis(2)),
        transport,
        ..LlmTargetConfig::default()
    };
    let task = tokio::spawn(stampede_targets::llm::serve(
        listener,
        config,
        Arc::new(LlmTargetStats::new()),
        stop.clone(),
    ));
    Running { addr, stop, task }
}

async fn start_registry(transport: Transport) -> Running {
    let (listener, addr, stop) = bind().await;
    let config = RegistryConfig {
        transport,
        ..RegistryConfig::default()
    };
    let task = tokio::spawn(stampede_targets::registry::serve(
        listener,
        config,
        Arc::new(RegistryStats::new()),
        stop.clone(),
    ));
    Running { addr, stop, task }
}

/// A self-signed certificate for the loopback names, and the TLS transport serving it.
fn self_signed() -> (Transport, String) {
    let tls = ServerTls::self_signed(Ipv4Addr::LOCALHOST.into()).unwrap();
    let pem = tls.certificate_pem().to_string();
    (Transport::Tls(Arc::new(tls)), pem)
}

/// A TLS connection to `addr` that trusts only `pem`, checks the certificate for `name` and
/// offers `alpn`.
async fn tls_connect(
    addr: SocketAddr,
    pem: &str,
    name: &str,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// One answer, its body read to the end.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

/// Send one request on a fresh connection `io`, in HTTP/2 (prior knowledge on this transport)
/// or HTTP/1.1.
async fn send<I>(
    io: I,
    h2: bool,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    // HTTP/2 takes the authority from the URI, HTTP/1.1 from `host`.
    let uri = if h2 {
        format!("https://localhost{path}")
    } else {
        path.to_string()
    };
    let mut request = Request::builder().method(method).uri(uri);
    if !h2 {
        request = request.header("host", "localhost");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    };
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn get<I>(io: I, h2: bool, path: &str) -> Reply
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    send(io, h2, Method::GET, path, &[], "").await
}

fn alpn_of(stream: &TlsStream<TcpStream>) -> Option<&[u8]> {
    stream.get_ref().1.alpn_protocol()
}

#[tokio::test]
async fn http_target_speaks_h1_and_h2_over_tls() {
    let (transport, pem) = self_signed();
    let target = start_http(transport).await;

    let io = tls_connect(target.addr, &pem, "localhost", &[HTTP1])
        .await
        .unwrap();
    assert_eq!(alpn_of(&io), Some(HTTP1));
    let reply = get(io, false, "/any").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.version, Version::HTTP_11);
    assert_eq!(reply.body.len(), 1024);

    let io = tls_connect(target.addr, &pem, "localhost", &[H2, HTTP1])
        .await
        .unwrap();
    assert_eq!(alpn_of(&io), Some(H2));
    let reply = get(io, true, "/bytes/100000").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.body.len(), 100_000);
    assert!(reply.body.iter().all(|&b| b == 0));
}

#[tokio::test]
async fn http_target_h2c_takes_prior_knowledge_and_h1_on_one_port() {
    let target = start_http(Transport::H2c).await;
    let tcp = TcpStream::connect(target.addr).await.unwrap();
    let reply = get(tcp, true, "/status/203").await;
    assert_eq!(reply.status, StatusCode::NON_AUTHORITATIVE_INFORMATION);
    assert_eq!(reply.version, Version::HTTP_2);

    let tcp = TcpStream::connect(target.addr).await.unwrap();
    let reply = get(tcp, false, "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.version, Version::HTTP_11);
    assert_eq!(reply.body.len(), 1024);
}

#[tokio::test]
async fn plain_http_target_does_not_speak_h2c() {
    let target = start_http(Transport::Http1).await;
    let tcp = TcpStream::connect(target.addr).await.unwrap();
    let io = TokioIo::new(tcp);
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::get("http://localhost/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert!(sender.send_request(request).await.is_err());
}

#[tokio::test]
async fn llm_target_streams_over_h2_and_over_tls_h1() {
    let (transport, pem) = self_signed();
    let target = start_llm(transport).await;
    let body = r#"{"model":"stampede-sim","prompt":"one two","max_tokens":4,"ignore_eos":true,"stream":true}"#;
    for (alpn, h2) in [(&[H2, HTTP1][..], true), (&[HTTP1][..], false)] {
        let io = tls_connect(target.addr, &pem, "127.0.0.1", alpn)
            .await
            .unwrap();
        let json = [("content-type", "application/json")];
        let reply = send(io, h2, Method::POST, "/v1/completions", &json, body).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(
            reply.version,
            if h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            }
        );
        assert_eq!(
            reply.headers.get("content-type").unwrap(),
            "text/event-stream; charset=utf-8"
        );
        let text = std::str::from_utf8(&reply.body).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        // Four token chunks, then `[DONE]`.
        assert_eq!(events.len(), 5, "{text}");
        assert_eq!(events[4], "data: [DONE]");
    }
}

#[tokio::test]
async fn registry_serves_a_range_of_model_zip_over_tls_in_h2_and_http1_by_alpn() {
    let (transport, pem) = self_signed();
    let target = start_registry(transport).await;
    let mut expected = vec![0; 70_000];
    stampede_targets::registry::fill(1000, &mut expected);
    for (alpn, h2) in [(&[H2, HTTP1][..], true), (&[HTTP1][..], false)] {
        let io = tls_connect(target.addr, &pem, "localhost", alpn)
            .await
            .unwrap();
        assert_eq!(alpn_of(&io), Some(if h2 { H2 } else { HTTP1 }));
        let reply = send(
            io,
            h2,
            Method::GET,
            ZIP,
            &[("range", "bytes=1000-70999")],
            "",
        )
        .await;
        assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT);
        let version = if h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        assert_eq!(reply.version, version);
        assert_eq!(
            reply.headers.get("content-range").unwrap(),
            &format!(
                "bytes 1000-70999/{}",
                stampede_targets::registry::TINY_LLM_BYTES
            )
        );
        assert_eq!(reply.body, expected, "h2: {h2}");
    }
}

/// `--h2c`: HTTP/1.1 and HTTP/2 with prior knowledge on one port, told apart by the first
/// bytes; over HTTP/2 the routes, HEAD, 404 and 416 answer as over HTTP/1.1, and the counters
/// (read over HTTP/2 too) count them.
#[tokio::test]
async fn registry_h2c_serves_the_routes_beside_http1() {
    let target = start_registry(Transport::H2c).await;
    let tcp = TcpStream::connect(target.addr).await.unwrap();
    let reply = get(tcp, false, "/health").await;
    assert_eq!(
        (reply.status, reply.version),
        (StatusCode::OK, Version::HTTP_11)
    );
    assert_eq!(reply.body, "{\"status\":\"ok\"}");

    let h2 = |method: Method, path: &'static str, headers: &'static [(&str, &str)]| async move {
        let tcp = TcpStream::connect(target.addr).await.unwrap();
        send(tcp, true, method, path, headers, "").await
    };
    let reply = h2(
        Method::GET,
        "/performance/arnir0_Tiny-LLM/main/config.json",
        &[],
    )
    .await;
    assert_eq!(
        (reply.status, reply.version),
        (StatusCode::OK, Version::HTTP_2)
    );
    assert_eq!(reply.headers["content-type"], "application/json");
    assert!(
        std::str::from_utf8(&reply.body)
            .unwrap()
            .contains("\"_name_or_path\": \"arnir0/Tiny-LLM\""),
        "{:?}",
        reply.body
    );
    let config_len = reply.body.len() as u64;

    let reply = h2(Method::HEAD, ZIP, &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.headers["content-length"],
        stampede_targets::registry::TINY_LLM_BYTES
            .to_string()
            .as_str()
    );
    assert!(reply.body.is_empty());
    let reply = h2(
        Method::GET,
        "/performance/nobody_Missing/main/model.zip",
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    let reply = h2(Method::GET, ZIP, &[("range", "bytes=99999999-")]).await;
    assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let reply = h2(Method::GET, ZIP, &[("range", "bytes=-10")]).await;
    assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT);
    let mut last = vec![0; 10];
    stampede_targets::registry::fill(stampede_targets::registry::TINY_LLM_BYTES - 10, &mut last);
    assert_eq!(reply.body, last);

    let stats = h2(Method::GET, "/__stampede/stats", &[]).await;
    let stats: serde_json::Value = serde_json::from_slice(&stats.body).unwrap();
    assert_eq!(stats["requests"], 6, "{stats}");
    assert_eq!(stats["not_found"], 1, "{stats}");
    assert_eq!(stats["partial"], 1, "{stats}");
    assert_eq!(stats["bytes"], config_len + 10, "{stats}");
}

/// One request on an `h2` crate connection: the status, and the body read (or the error that
/// ended it, with the bytes read before).
async fn h2_get(
    send: &mut h2::client::SendRequest<Bytes>,
    path: &str,
) -> (StatusCode, Result<Vec<u8>, (Vec<u8>, h2::Error)>) {
    let request = Request::get(format!("http://localhost{path}"))
        .body(())
        .unwrap();
    let mut send = send.clone().ready().await.unwrap();
    let (response, _) = send.send_request(request, true).unwrap();
    let (head, mut body) = response.await.unwrap().into_parts();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(c) => {
                let _ = body.flow_control().release_capacity(c.len());
                got.extend_from_slice(&c);
            }
            Err(e) => return (head.status, Err((got, e))),
        }
    }
    (head.status, Ok(got))
}

/// On HTTP/2 a fault cuts one stream, not the connection: `truncate_at` ends the stream short
/// of its content-length (the client's h2 refuses it, having received every byte before the
/// cut), `reset_at` resets it with INTERNAL_ERROR; the next request on the same connection is
/// answered whole.
#[tokio::test]
async fn registry_http2_faults_cut_the_stream_not_the_connection() {
    let target = start_registry(Transport::H2c).await;
    let tcp = TcpStream::connect(target.addr).await.unwrap();
    let (mut send, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(connection);

    let (status, body) = h2_get(&mut send, &format!("{ZIP}?truncate_at=100000")).await;
    assert_eq!(status, StatusCode::OK);
    let (got, e) = body.unwrap_err();
    assert_eq!(got.len(), 100_000, "the bytes before the cut arrive");
    assert!(e.is_reset() && e.is_library(), "{e:?}");
    assert_eq!(e.reason(), Some(h2::Reason::PROTOCOL_ERROR), "{e:?}");
    let mut want = vec![0; 100_000];
    stampede_targets::registry::fill(0, &mut want);
    assert_eq!(got, want);

    let (_, body) = h2_get(&mut send, &format!("{ZIP}?reset_at=5000")).await;
    let (got, e) = body.unwrap_err();
    assert!(got.len() <= 5000, "{}", got.len());
    assert!(e.is_reset() && e.is_remote(), "{e:?}");
    assert_eq!(e.reason(), Some(h2::Reason::INTERNAL_ERROR), "{e:?}");

    let (status, body) = h2_get(&mut send, "/__stampede/stats").await;
    assert_eq!(status, StatusCode::OK);
    let stats: serde_json::Value = serde_json::from_slice(&body.unwrap()).unwrap();
    assert_eq!(stats["faults"], 2, "{stats}");
    assert!(
        !connection.is_finished(),
        "the connection outlived the faults"
    );
}

#[tokio::test]
async fn the_written_pem_validates_the_self_signed_certificate_by_name() {
    let (transport, pem) = self_signed();
    // As `--cert-out` does: the PEM goes through a file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("target.pem");
    std::fs::write(&file, &pem).unwrap();
    let pem = std::fs::read_to_string(&file).unwrap();
    let target = start_http(transport).await;
    for name in ["localhost", "127.0.0.1", "::1"] {
        let io = tls_connect(target.addr, &pem, name, &[HTTP1])
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(get(io, false, "/").await.status, StatusCode::OK);
    }
    // A name it was not made for is refused by the client.
    assert!(
        tls_connect(target.addr, &pem, "example.com", &[HTTP1])
            .await
            .is_err()
    );
    // And so is a certificate the client was not told to trust.
    let (_, other) = self_signed();
    assert!(
        tls_connect(target.addr, &other, "localhost", &[HTTP1])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn cert_and_key_files_serve_or_fail_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_file = write("cert.pem", &cert.pem());
    let key_file = write("key.pem", &key.serialize_pem());
    let other_key = write(
        "other.pem",
        &rcgen::KeyPair::generate().unwrap().serialize_pem(),
    );
    let garbage = write("garbage.pem", "not a pem file\n");

    let err = ServerTls::from_pem_files(&cert_file, &other_key).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("other.pem") && message.contains("cert.pem") && !message.contains('\n'),
        "{message}"
    );

    let err = ServerTls::from_pem_files(&cert_file, &garbage).unwrap_err();
    assert!(matches!(err, TlsError::NotPemKey { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("garbage.pem is not a PEM private key")
    );

    let err = ServerTls::from_pem_files(&garbage, &key_file).unwrap_err();
    assert!(matches!(err, TlsError::NotPemCertificate { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("garbage.pem is not a PEM certificate")
    );

    let err = ServerTls::from_pem_files(&dir.path().join("missing.pem"), &key_file).unwrap_err();
    assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.pem"));

    // The matching pair serves, and the certificate PEM is the file's.
    let tls = ServerTls::from_pem_files(&cert_file, &key_file).unwrap();
    assert_eq!(tls.certificate_pem(), cert.pem());
    let target = start_http(Transport::Tls(Arc::new(tls))).await;
    let io = tls_connect(target.addr, &cert.pem(), "localhost", &[H2])
        .await
        .unwrap();
    assert_eq!(get(io, true, "/").await.status, StatusCode::OK);
}

#[tokio::test]
async fn shutdown_lets_an_h2_request_in_flight_finish() {
    let (transport, pem) = self_signed();
    let mut target = start_http(transport).await;
    let io = tls_connect(target.addr, &pem, "localhost", &[H2])
        .await
        .unwrap();
    let slow = tokio::spawn(get(io, true, "/?delay_ms=300"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    target.stop.cancel();
    let reply = slow.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body.len(), 1024);
    // The server returns within the grace period, not held open by the h2 connection.
    tokio::time::timeout(Duration::from_secs(3), &mut target.task)
        .await
        .expect("server stopped")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_silent_or_plaintext_client_does_not_stop_the_tls_target() {
    let (transport, pem) = self_signed();
    let target = start_http(transport).await;
    // One connects and says nothing; one speaks plaintext HTTP to the TLS port.
    let _silent = TcpStream::connect(target.addr).await.unwrap();
    let plain = TcpStream::connect(target.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(plain))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = Request::get("/")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert!(sender.send_request(request).await.is_err());
    // Others are still served.
    let io = tls_connect(target.addr, &pem, "localhost", &[H2])
        .await
        .unwrap();
    assert_eq!(get(io, true, "/").await.status, StatusCode::OK);
}
