//! The command line: one verb per job, clap derive, help text from the doc comments, human
//! units (`30s`, `2m`, `10k`). Flags that override the scenario are shared by `run` and
//! `master` through [`ScenarioFlags`].

use std::net::SocketAddr;
use std::path::PathBuf;

use std::io::Write;

use clap::{Args, Parser, Subcommand};
use stampede_master::tui::LogLines;
use stampede_scenarios::Arrival;
use stampede_scenarios::units::{Count, HumanDuration, Rate};
use stampede_targets::llm::{Dist, Fault, OutputLen, StreamDelimiter};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Distributed load testing for inference systems and web services.
///
/// A master splits a scenario across worker processes over QUIC; workers generate the load
/// and record it in HDR histograms; the master merges them exactly.
///
/// Exit codes: 0 the run completed and passed (every threshold held, some request
/// succeeded); 1 error (bad scenario, bad flag value, cannot bind, ...); 2 bad command line;
/// 3 it did not pass (a threshold was breached, or every request failed); 4 it failed (no
/// worker got ready, every worker rejected the scenario or was lost, no request was made);
/// 5 stopped before its end (a signal, the API, the TUI); 6 degraded (a worker was lost and
/// its share moved; --tolerate-worker-loss accepts it); 130 interrupted twice.
#[derive(Debug, Parser)]
#[command(name = "stampede", version, about, long_about, max_term_width = 100)]
pub struct Opt {
    /// Log filter (also RUST_LOG), e.g. `info` or `stampede_worker=debug`.
    #[arg(long, global = true, env = "STAMPEDE_LOG")]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario here: a master, local worker processes and, for `builtin:` targets, the
    /// built-in target. Prints progress, then the results table.
    ///
    /// Example: stampede run scenarios/examples/http.toml --users 100 --duration 1m --out results/
    Run(RunOpt),
    /// Start a master that workers on other machines join.
    ///
    /// Example: stampede master --bind 0.0.0.0:7400 --token-file token.txt --expect-workers 4
    /// --scenario F --headless --duration 2m --out results/
    Master(MasterOpt),
    /// Join a master and generate load for it.
    ///
    /// Example: stampede worker --master 10.0.0.5:7400 --token-file token.txt
    Worker(WorkerOpt),
    /// Start a built-in target (a system under test for demos and benchmarks).
    #[command(subcommand)]
    Target(TargetCommand),
    /// Validate a scenario file and describe it, without running it.
    Check(CheckOpt),
    /// The command line of the MLPerf-LoadGen priority runner (`loadgen_runner.py`), flag for flag:
    /// 9 classes (tier 1..3 × urgent 100 ms, normal 500 ms, relaxed 2000 ms), one Poisson process
    /// per class at total-qps × the workload's share, gRPC `SchedulerService.Infer` with a random
    /// `[1,3,224,224]` tensor, per-request CSV, per-class table and LoadGen-style
    /// `tier{T}_{slo}/mlperf_log_summary.txt` (VALID/INVALID).
    ///
    /// Runs on local worker processes (--workers, default 2), or as a master that a fleet of
    /// `stampede worker`s joins (--listen with --expect-workers).
    ///
    /// Example: stampede loadgen --scheduler-url localhost:50051 --total-qps 70 --workload
    /// urgent_heavy --duration-ms 60000 --metrics-csv results/urgent_heavy_70qps.csv
    Loadgen(LoadgenOpt),
    /// Device placement, as PEPPER's Profiler does it: learn execution times from recorded runs,
    /// then say on which node a model runs fastest.
    ///
    /// Example: stampede placement fit --data runs.csv --out model.json && stampede placement
    /// serve --port 7001 --model model.json --prometheus http://prometheus:9090
    #[command(subcommand)]
    Placement(PlacementCommand),
    /// Capacity profiles, as ig-wva's Performance Profile Generator computes them: the highest
    /// request rate each worker type sustains per request type within a TPOT SLO, from benchmark
    /// CSVs or Stampede's own sweeps, computed here or served as the generator's gRPC service.
    ///
    /// Example: stampede profile sweep llm.toml --rates 2,4,8,16 --out sweep/ && stampede
    /// profile serve --port 8080 --results sweep/
    #[command(subcommand)]
    Profile(crate::cmd::profile::ProfileCommand),
}

