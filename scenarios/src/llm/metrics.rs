//! Per-request LLM timings: TTFT, ITL, TPOT, end-to-end latency, and the non-streaming per-token
//! figures of ai-on-gke's Locust benchmark, plus the goodput check against an [`Slo`].
//!
//! A [`RequestTimer`] is fed instants by the driver (`on_send`, `on_token_chunk`) and turned
//! into [`Timings`] by `finish`; recording them into histograms is the driver's job. The timer
//! keeps its ITL buffer between requests, so a warm session allocates nothing.
//!
//! Definitions (vLLM `benchmark_serving.py`'s, which most tools share):
//! - TTFT: send → first chunk carrying at least one token.
//! - ITL: the gap between two consecutive token-carrying chunks, one sample per gap. A chunk
//!   carrying k > 1 tokens still gives one sample (the wait a reader saw), not k samples of
//!   gap/k as guidellm's averaging would: so when servers batch tokens, mean ITL exceeds TPOT.
//! - TPOT: (E2E − TTFT) / (output tokens − 1), undefined for ≤ 1 output token.
//! - E2E: send → end of the answer (the last byte, after any usage chunk or `[DONE]`).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The timing accumulator of one request, reused from one request to the next.
#[derive(Debug, Clone, Default)]
pub struct RequestTimer {
    /// When the request counts as sent (the scheduled time, in the open model).
    sent: Option<Instant>,
    first: Option<Instant>,
    last: Option<Instant>,
    chunks: u32,
    chunk_tokens: u32,
    itls: Vec<Duration>,
}

/// The timings of one finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// Send → end of the answer.
    pub e2e: Duration,
    /// Send → first token-carrying chunk; `None` if none came (or the answer was not streamed).
    pub ttft: Option<Duration>,
    /// (E2E − TTFT) / (output tokens − 1); `None` if not streamed or ≤ 1 output token.
    pub tpot: Option<Duration>,
    /// Output tokens, as counted by the caller's rule (see `super::tokenizer`).
    pub output_tokens: u32,
    /// Token-carrying chunks received (0 for a whole answer).
    pub chunks: u32,
}

impl RequestTimer {
    /// A timer with no request.
    pub fn new() -> RequestTimer {
        RequestTimer::default()
    }

    /// The request went out at `t0`: start over.
    pub fn on_send(&mut self, t0: Instant) {
        self.sent = Some(t0);
        self.first = None;
        self.last = None;
        self.chunks = 0;
        self.chunk_tokens = 0;
        self.itls.clear();
    }

    /// A chunk carrying `n_tokens` tokens arrived at `now` (chunks with none are not output).
    pub fn on_token_chunk(&mut self, now: Instant, n_tokens: u32) {
        if n_tokens == 0 {
            return;
        }
        match self.last {
            None => self.first = Some(now),
            Some(last) => self.itls.push(now.saturating_duration_since(last)),
        }
        self.last = Some(now);
        self.chunks += 1;
        self.chunk_tokens = self.chunk_tokens.saturating_add(n_tokens);
    }

    /// Every inter-token latency so far, in arrival order.
    pub fn itls(&self) -> &[Duration] {
        &self.itls
    }

    /// Tokens the chunks carried, by their own count.
    pub fn chunk_tokens(&self) -> u32 {
        self.chunk_tokens
    }

    /// The answer ended at `now`, with `output_tokens` tokens (counted by the caller's rule).
    pub fn finish(&self, now: Instant, output_tokens: u32) -> Timings {
        let sent = self.sent.unwrap_or(now);
        let e2e = now.saturating_duration_since(sent);
        let ttft = self.first.map(|f| f.saturating_duration_since(sent));
        let tpot = match ttft {
            Some(ttft) if output_tokens > 1 => Some(e2e.saturating_sub(ttft) / (output_tokens - 1)),
            _ => None,
        };
        Timings {
            e2e,
            ttft,
            tpot,
            output_tokens,
            chunks: self.chunks,
        }
    }
}

impl Timings {
    /// ai-on-gke's Locust benchmark's per-request term of its "average-output-token-latency":
    /// output tokens divided by the request time in seconds (custom_metric_aggregator.py,
    /// `tokens_received[i] / test_time[i]`, averaged over successes). Despite its name it is a
    /// rate, tokens per second. `None` when the time is zero.
    pub fn output_tokens_per_second(&self) -> Option<f64> {
        let secs = self.e2e.as_secs_f64();
        (secs > 0.0).then(|| f64::from(self.output_tokens) / secs)
    }

    /// Time per output token of a whole answer: E2E / output tokens (ai-on-gke
    /// `benchmark_serving.py`'s `avg_per_output_token_latency` term). `None` for 0 tokens.
    pub fn e2e_per_output_token(&self) -> Option<Duration> {
        (self.output_tokens > 0).then(|| self.e2e / self.output_tokens)
    }
}

/// A service-level objective for goodput: a request is good iff it meets every limit given.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// Most time to first token, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// Most time per output token, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_ms: Option<f64>,
    /// Most end-to-end latency, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_ms: Option<f64>,
}

