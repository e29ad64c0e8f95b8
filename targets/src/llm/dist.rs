//! Latency distributions written as short strings (`200ms`, `normal:200ms,20ms`,
//! `uniform:150ms,250ms`, `exp:200ms`), parsed once at startup and sampled per token.
//!
//! Used by the LLM target for time to first token and time per output token. It knows nothing of
//! batching or tokens; it only turns a random source into non-negative durations.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution, Exp, Normal};

/// A distribution of durations. Samples are clamped at zero, so `normal:5ms,10ms` never yields a
/// negative wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dist {
    /// Always this value: deterministic timing.
    Const(Duration),
    /// Gaussian with this mean and standard deviation, clamped at zero.
    Normal {
        /// Mean of the distribution.
        mean: Duration,
        /// Standard deviation.
        std_dev: Duration,
    },
    /// Uniform between `low` and `high` (inclusive bounds, `low <= high`).
    Uniform {
        /// Smallest value.
        low: Duration,
        /// Largest value.
        high: Duration,
    },
    /// Exponential with this mean (memoryless, long tail).
    Exp {
        /// Mean of the distribution.
        mean: Duration,
    },
}

/// A distribution string that could not be read; the message names the bad input and the syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseDistError(String);

impl Dist {
    /// Draw one duration. `Const` does not touch the random source, so a constant configuration is
    /// deterministic whatever the random seed.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        match *self {
            Dist::Const(value) => value,
            Dist::Normal { mean, std_dev } => {
                if std_dev.is_zero() {
                    return mean;
                }
                // Both parameters are finite and the deviation positive (checked at parse time),
                // so construction cannot fail; fall back to the mean rather than panic anyway.
                Normal::new(mean.as_secs_f64(), std_dev.as_secs_f64())
                    .map_or(mean, |normal| secs(normal.sample(rng)))
            }
            Dist::Uniform { low, high } => {
                if low == high {
                    return low;
                }
                let nanos = rng.random_range(nanos(low)..=nanos(high));
                Duration::from_nanos(nanos)
            }
            Dist::Exp { mean } => {
                if mean.is_zero() {
                    return Duration::ZERO;
                }
                Exp::new(1.0 / mean.as_secs_f64()).map_or(mean, |exp| secs(exp.sample(rng)))
            }
        }
    }

    /// The mean of the distribution before clamping (for help text and reports).
    pub fn mean(&self) -> Duration {
        match *self {
            Dist::Const(value) => value,
            Dist::Normal { mean, .. } | Dist::Exp { mean } => mean,
            Dist::Uniform { low, high } => (low + high) / 2,
        }
    }
}

impl FromStr for Dist {
    type Err = ParseDistError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        let (kind, args) = match text.split_once(':') {
            Some((kind, args)) => (kind.trim(), Some(args)),
            None => ("const", Some(text)),
        };
        let args: Vec<&str> = args
            .map(|a| a.split(',').map(str::trim).collect())
            .unwrap_or_default();
        let want = |n: usize| -> Result<Vec<Duration>, ParseDistError> {
            if args.len() != n {
                return Err(ParseDistError(format!(
                    "`{input}`: `{kind}` takes {n} duration{} ({SYNTAX})",
                    if n == 1 { "" } else { "s" }
                )));
            }
            args.iter()
                .map(|arg| {
                    parse_duration(arg).map_err(|why| {
                        // A lone duration is the whole input: name it once.
                        ParseDistError(if *arg == input.trim() {
                            why
                        } else {
                            format!("`{input}`: {why}")
                        })
                    })
                })
                .collect()
        };
        match kind {
            "const" | "fixed" => Ok(Dist::Const(want(1)?[0])),
            "normal" | "gauss" => {
                let v = want(2)?;
                Ok(Dist::Normal {
                    mean: v[0],
                    std_dev: v[1],
                })
            }
            "uniform" => {
                let v = want(2)?;
                if v[0] > v[1] {
                    return Err(ParseDistError(format!(
                        "`{input}`: uniform needs low <= high"
                    )));
                }
                Ok(Dist::Uniform {
                    low: v[0],
                    high: v[1],
                })
            }
            "exp" | "exponential" => Ok(Dist::Exp { mean: want(1)?[0] }),
            other => Err(ParseDistError(format!(
                "`{input}`: unknown distribution `{other}` ({SYNTAX})"
            ))),
        }
    }
}

