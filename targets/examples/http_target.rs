//! Smallest useful program: run the HTTP target on `127.0.0.1:8080` until Ctrl-C.
//!
//! Try `curl -i localhost:8080/`, `curl localhost:8080/status/503`,
//! `curl 'localhost:8080/?delay_ms=200'` and `curl localhost:8080/__stampede/stats`.

use std::sync::Arc;

use stampede_targets::http::{HttpTargetConfig, HttpTargetStats, serve};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("target listening on {}", listener.local_addr()?);

    let shutdown = CancellationToken::new();
    let stats = Arc::new(HttpTargetStats::new());
    let server = tokio::spawn(serve(
        listener,
        HttpTargetConfig::default(),
        Arc::clone(&stats),
        shutdown.clone(),
    ));
    tokio::signal::ctrl_c().await?;
    shutdown.cancel();
    server.await??;
    println!(
        "served {} requests ({} injected errors)",
        stats.requests(),
        stats.errors()
    );
    Ok(())
}
