//! The simulated inference engine: continuous batching, token timing on absolute deadlines, token
//! text, output lengths, and the truth statistics.
//!
//! The HTTP layer hands it a [`Job`] (what an API request asked for, plus an [`Encoder`] that
//! knows that API's bytes) and polls the resulting [`Generation`]: as a response body when
//! streaming, or to completion inside the request future when not. It knows nothing of paths,
//! JSON field names or HTTP.
//!
//! # Timing model
//!
//! - A request first waits for one of `max_batch` slots (vLLM's `max_num_seqs`); the wait is part
//!   of its time to first token.
//! - Once admitted, its first token is due at `admitted + ttft × slowdown`, and each next token at
//!   `previous deadline + tpot × slowdown`: deadlines are absolute, so timer errors never add up.
//! - `slowdown = 1 + slope × max(0, n − knee) / knee`, with `n` the requests holding a slot when
//!   the step is scheduled (`knee = 0` turns it off). Below the knee a batch costs nothing extra,
//!   above it every step slows down linearly, as a memory-bound decode does once the batch stops
//!   being free.
//! - Tokio timers fire on the first millisecond tick at or after a deadline, so frames are
//!   typically 0–1.5 ms late; that lateness is recorded per emission (stats `lateness`). With
//!   `precise` every deadline is kept by one shared timerfd ([`DeadlineClock`]): tokens go out
//!   within tens of microseconds of their deadlines at no CPU cost per stream (where no timerfd
//!   can be made, the engine sleeps to one millisecond before the deadline and then yields in a
//!   loop until it passes, trading CPU for accuracy); and the server counts a request
//!   from its arrival at the socket (kernel receive timestamp) rather than from the moment it
//!   was read, so a busy server core does not shift the clock its answers are timed by.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::clock::DeadlineClock;
use super::stats::{Gauge, LlmTargetStats, Timing};
use super::{Fault, LlmTargetConfig, OutputLen};
use crate::llm::dist::Dist;

/// How far ahead of a deadline `precise` timing stops sleeping and starts yielding.
const SPIN_WINDOW: Duration = Duration::from_millis(1);

/// Vocabulary of the simulated model. Every token is one of these words with a leading space, so
/// a completion of `n` tokens is exactly `n` whitespace-separated words.
const WORDS: [&str; 64] = [
    " the", " of", " and", " to", " in", " a", " is", " that", " for", " it", " as", " was",
    " with", " be", " by", " on", " not", " he", " this", " are", " or", " his", " from", " at",
    " which", " but", " have", " an", " had", " they", " you", " were", " their", " one", " all",
    " we", " can", " her", " has", " there", " been", " if", " more", " when", " will", " would",
    " who", " so", " no", " time", " model", " token", " stream", " batch", " river", " stone",
    " light", " north", " quiet", " number", " small", " large", " early", " later",
];

/// Token ids are drawn below this (a Llama-sized vocabulary).
const VOCAB: u32 = 32_000;

/// Sum log-probabilities and round to the thousandth they are drawn at, so sums print cleanly.
pub(crate) fn sum_logprobs(logprobs: impl IntoIterator<Item = f32>) -> f64 {
    let sum: f64 = logprobs.into_iter().map(f64::from).sum();
    (sum * 1000.0).round() / 1000.0
}

/// Count prompt tokens the simulator's way: whitespace-separated words. Real servers use a
/// tokenizer; this rule is documented so clients can predict `usage.prompt_tokens` exactly.
pub(crate) fn count_words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Seconds since the Unix epoch, for `created` fields.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// `max_tokens` reached.
    Length,
    /// The simulated model produced its end-of-sequence token first.
    Stop,
}

/// One output token as the encoders see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Token {
    /// Position in the output, from 0.
    pub index: u32,
    /// Vocabulary id (deterministic from the request and position).
    pub id: u32,
    /// Text, always one word with a leading space.
    pub text: &'static str,
    /// A plausible log-probability in `(-1, 0]`.
    pub logprob: f32,
}

