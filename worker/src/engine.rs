//! The load engine of one worker for one run: follows a [`LoadPlan`] (users in a loop for
//! closed models, timed arrivals for open ones), calls the driver, and lets the recorder fill.
//!
//! Closed users are tokio tasks, started and stopped by a supervisor as the plan's user count
//! moves. Open arrivals are timed and run by lanes: OS threads with a single-threaded runtime
//! each, whose pacer waits on the OS's high-resolution timer through the runtime's reactor (a
//! timerfd on Linux) and yields to the lane's requests meanwhile, so an arrival starts within
//! tens of microseconds of its time; latency counts from the scheduled time. Stopping never cuts a request short: the engine
//! stops issuing, waits for what is in flight (each call is bounded by the driver's timeout),
//! and ends. Reporting is not done here: the session takes the recorder's intervals.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use stampede_kstamp::timer::Timer;
pub use stampede_scenarios::load::next_gap;
use stampede_scenarios::load::{Next, Schedule};
use stampede_scenarios::{Call, Driver, LoadPlan, Recorder, Session};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often the closed-model supervisor re-reads the plan.
const SUPERVISE_EVERY: Duration = Duration::from_millis(50);

/// Shared between the engine's tasks and the session that owns it.
pub struct EngineShared {
    /// The plan; replaced when the master moves shares or the user rescales.
    pub plan: RwLock<LoadPlan>,
    /// Users running (closed) or requests in flight (open).
    pub active: AtomicU64,
    /// Arrivals not sent because `max_in_flight` requests were already in flight.
    pub dropped: AtomicU64,
    /// The current open-model rate of this worker, as f64 bits, for reports.
    pub rate_bits: AtomicU64,
    /// When users sent their first request, ns after the engine's start instant: the earliest
    /// and the latest (`u64::MAX` and 0 until a user has started). What a simultaneous start
    /// really achieved on this worker.
    pub first_sends: (AtomicU64, AtomicU64),
}

/// A running engine.
pub struct Engine {
    shared: Arc<EngineShared>,
    stop: CancellationToken,
}

/// What an engine needs to start.
pub struct EngineSpec {
    /// The driver of the run.
    pub driver: Arc<dyn Driver>,
    /// Where to record.
    pub recorder: Arc<Recorder>,
    /// This worker's part of the load.
    pub plan: LoadPlan,
    /// When load starts (local clock).
    pub start: Instant,
    /// How far into the run `start` is (0, or more for a worker joining a run mid-way).
    pub elapsed: Duration,
    /// How long the whole run lasts; this worker stops at `start + duration - elapsed`.
    pub duration: Duration,
    /// A seed for this worker's random choices (arrival gaps, request picks).
    pub seed: u64,
    /// The run's seed, the same on every worker (the shared gamma arrival sequence).
    pub run_seed: u64,
}

impl Engine {
    /// Start generating load at `spec.start`. The handle resolves when the engine has ended
    /// (duration reached or stopped) and every in-flight call is done.
    pub fn start(spec: EngineSpec) -> (Engine, tokio::task::JoinHandle<()>) {
        let shared = Arc::new(EngineShared {
            plan: RwLock::new(spec.plan.clone()),
            active: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rate_bits: AtomicU64::new(0f64.to_bits()),
            first_sends: (AtomicU64::new(u64::MAX), AtomicU64::new(0)),
        });
        let stop = CancellationToken::new();
        let task = if spec.plan.model.is_open() {
            tokio::spawn(open_loop(spec, shared.clone(), stop.clone()))
        } else {
            tokio::spawn(closed_loop(spec, shared.clone(), stop.clone()))
        };
        (Engine { shared, stop }, task)
    }

    /// Replace the plan (new share or scale); takes effect within 50 ms or at the
    /// next arrival.
    pub fn update(&self, plan: LoadPlan) {
        *self.shared.plan.write().unwrap_or_else(|p| p.into_inner()) = plan;
    }

    /// Stop issuing requests; the handle from [`Engine::start`] resolves when in-flight ones are done.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Users running or requests in flight.
    pub fn active(&self) -> u64 {
        self.shared.active.load(Ordering::Relaxed)
    }

    /// The open-model rate currently produced by this worker (0 for closed models).
    pub fn rate(&self) -> f64 {
        f64::from_bits(self.shared.rate_bits.load(Ordering::Relaxed))
    }

