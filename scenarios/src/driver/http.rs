//! The `http` driver: weighted requests (method, path, headers, body) over HTTP/1.1 keep-alive
//! connections, one connection per session, with the small client of [`super::h1`]; or over
//! HTTP/2 (`[http] version = "2"`, or `"auto"` when ALPN picks `h2` on `https://`), the
//! sessions' streams sharing a few connections ([`super::h2`]).
//!
//! Each request's bytes (HTTP/1.1) or head and body (HTTP/2) are made once at build time. Each session connects lazily,
//! reconnects after any failure or a `connection: close`, and reads bodies slice by slice
//! counting bytes (a body is never held whole). It records latency, bytes and failures by kind
//! (`HTTP 503`, `timeout`, `connect: connection refused`, ...). No retries, no redirects, no
//! cookies: a load test measures what the server does with exactly the requests written.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};
use rand::Rng;
use rand::rngs::SmallRng;

use super::h1::H1Conn;
use super::h2::{H2Client, H2Pool, Negotiation, Opened};
use super::transport::{CONNECTION_COUNTERS, CONNECTION_METRICS, ConnectionSlots, Endpoint};
use serde::{Deserialize, Serialize};

use super::{Call, CallFuture, Driver, DriverError, RequestInfo, Session};
use crate::model::{Common, HttpFile, HttpVersion};
use crate::recorder::{Failure, Recorder};
use crate::spec::{MetricSpec, Specs};

/// The figures of an `http` run: its connections only.
pub const SPECS: Specs = Specs {
    metrics: CONNECTION_METRICS,
    counters: CONNECTION_COUNTERS,
};

/// Where the connection metrics and counters sit: the driver has none of its own.
const SLOTS: ConnectionSlots = ConnectionSlots::after(0, 0);

/// Request timeout when the scenario gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `[[requests]]`: one kind of request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestFile {
    /// Name in reports (unique in the scenario). Default: `METHOD path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// HTTP method, `GET` by default.
    #[serde(default = "default_method")]
    pub method: String,
    /// Path and query, appended to the target URL.
    pub path: String,
    /// Extra headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Request body, sent as is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Relative frequency (default 1).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_method() -> String {
    "GET".into()
}

fn default_weight() -> u32 {
    1
}

/// The per-request timeout of an http scenario: `[http] timeout`, else [`DEFAULT_TIMEOUT`].
pub fn timeout(http: Option<&HttpFile>) -> Duration {
    http.and_then(|h| h.timeout)
        .map_or(DEFAULT_TIMEOUT, |t| t.0)
}

/// A request ready to send: its bytes on the wire, made once at build time.
struct Prepared {
    wire: Bytes,
    head: bool,
}

/// A request ready to send over HTTP/2: its head (an absolute URI, no connection-specific
/// headers) and body, made once at build time and cloned per request (h2 takes the head by
/// value).
struct H2Prepared {
    head: http::Request<()>,
    body: Bytes,
}

/// Which client the sessions use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// HTTP/1.1 (`version = "1.1"`, and `auto` on `http://`).
    Http1,
    /// HTTP/2 only.
    Http2,
    /// HTTP/2 if the server picks it by ALPN, else HTTP/1.1 (`auto` on `https://`).
    Auto,
}

struct Inner {
    catalog: Vec<RequestInfo>,
    prepared: Vec<Prepared>,
    /// The HTTP/2 forms of `prepared` (empty in [`Mode::Http1`]).
    h2_prepared: Vec<H2Prepared>,
    mode: Mode,
    /// The HTTP/2 connections, outside [`Mode::Http1`].
    pool: Option<Arc<H2Pool>>,
    /// Under [`Mode::Auto`], set once a connection found that the server does not pick `h2`:
    /// sessions made later go straight to HTTP/1.1.
    http1_only: OnceLock<()>,
    /// Running sums of the weights, for picking by weight with one random number.
    cumulative: Vec<u64>,
    /// Where to connect, and TLS for `https://`.
    endpoint: Endpoint,
    timeout: Duration,
}

/// The HTTP driver of one run.
pub struct HttpDriver {
    inner: Arc<Inner>,
}

