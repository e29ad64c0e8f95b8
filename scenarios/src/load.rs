//! Load models and how a worker follows its part of one.
//!
//! A [`LoadModel`] is the whole scenario's load; a [`LoadPlan`] is one worker's part of it (its
//! share and the user's scale applied), answering "how many users now?" or "what rate now?" for
//! any elapsed time. An optional [`Mix`] gives each request its own share of an open rate
//! (MLPerf LoadGen's one Poisson process per class), with spikes and LoadGen's end rule. A
//! [`Schedule`] turns a plan into arrival times and request picks. All pure functions of time
//! and a random source: the worker's engine does the waiting, and tests check pacing without a
//! clock. Integer quantities are split with [`split`] so the workers' parts always add up to
//! the whole.

use std::time::Duration;

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand_distr::{Distribution, Exp, Gamma};
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
    /// Gamma-distributed gaps of mean 1/rate and shape `burstiness` (the load model's): below
    /// 1 arrivals come in bursts (coefficient of variation 1/√burstiness), 1 is Poisson, above
    /// 1 they are more regular. All workers draw one shared sequence from the run's seed and
    /// each takes its part of it, so the merged arrivals are one gamma process (a sum of
    /// independent gamma processes is not one).
    Gamma,
}

impl std::str::FromStr for Arrival {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "poisson" => Ok(Arrival::Poisson),
            "constant" => Ok(Arrival::Constant),
            "gamma" => Ok(Arrival::Gamma),
            other => Err(format!(
                "unknown arrival `{other}` (poisson, constant or gamma)"
            )),
        }
    }
}

/// What each user of a [`LoadModel::Simultaneous`] start does (`mode` in the scenario).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserMode {
    /// One request at the start instant; the run ends when every user's request is done (or
    /// at the duration).
    #[default]
    Once,
    /// Back-to-back requests from the start instant until the duration.
    Repeat,
}

impl std::str::FromStr for UserMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "once" => Ok(UserMode::Once),
            "repeat" => Ok(UserMode::Repeat),
            other => Err(format!("unknown mode `{other}` (once or repeat)")),
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
        /// The shape of gamma gaps ([`Arrival::Gamma`]); 1 otherwise.
        burstiness: f64,
        /// Requests in flight per worker before arrivals are dropped.
        max_in_flight: u64,
    },
    /// `users` users that all send their first request at the same instant, across workers
    /// (the master aligns the workers' clocks); each then stops (`Once`) or repeats (`Repeat`).
    Simultaneous {
        /// Users across all workers.
        users: u64,
        /// One request each, or requests back to back until the duration.
        mode: UserMode,
    },
    /// A target that changes over time.
    Stages {
        /// Users or rate.
        target: StageTarget,
        /// The stages in order; after the last, its target holds.
        stages: Vec<Stage>,
        /// Spacing of arrivals for rate stages.
        arrival: Arrival,
        /// The shape of gamma gaps ([`Arrival::Gamma`]); 1 otherwise.
        burstiness: f64,
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
            LoadModel::Simultaneous { users, .. } => *users as f64,
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
            LoadModel::Closed { users, .. } | LoadModel::Simultaneous { users, .. } => {
                *users as f64
            }
            LoadModel::Open { rate, .. } => *rate,
            LoadModel::Stages { stages, .. } => stages.iter().map(|s| s.target).fold(0.0, f64::max),
        }
    }

    /// Spacing of arrivals (constant for closed models, which have none).
    pub fn arrival(&self) -> Arrival {
        match self {
            LoadModel::Open { arrival, .. } | LoadModel::Stages { arrival, .. } => *arrival,
            LoadModel::Closed { .. } | LoadModel::Simultaneous { .. } => Arrival::Constant,
        }
    }

    /// The shape of gamma gaps (1 unless the arrivals are [`Arrival::Gamma`]).
    pub fn burstiness(&self) -> f64 {
        match self {
            LoadModel::Open { burstiness, .. } | LoadModel::Stages { burstiness, .. } => {
                *burstiness
            }
            LoadModel::Closed { .. } | LoadModel::Simultaneous { .. } => 1.0,
        }
    }

    /// Requests in flight per worker before arrivals are dropped (unbounded for closed models).
    pub fn max_in_flight(&self) -> u64 {
        match self {
            LoadModel::Open { max_in_flight, .. } | LoadModel::Stages { max_in_flight, .. } => {
                *max_in_flight
            }
            LoadModel::Closed { .. } | LoadModel::Simultaneous { .. } => u64::MAX,
        }
    }

    /// Requests each user sends before it stops (`None`: until the run ends).
    pub fn requests_per_user(&self) -> Option<u64> {
        match self {
            LoadModel::Simultaneous {
                mode: UserMode::Once,
                ..
            } => Some(1),
            _ => None,
        }
    }

    /// Whether every user's first request is due at the start instant itself (latency and
    /// schedule lag then count from that instant).
    pub fn starts_together(&self) -> bool {
        matches!(self, LoadModel::Simultaneous { .. })
    }
}

