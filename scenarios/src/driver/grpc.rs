//! gRPC connections for the drivers that speak it through tonic (`priority`, the `llm` driver's
//! JetStream backend): a [`GrpcConnector`] that tonic's channel calls at each (re)connect, which
//! connects through [`Endpoint::connect`] (TCP, then rustls on `https://` with the scenario's
//! `[tls]`, exactly as the HTTP drivers do), [`Connections`], which hands each connection's
//! connect and handshake times to the request that first finishes on it (so gRPC requests
//! record `connect`, `tls_handshake`, `connections_new` and `connections_reused` as HTTP ones
//! do), and [`failure_under`], the failure kind found under a tonic status or transport error
//! (`tls: invalid peer certificate: UnknownIssuer` rather than a bare `unavailable`).
//!
//! It speaks no gRPC itself: tonic does, on the connections this module makes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use stampede_kstamp::stamped::{Arrival, Sent, StampedStream};

use super::transport::{ConnectTimes, ConnectionSlots, Endpoint, Io};
use crate::recorder::{Failure, Recorder};

/// A gRPC connection's marks: when its reads' bytes arrived (kernel receive timestamps), when
/// a request went out. Set by the connector at each (re)connect.
#[derive(Clone)]
pub struct GrpcMarks {
    /// The arrival of the connection's latest read.
    pub arrival: Arrival,
    /// The first write after an arm.
    pub sent: Sent,
}

/// Where a connector leaves the marks of the connection it made last; shared with the user of
/// the channel (a `std` mutex: held only to swap or clone the marks, never across an await).
pub type MarksSlot = Arc<Mutex<Option<GrpcMarks>>>;

/// Connects a tonic channel (`connect_with_connector[_lazy]`): TCP, then TLS on `https://`
/// with ALPN `h2`. With a [`MarksSlot`], each connection's reads are stamped (after the
/// handshake, on TLS) and its marks are left in the slot.
#[derive(Clone)]
pub struct GrpcConnector {
    endpoint: Arc<Endpoint>,
    marks: Option<MarksSlot>,
    connections: Option<Connections>,
}

impl GrpcConnector {
    /// A connector to `endpoint` (made with [`crate::tls::Alpn::Http2`] for `https://`).
    pub fn new(endpoint: Endpoint) -> GrpcConnector {
        GrpcConnector {
            endpoint: Arc::new(endpoint),
            marks: None,
            connections: None,
        }
    }

    /// Leave each new connection's connect times in `connections`, for the request that
    /// claims them.
    pub fn with_connections(mut self, connections: Connections) -> GrpcConnector {
        self.connections = Some(connections);
        self
    }

    /// Stamp each connection's reads and leave its marks in `slot`.
    pub fn with_marks(mut self, slot: MarksSlot) -> GrpcConnector {
        self.marks = Some(slot);
        self
    }
}

/// A failed connect, as the request's failure (the TCP connect's, or the TLS handshake's).
/// tonic keeps it in the source chain of the status it makes; [`failure_under`] finds it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ConnectFailed(pub Failure);

impl tonic::codegen::Service<http::Uri> for GrpcConnector {
    type Response = hyper_util::rt::TokioIo<GrpcIo>;
    type Error = ConnectFailed;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectFailed>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectFailed>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let (endpoint, slot) = (self.endpoint.clone(), self.marks.clone());
        let connections = self.connections.clone();
        Box::pin(async move {
            let connected = endpoint.connect().await.map_err(ConnectFailed)?;
            if let Some(c) = &connections {
                c.made(connected.times);
            }
            let stamp = slot.is_some();
            let mut io = connected
                .io
                .map_plain(|tcp| StampedStream::new(tcp, stamp).0);
            if let (Io::Tls(tls), true) = (&mut io, stamp) {
                // The handshake's bytes needed no stamps; the answers' do.
                tls.get_mut().0.stamp_arrivals();
            }
            if let Some(slot) = slot {
                let stream = stamped(&io);
                let marks = GrpcMarks {
                    arrival: stream.arrival().clone(),
                    sent: stream.sent(),
                };
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(marks);
            }
            Ok(hyper_util::rt::TokioIo::new(io))
        })
    }
}

