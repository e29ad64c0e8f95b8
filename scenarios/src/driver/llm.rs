//! The `llm` driver: prompts to an inference server (OpenAI completions or chat, vLLM,
//! TGI, Triton TensorRT-LLM, SAX), with the answer's timing measured token by token.
//!
//! Each session holds one HTTP/1.1 keep-alive connection ([`super::h1`]). Per request: pick a
//! prompt, write the backend's JSON body, and read the answer as it arrives: each body slice
//! goes through the stream decoder ([`crate::llm::StreamDecoder`]) with its arrival time, so
//! TTFT and every inter-token gap are measured where the bytes land, not where a parser got
//! round to them. Times count from the request's scheduled time (no coordinated omission).
//!
//! Recorded per request (one request name, the backend's path): latency (E2E), and the extra
//! metrics `ttft`, `tpot`, `itl` (µs; one `itl` sample per gap between token chunks), and the
//! counters `input_tokens`, `output_tokens`, `good` (requests meeting every `[slo]` objective)
//! and `counted_by_<method>` (which rule counted the output tokens). A server error, a
//! malformed or unknown event, or a connection closed mid-answer is a failure of its kind.
//!
//! The driver opens no file: prompts and the tokenizer arrive in the scenario, read by the
//! master ([`crate::ScenarioConfig::resolve_files`]); a scenario that names a file without its
//! contents is refused.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::connections;
use super::grpc::{Connections, GrpcConnector, GrpcMarks, failure_under};
use super::h1::{H1Conn, H1Error, Head};
use super::h2::{H2Client, H2Pool, H2Response, Negotiation, Opened};
use super::transport::{ConnectionSlots, Endpoint};
use super::{Call, CallFuture, Driver, DriverError, RequestInfo, Session};
use stampede_grpc::jetstream::orchestrator_client::OrchestratorClient;
use stampede_kstamp::stamped::Arrival;

use crate::llm::report;
use crate::llm::{
    Backend, HfTokenizer, LlmRequest, Prompt, PromptSet, ResponseTally, Slo, StreamDecoder,
    StreamEvent, TokenCountMethod, TokenCounter,
};
use crate::model::{Common, HttpVersion};
use crate::recorder::{Failure, RecordStream, Recorder, io_kind};
use crate::spec::{MetricSpec, Specs};

mod file;
mod rows;

pub use file::{LlmFile, ResolvedPrompt};
pub use rows::{REQUESTS_HEADER, REQUESTS_STREAM, record_streams};
use rows::{RequestRow, unix_ms_of};

/// Request timeout when the scenario gives none: long answers take minutes.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The largest whole (non-streamed) answer read.
const MAX_ANSWER: usize = 64 << 20;

/// Extra histogram metrics, in the recorder's index order (after latency); the connection
/// metrics ([`super::transport::CONNECTION_METRICS`]) last.
pub const METRICS: &[MetricSpec] = &[
    report::TTFT,
    report::TPOT,
    report::ITL,
    report::PER_OUTPUT_TOKEN,
    report::E2E,
    connections::CONNECT,
    connections::TLS_HANDSHAKE,
];
const TTFT: usize = 1;
const TPOT: usize = 2;
const ITL: usize = 3;
/// E2E latency divided by the output tokens of each successful request (the per-output-token
/// latency of ig-wva's Performance Profile Generator, whose p90 over a run is its
/// `metrics_p90_per_output_token_latency_mean`).
const PER_TOKEN: usize = 4;
/// E2E latency of each successful request (from its scheduled time, like the request
/// latency, which also counts the failures).
const E2E: usize = 5;

/// Extra counters, in the recorder's index order.
pub const COUNTERS: &[MetricSpec] = &[
    report::INPUT_TOKENS,
    report::OUTPUT_TOKENS,
    report::GOOD,
    report::COUNTED_BY[0],
    report::COUNTED_BY[1],
    report::COUNTED_BY[2],
    report::COUNTED_BY[3],
    connections::CONNECTIONS_NEW,
    connections::CONNECTIONS_REUSED,
];
/// The figures of an `llm` run.
pub const SPECS: Specs = Specs {
    metrics: METRICS,
    counters: COUNTERS,
};
/// Where the connection metrics and counters sit (the last of each list).
const SLOTS: ConnectionSlots = ConnectionSlots::after(5, 7);
const INPUT: usize = 0;
const OUTPUT: usize = 1;
const GOOD: usize = 2;

fn counted_by(method: TokenCountMethod) -> usize {
    match method {
        TokenCountMethod::Usage => 3,
        TokenCountMethod::Tokenizer => 4,
        TokenCountMethod::Chunks => 5,
        TokenCountMethod::Words => 6,
    }
}

