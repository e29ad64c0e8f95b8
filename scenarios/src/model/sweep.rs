//! `[sweep]`: the scenario once per rate or users value, and the validated [`Sweep`] whose
//! steps the CLI runs one after another.

use serde::{Deserialize, Serialize};

use crate::units::{Count, Rate};

/// `[sweep]`: run the scenario once per value, one after another, each step reported on its
/// own (give `rates` or `users`, not both).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    /// Open-model rates, requests per second across all workers (each step `--rate v`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rates: Vec<Rate>,
    /// Closed-model users across all workers (each step `--users v`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<Count>,
}

/// A validated sweep: the values its steps run at, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Sweep {
    /// One open-model step per rate (requests per second).
    Rates(Vec<f64>),
    /// One closed-model step per number of users.
    Users(Vec<u64>),
}

impl Sweep {
    /// What the steps vary: `rate` or `users`.
    pub fn axis(&self) -> &'static str {
        match self {
            Sweep::Rates(_) => "rate",
            Sweep::Users(_) => "users",
        }
    }

    /// The steps' values, in order.
    pub fn values(&self) -> Vec<f64> {
        match self {
            Sweep::Rates(r) => r.clone(),
            Sweep::Users(u) => u.iter().map(|&u| u as f64).collect(),
        }
    }

    /// Check `[sweep]`; `Err((field, message))`.
    pub(crate) fn of(file: &SweepFile) -> Result<Sweep, (String, String)> {
        match (file.rates.is_empty(), file.users.is_empty()) {
            (false, false) => Err(("sweep".into(), "give `rates` or `users`, not both".into())),
            (true, true) => Err((
                "sweep".into(),
                "needs `rates = [...]` or `users = [...]`".into(),
            )),
            (false, true) => {
                for (i, r) in file.rates.iter().enumerate() {
                    if !(r.0 > 0.0 && r.0.is_finite()) {
                        return Err((
                            format!("sweep.rates[{i}]"),
                            "must be above 0 requests per second".into(),
                        ));
                    }
                }
                Ok(Sweep::Rates(file.rates.iter().map(|r| r.0).collect()))
            }
            (true, false) => {
                if let Some(i) = file.users.iter().position(|u| u.0 == 0) {
                    return Err((format!("sweep.users[{i}]"), "must be at least 1".into()));
                }
                Ok(Sweep::Users(file.users.iter().map(|u| u.0).collect()))
            }
        }
    }
}
