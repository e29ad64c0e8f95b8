//! The priority driver: the classes and workloads, `[priority]`'s checks, the schedule's
//! mix, and requests against in-test gRPC schedulers (plain and TLS).

use super::*;
use rand::SeedableRng;
use stampede_grpc::scheduler::InferRequest;

/// The `[priority]` table of a priority scenario with `extra` appended.
fn file(extra: &str) -> Option<PriorityFile> {
    let text = format!(
        "name = \"p\"\ntarget = \"http://127.0.0.1:50051\"\nkind = \"priority\"\n[load]\nmodel = \"open\"\nrate = 30\n{extra}"
    );
    toml::from_str::<crate::ScenarioFile>(&text)
        .unwrap()
        .priority
}

#[test]
fn the_runners_workloads_and_classes() {
    assert_eq!(class_name(0), "tier1_urgent");
    assert_eq!(class_name(4), "tier2_normal");
    assert_eq!(class_name(8), "tier3_relaxed");
    for (name, shares) in WORKLOADS {
        let sum: f64 = shares.iter().sum();
        assert!((sum - 1.0).abs() < 1e-9, "{name}: {sum}");
    }
    let s = Settings::of(file("[priority]\nworkload = \"urgent_heavy\"\n").as_ref()).unwrap();
    assert_eq!(s.shares[0], 0.20);
    assert_eq!(s.shares[8], 0.10);
    assert_eq!(s.timeout, DEFAULT_TIMEOUT);
    // Defaults without a [priority] table: balanced.
    let s = Settings::of(file("").as_ref()).unwrap();
    assert_eq!(s.shares, WORKLOADS[0].1);
    // Below 0.01 qps a class is skipped.
    let a = s.active_shares(0.1);
    assert_eq!(a[0], 0.0, "0.1 × 0.05 = 0.005 qps");
    assert_eq!(a[1], 0.10, "0.1 × 0.10 = 0.01 qps is kept");
}

#[test]
fn custom_workloads_models_and_spikes() {
    let f = file(
        "[priority]\nworkload = \"mine\"\n[priority.workloads.mine]\ntier1_urgent = 3\ntier3_relaxed = 1\n\
         [priority.models]\nurgent = { resnet50 = 1, mobilenet = 1 }\n\
         [[priority.spikes]]\nstart = \"2s\"\nduration = \"1s\"\nfactor = 4\nclasses = [\"tier1\", \"relaxed\"]\n",
    );
    let s = Settings::of(f.as_ref()).unwrap();
    assert_eq!(s.shares[0], 3.0);
    assert_eq!(s.shares[8], 1.0);
    assert_eq!(s.shares[1], 0.0);
    assert_eq!(s.spikes[0].requests, vec![0, 1, 2, 5, 8]);
    let mut rng = SmallRng::seed_from_u64(1);
    let mobile = (0..10_000)
        .filter(|_| s.models[0].pick(&mut rng) == "mobilenet")
        .count();
    assert!((mobile as f64 / 10_000.0 - 0.5).abs() < 0.03, "{mobile}");
}

#[test]
fn bad_settings_name_the_field() {
    let e = Settings::of(file("[priority]\nworkload = \"heavy\"\n").as_ref()).unwrap_err();
    assert_eq!(e.0, "priority.workload");
    assert!(
        e.1.contains("unknown workload `heavy`") && e.1.contains("batch_heavy"),
        "{e:?}"
    );
    let e = Settings::of(file("[priority.workloads.x]\ntier4_urgent = 1\n").as_ref()).unwrap_err();
    assert_eq!(e.0, "priority.workloads.x.tier4_urgent");
    let e = Settings::of(file("[priority.workloads.balanced]\ntier1_urgent = 1\n").as_ref())
        .unwrap_err();
    assert!(e.1.contains("built-in"), "{e:?}");
    let e =
        Settings::of(file("[priority.models]\nfast = { resnet50 = 1 }\n").as_ref()).unwrap_err();
    assert_eq!(e.0, "priority.models.fast");
    let e = Settings::of(file(
        "[[priority.spikes]]\nstart = \"1s\"\nduration = \"1s\"\nfactor = 2\nclasses = [\"tier9\"]\n",
    ).as_ref())
    .unwrap_err();
    assert_eq!(e.0, "priority.spikes[0].classes");
}