    /// Arrivals dropped so far (and resets the count).
    pub fn take_dropped(&self) -> u64 {
        self.shared.dropped.swap(0, Ordering::Relaxed)
    }

    /// When the first and the last user sent their first request, ns after the start instant
    /// (`None` before any has).
    pub fn first_sends(&self) -> Option<(u64, u64)> {
        let (min, max) = &self.shared.first_sends;
        let min = min.load(Ordering::Relaxed);
        (min != u64::MAX).then(|| (min, max.load(Ordering::Relaxed).max(min)))
    }
}

/// Closed and simultaneous models: a supervisor keeps `users_at(elapsed)` user tasks running.
/// Users of a simultaneous start are all due at the start instant; with `requests_per_user`
/// the engine ends once every user has sent its requests.
async fn closed_loop(spec: EngineSpec, shared: Arc<EngineShared>, stop: CancellationToken) {
    let end = spec.start + spec.duration.saturating_sub(spec.elapsed);
    let (together, per_user) = {
        let plan = shared.plan.read().unwrap_or_else(|p| p.into_inner());
        (plan.model.starts_together(), plan.model.requests_per_user())
    };
    let halt = AtomicBool::new(false);
    tokio::select! {
        _ = wait_until(spec.start.into_std(), &halt) => {}
        _ = stop.cancelled() => return,
    }
    // The run's start as a std instant (the engine may join a run `elapsed` into it).
    let run_start = spec
        .start
        .into_std()
        .checked_sub(spec.elapsed)
        .unwrap_or_else(|| spec.start.into_std());
    let start = spec.start.into_std();
    let mut users: Vec<CancellationToken> = Vec::new();
    let mut tasks = JoinSet::new();
    let mut seed = spec.seed;
    let mut tick = tokio::time::interval(SUPERVISE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let want = {
            let plan = shared.plan.read().unwrap_or_else(|p| p.into_inner());
            plan.users_at(now - spec.start + spec.elapsed) as usize
        };
        // Users started together are all due at the start; others are spread evenly over the
        // coming tick (50 users due in one 50 ms tick start 1 ms apart), so that a spawn rate
        // of R means one user every 1/R s, not bursts that queue behind each other's connects.
        let starting = want.saturating_sub(users.len());
        let spread = !(together && spec.elapsed.is_zero());
        for j in 0..starting {
            let token = stop.child_token();
            seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
            tasks.spawn(user(User {
                session: spec.driver.session(),
                recorder: spec.recorder.clone(),
                stop: token.clone(),
                rng: SmallRng::seed_from_u64(seed),
                shared: shared.clone(),
                start,
                run_start,
                // Users started with the run are due at the start instant itself.
                first_due: (!spread).then_some(start),
                requests: per_user,
                delay: if spread {
                    SUPERVISE_EVERY.mul_f64(j as f64 / starting as f64)
                } else {
                    Duration::ZERO
                },
            }));
            users.push(token);
        }
        while users.len() > want {
            if let Some(t) = users.pop() {
                t.cancel();
            }
        }
        shared
            .active
            .store(users.len().min(tasks.len()) as u64, Ordering::Relaxed);
        if per_user.is_some() && tasks.is_empty() {
            // Every user has sent its requests.
            break;
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::time::sleep_until(end) => break,
            _ = stop.cancelled() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    for u in &users {
        u.cancel();
    }
    while tasks.join_next().await.is_some() {
        shared.active.store(tasks.len() as u64, Ordering::Relaxed);
    }
    shared.active.store(0, Ordering::Relaxed);
}

/// One closed-model user.
struct User {
    session: Box<dyn Session>,
    recorder: Arc<Recorder>,
    stop: CancellationToken,
    rng: SmallRng,
    shared: Arc<EngineShared>,
    /// The engine's start instant (first sends are noted relative to it).
    start: std::time::Instant,
    /// The run's start (the engine may join a run part-way): `Call::elapsed` counts from it.
    run_start: std::time::Instant,
    /// When the first request was due, if not "now" (a simultaneous start); its schedule lag
    /// is recorded.
    first_due: Option<std::time::Instant>,
    /// Requests to send before stopping (`None`: until told to stop).
    requests: Option<u64>,
    /// How long to wait before the first request: users the supervisor starts in one tick are
    /// spread evenly over the tick, as the spawn rate says, rather than all sent at once.
    delay: Duration,
}

/// A user: call, record, repeat until told to stop (between calls, never during) or until its
/// requests are sent.
async fn user(mut u: User) {
    if !u.delay.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(u.delay) => {}
            () = u.stop.cancelled() => return,
        }
    }
    let mut sent = 0u64;
    while !u.stop.is_cancelled() && u.requests.is_none_or(|n| sent < n) {
        let now = std::time::Instant::now();
        let scheduled = match u.first_due.take() {
            Some(due) => {
                u.recorder.lag(now.saturating_duration_since(due));
                due
            }
            None => now,
        };
        if sent == 0 {
            let at = now.saturating_duration_since(u.start).as_nanos() as u64;
            let (min, max) = &u.shared.first_sends;
            min.fetch_min(at, Ordering::Relaxed);
            max.fetch_max(at, Ordering::Relaxed);
        }
        u.session
            .call(Call {
                rng: &mut u.rng,
                recorder: &u.recorder,
                scheduled,
                elapsed: scheduled.saturating_duration_since(u.run_start),
                request: None,
            })
            .await;
        sent += 1;
    }
}

