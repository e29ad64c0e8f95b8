//! The coordinator's clock, injected: the master runs on the system's, and the
//! coordinator's tests on a [`ManualClock`] they move by hand, so the state machine's timeouts
//! (assigning, the stop grace) and its time stamps are tested with no sleeps.

use std::sync::Mutex;
use std::time::Duration;

use stampede_protocol::unix_now_ns;
use tokio::time::Instant;

/// Where the coordinator reads the time: a monotonic instant for its timeouts and the wall
/// clock (Unix ns) for what it tells workers and writes in summaries.
pub trait Clock: Send + Sync + 'static {
    /// Now, monotonic.
    fn now(&self) -> Instant;
    /// Now, Unix ns.
    fn unix_ns(&self) -> u64;
    /// Now, Unix ms.
    fn unix_ms(&self) -> u64 {
        self.unix_ns() / 1_000_000
    }
}

/// The system's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_ns(&self) -> u64 {
        unix_now_ns()
    }
}

/// A clock that moves only when told to, for tests.
#[derive(Debug)]
pub struct ManualClock {
    // A std Mutex: read and moved in short sections, never across an await.
    at: Mutex<(Instant, u64)>,
}

impl ManualClock {
    /// A clock at `unix_ms` (and at this process's current monotonic instant).
    pub fn at_unix_ms(unix_ms: u64) -> ManualClock {
        ManualClock {
            at: Mutex::new((Instant::now(), unix_ms * 1_000_000)),
        }
    }

    /// Move both clocks forward.
    pub fn advance(&self, by: Duration) {
        let mut at = self.lock();
        at.0 += by;
        at.1 += by.as_nanos() as u64;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Instant, u64)> {
        // A poisoned clock only means a test panicked while holding it; the value is intact.
        self.at.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.lock().0
    }

    fn unix_ns(&self) -> u64 {
        self.lock().1
    }
}
