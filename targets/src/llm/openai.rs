//! The OpenAI-compatible API as vLLM serves it: `/v1/completions`, `/v1/chat/completions` and
//! `/v1/models`.
//!
//! Called by the router with a request body; returns the engine job and the encoder that writes
//! vLLM's objects (`text_completion`, `chat.completion`, `chat.completion.chunk`, the trailing
//! usage chunk and `data: [DONE]`). Sampling parameters (`temperature`, `top_p`, `best_of`, ...)
//! are accepted and ignored; logprobs, tools and `n > 1` are not simulated.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::engine::{Encoder, End, Finish, Job, Token, count_words};
use super::server::{ApiJob, LlmBody, Reject, RequestCtx, SSE_UTF8, json_response, write_json};
use http::{Response, StatusCode};

/// vLLM's default `max_tokens` for `/v1/completions` (the OpenAI spec's 16).
const DEFAULT_COMPLETION_MAX_TOKENS: u32 = 16;

#[derive(Deserialize)]
struct CompletionRequest {
    model: Option<String>,
    prompt: Value,
    /// Absent: 16; `null`: up to the context length, as vLLM does.
    #[serde(default = "default_completion_max_tokens")]
    max_tokens: Option<u32>,
    #[serde(default)]
    min_tokens: u32,
    #[serde(default)]
    ignore_eos: bool,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    echo: bool,
    n: Option<u32>,
}

fn default_completion_max_tokens() -> Option<u32> {
    Some(DEFAULT_COMPLETION_MAX_TOKENS)
}

#[derive(Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Vec<ChatMessage>,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    min_tokens: u32,
    #[serde(default)]
    ignore_eos: bool,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    n: Option<u32>,
}

