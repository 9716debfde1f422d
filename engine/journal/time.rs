//! Wall-clock timestamps for the journal, without a date-time dependency.
//!
//! The journal needs two shapes of time: unix milliseconds (every line's `at_ms`, cheap to
//! subtract for step timings) and RFC 3339 UTC text (`run-started.started_at`, `approved.at`,
//! the lock holder), which an operator reads at 3 a.m. Both come from [`SystemTime`]; the
//! civil-date conversion is Howard Hinnant's `civil_from_days`, exact for the proleptic
//! Gregorian calendar, which is all RFC 3339 needs.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the unix epoch, now. A clock before 1970 reads as 0.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The current time as RFC 3339 UTC with milliseconds, e.g. `2026-11-24T20:34:01.123Z`.
pub fn now_rfc3339() -> String {
    rfc3339(now_ms())
}

/// Formats unix milliseconds as RFC 3339 UTC with milliseconds, e.g. `2026-11-24T20:34:01.123Z`.
pub fn rfc3339(ms: u64) -> String {
    let (date, (h, mi, s)) = split(ms);
    format!(
        "{}-{:02}-{:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        date.0,
        date.1,
        date.2,
        ms % 1000
    )
}

/// Formats unix milliseconds as a compact, sortable UTC stamp, e.g. `20261124T203401Z`.
pub fn compact(ms: u64) -> String {
    let ((y, mo, d), (h, mi, s)) = split(ms);
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// Splits unix milliseconds into a civil date and a time of day.
fn split(ms: u64) -> ((u64, u64, u64), (u64, u64, u64)) {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    (
        civil_from_days(days),
        (rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// Days since 1970-01-01 to (year, month, day); Hinnant's algorithm for non-negative days.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day in a century leap year) 12:34:56.789
        assert_eq!(rfc3339(951_827_696_789), "2000-02-29T12:34:56.789Z");
        // 2026-11-24T20:34:01Z
        assert_eq!(rfc3339(1_795_552_441_000), "2026-11-24T20:34:01.000Z");
        assert_eq!(compact(1_795_552_441_000), "20261124T203401Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }
}
