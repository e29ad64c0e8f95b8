//! Per-class reports of a `priority` run, made from the finished run's summary: the summary table
//! of the MLPerf-LoadGen priority runner, `loadgen_runner.py` (count, p50_ms, p95_ms, p99_ms,
//! slo_attainment_%) and, per class, a LoadGen-style `mlperf_log_summary.txt` in a folder
//! `tier{T}_{slo}/`, VALID or INVALID as MLPerf LoadGen's Server scenario decides.
//!
//! The Server rule, per class: the 99th-percentile latency is within the class's target
//! latency (its SLO), the run lasted at least the minimum duration, and the class had at least
//! the minimum query count. A failed request (error, timeout, `success = false`) counts as one
//! over the target, so "p99 within target" is decided exactly from the `slo_met` counter: at
//! least ⌈0.99 · n⌉ of the n requests met it. Beside it, LoadGen's early-stopping estimate
//! ([`EarlyStopping`]): the latency that the true 99th percentile is under with 99 % confidence
//! given the n queries (a binomial bound), and whether the k over the target allow that claim.
//!
//! The rate per class is shown two ways: the requests completed against the arrivals the
//! schedule handed to the driver (they match exactly unless a request was lost), and every
//! arrival drawn (those dropped for `max_in_flight` included) against the nominal count (the class's rate integrated over the duration) in Poisson
//! standard deviations: in a 60 s run a class at 10 qps has σ ≈ 4 % of its count, so a 1 %
//! tolerance on counts is only meaningful against the drawn arrivals.
//! Nothing here touches the network; writing the folders is the only I/O.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;
use stampede_scenarios::driver::priority::{
    self, CLASSES, COUNTER_DROPPED, COUNTER_SCHEDULED, COUNTER_SLO_MET, Settings, class_name,
    slo_of, tier_of,
};
use stampede_scenarios::{Kind, LoadPlan, ScenarioConfig};

use crate::summary::RunSummary;

/// The file LoadGen writes its summary to, in each class's folder.
pub const SUMMARY_FILE: &str = "mlperf_log_summary.txt";

/// One class's figures and LoadGen verdict.
#[derive(Debug, Clone)]
pub struct ClassReport {
    /// `tier{T}_{slo}`.
    pub name: String,
    /// 1..3.
    pub tier: i32,
    /// `urgent`, `normal` or `relaxed`.
    pub slo: String,
    /// The class's SLO: LoadGen's `target_latency`.
    pub target_latency: Duration,
    /// LoadGen's `target_qps`: the total rate × the class's share.
    pub target_qps: f64,
    /// The run's length, s.
    pub duration_s: f64,
    /// LoadGen's `min_duration`: the scenario's duration.
    pub min_duration: Duration,
    /// LoadGen's `min_query_count` (0 when the scenario sets none).
    pub min_query_count: u64,
    /// Arrivals the schedule drew for this class and handed to the driver.
    pub scheduled: u64,
    /// Arrivals the schedule drew for this class that were dropped, not sent: too many
    /// requests were in flight (`max_in_flight`).
    pub dropped: u64,
    /// The nominal number of arrivals over the duration: the class's rate (spikes included)
    /// integrated over it; what [`ClassReport::drawn`] is a Poisson draw of.
    pub nominal: f64,
    /// Whether `min_query_count` may have kept the class going past the duration (then the
    /// nominal count is not comparable with the arrivals drawn).
    pub extended: bool,
    /// Requests completed (answered or failed).
    pub requests: u64,
    /// Failed requests.
    pub failures: u64,
    /// Requests answered with success within the target.
    pub slo_met: u64,
    /// Latency, µs (exact merge of the workers' histograms).
    pub latency: Histogram<u64>,
}

