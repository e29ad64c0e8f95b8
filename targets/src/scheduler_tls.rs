//! TLS for the gRPC servers (`stampede target scheduler --tls`, and the llm target's JetStream
//! port with `--tls`): the rustls server configuration (the certificate given, or one made
//! here, self-signed, for `localhost`, `127.0.0.1` and `::1`), ALPN `h2`, and the stream of TLS
//! connections tonic serves (`incoming_with`).
//!
//! Each handshake runs in a task of its own, so a slow or failed one never holds up the accept
//! loop; a failed one is dropped (the client records why). It does not ask for client
//! certificates. tonic's own server TLS is not used: its TLS features would also change how
//! the drivers' tonic clients treat `https://` URLs (they connect through their own rustls).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::tls::{ServerTls, TlsError};

/// How long a client may take over its handshake before the server hangs up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server side of TLS: the certificate ([`ServerTls`], shared with the HTTP targets: given
/// as PEM files or self-signed) and its acceptor. Clients offer only `h2` (gRPC), which the
/// acceptor's `h2` first choice gives them.
#[derive(Clone)]
pub struct SchedulerTls {
    tls: Arc<ServerTls>,
}

impl std::fmt::Debug for SchedulerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerTls")
            .field("names", &self.tls.names())
            .finish_non_exhaustive()
    }
}

impl From<ServerTls> for SchedulerTls {
    fn from(tls: ServerTls) -> SchedulerTls {
        SchedulerTls { tls: Arc::new(tls) }
    }
}

impl SchedulerTls {
    /// A fresh self-signed certificate for `localhost`, `127.0.0.1` and `::1`.
    pub fn self_signed() -> Result<SchedulerTls, TlsError> {
        Ok(SchedulerTls::from(ServerTls::self_signed(
            std::net::Ipv4Addr::LOCALHOST.into(),
        )?))
    }

    /// The certificate chain served, PEM (what a client passes as `--ca` for a self-signed one).
    pub fn cert_pem(&self) -> &str {
        self.tls.certificate_pem()
    }

    /// The TLS connections accepted on `listener` until `shutdown`, for tonic's
    /// `serve_with_incoming_shutdown`. The accept loop and the handshakes run as tasks.
    pub fn incoming(
        &self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> impl Stream<Item = io::Result<TlsConn>> + Send + 'static {
        incoming_with(
            &self.tls,
            listener,
            shutdown,
            |tcp| tcp,
            |stream, accepted| TlsConn {
                stream: Box::new(stream),
                local: accepted.local,
                remote: accepted.remote,
            },
        )
    }
}

/// Where an accepted connection came from and arrived.
pub(crate) struct Accepted {
    /// The listener's address it reached.
    pub local: Option<SocketAddr>,
    /// The client's address.
    pub remote: SocketAddr,
}

/// The TLS connections accepted on `listener` until `shutdown`, for tonic's
/// `serve_with_incoming_shutdown`: each TCP stream made into `wrap(tcp)` (a stamped stream, or
/// itself), its handshake (with `tls`'s certificate, ALPN `h2` first) run in a task of its own,
/// and the finished connection turned into what tonic serves by `done`.
pub(crate) fn incoming_with<S, T, W, D>(
    tls: &ServerTls,
    listener: TcpListener,
    shutdown: CancellationToken,
    wrap: W,
    done: D,
) -> impl Stream<Item = io::Result<T>> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: Send + 'static,
    W: Fn(TcpStream) -> S + Send + 'static,
    D: Fn(tokio_rustls::server::TlsStream<S>, Accepted) -> T + Send + Sync + 'static,
{
    // A few handshakes finished ahead of tonic taking them.
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tls.acceptor();
    let make = Arc::new(done);
    tokio::spawn(accept(listener, acceptor, tx, shutdown, wrap, make));
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|conn| (Ok(conn), rx))
    })
}

/// Accept TCP connections until `shutdown`, each handshake in its own task, handing the
/// finished ones to `tx`. Ends (and so ends the stream) when tonic has dropped the stream.
async fn accept<S, T, W, D>(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    tx: mpsc::Sender<T>,
    shutdown: CancellationToken,
    wrap: W,
    done: Arc<D>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: Send + 'static,
    W: Fn(TcpStream) -> S,
    D: Fn(tokio_rustls::server::TlsStream<S>, Accepted) -> T + Send + Sync + 'static,
{
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    tracing::debug!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
            _ = tx.closed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let local = tcp.local_addr().ok();
        let io = wrap(tcp);
        let (acceptor, tx, done) = (acceptor.clone(), tx.clone(), done.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send(done(stream, Accepted { local, remote })).await;
                }
                Ok(Err(e)) => tracing::debug!("TLS handshake with {remote}: {e}"),
                Err(_) => tracing::debug!("TLS handshake with {remote}: timed out"),
            }
        });
    }
}

/// One accepted TLS connection.
pub struct TlsConn {
    /// Boxed: rustls' state is a few KiB.
    stream: Box<tokio_rustls::server::TlsStream<TcpStream>>,
    local: Option<SocketAddr>,
    remote: SocketAddr,
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.local,
            remote_addr: Some(self.remote),
        }
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().stream.as_mut()).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().stream.as_mut()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.get_mut().stream.as_mut()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().stream.as_mut()).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.get_mut().stream.as_mut()).poll_shutdown(cx)
    }
}
