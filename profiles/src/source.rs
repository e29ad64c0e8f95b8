//! Where benchmark data comes from: the Performance Profile Generator's mock data, a CSV file,
//! a CSV at an http(s) URL, a CSV object in GCS (the generator's `--gcs_csv_bucket`), or the
//! results folder of Stampede's sweeps (every `benchmarks.csv` under it). Loaded again for
//! every profile, as the generator does, so a file that grows is served as it is now.
//!
//! Called by the gRPC service and `stampede profile generate`; the transfers themselves are in
//! [`crate::fetch`] and [`crate::gcs`]. The generator's Spanner source is not here: its table and
//! query are not published.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bench_csv::{self, CsvError};
use crate::data::{Data, Row};
use crate::fetch::{FetchError, Get};
use crate::gcs::GcsObject;

/// The file name a sweep writes its rows to, and `--results` looks for.
pub const RESULTS_CSV: &str = "benchmarks.csv";

/// How long a URL may take to answer (connect, TLS, redirects, headers and body together).
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest CSV body read from a URL.
const MAX_BODY: usize = 256 << 20;

/// A configured data source.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The Performance Profile Generator's mock data.
    Mock,
    /// A local CSV file.
    File(PathBuf),
    /// A CSV at an `http://` or `https://` URL.
    Url(String),
    /// A CSV object in Google Cloud Storage.
    Gcs(GcsObject),
    /// Every `benchmarks.csv` under a folder of sweep results.
    Results(PathBuf),
}

/// Why data could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The CSV is unusable (missing column, empty, malformed).
    #[error(transparent)]
    Csv(#[from] CsvError),
    /// The URL did not answer, or not with 2xx.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The GCS object could not be read.
    #[error("{object}: {error}")]
    Gcs {
        /// The object.
        object: GcsObject,
        /// Why (the API URL and the cause).
        error: FetchError,
    },
    /// A results folder without sweep rows.
    #[error(
        "{} holds no {RESULTS_CSV}: write one with `stampede profile sweep SCENARIO --out {}`",
        dir.display(),
        dir.display()
    )]
    NoResults {
        /// The folder.
        dir: PathBuf,
    },
}

impl SourceError {
    /// Whether the data is out of reach (a URL not answering) rather than unusable.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, SourceError::Fetch(_) | SourceError::Gcs { .. })
    }
}

/// Data as loaded, with warnings about rows left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The data.
    pub data: Data,
    /// One line per skipped row.
    pub warnings: Vec<String>,
}

impl Source {
    /// A CSV location: `http://` and `https://` are URLs, anything else a file.
    pub fn csv(location: &str) -> Source {
        if location.starts_with("http://") || location.starts_with("https://") {
            Source::Url(location.to_string())
        } else {
            Source::File(PathBuf::from(location))
        }
    }

    /// One line for the start-up message (the Performance Profile Generator's wording for
    /// mock and file).
    pub fn describe(&self) -> String {
        match self {
            Source::Mock => "Using mock data source.".to_string(),
            Source::File(p) => format!("Using local CSV file data source: {}", p.display()),
            Source::Url(u) => format!("Using CSV data source at URL: {u}"),
            Source::Gcs(o) => format!("Using GCS CSV data source: {o}"),
            Source::Results(d) => format!("Using Stampede sweep results under: {}", d.display()),
        }
    }

    /// Load the data now.
    pub async fn load(&self) -> Result<Loaded, SourceError> {
        match self {
            Source::Mock => Ok(Loaded {
                data: Data::Mock,
                warnings: Vec::new(),
            }),
            Source::File(path) => {
                let text = read_file(path)?;
                let parsed = bench_csv::read(text.as_slice(), &path.display().to_string())?;
                Ok(Loaded {
                    data: Data::Table(parsed.rows),
                    warnings: parsed.warnings,
                })
            }
            Source::Url(url) => {
                let body = Get::new(url, FETCH_TIMEOUT, MAX_BODY).send().await?;
                let parsed = bench_csv::read(body.as_slice(), url)?;
                Ok(Loaded {
                    data: Data::Table(parsed.rows),
                    warnings: parsed.warnings,
                })
            }
            Source::Gcs(object) => {
                let body = object
                    .fetch(FETCH_TIMEOUT, MAX_BODY)
                    .await
                    .map_err(|error| SourceError::Gcs {
                        object: object.clone(),
                        error,
                    })?;
                let parsed = bench_csv::read(body.as_slice(), &object.to_string())?;
                Ok(Loaded {
                    data: Data::Table(parsed.rows),
                    warnings: parsed.warnings,
                })
            }
            Source::Results(dir) => {
                let files = results_files(dir)?;
                if files.is_empty() {
                    return Err(SourceError::NoResults { dir: dir.clone() });
                }
                let mut rows: Vec<Row> = Vec::new();
                let mut warnings = Vec::new();
                for f in files {
                    let text = read_file(&f)?;
                    let parsed = bench_csv::read(text.as_slice(), &f.display().to_string())?;
                    rows.extend(parsed.rows);
                    warnings.extend(parsed.warnings);
                }
                Ok(Loaded {
                    data: Data::Table(rows),
                    warnings,
                })
            }
        }
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, SourceError> {
    std::fs::read(path).map_err(|error| SourceError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// Every `benchmarks.csv` in `dir` and in its subfolders (three levels down), sorted.
fn results_files(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                if depth > 0 {
                    walk(&path, depth - 1, out)?;
                }
            } else if path.file_name().is_some_and(|n| n == RESULTS_CSV) {
                out.push(path);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, 3, &mut out).map_err(|error| SourceError::Read {
        path: dir.to_path_buf(),
        error,
    })?;
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_locations() {
        assert_eq!(Source::csv("a/b.csv"), Source::File("a/b.csv".into()));
        assert_eq!(
            Source::csv("http://h:1/x.csv"),
            Source::Url("http://h:1/x.csv".into())
        );
    }

    #[tokio::test]
    async fn a_url_that_does_not_answer_is_a_one_line_error() {
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/bench.csv");
        let e = Source::Url(url.clone()).load().await.unwrap_err();
        assert!(e.is_unavailable());
        let msg = e.to_string();
        assert!(msg.starts_with(&format!("{url}: cannot connect")), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[tokio::test]
    async fn results_folders_gather_every_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let e = Source::Results(dir.path().into()).load().await.unwrap_err();
        assert!(e.to_string().contains("holds no benchmarks.csv"), "{e}");
        let header = "accelerator_type,input_range,output_range,metrics_request_rate,metrics_p90_per_output_token_latency_mean\n";
        for (sub, rate) in [("a", 1), ("b/c", 2)] {
            let d = dir.path().join(sub);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(
                d.join(RESULTS_CSV),
                format!("{header}L4,2-3,2-3,{rate},10\n"),
            )
            .unwrap();
        }
        let loaded = Source::Results(dir.path().into()).load().await.unwrap();
        assert_eq!(loaded.data.len(), 2);
    }
}
