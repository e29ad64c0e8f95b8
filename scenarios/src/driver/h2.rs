//! HTTP/2 client connections for the HTTP drivers: a pool of a few connections per driver
//! and worker, shared by all its users, each user one stream at a time (the `h2` crate).
//!
//! A driver makes one [`H2Pool`]; each of its sessions takes an [`H2Client`], which picks
//! connection `session_index % N` (N is `[http] connections`, or one per 100 sessions made so
//! far) at each request, keeps a handle to it, and replaces it when the connection is gone
//! (GOAWAY received, closed, failed). Connections are made lazily over
//! [`Endpoint::connect`]: ALPN `h2` on `https://`, h2c with prior knowledge on `http://`.
//! The server's `SETTINGS_MAX_CONCURRENT_STREAMS` is respected by `h2` itself: a stream over
//! the limit waits for a free one (under the request's timeout), it does not fail.
//!
//! It does not retry a request that was sent, push, or speak HTTP/1.1: `auto` falls back to
//! [`super::h1`] in the driver when ALPN picks `http/1.1` ([`Opened::Http1`]).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use stampede_kstamp::stamped::{Arrival, StampedStream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::transport::{ConnectTimes, Connected, Endpoint, Io};
use crate::recorder::{Failure, io_kind};

/// Sessions per connection when `[http] connections` is not set.
pub const SESSIONS_PER_CONNECTION: usize = 100;

/// The stream window a connection offers (per stream): large enough that a download is not
/// held back by window updates on loopback or a LAN.
const STREAM_WINDOW: u32 = 1 << 20;
/// The connection window, shared by the streams.
const CONNECTION_WINDOW: u32 = 16 << 20;

/// What ALPN must give for a pool to use HTTP/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiation {
    /// HTTP/2 or a failure (`version = "2"`).
    Required,
    /// HTTP/2 if the server picks it by ALPN, else the connection goes back to the caller for
    /// HTTP/1.1 (`version = "auto"` on `https://`).
    Preferred,
}

/// One driver's HTTP/2 connections on one worker.
pub struct H2Pool {
    endpoint: Endpoint,
    negotiation: Negotiation,
    /// `[http] connections`; `None`: one per [`SESSIONS_PER_CONNECTION`] sessions.
    configured: Option<usize>,
    /// Whether reads note kernel receive timestamps (the llm driver's token times).
    stamp: bool,
    /// Sessions made so far: the next session's index.
    sessions: AtomicUsize,
    /// The connection of each slot, made on first use. The outer lock is held only to find or
    /// add a slot (no await); a slot's async lock is held while its connection is made, so
    /// that the users waiting for it share one connect instead of each making their own.
    slots: Mutex<Vec<Arc<tokio::sync::Mutex<Option<H2Conn>>>>>,
}

impl H2Pool {
    /// A pool connecting to `endpoint` (whose TLS offers `h2`), with `connections` connections
    /// (`None`: derived from the sessions), stamping reads with kernel times when `stamp`.
    pub fn new(
        endpoint: Endpoint,
        negotiation: Negotiation,
        connections: Option<usize>,
        stamp: bool,
    ) -> H2Pool {
        H2Pool {
            endpoint,
            negotiation,
            configured: connections.map(|n| n.max(1)),
            stamp,
            sessions: AtomicUsize::new(0),
            slots: Mutex::new(Vec::new()),
        }
    }

    /// A session's handle: the next session index.
    pub fn client(self: &Arc<Self>) -> H2Client {
        H2Client {
            pool: self.clone(),
            index: self.sessions.fetch_add(1, Ordering::Relaxed),
            held: None,
        }
    }

    /// How many connections the sessions share now.
    pub fn connections(&self) -> usize {
        self.configured.unwrap_or_else(|| {
            self.sessions
                .load(Ordering::Relaxed)
                .div_ceil(SESSIONS_PER_CONNECTION)
                .max(1)
        })
    }

    fn slot(&self, i: usize) -> Arc<tokio::sync::Mutex<Option<H2Conn>>> {
        // A short critical section (no await while held): find or add the slot.
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        while slots.len() <= i {
            slots.push(Arc::default());
        }
        slots[i].clone()
    }