impl ClassReport {
    /// The reports of the classes a priority run sent (classes skipped for a rate under 0.01
    /// qps are left out); empty for other kinds.
    pub fn of(summary: &RunSummary, config: &ScenarioConfig) -> Vec<ClassReport> {
        let Ok(settings) = Settings::of(config.file.priority.as_ref()) else {
            return Vec::new();
        };
        if config.kind != Kind::Priority {
            return Vec::new();
        }
        let total = config.load.peak();
        let shares = settings.active_shares(total);
        let nominal = nominal_counts(config);
        let min_count = settings.min_query_count.unwrap_or(0) as f64;
        (0..CLASSES)
            .filter(|&i| shares[i] > 0.0)
            .map(|i| {
                let name = class_name(i);
                let stats = summary.stats.iter().find(|s| s.name == name);
                let counter = |c: &str| stats.and_then(|s| s.counters.get(c).copied()).unwrap_or(0);
                ClassReport {
                    scheduled: counter(COUNTER_SCHEDULED),
                    dropped: counter(COUNTER_DROPPED),
                    nominal: nominal[i],
                    // Within 3 σ of the minimum count, the class may well have run past the
                    // duration to reach it.
                    extended: min_count > 0.0 && nominal[i] - 3.0 * nominal[i].sqrt() < min_count,
                    tier: tier_of(i),
                    slo: name.split('_').nth(1).unwrap_or_default().to_string(),
                    target_latency: slo_of(i),
                    target_qps: total * shares[i],
                    duration_s: summary.duration_s(),
                    min_duration: config.duration,
                    min_query_count: settings.min_query_count.unwrap_or(0),
                    requests: stats.map_or(0, |s| s.requests),
                    failures: stats.map_or(0, |s| s.failures),
                    slo_met: counter(COUNTER_SLO_MET),
                    latency: stats.map_or_else(stampede_scenarios::recorder::new_histogram, |s| {
                        s.latency.clone()
                    }),
                    name,
                }
            })
            .collect()
    }

    /// Every arrival the schedule drew for this class: those handed to the driver and those
    /// dropped for `max_in_flight`; the Poisson draw of the nominal count.
    pub fn drawn(&self) -> u64 {
        self.scheduled + self.dropped
    }

    /// Arrivals drawn against the nominal count, in Poisson standard deviations (√nominal);
    /// `None` when there is no nominal count to compare with.
    pub fn drawn_sigmas(&self) -> Option<f64> {
        (self.nominal > 0.0 && !self.extended)
            .then(|| (self.drawn() as f64 - self.nominal) / self.nominal.sqrt())
    }

    /// Arrivals drawn against the nominal count, percent.
    pub fn drawn_vs_nominal_pct(&self) -> Option<f64> {
        (self.nominal > 0.0 && !self.extended)
            .then(|| 100.0 * (self.drawn() as f64 - self.nominal) / self.nominal)
    }

    /// LoadGen's early-stopping bound for this class's queries.
    pub fn early_stopping(&self) -> EarlyStopping {
        EarlyStopping::of(self.requests)
    }

