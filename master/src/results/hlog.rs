//! The HdrHistogram interval log `latency.hlog`: a streaming writer the run keeps open and
//! feeds one line per interval histogram, in the format HdrHistogram's own tools read.
//!
//! It holds the open file and its encoder, nothing else.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};

use super::dates::java_date;

/// What the hlog's `Interval_Max` column is divided by: histograms hold µs, tools read ms.
pub const HLOG_MAX_VALUE_UNIT_RATIO: f64 = 1000.0;

/// A streaming writer of the HdrHistogram interval log (`latency.hlog`), in the format of
/// HdrHistogram's `HistogramLogWriter` (log format 1.3): header comments, the legend, then one
/// line per interval histogram, optionally tagged:
///
/// ```text
/// #[Logged with stampede 0.1.0]
/// #[Histogram log format version 1.3]
/// #[StartTime: 1700000000.000 (seconds since epoch), Tue Nov 14 22:13:20 UTC 2023]
/// #[BaseTime: 1700000000.000 (seconds since epoch)]
/// "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
/// 0.000,1.000,12.345,HISTFAAAA...
/// Tag=GET_/items,0.000,1.000,12.345,HISTFAAAA...
/// ```
///
/// Timestamps are seconds since BaseTime (the run's start); `Interval_Max` is in ms
/// ([`HLOG_MAX_VALUE_UNIT_RATIO`]); the payload is the base64 of the V2 DEFLATE encoding.
pub struct HlogWriter {
    /// Buffered because every second adds a line per request name; [`HlogWriter::finish`]
    /// flushes it and reports the error a drop would swallow.
    out: BufWriter<File>,
    /// Reused for every interval, so its compression buffers are allocated once.
    serializer: V2DeflateSerializer,
    /// The serialized histogram, reused likewise.
    encoded: Vec<u8>,
    /// For error messages.
    path: PathBuf,
}

