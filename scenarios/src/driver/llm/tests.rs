//! The `llm` driver against in-test servers: token timings, backends, HTTP/2, JetStream.

use super::*;

/// An OpenAI server that answers every streamed request 50 ms after reading it, then sends
/// two more tokens 10 ms apart, with usage; returns its URL.
async fn sse_server() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        // The head, then the body by its content-length.
        let body_end = loop {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "request cut short");
            req.extend_from_slice(&buf[..n]);
            if let Some(at) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&req[..at]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                break at + 4 + len;
            }
        };
        while req.len() < body_end {
            let n = s.read(&mut buf).await.unwrap();
            req.extend_from_slice(&buf[..n]);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
        )
        .await
        .unwrap();
        let event = |text: &str| {
            let data = format!(
                "data: {{\"choices\":[{{\"index\":0,\"text\":\"{text}\"}}],\"usage\":null}}\n\n"
            );
            format!("{:x}\r\n{data}\r\n", data.len())
        };
        for (i, text) in ["a", " b", " c"].into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            s.write_all(event(text).as_bytes()).await.unwrap();
        }
        let usage = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n";
        let end = format!("{:x}\r\n{usage}\r\n0\r\n\r\n", usage.len());
        s.write_all(end.as_bytes()).await.unwrap();
    });
    url
}

/// A JetStream server on its own thread and runtime: each `Decode` answers 50 ms after it
/// is called with one token, then another 10 ms later; returns its address.
fn jetstream_server() -> String {
    jetstream_server_with(None)
}

/// [`jetstream_server`], over TLS when given (ALPN h2, the scheduler target's acceptor).
fn jetstream_server_with(tls: Option<stampede_targets::scheduler::tls::SchedulerTls>) -> String {
    use stampede_grpc::jetstream::decode_response::stream_content::Sample;
    use stampede_grpc::jetstream::decode_response::{Content, StreamContent};
    use stampede_grpc::jetstream::orchestrator_server::{Orchestrator, OrchestratorServer};
    use stampede_grpc::jetstream::{
        DecodeRequest, DecodeResponse, HealthCheckRequest, HealthCheckResponse,
    };
    type Tokens = std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<DecodeResponse, tonic::Status>> + Send>,
    >;
    struct Slow;
    #[tonic::async_trait]
    impl Orchestrator for Slow {
        type DecodeStream = Tokens;
        async fn decode(
            &self,
            _request: tonic::Request<DecodeRequest>,
        ) -> Result<tonic::Response<Tokens>, tonic::Status> {
            let token = |text: &str| DecodeResponse {
                content: Some(Content::StreamContent(StreamContent {
                    samples: vec![Sample {
                        text: text.into(),
                        token_ids: vec![7],
                    }],
                })),
            };
            let (a, b) = (token("a"), token(" b"));
            let stream = async_stream_of(vec![(50, a), (10, b)]);
            Ok(tonic::Response::new(stream))
        }
        async fn health_check(
            &self,
            _request: tonic::Request<HealthCheckRequest>,
        ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
            Ok(tonic::Response::new(HealthCheckResponse { is_live: true }))
        }
    }
    /// The messages, each after its delay (ms).
    fn async_stream_of(items: Vec<(u64, DecodeResponse)>) -> Tokens {
        Box::pin(futures_util::stream::unfold(
            items.into_iter(),
            |mut items| async move {
                let (ms, message) = items.next()?;
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Some((Ok(message), items))
            },
        ))
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let router =
                tonic::transport::Server::builder().add_service(OrchestratorServer::new(Slow));
            match tls {
                Some(tls) => {
                    let stop = tokio_util::sync::CancellationToken::new();
                    router
                        .serve_with_incoming(tls.incoming(listener, stop))
                        .await
                }
                None => {
                    let incoming = tonic::transport::server::TcpIncoming::from(listener);
                    router.serve_with_incoming(incoming).await
                }
            }
            .unwrap();
        });
    });
    addr
}

/// One user's session of a streamed llm scenario against `target` with `backend`
/// (synthetic prompts of 2 tokens asking for `output` tokens), and its recorder.
fn one_user(
    target: &str,
    backend: &str,
    output: u32,
) -> (crate::recorder::Recorder, Box<dyn Session>) {
    one_user_with(target, backend, output, "1.1", "")
}

