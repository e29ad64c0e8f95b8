//! `stampede target http`: the built-in HTTP target, until Ctrl-C.

use std::sync::Arc;

use anyhow::Context;
use stampede_targets::http::{HttpTargetConfig, HttpTargetStats};
use tokio_util::sync::CancellationToken;

use crate::cli::{Exit, TargetHttpOpt};

pub async fn http(opt: TargetHttpOpt) -> anyhow::Result<Exit> {
    if !(0.0..=1.0).contains(&opt.error_rate) {
        anyhow::bail!("--error-rate {} must be between 0 and 1", opt.error_rate);
    }
    if !(100..=999).contains(&opt.error_status) {
        anyhow::bail!("--error-status {} is not an HTTP status", opt.error_status);
    }
    let listener = tokio::net::TcpListener::bind(opt.bind)
        .await
        .with_context(|| format!("binding {}", opt.bind))?;
    let addr = listener.local_addr()?;
    let config = HttpTargetConfig {
        body_size: opt.body_size.0 as usize,
        delay: opt.delay.0,
        jitter: opt.jitter.0,
        error_rate: opt.error_rate,
        error_status: opt.error_status,
    };
    println!("stampede target http listening on http://{addr}");
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    let stats = Arc::new(HttpTargetStats::default());
    stampede_targets::http::serve(listener, config, stats.clone(), shutdown).await?;
    eprintln!(
        "served {} requests ({} injected errors)",
        stats.requests(),
        stats.errors()
    );
    Ok(Exit::Success)
}