/// Open-model arrivals split among the scenario's requests at fixed shares of the rate: each
/// request is its own arrival process at `rate × share` (MLPerf LoadGen's one Server-scenario
/// instance per class). Independent Poisson processes superpose into one Poisson process whose
/// arrivals pick request `i` with probability `rateᵢ / Σ rate`; a [`Schedule`] draws them so.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// Per request index (the driver's order): its rate is the load's rate × share. Shares need
    /// not sum to 1; a share of 0 sends nothing.
    pub shares: Vec<f64>,
    /// Windows in which chosen requests' rates are multiplied (burst experiments).
    pub spikes: Vec<Spike>,
    /// MLPerf LoadGen's end rule for each request, if set; otherwise all end with the run.
    pub until: Option<Until>,
}

/// A window of the run in which some requests arrive `factor` times as often.
#[derive(Debug, Clone, PartialEq)]
pub struct Spike {
    /// When it begins, from the start of the run.
    pub start: Duration,
    /// How long it lasts.
    pub duration: Duration,
    /// The multiplier on those requests' rates (≥ 0; 0 silences them).
    pub factor: f64,
    /// The request indexes it applies to.
    pub requests: Vec<usize>,
}

/// MLPerf LoadGen's end of a Server-scenario run, per request: arrivals go on until there has
/// been one at or after `min_duration` *and* `min_count` of them in all (each worker counts
/// its [`split`] of `min_count`); never past `max_duration`, the run's hard end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Until {
    /// LoadGen's `min_duration`: the last arrival is at or after it.
    pub min_duration: Duration,
    /// LoadGen's `min_query_count`, across all workers.
    pub min_count: u64,
    /// The run ends here whatever the counts (LoadGen's `max_duration`).
    pub max_duration: Duration,
}

impl Mix {
    /// The factor spikes put on request `i` at `elapsed`.
    pub fn factor(&self, i: usize, elapsed: Duration) -> f64 {
        self.spikes
            .iter()
            .filter(|s| {
                elapsed >= s.start && elapsed < s.start + s.duration && s.requests.contains(&i)
            })
            .map(|s| s.factor)
            .product()
    }

    /// The first instant after `elapsed` at which a spike begins or ends (a rate steps).
    pub fn next_change(&self, elapsed: Duration) -> Option<Duration> {
        self.spikes
            .iter()
            .flat_map(|s| [s.start, s.start + s.duration])
            .filter(|&t| t > elapsed)
            .min()
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
    /// Rates per request, when the scenario fixes them (open models).
    pub mix: Option<Mix>,
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

    /// Arrival rate this worker should produce at `elapsed` (open models), per second. With a
    /// [`Mix`], the rate before shares and spikes (see [`LoadPlan::request_rate`]).
    pub fn rate_at(&self, elapsed: Duration) -> f64 {
        (self.model.total_at(elapsed) * self.scale * self.fraction()).max(0.0)
    }

    /// The highest arrival rate this worker may have to produce (every spike at once, for a
    /// mix), per second.
    pub fn peak_rate(&self) -> f64 {
        let base = self.model.peak() * self.scale * self.fraction();
        match &self.mix {
            Some(mix) => {
                let spikes: f64 = mix.spikes.iter().map(|s| s.factor.max(1.0)).product();
                base * mix.shares.iter().sum::<f64>() * spikes
            }
            None => base,
        }
    }

    /// With a [`Mix`], the rate of request `i` this worker should produce at `elapsed`.
    pub fn request_rate(&self, i: usize, elapsed: Duration) -> f64 {
        match &self.mix {
            Some(mix) => {
                let share = mix.shares.get(i).copied().unwrap_or(0.0);
                (self.rate_at(elapsed) * share * mix.factor(i, elapsed)).max(0.0)
            }
            None => 0.0,
        }
    }

    /// This worker's part of [`Until::min_count`].
    pub fn min_count(&self, until: &Until) -> u64 {
        split(until.min_count, &self.weights)
            .get(self.slot)
            .copied()
            .unwrap_or(0)
    }
}

/// What a [`Schedule`] says comes next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// An arrival at `at` (from the start of the run) for request `request` (`None`: the
    /// driver picks).
    Arrival {
        /// When, from the start of the run.
        at: Duration,
        /// Which request, when the plan has a [`Mix`].
        request: Option<usize>,
    },
    /// The rate is 0 now: nothing before `at`; ask again then (after [`Schedule::resume_at`]).
    Idle {
        /// When to look again.
        at: Duration,
    },
    /// No arrival before the end (or every request of the mix has ended).
    End,
}