/// Open model: lanes (OS threads, each with its own single-threaded runtime) time arrivals and
/// run the requests they start.
///
/// A lane's pacer and its requests share one thread, so an arrival is handed over without a
/// cross-thread wake-up and is polled as soon as the pacer yields. The pacer waits on a
/// [`LaneClock`]: the runtime's `epoll_wait` returns when the arrival is due, rather than on
/// tokio's 1 ms timer tick, and nothing spins (a thread that spins uses up its time slice and
/// is preempted by the OS just when an arrival is due, on a shared machine). One lane takes up to [`LANE_RATE`]
/// arrivals per second; more lanes (up to one per core) share a higher rate, each with its own
/// random stream (the superposition of independent Poisson streams is Poisson at the sum).
async fn open_loop(spec: EngineSpec, shared: Arc<EngineShared>, stop: CancellationToken) {
    let halt = Arc::new(AtomicBool::new(false));
    // Halts the lanes however this task ends (also when it is aborted).
    let _halt_on_drop = HaltOnDrop(halt.clone());
    let peak = shared
        .plan
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .peak_rate();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let lanes = ((peak / LANE_RATE).ceil() as usize).clamp(1, cores);
    let start = spec.start.into_std();
    let end = start + spec.duration.saturating_sub(spec.elapsed);
    let mut threads = Vec::with_capacity(lanes);
    for lane in 0..lanes {
        let pacing = Pacing {
            driver: spec.driver.clone(),
            recorder: spec.recorder.clone(),
            start,
            elapsed: spec.elapsed,
            end,
            lane,
            lanes,
            run_seed: spec.run_seed,
        };
        let (lane_shared, lane_halt) = (shared.clone(), halt.clone());
        let seed = spec.seed ^ (lane as u64).wrapping_mul(0xA24B_AED4_963E_E407);
        let thread = std::thread::Builder::new()
            .name(format!("stampede-open-{lane}"))
            .spawn(move || run_lane(pacing, lane_shared, lane_halt, seed));
        match thread {
            Ok(t) => threads.push(t),
            Err(e) => {
                tracing::error!("cannot start open-model lane {lane}: {e}");
                halt.store(true, Ordering::Relaxed);
                break;
            }
        }
    }
    // A lane ends by itself at the run's end, once its in-flight requests are done (a lane
    // running late still sends every arrival due before the end); a stop halts the lanes.
    let joined = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    });
    tokio::pin!(joined);
    tokio::select! {
        _ = stop.cancelled() => {
            halt.store(true, Ordering::Relaxed);
            let _ = joined.await;
        }
        _ = &mut joined => {}
    }
    shared.rate_bits.store(0f64.to_bits(), Ordering::Relaxed);
}

/// Arrivals per second one open-model lane takes before another lane is added.
pub const LANE_RATE: f64 = 25_000.0;

struct HaltOnDrop(Arc<AtomicBool>);

impl Drop for HaltOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