    /// Percent of requests that met the SLO.
    pub fn attainment(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            100.0 * self.slo_met as f64 / self.requests as f64
        }
    }

    /// Latency at quantile `q`, ms.
    pub fn latency_ms(&self, q: f64) -> f64 {
        if self.latency.is_empty() {
            0.0
        } else {
            self.latency.value_at_quantile(q) as f64 / 1000.0
        }
    }

    /// The 99th-percentile latency is within the target: at least ⌈0.99 · n⌉ requests met it
    /// (failures count as over).
    pub fn performance_ok(&self) -> bool {
        self.requests > 0 && self.slo_met * 100 >= self.requests * 99
    }

    /// The run lasted at least the minimum duration.
    pub fn min_duration_ok(&self) -> bool {
        self.duration_s + 1e-3 >= self.min_duration.as_secs_f64()
    }

    /// The class had at least the minimum query count.
    pub fn min_queries_ok(&self) -> bool {
        self.requests >= self.min_query_count
    }

    /// VALID by MLPerf's Server rules.
    pub fn valid(&self) -> bool {
        self.performance_ok() && self.min_duration_ok() && self.min_queries_ok()
    }

    /// `VALID` or `INVALID`.
    pub fn verdict(&self) -> &'static str {
        if self.valid() { "VALID" } else { "INVALID" }
    }

    /// The class's summary in LoadGen's `mlperf_log_summary.txt` layout.
    pub fn loadgen_summary(&self) -> String {
        let yes = |b: bool| if b { "Yes" } else { "NO" };
        let ns = |q: f64| (self.latency_ms(q) * 1e6).round() as u64;
        let mut s = String::new();
        let rule = "================================================";
        let _ = writeln!(s, "{rule}\nMLPerf Results Summary\n{rule}");
        let _ = writeln!(s, "SUT name : stampede priority ({})", self.name);
        let _ = writeln!(s, "Scenario : Server\nMode     : PerformanceOnly");
        let per_s = |n: u64| {
            if self.duration_s > 0.0 {
                n as f64 / self.duration_s
            } else {
                0.0
            }
        };
        let _ = writeln!(
            s,
            "Scheduled samples per second : {:.2}",
            per_s(self.scheduled)
        );
        let _ = writeln!(s, "Result is : {}", self.verdict());
        let _ = writeln!(
            s,
            "  Performance constraints satisfied : {}",
            yes(self.performance_ok())
        );
        let _ = writeln!(
            s,
            "  Min duration satisfied : {}",
            yes(self.min_duration_ok())
        );
        let _ = writeln!(
            s,
            "  Min queries satisfied : {}",
            yes(self.min_queries_ok())
        );
        if !self.performance_ok() {
            let _ = writeln!(
                s,
                "Recommendations:\n * Reduce target QPS to improve latency (the 99.00 percentile is over the target latency)."
            );
        }
        let _ = writeln!(s, "\n{rule}\nAdditional Stats\n{rule}");
        let _ = writeln!(
            s,
            "Completed samples per second    : {:.2}\n",
            per_s(self.requests)
        );
        let _ = writeln!(s, "Scheduled queries (drawn)       : {}", self.scheduled);
        let _ = writeln!(s, "Dropped arrivals (in flight)    : {}", self.dropped);
        let _ = writeln!(s, "Queries (completed)             : {}", self.requests);
        let _ = writeln!(
            s,
            "Completed vs scheduled          : {}",
            match self.requests as i64 - self.scheduled as i64 {
                0 => "equal".to_string(),
                d => format!("{d:+} (lost)"),
            }
        );
        let _ = writeln!(
            s,
            "Nominal queries (target × {:.3} s): {:.1}",
            self.min_duration.as_secs_f64(),
            self.nominal
        );
        match (self.drawn_vs_nominal_pct(), self.drawn_sigmas()) {
            (Some(pct), Some(sig)) => {
                let _ = writeln!(
                    s,
                    "Drawn vs nominal (with dropped) : {pct:+.2} % ({sig:+.2} σ; 1 σ = {:.2} % for a Poisson count)",
                    100.0 / self.nominal.sqrt()
                );
            }
            _ => {
                let _ = writeln!(
                    s,
                    "Drawn vs nominal (with dropped) : not comparable (min_query_count may have extended the class)"
                );
            }
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "Failed queries                  : {}", self.failures);
        let _ = writeln!(
            s,
            "SLO attainment (%)              : {:.2}\n",
            self.attainment()
        );
        let (min, max, mean) = if self.latency.is_empty() {
            (0, 0, 0)
        } else {
            (
                self.latency.min() * 1000,
                self.latency.max() * 1000,
                (self.latency.mean() * 1000.0).round() as u64,
            )
        };
        let es = self.early_stopping();
        match (es.estimate(&self.latency), es.discardable) {
            (Some(us), Some(t)) => {
                let over = self.requests.saturating_sub(self.slo_met);
                let _ = writeln!(
                    s,
                    "Early stopping 99.00 percentile estimate (ns) : {} (the {t} highest of {} discarded; 99 % confidence)",
                    us * 1000,
                    es.queries
                );
                let _ = writeln!(
                    s,
                    "Early stopping target met       : {} ({over} over the target, at most {t} allowed)\n",
                    if es.target_met(over) == Some(true) {
                        "Yes"
                    } else {
                        "NO"
                    }
                );
            }
            _ => {
                let _ = writeln!(
                    s,
                    "Early stopping                  : too few queries ({} < {})\n",
                    es.queries,
                    EarlyStopping::min_queries()
                );
            }
        }
        let _ = writeln!(s, "Min latency (ns)                : {min}");
        let _ = writeln!(s, "Max latency (ns)                : {max}");
        let _ = writeln!(s, "Mean latency (ns)               : {mean}");
        for (q, label) in [
            (0.50, "50.00"),
            (0.90, "90.00"),
            (0.95, "95.00"),
            (0.97, "97.00"),
            (0.99, "99.00"),
            (0.999, "99.90"),
        ] {
            let _ = writeln!(s, "{label} percentile latency (ns)   : {}", ns(q));
        }
        let _ = writeln!(s, "\n{rule}\nTest Parameters Used\n{rule}");
        let _ = writeln!(s, "samples_per_query : 1");
        let _ = writeln!(s, "target_qps : {}", self.target_qps);
        let _ = writeln!(s, "target_latency (ns): {}", self.target_latency.as_nanos());
        let _ = writeln!(s, "target_latency_percentile : 99");
        let _ = writeln!(s, "min_duration (ms): {}", self.min_duration.as_millis());
        let _ = writeln!(s, "min_query_count : {}", self.min_query_count);
        let _ = writeln!(
            s,
            "\nNo warnings encountered during test.\n\nNo errors encountered during test."
        );
        s
    }
}

