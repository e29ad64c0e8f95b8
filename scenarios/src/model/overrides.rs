//! What the command line may override in a scenario ([`Overrides`]: `--duration`, `--users`,
//! `--rate`, `--target`, the TLS flags, ...), and how the overrides of the common parts are
//! applied to the file form; the scenario applies them and validates again
//! ([`crate::scenario`]), so a flag can never produce a config a file could not.

use std::path::PathBuf;
use std::time::Duration;

use super::file::{HttpVersion, LoadFile};
use super::sweep::{Sweep, SweepFile};
use crate::load::Arrival;
use crate::tls::TlsFile;
use crate::units::{Count, Rate};

/// What the command line may override in a scenario (`--duration`, `--users`, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--duration`.
    pub duration: Option<Duration>,
    /// `--users`: switches to the closed model with this many users.
    pub users: Option<u64>,
    /// `--spawn-rate`.
    pub spawn_rate: Option<f64>,
    /// `--rate`: switches to the open model at this rate.
    pub rate: Option<f64>,
    /// `--arrival`.
    pub arrival: Option<Arrival>,
    /// `--burstiness`: gamma arrivals of this shape (open and rate-stages models).
    pub burstiness: Option<f64>,
    /// `--sweep-rates` / `--sweep-users`: replaces the scenario's `[sweep]`.
    pub sweep: Option<SweepFile>,
    /// `--requests-csv`: one row per request (`llm`).
    pub requests_csv: bool,
    /// `--target`.
    pub target: Option<String>,
    /// `--backend` (`llm`).
    pub backend: Option<String>,
    /// `--model` (`llm`).
    pub model: Option<String>,
    /// `--ca`, `--insecure`, `--client-cert`, `--client-key`, `--server-name`.
    pub tls: TlsOverrides,
    /// `--http-version`.
    pub http_version: Option<HttpVersion>,
}

/// The `[tls]` settings the command line gives; each replaces the file's. Paths are as given
/// (relative to the working directory).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsOverrides {
    /// `--ca FILE`.
    pub ca: Option<PathBuf>,
    /// `--insecure`.
    pub insecure: bool,
    /// `--client-cert FILE`.
    pub client_cert: Option<PathBuf>,
    /// `--client-key FILE`.
    pub client_key: Option<PathBuf>,
    /// `--server-name NAME`.
    pub server_name: Option<String>,
}

impl TlsOverrides {
    /// Whether no TLS flag was given.
    pub fn is_empty(&self) -> bool {
        *self == TlsOverrides::default()
    }
}

impl Overrides {
    /// Apply the TLS flags to `[tls]` (each replaces the file's; any flag makes the table).
    pub(crate) fn apply_to_tls(&self, tls: &mut Option<TlsFile>) {
        if !self.tls.is_empty() {
            let file = tls.get_or_insert_with(Default::default);
            let t = &self.tls;
            if let Some(ca) = &t.ca {
                file.ca = Some(ca.clone());
            }
            if t.insecure {
                file.insecure = true;
            }
            if let Some(c) = &t.client_cert {
                file.client_cert = Some(c.clone());
            }
            if let Some(k) = &t.client_key {
                file.client_key = Some(k.clone());
            }
            if let Some(n) = &t.server_name {
                file.server_name = Some(n.clone());
            }
        }
    }

    /// Apply `--rate`, `--users`, `--spawn-rate`, `--arrival` and `--burstiness` to `[load]`:
    /// `--rate` switches to the open model, `--users` to the closed one (a simultaneous start
    /// stays one).
    pub(crate) fn apply_to_load(&self, load: &mut LoadFile) {
        if let Some(rate) = self.rate {
            let (arrival, burstiness, max_in_flight) = match &*load {
                LoadFile::Open {
                    arrival,
                    burstiness,
                    max_in_flight,
                    ..
                }
                | LoadFile::Stages {
                    arrival,
                    burstiness,
                    max_in_flight,
                    ..
                } => (*arrival, *burstiness, *max_in_flight),
                LoadFile::Closed { .. } | LoadFile::Simultaneous { .. } => {
                    (Arrival::default(), None, None)
                }
            };
            *load = LoadFile::Open {
                rate: Rate(rate),
                arrival,
                burstiness,
                max_in_flight,
            };
        }
        if let Some(users) = self.users {
            *load = match &*load {
                // A simultaneous start stays one: only its number of users changes.
                LoadFile::Simultaneous { mode, .. } if self.rate.is_none() => {
                    LoadFile::Simultaneous {
                        users: Some(Count(users)),
                        mode: *mode,
                    }
                }
                LoadFile::Closed { spawn_rate, .. } => LoadFile::Closed {
                    users: Count(users),
                    spawn_rate: *spawn_rate,
                },
                _ => LoadFile::Closed {
                    users: Count(users),
                    spawn_rate: None,
                },
            };
        }
        if let Some(sr) = self.spawn_rate
            && let LoadFile::Closed { spawn_rate, .. } = &mut *load
        {
            *spawn_rate = Some(Rate(sr));
        }
        if let Some(a) = self.arrival
            && let Some((arrival, burstiness)) = load.arrival_mut()
        {
            *arrival = a;
            // `--arrival poisson|constant` replaces the file's gamma arrivals.
            if a != Arrival::Gamma {
                *burstiness = None;
            }
        }
        if let Some(b) = self.burstiness
            && let Some((arrival, burstiness)) = load.arrival_mut()
        {
            *arrival = Arrival::Gamma;
            *burstiness = Some(b);
        }
    }
}

impl Sweep {
    /// The overrides that make step `value` of this sweep out of its scenario.
    pub fn overrides(&self, value: f64) -> Overrides {
        match self {
            Sweep::Rates(_) => Overrides {
                rate: Some(value),
                ..Overrides::default()
            },
            Sweep::Users(_) => Overrides {
                users: Some(value.round() as u64),
                ..Overrides::default()
            },
        }
    }
}
