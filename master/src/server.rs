//! The QUIC side of the master: an accept loop, and one handler task per worker connection
//! that authenticates the peer, forwards the worker's messages and decoded reports to the
//! coordinator, and writes the coordinator's messages to the worker.
//!
//! Until a peer has proved it knows the token it is a stranger, and bounded as one: at most
//! [`MAX_PENDING`] strangers at a time, [`handshake::AUTH_TIMEOUT`] each, frames of at most
//! 64 KiB, a back-off per source address after a failure ([`crate::throttle`]), and nothing
//! it sent is logged. Handlers decode histograms themselves, so the coordinator only adds. A
//! worker that sends something undecodable is disconnected with the cause logged on both
//! sides; what it had reported before stays counted. Nothing here decides about runs.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use stampede_protocol::handshake::{self, AdmitError, Token};
use stampede_protocol::{
    FromWorker, Hello, HelloReply, MAX_FRAME, PROTOCOL_VERSION, Report, read_frame, transport,
    write_frame,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::aggregate::DecodedReport;
use crate::coordinator::{Event, WorkerId};
use crate::sparse::Decoder;
use crate::throttle::Throttle;

/// How many connections may be waiting to authenticate at once; more are refused.
pub const MAX_PENDING: usize = 256;

/// How long a closed connection's report reader gets to forward what arrived before the close.
const DRAIN_REPORTS: Duration = Duration::from_secs(2);

/// The longest worker name kept; longer ones are cut.
const MAX_NAME_CHARS: usize = 64;

/// The longest close reason from a worker that is logged.
const MAX_REASON_CHARS: usize = 200;

/// Accepts worker connections.
pub struct Listener {
    /// The QUIC endpoint.
    pub endpoint: quinn::Endpoint,
    /// The token workers must prove they know.
    pub token: Token,
    /// Where events go.
    pub events: mpsc::Sender<Event>,
}

static NEXT_WORKER: AtomicU64 = AtomicU64::new(1);

impl Listener {
    /// Accept until `shutdown`; then close every connection and wait for the endpoint to idle.
    pub async fn run(self, shutdown: CancellationToken) {
        // Each connection that has not authenticated yet holds a permit; it goes back to the
        // semaphore when the peer authenticates or its task ends.
        let pending = Arc::new(Semaphore::new(MAX_PENDING));
        let throttle = Arc::new(Throttle::default());
        let mut last_full_warning: Option<Instant> = None;
        loop {
            let incoming = tokio::select! {
                i = self.endpoint.accept() => match i {
                    Some(i) => i,
                    None => break,
                },
                _ = shutdown.cancelled() => break,
            };
            let remote = incoming.remote_address();
            if !throttle.admits(remote.ip(), std::time::Instant::now()) {
                debug!(%remote, "refused: its address is backing off after failed authentication");
                incoming.refuse();
                continue;
            }
            let Ok(permit) = pending.clone().try_acquire_owned() else {
                if last_full_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    warn!(
                        "{MAX_PENDING} connections are waiting to authenticate; refusing new ones until some finish"
                    );
                    last_full_warning = Some(Instant::now());
                }
                incoming.refuse();
                continue;
            };
            let handler = Handler {
                token: self.token.clone(),
                events: self.events.clone(),
                throttle: throttle.clone(),
            };
            tokio::spawn(
                handler
                    .run(incoming, permit)
                    .instrument(info_span!("peer", remote = %remote)),
            );
        }
        self.endpoint.close(0u32.into(), b"master shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

struct Handler {
    token: Token,
    events: mpsc::Sender<Event>,
    throttle: Arc<Throttle>,
}

/// Why a connection did not get past authentication.
enum Unadmitted {
    /// No proof within the time allowed.
    Timeout,
    /// The handshake's verdict.
    Admit(AdmitError),
}

impl Handler {
    async fn run(self, incoming: quinn::Incoming, permit: OwnedSemaphorePermit) {
        let ip = incoming.remote_address().ip();
        let deadline = Instant::now() + handshake::AUTH_TIMEOUT;
        let conn = match tokio::time::timeout_at(deadline, incoming).await {
            Ok(Ok(conn)) => conn,
            // A forged or broken Initial is routine on an open port: not worth a warning.
            Ok(Err(e)) => return debug!("QUIC handshake failed: {}", handshake_failure(&e)),
            Err(_) => {
                return debug!(
                    "QUIC handshake not done within {:?}",
                    handshake::AUTH_TIMEOUT
                );
            }
        };
        let authenticated =
            match tokio::time::timeout_at(deadline, handshake::open(&conn, &self.token)).await {
                Ok(r) => r.map_err(Unadmitted::Admit),
                Err(_) => Err(Unadmitted::Timeout),
            };
        let (mut send, mut recv, hello) = match authenticated {
            Ok(x) => x,
            Err(Unadmitted::Admit(e)) if e.is_authenticated() => {
                self.throttle.succeeded(ip);
                warn!("refused worker: {e}");
                let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
                conn.close(1u32.into(), b"refused");
                return;
            }
            Err(why) => return self.unauthenticated(ip, &conn, why),
        };
        self.throttle.succeeded(ip);
        transport::authenticated(&conn, 1);
        drop(permit);
        let addr = conn.remote_address();
        let id = WorkerId(NEXT_WORKER.fetch_add(1, Ordering::Relaxed));
        if write_frame(
            &mut send,
            &HelloReply::Welcome {
                worker_id: id.0,
                version: PROTOCOL_VERSION,
            },
        )
        .await
        .is_err()
        {
            return;
        }
        let (outbox, mut rx) = mpsc::unbounded_channel();
        let joined = Event::Joined {
            id,
            name: printable_name(&hello),
            addr: addr.to_string(),
            cores: hello.cores,
            outbox,
        };
        if self.events.send(joined).await.is_err() {
            return;
        }
        let writer = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                if write_frame(&mut send, &msg).await.is_err() {
                    break;
                }
            }
        });
        let reason = self.serve(id, &conn, &mut recv).await;
        writer.abort();
        info!(worker = %id, "connection ended: {reason}");
        conn.close(0u32.into(), reason.as_bytes());
        let _ = self.events.send(Event::Lost(id, reason)).await;
    }

    /// A peer that did not authenticate: count it against its address, log the first of a
    /// series with our words only, and close without an answer.
    fn unauthenticated(&self, ip: IpAddr, conn: &quinn::Connection, why: Unadmitted) {
        let cause = match why {
            Unadmitted::Timeout => "did not authenticate in time".to_string(),
            // The worker closes a master whose proof it does not accept: its token differs.
            Unadmitted::Admit(AdmitError::NoHello(_))
                if matches!(
                    conn.close_reason(),
                    Some(quinn::ConnectionError::ApplicationClosed(ref c))
                        if c.error_code == handshake::CLOSE_MASTER_UNPROVEN.into()
                ) =>
            {
                "refused this master's token proof (a worker with another token?)".to_string()
            }
            Unadmitted::Admit(e) => e.to_string(),
        };
        conn.close(
            handshake::CLOSE_UNAUTHENTICATED.into(),
            b"authentication failed",
        );
        let backoff = self.throttle.failed(ip, std::time::Instant::now());
        if backoff.is_first() {
            warn!(
                "a peer at {ip} failed to authenticate: it {cause}; its address now backs off (failures from it after this one are logged at debug level)"
            );
        } else {
            debug!(
                failures = backoff.count,
                "a peer at {ip} failed to authenticate: it {cause}; refusing its address for {:?}",
                backoff.refused_for
            );
        }
    }

    /// Forward control messages and reports until the connection ends; returns why it ended.
    ///
    /// Each stream is read by its own loop: a frame read is not cancel-safe, so the two reads
    /// are never raced in one `select!` (a control message arriving in the middle of a large
    /// report would otherwise drop the report's bytes already read).
    async fn serve(
        &self,
        id: WorkerId,
        conn: &quinn::Connection,
        control: &mut quinn::RecvStream,
    ) -> String {
        let reports = {
            let (conn, events) = (conn.clone(), self.events.clone());
            tokio::spawn(async move { read_reports(id, &conn, &events).await })
        };
        let abort = reports.abort_handle();
        let control = async {
            loop {
                match read_frame::<_, FromWorker>(control, MAX_FRAME).await {
                    Ok(m) => {
                        let event = match m {
                            // Stamped here, on arrival, so the coordinator's queue does not
                            // count as network delay in the clock estimate.
                            FromWorker::Pong {
                                master_ns,
                                worker_ns,
                                ..
                            } => Event::Clock {
                                id,
                                master_ns,
                                worker_ns,
                                received_ns: stampede_protocol::unix_now_ns(),
                            },
                            m => Event::Message(id, m),
                        };
                        if self.events.send(event).await.is_err() {
                            return ("master shutting down".to_string(), false);
                        }
                    }
                    Err(e) if e.is_disconnect() => {
                        return (disconnect_reason(conn, &e.to_string()), true);
                    }
                    Err(e) => {
                        return (
                            format!("sent an undecodable control message ({e}); disconnected"),
                            false,
                        );
                    }
                }
            }
        };
        tokio::pin!(reports);
        let reason = tokio::select! {
            (reason, disconnected) = control => {
                if disconnected {
                    // Reports that arrived before the close are still buffered: forward them
                    // before the loss, or a worker's last report would vanish with it.
                    let _ = tokio::time::timeout(DRAIN_REPORTS, &mut reports).await;
                }
                reason
            }
            reason = &mut reports => reason.unwrap_or_else(|e| format!("report reader failed: {e}")),
        };
        abort.abort();
        reason
    }
}

