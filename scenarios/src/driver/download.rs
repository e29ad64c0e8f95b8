//! The `download` driver: each call fetches one file (by default the ACME performance track's
//! `/performance/{model_id}/{version}/model.zip`) and streams its body into a sink that counts
//! bytes and, when asked, hashes them (SHA-256): a body is never held. Over HTTP/1.1 (one
//! keep-alive connection per client) it goes through one fixed buffer per connection, so 100
//! clients × 24.8 MB cost 100 buffers, not 2.5 GB; over HTTP/2 (`[http] version = "2"`, or
//! `"auto"` when ALPN picks `h2` on `https://`) the clients' streams share a few connections
//! ([`super::h2`]) and each stream holds at most its flow-control window, handed back as each
//! chunk is counted.
//!
//! Records per download: latency (scheduled start → last byte), `ttfb` (→ response head, µs),
//! `client_throughput` (bytes ÷ latency of a successful download, kB/s), bytes, the connection
//! figures ([`super::transport::CONNECTION_METRICS`]), and failures by kind: `HTTP 404`,
//! `short body` (the connection closed, or the HTTP/2 stream ended, before Content-Length
//! bytes), `io: connection reset` (cut mid-body; on HTTP/2 `http2: stream reset (...)`),
//! `timeout`, `checksum mismatch`, `size mismatch`. A `Range` in `[download] headers` is sent
//! as written and its 206 is a success (its bytes checked by `expected_bytes`); redirects are
//! not followed (a 3xx is an answer like any other). Pacing is the engine's: a `simultaneous`
//! load starts every client at one instant.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::connections;
use super::h1::{Framing, H1Conn, H1Error};
use super::h2::{H2Client, H2Conn, H2Pool, Opened};
use super::transport::{ConnectionSlots, Endpoint};
use super::{Call, CallFuture, Driver, DriverError, RequestInfo, Session};
use crate::model::Common;
use crate::recorder::{Failure, Recorder};
use crate::spec::{MetricSpec, Specs};

pub mod report;
pub use report::REPORT;

mod file;

pub use file::DownloadFile;

/// Read buffer per connection unless the scenario says.
pub const DEFAULT_BUFFER: usize = 64 * 1024;
/// Largest read buffer accepted.
pub const MAX_BUFFER: u64 = 16 * 1024 * 1024;

/// The figures of a `download` run: its histograms after latency, the connection metrics
/// ([`super::connections::CONNECTION_METRICS`]) last, and the connection counters.
pub const SPECS: Specs = Specs {
    metrics: &[
        report::TTFB,
        report::CLIENT_THROUGHPUT,
        connections::CONNECT,
        connections::TLS_HANDSHAKE,
    ],
    counters: connections::CONNECTION_COUNTERS,
};
/// Where the connection metrics and counters sit (the driver has no counters of its own).
const SLOTS: ConnectionSlots = ConnectionSlots::after(2, 0);

struct Inner {
    catalog: Vec<RequestInfo>,
    wire: Bytes,
    /// Where to connect, and TLS for `https://`.
    endpoint: Endpoint,
    timeout: Duration,
    buffer: usize,
    sha256: Option<[u8; 32]>,
    expected_bytes: Option<u64>,
    /// The HTTP/2 connections and the request's HTTP/2 head; `None` for HTTP/1.1 only
    /// (`version = "1.1"`, and `"auto"` on `http://`).
    h2: Option<(Arc<H2Pool>, http::Request<()>)>,
}

/// The download driver of one run.
pub struct DownloadDriver {
    inner: Arc<Inner>,
}

/// The model id as the ACME performance track puts it in paths: `arnir0/Tiny-LLM` →
/// `arnir0_Tiny-LLM`.
pub fn sanitize_model_id(model_id: &str) -> String {
    model_id.replace('/', "_")
}

/// The path with `{model_id}` (sanitized) and `{version}` filled in.
pub fn resolve_path(d: &DownloadFile) -> String {
    d.path
        .replace("{model_id}", &sanitize_model_id(&d.model_id))
        .replace("{version}", &d.version)
}