struct Pacing {
    driver: Arc<dyn Driver>,
    recorder: Arc<Recorder>,
    start: std::time::Instant,
    elapsed: Duration,
    end: std::time::Instant,
    /// This lane's index, and how many lanes share the rate.
    lane: usize,
    lanes: usize,
    /// The run's seed (shared gamma arrivals).
    run_seed: u64,
}

/// One lane's thread: its runtime runs the pacer and the requests it starts, until the pacer
/// ends and every request is done.
fn run_lane(p: Pacing, shared: Arc<EngineShared>, halt: Arc<AtomicBool>, seed: u64) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return tracing::error!("cannot start open-model lane {}: {e}", p.lane),
    };
    let tracker = tokio_util::task::TaskTracker::new();
    rt.block_on(async {
        let clock = LaneClock::new();
        pace(&p, &shared, &halt, &tracker, &clock, seed).await;
        tracker.close();
        tracker.wait().await;
    });
}

/// A lane's pacer: ask the lane's [`Schedule`] for the next arrival under the plan as it is
/// now, wait for it on the [`LaneClock`], start it; until the schedule ends or `halt`. The
/// engine knows no load model: rates, request mixes, spikes and end rules are the schedule's
/// data.
async fn pace(
    p: &Pacing,
    shared: &Arc<EngineShared>,
    halt: &AtomicBool,
    tracker: &tokio_util::task::TaskTracker,
    clock: &LaneClock,
    seed: u64,
) {
    let mut rng = SmallRng::seed_from_u64(seed);
    let pool: Arc<Mutex<Vec<Box<dyn Session>>>> = Arc::new(Mutex::new(Vec::new()));
    clock.wait_until(p.start, halt).await;
    // Times from here on are elapsed run time; `p.start` is `p.elapsed` into the run.
    let end = p.elapsed + p.end.saturating_duration_since(p.start);
    let instant = |at: Duration| p.start + at.saturating_sub(p.elapsed);
    let mut schedule = Schedule::new(p.elapsed, p.lane, p.lanes).with_run_seed(p.run_seed);
    let mut picks = 0u64;
    while !halt.load(Ordering::Relaxed) {
        let (next, max_in_flight) = {
            let plan = shared.plan.read().unwrap_or_else(|e| e.into_inner());
            (
                schedule.next(&plan, end, &mut rng),
                plan.model.max_in_flight(),
            )
        };
        if p.lane == 0 {
            shared
                .rate_bits
                .store(schedule.rate().to_bits(), Ordering::Relaxed);
        }
        match next {
            Next::End => break,
            Next::Idle { at } => {
                // Nothing to send now (a ramp from 0, or a share of 0): look again shortly.
                clock.wait_until(instant(at), halt).await;
                schedule.resume_at(p.elapsed + p.start.elapsed());
            }
            Next::Arrival { at, request } => {
                let scheduled = instant(at);
                clock.wait_until(scheduled, halt).await;
                if halt.load(Ordering::Relaxed) {
                    break;
                }
                if shared.active.load(Ordering::Relaxed) >= max_in_flight {
                    shared.dropped.fetch_add(1, Ordering::Relaxed);
                    p.driver.dropped(request, &p.recorder);
                    continue;
                }
                picks = picks.wrapping_add(1);
                dispatch(
                    p,
                    shared,
                    &pool,
                    tracker,
                    Due {
                        scheduled,
                        elapsed: at,
                        request,
                        seed: seed ^ picks.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    },
                );
            }
        }
    }
}

/// One arrival, as the pacer hands it to [`dispatch`].
struct Due {
    /// When it was due.
    scheduled: std::time::Instant,
    /// The same, from the start of the run.
    elapsed: Duration,
    /// The request the schedule picked, if it picks.
    request: Option<usize>,
    /// The random seed of the call's random source.
    seed: u64,
}

