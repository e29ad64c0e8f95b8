//! The files of record streams: per-request CSV rows that workers send with their reports
//! (`Report.records`), appended to one file per stream as reports arrive, header first.
//!
//! Owned by the coordinator's run; it never holds a run's rows in memory (a buffered writer
//! per stream, flushed every second) and never parses them: the driver's header names the
//! columns. A stream goes to `<out>/<stream>.csv` unless the master's configuration maps it to
//! another path; with neither, its rows are counted and dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use stampede_scenarios::RecordStream;
use tracing::warn;

/// What became of one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFile {
    /// The stream's name.
    pub stream: String,
    /// Where its rows went (`None`: no `--out` and no mapping, so they were dropped).
    pub path: Option<PathBuf>,
    /// Rows received (lines).
    pub rows: u64,
    /// The first write error, if writing failed (rows after it were dropped).
    pub error: Option<String>,
}

struct Open {
    file: StreamFile,
    writer: Option<BufWriter<File>>,
}

/// The open files of one run's record streams.
pub struct RecordFiles {
    out: Option<PathBuf>,
    paths: BTreeMap<String, PathBuf>,
    streams: BTreeMap<String, Open>,
    undeclared: BTreeSet<String>,
}

impl RecordFiles {
    /// Open (truncate) the file of every declared stream and write its header. `paths` maps
    /// stream names to files; other streams go to `<out>/<stream>.csv`.
    pub fn create(
        declared: &[RecordStream],
        out: Option<&Path>,
        paths: &BTreeMap<String, PathBuf>,
    ) -> RecordFiles {
        let mut files = RecordFiles {
            out: out.map(Path::to_path_buf),
            paths: paths.clone(),
            streams: BTreeMap::new(),
            undeclared: BTreeSet::new(),
        };
        for s in declared {
            files.open(&s.name, Some(&s.header));
        }
        files
    }

    /// Append rows (whole CSV lines) to `stream`'s file. A stream the scenario did not declare
    /// still gets a file, without a header (and a warning).
    pub fn append(&mut self, stream: &str, rows: &[u8]) {
        if !self.streams.contains_key(stream) {
            if self.undeclared.insert(stream.to_string()) {
                warn!(
                    "record stream `{stream}` is not declared by the scenario's driver; its rows are written without a header"
                );
            }
            self.open(stream, None);
        }
        let Some(open) = self.streams.get_mut(stream) else {
            return;
        };
        open.file.rows += rows.iter().filter(|&&b| b == b'\n').count() as u64;
        if let Some(w) = open.writer.as_mut()
            && let Err(e) = w.write_all(rows)
        {
            fail(open, &e);
        }
    }

    /// Push buffered rows to disk (the coordinator calls this every second).
    pub fn flush(&mut self) {
        for open in self.streams.values_mut() {
            if let Some(w) = open.writer.as_mut()
                && let Err(e) = w.flush()
            {
                fail(open, &e);
            }
        }
    }

    /// Flush and close every file; what became of each stream.
    pub fn finish(mut self) -> Vec<StreamFile> {
        self.flush();
        self.streams.into_values().map(|o| o.file).collect()
    }

    fn open(&mut self, stream: &str, header: Option<&str>) {
        let path = self.paths.get(stream).cloned().or_else(|| {
            self.out
                .as_ref()
                .map(|dir| dir.join(format!("{}.csv", file_safe(stream))))
        });
        let mut open = Open {
            file: StreamFile {
                stream: stream.to_string(),
                path: path.clone(),
                rows: 0,
                error: None,
            },
            writer: None,
        };
        if let Some(path) = path {
            let created = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| File::create(&path));
            match created {
                Ok(f) => {
                    let mut w = BufWriter::with_capacity(256 << 10, f);
                    let head = header.map_or(Ok(()), |h| writeln!(w, "{h}"));
                    open.writer = Some(w);
                    if let Err(e) = head {
                        fail(&mut open, &e);
                    }
                }
                Err(e) => fail(&mut open, &e),
            }
        }
        self.streams.insert(stream.to_string(), open);
    }
}

/// Stop writing a stream after an I/O error; say so once.
fn fail(open: &mut Open, e: &std::io::Error) {
    let path = open
        .file
        .path
        .as_ref()
        .map_or(String::new(), |p| p.display().to_string());
    warn!(
        "record stream `{}`: cannot write {path}: {e}; its further rows are dropped",
        open.file.stream
    );
    open.file.error.get_or_insert_with(|| e.to_string());
    open.writer = None;
}

/// A stream name as a file name: anything but letters, digits, `-`, `_` and `.` becomes `_`.
fn file_safe(stream: &str) -> String {
    stream
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_first_then_rows_as_they_come() {
        let dir = tempfile::tempdir().unwrap();
        let mapped = dir.path().join("sub/metrics.csv");
        let declared = [
            RecordStream {
                name: "requests".into(),
                header: "a,b".into(),
            },
            RecordStream {
                name: "other".into(),
                header: "x".into(),
            },
        ];
        let paths = BTreeMap::from([("requests".to_string(), mapped.clone())]);
        let mut files = RecordFiles::create(&declared, Some(dir.path()), &paths);
        files.append("requests", b"1,2\n3,4\n");
        files.flush();
        assert_eq!(std::fs::read_to_string(&mapped).unwrap(), "a,b\n1,2\n3,4\n");
        files.append("requests", b"5,6\n");
        files.append("../odd name", b"z\n");
        let done = files.finish();
        assert_eq!(
            std::fs::read_to_string(&mapped).unwrap(),
            "a,b\n1,2\n3,4\n5,6\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("other.csv")).unwrap(),
            "x\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join(".._odd_name.csv")).unwrap(),
            "z\n"
        );
        let rows: Vec<(String, u64)> = done.iter().map(|f| (f.stream.clone(), f.rows)).collect();
        assert_eq!(
            rows,
            vec![
                ("../odd name".to_string(), 1),
                ("other".to_string(), 0),
                ("requests".to_string(), 3)
            ]
        );
    }

    #[test]
    fn no_destination_counts_and_drops() {
        let declared = [RecordStream {
            name: "requests".into(),
            header: "a".into(),
        }];
        let mut files = RecordFiles::create(&declared, None, &BTreeMap::new());
        files.append("requests", b"1\n2\n");
        let done = files.finish();
        assert_eq!(done[0].path, None);
        assert_eq!(done[0].rows, 2);
    }

    #[test]
    fn unwritable_path_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let declared = [RecordStream {
            name: "requests".into(),
            header: "a".into(),
        }];
        // A path under a regular file cannot be created.
        let paths = BTreeMap::from([("requests".to_string(), file.join("x.csv"))]);
        let mut files = RecordFiles::create(&declared, None, &paths);
        files.append("requests", b"1\n");
        let done = files.finish();
        assert!(done[0].error.is_some());
        assert_eq!(done[0].rows, 1);
    }
}
