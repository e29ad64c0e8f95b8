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
    let dir = TestDir::new();
    let out = dir.join("out");
    let mut args = vec![
        "run",
        "scenarios/examples/llm-prompts.toml",
        "--target",
        &target.url,
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
    assert!(done.stdout.contains("TTFT") || backend == "sax" || backend == "vllm-whole");
    dir.read_json("out/summary.json")
}

/// Every backend: the requests, prompt tokens and output tokens the summary reports equal
/// what the server counted, across 2 workers.
#[test]
fn token_counts_equal_the_servers_for_every_backend() {
    let target = LlmTarget::start_with(&["--ttft", "20ms", "--tpot", "2ms", "--seed", "3"]);
    for backend in ["openai", "openai-chat", "vllm", "tgi", "triton", "sax"] {
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
        let streamed = backend != "sax";
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
        }
        let workers = summary["workers"].as_array().unwrap();
        assert_eq!(workers.len(), 2);
        assert!(workers.iter().all(|w| u64_at(w, "/requests") > 0));
    }
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
    // Successful answers still count their tokens.
    assert!(u64_at(&summary, "/llm/output_tokens") > 0);
}
