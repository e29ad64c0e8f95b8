//! What `run` and `master` share: loading the scenario with the command line's overrides,
//! starting a built-in target, the progress display, and the end of a run (table, exit code).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use stampede_master::snapshot::{RunStatus, Snapshot, WorkerState};
use stampede_master::summary::RunSummary;
use stampede_master::tui::{LogLines, TuiConfig};
use stampede_protocol::handshake::Token;
use stampede_scenarios::llm::Backend;
use stampede_scenarios::model::TlsOverrides;
use stampede_scenarios::{Kind, Overrides, ScenarioConfig, SweepFile, Target};
use stampede_targets::http::{HttpTargetConfig, HttpTargetStats};
use stampede_targets::llm::{LlmTargetConfig, LlmTargetStats};
use stampede_targets::registry::{RegistryConfig, RegistryStats};
use stampede_targets::scheduler::{SchedulerConfig, SchedulerStats};
use stampede_targets::tls::{ServerTls, Transport};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::cli::{Exit, ScenarioFlags, TokenOpt};

/// Load a scenario file and apply the flags.
pub fn load_scenario(path: &Path, flags: &ScenarioFlags) -> anyhow::Result<ScenarioConfig> {
    let base = ScenarioConfig::load(path)?;
    let overrides = Overrides {
        duration: flags.duration.map(|d| d.0),
        users: flags.users.map(|u| u.0),
        spawn_rate: flags.spawn_rate.map(|r| r.0),
        rate: flags.rate.map(|r| r.0),
        arrival: flags.arrival,
        burstiness: flags.burstiness,
        sweep: match (&flags.sweep_rates, &flags.sweep_users) {
            (Some(rates), _) => Some(SweepFile {
                rates: rates.clone(),
                ..SweepFile::default()
            }),
            (None, Some(users)) => Some(SweepFile {
                users: users.clone(),
                ..SweepFile::default()
            }),
            (None, None) => None,
        },
        target: flags.target.clone(),
        backend: flags.backend.clone(),
        model: flags.model.clone(),
        requests_csv: flags.requests_csv.is_some(),
        tls: TlsOverrides {
            ca: flags.tls.ca.clone(),
            insecure: flags.tls.insecure,
            client_cert: flags.tls.client_cert.clone(),
            client_key: flags.tls.client_key.clone(),
            server_name: flags.tls.server_name.clone(),
        },
        http_version: flags.http_version,
    };
    if overrides.requests_csv {
        if base.kind != Kind::Llm {
            anyhow::bail!(
                "--requests-csv applies to llm scenarios; {} is a `{}` scenario",
                path.display(),
                base.kind
            );
        }
        if matches!(flags.requests_csv, Some(None)) && flags.out.is_none() {
            anyhow::bail!(
                "--requests-csv without a PATH writes to <out>/requests.csv: give --out DIR or a PATH"
            );
        }
    }
    if (overrides.backend.is_some() || overrides.model.is_some()) && base.kind != Kind::Llm {
        anyhow::bail!(
            "--backend and --model apply to llm scenarios; {} is a `{}` scenario",
            path.display(),
            base.kind
        );
    }
    let mut config = if overrides == Overrides::default() {
        base
    } else {
        base.with_overrides(&overrides)?
    };
    if overrides.burstiness.is_some() && !config.load.is_open() {
        anyhow::bail!(
            "--burstiness shapes open-model arrivals; {} runs a closed load (give --rate too)",
            path.display()
        );
    }
    // Prompts and TLS files travel inside the scenario, so workers on other hosts need none.
    config.resolve_files(&path.display().to_string())?;
    if let Some(llm) = &config.file.llm
        && let Ok(backend) = llm.backend.parse::<stampede_scenarios::llm::Backend>()
        && llm.stream
        && !backend.supports_streaming()
    {
        eprintln!(
            "note: the `{}` backend has no streaming API: answers are read whole (E2E, tokens and time per output token; no TTFT, TPOT or ITL)",
            backend.name()
        );
    }
    Ok(config)
}

