//! The command line: one verb per job, clap derive, help text from the doc comments, human
//! units (`30s`, `2m`, `10k`). Flags that override the scenario are shared by `run` and
//! `master` through [`ScenarioFlags`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use stampede_scenarios::Arrival;
use stampede_scenarios::units::{Count, HumanDuration, Rate};

/// Distributed load testing for inference systems and web services.
///
/// A master splits a scenario across worker processes over QUIC; workers generate the load
/// and record it in HDR histograms; the master merges them exactly.
///
/// Exit codes: 0 run finished and every threshold held; 1 error (bad scenario, bad flag
/// value, cannot bind, ...); 2 bad command line; 3 a threshold was breached; 4 the run could
/// not finish (every worker lost or rejected the scenario); 130 interrupted twice.
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
    /// Example: stampede master --bind 0.0.0.0:7400 --token S --expect-workers 4
    /// --scenario F --headless --duration 2m --out results/
    Master(MasterOpt),
    /// Join a master and generate load for it.
    ///
    /// Example: stampede worker --master 10.0.0.5:7400 --token S
    Worker(WorkerOpt),
    /// Start a built-in target (a system under test for demos and benchmarks).
    #[command(subcommand)]
    Target(TargetCommand),
    /// Validate a scenario file and describe it, without running it.
    Check(CheckOpt),
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
    /// Spacing of open-model arrivals: `poisson` (default) or `constant`.
    #[arg(long, value_name = "KIND")]
    pub arrival: Option<Arrival>,
    /// Base URL of the system under test, replacing the scenario's target.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Write summary.json, stats.csv, stats_history.csv, failures.csv and latency.hlog here.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// No interactive display: start when the workers are there, exit when the run ends.
    #[arg(long)]
    pub headless: bool,
}

/// `stampede run`.
#[derive(Debug, Args)]
pub struct RunOpt {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// Local worker processes to start.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub workers: usize,
    /// Also serve the HTTP API and /metrics here (e.g. 127.0.0.1:8089).
    #[arg(long, value_name = "ADDR")]
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
    /// Shared secret workers (and API clients that change runs) must present.
    #[arg(long, env = "STAMPEDE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Start the scenario when this many workers have joined (default with --headless: 1).
    #[arg(long, value_name = "N")]
    pub expect_workers: Option<usize>,
    /// The scenario file (TOML). Without it, runs are started with `POST /api/runs`.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Serve the HTTP API and /metrics here (e.g. 127.0.0.1:8089).
    #[arg(long, value_name = "ADDR")]
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
    /// The master's token.
    #[arg(long, env = "STAMPEDE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// This worker's name in the master's lists (default: host name and pid).
    #[arg(long)]
    pub name: Option<String>,
    /// Cores to use: the worker's weight in the split (default: all of this machine's).
    #[arg(long)]
    pub cores: Option<u32>,
    /// How long to keep trying to reach the master.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub connect_timeout: HumanDuration,
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
}

/// `stampede check`.
#[derive(Debug, Args)]
pub struct CheckOpt {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
}

/// Exit codes (documented in `--help` and the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The run finished and every threshold held.
    Success,
    /// Something went wrong before or around the run.
    Error,
    /// A threshold was breached.
    ThresholdBreached,
    /// The run could not finish.
    Incomplete,
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
            Exit::Interrupted => 130,
        })
    }
}

/// Logs go to stderr; `run` is quiet by default (warnings), the long-lived verbs say more.
pub fn init_tracing(opt: &Opt) {
    let default = match opt.command {
        Command::Run(_) | Command::Check(_) => "warn",
        _ => "info",
    };
    let filter = opt
        .log
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| default.to_string());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