/// Flags that override what the scenario file says.
#[derive(Debug, Clone, Args, Default)]
pub struct ScenarioFlags {
    /// How long the run lasts (`30s`, `2m`, `1h`).
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<HumanDuration>,
    /// Closed model with this many users across all workers (`50`, `10k`).
    #[arg(long, value_name = "N")]
    pub users: Option<Count>,
    /// Users started per second (closed model).
    #[arg(long, value_name = "R")]
    pub spawn_rate: Option<Rate>,
    /// Open model at this many requests per second across all workers (`500`, `10k`, `600/m`).
    #[arg(long, value_name = "R")]
    pub rate: Option<Rate>,
    /// Spacing of open-model arrivals: `poisson` (default), `constant` or `gamma`.
    #[arg(long, value_name = "KIND")]
    pub arrival: Option<Arrival>,
    /// Gamma arrivals of this shape (open and rate-stages models): below 1 bursty (gaps vary
    /// 1/√B times their mean: 0.25 gives twice Poisson's spread), 1 Poisson, above 1 more
    /// regular. One sequence is shared by all workers, so the merged arrivals are exactly it.
    #[arg(long, value_name = "B")]
    pub burstiness: Option<f64>,
    /// A sweep over open-model rates (`2,4,8`): one full run per rate, one after another,
    /// each reported on its own (`--out DIR` gets `step-NN-rate-V/`, `sweep.json`, `sweep.csv`),
    /// then a table of all steps. Replaces the scenario's `[sweep]`.
    #[arg(
        long,
        value_name = "R,R,...",
        value_delimiter = ',',
        conflicts_with = "sweep_users"
    )]
    pub sweep_rates: Option<Vec<Rate>>,
    /// A sweep over closed-model users (`1,8,32`), like `--sweep-rates`.
    #[arg(long, value_name = "N,N,...", value_delimiter = ',')]
    pub sweep_users: Option<Vec<Count>>,
    /// Base URL of the system under test, replacing the scenario's target.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// LLM scenarios: the server's API (`openai`, `openai-chat`, `vllm`, `tgi`, `triton`,
    /// `sax`, `jetstream`).
    #[arg(long, value_name = "NAME")]
    pub backend: Option<String>,
    /// LLM scenarios: the model name sent to the server.
    #[arg(long, value_name = "NAME")]
    pub model: Option<String>,
    /// LLM scenarios: one CSV row per request (scheduled_unix_ms, name, success, failure,
    /// ttft_ms, tpot_ms, itl_mean_ms, e2e_ms, input_tokens, output_tokens, token_count_method,
    /// slo_met), sent by the workers to the master, written to PATH or, without PATH, to
    /// `<out>/requests.csv` (each sweep step's own folder in a sweep).
    #[arg(long, value_name = "PATH", num_args = 0..=1)]
    pub requests_csv: Option<Option<PathBuf>>,
    /// TLS and HTTP version for `https://` targets (each replaces the scenario's `[tls]` or
    /// `[http] version`).
    #[command(flatten)]
    pub tls: TlsFlags,
    /// HTTP version: `1.1`, `2` or `auto` (the default: ALPN decides on https://, http://
    /// stays HTTP/1.1). `2` on http:// is h2c with prior knowledge.
    #[arg(long, value_name = "VERSION")]
    pub http_version: Option<stampede_scenarios::model::HttpVersion>,
    /// Write summary.json, stats.csv, stats_history.csv, failures.csv and latency.hlog here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// A run that lost a worker (its share moved to the others) is `degraded` and does not
    /// pass (exit 6); with this flag it passes when every threshold held.
    #[arg(long)]
    pub tolerate_worker_loss: bool,
    /// Exit with code N when any request failed, even if every threshold held (Locust's
    /// `--exit-code-on-error`).
    #[arg(long, value_name = "N")]
    pub exit_code_on_error: Option<u8>,
    /// No interactive display: start when the workers are there, exit when the run ends.
    #[arg(long)]
    pub headless: bool,
    /// Watch and steer the run in a terminal UI: workers, request names, charts, failures,
    /// per-kind views. Keys: s start, x stop, +/- load ±10 %, Tab view, ? help, q quit (stops
    /// the run and writes results first). Without a terminal, the run goes on headless.
    #[arg(long, conflicts_with = "headless")]
    pub tui: bool,
}

/// Trust and identity for `https://` targets: the scenario's `[tls]` table as flags.
#[derive(Debug, Clone, Args, Default)]
pub struct TlsFlags {
    /// Trust the certificates in this PEM file, in addition to the system's roots (which
    /// `SSL_CERT_FILE` and `SSL_CERT_DIR` also set). Example: --ca ca.pem
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Do not verify the target's certificate (a self-signed test server). Warned about, and
    /// recorded in summary.json.
    #[arg(long)]
    pub insecure: bool,
    /// Mutual TLS: present this PEM certificate (chain) to the target; needs --client-key.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Mutual TLS: the PEM private key of --client-cert.
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// The name to send as SNI and to check in the certificate, when the target is given by
    /// IP address (`https://10.0.0.5` serving `api.example`).
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
}