/// The per-download timeout of a download scenario: its own, else the run's `duration`.
pub fn timeout(download: Option<&DownloadFile>, duration: Duration) -> Duration {
    download.and_then(|d| d.timeout).map_or(duration, |t| t.0)
}

impl DownloadDriver {
    /// Prepare the request of `[download]`. The target must be a URL.
    pub fn new(
        common: &Common,
        download: Option<&DownloadFile>,
    ) -> Result<DownloadDriver, DriverError> {
        let base = super::base_url(common.target)?;
        let d = settings(download);
        let authority = base
            .authority()
            .ok_or_else(|| DriverError::Invalid(format!("target `{base}` has no host")))?;
        let http = common.http.cloned().unwrap_or_default();
        let secure = base.scheme_str() == Some("https");
        let negotiation = super::h2::negotiation(http.version.unwrap_or_default(), secure);
        // HTTP/2 offers http/1.1 too, so that a server without h2 still completes the handshake
        // and the failure (under `version = "2"`) names ALPN, not a TLS alert.
        let alpn = match negotiation {
            None => crate::tls::Alpn::Http1,
            Some(_) => crate::tls::Alpn::Any,
        };
        let endpoint = Endpoint::of(&base, common.tls, alpn)?;
        let path = format!("{}{}", base.path().trim_end_matches('/'), resolve_path(&d));
        let mut wire = format!("GET {path} HTTP/1.1\r\nhost: {authority}\r\n");
        for (k, v) in &d.headers {
            wire.push_str(&format!("{k}: {v}\r\n"));
        }
        wire.push_str("\r\n");
        let h2 = match negotiation {
            None => None,
            Some(negotiation) => {
                let mut headers = http::HeaderMap::new();
                for (k, v) in &d.headers {
                    let name = http::header::HeaderName::from_bytes(k.as_bytes());
                    let value = http::header::HeaderValue::from_str(v);
                    let (Ok(name), Ok(value)) = (name, value) else {
                        return Err(DriverError::Invalid(format!(
                            "download.headers: `{k}: {v}` is not a valid header"
                        )));
                    };
                    headers.append(name, value);
                }
                let scheme = base.scheme_str().unwrap_or("http");
                let uri = format!("{scheme}://{authority}{path}");
                let head = super::h2::request_head(&http::Method::GET, &uri, &headers)?;
                let connections = http.connections.map(|c| c.0 as usize);
                let pool = H2Pool::new(endpoint.clone(), negotiation, connections, false);
                Some((Arc::new(pool), head))
            }
        };
        let sha256 = match &d.sha256 {
            Some(hex) => Some(parse_sha256(hex).map_err(DriverError::Invalid)?),
            None => None,
        };
        Ok(DownloadDriver {
            inner: Arc::new(Inner {
                catalog: catalog(download),
                wire: Bytes::from(wire),
                endpoint,
                timeout: timeout(download, common.duration),
                buffer: d.buffer.map_or(DEFAULT_BUFFER, |b| b.0 as usize),
                sha256,
                expected_bytes: d.expected_bytes.map(|b| b.0),
                h2,
            }),
        })
    }
}

impl Driver for DownloadDriver {
    fn requests(&self) -> &[RequestInfo] {
        &self.inner.catalog
    }

    fn metrics(&self) -> &'static [MetricSpec] {
        SPECS.metrics
    }

    fn counters(&self) -> &'static [MetricSpec] {
        SPECS.counters
    }

    fn session(&self) -> Box<dyn Session> {
        Box::new(DownloadSession {
            inner: self.inner.clone(),
            conn: None,
            h2: self.inner.h2.as_ref().map(|(pool, _)| pool.client()),
            http1: false,
        })
    }
}

struct DownloadSession {
    inner: Arc<Inner>,
    conn: Option<H1Conn>,
    /// The session's way to the HTTP/2 connections, when the driver has them.
    h2: Option<H2Client>,
    /// `auto` found a server without h2: this session speaks HTTP/1.1 on `conn`.
    http1: bool,
}

/// How far a download got.
struct Progress {
    bytes: u64,
    ttfb: Option<Duration>,
}