    /// The live connection of slot `i`, made now if it has none (or a dead one).
    async fn live(&self, i: usize) -> Result<(H2Conn, Option<ConnectTimes>), Opened> {
        let slot = self.slot(i);
        let mut held = slot.lock().await;
        if let Some(c) = held.as_ref().filter(|c| c.is_open()) {
            return Ok((c.clone(), None));
        }
        *held = None;
        let connected = self.endpoint.connect().await.map_err(Opened::Failed)?;
        let times = connected.times;
        let conn = self.start(connected).await?;
        *held = Some(conn.clone());
        Ok((conn, Some(times)))
    }

    /// Start HTTP/2 on a new connection: the ALPN check on TLS, the preface, the connection
    /// task. `Err(Opened::Http1)` when ALPN chose HTTP/1.1 and the pool only prefers HTTP/2.
    async fn start(&self, connected: Connected) -> Result<H2Conn, Opened> {
        if connected.io.is_tls_without_h2() {
            return Err(match self.negotiation {
                Negotiation::Preferred => Opened::Http1(connected),
                Negotiation::Required => Opened::Failed(Failure::Http2(NO_ALPN.into())),
            });
        }
        let (io, arrival) = H2Io::over(connected.io, self.stamp);
        let state = Arc::new(ConnState {
            arrival,
            first: AtomicU8::new(FIRST_NONE),
            closed: AtomicBool::new(false),
            goaway: AtomicU32::new(NO_GOAWAY),
        });
        let io = Probed {
            io,
            state: state.clone(),
            frames: Frames::default(),
        };
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| Opened::Failed(failure_of(&e, &state)))?;
        let task_state = state.clone();
        tokio::spawn(async move {
            // Ends when the server closes, the connection fails or every handle is dropped;
            // its error (if any) reaches the streams, which record it.
            let _ = connection.await;
            task_state.closed.store(true, Ordering::Release);
        });
        Ok(H2Conn { send, state })
    }
}

/// How `[http] version` applies to a target (`secure`: `https://`): `None` for HTTP/1.1
/// (`"1.1"`, and `"auto"` on `http://`), else what ALPN must give.
pub fn negotiation(version: crate::model::HttpVersion, secure: bool) -> Option<Negotiation> {
    use crate::model::HttpVersion;
    match (version, secure) {
        (HttpVersion::Http1, _) | (HttpVersion::Auto, false) => None,
        (HttpVersion::Http2, _) => Some(Negotiation::Required),
        (HttpVersion::Auto, true) => Some(Negotiation::Preferred),
    }
}

