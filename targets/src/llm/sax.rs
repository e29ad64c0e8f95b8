//! The SAX (Saxml) HTTP front end's `POST /generate`, as in ai-on-gke's SAX HTTP server.
//!
//! Called by the router once a `/generate` body showed a `model` field. The real server reads
//! `model`, `query` and `extra_inputs` (`per_example_max_decode_steps`, default 128) and answers
//! `json.dumps(lm.Generate(query), indent=4)`: a list of `[text, score]` pairs. ai-on-gke's Locust
//! benchmark sends `prompt` and `max_tokens` instead (which the real server would refuse), so both
//! are accepted; `max_tokens` wins over `per_example_max_decode_steps`. There is no streaming.

use serde::Deserialize;
use serde::Serialize;
use serde_json::ser::{PrettyFormatter, Serializer};

use super::engine::{Encoder, End, Finish, Job, Token, count_words, sum_logprobs};
use super::server::{ApiJob, JSON, Reject, RequestCtx};

/// The SAX HTTP server's default `per_example_max_decode_steps`.
const DEFAULT_DECODE_STEPS: u32 = 128;

#[derive(Deserialize)]
struct GenerateRequest {
    /// Required, as by the real server; which model answers does not matter here.
    #[serde(rename = "model")]
    _model: String,
    query: Option<String>,
    prompt: Option<String>,
    max_tokens: Option<u32>,
    extra_inputs: Option<ExtraInputs>,
}

#[derive(Deserialize)]
struct ExtraInputs {
    per_example_max_decode_steps: Option<u32>,
}

pub(crate) fn parse(ctx: &mut RequestCtx<'_>, body: &[u8]) -> Result<ApiJob, Reject> {
    let request: GenerateRequest = serde_json::from_slice(body)
        .map_err(|err| Reject::bad(format!("invalid request body: {err}")))?;
    let query = request
        .query
        .or(request.prompt)
        .ok_or_else(|| Reject::bad("field required: query"))?;
    let max_tokens = request
        .max_tokens
        .or_else(|| {
            request
                .extra_inputs
                .and_then(|e| e.per_example_max_decode_steps)
        })
        .unwrap_or(DEFAULT_DECODE_STEPS);
    if max_tokens == 0 {
        return Err(Reject::bad("max decode steps must be positive"));
    }
    let prompt_tokens = count_words(&query);
    let context = u64::from(ctx.shared.config.max_model_len);
    if prompt_tokens + u64::from(max_tokens) > context {
        return Err(Reject::bad(format!(
            "query ({prompt_tokens} tokens) plus {max_tokens} decode steps exceeds {context}"
        )));
    }
    Ok(ApiJob {
        job: Job {
            prompt_tokens,
            max_tokens,
            min_tokens: 0,
            ignore_eos: false,
            stream: false,
            encoder: Box::new(SaxEncoder {
                text: String::new(),
                logprobs: Vec::new(),
            }),
        },
        content_type: Some(JSON),
    })
}

/// `[[completion, score]]`, indented by four spaces like Python's `json.dumps(indent=4)`.
struct SaxEncoder {
    text: String,
    /// Token log-probabilities; their sum is SAX's score.
    logprobs: Vec<f32>,
}

impl Encoder for SaxEncoder {
    fn token(&mut self, _out: &mut Vec<u8>, token: &Token, _finish: Option<Finish>) {
        self.text.push_str(token.text);
        self.logprobs.push(token.logprob);
    }

    fn end(&mut self, out: &mut Vec<u8>, _end: &End) {
        #[derive(Serialize)]
        struct Pair<'a>(&'a str, f64);
        let mut serializer =
            Serializer::with_formatter(&mut *out, PrettyFormatter::with_indent(b"    "));
        // Serializing a string and a finite float into a Vec cannot fail.
        let score = sum_logprobs(self.logprobs.iter().copied());
        let _ = [Pair(&self.text, score)].serialize(&mut serializer);
    }

    fn malformed(&mut self, _out: &mut Vec<u8>) {}

    fn unknown_event(&mut self, _out: &mut Vec<u8>) {}
}