impl HttpDriver {
    /// Prepare every request of the scenario (its `[[requests]]`). The target must be a URL.
    pub fn new(common: &Common, requests: &[RequestFile]) -> Result<HttpDriver, DriverError> {
        let base = super::base_url(common.target)?;
        let authority = base
            .authority()
            .ok_or_else(|| DriverError::Invalid(format!("target `{base}` has no host")))?;
        let http = common.http.cloned().unwrap_or_default();
        let secure = base.scheme_str() == Some("https");
        let mode = match (http.version.unwrap_or_default(), secure) {
            (HttpVersion::Http1, _) | (HttpVersion::Auto, false) => Mode::Http1,
            (HttpVersion::Http2, _) => Mode::Http2,
            (HttpVersion::Auto, true) => Mode::Auto,
        };
        // `version = "2"` offers http/1.1 too, so that a server without h2 still completes the
        // handshake and the failure names ALPN, not a TLS alert.
        let alpn = match mode {
            Mode::Http1 => crate::tls::Alpn::Http1,
            Mode::Http2 | Mode::Auto => crate::tls::Alpn::Any,
        };
        let endpoint = Endpoint::of(&base, common.tls, alpn)?;
        let base_path = base.path().trim_end_matches('/').to_string();
        let origin = format!("{}://{authority}", base.scheme_str().unwrap_or("http"));
        let mut prepared = Vec::new();
        let mut h2_prepared = Vec::new();
        let mut cumulative = Vec::new();
        let mut sum = 0u64;
        for (i, r) in requests.iter().enumerate() {
            let field = |f: &str| format!("requests[{i}].{f}");
            let method = Method::from_bytes(r.method.as_bytes()).map_err(|_| {
                DriverError::Invalid(format!(
                    "{}: `{}` is not an HTTP method",
                    field("method"),
                    r.method
                ))
            })?;
            let uri: Uri = format!("{base_path}{}", r.path)
                .parse()
                .map_err(|e| DriverError::Invalid(format!("{}: {e}", field("path"))))?;
            let mut headers = HeaderMap::new();
            let host_value = HeaderValue::from_str(authority.as_str())
                .map_err(|e| DriverError::Invalid(format!("target host: {e}")))?;
            headers.insert(http::header::HOST, host_value);
            for (k, v) in http.headers.iter().chain(r.headers.iter()) {
                let (name, value) = header(k, v)
                    .map_err(|m| DriverError::Invalid(format!("{}: {m}", field("headers"))))?;
                headers.insert(name, value);
            }
            let body = Bytes::from(r.body.clone().unwrap_or_default());
            if !body.is_empty() && !headers.contains_key(http::header::CONTENT_TYPE) {
                headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
            }
            sum += u64::from(r.weight);
            cumulative.push(sum);
            if mode != Mode::Http1 {
                let uri = format!("{origin}{base_path}{}", r.path);
                h2_prepared.push(h2_request(&method, &uri, &headers, body.clone())?);
            }
            prepared.push(Prepared {
                wire: wire(&method, &uri, &headers, &body),
                head: method == Method::HEAD,
            });
        }
        if sum == 0 {
            return Err(DriverError::Invalid("requests: every weight is 0".into()));
        }
        let pool = (mode != Mode::Http1).then(|| {
            let negotiation = match mode {
                Mode::Auto => Negotiation::Preferred,
                _ => Negotiation::Required,
            };
            let connections = http.connections.map(|c| c.0 as usize);
            Arc::new(H2Pool::new(
                endpoint.clone(),
                negotiation,
                connections,
                false,
            ))
        });
        Ok(HttpDriver {
            inner: Arc::new(Inner {
                catalog: catalog(requests),
                prepared,
                h2_prepared,
                mode,
                pool,
                http1_only: OnceLock::new(),
                cumulative,
                endpoint,
                timeout: http.timeout.map(|t| t.0).unwrap_or(DEFAULT_TIMEOUT),
            }),
        })
    }
}