/// A worker builds its driver from the assignment alone: the tokenizer the master read
/// travels in it, and a prompt or tokenizer file named without its contents is refused,
/// never opened.
#[test]
fn files_travel_in_the_assignment_or_are_refused() {
    use crate::{Overrides, ScenarioConfig};
    let dir = tempfile::tempdir().unwrap();
    let tokenizer = dir.path().join("tokenizer.json");
    std::fs::write(&tokenizer, crate::llm::tokenizer::tests::TINY_BPE).unwrap();
    let prompts = dir.path().join("prompts.txt");
    std::fs::write(&prompts, "a local secret line\n").unwrap();
    let text = |source: &str| {
        format!(
            "name = \"l\"\ntarget = \"http://127.0.0.1:9\"\nkind = \"llm\"\n\
             [load]\nmodel = \"closed\"\nusers = 1\n[llm]\nmodel = \"m\"\n\
             tokenizer = \"{}\"\nprompts = {source}\n",
            tokenizer.display()
        )
    };
    let lines = format!("{{ source = \"lines\", path = \"{}\" }}", prompts.display());
    let mut master = ScenarioConfig::parse(&text(&lines), "l.toml", &Overrides::default()).unwrap();
    master.resolve_files("l.toml").unwrap();
    let sent = master.to_assignment();
    // The files are gone from this machine: the worker never needed them.
    std::fs::remove_file(&tokenizer).unwrap();
    std::fs::remove_file(&prompts).unwrap();
    let worker = ScenarioConfig::from_assignment(&sent, "a").unwrap();
    assert!(worker.file.llm.as_ref().unwrap().tokenizer_json.is_some());
    assert!(worker.driver().is_ok());
    // An assignment naming files but not carrying them (not what a master sends).
    let unsent = ScenarioConfig::parse(&text(&lines), "l.toml", &Overrides::default()).unwrap();
    let unsent = ScenarioConfig::from_assignment(&unsent.to_assignment(), "a").unwrap();
    let err = unsent.driver().err().unwrap().to_string();
    assert!(err.contains("llm.tokenizer names the file"), "{err}");
    let mut no_tokenizer = unsent.clone();
    no_tokenizer.file.llm.as_mut().unwrap().tokenizer = None;
    let err = no_tokenizer.driver().err().unwrap().to_string();
    assert!(err.contains("llm.prompts.path names the file"), "{err}");
    assert!(err.contains("never opens a local file"), "{err}");
}

/// [`one_user`] with `[http] version` and more scenario text (`[tls]`), its files resolved.
fn one_user_with(
    target: &str,
    backend: &str,
    output: u32,
    version: &str,
    extra: &str,
) -> (crate::recorder::Recorder, Box<dyn Session>) {
    use crate::{Overrides, ScenarioConfig};
    let text = format!(
        "name = \"l\"\ntarget = \"{target}\"\nkind = \"llm\"\nduration = \"5s\"\n\
         [http]\nversion = \"{version}\"\n\
         [load]\nmodel = \"closed\"\nusers = 1\n[llm]\nbackend = \"{backend}\"\n\
         model = \"m\"\nstream = true\n[llm.prompts]\nsource = \"synthetic\"\n\
         input = {{ dist = \"fixed\", tokens = 2 }}\n\
         output = {{ dist = \"fixed\", tokens = {output} }}\n{extra}"
    );
    let mut config = ScenarioConfig::parse(&text, "l.toml", &Overrides::default()).unwrap();
    config.resolve_files("l.toml").unwrap();
    let driver =
        LlmDriver::new(&config.common(), config.file.llm.as_ref(), config.file.slo).unwrap();
    let rec = crate::recorder::Recorder::for_driver(vec!["l".into()], &driver, 1);
    (rec, driver.session())
}

/// The TTFT (min, max, in µs) of a JetStream request whose single-threaded worker is
/// blocked for 300 ms from `busy_from` after the request is handed to tonic (a first call
/// connects, untimed; the second is the one measured).
async fn jetstream_ttft_with_busy_worker(busy_from: Duration) -> (u64, u64) {
    let addr = jetstream_server();
    let (rec, session) = one_user(&format!("http://{addr}"), "jetstream", 2);
    let (min, max, n) = ttft_with_busy_worker(rec, session, busy_from).await;
    assert!(n.hists[SLOTS.metric + 1].is_none(), "no TLS on http://");
    (min, max)
}

