//! The profile itself: for each worker type × request type, the highest request rate whose
//! latency stays within the request type's TPOT SLO, interpolated between measured rates.
//!
//! Called by the gRPC service ([`crate::server`]) and by `stampede profile generate`. Pure:
//! the data points come from a [`Data`] already loaded; nothing here reads files or the
//! network. Every figure is `f32`, as on the Performance Profile Generator's wire, so answers
//! match it to the bit.

use stampede_grpc::common::{RequestType, WorkerType};
use stampede_grpc::profiler_service::performance_profile_entry::Status;
use stampede_grpc::profiler_service::{
    GenerateProfileResponse, PerformanceProfile, PerformanceProfileEntry, WorkloadDefinition,
};

use crate::data::Data;

/// One measurement: the latency (and, from Stampede's sweeps, TTFT and E2E) at one rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Requests per second sent.
    pub rate: f32,
    /// p90 of per-request E2E latency ÷ output tokens, ms (the Performance Profile Generator's
    /// `metrics_p90_per_output_token_latency_mean`).
    pub tpot_ms: f32,
    /// p90 time to first token, ms, when the data has it.
    pub ttft_ms: Option<f32>,
    /// p90 end-to-end latency, ms, when the data has it.
    pub e2e_ms: Option<f32>,
}

impl Point {
    /// A point with the two figures the Performance Profile Generator's data has.
    pub fn new(rate: f32, tpot_ms: f32) -> Point {
        Point {
            rate,
            tpot_ms,
            ttft_ms: None,
            e2e_ms: None,
        }
    }
}

/// What the data says about one worker type × request type.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// How the rate was found.
    pub status: Status,
    /// The highest rate within the SLO (0 unless `status` is OK or OK_USING_HIGHEST_RATE).
    pub max_rps: f32,
    /// TTFT at that rate, interpolated like the rate, when the data has it.
    pub ttft_ms: Option<f32>,
    /// E2E latency at that rate, interpolated like the rate, when the data has it.
    pub e2e_ms: Option<f32>,
}

impl Choice {
    fn none(status: Status) -> Choice {
        Choice {
            status,
            max_rps: 0.0,
            ttft_ms: None,
            e2e_ms: None,
        }
    }
}

/// The highest rate within `slo_ms` according to `points` (any order; stably sorted by rate
/// here, so equal rates keep the data's order):
///
/// - no points: NO_DATA_FOUND, 0;
/// - the SLO below the latency at the lowest rate: SLO_UNATTAINABLE, 0;
/// - the SLO at or above the latency at the highest rate: OK_USING_HIGHEST_RATE, that rate;
/// - else the first adjacent pair with t1 ≤ SLO < t2: OK, r1 + (SLO − t1)(r2 − r1)/(t2 − t1)
///   (r1 when t2 = t1). Latencies need not grow with the rate; such a pair always exists then
///   (the latencies start at or below the SLO and end above it), so INTERNAL_ERROR only
///   answers data that breaks that, such as NaN.
pub fn choose(points: &[Point], slo_ms: f32) -> Choice {
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    let (Some(first), Some(last)) = (sorted.first(), sorted.last()) else {
        return Choice::none(Status::NoDataFound);
    };
    if slo_ms < first.tpot_ms {
        return Choice::none(Status::SloUnattainable);
    }
    if slo_ms >= last.tpot_ms {
        return Choice {
            status: Status::OkUsingHighestRate,
            max_rps: last.rate,
            ttft_ms: last.ttft_ms,
            e2e_ms: last.e2e_ms,
        };
    }
    for pair in sorted.windows(2) {
        let (p1, p2) = (pair[0], pair[1]);
        if slo_ms >= p1.tpot_ms && slo_ms < p2.tpot_ms {
            let (r1, t1, r2, t2) = (p1.rate, p1.tpot_ms, p2.rate, p2.tpot_ms);
            let (max_rps, fraction) = if t2 - t1 == 0.0 {
                (r1, 0.0)
            } else {
                let f = (slo_ms - t1) / (t2 - t1);
                // The Performance Profile Generator's expression, in its order of operations (f32
                // rounding included).
                (r1 + (slo_ms - t1) * (r2 - r1) / (t2 - t1), f)
            };
            let along = |a: Option<f32>, b: Option<f32>| Some(a? + fraction * (b? - a?));
            return Choice {
                status: Status::Ok,
                max_rps,
                ttft_ms: along(p1.ttft_ms, p2.ttft_ms),
                e2e_ms: along(p1.e2e_ms, p2.e2e_ms),
            };
        }
    }
    Choice::none(Status::InternalError)
}

