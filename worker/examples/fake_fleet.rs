//! A fleet of simulated workers, to measure what a master costs when it is fed by many of them.
//!
//! Opens N QUIC connections (one UDP endpoint each, like N worker hosts) to a master, does the
//! real handshake, answers `Assign` with `Ready` and `Ping` with `Pong`, and once the run starts
//! sends one `Report` per second per connection with NAMES series (request names `n0`..,
//! metric `latency`, a V2+DEFLATE histogram of SAMPLES log-normal latencies) and the
//! `requests`/`failures`/`bytes` counters of each name, until the run's duration has passed (or
//! the master says `Stop`); then a last report with `last: true`. No load is generated.
//!
//! ```sh
//! cargo run --release -p stampede-worker --example fake_fleet -- 127.0.0.1:7401 "$TOKEN" 100 50 1000
//! #                                                             MASTER         TOKEN   N NAMES SAMPLES
//! ```
//! Prints `started run R` when the run starts and `done: K reports sent` at the end.
//!
//! Pongs are held back, while a run goes on, to the middle of the interval between two reports
//! (`PONG=immediate` answers at once instead), and `HEARTBEAT_AFTER_REPORT=1` writes a control
//! frame right behind every report. Both once exposed a master that raced two non-cancel-safe
//! frame reads in one `select!`; the master now reads each stream in its own loop, and
//! `master/tests/fleet.rs` (`control_messages_during_large_reports_lose_nothing`) keeps it so.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use anyhow::{Context, bail};
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};
use stampede_protocol::handshake::{Introduction, Token};
use stampede_protocol::{
    Counter, FromWorker, MAX_FRAME, Report, Series, ToWorker, handshake, metric, read_frame,
    transport, unix_now_ns, write_frame,
};
use stampede_scenarios::{ScenarioConfig, recorder};

/// Distinct pre-serialized histograms per name (picked at random per report), so reports differ
/// without the fleet spending its CPU on compression.
const POOL: usize = 16;

struct Pool {
    /// `hists[name][k]`: a serialized histogram and its sample count.
    hists: Vec<Vec<(Vec<u8>, u64)>>,
    names: Vec<String>,
}

fn build_pool(names: usize, samples: usize) -> anyhow::Result<Pool> {
    let mut rng = SmallRng::seed_from_u64(42);
    let mut ser = V2DeflateSerializer::new();
    let mut hists = Vec::with_capacity(names);
    for n in 0..names {
        // Medians from 2 ms to ~50 ms depending on the name; a long right tail.
        let median_us = 2_000.0 * (1.0 + n as f64 * 0.5);
        let dist = LogNormal::new(f64::ln(median_us), 0.6)?;
        let mut per_name = Vec::with_capacity(POOL);
        for _ in 0..POOL {
            let mut h = recorder::new_histogram();
            for _ in 0..samples {
                recorder::record_clamped(&mut h, dist.sample(&mut rng) as u64);
            }
            let mut buf = Vec::new();
            ser.serialize(&h, &mut buf)
                .map_err(|e| anyhow::anyhow!("serializing: {e:?}"))?;
            per_name.push((buf, h.len()));
        }
        hists.push(per_name);
    }
    Ok(Pool {
        hists,
        names: (0..names).map(|n| format!("n{n}")).collect(),
    })
}

fn report(pool: &Pool, rng: &mut SmallRng, run_id: u64, seq: u64, last: bool) -> Report {
    let now_ms = unix_now_ns() / 1_000_000;
    let mut series = Vec::with_capacity(pool.names.len());
    let mut counters = Vec::with_capacity(pool.names.len() * 3);
    for (name, hists) in pool.names.iter().zip(&pool.hists) {
        let (hist, count) = &hists[rng.random_range(0..hists.len())];
        series.push(Series {
            name: name.clone(),
            metric: metric::LATENCY.into(),
            hist: hist.clone(),
        });
        for (c, v) in [
            (metric::REQUESTS, *count),
            (metric::FAILURES, 0),
            (metric::BYTES, *count * 1024),
        ] {
            counters.push(Counter {
                name: name.clone(),
                counter: c.into(),
                value: v,
            });
        }
    }
    Report {
        run_id,
        seq,
        start_unix_ms: now_ms.saturating_sub(1000),
        end_unix_ms: now_ms,
        users: 10,
        target_rate: 0.0,
        series,
        counters,
        failures: Vec::new(),
        records: Vec::new(),
        gauges: Vec::new(),
        last,
    }
}