/// The TTFT (min, max, µs) of the second of two requests of `session`, its worker blocked
/// for 300 ms from `busy_from` after the hand-over.
async fn ttft_with_busy_worker(
    rec: crate::recorder::Recorder,
    mut session: Box<dyn Session>,
    busy_from: Duration,
) -> (u64, u64, crate::recorder::NameInterval) {
    use rand::SeedableRng;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    for round in 0..2 {
        let call = session.call(Call {
            rng: &mut rng,
            recorder: &rec,
            scheduled: Instant::now(),
            elapsed: Duration::ZERO,
            request: None,
        });
        let busy = async {
            if round == 1 {
                if !busy_from.is_zero() {
                    tokio::time::sleep(busy_from).await;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        };
        tokio::join!(call, busy);
    }
    let n = rec.take().names.remove(0);
    assert_eq!((n.requests, n.failures), (2, 0), "{n:?}");
    // One connection: the first request opened it, the second reused it.
    let counted = &n.counters[SLOTS.counter..SLOTS.counter + 2];
    assert_eq!(counted, &[1, 1], "{n:?}");
    assert_eq!(n.hists[SLOTS.metric].as_ref().map(|h| h.len()), Some(1));
    let ttft = n.hists[TTFT].as_ref().expect("TTFT recorded");
    (ttft.min(), ttft.max(), n)
}

/// JetStream tokens are timed by the kernel's receive timestamps, like HTTP ones: a worker
/// blocked from 20 ms to 320 ms while the first token arrives (50 ms after the request)
/// still reports a TTFT near 50 ms.
#[tokio::test(flavor = "current_thread")]
async fn jetstream_tokens_carry_their_arrival_not_the_read() {
    let (min, max) = jetstream_ttft_with_busy_worker(Duration::from_millis(20)).await;
    assert!(min >= 50_000, "TTFT min {min} µs");
    assert!(
        max < 200_000,
        "TTFT {max} µs: the read time, not the arrival"
    );
}

/// JetStream's TTFT counts from when tonic's connection task wrote the request: a worker
/// blocked for 300 ms right after handing it over (so it goes out 300 ms late) still
/// reports a TTFT near the server's 50 ms.
#[tokio::test(flavor = "current_thread")]
async fn jetstream_ttft_counts_from_the_write_not_the_hand_over() {
    let (min, max) = jetstream_ttft_with_busy_worker(Duration::ZERO).await;
    assert!(min >= 50_000, "TTFT min {min} µs");
    assert!(
        max < 200_000,
        "TTFT {max} µs: from the hand-over, not the write"
    );
}

/// JetStream over TLS (`https://`, the server's certificate as `[tls] ca`): the tokens
/// still carry their kernel arrival times and TTFT still counts from the write, read
/// through rustls off the stamped stream; without the certificate, each request is a
/// failure naming the TLS cause.
#[tokio::test(flavor = "current_thread")]
async fn jetstream_over_tls_keeps_its_timing_marks() {
    let tls = stampede_targets::scheduler::tls::SchedulerTls::self_signed().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, tls.cert_pem()).unwrap();
    let url = format!("https://{}", jetstream_server_with(Some(tls)));
    let trusted = format!("[tls]\nca = \"{}\"\n", ca.display());
    for busy_from in [Duration::from_millis(20), Duration::ZERO] {
        let (rec, session) = one_user_with(&url, "jetstream", 2, "1.1", &trusted);
        let (min, max, n) = ttft_with_busy_worker(rec, session, busy_from).await;
        let handshakes = n.hists[SLOTS.metric + 1].as_ref().map(|h| h.len());
        assert_eq!(handshakes, Some(1), "the TLS handshake is timed: {n:?}");
        assert!(min >= 50_000, "TTFT min {min} µs");
        assert!(
            max < 200_000,
            "TTFT {max} µs over TLS, busy from {busy_from:?}"
        );
    }
    let kinds = jetstream_failures(&url).await;
    assert_eq!(
        kinds,
        vec![(
            "tls: invalid peer certificate: UnknownIssuer".to_string(),
            3
        )]
    );
}

/// A server that speaks HTTP/1, given gRPC's HTTP/2 preface: it reads it, then answers
/// `400 Bad Request` and holds the connection for a while (`answer`), or closes it at once,
/// as hyper's HTTP/1 server does; returns its URL.
async fn http1_server(answer: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                if answer {
                    let _ = s
                        .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            });
        }
    });
    url
}