/// The counters of a built-in target.
/// Where record streams go instead of `<out>/<stream>.csv`: `--requests-csv PATH`.
pub fn record_paths(flags: &ScenarioFlags) -> std::collections::BTreeMap<String, PathBuf> {
    let mut paths = std::collections::BTreeMap::new();
    if let Some(Some(path)) = &flags.requests_csv {
        paths.insert(
            stampede_scenarios::driver::llm::REQUESTS_STREAM.to_string(),
            path.clone(),
        );
    }
    paths
}

pub enum BuiltinStats {
    /// `builtin:http`.
    Http(Arc<HttpTargetStats>),
    /// `builtin:llm`.
    Llm(Arc<LlmTargetStats>),
    /// `builtin:registry`.
    Registry(Arc<RegistryStats>),
    /// `builtin:scheduler`.
    Scheduler(Arc<SchedulerStats>),
}

impl BuiltinStats {
    /// Requests the target answered.
    pub fn requests(&self) -> u64 {
        match self {
            BuiltinStats::Http(s) => s.requests(),
            BuiltinStats::Llm(s) => s.snapshot().requests,
            BuiltinStats::Registry(s) => s.counts().requests,
            BuiltinStats::Scheduler(s) => s.counts().received,
        }
    }

    /// Output tokens the target wrote, for `builtin:llm`.
    pub fn output_tokens(&self) -> Option<u64> {
        match self {
            BuiltinStats::Llm(s) => Some(s.snapshot().completion_tokens),
            _ => None,
        }
    }
}

/// A built-in target started for a run; stops when dropped.
pub struct BuiltinTarget {
    /// Its base URL: `https://…` when started with [`TargetServe::tls`].
    pub url: String,
    /// With TLS, the self-signed certificate it serves (PEM, for `localhost`, `127.0.0.1`, `::1`
    /// and the bind address): what a client must trust to reach `url`.
    pub ca_pem: Option<String>,
    /// `builtin:llm`'s JetStream gRPC port (gRPC needs HTTP/2, the HTTP APIs are HTTP/1.1, so
    /// it is a second listener): where `backend = "jetstream"` is pointed.
    pub grpc_url: Option<String>,
    /// Its counters.
    pub stats: BuiltinStats,
    stop: CancellationToken,
}

impl Drop for BuiltinTarget {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// If the scenario's target is built in, start it on `ip` and point the scenario at it.
pub async fn start_builtin(
    config: ScenarioConfig,
    ip: std::net::IpAddr,
) -> anyhow::Result<(ScenarioConfig, Option<BuiltinTarget>)> {
    let Target::Builtin(kind) = &config.target else {
        return Ok((config, None));
    };
    let serve = builtin_serve(&config);
    let target = start_target_with(kind, ip, serve).await?;
    let url = match &target.grpc_url {
        Some(grpc) if speaks_grpc(&config) => grpc,
        _ => &target.url,
    };
    let mut config = config.retarget(url)?;
    // The target's certificate is made for this run: trust it, as `--ca` would, unless the
    // scenario says whom to trust itself.
    if let (Some(pem), Some(tls)) = (&target.ca_pem, config.file.tls.as_mut())
        && tls.material.ca.is_none()
        && !tls.insecure
    {
        tls.material.ca = Some(pem.clone());
    }
    Ok((config, Some(target)))
}

/// How a `builtin:` target serves the scenario: TLS when it has a `[tls]` table (the target's
/// certificate self-signed for the run), h2c for `[http] version = "2"` without one, else
/// plain HTTP/1.1 (the llm target's JetStream port is TLS when its HTTP port is). The
/// scheduler (priority) serves plaintext gRPC.
fn builtin_serve(config: &ScenarioConfig) -> TargetServe {
    let tls = config.file.tls.is_some() && config.kind != Kind::Priority;
    let h2 = config
        .file
        .http
        .as_ref()
        .and_then(|h| h.version)
        .is_some_and(|v| v == stampede_scenarios::model::HttpVersion::Http2);
    TargetServe {
        tls,
        h2c: !tls
            && h2
            && matches!(&config.target, Target::Builtin(k) if matches!(k.as_str(), "http" | "llm" | "registry")),
    }
}

/// Whether the scenario's requests are gRPC: an llm scenario with `backend = "jetstream"`.
fn speaks_grpc(config: &ScenarioConfig) -> bool {
    config
        .file
        .llm
        .as_ref()
        .is_some_and(|llm| llm.backend.parse() == Ok(Backend::JetStream))
}

impl BuiltinTarget {
    /// Where it listens, for the terminal: the URL, and the gRPC one if it has one.
    pub fn addresses(&self) -> String {
        match &self.grpc_url {
            Some(grpc) => format!("{} (JetStream gRPC on {grpc})", self.url),
            None => self.url.clone(),
        }
    }
}

/// How [`start_target_with`] makes a built-in target speak. [`Default`]: plaintext HTTP/1.1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TargetServe {
    /// HTTPS with a self-signed certificate (HTTP/2 by ALPN, else HTTP/1.1); the certificate
    /// comes back in [`BuiltinTarget::ca_pem`].
    pub tls: bool,
    /// Plaintext HTTP/2 with prior knowledge beside HTTP/1.1 (`http`, `llm` and `registry`).
    pub h2c: bool,
}