impl Driver for HttpDriver {
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
        let h1 = HttpSession {
            inner: self.inner.clone(),
            conn: None,
        };
        let h2 = |pool: &Arc<H2Pool>| H2Session {
            inner: self.inner.clone(),
            client: pool.client(),
        };
        match (&self.inner.pool, self.inner.mode) {
            (Some(pool), Mode::Http2) => Box::new(h2(pool)),
            (Some(pool), Mode::Auto) if self.inner.http1_only.get().is_none() => {
                Box::new(AutoSession {
                    h1,
                    h2: h2(pool),
                    http1: false,
                })
            }
            _ => Box::new(h1),
        }
    }
}

/// The HTTP/2 form of a request: `uri` absolute (h2 takes `:scheme` and `:authority` from it),
/// without the headers HTTP/2 forbids (`host` becomes `:authority`), with a `content-length`
/// when HTTP/1.1 would send one.
fn h2_request(
    method: &Method,
    uri: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<H2Prepared, DriverError> {
    use http::header;
    let mut head = super::h2::request_head(method, uri, headers)?;
    let wants_length =
        !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if wants_length && !head.headers().contains_key(header::CONTENT_LENGTH) {
        head.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    Ok(H2Prepared { head, body })
}

/// The bytes of a request: request line, headers (a `content-length` when there is a body or
/// the method usually has one), blank line, body.
fn wire(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        uri.path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .as_bytes(),
    );
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let wants_length =
        !body.is_empty() || matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if wants_length && !headers.contains_key(http::header::CONTENT_LENGTH) {
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// One user's connection.
struct HttpSession {
    inner: Arc<Inner>,
    conn: Option<H1Conn>,
}

impl Session for HttpSession {
    fn call<'a>(&'a mut self, call: Call<'a>) -> CallFuture<'a> {
        Box::pin(async move {
            let idx = pick(&self.inner.cumulative, call.rng);
            let timeout = self.inner.timeout;
            let mut counted = usize::MAX;
            let exchange = self.exchange(idx, call.recorder, &mut counted);
            let outcome = match tokio::time::timeout(timeout, exchange).await {
                Ok(r) => r,
                Err(_) => Err((0, Failure::Timeout)),
            };
            let latency = call.scheduled.elapsed();
            if matches!(&outcome, Err((_, f)) if !f.is_status()) {
                // After a timeout or an I/O failure the connection's state is unknown.
                self.conn = None;
            }
            record(call.recorder, idx, latency, outcome, counted);
        })
    }
}

/// One user's streams on the driver's HTTP/2 connections.
struct H2Session {
    inner: Arc<Inner>,
    client: H2Client,
}

impl Session for H2Session {
    fn call<'a>(&'a mut self, call: Call<'a>) -> CallFuture<'a> {
        Box::pin(async move {
            let idx = pick(&self.inner.cumulative, call.rng);
            let mut counted = usize::MAX;
            let exchange = async {
                match self.client.connection().await {
                    Ok((conn, times)) => {
                        match times {
                            Some(t) => SLOTS.opened(call.recorder, idx, &t),
                            None => counted = SLOTS.reused(),
                        }
                        h2_exchange(&self.inner, conn, idx).await
                    }
                    Err(Opened::Failed(f)) => Err((0, f)),
                    // The pool of `version = "2"` never hands one back.
                    Err(Opened::Http1(_)) => Err((0, Failure::Http2("no h2 (ALPN)".into()))),
                }
            };
            let outcome = match tokio::time::timeout(self.inner.timeout, exchange).await {
                Ok(r) => r,
                Err(_) => Err((0, Failure::Timeout)),
            };
            if matches!(&outcome, Err((_, f)) if f.is_timeout()) {
                // The stream was reset by dropping it; the connection may be stuck.
                self.client.forget();
            }
            record(
                call.recorder,
                idx,
                call.scheduled.elapsed(),
                outcome,
                counted,
            );
        })
    }
}

/// Send request `idx` on `conn` and read the whole answer; `Ok(bytes)` or
/// `Err((bytes, failure))`.
async fn h2_exchange(
    inner: &Inner,
    mut conn: super::h2::H2Conn,
    idx: usize,
) -> Result<u64, (u64, Failure)> {
    let p = &inner.h2_prepared[idx];
    let mut response = conn
        .send(p.head.clone(), &p.body)
        .await
        .map_err(|f| (0, f))?;
    let mut bytes = 0u64;
    response.read_body(|d| bytes += d.len() as u64).await?;
    if response.status >= 400 {
        return Err((bytes, Failure::Status(response.status)));
    }
    Ok(bytes)
}

/// `auto` on `https://`: HTTP/2 through the pool until a connection's ALPN says the server
/// does not pick `h2`, then HTTP/1.1 on that connection and every later one.
struct AutoSession {
    h1: HttpSession,
    h2: H2Session,
    /// This session speaks HTTP/1.1.
    http1: bool,
}

impl Session for AutoSession {
    fn call<'a>(&'a mut self, call: Call<'a>) -> CallFuture<'a> {
        if self.http1 || self.h2.inner.http1_only.get().is_some() {
            self.http1 = true;
            return self.h1.call(call);
        }
        Box::pin(async move {
            let inner = self.h2.inner.clone();
            let idx = pick(&inner.cumulative, call.rng);
            let mut counted = usize::MAX;
            let mut fell_back = false;
            let exchange = async {
                match self.h2.client.connection().await {
                    Ok((conn, times)) => {
                        match times {
                            Some(t) => SLOTS.opened(call.recorder, idx, &t),
                            None => counted = SLOTS.reused(),
                        }
                        h2_exchange(&inner, conn, idx).await
                    }
                    Err(Opened::Failed(f)) => Err((0, f)),
                    Err(Opened::Http1(connected)) => {
                        SLOTS.opened(call.recorder, idx, &connected.times);
                        let _ = inner.http1_only.set(());
                        fell_back = true;
                        self.h1.conn = Some(H1Conn::over(connected.io));
                        let mut reused = usize::MAX;
                        self.h1.exchange(idx, call.recorder, &mut reused).await
                    }
                }
            };
            let outcome = match tokio::time::timeout(inner.timeout, exchange).await {
                Ok(r) => r,
                Err(_) => Err((0, Failure::Timeout)),
            };
            if fell_back {
                self.http1 = true;
                if matches!(&outcome, Err((_, f)) if !f.is_status()) {
                    self.h1.conn = None;
                }
            } else if matches!(&outcome, Err((_, f)) if f.is_timeout()) {
                self.h2.client.forget();
            }
            record(
                call.recorder,
                idx,
                call.scheduled.elapsed(),
                outcome,
                counted,
            );
        })
    }
}

/// Record a request, adding 1 to counter `counted` (`usize::MAX`: none).
fn record(
    rec: &Recorder,
    idx: usize,
    latency: Duration,
    outcome: Result<u64, (u64, Failure)>,
    counted: usize,
) {
    match outcome {
        Ok(bytes) => rec.request_counted(idx, latency, bytes, None, counted),
        Err((bytes, f)) => rec.request_counted(idx, latency, bytes, Some(f), counted),
    }
}

impl HttpSession {
    /// Send request `idx` and read the whole answer; `Ok(bytes)` or `Err((bytes, failure))`.
    /// A new connection's times are recorded at once; `reused` is set to the counter of a
    /// request sent on an open connection, for the request's record.
    async fn exchange(
        &mut self,
        idx: usize,
        rec: &Recorder,
        reused: &mut usize,
    ) -> Result<u64, (u64, Failure)> {
        let p = &self.inner.prepared[idx];
        if self.conn.as_mut().is_some_and(|c| c.is_reusable()) {
            *reused = SLOTS.reused();
        } else {
            let (c, times) = H1Conn::open(&self.inner.endpoint, 0)
                .await
                .map_err(|f| (0, f))?;
            SLOTS.opened(rec, idx, &times);
            self.conn = Some(c);
        }
        // The invariant: set just above unless a reusable one was there.
        let conn = self.conn.as_mut().expect("connection present");
        conn.send(&p.wire).await.map_err(|e| (0, e.failure()))?;
        let head = conn.read_head(p.head).await.map_err(|e| (0, e.failure()))?;
        let mut bytes = 0u64;
        conn.read_body(&head, |d| bytes += d.len() as u64)
            .await
            .map_err(|e| (bytes, e.failure()))?;
        if head.status >= 400 {
            return Err((bytes, Failure::Status(head.status)));
        }
        Ok(bytes)
    }
}

/// Pick an index by weight.
fn pick(cumulative: &[u64], rng: &mut SmallRng) -> usize {
    let total = cumulative.last().copied().unwrap_or(1);
    if cumulative.len() == 1 {
        return 0;
    }
    let x = rng.random_range(0..total);
    cumulative.partition_point(|&c| c <= x)
}

fn header(k: &str, v: &str) -> Result<(HeaderName, HeaderValue), String> {
    let name = HeaderName::from_bytes(k.as_bytes())
        .map_err(|_| format!("`{k}` is not a valid header name"))?;
    let value = HeaderValue::from_str(v)
        .map_err(|_| format!("the value of `{k}` is not a valid header value"))?;
    Ok((name, value))
}

/// Request names and methods of an http scenario.
pub fn catalog(requests: &[RequestFile]) -> Vec<RequestInfo> {
    requests
        .iter()
        .map(|r| RequestInfo {
            kind: r.method.to_ascii_uppercase(),
            name: r
                .name
                .clone()
                .unwrap_or_else(|| format!("{} {}", r.method.to_ascii_uppercase(), r.path)),
        })
        .collect()
}

/// Checks an http scenario's requests and `[http]`; `Err((field, message))`. `likely` is the
/// kind whose table the file has, if any: with no requests, what its `kind` was likely meant
/// to be.
pub fn validate(
    requests: &[RequestFile],
    http: Option<&HttpFile>,
    likely: Option<&str>,
) -> Result<(), (String, String)> {
    if requests.is_empty() {
        let mut message = "an http scenario needs at least one [[requests]]".to_string();
        // `kind` defaults to http: a file written for another kind but missing its `kind`.
        if let Some(kind) = likely {
            message +=
                &format!("; this file has an [{kind}] table: did you mean kind = \"{kind}\"?");
        }
        return Err(("requests".into(), message));
    }
    let mut seen = BTreeMap::new();
    // Names once for all requests: checking a scenario stays linear in its size.
    let names = catalog(requests);
    for (i, (r, info)) in requests.iter().zip(names).enumerate() {
        let f = |x: &str| format!("requests[{i}].{x}");
        if Method::from_bytes(r.method.as_bytes()).is_err() || r.method.contains(' ') {
            return Err((f("method"), format!("`{}` is not an HTTP method", r.method)));
        }
        if !r.path.starts_with('/') {
            return Err((f("path"), format!("`{}` must start with /", r.path)));
        }
        if r.path.parse::<Uri>().is_err() {
            return Err((f("path"), format!("`{}` is not a valid path", r.path)));
        }
        for (k, v) in &r.headers {
            header(k, v).map_err(|m| (f("headers"), m))?;
        }
        let name = info.name;
        if let Some(prev) = seen.insert(name.clone(), i) {
            return Err((
                f("name"),
                format!("`{name}` is already the name of requests[{prev}]"),
            ));
        }
    }
    if requests.iter().all(|r| r.weight == 0) {
        return Err((
            "requests".into(),
            "at least one request needs a weight above 0".into(),
        ));
    }
    if let Some(h) = http {
        for (k, v) in &h.headers {
            header(k, v).map_err(|m| ("http.headers".to_string(), m))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn pick_follows_weights() {
        let cumulative = vec![1, 4, 4, 10];
        let mut rng = SmallRng::seed_from_u64(1);
        let mut counts = [0u32; 4];
        for _ in 0..100_000 {
            counts[pick(&cumulative, &mut rng)] += 1;
        }
        assert_eq!(counts[2], 0, "weight 0 is never picked");
        let share = |c: u32| f64::from(c) / 100_000.0;
        assert!((share(counts[0]) - 0.1).abs() < 0.01, "{counts:?}");
        assert!((share(counts[1]) - 0.3).abs() < 0.01, "{counts:?}");
        assert!((share(counts[3]) - 0.6).abs() < 0.01, "{counts:?}");
    }
}
