//! Simulated LLM inference server: the HTTP APIs of vLLM (OpenAI-compatible and the legacy
//! `/generate`), Hugging Face TGI, Triton's generate extension (TensorRT-LLM ensemble) and the
//! SAX HTTP front end, backed by a timing model instead of a GPU.
//!
//! Callers bind a listener (port 0 in tests) and run [`serve`] until a `CancellationToken` is
//! cancelled; `stampede target llm` is the command-line wrapper. The server streams tokens on
//! absolute deadlines with a continuous-batching slowdown (see `engine`), answers with the exact
//! wire shapes below, and records the truth of what it emitted in [`LlmTargetStats`]. It has no
//! tokenizer, no sampling and no KV cache: texts are deterministic words, and `n`/`best_of`
//! beyond 1 are not simulated.
//!
//! # Endpoints and wire shapes
//!
//! | Method and path | API | Request fields read | Answer |
//! |---|---|---|---|
//! | `POST /v1/completions` | OpenAI (vLLM) | `model`, `prompt` (string, `[string]` of one, or token ids), `max_tokens` (default 16, `null` = up to the context), `min_tokens`, `ignore_eos`, `stream`, `stream_options.include_usage`, `echo`, `n` (1) | `text_completion` object; streamed as `data: {chunk}\n\n` …, optional usage chunk with `"choices":[]`, `data: [DONE]\n\n` |
//! | `POST /v1/chat/completions` | OpenAI (vLLM) | `model`, `messages[].content` (string or text parts), `max_completion_tokens` or `max_tokens` (default: up to the context), `min_tokens`, `ignore_eos`, `stream`, `stream_options.include_usage`, `n` (1) | `chat.completion`; streamed as `chat.completion.chunk`s: first delta `{"role":"assistant","content":""}`, then `{"content":…}`, `finish_reason` on the last content chunk, optional usage chunk, `[DONE]` |
//! | `GET /v1/models` | OpenAI (vLLM) | | `{"object":"list","data":[{"id":MODEL,"object":"model",…}]}` |
//! | `POST /generate` | chosen by body, see below | | |
//! | `POST /generate_stream` | TGI | `inputs`, `parameters.{max_new_tokens (default 100), seed, do_sample, return_full_text, details}` (`decoder_input_details` is refused, 422) | `data:{"index":i,"token":{"id","text","logprob","special"},"generated_text":null,"details":null}\n\n`; the last event has `generated_text` and, with `details: true`, `details: {finish_reason, generated_tokens, seed, input_length}` |
//! | `POST /` | TGI compat | as above plus `stream` | `[{"generated_text":…}]`, or the stream above |
//! | `POST /v2/models/{m}[/versions/{v}]/generate` | Triton | `text_input` (string or `[string]`), `max_tokens` (required), `exclude_input_in_output`, each top-level or under `parameters` | `{"context_logits":0.0,"cum_log_probs":0.0,"generation_logits":0.0,"model_name":m,"model_version":v,"output_log_probs":[…],"sequence_end":false,"sequence_id":0,"sequence_start":false,"text_output":…}` |
//! | `POST /v2/models/{m}[/versions/{v}]/generate_stream` | Triton | same | `data: {same object, text_output = this token}\n\n` per token |
//! | `GET /health`, `/v2/health/ready`, `/v2/health/live` | all | | `200`, empty body |
//! | gRPC `jetstream_proto.Orchestrator/Decode` (second port, [`serve_with_grpc`]) | JetStream | `text_content.text` or `token_content.token_ids`, `max_tokens` | a stream of `DecodeResponse`, one per token: `stream_content.samples[0]` = `{text, token_ids: [id]}` |
//! | `GET /__stampede/stats` | Stampede | | [`LlmStatsSnapshot`] as JSON |
//! | `POST /__stampede/stats/reset` (or `/__stampede/reset`) | Stampede | | `204`, zeroes the totals |
//!
//! `POST /generate` is shared by vLLM's demo `api_server`, TGI and the SAX HTTP server, so the
//! body decides: `inputs` → TGI (non-streamed `{"generated_text", "details"?}`); `text_input` →
//! Triton shape with the configured model name; a `model` field → SAX, answering
//! `[[completion, score]]` pretty-printed like Python's `json.dumps(indent=4)` (the real SAX
//! server reads `query` and `extra_inputs.per_example_max_decode_steps`, default 128; the
//! Locust benchmark of ai-on-gke sends `prompt` and `max_tokens`, and both are accepted); otherwise
//! `prompt` → vLLM, answering `{"text": [prompt + completion]}`. vLLM streams (`stream: true`)
//! cumulative `{"text": [prompt + text so far]}` objects, each followed by a delimiter: `\n` in
//! current vLLM (`vllm/entrypoints/api_server.py`), `\0` in releases before mid-2024; see
//! [`StreamDelimiter`].
//!
//! Triton's `text_output` holds only the completion unless the request sets
//! `exclude_input_in_output: false` (or the server is configured with
//! `triton_exclude_input = false`): the TensorRT-LLM backend defaults to including the input,
//! but its quick-start configuration (`exclude_input_in_output:True`) and ai-on-gke's Locust
//! benchmark, which counts `text_output` as output tokens, both expect the completion alone.
//! Streamed pieces are always just the new token.
//!
//! # Tokens
//!
//! Prompt tokens are whitespace-separated words (chat: the words of every message's text; token
//! id arrays: their length). Each output token is one word with a leading space, so a completion
//! of `n` tokens is exactly `n` words and `usage.completion_tokens` equals the tokens emitted.
//! The length is `max_tokens` with `ignore_eos` or [`OutputLen::Max`]; otherwise drawn by the
//! [`OutputLen`] policy between `min_tokens` (at least 1) and `max_tokens`, seedable, with
//! finish reason `stop` (`eos_token` for TGI) when shorter.
//!
//! # Errors
//!
//! A body that is not JSON or fails validation gets `400` in the API's own error shape: OpenAI
//! `{"error":{"message","type":"BadRequestError","param":null,"code":400}}`, TGI
//! `{"error","error_type":"validation"}` (`422` for JSON of the wrong shape and for values TGI
//! validates), Triton `{"error"}`, SAX FastAPI's `{"detail"}`. vLLM's demo server has no error
//! JSON (it answers `500` to bad bodies), so its `/generate` and an undecidable `/generate` body
//! get `{"error","error_type"}`, which TGI and Triton readers both understand. An unknown model
//! on `/v1` is `404` (vLLM's `NotFoundError`) unless `any_model`. Unknown paths are
//! `404 {"detail":"Not Found"}`, known paths with the wrong method `405` with `Allow`. Injected
//! errors are `500` in the same shapes, except vLLM `/generate`: plain `Internal Server Error`.
//!
//! # Faults
//!
//! With `fault_rate`, a request may get one [`Fault`] at its middle token: `close_mid_stream`
//! cuts the connection (a non-streamed answer is announced at full length and cut at half),
//! `malformed_json` inserts one truncated JSON event (a non-streamed answer is truncated at
//! half, with a matching `content-length`), `unknown_event` inserts one event of a kind the API
//! never sends (SSE: `event: stampede.unknown`; vLLM `/generate`: an object without `text`;
//! streams only). JetStream's gRPC side draws only `close_mid_stream` (the others have no gRPC
//! form).

