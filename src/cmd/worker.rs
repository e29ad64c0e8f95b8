//! `stampede worker`: join a master and serve it until it goes away or Ctrl-C.

use stampede_worker::WorkerConfig;
use tokio_util::sync::CancellationToken;

use crate::cli::{Exit, WorkerOpt};

pub async fn run(opt: WorkerOpt) -> anyhow::Result<Exit> {
    let cores = opt
        .cores
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let name = opt
        .name
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    let config = WorkerConfig {
        master: opt.master,
        token: opt.token,
        name,
        cores: cores.max(1),
        connect_timeout: opt.connect_timeout.0,
        clock_skew_ns: opt.clock_skew.map_or(0, |s| s.0),
    };
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    stampede_worker::run(config, shutdown).await?;
    Ok(Exit::Success)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "worker".into())
}
