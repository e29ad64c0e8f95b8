//! vLLM's demo `api_server` `POST /generate`, as ai-on-gke's Locust benchmark calls it.
//!
//! Called by the router once the body showed a `prompt` without `model`. The real server pops
//! `prompt` and `stream` and passes the rest to `SamplingParams`; here `max_tokens` (default 16,
//! as `SamplingParams`), `min_tokens`, `ignore_eos` and `n` (must be 1) are read and the rest
//! (`best_of`, `use_beam_search`, `temperature`, `top_p`, ...) is accepted and ignored.

use serde::{Deserialize, Serialize};

use super::engine::{Encoder, End, Finish, Job, Token, count_words};
use super::server::{ApiJob, JSON, Reject, RequestCtx, write_json};

/// `SamplingParams`' default `max_tokens`.
const DEFAULT_MAX_TOKENS: u32 = 16;

#[derive(Deserialize)]
struct GenerateRequest {
    prompt: String,
    #[serde(default)]
    stream: bool,
    max_tokens: Option<u32>,
    #[serde(default)]
    min_tokens: u32,
    #[serde(default)]
    ignore_eos: bool,
    n: Option<u32>,
}

pub(crate) fn parse(ctx: &mut RequestCtx<'_>, body: &[u8]) -> Result<ApiJob, Reject> {
    let request: GenerateRequest = serde_json::from_slice(body)
        .map_err(|err| Reject::bad(format!("invalid request body: {err}")))?;
    if request.n.is_some_and(|n| n != 1) {
        return Err(Reject::bad(
            "n other than 1 is not simulated by stampede target llm",
        ));
    }
    let max_tokens = request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if max_tokens == 0 {
        return Err(Reject::bad("max_tokens must be at least 1, got 0."));
    }
    let prompt_tokens = count_words(&request.prompt);
    let context = u64::from(ctx.shared.config.max_model_len);
    if prompt_tokens + u64::from(max_tokens) > context {
        return Err(Reject::bad(format!(
            "prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) exceeds the \
             maximum model length {context}"
        )));
    }
    let encoder = VllmEncoder {
        stream: request.stream,
        delimiter: ctx.shared.config.vllm_stream_delimiter.byte(),
        text: request.prompt,
    };
    Ok(ApiJob {
        job: Job {
            prompt_tokens,
            max_tokens,
            min_tokens: request.min_tokens,
            ignore_eos: request.ignore_eos,
            stream: request.stream,
            encoder: Box::new(encoder),
        },
        // The demo server's `StreamingResponse` names no media type.
        content_type: (!request.stream).then_some(JSON),
    })
}

/// `{"text": [prompt + completion]}`; streamed, the same object with the text so far after
/// every token, each followed by the configured delimiter (`\n` or `\0`), no end marker.
struct VllmEncoder {
    stream: bool,
    delimiter: u8,
    /// Prompt plus the tokens so far.
    text: String,
}

#[derive(Serialize)]
struct Answer<'a> {
    text: [&'a str; 1],
}

impl Encoder for VllmEncoder {
    fn token(&mut self, out: &mut Vec<u8>, token: &Token, _finish: Option<Finish>) {
        self.text.push_str(token.text);
        if self.stream {
            write_json(out, &Answer { text: [&self.text] });
            out.push(self.delimiter);
        }
    }

    fn end(&mut self, out: &mut Vec<u8>, _end: &End) {
        if !self.stream {
            write_json(out, &Answer { text: [&self.text] });
        }
    }

    fn malformed(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"text\": [\"");
        out.push(self.delimiter);
    }

    fn unknown_event(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"stampede\": \"unknown_event\"}");
        out.push(self.delimiter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_cumulative_text_with_delimiter() {
        let mut encoder = VllmEncoder {
            stream: true,
            delimiter: b'\0',
            text: "Hi there".into(),
        };
        let mut out = Vec::new();
        let token = Token {
            index: 0,
            id: 1,
            text: " the",
            logprob: 0.0,
        };
        encoder.token(&mut out, &token, None);
        encoder.token(&mut out, &Token { index: 1, ..token }, Some(Finish::Length));
        assert_eq!(
            out,
            b"{\"text\":[\"Hi there the\"]}\0{\"text\":[\"Hi there the the\"]}\0"
        );
    }
}
