//! The states runs and workers are in, as every reader sees them: typed here, and written
//! as the same lowercase words in the API, summary.json, `/metrics` and the TUI.

use serde::{Deserialize, Serialize};

/// Where a run is in its lifecycle (see [`crate::coordinator`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// The scenario went out; waiting for every member's Ready.
    Assigning,
    /// Load is on: the start time went out and reports are merged.
    Running,
    /// The duration's end came or a stop was asked; waiting for final reports.
    Stopping,
    /// The summary is built and the results are written.
    Finished,
}

impl RunState {
    /// The word readers see (in the API, on `/metrics`, in the TUI).
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Assigning => "assigning",
            RunState::Running => "running",
            RunState::Stopping => "stopping",
            RunState::Finished => "finished",
        }
    }

    /// Whether the run has not finished yet.
    pub fn is_live(self) -> bool {
        self != RunState::Finished
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a worker is, as the master sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Connected, in no run (or done with the current one).
    Ready,
    /// Has the current run's scenario, not started yet.
    Assigned,
    /// Generating its share of the current run.
    Running,
    /// Sent its final report (in a finished run's summary).
    Finished,
    /// Its connection dropped during the run.
    Lost,
    /// Stayed connected but sent no final report in time (in a finished run's summary).
    Unfinished,
}

impl WorkerState {
    /// The word readers see (in the API, in summary.json, in the TUI).
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Ready => "ready",
            WorkerState::Assigned => "assigned",
            WorkerState::Running => "running",
            WorkerState::Finished => "finished",
            WorkerState::Lost => "lost",
            WorkerState::Unfinished => "unfinished",
        }
    }
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a finished run ended, as summary.json's `status`, the API, `/metrics`, the table and
/// the exit code all say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// The run went as planned: to its duration's end (or every user's requests done), with
    /// every worker it started with.
    Completed,
    /// Someone stopped it before its planned end (a signal, the API, the TUI, Locust's
    /// `/stop`): its figures cover the time it ran.
    Stopped,
    /// A worker was lost and its share moved to the others: the load was as planned, but not
    /// from the fleet that started it, and the lost worker's last interval may be missing.
    Degraded,
    /// The run could not take place, or lost every worker: no worker got ready, every worker
    /// rejected the scenario, none was left, or no request was made.
    Failed,
    /// Written during the run, up to its last second: what `--out` holds when the master was
    /// killed outright (kill -9, a crash) before the run ended.
    Incomplete,
}

impl RunStatus {
    /// The word in summary.json.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Completed => "completed",
            RunStatus::Stopped => "stopped",
            RunStatus::Degraded => "degraded",
            RunStatus::Failed => "failed",
            RunStatus::Incomplete => "incomplete",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run ended (summary.json's `stop_reason` says it in words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// The planned duration passed.
    DurationReached,
    /// Every user of a one-shot load sent its requests.
    RequestsDone,
    /// Stopped from the API, the TUI or Locust's `/stop`.
    StoppedByUser,
    /// The master was told to stop (a signal: SIGINT, SIGTERM, SIGHUP).
    Shutdown,
    /// Every worker taking part was lost.
    NoWorkersLeft,
    /// Every worker rejected the scenario; the first reason given.
    Rejected(String),
    /// No worker got ready in time.
    NoneReady,
    /// Not ended: the run was still going on when this summary was written (the per-second
    /// checkpoint of `--out`, which a master killed outright leaves behind).
    InProgress,
}

impl RunEnd {
    /// Whether the run could not take place or lost every worker: its figures are not a run's.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            RunEnd::NoWorkersLeft | RunEnd::Rejected(_) | RunEnd::NoneReady
        )
    }

    /// Whether someone stopped the run before its planned end.
    pub fn is_stop(&self) -> bool {
        matches!(self, RunEnd::StoppedByUser | RunEnd::Shutdown)
    }
}

impl std::fmt::Display for RunEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunEnd::DurationReached => f.write_str("duration reached"),
            RunEnd::RequestsDone => f.write_str("every user's requests done"),
            RunEnd::StoppedByUser => f.write_str("stopped by user"),
            RunEnd::Shutdown => f.write_str("master shutting down"),
            RunEnd::NoWorkersLeft => f.write_str("no workers left"),
            RunEnd::Rejected(reason) => write!(f, "every worker rejected the scenario: {reason}"),
            RunEnd::NoneReady => f.write_str("no worker got ready"),
            RunEnd::InProgress => f.write_str("still going on when written"),
        }
    }
}

impl Serialize for RunEnd {
    /// As its words, which summary.json and the API have always carried.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
