//! The protocol-level parts of the `llm` driver: what to send to an LLM server, how to read
//! its (streamed) answer, and what to measure, as pure code without sockets or clocks.
//!
//! The driver owns the connection, the time and the recorder; it calls these per request:
//! pick a [`Prompt`] → build the body with [`Backend::request_body`] → send → feed each body
//! frame to a [`StreamDecoder`] (SSE or NUL/NDJSON framing, then the backend's event parser)
//! and its events to a [`ResponseTally`] (timings, text, usage) → [`ResponseTally::finish`].
//! A whole answer goes through [`Backend::parse_response`] instead.
//!
//! # Layout
//! - [`sse`]: incremental `text/event-stream` parser (WHATWG rules), zero-copy when it can be.
//! - [`records`]: incremental splitter for `\0`- or newline-delimited JSON (vLLM's demo server).
//! - [`backend`]: [`Backend`]s (OpenAI, OpenAI chat, vLLM, TGI, Triton, SAX): paths, bodies,
//!   answers and stream events.
//! - [`exchange`]: [`StreamDecoder`] and [`ResponseTally`], the per-request glue.
//! - [`metrics`]: [`RequestTimer`] (TTFT, ITL, TPOT, E2E) and the goodput [`Slo`].
//! - [`tokenizer`]: token counting by usage, `tokenizer.json`, chunks or words.
//! - [`report`]: the driver's figure specs, the `llm` block of `summary.json` and its table
//!   section.
//! - [`prompts`]: [`PromptSet`] from a line file, ShareGPT JSON, or synthetic lengths.
//!
//! # Example
//!
//! One streamed request to an OpenAI-compatible server, with the network replaced by bytes:
//!
//! ```
//! use std::time::{Duration, Instant};
//!
//! use rand::SeedableRng;
//! use rand::rngs::SmallRng;
//! use stampede_scenarios::llm::{
//!     Backend, LlmRequest, Prompt, PromptSet, ResponseTally, Slo, StreamDecoder,
//!     TokenCountMethod, TokenCounter,
//! };
//!
//! // Once per run.
//! let prompts = PromptSet::new(
//!     vec![Prompt { text: "Say hi".into(), input_tokens: Some(2), max_output_tokens: 16 }],
//!     TokenCountMethod::Words,
//! )?;
//! let counter = TokenCounter::new(TokenCountMethod::Usage, None)?;
//! let backend: Backend = "openai".parse()?;
//! let slo = Slo { ttft_ms: Some(500.0), ..Slo::default() };
//!
//! // Once per session (user): buffers are reused across requests.
//! let mut rng = SmallRng::seed_from_u64(1);
//! let mut decoder = StreamDecoder::new(backend, "").expect("openai streams");
//! let mut tally = ResponseTally::new();
//!
//! // Per request.
//! let prompt = prompts.pick(&mut rng);
//! let mut req = LlmRequest::new(&prompt.text, "my-model", prompt.max_output_tokens);
//! req.stream = true;
//! let body = backend.request_body(&req);
//! let path = backend.path("my-model", req.stream);
//! assert_eq!(path, "/v1/completions");
//! assert!(body.windows(13).any(|w| w == b"include_usage"));
//! let sent = Instant::now();
//! decoder.reset(&prompt.text);
//! tally.start(sent);
//! // ... POST `body` to `path`; then for each body frame, as it arrives:
//! let frames: [&[u8]; 2] = [
//!     b"data: {\"choices\":[{\"text\":\"Hi\"}]}\n\ndata: {\"choices\":[{\"te",
//!     b"xt\":\"!\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
//! ];
//! for (i, frame) in frames.iter().enumerate() {
//!     let now = sent + Duration::from_millis(100 * (i as u64 + 1));
//!     decoder.feed(frame, |event| tally.on_event(now, event))?;
//! }
//! let clean = decoder.finish(|_| {})?;
//! let summary = tally.finish(sent + Duration::from_millis(200), &counter, prompt.input_tokens);
//! assert!(clean && summary.done);
//! assert_eq!(tally.text(), "Hi!");
//! assert_eq!(summary.output.tokens, 2);
//! assert_eq!(summary.timings.ttft, Some(Duration::from_millis(100)));
//! assert_eq!(summary.timings.tpot, Some(Duration::from_millis(100)));
//! assert_eq!(tally.itls(), &[Duration::from_millis(100)]);
//! assert!(slo.is_met(&summary.timings));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod backend;
pub mod exchange;
pub mod metrics;
pub mod prompts;
pub mod records;
pub mod report;
pub mod sse;
pub mod tokenizer;

pub use backend::{
    Backend, Completion, EventParser, Events, Framing, LlmRequest, ResponseError, StreamEvent,
    UnknownBackend, Usage,
};
pub use exchange::{ResponseSummary, ResponseTally, StreamDecoder};
pub use metrics::{RequestTimer, Slo, Timings};
pub use prompts::{
    FileSource, LengthDist, Prompt, PromptError, PromptSet, PromptSource, SyntheticSource,
};
pub use records::RecordSplitter;
pub use sse::{SseEvent, SseParser};
pub use tokenizer::{
    HfTokenizer, OutputFacts, TokenCount, TokenCountMethod, TokenCounter, TokenizerError,
};
