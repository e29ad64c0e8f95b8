//! Fixed snapshots for the terminal UI's tests: waiting, running (with a lost worker and
//! failures), finished, one per kind view (LLM, priority, downloads), and an `https://` run
//! with connection figures.

use std::collections::BTreeMap;

use crate::snapshot::{Buckets, FailureView, MetricView, NameView, RunView, Snapshot, WorkerView};
use crate::state::{RunState, WorkerState};

fn worker(
    id: u64,
    name: &str,
    state: WorkerState,
    share: f64,
    rps: f64,
    requests: u64,
) -> WorkerView {
    WorkerView {
        id,
        name: name.into(),
        addr: format!("127.0.0.1:5000{id}"),
        cores: 1,
        state,
        share,
        requests,
        rps,
        last_seen_s: 0.4,
        clock_offset_ms: 0.0,
        gauges: BTreeMap::new(),
    }
}

/// A name's figures, percentiles derived from `p50`.
pub fn name(name: &str, requests: u64, failures: u64, rps: f64, p50: f64) -> NameView {
    NameView {
        kind: "GET".into(),
        name: name.into(),
        requests,
        failures,
        rps,
        fps: failures as f64 / 10.0,
        interval_p50_ms: p50,
        interval_p99_ms: p50 * 4.0,
        min_ms: p50 / 2.0,
        p50_ms: p50,
        p90_ms: p50 * 2.0,
        p95_ms: p50 * 3.0,
        p99_ms: p50 * 4.0,
        max_ms: p50 * 10.0,
        mean_ms: p50 * 1.2,
        percentiles_ms: [1.0, 1.2, 1.5, 1.8, 2.0, 3.0, 3.5, 4.0, 6.0, 8.0, 10.0].map(|f| p50 * f),
        bytes: requests * 1024,
        counters: BTreeMap::new(),
        metrics: BTreeMap::new(),
        latency: Buckets::default(),
    }
}

fn run(kind: &str, names: Vec<NameView>) -> RunView {
    let mut total = name("Aggregated", 0, 0, 0.0, 0.0);
    total.kind = String::new();
    for n in &names {
        total.requests += n.requests;
        total.failures += n.failures;
        total.rps += n.rps;
        total.fps += n.fps;
        total.bytes += n.bytes;
        total.p50_ms = total.p50_ms.max(n.p50_ms);
        total.p90_ms = total.p90_ms.max(n.p90_ms);
        total.p99_ms = total.p99_ms.max(n.p99_ms);
        total.max_ms = total.max_ms.max(n.max_ms);
        total.interval_p50_ms = total.p50_ms;
        total.interval_p99_ms = total.p99_ms;
        for (k, v) in &n.counters {
            *total.counters.entry(k.clone()).or_insert(0) += v;
        }
        for (k, m) in &n.metrics {
            total.metrics.entry(k.clone()).or_insert_with(|| m.clone());
        }
    }
    RunView {
        id: 7,
        scenario: "checkout".into(),
        kind: kind.parse().expect("a known scenario kind"),
        load: "closed: 10 users for 30s".into(),
        state: RunState::Running,
        elapsed_s: 12.3,
        duration_s: 30.0,
        users: 10,
        target_rate: 0.0,
        scale: 1.0,
        intervals: 12,
        names,
        total,
        failures: Vec::new(),
        events: Vec::new(),
        stop_reason: None,
        status: None,
        schedule_lag: Buckets::default(),
        specs: stampede_scenarios::kinds::specs_of(kind),
    }
}

/// Two workers joined, no run yet.
pub fn waiting() -> Snapshot {
    Snapshot {
        workers: vec![
            worker(1, "w-one", WorkerState::Ready, 0.0, 0.0, 0),
            worker(2, "w-two", WorkerState::Ready, 0.0, 0.0, 0),
        ],
        run: None,
    }
}

/// An HTTP run 12 s in: two workers running, one lost, two names, failures, an event.
pub fn running() -> Snapshot {
    let mut r = run(
        "http",
        vec![
            name("index", 5120, 0, 412.5, 1.25),
            name("login", 980, 12, 80.0, 23.5),
        ],
    );
    r.failures = vec![
        FailureView {
            kind: "GET".into(),
            name: "login".into(),
            error: "HTTP 503".into(),
            occurrences: 9,
        },
        FailureView {
            kind: "GET".into(),
            name: "login".into(),
            error: "timeout".into(),
            occurrences: 3,
        },
    ];
    r.events = vec!["worker 3 (w-three) lost at 5.0s: connection closed; its share moved".into()];
    Snapshot {
        workers: vec![
            worker(1, "w-one", WorkerState::Running, 0.5, 246.3, 3050),
            worker(2, "w-two", WorkerState::Running, 0.5, 246.2, 3050),
            worker(3, "w-three", WorkerState::Lost, 0.0, 0.0, 412),
        ],
        run: Some(r),
    }
}