/// The runner's model mix: urgent → resnet50 only; normal and relaxed 70/30, within 4σ over
/// 20,000 draws with a fixed seed.
#[test]
fn model_mix_is_the_runners() {
    let s = Settings::of(file("").as_ref()).unwrap();
    let mut rng = SmallRng::seed_from_u64(7);
    let n = 20_000;
    assert!((0..n).all(|_| s.models[0].pick(&mut rng) == "resnet50"));
    for k in [1, 2] {
        let resnet = (0..n)
            .filter(|_| s.models[k].pick(&mut rng) == "resnet50")
            .count() as f64;
        let sigma = (n as f64 * 0.7 * 0.3).sqrt();
        assert!(
            (resnet - 0.7 * n as f64).abs() < 4.0 * sigma,
            "{k}: {resnet}"
        );
    }
}

/// The hand-written encoding is a valid `InferRequest`: prost decodes it to the same
/// fields, 150,528 floats in [0, 1) with the runner's shape, fresh for each seed.
#[test]
fn payload_decodes_as_an_infer_request() {
    let p = InferPayload {
        tier: 2,
        deadline_ns: 1_740_888_024_000_000_000,
        model: "vit".into(),
        tensor: random_tensor(42),
    };
    let mut buf = Vec::new();
    p.encode(&mut buf);
    assert_eq!(buf.len(), p.encoded_len());
    let r = InferRequest::decode(buf.as_slice()).unwrap();
    assert_eq!(r.tier, 2);
    assert_eq!(r.deadline_ns, 1_740_888_024_000_000_000);
    assert_eq!(r.model_name, "vit");
    assert_eq!(r.input_shape, INPUT_SHAPE.to_vec());
    assert_eq!(r.input_tensor.len(), TENSOR_LEN);
    assert!(r.input_tensor.iter().all(|&x| (0.0..1.0).contains(&x)));
    let mean = r.input_tensor.iter().map(|&x| f64::from(x)).sum::<f64>() / TENSOR_LEN as f64;
    assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    // The same encoding prost makes from the decoded message.
    assert_eq!(r.encode_to_vec(), buf);
    let mut other = Vec::new();
    InferPayload {
        tensor: random_tensor(43),
        ..p
    }
    .encode(&mut other);
    let r2 = InferRequest::decode(other.as_slice()).unwrap();
    assert_ne!(r.input_tensor[..16], r2.input_tensor[..16]);
}

#[test]
fn mix_needs_an_open_load_and_sets_loadgens_end_rule() {
    let f = file("[priority]\nmin_query_count = 100\n");
    let open = LoadModel::Open {
        rate: 30.0,
        arrival: crate::Arrival::Poisson,
        burstiness: 1.0,
        max_in_flight: 100,
    };
    let m = mix(f.as_ref(), &open, Duration::from_secs(60)).unwrap();
    let until = m.until.unwrap();
    assert_eq!(until.min_count, 100);
    assert_eq!(until.min_duration, Duration::from_secs(60));
    // The slowest class: 30 × 0.05 = 1.5 qps needs 66.7 s on average for 100; the hard
    // end leaves room for a piece's unlucky tail.
    assert!(until.max_duration > Duration::from_secs(133), "{until:?}");
    let given = mix(
        file("[priority]\nmin_query_count = 100\nmax_duration = \"90s\"\n").as_ref(),
        &open,
        Duration::from_secs(60),
    );
    assert_eq!(
        given.unwrap().until.unwrap().max_duration,
        Duration::from_secs(90)
    );
    let closed = LoadModel::Closed {
        users: 1,
        spawn_rate: 1.0,
    };
    assert_eq!(
        mix(f.as_ref(), &closed, Duration::from_secs(1))
            .unwrap_err()
            .0,
        "load.model"
    );
}

/// The default hard end: every piece of every split (1..=64 pieces) has had its part of the
/// count by then with probability ≥ 1 − 10⁻⁶, computed exactly as P(Poisson(λt) < k).
#[test]
fn the_default_hard_end_leaves_a_one_in_a_million_tail() {
    for (count, rate) in [(1, 0.6), (1, 30.0), (7, 0.05), (100, 1.5), (5000, 200.0)] {
        let t = count_reached_by(count, rate).as_secs_f64();
        for n in 1..=MAX_PIECES {
            let k = count.div_ceil(n);
            let mu = rate / n as f64 * t;
            // P(N < k) for N ~ Poisson(mu), summed in log space.
            let mut log_term = -mu;
            let mut missed = log_term.exp();
            for j in 1..k {
                log_term += mu.ln() - (j as f64).ln();
                missed += log_term.exp();
            }
            assert!(
                missed <= 1e-6,
                "count {count} at {rate}/s over {n}: {missed}"
            );
        }
    }
}

