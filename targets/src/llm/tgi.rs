//! Hugging Face Text Generation Inference: `/generate`, `/generate_stream` and the compat `/`.
//!
//! Called by the router (for `/generate`, once the body showed an `inputs` field). Field names
//! follow TGI's router (`GenerateRequest`, `GenerateParameters`, `GenerateResponse`, `Details`,
//! `StreamResponse`, `StreamDetails`); sampling parameters are accepted and ignored, and
//! `best_of`, `top_n_tokens` and grammars are not simulated.

use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::error::Category;

use super::engine::{Encoder, End, Finish, Job, Token, count_words};
use super::server::{ApiJob, Reject, RequestCtx, SSE, write_json};
use rand::Rng;

/// TGI's default `max_new_tokens` (router `default_max_new_tokens`).
const DEFAULT_MAX_NEW_TOKENS: u32 = 100;

/// Which TGI route was called; they differ only in framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `POST /generate`: one JSON object.
    Generate,
    /// `POST /generate_stream`: server-sent events.
    GenerateStream,
    /// `POST /`: streams when the body says `"stream": true`, else a one-element array.
    Compat,
}

#[derive(Deserialize)]
struct GenerateRequest {
    inputs: String,
    /// Absent parameters mean TGI's `default_parameters()`, which samples.
    #[serde(default = "default_parameters")]
    parameters: Parameters,
    /// Only read on the compat route.
    #[serde(default)]
    stream: bool,
}

#[derive(Deserialize)]
struct Parameters {
    #[serde(default = "default_max_new_tokens")]
    max_new_tokens: Option<u32>,
    #[serde(default)]
    details: bool,
    #[serde(default)]
    decoder_input_details: bool,
    seed: Option<u64>,
    #[serde(default)]
    do_sample: bool,
    return_full_text: Option<bool>,
}

fn default_max_new_tokens() -> Option<u32> {
    Some(DEFAULT_MAX_NEW_TOKENS)
}

fn default_parameters() -> Parameters {
    Parameters {
        max_new_tokens: default_max_new_tokens(),
        details: false,
        decoder_input_details: false,
        seed: None,
        do_sample: true,
        return_full_text: None,
    }
}

/// Parse a TGI request for `route`.
pub(crate) fn parse(ctx: &mut RequestCtx<'_>, body: &[u8], route: Route) -> Result<ApiJob, Reject> {
    let request: GenerateRequest = serde_json::from_slice(body).map_err(|err| {
        // axum's `Json` answers 400 for broken JSON and 422 for JSON of the wrong shape.
        let status = match err.classify() {
            Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        Reject::new(
            status,
            format!("Failed to deserialize the JSON body: {err}"),
        )
    })?;
    let params = request.parameters;
    let invalid = |message: String| {
        Reject::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Input validation error: {message}"),
        )
    };
    let input_length = count_words(&request.inputs);
    if request.inputs.trim().is_empty() {
        return Err(invalid("`inputs` cannot be empty".into()));
    }
    let max_new_tokens = params.max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS);
    if max_new_tokens == 0 {
        return Err(invalid("`max_new_tokens` must be strictly positive".into()));
    }
    let max_total = u64::from(ctx.shared.config.max_model_len);
    if input_length + u64::from(max_new_tokens) > max_total {
        return Err(invalid(format!(
            "`inputs` tokens + `max_new_tokens` must be <= {max_total}. Given: {input_length} \
             `inputs` tokens and {max_new_tokens} `max_new_tokens`"
        )));
    }
    let stream = match route {
        Route::Generate => false,
        Route::GenerateStream => true,
        Route::Compat => request.stream,
    };
    if stream && params.decoder_input_details {
        // TGI refuses this too (`ValidationError::PrefillDetailsStream`), though as an error
        // event in a 200 stream rather than a 422.
        return Err(invalid(
            "`decoder_input_details` == true is not supported when streaming tokens".into(),
        ));
    }
    let seed = match params.seed {
        Some(seed) => Some(seed),
        None if params.do_sample => Some(ctx.rng.random()),
        None => None,
    };
    let prefix = if params.return_full_text == Some(true) {
        request.inputs.clone()
    } else {
        String::new()
    };
    let encoder = TgiEncoder {
        stream,
        compat_array: route == Route::Compat,
        // TGI answers details when either is asked (`generate_internal`); a stream only with
        // `details`.
        details: params.details || (!stream && params.decoder_input_details),
        prefill: params.decoder_input_details.then(|| request.inputs.clone()),
        seed,
        input_length,
        text: prefix,
        tokens: Vec::new(),
    };
    let job = Job {
        prompt_tokens: input_length,
        max_tokens: max_new_tokens,
        min_tokens: 0,
        ignore_eos: false,
        stream,
        encoder: Box::new(encoder),
    };
    Ok(ApiJob::new(job, SSE))
}