/// The columns of [`table`], in order: the runner's ([`RUNNER_COLUMNS`]), then failures, the
/// LoadGen verdict, the arrivals drawn and sent, those dropped, and how far the drawn ones are from
/// the nominal count.
pub const TABLE_COLUMNS: [&str; 12] = [
    "tier",
    "slo",
    "count",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "slo_attainment_%",
    "failures",
    "loadgen",
    "scheduled",
    "dropped",
    "vs_nominal_σ",
];

/// The MLPerf-LoadGen priority runner's own summary columns: the first seven of [`TABLE_COLUMNS`].
pub const RUNNER_COLUMNS: &[&str] = TABLE_COLUMNS.split_at(7).0;

/// The runner's per-class summary table, grouped by (tier, slo), with the LoadGen verdict.
pub fn table(reports: &[ClassReport]) -> String {
    let mut s = String::new();
    let [
        tier,
        slo,
        count,
        p50,
        p95,
        p99,
        attainment,
        failures,
        loadgen,
        scheduled,
        dropped,
        sigmas,
    ] = TABLE_COLUMNS;
    let _ = writeln!(
        s,
        "{tier:>4}  {slo:<8} {count:>8} {p50:>9} {p95:>9} {p99:>9} {attainment:>17} \
         {failures:>8}  {loadgen:<7}  {scheduled:>9} {dropped:>7} {sigmas:>14}"
    );
    for r in reports {
        let _ = writeln!(
            s,
            "{:>4}  {:<8} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>17.2} {:>8}  {:<7}  {:>9} {:>7} {:>14}",
            r.tier,
            r.slo,
            r.requests,
            r.latency_ms(0.50),
            r.latency_ms(0.95),
            r.latency_ms(0.99),
            r.attainment(),
            r.failures,
            r.verdict(),
            r.scheduled,
            r.dropped,
            r.drawn_sigmas()
                .map_or("-".to_string(), |x| format!("{x:+.2}"))
        );
    }
    s
}

/// MLPerf LoadGen's early stopping for the Server scenario, at its settings: the
/// [`ES_PERCENTILE`] latency percentile with [`ES_CONFIDENCE`] confidence.
///
/// With n queries, t of them allowed over a latency L is fine when seeing t or fewer overs in
/// n would be unlikely (probability ≤ 1 − confidence) were L's true exceedance rate 1 − p:
/// `P(Binomial(n, 1 − p) ≤ t) ≤ 1 − c`. The largest such t says how many of the highest
/// latencies can be discarded; the highest latency left is the percentile's estimate. Like
/// LoadGen, at least one query must be discardable (t ≥ 1: 662 queries at p = 0.99).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EarlyStopping {
    /// Queries seen.
    pub queries: u64,
    /// The most queries that may lie over the estimate (`None`: too few queries, below
    /// [`EarlyStopping::min_queries`]).
    pub discardable: Option<u64>,
}

/// The percentile LoadGen's Server scenario judges.
pub const ES_PERCENTILE: f64 = 0.99;
/// LoadGen's early-stopping confidence.
pub const ES_CONFIDENCE: f64 = 0.99;

