//! Pass/fail criteria on a run's final figures, like k6's thresholds: `p99_ms = "< 250"`,
//! `error_rate = "< 0.01"`. A breached threshold makes `stampede run` exit with code 3.
//!
//! Parsing and the comparison only; the master computes the figures and asks [`Threshold::holds`].

use std::fmt;

/// A figure of the finished run that a threshold can bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// A latency percentile in ms (`p50_ms`, `p90_ms`, `p95_ms`, `p99_ms`, `p999_ms`): the value
    /// is the percentile (50.0, 99.9 ...) in tenths to stay `Eq`.
    PercentileMs(u16),
    /// Mean latency, ms.
    MeanMs,
    /// Largest latency, ms.
    MaxMs,
    /// Failed requests / all requests, 0..=1.
    ErrorRate,
    /// Requests per second over the run.
    Rps,
    /// Number of failed requests.
    Failures,
}

impl Figure {
    /// The key as written in `[thresholds]`.
    pub fn key(&self) -> String {
        match self {
            Figure::PercentileMs(p) if p % 10 == 0 => format!("p{}_ms", p / 10),
            Figure::PercentileMs(p) => format!("p{p}_ms"),
            Figure::MeanMs => "mean_ms".into(),
            Figure::MaxMs => "max_ms".into(),
            Figure::ErrorRate => "error_rate".into(),
            Figure::Rps => "rps".into(),
            Figure::Failures => "failures".into(),
        }
    }

    fn parse(key: &str) -> Option<Figure> {
        Some(match key {
            "mean_ms" | "avg_ms" => Figure::MeanMs,
            "max_ms" => Figure::MaxMs,
            "error_rate" => Figure::ErrorRate,
            "rps" | "requests_per_second" => Figure::Rps,
            "failures" => Figure::Failures,
            "p999_ms" => Figure::PercentileMs(999),
            k => {
                let p: u16 = k.strip_prefix('p')?.strip_suffix("_ms")?.parse().ok()?;
                if p == 0 || p >= 100 {
                    return None;
                }
                Figure::PercentileMs(p * 10)
            }
        })
    }

    /// For percentiles, the quantile in 0..1.
    pub fn quantile(&self) -> Option<f64> {
        match self {
            Figure::PercentileMs(p) => Some(f64::from(*p) / 1000.0),
            _ => None,
        }
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// One threshold: `figure op value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// What is bounded.
    pub figure: Figure,
    /// How.
    pub op: Op,
    /// The bound.
    pub value: f64,
}

impl Threshold {
    /// Parse `key = "op value"`.
    pub fn parse(key: &str, expr: &str) -> Result<Threshold, String> {
        let figure = Figure::parse(key).ok_or_else(|| {
            format!("unknown figure `{key}` (use p50_ms .. p99_ms, p999_ms, mean_ms, max_ms, error_rate, rps, failures)")
        })?;
        let e = expr.trim();
        let (op, rest) = if let Some(r) = e.strip_prefix("<=") {
            (Op::Le, r)
        } else if let Some(r) = e.strip_prefix(">=") {
            (Op::Ge, r)
        } else if let Some(r) = e.strip_prefix('<') {
            (Op::Lt, r)
        } else if let Some(r) = e.strip_prefix('>') {
            (Op::Gt, r)
        } else {
            return Err(format!(
                "`{expr}` must start with <, <=, > or >= (e.g. \"< 250\")"
            ));
        };
        let value: f64 = rest
            .trim()
            .parse()
            .map_err(|_| format!("`{}` in `{expr}` is not a number", rest.trim()))?;
        if !value.is_finite() {
            return Err(format!("`{expr}`: the bound must be finite"));
        }
        Ok(Threshold { figure, op, value })
    }

    /// Whether `actual` satisfies the threshold.
    pub fn holds(&self, actual: f64) -> bool {
        match self.op {
            Op::Lt => actual < self.value,
            Op::Le => actual <= self.value,
            Op::Gt => actual > self.value,
            Op::Ge => actual >= self.value,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        };
        write!(f, "{} {op} {}", self.figure.key(), self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let t = Threshold::parse("p99_ms", "< 250").unwrap();
        assert_eq!(t.figure, Figure::PercentileMs(990));
        assert_eq!(t.figure.quantile(), Some(0.99));
        assert!(t.holds(249.9) && !t.holds(250.0));
        let t = Threshold::parse("error_rate", "<=0.01").unwrap();
        assert!(t.holds(0.01) && !t.holds(0.02));
        assert!(Threshold::parse("rps", ">= 100").unwrap().holds(100.0));
        assert_eq!(
            Threshold::parse("p999_ms", "< 5")
                .unwrap()
                .figure
                .quantile(),
            Some(0.999)
        );
        assert_eq!(
            Threshold::parse("p999_ms", "< 5").unwrap().to_string(),
            "p999_ms < 5"
        );
        assert!(Threshold::parse("p100_ms", "< 5").is_err());
        assert!(
            Threshold::parse("latency", "< 5")
                .unwrap_err()
                .contains("unknown figure")
        );
        assert!(
            Threshold::parse("p99_ms", "250")
                .unwrap_err()
                .contains("must start with")
        );
        assert!(
            Threshold::parse("p99_ms", "< fast")
                .unwrap_err()
                .contains("not a number")
        );
    }
}
