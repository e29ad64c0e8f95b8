//! A simulated model registry, as the ACME performance track downloads from: 500 models under
//! `/performance/{model_id}/{version}/`, the track's Tiny-LLM with a `model.zip` of exactly
//! [`TINY_LLM_BYTES`] bytes, the other 499 with a small `config.json` and `README.md` only.
//!
//! Bodies are generated on the fly from their offset ([`fill`]): nothing is stored, any range
//! can be served, and every byte is the same on every machine (so a client can check
//! [`TINY_LLM_SHA256`]). A small server of its own (keep-alive, `GET`/`HEAD`, single byte
//! ranges, an optional bandwidth limit shared by all connections, faults on request) so that
//! it can cut a body exactly where a test asks: HTTP/1.1 written by hand, and HTTP/2 on the
//! `h2` crate, by ALPN over TLS or as h2c with prior knowledge. No uploads.

use std::fmt::Write as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::tls::{H2, Transport};

/// The ACME performance track's model, as Hugging Face names it.
pub const TINY_LLM: &str = "arnir0/Tiny-LLM";
/// Size of Tiny-LLM's `model.zip`, bytes (the performance track's 24.8 MB).
pub const TINY_LLM_BYTES: u64 = 24_834_009;
/// SHA-256 of Tiny-LLM's generated `model.zip`, lowercase hex (checked by a test).
pub const TINY_LLM_SHA256: &str =
    "ce99ef9d875258f421c2f48a5134bb75cbc7ccb793f0762cea61938b29f36408";
/// Models in the registry (Tiny-LLM and 499 others).
pub const MODELS: usize = 500;
/// The one version every model has.
pub const VERSION: &str = "main";
/// Path prefix of the download endpoint (`/performance/{model_id}/{version}/{file}`).
pub const PREFIX: &str = "/performance/";

/// Bytes generated and written per step (also the bandwidth limiter's unit).
const BLOCK: usize = 64 * 1024;
/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body read and discarded (the registry takes no uploads).
const MAX_DISCARD: u64 = 1024 * 1024;

/// How the registry behaves.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Body bytes per second for all connections together (`None`: as fast as possible), to
    /// play a registry whose storage or network is the bottleneck.
    pub bandwidth: Option<f64>,
    /// Plaintext HTTP/1.1 (the default), plaintext HTTP/1.1 or h2c, or TLS (h2 or HTTP/1.1
    /// by ALPN).
    pub transport: Transport,
}

/// What the registry served; atomics, read while it runs (tests compare them with what the
/// load generator counted).
#[derive(Debug, Default)]
pub struct RegistryStats {
    requests: AtomicU64,
    bytes: AtomicU64,
    not_found: AtomicU64,
    partial: AtomicU64,
    faults: AtomicU64,
    first_request_us: AtomicU64,
    last_request_us: AtomicU64,
}

/// The counters at one moment, as `GET /__stampede/stats` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RegistryCounts {
    /// Requests answered (the `/__stampede/` ones excluded).
    pub requests: u64,
    /// Body bytes written to clients.
    pub bytes: u64,
    /// Requests answered 404.
    pub not_found: u64,
    /// Range requests answered 206.
    pub partial: u64,
    /// Connections cut on purpose (`truncate_at`, `reset_at`).
    pub faults: u64,
    /// When the first request since start (or reset) arrived, Unix µs (0: none yet): with
    /// `last_request_us`, how close together clients really asked, in the target's clock.
    pub first_request_us: u64,
    /// When the latest request arrived, Unix µs (0: none yet).
    pub last_request_us: u64,
}

impl RegistryStats {
    /// Zeroed counters.
    pub fn new() -> RegistryStats {
        RegistryStats::default()
    }

    /// The counters now.
    pub fn counts(&self) -> RegistryCounts {
        RegistryCounts {
            requests: self.requests.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            not_found: self.not_found.load(Ordering::Relaxed),
            partial: self.partial.load(Ordering::Relaxed),
            faults: self.faults.load(Ordering::Relaxed),
            first_request_us: self.first_request_us.load(Ordering::Relaxed),
            last_request_us: self.last_request_us.load(Ordering::Relaxed),
        }
    }

