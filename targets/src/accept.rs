//! The accept loop both built-in targets share: accept until shutdown (backing off when
//! `accept` fails, usually for lack of descriptors), hand each connection to its task with
//! `TCP_NODELAY` set, then refuse new connections and give the open ones a grace period before
//! forcing them closed. [`serve_http1`] is the matching per-connection half for HTTP/1.1.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long in-flight requests may finish after shutdown before connections are dropped.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// Pause after a failed `accept` so the loop does not spin on it.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