/// Every workload of the runner, 200 qps over 2 equal workers for 600 s: each class's count
/// across the fleet is within 4σ of total × share × time, and (balanced) the fleet's
/// arrivals of each class have exponential gaps of the class's rate (KS test, α = 0.01).
#[test]
fn every_workload_gives_each_class_its_share_across_two_workers() {
    use crate::load::{LoadPlan, Next, Schedule};
    use rand::SeedableRng;
    let horizon = 600.0;
    let end = Duration::from_secs_f64(horizon);
    let load = LoadModel::Open {
        rate: 200.0,
        arrival: crate::Arrival::Poisson,
        burstiness: 1.0,
        max_in_flight: 1000,
    };
    for (w, (name, shares)) in WORKLOADS.iter().enumerate() {
        let f = file(&format!("[priority]\nworkload = \"{name}\"\n"));
        let m = mix(f.as_ref(), &load, end).unwrap();
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); CLASSES];
        for slot in 0..2 {
            let plan = LoadPlan {
                model: load.clone(),
                slot,
                weights: vec![1, 1],
                scale: 1.0,
                mix: Some(m.clone()),
            };
            let mut rng = SmallRng::seed_from_u64(1000 + 10 * w as u64 + slot as u64);
            let mut sched = Schedule::new(Duration::ZERO, 0, 1);
            loop {
                match sched.next(&plan, end, &mut rng) {
                    Next::Arrival { at, request } => times[request.unwrap()].push(at.as_secs_f64()),
                    Next::Idle { at } => sched.resume_at(at),
                    Next::End => break,
                }
            }
        }
        for (i, t) in times.iter_mut().enumerate() {
            let rate = 200.0 * shares[i];
            let expected = rate * horizon;
            let n = t.len() as f64;
            assert!(
                (n - expected).abs() < 4.0 * expected.sqrt(),
                "{name} {}: {n} arrivals, expected {expected}",
                class_name(i)
            );
            if w == 0 {
                t.sort_by(f64::total_cmp);
                let mut gaps: Vec<f64> = t.windows(2).map(|p| p[1] - p[0]).collect();
                gaps.sort_by(f64::total_cmp);
                let m = gaps.len() as f64;
                let d = gaps
                    .iter()
                    .enumerate()
                    .map(|(k, &x)| {
                        let cdf = 1.0 - (-rate * x).exp();
                        (cdf - k as f64 / m).max((k + 1) as f64 / m - cdf)
                    })
                    .fold(0.0, f64::max);
                assert!(d < 1.63 / m.sqrt(), "{}: KS statistic {d}", class_name(i));
            }
        }
    }
}

/// A driver of an open priority scenario sending to `addr`, and a recorder for it. Must run
/// inside a tokio runtime (see [`PriorityDriver::new`]).
fn driver_to(addr: &str) -> (PriorityDriver, Recorder) {
    driver_of(&format!("http://{addr}"), "")
}

/// [`driver_to`] for a target URL, with more scenario text (`[tls]`); its files resolved.
fn driver_of(url: &str, extra: &str) -> (PriorityDriver, Recorder) {
    let text = format!(
        "name = \"p\"\nkind = \"priority\"\ntarget = \"{url}\"\n[load]\nmodel = \"open\"\nrate = 10\n{extra}"
    );
    let mut config =
        crate::ScenarioConfig::parse(&text, "t.toml", &crate::Overrides::default()).unwrap();
    config.resolve_files("t.toml").unwrap();
    let driver = PriorityDriver::new(&config.common(), config.file.priority.as_ref()).unwrap();
    let names = driver.requests().iter().map(|r| r.name.clone()).collect();
    let recorder = Recorder::for_driver(names, &driver, 1);
    (driver, recorder)
}

/// Arrivals the engine dropped are counted for their class, beside its scheduled ones;
/// nothing is sent for them.
#[tokio::test]
async fn dropped_arrivals_count_per_class() {
    // Nothing listens there: a request sent would fail, but none is.
    let (driver, recorder) = driver_to("127.0.0.1:9");
    driver.dropped(Some(4), &recorder);
    driver.dropped(Some(4), &recorder);
    driver.dropped(Some(7), &recorder);
    // No class from the schedule: none to count it for.
    driver.dropped(None, &recorder);
    let interval = recorder.take();
    let dropped = COUNTERS
        .iter()
        .position(|c| c.name == COUNTER_DROPPED)
        .unwrap();
    let scheduled = COUNTERS
        .iter()
        .position(|c| c.name == COUNTER_SCHEDULED)
        .unwrap();
    for (class, n) in interval.names.iter().enumerate() {
        let want = match class {
            4 => 2,
            7 => 1,
            _ => 0,
        };
        assert_eq!(n.counters[dropped], want, "{}", class_name(class));
        assert_eq!(n.counters[scheduled], 0);
        assert_eq!(n.requests, 0);
    }
}

