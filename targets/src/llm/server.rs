//! The HTTP side of the LLM target (HTTP/1.1, or HTTP/2 over TLS or h2c): accept loop, routing, request bodies, error shapes, and the
//! response body that streams a [`Generation`].
//!
//! Called by [`super::serve`]. Each API module turns a body into a [`Job`]; this module decides
//! error injection and faults, starts the generation and wraps it in a response. It holds no
//! timing logic (that is `engine`) and no API field names beyond the route table.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::ensure;
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use rand::Rng;
use rand::rngs::SmallRng;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use stampede_kstamp::stamped::{Arrival, StampedStream};

use crate::accept::HyperServer;

use super::engine::{Engine, FaultClose, Generation, Job, unix_now};
use super::stats::LlmTargetStats;
use super::{Fault, LlmTargetConfig, openai, sax, tgi, triton, vllm};

/// Largest request body read; bigger ones get `413`.
const MAX_BODY: usize = 32 * 1024 * 1024;

pub(crate) const JSON: &str = "application/json";
pub(crate) const SSE_UTF8: &str = "text/event-stream; charset=utf-8";
pub(crate) const SSE: &str = "text/event-stream";

/// Everything a request needs, built once from the config.
pub(crate) struct Shared {
    pub(crate) config: LlmTargetConfig,
    pub(crate) engine: Arc<Engine>,
}

impl Shared {
    pub(crate) fn from_config(
        config: LlmTargetConfig,
        stats: Arc<LlmTargetStats>,
    ) -> anyhow::Result<Self> {
        ensure!(
            (0.0..=1.0).contains(&config.error_rate),
            "error_rate must be within 0..=1, got {}",
            config.error_rate
        );
        ensure!(
            (0.0..=1.0).contains(&config.fault_rate),
            "fault_rate must be within 0..=1, got {}",
            config.fault_rate
        );
        ensure!(
            config.fault_rate == 0.0 || !config.faults.is_empty(),
            "fault_rate {} needs at least one fault",
            config.fault_rate
        );
        ensure!(!config.model.trim().is_empty(), "model name is empty");
        ensure!(config.max_model_len > 0, "max_model_len must be positive");
        ensure!(
            config.max_batch <= tokio::sync::Semaphore::MAX_PERMITS,
            "max_batch {} is too large",
            config.max_batch
        );
        ensure!(
            config.batch_slope.is_finite() && config.batch_slope >= 0.0,
            "batch_slope must be a non-negative number, got {}",
            config.batch_slope
        );
        let engine = Arc::new(Engine::new(&config, stats));
        Ok(Self { config, engine })
    }

    fn stats(&self) -> &LlmTargetStats {
        &self.engine.stats
    }
}

/// Accept connections until `shutdown`, then drain them within the grace period, in the
/// config's transport.
pub(crate) async fn run(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let transport = shared.config.transport.clone();
    let server = HyperServer {
        name: "llm target",
        transport: &transport,
        shutdown: &shutdown,
    };
    crate::accept::serve_hyper(listener, server, |stream: TcpStream| {
        // With precise timing, answers are timed from the request's arrival at the socket
        // (kernel receive timestamps), so a busy server core does not shift its own clock. TLS
        // sits on top of the stamped stream, so it keeps working there (see `precise_timing`).
        let (io, arrival) = StampedStream::new(stream, shared.config.precise_timing);
        let shared = Arc::clone(&shared);
        let service = service_fn(move |request| {
            let shared = Arc::clone(&shared);
            let arrival = arrival.clone();
            async move { Ok::<_, Infallible>(handle(&shared, request, &arrival).await) }
        });
        (io, service)
    })
    .await;
}

/// Which API a generation request speaks, as decided by the route (and for `/generate`, the
/// body).
#[derive(Debug, Clone)]
pub(crate) enum Api {
    Completions,
    Chat,
    /// vLLM's demo `api_server` `/generate`.
    Vllm,
    /// TGI `/generate` (`stream: false`), `/generate_stream` or compat `/`.
    Tgi(tgi::Route),
    /// Triton generate extension, with the model and version from the path.
    Triton(triton::Path),
    Sax,
}