    /// Zero them.
    pub fn reset(&self) {
        for c in [
            &self.requests,
            &self.bytes,
            &self.not_found,
            &self.partial,
            &self.faults,
            &self.first_request_us,
            &self.last_request_us,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// The performance track's sanitized form of a Hugging Face model id: `arnir0/Tiny-LLM` →
/// `arnir0_Tiny-LLM`.
pub fn sanitize(model_id: &str) -> String {
    model_id.replace('/', "_")
}

/// The Hugging Face ids of the registry's models, Tiny-LLM first.
pub fn model_ids() -> Vec<String> {
    std::iter::once(TINY_LLM.to_string())
        .chain((1..MODELS).map(|i| format!("stampede-sim/model-{i:03}")))
        .collect()
}

/// One file of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
enum File {
    /// Tiny-LLM's generated archive.
    Zip,
    /// Small text made from the model id.
    Text(String, &'static str),
}

impl File {
    fn len(&self) -> u64 {
        match self {
            File::Zip => TINY_LLM_BYTES,
            File::Text(t, _) => t.len() as u64,
        }
    }

    fn content_type(&self) -> &'static str {
        match self {
            File::Zip => "application/zip",
            File::Text(_, ct) => ct,
        }
    }

    /// Copy the bytes at `offset..offset + out.len()` into `out`.
    fn read(&self, offset: u64, out: &mut [u8]) {
        match self {
            File::Zip => fill(offset, out),
            File::Text(t, _) => {
                let start = offset as usize;
                out.copy_from_slice(&t.as_bytes()[start..start + out.len()]);
            }
        }
    }
}

/// The file at `/performance/{sanitized}/{version}/{name}`, if the registry has it.
fn lookup(sanitized: &str, version: &str, name: &str) -> Option<File> {
    if version != VERSION {
        return None;
    }
    let id = if sanitized == sanitize(TINY_LLM) {
        TINY_LLM.to_string()
    } else {
        let n: usize = sanitized
            .strip_prefix("stampede-sim_model-")?
            .parse()
            .ok()?;
        if !(1..MODELS).contains(&n) || sanitized != format!("stampede-sim_model-{n:03}") {
            return None;
        }
        format!("stampede-sim/model-{n:03}")
    };
    match name {
        "model.zip" if id == TINY_LLM => Some(File::Zip),
        "config.json" => Some(File::Text(config_json(&id), "application/json")),
        "README.md" => Some(File::Text(readme(&id), "text/markdown")),
        _ => None,
    }
}

fn config_json(id: &str) -> String {
    let tiny = id == TINY_LLM;
    format!(
        "{{\n  \"_name_or_path\": \"{id}\",\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \
         \"model_type\": \"llama\",\n  \"hidden_size\": {},\n  \"num_hidden_layers\": {},\n  \
         \"vocab_size\": 32000\n}}\n",
        if tiny { 192 } else { 256 },
        if tiny { 1 } else { 2 }
    )
}

fn readme(id: &str) -> String {
    format!(
        "# {id}\n\nA model of the simulated registry (`stampede target registry`). Files: \
         config.json, README.md{}.\n",
        if id == TINY_LLM { ", model.zip" } else { "" }
    )
}

/// Period of the archive's content, bytes (a prime, so it lines up with no block size).
pub const PERIOD: usize = 1_048_573;

/// The content of Tiny-LLM's `model.zip` from byte `offset` on: byte `i` is byte `i % PERIOD`
/// of a pseudo-random pattern (SplitMix64 words from a fixed seed, made once at start-up), so
/// any range is produced by copying, without the bytes before it and without storing the file.
pub fn fill(offset: u64, out: &mut [u8]) {
    let table = pattern();
    let mut pos = (offset % PERIOD as u64) as usize;
    let mut at = 0;
    while at < out.len() {
        let take = (PERIOD - pos).min(out.len() - at);
        out[at..at + take].copy_from_slice(&table[pos..pos + take]);
        at += take;
        pos = 0;
    }
}

fn pattern() -> &'static [u8] {
    static PATTERN: std::sync::OnceLock<Box<[u8]>> = std::sync::OnceLock::new();
    PATTERN.get_or_init(|| {
        (0..PERIOD.div_ceil(8) as u64)
            .flat_map(|i| splitmix64(i).to_le_bytes())
            .take(PERIOD)
            .collect()
    })
}

fn splitmix64(i: u64) -> u64 {
    let mut z = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0x5EED);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Serve until `shutdown`; connections still open get a second to finish.
///
/// Routes: `GET|HEAD /performance/{model_id}/{version}/{file}` (`model_id` sanitized,
/// `version` `main`, `file` one of `model.zip` (Tiny-LLM only), `config.json`, `README.md`),
/// with `Range: bytes=a-b` (206, `Content-Range`; 416 when unsatisfiable) and the faults
/// `?truncate_at=N` (end the body cleanly after N bytes: a short body) and `?reset_at=N`
/// (reset after N body bytes); `GET /models` lists the models; `GET /health`;
/// `GET /__stampede/stats` and `POST /__stampede/stats/reset` (not counted). The same on
/// HTTP/1.1 and HTTP/2; how a fault looks on each is said where faults are defined (`Fault`).
pub async fn serve(
    listener: TcpListener,
    config: RegistryConfig,
    stats: Arc<RegistryStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Some(b) = config.bandwidth {
        anyhow::ensure!(
            b.is_finite() && b > 0.0,
            "bandwidth must be above 0 bytes/s, got {b}"
        );
    }
    let shared = Arc::new(Shared {
        limiter: config.bandwidth.map(Limiter::new),
        stats,
        catalog: Bytes::from(catalog_json()),
    });
    match &config.transport {
        Transport::Http1 => {
            crate::accept::serve(listener, "registry", &shutdown, |mut stream, force| {
                let shared = shared.clone();
                async move {
                    let end = tokio::select! {
                        end = http1(&mut stream, &shared, Vec::new()) => end,
                        () = force.cancelled() => return,
                    };
                    finish(end, stream);
                }
            })
            .await;
        }
        Transport::H2c => {
            crate::accept::serve(listener, "registry", &shutdown, |mut stream, force| {
                let (shared, shutdown) = (shared.clone(), shutdown.clone());
                async move {
                    let sniffed = tokio::select! {
                        sniffed = sniff(&mut stream) => sniffed,
                        () = force.cancelled() => return,
                    };
                    match sniffed {
                        Ok((true, read)) => {
                            let io = Rewind::new(read, &mut stream);
                            http2(io, &shared, &shutdown, &force).await;
                        }
                        Ok((false, read)) => {
                            let end = tokio::select! {
                                end = http1(&mut stream, &shared, read) => end,
                                () = force.cancelled() => return,
                            };
                            finish(end, stream);
                        }
                        Err(e) => tracing::debug!(error = %e, "registry connection failed"),
                    }
                }
            })
            .await;
        }
        Transport::Tls(tls) => {
            let acceptor = tls.acceptor();
            crate::accept::serve(listener, "registry", &shutdown, |stream, force| {
                let (shared, acceptor, shutdown) =
                    (shared.clone(), acceptor.clone(), shutdown.clone());
                async move {
                    let Some(mut stream) =
                        crate::accept::handshake(&acceptor, stream, &shutdown).await
                    else {
                        return;
                    };
                    if stream.get_ref().1.alpn_protocol() == Some(H2) {
                        http2(stream, &shared, &shutdown, &force).await;
                        return;
                    }
                    let end = tokio::select! {
                        end = http1(&mut stream, &shared, Vec::new()) => end,
                        () = force.cancelled() => return,
                    };
                    // A reset is a TCP one, under the TLS session, as in plaintext.
                    finish(end, stream.into_inner().0);
                }
            })
            .await;
        }
    }
    Ok(())
}

/// After [`http1`]: log an error, or reset the TCP connection when a fault asked for it.
fn finish(end: io::Result<End>, stream: TcpStream) {
    match end {
        Ok(End::Closed) => {}
        Ok(End::Reset) => {
            // SO_LINGER 0: closing sends RST instead of FIN.
            let _ = socket_reset(stream);
        }
        Err(e) => tracing::debug!(error = %e, "registry connection ended with an error"),
    }
}

/// How a connection ended.
enum End {
    /// The client left, or the registry closed (after `connection: close` or a truncation).
    Closed,
    /// A `reset_at` fault: the caller must reset the TCP connection.
    Reset,
}

struct Shared {
    limiter: Option<Limiter>,
    stats: Arc<RegistryStats>,
    catalog: Bytes,
}

/// A bandwidth limit shared by every connection: each block reserves its transmission time on
/// one virtual timeline, so connections share the rate in the order they ask (no bursts after
/// idle time).
struct Limiter {
    rate: f64,
    /// When the link is free again. A `std` mutex: held for a few arithmetic operations.
    next: Mutex<Instant>,
}

impl Limiter {
    fn new(rate: f64) -> Limiter {
        Limiter {
            rate,
            next: Mutex::new(Instant::now()),
        }
    }

    async fn take(&self, bytes: usize) {
        let done = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let start = (*next).max(Instant::now());
            *next = start + Duration::from_secs_f64(bytes as f64 / self.rate);
            *next
        };
        tokio::time::sleep_until(done).await;
    }
}

fn catalog_json() -> String {
    let models: Vec<serde_json::Value> = model_ids()
        .into_iter()
        .map(|id| {
            let s = sanitize(&id);
            let mut files = Vec::new();
            for name in ["model.zip", "config.json", "README.md"] {
                if let Some(f) = lookup(&s, VERSION, name) {
                    let mut entry = serde_json::json!({ "name": name, "size": f.len() });
                    if f == File::Zip {
                        entry["sha256"] = TINY_LLM_SHA256.into();
                    }
                    files.push(entry);
                }
            }
            serde_json::json!({ "model_id": id, "id": s, "versions": [VERSION], "files": files })
        })
        .collect();
    serde_json::json!({ "count": models.len(), "models": models }).to_string()
}

/// A request, as either HTTP version gives it.
struct Request {
    method: String,
    path: String,
    query: String,
    range: Option<String>,
    /// HTTP/1.1's keep-alive (HTTP/2 always keeps the connection).
    keep_alive: bool,
    /// The request body's length (HTTP/1.1's `content-length`; HTTP/2 bodies are read apart).
    body: u64,
}

/// What to answer a request with, the same on HTTP/1.1 and HTTP/2; each version writes it
/// its own way ([`write_h1`], [`send_h2`]).
struct Answer {
    status: u16,
    content_type: Option<&'static str>,
    /// The `content-length` header (`None`: none, for 204).
    length: Option<u64>,
    /// Headers after those: `accept-ranges`, `content-range`, `etag`.
    headers: Vec<(&'static str, String)>,
    body: Body,
    /// HTTP/1.1: close the connection after this answer (a request the registry refuses).
    close: bool,
}

/// The body of an [`Answer`].
enum Body {
    /// None (HEAD, 204, 416): `length` is what a GET would have had.
    Empty,
    /// A small body, sent whole.
    Text(Bytes),
    /// Bytes `start..end` of a file, generated block by block, cut at `cut` by a fault.
    File {
        file: File,
        start: u64,
        end: u64,
        /// Where a fault cuts the body (before `end`), and how.
        cut: Option<(u64, Fault)>,
    },
}

/// How a fault cuts a body, on each HTTP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `truncate_at`: HTTP/1.1 closes the connection cleanly (FIN) after the bytes sent;
    /// HTTP/2 ends the stream (an empty DATA frame with END_STREAM) short of its
    /// `content-length`, and the connection stays.
    Truncate,
    /// `reset_at`: HTTP/1.1 resets the TCP connection (RST); HTTP/2 resets only the stream
    /// (RST_STREAM with INTERNAL_ERROR), as a server does whose upstream failed mid-body: the
    /// connection and its other streams go on, and no GOAWAY is sent.
    Reset,
}

impl Answer {
    /// A small body of type `content_type`.
    fn text(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
        let body = body.into();
        Answer {
            status,
            content_type: Some(content_type),
            length: Some(body.len() as u64),
            headers: Vec::new(),
            body: Body::Text(body),
            close: false,
        }
    }

