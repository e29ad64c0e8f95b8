//! `stampede run`: everything on this machine. A master on 127.0.0.1, N worker *processes*
//! (this same binary, `stampede worker`) joined over real QUIC on loopback, and the built-in
//! target when the scenario names one; progress while it runs, the table at the end.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use stampede_master::summary::RunSummary;
use stampede_master::tui::LogLines;
use stampede_master::{Master, MasterConfig};
use tokio::process::{Child, Command};

use super::common::{self, Followed, TuiSettings};
use crate::cli::{Exit, RunOpt};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub async fn run(opt: RunOpt, logs: LogLines) -> anyhow::Result<Exit> {
    if opt.workers == 0 {
        bail!("--workers must be at least 1");
    }
    let tui = common::use_tui(&opt.flags);
    let scenario = common::load_scenario(&opt.scenario, &opt.flags)?;
    if tui && scenario.sweep.is_some() {
        bail!("a sweep runs headless: drop --tui (each step's table is printed as it ends)");
    }
    let (scenario, target) = common::start_builtin(scenario, LOOPBACK).await?;
    if let Some(t) = &target {
        eprintln!("built-in target listening on {}", t.addresses());
    }
    let token = common::random_token();
    let interrupts = common::interrupts();
    let mut master = Master::start(
        MasterConfig {
            bind: SocketAddr::new(LOOPBACK, 0),
            token: token.clone(),
            identity: None,
            scenario: Some(scenario.clone()),
            // A sweep starts its steps itself.
            auto_start_at: scenario.sweep.is_none().then_some(opt.workers),
            out: opt.flags.out.clone(),
            records: common::record_paths(&opt.flags),
            runs_dir: opt.flags.out.as_ref().map(|o| o.join("runs")),
            target: Some(scenario.target.to_string()),
            api: opt.api,
            stop_grace: stop_grace(&scenario),
            tolerate_worker_loss: opt.flags.tolerate_worker_loss,
        },
        tokio_util::sync::CancellationToken::new(),
    )
    .await?;
    if let Some(api) = master.api_addr {
        eprintln!("API on http://{api} (token {})", token.as_str());
    }
    let mut children = spawn_workers(opt.workers, master.addr, token.as_str(), tui)?;
    if tui {
        let settings = TuiSettings {
            join_hint: format!("{} ({} local worker processes)", master.addr, opt.workers),
            scenario: Some(common::scenario_line(&scenario)),
            logs,
        };
        let (ui, mut finished) = common::watch_in_tui(&mut master, &interrupts, settings).await;
        finished.extend(master.shutdown().await);
        reap(children).await;
        ui?;
        return Ok(
            match common::conclude_all(
                &finished,
                Some(&scenario),
                opt.flags.out.as_deref(),
                opt.flags.exit_code_on_error,
            ) {
                Some(exit) => exit,
                None => {
                    eprintln!("no run finished");
                    Exit::Incomplete
                }
            },
        );
    }
    eprintln!(
        "running `{}` against {} with {} local worker processes for {}",
        scenario.name,
        scenario.target,
        opt.workers,
        stampede_scenarios::units::format_duration(scenario.duration)
    );
    let joined = wait_for_workers(&mut master, &mut children, opt.workers).await;
    if let (Ok(()), Some(sweep)) = (&joined, &scenario.sweep) {
        let swept = super::sweep::run_sweep(
            &mut master,
            &scenario,
            sweep,
            opt.flags.out.as_deref(),
            &interrupts,
        )
        .await;
        master.shutdown().await;
        reap(children).await;
        return swept;
    }
    if let Err(e) = joined {
        master.shutdown().await;
        reap(children).await;
        return Err(e);
    }
    let exit = follow_to_end(master, children, &interrupts, |summary| {
        if let Some(t) = &target {
            tracing::info!(
                target_requests = t.stats.requests(),
                target_output_tokens = t.stats.output_tokens(),
                "built-in target count"
            );
        }
        let exit = common::conclude(
            summary,
            opt.flags.out.as_deref(),
            opt.flags.exit_code_on_error,
        );
        common::priority_report(summary, &scenario, opt.flags.out.as_deref());
        exit
    })
    .await;
    Ok(exit)
}