/// A real gRPC server (tonic, loopback) sees each class's tier, model and tensor; its
/// `deadline_ns` is exactly the row's `timestamp_issued` + the class's SLO, and never
/// later than the server's clock at receipt + the SLO. The CSV rows carry the runner's columns.
#[tokio::test]
async fn requests_carry_tier_model_tensor_and_deadline() {
    use stampede_grpc::scheduler::InferRequest;
    use stampede_grpc::scheduler::scheduler_service_server::{
        SchedulerService, SchedulerServiceServer,
    };
    use tokio::sync::mpsc;

    struct Capture(mpsc::UnboundedSender<(InferRequest, i64)>);
    #[tonic::async_trait]
    impl SchedulerService for Capture {
        async fn infer(
            &self,
            r: tonic::Request<InferRequest>,
        ) -> Result<tonic::Response<InferResponse>, tonic::Status> {
            let r = r.into_inner();
            let deadline_ns = r.deadline_ns;
            let _ = self.0.send((r, unix_ns()));
            Ok(tonic::Response::new(InferResponse {
                deadline_ns,
                success: true,
                message: "ok".into(),
            }))
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SchedulerServiceServer::new(Capture(tx)))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let (driver, recorder) = driver_to(&addr.to_string());
    let mut session = driver.session();
    let mut rng = SmallRng::seed_from_u64(5);
    for class in 0..CLASSES {
        session
            .call(Call {
                rng: &mut rng,
                recorder: &recorder,
                scheduled: std::time::Instant::now(),
                elapsed: Duration::ZERO,
                request: Some(class),
            })
            .await;
    }
    let interval = recorder.take();
    let rows = String::from_utf8(interval.rows[0].clone()).unwrap();
    let rows: Vec<Vec<&str>> = rows.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), CLASSES);
    for (class, row) in rows.iter().enumerate() {
        let (r, received_ns) = rx.recv().await.unwrap();
        assert_eq!(r.tier, tier_of(class));
        assert_eq!(r.input_tensor.len(), TENSOR_LEN);
        assert_eq!(r.input_shape, INPUT_SHAPE.to_vec());
        let slo = slo_of(class).as_nanos() as i64;
        let issued: i64 = row[0].parse().unwrap();
        assert_eq!(r.deadline_ns, issued + slo, "{row:?}");
        assert!(r.deadline_ns <= received_ns + slo);
        assert_eq!(row[2], r.tier.to_string());
        assert_eq!(row[3], SLOS[class % 3].0);
        assert_eq!(row[4], r.model_name);
        if class % 3 == 0 {
            assert_eq!(r.model_name, "resnet50");
        }
    }
    // Every class answered: one request each, none failed.
    assert!(
        interval
            .names
            .iter()
            .all(|n| n.requests == 1 && n.failures == 0)
    );
}

