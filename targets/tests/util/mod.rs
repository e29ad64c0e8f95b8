//! Helpers for the integration tests: start a real target on `127.0.0.1:0` and talk to it with a
//! minimal hyper HTTP/1.1 client, one TCP connection per [`Client`].

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use stampede_targets::http::{HttpTargetConfig, HttpTargetStats, serve};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running target server and the handles a test needs to inspect and stop it.
pub struct Target {
    pub addr: SocketAddr,
    pub stats: Arc<HttpTargetStats>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

/// Bind `127.0.0.1:0` and run [`serve`] with `config` in a background task.
pub async fn start_target(config: HttpTargetConfig) -> Target {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("listener address");
    let stats = Arc::new(HttpTargetStats::new());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(
        listener,
        config,
        Arc::clone(&stats),
        shutdown.clone(),
    ));
    Target {
        addr,
        stats,
        shutdown,
        task,
    }
}

/// A fully read response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// One HTTP/1.1 keep-alive connection; every request on a `Client` reuses it.
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
    /// Resolves when the connection closes, so tests can tell whether the server hung up.
    pub connection: JoinHandle<Result<(), hyper::Error>>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect to target");
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        let connection = tokio::spawn(connection);
        Client { sender, connection }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(Method::GET, path, Bytes::new()).await
    }

    pub async fn send(&mut self, method: Method, path: &str, body: Bytes) -> Reply {
        let response = self.send_head(method, path, body).await;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("read response body").to_bytes();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Send a request and return as soon as the response head arrives, body unread.
    pub async fn send_head(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Response<Incoming> {
        self.try_send(method, path, body)
            .await
            .expect("request on open connection")
    }

    pub async fn try_send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Response<Incoming>, hyper::Error> {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "target")
            .body(Full::new(body))
            .expect("valid test request");
        self.sender.ready().await?;
        self.sender.send_request(request).await
    }
}
