//! Kernel receive timestamps on a TCP stream (`SO_TIMESTAMPNS`, Linux): when the bytes a read
//! returns reached the socket, rather than when a busy process got round to reading them.
//!
//! Shared by the load drivers (token times of LLM streams) and the built-in targets (an
//! answer timed from the request's arrival). Not part of the master ↔ worker wire: it lives
//! here as the one crate both sides already build on. Elsewhere than Linux, [`enable`] says no
//! and [`recv_stamped`] is unsupported: callers read plainly and take the time themselves.

use std::io;
use std::time::Instant;

use tokio::net::TcpStream;

/// Ask the kernel to time-stamp the bytes `stream` receives; whether it agreed.
pub fn enable(stream: &TcpStream) -> bool {
    sys::enable(stream)
}

/// One non-blocking read into `buf` (`WouldBlock` when nothing is there: call it from
/// `TcpStream::async_io` or `try_io`): the byte count and, if the kernel stamped them, when
/// the newest of the bytes arrived (TCP reports the last segment read).
pub fn recv_stamped(stream: &TcpStream, buf: &mut [u8]) -> io::Result<(usize, Option<Instant>)> {
    sys::recv_stamped(stream, buf)
}

#[cfg(target_os = "linux")]
mod sys {
    use std::io::{self, IoSliceMut};
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, setsockopt, sockopt};
    use nix::sys::time::TimeSpec;
    use tokio::net::TcpStream;

    pub(super) fn enable(stream: &TcpStream) -> bool {
        switch_on();
        setsockopt(stream, sockopt::ReceiveTimestampns, &true).is_ok()
    }

    /// The kernel stamps packets only once some socket has asked, and it turns stamping on
    /// from a work queue, a moment after the first socket asks: TCP bytes arriving in between
    /// carry no stamp. So the first call in a process asks on a loopback TCP connection kept
    /// open for the process's life and sends itself a byte until one comes back stamped (a few
    /// milliseconds at most; up to 200 tries).
    fn switch_on() {
        type Probe = (std::net::TcpStream, std::net::TcpStream);
        static ON: std::sync::OnceLock<Option<Probe>> = std::sync::OnceLock::new();
        ON.get_or_init(|| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
            let tx = std::net::TcpStream::connect(listener.local_addr().ok()?).ok()?;
            let (rx, _) = listener.accept().ok()?;
            setsockopt(&rx, sockopt::ReceiveTimestampns, &true).ok()?;
            for _ in 0..200 {
                std::io::Write::write_all(&mut &tx, b"?").ok()?;
                let mut byte = [0u8; 1];
                let mut iov = [IoSliceMut::new(&mut byte)];
                let mut control = nix::cmsg_space!(TimeSpec);
                let msg = recvmsg::<()>(
                    rx.as_raw_fd(),
                    &mut iov,
                    Some(&mut control),
                    MsgFlags::empty(),
                )
                .ok()?;
                let stamped = msg.cmsgs().is_ok_and(|mut c| {
                    c.any(|c| matches!(c, ControlMessageOwned::ScmTimestampns(_)))
                });
                if stamped {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Some((tx, rx))
        });
    }

    pub(super) fn recv_stamped(
        stream: &TcpStream,
        buf: &mut [u8],
    ) -> io::Result<(usize, Option<Instant>)> {
        let mut control = nix::cmsg_space!(TimeSpec);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut control),
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        let mut stamp = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmTimestampns(ts) = c {
                    stamp = Some(instant_of(ts));
                }
            }
        }
        Ok((msg.bytes, stamp))
    }

    /// The monotonic instant of a wall-clock kernel stamp: now, less the stamp's age. A stamp
    /// from the future (the wall clock stepped back) counts as now.
    fn instant_of(ts: TimeSpec) -> Instant {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let stamp = Duration::new(
            ts.tv_sec().max(0) as u64,
            ts.tv_nsec().clamp(0, 999_999_999) as u32,
        );
        let now = Instant::now();
        now.checked_sub(wall.saturating_sub(stamp)).unwrap_or(now)
    }
}

/// Elsewhere reads are stamped by their callers, when they return.
#[cfg(not(target_os = "linux"))]
mod sys {
    use std::io;
    use std::time::Instant;

    use tokio::net::TcpStream;

    pub(super) fn enable(_stream: &TcpStream) -> bool {
        false
    }

    pub(super) fn recv_stamped(
        _stream: &TcpStream,
        _buf: &mut [u8],
    ) -> io::Result<(usize, Option<Instant>)> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// A connected pair of loopback TCP streams, `(client, server)`, for tests.
#[cfg(all(test, target_os = "linux"))]
pub(crate) async fn loopback_pair() -> (TcpStream, TcpStream) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    (client.unwrap(), accepted.unwrap().0)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use tokio::io::{AsyncWriteExt, Interest};

    /// A read on a socket asked for stamps carries one, from before the read; without asking,
    /// none. Nothing there to read is `WouldBlock`.
    #[tokio::test]
    async fn stamped_only_when_enabled() {
        let (mut client, server) = loopback_pair().await;
        let mut buf = [0u8; 8];
        for stamp in [false, true] {
            assert_eq!(
                recv_stamped(&server, &mut buf).unwrap_err().kind(),
                io::ErrorKind::WouldBlock
            );
            if stamp {
                assert!(enable(&server));
            }
            client.write_all(b"hi").await.unwrap();
            let (n, at) = server
                .async_io(Interest::READABLE, || recv_stamped(&server, &mut buf))
                .await
                .unwrap();
            assert_eq!(&buf[..n], b"hi");
            assert_eq!(at.is_some(), stamp);
            assert!(at.is_none_or(|at| at <= Instant::now()));
        }
    }
}
