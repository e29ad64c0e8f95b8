//! One request's answer, end to end: [`StreamDecoder`] turns body bytes into
//! [`StreamEvent`]s (framing, then the backend's event parser), and [`ResponseTally`] turns
//! events, or a whole answer, into timings and token counts.
//!
//! Both live in a driver's session and are reset per request, so their buffers are reused.
//! Neither reads the clock: the driver passes the instant each body frame arrived.

use std::time::{Duration, Instant};

use super::backend::{
    Backend, Completion, EventParser, Framing, ResponseError, StreamEvent, Usage,
};
use super::metrics::{RequestTimer, Timings};
use super::records::RecordSplitter;
use super::sse::SseParser;
use super::tokenizer::{OutputFacts, TokenCount, TokenCounter};

/// Body bytes → stream events, for one backend.
#[derive(Debug)]
pub struct StreamDecoder {
    framing: FramingState,
    parser: EventParser,
}

#[derive(Debug)]
enum FramingState {
    Sse(SseParser),
    Records(RecordSplitter),
}

impl StreamDecoder {
    /// A decoder for an answer to `prompt`, or `None` if the backend does not stream.
    pub fn new(backend: Backend, prompt: &str) -> Option<StreamDecoder> {
        let parser = backend.event_parser(prompt)?;
        let framing = match backend.framing() {
            Framing::Sse => FramingState::Sse(SseParser::new()),
            Framing::Records => FramingState::Records(RecordSplitter::new()),
        };
        Some(StreamDecoder { framing, parser })
    }

    /// Ready for the next answer (to `prompt`), keeping buffers.
    pub fn reset(&mut self, prompt: &str) {
        match &mut self.framing {
            FramingState::Sse(p) => p.reset(),
            FramingState::Records(s) => s.reset(),
        }
        self.parser.reset(prompt);
    }

    /// Decode one body frame, calling `on_event` for each event in it. The first malformed
    /// or error event ends decoding with that error (the request failed).
    pub fn feed(
        &mut self,
        bytes: &[u8],
        mut on_event: impl FnMut(StreamEvent<'_>),
    ) -> Result<(), ResponseError> {
        let StreamDecoder { framing, parser } = self;
        match framing {
            FramingState::Sse(sse) => sse.feed(bytes, |e| {
                parser.parse(e.event, e.data)?.for_each(&mut on_event);
                Ok(())
            }),
            FramingState::Records(records) => records.feed(bytes, |r| {
                parser.parse("message", r)?.for_each(&mut on_event);
                Ok(())
            }),
        }
    }

    /// The body ended: hand out a last undelimited record (NDJSON). Returns whether the body
    /// ended cleanly; `false` means it stopped inside an event, which is discarded.
    pub fn finish(
        &mut self,
        mut on_event: impl FnMut(StreamEvent<'_>),
    ) -> Result<bool, ResponseError> {
        let StreamDecoder { framing, parser } = self;
        match framing {
            FramingState::Sse(sse) => Ok(sse.is_idle()),
            FramingState::Records(records) => {
                records.finish(|r| {
                    parser.parse("message", r)?.for_each(&mut on_event);
                    Ok(())
                })?;
                Ok(true)
            }
        }
    }
}

/// Events or a whole answer → timings, output text and token counts, for one request.
#[derive(Debug, Clone, Default)]
pub struct ResponseTally {
    timer: RequestTimer,
    text: String,
    usage: Option<Usage>,
    streamed: bool,
    done: bool,
}

/// What one request produced, for the recorder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseSummary {
    /// TTFT, TPOT, E2E and counts.
    pub timings: Timings,
    /// Output tokens and the rule that counted them.
    pub output: TokenCount,
    /// Prompt tokens: the server's count if it gave one, else the prompt set's.
    pub input_tokens: Option<u32>,
    /// Whether the server marked the end (`[DONE]`, TGI's last event); backends without an
    /// end marker (vLLM, Triton) never set it, and a whole answer always does.
    pub done: bool,
}

impl ResponseTally {
    /// An empty tally.
    pub fn new() -> ResponseTally {
        ResponseTally::default()
    }