impl EarlyStopping {
    /// The bound for `n` queries.
    pub fn of(n: u64) -> EarlyStopping {
        let t = max_overs(n, ES_PERCENTILE, ES_CONFIDENCE);
        EarlyStopping {
            queries: n,
            discardable: t.filter(|&t| t >= 1),
        }
    }

    /// The fewest queries with which an estimate can be made (one query discardable).
    pub fn min_queries() -> u64 {
        // P(Binomial(n, q) ≤ 1) falls as n grows: the first n where it is ≤ 1 − c.
        let mut n = 1;
        while max_overs(n, ES_PERCENTILE, ES_CONFIDENCE).is_none_or(|t| t < 1) {
            n += 1;
        }
        n
    }

    /// Whether `over` queries over the target still let the percentile be claimed within it.
    pub fn target_met(&self, over: u64) -> Option<bool> {
        self.discardable.map(|t| over <= t)
    }

    /// The percentile's estimate from a latency histogram of the same queries, in its unit:
    /// the highest value once the discardable ones are dropped.
    pub fn estimate(&self, latency: &Histogram<u64>) -> Option<u64> {
        let t = self.discardable?;
        let n = latency.len();
        if n == 0 || t >= n {
            return None;
        }
        Some(latency.value_at_quantile((n - t) as f64 / n as f64))
    }
}

/// The largest t with `P(Binomial(n, 1 − p) ≤ t) ≤ 1 − c`, or `None` when even t = 0 is too
/// likely (too few queries). The binomial terms are summed in log space (n can be millions).
fn max_overs(n: u64, p: f64, c: f64) -> Option<u64> {
    let q = 1.0 - p;
    let limit = (1.0 - c).ln();
    let nf = n as f64;
    // ln P(X = 0) = n ln(1 − q); each next term × (n − x)/(x + 1) × q/(1 − q).
    let mut log_term = nf * p.ln();
    let mut log_cdf = log_term;
    if log_cdf > limit {
        return None;
    }
    let ratio = (q / p).ln();
    let mut x = 0u64;
    while x < n {
        log_term += ((nf - x as f64) / (x as f64 + 1.0)).ln() + ratio;
        let next = log_add(log_cdf, log_term);
        if next > limit {
            return Some(x);
        }
        log_cdf = next;
        x += 1;
    }
    Some(n)
}

/// ln(eᵃ + eᵇ) without overflow.
fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

/// The nominal arrivals of each class over the scenario's duration: its rate (total × share,
/// rate stages and spikes included) integrated by the midpoint rule between the spikes' steps;
/// zeros when the scenario has no priority mix.
fn nominal_counts(config: &ScenarioConfig) -> [f64; CLASSES] {
    let mut out = [0.0; CLASSES];
    let Ok(mix) = priority::mix(config.file.priority.as_ref(), &config.load, config.duration)
    else {
        return out;
    };
    // Spikes step the rates: integrate each stretch between steps on its own, so the steps
    // fall on stretch edges.
    let mut edges = vec![Duration::ZERO];
    while let Some(t) = mix.next_change(*edges.last().unwrap_or(&Duration::ZERO))
        && t < config.duration
    {
        edges.push(t);
    }
    edges.push(config.duration);
    let plan = LoadPlan {
        model: config.load.clone(),
        slot: 0,
        weights: vec![1],
        scale: 1.0,
        mix: Some(mix),
    };
    const STEPS: u32 = 2_000;
    for pair in edges.windows(2) {
        let (from, span) = (pair[0].as_secs_f64(), (pair[1] - pair[0]).as_secs_f64());
        let dt = span / f64::from(STEPS);
        for k in 0..STEPS {
            let t = Duration::from_secs_f64(from + (f64::from(k) + 0.5) * dt);
            for (i, n) in out.iter_mut().enumerate() {
                *n += plan.request_rate(i, t) * dt;
            }
        }
    }
    out
}