impl fmt::Display for Dist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dist::Const(value) => write!(f, "{value:?}"),
            Dist::Normal { mean, std_dev } => write!(f, "normal:{mean:?},{std_dev:?}"),
            Dist::Uniform { low, high } => write!(f, "uniform:{low:?},{high:?}"),
            Dist::Exp { mean } => write!(f, "exp:{mean:?}"),
        }
    }
}

/// The accepted syntax, quoted in every parse error.
const SYNTAX: &str = "write e.g. 200ms, normal:200ms,20ms, uniform:150ms,250ms or exp:200ms";

/// Parse one duration with a mandatory unit (`ns`, `us`, `µs`, `ms`, `s`); a bare `0` is allowed.
/// Units are mandatory because a bare `200` is ambiguous between milliseconds and seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{text}` needs a unit (ns, us, ms, s)"))?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(format!("`{text}` is not a duration ({SYNTAX})"));
    }
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}`: `{number}` is not a number"))?;
    let scale = match unit.trim() {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use ns, us, ms, s)"
            ));
        }
    };
    Duration::try_from_secs_f64(value * scale).map_err(|err| format!("`{text}`: {err}"))
}

fn nanos(value: Duration) -> u64 {
    u64::try_from(value.as_nanos()).unwrap_or(u64::MAX)
}

/// Seconds to a duration, clamping negatives (and NaN) at zero.
fn secs(value: f64) -> Duration {
    if value.is_finite() && value > 0.0 {
        Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX)
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_every_form() {
        assert_eq!("200ms".parse(), Ok(Dist::Const(ms(200))));
        assert_eq!("const:1s".parse(), Ok(Dist::Const(ms(1000))));
        assert_eq!("0".parse(), Ok(Dist::Const(Duration::ZERO)));
        assert_eq!(
            "1.5ms".parse(),
            Ok(Dist::Const(Duration::from_micros(1500)))
        );
        assert_eq!(
            "normal:200ms, 20ms".parse(),
            Ok(Dist::Normal {
                mean: ms(200),
                std_dev: ms(20)
            })
        );
        assert_eq!(
            "uniform:150ms,250ms".parse(),
            Ok(Dist::Uniform {
                low: ms(150),
                high: ms(250)
            })
        );
        assert_eq!("exp:200ms".parse(), Ok(Dist::Exp { mean: ms(200) }));
        assert_eq!("500us".parse(), Ok(Dist::Const(Duration::from_micros(500))));
    }

    #[test]
    fn errors_name_the_bad_input() {
        for bad in [
            "200",
            "fast",
            "normal:200ms",
            "uniform:3ms,1ms",
            "poisson:1ms",
            "20 parsecs",
            "-5ms",
            "",
        ] {
            let err = bad.parse::<Dist>().expect_err(bad).to_string();
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }

    #[test]
    fn samples_stay_in_range_and_are_seedable() {
        let mut a = SmallRng::seed_from_u64(7);
        let mut b = SmallRng::seed_from_u64(7);
        let uniform: Dist = "uniform:10ms,20ms".parse().expect("valid");
        let normal: Dist = "normal:1ms,10ms".parse().expect("valid");
        let exp: Dist = "exp:5ms".parse().expect("valid");
        for _ in 0..1000 {
            let u = uniform.sample(&mut a);
            assert!((ms(10)..=ms(20)).contains(&u));
            assert_eq!(u, uniform.sample(&mut b));
            // Clamped at zero, never negative (Duration cannot be) and never a panic.
            let _ = normal.sample(&mut a);
            let _ = normal.sample(&mut b);
            assert_eq!(exp.sample(&mut a), exp.sample(&mut b));
        }
        assert_eq!(Dist::Const(ms(3)).sample(&mut a), ms(3));
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "200ms",
            "normal:200ms,20ms",
            "uniform:150ms,250ms",
            "exp:1s",
        ] {
            let dist: Dist = text.parse().expect("valid");
            assert_eq!(dist.to_string().parse::<Dist>(), Ok(dist));
        }
    }
}