/// How long a schedule idles while its rate is 0 before it looks again.
pub const IDLE_STEP: Duration = Duration::from_millis(10);

/// The arrival times of one lane of one worker: the engine asks for the next arrival, waits
/// for it and sends it. `lanes` lanes share a worker's rate, each with its own random stream
/// (superposed Poisson streams are Poisson at the sum).
///
/// Without a mix, gaps follow the plan's rate (exponential or constant). With a [`Mix`], the
/// lane's total rate is the sum of its requests' rates; each arrival picks a request in
/// proportion to its rate, so each request is a Poisson process of its own rate. A gap that
/// would cross a spike's edge is redrawn from the edge (exact for step changes, the exponential
/// being memoryless); a request under [`Until`] stops once it has had an arrival at or after
/// `min_duration` and its count.
#[derive(Debug, Clone)]
pub struct Schedule {
    lane: usize,
    lanes: usize,
    /// The latest arrival (or idle look), from the start of the run.
    next: Duration,
    first: bool,
    /// Per request: arrivals so far, and whether it has ended (mix only).
    counts: Vec<u64>,
    done: Vec<bool>,
    rates: Vec<f64>,
    /// The worker's total rate at the latest arrival, per second.
    rate: f64,
    /// The run's seed, the same on every worker: the source of the shared gamma sequence.
    run_seed: u64,
    /// Where this lane is in the shared gamma sequence (gamma arrivals only).
    shared: Option<SharedSequence>,
}

/// The run's one gamma sequence as one lane follows it: every lane of every worker draws the
/// same gaps from the run's seed, in the same order, and keeps the arrivals that are its own.
/// Arrival `i` of the whole belongs to the worker whose block of `weights` holds `i mod Σw`
/// (so each worker gets exactly its weight's share), and a worker's `j`-th arrival to lane
/// `j mod lanes`. The merged arrivals of all workers are therefore exactly the sequence.
#[derive(Debug, Clone)]
struct SharedSequence {
    rng: SmallRng,
    /// Seconds from the start of the run to the latest arrival of the whole sequence.
    at: f64,
    /// Arrivals of the whole sequence so far.
    index: u64,
    /// Of those, the ones that went to this worker.
    mine: u64,
}

impl SharedSequence {
    fn new(run_seed: u64) -> SharedSequence {
        SharedSequence {
            rng: SmallRng::seed_from_u64(run_seed),
            at: 0.0,
            index: 0,
            mine: 0,
        }
    }
}

/// The worker (slot) that arrival `index` of the shared sequence belongs to under `weights`
/// (all-zero weights: equal parts).
pub fn owner_of(index: u64, weights: &[u32]) -> usize {
    let all_zero = weights.iter().all(|&w| w == 0);
    let w = |x: u32| if all_zero { 1 } else { u64::from(x) };
    let total: u64 = weights.iter().map(|&x| w(x)).sum();
    if total == 0 {
        return 0;
    }
    let mut p = index % total;
    for (slot, &x) in weights.iter().enumerate() {
        if p < w(x) {
            return slot;
        }
        p -= w(x);
    }
    weights.len().saturating_sub(1)
}

impl Schedule {
    /// A schedule for lane `lane` of `lanes`, starting `from` into the run.
    pub fn new(from: Duration, lane: usize, lanes: usize) -> Schedule {
        Schedule {
            lane,
            lanes: lanes.max(1),
            next: from,
            first: true,
            counts: Vec::new(),
            done: Vec::new(),
            rates: Vec::new(),
            rate: 0.0,
            run_seed: 0,
            shared: None,
        }
    }

    /// The run's seed (the same on every worker), from which gamma arrivals are drawn.
    pub fn with_run_seed(mut self, run_seed: u64) -> Schedule {
        self.run_seed = run_seed;
        self
    }

    /// The worker's total arrival rate when the latest arrival was drawn, per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Arrivals so far per request (mix only), this lane.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// After an idle wait: go on from `elapsed` (the time it really is), not from the past.
    pub fn resume_at(&mut self, elapsed: Duration) {
        self.next = self.next.max(elapsed);
    }