    /// A `text/plain` message.
    fn message(status: u16, message: &'static str) -> Answer {
        Answer::text(status, "text/plain", message)
    }

    /// The same answer, closing an HTTP/1.1 connection after it.
    fn closing(self) -> Answer {
        Answer {
            close: true,
            ..self
        }
    }
}

/// Read a plaintext connection's first bytes, as many as it takes to tell the HTTP/2 preface
/// (h2c with prior knowledge) from an HTTP/1.1 request: `(is HTTP/2, the bytes read)`.
async fn sniff(stream: &mut TcpStream) -> io::Result<(bool, Vec<u8>)> {
    let mut buf = vec![0u8; 4096];
    let mut filled = 0;
    loop {
        let n = stream.read(&mut buf[filled..]).await?;
        filled += n;
        let seen = &buf[..filled.min(PREFACE.len())];
        if n == 0 || seen != &PREFACE[..seen.len()] || filled >= PREFACE.len() {
            let h2 = seen == PREFACE;
            buf.truncate(filled);
            return Ok((h2, buf));
        }
    }
}

/// The first bytes of every HTTP/2 connection (RFC 9113, section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serve one HTTP/1.1 connection's requests until the client leaves or asks to close, `read`
/// being bytes already read from it. Generic so the plaintext path stays a plain `TcpStream`
/// (no boxing) while TLS runs the same code.
async fn http1<S>(stream: &mut S, shared: &Shared, read: Vec<u8>) -> io::Result<End>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut filled = read.len();
    let mut buf = read;
    buf.resize(filled.max(4096), 0);
    let mut block = vec![0u8; BLOCK];
    loop {
        let (req, used) = loop {
            match parse(&buf[..filled]) {
                Ok(Some(parsed)) => break parsed,
                Ok(None) => {}
                Err(why) => {
                    write_h1(stream, shared, Answer::message(400, why), false, &mut block).await?;
                    return Ok(End::Closed);
                }
            }
            if filled == buf.len() {
                if buf.len() >= MAX_HEAD {
                    let answer = Answer::message(431, "request head too large");
                    write_h1(stream, shared, answer, false, &mut block).await?;
                    return Ok(End::Closed);
                }
                buf.resize(buf.len() * 2, 0);
            }
            let n = stream.read(&mut buf[filled..]).await?;
            if n == 0 {
                return Ok(End::Closed);
            }
            filled += n;
        };
        buf.copy_within(used..filled, 0);
        filled -= used;
        // Discard a request body (the registry takes none).
        let mut left = req.body;
        if left > MAX_DISCARD {
            let answer = Answer::message(413, "the registry takes no uploads");
            write_h1(stream, shared, answer, false, &mut block).await?;
            return Ok(End::Closed);
        }
        while left > 0 {
            if filled == 0 {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    return Ok(End::Closed);
                }
                filled = n;
            }
            let take = filled.min(left as usize);
            buf.copy_within(take..filled, 0);
            filled -= take;
            left -= take as u64;
        }
        let answer = answer(shared, &req);
        let next = write_h1(stream, shared, answer, req.keep_alive, &mut block).await?;
        // Writes may sit in a TLS session's buffer; for a bare `TcpStream` this is a no-op.
        stream.flush().await?;
        match next {
            Next::KeepGoing => {}
            Next::Close => {
                let _ = stream.shutdown().await;
                return Ok(End::Closed);
            }
            Next::Reset => return Ok(End::Reset),
        }
    }
}