/// Accept the worker's report stream and forward its decoded reports; returns why it ended.
async fn read_reports(
    id: WorkerId,
    conn: &quinn::Connection,
    events: &mpsc::Sender<Event>,
) -> String {
    let mut stream = match conn.accept_uni().await {
        Ok(s) => s,
        Err(e) => return disconnect_reason(conn, &e.to_string()),
    };
    let mut decoder = Decoder::default();
    loop {
        match read_frame::<_, Report>(&mut stream, MAX_FRAME).await {
            Ok(r) => match DecodedReport::decode_with(r, &mut decoder) {
                Ok(d) => {
                    if events.send(Event::Report(id, Box::new(d))).await.is_err() {
                        return "master shutting down".into();
                    }
                }
                Err(e) => return format!("sent an invalid report ({e}); disconnected"),
            },
            Err(e) if e.is_disconnect() => return disconnect_reason(conn, &e.to_string()),
            Err(e) => return format!("sent an undecodable report ({e}); disconnected"),
        }
    }
}

/// Why a QUIC handshake failed, in our words only (a peer's close carries text it chose).
fn handshake_failure(e: &quinn::ConnectionError) -> &'static str {
    use quinn::ConnectionError as E;
    match e {
        E::VersionMismatch => "no common QUIC version",
        E::TransportError(_) => "a transport or TLS error",
        E::ConnectionClosed(_) | E::ApplicationClosed(_) => "closed by the peer",
        E::Reset => "reset by the peer",
        E::TimedOut => "timed out",
        E::LocallyClosed => "closed by the master",
        E::CidsExhausted => "out of connection ids",
    }
}