/// `stampede run`.
#[derive(Debug, Args)]
pub struct RunOpt {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// Local worker processes to start.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub workers: usize,
    /// Also serve the HTTP API and /metrics here: `8089` (on 127.0.0.1) or `ADDR:PORT`.
    #[arg(long, value_name = "ADDR", value_parser = api_addr)]
    pub api: Option<SocketAddr>,
    #[command(flatten)]
    pub flags: ScenarioFlags,
}

/// `stampede master`.
#[derive(Debug, Args)]
pub struct MasterOpt {
    /// Address workers connect to (QUIC, UDP).
    #[arg(long, default_value = "0.0.0.0:7400", value_name = "ADDR")]
    pub bind: SocketAddr,
    /// The shared secret workers must prove they know, and API clients that change runs
    /// present (default: a random one, printed once).
    #[command(flatten)]
    pub token: TokenOpt,
    /// The certificate (PEM chain) this master presents to workers, with --key (default: a
    /// self-signed one made at start; its SHA-256 fingerprint is printed either way).
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The private key (PEM) of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Start the scenario when this many workers have joined (default with --headless: 1).
    #[arg(long, value_name = "N")]
    pub expect_workers: Option<usize>,
    /// The scenario file (TOML). Without it, runs are started with `POST /api/runs`.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Serve the HTTP API and /metrics here: `8089` (on 127.0.0.1, the default interface) or
    /// `ADDR:PORT` (`0.0.0.0:8089` to reach it from other machines).
    #[arg(long, value_name = "ADDR", value_parser = api_addr)]
    pub api: Option<SocketAddr>,
    #[command(flatten)]
    pub flags: ScenarioFlags,
}

/// `stampede worker`.
#[derive(Debug, Args)]
pub struct WorkerOpt {
    /// The master's address, `HOST:PORT` (port 7400 if omitted).
    #[arg(long, env = "STAMPEDE_MASTER", value_name = "HOST:PORT")]
    pub master: String,
    /// The master's token; the master must prove it knows it before this worker says
    /// anything.
    #[command(flatten)]
    pub token: TokenOpt,
    /// Trust only a master whose certificate chains to a CA in this PEM file and names the
    /// --master host (the master then needs --cert/--key). Without it or
    /// --master-fingerprint, the token proof alone authenticates the master.
    #[arg(long, value_name = "FILE", conflicts_with = "master_fingerprint")]
    pub master_ca: Option<PathBuf>,
    /// Trust only a master whose certificate has this SHA-256 fingerprint (64 hex digits, as
    /// the master prints it at start).
    #[arg(long, value_name = "SHA256")]
    pub master_fingerprint: Option<String>,
    /// Take only assignments whose target is one of these: `HOST[:PORT],...` (a host alone
    /// allows any port; names are compared as written, without DNS). Default: any target.
    #[arg(long, value_name = "HOST[:PORT],...", value_delimiter = ',')]
    pub allow_target: Option<Vec<stampede_worker::policy::AllowedTarget>>,
    /// This worker's name in the master's lists (default: host name and pid).
    #[arg(long)]
    pub name: Option<String>,
    /// Cores to use: the worker's weight in the split (default: all of this machine's).
    #[arg(long)]
    pub cores: Option<u32>,
    /// How long to keep trying to reach the master.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub connect_timeout: HumanDuration,
    /// Serve this worker's own figures as Prometheus metrics at `http://ADDR/metrics` (the
    /// master's families, for this worker's share only). A bare port binds 127.0.0.1
    /// (`9101`); `0.0.0.0:9101` for every interface.
    #[arg(long, value_name = "ADDR", value_parser = api_addr)]
    pub metrics: Option<SocketAddr>,
    /// Testing aid: pretend this machine's clock is off by this much (`500ms`, `-2s`), to see
    /// the master's clock alignment at work.
    #[arg(long, hide = true, value_name = "DURATION", allow_hyphen_values = true)]
    pub clock_skew: Option<SignedDuration>,
    /// Set by `run`, `loadgen` and `profile` on the worker processes they start: ignore
    /// Ctrl-C. A terminal's Ctrl-C reaches the whole process group, and those workers' master
    /// (their parent) stops the run on it; a worker leaving on its own would race its final
    /// report against the master's stop.
    #[arg(long, hide = true)]
    pub ignore_interrupt: bool,
}

