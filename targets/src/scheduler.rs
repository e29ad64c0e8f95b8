//! A simulated GPU inference scheduler (the system under test of the MLPerf-LoadGen priority
//! runner, `loadgen_runner.py`): a gRPC server of its `scheduler.proto`
//! (`SchedulerService.Infer`).
//!
//! Requests wait in one queue ordered by tier (1 first), then by deadline (earliest first);
//! `gpus` servers take the head of the queue one request at a time and "run" it for its model's
//! service time. A request whose `deadline_ns` (Unix ns) has passed when a GPU takes it is
//! answered at once with `success = false` ("expired"), so under load the low tiers and tight
//! SLOs show how a priority scheduler treats them. A request that is not well formed (tier not
//! 1..3, tensor length not the shape's product, unknown model) is answered `INVALID_ARGUMENT`.
//! No inference is done: the tensor is only counted. With [`SchedulerConfig::tls`] it serves
//! gRPC over TLS ([`tls`]).

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stampede_grpc::scheduler::scheduler_service_server::{
    SchedulerService, SchedulerServiceServer,
};
use stampede_grpc::scheduler::{InferRequest, InferResponse};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

#[path = "scheduler_tls.rs"]
pub mod tls;

/// How the simulated scheduler behaves.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Requests run at once (GPUs); each takes the head of the queue.
    pub gpus: usize,
    /// Service time per model; requests for other models are refused.
    pub service_times: BTreeMap<String, Duration>,
    /// Serve over TLS (ALPN `h2`) instead of plaintext HTTP/2.
    pub tls: Option<tls::SchedulerTls>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            gpus: 1,
            service_times: BTreeMap::from([
                ("resnet50".to_string(), Duration::from_millis(5)),
                ("vit".to_string(), Duration::from_millis(12)),
            ]),
            tls: None,
        }
    }
}

/// What the scheduler saw, for tests and the exit line.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    received: AtomicU64,
    completed: AtomicU64,
    expired: AtomicU64,
    invalid: AtomicU64,
    received_by_tier: [AtomicU64; 3],
    expired_by_tier: [AtomicU64; 3],
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedulerCounts {
    /// `Infer` calls received (well formed or not).
    pub received: u64,
    /// Answered `success = true`.
    pub completed: u64,
    /// Answered `success = false`: the deadline had passed when a GPU took it.
    pub expired: u64,
    /// Refused as not well formed.
    pub invalid: u64,
    /// Well-formed requests received per tier 1..3.
    pub received_by_tier: [u64; 3],
    /// Expired per tier 1..3.
    pub expired_by_tier: [u64; 3],
}

impl SchedulerStats {
    /// The counters now.
    pub fn counts(&self) -> SchedulerCounts {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SchedulerCounts {
            received: load(&self.received),
            completed: load(&self.completed),
            expired: load(&self.expired),
            invalid: load(&self.invalid),
            received_by_tier: self.received_by_tier.each_ref().map(load),
            expired_by_tier: self.expired_by_tier.each_ref().map(load),
        }
    }
}

/// One request waiting for a GPU.
struct Queued {
    tier: i32,
    deadline_ns: i64,
    seq: u64,
    service: Duration,
    reply: oneshot::Sender<InferResponse>,
}

impl Queued {
    /// Lower tier, then earlier deadline, then arrival order: the first to serve.
    fn key(&self) -> (i32, i64, u64) {
        (self.tier, self.deadline_ns, self.seq)
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // BinaryHeap pops the greatest: reverse so the first to serve is the greatest.
        other.key().cmp(&self.key())
    }
}

/// The queue shared by the gRPC handlers (which push) and the GPUs (which pop).
#[derive(Default)]
struct Queue {
    /// Short critical sections (push or pop), never held across an await.
    heap: Mutex<BinaryHeap<Queued>>,
    ready: Notify,
    seq: AtomicU64,
}

impl Queue {
    fn push(&self, q: Queued) {
        self.heap.lock().unwrap_or_else(|p| p.into_inner()).push(q);
        self.ready.notify_one();
    }

    fn pop(&self) -> Option<Queued> {
        self.heap.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }
}

struct Service {
    config: SchedulerConfig,
    stats: Arc<SchedulerStats>,
    queue: Arc<Queue>,
}

fn unix_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64)
}