    /// The next arrival before `end` (from the start of the run) under `plan`.
    pub fn next(&mut self, plan: &LoadPlan, end: Duration, rng: &mut SmallRng) -> Next {
        if plan.model.arrival() == Arrival::Gamma && plan.mix.is_none() {
            return self.next_shared(plan, end);
        }
        loop {
            if self.next >= end {
                return Next::End;
            }
            let at = self.next;
            let total = match &plan.mix {
                Some(mix) => {
                    if self.done.len() != mix.shares.len() {
                        self.counts = vec![0; mix.shares.len()];
                        self.done = mix.shares.iter().map(|&s| s <= 0.0).collect();
                    }
                    if self.done.iter().all(|&d| d) {
                        return Next::End;
                    }
                    self.rates.clear();
                    for i in 0..mix.shares.len() {
                        let r = if self.done[i] {
                            0.0
                        } else {
                            plan.request_rate(i, at)
                        };
                        self.rates.push(r);
                    }
                    self.rates.iter().sum::<f64>()
                }
                None => plan.rate_at(at),
            };
            self.rate = total;
            if total <= 0.0 || !total.is_finite() {
                self.next = at + IDLE_STEP;
                return Next::Idle { at: self.next };
            }
            let arrival = plan.model.arrival();
            let gap = match arrival {
                // Constant spacing over lanes: lane k takes arrivals k+1, k+1+lanes, ... of the
                // worker's sequence.
                Arrival::Constant if self.first => (self.lane + 1) as f64 / total,
                Arrival::Gamma => {
                    gamma_gap(plan.model.burstiness(), total / self.lanes as f64, rng)
                }
                _ => next_gap(arrival, total / self.lanes as f64, rng),
            };
            let candidate = at + Duration::from_secs_f64(gap);
            if let Some(edge) = plan.mix.as_ref().and_then(|m| m.next_change(at))
                && edge < candidate
            {
                // A rate steps before the drawn arrival: draw again from the step.
                self.next = edge;
                continue;
            }
            self.first = false;
            self.next = candidate;
            if candidate >= end {
                return Next::End;
            }
            let Some(mix) = &plan.mix else {
                return Next::Arrival {
                    at: candidate,
                    request: None,
                };
            };
            let i = pick(&self.rates, total, rng);
            self.counts[i] += 1;
            if let Some(until) = &mix.until {
                let mine = part(plan.min_count(until), self.lanes, self.lane);
                if candidate >= until.min_duration && self.counts[i] >= mine {
                    self.done[i] = true;
                }
            }
            return Next::Arrival {
                at: candidate,
                request: Some(i),
            };
        }
    }
}

impl Schedule {
    /// Gamma arrivals: walk the run's shared sequence (see [`SharedSequence`]) to this lane's
    /// next arrival at or after where the lane starts. The sequence's time and rate are those
    /// of the whole run (the model's target × scale), so every lane walks it identically;
    /// idle stretches (a rate of 0) advance it by [`IDLE_STEP`], never by the clock.
    fn next_shared(&mut self, plan: &LoadPlan, end: Duration) -> Next {
        let seq = self
            .shared
            .get_or_insert_with(|| SharedSequence::new(self.run_seed));
        let shape = plan.model.burstiness();
        let end_s = end.as_secs_f64();
        let lanes = self.lanes as u64;
        loop {
            if seq.at >= end_s {
                return Next::End;
            }
            let now = Duration::from_secs_f64(seq.at);
            let whole = (plan.model.total_at(now) * plan.scale).max(0.0);
            self.rate = whole * plan.fraction();
            if whole <= 0.0 || !whole.is_finite() {
                seq.at += IDLE_STEP.as_secs_f64();
                continue;
            }
            seq.at += gamma_gap(shape, whole, &mut seq.rng);
            let index = seq.index;
            seq.index += 1;
            if seq.at >= end_s {
                return Next::End;
            }
            if owner_of(index, &plan.weights) != plan.slot {
                continue;
            }
            let local = seq.mine;
            seq.mine += 1;
            let at = Duration::from_secs_f64(seq.at);
            if local % lanes != self.lane as u64 || at < self.next {
                continue;
            }
            self.first = false;
            return Next::Arrival { at, request: None };
        }
    }
}

/// Seconds to the next arrival at `rate` (> 0) per second. Gamma gaps need a shape: see
/// [`gamma_gap`] (here they are drawn with shape 1, which is Poisson).
pub fn next_gap(arrival: Arrival, rate: f64, rng: &mut SmallRng) -> f64 {
    match arrival {
        Arrival::Constant => 1.0 / rate,
        Arrival::Poisson => match Exp::new(rate) {
            Ok(exp) => exp.sample(rng),
            Err(_) => 1.0 / rate,
        },
        Arrival::Gamma => gamma_gap(1.0, rate, rng),
    }
}

/// Seconds to the next arrival of a gamma process with shape `burstiness` (> 0) at `rate` (> 0)
/// per second: the gap has mean 1/rate and coefficient of variation 1/√burstiness.
pub fn gamma_gap(burstiness: f64, rate: f64, rng: &mut SmallRng) -> f64 {
    match Gamma::new(burstiness, 1.0 / (burstiness * rate)) {
        Ok(g) => g.sample(rng),
        Err(_) => 1.0 / rate,
    }
}

