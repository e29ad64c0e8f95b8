//! The LLM servers Stampede can load, as wire formats: for each [`Backend`], the HTTP path, the
//! request body, the framing of a streamed answer, and how to read the answer (whole, or one
//! stream event at a time) into text, token counts and errors.
//!
//! Bodies match ai-on-gke's Locust benchmark (`locust-load-inference/.../tasks.py`,
//! `generate_request`) key for key for `vllm`, `tgi`, `triton` and `sax`; `openai` and
//! `openai-chat` follow the OpenAI API reference. Each variant's doc names the server document its
//! shapes were checked against. Nothing here sends anything: the driver does.
//!
//! Parsing is allocation-free on the hot path: stream events are read with borrowed
//! strings (copied only when the JSON escapes them) and `choices[0]` without building a `Vec`.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::recorder::Failure;

/// An LLM server's HTTP protocol. (JetStream's gRPC `Decode` will be a variant too; its
/// framing is gRPC messages rather than [`Framing`], so it will get its own decoder.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Backend {
    /// OpenAI `POST /v1/completions` (vLLM, SGLang, TGI ≥ 1.4, llama.cpp, ...). Checked against
    /// the OpenAI API reference ("Completions", "stream_options"): body `{model, prompt,
    /// max_tokens, temperature, top_p, n, stream}` plus `stream_options: {include_usage: true}`
    /// when streaming, and vLLM's extra `best_of` / `use_beam_search` / `ignore_eos` only when
    /// not at their defaults (OpenAI rejects unknown fields). Answer `choices[0].text` and
    /// `usage`; stream chunks `data: {"choices":[{"text": piece}]}`, a last chunk with
    /// `"choices": []` and `usage`, then `data: [DONE]`.
    #[serde(rename = "openai")]
    OpenAi,
    /// OpenAI `POST /v1/chat/completions`: the prompt is one user message. Answer
    /// `choices[0].message.content`; stream chunks `choices[0].delta.content` (the first delta
    /// carries only `role`; vLLM's `reasoning_content` counts as output too).
    #[serde(rename = "openai-chat")]
    OpenAiChat,
    /// vLLM's demo server `POST /generate` (vllm/entrypoints/api_server.py). Body is the Locust
    /// benchmark's `{prompt, n, best_of, use_beam_search, temperature, top_p, max_tokens,
    /// ignore_eos, stream}`; the answer `{"text": [prompt + completion]}` echoes the prompt, which
    /// is stripped. Streaming sends the same object with the text so far, one record after each
    /// step, delimited by `"\0"` (older) or `"\n"` (newer): see [`super::records`].
    #[serde(rename = "vllm")]
    Vllm,
    /// Hugging Face TGI `POST /generate` and `/generate_stream` (TGI OpenAPI, `StreamResponse`).
    /// Body is the Locust benchmark's `{inputs, parameters: {best_of, max_new_tokens, do_sample:
    /// true}}`, plus `details: true` (see [`LlmRequest::details`]; and `decoder_input_details:
    /// true` on a whole answer). Answer `{generated_text, details?: {"generated_tokens", "prefill",
    /// ..}}` (an array of one on the `/` route); stream events `data:{"index", "token":
    /// {"id","text","logprob","special"}, "generated_text": null|str, "details":
    /// null|{"finish_reason","generated_tokens","input_length",..}}` and, on failure,
    /// `data:{"error": str, "error_type": str}`.
    #[serde(rename = "tgi")]
    Tgi,
    /// Triton with TensorRT-LLM, `POST /v2/models/{model}/generate` and `/generate_stream`
    /// (Triton "Generate Extension" doc). Body is the Locust benchmark's `{text_input, max_tokens,
    /// beam_width, temperature, top_p, bad_words, stop_words, stream}`; answer `{model_name,
    /// model_version, text_output}`; stream events carry the new piece in `text_output`; errors are
    /// `{"error": str}`, even inside a stream that began with 200.
    #[serde(rename = "triton", alias = "tensorrt_llm_triton")]
    Triton,
    /// Saxml behind ai-on-gke's HTTP front, `POST /generate`. Body is the Locust benchmark's
    /// `{model, prompt, n, best_of, use_beam_search, temperature, top_p, top_k, max_tokens,
    /// stream}`. The benchmark reads nothing back; the answer is read as ai-on-gke's
    /// `benchmark_serving.py` reads it, `choices[0].text`, or as Saxml's HTTP server writes it,
    /// `[[completion, score], ...]`. No streaming.
    #[serde(rename = "sax")]
    Sax,
    /// JetStream's gRPC `jetstream_proto.Orchestrator/Decode` (google/JetStream
    /// `jetstream/core/proto/jetstream.proto`), server streaming: the request is
    /// `{max_tokens, text_content: {text}, num_samples: 1}`; each `DecodeResponse` carries
    /// `stream_content.samples[0]` with the new `text` and `token_ids` (one, or several with
    /// speculative decoding), so each message is a chunk of `token_ids.len()` tokens. Always
    /// streamed; the driver speaks gRPC (HTTP/2) to it, not HTTP/1.1 JSON.
    #[serde(rename = "jetstream")]
    JetStream,
}