/// Write each class's `tier{T}_{slo}/mlperf_log_summary.txt` under `dir`; the files written.
pub fn write_loadgen_logs(dir: &Path, reports: &[ClassReport]) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for r in reports {
        let folder = dir.join(&r.name);
        std::fs::create_dir_all(&folder)?;
        let path = folder.join(SUMMARY_FILE);
        std::fs::write(&path, r.loadgen_summary())?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(requests: u64, slo_met: u64, duration_s: f64, min_count: u64) -> ClassReport {
        let mut latency = stampede_scenarios::recorder::new_histogram();
        for i in 0..requests {
            latency.record(1000 + i).unwrap();
        }
        ClassReport {
            name: "tier1_urgent".into(),
            tier: 1,
            slo: "urgent".into(),
            target_latency: Duration::from_millis(100),
            target_qps: 1.5,
            duration_s,
            min_duration: Duration::from_secs(60),
            min_query_count: min_count,
            scheduled: requests,
            dropped: 0,
            nominal: 90.0,
            extended: false,
            requests,
            failures: requests - slo_met,
            slo_met,
            latency,
        }
    }

    /// MLPerf's Server rule: p99 within target (≥ 99 % met), min duration, min queries.
    #[test]
    fn valid_only_when_every_server_rule_holds() {
        let ok = report(1000, 990, 60.0, 100);
        assert!(ok.valid(), "exactly 99 % met is VALID");
        assert_eq!(ok.verdict(), "VALID");
        let slow = report(1000, 989, 60.0, 100);
        assert!(!slow.performance_ok() && !slow.valid());
        let short = report(1000, 1000, 59.0, 100);
        assert!(!short.min_duration_ok() && !short.valid());
        let few = report(99, 99, 70.0, 100);
        assert!(!few.min_queries_ok() && !few.valid());
        assert!(!report(0, 0, 60.0, 0).valid(), "no queries: no p99");
        let text = slow.loadgen_summary();
        assert!(text.contains("Result is : INVALID"), "{text}");
        assert!(
            text.contains("Performance constraints satisfied : NO"),
            "{text}"
        );
        assert!(text.contains("Min queries satisfied : Yes"), "{text}");
        assert!(text.contains("target_latency (ns): 100000000"), "{text}");
        assert!(ok.loadgen_summary().contains("Result is : VALID"));
    }

    /// The nominal count is the class's rate integrated over the duration, spikes included;
    /// the summary shows the drawn arrivals against it and against the completed requests.
    #[test]
    fn nominal_counts_and_the_drawn_arrivals() {
        let text = "name = \"p\"\nkind = \"priority\"\ntarget = \"http://127.0.0.1:1\"\nduration = \"60s\"\n\
                    [load]\nmodel = \"open\"\nrate = 30\n\
                    [[priority.spikes]]\nstart = \"10s\"\nduration = \"5s\"\nfactor = 4\nclasses = [\"urgent\"]\n";
        let config =
            ScenarioConfig::parse(text, "t.toml", &stampede_scenarios::Overrides::default())
                .unwrap();
        let n = nominal_counts(&config);
        // tier1_urgent: 30 × 0.05 = 1.5 qps for 60 s, ×4 for 5 s of them: 1.5 × (60 + 15).
        assert!((n[0] - 112.5).abs() < 1e-6, "{n:?}");
        // tier1_normal: 30 × 0.10 × 60, no spike.
        assert!((n[1] - 180.0).abs() < 1e-6, "{n:?}");

        let mut r = report(100, 100, 60.0, 0);
        r.nominal = 100.0;
        r.scheduled = 110;
        // +10 on a Poisson count of 100 (σ 10): +1 σ, +10 %.
        assert_eq!(r.drawn_sigmas(), Some(1.0));
        assert_eq!(r.drawn_vs_nominal_pct(), Some(10.0));
        let text = r.loadgen_summary();
        assert!(
            text.contains("Scheduled queries (drawn)       : 110"),
            "{text}"
        );
        assert!(
            text.contains("Completed vs scheduled          : -10 (lost)"),
            "{text}"
        );
        assert!(text.contains("+10.00 % (+1.00 σ; 1 σ = 10.00 %"), "{text}");
        r.scheduled = 100;
        assert!(
            r.loadgen_summary()
                .contains("Completed vs scheduled          : equal")
        );
        // Arrivals dropped for max_in_flight were drawn too: 100 sent + 20 dropped is +2 σ.
        r.dropped = 20;
        assert_eq!(r.drawn(), 120);
        assert_eq!(r.drawn_sigmas(), Some(2.0));
        assert!(
            r.loadgen_summary()
                .contains("Drawn vs nominal (with dropped) : +20.00 % (+2.00 σ"),
            "{}",
            r.loadgen_summary()
        );
        r.dropped = 0;
        r.extended = true;
        assert_eq!(r.drawn_sigmas(), None);
        assert!(r.loadgen_summary().contains("not comparable"));
    }

    /// Hand-computed binomial bounds at p = 0.99, c = 0.99: P(X ≤ 0) = 0.99ⁿ ≤ 0.01 from
    /// n = 459 (0.99⁴⁵⁸ = 0.010021, 0.99⁴⁵⁹ = 0.009921); P(X ≤ 1) = 0.99ⁿ + n·0.01·0.99ⁿ⁻¹ ≤
    /// 0.01 from n = 662 (LoadGen's minimum for the Server scenario: 0.0100010 at 661,
    /// 0.0099140 at 662).
    #[test]
    fn early_stopping_matches_hand_computed_bounds() {
        assert_eq!(max_overs(458, 0.99, 0.99), None);
        assert_eq!(max_overs(459, 0.99, 0.99), Some(0));
        assert_eq!(max_overs(661, 0.99, 0.99), Some(0));
        assert_eq!(max_overs(662, 0.99, 0.99), Some(1));
        assert_eq!(EarlyStopping::min_queries(), 662);
        assert_eq!(EarlyStopping::of(661).discardable, None);
        // n = 10,000 (100 overs expected): the exact binomial sums are P(X ≤ 77) = 0.00972
        // and P(X ≤ 78) = 0.01293, so 77 may be discarded.
        assert_eq!(EarlyStopping::of(10_000).discardable, Some(77));
        let es = EarlyStopping::of(10_000);
        assert_eq!(es.target_met(77), Some(true));
        assert_eq!(es.target_met(78), Some(false));
        // The estimate: the highest latency once 77 are dropped (latencies 1..=10,000 µs).
        let mut h = stampede_scenarios::recorder::new_histogram();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let est = es.estimate(&h).unwrap();
        assert!(h.equivalent(est, 9_923), "{est}");
        // Millions of queries stay finite and near 1 % − 2.33 σ.
        let t = EarlyStopping::of(1_000_000).discardable.unwrap();
        assert!((9_760..=9_775).contains(&t), "{t}");
    }

    /// A class's dropped arrivals (too many in flight) are shown beside its scheduled ones, in
    /// the table and in its LoadGen summary.
    #[test]
    fn dropped_arrivals_are_shown_per_class() {
        let mut r = report(10, 10, 60.0, 0);
        r.dropped = 7;
        let text = r.loadgen_summary();
        assert!(
            text.contains(
                "Scheduled queries (drawn)       : 10\nDropped arrivals (in flight)    : 7\n"
            ),
            "{text}"
        );
        let t = table(&[r]);
        let row: Vec<&str> = t.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row.len(), TABLE_COLUMNS.len(), "{t}");
        let cell = |name: &str| row[TABLE_COLUMNS.iter().position(|&c| c == name).unwrap()];
        assert_eq!((cell("scheduled"), cell("dropped")), ("10", "7"), "{t}");
    }

    #[test]
    fn table_has_the_runners_columns() {
        let t = table(&[report(10, 10, 60.0, 0)]);
        let head = t.lines().next().unwrap();
        let names: Vec<&str> = head.split_whitespace().collect();
        assert_eq!(names, TABLE_COLUMNS, "{head}");
        assert_eq!(
            RUNNER_COLUMNS.join(" "),
            "tier slo count p50_ms p95_ms p99_ms slo_attainment_%"
        );
        assert!(t.lines().nth(1).unwrap().contains("100.00"), "{t}");
        let dir = tempfile::tempdir().unwrap();
        let files = write_loadgen_logs(dir.path(), &[report(10, 10, 60.0, 0)]).unwrap();
        assert_eq!(
            files,
            vec![dir.path().join("tier1_urgent").join(SUMMARY_FILE)]
        );
    }
}