/// The `[llm]` settings turned into parts, shared by the master (to read prompts) and workers.
pub struct Settings {
    /// The API.
    pub backend: Backend,
    /// How output tokens are counted.
    pub counter: TokenCounter,
}

impl Settings {
    /// Check and load the settings (the tokenizer is parsed here, from the text the master
    /// read, else from its file); `Err((field, message))`.
    pub fn of(llm: &LlmFile) -> Result<Settings, (String, String)> {
        let backend: Backend = llm
            .backend
            .parse()
            .map_err(|e: crate::llm::UnknownBackend| ("llm.backend".to_string(), e.to_string()))?;
        let named = |e: crate::llm::TokenizerError| ("llm.tokenizer".to_string(), e.to_string());
        let tokenizer = match (&llm.tokenizer_json, &llm.tokenizer) {
            (Some(text), path) => {
                let path = path.as_deref().unwrap_or(Path::new("tokenizer.json"));
                Some(Arc::new(HfTokenizer::from_json(text, path).map_err(named)?))
            }
            (None, Some(path)) => Some(Arc::new(HfTokenizer::from_file(path).map_err(named)?)),
            (None, None) => None,
        };
        let method = llm.token_count.unwrap_or_default();
        let counter = TokenCounter::new(method, tokenizer)
            .map_err(|e| ("llm.token_count".to_string(), e.to_string()))?;
        Ok(Settings { backend, counter })
    }
}

/// The per-request timeout of an llm scenario: `[llm] timeout`, else [`DEFAULT_TIMEOUT`].
pub fn timeout(llm: Option<&LlmFile>) -> Duration {
    llm.and_then(|l| l.timeout).map_or(DEFAULT_TIMEOUT, |t| t.0)
}

/// Read the tokenizer and the prompts `[llm]` names into [`LlmFile::tokenizer_json`] and
/// [`LlmFile::resolved`], so workers on other machines need no files (and open none); nothing
/// when they are there already. `Err((field, message))`: the setting (`llm.prompts.path`), and
/// a message naming the file and its line or JSON path.
pub fn resolve_prompts(llm: &mut LlmFile) -> Result<(), (String, String)> {
    if let Some(path) = llm
        .tokenizer
        .as_ref()
        .filter(|_| llm.tokenizer_json.is_none())
    {
        let text = std::fs::read_to_string(path).map_err(|e| {
            (
                "llm.tokenizer".to_string(),
                format!("{}: {e}", path.display()),
            )
        })?;
        llm.tokenizer_json = Some(text);
    }
    if !llm.resolved.is_empty() {
        return Ok(());
    }
    let settings = Settings::of(llm)?;
    let prompts = PromptSet::load(&llm.prompts, &settings.counter, llm.seed).map_err(|e| {
        let field = e
            .field()
            .map_or("llm.prompts".to_string(), |f| format!("llm.prompts.{f}"));
        (field, e.detail())
    })?;
    llm.resolved = prompts
        .prompts()
        .iter()
        .map(|p| ResolvedPrompt {
            text: p.text.clone(),
            input_tokens: p.input_tokens,
            max_tokens: p.max_output_tokens,
        })
        .collect();
    Ok(())
}

struct Inner {
    catalog: Vec<RequestInfo>,
    backend: Backend,
    model: String,
    stream: bool,
    best_of: u32,
    use_beam_search: bool,
    temperature: Option<f64>,
    top_p: Option<f64>,
    ignore_eos: bool,
    /// Request line and headers up to (not including) `content-length`.
    head: Bytes,
    prompts: PromptSet,
    counter: TokenCounter,
    slo: Slo,
    /// `host:port` of the target, for messages.
    authority: String,
    /// Where HTTP backends connect, and TLS for `https://`.
    endpoint: Endpoint,
    /// The JetStream backend's gRPC target (`http://` or `https://` and `host:port`) and its
    /// connector (TLS with ALPN `h2` on `https://`); `None` for the HTTP backends.
    grpc: Option<(String, GrpcConnector)>,
    /// HTTP/2 (`[http] version = "2"`, or `"auto"` on `https://`): the connections the
    /// sessions' streams share, and the request head without its `content-length`.
    h2: Option<(Arc<H2Pool>, http::Request<()>)>,
    timeout: Duration,
    /// Whether each request writes a row to the `requests` stream.
    rows: bool,
    /// Set once the warning that the JetStream target may not speak gRPC has been logged (one
    /// per run and worker, not one per failed request).
    warned_not_grpc: AtomicBool,
}

