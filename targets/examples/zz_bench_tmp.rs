use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use stampede_targets::http::{HttpTargetConfig, HttpTargetStats, serve};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let stats = Arc::new(HttpTargetStats::new());
    let server = tokio::spawn(serve(
        listener,
        HttpTargetConfig::default(),
        stats.clone(),
        shutdown.clone(),
    ));
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let (mut tx, conn) =
                hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(s))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            while Instant::now() < deadline {
                tx.ready().await.unwrap();
                let r = tx
                    .send_request(
                        http::Request::get("/")
                            .header("host", "x")
                            .body(Empty::new())
                            .unwrap(),
                    )
                    .await
                    .unwrap();
                let b = r.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(b.len(), 1024);
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    println!(
        "{} req/s (server counted {})",
        done.load(Ordering::Relaxed) / 3,
        stats.requests()
    );
    shutdown.cancel();
    let t = Instant::now();
    server.await??;
    println!("shutdown {:?}", t.elapsed());
    Ok(())
}
