//! What the LLM target really did: exact counters and HDR histograms of the timing it actually
//! emitted, so a benchmark can hold a client's report against the truth.
//!
//! Written by the engine on every token; read through `GET /__stampede/stats` or in-process with
//! [`LlmTargetStats::snapshot`]. It does not know about APIs or wire shapes.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::Fault;

/// Largest value the histograms hold, in microseconds (one hour); bigger values saturate.
const HISTOGRAM_MAX_US: u64 = 3_600_000_000;

/// Counters and timing histograms. Cheap atomics for the counts; the histograms sit behind one
/// `std::sync::Mutex` because a record is a few nanoseconds of non-async work (rule 28) and even
/// 500 streams at 50 tokens/s are only 25k records per second.
#[derive(Debug)]
pub struct LlmTargetStats {
    /// Generation requests received (every POST to a generation endpoint), counted on arrival.
    requests: AtomicU64,
    /// Requests answered 4xx (malformed body, failed validation, unknown model).
    bad_requests: AtomicU64,
    /// Requests answered 500 through `error_rate`.
    injected_errors: AtomicU64,
    /// Faults injected, by kind, indexed like [`Fault::ALL`].
    faults: [AtomicU64; 3],
    /// Generations that emitted their last token (the answer was complete, even if a harmless
    /// `unknown_event` fault rode along).
    completed: AtomicU64,
    /// Generations dropped before their end because the client went away.
    cancelled: AtomicU64,
    /// Prompt tokens of every request that was admitted to generation.
    prompt_tokens: AtomicU64,
    /// Output tokens actually written to clients (a stream cut by a fault counts what it sent).
    completion_tokens: AtomicU64,
    /// Streaming responses currently open.
    streams_in_flight: AtomicU64,
    /// Requests holding a batch slot (streaming or not).
    generating: AtomicU64,
    /// Requests waiting for a batch slot (`max_batch` reached).
    queued: AtomicU64,
    histograms: Mutex<Histograms>,
}

#[derive(Debug)]
struct Histograms {
    /// Streams: body fully read → first token frame handed to the socket.
    ttft: Recorded,
    /// Streams: gap between consecutive token frames.
    itl: Recorded,
    /// Streams of 2 tokens or more: (E2E − TTFT) / (tokens − 1), per request.
    tpot: Recorded,
    /// All: emission time minus the scheduled deadline (the server's own timing error).
    lateness: Recorded,
    /// All: body fully read → last byte of the answer handed to the socket.
    e2e: Recorded,
    /// All: time spent waiting for a batch slot.
    queue: Recorded,
}

/// One histogram plus an exact sum (HDR buckets round; the mean should not).
#[derive(Debug, Clone)]
struct Recorded {
    histogram: Histogram<u64>,
    sum_us: u128,
}