/// What [`Encoder::end`] needs to write usage and finish details.
#[derive(Debug, Clone, Copy)]
pub(crate) struct End {
    pub prompt_tokens: u64,
    pub completion_tokens: u32,
    pub finish: Finish,
}

/// One API's bytes. The engine calls `token` once per output token and `end` once after the last
/// one; a streaming encoder writes events as they come, a non-streaming one collects and writes
/// the whole answer in `end`.
pub(crate) trait Encoder: Send {
    /// Append the bytes of one token (`finish` is set on the last one).
    fn token(&mut self, out: &mut Vec<u8>, token: &Token, finish: Option<Finish>);
    /// Append what follows the last token: a stream's trailer, or the whole non-streamed answer.
    fn end(&mut self, out: &mut Vec<u8>, end: &End);
    /// Append one event whose JSON is broken (fault injection).
    fn malformed(&mut self, out: &mut Vec<u8>);
    /// Append one event of a kind this API never sends (fault injection).
    fn unknown_event(&mut self, out: &mut Vec<u8>);
}

/// What one API request asked the engine for.
pub(crate) struct Job {
    pub prompt_tokens: u64,
    /// Upper bound on output tokens; at least 1 (the API layers validate).
    pub max_tokens: u32,
    /// Lower bound on output tokens when the simulated model may stop early (vLLM `min_tokens`).
    pub min_tokens: u32,
    /// Always produce exactly `max_tokens` (vLLM `ignore_eos`).
    pub ignore_eos: bool,
    pub stream: bool,
    pub encoder: Box<dyn Encoder>,
}

/// Shared engine state, built once from the config.
pub(crate) struct Engine {
    ttft: Dist,
    tpot: Dist,
    output_len: OutputLen,
    knee: u32,
    slope: f64,
    precise: bool,
    /// The shared deadline clock of `precise` timing, made on first use (on the server's
    /// runtime); `None` inside when none can be made.
    clock: std::sync::OnceLock<Option<Arc<DeadlineClock>>>,
    /// Batch slots; `None` when `max_batch` is 0 (unlimited).
    slots: Option<Arc<Semaphore>>,
    seed: u64,
    /// Requests started so far; each gets its own RNG stream from `seed` and this number, so a
    /// seeded run is reproducible request by request without a shared, locked RNG.
    next_request: AtomicU64,
    pub(crate) stats: Arc<LlmTargetStats>,
}

impl Engine {
    pub(crate) fn new(config: &LlmTargetConfig, stats: Arc<LlmTargetStats>) -> Self {
        Self {
            ttft: config.ttft,
            tpot: config.tpot,
            output_len: config.output_len,
            knee: config.batch_knee,
            slope: config.batch_slope,
            precise: config.precise_timing,
            clock: std::sync::OnceLock::new(),
            slots: (config.max_batch > 0).then(|| Arc::new(Semaphore::new(config.max_batch))),
            seed: config.seed.unwrap_or_else(rand::random),
            next_request: AtomicU64::new(0),
            stats,
        }
    }

    /// The RNG of the next request (in arrival order).
    pub(crate) fn next_rng(&self) -> SmallRng {
        let number = self.next_request.fetch_add(1, Ordering::Relaxed);
        SmallRng::seed_from_u64(mix(self.seed, number))
    }

    /// The batching slowdown factor for a step scheduled now.
    fn slowdown(&self) -> f64 {
        if self.knee == 0 || self.slope == 0.0 {
            return 1.0;
        }
        let knee = f64::from(self.knee);
        let over = (self.stats.generating() as f64 - knee).max(0.0);
        1.0 + self.slope * over / knee
    }

    fn scaled(&self, dist: &Dist, rng: &mut SmallRng) -> Duration {
        dist.sample(rng).mul_f64(self.slowdown())
    }