/// The HTTP/2 head of a request: `uri` absolute (h2 takes `:scheme` and `:authority` from
/// it), with `headers` less those HTTP/2 forbids (`host` becomes `:authority`; `connection`,
/// `keep-alive`, `transfer-encoding`, ...; `te` unless `trailers`).
pub fn request_head(
    method: &http::Method,
    uri: &str,
    headers: &http::HeaderMap,
) -> Result<http::Request<()>, super::DriverError> {
    use http::header::{self, HeaderName};
    let uri: http::Uri = uri
        .parse()
        .map_err(|e| super::DriverError::Invalid(format!("request URI `{uri}`: {e}")))?;
    let mut head = http::Request::new(());
    *head.method_mut() = method.clone();
    *head.uri_mut() = uri;
    *head.version_mut() = http::Version::HTTP_2;
    for (name, value) in headers {
        let connection_specific = [
            header::HOST,
            header::CONNECTION,
            header::TRANSFER_ENCODING,
            header::UPGRADE,
            HeaderName::from_static("keep-alive"),
            HeaderName::from_static("proxy-connection"),
        ]
        .contains(name)
            || (name == header::TE && value != "trailers");
        if !connection_specific {
            head.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(head)
}

/// The failure of `version = "2"` against a TLS server whose ALPN did not pick `h2`.
const NO_ALPN: &str = "server did not agree to h2 (ALPN)";

/// Why no HTTP/2 connection came out of [`H2Client::connection`].
pub enum Opened {
    /// The request failed (connect, TLS, ALPN under `version = "2"`).
    Failed(Failure),
    /// ALPN chose HTTP/1.1 under `auto`: the connection, for an HTTP/1.1 client.
    Http1(Connected),
}

/// One session's way to the pool: its index, and the connection it used last.
pub struct H2Client {
    pool: Arc<H2Pool>,
    index: usize,
    /// The slot and connection of the last request, while alive.
    held: Option<(usize, H2Conn)>,
}

impl H2Client {
    /// The connection for the next request, and the connect times when it was made for it
    /// (`None`: reused). A connection that can take no more streams (GOAWAY received, closed)
    /// is replaced: no request had gone out on it for this call.
    pub async fn connection(&mut self) -> Result<(H2Conn, Option<ConnectTimes>), Opened> {
        let slot = self.index % self.pool.connections();
        if let Some((s, c)) = &mut self.held
            && *s == slot
            && c.is_open()
            && c.can_open()
        {
            return Ok((c.clone(), None));
        }
        self.held = None;
        // At most twice: a slot's connection can turn out dead at the check, then it is made
        // again.
        let mut tries = 0;
        loop {
            tries += 1;
            let (mut c, times) = self.pool.live(slot).await?;
            if times.is_some() || c.can_open() || tries == 2 {
                self.held = Some((slot, c.clone()));
                return Ok((c, times));
            }
            c.state.closed.store(true, Ordering::Release);
        }
    }

    /// Forget the held connection (after a timeout: its state is unknown; the pool replaces
    /// it once it is closed).
    pub fn forget(&mut self) {
        self.held = None;
    }
}

/// A connection's shared state: what its reads saw, and whether its task ended.
struct ConnState {
    /// The arrival of the newest bytes read (kernel receive time when stamping is on).
    arrival: Arrival,
    /// What the first bytes from the server looked like ([`FIRST_NONE`], ...).
    first: AtomicU8,
    /// The connection takes no more streams: its task ended, or a client found it refusing
    /// new streams (a GOAWAY received) and it is to be replaced.
    closed: AtomicBool,
    /// The error code of the GOAWAY the server sent ([`NO_GOAWAY`]: none yet).
    goaway: AtomicU32,
}

/// [`ConnState::goaway`] before any GOAWAY.
const NO_GOAWAY: u32 = u32::MAX;

/// No bytes from the server yet.
const FIRST_NONE: u8 = 0;
/// The server's first bytes are an HTTP/1 answer (`HTTP/1.1 400 ...`): not an h2c server.
const FIRST_HTTP1: u8 = 1;
/// The server's first bytes are (presumably) HTTP/2 frames.
const FIRST_FRAMES: u8 = 2;

/// A live HTTP/2 connection: send requests on it, one stream each.
#[derive(Clone)]
pub struct H2Conn {
    send: h2::client::SendRequest<Bytes>,
    state: Arc<ConnState>,
}

impl H2Conn {
    fn is_open(&self) -> bool {
        !self.state.closed.load(Ordering::Acquire)
    }

    /// Whether a stream can be opened now: no connection error and no GOAWAY received (a
    /// poll that does not wait; this handle has no stream waiting to open).
    fn can_open(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        !matches!(self.send.poll_ready(&mut cx), Poll::Ready(Err(_)))
    }

    /// Send `head` (an absolute URI: h2 takes `:scheme` and `:authority` from it) with `body`
    /// (empty: none) and wait for the response head. A stream over the server's concurrency
    /// limit waits here until one is free.
    pub async fn send(
        &mut self,
        head: http::Request<()>,
        body: &Bytes,
    ) -> Result<H2Response, Failure> {
        let state = self.state.clone();
        let fail = |e: h2::Error| failure_of(&e, &state);
        poll_fn(|cx| self.send.poll_ready(cx)).await.map_err(fail)?;
        let (response, mut stream) = self
            .send
            .send_request(head, body.is_empty())
            .map_err(fail)?;
        if !body.is_empty() {
            stream.send_data(body.clone(), true).map_err(fail)?;
        }
        let response = response.await.map_err(fail)?;
        let content_length = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        Ok(H2Response {
            status: response.status().as_u16(),
            content_length,
            body: response.into_body(),
            state: self.state.clone(),
            _send: stream,
        })
    }
}

/// A response whose head has arrived; read its body with [`H2Response::read_body_stamped`].
pub struct H2Response {
    /// The status code.
    pub status: u16,
    /// The `content-length` the server announced, if any (`h2` holds the body to it).
    content_length: Option<u64>,
    body: h2::RecvStream,
    state: Arc<ConnState>,
    /// The request's side of the stream, kept until the answer is read (dropping it early
    /// would not reset the stream, but keeps ownership plain).
    _send: h2::SendStream<Bytes>,
}

impl H2Response {
    /// Read the body, handing each DATA chunk to `on_data` with its arrival time; the body's
    /// length, or `Err((bytes read, failure))`.
    ///
    /// The arrival time is the connection's [`Arrival`] when the chunk is polled here: the
    /// kernel receive time of the newest bytes the connection task had read by then (with
    /// stamping on), else the moment of the poll. The connection task reads for every stream
    /// of the connection, so under load a chunk can carry the arrival of a later read (another
    /// stream's bytes, or more bytes of this one read in the same batch): a time at most one
    /// socket read late, never earlier than the chunk's bytes arrived. Without kernel stamps
    /// it is the time this task got the chunk, which includes the worker's own delays.
    pub async fn read_body_stamped(
        &mut self,
        mut on_data: impl FnMut(&[u8], Instant),
    ) -> Result<u64, (u64, Failure)> {
        let mut total = 0u64;
        while let Some(chunk) = self.body.data().await {
            let chunk = chunk.map_err(|e| (total, self.body_failure(&e, total)))?;
            let at = self.state.arrival.last().unwrap_or_else(Instant::now);
            total += chunk.len() as u64;
            on_data(&chunk, at);
            // Give the window back at once: the body is never held whole.
            let _ = self.body.flow_control().release_capacity(chunk.len());
        }
        Ok(total)
    }

    /// The failure of a body read that failed after `total` bytes. `h2` resets the stream
    /// itself (PROTOCOL_ERROR) when the server ends it short of its `content-length`: that is
    /// a short body, as a clean close too early is on HTTP/1.1. (It does the same for a body
    /// longer than announced, whose last frame it drops: then `total` may be short too; a
    /// server doing that is broken either way.)
    fn body_failure(&self, e: &h2::Error, total: u64) -> Failure {
        let reset_by_h2 = e.is_reset() && e.is_library();
        if reset_by_h2
            && e.reason() == Some(h2::Reason::PROTOCOL_ERROR)
            && self.content_length.is_some_and(|n| total < n)
        {
            return Failure::short_body();
        }
        failure_of(e, &self.state)
    }

    /// [`H2Response::read_body_stamped`] without the times.
    pub async fn read_body(
        &mut self,
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<u64, (u64, Failure)> {
        self.read_body_stamped(|d, _| on_data(d)).await
    }
}

/// The failure an HTTP/2 error records: a GOAWAY or a stream reset with its reason's name, an
/// I/O failure by kind, or the answer of a server that does not speak HTTP/2.
fn failure_of(e: &h2::Error, state: &ConnState) -> Failure {
    match state.first.load(Ordering::Acquire) {
        FIRST_HTTP1 => return Failure::Http2("server answered HTTP/1.1 (no h2c)".into()),
        FIRST_NONE if e.is_io() || e.is_go_away() && !e.is_remote() => {
            return Failure::Http2("server closed without an HTTP/2 answer".into());
        }
        _ => {}
    }
    let goaway = state.goaway.load(Ordering::Acquire);
    if goaway != NO_GOAWAY && !(e.is_reset() && e.is_remote()) {
        // The server said why before closing: streams it had taken end with the connection
        // (an I/O error, or h2's own GOAWAY error), and the reason is the cause.
        return Failure::Http2(format!("GOAWAY ({:?})", h2::Reason::from(goaway)));
    }
    if let Some(io) = e.get_io() {
        return crate::tls::failure_of(io).unwrap_or(Failure::Io(io_kind(io)));
    }
    let reason = e.reason().unwrap_or(h2::Reason::INTERNAL_ERROR);
    Failure::Http2(if e.is_go_away() && e.is_remote() {
        format!("GOAWAY ({reason:?})")
    } else if e.is_reset() && e.is_remote() {
        format!("stream reset ({reason:?})")
    } else if e.is_go_away() || e.is_reset() {
        // Sent by this side: the server broke the protocol (or a user error).
        format!("protocol error ({reason:?})")
    } else {
        "request refused by the client library".to_string()
    })
}

impl Io {
    /// TLS whose ALPN did not pick `h2`.
    fn is_tls_without_h2(&self) -> bool {
        matches!(self, Io::Tls(_)) && self.alpn() != Some(b"h2")
    }
}

/// An HTTP/2 connection's stream: TLS over a [`StampedStream`] as made, or the plain TCP
/// stream wrapped in one so that plaintext h2c reads are stamped too.
enum H2Io {
    Plain(StampedStream),
    Tls(Box<tokio_rustls::client::TlsStream<StampedStream>>),
}

impl H2Io {
    /// The connection as an HTTP/2 stream, and its reads' arrival.
    fn over(io: Io, stamp: bool) -> (H2Io, Arrival) {
        match io {
            Io::Plain(tcp) => {
                let (s, arrival) = StampedStream::new(tcp, stamp);
                (H2Io::Plain(s), arrival)
            }
            Io::Tls(mut s) => {
                if stamp {
                    s.get_mut().0.stamp_arrivals();
                }
                let arrival = s.get_ref().0.arrival().clone();
                (H2Io::Tls(s), arrival)
            }
        }
    }
}

/// [`H2Io`] noting what the server's first bytes look like (HTTP/2 frames or an HTTP/1
/// answer), for the failure of a server that does not speak h2c, and the reason of a GOAWAY
/// it sends ([`Frames`]).
struct Probed {
    io: H2Io,
    state: Arc<ConnState>,
    frames: Frames,
}

/// Follows the frame boundaries of what the server sends, to note a GOAWAY's error code:
/// `h2` reports a GOAWAY to the streams above its last stream id only, and the ones below
/// it then end with the connection's close, whose I/O error hides the reason.
///
/// A frame is a 9-byte header (length: 24 bits, type: 8, flags: 8, stream id: 32) and its
/// payload; a GOAWAY (type 7) payload is the last stream id (32 bits), the error code (32)
/// and debug data.
#[derive(Default)]
struct Frames {
    head: [u8; 9],
    /// Header bytes gathered so far (9: in the payload).
    have: usize,
    /// Payload bytes left of the current frame.
    left: u32,
    /// How far into the current frame's payload, for a GOAWAY.
    at: u32,
    /// The current frame is a GOAWAY; its first 8 payload bytes.
    goaway: Option<[u8; 8]>,
}

impl Frames {
    /// Follow `data`; a GOAWAY's error code once its first 8 payload bytes are in.
    fn feed(&mut self, mut data: &[u8]) -> Option<u32> {
        let mut found = None;
        while !data.is_empty() {
            if self.have < 9 {
                let take = (9 - self.have).min(data.len());
                self.head[self.have..self.have + take].copy_from_slice(&data[..take]);
                self.have += take;
                data = &data[take..];
                if self.have == 9 {
                    let h = self.head;
                    self.left = u32::from_be_bytes([0, h[0], h[1], h[2]]);
                    self.at = 0;
                    self.goaway = (h[3] == 7).then_some([0; 8]);
                    if self.left == 0 {
                        self.have = 0;
                    }
                }
                continue;
            }
            let take = data.len().min(self.left as usize);
            if let Some(g) = &mut self.goaway {
                for (i, &b) in data[..take].iter().enumerate() {
                    let pos = self.at as usize + i;
                    if pos < 8 {
                        g[pos] = b;
                        if pos == 7 {
                            found = Some(u32::from_be_bytes([g[4], g[5], g[6], g[7]]));
                        }
                    }
                }
            }
            // `take` is at most `left`, a u32.
            self.left -= take as u32;
            self.at += take as u32;
            data = &data[take..];
            if self.left == 0 {
                self.have = 0;
            }
        }
        found
    }
}

impl AsyncRead for Probed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = match &mut this.io {
            H2Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            H2Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        let got = &buf.filled()[before..];
        if !got.is_empty() && this.state.first.load(Ordering::Relaxed) == FIRST_NONE {
            let first = if got.starts_with(b"HTTP/") {
                FIRST_HTTP1
            } else {
                FIRST_FRAMES
            };
            this.state.first.store(first, Ordering::Release);
        }
        if this.state.first.load(Ordering::Relaxed) == FIRST_FRAMES
            && let Some(code) = this.frames.feed(got)
        {
            this.state.goaway.store(code, Ordering::Release);
        }
        r
    }
}

impl AsyncWrite for Probed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            H2Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            H2Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            H2Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            H2Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            H2Io::Plain(s) => s.is_write_vectored(),
            H2Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            H2Io::Plain(s) => Pin::new(s).poll_flush(cx),
            H2Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            H2Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            H2Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::time::Duration;
    use tokio::net::TcpListener;

    const BODY: &[u8] = &[b'x'; 1024];

    fn endpoint(addr: &str) -> Endpoint {
        let uri: http::Uri = format!("http://{addr}").parse().unwrap();
        Endpoint::of(&uri, None, crate::tls::Alpn::Http2).unwrap()
    }

    fn get(addr: &str) -> http::Request<()> {
        http::Request::get(format!("http://{addr}/1k"))
            .body(())
            .unwrap()
    }

    /// One request on `client`: the body's length or the failure, and whether it opened a
    /// connection.
    async fn one(client: &mut H2Client, addr: &str) -> (Result<u64, Failure>, bool) {
        let (mut conn, times) = match client.connection().await {
            Ok(c) => c,
            Err(Opened::Failed(f)) => return (Err(f), false),
            Err(Opened::Http1(_)) => panic!("h2 required"),
        };
        let opened = times.is_some();
        let result = async {
            let mut r = conn.send(get(addr), &Bytes::new()).await?;
            r.read_body(|_| {}).await.map_err(|(_, f)| f)
        };
        let result = tokio::time::timeout(Duration::from_secs(5), result)
            .await
            .unwrap_or(Err(Failure::Timeout));
        (result, opened)
    }

    /// A hyper HTTP/2 (h2c) server answering 1 KiB to everything; how many connections it
    /// accepted.
    async fn hyper_h2c() -> (String, Arc<AtomicUsize>) {
        use hyper::service::service_fn;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    let service = service_fn(|_req| async {
                        Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                            Bytes::from_static(BODY),
                        )))
                    });
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
                });
            }
        });
        (addr, accepted)
    }

    /// An `h2` server (hyper's cannot pick a GOAWAY reason or reset a stream): `answer` says
    /// what to do with request `n` (counted over all connections) of connection `c`; how many
    /// connections it accepted, and the most streams it had open at once.
    async fn h2_server(
        answer: fn(c: usize, n: usize) -> Answer,
        max_streams: Option<u32>,
    ) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (count, peak) = (accepted.clone(), most.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let c = count.fetch_add(1, Ordering::Relaxed);
                let (requests, peak) = (requests.clone(), peak.clone());
                tokio::spawn(async move {
                    let mut builder = h2::server::Builder::new();
                    if let Some(m) = max_streams {
                        builder.max_concurrent_streams(m);
                    }
                    let Ok(mut conn) = builder.handshake::<_, Bytes>(tcp).await else {
                        return;
                    };
                    let open = Arc::new(AtomicUsize::new(0));
                    while let Some(Ok((_req, mut respond))) = conn.accept().await {
                        let n = requests.fetch_add(1, Ordering::Relaxed);
                        match answer(c, n) {
                            Answer::Body(delay) => {
                                let (open, peak) = (open.clone(), peak.clone());
                                tokio::spawn(async move {
                                    let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                                    peak.fetch_max(now, Ordering::SeqCst);
                                    tokio::time::sleep(delay).await;
                                    open.fetch_sub(1, Ordering::SeqCst);
                                    let head = http::Response::new(());
                                    let mut body = respond.send_response(head, false).unwrap();
                                    let _ = body.send_data(Bytes::from_static(BODY), true);
                                });
                            }
                            Answer::Reset(reason) => respond.send_reset(reason),
                            Answer::GoAway(reason) => {
                                conn.abrupt_shutdown(reason);
                                // Drive the connection until the GOAWAY is out and it closes.
                                while conn.accept().await.is_some() {}
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted, most)
    }

    enum Answer {
        Body(Duration),
        Reset(h2::Reason),
        GoAway(h2::Reason),
    }

    /// 40 users sharing 2 connections all get their answers; the server saw exactly 2
    /// connections, and 2 requests opened them.
    #[tokio::test]
    async fn many_users_share_the_configured_connections() {
        let (addr, accepted) = hyper_h2c().await;
        let pool = Arc::new(H2Pool::new(
            endpoint(&addr),
            Negotiation::Required,
            Some(2),
            false,
        ));
        let mut users = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let mut client = pool.client();
            let addr = addr.clone();
            users.spawn(async move {
                let mut opened = 0;
                for _ in 0..25 {
                    let (r, o) = one(&mut client, &addr).await;
                    assert_eq!(r, Ok(1024));
                    opened += usize::from(o);
                }
                opened
            });
        }
        let opened: usize = users.join_all().await.into_iter().sum();
        assert_eq!(opened, 2, "requests that opened a connection");
        assert_eq!(accepted.load(Ordering::Relaxed), 2, "server connections");
    }

    /// Without `connections`, one per 100 sessions.
    #[tokio::test]
    async fn connections_default_to_one_per_100_sessions() {
        let pool = Arc::new(H2Pool::new(
            endpoint("127.0.0.1:1"),
            Negotiation::Required,
            None,
            false,
        ));
        let clients: Vec<_> = (0..100).map(|_| pool.client()).collect();
        assert_eq!(pool.connections(), 1);
        let more: Vec<_> = (0..150).map(|_| pool.client()).collect();
        assert_eq!(pool.connections(), 3);
        drop((clients, more));
    }

    /// A GOAWAY with ENHANCE_YOUR_CALM fails the request in flight with that reason's name;
    /// the next request goes out on a new connection and succeeds.
    #[tokio::test]
    async fn goaway_is_a_failure_and_later_requests_reconnect() {
        fn answer(c: usize, _n: usize) -> Answer {
            if c == 0 {
                Answer::GoAway(h2::Reason::ENHANCE_YOUR_CALM)
            } else {
                Answer::Body(Duration::ZERO)
            }
        }
        let (addr, accepted, _) = h2_server(answer, None).await;
        let pool = Arc::new(H2Pool::new(
            endpoint(&addr),
            Negotiation::Required,
            Some(1),
            false,
        ));
        let mut client = pool.client();
        let (r, opened) = one(&mut client, &addr).await;
        assert_eq!(r, Err(Failure::Http2("GOAWAY (ENHANCE_YOUR_CALM)".into())));
        assert!(opened);
        assert_eq!(
            Failure::Http2("GOAWAY (ENHANCE_YOUR_CALM)".into()).to_string(),
            "http2: GOAWAY (ENHANCE_YOUR_CALM)"
        );
        for i in 0..5 {
            let (r, opened) = one(&mut client, &addr).await;
            assert_eq!(r, Ok(1024), "request {i} after the GOAWAY");
            assert_eq!(opened, i == 0, "only the first opens a new connection");
        }
        assert_eq!(accepted.load(Ordering::Relaxed), 2);
    }

    /// RST_STREAM with REFUSED_STREAM fails that request with the reason's name; the
    /// connection stays and carries the next one.
    #[tokio::test]
    async fn a_refused_stream_is_a_reset_failure() {
        fn answer(_c: usize, n: usize) -> Answer {
            if n == 0 {
                Answer::Reset(h2::Reason::REFUSED_STREAM)
            } else {
                Answer::Body(Duration::ZERO)
            }
        }
        let (addr, accepted, _) = h2_server(answer, None).await;
        let pool = Arc::new(H2Pool::new(
            endpoint(&addr),
            Negotiation::Required,
            None,
            false,
        ));
        let mut client = pool.client();
        let (r, _) = one(&mut client, &addr).await;
        assert_eq!(
            r,
            Err(Failure::Http2("stream reset (REFUSED_STREAM)".into()))
        );
        let (r, opened) = one(&mut client, &addr).await;
        assert_eq!((r, opened), (Ok(1024), false));
        assert_eq!(accepted.load(Ordering::Relaxed), 1);
    }

    /// A server allowing 2 concurrent streams gets at most 2 at a time from 10 users on one
    /// connection, and every request succeeds (they wait, they do not fail).
    #[tokio::test]
    async fn the_servers_stream_limit_is_waited_for() {
        fn answer(_c: usize, _n: usize) -> Answer {
            Answer::Body(Duration::from_millis(20))
        }
        let (addr, accepted, most) = h2_server(answer, Some(2)).await;
        let pool = Arc::new(H2Pool::new(
            endpoint(&addr),
            Negotiation::Required,
            Some(1),
            false,
        ));
        // The first request learns the server's SETTINGS before the others go out together.
        let (r, _) = one(&mut pool.client(), &addr).await;
        assert_eq!(r, Ok(1024));
        let mut users = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let mut client = pool.client();
            let addr = addr.clone();
            users.spawn(async move {
                for _ in 0..3 {
                    assert_eq!(one(&mut client, &addr).await.0, Ok(1024));
                }
            });
        }
        users.join_all().await;
        assert_eq!(most.load(Ordering::SeqCst), 2, "streams open at once");
        assert_eq!(accepted.load(Ordering::Relaxed), 1);
    }

    /// A connection the server closed is replaced for the next request.
    #[tokio::test]
    async fn a_dead_connection_is_replaced() {
        let (addr, accepted) = hyper_h2c().await;
        let pool = Arc::new(H2Pool::new(
            endpoint(&addr),
            Negotiation::Required,
            Some(1),
            false,
        ));
        let mut client = pool.client();
        assert_eq!(one(&mut client, &addr).await, (Ok(1024), true));
        // Kill the connection under the pool (as a server restart would).
        let held = client.held.as_ref().unwrap().1.clone();
        held.state.closed.store(true, Ordering::Release);
        assert_eq!(one(&mut client, &addr).await, (Ok(1024), true));
        assert_eq!(accepted.load(Ordering::Relaxed), 2);
    }

    /// h2c prior knowledge against an HTTP/1.1-only server is a named failure, not a hang.
    #[tokio::test]
    async fn h2c_against_an_http1_server_is_named() {
        use hyper::service::service_fn;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let service = service_fn(|_req| async {
                        Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                            Bytes::from_static(BODY),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        let pool = Arc::new(H2Pool::new(
            endpoint(&addr),
            Negotiation::Required,
            None,
            false,
        ));
        let (r, _) = one(&mut pool.client(), &addr).await;
        let f = r.unwrap_err();
        // hyper's HTTP/1 server hangs up on the preface.
        assert_eq!(
            f.to_string(),
            "http2: server closed without an HTTP/2 answer"
        );

        // Others (nginx without `http2` on the port) answer 400 in HTTP/1.1.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = tcp.read(&mut buf).await;
            let answer = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
            tcp.write_all(answer).await.unwrap();
            let _ = tcp.read(&mut buf).await;
        });
        let pool = Arc::new(H2Pool::new(
            endpoint(&addr),
            Negotiation::Required,
            None,
            false,
        ));
        let (r, _) = one(&mut pool.client(), &addr).await;
        assert_eq!(
            r.unwrap_err().to_string(),
            "http2: server answered HTTP/1.1 (no h2c)"
        );
    }

    /// A GOAWAY's code is found after any frames, however the bytes are split into reads.
    #[test]
    fn frames_find_a_goaway_across_any_split() {
        let mut bytes = vec![0, 0, 3, 0, 1, 0, 0, 0, 1, b'a', b'b', b'c'];
        bytes.extend_from_slice(&[0, 0, 0, 4, 1, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[
            0, 0, 10, 7, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 11, b'x', b'y',
        ]);
        for cut in 0..bytes.len() {
            let mut f = Frames::default();
            let (a, b) = bytes.split_at(cut);
            let found = f.feed(a).or(f.feed(b));
            assert_eq!(found, Some(11), "split at {cut}");
        }
    }

    /// A TLS server offering `alpn` by ALPN (self-signed; the client trusts anything).
    async fn tls_server(alpn: &[&[u8]]) -> String {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = rustls::pki_types::CertificateDer::from(c.cert.der().to_vec());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(c.key_pair.serialize_der().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let mut buf = [0u8; 1024];
                        while tls.read(&mut buf).await.is_ok_and(|n| n > 0) {}
                    }
                });
            }
        });
        addr
    }

    fn tls_endpoint(addr: &str) -> Endpoint {
        let uri: http::Uri = format!("https://{addr}").parse().unwrap();
        let tls = crate::tls::TlsFile {
            insecure: true,
            ..Default::default()
        };
        Endpoint::of(&uri, Some(&tls), crate::tls::Alpn::Any).unwrap()
    }

    /// `version = "2"` against a TLS server that speaks HTTP/1.1 only is a named failure;
    /// under `auto` the connection comes back for HTTP/1.1.
    #[tokio::test]
    async fn tls_without_h2_by_alpn() {
        let addr = tls_server(&[b"http/1.1"]).await;
        let pool = Arc::new(H2Pool::new(
            tls_endpoint(&addr),
            Negotiation::Required,
            None,
            false,
        ));
        let (r, opened) = one(&mut pool.client(), &addr).await;
        assert_eq!(
            r.unwrap_err().to_string(),
            "http2: server did not agree to h2 (ALPN)"
        );
        assert!(!opened);
        let pool = Arc::new(H2Pool::new(
            tls_endpoint(&addr),
            Negotiation::Preferred,
            None,
            false,
        ));
        match pool.client().connection().await {
            Err(Opened::Http1(c)) => assert_eq!(c.io.alpn(), Some(&b"http/1.1"[..])),
            Err(Opened::Failed(f)) => panic!("{f}"),
            Ok(_) => panic!("h2 without ALPN h2"),
        }
    }
}