impl HlogWriter {
    /// Create (truncate) the log at `path` and write its header; the run started at
    /// `start_unix_ms`, which is also the base of the interval timestamps.
    pub fn create(path: &Path, start_unix_ms: u64) -> anyhow::Result<HlogWriter> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = HlogWriter {
            out: BufWriter::new(file),
            serializer: V2DeflateSerializer::new(),
            encoded: Vec::new(),
            path: path.to_path_buf(),
        };
        let header = hlog_header(start_unix_ms);
        writer.write_str(&header)?;
        Ok(writer)
    }

    /// Log one interval histogram (µs). `tag` is `None` for the aggregate (an untagged line) and
    /// the request name otherwise, with the characters tags cannot hold (commas, whitespace)
    /// replaced by `_`. Negative times are written as 0.
    pub fn interval(
        &mut self,
        tag: Option<&str>,
        start_offset_s: f64,
        length_s: f64,
        hist: &Histogram<u64>,
    ) -> anyhow::Result<()> {
        self.encoded.clear();
        self.serializer
            .serialize(hist, &mut self.encoded)
            .context("encoding an interval histogram")?;
        let mut line = match tag {
            Some(t) => format!("Tag={},", hlog_tag(t)),
            None => String::new(),
        };
        line.push_str(&format!(
            "{:.3},{:.3},{:.3},",
            start_offset_s.max(0.0),
            length_s.max(0.0),
            hist.max() as f64 / HLOG_MAX_VALUE_UNIT_RATIO
        ));
        STANDARD.encode_string(&self.encoded, &mut line);
        line.push('\n');
        self.write_str(&line)
    }

    /// Push what is written so far to the file (once a second, so a master killed outright
    /// leaves every whole second).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Flush the log to disk.
    pub fn finish(mut self) -> anyhow::Result<()> {
        self.out
            .flush()
            .with_context(|| format!("writing {}", self.path.display()))
    }

    fn write_str(&mut self, s: &str) -> anyhow::Result<()> {
        self.out
            .write_all(s.as_bytes())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// Unix ms as `%.3f` seconds, exactly.
pub(super) fn seconds_3(unix_ms: u64) -> String {
    format!("{}.{:03}", unix_ms / 1000, unix_ms % 1000)
}

pub(super) fn hlog_header(start_unix_ms: u64) -> String {
    let start = seconds_3(start_unix_ms);
    format!(
        "#[Logged with stampede {}]\n\
         #[Histogram log format version 1.3]\n\
         #[StartTime: {start} (seconds since epoch), {}]\n\
         #[BaseTime: {start} (seconds since epoch)]\n\
         \"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n",
        env!("CARGO_PKG_VERSION"),
        java_date(start_unix_ms),
    )
}

/// A request name as an hlog tag: no commas or whitespace (they delimit the line), not empty.
pub(super) fn hlog_tag(name: &str) -> String {
    let tag: String = name
        .chars()
        .map(|c| {
            if c == ',' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if tag.is_empty() { "_".to_string() } else { tag }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use stampede_scenarios::recorder::new_histogram;

    use super::*;
    use crate::results::testdata::*;

    #[test]
    fn hlog_round_trips_through_hdrhistogram_parsers() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("latency.hlog");
        let first = name_stats("GET", "/a", 1, 500, 0).latency;
        let second = name_stats("POST", "/b", 20, 3_000, 0).latency;
        let mut log = HlogWriter::create(&path, START_MS).unwrap();
        log.interval(None, 0.0, 1.0, &first).unwrap();
        log.interval(Some("POST /items, bulk"), 1.0, 1.0, &second)
            .unwrap();
        log.interval(None, 1.0, 1.0, &new_histogram()).unwrap();
        log.finish().unwrap();

        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!("#[Logged with stampede {}]", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(lines[1], "#[Histogram log format version 1.3]");
        assert_eq!(
            lines[2],
            "#[StartTime: 1700000000.250 (seconds since epoch), Tue Nov 14 22:13:20 UTC 2023]"
        );
        assert_eq!(
            lines[3],
            "#[BaseTime: 1700000000.250 (seconds since epoch)]"
        );
        assert_eq!(
            lines[4],
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
        );
        assert!(lines[5].starts_with(&format!(
            "0.000,1.000,{:.3},HISTF",
            first.max() as f64 / 1000.0
        )));
        let tagged = format!(
            "Tag=POST_/items__bulk,1.000,1.000,{:.3},HISTF",
            second.max() as f64 / 1000.0
        );
        assert!(lines[6].starts_with(&tagged), "{}", lines[6]);
        assert!(lines[7].starts_with("1.000,1.000,0.000,"));

        let entries: Vec<LogEntry> = IntervalLogIterator::new(text.as_bytes())
            .map(Result::unwrap)
            .collect();
        assert_eq!(entries.len(), 2 + 3);
        assert!(
            matches!(entries[0], LogEntry::StartTime(d) if d.as_millis() == u128::from(START_MS))
        );
        assert!(
            matches!(entries[1], LogEntry::BaseTime(d) if d.as_millis() == u128::from(START_MS))
        );
        let intervals: Vec<_> = entries[2..]
            .iter()
            .map(|e| match e {
                LogEntry::Interval(h) => h,
                _ => panic!("expected an interval"),
            })
            .collect();
        assert_eq!(intervals[0].tag(), None);
        assert_eq!(intervals[1].tag().unwrap().as_str(), "POST_/items__bulk");
        assert_eq!(intervals[1].start_timestamp().as_secs(), 1);
        assert_eq!(intervals[1].duration().as_secs(), 1);
        for (interval, written) in intervals.iter().zip([&first, &second, &new_histogram()]) {
            let bytes = STANDARD.decode(interval.encoded_histogram()).unwrap();
            let decoded: Histogram<u64> = Deserializer::new().deserialize(&mut &bytes[..]).unwrap();
            assert_eq!(decoded.len(), written.len());
            assert_eq!(decoded.max(), written.max());
            assert_eq!(
                decoded.value_at_quantile(0.99),
                written.value_at_quantile(0.99)
            );
            assert_eq!(interval.max(), written.max() as f64 / 1000.0);
        }
        assert_eq!(hlog_tag("a b,c\td"), "a_b_c_d");
        assert_eq!(hlog_tag(""), "_");
    }
}