#[allow(deprecated)]
fn socket_reset(stream: TcpStream) -> io::Result<()> {
    stream.set_linger(Some(Duration::ZERO))?;
    drop(stream);
    Ok(())
}

/// `Ok(Some((request, head length)))`, `Ok(None)` when the head is incomplete.
fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("malformed request"),
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut keep_alive = req.version == Some(1);
    let mut range = None;
    let mut body = 0;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if h.name.eq_ignore_ascii_case("range") {
            range = Some(value.to_string());
        } else if h.name.eq_ignore_ascii_case("content-length") {
            body = value.parse().map_err(|_| "invalid content-length")?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("the registry takes no request bodies in chunks");
        }
    }
    Ok(Some((
        Request {
            method: req.method.unwrap_or("GET").to_string(),
            path: path.to_string(),
            query: query.to_string(),
            range,
            keep_alive,
            body,
        },
        used,
    )))
}

/// What to do with an HTTP/1.1 connection after a response.
enum Next {
    KeepGoing,
    Close,
    Reset,
}

/// The answer to `req` (routing, ranges, faults), counting it in the stats.
fn answer(shared: &Shared, req: &Request) -> Answer {
    let stats = &shared.stats;
    if let Some(endpoint) = req.path.strip_prefix("/__stampede/") {
        return match (req.method.as_str(), endpoint) {
            ("GET", "stats") => {
                let body = serde_json::to_string(&stats.counts()).unwrap_or_default();
                Answer::text(200, "application/json", body)
            }
            ("POST", "stats/reset") => {
                stats.reset();
                Answer {
                    status: 204,
                    content_type: None,
                    length: None,
                    headers: Vec::new(),
                    body: Body::Empty,
                    close: false,
                }
            }
            _ => Answer::message(404, "unknown /__stampede/ endpoint"),
        };
    }
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let _ =
        stats
            .first_request_us
            .compare_exchange(0, now_us, Ordering::Relaxed, Ordering::Relaxed);
    stats.last_request_us.fetch_max(now_us, Ordering::Relaxed);
    let head_only = req.method == "HEAD";
    if req.method != "GET" && !head_only {
        return Answer::message(405, "the registry answers GET and HEAD").closing();
    }
    match req.path.as_str() {
        "/health" => return Answer::text(200, "application/json", "{\"status\":\"ok\"}"),
        "/models" => return Answer::text(200, "application/json", shared.catalog.clone()),
        _ => {}
    }
    let file = req
        .path
        .strip_prefix(PREFIX)
        .and_then(|rest| {
            let mut parts = rest.split('/');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(m), Some(v), Some(f), None) => Some((m, v, f)),
                _ => None,
            }
        })
        .and_then(|(m, v, f)| lookup(m, v, f));
    let Some(file) = file else {
        stats.not_found.fetch_add(1, Ordering::Relaxed);
        return Answer::text(404, "application/json", "{\"detail\":\"Not Found\"}");
    };
    let total = file.len();
    let (status, start, end) = match req.range.as_deref().map(|r| byte_range(r, total)) {
        None | Some(RangeAsk::Ignore) => (200, 0, total),
        Some(RangeAsk::Satisfiable(a, b)) => (206, a, b + 1),
        Some(RangeAsk::Unsatisfiable) => {
            return Answer {
                status: 416,
                content_type: None,
                length: Some(0),
                headers: vec![("content-range", format!("bytes */{total}"))],
                body: Body::Empty,
                close: false,
            };
        }
    };
    let mut headers = vec![("accept-ranges", "bytes".to_string())];
    if status == 206 {
        stats.partial.fetch_add(1, Ordering::Relaxed);
        headers.push((
            "content-range",
            format!("bytes {start}-{}/{total}", end - 1),
        ));
    }
    if file == File::Zip {
        headers.push(("etag", format!("\"{TINY_LLM_SHA256}\"")));
    }
    let fault = match (
        query_u64(&req.query, "truncate_at"),
        query_u64(&req.query, "reset_at"),
    ) {
        (Some(n), _) => Some((n, Fault::Truncate)),
        (None, Some(n)) => Some((n, Fault::Reset)),
        (None, None) => None,
    };
    let cut = fault
        .map(|(n, f)| (start + n.min(end - start), f))
        .filter(|&(at, _)| at < end);
    Answer {
        status,
        content_type: Some(file.content_type()),
        length: Some(end - start),
        headers,
        body: if head_only {
            Body::Empty
        } else {
            Body::File {
                file,
                start,
                end,
                cut,
            }
        },
        close: false,
    }
}