/// Where a token comes from. The first given of `--token`, `--token-file`, then the
/// `STAMPEDE_TOKEN` environment variable.
#[derive(Debug, Args)]
pub struct TokenOpt {
    /// The token itself (at least 16 bytes). Every user of this machine can read it in the
    /// process list: prefer --token-file or the STAMPEDE_TOKEN environment variable.
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,
    /// Read the token from this file (its first line, surrounding whitespace removed).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// An API address: a bare port binds 127.0.0.1, so the API is local unless told otherwise.
fn api_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.trim().parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.trim()
        .parse()
        .map_err(|_| format!("`{s}` is neither a port nor ADDR:PORT"))
}

/// A duration that may be negative (`-500ms`), in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct SignedDuration(pub i64);

impl std::str::FromStr for SignedDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (sign, rest) = match s.trim().strip_prefix('-') {
            Some(rest) => (-1, rest),
            None => (1, s.trim()),
        };
        let d = stampede_scenarios::units::parse_duration(rest)?;
        i64::try_from(d.as_nanos())
            .map(|n| SignedDuration(sign * n))
            .map_err(|_| format!("`{s}` is too long"))
    }
}

/// `stampede target ...`.
#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// A fast static HTTP/1.1 server with optional delay and error injection.
    ///
    /// Paths: any path answers 200 with the body; /status/{code} answers that status;
    /// /bytes/{n} answers n bytes; `?delay_ms=N` delays one request; GET /__stampede/stats
    /// gives the request count (not counted itself).
    Http(TargetHttpOpt),
    /// A simulated LLM inference server: vLLM (OpenAI /v1 and /generate), TGI, Triton
    /// (TensorRT-LLM) and SAX APIs, tokens streamed on a continuous-batching timing model.
    ///
    /// Paths: POST /v1/completions, /v1/chat/completions, /generate (vLLM, TGI, Triton or SAX,
    /// chosen by the body), /generate_stream (TGI), `/v2/models/{m}/generate[_stream]` (Triton);
    /// GET /v1/models, /health; GET /__stampede/stats gives exact token counts and the timing
    /// the server really emitted, POST /__stampede/stats/reset zeroes them.
    ///
    /// Example: stampede target llm --ttft normal:300ms,30ms --tpot 25ms --batch-knee 16
    Llm(TargetLlmOpt),
    /// A simulated model registry, as the ACME performance track downloads from: 500 models,
    /// Tiny-LLM's model.zip of exactly 24,834,009 bytes generated on the fly, the other 499 with
    /// config.json and README.md.
    ///
    /// Paths: GET|HEAD /performance/{model_id}/{version}/{file} (model_id sanitized, e.g.
    /// arnir0_Tiny-LLM; version main; file model.zip, config.json or README.md) with byte ranges
    /// (206, 416); faults on request: ?truncate_at=N closes after N body bytes (a short body;
    /// on HTTP/2 the stream ends early), ?reset_at=N resets the connection after N bytes (on
    /// HTTP/2 the stream: RST_STREAM INTERNAL_ERROR); GET /models lists the models with sizes
    /// and Tiny-LLM's sha256; GET /__stampede/stats gives requests and bytes served.
    ///
    /// Example: stampede target registry --bind 127.0.0.1:8000 --bandwidth 40M
    Registry(TargetRegistryOpt),
    /// A simulated GPU inference scheduler, the system the MLPerf-LoadGen priority runner drives,
    /// serving its scheduler.proto over gRPC: requests queue by tier (1 first), then deadline;
    /// --gpus run at once, each for its model's service time; a request whose deadline_ns has
    /// passed when a GPU takes it is answered success=false. Prints what it received when stopped
    /// (Ctrl-C).
    ///
    /// Example: stampede target scheduler --bind 127.0.0.1:50051 --gpus 2 --model resnet50=8ms
    /// --model vit=20ms
    Scheduler(TargetSchedulerOpt),
}

/// `stampede target registry`.
#[derive(Debug, Args)]
pub struct TargetRegistryOpt {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR")]
    pub bind: SocketAddr,
    /// Body bytes per second for all connections together (`40M`, `500k`); unlimited if unset.
    #[arg(long, value_name = "BYTES_PER_S")]
    pub bandwidth: Option<Rate>,
    // TLS (h2 or HTTP/1.1 by ALPN) or h2c, as the other HTTP targets.
    #[command(flatten)]
    pub serve: TargetServeOpt,
}

