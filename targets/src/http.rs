//! HTTP target server: the thing load tests point at in demos, tests and benchmarks.
//!
//! Callers start it with [`serve`] on a listener they bound (port 0 in tests) and stop it with a
//! `CancellationToken`. Every request gets a pre-built static body, optionally delayed or swapped
//! for an injected error; per-request overrides live in the path and query string. It speaks
//! plaintext HTTP/1.1 unless its [`Transport`] says TLS (HTTP/2 by ALPN) or h2c. It deliberately
//! has no router or per-request logging: it must stay cheaper than the load hitting it.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::ensure;
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::accept::HyperServer;
use crate::tls::Transport;

/// Largest body `/bytes/{n}` will send; bigger requests are capped rather than refused so a typo
/// in a scenario degrades into a big response instead of a failed run.
pub const MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Path prefix of the target's own endpoints. Requests under it are never counted, so reading the
/// stats does not disturb them.
pub const CONTROL_PREFIX: &str = "/__stampede/";

/// Size of the shared zero chunk `/bytes/{n}` is streamed from: big enough for few frames, small
/// enough that a 64 MiB answer never sits in memory.
const ZERO_CHUNK: usize = 64 * 1024;

/// Backing store for `/bytes/{n}`; a static so streaming it costs no allocation at all.
static ZEROS: [u8; ZERO_CHUNK] = [0; ZERO_CHUNK];

/// How the target behaves for every load request; per-request overrides come on top.
#[derive(Debug, Clone)]
pub struct HttpTargetConfig {
    /// Bytes of the 200 body. Built once at startup and shared by every response, so response
    /// size can be tuned without costing the target per-request work.
    pub body_size: usize,
    /// Fixed delay before answering, to emulate a backend with known service time.
    pub delay: Duration,
    /// Extra uniform random delay in `0..jitter`, so latency histograms have a spread to show.
    pub jitter: Duration,
    /// Probability in `0.0..=1.0` that a load request is answered with `error_status` instead,
    /// so error accounting can be exercised against a known rate.
    pub error_rate: f64,
    /// Status of injected errors; must be a final (non-1xx) HTTP status.
    pub error_status: u16,
    /// Plaintext HTTP/1.1 (the default), h2c alongside it, or TLS with HTTP/2 by ALPN.
    pub transport: Transport,
}

impl Default for HttpTargetConfig {
    fn default() -> Self {
        Self {
            body_size: 1024,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            error_rate: 0.0,
            error_status: 500,
            transport: Transport::Http1,
        }
    }
}

/// Counters the target keeps; cheap atomics, so the caller can hold an `Arc` and read them while
/// the server runs (tests compare them with what the load generator reports).
#[derive(Debug, Default)]
pub struct HttpTargetStats {
    /// Load requests seen, counted on arrival; `/__stampede/` requests are excluded.
    requests: AtomicU64,
    /// Errors injected through `error_rate`. Explicit `/status/{code}` answers are not counted:
    /// the client asked for them.
    errors: AtomicU64,
}

impl HttpTargetStats {
    /// Zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Load requests received so far (excluding the `/__stampede/` endpoints).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Errors injected through `error_rate` so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Zero both counters. Not atomic as a pair: a request racing the reset may land in either
    /// epoch, which is fine for "reset between test phases".
    pub fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
    }
}

/// Serve until `shutdown` is cancelled; returns after in-flight connections are told to finish
/// (graceful, bounded by about one second, after which remaining connections are dropped).
///
/// Any method and path gets `200` with a static body of `config.body_size` bytes after
/// `config.delay` plus up to `config.jitter`, or `config.error_status` with probability
/// `config.error_rate`. Per-request overrides:
///
/// - `/status/{code}` answers `code` with an empty body;
/// - `/bytes/{n}` streams `n` zero bytes (capped at [`MAX_BYTES`]);
/// - query `delay_ms=N` adds `N` milliseconds of delay.
///
/// `GET /__stampede/stats` returns `{"requests": N, "errors": M}` and `POST /__stampede/reset`
/// zeroes the counters; neither is counted. Request bodies are read fully and discarded so
/// keep-alive connections stay usable.
///
/// Fails only on invalid config (`error_rate` outside `0..=1`, `error_status` not a final status).
/// The listener is taken by value so the caller can bind port 0 and read the address first.
pub async fn serve(
    listener: TcpListener,
    config: HttpTargetConfig,
    stats: Arc<HttpTargetStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let transport = config.transport.clone();
    let shared = Arc::new(Shared::from_config(config, stats)?);
    let server = HyperServer {
        name: "target",
        transport: &transport,
        shutdown: &shutdown,
    };
    crate::accept::serve_hyper(listener, server, |stream: TcpStream| {
        let shared = Arc::clone(&shared);
        let service = service_fn(move |request| {
            let shared = Arc::clone(&shared);
            async move { shared.handle(request).await }
        });
        (stream, service)
    })
    .await;
    Ok(())
}