/// Write `answer` on an HTTP/1.1 connection (`block` is the file's buffer); what to do next.
async fn write_h1(
    stream: &mut (impl AsyncWrite + Unpin),
    shared: &Shared,
    answer: Answer,
    keep_alive: bool,
    block: &mut [u8],
) -> io::Result<Next> {
    let keep_alive = keep_alive && !answer.close;
    let mut out = format!("HTTP/1.1 {} {}\r\n", answer.status, reason(answer.status));
    if let Some(t) = answer.content_type {
        let _ = write!(out, "content-type: {t}\r\n");
    }
    if let Some(n) = answer.length {
        let _ = write!(out, "content-length: {n}\r\n");
    }
    for (name, value) in &answer.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    out.push_str(connection_header(keep_alive));
    out.push_str("\r\n");
    let next = if keep_alive {
        Next::KeepGoing
    } else {
        Next::Close
    };
    let (file, start, end, cut) = match answer.body {
        Body::Empty => {
            stream.write_all(out.as_bytes()).await?;
            return Ok(next);
        }
        Body::Text(body) => {
            let mut out = out.into_bytes();
            out.extend_from_slice(&body);
            stream.write_all(&out).await?;
            return Ok(next);
        }
        Body::File {
            file,
            start,
            end,
            cut,
        } => (file, start, end, cut),
    };
    stream.write_all(out.as_bytes()).await?;
    let stop = cut.map_or(end, |(at, _)| at);
    let mut at = start;
    while at < stop {
        let n = ((stop - at) as usize).min(block.len());
        file.read(at, &mut block[..n]);
        if let Some(l) = &shared.limiter {
            l.take(n).await;
        }
        stream.write_all(&block[..n]).await?;
        shared.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
        at += n as u64;
        // Loopback rarely pushes back: let the other connections (and new requests) have
        // their turn after every block, so clients are served side by side.
        tokio::task::yield_now().await;
    }
    if let Some((_, fault)) = cut {
        shared.stats.faults.fetch_add(1, Ordering::Relaxed);
        stream.flush().await?;
        return Ok(match fault {
            Fault::Reset => Next::Reset,
            Fault::Truncate => Next::Close,
        });
    }
    Ok(next)
}

