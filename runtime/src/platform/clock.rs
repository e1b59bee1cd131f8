//! Wall-clock formatting without a date library: the protocol wants
//! JavaScript-style ISO timestamps and millisecond epochs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Time since this boot, in ms (`/proc/uptime`: the kernel's boot clock,
/// which wall-clock jumps do not move); `None` where there is no `/proc`.
pub fn uptime_ms() -> Option<u64> {
    parse_uptime_ms(&std::fs::read_to_string("/proc/uptime").ok()?)
}

/// `"12345.67 4567.89\n"` → 12 345 670.
fn parse_uptime_ms(text: &str) -> Option<u64> {
    let first = text.split_whitespace().next()?;
    let (secs, frac) = first.split_once('.').unwrap_or((first, "0"));
    let secs: u64 = secs.parse().ok()?;
    let frac: String = frac.chars().chain(std::iter::repeat('0')).take(3).collect();
    let millis: u64 = frac.parse().ok()?;
    secs.checked_mul(1000)?.checked_add(millis)
}

/// `2025-12-27T18:24:14.123Z`, like JavaScript's `toISOString()`.
pub fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_reads_the_kernels_format() {
        assert_eq!(parse_uptime_ms("12345.67 4567.89\n"), Some(12_345_670));
        assert_eq!(parse_uptime_ms("7 1"), Some(7_000));
        assert_eq!(parse_uptime_ms(""), None);
        assert_eq!(parse_uptime_ms("x.5 1"), None);
        assert!(uptime_ms().is_some_and(|ms| ms > 0));
    }

    #[test]
    fn formats_like_javascript() {
        let t = UNIX_EPOCH + Duration::from_millis(1_735_323_854_123);
        assert_eq!(iso8601(t), "2024-12-27T18:24:14.123Z");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            iso8601(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(unix_millis(t), 1_735_323_854_123);
    }

    /// Seconds are u64 / i64 here, never a 32-bit time_t (armhf boxes):
    /// 2038 (2^31 s) and 2106 (2^32 s) format as ordinary dates.
    #[test]
    fn dates_past_2038_and_2106() {
        let y2038 = UNIX_EPOCH + Duration::from_secs(1 << 31);
        assert_eq!(iso8601(y2038), "2038-01-19T03:14:08.000Z");
        assert_eq!(unix_millis(y2038), (1 << 31) * 1000);
        let y2106 = UNIX_EPOCH + Duration::from_secs(1 << 32);
        assert_eq!(iso8601(y2106), "2106-02-07T06:28:16.000Z");
    }
}