/// Start one arrival on the lane's runtime, with a session from the lane's pool (or a new one).
/// Its schedule lag is taken when the runtime first polls it (as soon as the pacer yields).
fn dispatch(
    p: &Pacing,
    shared: &Arc<EngineShared>,
    pool: &Arc<Mutex<Vec<Box<dyn Session>>>>,
    tracker: &tokio_util::task::TaskTracker,
    due: Due,
) {
    let Due {
        scheduled,
        elapsed,
        request,
        seed,
    } = due;
    let active = InFlight::enter(shared.clone());
    let (driver, recorder, pool) = (p.driver.clone(), p.recorder.clone(), pool.clone());
    tracker.spawn(async move {
        recorder.lag(scheduled.elapsed());
        // A short critical section (no await while held): the lane's idle sessions.
        let session = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut session = session.unwrap_or_else(|| driver.session());
        let mut rng = SmallRng::seed_from_u64(seed);
        session
            .call(Call {
                rng: &mut rng,
                recorder: &recorder,
                scheduled,
                elapsed,
                request,
            })
            .await;
        pool.lock().unwrap_or_else(|e| e.into_inner()).push(session);
        drop(active);
    });
}

/// Counts one request in flight for as long as it lives (also when its task is aborted).
struct InFlight(Arc<EngineShared>);