    /// Start a generation whose request body was fully read at `body_read`. `fault` is injected
    /// at the middle token.
    pub(crate) fn start(
        self: &Arc<Self>,
        job: Job,
        mut rng: SmallRng,
        body_read: Instant,
        fault: Option<Fault>,
    ) -> Generation {
        let max = job.max_tokens.max(1);
        let floor = job.min_tokens.clamp(1, max);
        let length = if job.ignore_eos {
            max
        } else {
            match self.output_len {
                OutputLen::Max => max,
                OutputLen::Uniform => rng.random_range(floor..=max),
                OutputLen::Fixed(n) => n.clamp(floor, max),
            }
        };
        let finish = if length == max {
            Finish::Length
        } else {
            Finish::Stop
        };
        let stream_guard = job
            .stream
            .then(|| GaugeGuard::new(&self.stats, Gauge::Streams));
        let phase = match &self.slots {
            Some(slots) => Phase::Queued {
                acquire: Box::pin(Arc::clone(slots).acquire_owned()),
                _guard: GaugeGuard::new(&self.stats, Gauge::Queued),
            },
            None => Phase::Admit,
        };
        let token_seed = rng.random();
        Generation {
            engine: Arc::clone(self),
            encoder: job.encoder,
            rng,
            token_seed,
            stream: job.stream,
            prompt_tokens: job.prompt_tokens,
            length,
            finish,
            fault: fault.map(|fault| (fault, length / 2)),
            body_read,
            phase,
            emitted: 0,
            deadline: body_read,
            sleep: Box::pin(tokio::time::sleep_until(body_read)),
            registered: None,
            last_emit: body_read,
            first_emit: body_read,
            _permit: None,
            _generating: None,
            _stream: stream_guard,
            state: State::Running,
        }
    }
}

/// A stream was cut on purpose (the `close_mid_stream` fault); hyper drops the connection when a
/// body returns it.
#[derive(Debug, thiserror::Error)]
#[error("stream closed mid-answer by fault injection")]
pub(crate) struct FaultClose;

/// Where a generation is.
enum Phase {
    /// Waiting for a batch slot.
    Queued {
        acquire: Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>,
        /// Counts this request in `queued` while it waits.
        _guard: GaugeGuard,
    },
    /// Has a slot (or there are no slots); the first deadline is not set yet.
    Admit,
    /// Waiting for `deadline` to emit the next token.
    Decode,
    /// Everything was written.
    Done,
}

/// How a generation ended, for the drop-time accounting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Finished,
    Cut,
}

/// One request's output, produced token by token on its deadlines. Poll it with
/// [`Generation::poll_step`]; dropping it early (client gone) frees its batch slot and counts it
/// as cancelled.
pub(crate) struct Generation {
    engine: Arc<Engine>,
    encoder: Box<dyn Encoder>,
    rng: SmallRng,
    /// Mixed into token ids so different requests say different things.
    token_seed: u64,
    stream: bool,
    prompt_tokens: u64,
    /// Output tokens this generation will produce.
    length: u32,
    finish: Finish,
    /// A fault and the token index it fires at.
    fault: Option<(Fault, u32)>,
    body_read: Instant,
    phase: Phase,
    emitted: u32,
    deadline: Instant,
    sleep: Pin<Box<Sleep>>,
    /// The deadline (and the waker) registered with the engine's [`DeadlineClock`], if any.
    registered: Option<(Instant, std::task::Waker)>,
    last_emit: Instant,
    /// When the first token was written (streams).
    first_emit: Instant,
    /// The batch slot; returned to the semaphore when the generation ends or is dropped.
    _permit: Option<OwnedSemaphorePermit>,
    _generating: Option<GaugeGuard>,
    _stream: Option<GaugeGuard>,
    state: State,
}

