//! Threshold verdicts: each `[thresholds]` bound of the scenario against the run's aggregate
//! figure, with the figure it saw.
//!
//! The coordinator calls [`evaluate`] when a run ends; the table and `summary.json` show the
//! outcomes.

use stampede_scenarios::Threshold;
use stampede_scenarios::report::{max_ms, per_second};
use stampede_scenarios::threshold::Figure;

use crate::summary::{NameStats, ThresholdOutcome};

/// Evaluate `thresholds` against the run's aggregate figures (`total`, over `duration_s`).
pub fn evaluate(
    thresholds: &[Threshold],
    total: &NameStats,
    duration_s: f64,
) -> Vec<ThresholdOutcome> {
    thresholds
        .iter()
        .map(|t| {
            let actual = figure_value(t.figure, total, duration_s);
            ThresholdOutcome {
                threshold: t.to_string(),
                actual,
                passed: t.holds(actual),
            }
        })
        .collect()
}

/// The aggregate figure a threshold bounds.
pub(super) fn figure_value(figure: Figure, total: &NameStats, duration_s: f64) -> f64 {
    match figure {
        Figure::PercentileMs(tenths) => total.latency_ms(f64::from(tenths) / 1000.0),
        Figure::MeanMs => total.mean_ms(),
        Figure::MaxMs => max_ms(&total.latency),
        Figure::ErrorRate => total.error_rate(),
        Figure::Rps => per_second(total.requests, duration_s),
        Figure::Failures => total.failures as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::testdata::*;
    use crate::summary::AGGREGATED;

    #[test]
    fn evaluate_checks_every_figure() {
        // 1..=1000 ms, 10 failures, over 10 s.
        let total = name_stats("", AGGREGATED, 1, 1000, 10);
        let cases = [
            ("p99_ms", "< 1000", true),
            ("p99_ms", "< 900", false),
            ("p50_ms", "<= 500.5", true),
            ("error_rate", "<= 0.01", true),
            ("error_rate", "< 0.01", false),
            ("rps", ">= 100", true),
            ("rps", "> 100", false),
            ("failures", "< 11", true),
            ("failures", "< 10", false),
            ("mean_ms", "< 501", true),
            ("mean_ms", "< 400", false),
            ("max_ms", "<= 1000.5", true),
            ("max_ms", "< 999", false),
        ];
        let thresholds: Vec<Threshold> = cases
            .iter()
            .map(|(k, e, _)| Threshold::parse(k, e).unwrap())
            .collect();
        let outcomes = evaluate(&thresholds, &total, 10.0);
        for ((key, expr, passed), outcome) in cases.iter().zip(&outcomes) {
            assert_eq!(
                outcome.passed, *passed,
                "{key} {expr}: actual {}",
                outcome.actual
            );
        }
        assert_eq!(outcomes[0].threshold, "p99_ms < 1000");
        assert_eq!(outcomes[0].actual, total.latency_ms(0.99));
        assert_eq!(outcomes[3].actual, 0.01);
        assert_eq!(outcomes[5].actual, 100.0);
        assert_eq!(outcomes[7].actual, 10.0);
        assert!(
            (outcomes[9].actual - 500.5).abs() < 0.5,
            "{}",
            outcomes[9].actual
        );
    }
}
