//! A small HTTP/1.1 client connection for load generation: requests go out as bytes prepared
//! once, responses are parsed in one fixed buffer and bodies are handed out slice by slice as
//! they arrive (a body is never held whole, and a streaming reader sees each chunk's arrival).
//!
//! It does exactly what a load generator needs and no more: keep-alive, `Content-Length`,
//! `chunked` and close-delimited bodies, bodiless answers (`HEAD`, 1xx, 204, 304), and a check
//! for a connection the server closed while idle. No redirects, no retries, no pipelining, no
//! decompression. A connection costs one socket and one 4 KiB buffer (growing only for a head
//! that does not fit), which is what lets one worker hold 10,000 users.
//!
//! Arrival times: every read notes when its bytes arrived ([`H1Conn::read_body_stamped`]). By
//! default that is the moment the read returned. With [`H1Conn::stamp_arrivals`] (Linux) the
//! socket asks the kernel for receive timestamps (`SO_TIMESTAMPNS`) and a read's time is when
//! the newest of its bytes reached the socket, not when this process got round to reading
//! them: a worker busy with other streams delays its reading, never its measurements.

use std::io;
use std::time::Instant;

use stampede_kstamp::stamps;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::TcpStream;

use super::transport::{ConnectTimes, Endpoint, Io};
use crate::recorder::{Failure, io_kind};

/// The buffer a connection reads into.
const BUF: usize = 4096;
/// The largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// The most headers a response head may have.
const MAX_HEADERS: usize = 64;
/// The longest chunk-size line accepted (with extensions).
const MAX_CHUNK_LINE: usize = 1024;

/// Why an exchange failed.
#[derive(Debug)]
pub enum H1Error {
    /// The socket failed.
    Io(io::Error),
    /// The server closed the connection before the response was complete.
    Closed,
    /// The response is not valid HTTP/1.1.
    Invalid(&'static str),
}

impl From<io::Error> for H1Error {
    fn from(e: io::Error) -> Self {
        H1Error::Io(e)
    }
}

impl H1Error {
    /// The failure to record.
    pub fn failure(&self) -> Failure {
        match self {
            H1Error::Io(e) => crate::tls::failure_of(e).unwrap_or(Failure::Io(io_kind(e))),
            H1Error::Closed => Failure::Io("connection closed before the response completed"),
            H1Error::Invalid(why) => Failure::Protocol(why),
        }
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// A response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection can carry another request after this response.
    pub keep_alive: bool,
}

/// One HTTP/1.1 connection, over TCP or TLS.
pub struct H1Conn {
    stream: Io,
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    reusable: bool,
    /// Kernel receive timestamps are on.
    stamped: bool,
    /// When the bytes of the latest read arrived.
    arrived: Instant,
}

impl H1Conn {
    /// Connect to `host:port` (plain TCP).
    pub async fn connect(authority: &str) -> io::Result<H1Conn> {
        let stream = TcpStream::connect(authority).await?;
        let _ = stream.set_nodelay(true);
        Ok(H1Conn::new(stream))
    }

    /// Connect to `endpoint` (TCP, then TLS on `https://`) with a read buffer of `buffer`
    /// bytes (at least 4 KiB); how long the connect and the handshake took.
    pub async fn open(
        endpoint: &Endpoint,
        buffer: usize,
    ) -> Result<(H1Conn, ConnectTimes), Failure> {
        let connected = endpoint.connect().await?;
        Ok((H1Conn::over_buffered(connected.io, buffer), connected.times))
    }

    /// Connect to `host:port` with a read buffer of `buffer` bytes (at least 4 KiB): larger
    /// buffers mean fewer reads for large bodies, still one fixed buffer per connection.
    pub async fn connect_with_buffer(authority: &str, buffer: usize) -> io::Result<H1Conn> {
        let mut c = H1Conn::connect(authority).await?;
        c.buf.resize(buffer.max(BUF), 0);
        Ok(c)
    }

    /// Use a connected stream.
    pub fn new(stream: TcpStream) -> H1Conn {
        H1Conn::over(Io::Plain(stream))
    }

    /// Use a connection (plain or TLS).
    pub fn over(stream: Io) -> H1Conn {
        H1Conn {
            stream,
            buf: vec![0; BUF],
            start: 0,
            end: 0,
            reusable: true,
            stamped: false,
            arrived: Instant::now(),
        }
    }

