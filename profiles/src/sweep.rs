//! The pure parts of a rate sweep: token buckets, request types to sweep, turning one step's
//! measured figures into a benchmark row, and the knee search's next rate.
//!
//! `stampede profile sweep` runs the steps (through the master, like `stampede run`) and
//! calls these; nothing here runs load or reads files.

use crate::bench_csv::BenchRow;

/// A power-of-two token bucket: `2^power ..= 2^(power+1) − 1` (`512-1023` is power 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bucket {
    /// log2 of the lower bound.
    pub power: u32,
}

impl Bucket {
    /// The lower bound.
    pub fn low(self) -> u32 {
        1 << self.power
    }

    /// The upper bound.
    pub fn high(self) -> u32 {
        (1u32 << (self.power + 1)) - 1
    }

    /// The range as the Performance Profile Generator's data writes it, `512-1023`.
    pub fn range(self) -> String {
        format!("{}-{}", self.low(), self.high())
    }

    /// The length a sweep sends for this bucket: its middle, rounded down (`2-3` → 2,
    /// `32-63` → 47).
    pub fn tokens(self) -> u32 {
        ((u64::from(self.low()) + u64::from(self.high())) / 2) as u32
    }
}

impl std::str::FromStr for Bucket {
    type Err = String;
    /// `512-1023`, or a bare power-of-two lower bound (`512`).
    fn from_str(s: &str) -> Result<Bucket, String> {
        let s = s.trim();
        let low: u32 = s
            .split('-')
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| format!("bucket `{s}`: expected a range like 512-1023"))?;
        if low == 0 || !low.is_power_of_two() || low > 1 << 30 {
            return Err(format!(
                "bucket `{s}`: the lower bound must be a power of two (1, 2, 4, ... 512, ...)"
            ));
        }
        let bucket = Bucket {
            power: low.trailing_zeros(),
        };
        if s.contains('-') && s != bucket.range() {
            return Err(format!(
                "bucket `{s}`: buckets are power-of-two ranges; did you mean {}?",
                bucket.range()
            ));
        }
        Ok(bucket)
    }
}

/// One request type to sweep: input and output buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Prompt length bucket.
    pub input: Bucket,
    /// Output length bucket.
    pub output: Bucket,
}

impl Shape {
    /// `In:2-3 Out:32-63`, the Performance Profile Generator's `bucket_description`.
    pub fn describe(self) -> String {
        format!("In:{} Out:{}", self.input.range(), self.output.range())
    }
}

impl std::str::FromStr for Shape {
    type Err = String;
    /// `IN:OUT`, each a bucket: `2-3:32-63`.
    fn from_str(s: &str) -> Result<Shape, String> {
        let (i, o) = s
            .split_once(':')
            .ok_or_else(|| format!("request type `{s}`: expected IN:OUT, e.g. 2-3:32-63"))?;
        Ok(Shape {
            input: i.parse()?,
            output: o.parse()?,
        })
    }
}

/// The worker type the sweep measures (the Performance Profile Generator's `WorkerType`
/// fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerFields {
    /// What the profile matches on.
    pub accelerator_type: String,
    /// Accelerators per replica.
    pub accelerator_count: u32,
    /// The model served.
    pub model_name: String,
    /// `vLLM`, `TGI`, ...
    pub model_server_type: String,
    /// The server's image.
    pub model_server_image: String,
}

/// What one step measured, from its run summary.
#[derive(Debug, Clone, PartialEq)]
pub struct StepFigures {
    /// Rate asked for, requests/s.
    pub rate: f64,
    /// Length of the run, s.
    pub duration_s: f64,
    /// Requests sent (finished, successful or not).
    pub requests: u64,
    /// Of which failed.
    pub failures: u64,
    /// Prompt tokens over all successful requests.
    pub input_tokens: u64,
    /// Output tokens over all successful requests.
    pub output_tokens: u64,
    /// p90 end-to-end latency, ms.
    pub p90_e2e_ms: f64,
    /// p90 time to first token, ms.
    pub p90_ttft_ms: f64,
    /// p90 time per output token after the first, ms.
    pub p90_tpot_ms: f64,
    /// p90 over the requests of each one's E2E latency ÷ its output tokens, ms (the llm
    /// driver's `latency_per_output_token`); 0 when the run did not record it.
    pub p90_latency_per_output_token_ms: f64,
}