/// Most streams a client may have open at once on one HTTP/2 connection.
const MAX_STREAMS: u32 = 256;

/// Serve one HTTP/2 connection (after TLS with ALPN `h2`, or h2c): each stream a task of the
/// connection's, answered as on HTTP/1.1. On `shutdown` it sends GOAWAY and lets the open
/// streams finish; `force` ends it at once (its stream tasks with it).
async fn http2<S>(
    io: S,
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
    force: &CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(MAX_STREAMS)
        .handshake::<_, Bytes>(io);
    let mut conn = tokio::select! {
        conn = handshake => match conn {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(error = %e, "registry HTTP/2 handshake failed");
                return;
            }
        },
        () = force.cancelled() => return,
    };
    // Dropped with the connection: its streams end with it.
    let mut streams = tokio::task::JoinSet::new();
    let mut draining = false;
    loop {
        tokio::select! {
            accepted = conn.accept() => match accepted {
                Some(Ok((request, respond))) => {
                    streams.spawn(h2_stream(request, respond, shared.clone()));
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "registry HTTP/2 connection ended with an error");
                    break;
                }
                None => break,
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            () = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.graceful_shutdown();
            }
            () = force.cancelled() => break,
        }
    }
}

/// One HTTP/2 stream: read (and discard) the request body, then answer.
async fn h2_stream(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    shared: Arc<Shared>,
) {
    let (head, mut body) = request.into_parts();
    let mut read = 0u64;
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else {
            return;
        };
        let _ = body.flow_control().release_capacity(chunk.len());
        read += chunk.len() as u64;
        if read > MAX_DISCARD {
            break;
        }
    }
    let answer = if read > MAX_DISCARD {
        Answer::message(413, "the registry takes no uploads")
    } else {
        let range = head.headers.get(http::header::RANGE);
        let req = Request {
            method: head.method.as_str().to_string(),
            path: head.uri.path().to_string(),
            query: head.uri.query().unwrap_or("").to_string(),
            range: range
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string()),
            keep_alive: true,
            body: read,
        };
        answer(&shared, &req)
    };
    if let Err(e) = send_h2(&mut respond, &shared, answer).await {
        // The client reset the stream or left: normal under load.
        tracing::debug!(error = %e, "registry HTTP/2 stream ended with an error");
    }
}