/// Start the built-in target `kind` (`http`, `llm`, `registry`, `scheduler`) on `ip`, any port,
/// in plaintext HTTP/1.1.
pub async fn start_target(kind: &str, ip: std::net::IpAddr) -> anyhow::Result<BuiltinTarget> {
    start_target_with(kind, ip, TargetServe::default()).await
}

/// [`start_target`], speaking as `serve` says. Refuses TLS or h2c for the scheduler (gRPC,
/// plaintext) and both at once.
pub async fn start_target_with(
    kind: &str,
    ip: std::net::IpAddr,
    serve: TargetServe,
) -> anyhow::Result<BuiltinTarget> {
    if serve.tls && serve.h2c {
        anyhow::bail!("built-in target `{kind}`: TLS and h2c exclude each other");
    }
    if (serve.tls || serve.h2c) && !matches!(kind, "http" | "llm" | "registry") {
        anyhow::bail!("built-in target `{kind}` has no TLS or h2c");
    }
    let tls = if serve.tls {
        let tls = ServerTls::self_signed(ip)
            .with_context(|| format!("starting the built-in {kind} target"))?;
        Some(Arc::new(tls))
    } else {
        None
    };
    let ca_pem = tls.as_ref().map(|tls| tls.certificate_pem().to_string());
    let transport = match tls {
        Some(tls) => Transport::Tls(tls),
        None if serve.h2c => Transport::H2c,
        None => Transport::Http1,
    };
    let scheme = transport.scheme();
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
        .await
        .with_context(|| format!("starting the built-in {kind} target"))?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let t = stop.clone();
    let mut grpc_url = None;
    let stats = match kind {
        "http" => {
            let config = HttpTargetConfig {
                transport,
                ..HttpTargetConfig::default()
            };
            let stats = Arc::new(HttpTargetStats::default());
            let s = stats.clone();
            tokio::spawn(async move {
                if let Err(e) = stampede_targets::http::serve(listener, config, s, t).await {
                    tracing::error!("built-in target: {e:#}");
                }
            });
            BuiltinStats::Http(stats)
        }
        "llm" => {
            let stats = Arc::new(LlmTargetStats::default());
            let s = stats.clone();
            // The simulated server answers for whatever model the scenario names.
            let target = LlmTargetConfig {
                any_model: true,
                transport,
                ..LlmTargetConfig::default()
            };
            // JetStream's gRPC on a port of its own, as `stampede target llm --grpc-bind`.
            let grpc = tokio::net::TcpListener::bind(SocketAddr::new(ip, 0))
                .await
                .context("starting the built-in llm target's gRPC listener")?;
            // TLS too when the HTTP port speaks it (the same certificate).
            grpc_url = Some(format!("{scheme}://{}", grpc.local_addr()?));
            tokio::spawn(async move {
                if let Err(e) =
                    stampede_targets::llm::serve_with_grpc(listener, Some(grpc), target, s, t).await
                {
                    tracing::error!("built-in target: {e:#}");
                }
            });
            BuiltinStats::Llm(stats)
        }
        "registry" => {
            let stats = Arc::new(RegistryStats::new());
            let s = stats.clone();
            // Its own thread and runtime: serving gigabytes must not starve the master's
            // protocol tasks (a worker that hears nothing for 4 s counts the master as lost).
            serve_on_own_thread("registry", listener, move |l| {
                let config = RegistryConfig {
                    transport,
                    ..RegistryConfig::default()
                };
                stampede_targets::registry::serve(l, config, s, t)
            })?;
            BuiltinStats::Registry(stats)
        }
        "scheduler" => {
            let stats = Arc::new(SchedulerStats::default());
            let s = stats.clone();
            // Its own thread and runtime, like the registry: decoding 600 KB tensors at
            // hundreds per second must not starve the master's protocol tasks.
            serve_on_own_thread("scheduler", listener, move |l| {
                stampede_targets::scheduler::serve(l, SchedulerConfig::default(), s, t)
            })?;
            BuiltinStats::Scheduler(stats)
        }
        other => anyhow::bail!("built-in target `{other}` cannot be started by this build"),
    };
    let url = format!("{scheme}://{addr}");
    Ok(BuiltinTarget {
        url,
        ca_pem,
        grpc_url,
        stats,
        stop,
    })
}