/// The running run, finished.
pub fn finished() -> Snapshot {
    let mut s = running();
    let r = s.run.as_mut().expect("running() has a run");
    r.state = RunState::Finished;
    r.elapsed_s = 30.0;
    r.stop_reason = Some("duration reached".into());
    for w in &mut s.workers {
        if w.state == WorkerState::Running {
            w.state = WorkerState::Ready;
            w.share = 0.0;
        }
    }
    s
}

fn metric(p50: f64) -> MetricView {
    MetricView {
        count: 100,
        p50_ms: p50,
        p90_ms: p50 * 1.5,
        p99_ms: p50 * 2.0,
        mean_ms: p50 * 1.1,
        max_ms: p50 * 3.0,
        buckets: Buckets::default(),
    }
}

/// An LLM run: TTFT, TPOT, ITL and token counters on one name.
pub fn llm() -> Snapshot {
    let mut n = name("completions", 640, 2, 8.0, 1250.0);
    n.metrics.insert("ttft".into(), metric(210.0));
    n.metrics.insert("tpot".into(), metric(21.5));
    n.metrics.insert("itl".into(), metric(20.0));
    n.counters.insert("input_tokens".into(), 655_360);
    n.counters.insert("output_tokens".into(), 81_920);
    n.counters.insert("good".into(), 600);
    let mut s = running();
    s.workers.truncate(2);
    s.run = Some(run("llm", vec![n]));
    s
}

/// Priority traffic: the nine `tier{T}_{class}` names with `slo_met` counters; tier 3 urgent
/// has had no request.
pub fn priority() -> Snapshot {
    let mut names = Vec::new();
    for tier in 1..=3 {
        for (c, class) in ["urgent", "normal", "relaxed"].iter().enumerate() {
            if tier == 3 && c == 0 {
                continue;
            }
            let requests = 1000 / tier as u64;
            let mut n = name(
                &format!("tier{tier}_{class}"),
                requests,
                0,
                10.0,
                20.0 * tier as f64,
            );
            let missed = (tier as u64 - 1) * 10 * (c as u64 + 1);
            n.counters.insert("slo_met".into(), requests - missed);
            names.push(n);
        }
    }
    let mut s = running();
    s.workers.truncate(2);
    s.run = Some(run("priority", names));
    s
}

/// 100 clients downloading one model file (`once`): 60 done, 40 still downloading.
pub fn download() -> Snapshot {
    let mut n = name("model.zip", 60, 1, 2.0, 1800.0);
    n.bytes = 60 * 24_834_009;
    n.metrics.insert("ttfb".into(), metric(12.0));
    n.metrics.insert("client_throughput".into(), metric(13.8));
    let mut s = running();
    s.workers.truncate(2);
    let mut r = run("download", vec![n]);
    r.users = 40;
    s.run = Some(r);
    s
}

/// `values` µs as the view of driver metric `metric`, buckets included.
fn measured(metric: &str, values: &[(u64, u64)]) -> MetricView {
    let mut h = stampede_scenarios::recorder::new_histogram();
    for &(us, times) in values {
        for _ in 0..times {
            stampede_scenarios::recorder::record_clamped(&mut h, us);
        }
    }
    // The unit of the kind that records `metric` (µs when none does).
    let specs = stampede_scenarios::Kind::ALL
        .iter()
        .map(|kind| kind.specs())
        .find(|specs| specs.metric(metric).is_some())
        .unwrap_or_default();
    MetricView::of(crate::snapshot::Exported::of_metric(&specs, metric), &h)
}

/// The running run against an `https://` target: each name opened a few connections (TCP
/// connect about 80 µs, TLS handshake about 1.2 ms) and sent the rest of its requests on them.
pub fn https() -> Snapshot {
    let mut s = running();
    let r = s.run.as_mut().expect("running() has a run");
    let mut names = std::mem::take(&mut r.names);
    for (n, new) in names.iter_mut().zip([40u64, 10]) {
        n.counters.insert("connections_new".into(), new);
        n.counters
            .insert("connections_reused".into(), n.requests - new);
        let slow = new / 10;
        n.metrics.insert(
            "connect".into(),
            measured("connect", &[(80, new - slow), (310, slow)]),
        );
        n.metrics.insert(
            "tls_handshake".into(),
            measured("tls_handshake", &[(1_200, new - slow), (3_400, slow)]),
        );
    }
    let mut https = run("http", names);
    https.failures = r.failures.clone();
    https.events = r.events.clone();
    s.run = Some(https);
    s
}
