//! Sub-millisecond token deadlines for thousands of generations at once, without spinning.
//!
//! Tokio's timer fires on the first millisecond tick at or after a deadline. For
//! `--precise-timing` every generation instead registers its next deadline (and its task's
//! waker) here: one heap of deadlines, one timerfd armed for the earliest, registered with the
//! server's runtime so that its own `epoll_wait` returns on time. When the timer fires, every
//! deadline that has passed is woken. Fires are at least [`RESOLUTION`] apart, so a busy
//! second of 100,000 tokens costs at most 20,000 fires, and a token is at most that late
//! beyond the runtime's own delay. Nothing is ever woken early.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

use stampede_kstamp::timer::Timer;

/// The shortest gap between two fires of the timer.
pub(crate) const RESOLUTION: Duration = Duration::from_micros(50);

/// A deadline and the task to wake at it; ordered by time, then by registration.
struct Entry {
    at: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Deadlines {
    heap: BinaryHeap<Reverse<Entry>>,
    /// When the timer is set to fire, if it is.
    armed: Option<Instant>,
    seq: u64,
}

impl Deadlines {
    /// Take every entry due by `now`.
    fn take_due(&mut self, now: Instant, out: &mut Vec<Waker>) {
        while self.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
            if let Some(Reverse(e)) = self.heap.pop() {
                out.push(e.waker);
            }
        }
    }
}

/// The shared deadline clock of one server (see the module docs).
pub(crate) struct DeadlineClock {
    deadlines: Mutex<Deadlines>,
    /// Set when the timer failed: callers fall back to their own timing.
    failed: AtomicBool,
    timer: Timer,
}

impl DeadlineClock {
    /// Make the clock and start its firing task on the current runtime; `None` outside a
    /// runtime, off Linux, or where no timerfd can be made (the caller keeps its own timing).
    pub(crate) fn start() -> Option<Arc<DeadlineClock>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let _entered = handle.enter();
        let timer = match Timer::new() {
            Ok(t) => t,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::Unsupported {
                    tracing::warn!("no timerfd ({e}): precise timing spins instead");
                }
                return None;
            }
        };
        let clock = Arc::new(DeadlineClock {
            deadlines: Mutex::new(Deadlines::default()),
            failed: AtomicBool::new(false),
            timer,
        });
        handle.spawn(fire(Arc::clone(&clock)));
        Some(clock)
    }

    /// Whether the clock still keeps deadlines (its timer has not failed).
    pub(crate) fn is_live(&self) -> bool {
        !self.failed.load(Ordering::Relaxed)
    }

    /// Wake `waker` once `at` has passed. `false` if the clock has failed (nothing was
    /// registered: the caller times this deadline itself).
    pub(crate) fn register(&self, at: Instant, waker: &Waker) -> bool {
        if !self.is_live() {
            return false;
        }
        let mut d = self.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        d.seq += 1;
        let seq = d.seq;
        d.heap.push(Reverse(Entry {
            at,
            seq,
            waker: waker.clone(),
        }));
        if d.armed.is_none_or(|armed| at < armed) {
            d.armed = Some(at);
            if let Err(e) = self.arm(at) {
                drop(d);
                self.fail(e);
                return false;
            }
        }
        true
    }

    /// Set the timer to fire at `at` (at once if it has passed).
    fn arm(&self, at: Instant) -> std::io::Result<()> {
        self.timer.set(at.saturating_duration_since(Instant::now()))
    }

    /// The timer failed: wake everyone (their own timing takes over) and accept no more.
    fn fail(&self, e: std::io::Error) {
        tracing::warn!("timerfd: {e}: precise timing spins instead");
        self.failed.store(true, Ordering::Relaxed);
        let mut d = self.deadlines.lock().unwrap_or_else(|e| e.into_inner());
        for Reverse(entry) in std::mem::take(&mut d.heap) {
            entry.waker.wake();
        }
    }
}

/// The firing task: on each expiry wake what is due and arm for the next, no sooner than
/// [`RESOLUTION`] from now. Runs as long as the runtime (or until the timer fails).
async fn fire(clock: Arc<DeadlineClock>) {
    let mut due = Vec::new();
    loop {
        if let Err(e) = clock.timer.fired().await {
            clock.fail(e);
            return;
        }
        let now = Instant::now();
        let armed = {
            let mut d = clock.deadlines.lock().unwrap_or_else(|e| e.into_inner());
            d.take_due(now, &mut due);
            let next = d.heap.peek().map(|Reverse(e)| e.at.max(now + RESOLUTION));
            d.armed = next;
            next.map(|at| clock.arm(at))
        };
        for w in due.drain(..) {
            w.wake();
        }
        if let Some(Err(e)) = armed {
            clock.fail(e);
            return;
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Many deadlines, registered out of order: each task wakes after its deadline, within a
    /// few milliseconds even on a loaded test machine, and in deadline order.
    #[tokio::test]
    async fn wakes_each_deadline_after_it_passes() {
        let clock = DeadlineClock::start().expect("timerfd");
        let start = Instant::now();
        let offsets = [7u64, 3, 11, 3, 5, 20, 1];
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, ms) in offsets.into_iter().enumerate() {
            let at = start + Duration::from_millis(ms);
            let (clock, order) = (clock.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                std::future::poll_fn(|cx| {
                    if Instant::now() >= at {
                        return std::task::Poll::Ready(());
                    }
                    assert!(clock.register(at, cx.waker()));
                    std::task::Poll::Pending
                })
                .await;
                let late = Instant::now() - at;
                order.lock().unwrap().push((ms, i));
                late
            }));
        }
        for t in tasks {
            let late = t.await.unwrap();
            assert!(late < Duration::from_millis(50), "woken {late:?} late");
        }
        let order = order.lock().unwrap();
        let times: Vec<u64> = order.iter().map(|&(ms, _)| ms).collect();
        let mut sorted = times.clone();
        sorted.sort();
        assert_eq!(times, sorted, "woken in deadline order");
        assert_eq!(times.len(), offsets.len());
    }
}
