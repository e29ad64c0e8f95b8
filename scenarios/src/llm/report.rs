//! The `llm` driver's figures and report: the [`MetricSpec`]s of its histograms (TTFT, TPOT,
//! ITL, per output token, E2E) and counters (tokens, goodput, the token-counting rule), and
//! the `llm` block of `summary.json` with the `LLM (ms)` section under the end-of-run table.
//!
//! The driver ([`crate::driver::llm`]) records these; reports read them back here by their
//! specs' names. Only formatting: no clocks, no sockets.

use hdrhistogram::Histogram;
use serde_json::{Value, json};

use crate::report::{
    Figures, JsonBlock, Place, Report, RunContext, max_ms, min_ms, per_second, quantile_ms,
};
use crate::spec::{Family, MetricSpec, Prometheus, Role, Section, Unit};

/// Time to the first token (µs).
pub const TTFT: MetricSpec = MetricSpec {
    role: Some(Role::TimeToFirstToken),
    prometheus: Some(Prometheus {
        name: "stampede_llm_time_to_first_token_seconds",
        help: "LLM: time from writing the request to its first token.",
        label: None,
    }),
    section: Some(Section::Llm),
    tui: Some("TTFT"),
    ..MetricSpec::new(
        "ttft",
        Family::LlmTiming,
        Unit::Micros,
        "Time from the request's scheduled send to its first token.",
    )
};

/// Time per output token after the first, per request (µs).
pub const TPOT: MetricSpec = MetricSpec {
    role: Some(Role::TimePerOutputToken),
    prometheus: Some(Prometheus {
        name: "stampede_llm_time_per_output_token_seconds",
        help: "LLM: time per output token after the first, per request.",
        label: None,
    }),
    section: Some(Section::Llm),
    tui: Some("TPOT"),
    ..MetricSpec::new(
        "tpot",
        Family::LlmTiming,
        Unit::Micros,
        "Time per output token after the first, per request.",
    )
};

/// Time between consecutive streamed chunks (µs).
pub const ITL: MetricSpec = MetricSpec {
    role: Some(Role::InterTokenLatency),
    prometheus: Some(Prometheus {
        name: "stampede_llm_inter_token_latency_seconds",
        help: "LLM: time between consecutive streamed chunks.",
        label: None,
    }),
    section: Some(Section::Llm),
    tui: Some("ITL"),
    ..MetricSpec::new(
        "itl",
        Family::LlmTiming,
        Unit::Micros,
        "Time between consecutive streamed chunks.",
    )
};

/// E2E latency ÷ output tokens of each successful request (µs): the per-output-token latency
/// of ig-wva's Performance Profile Generator.
pub const PER_OUTPUT_TOKEN: MetricSpec = MetricSpec {
    section: Some(Section::Llm),
    ..MetricSpec::new(
        "latency_per_output_token",
        Family::LlmTiming,
        Unit::Micros,
        "E2E latency divided by the output tokens of each successful request.",
    )
};

/// E2E latency of each successful request (µs).
pub const E2E: MetricSpec = MetricSpec {
    section: Some(Section::Llm),
    ..MetricSpec::new(
        "e2e",
        Family::LlmTiming,
        Unit::Micros,
        "Latency of each successful request, from its scheduled send.",
    )
};

/// Prompt tokens sent.
pub const INPUT_TOKENS: MetricSpec = MetricSpec {
    role: Some(Role::InputTokens),
    prometheus: Some(Prometheus {
        name: "stampede_llm_input_tokens_total",
        help: "LLM: prompt tokens sent.",
        label: None,
    }),
    section: Some(Section::Llm),
    ..MetricSpec::new(
        "input_tokens",
        Family::Tokens,
        Unit::Tokens,
        "Prompt tokens sent.",
    )
};

/// Output tokens received.
pub const OUTPUT_TOKENS: MetricSpec = MetricSpec {
    role: Some(Role::OutputTokens),
    prometheus: Some(Prometheus {
        name: "stampede_llm_output_tokens_total",
        help: "LLM: output tokens received.",
        label: None,
    }),
    section: Some(Section::Llm),
    tui: Some("out tok"),
    ..MetricSpec::new(
        "output_tokens",
        Family::Tokens,
        Unit::Tokens,
        "Output tokens received.",
    )
};

/// Requests that met every `[slo]` objective (goodput).
pub const GOOD: MetricSpec = MetricSpec {
    role: Some(Role::GoodRequests),
    prometheus: Some(Prometheus {
        name: "stampede_llm_good_requests_total",
        help: "LLM: requests that met every latency objective of the scenario (goodput).",
        label: None,
    }),
    section: Some(Section::Llm),
    ..MetricSpec::new(
        "good",
        Family::Slo,
        Unit::Count,
        "Requests that met every latency objective of the scenario.",
    )
};

/// The rule that counted each request's output tokens: `counted_by_<method>`, in
/// [`crate::llm::TokenCountMethod`] order.
pub const COUNTED_BY: [MetricSpec; 4] = [
    counted_by("counted_by_usage"),
    counted_by("counted_by_tokenizer"),
    counted_by("counted_by_chunks"),
    counted_by("counted_by_words"),
];