/// How a streamed answer is cut into events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `text/event-stream`: [`super::sse::SseParser`].
    Sse,
    /// JSON records delimited by `\0` or `\n`: [`super::records::RecordSplitter`].
    Records,
}

/// One request's parameters: the union of what the backends take. Each backend sends the
/// fields its server knows, under its own names (`max_tokens` is TGI's `max_new_tokens`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LlmRequest<'a> {
    /// The prompt text.
    pub prompt: &'a str,
    /// The model name (OpenAI `model`, SAX `model`, Triton's URL); unused by vLLM and TGI.
    pub model: &'a str,
    /// The most output tokens to generate.
    pub max_tokens: u32,
    /// Ask for a streamed answer.
    pub stream: bool,
    /// Sampling temperature (the Locust benchmark: 0.0 with beam search, else 1.0).
    pub temperature: f64,
    /// Nucleus sampling (the Locust benchmark: always 1.0).
    pub top_p: f64,
    /// Top-k sampling; only SAX takes it (the Locust benchmark: 50).
    pub top_k: u32,
    /// Completions returned per prompt (the Locust benchmark: 1).
    pub n: u32,
    /// Sequences generated server-side to return the best (the Locust benchmark's `--best_of`, 1).
    pub best_of: u32,
    /// Beam search instead of sampling (the Locust benchmark's `--use_beam_search`).
    pub use_beam_search: bool,
    /// Keep generating past EOS up to `max_tokens` (vLLM only; the Locust benchmark: false).
    pub ignore_eos: bool,
    /// Triton's beam width (the Locust benchmark: `best_of` with beam search, else 1).
    pub beam_width: u32,
    /// Triton's comma-separated words never to generate (the Locust benchmark: empty).
    pub bad_words: &'a str,
    /// Triton's comma-separated words that stop generation (the Locust benchmark: empty).
    pub stop_words: &'a str,
    /// TGI: ask for `details`, so the answer carries the server's token counts (ai-on-gke's Locust
    /// benchmark does not ask; [`LlmRequest::new`] does). TGI sends them only when asked: a whole
    /// answer's `details.generated_tokens`, plus its `details.prefill` (the input tokens) when
    /// `decoder_input_details` is sent too, which this asks for on a whole answer (as TGI's own
    /// `/v1/completions` does; TGI refuses it when streaming); a stream's last event's
    /// `details.generated_tokens` and `details.input_length`.
    pub details: bool,
}

impl<'a> LlmRequest<'a> {
    /// A request with the defaults of ai-on-gke's Locust benchmark (`best_of` 1, no beam search,
    /// not streaming), plus TGI's `details`, so that TGI's answers carry the server's token counts.
    pub fn new(prompt: &'a str, model: &'a str, max_tokens: u32) -> LlmRequest<'a> {
        LlmRequest {
            prompt,
            model,
            max_tokens,
            stream: false,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 50,
            n: 1,
            best_of: 1,
            use_beam_search: false,
            ignore_eos: false,
            beam_width: 1,
            bad_words: "",
            stop_words: "",
            details: true,
        }
    }

    /// Apply the Locust benchmark's `--best_of` and `--use_beam_search` the way it derives the rest
    /// from them: beam search sets temperature 0.0 and Triton's beam width to `best_of`.
    pub fn with_locust_sampling(mut self, best_of: u32, use_beam_search: bool) -> LlmRequest<'a> {
        self.best_of = best_of;
        self.use_beam_search = use_beam_search;
        self.temperature = if use_beam_search { 0.0 } else { 1.0 };
        self.beam_width = if use_beam_search { best_of } else { 1 };
        self
    }
}