    /// Use a connection (plain or TLS) with a read buffer of `buffer` bytes (at least 4 KiB).
    pub fn over_buffered(stream: Io, buffer: usize) -> H1Conn {
        let mut c = H1Conn::over(stream);
        c.buf.resize(buffer.max(BUF), 0);
        c
    }

    /// Ask the kernel to time-stamp received bytes, so that [`H1Conn::read_body_stamped`]
    /// reports when bytes arrived rather than when they were read. Returns whether the socket
    /// took it (only on Linux); without it, arrival is the moment a read returns.
    pub fn stamp_arrivals(&mut self) -> bool {
        self.stamped = match &mut self.stream {
            Io::Plain(s) => stamps::enable(s),
            Io::Tls(s) => s.get_mut().0.stamp_arrivals(),
        };
        self.stamped
    }

    /// Whether another request can be sent: the last response was read whole, it allowed
    /// keep-alive, and the server has not closed the connection meanwhile.
    pub fn is_reusable(&mut self) -> bool {
        if !self.reusable || self.start != self.end {
            return false;
        }
        // An idle connection must have nothing to read; a 0-byte read means the server closed.
        let mut probe = [0u8; 1];
        match &mut self.stream {
            Io::Plain(s) => {
                matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Io::Tls(s) => {
                // TLS may read records that carry no data (session tickets, a close_notify):
                // only a pending read with nothing decrypted means idle and open.
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                let mut probe = ReadBuf::new(&mut probe);
                std::pin::Pin::new(s.as_mut())
                    .poll_read(&mut cx, &mut probe)
                    .is_pending()
            }
        }
    }

    /// Write a whole request (head and body).
    pub async fn send(&mut self, request: &[u8]) -> Result<(), H1Error> {
        self.reusable = false;
        self.stream.write_all(request).await?;
        if let Io::Tls(s) = &mut self.stream {
            // TLS buffers records until flushed.
            s.flush().await?;
        }
        Ok(())
    }

    /// Read a response head (skipping `100 Continue` and other 1xx heads). `head_request`: the
    /// request was `HEAD`, so the response has no body whatever its headers say.
    pub async fn read_head(&mut self, head_request: bool) -> Result<Head, H1Error> {
        loop {
            let parsed = {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.buf[self.start..self.end]) {
                    Ok(httparse::Status::Complete(len)) => {
                        Some((len, head_of(&resp, head_request)?))
                    }
                    Ok(httparse::Status::Partial) => None,
                    Err(httparse::Error::TooManyHeaders) => {
                        return Err(H1Error::Invalid("too many response headers"));
                    }
                    Err(_) => return Err(H1Error::Invalid("invalid HTTP response")),
                }
            };
            match parsed {
                Some((len, head)) => {
                    self.start += len;
                    if (100..200).contains(&head.status) && head.status != 101 {
                        continue;
                    }
                    if head.status == 101 {
                        return Err(H1Error::Invalid("unexpected protocol upgrade"));
                    }
                    return Ok(head);
                }
                None => {
                    if self.end - self.start >= MAX_HEAD {
                        return Err(H1Error::Invalid("response head too large"));
                    }
                    if self.fill().await? == 0 {
                        return Err(H1Error::Closed);
                    }
                }
            }
        }
    }