/// Where an API-driven master keeps its runs when no `--out` is given:
/// `$XDG_DATA_HOME/stampede` (or `~/.local/share/stampede`).
pub fn default_data_dir() -> Option<std::path::PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/share"))
        })?;
    Some(base.join("stampede"))
}

/// A random token for a master whose workers are its own children.
pub fn random_token() -> Token {
    Token::generate()
}

/// The token of `opt`: `--token` (with a warning that the process list shows it),
/// `--token-file`, else `STAMPEDE_TOKEN`; `None` if none is given. A token shorter than 16
/// bytes is an error.
pub fn token(opt: &TokenOpt) -> anyhow::Result<Option<Token>> {
    if let Some(t) = &opt.token {
        eprintln!(
            "warning: --token is visible to every user of this machine in the process list; prefer --token-file FILE or the STAMPEDE_TOKEN environment variable"
        );
        return Token::new(t.as_str()).map(Some).context("--token");
    }
    if let Some(path) = &opt.token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--token-file: reading {}", path.display()))?;
        let line = text.lines().next().unwrap_or("").trim();
        return Token::new(line)
            .map(Some)
            .with_context(|| format!("--token-file {}", path.display()));
    }
    match std::env::var("STAMPEDE_TOKEN") {
        Ok(t) if !t.is_empty() => Token::new(t).map(Some).context("STAMPEDE_TOKEN"),
        _ => Ok(None),
    }
}

/// A master's token: the one given, else a fresh one printed once with how workers pass it.
pub fn master_token(opt: &TokenOpt, port: u16) -> anyhow::Result<Token> {
    if let Some(t) = token(opt)? {
        return Ok(t);
    }
    let t = Token::generate();
    eprintln!(
        "no token given: generated one, shown only now: {}\n  workers join with: STAMPEDE_TOKEN={} stampede worker --master HOST:{port}\n  (or write it to a file only they can read and pass --token-file FILE)",
        t.as_str(),
        t.as_str()
    );
    Ok(t)
}

/// Shows the run's progress: a bar on a terminal, a line every 5 s otherwise; and each hint
/// among the run's events ([`stampede_master::summary::is_hint`]) once, as it comes.
pub struct Progress {
    bar: Option<ProgressBar>,
    last_line: std::time::Instant,
    /// Hints already printed: snapshots repeat a run's events every second.
    hinted: std::collections::BTreeSet<String>,
}

impl Progress {
    /// A progress display on stderr.
    pub fn new() -> Progress {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = ProgressBar::new(0);
            // The invariant: the template is a fixed, valid indicatif template.
            let style =
                ProgressStyle::with_template("{spinner} [{bar:24}] {msg}").expect("valid template");
            bar.set_style(style.progress_chars("=> "));
            bar
        });
        Progress {
            bar,
            last_line: std::time::Instant::now(),
            hinted: std::collections::BTreeSet::new(),
        }
    }

    /// Show the latest snapshot.
    pub fn update(&mut self, snap: &Snapshot) {
        let events = snap.run.iter().flat_map(|r| &r.events);
        for hint in events.filter(|e| stampede_master::summary::is_hint(e)) {
            if self.hinted.insert(hint.clone()) {
                match &self.bar {
                    // Above the bar, which stays.
                    Some(bar) => bar.println(hint),
                    None => eprintln!("{hint}"),
                }
            }
        }
        let line = progress_line(snap);
        let (elapsed, total) = snap
            .run
            .as_ref()
            .map_or((0.0, 0.0), |r| (r.elapsed_s, r.duration_s));
        match &self.bar {
            Some(bar) => {
                bar.set_length(total.ceil() as u64);
                bar.set_position(elapsed.min(total) as u64);
                bar.set_message(line);
                bar.tick();
            }
            None => {
                if self.last_line.elapsed() >= Duration::from_secs(5) {
                    eprintln!("{line}");
                    self.last_line = std::time::Instant::now();
                }
            }
        }
    }

    /// Remove the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// One line: elapsed, workers, users or rate, requests, rate, failures, p99.