/// How `stampede target http|llm|registry` speaks: plaintext HTTP/1.1 unless told otherwise.
#[derive(Debug, Args)]
pub struct TargetServeOpt {
    /// Serve HTTPS: HTTP/2 when the client offers it by ALPN, else HTTP/1.1. Without --cert
    /// and --key the certificate is self-signed, made at start for localhost, 127.0.0.1, ::1
    /// and the --bind address; write it out with --cert-out to trust it.
    ///
    /// Example: stampede target http --tls --cert-out target.pem, then curl --cacert target.pem
    /// https://localhost:8080/
    #[arg(long)]
    pub tls: bool,
    /// Serve this PEM certificate (chain) instead of a self-signed one; implies --tls, needs
    /// --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The PEM private key of --cert (PKCS#8, RSA or EC).
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Write the served certificate (PEM) to FILE, for clients to trust: `--ca FILE`,
    /// `curl --cacert FILE`.
    #[arg(long, value_name = "FILE")]
    pub cert_out: Option<PathBuf>,
    /// Also speak plaintext HTTP/2 with prior knowledge (h2c) on the same port, beside
    /// HTTP/1.1: each connection is told apart by its first bytes. Not with --tls (TLS offers
    /// HTTP/2 by ALPN already).
    ///
    /// Example: stampede target http --h2c, then curl --http2-prior-knowledge
    /// http://127.0.0.1:8080/
    #[arg(long, conflicts_with_all = ["tls", "cert", "key"])]
    pub h2c: bool,
}

/// `stampede target http`.
#[derive(Debug, Args)]
pub struct TargetHttpOpt {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub bind: SocketAddr,
    /// Size of the 200 response body, bytes (`1k` = 1000).
    #[arg(long, default_value = "1024", value_name = "BYTES")]
    pub body_size: Count,
    /// Fixed delay before each answer.
    #[arg(long, default_value = "0ms", value_name = "DURATION")]
    pub delay: HumanDuration,
    /// Extra random delay, uniform between 0 and this.
    #[arg(long, default_value = "0ms", value_name = "DURATION")]
    pub jitter: HumanDuration,
    /// Fraction of requests answered with --error-status (0..1).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub error_rate: f64,
    /// Status of injected errors.
    #[arg(long, default_value_t = 500, value_name = "CODE")]
    pub error_status: u16,
    #[command(flatten)]
    pub serve: TargetServeOpt,
}

/// `stampede target llm`.
#[derive(Debug, Args)]
pub struct TargetLlmOpt {
    /// Address to listen on (vLLM's and Triton's usual port).
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR")]
    pub bind: SocketAddr,
    /// Also serve JetStream's gRPC `jetstream_proto.Orchestrator` (Decode, streamed; HealthCheck)
    /// here (JetStream's usual port is 9000; port 0 picks one), for the `jetstream` backend.
    #[arg(long, value_name = "ADDR")]
    pub grpc_bind: Option<SocketAddr>,
    /// Served model name, reported in answers and by /v1/models; /v1 requests naming another
    /// model get 404 like vLLM.
    #[arg(long, default_value = "stampede-sim", value_name = "NAME")]
    pub model: String,
    /// Accept any model name on /v1 and echo it back instead of answering 404.
    #[arg(long)]
    pub any_model: bool,
    /// Time to first token once a request has a batch slot: `200ms`, `normal:200ms,20ms`,
    /// `uniform:150ms,250ms` or `exp:200ms` (units ns, us, ms, s).
    #[arg(long, default_value = "200ms", value_name = "DIST")]
    pub ttft: Dist,
    /// Time per output token after the first, same syntax as --ttft.
    #[arg(long, default_value = "20ms", value_name = "DIST")]
    pub tpot: Dist,
    /// Output length unless the request sets ignore_eos: `uniform` (between min_tokens and
    /// max_tokens, like a model that may stop early), `max` (always max_tokens) or a count.
    #[arg(long, default_value = "uniform", value_name = "POLICY")]
    pub output_len: OutputLen,
    /// Requests generating at once (vLLM's max_num_seqs); more wait in a queue, which shows
    /// in their time to first token. 0 means unlimited.
    #[arg(long, default_value = "256", value_name = "N")]
    pub max_batch: Count,
    /// Requests in flight above which every token slows down; 0 turns the slowdown off.
    ///
    /// Each step takes its drawn time × (1 + slope × max(0, in_flight − knee) / knee).
    #[arg(long, default_value_t = 32, value_name = "N")]
    pub batch_knee: u32,
    /// Slowdown per knee's worth of requests above the knee (1: twice as slow at twice the knee).
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    pub batch_slope: f64,
    /// Context length: prompt plus output tokens may not exceed it; also the default output
    /// budget of chat requests without max_tokens.
    #[arg(long, default_value = "32768", value_name = "TOKENS")]
    pub max_model_len: Count,
    /// Fraction of valid requests answered with an injected 500 (0..1).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub error_rate: f64,
    /// Fraction of answers carrying one fault from --faults (0..1).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub fault_rate: f64,
    /// Faults to choose from: close_mid_stream, malformed_json, unknown_event.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "close_mid_stream,malformed_json,unknown_event",
        value_name = "LIST"
    )]
    pub faults: Vec<Fault>,
    /// Seed of every random choice (lengths, timing draws, errors, faults), for repeatable runs.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Delimiter after each object of a streamed vLLM /generate answer: `newline` (current
    /// vLLM) or `nul` (vLLM before mid-2024).
    #[arg(long, default_value = "newline", value_name = "DELIM")]
    pub vllm_stream_delimiter: StreamDelimiter,
    /// Put the prompt before the completion in Triton's text_output unless the request sets
    /// exclude_input_in_output.
    #[arg(long)]
    pub triton_include_input: bool,
    /// Exact timing for measurement checks: time each answer from the request's arrival at the
    /// socket (kernel receive timestamps, Linux) rather than from when the server read it, and
    /// emit each token within tens of microseconds of its deadline (one shared high-resolution
    /// timer on Linux; elsewhere a spin through the last millisecond, costing CPU per stream).
    #[arg(long)]
    pub precise_timing: bool,
    // TLS or h2c for the HTTP APIs (the --grpc-bind port stays plaintext).
    #[command(flatten)]
    pub serve: TargetServeOpt,
}