impl InFlight {
    fn enter(shared: Arc<EngineShared>) -> InFlight {
        shared.active.fetch_add(1, Ordering::Relaxed);
        InFlight(shared)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a lane's pacer waits for its next arrival. On Linux: a timerfd (the OS's
/// high-resolution timer, [`Timer`]) registered with the lane's runtime, so the runtime's own
/// `epoll_wait` returns at the arrival's time: no 1 ms tick as with tokio's timer, no spinning,
/// and one thread to wake. Elsewhere, or if no timerfd can be made: [`wait_until`].
struct LaneClock {
    timer: Option<Timer>,
}

impl LaneClock {
    /// Must be made on the runtime that waits on it.
    fn new() -> LaneClock {
        let timer = Timer::new();
        if let Err(e) = &timer
            && e.kind() != std::io::ErrorKind::Unsupported
        {
            tracing::warn!("no timerfd ({e}): arrivals are timed by tokio's 1 ms timer");
        }
        LaneClock { timer: timer.ok() }
    }

    /// Wait until `at` (or `halt`, seen within 50 ms).
    async fn wait_until(&self, at: std::time::Instant, halt: &AtomicBool) {
        if let Some(timer) = &self.timer {
            const SLICE: Duration = Duration::from_millis(50);
            loop {
                let now = std::time::Instant::now();
                if now >= at || halt.load(Ordering::Relaxed) {
                    return;
                }
                if let Err(e) = timer.sleep((at - now).min(SLICE)).await {
                    tracing::warn!("timerfd: {e}: arrivals are timed by tokio's 1 ms timer");
                    break;
                }
            }
        }
        wait_until(at, halt).await;
    }
}

/// Wait until `at` (or `halt`): on the runtime's timer while far off (it fires up to 1 ms
/// late), then yielding to the runtime's other tasks until the time has come. For the closed
/// model's start, and for open arrivals where [`LaneClock`] has no timerfd.
async fn wait_until(at: std::time::Instant, halt: &AtomicBool) {
    const MARGIN: Duration = Duration::from_millis(2);
    const SLICE: Duration = Duration::from_millis(50);
    loop {
        let now = std::time::Instant::now();
        if now >= at || halt.load(Ordering::Relaxed) {
            return;
        }
        let left = at - now;
        if left > MARGIN {
            tokio::time::sleep((left - MARGIN).min(SLICE)).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stampede_scenarios::driver::{CallFuture, RequestInfo};
    use stampede_scenarios::{Arrival, LoadModel};
    use std::sync::atomic::AtomicUsize;

    /// A driver whose calls take `delay` of tokio time and count themselves.
    struct Sleepy {
        info: Vec<RequestInfo>,
        delay: Duration,
        calls: Arc<AtomicUsize>,
        sessions: Arc<AtomicUsize>,
    }

    struct SleepySession {
        delay: Duration,
        calls: Arc<AtomicUsize>,
    }

    impl Driver for Sleepy {
        fn requests(&self) -> &[RequestInfo] {
            &self.info
        }
        fn session(&self) -> Box<dyn Session> {
            self.sessions.fetch_add(1, Ordering::Relaxed);
            Box::new(SleepySession {
                delay: self.delay,
                calls: self.calls.clone(),
            })
        }
        /// Counted in the recorder's first counter, when it has one.
        fn dropped(&self, request: Option<usize>, recorder: &Recorder) {
            recorder.count(request.unwrap_or(0), 0, 1);
        }
    }

    impl Session for SleepySession {
        fn call<'a>(&'a mut self, call: Call<'a>) -> CallFuture<'a> {
            Box::pin(async move {
                tokio::time::sleep(self.delay).await;
                self.calls.fetch_add(1, Ordering::Relaxed);
                call.recorder.request(0, call.scheduled.elapsed(), 1, None);
            })
        }
    }

    fn sleepy(delay: Duration) -> (Arc<Sleepy>, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let sessions = Arc::new(AtomicUsize::new(0));
        let d = Sleepy {
            info: vec![RequestInfo {
                kind: "GET".into(),
                name: "a".into(),
            }],
            delay,
            calls: calls.clone(),
            sessions: sessions.clone(),
        };
        (Arc::new(d), calls, sessions)
    }

    fn plan(model: LoadModel, slot: usize, weights: Vec<u32>) -> LoadPlan {
        LoadPlan {
            model,
            slot,
            weights,
            scale: 1.0,
            mix: None,
        }
    }

    /// Closed users ramp at the spawn rate, every user runs back-to-back calls, and the engine
    /// ends at the duration, all under paused time (so exact).
    #[tokio::test(start_paused = true)]
    async fn closed_users_ramp_and_loop() {
        let (driver, calls, sessions) = sleepy(Duration::from_millis(100));
        let recorder = Arc::new(Recorder::new(vec!["a".into()], &[], &[], 1));
        let (engine, done) = Engine::start(EngineSpec {
            driver,
            recorder: recorder.clone(),
            plan: plan(
                LoadModel::Closed {
                    users: 10,
                    spawn_rate: 5.0,
                },
                0,
                vec![1],
            ),
            start: Instant::now(),
            elapsed: Duration::ZERO,
            duration: Duration::from_secs(5),
            seed: 1,
            run_seed: 1,
        });
        tokio::time::sleep(Duration::from_millis(1010)).await;
        // floor(5/s × 1 s) + 1 = 6 users after one second.
        assert_eq!(engine.active(), 6);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(engine.active(), 10);
        done.await.unwrap();
        assert_eq!(engine.active(), 0);
        assert_eq!(sessions.load(Ordering::Relaxed), 10);
        let n = calls.load(Ordering::Relaxed);
        // User k starts at ~k/5 s (k ≥ 1), then makes one call per 100 ms until 5 s (a call
        // that starts before the end finishes).
        let expected: usize = (0..10u32)
            .map(|k| if k == 0 { 50 } else { 50 - (k as usize * 2) })
            .sum();
        assert!(
            n.abs_diff(expected) <= 10,
            "{n} calls, expected about {expected}"
        );
        assert_eq!(recorder.take().names[0].requests as usize, n);
    }

    /// A worker's share of users follows the split, and an update moves it.
    #[tokio::test(start_paused = true)]
    async fn share_and_update() {
        let (driver, _, _) = sleepy(Duration::from_millis(10));
        let recorder = Arc::new(Recorder::new(vec!["a".into()], &[], &[], 1));
        let model = LoadModel::Closed {
            users: 9,
            spawn_rate: f64::INFINITY,
        };
        let (engine, done) = Engine::start(EngineSpec {
            driver,
            recorder,
            plan: plan(model.clone(), 1, vec![1, 2]),
            start: Instant::now(),
            elapsed: Duration::ZERO,
            duration: Duration::from_secs(2),
            seed: 2,
            run_seed: 2,
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(engine.active(), 6);
        engine.update(plan(model, 0, vec![3]));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(engine.active(), 9);
        engine.stop();
        done.await.unwrap();
        assert_eq!(engine.active(), 0);
    }

    /// A driver that records each call under the request the schedule picked.
    struct Echo(Vec<RequestInfo>);
    struct EchoSession;

    impl Driver for Echo {
        fn requests(&self) -> &[RequestInfo] {
            &self.0
        }
        fn session(&self) -> Box<dyn Session> {
            Box::new(EchoSession)
        }
    }

    impl Session for EchoSession {
        fn call<'a>(&'a mut self, call: Call<'a>) -> CallFuture<'a> {
            Box::pin(async move {
                let i = call.request.unwrap_or(99);
                call.recorder.request(
                    i,
                    call.scheduled.elapsed(),
                    call.elapsed.as_millis() as u64,
                    None,
                );
            })
        }
    }

    /// With a mix, the engine hands each call the request its schedule picked (and the time
    /// into the run): rates per request are the plan's data, not driver code.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mix_picks_the_request_of_each_arrival() {
        let info = |n: &str| RequestInfo {
            kind: "X".into(),
            name: n.into(),
        };
        let driver = Arc::new(Echo(vec![info("a"), info("b"), info("c")]));
        let recorder = Arc::new(Recorder::new(
            vec!["a".into(), "b".into(), "c".into()],
            &[],
            &[],
            2,
        ));
        let mut p = plan(
            LoadModel::Open {
                rate: 400.0,
                arrival: Arrival::Poisson,
                burstiness: 1.0,
                max_in_flight: 1000,
            },
            0,
            vec![1],
        );
        p.mix = Some(stampede_scenarios::load::Mix {
            shares: vec![0.75, 0.0, 0.25],
            spikes: vec![],
            until: None,
        });
        let (_engine, done) = Engine::start(EngineSpec {
            driver,
            recorder: recorder.clone(),
            plan: p,
            start: Instant::now(),
            elapsed: Duration::from_secs(5),
            duration: Duration::from_secs(6),
            seed: 8,
            run_seed: 8,
        });
        done.await.unwrap();
        let iv = recorder.take();
        let (a, b, c) = (
            iv.names[0].requests,
            iv.names[1].requests,
            iv.names[2].requests,
        );
        // 1 s at 300/s and 100/s; none for the share of 0.
        assert_eq!(b, 0);
        assert!(a.abs_diff(300) < 70 && c.abs_diff(100) < 40, "{a} {c}");
        // `elapsed` counts from the run's start, 5 s before this worker's.
        assert!(
            iv.names[0].bytes / a >= 5000,
            "mean elapsed {}",
            iv.names[0].bytes / a
        );
    }

    /// A simultaneous start: every user's one request is due at the start instant (latency
    /// and lag count from it), the engine ends as soon as all are done, long before the
    /// duration, and the first sends are noted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn simultaneous_users_send_once_and_end() {
        let (driver, calls, sessions) = sleepy(Duration::from_millis(20));
        let recorder = Arc::new(Recorder::new(vec!["a".into()], &[], &[], 2));
        let model = LoadModel::Simultaneous {
            users: 30,
            mode: stampede_scenarios::UserMode::Once,
        };
        let start = Instant::now() + Duration::from_millis(50);
        let (engine, done) = Engine::start(EngineSpec {
            driver,
            recorder: recorder.clone(),
            plan: plan(model, 1, vec![1, 2]),
            start,
            elapsed: Duration::ZERO,
            duration: Duration::from_secs(60),
            seed: 3,
            run_seed: 3,
        });
        tokio::time::timeout(Duration::from_secs(10), done)
            .await
            .expect("ends when every user is done, not at the duration")
            .unwrap();
        // Slot 1 of weights [1, 2]: 20 of the 30 users.
        assert_eq!(calls.load(Ordering::Relaxed), 20);
        assert_eq!(sessions.load(Ordering::Relaxed), 20);
        assert!(Instant::now() >= start + Duration::from_millis(20));
        let iv = recorder.take();
        assert_eq!(iv.names[0].requests, 20);
        assert_eq!(
            iv.lag.map(|h| h.len()),
            Some(20),
            "one lag per first request"
        );
        let (first, last) = engine.first_sends().expect("first sends noted");
        assert!(first <= last);
        assert_eq!(engine.active(), 0);
    }

    #[test]
    fn constant_gaps_are_exact() {
        let mut rng = SmallRng::seed_from_u64(3);
        assert_eq!(next_gap(Arrival::Constant, 250.0, &mut rng), 0.004);
    }

    /// Poisson gaps pass a Kolmogorov–Smirnov test against the exponential distribution.
    #[test]
    fn poisson_gaps_are_exponential() {
        let mut rng = SmallRng::seed_from_u64(4);
        let rate = 10_000.0;
        let n = 50_000;
        let mut gaps: Vec<f64> = (0..n)
            .map(|_| next_gap(Arrival::Poisson, rate, &mut rng))
            .collect();
        gaps.sort_by(|a, b| a.total_cmp(b));
        let d = gaps
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let cdf = 1.0 - (-rate * x).exp();
                let lo = cdf - i as f64 / n as f64;
                let hi = (i + 1) as f64 / n as f64 - cdf;
                lo.max(hi)
            })
            .fold(0.0, f64::max);
        // The critical value at α = 0.01 is 1.63/√n.
        assert!(d < 1.63 / (n as f64).sqrt(), "KS statistic {d}");
        let mean = gaps.iter().sum::<f64>() / n as f64;
        assert!((mean * rate - 1.0).abs() < 0.02, "mean gap {mean}");
    }

    /// Above one lane's rate, lanes share the arrivals: constant spacing over all lanes gives
    /// the worker's exact sequence, every arrival before the end is sent, each with its lag.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lanes_share_a_high_rate() {
        let (driver, calls, sessions) = sleepy(Duration::from_millis(1));
        let recorder = Arc::new(Recorder::new(vec!["a".into()], &[], &[], 2));
        let rate = 2.4 * LANE_RATE;
        let model = LoadModel::Open {
            rate,
            arrival: Arrival::Constant,
            burstiness: 1.0,
            max_in_flight: u64::MAX,
        };
        let (engine, done) = Engine::start(EngineSpec {
            driver,
            recorder: recorder.clone(),
            plan: plan(model, 0, vec![1]),
            start: Instant::now(),
            elapsed: Duration::ZERO,
            duration: Duration::from_millis(500),
            seed: 7,
            run_seed: 7,
        });
        done.await.unwrap();
        let n = calls.load(Ordering::Relaxed) as f64;
        // Arrivals m/rate for m = 1.. before 0.5 s: 30,000 less the one at exactly the end,
        // within the nanosecond rounding of the gaps.
        let expected = rate * 0.5 - 1.0;
        assert!(
            (n - expected).abs() <= 3.0,
            "{n} arrivals, expected {expected}"
        );
        assert_eq!(recorder.take().lag.map(|h| h.len()), Some(n as u64));
        assert_eq!(engine.active(), 0);
        let lanes = (rate / LANE_RATE).ceil() as usize;
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        assert!(
            sessions.load(Ordering::Relaxed) >= lanes.min(cores),
            "each lane keeps its own sessions"
        );
    }

    /// The open loop produces its share of the rate in real time, records lag, and drops
    /// arrivals beyond max_in_flight rather than queueing them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_loop_rate_and_drops() {
        let (driver, calls, _) = sleepy(Duration::from_millis(1));
        let recorder = Arc::new(Recorder::new(vec!["a".into()], &[], &[], 2));
        let model = LoadModel::Open {
            rate: 2000.0,
            arrival: Arrival::Constant,
            burstiness: 1.0,
            max_in_flight: 10_000,
        };
        let (_engine, done) = Engine::start(EngineSpec {
            driver,
            recorder: recorder.clone(),
            plan: plan(model, 0, vec![1, 1]),
            start: Instant::now(),
            elapsed: Duration::ZERO,
            duration: Duration::from_secs(1),
            seed: 5,
            run_seed: 5,
        });
        done.await.unwrap();
        let n = calls.load(Ordering::Relaxed);
        // Half of 2000/s for 1 s, constant spacing: 1000 arrivals (the first at one gap).
        assert!((990..=1000).contains(&n), "{n}");
        let iv = recorder.take();
        assert_eq!(iv.lag.map(|h| h.len()), Some(n as u64));

        let (slow, slow_calls, _) = sleepy(Duration::from_secs(10));
        let recorder = Arc::new(Recorder::new(vec!["a".into()], &[], &["dropped"], 2));
        let model = LoadModel::Open {
            rate: 100.0,
            arrival: Arrival::Constant,
            burstiness: 1.0,
            max_in_flight: 5,
        };
        let (engine, done) = Engine::start(EngineSpec {
            driver: slow,
            recorder: recorder.clone(),
            plan: plan(model, 0, vec![1]),
            start: Instant::now(),
            elapsed: Duration::ZERO,
            duration: Duration::from_millis(300),
            seed: 6,
            run_seed: 6,
        });
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(engine.active(), 5);
        let dropped = engine.take_dropped();
        assert!(dropped >= 20);
        // Each drop is also handed to the driver, with its request.
        assert_eq!(recorder.take().names[0].counters, vec![dropped]);
        drop(done);
        assert_eq!(slow_calls.load(Ordering::Relaxed), 0);
    }
}