/// The connections a channel's connector made, for its requests' connection figures. tonic
/// makes them when it must (at first use, after a failure), under the channel; each one's
/// times wait here until a request finished after it was made claims them and counts
/// `connections_new` (with its `connect` and `tls_handshake` times). Requests that find none
/// count `connections_reused`, once the channel has had a connection. With a channel per
/// request name (priority's classes) or per session (JetStream), a connection's times land
/// under the name whose request it carried.
#[derive(Clone, Default)]
pub struct Connections(Arc<Mutex<ConnectionsState>>);

#[derive(Default)]
struct ConnectionsState {
    /// Times of connections no request has claimed yet, oldest first.
    unclaimed: Vec<ConnectTimes>,
    /// Whether any connection was made.
    made: bool,
}

impl Connections {
    fn made(&self, times: ConnectTimes) {
        // A short critical section: a push, never held across an await.
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.unclaimed.push(times);
        s.made = true;
    }

    /// Record the connection figures of a finished request of `name`: a new connection's
    /// times if one is unclaimed, else a reused one, unless `failure` says the request never
    /// had a connection (the connect or the handshake failed).
    pub fn record(
        &self,
        rec: &Recorder,
        name: usize,
        slots: &ConnectionSlots,
        failure: Option<&Failure>,
    ) {
        let (times, made) = {
            let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let times = (!s.unclaimed.is_empty()).then(|| s.unclaimed.remove(0));
            (times, s.made)
        };
        match times {
            Some(t) => slots.opened(rec, name, &t),
            None if made && !failure.is_some_and(never_connected) => {
                rec.count(name, slots.reused(), 1);
            }
            None => {}
        }
    }
}

/// Whether a failure means the request had no connection: the TCP connect or the TLS
/// handshake failed (tonic's `unavailable`, or the connector's own failure).
fn never_connected(f: &Failure) -> bool {
    matches!(f, Failure::Connect(_) | Failure::Tls(_))
}

/// A gRPC connection: a [`StampedStream`], under TLS on `https://`.
pub type GrpcIo = Io<StampedStream>;

/// The stamped TCP stream under a gRPC connection.
fn stamped(io: &GrpcIo) -> &StampedStream {
    match io {
        Io::Plain(s) => s,
        Io::Tls(s) => s.get_ref().0,
    }
}

/// The failure under a tonic error (a status, a transport error), searched down its source
/// chain: a [`ConnectFailed`] from the connector, else a TLS error (the rustls error, or an
/// I/O error carrying one: [`crate::tls::failure_of`]) of a connection that failed after its
/// handshake. `None` when there is neither (a status the server sent, an HTTP/2 error).
pub fn failure_under(e: &(dyn std::error::Error + 'static)) -> Option<Failure> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(ConnectFailed(f)) = e.downcast_ref::<ConnectFailed>() {
            return Some(f.clone());
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(crate::tls::failure_of_tls(tls));
        }
        if let Some(f) = e
            .downcast_ref::<io::Error>()
            .and_then(crate::tls::failure_of)
        {
            return Some(f);
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connect failure wrapped the way tonic wraps it (boxed inside a status) is found, and
    /// so is a rustls error inside an I/O error; a plain status has none.
    #[test]
    fn failures_are_found_down_the_chain() {
        let tls = Failure::Tls("invalid peer certificate: UnknownIssuer".into());
        let status = tonic::Status::from_error(Box::new(ConnectFailed(tls.clone())));
        assert_eq!(failure_under(&status), Some(tls));
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
        );
        let status = tonic::Status::from_error(Box::new(io));
        assert_eq!(
            failure_under(&status).map(|f| f.to_string()).as_deref(),
            Some("tls: handshake: received alert CertificateRequired")
        );
        assert_eq!(failure_under(&tonic::Status::unavailable("down")), None);
    }
}