/// TGI answers.
///
/// Stream event (note: no space after `data:`, as axum writes it):
/// `data:{"index":i,"token":{"id","text","logprob","special":false},"generated_text":null,
/// "details":null}\n\n`, `index` from 1; the last event has `generated_text` and, only when
/// the request asked `details: true`, `"details":{"finish_reason","generated_tokens","seed",
/// "input_length"}` (else `"details":null`). There is no `[DONE]`.
/// Whole answer: `{"generated_text"}` plus, with `details` or `decoder_input_details`,
/// `"details":{"finish_reason","generated_tokens","seed","prefill":[...],"tokens":[...]}`;
/// `prefill` (one entry per input word) is empty unless `decoder_input_details` asked for it.
struct TgiEncoder {
    stream: bool,
    /// The compat route wraps a whole answer in a one-element array.
    compat_array: bool,
    details: bool,
    /// The prompt, when `decoder_input_details` asks for prefill tokens.
    prefill: Option<String>,
    seed: Option<u64>,
    input_length: u64,
    /// Generated text (after the prompt with `return_full_text`).
    text: String,
    /// Output tokens, kept only for a whole answer with details.
    tokens: Vec<Token>,
}

#[derive(Serialize)]
struct TokenOut<'a> {
    id: u32,
    text: &'a str,
    logprob: f32,
    special: bool,
}

impl From<&Token> for TokenOut<'_> {
    fn from(token: &Token) -> Self {
        Self {
            id: token.id,
            text: token.text,
            logprob: token.logprob,
            special: false,
        }
    }
}

#[derive(Serialize)]
struct StreamResponse<'a> {
    index: u32,
    token: TokenOut<'a>,
    generated_text: Option<&'a str>,
    details: Option<StreamDetails>,
}

#[derive(Serialize)]
struct StreamDetails {
    finish_reason: &'static str,
    generated_tokens: u32,
    seed: Option<u64>,
    input_length: u64,
}

#[derive(Serialize)]
struct GenerateResponse<'a> {
    generated_text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Details<'a>>,
}

#[derive(Serialize)]
struct Details<'a> {
    finish_reason: &'static str,
    generated_tokens: u32,
    seed: Option<u64>,
    prefill: Vec<PrefillToken<'a>>,
    tokens: Vec<TokenOut<'a>>,
}

#[derive(Serialize)]
struct PrefillToken<'a> {
    id: u32,
    text: &'a str,
    logprob: Option<f32>,
}

fn finish_reason(finish: Finish) -> &'static str {
    match finish {
        Finish::Length => "length",
        Finish::Stop => "eos_token",
    }
}

impl Encoder for TgiEncoder {
    fn token(&mut self, out: &mut Vec<u8>, token: &Token, finish: Option<Finish>) {
        self.text.push_str(token.text);
        if !self.stream {
            if self.details {
                self.tokens.push(*token);
            }
            return;
        }
        let done = finish.is_some();
        let details = finish.filter(|_| self.details).map(|finish| StreamDetails {
            finish_reason: finish_reason(finish),
            generated_tokens: token.index + 1,
            seed: self.seed,
            input_length: self.input_length,
        });
        out.extend_from_slice(b"data:");
        write_json(
            out,
            &StreamResponse {
                index: token.index + 1,
                token: token.into(),
                generated_text: done.then_some(self.text.as_str()),
                details,
            },
        );
        out.extend_from_slice(b"\n\n");
    }

    fn end(&mut self, out: &mut Vec<u8>, end: &End) {
        if self.stream {
            return;
        }
        let details = self.details.then(|| Details {
            finish_reason: finish_reason(end.finish),
            generated_tokens: end.completion_tokens,
            seed: self.seed,
            prefill: self
                .prefill
                .as_deref()
                .map(|prompt| {
                    prompt
                        .split_whitespace()
                        .enumerate()
                        .map(|(i, word)| PrefillToken {
                            id: word_id(word),
                            text: word,
                            logprob: (i > 0).then_some(-1.0),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            tokens: self.tokens.iter().map(TokenOut::from).collect(),
        });
        let answer = GenerateResponse {
            generated_text: &self.text,
            details,
        };
        if self.compat_array {
            write_json(out, &[answer]);
        } else {
            write_json(out, &answer);
        }
    }

    fn malformed(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data:{\"index\":0,\"token\":{\"id\":\n\n");
    }

    fn unknown_event(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"event:stampede.unknown\ndata:{}\n\n");
    }
}

/// A stable fake vocabulary id for a prompt word (FNV-1a).
fn word_id(word: &str) -> u32 {
    let hash = word.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    hash % 32_000
}