/// A request the API layer refused, with the status its real server would use.
#[derive(Debug)]
pub(crate) struct Reject {
    pub status: StatusCode,
    pub message: String,
}

impl Reject {
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

/// Per-request facts every API encoder needs.
pub(crate) struct RequestCtx<'a> {
    /// 32 hex digits unique to the request (seeded), for `id` fields.
    pub tag: String,
    /// Unix seconds, for `created`.
    pub created: u64,
    pub shared: &'a Shared,
    pub rng: &'a mut SmallRng,
}

/// The error shapes of the real servers.
#[derive(Debug, Clone, Copy)]
enum ErrorStyle {
    /// `{"error":{"message","type","param","code"}}`.
    OpenAi,
    /// `{"error","error_type"}`; also what an undecidable `/generate` gets.
    Tgi,
    /// `{"error"}`.
    Triton,
    /// FastAPI's `{"detail"}`.
    Detail,
    /// Starlette's plain-text `Internal Server Error`.
    Plain,
}

impl Api {
    fn error_style(&self) -> ErrorStyle {
        match self {
            Api::Completions | Api::Chat => ErrorStyle::OpenAi,
            Api::Tgi(_) => ErrorStyle::Tgi,
            Api::Triton(_) => ErrorStyle::Triton,
            Api::Sax => ErrorStyle::Detail,
            Api::Vllm => ErrorStyle::Tgi,
        }
    }

    /// The style of an injected `500`: vLLM's demo server has no error JSON at all.
    fn injected_style(&self) -> ErrorStyle {
        match self {
            Api::Vllm => ErrorStyle::Plain,
            other => other.error_style(),
        }
    }

    fn parse(&self, ctx: &mut RequestCtx<'_>, body: &[u8]) -> Result<ApiJob, Reject> {
        match self {
            Api::Completions => openai::completions(ctx, body),
            Api::Chat => openai::chat(ctx, body),
            Api::Vllm => vllm::parse(ctx, body),
            Api::Tgi(route) => tgi::parse(ctx, body, *route),
            Api::Triton(path) => triton::parse(ctx, body, path),
            Api::Sax => sax::parse(ctx, body),
        }
    }
}