#[derive(Deserialize)]
struct ChatMessage {
    /// A string, a list of content parts (`{"type":"text","text":...}`), or null.
    #[serde(default)]
    content: Value,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// `POST /v1/completions`.
pub(crate) fn completions(ctx: &mut RequestCtx<'_>, body: &[u8]) -> Result<ApiJob, Reject> {
    let request: CompletionRequest = parse_json(body)?;
    let model = check_model(ctx, request.model.as_deref())?;
    check_common(request.n, request.stream, request.stream_options.is_some())?;
    let (prompt_tokens, prompt_text) = completion_prompt(&request.prompt)?;
    let max_tokens = budget(ctx, prompt_tokens, request.max_tokens, "prompt")?;
    let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
    let encoder = CompletionEncoder {
        id: format!("cmpl-{}", ctx.tag),
        created: ctx.created,
        model,
        stream: request.stream,
        include_usage,
        echo: request.echo.then_some(prompt_text),
        text: String::new(),
    };
    let job = Job {
        prompt_tokens,
        max_tokens,
        min_tokens: request.min_tokens,
        ignore_eos: request.ignore_eos,
        stream: request.stream,
        encoder: Box::new(encoder),
    };
    Ok(ApiJob::new(job, SSE_UTF8))
}

/// `POST /v1/chat/completions`.
pub(crate) fn chat(ctx: &mut RequestCtx<'_>, body: &[u8]) -> Result<ApiJob, Reject> {
    let request: ChatRequest = parse_json(body)?;
    let model = check_model(ctx, request.model.as_deref())?;
    check_common(request.n, request.stream, request.stream_options.is_some())?;
    if request.messages.is_empty() {
        return Err(Reject::bad("messages must contain at least one message"));
    }
    let prompt_tokens = request
        .messages
        .iter()
        .map(|message| content_words(&message.content))
        .sum::<u64>();
    let asked = request.max_completion_tokens.or(request.max_tokens);
    let max_tokens = budget(ctx, prompt_tokens, asked, "messages")?;
    let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
    let encoder = ChatEncoder {
        id: format!("chatcmpl-{}", ctx.tag),
        created: ctx.created,
        model,
        stream: request.stream,
        include_usage,
        text: String::new(),
    };
    let job = Job {
        prompt_tokens,
        max_tokens,
        min_tokens: request.min_tokens,
        ignore_eos: request.ignore_eos,
        stream: request.stream,
        encoder: Box::new(encoder),
    };
    Ok(ApiJob::new(job, SSE_UTF8))
}

/// `GET /v1/models`.
pub(crate) fn models(shared: &super::server::Shared) -> Response<LlmBody> {
    #[derive(Serialize)]
    struct List<'a> {
        object: &'static str,
        data: [Card<'a>; 1],
    }
    #[derive(Serialize)]
    struct Card<'a> {
        id: &'a str,
        object: &'static str,
        created: u64,
        owned_by: &'static str,
        root: &'a str,
        parent: Option<()>,
        max_model_len: u32,
    }
    let model = shared.config.model.as_str();
    json_response(
        StatusCode::OK,
        &List {
            object: "list",
            data: [Card {
                id: model,
                object: "model",
                created: super::engine::unix_now(),
                owned_by: "vllm",
                root: model,
                parent: None,
                max_model_len: shared.config.max_model_len,
            }],
        },
    )
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Reject> {
    serde_json::from_slice(body).map_err(|err| Reject::bad(format!("invalid request body: {err}")))
}

/// The model name to report, or vLLM's 404 for a model it does not serve.
fn check_model(ctx: &RequestCtx<'_>, asked: Option<&str>) -> Result<String, Reject> {
    let config = &ctx.shared.config;
    match asked {
        None => Ok(config.model.clone()),
        Some(name) if name == config.model => Ok(config.model.clone()),
        Some(name) if config.any_model => Ok(name.to_owned()),
        Some(name) => Err(Reject::new(
            StatusCode::NOT_FOUND,
            format!("The model `{name}` does not exist."),
        )),
    }
}

fn check_common(n: Option<u32>, stream: bool, has_stream_options: bool) -> Result<(), Reject> {
    if n.is_some_and(|n| n != 1) {
        return Err(Reject::bad(
            "n other than 1 is not simulated by stampede target llm",
        ));
    }
    if has_stream_options && !stream {
        return Err(Reject::bad(
            "Stream options can only be defined when `stream=True`.",
        ));
    }
    Ok(())
}

/// The output budget: what was asked, or what the context leaves; vLLM's 400 when the prompt
/// and the budget do not fit.
fn budget(
    ctx: &RequestCtx<'_>,
    prompt_tokens: u64,
    asked: Option<u32>,
    prompt_name: &str,
) -> Result<u32, Reject> {
    let context = u64::from(ctx.shared.config.max_model_len);
    let max_tokens = match asked {
        Some(0) => return Err(Reject::bad("max_tokens must be at least 1, got 0.")),
        Some(asked) => u64::from(asked),
        None => context.saturating_sub(prompt_tokens),
    };
    if max_tokens == 0 || prompt_tokens + max_tokens > context {
        return Err(Reject::bad(format!(
            "This model's maximum context length is {context} tokens. However, you requested \
             {} tokens ({prompt_tokens} in the {prompt_name}, {max_tokens} in the completion). \
             Please reduce the length of the {prompt_name} or completion.",
            prompt_tokens + max_tokens
        )));
    }
    // Bounded by the context length, itself a u32.
    Ok(u32::try_from(max_tokens).unwrap_or(u32::MAX))
}

/// Prompt token count and text (for `echo`) of a completions `prompt`.
fn completion_prompt(prompt: &Value) -> Result<(u64, String), Reject> {
    match prompt {
        Value::String(text) => Ok((count_words(text), text.clone())),
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_u64) => {
            Ok((items.len() as u64, String::new()))
        }
        Value::Array(items) if items.len() == 1 => completion_prompt(&items[0]),
        Value::Array(items) if items.len() > 1 => Err(Reject::bad(
            "batched prompts are not simulated by stampede target llm; send one prompt",
        )),
        _ => Err(Reject::bad(
            "prompt must be a string, a list with one string, or a list of token ids",
        )),
    }
}