async fn fake_worker(
    i: usize,
    master: SocketAddr,
    token: Token,
    pool: Arc<Pool>,
    sent: Arc<AtomicU64>,
    defer_pongs: bool,
    heartbeat_after_report: bool,
) -> anyhow::Result<()> {
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    endpoint.set_default_client_config(transport::client_config(&transport::MasterTrust::Token)?);
    let conn = endpoint
        .connect(master, transport::SERVER_NAME)?
        .await
        .context("connecting")?;
    let me = Introduction {
        name: format!("fake-{i}"),
        cores: 1,
        build: "fake_fleet".into(),
    };
    let (mut send, mut recv, _) = handshake::join(&conn, &token, &me).await?;
    let mut reports = conn.open_uni().await?;
    // Control frames are read on their own task: `read_frame` is not cancel-safe, so it must not
    // sit in a `select!` next to timers.
    let (tx, mut control) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let msg = read_frame::<_, ToWorker>(&mut recv, MAX_FRAME).await;
            let end = msg.is_err();
            if tx.send(msg).is_err() || end {
                break;
            }
        }
    });
    let mut rng = SmallRng::seed_from_u64(i as u64);
    let mut duration = Duration::from_secs(30);
    // The running run: (id, next report seq, when to send the next one, when it ends).
    let mut running: Option<(u64, u64, Instant, Instant)> = None;
    // Pongs held back to the middle of a report interval (see `defer_pongs`).
    let mut pongs: Vec<FromWorker> = Vec::new();
    // When the last report was written: pongs wait until it has long arrived.
    let mut last_sent = Instant::now();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
    loop {
        let next_report = running.map(|r| r.2);
        let pong_at = match (running, pongs.is_empty()) {
            (Some(r), false) if last_sent + Duration::from_millis(400) < r.2 => {
                Some(last_sent + Duration::from_millis(300))
            }
            _ => None,
        };
        tokio::select! {
            msg = control.recv() => match msg.context("control reader ended")? {
                Ok(ToWorker::Assign(a)) => {
                    let config = ScenarioConfig::from_assignment(&a.scenario, "<assigned>")
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    duration = config.duration;
                    write_frame(&mut send, &FromWorker::Ready { run_id: a.run_id }).await?;
                }
                Ok(ToWorker::Start { run_id, at_unix_ns, elapsed_ms }) => {
                    let delay = Duration::from_nanos(at_unix_ns.saturating_sub(unix_now_ns()));
                    let start = Instant::now() + delay;
                    let end = start + duration.saturating_sub(Duration::from_millis(elapsed_ms));
                    running = Some((run_id, 0, start + Duration::from_secs(1), end));
                    last_sent = start;
                    if i == 0 {
                        println!("started run {run_id} in {} ms", delay.as_millis());
                    }
                }
                Ok(ToWorker::Stop { run_id, .. }) => {
                    if let Some((id, seq, _, _)) = running.take().filter(|r| r.0 == run_id) {
                        write_frame(&mut reports, &report(&pool, &mut rng, id, seq, true)).await?;
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(ToWorker::Ping { seq, master_ns }) => {
                    let pong = FromWorker::Pong { seq, master_ns, worker_ns: unix_now_ns() };
                    if defer_pongs && running.is_some() {
                        pongs.push(pong);
                    } else {
                        write_frame(&mut send, &pong).await?;
                    }
                }
                Ok(ToWorker::Update { .. }) => {}
                Err(e) => {
                    if running.is_none() {
                        // The master closed the connection after the run: the normal end.
                        return Ok(());
                    }
                    bail!("fake worker {i}: lost the master: {e}");
                }
            },
            _ = async { tokio::time::sleep_until(next_report.expect("guarded")).await }, if next_report.is_some() => {
                let (id, seq, at, end) = running.expect("guarded");
                let last = at >= end;
                write_frame(&mut reports, &report(&pool, &mut rng, id, seq, last)).await?;
                sent.fetch_add(1, Ordering::Relaxed);
                last_sent = Instant::now();
                if heartbeat_after_report {
                    // Reproduces the master's lost-bytes race on purpose (see the module doc).
                    write_frame(&mut send, &FromWorker::Heartbeat).await?;
                }
                running = if last { None } else { Some((id, seq + 1, (at + Duration::from_secs(1)).min(end), end)) };
                if last {
                    // The run is over; the master needs no more clock probes, and the next
                    // heartbeat waits a full second (the report must arrive first, see above).
                    pongs.clear();
                    heartbeat.reset();
                }
            }
            _ = async { tokio::time::sleep_until(pong_at.expect("guarded")).await }, if pong_at.is_some() => {
                for p in pongs.drain(..) {
                    write_frame(&mut send, &p).await?;
                }
            }
            _ = heartbeat.tick(), if running.is_none() => {
                write_frame(&mut send, &FromWorker::Heartbeat).await?;
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let master: SocketAddr = args
        .first()
        .context("usage: fake_fleet MASTER_ADDR TOKEN [N] [NAMES] [SAMPLES]")?
        .parse()?;
    let token = Token::new(
        args.get(1)
            .context("usage: fake_fleet MASTER_ADDR TOKEN [N] [NAMES] [SAMPLES]")?
            .as_str(),
    )?;
    let n: usize = args.get(2).map_or(Ok(100), |s| s.parse())?;
    let names: usize = args.get(3).map_or(Ok(50), |s| s.parse())?;
    let samples: usize = args.get(4).map_or(Ok(1000), |s| s.parse())?;
    // See the module doc: PONG=immediate answers pings at once, as a real worker does.
    let defer_pongs = std::env::var("PONG").map_or(true, |v| v != "immediate");
    let heartbeat_after_report = std::env::var("HEARTBEAT_AFTER_REPORT").is_ok_and(|v| v == "1");
    let pool = Arc::new(build_pool(names, samples)?);
    let avg: usize = pool
        .hists
        .iter()
        .flatten()
        .map(|h| h.0.len())
        .sum::<usize>()
        / (names * POOL).max(1);
    println!(
        "{n} fake workers, {names} names, {samples} samples/histogram, ~{avg} B per serialized histogram"
    );
    let sent = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        tasks.push(tokio::spawn(fake_worker(
            i,
            master,
            token.clone(),
            pool.clone(),
            sent.clone(),
            defer_pongs,
            heartbeat_after_report,
        )));
    }
    let mut failed = 0;
    for t in tasks {
        if let Err(e) = t.await? {
            eprintln!("{e:#}");
            failed += 1;
        }
    }
    println!(
        "done: {} reports sent, {failed} fake workers failed",
        sent.load(Ordering::Relaxed)
    );
    Ok(())
}