/// Token counts a server reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Prompt tokens, when the server says (OpenAI `prompt_tokens`; TGI a stream's
    /// `input_length`, a whole answer's `prefill` tokens).
    pub prompt_tokens: Option<u32>,
    /// Generated tokens (OpenAI `completion_tokens`, TGI `generated_tokens`).
    pub completion_tokens: u32,
}

/// A whole (non-streamed) answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Completion {
    /// The generated text, without any echoed prompt.
    pub text: String,
    /// Token counts, if the server reported them.
    pub usage: Option<Usage>,
}

/// What one stream event meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// Output arrived: `count` tokens the server generated (1 per event for every backend
    /// here: a chunk is a step). `text` may be empty for a token that is not text (TGI's
    /// special tokens such as `</s>`, which TGI's `generated_tokens` counts).
    Token {
        /// The new text.
        text: Cow<'a, str>,
        /// Tokens this event stands for.
        count: u32,
    },
    /// The server's token counts (OpenAI's usage chunk, TGI's final `details`). When sent more
    /// than once (vLLM's `continuous_usage_stats`), the last one holds.
    Usage(Usage),
    /// The server said the answer is complete (`[DONE]`, TGI's final event).
    Done,
    /// Nothing to measure: keep-alive, role-only delta, empty piece, finish-reason-only chunk.
    Ignored,
}

/// Why an answer could not be read. Each variant maps to a bounded [`Failure`] kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The body or event is not the JSON shape the backend sends.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// A stream event with a name this backend never sends.
    #[error("unexpected stream event `{0}`")]
    UnknownEvent(String),
    /// The server reported an error in the body or inside the stream.
    #[error("server error: {0}")]
    ServerError(String),
}

impl ResponseError {
    /// Whether the server itself reported the error (as opposed to answering garbage).
    pub fn is_server_error(&self) -> bool {
        matches!(self, ResponseError::ServerError(_))
    }

    /// The failure to record: a fixed kind, never the message (reports stay bounded).
    pub fn failure(&self) -> Failure {
        match self {
            ResponseError::Malformed(_) => Failure::Protocol("malformed answer"),
            ResponseError::UnknownEvent(_) => Failure::Protocol("unexpected stream event"),
            ResponseError::ServerError(_) => Failure::Protocol("server error in answer"),
        }
    }
}

/// JetStream's `DecodeRequest` for one prompt: the text (the server tokenizes it), the output
/// budget, one sample.
pub fn jetstream_request(prompt: &str, max_tokens: u32) -> stampede_grpc::jetstream::DecodeRequest {
    use stampede_grpc::jetstream::decode_request::{Content, TextContent};
    stampede_grpc::jetstream::DecodeRequest {
        max_tokens: i32::try_from(max_tokens).unwrap_or(i32::MAX),
        content: Some(Content::TextContent(TextContent {
            text: prompt.to_string(),
        })),
        metadata_optional: None,
        num_samples: 1,
    }
}

/// The error for an unknown backend name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown LLM backend `{0}` (expected one of: openai, openai-chat, vllm, tgi, triton, sax, jetstream)"
)]
pub struct UnknownBackend(pub String);

impl Backend {
    /// Every backend, in the order of the names.
    pub const ALL: [Backend; 7] = [
        Backend::OpenAi,
        Backend::OpenAiChat,
        Backend::Vllm,
        Backend::Tgi,
        Backend::Triton,
        Backend::Sax,
        Backend::JetStream,
    ];