    /// The request went out at `t0`: start over.
    pub fn start(&mut self, t0: Instant) {
        self.timer.on_send(t0);
        self.text.clear();
        self.usage = None;
        self.streamed = false;
        self.done = false;
    }

    /// A stream event arrived at `now`.
    pub fn on_event(&mut self, now: Instant, event: StreamEvent<'_>) {
        self.streamed = true;
        match event {
            StreamEvent::Token { text, count } => {
                self.timer.on_token_chunk(now, count);
                self.text.push_str(&text);
            }
            StreamEvent::Usage(u) => self.usage = Some(u),
            StreamEvent::Done => self.done = true,
            StreamEvent::Ignored => {}
        }
    }

    /// A whole (non-streamed) answer was read.
    pub fn on_completion(&mut self, completion: Completion) {
        self.streamed = false;
        self.text = completion.text;
        self.usage = completion.usage;
        self.done = true;
    }

    /// The output text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The inter-token latencies of a streamed answer.
    pub fn itls(&self) -> &[Duration] {
        self.timer.itls()
    }

    /// The answer ended at `now`. `prompt_tokens` is the prompt's own count, used when the
    /// server reports none.
    pub fn finish(
        &self,
        now: Instant,
        counter: &TokenCounter,
        prompt_tokens: Option<u32>,
    ) -> ResponseSummary {
        let output = counter.count_output(&OutputFacts {
            text: &self.text,
            usage: self.usage,
            streamed_tokens: self.streamed.then(|| self.timer.chunk_tokens()),
        });
        ResponseSummary {
            timings: self.timer.finish(now, output.tokens),
            output,
            input_tokens: self.usage.and_then(|u| u.prompt_tokens).or(prompt_tokens),
            done: self.done,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::llm::tokenizer::TokenCountMethod;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn openai_stream_end_to_end() {
        let body = concat!(
            "data: {\"choices\":[{\"index\":0,\"text\":\"Hello\"}],\"usage\":null}\n\n",
            ": keep-alive\n\n",
            "data: {\"choices\":[{\"index\":0,\"text\":\" world\"}],\"usage\":null}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":3,",
            "\"total_tokens\":8}}\n\n",
            "data: [DONE]\n\n"
        )
        .as_bytes();
        let t0 = Instant::now();
        let mut dec = StreamDecoder::new(Backend::OpenAi, "Say hi").unwrap();
        let mut tally = ResponseTally::new();
        tally.start(t0);
        // Three frames, cut mid-event, arriving 100, 150 and 180 ms after sending.
        let frames = [
            (&body[..30], 100),
            (&body[30..140], 150),
            (&body[140..], 180),
        ];
        for (frame, at) in frames {
            let now = t0 + ms(at);
            dec.feed(frame, |e| tally.on_event(now, e)).unwrap();
        }
        assert!(dec.finish(|_| {}).unwrap());
        let s = tally.finish(t0 + ms(180), &TokenCounter::default(), Some(2));
        assert_eq!(tally.text(), "Hello world");
        assert_eq!(s.output.tokens, 3);
        assert_eq!(s.output.method, TokenCountMethod::Usage);
        assert_eq!(s.input_tokens, Some(5));
        assert_eq!(s.timings.ttft, Some(ms(150)));
        assert_eq!(s.timings.tpot, Some(ms(15)));
        assert_eq!(tally.itls(), &[Duration::ZERO]);
        assert!(s.done);
    }

    #[test]
    fn vllm_legacy_stream_with_nul_framing() {
        let prompt = "Count:";
        let body = b"{\"text\": [\"Count: one\"]}\0{\"text\": [\"Count: one two\"]}\0";
        let t0 = Instant::now();
        let mut dec = StreamDecoder::new(Backend::Vllm, prompt).unwrap();
        let mut tally = ResponseTally::new();
        tally.start(t0);
        for (i, b) in body.chunks(7).enumerate() {
            let now = t0 + ms(10 * i as u64);
            dec.feed(b, |e| tally.on_event(now, e)).unwrap();
        }
        assert!(dec.finish(|_| {}).unwrap());
        assert_eq!(tally.text(), " one two");
        let s = tally.finish(t0 + ms(100), &TokenCounter::default(), None);
        assert_eq!(
            s.output.tokens, 2,
            "chunks: no usage from vLLM's demo server"
        );
        assert_eq!(s.output.method, TokenCountMethod::Chunks);
        assert!(!s.done);
    }

    #[test]
    fn decoder_reports_errors_and_resets() {
        let mut dec = StreamDecoder::new(Backend::Tgi, "").unwrap();
        let err = dec
            .feed(b"data:{\"error\":\"Request failed during generation\",\"error_type\":\"generation\"}\n\n", |_| {})
            .unwrap_err();
        assert_eq!(
            err,
            ResponseError::ServerError("Request failed during generation".into())
        );
        dec.reset("");
        let mut n = 0;
        dec.feed(b"data:{\"index\":1,\"token\":{\"id\":5,\"text\":\"a\",\"logprob\":-0.1,\"special\":false},\"generated_text\":null,\"details\":null}\n\n", |_| n += 1)
            .unwrap();
        assert_eq!(n, 1);
        assert!(StreamDecoder::new(Backend::Sax, "").is_none());
        // A body cut inside an event is reported as not clean.
        dec.reset("");
        dec.feed(b"data: {\"index\":1", |_| {}).unwrap();
        assert!(!dec.finish(|_| {}).unwrap());
    }

    #[test]
    fn whole_answer_counts_by_fallback() {
        let t0 = Instant::now();
        let mut tally = ResponseTally::new();
        tally.start(t0);
        let c = Backend::Triton
            .parse_response(br#"{"model_name":"ensemble","model_version":"1","text_output":"three little words"}"#, "p")
            .unwrap();
        tally.on_completion(c);
        let s = tally.finish(t0 + ms(300), &TokenCounter::default(), Some(1));
        assert_eq!(s.output.tokens, 3);
        assert_eq!(s.output.method, TokenCountMethod::Words);
        assert_eq!(s.timings.ttft, None);
        assert_eq!(s.timings.output_tokens_per_second(), Some(10.0));
        assert_eq!(s.input_tokens, Some(1));
        assert!(s.done);
    }

    /// The hot path's cost: 500 streams of 400 tokens, one chunk per event, as hyper would
    /// hand them over. Run with `cargo test --release -p stampede-scenarios -- --ignored stress`.
    #[test]
    #[ignore]
    fn stress_decode_throughput() {
        let event = "data: {\"id\":\"cmpl-8f2b\",\"object\":\"text_completion\",\"created\":1717000000,\
                     \"model\":\"meta-llama/Llama-3.1-8B-Instruct\",\"choices\":[{\"index\":0,\
                     \"text\":\" token\",\"logprobs\":null,\"finish_reason\":null,\
                     \"stop_reason\":null}],\"usage\":null}\n\n";
        let (streams, tokens) = (500, 400);
        let counter = TokenCounter::default();
        let mut dec = StreamDecoder::new(Backend::OpenAi, "p").unwrap();
        let mut tally = ResponseTally::new();
        let start = Instant::now();
        let mut total = 0u64;
        for _ in 0..streams {
            dec.reset("p");
            tally.start(Instant::now());
            for _ in 0..tokens {
                let now = Instant::now();
                dec.feed(event.as_bytes(), |e| tally.on_event(now, e))
                    .unwrap();
            }
            dec.feed(b"data: [DONE]\n\n", |e| tally.on_event(Instant::now(), e))
                .unwrap();
            total += u64::from(tally.finish(Instant::now(), &counter, None).output.tokens);
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(total, streams * tokens);
        let rate = total as f64 / secs;
        eprintln!(
            "{total} events in {secs:.3} s: {rate:.0} events/s, {:.2} µs/event",
            1e6 / rate
        );
    }
}