/// The scheduler target over TLS (a fresh self-signed certificate) on loopback: its
/// `https://` URL, its certificate (PEM) and its counters.
async fn tls_scheduler() -> (
    String,
    String,
    Arc<stampede_targets::scheduler::SchedulerStats>,
) {
    use stampede_targets::scheduler::{SchedulerConfig, SchedulerStats, serve, tls};
    let tls = tls::SchedulerTls::self_signed().unwrap();
    let cert = tls.cert_pem().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let stats = Arc::new(SchedulerStats::default());
    let config = SchedulerConfig {
        tls: Some(tls),
        ..SchedulerConfig::default()
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(serve(listener, config, stats.clone(), shutdown));
    (url, cert, stats)
}

/// One request of each class through `driver`; how many requests there were, and the
/// failure kinds recorded other than `success=false`.
async fn one_per_class(driver: &PriorityDriver, recorder: &Recorder) -> (u64, Vec<String>) {
    let mut session = driver.session();
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    for class in 0..CLASSES {
        session
            .call(Call {
                rng: &mut rng,
                recorder,
                scheduled: std::time::Instant::now(),
                elapsed: Duration::ZERO,
                request: Some(class),
            })
            .await;
    }
    let interval = recorder.take();
    let requests = interval.names.iter().map(|n| n.requests).sum();
    // `success=false`: answered, but expired in the queue (an unoptimized build's first
    // handshakes can outlast an urgent class's 100 ms); the exchange itself worked.
    let kinds = interval
        .names
        .iter()
        .flat_map(|n| n.failure_kinds.iter().map(|(k, _)| k.clone()))
        .filter(|k| k != "success=false")
        .collect();
    (requests, kinds)
}

/// `https://` with the scheduler's certificate as `[tls] ca`: every class is answered over
/// TLS and the scheduler received each; `insecure` works without the certificate; with
/// neither, each request is a failure naming the TLS cause, not a bare `unavailable`.
#[tokio::test]
async fn https_targets_use_the_scenarios_tls() {
    let (url, cert, stats) = tls_scheduler().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert).unwrap();
    let trusted = format!("[tls]\nca = \"{}\"\n", ca.display());
    let (driver, recorder) = driver_of(&url, &trusted);
    let (requests, kinds) = one_per_class(&driver, &recorder).await;
    assert_eq!((requests, kinds.len()), (CLASSES as u64, 0), "{kinds:?}");
    assert_eq!(stats.counts().received, CLASSES as u64);

    let (driver, recorder) = driver_of(&url, "[tls]\ninsecure = true\n");
    let (requests, kinds) = one_per_class(&driver, &recorder).await;
    assert_eq!((requests, kinds.len()), (CLASSES as u64, 0), "{kinds:?}");

    let (driver, recorder) = driver_of(&url, "");
    let (requests, kinds) = one_per_class(&driver, &recorder).await;
    assert_eq!(requests, CLASSES as u64);
    assert_eq!(kinds.len(), CLASSES, "one kind per class: {kinds:?}");
    assert!(
        kinds
            .iter()
            .all(|k| k == "tls: invalid peer certificate: UnknownIssuer"),
        "{kinds:?}"
    );
    assert_eq!(stats.counts().received, 2 * CLASSES as u64);
}

/// Each class's channel makes one TLS connection: its first request records the connect
/// and handshake times and counts `connections_new`, the second `connections_reused`; a
/// request whose handshake failed counts neither.
#[tokio::test]
async fn grpc_connections_are_counted_per_class() {
    assert_eq!(&COUNTERS[SLOTS.counter..], CONNECTION_COUNTERS);
    let (url, cert, _) = tls_scheduler().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert).unwrap();
    let (driver, recorder) = driver_of(&url, &format!("[tls]\nca = \"{}\"\n", ca.display()));
    let mut session = driver.session();
    let mut rng = SmallRng::from_rng(&mut rand::rng());
    for _ in 0..2 {
        for class in 0..CLASSES {
            session
                .call(Call {
                    rng: &mut rng,
                    recorder: &recorder,
                    scheduled: std::time::Instant::now(),
                    elapsed: Duration::ZERO,
                    request: Some(class),
                })
                .await;
        }
    }
    let interval = recorder.take();
    for (class, n) in interval.names.iter().enumerate() {
        let counted = &n.counters[SLOTS.counter..SLOTS.counter + 2];
        assert_eq!(counted, &[1, 1], "{}: {n:?}", class_name(class));
        let times = |m: usize| n.hists[m].as_ref().map_or(0, |h| h.len());
        assert_eq!(times(SLOTS.metric), 1, "connect of {}", class_name(class));
        assert_eq!(
            times(SLOTS.metric + 1),
            1,
            "handshake of {}",
            class_name(class)
        );
    }

    // Without the certificate every handshake fails.
    let (driver, recorder) = driver_of(&url, "");
    let mut session = driver.session();
    session
        .call(Call {
            rng: &mut rng,
            recorder: &recorder,
            scheduled: std::time::Instant::now(),
            elapsed: Duration::ZERO,
            request: Some(0),
        })
        .await;
    let n = &recorder.take().names[0];
    assert_eq!(n.failures, 1, "{n:?}");
    assert_eq!(
        &n.counters[SLOTS.counter..SLOTS.counter + 2],
        &[0, 0],
        "{n:?}"
    );
    assert!(n.hists[SLOTS.metric].is_none(), "{n:?}");
}

/// A refused connection is named as such (`connect: connection refused`), found under
/// tonic's `unavailable` status.
#[tokio::test]
async fn a_refused_connect_is_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (driver, recorder) = driver_to(&format!("127.0.0.1:{port}"));
    let (_, kinds) = one_per_class(&driver, &recorder).await;
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| k == "connect: connection refused"),
        "{kinds:?}"
    );
}