    /// The name used in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Backend::OpenAi => "openai",
            Backend::OpenAiChat => "openai-chat",
            Backend::Vllm => "vllm",
            Backend::Tgi => "tgi",
            Backend::Triton => "triton",
            Backend::Sax => "sax",
            Backend::JetStream => "jetstream",
        }
    }

    /// Whether the server can stream its answer.
    pub fn supports_streaming(self) -> bool {
        !matches!(self, Backend::Sax)
    }

    /// How a streamed answer is framed.
    pub fn framing(self) -> Framing {
        match self {
            Backend::Vllm => Framing::Records,
            _ => Framing::Sse,
        }
    }

    /// The path to `POST` to, to append to the target's base path. Only Triton puts the model
    /// in the URL (an empty model means TensorRT-LLM's usual `ensemble`); ai-on-gke's Locust
    /// benchmark posts `/generate` to every server, with Triton's model prefix in its host setting.
    pub fn path(self, model: &str, stream: bool) -> String {
        match self {
            Backend::JetStream => "/jetstream_proto.Orchestrator/Decode".into(),
            Backend::OpenAi => "/v1/completions".into(),
            Backend::OpenAiChat => "/v1/chat/completions".into(),
            Backend::Vllm | Backend::Sax => "/generate".into(),
            Backend::Tgi if stream => "/generate_stream".into(),
            Backend::Tgi => "/generate".into(),
            Backend::Triton => {
                let model = if model.is_empty() { "ensemble" } else { model };
                let verb = if stream {
                    "generate_stream"
                } else {
                    "generate"
                };
                format!("/v2/models/{model}/{verb}")
            }
        }
    }

    /// The JSON body of a request.
    pub fn request_body(self, req: &LlmRequest<'_>) -> Vec<u8> {
        let r = req;
        let body = match self {
            Backend::JetStream => {
                return prost::Message::encode_to_vec(&jetstream_request(r.prompt, r.max_tokens));
            }
            Backend::OpenAi => serde_json::to_vec(&OpenAiBody::completion(r)),
            Backend::OpenAiChat => serde_json::to_vec(&OpenAiBody {
                prompt: None,
                messages: Some([ChatMessage {
                    role: "user",
                    content: r.prompt,
                }]),
                // The chat API has no `best_of`.
                best_of: 1,
                ..OpenAiBody::completion(r)
            }),
            Backend::Vllm => serde_json::to_vec(&VllmBody {
                prompt: r.prompt,
                n: r.n,
                best_of: r.best_of,
                use_beam_search: r.use_beam_search,
                temperature: r.temperature,
                top_p: r.top_p,
                max_tokens: r.max_tokens,
                ignore_eos: r.ignore_eos,
                stream: r.stream,
            }),
            Backend::Tgi => serde_json::to_vec(&TgiBody {
                inputs: r.prompt,
                parameters: TgiParameters {
                    best_of: r.best_of,
                    max_new_tokens: r.max_tokens,
                    do_sample: true,
                    details: r.details,
                    decoder_input_details: r.details && !r.stream,
                },
            }),
            Backend::Triton => serde_json::to_vec(&TritonBody {
                text_input: r.prompt,
                max_tokens: r.max_tokens,
                beam_width: r.beam_width,
                temperature: r.temperature,
                top_p: r.top_p,
                bad_words: r.bad_words,
                stop_words: r.stop_words,
                stream: r.stream,
            }),
            Backend::Sax => serde_json::to_vec(&SaxBody {
                model: r.model,
                prompt: r.prompt,
                n: r.n,
                best_of: r.best_of,
                use_beam_search: r.use_beam_search,
                temperature: r.temperature,
                top_p: r.top_p,
                top_k: r.top_k,
                max_tokens: r.max_tokens,
                stream: r.stream,
            }),
        };
        // The invariant: these structs hold only strings, integers, booleans and finite floats
        // (a NaN would serialize as `null`, not fail), which serde_json always serializes.
        body.expect("request bodies always serialize")
    }

    /// Read a whole answer. `prompt` is the request's prompt, stripped where echoed (vLLM's
    /// `/generate` always echoes it; Triton does when `exclude_input_in_output` is off, which
    /// ai-on-gke's Locust benchmark did not correct for).
    pub fn parse_response(self, body: &[u8], prompt: &str) -> Result<Completion, ResponseError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| ResponseError::Malformed("answer is not UTF-8".into()))?;
        check_error(text)?;
        if self == Backend::Sax && text.trim_start().starts_with('[') {
            // Saxml's HTTP server answers `[[completion, score], ...]` (pretty-printed); the
            // benchmark front end answers OpenAI-style `choices`. Both are read.
            let all: Vec<(String, serde_json::Value)> = serde_json::from_str(text)
                .map_err(|e| ResponseError::Malformed(format!("SAX answer: {e}")))?;
            let (completion, _score) =
                all.into_iter().next().ok_or_else(|| missing(self, "[0]"))?;
            return Ok(Completion {
                text: completion,
                usage: None,
            });
        }
        match self {
            Backend::JetStream => Err(ResponseError::Malformed(
                "JetStream answers are gRPC streams, not JSON".into(),
            )),
            Backend::OpenAi | Backend::OpenAiChat | Backend::Sax => {
                let r: OaChunk<'_> = json(text)?;
                let choice = r.choices.0.unwrap_or_default();
                let piece = match self {
                    Backend::OpenAiChat => choice.message.and_then(|m| m.content),
                    _ => choice.text,
                };
                let piece = piece.ok_or_else(|| missing(self, "choices[0]"))?;
                Ok(Completion {
                    text: piece.0.into_owned(),
                    usage: r.usage.and_then(OaUsage::into_usage),
                })
            }
            Backend::Vllm => {
                let r: VllmRecord<'_> = json(text)?;
                let full = r.text.0.ok_or_else(|| missing(self, "text[0]"))?.0;
                let completion = full.strip_prefix(prompt).ok_or_else(|| {
                    ResponseError::Malformed("vLLM `text[0]` does not start with the prompt".into())
                })?;
                Ok(Completion {
                    text: completion.to_string(),
                    usage: None,
                })
            }
            Backend::Tgi => {
                let r: TgiGenerate<'_> = if text.trim_start().starts_with('[') {
                    json::<FirstOf<TgiGenerate<'_>>>(text)?
                        .0
                        .ok_or_else(|| missing(self, "[0]"))?
                } else {
                    json(text)?
                };
                Ok(Completion {
                    text: r.generated_text.0.into_owned(),
                    usage: r.details.map(TgiDetails::into_usage),
                })
            }
            Backend::Triton => {
                let r: TritonEvent<'_> = json(text)?;
                let out = r.text_output.ok_or_else(|| missing(self, "text_output"))?.0;
                let out = out.strip_prefix(prompt).unwrap_or(&out);
                Ok(Completion {
                    text: out.to_string(),
                    usage: None,
                })
            }
        }
    }

    /// A parser for the events of one streamed answer, or `None` if this backend does not
    /// stream.
    pub fn event_parser(self, prompt: &str) -> Option<EventParser> {
        // JetStream's messages are protobuf, read by the driver's gRPC exchange.
        (self.supports_streaming() && self != Backend::JetStream).then_some(EventParser {
            backend: self,
            seen: prompt.len(),
            prompt_len: prompt.len(),
        })
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Backend, UnknownBackend> {
        match s {
            "openai" => Ok(Backend::OpenAi),
            "openai-chat" => Ok(Backend::OpenAiChat),
            "vllm" => Ok(Backend::Vllm),
            "tgi" => Ok(Backend::Tgi),
            "triton" | "tensorrt_llm_triton" => Ok(Backend::Triton),
            "sax" => Ok(Backend::Sax),
            "jetstream" => Ok(Backend::JetStream),
            other => Err(UnknownBackend(other.to_string())),
        }
    }
}

