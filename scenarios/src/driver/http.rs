//! The `http` driver: weighted requests (method, path, headers, body) over HTTP/1.1 keep-alive
//! connections, one connection per session, with hyper's low-level client.
//!
//! Each session connects lazily, reconnects after any failure, and reads bodies frame by frame
//! counting bytes (a body is never held whole). It records latency, bytes and failures by kind
//! (`HTTP 503`, `timeout`, `connect: connection refused`, ...). No retries, no redirects, no
//! cookies: a load test measures what the server does with exactly the requests written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rand::Rng;
use rand::rngs::SmallRng;

use super::{Call, CallFuture, Driver, DriverError, RequestInfo, Session};
use crate::model::{ScenarioConfig, ScenarioFile, Target};
use crate::recorder::{Failure, Recorder, io_kind};

/// Request timeout when the scenario gives none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A request ready to send: everything parsed once at build time.
struct Prepared {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

struct Inner {
    catalog: Vec<RequestInfo>,
    prepared: Vec<Prepared>,
    /// Running sums of the weights, for picking by weight with one random number.
    cumulative: Vec<u64>,
    /// `host:port` to connect to.
    authority: String,
    timeout: Duration,
}

/// The HTTP driver of one run.
pub struct HttpDriver {
    inner: Arc<Inner>,
}

impl HttpDriver {
    /// Prepare every request of the scenario. The target must be a URL.
    pub fn new(config: &ScenarioConfig) -> Result<HttpDriver, DriverError> {
        let base = match &config.target {
            Target::Url(uri) => uri.clone(),
            Target::Builtin(kind) => {
                return Err(DriverError::UnresolvedTarget(format!("builtin:{kind}")));
            }
        };
        let authority = base
            .authority()
            .ok_or_else(|| DriverError::Invalid(format!("target `{base}` has no host")))?;
        let port = authority.port_u16().unwrap_or(80);
        let host = authority.host();
        let connect_to = format!("{host}:{port}");
        let base_path = base.path().trim_end_matches('/').to_string();
        let http = config.file.http.clone().unwrap_or_default();
        let mut prepared = Vec::new();
        let mut cumulative = Vec::new();
        let mut sum = 0u64;
        for (i, r) in config.file.requests.iter().enumerate() {
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
            prepared.push(Prepared {
                method,
                uri,
                headers,
                body,
            });
        }
        if sum == 0 {
            return Err(DriverError::Invalid("requests: every weight is 0".into()));
        }
        Ok(HttpDriver {
            inner: Arc::new(Inner {
                catalog: catalog(&config.file),
                prepared,
                cumulative,
                authority: connect_to,
                timeout: http.timeout.map(|t| t.0).unwrap_or(DEFAULT_TIMEOUT),
            }),
        })
    }
}

impl Driver for HttpDriver {
    fn requests(&self) -> &[RequestInfo] {
        &self.inner.catalog
    }