/// The LLM driver of one run.
pub struct LlmDriver {
    inner: Arc<Inner>,
    /// `requests` when the scenario asks for per-request rows, else none.
    streams: Vec<RecordStream>,
}

impl LlmDriver {
    /// Build from a scenario whose target is a URL and whose `[llm]` prompts (and tokenizer,
    /// if any) are resolved, with its `[slo]`; a file named but not sent is an error, never
    /// read here.
    pub fn new(
        common: &Common,
        llm: Option<&LlmFile>,
        slo: Option<Slo>,
    ) -> Result<LlmDriver, DriverError> {
        let base = super::base_url(common.target)?;
        let llm =
            llm.ok_or_else(|| DriverError::Invalid("an llm scenario needs an [llm] table".into()))?;
        if let Some(path) = llm
            .tokenizer
            .as_ref()
            .filter(|_| llm.tokenizer_json.is_none())
        {
            return Err(DriverError::Invalid(unsent_file("llm.tokenizer", path)));
        }
        let settings =
            Settings::of(llm).map_err(|(f, m)| DriverError::Invalid(format!("{f}: {m}")))?;
        let authority = base
            .authority()
            .ok_or_else(|| DriverError::Invalid(format!("target `{base}` has no host")))?;
        let http = common.http.cloned().unwrap_or_default();
        let secure = base.scheme_str() == Some("https");
        let negotiation = match (http.version.unwrap_or_default(), secure) {
            // JetStream is gRPC on its own channel: [http] version does not apply.
            _ if settings.backend == Backend::JetStream => None,
            (HttpVersion::Http1, _) | (HttpVersion::Auto, false) => None,
            (HttpVersion::Http2, _) => Some(Negotiation::Required),
            (HttpVersion::Auto, true) => Some(Negotiation::Preferred),
        };
        let alpn = match negotiation {
            None => crate::tls::Alpn::Http1,
            Some(_) => crate::tls::Alpn::Any,
        };
        let endpoint = Endpoint::of(&base, common.tls, alpn)?;
        let grpc = if settings.backend == Backend::JetStream {
            let grpc = Endpoint::of(&base, common.tls, crate::tls::Alpn::Http2)?;
            let scheme = if grpc.is_tls() { "https" } else { "http" };
            Some((
                format!("{scheme}://{}", grpc.authority),
                GrpcConnector::new(grpc),
            ))
        } else {
            None
        };
        let prompts = if llm.resolved.is_empty() {
            // Synthetic prompts need no file; a prompt file is the master's to read.
            if let Some(path) = llm.prompts.file() {
                return Err(DriverError::Invalid(unsent_file("llm.prompts.path", path)));
            }
            PromptSet::load(&llm.prompts, &settings.counter, llm.seed)
                .map_err(|e| DriverError::Invalid(format!("llm.prompts: {e}")))?
        } else {
            let list = llm
                .resolved
                .iter()
                .map(|p| Prompt {
                    text: p.text.clone(),
                    input_tokens: p.input_tokens,
                    max_output_tokens: p.max_tokens,
                })
                .collect();
            PromptSet::new(list, settings.counter.text_rule())
                .map_err(|e| DriverError::Invalid(format!("llm.prompts: {e}")))?
        };
        let stream = llm.stream && settings.backend.supports_streaming();
        let path = format!(
            "{}{}",
            base.path().trim_end_matches('/'),
            settings.backend.path(&llm.model, stream)
        );
        let head = request_head(&path, authority.as_str(), &llm.headers)?;
        let h2 = match negotiation {
            None => None,
            Some(negotiation) => {
                let origin = format!("{}://{authority}", base.scheme_str().unwrap_or("http"));
                let head = h2_request_head(&format!("{origin}{path}"), &llm.headers)?;
                let connections = http.connections.map(|c| c.0 as usize);
                // Token times are when the bytes reached the socket (kernel stamps).
                let pool = H2Pool::new(endpoint.clone(), negotiation, connections, true);
                Some((Arc::new(pool), head))
            }
        };
        Ok(LlmDriver {
            inner: Arc::new(Inner {
                catalog: catalog(Some(llm)),
                backend: settings.backend,
                model: llm.model.clone(),
                stream,
                best_of: llm.best_of.unwrap_or(1),
                use_beam_search: llm.use_beam_search.unwrap_or(false),
                temperature: llm.temperature,
                top_p: llm.top_p,
                ignore_eos: llm.ignore_eos.unwrap_or(false),
                head,
                prompts,
                counter: settings.counter,
                slo: slo.unwrap_or_default(),
                authority: format!(
                    "{}:{}",
                    authority.host(),
                    authority.port_u16().unwrap_or(80)
                ),
                endpoint,
                grpc,
                h2,
                timeout: llm.timeout.map(|t| t.0).unwrap_or(DEFAULT_TIMEOUT),
                rows: llm.requests_csv,
                warned_not_grpc: AtomicBool::new(false),
            }),
            streams: record_streams(Some(llm)),
        })
    }
}