pub fn progress_line(snap: &Snapshot) -> String {
    let workers = snap.count(WorkerState::Running)
        + snap.count(WorkerState::Assigned)
        + snap.count(WorkerState::Ready);
    match &snap.run {
        None => format!("waiting: {workers} worker(s) joined"),
        Some(r) => {
            let load = if r.target_rate > 0.0 {
                format!("{:.0} req/s target", r.target_rate)
            } else {
                format!("{} users", r.users)
            };
            format!(
                "{:>4.0}s/{:.0}s {} · {} workers · {} · {} reqs · {:.0} req/s · {} fails · p99 {:.1} ms",
                r.elapsed_s,
                r.duration_s,
                r.state,
                workers,
                load,
                r.total.requests,
                r.total.rps,
                r.total.failures,
                r.total.p99_ms
            )
        }
    }
}

/// How following a run ended.
pub enum Followed {
    /// The run finished (or the master stopped: `None`).
    Finished(Option<Arc<RunSummary>>),
    /// Ctrl-C twice: quit without waiting.
    Abandoned,
}

/// Follow snapshots until the run finishes, updating the progress display. The first Ctrl-C
/// calls `on_interrupt` (which should stop the run); the second abandons.
pub async fn follow(
    master: &mut stampede_master::Master,
    interrupts: &Interrupts,
    mut on_interrupt: impl FnMut(),
) -> Followed {
    let mut progress = Progress::new();
    let mut snaps: watch::Receiver<Arc<Snapshot>> = master.snapshots.clone();
    let mut interrupted = false;
    let result = loop {
        tokio::select! {
            s = master.next_finished() => break Followed::Finished(s),
            r = snaps.changed() => {
                if r.is_err() {
                    break Followed::Finished(None);
                }
                let snap = snaps.borrow_and_update().clone();
                progress.update(&snap);
            }
            _ = interrupts.first.cancelled(), if !interrupted => {
                interrupted = true;
                progress.finish();
                eprintln!("interrupted: stopping the run and writing results (Ctrl-C again to quit at once)");
                on_interrupt();
            }
            _ = interrupts.second.cancelled() => break Followed::Abandoned,
        }
    };
    progress.finish();
    result
}

/// Whether to show the terminal UI: asked for with `--tui` and possible here. When it is not
/// possible, says so in one line (the run then goes on headless).
pub fn use_tui(flags: &ScenarioFlags) -> bool {
    if !flags.tui {
        return false;
    }
    if stampede_master::tui::possible() {
        return true;
    }
    eprintln!("--tui needs a terminal (stdin and stdout are not both a TTY): going on headless");
    false
}

/// What the terminal UI shows besides the master's snapshots.
pub struct TuiSettings {
    /// Where workers join.
    pub join_hint: String,
    /// The master's scenario, one line.
    pub scenario: Option<String>,
    /// Where log lines go while the UI holds the screen.
    pub logs: LogLines,
}

/// Show the terminal UI until the user quits; also collect the runs finished meanwhile, in
/// order (the caller shuts the master down and prints them after the terminal is back).
pub async fn watch_in_tui(
    master: &mut stampede_master::Master,
    interrupts: &Interrupts,
    settings: TuiSettings,
) -> (anyhow::Result<()>, Vec<Arc<RunSummary>>) {
    let ui = stampede_master::tui::run(TuiConfig {
        snapshots: master.snapshots.clone(),
        master: master.handle(),
        join_hint: settings.join_hint,
        scenario: settings.scenario,
        logs: settings.logs,
        interrupted: interrupts.first.clone(),
        // A test hook (tests/tui.rs): `!` panics, to check the terminal comes back.
        panic_key: std::env::var_os("STAMPEDE_TEST_PANIC_KEY").is_some(),
    });
    tokio::pin!(ui);
    let mut finished = Vec::new();
    let result = loop {
        tokio::select! {
            r = &mut ui => break r,
            Some(s) = master.next_finished() => finished.push(s),
        }
    };
    (result, finished)
}