impl StepFigures {
    /// Successful requests.
    pub fn successes(&self) -> u64 {
        self.requests.saturating_sub(self.failures)
    }

    /// Mean output tokens of a successful request (0 without any).
    pub fn mean_output(&self) -> f64 {
        ratio(self.output_tokens as f64, self.successes() as f64)
    }

    /// The Performance Profile Generator's latency figure: p90 of per-request E2E ÷ output tokens,
    /// ms, as the llm driver measured it per request. A summary without that histogram (an older
    /// run) falls back to p90(E2E) ÷ the mean output length, the same figure when every answer has
    /// the same length (`ignore_eos`); 0 when nothing succeeded.
    pub fn p90_per_output_token_ms(&self) -> f64 {
        if self.p90_latency_per_output_token_ms > 0.0 {
            return self.p90_latency_per_output_token_ms;
        }
        ratio(self.p90_e2e_ms, self.mean_output())
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

/// The row of one step.
pub fn row(shape: Shape, worker: &WorkerFields, step: &StepFigures, step_dir: &str) -> BenchRow {
    let ok = step.successes() as f64;
    BenchRow {
        input_power_of_2: shape.input.power,
        input_range: shape.input.range(),
        output_power_of_2: shape.output.power,
        output_range: shape.output.range(),
        bucket_description: shape.describe(),
        metrics_request_rate: step.rate,
        metrics_avg_input_len_mean: ratio(step.input_tokens as f64, ok),
        metrics_avg_output_len_mean: step.mean_output(),
        metrics_p90_per_output_token_latency_mean: step.p90_per_output_token_ms(),
        metrics_output_tokens_per_min_mean: ratio(
            step.output_tokens as f64 * 60.0,
            step.duration_s,
        ),
        metrics_num_prompts_attempted_mean: step.requests,
        metrics_num_prompts_succeeded_mean: step.successes(),
        accelerator_type: worker.accelerator_type.clone(),
        accelerator_count: worker.accelerator_count,
        model_name: worker.model_name.clone(),
        model_server_type: worker.model_server_type.clone(),
        model_server_image: worker.model_server_image.clone(),
        metrics_p90_ttft_ms: step.p90_ttft_ms,
        metrics_p90_e2e_latency_ms: step.p90_e2e_ms,
        metrics_p90_tpot_ms: step.p90_tpot_ms,
        metrics_achieved_request_rate: ratio(ok, step.duration_s),
        step_dir: step_dir.to_string(),
    }
}

/// The knee search: the lowest and highest rate are measured first; then each step halves
/// the interval between the highest rate known to meet the SLO and the lowest known to miss
/// it, until the steps run out or the interval is within `precision` (relative).
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    /// Highest rate measured within the SLO.
    pub meets: Option<f64>,
    /// Lowest rate measured above the SLO.
    pub misses: Option<f64>,
    min: f64,
    max: f64,
    precision: f64,
}

impl Search {
    /// Search between `min` and `max` requests/s, stopping once the bracket is within
    /// `precision` of its upper end (0.05: 5 %).
    pub fn new(min: f64, max: f64, precision: f64) -> Search {
        Search {
            meets: None,
            misses: None,
            min,
            max,
            precision,
        }
    }

    /// Record a measured rate and whether its latency met the SLO.
    pub fn record(&mut self, rate: f64, met: bool) {
        if met {
            self.meets = Some(self.meets.map_or(rate, |m| m.max(rate)));
        } else {
            self.misses = Some(self.misses.map_or(rate, |m| m.min(rate)));
        }
    }

