//! The QUIC side of the master: an accept loop, and one handler task per worker connection
//! that runs the handshake, forwards the worker's messages and decoded reports to the
//! coordinator, and writes the coordinator's messages to the worker.
//!
//! Handlers decode histograms themselves, so the coordinator only adds. A worker that sends
//! something undecodable is disconnected with the cause logged on both sides; what it had
//! reported before stays counted. Nothing here decides about runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use stampede_protocol::{
    FromWorker, Hello, HelloReply, PROTOCOL_VERSION, Report, handshake, read_frame, write_frame,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::aggregate::DecodedReport;
use crate::coordinator::{Event, WorkerId};
use crate::sparse::Decoder;

/// How long a new connection has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a closed connection's report reader gets to forward what arrived before the close.
const DRAIN_REPORTS: Duration = Duration::from_secs(2);

/// Accepts worker connections.
pub struct Listener {
    /// The QUIC endpoint.
    pub endpoint: quinn::Endpoint,
    /// The token workers must present.
    pub token: Arc<str>,
    /// Where events go.
    pub events: mpsc::Sender<Event>,
}

static NEXT_WORKER: AtomicU64 = AtomicU64::new(1);

impl Listener {
    /// Accept until `shutdown`; then close every connection and wait for the endpoint to idle.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let incoming = tokio::select! {
                i = self.endpoint.accept() => match i {
                    Some(i) => i,
                    None => break,
                },
                _ = shutdown.cancelled() => break,
            };
            let handler = Handler {
                token: self.token.clone(),
                events: self.events.clone(),
            };
            let remote = incoming.remote_address();
            tokio::spawn(
                async move {
                    match incoming.await {
                        Ok(conn) => handler.run(conn).await,
                        Err(e) => warn!("connection failed during the QUIC handshake: {e}"),
                    }
                }
                .instrument(info_span!("peer", remote = %remote)),
            );
        }
        self.endpoint.close(0u32.into(), b"master shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

struct Handler {
    token: Arc<str>,
    events: mpsc::Sender<Event>,
}

impl Handler {
    async fn run(self, conn: quinn::Connection) {
        let addr = conn.remote_address();
        let (mut send, mut recv) = match tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi()).await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return warn!("peer left before its hello: {e}"),
            Err(_) => return warn!("peer sent no hello within {HELLO_TIMEOUT:?}; closed"),
        };
        let hello: Hello = match tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut recv)).await {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                warn!("refused a peer: its hello is not a Stampede hello ({e})");
                conn.close(2u32.into(), b"not a stampede hello");
                return;
            }
            Err(_) => return warn!("peer sent no hello within {HELLO_TIMEOUT:?}; closed"),
        };
        if let Err(reason) = handshake::admit(&hello, &self.token) {
            warn!(name = %hello.name, "refused worker: {reason}");
            let _ = write_frame(&mut send, &HelloReply::Refused { reason }).await;
            let _ = send.finish();
            // Give the refusal time to arrive before closing.
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
            conn.close(1u32.into(), b"refused");
            return;
        }
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
            name: hello.name.clone(),
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
                match read_frame::<_, FromWorker>(control).await {
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
        match read_frame::<_, Report>(&mut stream).await {
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

fn disconnect_reason(conn: &quinn::Connection, fallback: &str) -> String {
    match conn.close_reason() {
        Some(quinn::ConnectionError::TimedOut) => "no answer for 4 s (connection timed out)".into(),
        Some(quinn::ConnectionError::ApplicationClosed(c)) => {
            format!(
                "closed by the worker ({})",
                String::from_utf8_lossy(&c.reason)
            )
        }
        Some(quinn::ConnectionError::LocallyClosed) => "closed by the master".into(),
        Some(e) => e.to_string(),
        None => fallback.to_string(),
    }
}

/// Bind the master's QUIC endpoint.
pub fn bind(addr: SocketAddr) -> anyhow::Result<quinn::Endpoint> {
    use anyhow::Context;
    let config = stampede_protocol::transport::server_config()?;
    quinn::Endpoint::server(config, addr).with_context(|| format!("binding the worker port {addr}"))
}