/// Send `answer` on an HTTP/2 stream: the head, then the body within the stream's flow-control
/// window, block by block as on HTTP/1.1.
async fn send_h2(
    respond: &mut h2::server::SendResponse<Bytes>,
    shared: &Shared,
    answer: Answer,
) -> Result<(), h2::Error> {
    use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
    let mut head = http::Response::new(());
    *head.status_mut() = http::StatusCode::from_u16(answer.status)
        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = head.headers_mut();
    if let Some(t) = answer.content_type {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(t));
    }
    if let Some(n) = answer.length {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
    }
    for (name, value) in &answer.headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    let (file, start, end, cut) = match answer.body {
        Body::Empty => {
            respond.send_response(head, true)?;
            return Ok(());
        }
        Body::Text(body) => {
            // Small: h2 holds it until the window lets it out.
            let mut stream = respond.send_response(head, false)?;
            return stream.send_data(body, true);
        }
        Body::File {
            file,
            start,
            end,
            cut,
        } => (file, start, end, cut),
    };
    let mut stream = respond.send_response(head, end == start)?;
    let stop = cut.map_or(end, |(at, _)| at);
    let mut at = start;
    while at < stop {
        let want = ((stop - at) as usize).min(BLOCK);
        stream.reserve_capacity(want);
        let granted = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(granted) => granted?,
            // The stream is gone (the client reset it).
            None => return Ok(()),
        };
        let n = granted.min(want);
        let mut chunk = BytesMut::zeroed(n);
        file.read(at, &mut chunk);
        if let Some(l) = &shared.limiter {
            l.take(n).await;
        }
        at += n as u64;
        stream.send_data(chunk.freeze(), at == end)?;
        shared.stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
        tokio::task::yield_now().await;
    }
    if let Some((_, fault)) = cut {
        shared.stats.faults.fetch_add(1, Ordering::Relaxed);
        match fault {
            Fault::Truncate => stream.send_data(Bytes::new(), true)?,
            Fault::Reset => stream.send_reset(h2::Reason::INTERNAL_ERROR),
        }
    }
    Ok(())
}