mod clock;
pub mod dist;
mod engine;
mod jetstream;
mod openai;
mod sax;
mod server;
mod stats;
mod tgi;
mod triton;
mod vllm;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::tls::Transport;

pub use dist::{Dist, ParseDistError};
pub use stats::{FaultCounts, LlmHistograms, LlmStatsSnapshot, LlmTargetStats, TimingSummary};

/// How the simulated server behaves. [`Default`] gives a demo-friendly model: 200 ms to first
/// token, 20 ms per token, 256 batch slots, slowing down past 32 requests in flight.
#[derive(Debug, Clone)]
pub struct LlmTargetConfig {
    /// Served model name: reported in answers and listed by `/v1/models`; `/v1` requests naming
    /// another model get `404` unless `any_model`.
    pub model: String,
    /// Accept any `model` on `/v1` and echo it back, instead of vLLM's `404`. Convenient when a
    /// scenario was written for a real model name.
    pub any_model: bool,
    /// Time to first token once a request has a batch slot (before the batching slowdown).
    pub ttft: Dist,
    /// Time per output token after the first (before the batching slowdown).
    pub tpot: Dist,
    /// How many tokens an answer has when the request does not force `max_tokens`.
    pub output_len: OutputLen,
    /// Requests generating at once (vLLM's `max_num_seqs`); more wait in a queue and the wait
    /// shows in their time to first token. 0 means unlimited.
    pub max_batch: usize,
    /// Requests in flight before every step slows down; 0 disables the slowdown. See the
    /// `engine` module for the formula.
    pub batch_knee: u32,
    /// Extra step time per `batch_knee` requests above the knee (1.0: twice as slow at twice
    /// the knee).
    pub batch_slope: f64,
    /// Context length: prompt plus output tokens may not exceed it (vLLM's `max_model_len`,
    /// TGI's `max_total_tokens`); also the default output budget of chat requests.
    pub max_model_len: u32,
    /// Probability in `0..=1` that a valid request is answered with an injected `500`.
    pub error_rate: f64,
    /// Probability in `0..=1` that an answer carries one of `faults`.
    pub fault_rate: f64,
    /// Faults to choose from, uniformly, when `fault_rate` fires.
    pub faults: Vec<Fault>,
    /// Seed of every random choice (lengths, jitter, errors, faults); `None` seeds from the OS.
    /// Requests draw from their own stream, numbered in arrival order.
    pub seed: Option<u64>,
    /// Delimiter after each object of a streamed vLLM `/generate` answer.
    pub vllm_stream_delimiter: StreamDelimiter,
    /// Triton `text_output` without the prompt unless the request says otherwise.
    pub triton_exclude_input: bool,
    /// Time answers from each request's arrival at the socket (kernel receive timestamps on
    /// Linux) and keep every token deadline to tens of microseconds with one shared timerfd
    /// (elsewhere: spin through the last millisecond before each deadline, costing CPU).
    /// Over TLS the stamp is that of the last TLS record read; over HTTP/2, of the last bytes
    /// of any stream on the connection: never later than the read itself.
    pub precise_timing: bool,
    /// How the HTTP APIs are served: plaintext HTTP/1.1 (the default), h2c alongside it, or TLS
    /// with HTTP/2 by ALPN. The JetStream gRPC port stays plaintext HTTP/2 regardless.
    pub transport: Transport,
}