    /// Read the body of `head`, handing each received slice to `on_data`; returns the body's
    /// length. The connection is reusable afterwards if the head allowed it.
    pub async fn read_body(
        &mut self,
        head: &Head,
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<u64, H1Error> {
        self.read_body_stamped(head, |d, _| on_data(d)).await
    }

    /// [`H1Conn::read_body`], with each slice's arrival time: when the read that brought its
    /// last bytes got them (see the module's notes on arrival times).
    pub async fn read_body_stamped(
        &mut self,
        head: &Head,
        mut on_data: impl FnMut(&[u8], Instant),
    ) -> Result<u64, H1Error> {
        let total = match head.framing {
            Framing::Empty => 0,
            Framing::Length(n) => self.read_exact_body(n, &mut on_data).await?,
            Framing::Chunked => self.read_chunked(&mut on_data).await?,
            Framing::Close => {
                let mut total = 0u64;
                loop {
                    if self.start == self.end && self.fill().await? == 0 {
                        break;
                    }
                    total += (self.end - self.start) as u64;
                    on_data(&self.buf[self.start..self.end], self.arrived);
                    self.start = self.end;
                }
                total
            }
        };
        self.reusable = head.keep_alive && head.framing != Framing::Close;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(total)
    }

    async fn read_exact_body(
        &mut self,
        n: u64,
        on_data: &mut impl FnMut(&[u8], Instant),
    ) -> Result<u64, H1Error> {
        let mut left = n;
        while left > 0 {
            if self.start == self.end && self.fill().await? == 0 {
                return Err(H1Error::Closed);
            }
            let take = (self.end - self.start).min(usize::try_from(left).unwrap_or(usize::MAX));
            on_data(&self.buf[self.start..self.start + take], self.arrived);
            self.start += take;
            left -= take as u64;
        }
        Ok(n)
    }

    async fn read_chunked(
        &mut self,
        on_data: &mut impl FnMut(&[u8], Instant),
    ) -> Result<u64, H1Error> {
        let mut total = 0u64;
        loop {
            let line = self.read_line().await?;
            let size = chunk_size(&self.buf[line.clone()])?;
            if size == 0 {
                // Trailers, if any, up to an empty line.
                loop {
                    let line = self.read_line().await?;
                    if line.is_empty() {
                        return Ok(total);
                    }
                }
            }
            total += self.read_exact_body(size, on_data).await?;
            let end = self.read_line().await?;
            if !end.is_empty() {
                return Err(H1Error::Invalid("chunk longer than its size"));
            }
        }
    }

    /// The next CRLF-terminated line, as a range of `buf` (without the CRLF), consumed.
    async fn read_line(&mut self) -> Result<std::ops::Range<usize>, H1Error> {
        let mut searched = 0;
        loop {
            let window = &self.buf[self.start + searched..self.end];
            if let Some(i) = memchr::memchr(b'\n', window) {
                let nl = self.start + searched + i;
                let line_end = if nl > self.start && self.buf[nl - 1] == b'\r' {
                    nl - 1
                } else {
                    nl
                };
                let line = self.start..line_end;
                self.start = nl + 1;
                return Ok(line);
            }
            searched = self.end - self.start;
            if searched > MAX_CHUNK_LINE {
                return Err(H1Error::Invalid("chunk size line too long"));
            }
            if self.fill().await? == 0 {
                return Err(H1Error::Closed);
            }
        }
    }

    /// Read more bytes after the unread ones (moving them to the front, or growing the buffer
    /// for a head that does not fit); returns how many arrived (0: the server closed).
    async fn fill(&mut self) -> Result<usize, H1Error> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let grown = (self.buf.len() * 2).min(MAX_HEAD + BUF);
                if grown <= self.buf.len() {
                    return Err(H1Error::Invalid("response head too large"));
                }
                self.buf.resize(grown, 0);
            }
        }
        let n = match &mut self.stream {
            Io::Plain(stream) if self.stamped => {
                let buf = &mut self.buf[self.end..];
                let (n, arrived) = stream
                    .async_io(Interest::READABLE, || {
                        stamps::recv_stamped(stream, &mut *buf)
                    })
                    .await?;
                self.arrived = arrived.unwrap_or_else(Instant::now);
                n
            }
            Io::Plain(stream) => {
                let n = stream.read(&mut self.buf[self.end..]).await?;
                self.arrived = Instant::now();
                n
            }
            Io::Tls(stream) => {
                // Plaintext comes from the TCP read that completed its record: that read's
                // arrival (the kernel's stamp when on) is the plaintext's.
                let n = stream.read(&mut self.buf[self.end..]).await?;
                self.arrived = stream
                    .get_ref()
                    .0
                    .arrival()
                    .last()
                    .unwrap_or_else(Instant::now);
                n
            }
        };
        self.end += n;
        Ok(n)
    }
}

