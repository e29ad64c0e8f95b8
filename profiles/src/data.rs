//! Benchmark data, loaded: the Performance Profile Generator's mock data (keyed by worker id and
//! request id) or a table of rows (from a CSV file, a URL or Stampede's sweep results), and the
//! points one worker type × request type gets from it.
//!
//! Loading is in [`crate::source`]; this module only holds and filters what was loaded.

use std::collections::BTreeSet;

use stampede_grpc::common::{RequestType, WorkerType};

use crate::profile::Point;

/// The accelerator type of every mock point (the Performance Profile Generator's).
pub const MOCK_ACCELERATOR: &str = "mock_accel_l4";

/// One benchmark row: where it was measured, and the point.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// `accelerator_type`: compared with the worker type's.
    pub accelerator_type: String,
    /// `input_range`: compared with the request type's `input_size_bucket`.
    pub input_range: String,
    /// `output_range`: compared with the request type's `output_size_bucket`.
    pub output_range: String,
    /// The figures.
    pub point: Point,
}

/// Loaded benchmark data.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// The Performance Profile Generator's mock data: points by worker id and request id, whatever
    /// the buckets.
    Mock,
    /// Rows matched on accelerator type and buckets.
    Table(Vec<Row>),
}

impl Data {
    /// The points measured for `worker` × `request`, in the data's order.
    pub fn points(&self, worker: &WorkerType, request: &RequestType) -> Vec<Point> {
        match self {
            Data::Mock => mock_points(&worker.id, &request.id),
            Data::Table(rows) => rows
                .iter()
                .filter(|r| {
                    r.accelerator_type == worker.accelerator_type
                        && r.input_range == request.input_size_bucket
                        && r.output_range == request.output_size_bucket
                })
                .map(|r| r.point)
                .collect(),
        }
    }

    /// For a request that found nothing: what the data does have, to say so in one line
    /// (`None` for mock data).
    pub fn known(&self) -> Option<Known> {
        let Data::Table(rows) = self else {
            return None;
        };
        Some(Known {
            accelerators: rows.iter().map(|r| r.accelerator_type.clone()).collect(),
            buckets: rows
                .iter()
                .map(|r| (r.input_range.clone(), r.output_range.clone()))
                .collect(),
        })
    }

    /// Rows held (mock: the Performance Profile Generator's 6 points).
    pub fn len(&self) -> usize {
        match self {
            Data::Mock => 6,
            Data::Table(rows) => rows.len(),
        }
    }

    /// Whether there is no row at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The accelerator types and bucket pairs a table has.
#[derive(Debug, Clone, PartialEq)]
pub struct Known {
    /// Accelerator types.
    pub accelerators: BTreeSet<String>,
    /// (input range, output range) pairs.
    pub buckets: BTreeSet<(String, String)>,
}

impl Known {
    /// Why `worker` × `request` matched nothing, in one line.
    pub fn explain(&self, worker: &WorkerType, request: &RequestType) -> String {
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        if !self.accelerators.contains(&worker.accelerator_type) {
            return format!(
                "no data for accelerator_type `{}` (worker type `{}`); the data has: {}",
                worker.accelerator_type,
                worker.id,
                list(self.accelerators.iter().cloned().collect())
            );
        }
        format!(
            "no data for buckets In:{} Out:{} on `{}` (request type `{}`); the data has: {}",
            request.input_size_bucket,
            request.output_size_bucket,
            worker.accelerator_type,
            request.id,
            list(
                self.buckets
                    .iter()
                    .map(|(i, o)| format!("In:{i} Out:{o}"))
                    .collect()
            )
        )
    }
}

/// The Performance Profile Generator's mock points: `worker_mock_01` × `request_mock_01` (10 rps,
/// 100 ms), (20, 200), (30, 350); × `request_mock_02_slo_unattainable` (5, 150); ×
/// `request_mock_03_ok_highest_rate` (15, 80), (25, 120). Anything else has none.
fn mock_points(worker: &str, request: &str) -> Vec<Point> {
    let v: &[(f32, f32)] = match (worker, request) {
        ("worker_mock_01", "request_mock_01") => &[(10.0, 100.0), (20.0, 200.0), (30.0, 350.0)],
        ("worker_mock_01", "request_mock_02_slo_unattainable") => &[(5.0, 150.0)],
        ("worker_mock_01", "request_mock_03_ok_highest_rate") => &[(15.0, 80.0), (25.0, 120.0)],
        _ => &[],
    };
    v.iter().map(|&(r, t)| Point::new(r, t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(id: &str, accel: &str) -> WorkerType {
        WorkerType {
            id: id.into(),
            accelerator_type: accel.into(),
            ..Default::default()
        }
    }

    fn request(id: &str, i: &str, o: &str) -> RequestType {
        RequestType {
            id: id.into(),
            input_size_bucket: i.into(),
            output_size_bucket: o.into(),
            latency_slo_tpot_ms: 100.0,
        }
    }

    #[test]
    fn mock_is_keyed_by_ids_not_buckets() {
        let w = worker("worker_mock_01", "anything");
        assert_eq!(
            Data::Mock
                .points(&w, &request("request_mock_01", "x", "y"))
                .len(),
            3
        );
        assert!(
            Data::Mock
                .points(
                    &worker("other", MOCK_ACCELERATOR),
                    &request("request_mock_01", "S", "S")
                )
                .is_empty()
        );
    }

    #[test]
    fn tables_match_accelerator_and_both_buckets() {
        let row = |a: &str, i: &str, o: &str, r: f32| Row {
            accelerator_type: a.into(),
            input_range: i.into(),
            output_range: o.into(),
            point: Point::new(r, 10.0),
        };
        let data = Data::Table(vec![
            row("L4", "2-3", "32-63", 1.0),
            row("L4", "2-3", "64-127", 2.0),
            row("H100", "2-3", "32-63", 3.0),
            row("L4", "2-3", "32-63", 4.0),
        ]);
        let got = data.points(&worker("w", "L4"), &request("r", "2-3", "32-63"));
        assert_eq!(got.iter().map(|p| p.rate).collect::<Vec<_>>(), [1.0, 4.0]);
        let known = data.known().unwrap();
        let why = known.explain(&worker("w", "TPU"), &request("r", "2-3", "32-63"));
        assert!(
            why.contains("accelerator_type `TPU`") && why.contains("H100, L4"),
            "{why}"
        );
        let why = known.explain(&worker("w", "L4"), &request("r", "4-7", "4-7"));
        assert!(
            why.contains("In:4-7 Out:4-7") && why.contains("In:2-3 Out:32-63"),
            "{why}"
        );
    }
}
