//! What the worker's host is doing: CPU busy since a run started (`/proc/stat`) and the used
//! share of its root filesystem (`statvfs("/")`), sent as report gauges so a run can say how
//! loaded each node was (`stampede placement record` turns that into rows).
//!
//! Called by the worker session at the start of a run and for each report. Linux only for the
//! CPU (elsewhere that gauge is left out); it never fails a run.

use stampede_protocol::{Gauge, metric};

/// CPU time counters of the whole host, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuTimes {
    /// Every mode but guest time (already inside user and nice).
    pub total: u64,
    /// The `idle` column alone: I/O wait counts as busy, as in node exporter's `mode="idle"`.
    pub idle: u64,
}

impl CpuTimes {
    /// The host's counters now, if `/proc/stat` can be read.
    pub fn now() -> Option<CpuTimes> {
        CpuTimes::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// From the text of `/proc/stat`: its `cpu` line (user nice system idle iowait irq softirq
    /// steal guest guest_nice).
    pub fn parse(text: &str) -> Option<CpuTimes> {
        let line = text.lines().find(|l| l.starts_with("cpu "))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        Some(CpuTimes {
            total: v.iter().take(8).sum(),
            idle: *v.get(3)?,
        })
    }

    /// Percent of the time between `start` and `self` the CPUs were busy.
    pub fn busy_since(&self, start: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(start.total).filter(|t| *t > 0)?;
        let idle = self.idle.saturating_sub(start.idle).min(total);
        Some(100.0 * (total - idle) as f64 / total as f64)
    }
}

/// Used share of the filesystem of `/`, percent: `1 - f_bavail / f_blocks`, node exporter's
/// `1 - node_filesystem_avail_bytes / node_filesystem_size_bytes`.
pub fn disk_used_percent() -> Option<f64> {
    let s = rustix::fs::statvfs("/").ok()?;
    (s.f_blocks > 0).then(|| 100.0 * (1.0 - s.f_bavail.min(s.f_blocks) as f64 / s.f_blocks as f64))
}

/// The gauges of a report: CPU busy since `start` (when known) and disk usage.
pub fn gauges(start: Option<&CpuTimes>) -> Vec<Gauge> {
    let cpu = start.and_then(|s| CpuTimes::now()?.busy_since(s));
    [
        (metric::HOST_CPU, cpu),
        (metric::HOST_DISK, disk_used_percent()),
    ]
    .into_iter()
    .filter_map(|(name, v)| {
        v.map(|value| Gauge {
            name: name.to_string(),
            value,
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_share_comes_from_the_cpu_line() {
        let a =
            CpuTimes::parse("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n").unwrap();
        assert_eq!(
            a,
            CpuTimes {
                total: 1000,
                idle: 800
            }
        );
        let b = CpuTimes::parse("cpu  400 0 150 1200 150 0 0 100 20 0\n").unwrap();
        // 1000 ticks passed, 400 of them idle.
        assert_eq!(b.busy_since(&a), Some(60.0));
        assert_eq!(a.busy_since(&a), None);
        assert_eq!(CpuTimes::parse("intr 1 2 3\n"), None);
    }

    #[test]
    fn this_host_is_measured() {
        let d = disk_used_percent().expect("statvfs of /");
        assert!((0.0..=100.0).contains(&d), "{d}");
        if let Some(start) = CpuTimes::now() {
            // Burn a little CPU so some ticks pass.
            let t = std::time::Instant::now();
            let mut x = 0u64;
            while t.elapsed() < std::time::Duration::from_millis(50) {
                x = x.wrapping_add(std::hint::black_box(1));
            }
            let g = gauges(Some(&start));
            assert!(g.iter().any(|g| g.name == metric::HOST_DISK), "{g:?} {x}");
        }
    }
}