/// Follow the master's one run to its end (the first Ctrl-C stops the run, the second
/// abandons it), let `finished` turn a finished run's summary into the exit code, then shut
/// the master down and reap the local worker processes. How `run` and `loadgen` end.
pub(super) async fn follow_to_end(
    mut master: Master,
    children: Vec<Child>,
    interrupts: &common::Interrupts,
    finished: impl FnOnce(&RunSummary) -> Exit,
) -> Exit {
    let snaps = master.snapshots.clone();
    let stopper = master_stopper(&master);
    let followed = common::follow(&mut master, interrupts, move || {
        if let Some(id) = snaps.borrow().run.as_ref().map(|r| r.id) {
            stopper(id);
        }
    })
    .await;
    let exit = match followed {
        Followed::Finished(Some(summary)) => finished(&summary),
        Followed::Finished(None) => {
            eprintln!("the master stopped before the run finished");
            Exit::Incomplete
        }
        Followed::Abandoned => {
            // The second signal: write what the master has, now.
            master.handle().finish_now().await;
            Exit::Interrupted
        }
    };
    master.shutdown().await;
    reap(children).await;
    exit
}

/// How long the master waits for final reports: the driver's request timeout plus slack.
pub fn stop_grace(scenario: &stampede_scenarios::ScenarioConfig) -> Duration {
    scenario.request_timeout() + Duration::from_secs(5)
}

fn master_stopper(master: &Master) -> impl Fn(u64) + Send + 'static {
    let handle = master.handle();
    move |id| {
        let h = handle.clone();
        tokio::spawn(async move {
            let _ = h.stop_run(id).await;
        });
    }
}

/// Start `n` local worker processes. With `quiet_stderr` (the terminal UI holds the screen)
/// their stderr lines come through this process's log instead of the terminal.
pub(super) fn spawn_workers(
    n: usize,
    master: SocketAddr,
    token: &str,
    quiet_stderr: bool,
) -> anyhow::Result<Vec<Child>> {
    let exe = std::env::current_exe().context("finding the stampede binary to start workers")?;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let per_worker = (cores / n).max(1);
    (0..n)
        .map(|i| {
            let mut cmd = worker_command(&exe, master, &format!("local-{}", i + 1), token);
            if quiet_stderr {
                // Colour codes would show as garbage in the terminal UI's log view.
                cmd.env("NO_COLOR", "1");
            }
            cmd.args(["--cores", &per_worker.to_string()])
                .stderr(if quiet_stderr {
                    Stdio::piped()
                } else {
                    Stdio::inherit()
                })
                .spawn()
                .map(|mut child| {
                    if let Some(err) = child.stderr.take() {
                        tokio::spawn(forward_lines(i + 1, err));
                    }
                    child
                })
                .with_context(|| format!("starting worker process {}", i + 1))
        })
        .collect()
}

/// The command that starts this binary (`exe`) as a worker called `name` joining `master`:
/// this process's `RUST_LOG` (default `warn`), no stdin or stdout, killed when dropped. It
/// ignores Ctrl-C: this process's master stops the run on it and the worker ends when that
/// master closes. Callers add their own flags and decide where stderr goes.
pub(super) fn worker_command(exe: &Path, master: SocketAddr, name: &str, token: &str) -> Command {
    let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let mut cmd = Command::new(exe);
    cmd.args(["worker", "--master", &master.to_string(), "--name", name])
        .args(["--connect-timeout", "10s", "--ignore-interrupt"])
        .env("STAMPEDE_TOKEN", token)
        .env("RUST_LOG", log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// A worker process's stderr, line by line, into this process's log.
async fn forward_lines(worker: usize, err: tokio::process::ChildStderr) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(err).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::warn!("worker process {worker}: {line}");
    }
}

/// Wait until `n` workers joined; fail if a worker process dies first or it takes too long.
pub(super) async fn wait_for_workers(
    master: &mut Master,
    children: &mut [Child],
    n: usize,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut snaps = master.snapshots.clone();
    loop {
        {
            let snap = snaps.borrow_and_update();
            if snap.run.is_some() || snap.workers.len() >= n {
                return Ok(());
            }
        }
        for (i, c) in children.iter_mut().enumerate() {
            if let Some(status) = c.try_wait()? {
                bail!(
                    "worker process {} exited before the run started ({status})",
                    i + 1
                );
            }
        }
        tokio::select! {
            _ = snaps.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = tokio::time::sleep_until(deadline) => bail!("only {} of {n} workers joined within 30 s", snaps.borrow().workers.len()),
        }
    }
}

/// Let worker processes exit on their own (their master closed), then make sure they did.
pub(super) async fn reap(children: Vec<Child>) {
    for mut c in children {
        if tokio::time::timeout(Duration::from_secs(5), c.wait())
            .await
            .is_err()
        {
            let _ = c.kill().await;
        }
    }
}
