//! A high-resolution one-shot timer that a tokio runtime waits on in its own `epoll_wait`
//! (a timerfd, Linux): no 1 ms tick as with tokio's timer, no spinning, no thread to wake.
//!
//! Shared by the worker's open-model pacer (arrival times) and the built-in LLM target's
//! deadline clock (token times). Elsewhere than Linux, [`Timer::new`] is unsupported and callers
//! keep tokio's timer.

use std::io;
use std::time::Duration;

/// A one-shot timer registered with the runtime it was made on.
pub struct Timer {
    #[cfg(target_os = "linux")]
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl Timer {
    /// A disarmed timer on the current runtime (call it inside one).
    pub fn new() -> io::Result<Timer> {
        #[cfg(target_os = "linux")]
        {
            use rustix::time::{TimerfdClockId, TimerfdFlags, timerfd_create};
            let fd = timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )?;
            // Deprecated for fds the `AsyncFd` does not own (another owner could close them
            // while registered); this one owns its `OwnedFd`, the case `register`'s safety
            // contract asks for, without an unsafe block.
            #[allow(deprecated)]
            let fd = tokio::io::unix::AsyncFd::new(fd)?;
            Ok(Timer { fd })
        }
        #[cfg(not(target_os = "linux"))]
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Fire once, `after` from now (at least 1 ns: a zero would disarm it); replaces any
    /// earlier setting, and a fire not yet waited for is forgotten.
    pub fn set(&self, after: Duration) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use rustix::time::{Itimerspec, TimerfdTimerFlags, Timespec, timerfd_settime};
            let zero = Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            let value = Timespec::try_from(after.max(Duration::from_nanos(1)))
                .map_err(|_| io::Error::other("duration out of range"))?;
            let spec = Itimerspec {
                it_interval: zero,
                it_value: value,
            };
            timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
            Ok(())
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = after;
            Err(io::ErrorKind::Unsupported.into())
        }
    }

    /// Wait until the timer has fired (since it was last waited for).
    pub async fn fired(&self) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        loop {
            let mut ready = self.fd.readable().await?;
            // The expiration count (8 bytes); reading it clears the readiness.
            let mut expirations = [0u8; 8];
            match ready.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut expirations)?)) {
                Ok(read) => return read.map(drop),
                Err(_would_block) => continue,
            }
        }
        #[cfg(not(target_os = "linux"))]
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Fire once after `after` and wait until it has.
    pub async fn sleep(&self, after: Duration) -> io::Result<()> {
        self.set(after)?;
        self.fired().await
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Sleeps last at least as asked; a later setting replaces an earlier one.
    #[tokio::test]
    async fn fires_after_the_time_set_and_the_last_setting_wins() {
        let timer = Timer::new().unwrap();
        let start = Instant::now();
        timer.sleep(Duration::from_millis(3)).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(3));
        let start = Instant::now();
        timer.set(Duration::from_secs(60)).unwrap();
        timer.set(Duration::from_millis(2)).unwrap();
        timer.fired().await.unwrap();
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(2) && took < Duration::from_secs(30),
            "{took:?}"
        );
    }
}