/// Why a workload cannot be profiled: the gRPC service answers INVALID_ARGUMENT with the
/// message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkloadError {
    /// No worker types or no request types (the Performance Profile Generator's message).
    #[error("WorkloadDefinition with worker_types and request_types must be provided")]
    Empty,
    /// An SLO that no latency can meet or that is not a number.
    #[error(
        "request type `{id}`: latency_slo_tpot_ms must be a number above 0 (got {slo}); it is the largest acceptable time per output token, in ms"
    )]
    BadSlo {
        /// The request type's id.
        id: String,
        /// Its SLO.
        slo: f32,
    },
}

/// One entry of a profile, with what the wire does not carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The worker type.
    pub worker: WorkerType,
    /// The request type.
    pub request: RequestType,
    /// What the data says.
    pub choice: Choice,
    /// The points it was chosen from, sorted by rate (for plots).
    pub points: Vec<Point>,
}

/// A computed profile: one entry per worker type × request type, in the workload's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The entries, worker-major.
    pub entries: Vec<Entry>,
}

/// Check a workload: non-empty, every SLO above 0.
pub fn validate(workload: &WorkloadDefinition) -> Result<(), WorkloadError> {
    if workload.worker_types.is_empty() || workload.request_types.is_empty() {
        return Err(WorkloadError::Empty);
    }
    if let Some(r) = workload
        .request_types
        .iter()
        .find(|r| !(r.latency_slo_tpot_ms.is_finite() && r.latency_slo_tpot_ms > 0.0))
    {
        return Err(WorkloadError::BadSlo {
            id: r.id.clone(),
            slo: r.latency_slo_tpot_ms,
        });
    }
    Ok(())
}

/// The profile of `workload` on `data`: for each worker type, for each request type (the
/// workload's order), [`choose`] over the matching points.
pub fn generate(workload: &WorkloadDefinition, data: &Data) -> Result<Profile, WorkloadError> {
    validate(workload)?;
    let mut entries =
        Vec::with_capacity(workload.worker_types.len() * workload.request_types.len());
    for worker in &workload.worker_types {
        for request in &workload.request_types {
            let mut points = data.points(worker, request);
            points.sort_by(|a, b| a.rate.total_cmp(&b.rate));
            let choice = choose(&points, request.latency_slo_tpot_ms);
            entries.push(Entry {
                worker: worker.clone(),
                request: request.clone(),
                choice,
                points,
            });
        }
    }
    Ok(Profile { entries })
}

