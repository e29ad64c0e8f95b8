//! Unix milliseconds as the dates Stampede's files and APIs write: RFC 3339 in `summary.json`,
//! RFC 3339 to the second for the ACME performance track's API, Java's `Date.toString()` in
//! the hlog header, and Python's `%Y-%m-%d %H:%M:%S` for ai-on-gke's Locust benchmark.
//!
//! All in UTC, on the `time` crate; this module only formats.

use time::{OffsetDateTime, PrimitiveDateTime};

/// Unix ms as a UTC date and time; past the year 9999 (beyond `time`'s range), its last instant.
fn utc(unix_ms: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .unwrap_or(PrimitiveDateTime::MAX.assume_utc())
}

/// RFC 3339 UTC with milliseconds: `2024-05-01T12:00:00.250Z`.
pub fn rfc3339(unix_ms: u64) -> String {
    let t = utc(unix_ms);
    format!("{}.{:03}Z", date_time(&t, 'T'), t.millisecond())
}

/// RFC 3339 UTC to the second, as the ACME performance track's API writes times:
/// `2024-01-15T10:05:00Z`.
pub fn rfc3339_seconds(unix_ms: u64) -> String {
    format!("{}Z", date_time(&utc(unix_ms), 'T'))
}

/// UTC as Python's `%Y-%m-%d %H:%M:%S`, as ai-on-gke's Locust benchmark writes times:
/// `2023-11-14 22:13:20`.
pub fn utc_datetime(unix_ms: u64) -> String {
    date_time(&utc(unix_ms), ' ')
}

/// `YYYY-MM-DD`, `between`, `HH:MM:SS`.
fn date_time(t: &OffsetDateTime, between: char) -> String {
    format!(
        "{:04}-{:02}-{:02}{between}{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Java's `Date.toString()` in UTC, as `HistogramLogWriter` puts in StartTime:
/// `Thu Jan 01 00:00:00 UTC 1970`.
pub fn java_date(unix_ms: u64) -> String {
    let t = utc(unix_ms);
    // `time` names days and months in full and in English ("Thursday", "January"); Java
    // writes their first three letters.
    let (day, month) = (t.weekday().to_string(), t.month().to_string());
    format!(
        "{} {} {:02} {:02}:{:02}:{:02} UTC {}",
        &day[..3],
        &month[..3],
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.year()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_every_form() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_007), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
        assert_eq!(rfc3339_seconds(1_700_000_000_999), "2023-11-14T22:13:20Z");
        assert_eq!(java_date(0), "Thu Jan 01 00:00:00 UTC 1970");
        assert_eq!(java_date(951_782_400_000), "Tue Feb 29 00:00:00 UTC 2000");
        assert_eq!(utc_datetime(0), "1970-01-01 00:00:00");
        assert_eq!(utc_datetime(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc_datetime(1_700_000_000_123), "2023-11-14 22:13:20");
    }
}
