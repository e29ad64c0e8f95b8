//! One recorded run as a row: the model's characteristics, the node's state and device, and the
//! measured execution time; read from and appended to CSV files with the columns of PEPPER's
//! Profiler.
//!
//! Called by `fit` (reading), `record` and the law generator (writing). It checks values, not
//! where they came from: a row is taken as the run it says it is.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

/// The CSV columns, in the order Stampede writes them (reading accepts any order, and ignores
/// columns it does not know).
pub const COLUMNS: [&str; 12] = [
    "model",
    "conv_layers",
    "pool_layers",
    "fc_layers",
    "filter_details",
    "total_parameters",
    "model_input_size",
    "model_output_size",
    CPU,
    DISK,
    DEVICE,
    TIME,
];

/// The model's counts, in [`ModelSpec::counts`] order.
pub const COUNTS: [&str; 7] = [
    "conv_layers",
    "pool_layers",
    "fc_layers",
    "filter_details",
    "total_parameters",
    "model_input_size",
    "model_output_size",
];

/// CPU usage of the node, percent (the Profiler's spelling).
pub const CPU: &str = "cpu_usage(percentage)";
/// Disk usage of the node's `/`, percent.
pub const DISK: &str = "disk_usage(percentage)";
/// The node's device (a category: `Raspberry Pi 4B`).
pub const DEVICE: &str = "device_type";
/// The measured mean execution time, seconds.
pub const TIME: &str = "execution_time";

/// What a model is, as the Profiler describes it: a name and seven counts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelSpec {
    /// The model's name (not a feature: two models with the same counts run alike).
    pub model: String,
    /// Convolution layers.
    pub conv_layers: u64,
    /// Pooling layers.
    pub pool_layers: u64,
    /// Fully connected layers.
    pub fc_layers: u64,
    /// The Profiler's `filter_details` (filters per convolution).
    pub filter_details: u64,
    /// Trainable parameters.
    pub total_parameters: u64,
    /// Input size (elements).
    pub model_input_size: u64,
    /// Output size (elements).
    pub model_output_size: u64,
}

impl ModelSpec {
    /// The counts in [`COUNTS`] order.
    pub fn counts(&self) -> [u64; 7] {
        [
            self.conv_layers,
            self.pool_layers,
            self.fc_layers,
            self.filter_details,
            self.total_parameters,
            self.model_input_size,
            self.model_output_size,
        ]
    }

    /// A spec from a name and counts in [`COUNTS`] order.
    pub fn from_counts(model: String, c: [u64; 7]) -> ModelSpec {
        ModelSpec {
            model,
            conv_layers: c[0],
            pool_layers: c[1],
            fc_layers: c[2],
            filter_details: c[3],
            total_parameters: c[4],
            model_input_size: c[5],
            model_output_size: c[6],
        }
    }
}

/// The state of the node a model runs on.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeState {
    /// CPU busy, percent (0..=100), over the run or the last minute.
    pub cpu_usage: f64,
    /// Used share of the root filesystem, percent (0..=100).
    pub disk_usage: f64,
    /// The device (`Raspberry Pi 4B`).
    pub device_type: String,
}

/// One recorded run.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The model.
    pub spec: ModelSpec,
    /// The node while it ran.
    pub node: NodeState,
    /// Mean execution time, seconds.
    pub execution_time: f64,
}

/// Rows that could not be read. Displays as `file:line: column: message`.
#[derive(Debug, thiserror::Error)]
#[error("{origin}{}: {}{message}", line.map(|l| format!(":{l}")).unwrap_or_default(), column.as_ref().map(|c| format!("{c}: ")).unwrap_or_default())]
pub struct DataError {
    /// The file.
    pub origin: String,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// The column, when one is at fault.
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Read every row of a CSV file with a header line naming (at least) [`COLUMNS`].
pub fn read_csv(path: &Path) -> Result<Vec<Row>, DataError> {
    let origin = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| DataError {
        origin: origin.clone(),
        line: None,
        column: None,
        message: format!("cannot read: {e}"),
    })?;
    read_rows(file, &origin)
}