/// The events one stream event (or record) stood for: at most three (TGI's last event is a
/// token, its usage, and the end), held inline.
#[derive(Debug, Default)]
pub struct Events<'a> {
    items: [Option<StreamEvent<'a>>; 3],
    len: usize,
    next: usize,
}

impl<'a> Events<'a> {
    fn push(&mut self, e: StreamEvent<'a>) {
        // The invariant: every parser pushes at most three events.
        debug_assert!(self.len < self.items.len());
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = Some(e);
            self.len += 1;
        }
    }

    fn one(e: StreamEvent<'a>) -> Events<'a> {
        let mut events = Events::default();
        events.push(e);
        events
    }

    fn or_ignored(self) -> Events<'a> {
        if self.len == 0 {
            Events::one(StreamEvent::Ignored)
        } else {
            self
        }
    }
}

impl<'a> Iterator for Events<'a> {
    type Item = StreamEvent<'a>;

    fn next(&mut self) -> Option<StreamEvent<'a>> {
        let e = self.items.get_mut(self.next)?.take();
        self.next += 1;
        e
    }
}

/// Reads the events of one streamed answer. Stateful only for vLLM, whose records repeat the
/// whole text so far: the parser hands out what is new.
#[derive(Debug, Clone)]
pub struct EventParser {
    backend: Backend,
    /// vLLM: bytes of the cumulative text already handed out (the echoed prompt at first).
    seen: usize,
    prompt_len: usize,
}