impl Session for DownloadSession {
    fn call<'a>(&'a mut self, call: Call<'a>) -> CallFuture<'a> {
        Box::pin(async move {
            let mut progress = Progress {
                bytes: 0,
                ttfb: None,
            };
            let deadline = tokio::time::Instant::from_std(call.scheduled + self.inner.timeout);
            let outcome = match tokio::time::timeout_at(
                deadline,
                self.download(call.scheduled, &mut progress, call.recorder),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(Failure::Timeout),
            };
            let latency = call.scheduled.elapsed();
            if matches!(&outcome, Err(f) if !f.is_status()) {
                // After a timeout, a cut or a bad body the connection's state is unknown. (An
                // HTTP/2 stream's failure is its own: the shared connection is the pool's to
                // replace once it is closed.)
                self.conn = None;
            }
            if matches!(&outcome, Err(f) if f.is_timeout())
                && let Some(client) = &mut self.h2
            {
                // The stream was reset by dropping it; the connection may be stuck.
                client.forget();
            }
            record(call.recorder, latency, &progress, outcome);
        })
    }
}

fn record(rec: &Recorder, latency: Duration, p: &Progress, outcome: Result<(), Failure>) {
    if let Some(t) = p.ttfb {
        rec.sample(0, 1, t.as_micros() as u64);
    }
    if outcome.is_ok() {
        let secs = latency.as_secs_f64().max(1e-6);
        rec.sample(0, 2, (p.bytes as f64 / secs / 1000.0).round() as u64);
    }
    rec.request(0, latency, p.bytes, outcome.err());
}

impl DownloadSession {
    /// Fetch the file once, streaming the body through the connection's buffer.
    async fn download(
        &mut self,
        scheduled: Instant,
        p: &mut Progress,
        rec: &Recorder,
    ) -> Result<(), Failure> {
        let inner = &self.inner;
        if let (Some(client), Some((_, head)), false) = (&mut self.h2, &inner.h2, self.http1) {
            match client.connection().await {
                Ok((conn, times)) => {
                    match times {
                        Some(t) => SLOTS.opened(rec, 0, &t),
                        None => rec.count(0, SLOTS.reused(), 1),
                    }
                    return download_h2(inner, conn, head.clone(), scheduled, p).await;
                }
                Err(Opened::Failed(f)) => return Err(f),
                Err(Opened::Http1(connected)) => {
                    // `auto`, and the server's ALPN chose HTTP/1.1: this session speaks it.
                    self.http1 = true;
                    SLOTS.opened(rec, 0, &connected.times);
                    self.conn = Some(H1Conn::over_buffered(connected.io, inner.buffer));
                }
            }
        } else if self.conn.as_mut().is_some_and(|c| c.is_reusable()) {
            rec.count(0, SLOTS.reused(), 1);
        } else {
            let (c, times) = H1Conn::open(&inner.endpoint, inner.buffer).await?;
            SLOTS.opened(rec, 0, &times);
            self.conn = Some(c);
        }
        // The invariant: set just above unless a reusable one was there.
        let conn = self.conn.as_mut().expect("connection present");
        conn.send(&inner.wire).await.map_err(|e| e.failure())?;
        let head = conn.read_head(false).await.map_err(|e| e.failure())?;
        p.ttfb = Some(scheduled.elapsed());
        let mut hasher = inner
            .sha256
            .filter(|_| head.status < 400)
            .map(|_| Sha256::new());
        let bytes = &mut p.bytes;
        let read = conn
            .read_body(&head, |d| {
                *bytes += d.len() as u64;
                if let Some(h) = hasher.as_mut() {
                    h.update(d);
                }
            })
            .await;
        match read {
            Ok(_) => {}
            Err(H1Error::Closed) if matches!(head.framing, Framing::Length(_)) => {
                return Err(Failure::short_body());
            }
            Err(e) => return Err(e.failure()),
        }
        verify(inner, head.status, p.bytes, hasher)
    }
}

