//! The `requests` record stream of `--requests-csv`: one CSV row per request of an `llm`
//! scenario, written by the driver and appended by the master to `requests.csv`.

use std::time::{Duration, Instant};

use super::file::LlmFile;
use crate::recorder::RecordStream;

/// The record stream of `--requests-csv`: one row per request.
pub const REQUESTS_STREAM: &str = "requests";
/// Its columns. Times in ms (3 decimals), empty when not measured (no TTFT without streaming,
/// none of the figures for a failure); `failure` is the failure's kind, empty for a success.
pub const REQUESTS_HEADER: &str = "scheduled_unix_ms,name,success,failure,ttft_ms,tpot_ms,\
itl_mean_ms,e2e_ms,input_tokens,output_tokens,token_count_method,slo_met";

/// The record streams of an llm scenario: `requests` when it asks for per-request rows.
pub fn record_streams(llm: Option<&LlmFile>) -> Vec<RecordStream> {
    match llm {
        Some(llm) if llm.requests_csv => vec![RecordStream {
            name: REQUESTS_STREAM.into(),
            header: REQUESTS_HEADER.into(),
        }],
        _ => Vec::new(),
    }
}

/// One row of the `requests` stream (see [`REQUESTS_HEADER`]).
pub(super) struct RequestRow<'a> {
    pub(super) scheduled_unix_ms: u64,
    pub(super) name: &'a str,
    /// The failure's kind; `None` for a success.
    pub(super) failure: Option<&'a str>,
    pub(super) ttft: Option<Duration>,
    pub(super) tpot: Option<Duration>,
    pub(super) itl_mean: Option<Duration>,
    pub(super) e2e: Option<Duration>,
    /// Input tokens, output tokens and the rule that counted them (successes only).
    pub(super) tokens: Option<(u32, u32, &'static str)>,
    pub(super) slo_met: bool,
}

impl RequestRow<'_> {
    /// Append the row, with its line end, as CSV.
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        use std::io::Write;
        let ms = |d: Option<Duration>| {
            d.map_or(String::new(), |d| format!("{:.3}", d.as_secs_f64() * 1e3))
        };
        let (input, output, method) = match self.tokens {
            Some((i, o, m)) => (i.to_string(), o.to_string(), m),
            None => (String::new(), String::new(), ""),
        };
        // Writing to a Vec cannot fail.
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{}",
            self.scheduled_unix_ms,
            csv_field(self.name),
            self.failure.is_none(),
            csv_field(self.failure.unwrap_or("")),
            ms(self.ttft),
            ms(self.tpot),
            ms(self.itl_mean),
            ms(self.e2e),
            input,
            output,
            method,
            self.slo_met,
        );
    }
}

/// A CSV field, quoted when it holds a comma, a quote or a line end.
fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// The wall-clock time (Unix ms) of `scheduled`, given that `now` is the present instant.
pub(super) fn unix_ms_of(scheduled: Instant, now: Instant) -> u64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let back =
        now.saturating_duration_since(scheduled) + Instant::now().saturating_duration_since(now);
    wall.saturating_sub(back).as_millis() as u64
}