/// After the terminal UI: the table of each run it saw finish (and, for a `priority`
/// scenario, its per-class table and LoadGen summaries), and the last one's exit code (`None`
/// when no run finished).
pub fn conclude_all(
    summaries: &[Arc<RunSummary>],
    scenario: Option<&ScenarioConfig>,
    out: Option<&Path>,
    on_error: Option<u8>,
) -> Option<Exit> {
    summaries.iter().fold(None, |_, s| {
        let exit = conclude(s, out, on_error);
        if let Some(scenario) = scenario {
            priority_report(s, scenario, out);
        }
        Some(exit)
    })
}

/// One line for a scenario: its name and load.
pub fn scenario_line(s: &ScenarioConfig) -> String {
    format!(
        "{} ({})",
        s.name,
        stampede_master::coordinator::describe(&s.load, s.duration)
    )
}

/// Print the table and say how the run ended, as an exit code: the run's status first
/// (failed, stopped), then whether it passed, then how it lost workers; `on_error` is
/// `--exit-code-on-error`.
pub fn conclude(summary: &RunSummary, out: Option<&Path>, on_error: Option<u8>) -> Exit {
    println!("{}", stampede_master::results::table(summary));
    if let Some(dir) = out {
        eprintln!("results written to {}", dir.display());
    }
    match summary.status() {
        RunStatus::Failed | RunStatus::Incomplete => {
            eprintln!("the run failed: {}", failed_because(summary));
            return Exit::Incomplete;
        }
        RunStatus::Stopped => {
            eprintln!(
                "the run was stopped before its end ({}); its results cover the time it ran",
                summary.stop_reason
            );
            return Exit::Stopped;
        }
        RunStatus::Completed | RunStatus::Degraded => {}
    }
    if summary.all_failed() {
        eprintln!("every request failed");
        return Exit::ThresholdBreached;
    }
    if summary.thresholds.iter().any(|t| !t.passed) {
        eprintln!("a threshold was breached");
        return Exit::ThresholdBreached;
    }
    if summary.status() == RunStatus::Degraded && !summary.tolerate_worker_loss {
        eprintln!(
            "the run is degraded: a worker was lost and its share moved to the others \
             (--tolerate-worker-loss accepts that)"
        );
        return Exit::Degraded;
    }
    if let Some(code) = on_error.filter(|_| summary.total.failures > 0) {
        eprintln!(
            "{} request(s) failed (--exit-code-on-error {code})",
            summary.total.failures
        );
        return Exit::OnError(code);
    }
    Exit::Success
}

/// Why a failed run failed, in words.
fn failed_because(summary: &RunSummary) -> String {
    if summary.stop_reason.is_failure() {
        summary.stop_reason.to_string()
    } else {
        "no request was made".to_string()
    }
}

/// For a `priority` run: the MLPerf-LoadGen priority runner's per-class table on stdout and, with
/// `loadgen_dir`, each class's LoadGen-style summary in `loadgen_dir/tier{T}_{slo}/`.
pub fn priority_report(
    summary: &RunSummary,
    scenario: &ScenarioConfig,
    loadgen_dir: Option<&Path>,
) {
    use stampede_master::priority::{ClassReport, table, write_loadgen_logs};
    let reports = ClassReport::of(summary, scenario);
    if reports.is_empty() {
        return;
    }
    println!("{}", table(&reports));
    if let Some(dir) = loadgen_dir {
        match write_loadgen_logs(dir, &reports) {
            Ok(files) => eprintln!(
                "LoadGen summaries: {} class folder(s) in {}",
                files.len(),
                dir.display()
            ),
            Err(e) => eprintln!(
                "cannot write the LoadGen summaries to {}: {e}",
                dir.display()
            ),
        }
    }
}

/// Stop signals, counted: the first asks for a graceful stop, the second for quitting at
/// once. SIGINT (Ctrl-C), SIGTERM (`docker stop`, Kubernetes) and SIGHUP (a closed terminal)
/// all count.
pub struct Interrupts {
    /// Cancelled at the first signal.
    pub first: CancellationToken,
    /// Cancelled at the second.
    pub second: CancellationToken,
}