const fn counted_by(name: &'static str) -> MetricSpec {
    MetricSpec {
        section: Some(Section::Llm),
        ..MetricSpec::new(
            name,
            Family::Tokens,
            Unit::Count,
            "Requests whose output tokens this rule counted.",
        )
    }
}

/// The `llm` block and section.
pub const REPORT: Report = Report {
    name: "llm",
    json: &[JsonBlock {
        place: Place::Top,
        key: "llm",
        build: llm_json,
    }],
    table: llm_section,
};

/// The `llm` block: streaming figures and tokens of an `llm` run; `null` for other kinds.
pub fn llm_json(total: &Figures, run: &RunContext) -> Value {
    if !total.metrics.contains_key(TTFT.name) && !total.counters.contains_key(OUTPUT_TOKENS.name) {
        return Value::Null;
    }
    // A figure nothing measured (TTFT without streaming) is null, not a zero.
    let figures = |h: Option<&Histogram<u64>>| match h.filter(|h| !h.is_empty()) {
        Some(h) => json!({
            "p50": quantile_ms(h, 0.50),
            "p90": quantile_ms(h, 0.90),
            "p99": quantile_ms(h, 0.99),
            "mean": h.mean() / 1000.0,
            "min": min_ms(h),
            "max": max_ms(h),
            "count": h.len(),
        }),
        None => json!({
            "p50": null, "p90": null, "p99": null, "mean": null, "min": null, "max": null,
            "count": 0,
        }),
    };
    let (input, output) = (
        total.counter(INPUT_TOKENS.name),
        total.counter(OUTPUT_TOKENS.name),
    );
    let per_s = |n: u64| per_second(n, run.duration_s);
    let successes = total.requests.saturating_sub(total.failures);
    let good = total.counter(GOOD.name);
    json!({
        "ttft_ms": figures(total.metrics.get(TTFT.name)),
        "tpot_ms": figures(total.metrics.get(TPOT.name)),
        "itl_ms": figures(total.metrics.get(ITL.name)),
        // Successes only, as the other figures; `latency` also holds the failures.
        "e2e_ms": figures(total.metrics.get(E2E.name)),
        "latency_per_output_token_ms": figures(total.metrics.get(PER_OUTPUT_TOKEN.name)),
        "input_tokens": input,
        "output_tokens": output,
        "output_tokens_per_second": per_s(output),
        "total_tokens_per_second": per_s(input + output),
        "request_throughput": per_s(successes),
        "goodput_rps": per_s(good),
        "good_requests": good,
        "token_count_method": token_count_method(total),
    })
}

/// The rule that counted output tokens: one name, or `mixed` when requests differed (a server
/// giving usage only sometimes).
fn token_count_method(total: &Figures) -> &'static str {
    let used: Vec<&str> = COUNTED_BY
        .iter()
        .filter(|c| total.counter(c.name) > 0)
        .filter_map(|c| c.name.strip_prefix("counted_by_"))
        .collect();
    match used.as_slice() {
        [] => "none",
        [one] => one,
        _ => "mixed",
    }
}

/// The LLM figures under the stats table, for `llm` runs.
pub fn llm_section(total: &Figures, run: &RunContext) -> String {
    let v = llm_json(total, run);
    if v.is_null() {
        return String::new();
    }
    let mut out = String::from("\nLLM (ms)     p50       p90       p99      mean\n");
    for (label, key) in [
        ("TTFT", "ttft_ms"),
        ("TPOT", "tpot_ms"),
        ("ITL", "itl_ms"),
        ("E2E", "e2e_ms"),
    ] {
        let f = &v[key];
        let n = |k: &str| f[k].as_f64().map_or("-".to_string(), |x| format!("{x:.1}"));
        out.push_str(&format!(
            "  {label:<6} {:>9} {:>9} {:>9} {:>9}\n",
            n("p50"),
            n("p90"),
            n("p99"),
            n("mean")
        ));
    }
    if v["ttft_ms"]["count"] == 0 {
        // ig-wva's Performance Profile Generator's figure for answers read whole: E2E ÷
        // output tokens.
        if let Some(h) = total.measured(PER_OUTPUT_TOKEN.name) {
            out.push_str(&format!(
                "  not streamed: no TTFT, TPOT or ITL; time per output token (E2E ÷ tokens) p50 {:.1}, p90 {:.1}, p99 {:.1}, mean {:.1}\n",
                quantile_ms(h, 0.50),
                quantile_ms(h, 0.90),
                quantile_ms(h, 0.99),
                h.mean() / 1000.0,
            ));
        }
    }
    let n = |k: &str| v[k].as_f64().unwrap_or(0.0);
    out.push_str(&format!(
        "  tokens: {} in, {} out ({} counted) · {:.1} output tokens/s · {:.1} total tokens/s\n",
        v["input_tokens"],
        v["output_tokens"],
        v["token_count_method"].as_str().unwrap_or("?"),
        n("output_tokens_per_second"),
        n("total_tokens_per_second"),
    ));
    out.push_str(&format!(
        "  throughput {:.2} req/s · goodput {:.2} req/s ({} of {} requests met every SLO)\n",
        n("request_throughput"),
        n("goodput_rps"),
        v["good_requests"],
        total.requests.saturating_sub(total.failures),
    ));
    out
}
