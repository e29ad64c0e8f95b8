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

/// How a finished run ended, as summary.json's `status` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// The run took place: it measured something (even if every request failed).
    Completed,
    /// The run could not take place (no worker got ready, every worker rejected the
    /// scenario or was lost before reporting anything).
    Failed,
}

impl RunStatus {
    /// The word in summary.json.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