impl EventParser {
    /// Make the parser ready for the next answer, to the prompt of `prompt`.
    pub fn reset(&mut self, prompt: &str) {
        self.seen = prompt.len();
        self.prompt_len = prompt.len();
    }

    /// The backend this parser reads.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Read one event: `event` is its SSE name (`message` for records), `data` its payload.
    pub fn parse<'a>(&mut self, event: &str, data: &'a str) -> Result<Events<'a>, ResponseError> {
        match event {
            "message" => {}
            "error" => return Err(ResponseError::ServerError(data.to_string())),
            other => return Err(ResponseError::UnknownEvent(other.to_string())),
        }
        let trimmed = data.trim_ascii();
        if trimmed.is_empty() {
            return Ok(Events::one(StreamEvent::Ignored));
        }
        let mut out = Events::default();
        match self.backend {
            Backend::JetStream => {
                return Err(ResponseError::UnknownEvent("JetStream over SSE".into()));
            }
            Backend::OpenAi | Backend::OpenAiChat | Backend::Sax => {
                if trimmed == "[DONE]" {
                    return Ok(Events::one(StreamEvent::Done));
                }
                let mut chunk: OaChunk<'a> = json(data)?;
                chunk.check()?;
                if let Some(choice) = chunk.choices.0 {
                    let piece = match self.backend {
                        Backend::OpenAiChat => choice.delta.and_then(OaDelta::into_piece),
                        _ => choice.text,
                    };
                    if let Some(piece) = piece.filter(|p| !p.0.is_empty()) {
                        out.push(StreamEvent::Token {
                            text: piece.0,
                            count: 1,
                        });
                    }
                }
                if let Some(usage) = chunk.usage.and_then(OaUsage::into_usage) {
                    out.push(StreamEvent::Usage(usage));
                }
            }
            Backend::Vllm => {
                let record: VllmRecord<'a> = json(data)?;
                check_error_value(record.error)?;
                let full = record
                    .text
                    .0
                    .ok_or_else(|| missing(self.backend, "text[0]"))?
                    .0;
                if full.len() < self.seen || !full.is_char_boundary(self.seen) {
                    let what = if self.seen == self.prompt_len {
                        "vLLM `text[0]` does not start with the prompt"
                    } else {
                        "vLLM `text[0]` is not an extension of the previous record"
                    };
                    return Err(ResponseError::Malformed(what.into()));
                }
                let seen = self.seen;
                self.seen = full.len();
                if full.len() > seen {
                    let text = match full {
                        Cow::Borrowed(s) => Cow::Borrowed(&s[seen..]),
                        Cow::Owned(s) => Cow::Owned(s[seen..].to_string()),
                    };
                    out.push(StreamEvent::Token { text, count: 1 });
                }
            }
            Backend::Tgi => {
                let e: TgiEvent<'a> = json(data)?;
                check_error_value(e.error)?;
                let token = e.token.ok_or_else(|| missing(self.backend, "token"))?;
                let text = if token.special {
                    Cow::Borrowed("")
                } else {
                    token.text
                };
                out.push(StreamEvent::Token { text, count: 1 });
                if let Some(details) = e.details {
                    out.push(StreamEvent::Usage(details.into_usage()));
                }
                if e.generated_text.is_some() {
                    out.push(StreamEvent::Done);
                }
            }
            Backend::Triton => {
                let e: TritonEvent<'a> = json(data)?;
                check_error_value(e.error)?;
                if let Some(piece) = e.text_output.filter(|p| !p.0.is_empty()) {
                    out.push(StreamEvent::Token {
                        text: piece.0,
                        count: 1,
                    });
                }
            }
        }
        Ok(out.or_ignored())
    }
}

// ---- request bodies (field order is the wire order) ----