impl Default for LlmTargetConfig {
    fn default() -> Self {
        Self {
            model: "stampede-sim".into(),
            any_model: false,
            ttft: Dist::Const(Duration::from_millis(200)),
            tpot: Dist::Const(Duration::from_millis(20)),
            output_len: OutputLen::Uniform,
            max_batch: 256,
            batch_knee: 32,
            batch_slope: 1.0,
            max_model_len: 32_768,
            error_rate: 0.0,
            fault_rate: 0.0,
            faults: Fault::ALL.to_vec(),
            seed: None,
            vllm_stream_delimiter: StreamDelimiter::Newline,
            triton_exclude_input: true,
            precise_timing: false,
            transport: Transport::Http1,
        }
    }
}

/// How long answers are when the request does not force `max_tokens` (vLLM `ignore_eos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputLen {
    /// Always `max_tokens` (as if every request set `ignore_eos`).
    Max,
    /// Uniform between `min_tokens` (at least 1) and `max_tokens`, like a model that may emit
    /// its end-of-sequence token anywhere.
    Uniform,
    /// This many tokens, kept within `min_tokens..=max_tokens`.
    Fixed(u32),
}

impl FromStr for OutputLen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "max" => Ok(OutputLen::Max),
            "uniform" => Ok(OutputLen::Uniform),
            other => other.parse().map(OutputLen::Fixed).map_err(|_| {
                format!("`{text}`: output length is `max`, `uniform` or a token count")
            }),
        }
    }
}