/// Why a scenario naming a local file without its contents is refused.
fn unsent_file(field: &str, path: &Path) -> String {
    format!(
        "{field} names the file {} but the assignment does not carry its contents; a worker never opens a local file named by an assignment (the master reads such files and sends them)",
        path.display()
    )
}

/// The HTTP/2 head of every request: `POST uri` (absolute) with the same headers as
/// [`request_head`] but `host` (`:authority` says it).
fn h2_request_head(
    uri: &str,
    headers: &BTreeMap<String, String>,
) -> Result<http::Request<()>, DriverError> {
    let mut builder = http::Request::post(uri)
        .version(http::Version::HTTP_2)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "*/*");
    // HTTP/2 forbids connection-specific headers; `:authority` replaces `host`.
    let forbidden = [
        "host",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
    ];
    for (k, v) in headers {
        if !forbidden.iter().any(|f| k.eq_ignore_ascii_case(f)) {
            builder = builder.header(k.as_str(), v.as_str());
        }
    }
    builder
        .body(())
        .map_err(|e| DriverError::Invalid(format!("llm: request head: {e}")))
}

fn request_head(
    path: &str,
    host: &str,
    headers: &BTreeMap<String, String>,
) -> Result<Bytes, DriverError> {
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\naccept: */*\r\n"
    );
    for (k, v) in headers {
        let name = http::header::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
            DriverError::Invalid(format!("llm.headers: `{k}` is not a valid header name"))
        })?;
        http::header::HeaderValue::from_str(v).map_err(|_| {
            DriverError::Invalid(format!("llm.headers: the value of `{k}` is not valid"))
        })?;
        out.push_str(&format!("{name}: {v}\r\n"));
    }
    Ok(Bytes::from(out))
}

impl Driver for LlmDriver {
    fn requests(&self) -> &[RequestInfo] {
        &self.inner.catalog
    }

    fn metrics(&self) -> &'static [MetricSpec] {
        SPECS.metrics
    }

    fn counters(&self) -> &'static [MetricSpec] {
        SPECS.counters
    }

    fn record_streams(&self) -> &[RecordStream] {
        &self.streams
    }

    fn session(&self) -> Box<dyn Session> {
        Box::new(LlmSession {
            inner: self.inner.clone(),
            conn: None,
            h2: self.inner.h2.as_ref().map(|(pool, _)| pool.client()),
            http1: false,
            decoder: StreamDecoder::new(self.inner.backend, ""),
            tally: ResponseTally::new(),
            wire: Vec::new(),
            answer: Vec::new(),
            last_arrival: None,
            grpc: None,
            grpc_marks: Arc::default(),
            grpc_connections: Connections::default(),
            grpc_answered: false,
        })
    }
}

/// One user's connection and reusable buffers.
struct LlmSession {
    inner: Arc<Inner>,
    conn: Option<H1Conn>,
    /// The session's way to the HTTP/2 connections, when the driver has them.
    h2: Option<H2Client>,
    /// `auto` found a server without h2: this session speaks HTTP/1.1 on `conn`.
    http1: bool,
    decoder: Option<StreamDecoder>,
    tally: ResponseTally,
    wire: Vec<u8>,
    answer: Vec<u8>,
    /// When the last bytes of the answer arrived (kernel receive time where the socket gives
    /// it): the end of E2E. `None` until an HTTP answer has been read.
    last_arrival: Option<Instant>,
    /// The JetStream backend's gRPC client (its own HTTP/2 connection), made at first use.
    grpc: Option<OrchestratorClient<tonic::transport::Channel>>,
    /// The gRPC connection's marks, set by its connector at each (re)connect.
    grpc_marks: Arc<std::sync::Mutex<Option<GrpcMarks>>>,
    /// The gRPC connections the session's channels made, for the connection figures.
    grpc_connections: Connections,
    /// Whether the JetStream server has answered a `Decode` of this session (with headers).
    grpc_answered: bool,
}

impl Session for LlmSession {
    fn call<'a>(&'a mut self, call: Call<'a>) -> CallFuture<'a> {
        Box::pin(async move {
            let inner = self.inner.clone();
            let prompt = inner.prompts.pick(call.rng);
            let exchange = async {
                if inner.backend == Backend::JetStream {
                    self.exchange_jetstream(prompt).await
                } else {
                    self.exchange(prompt, call.recorder).await
                }
            };
            let outcome = match tokio::time::timeout(inner.timeout, exchange).await {
                Ok(r) => r,
                Err(_) => Err((0, Failure::Timeout)),
            };
            if inner.backend == Backend::JetStream {
                // The HTTP backends record theirs as they connect; gRPC's channel connects
                // under tonic, so its figures are claimed here.
                let failure = outcome.as_ref().err().map(|(_, f)| f);
                self.grpc_connections
                    .record(call.recorder, 0, &SLOTS, failure);
            }
            let now = Instant::now();
            let end = self
                .last_arrival
                .take()
                .filter(|&t| t <= now)
                .unwrap_or(now);
            let rec = call.recorder;
            match outcome {
                Ok(bytes) => {
                    let summary = self.tally.finish(end, &inner.counter, prompt.input_tokens);
                    let t = &summary.timings;
                    rec.request(0, end - call.scheduled, bytes, None);
                    rec.sample(0, E2E, micros(end - call.scheduled));
                    if let Some(ttft) = t.ttft {
                        rec.sample(0, TTFT, micros(ttft));
                    }
                    if let Some(tpot) = t.tpot {
                        rec.sample(0, TPOT, micros(tpot));
                    }
                    for itl in self.tally.itls() {
                        rec.sample(0, ITL, micros(*itl));
                    }
                    if summary.output.tokens > 0 {
                        let per_token = (end - call.scheduled) / summary.output.tokens;
                        rec.sample(0, PER_TOKEN, micros(per_token));
                    }
                    rec.count(0, INPUT, u64::from(summary.input_tokens.unwrap_or(0)));
                    rec.count(0, OUTPUT, u64::from(summary.output.tokens));
                    rec.count(0, counted_by(summary.output.method), 1);
                    let met = inner.slo.is_met(t);
                    if met {
                        rec.count(0, GOOD, 1);
                    }
                    if inner.rows {
                        let itls = self.tally.itls();
                        let row = RequestRow {
                            scheduled_unix_ms: unix_ms_of(call.scheduled, end),
                            name: &inner.catalog[0].name,
                            failure: None,
                            ttft: t.ttft,
                            tpot: t.tpot,
                            itl_mean: (!itls.is_empty())
                                .then(|| itls.iter().sum::<Duration>() / itls.len() as u32),
                            e2e: Some(end - call.scheduled),
                            tokens: Some((
                                summary.input_tokens.unwrap_or(0),
                                summary.output.tokens,
                                summary.output.method.name(),
                            )),
                            slo_met: met,
                        };
                        rec.row(0, |buf| row.write(buf));
                    }
                }
                Err((bytes, failure)) => {
                    if !failure.is_status() {
                        // After a timeout, a broken stream or an I/O failure the connection's
                        // state is unknown.
                        self.conn = None;
                        self.grpc = None;
                        if failure.is_timeout()
                            && let Some(client) = &mut self.h2
                        {
                            client.forget();
                        }
                    }
                    if inner.rows {
                        let kind = failure.to_string();
                        let row = RequestRow {
                            scheduled_unix_ms: unix_ms_of(call.scheduled, end),
                            name: &inner.catalog[0].name,
                            failure: Some(&kind),
                            ttft: None,
                            tpot: None,
                            itl_mean: None,
                            e2e: Some(end - call.scheduled),
                            tokens: None,
                            slo_met: false,
                        };
                        rec.row(0, |buf| row.write(buf));
                    }
                    rec.request(0, end - call.scheduled, bytes, Some(failure));
                }
            }
        })
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

impl LlmSession {
    /// Send one prompt and read the answer into the tally; `Ok(bytes)` or the failure.
    ///
    /// TTFT counts from the moment the request is written to its connection: what the server
    /// did. How late that was after the scheduled time (the open model's schedule lag, a
    /// connect) is not the server's; it is in the request's latency, which counts from the
    /// scheduled time, and in the schedule lag.
    async fn exchange(&mut self, prompt: &Prompt, rec: &Recorder) -> Result<u64, (u64, Failure)> {
        let inner = &*self.inner;
        let mut req = LlmRequest::new(&prompt.text, &inner.model, prompt.max_output_tokens)
            .with_locust_sampling(inner.best_of, inner.use_beam_search);
        req.stream = inner.stream;
        req.ignore_eos = inner.ignore_eos;
        if let Some(t) = inner.temperature {
            req.temperature = t;
        }
        if let Some(p) = inner.top_p {
            req.top_p = p;
        }
        let body = inner.backend.request_body(&req);
        let mut fresh = None;
        if let (Some(client), Some((_, h2_head)), false) = (&mut self.h2, &inner.h2, self.http1) {
            match client.connection().await {
                Ok((mut conn, times)) => {
                    match times {
                        Some(t) => SLOTS.opened(rec, 0, &t),
                        None => rec.count(0, SLOTS.reused(), 1),
                    }
                    let mut head = h2_head.clone();
                    head.headers_mut()
                        .insert(http::header::CONTENT_LENGTH, body.len().into());
                    self.tally.start(Instant::now());
                    let response = conn
                        .send(head, &Bytes::from(body))
                        .await
                        .map_err(|f| (0, f))?;
                    return self.read_answer(prompt, Answer::H2(response)).await;
                }
                Err(Opened::Failed(f)) => return Err((0, f)),
                Err(Opened::Http1(connected)) => {
                    // `auto`, and the server's ALPN chose HTTP/1.1: this session speaks it.
                    self.http1 = true;
                    SLOTS.opened(rec, 0, &connected.times);
                    fresh = Some(H1Conn::over(connected.io));
                }
            }
        }
        self.wire.clear();
        self.wire.extend_from_slice(&inner.head);
        self.wire
            .extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        self.wire.extend_from_slice(&body);

        if let Some(mut c) = fresh {
            c.stamp_arrivals();
            self.conn = Some(c);
        } else if self.conn.as_mut().is_some_and(|c| c.is_reusable()) {
            rec.count(0, SLOTS.reused(), 1);
        } else {
            let (mut c, times) = H1Conn::open(&inner.endpoint, 0).await.map_err(|f| (0, f))?;
            SLOTS.opened(rec, 0, &times);
            // Token times are when the bytes reached the socket, not when this worker read them.
            c.stamp_arrivals();
            self.conn = Some(c);
        }
        // The invariant: set just above unless a reusable one was there.
        let conn = self.conn.as_mut().expect("connection present");
        self.tally.start(Instant::now());
        conn.send(&self.wire).await.map_err(|e| (0, e.failure()))?;
        let head = conn.read_head(false).await.map_err(|e| (0, e.failure()))?;
        self.read_answer(prompt, Answer::H1(head)).await
    }

    /// Read an answer (whose head has arrived) into the tally; `Ok(bytes)` or the failure.
    async fn read_answer(
        &mut self,
        prompt: &Prompt,
        mut answer: Answer,
    ) -> Result<u64, (u64, Failure)> {
        let inner = &*self.inner;
        let mut bytes = 0u64;
        let status = answer.status();
        if status >= 400 {
            answer
                .read(&mut self.conn, |d, _| bytes += d.len() as u64)
                .await
                .map_err(|f| (bytes, f))?;
            return Err((bytes, Failure::Status(status)));
        }
        match (&mut self.decoder, inner.stream) {
            (Some(decoder), true) => {
                decoder.reset(&prompt.text);
                let tally = &mut self.tally;
                let mut broken = None;
                let mut last = None;
                let read = answer
                    .read(&mut self.conn, |d, at| {
                        bytes += d.len() as u64;
                        last = Some(at);
                        if broken.is_some() {
                            return;
                        }
                        if let Err(e) = decoder.feed(d, |ev| tally.on_event(at, ev)) {
                            broken = Some(e);
                        }
                    })
                    .await;
                read.map_err(|f| (bytes, f))?;
                if let Some(e) = broken {
                    return Err((bytes, e.failure()));
                }
                let end = last.unwrap_or_else(Instant::now);
                self.last_arrival = last;
                let clean = decoder
                    .finish(|ev| tally.on_event(end, ev))
                    .map_err(|e| (bytes, e.failure()))?;
                if !clean {
                    return Err((bytes, Failure::Protocol("answer ends inside an event")));
                }
            }
            _ => {
                self.answer.clear();
                let text = &mut self.answer;
                let mut too_large = false;
                let mut last = None;
                answer
                    .read(&mut self.conn, |d, at| {
                        bytes += d.len() as u64;
                        last = Some(at);
                        if text.len() + d.len() <= MAX_ANSWER {
                            text.extend_from_slice(d);
                        } else {
                            too_large = true;
                        }
                    })
                    .await
                    .map_err(|f| (bytes, f))?;
                self.last_arrival = last;
                if too_large {
                    return Err((bytes, Failure::Protocol("answer too large")));
                }
                let completion = inner
                    .backend
                    .parse_response(&self.answer, &prompt.text)
                    .map_err(|e| (bytes, e.failure()))?;
                self.tally.on_completion(completion);
            }
        }
        Ok(bytes)
    }
}

impl LlmSession {
    /// JetStream: `Orchestrator/Decode` over gRPC. Each streamed `DecodeResponse` is a chunk of
    /// `token_ids.len()` tokens of sample 0, timed where it arrives; `Ok(bytes)` (the messages'
    /// encoded size) or the failure (a gRPC status is `gRPC <code>`).
    async fn exchange_jetstream(&mut self, prompt: &Prompt) -> Result<u64, (u64, Failure)> {
        use prost::Message;
        use stampede_grpc::jetstream::decode_response::Content;
        let inner = &*self.inner;
        if self.grpc.is_none() {
            let Some((url, connector)) = &inner.grpc else {
                return Err((0, Failure::Other("JetStream: no gRPC target".into())));
            };
            let endpoint = tonic::transport::Endpoint::from_shared(url.clone())
                .map_err(|_| (0, Failure::Connect("bad address")))?;
            // Each connection's reads stamped (after the handshake on TLS), its marks here.
            let connector = connector
                .clone()
                .with_marks(self.grpc_marks.clone())
                .with_connections(self.grpc_connections.clone());
            let channel = endpoint
                .connect_with_connector(connector)
                .await
                .map_err(|e| (0, connect_failure(&e)))?;
            self.grpc = Some(OrchestratorClient::new(channel));
        }
        // The invariant: set just above unless it was there.
        let client = self.grpc.as_mut().expect("client present");
        let request =
            crate::llm::backend::jetstream_request(&prompt.text, prompt.max_output_tokens);
        let current_marks = || {
            self.grpc_marks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        };
        if let Some(m) = current_marks() {
            m.sent.arm();
        }
        let handed = Instant::now();
        self.tally.start(handed);
        let mut stream = match client.decode(request).await {
            Ok(answer) => answer.into_inner(),
            Err(status) => return Err((0, self.grpc_failure(&status))),
        };
        self.grpc_answered = true;
        // The answer's headers are in, so the request has gone out: TTFT counts from when
        // tonic's connection task wrote it, not from when it was handed over (the first write
        // after that, never earlier than the hand-over). The marks are read again: had the
        // channel reconnected, the new connection's (whose first write is not armed: then
        // TTFT counts from the hand-over).
        let marks = current_marks();
        if let Some(at) = marks
            .as_ref()
            .and_then(|m| m.sent.first())
            .filter(|&at| at >= handed)
        {
            self.tally.start(at);
        }
        let mut bytes = 0u64;
        let arrival = marks.map(|m| m.arrival);
        loop {
            match stream.message().await {
                Ok(Some(message)) => {
                    // When the bytes that completed the message reached the socket (the
                    // connection's latest read), not when this worker got round to it.
                    let now = Instant::now();
                    let now = arrival
                        .as_ref()
                        .and_then(Arrival::last)
                        .filter(|&at| at <= now)
                        .unwrap_or(now);
                    self.last_arrival = Some(now);
                    bytes += message.encoded_len() as u64;
                    let Some(Content::StreamContent(content)) = message.content else {
                        // InitialContent: nothing generated yet.
                        continue;
                    };
                    if let Some(sample) = content.samples.into_iter().next() {
                        let count = sample.token_ids.len() as u32;
                        if count > 0 || !sample.text.is_empty() {
                            self.tally.on_event(
                                now,
                                StreamEvent::Token {
                                    text: sample.text.into(),
                                    count,
                                },
                            );
                        }
                    }
                }
                Ok(None) => break,
                Err(status) => return Err((bytes, self.grpc_failure(&status))),
            }
        }
        Ok(bytes)
    }

    /// The failure of a gRPC exchange; the first time in a run that a connection fails before
    /// the server ever answered, a warning says the target may not speak gRPC (an HTTP/1
    /// server, such as `stampede target llm`'s HTTP port, drops HTTP/2 connections).
    fn grpc_failure(&self, status: &tonic::Status) -> Failure {
        // The connection's own failure (a TLS handshake refused, a connect refused on a
        // reconnect) names itself: `tls: invalid peer certificate: UnknownIssuer`.
        if let Some(f) = failure_under(status) {
            return f;
        }
        let cause = transport_cause(status);
        if let Some(cause) = &cause
            && !self.grpc_answered
            && !self.inner.warned_not_grpc.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "JetStream: the connection to {} failed before any gRPC answer ({cause}); \
                 is it a gRPC (HTTP/2) port? An HTTP/1 server drops gRPC's connections",
                self.inner.authority
            );
        }
        match cause {
            Some(cause) => Failure::Other(format!("gRPC: {cause}")),
            None => Failure::Other(format!("gRPC {:?}", status.code())),
        }
    }
}

/// What failed underneath a status tonic made from a transport error (none for a status the
/// server sent): the HTTP/2 error's reason, else the I/O error's kind, else that the
/// connection closed (hyper cancels the requests of a connection that went away).
fn transport_cause(status: &tonic::Status) -> Option<String> {
    let mut chain = std::iter::successors(std::error::Error::source(status), |e| e.source());
    chain.find(|e| e.is::<tonic::transport::Error>())?;
    for e in chain {
        if let Some(reason) = e.downcast_ref::<h2::Error>().and_then(h2::Error::reason) {
            return Some(format!("HTTP/2 {reason:?}"));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io_kind(io).to_string());
        }
    }
    Some(match status.code() {
        tonic::Code::Cancelled => "connection closed".to_string(),
        _ => "transport error".to_string(),
    })
}

/// The failure of a gRPC connect: the connector's (TCP or TLS), else the I/O error's kind
/// underneath, else `connect: failed`.
fn connect_failure(e: &tonic::transport::Error) -> Failure {
    if let Some(f) = failure_under(e) {
        return f;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Failure::Connect(io_kind(io));
        }
        source = err.source();
    }
    Failure::Connect("failed")
}

/// An answer whose head has arrived: on the session's HTTP/1.1 connection, or an HTTP/2
/// stream.
enum Answer {
    H1(Head),
    H2(H2Response),
}

impl Answer {
    fn status(&self) -> u16 {
        match self {
            Answer::H1(head) => head.status,
            Answer::H2(r) => r.status,
        }
    }

    /// Read the body, each slice with its arrival; `conn` is the session's HTTP/1.1
    /// connection, which an [`Answer::H1`] was read from.
    async fn read(
        &mut self,
        conn: &mut Option<H1Conn>,
        on_data: impl FnMut(&[u8], Instant),
    ) -> Result<(), Failure> {
        match self {
            Answer::H1(head) => {
                // The invariant: an H1 answer's head was read from this connection.
                let conn = conn.as_mut().expect("the answer's connection");
                conn.read_body_stamped(head, on_data)
                    .await
                    .map(drop)
                    .map_err(body_failure)
            }
            Answer::H2(r) => r
                .read_body_stamped(on_data)
                .await
                .map(drop)
                .map_err(|e| e.1),
        }
    }
}

fn body_failure(e: H1Error) -> Failure {
    match e {
        H1Error::Closed => Failure::Io("connection closed mid-answer"),
        other => other.failure(),
    }
}

/// The request name of an llm scenario: the backend's path, as ai-on-gke's Locust benchmark reports
/// it.
pub fn catalog(llm: Option<&LlmFile>) -> Vec<RequestInfo> {
    let Some(llm) = llm else {
        return Vec::new();
    };
    let name = match llm.backend.parse::<Backend>() {
        Ok(b) => b.path(&llm.model, llm.stream && b.supports_streaming()),
        Err(_) => llm.backend.clone(),
    };
    let kind = match llm.backend.parse::<Backend>() {
        Ok(Backend::JetStream) => "gRPC",
        _ => "POST",
    };
    vec![RequestInfo {
        kind: kind.into(),
        name,
    }]
}

/// Checks an llm scenario's `[llm]`, and that it has no `[[requests]]` (`requests` of them);
/// `Err((field, message))`.
pub fn validate(llm: Option<&LlmFile>, requests: usize) -> Result<(), (String, String)> {
    let Some(llm) = llm else {
        return Err((
            "llm".into(),
            "an llm scenario needs an [llm] table (backend, model, prompts)".into(),
        ));
    };
    if requests > 0 {
        return Err((
            "requests".into(),
            "an llm scenario takes its requests from [llm] prompts, not [[requests]]".into(),
        ));
    }
    llm.backend
        .parse::<Backend>()
        .map_err(|e| ("llm.backend".to_string(), e.to_string()))?;
    if llm.model.trim().is_empty() {
        return Err(("llm.model".into(), "must not be empty".into()));
    }
    if llm.token_count == Some(TokenCountMethod::Tokenizer) && llm.tokenizer.is_none() {
        return Err((
            "llm.token_count".into(),
            "`tokenizer` counting needs `tokenizer = \"path/to/tokenizer.json\"`".into(),
        ));
    }
    if let Some(b) = llm.best_of.filter(|&b| b == 0) {
        return Err(("llm.best_of".into(), format!("{b}: must be at least 1")));
    }
    request_head("/", "x", &llm.headers).map_err(|e| ("llm.headers".to_string(), e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests;
