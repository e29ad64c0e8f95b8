//! Benchmark CSVs in the schema of ig-wva's Performance Profile Generator: reading the columns
//! the profile needs, and writing Stampede's sweep rows with every column the generator's data
//! has (so the generator itself reads them too), plus TTFT and E2E.
//!
//! Reading follows the generator's own reader: a header row; required columns `accelerator_type`,
//! `input_range`, `output_range`, `metrics_request_rate`,
//! `metrics_p90_per_output_token_latency_mean` (any order, others ignored); values trimmed; a
//! row whose rate or latency does not parse is skipped with a warning naming its line.

use std::io::Read;
use std::path::Path;

use serde::Serialize;

use crate::data::Row;
use crate::profile::Point;

/// The columns every benchmark CSV must have.
pub const REQUIRED: [&str; 5] = [ACCELERATOR, INPUT_RANGE, OUTPUT_RANGE, RATE, TPOT];

const ACCELERATOR: &str = "accelerator_type";
const INPUT_RANGE: &str = "input_range";
const OUTPUT_RANGE: &str = "output_range";
const RATE: &str = "metrics_request_rate";
const TPOT: &str = "metrics_p90_per_output_token_latency_mean";
/// Stampede's extra column: p90 time to first token at that rate, ms.
pub const TTFT: &str = "metrics_p90_ttft_ms";
/// Stampede's extra column: p90 end-to-end latency at that rate, ms.
pub const E2E: &str = "metrics_p90_e2e_latency_ms";

/// Why a CSV could not be read at all (a bad row is a warning, not an error).
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    /// A required column is not in the header (the Performance Profile Generator's message).
    #[error("missing required column '{column}' in CSV header from {origin}")]
    MissingColumn {
        /// The column.
        column: &'static str,
        /// The file or URL.
        origin: String,
    },
    /// No header row at all.
    #[error("{origin} is empty: expected a header row with {}", REQUIRED.join(", "))]
    Empty {
        /// The file or URL.
        origin: String,
    },
    /// The CSV itself is malformed (bad quoting, not UTF-8 in a needed field).
    #[error("{origin}: {message}")]
    Malformed {
        /// The file or URL.
        origin: String,
        /// What the CSV reader said, with the line.
        message: String,
    },
}

/// Rows read, and the warnings about skipped ones.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Parsed {
    /// Usable rows, in file order.
    pub rows: Vec<Row>,
    /// One line per skipped row or unreadable optional value.
    pub warnings: Vec<String>,
}

/// Read benchmark rows from CSV text; `origin` (a path or URL) names it in messages.
pub fn read(input: impl Read, origin: &str) -> Result<Parsed, CsvError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let malformed = |e: csv::Error| CsvError::Malformed {
        origin: origin.to_string(),
        message: e.to_string(),
    };
    let header = reader.headers().map_err(malformed)?.clone();
    if header.iter().all(str::is_empty) {
        return Err(CsvError::Empty {
            origin: origin.to_string(),
        });
    }
    let index = |name: &str| header.iter().position(|h| h.trim() == name);
    let mut cols = [0usize; 5];
    for (slot, column) in cols.iter_mut().zip(REQUIRED) {
        *slot = index(column).ok_or_else(|| CsvError::MissingColumn {
            column,
            origin: origin.to_string(),
        })?;
    }
    let [accel, input_range, output_range, rate, tpot] = cols;
    let (ttft, e2e) = (index(TTFT), index(E2E));
    let mut out = Parsed::default();
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(malformed(e)),
        }
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| record.get(i).unwrap_or("");
        let number = |i: usize, what: &str| -> Result<f32, String> {
            let text = field(i);
            match text.parse::<f32>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(format!(
                    "{origin}:{line}: cannot parse {what} '{text}' (column {}); skipping the row",
                    header.get(i).unwrap_or("?")
                )),
            }
        };
        let (r, t) = match (number(rate, "request rate"), number(tpot, "latency")) {
            (Ok(r), Ok(t)) => (r, t),
            (Err(w), _) | (_, Err(w)) => {
                out.warnings.push(w);
                continue;
            }
        };
        let mut optional = |i: Option<usize>| -> Option<f32> {
            let i = i?;
            let text = field(i);
            if text.is_empty() {
                return None;
            }
            match text.parse::<f32>() {
                Ok(v) if v.is_finite() => Some(v),
                _ => {
                    out.warnings.push(format!(
                        "{origin}:{line}: cannot parse '{text}' in column {}; left out",
                        header.get(i).unwrap_or("?")
                    ));
                    None
                }
            }
        };
        let point = Point {
            rate: r,
            tpot_ms: t,
            ttft_ms: optional(ttft),
            e2e_ms: optional(e2e),
        };
        out.rows.push(Row {
            accelerator_type: field(accel).to_string(),
            input_range: field(input_range).to_string(),
            output_range: field(output_range).to_string(),
            point,
        });
    }
    Ok(out)
}

