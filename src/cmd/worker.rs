//! `stampede worker`: join a master and serve it until it goes away or Ctrl-C (unless started
//! by a local master with `--ignore-interrupt`, which stops it instead).

use anyhow::Context;
use stampede_master::own::OwnReport;
use stampede_protocol::transport::MasterTrust;
use stampede_worker::{Policy, Tapped, WorkerConfig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::common;
use crate::cli::{Exit, WorkerOpt};

pub async fn run(opt: WorkerOpt) -> anyhow::Result<Exit> {
    let cores = opt
        .cores
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let name = opt
        .name
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let shutdown = CancellationToken::new();
    let tap = match opt.metrics {
        Some(addr) => Some(serve_metrics(addr, &name, shutdown.clone()).await?),
        None => None,
    };
    let token = common::token(&opt.token)?.ok_or_else(|| {
        anyhow::anyhow!(
            "no token: give --token-file FILE or set STAMPEDE_TOKEN (the master prints its token at start)"
        )
    })?;
    let trust = match (&opt.master_ca, &opt.master_fingerprint) {
        (Some(ca), _) => MasterTrust::ca_file(ca).context("--master-ca")?,
        (None, Some(f)) => MasterTrust::fingerprint(f)
            .map_err(anyhow::Error::msg)
            .context("--master-fingerprint")?,
        (None, None) => MasterTrust::Token,
    };
    let config = WorkerConfig {
        master: opt.master,
        token,
        trust,
        policy: Policy {
            allowed_targets: opt.allow_target,
        },
        name,
        cores: cores.max(1),
        connect_timeout: opt.connect_timeout.0,
        clock_skew_ns: opt.clock_skew.map_or(0, |s| s.0),
        tap,
    };
    let on_signal = shutdown.clone();
    let ignore_interrupt = opt.ignore_interrupt;
    tokio::spawn(async move {
        // Once listened for, the signals no longer end the process by default, also when
        // ignored; `--ignore-interrupt` ignores SIGINT alone (a terminal's Ctrl-C reaching the
        // whole group), never SIGTERM or SIGHUP.
        let mut signals = super::common::StopSignals::new();
        while let Some(name) = signals.recv().await {
            if name != "interrupt" || !ignore_interrupt {
                tracing::info!("received {name}: telling the master and stopping");
                on_signal.cancel();
                break;
            }
        }
    });
    let result = stampede_worker::run(config, shutdown.clone()).await;
    shutdown.cancel();
    result?;
    Ok(Exit::Success)
}

/// Start `--metrics`: the worker's reports go through a channel to the master crate's
/// own-figures server.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    name: &str,
    stop: CancellationToken,
) -> anyhow::Result<mpsc::UnboundedSender<Tapped>> {
    let (tap, mut tapped) = mpsc::unbounded_channel::<Tapped>();
    let (own_tx, own_rx) = mpsc::unbounded_channel();
    let bound = stampede_master::own::serve(addr, name, own_rx, stop).await?;
    eprintln!("metrics on http://{bound}/metrics");
    tokio::spawn(async move {
        while let Some(t) = tapped.recv().await {
            let own = OwnReport {
                scenario: t.scenario,
                kind: t.kind,
                report: t.report,
            };
            if own_tx.send(own).is_err() {
                break;
            }
        }
    });
    Ok(tap)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "worker".into())
}