/// The failure kinds of 3 JetStream requests to `url`.
async fn jetstream_failures(url: &str) -> Vec<(String, u64)> {
    use rand::SeedableRng;
    let (rec, mut session) = one_user(url, "jetstream", 2);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    for _ in 0..3 {
        session
            .call(Call {
                rng: &mut rng,
                recorder: &rec,
                scheduled: Instant::now(),
                elapsed: Duration::ZERO,
                request: None,
            })
            .await;
    }
    let n = rec.take().names.remove(0);
    assert_eq!((n.requests, n.failures), (3, 3), "{n:?}");
    n.failure_kinds
}

/// JetStream against a server that speaks HTTP/1, not gRPC: the failure names what failed
/// underneath (the HTTP/2 error its answer caused, or the dropped connection), not the
/// bare `gRPC Unknown` / `gRPC Cancelled` tonic's status says.
#[tokio::test]
async fn jetstream_against_http1_names_the_cause() {
    let kinds = jetstream_failures(&http1_server(true).await).await;
    assert!(
        kinds
            .iter()
            .all(|(k, _)| k == "gRPC: HTTP/2 FRAME_SIZE_ERROR"),
        "{kinds:?}"
    );
    let kinds = jetstream_failures(&http1_server(false).await).await;
    assert!(
        kinds
            .iter()
            .all(|(k, _)| k.starts_with("gRPC: ") && !k.ends_with("transport error")),
        "{kinds:?}"
    );
}

/// A request written 300 ms after its scheduled time (a busy worker, a late open-model
/// arrival): TTFT and TPOT are the server's (from the write); the latency counts from the
/// scheduled time, lateness included.
#[tokio::test]
async fn ttft_counts_from_the_write_and_latency_from_the_schedule() {
    use rand::SeedableRng;
    let url = sse_server().await;
    let (rec, mut session) = one_user(&url, "openai", 3);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    let late = Duration::from_millis(300);
    session
        .call(Call {
            rng: &mut rng,
            recorder: &rec,
            scheduled: Instant::now() - late,
            elapsed: Duration::ZERO,
            request: None,
        })
        .await;
    let n = rec.take().names.remove(0);
    assert_eq!((n.requests, n.failures), (1, 0), "{n:?}");
    let ms = |i: usize| n.hists[i].as_ref().expect("recorded").max() as f64 / 1000.0;
    let (latency, ttft, tpot) = (ms(0), ms(TTFT), ms(TPOT));
    assert!((50.0..150.0).contains(&ttft), "TTFT {ttft} ms");
    assert!((9.0..60.0).contains(&tpot), "TPOT {tpot} ms");
    assert!(
        latency >= 370.0,
        "latency {latency} ms counts from the schedule"
    );
}

#[test]
fn counters_line_up_with_their_indexes() {
    assert_eq!(METRICS[TTFT - 1].name, "ttft");
    assert_eq!(METRICS[TPOT - 1].name, "tpot");
    assert_eq!(METRICS[ITL - 1].name, "itl");
    assert_eq!(METRICS[PER_TOKEN - 1].name, "latency_per_output_token");
    assert_eq!(METRICS[E2E - 1].name, "e2e");
    assert_eq!(COUNTERS[INPUT].name, "input_tokens");
    assert_eq!(COUNTERS[OUTPUT].name, "output_tokens");
    assert_eq!(COUNTERS[GOOD].name, "good");
    for m in TokenCountMethod::ALL {
        assert_eq!(
            COUNTERS[counted_by(m)].name,
            format!("counted_by_{}", m.name())
        );
    }
}

#[test]
fn request_rows_are_csv() {
    let mut out = Vec::new();
    RequestRow {
        scheduled_unix_ms: 1_700_000_000_123,
        name: "/v1/completions",
        failure: None,
        ttft: Some(Duration::from_micros(200_500)),
        tpot: Some(Duration::from_millis(20)),
        itl_mean: Some(Duration::from_millis(20)),
        e2e: Some(Duration::from_millis(1180)),
        tokens: Some((12, 50, "usage")),
        slo_met: true,
    }
    .write(&mut out);
    RequestRow {
        scheduled_unix_ms: 1,
        name: "/generate",
        failure: Some("malformed answer: x, \"y\""),
        ttft: None,
        tpot: None,
        itl_mean: None,
        e2e: Some(Duration::from_millis(5)),
        tokens: None,
        slo_met: false,
    }
    .write(&mut out);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "1700000000123,/v1/completions,true,,200.500,20.000,20.000,1180.000,12,50,usage,true"
    );
    assert_eq!(
        lines[1],
        "1,/generate,false,\"malformed answer: x, \"\"y\"\"\",,,,5.000,,,,false"
    );
    assert_eq!(
        REQUESTS_HEADER.split(',').count(),
        lines[0].split(',').count()
    );
    let now = Instant::now();
    let ms = unix_ms_of(now - Duration::from_secs(2), now);
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(wall - ms >= 2000 && wall - ms < 3000, "{}", wall - ms);
}