/// One row as Stampede's sweeps write it: the Performance Profile Generator's columns, then
/// Stampede's. Field names
/// are the column names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchRow {
    /// log2 of the input bucket's lower bound (`512-1023` → 9).
    pub input_power_of_2: u32,
    /// The input bucket, `512-1023`.
    pub input_range: String,
    /// log2 of the output bucket's lower bound.
    pub output_power_of_2: u32,
    /// The output bucket.
    pub output_range: String,
    /// `In:2-3 Out:2-3`.
    pub bucket_description: String,
    /// The rate asked for, requests per second.
    pub metrics_request_rate: f64,
    /// Mean prompt length, tokens.
    pub metrics_avg_input_len_mean: f64,
    /// Mean output length, tokens.
    pub metrics_avg_output_len_mean: f64,
    /// p90 over the run of each request's E2E latency ÷ its output tokens, ms.
    pub metrics_p90_per_output_token_latency_mean: f64,
    /// Output tokens per minute over the run.
    pub metrics_output_tokens_per_min_mean: f64,
    /// Requests sent.
    pub metrics_num_prompts_attempted_mean: u64,
    /// Requests answered without failure.
    pub metrics_num_prompts_succeeded_mean: u64,
    /// The worker type's accelerator (what the profile matches on).
    pub accelerator_type: String,
    /// Accelerators per replica.
    pub accelerator_count: u32,
    /// The model served.
    pub model_name: String,
    /// The model server (`vLLM`, `TGI`, ...).
    pub model_server_type: String,
    /// Its image.
    pub model_server_image: String,
    /// Stampede: p90 time to first token, ms.
    pub metrics_p90_ttft_ms: f64,
    /// Stampede: p90 end-to-end latency, ms.
    pub metrics_p90_e2e_latency_ms: f64,
    /// Stampede: p90 time per output token after the first, ms.
    pub metrics_p90_tpot_ms: f64,
    /// Stampede: requests per second actually completed.
    pub metrics_achieved_request_rate: f64,
    /// Stampede: the step's results folder, relative to the sweep's `--out`.
    pub step_dir: String,
}

/// Append rows to `path`, writing the header first when the file is new or empty. An
/// existing file with another header is refused (its rows would not line up).
pub fn append(path: &Path, rows: &[BenchRow]) -> std::io::Result<()> {
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let fresh = existing.trim().is_empty();
    if !fresh {
        let ours = header_line();
        let theirs = existing.lines().next().unwrap_or("").trim();
        if theirs != ours {
            return Err(std::io::Error::other(format!(
                "{} has other columns than a Stampede sweep writes; give another --csv",
                path.display()
            )));
        }
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut w = csv::WriterBuilder::new()
        .has_headers(fresh)
        .from_writer(file);
    for r in rows {
        w.serialize(r).map_err(std::io::Error::other)?;
    }
    w.flush()
}

/// The header a sweep writes, as one line.
pub fn header_line() -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.serialize(BenchRow::example());
    let text = w
        .into_inner()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    text.lines().next().unwrap_or("").to_string()
}

