//! Where a driver's connections go and how they are made: the target's [`Endpoint`] (host,
//! port, TLS or not), a TCP connect timed on its own, then for `https://` a TLS handshake
//! (rustls) timed on its own, over a [`StampedStream`].
//!
//! Under TLS the TCP stream is a [`StampedStream`]: once asked, each read notes when its bytes
//! reached the socket (the kernel's receive timestamp, `SO_TIMESTAMPNS`), so a plaintext slice
//! that TLS decrypts carries the arrival time of the TCP bytes it came in, as on a plain
//! connection.
//! This module speaks no HTTP: [`super::h1`] and the HTTP/2 client sit on what it connects.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use stampede_kstamp::stamped::StampedStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::DriverError;
pub use super::connections::{CONNECTION_COUNTERS, CONNECTION_METRICS};
use crate::recorder::{Failure, io_kind};
use crate::tls::{Alpn, TlsClient, TlsFile};

/// Where a driver connects: `host:port`, and TLS when the target is `https://`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port` to connect to (an IPv6 host in brackets).
    pub authority: String,
    /// The host as the URL writes it (for SNI when `server_name` is not set).
    pub host: String,
    /// TLS, for an `https://` target.
    pub tls: Option<TlsClient>,
}

impl Endpoint {
    /// The endpoint of a target URL (`http://` or `https://`), with the scenario's `[tls]`
    /// (`None`: defaults) offering `alpn` on TLS.
    pub fn of(uri: &http::Uri, tls: Option<&TlsFile>, alpn: Alpn) -> Result<Endpoint, DriverError> {
        let authority = uri
            .authority()
            .ok_or_else(|| DriverError::Invalid(format!("target `{uri}` has no host")))?;
        let secure = uri.scheme_str() == Some("https");
        let port = authority
            .port_u16()
            .unwrap_or(if secure { 443 } else { 80 });
        let host = authority.host().to_string();
        let tls = if secure {
            let file = tls.cloned().unwrap_or_default();
            Some(TlsClient::new(&file, alpn).map_err(|e| DriverError::Invalid(e.to_string()))?)
        } else {
            None
        };
        Ok(Endpoint {
            authority: format!("{host}:{port}"),
            host,
            tls,
        })
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Connect: TCP, then the TLS handshake on `https://`. A failure is the request's
    /// ([`Failure::Connect`] for TCP, [`Failure::Tls`] or a plaintext answer for TLS).
    pub async fn connect(&self) -> Result<Connected, Failure> {
        let start = Instant::now();
        let tcp = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| Failure::Connect(io_kind(&e)))?;
        let _ = tcp.set_nodelay(true);
        let connected = Instant::now();
        let tcp_time = connected - start;
        let Some(tls) = &self.tls else {
            return Ok(Connected {
                io: Io::Plain(tcp),
                times: ConnectTimes {
                    tcp: tcp_time,
                    tls: None,
                },
            });
        };
        let name = tls.server_name(&self.host)?;
        let stream = tokio_rustls::TlsConnector::from(tls.config())
            .connect(name, StampedStream::new(tcp, false).0)
            .await
            .map_err(|e| handshake_failure(&e))?;
        Ok(Connected {
            io: Io::Tls(Box::new(stream)),
            times: ConnectTimes {
                tcp: tcp_time,
                tls: Some(connected.elapsed()),
            },
        })
    }
}

/// What a failed handshake records: the rustls error's kind, a plaintext answer, or the I/O
/// failure under the handshake (`tls: handshake: unexpected eof`: the server hung up).
fn handshake_failure(e: &io::Error) -> Failure {
    crate::tls::failure_of(e).unwrap_or_else(|| Failure::Tls(format!("handshake: {}", io_kind(e))))
}

/// Where a driver's [`CONNECTION_METRICS`] and [`CONNECTION_COUNTERS`] sit among its own: the
/// index of the first of each (the recorder's metric 0 is latency).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSlots {
    /// The recorder index of `connect` (`tls_handshake` follows).
    pub metric: usize,
    /// The counter index of `connections_new` (`connections_reused` follows).
    pub counter: usize,
}

impl ConnectionSlots {
    /// The slots after a driver's own `metrics` and `counters`.
    pub const fn after(metrics: usize, counters: usize) -> ConnectionSlots {
        ConnectionSlots {
            metric: metrics + 1,
            counter: counters,
        }
    }

    /// Record a new connection opened for request `name`.
    pub fn opened(&self, rec: &crate::recorder::Recorder, name: usize, times: &ConnectTimes) {
        rec.sample(name, self.metric, micros(times.tcp));
        if let Some(tls) = times.tls {
            rec.sample(name, self.metric + 1, micros(tls));
        }
        rec.count(name, self.counter, 1);
    }

    /// The counter of a request sent on an open connection.
    pub fn reused(&self) -> usize {
        self.counter + 1
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A driver's metric or counter names followed by the connection ones (built once per driver).
pub fn with_connection(own: &[&'static str], extra: &[&'static str]) -> Vec<&'static str> {
    own.iter().chain(extra).copied().collect()
}

/// How long a new connection took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectTimes {
    /// The TCP connect.
    pub tcp: Duration,
    /// The TLS handshake, after it (`None` on plaintext).
    pub tls: Option<Duration>,
}

/// A new connection and how long it took.
pub struct Connected {
    /// The connection.
    pub io: Io,
    /// Its connect and handshake times.
    pub times: ConnectTimes,
}

/// A connection: plain (TCP, or another stream over it: gRPC's stamped one), or TLS over a
/// [`StampedStream`].
pub enum Io<P = TcpStream> {
    /// `http://`.
    Plain(P),
    /// `https://` (boxed: rustls' state is a few KiB, and most users of a plain run never
    /// hold one).
    Tls(Box<tokio_rustls::client::TlsStream<StampedStream>>),
}

impl<P> Io<P> {
    /// The same connection with its plain stream made into another (TLS stays as it is).
    pub fn map_plain<Q>(self, f: impl FnOnce(P) -> Q) -> Io<Q> {
        match self {
            Io::Plain(p) => Io::Plain(f(p)),
            Io::Tls(s) => Io::Tls(s),
        }
    }

    /// The negotiated ALPN protocol (`h2`, `http/1.1`), if TLS negotiated one.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Io::Plain(_) => None,
            Io::Tls(s) => s.get_ref().1.alpn_protocol(),
        }
    }
}

impl Io {
    /// The TCP stream under the connection.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Io::Plain(s) => s,
            Io::Tls(s) => s.get_ref().0.tcp(),
        }
    }
}

impl<P: AsyncRead + Unpin> AsyncRead for Io<P> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<P: AsyncWrite + Unpin> AsyncWrite for Io<P> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