#[tonic::async_trait]
impl SchedulerService for Service {
    async fn infer(
        &self,
        request: tonic::Request<InferRequest>,
    ) -> Result<tonic::Response<InferResponse>, tonic::Status> {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let r = request.into_inner();
        let invalid = |m: String| {
            self.stats.invalid.fetch_add(1, Ordering::Relaxed);
            Err(tonic::Status::invalid_argument(m))
        };
        if !(1..=3).contains(&r.tier) {
            return invalid(format!("tier {} is not 1, 2 or 3", r.tier));
        }
        let elements = r.input_shape.iter().try_fold(1usize, |acc, &d| {
            usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
        });
        if r.input_shape.is_empty() || elements != Some(r.input_tensor.len()) {
            return invalid(format!(
                "input_tensor has {} floats, input_shape {:?} needs {}",
                r.input_tensor.len(),
                r.input_shape,
                elements.map_or("an impossible number".into(), |e| e.to_string())
            ));
        }
        let Some(&service) = self.config.service_times.get(&r.model_name) else {
            return invalid(format!(
                "unknown model `{}` (served: {})",
                r.model_name,
                self.config
                    .service_times
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        let t = (r.tier - 1) as usize;
        self.stats.received_by_tier[t].fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.queue.push(Queued {
            tier: r.tier,
            deadline_ns: r.deadline_ns,
            seq: self.queue.seq.fetch_add(1, Ordering::Relaxed),
            service,
            reply: tx,
        });
        let answer = rx
            .await
            .map_err(|_| tonic::Status::unavailable("the scheduler is shutting down"))?;
        if !answer.success {
            self.stats.expired_by_tier[t].fetch_add(1, Ordering::Relaxed);
        }
        Ok(tonic::Response::new(answer))
    }
}

/// One GPU: take the head of the queue, expire it or run it, repeat until `stop`.
async fn gpu(queue: Arc<Queue>, stats: Arc<SchedulerStats>, stop: CancellationToken) {
    loop {
        let Some(q) = queue.pop() else {
            tokio::select! {
                _ = queue.ready.notified() => continue,
                _ = stop.cancelled() => return,
            }
        };
        if q.reply.is_closed() {
            // The client gave up (timeout): nothing to run.
            continue;
        }
        if unix_ns() > q.deadline_ns {
            stats.expired.fetch_add(1, Ordering::Relaxed);
            let _ = q.reply.send(InferResponse {
                deadline_ns: q.deadline_ns,
                success: false,
                message: "expired: the deadline passed while queued".into(),
            });
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(q.service) => {}
            _ = stop.cancelled() => return,
        }
        stats.completed.fetch_add(1, Ordering::Relaxed);
        let late = unix_ns() > q.deadline_ns;
        let _ = q.reply.send(InferResponse {
            deadline_ns: q.deadline_ns,
            success: true,
            message: if late {
                "completed after the deadline"
            } else {
                "ok"
            }
            .into(),
        });
    }
}

/// Serve on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    config: SchedulerConfig,
    stats: Arc<SchedulerStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(config.gpus >= 1, "a scheduler needs at least 1 GPU");
    let queue = Arc::new(Queue::default());
    let tasks = tokio_util::task::TaskTracker::new();
    for _ in 0..config.gpus {
        tasks.spawn(gpu(queue.clone(), stats.clone(), shutdown.clone()));
    }
    let tls = config.tls.clone();
    let service = Service {
        config,
        stats,
        queue,
    };
    let router = tonic::transport::Server::builder()
        // 600 KB requests: a window of several requests avoids a round trip per 64 KB.
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(16 << 20))
        .add_service(SchedulerServiceServer::new(service));
    let stop = shutdown.clone().cancelled_owned();
    let served = match tls {
        Some(tls) => {
            router
                .serve_with_incoming_shutdown(tls.incoming(listener, shutdown.clone()), stop)
                .await
        }
        None => {
            router
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    stop,
                )
                .await
        }
    };
    tasks.close();
    tasks.wait().await;
    served.map_err(anyhow::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(tier: i32, deadline_ns: i64, seq: u64) -> Queued {
        Queued {
            tier,
            deadline_ns,
            seq,
            service: Duration::ZERO,
            reply: oneshot::channel().0,
        }
    }

    /// The queue serves tier 1 before 2 before 3, and within a tier the earliest deadline.
    #[test]
    fn queue_orders_by_tier_then_deadline() {
        let q = Queue::default();
        for (tier, deadline, seq) in [(3, 10, 0), (1, 50, 1), (2, 5, 2), (1, 20, 3), (3, 1, 4)] {
            q.push(queued(tier, deadline, seq));
        }
        let order: Vec<(i32, i64)> = std::iter::from_fn(|| q.pop())
            .map(|x| (x.tier, x.deadline_ns))
            .collect();
        assert_eq!(order, vec![(1, 20), (1, 50), (2, 5), (3, 1), (3, 10)]);
    }
}