/// Words in a chat message's content (string or text parts).
fn content_words(content: &Value) -> u64 {
    match content {
        Value::String(text) => count_words(text),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| part.get("text").and_then(Value::as_str))
            .map(count_words)
            .sum(),
        _ => 0,
    }
}

fn finish_reason(finish: Finish) -> &'static str {
    match finish {
        Finish::Length => "length",
        Finish::Stop => "stop",
    }
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
    completion_tokens: u64,
}

impl Usage {
    fn of(end: &End) -> Self {
        let completion_tokens = u64::from(end.completion_tokens);
        Self {
            prompt_tokens: end.prompt_tokens,
            total_tokens: end.prompt_tokens + completion_tokens,
            completion_tokens,
        }
    }
}

/// `data: ` framing of the OpenAI streams.
fn event<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    out.extend_from_slice(b"data: ");
    write_json(out, value);
    out.extend_from_slice(b"\n\n");
}

const DONE: &[u8] = b"data: [DONE]\n\n";
const UNKNOWN_EVENT: &[u8] =
    b"event: stampede.unknown\ndata: {\"object\":\"stampede.unknown\"}\n\n";

/// A text completion (`object: "text_completion"`), whole or as a stream.
///
/// Chunk: `{"id","object":"text_completion","created","model","choices":[{"index":0,"text",
/// "logprobs":null,"finish_reason":null|"length"|"stop","stop_reason":null}]}`; usage chunk:
/// the same envelope with `"choices":[]` and `"usage":{"prompt_tokens","total_tokens",
/// "completion_tokens"}`.
struct CompletionEncoder {
    id: String,
    created: u64,
    model: String,
    stream: bool,
    include_usage: bool,
    /// The prompt, to put before the first token (`echo`).
    echo: Option<String>,
    /// The whole text, for the non-streamed answer.
    text: String,
}

#[derive(Serialize)]
struct CompletionObject<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [CompletionChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct CompletionChoice<'a> {
    index: u32,
    text: &'a str,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
    stop_reason: Option<()>,
    /// Present (as `null`) only in the non-streamed answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_logprobs: Option<Option<()>>,
}

impl CompletionEncoder {
    fn object<'a>(
        &'a self,
        choices: &'a [CompletionChoice<'a>],
        usage: Option<Usage>,
    ) -> CompletionObject<'a> {
        CompletionObject {
            id: &self.id,
            object: "text_completion",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        }
    }
}

impl Encoder for CompletionEncoder {
    fn token(&mut self, out: &mut Vec<u8>, token: &Token, finish: Option<Finish>) {
        if !self.stream {
            if let Some(prompt) = self.echo.take() {
                self.text.push_str(&prompt);
            }
            self.text.push_str(token.text);
            return;
        }
        let echoed;
        let text = match self.echo.take() {
            Some(prompt) => {
                echoed = prompt + token.text;
                echoed.as_str()
            }
            None => token.text,
        };
        let choice = [CompletionChoice {
            index: 0,
            text,
            logprobs: None,
            finish_reason: finish.map(finish_reason),
            stop_reason: None,
            prompt_logprobs: None,
        }];
        event(out, &self.object(&choice, None));
    }

    fn end(&mut self, out: &mut Vec<u8>, end: &End) {
        if self.stream {
            if self.include_usage {
                event(out, &self.object(&[], Some(Usage::of(end))));
            }
            out.extend_from_slice(DONE);
            return;
        }
        let choice = [CompletionChoice {
            index: 0,
            text: &self.text,
            logprobs: None,
            finish_reason: Some(finish_reason(end.finish)),
            stop_reason: None,
            prompt_logprobs: Some(None),
        }];
        write_json(out, &self.object(&choice, Some(Usage::of(end))));
    }

    fn malformed(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: {\"id\":\"");
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(
            b"\",\"object\":\"text_completion\",\"choices\":[{\"index\":0,\"text\":\n\n",
        );
    }

    fn unknown_event(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(UNKNOWN_EVENT);
    }
}