/// `stampede loadgen`.
#[derive(Debug, Args)]
pub struct LoadgenOpt {
    /// The scheduler's gRPC endpoint, `HOST:PORT` (or `http://HOST:PORT`), `https://HOST:PORT`
    /// for gRPC over TLS (grpc's `secure_channel`; trust and identity from --ca, --insecure,
    /// --client-cert, --client-key, --server-name), or `builtin:scheduler` to start the
    /// simulated one here.
    #[arg(long, default_value = "localhost:50051", value_name = "URL")]
    pub scheduler_url: String,
    /// Total requests per second across all classes and workers.
    #[arg(long, default_value_t = 30.0, value_name = "QPS")]
    pub total_qps: f64,
    /// Test duration, ms: LoadGen's min_duration (each class goes on until it also has
    /// --min-query-count queries).
    #[arg(long, default_value_t = 60_000, value_name = "MS")]
    pub duration_ms: u64,
    /// `balanced`, `urgent_heavy`, `batch_heavy`, or a workload of --scenario's
    /// `[priority.workloads]`.
    #[arg(long, default_value = "balanced", value_name = "NAME")]
    pub workload: String,
    /// LoadGen's min_query_count, per class.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub min_query_count: u64,
    /// Where the per-class folders `tier{T}_{slo}/` (LoadGen summaries) and the run's
    /// summary.json and CSVs go.
    #[arg(long, default_value = "./loadgen_logs", value_name = "DIR")]
    pub output_dir: PathBuf,
    /// The per-request CSV: timestamp_issued, sample_id, tier, slo, model, latency_ns,
    /// latency_ms, slo_met.
    #[arg(long, default_value = "./metrics.csv", value_name = "FILE")]
    pub metrics_csv: PathBuf,
    /// Local worker processes to start (ignored with --listen).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub workers: usize,
    /// Be a master for a fleet instead: listen for `stampede worker`s here (QUIC, UDP), and
    /// start when --expect-workers have joined.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// With --listen: workers to wait for.
    #[arg(long, default_value_t = 1, value_name = "N", requires = "listen")]
    pub expect_workers: usize,
    /// With --listen: the token workers must know (default: a random one, printed once).
    #[command(flatten)]
    pub token: TokenOpt,
    /// A priority scenario file to start from (its custom workloads, model mix, spikes,
    /// timeout, `[tls]`); the flags above replace its target, rate, duration, workload and
    /// count, and the TLS flags its `[tls]` settings.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Trust and identity for an `https://` --scheduler-url (each replaces the scenario's
    /// `[tls]` setting). The files are read here and sent to the workers.
    #[command(flatten)]
    pub tls: TlsFlags,
}

