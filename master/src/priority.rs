//! Per-class reports of a `priority` run (seed 001), made from the finished run's summary: the
//! seed's summary table (count, p50_ms, p95_ms, p99_ms, slo_attainment_%) and, per class, a
//! LoadGen-style `mlperf_log_summary.txt` in a folder `tier{T}_{slo}/`, VALID or INVALID as
//! MLPerf LoadGen's Server scenario decides.
//!
//! The Server rule, per class: the 99th-percentile latency is within the class's target
//! latency (its SLO), the run lasted at least the minimum duration, and the class had at least
//! the minimum query count. A failed request (error, timeout, `success = false`) counts as one
//! over the target, so "p99 within target" is decided exactly from the `slo_met` counter: at
//! least ⌈0.99 · n⌉ of the n requests met it. LoadGen's early-stopping estimate is not made.
//! Nothing here touches the network; writing the folders is the only I/O.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;
use stampede_scenarios::ScenarioConfig;
use stampede_scenarios::driver::priority::{
    CLASSES, COUNTER_SLO_MET, Settings, class_name, slo_of, tier_of,
};

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
        let Ok(settings) = Settings::of(&config.file) else {
            return Vec::new();
        };
        if config.kind != "priority" {
            return Vec::new();
        }
        let total = config.load.peak();
        let shares = settings.active_shares(total);
        (0..CLASSES)
            .filter(|&i| shares[i] > 0.0)
            .map(|i| {
                let name = class_name(i);
                let stats = summary.stats.iter().find(|s| s.name == name);
                ClassReport {
                    tier: tier_of(i),
                    slo: name.split('_').nth(1).unwrap_or_default().to_string(),
                    target_latency: slo_of(i),
                    target_qps: total * shares[i],
                    duration_s: summary.duration_s(),
                    min_duration: config.duration,
                    min_query_count: settings.min_query_count.unwrap_or(0),
                    requests: stats.map_or(0, |s| s.requests),
                    failures: stats.map_or(0, |s| s.failures),
                    slo_met: stats
                        .and_then(|s| s.counters.get(COUNTER_SLO_MET).copied())
                        .unwrap_or(0),
                    latency: stats.map_or_else(stampede_scenarios::recorder::new_histogram, |s| {
                        s.latency.clone()
                    }),
                    name,
                }
            })
            .collect()
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
        let _ = writeln!(s, "Scheduled samples per second : {:.2}", self.target_qps);
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
        let completed = if self.duration_s > 0.0 {
            self.requests as f64 / self.duration_s
        } else {
            0.0
        };
        let _ = writeln!(s, "Completed samples per second    : {completed:.2}\n");
        let _ = writeln!(s, "Queries                         : {}", self.requests);
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

/// The seed's per-class summary table, grouped by (tier, slo), with the LoadGen verdict.
pub fn table(reports: &[ClassReport]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>4}  {:<8} {:>8} {:>9} {:>9} {:>9} {:>17} {:>8}  loadgen",
        "tier", "slo", "count", "p50_ms", "p95_ms", "p99_ms", "slo_attainment_%", "failures"
    );
    for r in reports {
        let _ = writeln!(
            s,
            "{:>4}  {:<8} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>17.2} {:>8}  {}",
            r.tier,
            r.slo,
            r.requests,
            r.latency_ms(0.50),
            r.latency_ms(0.95),
            r.latency_ms(0.99),
            r.attainment(),
            r.failures,
            r.verdict()
        );
    }
    s
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

    #[test]
    fn table_has_the_seeds_columns() {
        let t = table(&[report(10, 10, 60.0, 0)]);
        let head = t.lines().next().unwrap();
        for col in [
            "tier",
            "slo",
            "count",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "slo_attainment_%",
        ] {
            assert!(head.contains(col), "{head}");
        }
        assert!(t.lines().nth(1).unwrap().contains("100.00"), "{t}");
        let dir = tempfile::tempdir().unwrap();
        let files = write_loadgen_logs(dir.path(), &[report(10, 10, 60.0, 0)]).unwrap();
        assert_eq!(
            files,
            vec![dir.path().join("tier1_urgent").join(SUMMARY_FILE)]
        );
    }
}
