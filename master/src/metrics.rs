//! `/metrics`: the master's merged figures in Prometheus text format, built from the latest
//! snapshot at each scrape (so scraping never touches aggregation).
//!
//! Latency is exported as a real histogram whose buckets come from the exact HDR histograms;
//! labels stay bounded (scenario and request name, never URLs). Uses the `prometheus` crate's
//! data model and text encoder; it keeps no state between scrapes.

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};

use crate::snapshot::{NameView, Snapshot};

/// Upper bounds of the request duration histogram's buckets, seconds: fine enough around
/// common latencies for `histogram_quantile` to give a usable p99.
pub const DURATION_BUCKETS: [f64; 33] = [
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01,
    0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5,
    10.0, 15.0, 30.0, 60.0,
];

/// Renders snapshots as Prometheus text.
#[derive(Debug, Default)]
pub struct Exporter;

impl Exporter {
    /// The exposition text for `snap`.
    pub fn render(&self, snap: &Snapshot) -> Result<String, prometheus::Error> {
        let mut families = Vec::new();
        let mut workers = family(
            "stampede_workers",
            "Workers known to the master, by state.",
            MetricType::GAUGE,
        );
        for state in ["ready", "assigned", "running", "lost"] {
            workers
                .mut_metric()
                .push(gauge(&[("state", state)], snap.count(state) as f64));
        }
        families.push(workers);
        if let Some(run) = &snap.run {
            let scenario = run.scenario.as_str();
            let mut users = family(
                "stampede_users",
                "Users (closed model) or requests in flight (open model).",
                MetricType::GAUGE,
            );
            users
                .mut_metric()
                .push(gauge(&[("scenario", scenario)], run.users as f64));
            let mut rate = family(
                "stampede_target_rate",
                "Open-model arrival rate being produced, requests per second.",
                MetricType::GAUGE,
            );
            rate.mut_metric()
                .push(gauge(&[("scenario", scenario)], run.target_rate));
            let mut requests = family(
                "stampede_requests_total",
                "Requests completed, successes and failures.",
                MetricType::COUNTER,
            );
            let mut failures = family(
                "stampede_request_failures_total",
                "Requests that failed.",
                MetricType::COUNTER,
            );
            let mut bytes = family(
                "stampede_bytes_total",
                "Response bytes received.",
                MetricType::COUNTER,
            );
            let mut duration = family(
                "stampede_request_duration_seconds",
                "Request latency (from the scheduled send time in the open model).",
                MetricType::HISTOGRAM,
            );
            for n in &run.names {
                let labels = [("scenario", scenario), ("name", n.name.as_str())];
                requests
                    .mut_metric()
                    .push(counter(&labels, n.requests as f64));
                failures
                    .mut_metric()
                    .push(counter(&labels, n.failures as f64));
                bytes.mut_metric().push(counter(&labels, n.bytes as f64));
                duration.mut_metric().push(histogram(&labels, n));
            }
            families.extend([users, rate, requests, failures, bytes, duration]);
        }
        let mut out = Vec::new();
        TextEncoder::new().encode(&families, &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
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
    g.set_value(v);
    m.set_gauge(g);
    m
}

fn counter(labels: &[(&str, &str)], v: f64) -> Metric {
    let mut m = labelled(labels);
    let mut c = Counter::default();
    c.set_value(v);
    m.set_counter(c);
    m
}

fn histogram(labels: &[(&str, &str)], n: &NameView) -> Metric {
    let mut m = labelled(labels);
    let mut h = Histogram::default();
    h.set_sample_count(n.requests);
    h.set_sample_sum(n.latency_sum_s);
    h.set_bucket(
        DURATION_BUCKETS
            .iter()
            .zip(n.buckets.iter().chain(std::iter::repeat(&0)))
            .map(|(le, count)| {
                let mut b = Bucket::default();
                b.set_upper_bound(*le);
                b.set_cumulative_count(*count);
                b
            })
            .collect(),
    );
    m.set_histogram(h);
    m
}