/// `stampede target scheduler`.
#[derive(Debug, Args)]
pub struct TargetSchedulerOpt {
    /// Address to listen on (the priority runner's scheduler port).
    #[arg(long, default_value = "127.0.0.1:50051", value_name = "ADDR")]
    pub bind: SocketAddr,
    /// Requests run at once (simulated GPUs).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub gpus: usize,
    /// Service time of a model, `NAME=DURATION`; repeat for each model (default resnet50=5ms
    /// and vit=12ms). Requests for other models are refused with INVALID_ARGUMENT.
    #[arg(long = "model", value_name = "NAME=DURATION", value_parser = model_time)]
    pub models: Vec<(String, HumanDuration)>,
    /// Serve gRPC over TLS (ALPN h2), with the certificate of --cert and --key, or without
    /// them a self-signed one for localhost, 127.0.0.1 and ::1 (made at start; see --cert-out).
    #[arg(long)]
    pub tls: bool,
    /// PEM certificate (chain, leaf first) to serve; implies --tls, needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Write the served certificate (PEM) to this file: what clients pass as --ca to trust a
    /// self-signed one. Needs --tls or --cert.
    #[arg(long, value_name = "FILE")]
    pub cert_out: Option<PathBuf>,
}

/// `NAME=DURATION`.
fn model_time(s: &str) -> Result<(String, HumanDuration), String> {
    let (name, time) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=DURATION (e.g. resnet50=5ms)"))?;
    if name.trim().is_empty() {
        return Err(format!("`{s}`: the model name is empty"));
    }
    Ok((name.trim().to_string(), time.trim().parse()?))
}

/// `stampede check`.
#[derive(Debug, Args)]
pub struct CheckOpt {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
}

/// `stampede placement ...`.
#[derive(Debug, Subcommand)]
pub enum PlacementCommand {
    /// Learn execution time from recorded runs: gradient-boosted trees, checked by ten-fold
    /// cross-validation (MAE, RMSE, R², feature importances printed), saved as a model file.
    ///
    /// Rows: CSV with the columns model, conv_layers, pool_layers, fc_layers, filter_details,
    /// total_parameters, model_input_size, model_output_size, cpu_usage(percentage),
    /// disk_usage(percentage), device_type, execution_time (seconds); any order, extra columns
    /// ignored.
    ///
    /// Example: stampede placement fit --data runs.csv --data lab.csv --out model.json
    Fit(PlacementFitOpt),
    /// Answer `POST /api/profiling` (as PEPPER's Profiler does): the predicted execution time on a
    /// given device and load, or, with Prometheus, the fastest node of the cluster.
    ///
    /// Example: stampede placement serve --port 7001 --model model.json --prometheus
    /// http://10.0.0.5:9090
    Serve(PlacementServeOpt),
    /// Append one row per worker node of a finished run to a CSV file: the scenario's
    /// `[placement]` model and device, the node's mean request time and its CPU and disk usage
    /// during the run (from the run's summary.json).
    ///
    /// Example: stampede run s.toml --out results/ && stampede placement record --scenario
    /// s.toml --results results/ --data runs.csv
    Record(PlacementRecordOpt),
    /// Write runs made up from a known law (time grows with parameters and layers, is scaled
    /// per device and slowed by CPU load): a data set to try `fit` and `serve` on.
    ///
    /// Example: stampede placement generate --rows 2000 --out runs.csv
    Generate(PlacementGenerateOpt),
}

/// `stampede placement fit`.
#[derive(Debug, Args)]
pub struct PlacementFitOpt {
    /// A CSV file of runs; repeat to learn from several.
    #[arg(long, required = true, value_name = "CSV")]
    pub data: Vec<PathBuf>,
    /// Where to write the model file (JSON).
    #[arg(long, default_value = "model.json", value_name = "FILE")]
    pub out: PathBuf,
    /// Folds of the cross-validation.
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub folds: usize,
    /// Trees in the ensemble.
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub trees: usize,
    /// Depth of each tree.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub depth: usize,
    /// Shrinkage of each tree's contribution.
    #[arg(long, default_value_t = 0.1, value_name = "X")]
    pub learning_rate: f32,
    /// Seed of the folds and of the importance permutations.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub seed: u64,
}

/// `stampede placement serve`.
#[derive(Debug, Args)]
pub struct PlacementServeOpt {
    /// Port to listen on (PEPPER's Profiler listens on 7001).
    #[arg(long, default_value_t = 7001)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    pub bind: std::net::IpAddr,
    /// The model file from `stampede placement fit`; read again whenever it changes. Until it
    /// exists, requests get 503 saying how to make it.
    #[arg(long, default_value = "model.json", value_name = "FILE")]
    pub model: PathBuf,
    /// Prometheus for cluster-form requests: `http://host:port` (or PEPPER's `host:port`).
    #[arg(long, env = "PROMETHEUS_IP", value_name = "URL")]
    pub prometheus: Option<String>,
}

