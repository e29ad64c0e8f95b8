//! Whether an assignment fits this worker's memory, checked before it says Ready: a run that
//! cannot fit is refused before it starts, with the numbers, instead of making the worker
//! allocate until the kernel kills it (`users = 1e9`).
//!
//! The estimate is per concurrent user (closed and simultaneous models) or request in flight
//! (open models): [`PER_USER_BYTES`], measured, against the host's available memory.

use stampede_scenarios::{LoadModel, LoadPlan, load::StageTarget};

/// Memory one concurrent user (or request in flight) takes on a worker, bytes: 10,000 closed
/// users over HTTPS on one worker held 120 MiB (BENCHMARKS.md, the TLS section), about 12 KiB
/// each; rounded up for drivers that hold more (streamed LLM answers, gRPC channels).
pub const PER_USER_BYTES: u64 = 16 * 1024;

/// The most users (or requests in flight) the plan gives this worker at once.
pub fn peak_concurrency(plan: &LoadPlan) -> u64 {
    let here = |whole: f64| (whole * plan.scale * plan.fraction()).ceil().max(0.0) as u64;
    match &plan.model {
        LoadModel::Closed { users, .. } | LoadModel::Simultaneous { users, .. } => {
            here(*users as f64)
        }
        LoadModel::Stages {
            target: StageTarget::Users,
            ..
        } => here(plan.model.peak()),
        LoadModel::Open { max_in_flight, .. } | LoadModel::Stages { max_in_flight, .. } => {
            *max_in_flight
        }
    }
}

/// `Err(why)` when the plan's peak needs more memory than `available` bytes.
pub fn check(plan: &LoadPlan, available: Option<u64>) -> Result<(), String> {
    let Some(available) = available else {
        return Ok(());
    };
    let peak = peak_concurrency(plan);
    let need = peak.saturating_mul(PER_USER_BYTES);
    if need <= available / 10 * 9 {
        return Ok(());
    }
    let what = match plan.model {
        LoadModel::Open { .. }
        | LoadModel::Stages {
            target: StageTarget::Rate,
            ..
        } => "requests in flight (load.max_in_flight)",
        _ => "users",
    };
    Err(format!(
        "the load does not fit this worker's memory: {peak} {what} here need about {} \
         (~{} KiB each), and this worker has {} available; lower the users or add workers",
        gib(need),
        PER_USER_BYTES / 1024,
        gib(available)
    ))
}

/// The memory the kernel says is available for new work (`MemAvailable`), bytes; `None` where
/// it cannot be read.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(model: LoadModel, weights: Vec<u32>) -> LoadPlan {
        LoadPlan {
            model,
            slot: 0,
            weights,
            scale: 1.0,
            mix: None,
        }
    }

    fn closed(users: u64) -> LoadModel {
        LoadModel::Closed {
            users,
            spawn_rate: f64::INFINITY,
        }
    }

    #[test]
    fn a_billion_users_do_not_fit_and_the_message_has_the_numbers() {
        let p = plan(closed(1_000_000_000), vec![1, 1]);
        assert_eq!(peak_concurrency(&p), 500_000_000);
        let err = check(&p, Some(24 << 30)).unwrap_err();
        assert!(
            err.contains("500000000 users here need about 7629.4 GiB (~16 KiB each)"),
            "{err}"
        );
        assert!(err.contains("this worker has 24.0 GiB available"), "{err}");
    }

    #[test]
    fn ordinary_loads_fit() {
        for users in [1, 50, 10_000, 1_000_000] {
            assert_eq!(check(&plan(closed(users), vec![1]), Some(24 << 30)), Ok(()));
        }
        // Nothing to compare with: no refusal.
        assert_eq!(check(&plan(closed(u64::MAX), vec![1]), None), Ok(()));
    }

    #[test]
    fn the_share_and_the_scale_count() {
        let mut p = plan(closed(1_000), vec![1, 3]);
        assert_eq!(peak_concurrency(&p), 250);
        p.scale = 2.0;
        assert_eq!(peak_concurrency(&p), 500);
    }

    #[test]
    fn available_memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(available_memory().is_some_and(|b| b > 0));
        }
    }
}
