//! `llm` scenarios end to end: `stampede run` with 2 worker processes against
//! `stampede target llm` (a separate process), for every backend, and the answers the server
//! breaks on purpose.

use std::time::Duration;

use serde_json::Value;

use crate::util::{LlmTarget, Proc, TestDir, workspace_root};

const RUN_LIMIT: Duration = Duration::from_secs(30);

fn u64_at(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no integer at {pointer} in {v:#}"))
}

/// Run the example scenario against `target` with this backend; returns summary.json.
fn run(target: &LlmTarget, backend: &str, extra: &[&str]) -> Value {
    run_in(&TestDir::new(), target, backend, extra)
}

/// The example scenario with `stream = false`, written to `dir`.
fn whole_answer_scenario(dir: &TestDir) -> String {
    example_with(dir, "whole.toml", "stream = true", "stream = false")
}

/// The example scenario with `from` replaced by `to` (and its prompt file's path made
/// absolute), written to `dir/name`; its path.
fn example_with(dir: &TestDir, name: &str, from: &str, to: &str) -> String {
    let root = workspace_root();
    let example = std::fs::read_to_string(root.join("scenarios/examples/llm-prompts.toml"))
        .expect("example scenario");
    let prompts = root.join("scenarios/data/prompts.txt");
    let toml = example.replace(from, to).replace(
        "\"../data/prompts.txt\"",
        &format!("{:?}", prompts.display().to_string()),
    );
    assert!(toml.contains(to), "{toml}");
    let path = dir.write(name, &toml);
    path.to_str().unwrap().to_string()
}

/// [`run`] with its results in `dir/out`. A backend named `NAME-whole` is `NAME` with
/// `stream = false`.
fn run_in(dir: &TestDir, target: &LlmTarget, name: &str, extra: &[&str]) -> Value {
    let (backend, scenario) = match name.strip_suffix("-whole") {
        Some(backend) => (backend, whole_answer_scenario(dir)),
        None => (name, "scenarios/examples/llm-prompts.toml".to_string()),
    };
    let out = dir.join("out");
    // JetStream speaks gRPC on the target's second port.
    let url = match backend {
        "jetstream" => target
            .grpc_url
            .as_deref()
            .expect("started with --grpc-bind"),
        _ => &target.url,
    };
    let mut args = vec![
        "run",
        &scenario,
        "--target",
        url,
        "--backend",
        backend,
        "--duration",
        "2s",
        "--users",
        "8",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let done = Proc::run(&args, workspace_root(), RUN_LIMIT);
    assert!(
        [0, 3].contains(&done.code()),
        "{backend}: unexpected exit\n{}",
        done.show()
    );
    assert!(done.stdout.contains("TTFT") || backend == "sax" || name.ends_with("-whole"));
    dir.read_json("out/summary.json")
}

/// Every backend: the requests, prompt tokens and output tokens the summary reports equal
/// what the server counted, across 2 workers.
#[test]
fn token_counts_equal_the_servers_for_every_backend() {
    let target = LlmTarget::start_with(&[
        "--ttft",
        "20ms",
        "--tpot",
        "2ms",
        "--seed",
        "3",
        "--grpc-bind",
        "127.0.0.1:0",
    ]);
    for backend in [
        "openai",
        "openai-chat",
        "vllm",
        "tgi",
        "tgi-whole",
        "triton",
        "sax",
        "jetstream",
    ] {
        target.reset();
        let summary = run(&target, backend, &[]);
        let stats = target.stats();
        let llm = &summary["llm"];
        assert!(llm.is_object(), "{backend}: no llm block in {summary:#}");
        let requests = u64_at(&summary, "/total/requests");
        assert!(requests > 0, "{backend}: nothing sent");
        assert_eq!(
            u64_at(&summary, "/total/failures"),
            0,
            "{backend}: {summary:#}"
        );
        assert_eq!(requests, u64_at(&stats, "/requests"), "{backend}: requests");
        assert_eq!(
            u64_at(llm, "/output_tokens"),
            u64_at(&stats, "/completion_tokens"),
            "{backend}: output tokens ({} counted)",
            llm["token_count_method"]
        );
        assert_eq!(
            u64_at(llm, "/input_tokens"),
            u64_at(&stats, "/prompt_tokens"),
            "{backend}: input tokens"
        );
        if backend.starts_with("tgi") {
            // TGI's `details`, asked for, streamed or not.
            assert_eq!(llm["token_count_method"], "usage", "{backend}: {llm:#}");
        }
        let streamed = backend != "sax" && !backend.ends_with("-whole");
        let ttft_count = u64_at(llm, "/ttft_ms/count");
        if streamed {
            assert_eq!(ttft_count, requests, "{backend}: a TTFT per request");
            let ttft = llm["ttft_ms"]["p50"].as_f64().unwrap();
            assert!(
                ttft >= 20.0,
                "{backend}: TTFT {ttft} below the server's 20 ms"
            );
        } else {
            assert_eq!(ttft_count, 0, "{backend}: no TTFT without streaming");
            assert!(llm["ttft_ms"]["p50"].is_null(), "{backend}: {llm:#}");
            assert!(u64_at(llm, "/latency_per_output_token_ms/count") > 0);
        }
        let workers = summary["workers"].as_array().unwrap();
        assert_eq!(workers.len(), 2);
        assert!(workers.iter().all(|w| u64_at(w, "/requests") > 0));
    }
}

/// The number after `key=` in a log line, colour codes or not.
fn logged_u64(log: &str, key: &str) -> u64 {
    let mut plain = String::new();
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An ANSI sequence: ESC [ ... m.
            chars.by_ref().find(|&c| c == 'm');
        } else {
            plain.push(c);
        }
    }
    let at = plain
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key} in the log:\n{log}"));
    plain[at + key.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{key} is not a number in the log:\n{log}"))
}

/// The example scenario as it ships (`builtin:llm`) with `--backend jetstream`: `stampede run`
/// starts the built-in target's gRPC side too and points the backend at it, so every request
/// succeeds, and the requests and output tokens counted equal what the target served (its
/// count, logged when the run ends).
#[test]
fn builtin_target_serves_jetstream() {
    let dir = TestDir::new();
    let out = dir.join("out");
    let done = Proc::run(
        &[
            "--log",
            "warn,stampede::cmd::run=info",
            "run",
            "scenarios/examples/llm-prompts.toml",
            "--backend",
            "jetstream",
            "--duration",
            "2s",
            "--users",
            "8",
            "--out",
            out.to_str().unwrap(),
        ],
        workspace_root(),
        RUN_LIMIT,
    );
    done.assert_code(0);
    assert!(
        done.stderr.contains("JetStream gRPC on http://"),
        "{}",
        done.show()
    );
    let summary = dir.read_json("out/summary.json");
    let requests = u64_at(&summary, "/total/requests");
    assert!(requests > 0, "nothing sent: {summary:#}");
    assert_eq!(u64_at(&summary, "/total/failures"), 0, "{summary:#}");
    let output = u64_at(&summary, "/llm/output_tokens");
    assert!(output > 0, "no output tokens counted: {summary:#}");
    assert_eq!(
        requests,
        logged_u64(&done.stderr, "target_requests"),
        "requests"
    );
    assert_eq!(
        output,
        logged_u64(&done.stderr, "target_output_tokens"),
        "output tokens"
    );
}

/// `builtin:llm` with a `[tls]` table and `--backend jetstream`: the built-in target's gRPC
/// port speaks TLS too (its certificate trusted for the run), every request succeeds over it,
/// and each connection's handshake is timed.
#[test]
fn builtin_target_serves_jetstream_over_tls() {
    let dir = TestDir::new();
    let scenario = example_with(&dir, "tls.toml", "[thresholds]", "[tls]\n\n[thresholds]");
    let out = dir.join("out");
    let done = Proc::run(
        &[
            "--log",
            "warn,stampede::cmd::run=info",
            "run",
            &scenario,
            "--backend",
            "jetstream",
            "--duration",
            "2s",
            "--users",
            "8",
            "--out",
            out.to_str().unwrap(),
        ],
        workspace_root(),
        RUN_LIMIT,
    );
    done.assert_code(0);
    assert!(
        done.stderr.contains("JetStream gRPC on https://"),
        "{}",
        done.show()
    );
    let summary = dir.read_json("out/summary.json");
    assert!(
        summary["target"].as_str().unwrap().starts_with("https://"),
        "{}",
        summary["target"]
    );
    let requests = u64_at(&summary, "/total/requests");
    assert!(requests > 0, "nothing sent: {summary:#}");
    assert_eq!(u64_at(&summary, "/total/failures"), 0, "{summary:#}");
    assert_eq!(
        requests,
        logged_u64(&done.stderr, "target_requests"),
        "requests"
    );
    let c = &summary["connections"];
    let new = u64_at(c, "/new");
    assert!(new >= 1, "{c:#}");
    assert_eq!(new + u64_at(c, "/reused"), requests, "{c:#}");
    assert_eq!(u64_at(c, "/tls_handshake_ms/count"), new, "{c:#}");
}

/// `stampede target llm --tls --grpc-bind`: the JetStream port prints an `https://` URL and
/// serves TLS with the certificate `--cert-out` wrote; trusting it (`--ca`), every request
/// succeeds; without it, each is a certificate failure.
#[test]
fn target_llm_tls_serves_jetstream_over_tls() {
    let dir = TestDir::new();
    let ca = dir.join("ca.pem");
    let target = LlmTarget::start_with(&[
        "--ttft",
        "20ms",
        "--tpot",
        "2ms",
        "--tls",
        "--cert-out",
        ca.to_str().unwrap(),
        "--grpc-bind",
        "127.0.0.1:0",
    ]);
    let grpc = target.grpc_url.as_deref().unwrap();
    assert!(grpc.starts_with("https://"), "{grpc}");
    let summary = run_in(&dir, &target, "jetstream", &["--ca", ca.to_str().unwrap()]);
    let requests = u64_at(&summary, "/total/requests");
    assert!(requests > 0, "{summary:#}");
    assert_eq!(u64_at(&summary, "/total/failures"), 0, "{summary:#}");
    assert!(u64_at(&summary, "/llm/output_tokens") > 0, "{summary:#}");
    assert!(u64_at(&summary, "/connections/tls_handshake_ms/count") >= 1);

    // Trusting only the system's roots: nothing the run does succeeds.
    let out = dir.join("untrusted");
    let done = Proc::run(
        &[
            "run",
            "scenarios/examples/llm-prompts.toml",
            "--target",
            grpc,
            "--backend",
            "jetstream",
            "--duration",
            "1s",
            "--out",
            out.to_str().unwrap(),
        ],
        workspace_root(),
        RUN_LIMIT,
    );
    assert!(done.stderr.contains("--ca"), "the hint: {}", done.show());
    let summary = dir.read_json("untrusted/summary.json");
    let requests = u64_at(&summary, "/total/requests");
    assert!(requests > 0, "{}", done.show());
    assert_eq!(u64_at(&summary, "/total/failures"), requests, "{summary:#}");
    let kinds: Vec<_> = summary["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["error"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        vec!["tls: invalid peer certificate: UnknownIssuer".to_string()],
        "{summary:#}"
    );
}

/// Answers broken on purpose (closed mid-stream, malformed JSON, an unknown event) are
/// failures of their kind; the run goes on and every request is accounted for.
#[test]
fn broken_streams_are_failures_with_their_kind() {
    let target = LlmTarget::start_with(&[
        "--ttft",
        "10ms",
        "--tpot",
        "1ms",
        "--fault-rate",
        "0.3",
        "--faults",
        "close_mid_stream,malformed_json,unknown_event",
        "--error-rate",
        "0.1",
    ]);
    let summary = run(&target, "openai", &[]);
    let stats = target.stats();
    let requests = u64_at(&summary, "/total/requests");
    let failures = u64_at(&summary, "/total/failures");
    assert_eq!(
        requests,
        u64_at(&stats, "/requests"),
        "every request counted"
    );
    assert!(
        failures > 0 && failures < requests,
        "{failures} of {requests}"
    );
    let kinds: Vec<String> = summary["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["error"].as_str().unwrap_or("").to_string())
        .collect();
    for want in [
        "HTTP 500",
        "closed mid-answer",
        "malformed",
        "unexpected stream event",
    ] {
        assert!(
            kinds.iter().any(|k| k.contains(want)),
            "no `{want}` failure in {kinds:?}"
        );
    }
    // Successful answers still count their tokens; the LLM figures are theirs alone.
    assert!(u64_at(&summary, "/llm/output_tokens") > 0);
    for figure in ["e2e_ms", "ttft_ms"] {
        assert_eq!(
            u64_at(&summary, &format!("/llm/{figure}/count")),
            requests - failures,
            "{figure}: successes only"
        );
    }
}

/// `--sweep-rates` against `stampede target llm`: each step is a run of its own with its own
/// summary, `sweep.json`/`sweep.csv` list the steps with their LLM figures, the table is
/// printed, and the steps' requests add up to what the server saw.
#[test]
fn sweep_runs_each_rate_as_its_own_step() {
    let target = LlmTarget::start_with(&["--ttft", "10ms", "--tpot", "1ms"]);
    let dir = TestDir::new();
    let out = dir.join("out");
    let done = Proc::run(
        &[
            "run",
            "scenarios/examples/llm-prompts.toml",
            "--target",
            &target.url,
            "--sweep-rates",
            "4,8",
            "--duration",
            "2s",
            "--out",
            out.to_str().unwrap(),
        ],
        workspace_root(),
        RUN_LIMIT * 2,
    );
    done.assert_code(0);
    assert!(
        done.stdout
            .contains("Sweep of `llm-prompts` by rate (2 of 2 steps)"),
        "{}",
        done.show()
    );
    let mut requests = 0;
    for (step, rate) in [("step-01-rate-4", 4.0), ("step-02-rate-8", 8.0)] {
        let summary = dir.read_json(&format!("out/{step}/summary.json"));
        let load = summary["load"].as_str().unwrap_or("");
        assert!(
            load.starts_with(&format!("open: {rate} req/s")),
            "{step}: {load}"
        );
        assert!(summary["llm"].is_object(), "{step}: no llm block");
        requests += u64_at(&summary, "/total/requests");
    }
    assert_eq!(requests, u64_at(&target.stats(), "/requests"));
    let sweep = dir.read_json("out/sweep.json");
    assert_eq!(sweep["axis"], "rate");
    let steps = sweep["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1]["value"].as_f64(), Some(8.0));
    assert!(steps[1]["output_tokens_per_second"].as_f64().unwrap() > 0.0);
    assert!(steps[1]["ttft_p50_ms"].as_f64().unwrap() >= 10.0);
    let csv = dir.read("out/sweep.csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[0].starts_with("step,axis,value,requests"));
    assert!(lines[2].starts_with("2,rate,8,"), "{csv}");
    assert!(lines[2].ends_with(",step-02-rate-8"), "{csv}");
    // Total tokens/s per step: (input + output tokens) / the step's duration.
    let header: Vec<&str> = lines[0].split(',').collect();
    let column = header
        .iter()
        .position(|c| *c == "total_tokens_per_second")
        .expect("a total_tokens_per_second column");
    for (i, step) in ["step-01-rate-4", "step-02-rate-8"].iter().enumerate() {
        let summary = dir.read_json(&format!("out/{step}/summary.json"));
        let tokens = u64_at(&summary, "/llm/input_tokens") + u64_at(&summary, "/llm/output_tokens");
        let want = tokens as f64 / summary["duration_s"].as_f64().unwrap();
        let got = steps[i]["total_tokens_per_second"].as_f64().unwrap();
        assert!(
            tokens > 0 && (got - want).abs() < 1e-9,
            "{step}: {got} != {want}"
        );
        let cell: f64 = lines[i + 1]
            .split(',')
            .nth(column)
            .unwrap()
            .parse()
            .unwrap();
        assert!((cell - want).abs() < 0.001, "{step}: {cell} != {want}");
    }
    assert!(done.stdout.contains("total tok/s"), "{}", done.stdout);
}

/// `--requests-csv`: the workers' rows reach the master's file, one per request the summary
/// counts (failures included), with the columns filled as measured.
#[test]
fn requests_csv_has_a_row_per_request() {
    let target = LlmTarget::start_with(&["--ttft", "10ms", "--tpot", "1ms", "--error-rate", "0.1"]);
    let dir = TestDir::new();
    let rows_path = dir.join("rows.csv");
    for (extra, file) in [
        (vec!["--requests-csv"], "out/requests.csv"),
        (
            vec!["--requests-csv", rows_path.to_str().unwrap()],
            "rows.csv",
        ),
    ] {
        let summary = run_in(&dir, &target, "openai", &extra);
        let requests = u64_at(&summary, "/total/requests");
        let failures = u64_at(&summary, "/total/failures");
        assert!(
            requests > 0 && failures > 0,
            "{requests} requests, {failures} failures"
        );
        let text = dir.read(file);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some(
                "scheduled_unix_ms,name,success,failure,ttft_ms,tpot_ms,itl_mean_ms,e2e_ms,\
                 input_tokens,output_tokens,token_count_method,slo_met"
            )
        );
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len() as u64, requests, "one row per request");
        let failed = rows.iter().filter(|r| r[2] == "false").count() as u64;
        assert_eq!(failed, failures);
        let ok = rows.iter().find(|r| r[2] == "true").unwrap();
        assert_eq!(ok[1], "/v1/completions");
        assert!(ok[4].parse::<f64>().unwrap() >= 10.0, "ttft {ok:?}");
        assert_eq!(ok[10], "usage");
        let output: u64 = rows.iter().filter_map(|r| r[9].parse::<u64>().ok()).sum();
        assert_eq!(output, u64_at(&summary, "/llm/output_tokens"));
        let bad = rows.iter().find(|r| r[2] == "false").unwrap();
        assert!(bad[3].contains("500"), "{bad:?}");
    }
}

/// `[llm] seed` (0 unless set) makes a run's draws repeatable: two runs of the same seeded
/// open-model scenario on 2 workers send the same number of requests with the same prompts
/// (the arrivals and each worker's picks come from the random seed, not the clock); another seed sends
/// other prompts.
#[test]
fn seeded_runs_send_the_same_prompts() {
    let target = LlmTarget::start_with(&["--ttft", "5ms", "--tpot", "1ms"]);
    let dir = TestDir::new();
    let reseeded = example_with(&dir, "reseeded.toml", "[llm]\n", "[llm]\nseed = 5\n");
    // The input tokens of every request, sorted: the prompts sent, whatever their order.
    let prompts_of = |scenario: &str, run: &str| {
        let out = dir.join(run);
        let done = Proc::run(
            &[
                "run",
                scenario,
                "--target",
                &target.url,
                "--rate",
                "40",
                "--duration",
                "2s",
                "--requests-csv",
                "--out",
                out.to_str().unwrap(),
            ],
            workspace_root(),
            RUN_LIMIT,
        );
        done.assert_code(0);
        let csv = dir.read(&format!("{run}/requests.csv"));
        let mut tokens: Vec<u32> = csv
            .lines()
            .skip(1)
            .map(|row| {
                let input = row.split(',').nth(8).unwrap_or("");
                input
                    .parse()
                    .unwrap_or_else(|_| panic!("{run}: no input tokens in {row:?}"))
            })
            .collect();
        tokens.sort_unstable();
        tokens
    };
    let example = "scenarios/examples/llm-prompts.toml";
    let first = prompts_of(example, "a");
    assert!(first.len() > 40, "{} requests", first.len());
    assert_eq!(
        first,
        prompts_of(example, "b"),
        "the same seed, other prompts"
    );
    assert_ne!(
        first,
        prompts_of(&reseeded, "c"),
        "another seed, the same prompts"
    );
}

/// Over TLS the driver times tokens by the kernel's arrival of the TCP bytes under them, as on
/// plain TCP: against the same fixed-timing server, TTFT and TPOT at p50 equal the plain run's
/// within 1 ms (a streaming server behind `stampede target llm --tls`).
#[test]
fn tls_streams_are_timed_as_plain_ones() {
    let timing = [
        "--ttft",
        "50ms",
        "--tpot",
        "5ms",
        "--output-len",
        "max",
        "--max-batch",
        "0",
        "--batch-slope",
        "0",
    ];
    let dir = TestDir::new();
    let ca = dir.join("ca.pem");
    let plain = LlmTarget::start_with(&timing);
    let mut tls_args = timing.to_vec();
    tls_args.extend(["--tls", "--cert-out", ca.to_str().unwrap()]);
    let tls = LlmTarget::start_with(&tls_args);
    assert!(tls.url.starts_with("https://"), "{}", tls.url);
    let plain_run = run(&plain, "openai", &[]);
    let ca = ca.to_str().unwrap();
    // HTTP/1.1 over TLS: one connection per user; auto over TLS: HTTP/2 by ALPN, one
    // connection per worker that its users' streams share.
    let h1_run = run(&tls, "openai", &["--ca", ca, "--http-version", "1.1"]);
    let h2_run = run(&tls, "openai", &["--ca", ca]);
    for (name, s) in [
        ("plain", &plain_run),
        ("tls h1", &h1_run),
        ("tls h2", &h2_run),
    ] {
        assert_eq!(s["total"]["failures"], 0, "{name}: {s:#}");
        assert!(u64_at(s, "/total/requests") > 20, "{name}: {s:#}");
    }
    let handshakes = |s: &Value| {
        s["requests"][0]["metrics"]["tls_handshake"]["count"]
            .as_u64()
            .unwrap_or(0)
    };
    assert!(
        handshakes(&h1_run) >= 8,
        "each of the 8 users shook hands: {}",
        handshakes(&h1_run)
    );
    assert!(
        (1..=4).contains(&handshakes(&h2_run)),
        "one HTTP/2 connection per worker: {}",
        handshakes(&h2_run)
    );
    for (name, over) in [("TLS HTTP/1.1", &h1_run), ("TLS HTTP/2", &h2_run)] {
        for figure in ["ttft_ms", "tpot_ms"] {
            let p50 = |s: &Value| s["llm"][figure]["p50"].as_f64().unwrap();
            let (a, b) = (p50(&plain_run), p50(over));
            assert!(
                (a - b).abs() < 1.0,
                "{figure} p50: plain {a} ms, {name} {b} ms"
            );
        }
    }
}