/// `stampede placement record`.
#[derive(Debug, Args)]
pub struct PlacementRecordOpt {
    /// The scenario file of the run; its `[placement]` table names the model and the devices.
    #[arg(long, value_name = "FILE")]
    pub scenario: PathBuf,
    /// The run's results: the `--out` directory, or its summary.json.
    #[arg(long, value_name = "DIR")]
    pub results: PathBuf,
    /// The CSV file to append the rows to (created with its header if new).
    #[arg(long, value_name = "CSV")]
    pub data: PathBuf,
}

/// `stampede placement generate`.
#[derive(Debug, Args)]
pub struct PlacementGenerateOpt {
    /// Rows to write.
    #[arg(long, default_value = "2000", value_name = "N")]
    pub rows: Count,
    /// Distinct models (`model-1` ... `model-N`, the same for every seed).
    #[arg(long, default_value = "30", value_name = "N")]
    pub models: Count,
    /// Seed of the rows (devices, loads, noise).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seed: u64,
    /// The CSV file to write (replaced); standard output without it.
    #[arg(long, value_name = "CSV")]
    pub out: Option<PathBuf>,
}

/// Exit codes (documented in `--help` and the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The run finished and every threshold held.
    Success,
    /// Something went wrong before or around the run.
    Error,
    /// The run did not pass: a threshold was breached, or every request failed.
    ThresholdBreached,
    /// The run failed: it could not take place, or lost every worker.
    Incomplete,
    /// The run was stopped before its end (a signal, the API, the TUI).
    Stopped,
    /// A worker was lost and its share moved (without `--tolerate-worker-loss`).
    Degraded,
    /// Some request failed, with `--exit-code-on-error N`: exit N.
    OnError(u8),
    /// Interrupted twice.
    Interrupted,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(match e {
            Exit::Success => 0,
            Exit::Error => 1,
            Exit::ThresholdBreached => 3,
            Exit::Incomplete => 4,
            Exit::Stopped => 5,
            Exit::Degraded => 6,
            Exit::OnError(n) => n,
            Exit::Interrupted => 130,
        })
    }
}

/// Logs go to stderr, or to `logs` while a terminal UI holds the screen; `run` is quiet by
/// default (warnings), the long-lived verbs say more.
pub fn init_tracing(opt: &Opt, logs: &LogLines) {
    let (default, tui) = match &opt.command {
        Command::Run(o) => ("warn", o.flags.tui),
        Command::Master(o) => ("info", o.flags.tui),
        Command::Check(_) | Command::Loadgen(_) => ("warn", false),
        Command::Placement(p) if !matches!(p, PlacementCommand::Serve(_)) => ("warn", false),
        Command::Profile(p) if !p.is_serve() => ("warn", false),
        _ => ("info", false),
    };
    let filter = opt
        .log
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| default.to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(LogWriter(logs.clone()))
        // Colour codes would show as garbage in the terminal UI's log view.
        .with_ansi(!tui)
        .with_target(false)
        .try_init();
}

/// Where each log line goes: stderr, or the terminal UI's log while it holds the screen.
struct LogWriter(LogLines);

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogSink;

    fn make_writer(&'a self) -> LogSink {
        self.sink(false)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LogSink {
        // Levels order by verbosity: WARN and ERROR are the ones at or below WARN.
        self.sink(*meta.level() <= Level::WARN)
    }
}

impl LogWriter {
    fn sink(&self, important: bool) -> LogSink {
        if self.0.capturing() {
            LogSink::Captured {
                logs: self.0.clone(),
                important,
                line: Vec::new(),
            }
        } else {
            LogSink::Stderr(std::io::stderr())
        }
    }
}

/// One log event's writer: the formatter writes the whole line, then drops it.
enum LogSink {
    Stderr(std::io::Stderr),
    Captured {
        logs: LogLines,
        important: bool,
        line: Vec<u8>,
    },
}

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            LogSink::Stderr(e) => e.write(buf),
            LogSink::Captured { line, .. } => {
                line.extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            LogSink::Stderr(e) => e.flush(),
            LogSink::Captured { .. } => Ok(()),
        }
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        if let LogSink::Captured {
            logs,
            important,
            line,
        } = self
            && !line.is_empty()
        {
            logs.push(String::from_utf8_lossy(line).into_owned(), *important);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_port_alone_binds_loopback() {
        assert_eq!(api_addr("8089").unwrap(), "127.0.0.1:8089".parse().unwrap());
        assert_eq!(
            api_addr("0.0.0.0:8089").unwrap(),
            "0.0.0.0:8089".parse().unwrap()
        );
        assert!(api_addr("localhost").is_err());
        assert_eq!("-2s".parse::<SignedDuration>().unwrap().0, -2_000_000_000);
    }
}