#[derive(Serialize)]
struct OpenAiBody<'a> {
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<[ChatMessage<'a>; 1]>,
    max_tokens: u32,
    temperature: f64,
    top_p: f64,
    n: u32,
    #[serde(skip_serializing_if = "is_one")]
    best_of: u32,
    #[serde(skip_serializing_if = "is_false")]
    use_beam_search: bool,
    #[serde(skip_serializing_if = "is_false")]
    ignore_eos: bool,
    stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

impl<'a> OpenAiBody<'a> {
    /// The `/v1/completions` body; the chat body is this with the prompt moved into
    /// `messages`.
    fn completion(r: &LlmRequest<'a>) -> Self {
        OpenAiBody {
            model: r.model,
            prompt: Some(r.prompt),
            messages: None,
            max_tokens: r.max_tokens,
            temperature: r.temperature,
            top_p: r.top_p,
            n: r.n,
            best_of: r.best_of,
            use_beam_search: r.use_beam_search,
            ignore_eos: r.ignore_eos,
            stream: r.stream,
            stream_options: r.stream.then_some(StreamOptions {
                include_usage: true,
            }),
        }
    }
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'a str,
    content: &'a str,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

#[derive(Serialize)]
struct VllmBody<'a> {
    prompt: &'a str,
    n: u32,
    best_of: u32,
    use_beam_search: bool,
    temperature: f64,
    top_p: f64,
    max_tokens: u32,
    ignore_eos: bool,
    stream: bool,
}

#[derive(Serialize)]
struct TgiBody<'a> {
    inputs: &'a str,
    parameters: TgiParameters,
}

#[derive(Serialize)]
struct TgiParameters {
    best_of: u32,
    max_new_tokens: u32,
    do_sample: bool,
    #[serde(skip_serializing_if = "is_false")]
    details: bool,
    /// Ask for `details.prefill`, the input tokens; whole answers only (TGI refuses it when
    /// streaming).
    #[serde(skip_serializing_if = "is_false")]
    decoder_input_details: bool,
}

#[derive(Serialize)]
struct TritonBody<'a> {
    text_input: &'a str,
    max_tokens: u32,
    beam_width: u32,
    temperature: f64,
    top_p: f64,
    bad_words: &'a str,
    stop_words: &'a str,
    stream: bool,
}

#[derive(Serialize)]
struct SaxBody<'a> {
    model: &'a str,
    prompt: &'a str,
    n: u32,
    best_of: u32,
    use_beam_search: bool,
    temperature: f64,
    top_p: f64,
    top_k: u32,
    max_tokens: u32,
    stream: bool,
}

fn is_one(v: &u32) -> bool {
    *v == 1
}

fn is_false(v: &bool) -> bool {
    !*v
}

// ---- answers ----

/// A string borrowed from the JSON when it has no escapes.
#[derive(Debug, Deserialize, Default)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

/// The first element of a JSON array (`null` or `[]`: none), without building a `Vec`.
#[derive(Debug)]
struct FirstOf<T>(Option<T>);

impl<T> Default for FirstOf<T> {
    fn default() -> Self {
        FirstOf(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for FirstOf<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct First<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for First<T> {
            type Value = FirstOf<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array or null")
            }

            fn visit_unit<E>(self) -> Result<FirstOf<T>, E> {
                Ok(FirstOf(None))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FirstOf<T>, A::Error> {
                let first = seq.next_element::<T>()?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FirstOf(first))
            }
        }
        d.deserialize_any(First(PhantomData))
    }
}

/// The ways servers put an error in a 200 answer or a stream: `{"error": "msg"}` (TGI,
/// Triton), `{"error": {"message": ..}}` (OpenAI, vLLM ≥ 0.8), `{"object": "error",
/// "message": ..}` (older vLLM).
#[derive(Debug, Deserialize, Default)]
struct ErrorFields {
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    object: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

impl ErrorFields {
    fn check(self) -> Result<(), ResponseError> {
        check_error_value(self.error)?;
        if self.object.as_deref() == Some("error") {
            return Err(ResponseError::ServerError(
                self.message.unwrap_or_else(|| "error".into()),
            ));
        }
        Ok(())
    }
}

/// An `error` field that is present and not `null` is the server's error.
fn check_error_value(error: Option<serde_json::Value>) -> Result<(), ResponseError> {
    let Some(e) = error.filter(|e| !e.is_null()) else {
        return Ok(());
    };
    let msg = match &e {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(o) => match o.get("message") {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => e.to_string(),
        },
        other => other.to_string(),
    };
    Err(ResponseError::ServerError(msg))
}

/// Check a whole body for an error object before reading it as an answer.
fn check_error(text: &str) -> Result<(), ResponseError> {
    if !text.trim_start().starts_with('{') {
        return Ok(());
    }
    match serde_json::from_str::<ErrorFields>(text) {
        Ok(e) => e.check(),
        // Malformed JSON is reported by the backend's own parse, with its context.
        Err(_) => Ok(()),
    }
}

#[derive(Debug, Deserialize)]
struct OaChunk<'a> {
    #[serde(default, borrow)]
    choices: FirstOf<OaChoice<'a>>,
    #[serde(default)]
    usage: Option<OaUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    /// `error` in older vLLM's error object, else the object kind (`text_completion`, ...).
    #[serde(default, borrow)]
    object: Option<Str<'a>>,
    #[serde(default, borrow)]
    message: Option<Str<'a>>,
}

