//! gRPC connections for the drivers that speak it through tonic (`priority`, the `llm` driver's
//! JetStream backend): a [`GrpcConnector`] that tonic's channel calls at each (re)connect, which
//! connects through [`Endpoint::connect`] (TCP, then rustls on `https://` with the scenario's
//! `[tls]`, exactly as the HTTP drivers do), and [`failure_under`], the failure kind found
//! under a tonic status or transport error (`tls: invalid peer certificate: UnknownIssuer`
//! rather than a bare `unavailable`).
//!
//! It speaks no gRPC itself: tonic does, on the connections this module makes.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use stampede_kstamp::stamped::{Arrival, Sent, StampedStream};

use super::transport::{Endpoint, Io};
use crate::recorder::Failure;

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
}

impl GrpcConnector {
    /// A connector to `endpoint` (made with [`crate::tls::Alpn::Http2`] for `https://`).
    pub fn new(endpoint: Endpoint) -> GrpcConnector {
        GrpcConnector {
            endpoint: Arc::new(endpoint),
            marks: None,
        }
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
        Box::pin(async move {
            let connected = endpoint.connect().await.map_err(ConnectFailed)?;
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
