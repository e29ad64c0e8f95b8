//! The parts every scenario has, whatever its kind: the target, the load, the run's length,
//! the `[http]` and `[tls]` settings, thresholds, sweeps and the tables other tools read
//! (`[placement]`, `[worker_type]`), with their checks, the command-line overrides of them,
//! and errors that name file, line and field.
//!
//! The scenario as a whole ([`crate::scenario`]) is these parts plus the tables of its kind,
//! which each driver owns ([`crate::driver`]). Nothing here knows a driver or a kind.
//!
//! # Layout
//! - [`mod@file`]: the common tables as written (serde, `deny_unknown_fields`).
//! - [`sweep`]: `[sweep]` and the validated [`Sweep`].
//! - [`overrides`]: what the command line may override ([`Overrides`]).
//! - [`validate`]: the checks of the common parts, turning them into validated values.
//! - [`locate`]: the line and field of an error in the scenario's text.

use std::fmt;
use std::time::Duration;

use crate::load::LoadModel;
use crate::tls::TlsFile;

pub mod file;
pub mod locate;
pub mod overrides;
pub mod sweep;
pub mod validate;

pub use file::{HttpFile, HttpVersion, LoadFile, PlacementFile, StageFile, WorkerTypeFile};
pub use overrides::{Overrides, TlsOverrides};
pub use sweep::{Sweep, SweepFile};

/// A scenario that could not be read or is not valid. Displays as
/// `file:line: field: message` (line and field when known).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ScenarioError {
    /// The file (or `<inline>` for text with no file).
    pub file: String,
    /// 1-based line of the offending value, when it could be located.
    pub line: Option<usize>,
    /// Dotted path of the offending field (`load.users`, `requests[2].method`).
    pub field: Option<String>,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Built-in targets a scenario may name as `builtin:<kind>`.
pub const BUILTIN_TARGETS: &[&str] = &["http", "llm", "registry", "scheduler"];

/// Where requests go.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A built-in target that Stampede starts itself (`builtin:http`).
    Builtin(String),
    /// A base URL.
    Url(http::Uri),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Builtin(kind) => write!(f, "builtin:{kind}"),
            Target::Url(uri) => write!(f, "{uri}"),
        }
    }
}

/// Users of a simultaneous start when the scenario gives none (the ACME performance track's 100
/// clients).
pub const DEFAULT_SIMULTANEOUS_USERS: u64 = 100;

/// The default run duration when a scenario gives none.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(30);

/// What a kind's checks and driver read of a scenario besides the kind's own table: the parts
/// every kind shares, validated ([`crate::scenario::ScenarioConfig::common`]).
#[derive(Debug, Clone, Copy)]
pub struct Common<'a> {
    /// Where requests go.
    pub target: &'a Target,
    /// How long the run lasts.
    pub duration: Duration,
    /// The load model.
    pub load: &'a LoadModel,
    /// `[http]`, if the file has it.
    pub http: Option<&'a HttpFile>,
    /// `[tls]`, if the file (or the command line) has it.
    pub tls: Option<&'a TlsFile>,
}