/// Route, read, generate.
async fn handle(
    shared: &Shared,
    request: Request<Incoming>,
    arrival: &Arrival,
) -> Response<LlmBody> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let method = &parts.method;

    if let Some(endpoint) = path.strip_prefix("/__stampede/") {
        let _ = read_body(body).await;
        return control(shared, method, endpoint);
    }
    // `None`: `/generate`, decided by the body once read.
    let known = match route(method, path) {
        Route::Api(api) => Some(api),
        Route::Generate => None,
        Route::Static(response) => return response(shared),
        Route::WrongMethod(allow) => {
            let mut answer = detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            answer
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
            return answer;
        }
        Route::NotFound => return detail(StatusCode::NOT_FOUND, "Not Found"),
    };

    shared.stats().request();
    let body = match read_body(body).await {
        Ok(body) => body,
        Err(reject) => {
            shared.stats().bad_request();
            let style = known.as_ref().map_or(ErrorStyle::Tgi, Api::error_style);
            return error(style, reject.status, &reject.message);
        }
    };
    let now = Instant::now();
    // When the request's last bytes reached the socket, if the connection stamps arrivals.
    let body_read = arrival
        .last()
        .map(Instant::from_std)
        .filter(|&at| at <= now)
        .unwrap_or(now);

    let api = match known {
        Some(api) => api,
        None => match detect_generate(&body) {
            Ok(api) => api,
            Err(reject) => {
                shared.stats().bad_request();
                return error(ErrorStyle::Tgi, reject.status, &reject.message);
            }
        },
    };

    let mut rng = shared.engine.next_rng();
    let mut ctx = RequestCtx {
        tag: format!("{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>()),
        created: unix_now(),
        shared,
        rng: &mut rng,
    };
    let ApiJob { job, content_type } = match api.parse(&mut ctx, &body) {
        Ok(job) => job,
        Err(reject) => {
            shared.stats().bad_request();
            return error(api.error_style(), reject.status, &reject.message);
        }
    };

    let config = &shared.config;
    if config.error_rate > 0.0 && rng.random_bool(config.error_rate) {
        shared.stats().injected_error();
        return error(
            api.injected_style(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected error",
        );
    }
    let stream = job.stream;
    let fault = pick_fault(config, &mut rng, |fault| {
        stream || fault != Fault::UnknownEvent
    });
    let mut generation = shared.engine.start(job, rng, body_read, fault);
    if stream {
        return response(
            StatusCode::OK,
            content_type,
            LlmBody::Stream(Box::new(generation)),
        );
    }

    let answer = Bytes::from(generation.run_to_end().await);
    let half = answer.slice(..answer.len() / 2);
    let body = match fault {
        Some(Fault::CloseMidStream) => LlmBody::Cut {
            head: Some(half),
            announced: answer.len() as u64,
        },
        Some(Fault::MalformedJson) => LlmBody::full(half),
        _ => LlmBody::full(answer),
    };
    response(StatusCode::OK, content_type, body)
}

/// A parsed API request: the engine's job plus how to label the answer.
pub(crate) struct ApiJob {
    pub job: Job,
    /// Content type of the answer; `None` sends none (vLLM's demo streaming response).
    pub content_type: Option<&'static str>,
}

impl ApiJob {
    /// A job answered as JSON, or as `stream_type` when streaming.
    pub(crate) fn new(job: Job, stream_type: &'static str) -> Self {
        let content_type = Some(if job.stream { stream_type } else { JSON });
        Self { job, content_type }
    }
}

/// Choose whether this answer carries a fault, among the configured faults the answer can
/// show (`applies`): non-streamed answers have no events, so `unknown_event` does not apply to
/// them; gRPC has neither broken JSON nor unknown events. A fault that could not show is never
/// drawn, so the record counts as failures only what a client sees fail.
pub(crate) fn pick_fault(
    config: &LlmTargetConfig,
    rng: &mut SmallRng,
    applies: impl Fn(Fault) -> bool,
) -> Option<Fault> {
    if config.fault_rate == 0.0 || !rng.random_bool(config.fault_rate) {
        return None;
    }
    let applicable: Vec<Fault> = config
        .faults
        .iter()
        .copied()
        .filter(|fault| applies(*fault))
        .collect();
    if applicable.is_empty() {
        return None;
    }
    Some(applicable[rng.random_range(0..applicable.len())])
}

/// Decide which server a `/generate` body is meant for (see the module docs).
fn detect_generate(body: &[u8]) -> Result<Api, Reject> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|err| Reject::bad(format!("malformed JSON body: {err}")))?;
    let Some(object) = value.as_object() else {
        return Err(Reject::bad("the request body must be a JSON object"));
    };
    if object.contains_key("inputs") {
        Ok(Api::Tgi(tgi::Route::Generate))
    } else if object.contains_key("text_input") {
        Ok(Api::Triton(triton::Path {
            model: String::new(),
            version: "1".into(),
            stream: false,
        }))
    } else if object.contains_key("model") {
        Ok(Api::Sax)
    } else if object.contains_key("prompt") {
        Ok(Api::Vllm)
    } else {
        Err(Reject::bad(
            "cannot tell the API from the body: expected `inputs` (TGI), `text_input` (Triton), \
             `model` with `query` or `prompt` (SAX) or `prompt` (vLLM)",
        ))
    }
}