    /// The next rate to measure, or `None` when done: the SLO is met at `max`, missed at
    /// `min`, or the bracket is narrow enough.
    pub fn next(&self) -> Option<f64> {
        match (self.meets, self.misses) {
            (None, None) => Some(self.min),
            (Some(m), None) if m < self.max => Some(self.max),
            (Some(_), None) => None,
            (None, Some(x)) if x > self.min => Some(self.min),
            (None, Some(_)) => None,
            (Some(lo), Some(hi)) => {
                if hi <= lo || (hi - lo) <= self.precision * hi {
                    None
                } else {
                    Some(round_rate((lo + hi) / 2.0))
                }
            }
        }
    }
}

/// Rates keep three decimals: enough to tell steps apart, short in file names and CSVs.
fn round_rate(r: f64) -> f64 {
    (r * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        let b: Bucket = "512-1023".parse().unwrap();
        assert_eq!(
            (b.power, b.range(), b.tokens()),
            (9, "512-1023".into(), 767)
        );
        assert_eq!("2".parse::<Bucket>().unwrap().range(), "2-3");
        assert_eq!("1-1".parse::<Bucket>().unwrap().tokens(), 1);
        assert!(
            "3-5"
                .parse::<Bucket>()
                .unwrap_err()
                .contains("power of two")
        );
        assert!(
            "512-1000"
                .parse::<Bucket>()
                .unwrap_err()
                .contains("did you mean 512-1023")
        );
        assert!("S".parse::<Bucket>().is_err());
        let s: Shape = "2-3:32-63".parse().unwrap();
        assert_eq!(s.describe(), "In:2-3 Out:32-63");
        assert!("2-3".parse::<Shape>().is_err());
    }

    #[test]
    fn a_step_becomes_a_row_in_the_generators_terms() {
        let step = StepFigures {
            rate: 8.0,
            duration_s: 10.0,
            requests: 80,
            failures: 0,
            input_tokens: 80 * 2,
            output_tokens: 80 * 47,
            p90_e2e_ms: 940.0,
            p90_ttft_ms: 20.0,
            p90_tpot_ms: 19.5,
            p90_latency_per_output_token_ms: 0.0,
        };
        let worker = WorkerFields {
            accelerator_type: "NVIDIA_L4".into(),
            accelerator_count: 1,
            model_name: "m".into(),
            model_server_type: "vLLM".into(),
            model_server_image: "img".into(),
        };
        let shape: Shape = "2-3:32-63".parse().unwrap();
        let r = row(shape, &worker, &step, "step-01");
        // Without the per-request histogram: p90(E2E) ÷ the mean length.
        assert_eq!(r.metrics_p90_per_output_token_latency_mean, 20.0);
        // With it, the measured per-request figure.
        let measured = StepFigures {
            p90_latency_per_output_token_ms: 21.5,
            ..step.clone()
        };
        let r2 = row(shape, &worker, &measured, "step-01");
        assert_eq!(r2.metrics_p90_per_output_token_latency_mean, 21.5);
        assert_eq!(r.metrics_avg_output_len_mean, 47.0);
        assert_eq!(r.metrics_output_tokens_per_min_mean, 80.0 * 47.0 * 6.0);
        assert_eq!(r.metrics_achieved_request_rate, 8.0);
        assert_eq!((r.input_power_of_2, r.output_power_of_2), (1, 5));
        assert_eq!(r.bucket_description, "In:2-3 Out:32-63");
    }

    #[test]
    fn the_search_brackets_the_knee() {
        // Latency within the SLO up to 33 rps.
        let mut s = Search::new(4.0, 64.0, 0.05);
        let mut measured = Vec::new();
        while let Some(r) = s.next() {
            measured.push(r);
            s.record(r, r <= 33.0);
            assert!(measured.len() < 20);
        }
        assert_eq!(&measured[..2], &[4.0, 64.0]);
        let (lo, hi) = (s.meets.unwrap(), s.misses.unwrap());
        assert!(
            lo <= 33.0 && hi > 33.0 && (hi - lo) <= 0.05 * hi,
            "{lo} {hi}"
        );
        // Met at the top: nothing more to do; missed at the bottom too.
        let mut s = Search::new(4.0, 64.0, 0.05);
        s.record(4.0, true);
        s.record(64.0, true);
        assert_eq!(s.next(), None);
        let mut s = Search::new(4.0, 64.0, 0.05);
        s.record(4.0, false);
        assert_eq!(s.next(), None);
    }
}