/// Everything a request needs, derived once from the config and shared by all connections.
struct Shared {
    /// The static 200 body; cloning `Bytes` is a reference-count bump, not a copy.
    body: Bytes,
    delay: Duration,
    /// `config.jitter` in nanoseconds, ready for `random_range`; zero disables jitter.
    jitter_nanos: u64,
    error_rate: f64,
    error_status: StatusCode,
    stats: Arc<HttpTargetStats>,
}

/// What a load request asked for through its path.
enum Answer {
    /// The configured static body.
    Static,
    /// `/status/{code}`: that status, empty body.
    Status(StatusCode),
    /// `/bytes/{n}`: `n` zero bytes, streamed.
    Zeros(u64),
}

impl Shared {
    fn from_config(config: HttpTargetConfig, stats: Arc<HttpTargetStats>) -> anyhow::Result<Self> {
        ensure!(
            (0.0..=1.0).contains(&config.error_rate),
            "error_rate must be within 0..=1, got {}",
            config.error_rate
        );
        let Some(error_status) = final_status(config.error_status) else {
            anyhow::bail!(
                "error_status must be a final HTTP status (200-999), got {}",
                config.error_status
            );
        };
        Ok(Self {
            body: Bytes::from(vec![b'x'; config.body_size]),
            delay: config.delay,
            jitter_nanos: u64::try_from(config.jitter.as_nanos()).unwrap_or(u64::MAX),
            error_rate: config.error_rate,
            error_status,
            stats,
        })
    }

    async fn handle(&self, request: Request<Incoming>) -> Result<Response<TargetBody>, Infallible> {
        let (parts, body) = request.into_parts();
        if let Some(endpoint) = parts.uri.path().strip_prefix(CONTROL_PREFIX) {
            // A broken body only matters for keep-alive, which hyper handles by closing.
            let _ = drain(body).await;
            return Ok(self.control(&parts.method, endpoint));
        }

        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        if drain(body).await.is_err() {
            return Ok(text(StatusCode::BAD_REQUEST, "unreadable request body"));
        }
        let (answer, extra_delay) = match (parse_answer(parts.uri.path()), parse_delay(&parts.uri))
        {
            (Ok(answer), Ok(delay)) => (answer, delay),
            (Err(reason), _) | (_, Err(reason)) => {
                return Ok(text(StatusCode::BAD_REQUEST, reason));
            }
        };

        let delay = self
            .delay
            .saturating_add(extra_delay)
            .saturating_add(self.jitter());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }

        if self.error_rate > 0.0 && rand::random_bool(self.error_rate) {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            return Ok(text(self.error_status, "injected error"));
        }
        Ok(match answer {
            Answer::Static => response(
                StatusCode::OK,
                OCTET_STREAM,
                TargetBody::full(self.body.clone()),
            ),
            Answer::Status(status) => response(status, TEXT, TargetBody::empty()),
            Answer::Zeros(len) => response(StatusCode::OK, OCTET_STREAM, TargetBody::zeros(len)),
        })
    }

    /// A random delay in `0..jitter`, or zero without touching the RNG when jitter is off.
    fn jitter(&self) -> Duration {
        if self.jitter_nanos == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(rand::random_range(0..self.jitter_nanos))
        }
    }

    /// Answer a `/__stampede/{endpoint}` request.
    fn control(&self, method: &Method, endpoint: &str) -> Response<TargetBody> {
        match (method, endpoint) {
            (&Method::GET, "stats") => {
                let snapshot = StatsSnapshot {
                    requests: self.stats.requests(),
                    errors: self.stats.errors(),
                };
                match serde_json::to_vec(&snapshot) {
                    Ok(json) => response(StatusCode::OK, JSON, TargetBody::full(Bytes::from(json))),
                    Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "stats encoding failed"),
                }
            }
            (&Method::POST, "reset") => {
                self.stats.reset();
                response(StatusCode::NO_CONTENT, TEXT, TargetBody::empty())
            }
            (_, "stats" | "reset") => {
                let allow = if endpoint == "stats" { "GET" } else { "POST" };
                let mut answer = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
                answer
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(allow));
                answer
            }
            _ => text(StatusCode::NOT_FOUND, "unknown /__stampede/ endpoint"),
        }
    }
}

/// JSON shape of `GET /__stampede/stats`.
#[derive(Serialize)]
struct StatsSnapshot {
    requests: u64,
    errors: u64,
}

/// Read and discard a request body so the connection can serve the next request.
async fn drain(mut body: Incoming) -> Result<(), hyper::Error> {
    while !body.is_end_stream() {
        match body.frame().await {
            Some(frame) => drop(frame?),
            None => break,
        }
    }
    Ok(())
}

/// Parse the path-based overrides.
fn parse_answer(path: &str) -> Result<Answer, &'static str> {
    if let Some(code) = path.strip_prefix("/status/") {
        code.parse()
            .ok()
            .and_then(final_status)
            .map(Answer::Status)
            .ok_or("/status/{code} needs a final HTTP status code (200-999)")
    } else if let Some(len) = path.strip_prefix("/bytes/") {
        len.parse::<u64>()
            .map(|len| Answer::Zeros(len.min(MAX_BYTES)))
            .map_err(|_| "/bytes/{n} needs a whole number of bytes")
    } else {
        Ok(Answer::Static)
    }
}

