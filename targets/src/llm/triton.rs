//! Triton's generate extension as the TensorRT-LLM `ensemble` model answers it:
//! `/v2/models/{model}[/versions/{version}]/generate` and `.../generate_stream`.
//!
//! Called by the router (also for a `/generate` body with `text_input`). Triton passes extra
//! request fields to the model as inputs, either top-level or under `parameters`, and accepts
//! scalars wrapped in one-element arrays; both forms are read. `beam_width`, `bad_words`,
//! `stop_words`, `temperature`, `top_p` are accepted and ignored.

use serde::Serialize;
use serde_json::{Map, Value};

use super::engine::{Encoder, End, Finish, Job, Token, count_words, sum_logprobs};
use super::server::{ApiJob, Reject, RequestCtx, SSE_UTF8, write_json};

/// The model, version and framing a Triton URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    /// Model name; empty for a Triton body sent to plain `/generate` (the configured name is
    /// reported then).
    pub model: String,
    pub version: String,
    /// `generate_stream` rather than `generate`.
    pub stream: bool,
}

impl Path {
    /// Read `/v2/models/{model}[/versions/{version}]/generate[_stream]`.
    pub(crate) fn from_url(path: &str) -> Option<Self> {
        let rest = path.strip_prefix("/v2/models/")?;
        let (rest, stream) = if let Some(rest) = rest.strip_suffix("/generate_stream") {
            (rest, true)
        } else {
            (rest.strip_suffix("/generate")?, false)
        };
        let (model, version) = rest.split_once("/versions/").unwrap_or((rest, "1"));
        let valid = |part: &str| !part.is_empty() && !part.contains('/');
        (valid(model) && valid(version)).then(|| Self {
            model: model.to_owned(),
            version: version.to_owned(),
            stream,
        })
    }
}

/// Parse a generate request sent to `path`.
pub(crate) fn parse(ctx: &mut RequestCtx<'_>, body: &[u8], path: &Path) -> Result<ApiJob, Reject> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| Reject::bad(format!("failed to parse the request JSON buffer: {err}")))?;
    let Some(request) = value.as_object() else {
        return Err(Reject::bad("the request body must be a JSON object"));
    };
    let text_input = field(request, "text_input")
        .and_then(Value::as_str)
        .ok_or_else(|| Reject::bad("input 'text_input' is required and must be a string"))?;
    let max_tokens = field(request, "max_tokens")
        .ok_or_else(|| Reject::bad("input 'max_tokens' is required"))?
        .as_u64()
        .filter(|&n| n > 0)
        .ok_or_else(|| Reject::bad("input 'max_tokens' must be a positive integer"))?;
    let prompt_tokens = count_words(text_input);
    let context = u64::from(ctx.shared.config.max_model_len);
    if prompt_tokens + max_tokens > context {
        return Err(Reject::bad(format!(
            "input length {prompt_tokens} plus max_tokens {max_tokens} exceeds the maximum \
             sequence length {context}"
        )));
    }
    let exclude_input = field(request, "exclude_input_in_output")
        .and_then(Value::as_bool)
        .unwrap_or(ctx.shared.config.triton_exclude_input);
    let model_name = if path.model.is_empty() {
        ctx.shared.config.model.clone()
    } else {
        path.model.clone()
    };
    let encoder = TritonEncoder {
        model_name,
        model_version: path.version.clone(),
        stream: path.stream,
        text: if exclude_input {
            String::new()
        } else {
            text_input.to_owned()
        },
        logprobs: Vec::new(),
    };
    let job = Job {
        prompt_tokens,
        // Bounded by the context length, itself a u32.
        max_tokens: u32::try_from(max_tokens).unwrap_or(u32::MAX),
        min_tokens: 0,
        ignore_eos: false,
        stream: path.stream,
        encoder: Box::new(encoder),
    };
    Ok(ApiJob::new(job, SSE_UTF8))
}

/// A request input, top-level or under `parameters`, unwrapping a one-element array.
fn field<'a>(request: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let value = request.get(name).or_else(|| {
        request
            .get("parameters")
            .and_then(Value::as_object)
            .and_then(|parameters| parameters.get(name))
    })?;
    match value {
        Value::Array(items) if items.len() == 1 => items.first(),
        other => Some(other),
    }
}

/// The ensemble's output object (keys in Triton's order):
/// `{"context_logits":0.0,"cum_log_probs":0.0,"generation_logits":0.0,"model_name",
/// "model_version","output_log_probs":[...],"sequence_end":false,"sequence_id":0,
/// "sequence_start":false,"text_output"}`. Streamed as `data: {object}\n\n`, one per token,
/// `text_output` being that token; no end marker.
struct TritonEncoder {
    model_name: String,
    model_version: String,
    stream: bool,
    /// Output text (after the prompt unless excluded), for the whole answer.
    text: String,
    logprobs: Vec<f32>,
}

#[derive(Serialize)]
struct Output<'a> {
    context_logits: f32,
    cum_log_probs: f64,
    generation_logits: f32,
    model_name: &'a str,
    model_version: &'a str,
    output_log_probs: &'a [f32],
    sequence_end: bool,
    sequence_id: u64,
    sequence_start: bool,
    text_output: &'a str,
}

impl TritonEncoder {
    fn output<'a>(&'a self, logprobs: &'a [f32], text: &'a str) -> Output<'a> {
        Output {
            context_logits: 0.0,
            cum_log_probs: sum_logprobs(logprobs.iter().copied()),
            generation_logits: 0.0,
            model_name: &self.model_name,
            model_version: &self.model_version,
            output_log_probs: logprobs,
            sequence_end: false,
            sequence_id: 0,
            sequence_start: false,
            text_output: text,
        }
    }
}

impl Encoder for TritonEncoder {
    fn token(&mut self, out: &mut Vec<u8>, token: &Token, _finish: Option<Finish>) {
        if self.stream {
            out.extend_from_slice(b"data: ");
            write_json(out, &self.output(&[token.logprob], token.text));
            out.extend_from_slice(b"\n\n");
        } else {
            self.text.push_str(token.text);
            self.logprobs.push(token.logprob);
        }
    }

    fn end(&mut self, out: &mut Vec<u8>, _end: &End) {
        if !self.stream {
            write_json(out, &self.output(&self.logprobs, &self.text));
        }
    }

    fn malformed(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: {\"context_logits\":0.0,\"text_output\":\n\n");
    }

    fn unknown_event(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"event: stampede.unknown\ndata: {}\n\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let path = |model: &str, version: &str, stream| Path {
            model: model.into(),
            version: version.into(),
            stream,
        };
        assert_eq!(
            Path::from_url("/v2/models/ensemble/generate"),
            Some(path("ensemble", "1", false))
        );
        assert_eq!(
            Path::from_url("/v2/models/m/versions/3/generate_stream"),
            Some(path("m", "3", true))
        );
        assert_eq!(Path::from_url("/v2/models//generate"), None);
        assert_eq!(Path::from_url("/v2/models/a/b/generate"), None);
        assert_eq!(Path::from_url("/v2/models/m/versions//generate"), None);
        assert_eq!(Path::from_url("/v2/models/m/infer"), None);
    }
}