/// Fetch the file once over HTTP/2 on `conn`, with the same figures as over HTTP/1.1.
async fn download_h2(
    inner: &Inner,
    mut conn: H2Conn,
    head: http::Request<()>,
    scheduled: Instant,
    p: &mut Progress,
) -> Result<(), Failure> {
    let mut response = conn.send(head, &Bytes::new()).await?;
    p.ttfb = Some(scheduled.elapsed());
    let mut hasher = inner
        .sha256
        .filter(|_| response.status < 400)
        .map(|_| Sha256::new());
    let bytes = &mut p.bytes;
    let read = response
        .read_body(|d| {
            *bytes += d.len() as u64;
            if let Some(h) = hasher.as_mut() {
                h.update(d);
            }
        })
        .await;
    if let Err((_, f)) = read {
        return Err(f);
    }
    verify(inner, response.status, p.bytes, hasher)
}

/// The outcome of a body read whole: an error status, else the size and digest checks.
fn verify(inner: &Inner, status: u16, bytes: u64, hasher: Option<Sha256>) -> Result<(), Failure> {
    if status >= 400 {
        return Err(Failure::Status(status));
    }
    if let Some(want) = inner.expected_bytes
        && want != bytes
    {
        return Err(Failure::Other("size mismatch".into()));
    }
    if let (Some(want), Some(h)) = (inner.sha256, hasher)
        && h.finalize().as_slice() != want
    {
        return Err(Failure::Other("checksum mismatch".into()));
    }
    Ok(())
}

fn parse_sha256(hex: &str) -> Result<[u8; 32], String> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("download.sha256: `{hex}` is not 64 hex digits"));
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("download.sha256: `{hex}` is not hex"))?;
    }
    Ok(out)
}

/// The `[download]` table, or its defaults.
fn settings(download: Option<&DownloadFile>) -> DownloadFile {
    download.cloned().unwrap_or_default()
}

/// The one request of a download scenario.
pub fn catalog(download: Option<&DownloadFile>) -> Vec<RequestInfo> {
    let d = settings(download);
    vec![RequestInfo {
        kind: "GET".into(),
        name: d
            .name
            .clone()
            .unwrap_or_else(|| format!("GET {}", resolve_path(&d))),
    }]
}

/// Checks a download scenario's `[download]`, and that it has no `[[requests]]` (`requests`
/// of them); `Err((field, message))`.
pub fn validate(download: Option<&DownloadFile>, requests: usize) -> Result<(), (String, String)> {
    let d = settings(download);
    let bad = |f: &str, m: String| Err((format!("download.{f}"), m));
    if d.model_id.is_empty()
        || !d
            .model_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
    {
        return bad(
            "model_id",
            format!(
                "`{}` is not a model id (letters, digits, `.`, `_`, `-` and `/`, as `arnir0/Tiny-LLM`)",
                d.model_id
            ),
        );
    }
    if d.version.is_empty()
        || !d
            .version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return bad("version", format!("`{}` is not a version name", d.version));
    }
    if !d.path.starts_with('/') {
        return bad("path", format!("`{}` must start with /", d.path));
    }
    let resolved = resolve_path(&d);
    if resolved.contains('{') || resolved.contains('}') {
        return bad(
            "path",
            format!(
                "`{}`: only {{model_id}} and {{version}} can be filled in",
                d.path
            ),
        );
    }
    if resolved.parse::<http::Uri>().is_err() {
        return bad("path", format!("`{resolved}` is not a valid path"));
    }
    if let Some(hex) = &d.sha256 {
        parse_sha256(hex).map_err(|m| ("download.sha256".to_string(), m))?;
    }
    if let Some(b) = d.buffer
        && !(4096..=MAX_BUFFER).contains(&b.0)
    {
        return bad(
            "buffer",
            format!("must be between 4k and {MAX_BUFFER} bytes"),
        );
    }
    if d.timeout.is_some_and(|t| t.0.is_zero()) {
        return bad("timeout", "must be above 0".into());
    }
    for (k, v) in &d.headers {
        if http::header::HeaderName::from_bytes(k.as_bytes()).is_err()
            || http::header::HeaderValue::from_str(v).is_err()
        {
            return bad("headers", format!("`{k}: {v}` is not a valid header"));
        }
    }
    if requests > 0 {
        return Err((
            "requests".into(),
            "a download scenario fetches [download].path; it takes no [[requests]]".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
