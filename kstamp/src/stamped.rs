//! A TCP stream that notes when the bytes it reads arrived, from the kernel's receive
//! timestamps (`SO_TIMESTAMPNS`, Linux), so that a server can time its answer from a request's
//! arrival at the socket instead of from the moment it got round to reading it; and a client
//! whose protocol library reads for it (gRPC through tonic) can time each message by the
//! arrival of the bytes that carried it, and its request by when the library wrote it
//! ([`Sent`]).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use crate::stamps;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// When the newest bytes of the latest read arrived (shared with the connection's handler).
#[derive(Clone, Debug, Default)]
pub struct Arrival(Arc<Mutex<Option<Instant>>>);

impl Arrival {
    /// The arrival of the latest read's newest bytes; `None` before any stamped read.
    pub fn last(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, at: Instant) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }
}

/// When the first write after [`Sent::arm`] went to the socket (shared with the connection's
/// user): for a client whose protocol library writes from a task of its own (tonic's
/// connection task), when its request really went out.
#[derive(Clone, Debug, Default)]
pub struct Sent(Arc<Mutex<SentState>>);

#[derive(Debug, Default)]
struct SentState {
    armed: bool,
    at: Option<Instant>,
}

impl Sent {
    /// Forget the last write noted; note the next one.
    pub fn arm(&self) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.armed = true;
        s.at = None;
    }

    /// When the first write since the last [`Sent::arm`] returned; `None` before one.
    pub fn first(&self) -> Option<Instant> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).at
    }

    fn note(&self) {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if s.armed {
            s.armed = false;
            s.at = Some(Instant::now());
        }
    }
}

/// A stream whose reads are stamped; writes pass through, the first after [`Sent::arm`] noted.
pub struct StampedStream {
    stream: TcpStream,
    arrival: Arrival,
    stamped: bool,
    sent: Sent,
}

impl StampedStream {
    /// Wrap `stream`; with `stamp`, ask the kernel for receive timestamps. Without them (not
    /// asked, not Linux, or refused) it reads plainly and [`Arrival::last`] stays `None`.
    pub fn new(stream: TcpStream, stamp: bool) -> (StampedStream, Arrival) {
        let stamped = stamp && stamps::enable(&stream);
        let arrival = Arrival::default();
        let s = StampedStream {
            stream,
            arrival: arrival.clone(),
            stamped,
            sent: Sent::default(),
        };
        (s, arrival)
    }

    /// Ask the kernel for receive timestamps from now on (for a stream made without them:
    /// a TLS handshake's bytes need none); whether it agreed.
    pub fn stamp_arrivals(&mut self) -> bool {
        self.stamped = self.stamped || stamps::enable(&self.stream);
        self.stamped
    }

    /// The TCP stream.
    pub fn tcp(&self) -> &TcpStream {
        &self.stream
    }

    /// The arrival of its reads (the one [`StampedStream::new`] returned).
    pub fn arrival(&self) -> &Arrival {
        &self.arrival
    }

    /// The stream's [`Sent`] mark.
    pub fn sent(&self) -> Sent {
        self.sent.clone()
    }

    /// Note a write that returned `result`, if it wrote something.
    fn wrote(&self, result: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.sent.note();
        }
        result
    }
}

impl AsyncRead for StampedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.stamped {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        loop {
            std::task::ready!(this.stream.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let stream = &this.stream;
            match stream.try_io(Interest::READABLE, || {
                stamps::recv_stamped(stream, unfilled)
            }) {
                Ok((n, stamp)) => {
                    if let Some(at) = stamp {
                        this.arrival.set(at);
                    }
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale: cleared by try_io; wait again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for StampedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, data);
        this.wrote(result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.wrote(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Bytes that waited in the socket while the server was busy carry their arrival time, and
    /// reading and writing still work through the wrapper.
    #[tokio::test]
    async fn reads_carry_the_arrival_not_the_reading() {
        let (mut client, server) = stamps::loopback_pair().await;
        let (mut server, arrival) = StampedStream::new(server, true);
        assert_eq!(arrival.last(), None);
        client.write_all(b"ping").await.unwrap();
        server.stream.readable().await.unwrap();
        let ready = Instant::now();
        std::thread::sleep(Duration::from_millis(300));
        let mut got = [0u8; 16];
        let n = server.read(&mut got).await.unwrap();
        let read = Instant::now();
        assert_eq!(&got[..n], b"ping");
        let at = arrival.last().expect("a stamped read");
        assert!(
            at <= ready,
            "arrival {at:?} after the socket was readable {ready:?}"
        );
        assert!(read.duration_since(at) >= Duration::from_millis(300));
        server.write_all(b"pong").await.unwrap();
        let n = client.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"pong");
    }

    /// Only the first write after an arm is noted: not one before it, not a later one.
    #[tokio::test]
    async fn sent_notes_the_first_write_after_arm() {
        let (client, mut server) = stamps::loopback_pair().await;
        let (mut client, _) = StampedStream::new(client, false);
        let sent = client.sent();
        client.write_all(b"before").await.unwrap();
        assert_eq!(sent.first(), None, "not armed");
        sent.arm();
        let armed = Instant::now();
        std::thread::sleep(Duration::from_millis(50));
        client.write_all(b"request").await.unwrap();
        let first = sent.first().expect("the write after arm");
        assert!(first.duration_since(armed) >= Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(20));
        client.write_all(b"more").await.unwrap();
        assert_eq!(sent.first(), Some(first), "a later write does not move it");
        sent.arm();
        assert_eq!(sent.first(), None, "arm forgets the last one");
        let mut got = vec![0u8; 17];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"beforerequestmore");
    }

    /// Unstamped, the wrapper is a plain stream and notes nothing.
    #[tokio::test]
    async fn unstamped_reads_note_nothing() {
        let (mut client, server) = stamps::loopback_pair().await;
        let (mut server, arrival) = StampedStream::new(server, false);
        client.write_all(b"x").await.unwrap();
        let mut got = [0u8; 4];
        assert_eq!(server.read(&mut got).await.unwrap(), 1);
        assert_eq!(arrival.last(), None);
    }
}
