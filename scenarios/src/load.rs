//! Load models and how a worker follows its part of one.
//!
//! A [`LoadModel`] is the whole scenario's load; a [`LoadPlan`] is one worker's part of it (its
//! share and the user's scale applied), answering "how many users now?" or "what rate now?" for
//! any elapsed time. Pure functions of time: the worker's engine does the waiting, and tests
//! check pacing without a clock. Integer quantities are split with [`split`] so the workers'
//! parts always add up to the whole.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Requests in flight per worker before arrivals are dropped, unless the scenario says.
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 10_000;

/// Spacing of open-model arrivals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    /// Exponential gaps: a Poisson process, as independent users arrive.
    #[default]
    Poisson,
    /// Equal gaps of 1/rate.
    Constant,
}

impl std::str::FromStr for Arrival {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "poisson" => Ok(Arrival::Poisson),
            "constant" => Ok(Arrival::Constant),
            other => Err(format!("unknown arrival `{other}` (poisson or constant)")),
        }
    }
}

/// What the stages of a [`LoadModel::Stages`] set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageTarget {
    /// Concurrent users (closed model).
    Users,
    /// Arrival rate (open model).
    Rate,
}

/// One stage: go linearly from the previous target to `target` over `duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage {
    /// Length of the stage.
    pub duration: Duration,
    /// Users or requests per second at the end of the stage.
    pub target: f64,
}

/// The whole scenario's load.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadModel {
    /// `users` users in a loop, started at `spawn_rate` per second (∞ = all at once).
    Closed {
        /// Users across all workers.
        users: u64,
        /// Users started per second.
        spawn_rate: f64,
    },
    /// Arrivals at `rate` per second.
    Open {
        /// Requests per second across all workers.
        rate: f64,
        /// Spacing of arrivals.
        arrival: Arrival,
        /// Requests in flight per worker before arrivals are dropped.
        max_in_flight: u64,
    },
    /// A target that changes over time.
    Stages {
        /// Users or rate.
        target: StageTarget,
        /// The stages in order; after the last, its target holds.
        stages: Vec<Stage>,
        /// Spacing of arrivals for rate stages.
        arrival: Arrival,
        /// Requests in flight per worker for rate stages.
        max_in_flight: u64,
    },
}

impl LoadModel {
    /// Whether requests are paced by arrivals (open) rather than by users (closed).
    pub fn is_open(&self) -> bool {
        matches!(
            self,
            LoadModel::Open { .. }
                | LoadModel::Stages {
                    target: StageTarget::Rate,
                    ..
                }
        )
    }

    /// The whole target (users or rate, across all workers) at `elapsed`, before the scale.
    pub fn total_at(&self, elapsed: Duration) -> f64 {
        match self {
            LoadModel::Closed { users, spawn_rate } => {
                let spawned = spawn_rate * elapsed.as_secs_f64();
                // At t = 0 the first user starts at once.
                (spawned.floor() + 1.0).min(*users as f64)
            }
            LoadModel::Open { rate, .. } => *rate,
            LoadModel::Stages { stages, .. } => {
                let mut from = 0.0;
                let mut t = elapsed;
                for s in stages {
                    if t < s.duration {
                        let f = t.as_secs_f64() / s.duration.as_secs_f64();
                        return from + (s.target - from) * f;
                    }
                    t -= s.duration;
                    from = s.target;
                }
                from
            }
        }
    }

    /// The highest target the model reaches (users or rate), before the scale.
    pub fn peak(&self) -> f64 {
        match self {
            LoadModel::Closed { users, .. } => *users as f64,
            LoadModel::Open { rate, .. } => *rate,
            LoadModel::Stages { stages, .. } => stages.iter().map(|s| s.target).fold(0.0, f64::max),
        }
    }
}

/// One worker's part of a [`LoadModel`].
#[derive(Debug, Clone, PartialEq)]
pub struct LoadPlan {
    /// The whole model.
    pub model: LoadModel,
    /// This worker's index in `weights`.
    pub slot: usize,
    /// Every worker's weight.
    pub weights: Vec<u32>,
    /// The user's factor on the model's targets.
    pub scale: f64,
}

impl LoadPlan {
    /// This worker's fraction of the whole.
    pub fn fraction(&self) -> f64 {
        let total: u64 = self.weights.iter().map(|&w| u64::from(w)).sum();
        match self.weights.get(self.slot) {
            Some(&w) if total > 0 => f64::from(w) / total as f64,
            _ => 0.0,
        }
    }

    /// Users this worker should run at `elapsed` (closed models). The parts of all workers sum
    /// exactly to the scaled whole.
    pub fn users_at(&self, elapsed: Duration) -> u64 {
        let whole = (self.model.total_at(elapsed) * self.scale).round().max(0.0) as u64;
        split(whole, &self.weights)
            .get(self.slot)
            .copied()
            .unwrap_or(0)
    }