impl Slo {
    /// Whether a request with these timings meets the objective (limits are inclusive).
    ///
    /// Undefined metrics: without a TTFT (a whole answer, or no token at all) the first token
    /// reached the reader with the end, so TTFT counts as E2E; without a TPOT (≤ 1 output
    /// token) there was no decoding to be slow, so a TPOT limit is met, as vLLM's bench
    /// counts such a TPOT as 0.
    pub fn is_met(&self, t: &Timings) -> bool {
        let within = |limit: Option<f64>, value: Duration| {
            limit.is_none_or(|ms| value.as_secs_f64() * 1000.0 <= ms)
        };
        within(self.ttft_ms, t.ttft.unwrap_or(t.e2e))
            && within(self.tpot_ms, t.tpot.unwrap_or(Duration::ZERO))
            && within(self.e2e_ms, t.e2e)
    }

    /// Whether no limit is set (every request is good).
    pub fn is_empty(&self) -> bool {
        self.ttft_ms.is_none() && self.tpot_ms.is_none() && self.e2e_ms.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn streamed_request_exact_numbers() {
        let t0 = Instant::now();
        let mut t = RequestTimer::new();
        t.on_send(t0);
        t.on_token_chunk(t0 + ms(100), 1);
        t.on_token_chunk(t0 + ms(130), 1);
        t.on_token_chunk(t0 + ms(150), 0); // no tokens: not a chunk
        t.on_token_chunk(t0 + ms(170), 3); // three tokens, one gap
        t.on_token_chunk(t0 + ms(200), 1);
        assert_eq!(t.itls(), &[ms(30), ms(40), ms(30)]);
        assert_eq!(t.chunk_tokens(), 6);
        // The usage chunk and [DONE] arrive 20 ms after the last token.
        let timings = t.finish(t0 + ms(220), 6);
        assert_eq!(timings.e2e, ms(220));
        assert_eq!(timings.ttft, Some(ms(100)));
        // (220 − 100) / (6 − 1) = 24 ms.
        assert_eq!(timings.tpot, Some(ms(24)));
        assert_eq!(timings.chunks, 4);
    }

    #[test]
    fn tpot_undefined_for_one_token_or_none() {
        let t0 = Instant::now();
        let mut t = RequestTimer::new();
        t.on_send(t0);
        t.on_token_chunk(t0 + ms(50), 1);
        let one = t.finish(t0 + ms(60), 1);
        assert_eq!(one.tpot, None);
        assert_eq!(one.ttft, Some(ms(50)));
        t.on_send(t0);
        let none = t.finish(t0 + ms(10), 0);
        assert_eq!((none.ttft, none.tpot, none.chunks), (None, None, 0));
        assert!(t.itls().is_empty(), "on_send clears the previous request");
    }

    #[test]
    fn whole_answer_locust_benchmark_figures() {
        let t0 = Instant::now();
        let mut t = RequestTimer::new();
        t.on_send(t0);
        let timings = t.finish(t0 + ms(2500), 200);
        assert_eq!(timings.ttft, None);
        assert_eq!(timings.tpot, None);
        // The Locust benchmark: 200 tokens / 2.5 s = 80 "output token latency" (tokens per second).
        assert_eq!(timings.output_tokens_per_second(), Some(80.0));
        assert_eq!(
            timings.e2e_per_output_token(),
            Some(ms(12) + Duration::from_micros(500))
        );
        let zero = RequestTimer::new().finish(t0, 0);
        assert_eq!(zero.output_tokens_per_second(), None);
        assert_eq!(zero.e2e_per_output_token(), None);
    }

    #[test]
    fn slo_met_iff_every_given_limit_is_met() {
        let t = Timings {
            e2e: ms(1000),
            ttft: Some(ms(200)),
            tpot: Some(ms(40)),
            output_tokens: 21,
            chunks: 21,
        };
        assert!(Slo::default().is_met(&t));
        let slo = |ttft, tpot, e2e| Slo {
            ttft_ms: ttft,
            tpot_ms: tpot,
            e2e_ms: e2e,
        };
        assert!(
            slo(Some(200.0), Some(40.0), Some(1000.0)).is_met(&t),
            "inclusive"
        );
        assert!(!slo(Some(199.9), None, None).is_met(&t));
        assert!(!slo(None, Some(39.0), None).is_met(&t));
        assert!(!slo(None, None, Some(999.0)).is_met(&t));
        assert!(slo(Some(250.0), None, Some(1500.0)).is_met(&t));
    }

    #[test]
    fn slo_on_undefined_metrics() {
        let whole = Timings {
            e2e: ms(300),
            ttft: None,
            tpot: None,
            output_tokens: 1,
            chunks: 0,
        };
        let ttft = |ms| Slo {
            ttft_ms: Some(ms),
            ..Slo::default()
        };
        assert!(ttft(300.0).is_met(&whole), "TTFT counts as E2E");
        assert!(!ttft(299.0).is_met(&whole));
        let tpot = Slo {
            tpot_ms: Some(0.0),
            ..Slo::default()
        };
        assert!(tpot.is_met(&whole), "no TPOT: nothing was slow");
    }

    #[test]
    fn slo_from_toml_integers() {
        let slo: Slo = toml::from_str("ttft_ms = 200\ntpot_ms = 12.5").unwrap();
        assert_eq!(slo.ttft_ms, Some(200.0));
        assert_eq!(slo.tpot_ms, Some(12.5));
        assert!(toml::from_str::<Slo>("ttft = 1").is_err());
    }
}