/// Read rows from CSV text; `origin` names it in errors.
pub fn read_rows(input: impl std::io::Read, origin: &str) -> Result<Vec<Row>, DataError> {
    let error = |line: Option<u64>, column: Option<&str>, message: String| DataError {
        origin: origin.to_string(),
        line,
        column: column.map(str::to_string),
        message,
    };
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(input);
    let header = reader
        .headers()
        .map_err(|e| error(Some(1), None, format!("cannot read the header: {e}")))?
        .clone();
    let mut index = [0usize; COLUMNS.len()];
    for (slot, name) in index.iter_mut().zip(COLUMNS) {
        *slot = header.iter().position(|h| h == name).ok_or_else(|| {
            error(
                Some(1),
                Some(name),
                format!(
                    "missing column (the header must name {})",
                    COLUMNS.join(", ")
                ),
            )
        })?;
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line());
            error(line, None, e.to_string())
        })?;
        let line = record.position().map(|p| p.line());
        let field = |i: usize| record.get(index[i]).unwrap_or("");
        let count = |i: usize| parse_count(field(i)).map_err(|m| error(line, Some(COLUMNS[i]), m));
        let mut counts = [0u64; 7];
        for (k, c) in counts.iter_mut().enumerate() {
            *c = count(k + 1)?;
        }
        let percent =
            |i: usize| parse_percent(field(i)).map_err(|m| error(line, Some(COLUMNS[i]), m));
        let cpu_usage = percent(8)?;
        let disk_usage = percent(9)?;
        let device_type = field(10).to_string();
        if device_type.is_empty() {
            return Err(error(line, Some(DEVICE), "empty".into()));
        }
        let time_text = field(11);
        let execution_time = time_text
            .parse::<f64>()
            .ok()
            .filter(|t| t.is_finite() && *t > 0.0)
            .ok_or_else(|| {
                error(
                    line,
                    Some(TIME),
                    format!("`{time_text}` is not a positive number of seconds"),
                )
            })?;
        rows.push(Row {
            spec: ModelSpec::from_counts(field(0).to_string(), counts),
            node: NodeState {
                cpu_usage,
                disk_usage,
                device_type,
            },
            execution_time,
        });
    }
    Ok(rows)
}