impl Generation {
    /// Produce the next piece of output: `Some(Ok(bytes))` for a frame to write now (streaming:
    /// one per token, the last carrying the trailer; not streaming: the whole answer once),
    /// `Some(Err(FaultClose))` to cut the connection, `None` when done.
    pub(crate) fn poll_step(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Vec<u8>, FaultClose>>> {
        loop {
            match &mut self.phase {
                Phase::Queued { acquire, .. } => {
                    let permit = ready!(acquire.as_mut().poll(cx));
                    // The semaphore is never closed, so acquiring cannot fail; without a permit
                    // the request simply runs unbatched.
                    self._permit = permit.ok();
                    self.phase = Phase::Admit;
                }
                Phase::Admit => {
                    let now = Instant::now();
                    let stats = &self.engine.stats;
                    stats.record(Timing::Queue, now - self.body_read);
                    stats.prompt_tokens(self.prompt_tokens);
                    self._generating = Some(GaugeGuard::new(stats, Gauge::Generating));
                    let ttft = self.engine.scaled(&self.engine.ttft, &mut self.rng);
                    self.set_deadline(now + ttft);
                    self.phase = Phase::Decode;
                }
                Phase::Decode => {
                    ready!(self.poll_deadline(cx));
                    match self.emit() {
                        Ok(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                        Ok(None) => {}
                        Err(cut) => return Poll::Ready(Some(Err(cut))),
                    }
                }
                Phase::Done => return Poll::Ready(None),
            }
        }
    }

    /// Emit the token due now. Returns the frame to write, `None` when a non-streaming
    /// generation has nothing to write yet, or the cut.
    fn emit(&mut self) -> Result<Option<Vec<u8>>, FaultClose> {
        let now = Instant::now();
        let stats = Arc::clone(&self.engine.stats);
        let index = self.emitted;
        let last = index + 1 == self.length;
        let mut out = Vec::new();

        if let Some((fault, at)) = self.fault
            && at == index
            && self.stream
        {
            self.fault = None;
            stats.fault(fault);
            match fault {
                Fault::CloseMidStream => {
                    self.state = State::Cut;
                    self.end_generation();
                    return Err(FaultClose);
                }
                Fault::MalformedJson => self.encoder.malformed(&mut out),
                Fault::UnknownEvent => self.encoder.unknown_event(&mut out),
            }
        }

        let token = self.token(index);
        self.encoder
            .token(&mut out, &token, last.then_some(self.finish));
        self.emitted += 1;
        if last {
            self.encoder.end(
                &mut out,
                &End {
                    prompt_tokens: self.prompt_tokens,
                    completion_tokens: self.length,
                    finish: self.finish,
                },
            );
        }

        if self.stream || last {
            stats.record(
                Timing::Lateness,
                now.saturating_duration_since(self.deadline),
            );
        }
        if self.stream {
            let timing = if index == 0 {
                Timing::Ttft
            } else {
                Timing::Itl
            };
            let since = if index == 0 {
                self.body_read
            } else {
                self.last_emit
            };
            stats.record(timing, now - since);
            if index == 0 {
                self.first_emit = now;
            }
            stats.completion_tokens(1);
            self.last_emit = now;
        }

        if last {
            stats.record(Timing::E2e, now - self.body_read);
            if self.stream && self.length > 1 {
                let decode = now.saturating_duration_since(self.first_emit);
                stats.record(Timing::Tpot, decode / (self.length - 1));
            }
            if !self.stream {
                // A non-streamed answer with a fault is mangled by the HTTP layer; it counts as
                // neither complete nor as tokens delivered.
                if let Some((fault, _)) = self.fault.take() {
                    stats.fault(fault);
                    self.state = State::Cut;
                } else {
                    stats.completion_tokens(u64::from(self.length));
                }
            }
            if self.state == State::Running {
                stats.completed();
                self.state = State::Finished;
            }
            self.end_generation();
        } else {
            let tpot = self.engine.scaled(&self.engine.tpot, &mut self.rng);
            let next = self.deadline + tpot;
            self.set_deadline(next);
        }
        Ok((self.stream || last).then_some(out))
    }

    /// Release the batch slot and the gauges now rather than when the body is dropped.
    fn end_generation(&mut self) {
        self.phase = Phase::Done;
        self._permit = None;
        self._generating = None;
        self._stream = None;
    }

    fn token(&self, index: u32) -> Token {
        let hash = mix(self.token_seed, u64::from(index));
        let id = (hash % u64::from(VOCAB)) as u32;
        Token {
            index,
            id,
            text: WORDS[(hash >> 32) as usize % WORDS.len()],
            logprob: -(((hash >> 40) % 1000) as f32) / 1000.0,
        }
    }

    fn set_deadline(&mut self, deadline: Instant) {
        self.deadline = deadline;
        let clock = self.engine.clock.get().and_then(Option::as_ref);
        if self.engine.precise && clock.is_some_and(|c| c.is_live()) {
            // The deadline clock keeps it; the runtime's timer is not needed.
            return;
        }
        self.reset_sleep();
    }

    /// Set the runtime's timer for the deadline (precise: one spin window before it).
    fn reset_sleep(&mut self) {
        let deadline = self.deadline;
        let wake = if self.engine.precise {
            deadline.checked_sub(SPIN_WINDOW).unwrap_or(deadline)
        } else {
            deadline
        };
        self.sleep.as_mut().reset(wake);
    }

    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.engine.precise
            && let Some(clock) = self.engine.clock.get_or_init(DeadlineClock::start)
        {
            if Instant::now() >= self.deadline {
                return Poll::Ready(());
            }
            let known = self
                .registered
                .as_ref()
                .is_some_and(|(at, w)| *at == self.deadline && w.will_wake(cx.waker()));
            if known {
                return Poll::Pending;
            }
            if clock.register(self.deadline.into_std(), cx.waker()) {
                self.registered = Some((self.deadline, cx.waker().clone()));
                return Poll::Pending;
            }
            // The clock failed: the timer and the spin below take over from this deadline.
            self.reset_sleep();
        }
        ready!(self.sleep.as_mut().poll(cx));
        if self.engine.precise && Instant::now() < self.deadline {
            // Inside the spin window: let other tasks run, then look again.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(())
    }

    /// Drive a non-streaming generation to its end and return the answer.
    pub(crate) async fn run_to_end(&mut self) -> Vec<u8> {
        let mut answer = Vec::new();
        while let Some(step) = std::future::poll_fn(|cx| self.poll_step(cx)).await {
            // Non-streaming generations never cut themselves: faults are applied by the caller.
            if let Ok(frame) = step {
                answer.extend_from_slice(&frame);
            }
        }
        answer
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if self.state == State::Running {
            self.engine.stats.cancelled();
        }
    }
}

/// Raises a gauge on creation and lowers it on drop, so every exit path (finish, fault, client
/// gone, shutdown) keeps the gauges exact.
struct GaugeGuard {
    stats: Arc<LlmTargetStats>,
    gauge: Gauge,
}

impl GaugeGuard {
    fn new(stats: &Arc<LlmTargetStats>, gauge: Gauge) -> Self {
        stats.gauge(gauge).fetch_add(1, Ordering::Relaxed);
        Self {
            stats: Arc::clone(stats),
            gauge,
        }
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.stats.gauge(self.gauge).fetch_sub(1, Ordering::Relaxed);
    }
}

/// SplitMix64 of `a` and `b`: a cheap, well-spread hash for RNG seeds and token choice.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_single_spaced_words() {
        for word in WORDS {
            assert!(word.starts_with(' '));
            assert_eq!(count_words(word), 1, "{word:?}");
        }
        assert_eq!(count_words("  Hello, world!\n how are\tyou "), 5);
        assert_eq!(count_words(""), 0);
    }

    #[test]
    fn mix_spreads() {
        assert_ne!(mix(1, 0), mix(1, 1));
        assert_ne!(mix(0, 1), mix(1, 0));
    }
}