/// A stream whose first reads give back bytes already read from it (the h2c preface the
/// registry looked at), then read from it again.
struct Rewind<S> {
    read: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Rewind<S> {
    fn new(read: Vec<u8>, inner: S) -> Rewind<S> {
        Rewind { read, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.read.len() {
            let n = (this.read.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.read[this.at..this.at + n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

fn connection_header(keep_alive: bool) -> &'static str {
    if keep_alive {
        ""
    } else {
        "connection: close\r\n"
    }
}

fn query_u64(query: &str, key: &str) -> Option<u64> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

/// What a `Range` header asks for, against a body of `total` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// Serve the whole body (no usable single byte range: RFC 9110 lets a server ignore it).
    Ignore,
    /// Bytes `a..=b`.
    Satisfiable(u64, u64),
    /// 416.
    Unsatisfiable,
}

fn byte_range(header: &str, total: u64) -> RangeAsk {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return RangeAsk::Ignore;
    };
    if spec.contains(',') {
        return RangeAsk::Ignore;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAsk::Ignore;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), _) if a >= total => RangeAsk::Unsatisfiable,
        (Ok(a), Ok(b)) if b >= a => RangeAsk::Satisfiable(a, b.min(total - 1)),
        (Ok(_), Ok(_)) => RangeAsk::Ignore,
        (Ok(a), Err(_)) if b.is_empty() => RangeAsk::Satisfiable(a, total - 1),
        (Err(_), Ok(n)) if a.is_empty() => {
            if n == 0 || total == 0 {
                RangeAsk::Unsatisfiable
            } else {
                RangeAsk::Satisfiable(total - n.min(total), total - 1)
            }
        }
        _ => RangeAsk::Ignore,
    }
}

/// The reason phrase of the statuses the registry answers with.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_files() {
        let ids = model_ids();
        assert_eq!(ids.len(), MODELS);
        assert_eq!(sanitize(TINY_LLM), "arnir0_Tiny-LLM");
        let unique: std::collections::BTreeSet<_> = ids.iter().map(|i| sanitize(i)).collect();
        assert_eq!(unique.len(), MODELS);
        for id in &ids {
            let s = sanitize(id);
            assert!(lookup(&s, "main", "config.json").is_some(), "{id}");
            assert!(lookup(&s, "main", "README.md").is_some(), "{id}");
            assert_eq!(lookup(&s, "main", "model.zip").is_some(), id == TINY_LLM);
            assert!(lookup(&s, "v2", "config.json").is_none());
        }
        assert!(lookup("stampede-sim_model-500", "main", "README.md").is_none());
        assert!(lookup("stampede-sim_model-1", "main", "README.md").is_none());
        assert_eq!(
            lookup("arnir0_Tiny-LLM", "main", "model.zip")
                .unwrap()
                .len(),
            TINY_LLM_BYTES
        );
    }

    #[test]
    fn fill_is_the_same_from_any_offset() {
        let mut whole = vec![0u8; 3 * PERIOD];
        fill(0, &mut whole);
        assert_eq!(whole[..PERIOD], whole[PERIOD..2 * PERIOD]);
        for start in [0usize, 1, 7, 8, 9, 333, PERIOD - 1, PERIOD + 5] {
            let mut part = vec![0u8; 3 * PERIOD - start];
            fill(start as u64, &mut part);
            assert_eq!(part, whole[start..], "from {start}");
        }
    }

    /// The digest published as `TINY_LLM_SHA256` is the generated archive's.
    #[test]
    fn tiny_llm_digest() {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; BLOCK];
        let mut at = 0;
        while at < TINY_LLM_BYTES {
            let n = ((TINY_LLM_BYTES - at) as usize).min(BLOCK);
            File::Zip.read(at, &mut buf[..n]);
            h.update(&buf[..n]);
            at += n as u64;
        }
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, TINY_LLM_SHA256);
    }

    #[test]
    fn ranges() {
        assert_eq!(byte_range("bytes=0-9", 100), RangeAsk::Satisfiable(0, 9));
        assert_eq!(byte_range("bytes=90-", 100), RangeAsk::Satisfiable(90, 99));
        assert_eq!(
            byte_range("bytes=90-1000", 100),
            RangeAsk::Satisfiable(90, 99)
        );
        assert_eq!(byte_range("bytes=-10", 100), RangeAsk::Satisfiable(90, 99));
        assert_eq!(byte_range("bytes=-1000", 100), RangeAsk::Satisfiable(0, 99));
        assert_eq!(byte_range("bytes=100-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(byte_range("bytes=-0", 100), RangeAsk::Unsatisfiable);
        assert_eq!(byte_range("bytes=5-2", 100), RangeAsk::Ignore);
        assert_eq!(byte_range("bytes=0-1,5-6", 100), RangeAsk::Ignore);
        assert_eq!(byte_range("items=0-1", 100), RangeAsk::Ignore);
    }
}
