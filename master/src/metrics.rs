//! `/metrics`: the master's merged figures in Prometheus text format, built from the latest
//! snapshot at each scrape (so scraping never touches aggregation and never blocks a run).
//!
//! Latency and the drivers' times are exported as real histograms whose buckets come from the
//! exact HDR histograms. Labels stay bounded: scenario, request name, failure kind (at most
//! [`MAX_FAILURE_KINDS`] per name), worker name, tier and SLO class; never URLs or ids. Uses the
//! `prometheus` crate's data model and text encoder; it keeps no state between scrapes. The
//! docs/metrics.md table lists every family rendered here.

use std::collections::{BTreeMap, BTreeSet};

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};
use stampede_scenarios::Kind;
use stampede_scenarios::spec::{MetricSpec, Prometheus, Role, Specs};

use crate::snapshot::{Buckets, Exported, RunView, Snapshot, WorkerView};
pub use crate::snapshot::{DURATION_BUCKETS, THROUGHPUT_BUCKETS};
use crate::state::{RunStatus, WorkerState};

/// Failure kinds exported per request name; further kinds are summed under `kind="other"`, so
/// a driver with many distinct messages cannot blow up the series count.
pub const MAX_FAILURE_KINDS: usize = 20;

/// SLO classes of priority traffic, as they appear in request names (`tier1_urgent`).
pub const SLO_CLASSES: [&str; 3] = ["urgent", "normal", "relaxed"];

/// Every family this exporter can render, for documentation and for checking that dashboards
/// name only real metrics: its own, then those of every kind's driver figures (from their
/// specs). Histograms are listed by their base name.
pub fn family_names() -> Vec<&'static str> {
    let mut names = vec![
        "stampede_workers",
        "stampede_worker_share",
        "stampede_worker_requests_total",
        "stampede_worker_last_seen_seconds",
        "stampede_worker_clock_offset_seconds",
        "stampede_worker_host_cpu_ratio",
        "stampede_worker_host_disk_ratio",
        "stampede_run_info",
        "stampede_run_id",
        "stampede_run_elapsed_seconds",
        "stampede_run_planned_seconds",
        "stampede_users",
        "stampede_target_rate",
        "stampede_requests_total",
        "stampede_request_failures_total",
        "stampede_bytes_total",
        "stampede_request_duration_seconds",
        "stampede_schedule_lag_seconds",
        "stampede_driver_events_total",
        "stampede_slo_met_total",
        "stampede_slo_missed_total",
    ];
    for specs in every_kind() {
        for p in specs
            .metrics
            .iter()
            .chain(specs.counters)
            .filter_map(|s| s.prometheus)
        {
            if !names.contains(&p.name) {
                names.push(p.name);
            }
        }
    }
    names
}

/// The histogram families among [`family_names`] (their series end in `_bucket`, `_sum` and
/// `_count`).
pub fn histogram_names() -> Vec<&'static str> {
    let mut names = vec![
        "stampede_request_duration_seconds",
        "stampede_schedule_lag_seconds",
    ];
    for specs in every_kind() {
        for p in specs.metrics.iter().filter_map(|s| s.prometheus) {
            if !names.contains(&p.name) {
                names.push(p.name);
            }
        }
    }
    names
}

/// The figures of every scenario kind of this build.
fn every_kind() -> impl Iterator<Item = Specs> {
    Kind::ALL.iter().map(|kind| kind.specs())
}

/// A family of driver figures: the specs exported under one name (several for a family
/// told apart by a label, such as `stampede_connections_total{kind}`).
struct SpecFamily {
    family: MetricFamily,
    specs: Vec<&'static MetricSpec>,
}

/// The families of `specs` that have a Prometheus name, in spec order, one per name.
fn spec_families(specs: &'static [MetricSpec], kind: MetricType) -> Vec<SpecFamily> {
    let mut out: Vec<SpecFamily> = Vec::new();
    for spec in specs {
        let Some(Prometheus { name, help, .. }) = spec.prometheus else {
            continue;
        };
        match out.iter_mut().find(|f| f.family.name() == name) {
            Some(f) => f.specs.push(spec),
            None => out.push(SpecFamily {
                family: family(name, help, kind),
                specs: vec![spec],
            }),
        }
    }
    out
}

