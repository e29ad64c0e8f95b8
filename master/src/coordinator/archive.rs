//! Finished runs kept for the API: this master's own (with their exact histograms) and
//! those read back from the runs directory at start-up.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tracing::warn;

use crate::results;
use crate::summary::RunSummary;

/// Finished runs, readable by the API: those of this master's lifetime (with their exact
/// histograms) and those read back from the runs directory at start-up (their `summary.json`).
#[derive(Default)]
pub struct Archive {
    runs: Mutex<BTreeMap<u64, Archived>>,
}

/// One finished run.
#[derive(Clone)]
struct Archived {
    /// In memory for runs of this master's lifetime; `None` for runs read from disk.
    summary: Option<Arc<RunSummary>>,
    /// The `summary.json` document.
    document: Arc<serde_json::Value>,
}

impl Archive {
    /// An archive holding the runs kept under `runs_dir` (`<run_id>/summary.json` each);
    /// unreadable entries are skipped with a warning.
    pub fn load(runs_dir: &std::path::Path) -> Archive {
        let archive = Archive::default();
        let Ok(entries) = std::fs::read_dir(runs_dir) else {
            return archive;
        };
        for entry in entries.flatten() {
            let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let path = entry.path().join("summary.json");
            let doc = std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| {
                    serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string())
                });
            match doc {
                Ok(doc) if doc["run_id"].as_u64() == Some(id) => {
                    archive.lock().insert(
                        id,
                        Archived {
                            summary: None,
                            document: Arc::new(doc),
                        },
                    );
                }
                Ok(_) => warn!("{}: not the summary of run {id}; skipped", path.display()),
                Err(e) => warn!("{}: {e}; skipped", path.display()),
            }
        }
        archive
    }

    /// A finished run's summary, if it finished during this master's lifetime.
    pub fn get(&self, id: u64) -> Option<Arc<RunSummary>> {
        self.lock().get(&id).and_then(|r| r.summary.clone())
    }

    /// A finished run's `summary.json` document (also for runs read back from disk).
    pub fn document(&self, id: u64) -> Option<Arc<serde_json::Value>> {
        self.lock().get(&id).map(|r| r.document.clone())
    }

    /// Ids of finished runs, oldest first.
    pub fn ids(&self) -> Vec<u64> {
        self.lock().keys().copied().collect()
    }

    pub(super) fn insert(&self, s: Arc<RunSummary>) {
        let document = Arc::new(results::summary_json(&s));
        self.lock().insert(
            s.run_id,
            Archived {
                summary: Some(s),
                document,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Archived>> {
        // A poisoned map only means a reader panicked; the map itself is intact.
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }
}