impl Profile {
    /// The wire form.
    pub fn to_response(&self) -> GenerateProfileResponse {
        GenerateProfileResponse {
            performance_profile: Some(PerformanceProfile {
                entries: self
                    .entries
                    .iter()
                    .map(|e| PerformanceProfileEntry {
                        worker_type_id: e.worker.id.clone(),
                        request_type_id: e.request.id.clone(),
                        max_throughput_rps: e.choice.max_rps,
                        status: e.choice.status as i32,
                    })
                    .collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(f32, f32)]) -> Vec<Point> {
        v.iter().map(|&(r, t)| Point::new(r, t)).collect()
    }

    #[test]
    fn no_data_is_no_data_found() {
        let c = choose(&[], 100.0);
        assert_eq!(c.status, Status::NoDataFound);
        assert_eq!(c.max_rps, 0.0);
    }

    #[test]
    fn the_mock_data_answers() {
        let c = choose(&pts(&[(10.0, 100.0), (20.0, 200.0), (30.0, 350.0)]), 250.0);
        assert_eq!(c.status, Status::Ok);
        assert_eq!(c.max_rps, 23.333334_f32);
        assert_eq!(format!("{}", c.max_rps), "23.333334");
        let c = choose(&pts(&[(5.0, 150.0)]), 50.0);
        assert_eq!((c.status, c.max_rps), (Status::SloUnattainable, 0.0));
        let c = choose(&pts(&[(15.0, 80.0), (25.0, 120.0)]), 150.0);
        assert_eq!((c.status, c.max_rps), (Status::OkUsingHighestRate, 25.0));
    }

    #[test]
    fn one_point() {
        let p = pts(&[(8.0, 40.0)]);
        assert_eq!(choose(&p, 39.9).status, Status::SloUnattainable);
        let c = choose(&p, 40.0);
        assert_eq!((c.status, c.max_rps), (Status::OkUsingHighestRate, 8.0));
        let c = choose(&p, 1000.0);
        assert_eq!((c.status, c.max_rps), (Status::OkUsingHighestRate, 8.0));
    }

    #[test]
    fn slo_exactly_at_a_point() {
        let p = pts(&[(10.0, 100.0), (20.0, 200.0), (30.0, 350.0)]);
        // At the lowest point: attainable, OK at its rate.
        let c = choose(&p, 100.0);
        assert_eq!((c.status, c.max_rps), (Status::Ok, 10.0));
        // At a middle point: the pair starting there, so exactly its rate.
        let c = choose(&p, 200.0);
        assert_eq!((c.status, c.max_rps), (Status::Ok, 20.0));
        // At the last point: the highest rate.
        let c = choose(&p, 350.0);
        assert_eq!((c.status, c.max_rps), (Status::OkUsingHighestRate, 30.0));
    }

    #[test]
    fn equal_latencies() {
        // All equal: at or above is the highest rate, below is unattainable.
        let p = pts(&[(10.0, 50.0), (20.0, 50.0), (30.0, 50.0)]);
        assert_eq!(choose(&p, 50.0).max_rps, 30.0);
        assert_eq!(choose(&p, 49.0).status, Status::SloUnattainable);
        // A plateau before the rise: the last plateau point starts the pair.
        let p = pts(&[(10.0, 50.0), (20.0, 50.0), (30.0, 150.0)]);
        let c = choose(&p, 100.0);
        assert_eq!((c.status, c.max_rps), (Status::Ok, 25.0));
    }

    #[test]
    fn non_monotonic_latencies_take_the_first_crossing() {
        // 100 → 300 → 200 → 400: SLO 250 crosses first between 10 and 20 rps.
        let p = pts(&[(10.0, 100.0), (20.0, 300.0), (30.0, 200.0), (40.0, 400.0)]);
        let c = choose(&p, 250.0);
        assert_eq!(c.status, Status::Ok);
        assert_eq!(c.max_rps, 10.0 + 150.0 * 10.0 / 200.0);
        // Ending below the SLO after a bump: the highest rate.
        let p = pts(&[(10.0, 100.0), (20.0, 300.0), (30.0, 200.0)]);
        assert_eq!(choose(&p, 250.0).status, Status::OkUsingHighestRate);
    }

    #[test]
    fn unsorted_input_and_stable_ties() {
        let p = pts(&[(30.0, 350.0), (10.0, 100.0), (20.0, 200.0)]);
        assert_eq!(choose(&p, 250.0).max_rps, 23.333334);
        // Two points at one rate keep their order: the later one is the "highest rate".
        let p = pts(&[(10.0, 100.0), (20.0, 300.0), (20.0, 150.0)]);
        let c = choose(&p, 200.0);
        assert_eq!((c.status, c.max_rps), (Status::OkUsingHighestRate, 20.0));
    }

    #[test]
    fn nan_latency_is_an_internal_error_not_a_panic() {
        let p = pts(&[(10.0, 100.0), (20.0, f32::NAN), (30.0, 300.0)]);
        assert_eq!(choose(&p, 200.0).status, Status::InternalError);
    }

    #[test]
    fn ttft_and_e2e_follow_the_chosen_rate() {
        let p = vec![
            Point {
                rate: 10.0,
                tpot_ms: 100.0,
                ttft_ms: Some(200.0),
                e2e_ms: Some(1000.0),
            },
            Point {
                rate: 20.0,
                tpot_ms: 200.0,
                ttft_ms: Some(400.0),
                e2e_ms: Some(3000.0),
            },
        ];
        let c = choose(&p, 150.0);
        assert_eq!(c.max_rps, 15.0);
        assert_eq!(c.ttft_ms, Some(300.0));
        assert_eq!(c.e2e_ms, Some(2000.0));
        let c = choose(&p, 500.0);
        assert_eq!((c.ttft_ms, c.e2e_ms), (Some(400.0), Some(3000.0)));
        assert_eq!(choose(&p, 50.0).ttft_ms, None);
    }

    #[test]
    fn workloads_are_checked() {
        let mut w = WorkloadDefinition::default();
        assert_eq!(validate(&w), Err(WorkloadError::Empty));
        w.worker_types.push(WorkerType::default());
        assert_eq!(validate(&w), Err(WorkloadError::Empty));
        for slo in [0.0, -5.0, f32::NAN, f32::INFINITY] {
            w.request_types = vec![RequestType {
                id: "r".into(),
                latency_slo_tpot_ms: slo,
                ..Default::default()
            }];
            let e = validate(&w).unwrap_err();
            assert!(e.to_string().contains("request type `r`"), "{e}");
        }
        w.request_types[0].latency_slo_tpot_ms = 0.5;
        assert_eq!(validate(&w), Ok(()));
    }
}