/// What a path and method lead to.
enum Route {
    Api(Api),
    /// `POST /generate`, whose API the body decides.
    Generate,
    /// A fixed answer (health, model list).
    Static(fn(&Shared) -> Response<LlmBody>),
    /// The path exists with another method; the value is the `Allow` header.
    WrongMethod(&'static str),
    NotFound,
}

fn route(method: &Method, path: &str) -> Route {
    let post = |route: Route| {
        if method == Method::POST {
            route
        } else {
            Route::WrongMethod("POST")
        }
    };
    let get = |answer: fn(&Shared) -> Response<LlmBody>| {
        if method == Method::GET || method == Method::HEAD {
            Route::Static(answer)
        } else {
            Route::WrongMethod("GET")
        }
    };
    match path {
        "/v1/completions" => post(Route::Api(Api::Completions)),
        "/v1/chat/completions" => post(Route::Api(Api::Chat)),
        "/v1/models" => get(openai::models),
        "/generate" => post(Route::Generate),
        "/generate_stream" => post(Route::Api(Api::Tgi(tgi::Route::GenerateStream))),
        "/" if method == Method::POST => Route::Api(Api::Tgi(tgi::Route::Compat)),
        "/health" | "/v2/health/ready" | "/v2/health/live" => {
            get(|_| response(StatusCode::OK, None, LlmBody::full(Bytes::new())))
        }
        _ => match triton::Path::from_url(path) {
            Some(path) => post(Route::Api(Api::Triton(path))),
            None => Route::NotFound,
        },
    }
}

/// Answer a `/__stampede/{endpoint}` request; never counted.
fn control(shared: &Shared, method: &Method, endpoint: &str) -> Response<LlmBody> {
    match (method, endpoint) {
        (&Method::GET, "stats") => json_response(StatusCode::OK, &shared.stats().snapshot()),
        (&Method::POST, "stats/reset" | "reset") => {
            shared.stats().reset();
            response(StatusCode::NO_CONTENT, None, LlmBody::full(Bytes::new()))
        }
        (_, "stats" | "stats/reset" | "reset") => {
            let allow = if endpoint == "stats" { "GET" } else { "POST" };
            let mut answer = detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            answer
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
            answer
        }
        _ => detail(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// Read a whole request body, refusing more than [`MAX_BODY`].
async fn read_body(body: Incoming) -> Result<Bytes, Reject> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(Reject::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {MAX_BODY} bytes"),
        )),
        Err(err) => Err(Reject::bad(format!("unreadable request body: {err}"))),
    }
}

/// An error answer in `style`.
fn error(style: ErrorStyle, status: StatusCode, message: &str) -> Response<LlmBody> {
    #[derive(Serialize)]
    struct OpenAiError<'a> {
        error: OpenAiErrorInfo<'a>,
    }
    #[derive(Serialize)]
    struct OpenAiErrorInfo<'a> {
        message: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        param: Option<()>,
        code: u16,
    }
    #[derive(Serialize)]
    struct TgiError<'a> {
        error: &'a str,
        error_type: &'a str,
    }
    #[derive(Serialize)]
    struct TritonError<'a> {
        error: &'a str,
    }
    match style {
        ErrorStyle::OpenAi => {
            let kind = match status {
                StatusCode::NOT_FOUND => "NotFoundError",
                StatusCode::INTERNAL_SERVER_ERROR => "InternalServerError",
                _ => "BadRequestError",
            };
            json_response(
                status,
                &OpenAiError {
                    error: OpenAiErrorInfo {
                        message,
                        kind,
                        param: None,
                        code: status.as_u16(),
                    },
                },
            )
        }
        ErrorStyle::Tgi => {
            let error_type = if status.is_server_error() {
                "generation"
            } else {
                "validation"
            };
            json_response(
                status,
                &TgiError {
                    error: message,
                    error_type,
                },
            )
        }
        ErrorStyle::Triton => json_response(status, &TritonError { error: message }),
        ErrorStyle::Detail => detail(status, message),
        ErrorStyle::Plain => response(
            status,
            Some("text/plain; charset=utf-8"),
            LlmBody::full(Bytes::from_static(b"Internal Server Error")),
        ),
    }
}

/// FastAPI's `{"detail": ...}`.
fn detail(status: StatusCode, message: &str) -> Response<LlmBody> {
    #[derive(Serialize)]
    struct Detail<'a> {
        detail: &'a str,
    }
    json_response(status, &Detail { detail: message })
}