/// Start counting stop signals.
pub fn interrupts() -> Interrupts {
    let i = Interrupts {
        first: CancellationToken::new(),
        second: CancellationToken::new(),
    };
    let (first, second) = (i.first.clone(), i.second.clone());
    tokio::spawn(async move {
        let mut signals = StopSignals::new();
        if signals.recv().await.is_some() {
            first.cancel();
            if signals.recv().await.is_some() {
                second.cancel();
            }
        }
    });
    i
}

/// The signals that ask a process to stop: SIGINT, SIGTERM and SIGHUP (Ctrl-C elsewhere).
/// Once created, none of them ends the process by itself any more.
pub struct StopSignals {
    #[cfg(unix)]
    unix: Option<[tokio::signal::unix::Signal; 3]>,
}

impl StopSignals {
    /// Listen from now on.
    pub fn new() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let kinds = [
                SignalKind::interrupt(),
                SignalKind::terminate(),
                SignalKind::hangup(),
            ];
            let unix = match kinds.map(signal) {
                [Ok(int), Ok(term), Ok(hup)] => Some([int, term, hup]),
                _ => None,
            };
            StopSignals { unix }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// The next stop signal's name as Go and the shell print it (`interrupt`, `terminated`,
    /// `hangup`); `None` if signals cannot be received.
    pub async fn recv(&mut self) -> Option<&'static str> {
        #[cfg(unix)]
        if let Some([int, term, hup]) = self.unix.as_mut() {
            return tokio::select! {
                s = int.recv() => s.map(|_| "interrupt"),
                s = term.recv() => s.map(|_| "terminated"),
                s = hup.recv() => s.map(|_| "hangup"),
            };
        }
        tokio::signal::ctrl_c().await.ok().map(|_| "interrupt")
    }
}

impl Default for StopSignals {
    fn default() -> Self {
        StopSignals::new()
    }
}

/// Serve a built-in target on a thread of its own with a current-thread runtime, so that its
/// work cannot starve the master's protocol tasks; errors are logged.
fn serve_on_own_thread<F, Fut>(
    name: &str,
    listener: tokio::net::TcpListener,
    serve: F,
) -> anyhow::Result<()>
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let listener = listener.into_std()?;
    std::thread::Builder::new()
        .name(format!("builtin-{name}"))
        .spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|rt| {
                    rt.block_on(
                        async move { serve(tokio::net::TcpListener::from_std(listener)?).await },
                    )
                });
            if let Err(e) = served {
                tracing::error!("built-in target: {e:#}");
            }
        })
        .with_context(|| format!("starting the built-in {name}'s thread"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[tokio::test]
    async fn start_target_with_tls_gives_an_https_url_and_the_certificate() {
        let ip = Ipv4Addr::LOCALHOST.into();
        let plain = start_target("http", ip).await.unwrap();
        assert!(plain.url.starts_with("http://"), "{}", plain.url);
        assert!(plain.ca_pem.is_none());

        let tls = TargetServe {
            tls: true,
            h2c: false,
        };
        for kind in ["http", "llm", "registry"] {
            let target = start_target_with(kind, ip, tls).await.unwrap();
            assert!(
                target.url.starts_with("https://127.0.0.1:"),
                "{}",
                target.url
            );
            let pem = target.ca_pem.as_deref().unwrap();
            assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
            if kind == "llm" {
                let grpc = target.grpc_url.as_deref().unwrap();
                assert!(grpc.starts_with("https://127.0.0.1:"), "{grpc}");
            }
        }

        let h2c = TargetServe {
            tls: false,
            h2c: true,
        };
        let target = start_target_with("http", ip, h2c).await.unwrap();
        assert!(target.url.starts_with("http://") && target.ca_pem.is_none());
        let target = start_target_with("registry", ip, h2c).await.unwrap();
        assert!(target.url.starts_with("http://") && target.ca_pem.is_none());
        assert!(start_target_with("scheduler", ip, tls).await.is_err());
        let both = TargetServe {
            tls: true,
            h2c: true,
        };
        assert!(start_target_with("http", ip, both).await.is_err());
    }
}