#[test]
fn headers_are_checked() {
    let mut h = BTreeMap::new();
    h.insert("authorization".to_string(), "Bearer x".to_string());
    let head = request_head("/v1/completions", "h:1", &h).unwrap();
    assert!(head.starts_with(b"POST /v1/completions HTTP/1.1\r\nhost: h:1\r\n"));
    assert!(head.windows(24).any(|w| w == b"authorization: Bearer x\r"));
    h.insert("bad name".to_string(), "x".to_string());
    assert!(request_head("/", "h", &h).is_err());
}

/// An HTTP/2 (h2c) SSE server on its own thread: each request's answer starts 50 ms after
/// its body arrived, then three events 30 ms apart, then the usage; returns its URL and how
/// many requests it saw.
fn h2_sse_server() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let count = count.clone();
                tokio::spawn(async move {
                    let mut conn = h2::server::handshake(tcp).await.unwrap();
                    while let Some(Ok((req, mut respond))) = conn.accept().await {
                        count.fetch_add(1, Ordering::SeqCst);
                        tokio::spawn(async move {
                            let mut body = req.into_body();
                            while let Some(d) = body.data().await {
                                let n = d.unwrap().len();
                                let _ = body.flow_control().release_capacity(n);
                            }
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            let head = http::Response::builder()
                                .header("content-type", "text/event-stream")
                                .body(())
                                .unwrap();
                            let mut out = respond.send_response(head, false).unwrap();
                            for (i, text) in ["a", " b", " c"].into_iter().enumerate() {
                                if i > 0 {
                                    tokio::time::sleep(Duration::from_millis(30)).await;
                                }
                                let data = format!(
                                    "data: {{\"choices\":[{{\"index\":0,\"text\":\"{text}\"}}],\"usage\":null}}\n\n"
                                );
                                out.send_data(Bytes::from(data), false).unwrap();
                            }
                            let usage = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n";
                            out.send_data(Bytes::from_static(usage.as_bytes()), true)
                                .unwrap();
                        });
                    }
                });
            }
        });
    });
    (url, seen)
}

/// Over HTTP/2 the timing truth is the same as over HTTP/1.1: TTFT from the write to the
/// first event's arrival, ITL between events' arrivals, tokens counted; the second request
/// reuses the connection.
#[tokio::test]
async fn http2_streams_time_tokens_by_their_arrival() {
    use rand::prelude::*;
    let (url, seen) = h2_sse_server();
    let (rec, mut session) = one_user_with(&url, "openai", 3, "2", "");
    let mut rng = SmallRng::from_os_rng();
    for _ in 0..2 {
        session
            .call(Call {
                rng: &mut rng,
                recorder: &rec,
                scheduled: Instant::now(),
                elapsed: Duration::ZERO,
                request: None,
            })
            .await;
    }
    let n = rec.take().names.remove(0);
    assert_eq!((n.requests, n.failures), (2, 0), "{n:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    let hist = |i: usize| n.hists[i].as_ref().expect("recorded");
    let ms = |us: u64| us as f64 / 1000.0;
    let (ttft_min, ttft_max) = (ms(hist(TTFT).min()), ms(hist(TTFT).max()));
    assert!(
        ttft_min >= 49.0 && ttft_max < 150.0,
        "TTFT {ttft_min}..{ttft_max} ms"
    );
    let itl = hist(ITL);
    assert_eq!(itl.len(), 4, "2 gaps per answer");
    // Each gap is 30 ms at the server; a busy machine can delay one event and shorten
    // the next gap, not the mean.
    let mean = itl.mean() / 1000.0;
    assert!(
        (27.0..60.0).contains(&mean) && ms(itl.max()) < 100.0,
        "ITL mean {mean} ms, {}..{} ms",
        ms(itl.min()),
        ms(itl.max())
    );
    assert_eq!(n.counters[OUTPUT], 6, "tokens");
    assert_eq!(n.counters[SLOTS.counter], 1, "connections_new");
    assert_eq!(n.counters[SLOTS.reused()], 1, "connections_reused");
}