/// Parse the `delay_ms=N` query parameter; absent means no extra delay.
fn parse_delay(uri: &http::Uri) -> Result<Duration, &'static str> {
    let Some(query) = uri.query() else {
        return Ok(Duration::ZERO);
    };
    match query
        .split('&')
        .find_map(|pair| pair.strip_prefix("delay_ms="))
    {
        Some(ms) => ms
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| "delay_ms needs a whole number of milliseconds"),
        None => Ok(Duration::ZERO),
    }
}

/// A status we may send as the final answer: valid and not informational (1xx would confuse
/// clients waiting for the real response).
fn final_status(code: u16) -> Option<StatusCode> {
    StatusCode::from_u16(code)
        .ok()
        .filter(|status| !status.is_informational())
}

const OCTET_STREAM: &str = "application/octet-stream";
const TEXT: &str = "text/plain";
const JSON: &str = "application/json";

fn text(status: StatusCode, message: &'static str) -> Response<TargetBody> {
    response(
        status,
        TEXT,
        TargetBody::full(Bytes::from_static(message.as_bytes())),
    )
}

/// Build a response; `content_type` is only sent when there is a body to describe.
fn response(
    status: StatusCode,
    content_type: &'static str,
    body: TargetBody,
) -> Response<TargetBody> {
    let has_body = !body.is_end_stream();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if has_body {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

/// Response body: `remaining` bytes served as slices of one shared chunk. Covers the static body
/// (one frame of the whole chunk) and `/bytes/{n}` (repeated slices of [`ZEROS`]) without boxing
/// or copying. Its exact size hint lets hyper send `content-length` instead of chunked encoding.
struct TargetBody {
    /// Never empty while `remaining > 0`; the constructors keep that so every frame makes progress.
    chunk: Bytes,
    remaining: u64,
}

impl TargetBody {
    fn empty() -> Self {
        Self::full(Bytes::new())
    }

    fn full(bytes: Bytes) -> Self {
        Self {
            remaining: bytes.len() as u64,
            chunk: bytes,
        }
    }

    fn zeros(len: u64) -> Self {
        Self {
            chunk: Bytes::from_static(&ZEROS),
            remaining: len,
        }
    }
}

impl Body for TargetBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let take = usize::try_from(this.remaining).map_or(this.chunk.len(), |remaining| {
            remaining.min(this.chunk.len())
        });
        this.remaining -= take as u64;
        Poll::Ready(Some(Ok(Frame::data(this.chunk.slice(..take)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_path_overrides() {
        assert!(matches!(parse_answer("/"), Ok(Answer::Static)));
        assert!(matches!(parse_answer("/anything/else"), Ok(Answer::Static)));
        assert!(matches!(
            parse_answer("/status/503"),
            Ok(Answer::Status(StatusCode::SERVICE_UNAVAILABLE))
        ));
        assert!(parse_answer("/status/101").is_err());
        assert!(parse_answer("/status/abc").is_err());
        assert!(matches!(parse_answer("/bytes/10"), Ok(Answer::Zeros(10))));
        assert!(matches!(
            parse_answer("/bytes/99999999999"),
            Ok(Answer::Zeros(MAX_BYTES))
        ));
        assert!(parse_answer("/bytes/-1").is_err());
    }

    #[test]
    fn parses_delay_query() {
        let delay = |uri: &str| parse_delay(&uri.parse().expect("test URI"));
        assert_eq!(delay("/"), Ok(Duration::ZERO));
        assert_eq!(delay("/?a=1"), Ok(Duration::ZERO));
        assert_eq!(delay("/?a=1&delay_ms=25"), Ok(Duration::from_millis(25)));
        assert!(delay("/?delay_ms=soon").is_err());
    }

    #[test]
    fn zeros_body_streams_in_chunks() {
        let len = 2 * ZERO_CHUNK as u64 + 3;
        let mut body = TargetBody::zeros(len);
        assert_eq!(body.size_hint().exact(), Some(len));
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut sizes = Vec::new();
        while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
            let data = frame.expect("infallible").into_data().expect("data frame");
            assert!(data.iter().all(|&byte| byte == 0));
            sizes.push(data.len());
        }
        assert_eq!(sizes, [ZERO_CHUNK, ZERO_CHUNK, 3]);
        assert!(body.is_end_stream());
    }

    #[test]
    fn rejects_invalid_config() {
        let stats = Arc::new(HttpTargetStats::new());
        let bad_rate = HttpTargetConfig {
            error_rate: 1.5,
            ..HttpTargetConfig::default()
        };
        assert!(Shared::from_config(bad_rate, Arc::clone(&stats)).is_err());
        let nan_rate = HttpTargetConfig {
            error_rate: f64::NAN,
            ..HttpTargetConfig::default()
        };
        assert!(Shared::from_config(nan_rate, Arc::clone(&stats)).is_err());
        let bad_status = HttpTargetConfig {
            error_status: 42,
            ..HttpTargetConfig::default()
        };
        assert!(Shared::from_config(bad_status, stats).is_err());
    }
}
