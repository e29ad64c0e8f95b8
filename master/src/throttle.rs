//! Authentication failures per source address, and the back-off they earn: after the n-th
//! failure in a row from an address, its new connections are refused for
//! `min(50 ms · 2^(n-1), 10 s)`, before any TLS work is done for them.
//!
//! The server's accept loop asks [`Throttle::admits`] for each new connection and tells
//! [`Throttle::failed`] or [`Throttle::succeeded`] how authentication went. Only a completed
//! QUIC handshake can fail authentication, so a forged source address cannot earn another
//! host a back-off. Time is passed in, so tests need no clock. It does not close connections
//! or log; the caller does.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The back-off after the first failure.
const FIRST: Duration = Duration::from_millis(50);

/// The longest back-off.
const LONGEST: Duration = Duration::from_secs(10);

/// An address whose last failure is older than this starts again from the first back-off.
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// At most this many addresses are remembered; past it, the ones whose back-off is over are
/// forgotten (and if none is, the oldest).
const MAX_ADDRESSES: usize = 4096;

/// Failures by address.
#[derive(Debug, Default)]
pub struct Throttle {
    /// A std mutex: every critical section is a map look-up, never held across an await.
    by_address: Mutex<HashMap<IpAddr, Failures>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    /// Failures in a row.
    count: u32,
    /// When the last one was.
    last: Instant,
}

impl Failures {
    fn until(&self) -> Instant {
        let doublings = self.count.saturating_sub(1).min(16);
        self.last + (FIRST * 2u32.pow(doublings)).min(LONGEST)
    }
}

/// What a failure did to its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Failures in a row from the address, this one included.
    pub count: u32,
    /// How long its new connections are refused.
    pub refused_for: Duration,
}

impl Backoff {
    /// The first failure of a series: the one worth a log line.
    pub fn is_first(&self) -> bool {
        self.count == 1
    }
}

impl Throttle {
    /// Whether a new connection from `ip` may go on at `now`.
    pub fn admits(&self, ip: IpAddr, now: Instant) -> bool {
        let map = self.lock();
        map.get(&ip).is_none_or(|f| now >= f.until())
    }

    /// Count a failure from `ip` at `now`.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Backoff {
        let mut map = self.lock();
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&ip) {
            map.retain(|_, f| now < f.until());
            if map.len() >= MAX_ADDRESSES
                && let Some(oldest) = map.iter().min_by_key(|(_, f)| f.last).map(|(ip, _)| *ip)
            {
                map.remove(&oldest);
            }
        }
        let f = map.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.saturating_duration_since(f.last) > FORGET_AFTER {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        Backoff {
            count: f.count,
            refused_for: f.until() - now,
        }
    }

    /// `ip` authenticated: forget its failures.
    pub fn succeeded(&self, ip: IpAddr) {
        self.lock().remove(&ip);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        // A panic while holding the lock cannot leave the map inconsistent (each change is
        // one insert or remove), so a poisoned lock is still usable.
        self.by_address
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn the_back_off_doubles_up_to_ten_seconds() {
        let t = Throttle::default();
        let now = Instant::now();
        let waits: Vec<_> = (0..12)
            .map(|_| t.failed(ip(1), now).refused_for.as_millis())
            .collect();
        assert_eq!(
            waits,
            [
                50, 100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000, 10_000
            ]
        );
    }

    #[test]
    fn only_the_failing_address_waits_and_only_for_its_back_off() {
        let t = Throttle::default();
        let now = Instant::now();
        let first = t.failed(ip(1), now);
        assert!(first.is_first());
        assert!(!t.failed(ip(1), now).is_first());
        assert!(!t.admits(ip(1), now + Duration::from_millis(99)));
        assert!(t.admits(ip(1), now + Duration::from_millis(100)));
        assert!(t.admits(ip(2), now));
    }

    #[test]
    fn success_and_a_quiet_minute_forget() {
        let t = Throttle::default();
        let now = Instant::now();
        for _ in 0..5 {
            t.failed(ip(1), now);
        }
        t.succeeded(ip(1));
        assert!(t.admits(ip(1), now));
        assert!(t.failed(ip(1), now).is_first());
        let later = now + FORGET_AFTER + Duration::from_secs(1);
        assert!(t.failed(ip(1), later).is_first());
    }

    #[test]
    fn memory_is_bounded() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            t.failed(IpAddr::from(i.to_be_bytes()), now);
        }
        assert!(t.lock().len() <= MAX_ADDRESSES);
    }
}