/// Renders snapshots as Prometheus text.
#[derive(Debug, Default)]
pub struct Exporter;

impl Exporter {
    /// The exposition text for `snap`.
    pub fn render(&self, snap: &Snapshot) -> Result<String, prometheus::Error> {
        let families: Vec<MetricFamily> = families(snap)
            .into_iter()
            .filter(|f| !f.get_metric().is_empty())
            .collect();
        let mut out = Vec::new();
        TextEncoder::new().encode(&families, &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// Every family for `snap`, some possibly without samples (the encoder refuses those, so
/// [`Exporter::render`] drops them).
fn families(snap: &Snapshot) -> Vec<MetricFamily> {
    let mut out = fleet(snap);
    if let Some(run) = &snap.run {
        out.extend(run_families(run));
    }
    out
}

fn fleet(snap: &Snapshot) -> Vec<MetricFamily> {
    let mut workers = family(
        "stampede_workers",
        "Workers known to the master, by state (lost: lost during the current run).",
        MetricType::GAUGE,
    );
    for state in [
        WorkerState::Ready,
        WorkerState::Assigned,
        WorkerState::Running,
        WorkerState::Lost,
    ] {
        workers.mut_metric().push(gauge(
            &[("state", state.as_str())],
            snap.count(state) as f64,
        ));
    }
    let mut share = family(
        "stampede_worker_share",
        "A worker's fraction of the current run's load, 0 to 1.",
        MetricType::GAUGE,
    );
    let mut requests = family(
        "stampede_worker_requests_total",
        "Requests a worker reported in the current run, or between runs in the last one.",
        MetricType::COUNTER,
    );
    let mut seen = family(
        "stampede_worker_last_seen_seconds",
        "Seconds since the master last heard from a worker.",
        MetricType::GAUGE,
    );
    let mut offset = family(
        "stampede_worker_clock_offset_seconds",
        "A worker's clock minus the master's, measured with pings.",
        MetricType::GAUGE,
    );
    let mut cpu = family(
        "stampede_worker_host_cpu_ratio",
        "CPU busy on a worker's host since the run started, 0 to 1 of all its CPUs.",
        MetricType::GAUGE,
    );
    let mut disk = family(
        "stampede_worker_host_disk_ratio",
        "Used share of a worker host's root filesystem, 0 to 1.",
        MetricType::GAUGE,
    );
    for (label, w) in worker_labels(&snap.workers) {
        let labels = [("worker", label.as_str())];
        share.mut_metric().push(gauge(&labels, w.share));
        requests
            .mut_metric()
            .push(counter(&labels, w.requests as f64));
        seen.mut_metric().push(gauge(&labels, w.last_seen_s));
        offset
            .mut_metric()
            .push(gauge(&labels, w.clock_offset_ms / 1000.0));
        if let Some(v) = w.gauges.get("host_cpu_percent") {
            cpu.mut_metric().push(gauge(&labels, v / 100.0));
        }
        if let Some(v) = w.gauges.get("host_disk_percent") {
            disk.mut_metric().push(gauge(&labels, v / 100.0));
        }
    }
    vec![workers, share, requests, seen, offset, cpu, disk]
}

/// Each worker's `worker` label: its name, or `name#id` where two share a name (a worker that
/// reconnected, two hosts named alike), so no two series collide.
fn worker_labels(workers: &[WorkerView]) -> Vec<(String, &WorkerView)> {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for w in workers {
        *count.entry(w.name.as_str()).or_insert(0) += 1;
    }
    let mut used = BTreeSet::new();
    workers
        .iter()
        .filter_map(|w| {
            let label = if count[w.name.as_str()] > 1 {
                format!("{}#{}", w.name, w.id)
            } else {
                w.name.clone()
            };
            // The same id twice (a lost entry beside its live one) is shown once.
            used.insert(label.clone()).then_some((label, w))
        })
        .collect()
}

fn run_families(run: &RunView) -> Vec<MetricFamily> {
    let scenario = run.scenario.as_str();
    let sc = [("scenario", scenario)];
    let mut info = family(
        "stampede_run_info",
        "The current or last run: 1, with its scenario, kind and state as labels, and once it \
         finished how it ended (status: completed, stopped, degraded or failed).",
        MetricType::GAUGE,
    );
    info.mut_metric().push(gauge(
        &[
            ("scenario", scenario),
            ("kind", run.kind.as_str()),
            ("state", run.state.as_str()),
            ("status", run.status.map_or("", RunStatus::as_str)),
        ],
        1.0,
    ));
    let mut id = family(
        "stampede_run_id",
        "The current or last run's id (changes when a new run starts).",
        MetricType::GAUGE,
    );
    id.mut_metric().push(gauge(&sc, run.id as f64));
    let mut elapsed = family(
        "stampede_run_elapsed_seconds",
        "Seconds since the run's load started.",
        MetricType::GAUGE,
    );
    elapsed.mut_metric().push(gauge(&sc, run.elapsed_s));
    let mut planned = family(
        "stampede_run_planned_seconds",
        "The run's planned length, seconds (0: until stopped).",
        MetricType::GAUGE,
    );
    planned.mut_metric().push(gauge(&sc, run.duration_s));
    let mut users = family(
        "stampede_users",
        "Users (closed model) or requests in flight (open model), all workers.",
        MetricType::GAUGE,
    );
    users.mut_metric().push(gauge(&sc, run.users as f64));
    let mut rate = family(
        "stampede_target_rate",
        "Open-model arrival rate being produced, requests per second, all workers.",
        MetricType::GAUGE,
    );
    rate.mut_metric().push(gauge(&sc, run.target_rate));
    let mut requests = family(
        "stampede_requests_total",
        "Requests completed, successes and failures, in the current or last run.",
        MetricType::COUNTER,
    );
    let mut bytes = family(
        "stampede_bytes_total",
        "Response body bytes received.",
        MetricType::COUNTER,
    );
    let mut duration = family(
        "stampede_request_duration_seconds",
        "Request latency (from the scheduled send time in the open model).",
        MetricType::HISTOGRAM,
    );
    let mut lag = family(
        "stampede_schedule_lag_seconds",
        "How late requests were sent after their scheduled time (open model).",
        MetricType::HISTOGRAM,
    );
    lag.mut_metric()
        .push(histogram(&sc, &run.schedule_lag, &DURATION_BUCKETS));
    let specs = &run.specs;
    let mut kind_hist = spec_families(specs.metrics, MetricType::HISTOGRAM);
    let mut kind_count = spec_families(specs.counters, MetricType::COUNTER);
    let mut driver = family(
        "stampede_driver_events_total",
        "Every counter a scenario's driver records, by its own name (`counter` label).",
        MetricType::COUNTER,
    );
    for n in &run.names {
        let labels = [("scenario", scenario), ("name", n.name.as_str())];
        requests
            .mut_metric()
            .push(counter(&labels, n.requests as f64));
        bytes.mut_metric().push(counter(&labels, n.bytes as f64));
        duration
            .mut_metric()
            .push(histogram(&labels, &n.latency, &DURATION_BUCKETS));
        for f in &mut kind_hist {
            for spec in &f.specs {
                if let Some(m) = n.metrics.get(spec.name) {
                    let bounds = Exported::of(spec.unit).bounds;
                    f.family
                        .mut_metric()
                        .push(histogram(&labels, &m.buckets, bounds));
                }
            }
        }
        for f in &mut kind_count {
            for spec in &f.specs {
                let Some(v) = n.counters.get(spec.name) else {
                    continue;
                };
                let mut series = labels.to_vec();
                if let Some(label) = spec.prometheus.and_then(|p| p.label) {
                    series.push(label);
                }
                f.family.mut_metric().push(counter(&series, *v as f64));
            }
        }
        for (c, v) in &n.counters {
            driver.mut_metric().push(counter(
                &[
                    ("scenario", scenario),
                    ("name", n.name.as_str()),
                    ("counter", c.as_str()),
                ],
                *v as f64,
            ));
        }
    }
    let mut out = vec![
        info,
        id,
        elapsed,
        planned,
        users,
        rate,
        requests,
        failures(run),
        bytes,
        duration,
        lag,
        driver,
    ];
    // Families told apart by a label (connections) first, then histograms, then counters of
    // their own.
    let (labelled, own): (Vec<SpecFamily>, Vec<SpecFamily>) =
        kind_count.into_iter().partition(|f| {
            f.specs
                .iter()
                .any(|s| s.prometheus.is_some_and(|p| p.label.is_some()))
        });
    out.extend(labelled.into_iter().map(|f| f.family));
    out.extend(kind_hist.into_iter().map(|f| f.family));
    out.extend(own.into_iter().map(|f| f.family));
    out.extend(slo(run));
    out
}

/// `stampede_request_failures_total{scenario, name, kind}`: per name its kinds, the most
/// frequent [`MAX_FAILURE_KINDS`] by name and the rest as `other`.
fn failures(run: &RunView) -> MetricFamily {
    let mut f = family(
        "stampede_request_failures_total",
        "Requests that failed, by failure kind (`HTTP 503`, `timeout`, `connect: ...`).",
        MetricType::COUNTER,
    );
    let mut by_name: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
    for r in &run.failures {
        by_name
            .entry(r.name.as_str())
            .or_default()
            .push((r.error.as_str(), r.occurrences));
    }
    for (name, mut kinds) in by_name {
        kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let mut other = 0;
        let mut rows: BTreeMap<&str, u64> = BTreeMap::new();
        for (i, (kind, n)) in kinds.into_iter().enumerate() {
            if i < MAX_FAILURE_KINDS && kind != "other" {
                *rows.entry(kind).or_insert(0) += n;
            } else {
                other += n;
            }
        }
        if other > 0 {
            rows.insert("other", other);
        }
        for (kind, n) in rows {
            f.mut_metric().push(counter(
                &[
                    ("scenario", run.scenario.as_str()),
                    ("name", name),
                    ("kind", kind),
                ],
                n as f64,
            ));
        }
    }
    f
}

/// SLO met and missed per tier and SLO class, from request names naming both (`tier2_normal`,
/// `Tier2-normal-resnet`) that carry the driver's [`Role::SloMet`] counter; several names of
/// one cell are summed. Missed is its [`Role::SloMissed`] counter if the driver has one, else
/// requests − met.
fn slo(run: &RunView) -> Vec<MetricFamily> {
    let mut cells: BTreeMap<(String, &str), (u64, u64)> = BTreeMap::new();
    let met_name = run.specs.name_of(Role::SloMet);
    let missed_name = run.specs.name_of(Role::SloMissed);
    for n in &run.names {
        let Some((tier, class)) = tier_and_class(&n.name) else {
            continue;
        };
        let Some(met) = met_name.and_then(|c| n.counters.get(c)).copied() else {
            continue;
        };
        let missed = missed_name
            .and_then(|c| n.counters.get(c))
            .copied()
            .unwrap_or_else(|| n.requests.saturating_sub(met));
        let cell = cells.entry((tier, class)).or_insert((0, 0));
        cell.0 += met;
        cell.1 += missed;
    }
    let mut met = family(
        "stampede_slo_met_total",
        "Priority traffic: requests that met their SLO, by tier and SLO class.",
        MetricType::COUNTER,
    );
    let mut missed = family(
        "stampede_slo_missed_total",
        "Priority traffic: requests that missed their SLO (failures included).",
        MetricType::COUNTER,
    );
    for ((tier, class), (m, x)) in &cells {
        let labels = [
            ("scenario", run.scenario.as_str()),
            ("tier", tier.as_str()),
            ("slo_class", *class),
        ];
        met.mut_metric().push(counter(&labels, *m as f64));
        missed.mut_metric().push(counter(&labels, *x as f64));
    }
    vec![met, missed]
}

/// `tier<digits>` and an SLO class in a request name, case-insensitively.
fn tier_and_class(name: &str) -> Option<(String, &'static str)> {
    let lower = name.to_ascii_lowercase();
    let at = lower.find("tier")? + 4;
    let digits: String = lower[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    if digits.is_empty() {
        return None;
    }
    let class = SLO_CLASSES.iter().find(|c| lower.contains(*c))?;
    Some((digits, class))
}

fn family(name: &str, help: &str, kind: MetricType) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(kind);
    f
}

fn labelled(labels: &[(&str, &str)]) -> Metric {
    Metric::from_label(
        labels
            .iter()
            .map(|(k, v)| {
                let mut l = LabelPair::default();
                l.set_name((*k).into());
                l.set_value((*v).into());
                l
            })
            .collect(),
    )
}

fn gauge(labels: &[(&str, &str)], v: f64) -> Metric {
    let mut m = labelled(labels);
    let mut g = Gauge::default();
    // `+ 0.0` makes -0 (an empty float sum) 0: the exposition would print `-0`.
    g.set_value(if v.is_finite() { v + 0.0 } else { 0.0 });
    m.set_gauge(g);
    m
}

fn counter(labels: &[(&str, &str)], v: f64) -> Metric {
    let mut m = labelled(labels);
    let mut c = Counter::default();
    c.set_value(v + 0.0);
    m.set_counter(c);
    m
}

/// A histogram sample; bounds without a count (an empty histogram) count 0, and the `+Inf`
/// bucket (the count) is never below the last bound's.
fn histogram(labels: &[(&str, &str)], b: &Buckets, bounds: &[f64]) -> Metric {
    let mut m = labelled(labels);
    let mut h = Histogram::default();
    let last = b.cumulative.last().copied().unwrap_or(0);
    h.set_sample_count(b.count.max(last));
    h.set_sample_sum(if b.sum.is_finite() { b.sum } else { 0.0 });
    h.set_bucket(
        bounds
            .iter()
            .zip(b.cumulative.iter().chain(std::iter::repeat(&0)))
            .map(|(le, count)| {
                let mut bucket = Bucket::default();
                bucket.set_upper_bound(*le);
                bucket.set_cumulative_count(*count);
                bucket
            })
            .collect(),
    );
    m.set_histogram(h);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::testdata;

    #[test]
    fn buckets_are_cumulative_and_complete() {
        let mut h = stampede_scenarios::recorder::new_histogram();
        for us in [50, 900, 1000, 4_000, 2_000_000, 200_000_000] {
            h.record(us).unwrap();
        }
        let b = Buckets::of(&h, &DURATION_BUCKETS, 1e-6);
        let at = |le: f64| b.cumulative[DURATION_BUCKETS.iter().position(|&x| x == le).unwrap()];
        assert_eq!(at(0.0001), 1);
        assert_eq!(at(0.001), 3);
        assert_eq!(at(0.004), 4);
        assert_eq!(at(2.0), 5);
        assert_eq!(at(120.0), 5, "200 s is above the last bound: only in +Inf");
        assert_eq!(b.count, 6);
        assert!(b.cumulative.windows(2).all(|w| w[0] <= w[1]));
        let empty = Buckets::of(
            &stampede_scenarios::recorder::new_histogram(),
            &DURATION_BUCKETS,
            1e-6,
        );
        assert_eq!(empty.cumulative, vec![0; DURATION_BUCKETS.len()]);
        assert_eq!(empty.sum, 0.0);
    }

    #[test]
    fn bounds_are_increasing_and_fine() {
        for w in DURATION_BUCKETS.windows(2) {
            assert!(w[0] < w[1], "{w:?}");
            if w[1] <= 10.0 {
                assert!(w[1] / w[0] <= 4.0 / 3.0 + 1e-9, "{w:?} too far apart");
            }
        }
        assert!(THROUGHPUT_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }

    /// The families present in `text`, checked for the basic shape: every sample line's
    /// family has a `# TYPE`, no series twice.
    fn parse(text: &str) -> BTreeSet<String> {
        let mut types = BTreeMap::new();
        let mut series = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split(' ');
                types.insert(
                    it.next().unwrap().to_string(),
                    it.next().unwrap().to_string(),
                );
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (key, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(series.insert(key.to_string()), "series twice: {key}");
            let name = key.split('{').next().unwrap();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|b| types.get(*b).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(name);
            assert!(types.contains_key(base), "no TYPE for {name}");
        }
        types.into_keys().collect()
    }

    #[test]
    fn every_fixture_renders_and_names_only_documented_families() {
        let known: BTreeSet<String> = family_names().iter().map(|s| s.to_string()).collect();
        let mut seen = BTreeSet::new();
        for snap in [
            Snapshot::default(),
            testdata::waiting(),
            testdata::running(),
            testdata::finished(),
            testdata::llm(),
            testdata::priority(),
            testdata::download(),
            testdata::https(),
        ] {
            let text = Exporter.render(&snap).unwrap();
            let families = parse(&text);
            for f in &families {
                assert!(known.contains(f), "{f} is not in family_names()");
            }
            seen.extend(families);
        }
        for f in [
            "stampede_slo_met_total",
            "stampede_llm_time_to_first_token_seconds",
            "stampede_driver_events_total",
            "stampede_connect_seconds",
            "stampede_tls_handshake_seconds",
            "stampede_connections_total",
        ] {
            assert!(seen.contains(f), "{f} never rendered");
        }
    }

    /// promtool's lint: a metric's name does not hold its type (`_counter`, `_gauge`, ...).
    #[test]
    fn no_family_name_holds_a_metric_type() {
        for f in family_names() {
            for t in ["counter", "gauge", "histogram", "summary"] {
                assert!(
                    !f.split('_').any(|word| word == t),
                    "{f} includes the type `{t}` (promtool check metrics refuses it)"
                );
            }
        }
    }

    /// Connection counts per name and kind, connect and handshake times as histograms in
    /// seconds, from the exact HDR buckets; none of it for a run that counts no connections.
    #[test]
    fn connection_families_per_name() {
        let text = Exporter.render(&testdata::https()).unwrap();
        parse(&text);
        for line in [
            "# TYPE stampede_connections_total counter",
            "stampede_connections_total{scenario=\"checkout\",name=\"index\",kind=\"new\"} 40",
            "stampede_connections_total{scenario=\"checkout\",name=\"index\",kind=\"reused\"} 5080",
            "stampede_connections_total{scenario=\"checkout\",name=\"login\",kind=\"reused\"} 970",
            "# TYPE stampede_connect_seconds histogram",
            // 36 of index's 40 connects took 80 µs, the other 4 310 µs.
            "stampede_connect_seconds_bucket{scenario=\"checkout\",name=\"index\",le=\"0.0001\"} 36",
            "stampede_connect_seconds_bucket{scenario=\"checkout\",name=\"index\",le=\"0.0004\"} 40",
            "stampede_connect_seconds_count{scenario=\"checkout\",name=\"index\"} 40",
            "# TYPE stampede_tls_handshake_seconds histogram",
            "stampede_tls_handshake_seconds_bucket{scenario=\"checkout\",name=\"login\",le=\"0.00125\"} 9",
            "stampede_tls_handshake_seconds_bucket{scenario=\"checkout\",name=\"login\",le=\"+Inf\"} 10",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
        let sum = sample_of(
            &text,
            "stampede_connect_seconds_sum{scenario=\"checkout\",name=\"index\"}",
        );
        assert!((sum - (36.0 * 80e-6 + 4.0 * 310e-6)).abs() < 1e-6, "{sum}");

        let plain = Exporter.render(&testdata::running()).unwrap();
        for f in [
            "stampede_connections_total",
            "stampede_connect_seconds",
            "stampede_tls_handshake_seconds",
        ] {
            assert!(
                !plain.contains(f),
                "{f} without connection figures:\n{plain}"
            );
        }
    }

    /// A figure no code here names: a histogram and a counter that only their specs describe
    /// show as families of their own, in the specs' units (kB/s exported as bytes/s).
    #[test]
    fn a_driver_figure_shows_by_its_spec_alone() {
        use stampede_scenarios::spec::{Family, Unit};
        const ECHO: &[MetricSpec] = &[MetricSpec {
            prometheus: Some(Prometheus {
                name: "stampede_echo_rate_bytes_per_second",
                help: "Echo: bytes per second of each echo.",
                label: None,
            }),
            ..MetricSpec::new(
                "echo_rate",
                Family::Download,
                Unit::KilobytesPerSecond,
                "Rate.",
            )
        }];
        const ECHOED: &[MetricSpec] = &[MetricSpec {
            prometheus: Some(Prometheus {
                name: "stampede_echo_echoes_total",
                help: "Echo: answers that came back.",
                label: None,
            }),
            ..MetricSpec::new("echoed", Family::Schedule, Unit::Count, "Echoes.")
        }];
        let mut snap = testdata::running();
        let run = snap.run.as_mut().unwrap();
        run.specs = Specs {
            metrics: ECHO,
            counters: ECHOED,
        };
        let mut h = stampede_scenarios::recorder::new_histogram();
        for kbps in [2, 2, 40] {
            h.record(kbps).unwrap();
        }
        let view =
            crate::snapshot::MetricView::of(Exported::of_metric(&run.specs, "echo_rate"), &h);
        run.names[0].metrics.insert("echo_rate".into(), view);
        run.names[0].counters.insert("echoed".into(), 3);
        let text = Exporter.render(&snap).unwrap();
        parse(&text);
        let name = snap.run.as_ref().unwrap().names[0].name.clone();
        for line in [
            "# TYPE stampede_echo_rate_bytes_per_second histogram".to_string(),
            format!(
                "stampede_echo_rate_bytes_per_second_bucket{{scenario=\"checkout\",name=\"{name}\",le=\"2000\"}} 2"
            ),
            format!(
                "stampede_echo_rate_bytes_per_second_count{{scenario=\"checkout\",name=\"{name}\"}} 3"
            ),
            "# TYPE stampede_echo_echoes_total counter".to_string(),
            format!("stampede_echo_echoes_total{{scenario=\"checkout\",name=\"{name}\"}} 3"),
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }

    fn sample_of(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series}"))
    }

    #[test]
    fn before_any_worker_only_the_fleet_is_exported() {
        let text = Exporter.render(&Snapshot::default()).unwrap();
        assert!(
            text.contains("stampede_workers{state=\"ready\"} 0"),
            "{text}"
        );
        assert!(!text.contains("stampede_requests_total"), "{text}");
    }

    #[test]
    fn priority_cells_sum_per_tier_and_class() {
        let snap = testdata::priority();
        let text = Exporter.render(&snap).unwrap();
        // tier 2 normal: 500 requests, (2-1)*10*2 = 20 missed.
        assert!(
            text.contains(
                "stampede_slo_met_total{scenario=\"checkout\",tier=\"2\",slo_class=\"normal\"} 480"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "stampede_slo_missed_total{scenario=\"checkout\",tier=\"2\",slo_class=\"normal\"} 20"
            ),
            "{text}"
        );
        assert_eq!(
            tier_and_class("Tier12-Relaxed_x"),
            Some(("12".into(), "relaxed"))
        );
        assert_eq!(tier_and_class("tier_urgent"), None);
    }

    #[test]
    fn failure_kinds_are_capped_per_name() {
        let mut snap = testdata::running();
        let run = snap.run.as_mut().unwrap();
        run.failures = (0..50)
            .map(|i| crate::snapshot::FailureView {
                kind: "GET".into(),
                name: "login".into(),
                error: format!("kind {i}"),
                occurrences: 100 - i,
            })
            .collect();
        let text = Exporter.render(&snap).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("stampede_request_failures_total{"))
            .collect();
        assert_eq!(lines.len(), MAX_FAILURE_KINDS + 1, "{lines:#?}");
        let other: u64 = (20..50).map(|i| 100 - i).sum();
        assert!(
            lines
                .iter()
                .any(|l| l.ends_with(&format!("kind=\"other\"}} {other}"))),
            "{lines:#?}"
        );
    }

    #[test]
    fn negative_zero_is_rendered_as_zero() {
        let mut snap = testdata::finished();
        // A float sum over no live worker (a finished run's target rate) is -0.
        snap.run.as_mut().unwrap().target_rate = -0.0;
        let text = Exporter.render(&snap).unwrap();
        assert!(
            text.contains("stampede_target_rate{scenario=\"checkout\"} 0\n"),
            "{text}"
        );
        assert!(!text.contains(" -0"), "{text}");
    }

    #[test]
    fn workers_with_the_same_name_stay_distinct() {
        let mut snap = testdata::running();
        snap.workers[1].name = "w-one".into();
        let text = Exporter.render(&snap).unwrap();
        parse(&text);
        assert!(text.contains("worker=\"w-one#1\""), "{text}");
        assert!(text.contains("worker=\"w-one#2\""), "{text}");
    }
}