impl OaChunk<'_> {
    fn check(&mut self) -> Result<(), ResponseError> {
        check_error_value(self.error.take())?;
        if self.object.as_ref().is_some_and(|o| o.0 == "error") {
            let msg = self.message.take().map(|m| m.0.into_owned());
            return Err(ResponseError::ServerError(
                msg.unwrap_or_else(|| "error".into()),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize, Default)]
struct OaChoice<'a> {
    #[serde(default, borrow)]
    text: Option<Str<'a>>,
    #[serde(default, borrow)]
    delta: Option<OaDelta<'a>>,
    #[serde(default, borrow)]
    message: Option<OaMessage<'a>>,
}

#[derive(Debug, Deserialize)]
struct OaDelta<'a> {
    #[serde(default, borrow)]
    content: Option<Str<'a>>,
    #[serde(default, borrow)]
    reasoning_content: Option<Str<'a>>,
}

impl<'a> OaDelta<'a> {
    fn into_piece(self) -> Option<Str<'a>> {
        match self.content {
            Some(c) if !c.0.is_empty() => Some(c),
            _ => self.reasoning_content,
        }
    }
}

#[derive(Debug, Deserialize)]
struct OaMessage<'a> {
    #[serde(default, borrow)]
    content: Option<Str<'a>>,
}

#[derive(Debug, Deserialize)]
struct OaUsage {
    #[serde(default)]
    prompt_tokens: Option<u32>,
    #[serde(default)]
    completion_tokens: Option<u32>,
}

impl OaUsage {
    fn into_usage(self) -> Option<Usage> {
        Some(Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens?,
        })
    }
}

#[derive(Debug, Deserialize)]
struct VllmRecord<'a> {
    #[serde(default, borrow)]
    text: FirstOf<Str<'a>>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct TgiEvent<'a> {
    #[serde(default, borrow)]
    token: Option<TgiToken<'a>>,
    #[serde(default, borrow)]
    generated_text: Option<Str<'a>>,
    #[serde(default)]
    details: Option<TgiDetails>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct TgiToken<'a> {
    #[serde(borrow)]
    text: Cow<'a, str>,
    #[serde(default)]
    special: bool,
}

/// TGI's `Details` (a whole answer) and `StreamDetails` (a stream's last event), as far as
/// the counts go.
#[derive(Debug, Deserialize)]
struct TgiDetails {
    generated_tokens: u32,
    /// Input tokens: `StreamDetails` has them.
    #[serde(default)]
    input_length: Option<u32>,
    /// One entry per input token, filled when `decoder_input_details` was asked (else empty);
    /// only counted (a vector of zero-sized values does not allocate).
    #[serde(default)]
    prefill: Vec<serde::de::IgnoredAny>,
}

impl TgiDetails {
    fn into_usage(self) -> Usage {
        let prefill = (!self.prefill.is_empty()).then_some(self.prefill.len() as u32);
        Usage {
            prompt_tokens: self.input_length.or(prefill),
            completion_tokens: self.generated_tokens,
        }
    }
}

#[derive(Debug, Deserialize)]
struct TgiGenerate<'a> {
    #[serde(borrow)]
    generated_text: Str<'a>,
    #[serde(default)]
    details: Option<TgiDetails>,
}

#[derive(Debug, Deserialize)]
struct TritonEvent<'a> {
    #[serde(default, borrow)]
    text_output: Option<Str<'a>>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

fn json<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, ResponseError> {
    serde_json::from_str(text).map_err(|e| ResponseError::Malformed(e.to_string()))
}

fn missing(backend: Backend, field: &str) -> ResponseError {
    ResponseError::Malformed(format!("{backend} answer has no `{field}`"))
}

#[cfg(test)]
mod tests;