/// Append `value` as JSON.
pub(crate) fn write_json<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    // Serializing our own structs (string keys, no I/O) into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

pub(crate) fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<LlmBody> {
    match serde_json::to_vec(value) {
        Ok(json) => response(status, Some(JSON), LlmBody::full(Bytes::from(json))),
        // Our own plain structs always serialize; answer something valid regardless.
        Err(_) => response(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(JSON),
            LlmBody::full(Bytes::from_static(b"{\"error\":\"encoding failed\"}")),
        ),
    }
}

pub(crate) fn response(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: LlmBody,
) -> Response<LlmBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    response
}

/// Response body: a whole answer, a live generation, or a deliberately cut answer.
pub(crate) enum LlmBody {
    /// One frame, sent with `content-length`.
    Full(Option<Bytes>),
    /// Token frames as the generation emits them, sent chunked. Dropping it (client gone)
    /// cancels the generation.
    Stream(Box<Generation>),
    /// `head`, then an error that makes hyper drop the connection before `announced` bytes were
    /// sent (the non-streaming `close_mid_stream` fault).
    Cut { head: Option<Bytes>, announced: u64 },
    /// About to fail: yields once first, so hyper flushes what was already written (the head
    /// and the frames before the cut) instead of discarding it with the connection.
    Closing { yielded: bool },
}

impl LlmBody {
    pub(crate) fn full(bytes: Bytes) -> Self {
        LlmBody::Full(Some(bytes))
    }
}

impl Body for LlmBody {
    type Data = Bytes;
    type Error = FaultClose;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, FaultClose>>> {
        let this = self.get_mut();
        match this {
            LlmBody::Full(bytes) => Poll::Ready(
                bytes
                    .take()
                    .filter(|bytes| !bytes.is_empty())
                    .map(|bytes| Ok(Frame::data(bytes))),
            ),
            LlmBody::Stream(generation) => match generation.poll_step(cx) {
                Poll::Ready(Some(Err(FaultClose))) => {
                    // Dropping the generation here releases its slot and gauges right away.
                    *this = LlmBody::Closing { yielded: false };
                    Pin::new(this).poll_frame(cx)
                }
                other => other.map(|step| {
                    step.map(|frame| frame.map(|bytes| Frame::data(Bytes::from(bytes))))
                }),
            },
            LlmBody::Cut { head, .. } => match head.take() {
                Some(bytes) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
                None => {
                    *this = LlmBody::Closing { yielded: false };
                    Pin::new(this).poll_frame(cx)
                }
            },
            LlmBody::Closing { yielded } => {
                if *yielded {
                    Poll::Ready(Some(Err(FaultClose)))
                } else {
                    *yielded = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, LlmBody::Full(None))
            || matches!(self, LlmBody::Full(Some(bytes)) if bytes.is_empty())
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            LlmBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |bytes| bytes.len() as u64))
            }
            LlmBody::Stream(_) | LlmBody::Closing { .. } => SizeHint::default(),
            LlmBody::Cut { announced, .. } => SizeHint::with_exact(*announced),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_bodies_pick_their_server() {
        let api = |body: &str| detect_generate(body.as_bytes());
        assert!(matches!(api(r#"{"inputs":"hi"}"#), Ok(Api::Tgi(_))));
        assert!(matches!(
            api(r#"{"text_input":"hi","max_tokens":3}"#),
            Ok(Api::Triton(_))
        ));
        assert!(matches!(
            api(r#"{"model":"/sax/x","query":"hi"}"#),
            Ok(Api::Sax)
        ));
        assert!(matches!(
            api(r#"{"model":"/sax/x","prompt":"hi"}"#),
            Ok(Api::Sax)
        ));
        assert!(matches!(
            api(r#"{"prompt":"hi","max_tokens":3}"#),
            Ok(Api::Vllm)
        ));
        assert!(api(r#"{"text":"hi"}"#).is_err());
        assert!(api("[1]").is_err());
        assert!(api("{nope").is_err());
    }
}