fn head_of(resp: &httparse::Response<'_, '_>, head_request: bool) -> Result<Head, H1Error> {
    let status = resp.code.ok_or(H1Error::Invalid("invalid HTTP response"))?;
    let http10 = resp.version == Some(0);
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut close = http10;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(H1Error::Invalid("invalid content-length"))?;
            if length.is_some_and(|l| l != v) {
                return Err(H1Error::Invalid("conflicting content-length headers"));
            }
            length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // `chunked` must be the last coding for the body to be delimited by chunks.
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in h.value.split(|&b| b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    close = false;
                }
            }
        }
    }
    let framing = if head_request || (100..200).contains(&status) || status == 204 || status == 304
    {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        if n == 0 {
            Framing::Empty
        } else {
            Framing::Length(n)
        }
    } else {
        Framing::Close
    };
    Ok(Head {
        status,
        framing,
        keep_alive: !close,
    })
}

fn chunk_size(line: &[u8]) -> Result<u64, H1Error> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(H1Error::Invalid("invalid chunk size"));
    }
    let mut n = 0u64;
    for &d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(H1Error::Invalid("invalid chunk size")),
        };
        n = n * 16 + u64::from(v);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tokio::net::TcpListener;

    /// Serve `answer` to one connection, written in pieces of the given sizes (cycled), then
    /// keep the connection open until the client closes it (or close at once with `close`).
    async fn server(answer: Vec<u8>, pieces: Vec<usize>, close: bool) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).await.unwrap();
            let _ = s.set_nodelay(true);
            let mut at = 0;
            for size in pieces.iter().cycle() {
                if at >= answer.len() {
                    break;
                }
                let end = (at + size.max(&1)).min(answer.len());
                s.write_all(&answer[at..end]).await.unwrap();
                s.flush().await.unwrap();
                tokio::task::yield_now().await;
                at = end;
            }
            if close {
                return;
            }
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest).await;
        });
        addr
    }

    async fn exchange(
        answer: &[u8],
        pieces: Vec<usize>,
        close: bool,
        head_request: bool,
    ) -> (Result<(Head, Vec<u8>, u64), String>, bool) {
        exchange_stamped(answer, pieces, close, head_request, false).await
    }

    /// [`exchange`], reading with kernel receive timestamps on or off.
    async fn exchange_stamped(
        answer: &[u8],
        pieces: Vec<usize>,
        close: bool,
        head_request: bool,
        stamped: bool,
    ) -> (Result<(Head, Vec<u8>, u64), String>, bool) {
        let addr = server(answer.to_vec(), pieces, close).await;
        let mut c = H1Conn::connect(&addr).await.unwrap();
        if stamped {
            assert_eq!(c.stamp_arrivals(), cfg!(target_os = "linux"));
        }
        c.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let result = async {
            let head = c.read_head(head_request).await?;
            let mut body = Vec::new();
            let n = c.read_body(&head, |d| body.extend_from_slice(d)).await?;
            Ok::<_, H1Error>((head, body, n))
        }
        .await;
        let reusable = c.is_reusable();
        (result.map_err(|e| format!("{:?}", e.failure())), reusable)
    }

    fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        let mut at = 0;
        for &s in sizes.iter().cycle() {
            if at >= body.len() {
                break;
            }
            let end = (at + s.max(1)).min(body.len());
            out.extend_from_slice(format!("{:x};ext=1\r\n", end - at).as_bytes());
            out.extend_from_slice(&body[at..end]);
            out.extend_from_slice(b"\r\n");
            at = end;
        }
        out.extend_from_slice(b"0\r\nx-trailer: 1\r\n\r\n");
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(40))]
        /// Any body, chunked in any sizes and delivered in any pieces, comes out whole.
        #[test]
        fn chunked_bodies_survive_any_split(
            body in proptest::collection::vec(any::<u8>(), 0..6000),
            sizes in proptest::collection::vec(1usize..3000, 1..5),
            pieces in proptest::collection::vec(1usize..700, 1..5),
            stamped in any::<bool>(),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (r, reusable) = rt.block_on(exchange_stamped(&chunked(&body, &sizes), pieces, false, false, stamped));
            let (head, got, n) = r.unwrap();
            prop_assert_eq!(head.framing, Framing::Chunked);
            prop_assert_eq!(n, body.len() as u64);
            prop_assert_eq!(got, body);
            prop_assert!(reusable);
        }

        /// A Content-Length body in any pieces.
        #[test]
        fn length_bodies_survive_any_split(
            body in proptest::collection::vec(any::<u8>(), 1..10_000),
            pieces in proptest::collection::vec(1usize..5000, 1..4),
            stamped in any::<bool>(),
        ) {
            let mut answer = format!("HTTP/1.1 201 Created\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
            answer.extend_from_slice(&body);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (r, reusable) = rt.block_on(exchange_stamped(&answer, pieces, false, false, stamped));
            let (head, got, n) = r.unwrap();
            prop_assert_eq!(head.status, 201);
            prop_assert_eq!(n, body.len() as u64);
            prop_assert_eq!(got, body);
            prop_assert!(reusable);
        }
    }

    #[tokio::test]
    async fn bodiless_answers_and_connection_close() {
        let (r, reusable) = exchange(
            b"HTTP/1.1 204 No Content\r\ncontent-length: 10\r\n\r\n",
            vec![100],
            false,
            false,
        )
        .await;
        assert_eq!(r.unwrap().2, 0);
        assert!(reusable);
        let (r, _) = exchange(
            b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n",
            vec![100],
            false,
            true,
        )
        .await;
        assert_eq!(r.unwrap().0.framing, Framing::Empty, "HEAD has no body");
        let (r, reusable) = exchange(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
            vec![7],
            true,
            false,
        )
        .await;
        let (head, body, _) = r.unwrap();
        assert_eq!((head.status, body.as_slice()), (200, &b"ok"[..]));
        assert!(!reusable, "connection: close");
        let (r, reusable) =
            exchange(b"HTTP/1.0 200 OK\r\n\r\nuntil close", vec![3], true, false).await;
        assert_eq!(r.unwrap().1, b"until close");
        assert!(!reusable);
    }

    #[tokio::test]
    async fn broken_answers_are_failures_with_their_kind() {
        let cases: [(&[u8], &str); 5] = [
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",
                "closed before",
            ),
            (b"garbage\r\n\r\n", "invalid HTTP response"),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n",
                "invalid content-length",
            ),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
                "invalid chunk size",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
                "conflicting",
            ),
        ];
        for (answer, want) in cases {
            let (r, reusable) = exchange(answer, vec![1000], true, false).await;
            let err = r.unwrap_err();
            assert!(err.contains(want), "{err} should name {want}");
            assert!(!reusable);
        }
        // A head larger than the limit.
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        while big.len() < MAX_HEAD + 10 {
            big.extend_from_slice(
                b"x-filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        let (r, _) = exchange(&big, vec![4096], true, false).await;
        assert!(
            r.unwrap_err().contains("too"),
            "too many headers or too large"
        );
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_not_reused() {
        let addr = server(
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec(),
            vec![100],
            true,
        )
        .await;
        let mut c = H1Conn::connect(&addr).await.unwrap();
        c.send(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let head = c.read_head(false).await.unwrap();
        c.read_body(&head, |_| {}).await.unwrap();
        // The server has closed; give the FIN time to arrive and the reactor to see it.
        for _ in 0..100 {
            if !c.is_reusable() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("a closed connection still looks reusable");
    }

    /// With kernel stamps, bytes that waited in the socket while this process was busy carry
    /// the time they arrived, not the time they were read.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn stamped_reads_report_arrival_not_reading() {
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec();
        let addr = server(answer, vec![1000], false).await;
        let mut c = H1Conn::connect(&addr).await.unwrap();
        assert!(c.stamp_arrivals());
        c.send(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        // Wait until the answer is in the socket, then stay busy (blocking the thread) before
        // reading it.
        c.stream.tcp().readable().await.unwrap();
        let ready = Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let head = c.read_head(false).await.unwrap();
        let mut arrivals = Vec::new();
        c.read_body_stamped(&head, |d, at| arrivals.push((d.to_vec(), at)))
            .await
            .unwrap();
        let read = Instant::now();
        assert_eq!(arrivals.len(), 1);
        let (body, at) = &arrivals[0];
        assert_eq!(body, b"hello");
        assert!(
            *at <= ready,
            "arrival {at:?} is after the socket was readable {ready:?}"
        );
        assert!(read.duration_since(*at) >= std::time::Duration::from_millis(300));
    }
}
