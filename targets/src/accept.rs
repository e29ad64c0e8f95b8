//! The accept loop the built-in targets share: accept until shutdown (backing off when
//! `accept` fails, usually for lack of descriptors), hand each connection to its task with
//! `TCP_NODELAY` set, then refuse new connections and give the open ones a grace period before
//! forcing them closed. [`serve_hyper`] puts a hyper service behind it in any [`Transport`]
//! (TLS handshake and ALPN, h2c detection); [`handshake`] is the TLS step alone, for the registry,
//! which speaks HTTP itself. Routing and answers are the targets' business, not this module's.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::{HttpService, Service};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::tls::{H2, Transport};

/// Errors a connection ends with; only ever logged.
type BoxError = Box<dyn StdError + Send + Sync>;

/// How long in-flight requests may finish after shutdown before connections are dropped.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Pause after a failed `accept` so the loop does not spin on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a client may take to finish the TLS handshake: a peer that connects and says
/// nothing must not hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept on `listener` until `shutdown`; `connection(stream, force)` serves one connection
/// and must end when `force` is cancelled (after the grace period). `name` labels log lines.
pub(crate) async fn serve<F, Fut>(
    listener: TcpListener,
    name: &str,
    shutdown: &CancellationToken,
    mut connection: F,
) where
    F: FnMut(TcpStream, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let tracker = TaskTracker::new();
    let force = CancellationToken::new();
    loop {
        let stream = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "{name} accept failed; backing off");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        // Small answers and streamed tokens must not wait for Nagle.
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "{name} could not set TCP_NODELAY");
        }
        tracker.spawn(connection(stream, force.clone()));
    }
    // Refuse new connections while the old ones drain.
    drop(listener);
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::debug!(
            connections = tracker.len(),
            "{name} grace period over; dropping connections"
        );
        force.cancel();
        tracker.wait().await;
    }
}

/// Serve HTTP/1.1 on `io` with `service` until the peer leaves. On `shutdown` the in-flight
/// request finishes and the connection closes instead of keeping alive; `force` ends it at once.
/// The caller logs the error, if any, in its own words.
pub(crate) async fn serve_http1<I, S>(
    io: I,
    service: S,
    shutdown: &CancellationToken,
    force: &CancellationToken,
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + 'static,
    S: HttpService<Incoming>,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as Body>::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let connection = http1::Builder::new().serve_connection(TokioIo::new(io), service);
    let mut connection = pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                result = connection.as_mut() => result,
                () = force.cancelled() => Ok(()),
            }
        }
    }
}

/// Where [`serve_hyper`] serves and how.
pub(crate) struct HyperServer<'a> {
    /// Labels log lines (`target`, `llm target`).
    pub name: &'static str,
    pub transport: &'a Transport,
    pub shutdown: &'a CancellationToken,
}

/// Accept on `listener` until shutdown and serve each connection with the service
/// `make(stream)` returns (with the stream it may have wrapped), in `server.transport`.
///
/// The match on the transport happens once, here, so each transport's connection task is its own
/// type: the plaintext HTTP/1.1 task is exactly [`serve_http1`] on what `make` returned, with no
/// TLS or HTTP/2 state in it.
pub(crate) async fn serve_hyper<M, I, S, B>(
    listener: TcpListener,
    server: HyperServer<'_>,
    mut make: M,
) where
    M: FnMut(TcpStream) -> (I, S),
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let HyperServer {
        name,
        transport,
        shutdown,
    } = server;
    match transport {
        Transport::Http1 => {
            serve(listener, name, shutdown, |stream, force| {
                let (io, service) = make(stream);
                let shutdown = shutdown.clone();
                async move {
                    let result = serve_http1(io, service, &shutdown, &force).await;
                    log_end(name, result.map_err(Into::into));
                }
            })
            .await;
        }
        Transport::H2c => {
            serve(listener, name, shutdown, |stream, force| {
                let (io, service) = make(stream);
                let shutdown = shutdown.clone();
                async move {
                    let result = serve_auto(io, service, &shutdown, &force).await;
                    log_end(name, result);
                }
            })
            .await;
        }
        Transport::Tls(tls) => {
            let acceptor = tls.acceptor();
            serve(listener, name, shutdown, |stream, force| {
                let (io, service) = make(stream);
                let shutdown = shutdown.clone();
                let acceptor = acceptor.clone();
                async move {
                    let Some(io) = handshake(&acceptor, io, &shutdown).await else {
                        return;
                    };
                    let result = if io.get_ref().1.alpn_protocol() == Some(H2) {
                        serve_http2(io, service, &shutdown, &force).await
                    } else {
                        serve_http1(io, service, &shutdown, &force)
                            .await
                            .map_err(Into::into)
                    };
                    log_end(name, result);
                }
            })
            .await;
        }
    }
}

/// The server side of a TLS handshake on `io`, bounded by [`HANDSHAKE_TIMEOUT`] and by
/// `shutdown`. `None` when it failed, timed out or was cut short; failures are logged at debug
/// (scanners and impatient clients are normal), never returned.
pub(crate) async fn handshake<I>(
    acceptor: &TlsAcceptor,
    io: I,
    shutdown: &CancellationToken,
) -> Option<TlsStream<I>>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    tokio::select! {
        () = shutdown.cancelled() => None,
        outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)) => match outcome {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake timed out");
                None
            }
        },
    }
}

/// [`serve_http1`] for HTTP/2: on `shutdown` it sends GOAWAY, lets the open streams finish and
/// closes; `force` ends it at once.
async fn serve_http2<I, S, B>(
    io: I,
    service: S,
    shutdown: &CancellationToken,
    force: &CancellationToken,
) -> Result<(), BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let connection =
        http2::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(io), service);
    let mut connection = pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result.map_err(Into::into),
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                result = connection.as_mut() => result.map_err(Into::into),
                () = force.cancelled() => Ok(()),
            }
        }
    }
}

/// Plaintext HTTP/1.1 or HTTP/2 with prior knowledge, whichever the first bytes show; shutdown
/// as in [`serve_http1`] and [`serve_http2`].
async fn serve_auto<I, S, B>(
    io: I,
    service: S,
    shutdown: &CancellationToken,
    force: &CancellationToken,
) -> Result<(), BoxError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let builder = auto::Builder::new(TokioExecutor::new());
    let connection = builder.serve_connection(TokioIo::new(io), service);
    let mut connection = pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            tokio::select! {
                result = connection.as_mut() => result,
                () = force.cancelled() => Ok(()),
            }
        }
    }
}

/// Log how a connection ended: per connection, not per request, and only at debug, since peers
/// resetting, faults cutting streams and clients leaving mid-answer are all normal here.
fn log_end(name: &str, result: Result<(), BoxError>) {
    if let Err(err) = result {
        tracing::debug!(error = %err, "{name} connection ended with an error");
    }
}
