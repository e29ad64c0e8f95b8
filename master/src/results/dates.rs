//! Unix milliseconds as the dates Stampede's files and APIs write: RFC 3339 in `summary.json`,
//! RFC 3339 to the second for the ACME performance track's API, and Java's `Date.toString()`
//! in the hlog header. All in UTC; this module only formats.

/// A UTC calendar date and time.
struct Civil {
    year: u64,
    /// 1..=12
    month: u64,
    day: u64,
    hour: u64,
    minute: u64,
    second: u64,
    milli: u64,
    /// 0 = Sunday.
    weekday: u64,
}

/// Split Unix ms into a UTC date (Howard Hinnant's `civil_from_days`, for days ≥ 0).
fn civil(unix_ms: u64) -> Civil {
    let days = unix_ms / 86_400_000;
    let ms_of_day = unix_ms % 86_400_000;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    Civil {
        year,
        month,
        day: doy - (153 * mp + 2) / 5 + 1,
        hour: ms_of_day / 3_600_000,
        minute: ms_of_day / 60_000 % 60,
        second: ms_of_day / 1_000 % 60,
        milli: ms_of_day % 1_000,
        // 1970-01-01 was a Thursday.
        weekday: (days + 4) % 7,
    }
}

/// RFC 3339 UTC with milliseconds: `2024-05-01T12:00:00.250Z`.
pub fn rfc3339(unix_ms: u64) -> String {
    let c = civil(unix_ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second, c.milli
    )
}

/// RFC 3339 UTC to the second, as the ACME performance track's API writes
/// times: `2024-01-15T10:05:00Z`.
pub fn rfc3339_seconds(unix_ms: u64) -> String {
    let c = civil(unix_ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// Java's `Date.toString()` in UTC, as `HistogramLogWriter` puts in StartTime:
/// `Thu Jan 01 00:00:00 UTC 1970`.
pub fn java_date(unix_ms: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = civil(unix_ms);
    // In bounds: `weekday` is taken modulo 7 and `civil` yields months 1..=12.
    let (day_name, month_name) = (DAYS[c.weekday as usize], MONTHS[c.month as usize - 1]);
    format!(
        "{day_name} {month_name} {:02} {:02}:{:02}:{:02} UTC {}",
        c.day, c.hour, c.minute, c.second, c.year
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
    }
}