/// A chat completion (`chat.completion`), or its `chat.completion.chunk` stream.
///
/// The first chunk's delta is `{"role":"assistant","content":""}` (sent with the first token),
/// then one `{"content": token}` delta per token; the last carries `finish_reason` and
/// `stop_reason`. The usage chunk has `"choices":[]`.
struct ChatEncoder {
    id: String,
    created: u64,
    model: String,
    stream: bool,
    include_usage: bool,
    text: String,
}

#[derive(Serialize)]
struct ChatChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChatChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct ChatChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_reason: Option<Option<()>>,
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    content: &'a str,
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [ChatChoice<'a>; 1],
    usage: Usage,
    prompt_logprobs: Option<()>,
}

#[derive(Serialize)]
struct ChatChoice<'a> {
    index: u32,
    message: ChatReply<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
    stop_reason: Option<()>,
}

#[derive(Serialize)]
struct ChatReply<'a> {
    role: &'static str,
    content: &'a str,
    tool_calls: [(); 0],
}

impl ChatEncoder {
    fn chunk<'a>(
        &'a self,
        choices: &'a [ChatChunkChoice<'a>],
        usage: Option<Usage>,
    ) -> ChatChunk<'a> {
        ChatChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices,
            usage,
        }
    }
}

impl Encoder for ChatEncoder {
    fn token(&mut self, out: &mut Vec<u8>, token: &Token, finish: Option<Finish>) {
        if !self.stream {
            self.text.push_str(token.text);
            return;
        }
        if token.index == 0 {
            let role = [ChatChunkChoice {
                index: 0,
                delta: Delta {
                    role: Some("assistant"),
                    content: "",
                },
                logprobs: None,
                finish_reason: None,
                stop_reason: None,
            }];
            event(out, &self.chunk(&role, None));
        }
        let content = [ChatChunkChoice {
            index: 0,
            delta: Delta {
                role: None,
                content: token.text,
            },
            logprobs: None,
            finish_reason: finish.map(finish_reason),
            stop_reason: finish.map(|_| None),
        }];
        event(out, &self.chunk(&content, None));
    }

    fn end(&mut self, out: &mut Vec<u8>, end: &End) {
        if self.stream {
            if self.include_usage {
                event(out, &self.chunk(&[], Some(Usage::of(end))));
            }
            out.extend_from_slice(DONE);
            return;
        }
        write_json(
            out,
            &ChatCompletion {
                id: &self.id,
                object: "chat.completion",
                created: self.created,
                model: &self.model,
                choices: [ChatChoice {
                    index: 0,
                    message: ChatReply {
                        role: "assistant",
                        content: &self.text,
                        tool_calls: [],
                    },
                    logprobs: None,
                    finish_reason: finish_reason(end.finish),
                    stop_reason: None,
                }],
                usage: Usage::of(end),
                prompt_logprobs: None,
            },
        );
    }

    fn malformed(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: {\"id\":\"");
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(
            b"\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\n\n",
        );
    }

    fn unknown_event(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(UNKNOWN_EVENT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_forms() {
        let words = |v: Value| completion_prompt(&v).map(|(n, _)| n);
        assert_eq!(words(Value::from("a b  c")).ok(), Some(3));
        assert_eq!(words(serde_json::json!([1, 2, 3, 4])).ok(), Some(4));
        assert_eq!(words(serde_json::json!(["x y"])).ok(), Some(2));
        assert!(words(serde_json::json!(["x", "y"])).is_err());
        assert!(words(serde_json::json!(7)).is_err());
        assert!(words(serde_json::json!([])).is_err());
    }

    #[test]
    fn chat_content_forms() {
        assert_eq!(content_words(&Value::from("one two")), 2);
        assert_eq!(
            content_words(
                &serde_json::json!([{"type":"text","text":"a b c"},{"type":"image_url"}])
            ),
            3
        );
        assert_eq!(content_words(&Value::Null), 0);
    }
}