    fn session(&self) -> Box<dyn Session> {
        Box::new(HttpSession {
            inner: self.inner.clone(),
            conn: None,
        })
    }
}

/// One user's connection.
/// Bytes read from a connection at a time.
const READ_BUF: usize = 4096;

struct HttpSession {
    inner: Arc<Inner>,
    conn: Option<SendRequest<Full<Bytes>>>,
}

impl Session for HttpSession {
    fn call<'a>(&'a mut self, call: Call<'a>) -> CallFuture<'a> {
        Box::pin(async move {
            let idx = pick(&self.inner.cumulative, call.rng);
            let timeout = self.inner.timeout;
            let outcome = match tokio::time::timeout(timeout, self.exchange(idx)).await {
                Ok(r) => r,
                Err(_) => Err((0, Failure::Timeout)),
            };
            let latency = call.scheduled.elapsed();
            if matches!(&outcome, Err((_, f)) if !f.is_status()) {
                // After a timeout or an I/O failure the connection's state is unknown.
                self.conn = None;
            }
            record(call.recorder, idx, latency, outcome);
        })
    }
}

fn record(rec: &Recorder, idx: usize, latency: Duration, outcome: Result<u64, (u64, Failure)>) {
    match outcome {
        Ok(bytes) => rec.request(idx, latency, bytes, None),
        Err((bytes, f)) => rec.request(idx, latency, bytes, Some(f)),
    }
}

impl HttpSession {
    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, Failure> {
        if self.conn.as_ref().is_some_and(|c| c.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let stream = tokio::net::TcpStream::connect(&self.inner.authority)
                .await
                .map_err(|e| Failure::Connect(io_kind(&e)))?;
            let _ = stream.set_nodelay(true);
            // A fixed 4 KiB read buffer: hyper's adaptive one starts at 8 KiB and its pages get
            // touched one by one as reads move through it, which at 10k users is most of the
            // worker's memory. Bodies still stream through it at any size.
            let (sender, conn) = hyper::client::conn::http1::Builder::new()
                .read_buf_exact_size(Some(READ_BUF))
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|_| Failure::Connect("handshake"))?;
            tokio::spawn(async move {
                // The connection ends when the session drops its sender or the server closes.
                let _ = conn.await;
            });
            self.conn = Some(sender);
        }
        // The invariant: set just above when it was None.
        let sender = self.conn.as_mut().expect("connection present");
        sender.ready().await.map_err(|e| hyper_failure(&e))?;
        Ok(sender)
    }

    /// Send request `idx` and read the whole answer; `Ok(bytes)` or `Err((bytes, failure))`.
    async fn exchange(&mut self, idx: usize) -> Result<u64, (u64, Failure)> {
        let inner = self.inner.clone();
        let p = &inner.prepared[idx];
        let sender = self.connect().await.map_err(|f| (0, f))?;
        let mut req = Request::new(Full::new(p.body.clone()));
        *req.method_mut() = p.method.clone();
        *req.uri_mut() = p.uri.clone();
        *req.headers_mut() = p.headers.clone();
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| (0, hyper_failure(&e)))?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut bytes = 0u64;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Some(d) = f.data_ref() {
                        bytes += d.len() as u64;
                    }
                }
                Err(e) => return Err((bytes, hyper_failure(&e))),
            }
        }
        if status.as_u16() >= 400 {
            return Err((bytes, Failure::Status(status.as_u16())));
        }
        Ok(bytes)
    }
}

/// Classify a hyper error by its methods, never by its text.
fn hyper_failure(e: &hyper::Error) -> Failure {
    if e.is_timeout() {
        Failure::Timeout
    } else if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        Failure::Protocol("invalid HTTP response")
    } else if e.is_incomplete_message() {
        Failure::Io("connection closed before the response completed")
    } else if e.is_canceled() || e.is_closed() {
        Failure::Io("connection closed")
    } else {
        let io = std::error::Error::source(e).and_then(|s| s.downcast_ref::<std::io::Error>());
        match io {
            Some(io) => Failure::Io(io_kind(io)),
            None => Failure::Io("other"),
        }
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
pub(crate) fn catalog(file: &ScenarioFile) -> Vec<RequestInfo> {
    file.requests
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

/// Checks an http scenario's requests; `Err((field, message))`.
pub(crate) fn validate(file: &ScenarioFile) -> Result<(), (String, String)> {
    if file.requests.is_empty() {
        return Err((
            "requests".into(),
            "an http scenario needs at least one [[requests]]".into(),
        ));
    }
    let mut seen = BTreeMap::new();
    for (i, r) in file.requests.iter().enumerate() {
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
        let name = catalog(file).swap_remove(i).name;
        if let Some(prev) = seen.insert(name.clone(), i) {
            return Err((
                f("name"),
                format!("`{name}` is already the name of requests[{prev}]"),
            ));
        }
    }
    if file.requests.iter().all(|r| r.weight == 0) {
        return Err((
            "requests".into(),
            "at least one request needs a weight above 0".into(),
        ));
    }
    if let Some(h) = &file.http {
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