impl BenchRow {
    fn example() -> BenchRow {
        BenchRow {
            input_power_of_2: 1,
            input_range: "2-3".into(),
            output_power_of_2: 1,
            output_range: "2-3".into(),
            bucket_description: "In:2-3 Out:2-3".into(),
            metrics_request_rate: 1.0,
            metrics_avg_input_len_mean: 2.0,
            metrics_avg_output_len_mean: 2.0,
            metrics_p90_per_output_token_latency_mean: 1.0,
            metrics_output_tokens_per_min_mean: 1.0,
            metrics_num_prompts_attempted_mean: 1,
            metrics_num_prompts_succeeded_mean: 1,
            accelerator_type: "x".into(),
            accelerator_count: 1,
            model_name: "m".into(),
            model_server_type: "s".into(),
            model_server_image: "i".into(),
            metrics_p90_ttft_ms: 1.0,
            metrics_p90_e2e_latency_ms: 1.0,
            metrics_p90_tpot_ms: 1.0,
            metrics_achieved_request_rate: 1.0,
            step_dir: "step-01".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GENERATOR_LIKE: &str = "\
input_power_of_2,input_range,output_power_of_2,output_range,bucket_description,metrics_request_rate,metrics_p90_per_output_token_latency_mean,accelerator_type
1, 2-3 ,5,32-63,In:2-3 Out:32-63, 4 ,12.5, NVIDIA_L4
1,2-3,5,32-63,In:2-3 Out:32-63,8,oops,NVIDIA_L4
1,2-3,5,32-63,In:2-3 Out:32-63,,30,NVIDIA_L4
1,2-3,5,32-63,In:2-3 Out:32-63,16,40.25,NVIDIA_L4
";

    #[test]
    fn reads_trimmed_rows_and_warns_about_bad_ones_by_line() {
        let got = read(GENERATOR_LIKE.as_bytes(), "data.csv").unwrap();
        assert_eq!(got.rows.len(), 2);
        assert_eq!(got.rows[0].accelerator_type, "NVIDIA_L4");
        assert_eq!(got.rows[0].input_range, "2-3");
        assert_eq!(got.rows[0].point, Point::new(4.0, 12.5));
        assert_eq!(got.rows[1].point, Point::new(16.0, 40.25));
        assert_eq!(got.warnings.len(), 2, "{:?}", got.warnings);
        assert!(got.warnings[0].starts_with("data.csv:3: cannot parse latency 'oops'"));
        assert!(got.warnings[1].starts_with("data.csv:4: cannot parse request rate ''"));
    }

    #[test]
    fn a_missing_column_names_column_and_file() {
        let text = "accelerator_type,input_range,output_range,metrics_request_rate\nL4,2-3,2-3,1\n";
        let e = read(text.as_bytes(), "bench/l4.csv").unwrap_err();
        assert_eq!(
            e.to_string(),
            "missing required column 'metrics_p90_per_output_token_latency_mean' in CSV header from bench/l4.csv"
        );
        let e = read("".as_bytes(), "empty.csv").unwrap_err();
        assert!(e.to_string().starts_with("empty.csv is empty"), "{e}");
    }

    #[test]
    fn written_rows_read_back_with_ttft_and_e2e() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.csv");
        let mut row = BenchRow::example();
        row.metrics_request_rate = 8.0;
        row.metrics_p90_per_output_token_latency_mean = 21.5;
        row.metrics_p90_ttft_ms = 210.0;
        row.metrics_p90_e2e_latency_ms = 1000.0;
        append(&path, std::slice::from_ref(&row)).unwrap();
        row.metrics_request_rate = 16.0;
        append(&path, &[row]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.starts_with("input_power_of_2,input_range,output_power_of_2,output_range,bucket_description,metrics_request_rate,"));
        let got = read(text.as_bytes(), "b.csv").unwrap();
        assert_eq!(got.rows.len(), 2);
        assert_eq!(got.rows[0].point.ttft_ms, Some(210.0));
        assert_eq!(got.rows[0].point.e2e_ms, Some(1000.0));
        assert_eq!(got.rows[1].point.rate, 16.0);
        std::fs::write(&path, "a,b\n1,2\n").unwrap();
        assert!(append(&path, &[BenchRow::example()]).is_err());
    }
}