/// A count: a whole number from 0 to 2^64 - 1 (`3.0` and `1e6` are whole numbers too).
pub fn parse_count(text: &str) -> Result<u64, String> {
    if let Ok(v) = text.parse::<u64>() {
        return Ok(v);
    }
    if text.starts_with('-') {
        return Err(format!("`{text}` is negative; a count is 0 or more"));
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{text}` is past the largest count, {}", u64::MAX));
    }
    match text.parse::<f64>() {
        // 2^64 itself is the first f64 that does not fit.
        Ok(v)
            if v.is_finite()
                && v.fract() == 0.0
                && (0.0..18_446_744_073_709_551_616.0).contains(&v) =>
        {
            Ok(v as u64)
        }
        Ok(v) if v.is_finite() && v >= 18_446_744_073_709_551_616.0 => {
            Err(format!("`{text}` is past the largest count, {}", u64::MAX))
        }
        Ok(v) if v.is_finite() => Err(format!("`{text}` is not a whole number")),
        _ => Err(format!("`{text}` is not a number")),
    }
}

/// A percentage, 0 to 100.
pub fn parse_percent(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=100.0).contains(&v) => Ok(v),
        Ok(v) if v.is_finite() => Err(format!("`{text}` is not between 0 and 100")),
        _ => Err(format!("`{text}` is not a number")),
    }
}

/// Write rows as CSV (header first) to `out`.
pub fn write_rows(out: impl Write, rows: &[Row], header: bool) -> std::io::Result<()> {
    let mut w = csv::WriterBuilder::new().from_writer(out);
    if header {
        w.write_record(COLUMNS)?;
    }
    for r in rows {
        let c = r.spec.counts();
        let mut record: Vec<String> = vec![r.spec.model.clone()];
        record.extend(c.iter().map(u64::to_string));
        record.push(format_number(r.node.cpu_usage));
        record.push(format_number(r.node.disk_usage));
        record.push(r.node.device_type.clone());
        record.push(format!("{}", r.execution_time));
        w.write_record(&record)?;
    }
    w.flush()
}

/// Append rows to a CSV file, writing the header first if the file is new or empty. A file
/// that exists must have the same columns, so appended rows never land under another header.
pub fn append_csv(path: &Path, rows: &[Row]) -> Result<(), DataError> {
    let origin = path.display().to_string();
    let io = |e: std::io::Error| DataError {
        origin: origin.clone(),
        line: None,
        column: None,
        message: e.to_string(),
    };
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let header = match existing.as_deref().map(str::trim) {
        None | Some("") => true,
        Some(text) => {
            let first = text.lines().next().unwrap_or("");
            let found: Vec<&str> = first.split(',').map(str::trim).collect();
            if found != COLUMNS {
                return Err(DataError {
                    origin,
                    line: Some(1),
                    column: None,
                    message: format!(
                        "the header is `{first}`; rows are appended only under `{}`",
                        COLUMNS.join(",")
                    ),
                });
            }
            false
        }
    };
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    if let Some(text) = &existing
        && !text.is_empty()
        && !text.ends_with('\n')
    {
        file.write_all(b"\n").map_err(io)?;
    }
    write_rows(&mut file, rows, header).map_err(io)
}

/// A percentage or count as short text: `95`, `37.5`, `12.345678`.
fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.6}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> Row {
        Row {
            spec: ModelSpec::from_counts(
                "resnet, 50".into(),
                [53, 2, 1, 64, 25_557_032, 150_528, 1000],
            ),
            node: NodeState {
                cpu_usage: 37.5,
                disk_usage: 61.0,
                device_type: "Raspberry Pi 4B".into(),
            },
            execution_time: 0.125,
        }
    }

    #[test]
    fn rows_survive_a_write_and_a_read() {
        let mut buf = Vec::new();
        write_rows(&mut buf, &[row(), row()], true).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with("model,conv_layers,pool_layers,fc_layers,filter_details,total_parameters,model_input_size,model_output_size,cpu_usage(percentage),disk_usage(percentage),device_type,execution_time\n"), "{text}");
        assert_eq!(read_rows(text.as_bytes(), "t").unwrap(), vec![row(), row()]);
    }

    #[test]
    fn columns_may_come_in_any_order_with_extra_ones() {
        let text = "execution_time,device_type,note,disk_usage(percentage),cpu_usage(percentage),model_output_size,model_input_size,total_parameters,filter_details,fc_layers,pool_layers,conv_layers,model\n\
                    0.5, Jetson Nano ,x,10,20,7,6,5,4,3,2,1,m\n";
        let rows = read_rows(text.as_bytes(), "t").unwrap();
        assert_eq!(rows[0].spec.counts(), [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(rows[0].node.device_type, "Jetson Nano");
        assert_eq!(
            (rows[0].node.cpu_usage, rows[0].node.disk_usage),
            (20.0, 10.0)
        );
    }

    #[test]
    fn errors_name_the_file_line_and_column() {
        let head = COLUMNS.join(",");
        let e = read_rows(
            format!("{head}\nm,1,2,3,4,5,6,7,50,50,d,1\nm,1,-2,3,4,5,6,7,50,50,d,1\n").as_bytes(),
            "runs.csv",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "runs.csv:3: pool_layers: `-2` is negative; a count is 0 or more"
        );
        let e = read_rows(
            format!("{head}\nm,1,2,3,4,5,6,7,150,50,d,1\n").as_bytes(),
            "r",
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "r:2: cpu_usage(percentage): `150` is not between 0 and 100"
        );
        let e = read_rows(
            format!("{head}\nm,1,2,3,4,5,6,7,50,50,d,0\n").as_bytes(),
            "r",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("execution_time: `0` is not a positive"),
            "{e}"
        );
        let e = read_rows("model,conv_layers\nm,1\n".as_bytes(), "r").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("r:1: pool_layers: missing column"),
            "{e}"
        );
    }

    #[test]
    fn counts_take_every_u64_and_nothing_else() {
        assert_eq!(
            parse_count("10000000000000000000"),
            Ok(10_000_000_000_000_000_000)
        );
        assert_eq!(parse_count("18446744073709551615"), Ok(u64::MAX));
        assert!(
            parse_count("18446744073709551616")
                .unwrap_err()
                .contains("past the largest")
        );
        assert!(
            parse_count("1e20")
                .unwrap_err()
                .contains("past the largest")
        );
        assert_eq!(parse_count("3.0"), Ok(3));
        assert_eq!(parse_count("1e6"), Ok(1_000_000));
        assert!(parse_count("3.5").unwrap_err().contains("whole"));
        assert!(parse_count("-1").unwrap_err().contains("negative"));
        assert!(parse_count("x").unwrap_err().contains("not a number"));
        assert!(parse_count("").unwrap_err().contains("not a number"));
    }

    #[test]
    fn appending_writes_the_header_once_and_refuses_another_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.csv");
        append_csv(&path, &[row()]).unwrap();
        append_csv(&path, &[row()]).unwrap();
        assert_eq!(read_csv(&path).unwrap().len(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("execution_time").count(), 1);
        let other = dir.path().join("other.csv");
        std::fs::write(&other, "a,b\n1,2\n").unwrap();
        assert!(
            append_csv(&other, &[row()])
                .unwrap_err()
                .to_string()
                .contains("header is `a,b`")
        );
    }
}