fn disconnect_reason(conn: &quinn::Connection, fallback: &str) -> String {
    match conn.close_reason() {
        Some(quinn::ConnectionError::TimedOut) => "no answer for 4 s (connection timed out)".into(),
        Some(quinn::ConnectionError::ApplicationClosed(c)) => {
            format!(
                "closed by the worker ({})",
                printable(&String::from_utf8_lossy(&c.reason), MAX_REASON_CHARS)
            )
        }
        Some(quinn::ConnectionError::LocallyClosed) => "closed by the master".into(),
        Some(e) => printable(&e.to_string(), MAX_REASON_CHARS),
        None => fallback.to_string(),
    }
}

/// The worker's name as it may be shown and logged: see [`printable`].
fn printable_name(hello: &Hello) -> String {
    printable(&hello.name, MAX_NAME_CHARS)
}

/// Text a peer chose, as it may be logged: control characters (and the invisible ones that
/// reorder text) escaped, cut after `max_chars` characters.
fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push('…');
            break;
        }
        let invisible = matches!(
            c,
            '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        );
        if c.is_control() || invisible {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Bind the master's QUIC endpoint, presenting `identity`.
pub fn bind(
    addr: SocketAddr,
    identity: transport::MasterIdentity,
) -> anyhow::Result<quinn::Endpoint> {
    use anyhow::Context;
    let config = transport::server_config(identity)?;
    quinn::Endpoint::server(config, addr).with_context(|| format!("binding the worker port {addr}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> Hello {
        Hello {
            proof: [0; 32],
            version: PROTOCOL_VERSION,
            name: name.into(),
            cores: 1,
            build: String::new(),
        }
    }

    #[test]
    fn names_are_escaped_and_cut() {
        assert_eq!(printable_name(&named("w-1")), "w-1");
        assert_eq!(
            printable_name(&named("a\nINFO fake line\u{1b}[2J\u{202e}")),
            "a\\nINFO fake line\\u{1b}[2J\\u{202e}"
        );
        assert_eq!(printable("bye\r\n\u{7}", 10), "bye\\r\\n\\u{7}");
        let long = "x".repeat(100);
        assert_eq!(
            printable_name(&named(&long)).chars().count(),
            MAX_NAME_CHARS + 1
        );
    }
}