impl Recorded {
    fn new() -> Self {
        // 3 significant digits over 1 µs..1 h: fixed bounds, so construction cannot fail.
        let histogram = Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 3)
            .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"));
        Self {
            histogram,
            sum_us: 0,
        }
    }

    fn record(&mut self, value: Duration) {
        let us = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(us);
        self.sum_us += u128::from(us);
    }

    fn summary(&self) -> TimingSummary {
        let h = &self.histogram;
        let count = h.len();
        if count == 0 {
            return TimingSummary::default();
        }
        TimingSummary {
            count,
            sum_us: u64::try_from(self.sum_us).unwrap_or(u64::MAX),
            mean_us: self.sum_us as f64 / count as f64,
            min_us: h.min(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Summary of one timing histogram, in whole microseconds (the mean is exact).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimingSummary {
    /// Number of samples.
    pub count: u64,
    /// Exact sum of the samples.
    pub sum_us: u64,
    /// Exact mean of the samples.
    pub mean_us: f64,
    /// Smallest sample.
    pub min_us: u64,
    /// Median (HDR, 3 significant digits).
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest sample.
    pub max_us: u64,
}

/// Faults injected, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultCounts {
    /// Streams cut without their end (connection closed mid-answer).
    pub close_mid_stream: u64,
    /// Answers carrying one piece of broken JSON.
    pub malformed_json: u64,
    /// Streams carrying one event of a kind the API never sends (harmless to a robust client).
    pub unknown_event: u64,
}

/// Raw timing histograms in microseconds; the same samples as [`LlmStatsSnapshot`]'s summaries.
#[derive(Debug, Clone)]
pub struct LlmHistograms {
    /// Streams: body read → first token written.
    pub ttft: Histogram<u64>,
    /// Streams: gap between consecutive tokens as written.
    pub itl: Histogram<u64>,
    /// Streams of 2 tokens or more: (E2E − TTFT) / (tokens − 1), per request.
    pub tpot: Histogram<u64>,
    /// Every emission: actual write time minus the scheduled deadline.
    pub lateness: Histogram<u64>,
    /// Body read → answer complete.
    pub e2e: Histogram<u64>,
    /// Time spent waiting for a batch slot.
    pub queue: Histogram<u64>,
}

/// The JSON of `GET /__stampede/stats`; also what [`LlmTargetStats::snapshot`] returns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LlmStatsSnapshot {
    /// Generation requests received.
    pub requests: u64,
    /// Requests that did not get a complete, well-formed answer: `bad_requests +
    /// injected_errors + close_mid_stream + malformed_json` faults.
    pub failures: u64,
    /// Requests answered 4xx.
    pub bad_requests: u64,
    /// Requests answered 500 through the error rate.
    pub injected_errors: u64,
    /// Faults injected, by kind.
    pub faults: FaultCounts,
    /// Generations that emitted their last token.
    pub completed: u64,
    /// Generations the client abandoned.
    pub cancelled: u64,
    /// Prompt tokens of admitted requests (whitespace-separated words, see the module docs).
    pub prompt_tokens: u64,
    /// Output tokens written to clients.
    pub completion_tokens: u64,
    /// Streaming responses open right now.
    pub streams_in_flight: u64,
    /// Requests holding a batch slot right now.
    pub generating: u64,
    /// Requests waiting for a batch slot right now.
    pub queued: u64,
    /// Streams: body read → first token written.
    pub ttft: TimingSummary,
    /// Streams: gap between consecutive tokens as written.
    pub itl: TimingSummary,
    /// Streams of 2 tokens or more: (E2E − TTFT) / (tokens − 1), per request (what a client's
    /// TPOT should match).
    #[serde(default)]
    pub tpot: TimingSummary,
    /// Every emission: actual write time minus the scheduled deadline.
    pub lateness: TimingSummary,
    /// Body read → answer complete.
    pub e2e: TimingSummary,
    /// Time spent waiting for a batch slot.
    pub queue: TimingSummary,
}

impl Default for LlmTargetStats {
    fn default() -> Self {
        Self::new()
    }
}

impl LlmTargetStats {
    /// Zeroed counters and empty histograms.
    pub fn new() -> Self {
        Self {
            requests: AtomicU64::new(0),
            bad_requests: AtomicU64::new(0),
            injected_errors: AtomicU64::new(0),
            faults: Default::default(),
            completed: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            streams_in_flight: AtomicU64::new(0),
            generating: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            histograms: Mutex::new(Histograms::new()),
        }
    }

    /// A consistent-enough copy of everything (counters are read one by one; a request racing
    /// the read may be half counted, which is fine between test phases).
    pub fn snapshot(&self) -> LlmStatsSnapshot {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let faults = FaultCounts {
            close_mid_stream: load(&self.faults[Fault::CloseMidStream.index()]),
            malformed_json: load(&self.faults[Fault::MalformedJson.index()]),
            unknown_event: load(&self.faults[Fault::UnknownEvent.index()]),
        };
        let bad_requests = load(&self.bad_requests);
        let injected_errors = load(&self.injected_errors);
        let histograms = self.lock();
        LlmStatsSnapshot {
            requests: load(&self.requests),
            failures: bad_requests
                + injected_errors
                + faults.close_mid_stream
                + faults.malformed_json,
            bad_requests,
            injected_errors,
            faults,
            completed: load(&self.completed),
            cancelled: load(&self.cancelled),
            prompt_tokens: load(&self.prompt_tokens),
            completion_tokens: load(&self.completion_tokens),
            streams_in_flight: load(&self.streams_in_flight),
            generating: load(&self.generating),
            queued: load(&self.queued),
            ttft: histograms.ttft.summary(),
            itl: histograms.itl.summary(),
            tpot: histograms.tpot.summary(),
            lateness: histograms.lateness.summary(),
            e2e: histograms.e2e.summary(),
            queue: histograms.queue.summary(),
        }
    }

    /// Copies of the raw histograms (microseconds), for callers that want exact quantiles or to
    /// merge them with a client's.
    pub fn histograms(&self) -> LlmHistograms {
        let h = self.lock();
        LlmHistograms {
            ttft: h.ttft.histogram.clone(),
            itl: h.itl.histogram.clone(),
            tpot: h.tpot.histogram.clone(),
            lateness: h.lateness.histogram.clone(),
            e2e: h.e2e.histogram.clone(),
            queue: h.queue.histogram.clone(),
        }
    }

    /// Zero the totals and histograms. Gauges (`streams_in_flight`, `generating`, `queued`) are
    /// left alone: they describe requests still running, which will decrement them later.
    pub fn reset(&self) {
        for counter in [
            &self.requests,
            &self.bad_requests,
            &self.injected_errors,
            &self.completed,
            &self.cancelled,
            &self.prompt_tokens,
            &self.completion_tokens,
        ]
        .into_iter()
        .chain(&self.faults)
        {
            counter.store(0, Ordering::Relaxed);
        }
        *self.lock() = Histograms::new();
    }

    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn bad_request(&self) {
        self.bad_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn injected_error(&self) {
        self.injected_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn fault(&self, fault: Fault) {
        self.faults[fault.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn completed(&self) {
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn prompt_tokens(&self, tokens: u64) {
        self.prompt_tokens.fetch_add(tokens, Ordering::Relaxed);
    }

    pub(crate) fn completion_tokens(&self, tokens: u64) {
        self.completion_tokens.fetch_add(tokens, Ordering::Relaxed);
    }

    pub(crate) fn gauge(&self, gauge: Gauge) -> &AtomicU64 {
        match gauge {
            Gauge::Streams => &self.streams_in_flight,
            Gauge::Generating => &self.generating,
            Gauge::Queued => &self.queued,
        }
    }

    /// The number of requests holding a batch slot, which drives the batching slowdown.
    pub(crate) fn generating(&self) -> u64 {
        self.generating.load(Ordering::Relaxed)
    }

    pub(crate) fn record(&self, which: Timing, value: Duration) {
        let mut h = self.lock();
        match which {
            Timing::Ttft => h.ttft.record(value),
            Timing::Itl => h.itl.record(value),
            Timing::Tpot => h.tpot.record(value),
            Timing::Lateness => h.lateness.record(value),
            Timing::E2e => h.e2e.record(value),
            Timing::Queue => h.queue.record(value),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Histograms> {
        // A panic while holding the lock can only come from a bug in `record`; the histograms are
        // still usable, so recover the guard instead of poisoning every later request.
        self.histograms
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Histograms {
    fn new() -> Self {
        Self {
            ttft: Recorded::new(),
            itl: Recorded::new(),
            tpot: Recorded::new(),
            lateness: Recorded::new(),
            e2e: Recorded::new(),
            queue: Recorded::new(),
        }
    }
}

/// The gauges, each raised and lowered by an RAII guard in the engine.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Gauge {
    Streams,
    Generating,
    Queued,
}

/// Which timing histogram a sample goes to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Timing {
    Ttft,
    Itl,
    Tpot,
    Lateness,
    E2e,
    Queue,
}