    /// Arrival rate this worker should produce at `elapsed` (open models), per second.
    pub fn rate_at(&self, elapsed: Duration) -> f64 {
        (self.model.total_at(elapsed) * self.scale * self.fraction()).max(0.0)
    }
}

/// Split `total` by `weights` with the largest-remainder method: every part is within one of
/// its exact proportion and the parts sum to `total`. Ties go to the earlier slot. All-zero
/// weights split evenly.
pub fn split(total: u64, weights: &[u32]) -> Vec<u64> {
    if weights.is_empty() {
        return Vec::new();
    }
    let all_zero = weights.iter().all(|&w| w == 0);
    let w: Vec<u128> = weights
        .iter()
        .map(|&w| if all_zero { 1 } else { u128::from(w) })
        .collect();
    let sum: u128 = w.iter().sum();
    let mut parts: Vec<u64> = w
        .iter()
        .map(|&wi| (u128::from(total) * wi / sum) as u64)
        .collect();
    let mut rems: Vec<(u128, usize)> = w
        .iter()
        .enumerate()
        .map(|(i, &wi)| (u128::from(total) * wi % sum, i))
        .collect();
    rems.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let given: u64 = parts.iter().sum();
    for &(_, i) in rems.iter().take((total - given) as usize) {
        parts[i] += 1;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn split_examples() {
        assert_eq!(split(10, &[1, 1]), vec![5, 5]);
        assert_eq!(split(11, &[1, 1]), vec![6, 5]);
        assert_eq!(split(10, &[1, 2, 2]), vec![2, 4, 4]);
        assert_eq!(split(1, &[2, 2, 2]), vec![1, 0, 0]);
        assert_eq!(split(7, &[0, 0]), vec![4, 3]);
        assert_eq!(split(5, &[0, 3]), vec![0, 5]);
        assert!(split(5, &[]).is_empty());
    }

    proptest! {
        #[test]
        fn split_sums_and_is_fair(total in 0u64..1_000_000, weights in proptest::collection::vec(0u32..64, 1..20)) {
            let parts = split(total, &weights);
            prop_assert_eq!(parts.iter().sum::<u64>(), total);
            let sum: u64 = weights.iter().map(|&w| u64::from(w)).sum();
            if sum > 0 {
                for (p, &w) in parts.iter().zip(&weights) {
                    let exact = total as f64 * f64::from(w) / sum as f64;
                    prop_assert!((*p as f64 - exact).abs() < 1.0 + 1e-9);
                }
            }
        }
    }

    #[test]
    fn closed_spawn_ramp_is_split_exactly() {
        let model = LoadModel::Closed {
            users: 10,
            spawn_rate: 2.0,
        };
        let plans: Vec<LoadPlan> = (0..3)
            .map(|slot| LoadPlan {
                model: model.clone(),
                slot,
                weights: vec![2, 1, 1],
                scale: 1.0,
            })
            .collect();
        for (secs, whole) in [(0.0, 1), (0.6, 2), (2.0, 5), (4.5, 10), (100.0, 10)] {
            let t = Duration::from_secs_f64(secs);
            let sum: u64 = plans.iter().map(|p| p.users_at(t)).sum();
            assert_eq!(sum, whole, "at {secs}s");
        }
        let all_at_once = LoadModel::Closed {
            users: 9,
            spawn_rate: f64::INFINITY,
        };
        assert_eq!(all_at_once.total_at(Duration::ZERO), 9.0);
    }

    #[test]
    fn stages_ramp_and_hold() {
        let model = LoadModel::Stages {
            target: StageTarget::Rate,
            stages: vec![
                Stage {
                    duration: Duration::from_secs(10),
                    target: 100.0,
                },
                Stage {
                    duration: Duration::from_secs(10),
                    target: 100.0,
                },
                Stage {
                    duration: Duration::from_secs(10),
                    target: 0.0,
                },
            ],
            arrival: Arrival::Poisson,
            max_in_flight: 10,
        };
        assert!(model.is_open());
        assert_eq!(model.total_at(Duration::ZERO), 0.0);
        assert_eq!(model.total_at(Duration::from_secs(5)), 50.0);
        assert_eq!(model.total_at(Duration::from_secs(15)), 100.0);
        assert_eq!(model.total_at(Duration::from_secs(25)), 50.0);
        assert_eq!(model.total_at(Duration::from_secs(99)), 0.0);
        assert_eq!(model.peak(), 100.0);
        let plan = LoadPlan {
            model,
            slot: 1,
            weights: vec![1, 3],
            scale: 2.0,
        };
        assert_eq!(plan.rate_at(Duration::from_secs(15)), 150.0);
    }
}