/// Part `index` of `total` split evenly into `parts` (the first `total % parts` get one more).
fn part(total: u64, parts: usize, index: usize) -> u64 {
    let parts = parts.max(1) as u64;
    total / parts + u64::from((index as u64) < total % parts)
}

/// An index picked with probability `weights[i] / total`.
fn pick(weights: &[f64], total: f64, rng: &mut SmallRng) -> usize {
    let mut x = rng.random::<f64>() * total;
    let mut last = 0;
    for (i, &w) in weights.iter().enumerate() {
        if w > 0.0 {
            if x < w {
                return i;
            }
            x -= w;
            last = i;
        }
    }
    // Rounding left a sliver past the last weight: it belongs to the last.
    last
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
    use rand::SeedableRng;

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
                mix: None,
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

    /// The MLPerf-LoadGen priority runner's `balanced` workload: shares of the 9 classes.
    const BALANCED: [f64; 9] = [0.05, 0.10, 0.15, 0.10, 0.15, 0.10, 0.10, 0.15, 0.10];

    fn mix_plan(rate: f64, mix: Mix, slot: usize, weights: Vec<u32>) -> LoadPlan {
        LoadPlan {
            model: LoadModel::Open {
                rate,
                arrival: Arrival::Poisson,
                burstiness: 1.0,
                max_in_flight: 1000,
            },
            slot,
            weights,
            scale: 1.0,
            mix: Some(mix),
        }
    }

    /// Every arrival of `lanes` lanes before `end`, as (seconds, request).
    fn arrivals(plan: &LoadPlan, end: Duration, lanes: usize, seed: u64) -> Vec<(f64, usize)> {
        let mut out = Vec::new();
        for lane in 0..lanes {
            let mut rng = SmallRng::seed_from_u64(seed + lane as u64);
            let mut sched = Schedule::new(Duration::ZERO, lane, lanes);
            loop {
                match sched.next(plan, end, &mut rng) {
                    Next::Arrival { at, request } => out.push((at.as_secs_f64(), request.unwrap())),
                    Next::Idle { at } => sched.resume_at(at),
                    Next::End => break,
                }
            }
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    /// Kolmogorov–Smirnov statistic of `gaps` against the exponential law of `rate`.
    fn ks_exponential(mut gaps: Vec<f64>, rate: f64) -> f64 {
        gaps.sort_by(|a, b| a.total_cmp(b));
        let n = gaps.len() as f64;
        gaps.iter()
            .enumerate()
            .map(|(i, &x)| {
                let cdf = 1.0 - (-rate * x).exp();
                (cdf - i as f64 / n).max((i + 1) as f64 / n - cdf)
            })
            .fold(0.0, f64::max)
    }

    /// Each of the 9 classes is a Poisson process of its own rate (total × share × this
    /// worker's fraction): its count is within 4σ of the expectation and its gaps pass a KS
    /// test against the exponential law at α = 0.01. Two lanes share the worker's rate.
    #[test]
    fn each_class_is_a_poisson_process_of_its_rate() {
        let mix = Mix {
            shares: BALANCED.to_vec(),
            spikes: vec![],
            until: None,
        };
        // 200 qps in all; this worker has 1 of 2 equal weights: 100 qps.
        let plan = mix_plan(200.0, mix, 1, vec![3, 3]);
        let horizon = 3000.0;
        let all = arrivals(&plan, Duration::from_secs_f64(horizon), 2, 11);
        for (i, share) in BALANCED.iter().enumerate() {
            let rate = 100.0 * share;
            let times: Vec<f64> = all.iter().filter(|a| a.1 == i).map(|a| a.0).collect();
            let expected = rate * horizon;
            let n = times.len() as f64;
            assert!(
                (n - expected).abs() < 4.0 * expected.sqrt(),
                "class {i}: {n} arrivals, expected {expected}"
            );
            let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
            let d = ks_exponential(gaps, rate);
            assert!(d < 1.63 / n.sqrt(), "class {i}: KS statistic {d}");
        }
        // Shares under 0 or of 0 send nothing.
        let silent = mix_plan(
            200.0,
            Mix {
                shares: vec![0.0, 1.0],
                spikes: vec![],
                until: None,
            },
            0,
            vec![1],
        );
        assert!(
            arrivals(&silent, Duration::from_secs(10), 1, 3)
                .iter()
                .all(|a| a.1 == 1)
        );
    }

    /// A spike multiplies the chosen classes' rates inside its window only; others keep theirs.
    #[test]
    fn spikes_multiply_chosen_classes_for_a_while() {
        let mix = Mix {
            shares: vec![0.5, 0.5],
            spikes: vec![Spike {
                start: Duration::from_secs(100),
                duration: Duration::from_secs(100),
                factor: 4.0,
                requests: vec![0],
            }],
            until: None,
        };
        let plan = mix_plan(20.0, mix, 0, vec![1]);
        let all = arrivals(&plan, Duration::from_secs(300), 1, 5);
        let count = |class: usize, from: f64, to: f64| {
            all.iter()
                .filter(|a| a.1 == class && a.0 >= from && a.0 < to)
                .count() as f64
        };
        // Class 0: 10/s outside, 40/s inside; class 1: 10/s throughout.
        for (class, from, to, rate) in [
            (0, 0.0, 100.0, 10.0),
            (0, 100.0, 200.0, 40.0),
            (0, 200.0, 300.0, 10.0),
            (1, 0.0, 100.0, 10.0),
            (1, 100.0, 200.0, 10.0),
        ] {
            let (n, want) = (count(class, from, to), rate * (to - from));
            assert!(
                (n - want).abs() < 4.0 * want.sqrt(),
                "class {class} in [{from}, {to}): {n}, expected {want}"
            );
        }
        assert_eq!(
            plan.mix.as_ref().unwrap().next_change(Duration::ZERO),
            Some(Duration::from_secs(100))
        );
        assert_eq!(
            plan.mix
                .as_ref()
                .unwrap()
                .next_change(Duration::from_secs(100)),
            Some(Duration::from_secs(200))
        );
        assert_eq!(
            plan.mix
                .as_ref()
                .unwrap()
                .next_change(Duration::from_secs(200)),
            None
        );
    }

    /// LoadGen's end rule: a class stops after an arrival at or after the minimum duration once
    /// it has its minimum count, so a slow class runs longer; the schedule ends when all have.
    #[test]
    fn classes_end_by_duration_and_count_like_loadgen() {
        let until = Until {
            min_duration: Duration::from_secs(10),
            min_count: 100,
            max_duration: Duration::from_secs(1000),
        };
        let mix = Mix {
            // 50/s and 2/s of 52/s: the slow class needs ~50 s for 100 arrivals.
            shares: vec![50.0 / 52.0, 2.0 / 52.0],
            spikes: vec![],
            until: Some(until),
        };
        // Two workers with equal weights: each sends half of the rates and 50 of the count.
        let plans: Vec<LoadPlan> = (0..2)
            .map(|slot| mix_plan(52.0, mix.clone(), slot, vec![1, 1]))
            .collect();
        let mut fast = 0;
        let mut slow = 0;
        for (w, plan) in plans.iter().enumerate() {
            let all = arrivals(plan, until.max_duration, 1, 40 + w as u64);
            let of = |c: usize| {
                all.iter()
                    .filter(|a| a.1 == c)
                    .map(|a| a.0)
                    .collect::<Vec<_>>()
            };
            let (f, s) = (of(0), of(1));
            // The fast class: the first arrival at or after 10 s is its last.
            assert!(f.len() >= 50);
            assert!(*f.last().unwrap() >= 10.0);
            assert!(
                f[f.len() - 2] < 10.0,
                "one arrival past the minimum duration, no more"
            );
            // The slow class: exactly its part of the count, well after 10 s.
            assert_eq!(s.len(), 50);
            assert!(*s.last().unwrap() > 15.0);
            fast += f.len();
            slow += s.len();
        }
        assert!(fast >= 100);
        assert_eq!(slow, 100);
        // The hard end wins over the count.
        let capped = Until {
            max_duration: Duration::from_secs(12),
            ..until
        };
        let plan = mix_plan(
            52.0,
            Mix {
                until: Some(capped),
                ..mix
            },
            0,
            vec![1],
        );
        let all = arrivals(&plan, capped.max_duration, 1, 9);
        assert!(all.iter().all(|a| a.0 < 12.0));
        assert!(all.iter().filter(|a| a.1 == 1).count() < 100);
    }

    #[test]
    fn parts_of_a_count() {
        assert_eq!(
            (0..3).map(|i| part(10, 3, i)).collect::<Vec<_>>(),
            vec![4, 3, 3]
        );
        assert_eq!(part(5, 0, 0), 5);
        let mut rng = SmallRng::seed_from_u64(1);
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            counts[pick(&[1.0, 0.0, 3.0], 4.0, &mut rng)] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!(
            (counts[2] as f64 / 30_000.0 - 0.75).abs() < 0.02,
            "{counts:?}"
        );
    }

    #[test]
    fn simultaneous_users_start_at_once_and_split_exactly() {
        let model = LoadModel::Simultaneous {
            users: 100,
            mode: UserMode::Once,
        };
        assert!(!model.is_open() && model.starts_together());
        assert_eq!(model.requests_per_user(), Some(1));
        assert_eq!(model.total_at(Duration::ZERO), 100.0);
        let parts: Vec<u64> = (0..3)
            .map(|slot| {
                LoadPlan {
                    model: model.clone(),
                    slot,
                    weights: vec![1, 1, 1],
                    scale: 1.0,
                    mix: None,
                }
                .users_at(Duration::ZERO)
            })
            .collect();
        assert_eq!(parts, vec![34, 33, 33]);
        let looping = LoadModel::Simultaneous {
            users: 2,
            mode: UserMode::Repeat,
        };
        assert_eq!(looping.requests_per_user(), None);
    }

    fn gamma_plan(rate: f64, burstiness: f64, slot: usize, weights: Vec<u32>) -> LoadPlan {
        LoadPlan {
            model: LoadModel::Open {
                rate,
                arrival: Arrival::Gamma,
                burstiness,
                max_in_flight: 1000,
            },
            slot,
            weights,
            scale: 1.0,
            mix: None,
        }
    }

    /// Every arrival time (seconds) of one worker's `lanes` lanes before `end`, sorted.
    fn gamma_times(plan: &LoadPlan, end: Duration, lanes: usize, run_seed: u64) -> Vec<f64> {
        let mut out = Vec::new();
        for lane in 0..lanes {
            // Each lane has its own private source; gamma arrivals must not depend on it.
            let mut rng = SmallRng::seed_from_u64(1000 + lane as u64);
            let mut sched = Schedule::new(Duration::ZERO, lane, lanes).with_run_seed(run_seed);
            loop {
                match sched.next(plan, end, &mut rng) {
                    Next::Arrival { at, request } => {
                        assert_eq!(request, None);
                        out.push(at.as_secs_f64());
                    }
                    Next::Idle { at } => sched.resume_at(at),
                    Next::End => break,
                }
            }
        }
        out.sort_by(|a, b| a.total_cmp(b));
        out
    }

    /// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; ~1e-15 relative).
    fn ln_gamma(x: f64) -> f64 {
        const C: [f64; 9] = [
            0.999_999_999_999_809_9,
            676.520_368_121_885_1,
            -1_259.139_216_722_402_8,
            771.323_428_777_653_1,
            -176.615_029_162_140_6,
            12.507_343_278_686_905,
            -0.138_571_095_265_720_12,
            9.984_369_578_019_572e-6,
            1.505_632_735_149_311_6e-7,
        ];
        if x < 0.5 {
            let pi = std::f64::consts::PI;
            return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
        }
        let x = x - 1.0;
        let mut a = C[0];
        let t = x + 7.5;
        for (i, &c) in C.iter().enumerate().skip(1) {
            a += c / (x + i as f64);
        }
        0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
    }

    /// The regularized lower incomplete gamma function P(a, x): the gamma law's CDF (series
    /// below a + 1, Lentz's continued fraction above).
    fn gamma_p(a: f64, x: f64) -> f64 {
        if x <= 0.0 {
            return 0.0;
        }
        let front = (a * x.ln() - x - ln_gamma(a)).exp();
        if x < a + 1.0 {
            let (mut term, mut sum, mut n) = (1.0 / a, 1.0 / a, a);
            for _ in 0..10_000 {
                n += 1.0;
                term *= x / n;
                sum += term;
                if term.abs() < sum.abs() * 1e-15 {
                    break;
                }
            }
            sum * front
        } else {
            let tiny = 1e-300;
            let mut b = x + 1.0 - a;
            let mut c = 1.0 / tiny;
            let mut d = 1.0 / b;
            let mut h = d;
            for i in 1..10_000 {
                let an = -(i as f64) * (i as f64 - a);
                b += 2.0;
                d = an * d + b;
                if d.abs() < tiny {
                    d = tiny;
                }
                c = b + an / c;
                if c.abs() < tiny {
                    c = tiny;
                }
                d = 1.0 / d;
                let delta = d * c;
                h *= delta;
                if (delta - 1.0).abs() < 1e-15 {
                    break;
                }
            }
            1.0 - front * h
        }
    }

    #[test]
    fn gamma_cdf_matches_known_values() {
        // Shape 1 is the exponential law; shape 2 is 1 − e^−x (1 + x).
        for x in [0.1, 1.0, 3.0] {
            assert!((gamma_p(1.0, x) - (1.0 - (-x).exp())).abs() < 1e-12);
            assert!((gamma_p(2.0, x) - (1.0 - (-x).exp() * (1.0 + x))).abs() < 1e-12);
        }
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
    }

    /// Gamma gaps have mean 1/rate, coefficient of variation 1/√burstiness, and pass a KS test
    /// against the gamma law (α = 0.01), for bursty, Poisson and regular shapes.
    #[test]
    fn gamma_gaps_follow_the_gamma_law() {
        let rate = 50.0;
        for (shape, seed) in [(0.25, 21), (1.0, 22), (4.0, 23)] {
            let plan = gamma_plan(rate, shape, 0, vec![1]);
            let times = gamma_times(&plan, Duration::from_secs(400), 1, seed);
            let mut gaps: Vec<f64> = std::iter::once(times[0])
                .chain(times.windows(2).map(|w| w[1] - w[0]))
                .collect();
            let n = gaps.len() as f64;
            let mean = gaps.iter().sum::<f64>() / n;
            let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (n - 1.0);
            let cv = var.sqrt() / mean;
            assert!(
                (mean * rate - 1.0).abs() < 0.05,
                "shape {shape}: mean gap {mean}"
            );
            let want = 1.0 / shape.sqrt();
            assert!(
                (cv - want).abs() < 0.08 * want,
                "shape {shape}: CV {cv}, expected {want}"
            );
            gaps.sort_by(|a, b| a.total_cmp(b));
            let d = gaps
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    let cdf = gamma_p(shape, x * shape * rate);
                    (cdf - i as f64 / n).max((i + 1) as f64 / n - cdf)
                })
                .fold(0.0, f64::max);
            assert!(d < 1.63 / n.sqrt(), "shape {shape}: KS statistic {d}");
        }
        // Bursty arrivals are not Poisson: the exponential law is rejected for shape 0.25.
        let plan = gamma_plan(rate, 0.25, 0, vec![1]);
        let times = gamma_times(&plan, Duration::from_secs(400), 1, 21);
        let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let n = gaps.len() as f64;
        assert!(ks_exponential(gaps, rate) > 1.63 / n.sqrt());
    }

    /// Workers of unequal weights, with different numbers of lanes, each take their part of
    /// one shared sequence: together they reproduce it exactly, each worker gets exactly its
    /// weight's share, and the same seed gives the same sequence (another gives another).
    #[test]
    fn split_gamma_reproduces_the_one_sequence() {
        let end = Duration::from_secs(60);
        let whole = gamma_times(&gamma_plan(40.0, 0.5, 0, vec![1]), end, 1, 77);
        assert!(whole.len() > 2000);
        let weights = vec![2, 1, 1];
        let mut merged = Vec::new();
        let mut parts = Vec::new();
        for (slot, lanes) in [(0, 1), (1, 2), (2, 3)] {
            let part = gamma_times(
                &gamma_plan(40.0, 0.5, slot, weights.clone()),
                end,
                lanes,
                77,
            );
            parts.push(part.len());
            merged.extend(part);
        }
        merged.sort_by(|a, b| a.total_cmp(b));
        assert_eq!(merged, whole);
        let n = whole.len();
        assert_eq!(parts.iter().sum::<usize>(), n);
        assert!(parts[0].abs_diff(n / 2) <= 2, "{parts:?} of {n}");
        assert!(parts[1].abs_diff(n / 4) <= 2, "{parts:?} of {n}");
        let again = gamma_times(&gamma_plan(40.0, 0.5, 0, vec![1]), end, 1, 77);
        assert_eq!(again, whole);
        let other = gamma_times(&gamma_plan(40.0, 0.5, 0, vec![1]), end, 1, 78);
        assert_ne!(other, whole);
        assert_eq!(
            (0..8).map(|i| owner_of(i, &weights)).collect::<Vec<_>>(),
            vec![0, 0, 1, 2, 0, 0, 1, 2]
        );
        assert_eq!(owner_of(3, &[0, 0]), 1);
    }

    /// A lane that starts mid-run (a worker joining late) takes only arrivals from there on,
    /// and they are the sequence's own.
    #[test]
    fn gamma_lane_joining_late_keeps_the_sequence() {
        let plan = gamma_plan(20.0, 2.0, 0, vec![1]);
        let end = Duration::from_secs(20);
        let whole = gamma_times(&plan, end, 1, 5);
        let mut rng = SmallRng::seed_from_u64(0);
        let mut sched = Schedule::new(Duration::from_secs(10), 0, 1).with_run_seed(5);
        let mut late = Vec::new();
        while let Next::Arrival { at, .. } = sched.next(&plan, end, &mut rng) {
            late.push(at.as_secs_f64());
        }
        let tail: Vec<f64> = whole.into_iter().filter(|&t| t >= 10.0).collect();
        assert_eq!(late, tail);
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
            burstiness: 1.0,
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
            mix: None,
        };
        assert_eq!(plan.rate_at(Duration::from_secs(15)), 150.0);
    }
}