impl fmt::Display for OutputLen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputLen::Max => f.write_str("max"),
            OutputLen::Uniform => f.write_str("uniform"),
            OutputLen::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// A deliberate defect in one answer, for testing how clients handle bad servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The connection closes at the middle token, without the stream's end.
    CloseMidStream,
    /// One event (or the whole non-streamed answer) carries truncated JSON.
    MalformedJson,
    /// One extra event of a kind the API never sends; a robust client ignores it.
    UnknownEvent,
}

impl Fault {
    /// Every fault, in the order used for counters.
    pub const ALL: [Fault; 3] = [
        Fault::CloseMidStream,
        Fault::MalformedJson,
        Fault::UnknownEvent,
    ];

    /// The name used on the command line and in stats.
    pub fn name(self) -> &'static str {
        match self {
            Fault::CloseMidStream => "close_mid_stream",
            Fault::MalformedJson => "malformed_json",
            Fault::UnknownEvent => "unknown_event",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Fault::CloseMidStream => 0,
            Fault::MalformedJson => 1,
            Fault::UnknownEvent => 2,
        }
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Fault::ALL
            .into_iter()
            .find(|fault| fault.name() == text.trim())
            .ok_or_else(|| {
                format!("`{text}`: unknown fault (close_mid_stream, malformed_json, unknown_event)")
            })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What follows each JSON object in a streamed vLLM `/generate` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamDelimiter {
    /// `\n`, as current vLLM writes.
    Newline,
    /// `\0`, as vLLM wrote before mid-2024 (and clients written then split on).
    Nul,
}

impl StreamDelimiter {
    pub(crate) fn byte(self) -> u8 {
        match self {
            StreamDelimiter::Newline => b'\n',
            StreamDelimiter::Nul => b'\0',
        }
    }
}

impl FromStr for StreamDelimiter {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "newline" | "\\n" => Ok(StreamDelimiter::Newline),
            "nul" | "\\0" => Ok(StreamDelimiter::Nul),
            _ => Err(format!("`{text}`: delimiter is `newline` or `nul`")),
        }
    }
}

/// Serve until `shutdown` is cancelled, then let in-flight answers finish for about a second
/// before dropping the remaining connections.
///
/// Fails only on invalid config (rates outside `0..=1`, empty model name, a fault rate without
/// faults, a zero context length, a negative or non-finite slope). The listener is taken by
/// value so the caller can bind port 0 and read the address first; `stats` is shared so the
/// caller can read the truth while the server runs.
pub async fn serve(
    listener: TcpListener,
    config: LlmTargetConfig,
    stats: Arc<LlmTargetStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    serve_with_grpc(listener, None, config, stats, shutdown).await
}

/// [`serve`], plus JetStream's gRPC `Orchestrator` (`Decode`, `HealthCheck`) on `grpc` when
/// given: a second port (gRPC is HTTP/2), the same engine, batch slots and statistics.
pub async fn serve_with_grpc(
    listener: TcpListener,
    grpc: Option<TcpListener>,
    config: LlmTargetConfig,
    stats: Arc<LlmTargetStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let shared = Arc::new(server::Shared::from_config(config, stats)?);
    let grpc = grpc.map(|l| tokio::spawn(jetstream::serve(l, shared.clone(), shutdown.clone())));
    server::run(listener, shared, shutdown).await;
    if let Some(task) = grpc {
        task.await??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_enums() {
        assert_eq!("max".parse(), Ok(OutputLen::Max));
        assert_eq!("uniform".parse(), Ok(OutputLen::Uniform));
        assert_eq!("17".parse(), Ok(OutputLen::Fixed(17)));
        assert!("lots".parse::<OutputLen>().is_err());
        for fault in Fault::ALL {
            assert_eq!(fault.name().parse(), Ok(fault));
            assert_eq!(
                fault.index(),
                Fault::ALL.iter().position(|f| *f == fault).unwrap_or(9)
            );
        }
        assert!("explode".parse::<Fault>().is_err());
        assert_eq!("nul".parse(), Ok(StreamDelimiter::Nul));
        assert_eq!("newline".parse(), Ok(StreamDelimiter::Newline));
    }
}
