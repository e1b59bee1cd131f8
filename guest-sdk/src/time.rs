//! Wall-clock time as the protocol writes it: milliseconds since the epoch
//! and ISO 8601 (`2025-12-31T23:59:59.000Z`), without a date library.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2025-12-31T23:59:59.000Z`, like JavaScript's `toISOString()`.
pub fn iso8601(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem % 3_600_000 / 60_000,
        rem % 60_000 / 1000,
        rem % 1000
    )
}

fn num(s: &str) -> Option<i64> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Parses ISO 8601 as JavaScript's `Date` does for the forms the dashboard
/// sends (`2025-12-31`, `2025-12-31T23:59:59Z`, optional fraction and
/// offset). A time without an offset is read as UTC. `None` when unparseable.
pub fn parse_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let (date, rest) = match text.find(['T', ' ']) {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    };
    let mut parts = date.split('-');
    let (y, m, d) = (
        num(parts.next()?)?,
        num(parts.next()?)?,
        num(parts.next()?)?,
    );
    if parts.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, m, d) * 86_400_000;
    if rest.is_empty() {
        return Some(ms);
    }
    let (time, offset_ms) = if let Some(t) = rest.strip_suffix('Z') {
        (t, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (t, off) = rest.split_at(i);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let off = &off[1..];
        let (oh, om) = match off.split_once(':') {
            Some((h, m)) => (num(h)?, num(m)?),
            None if off.len() == 4 => (num(&off[..2])?, num(&off[2..])?),
            None => (num(off)?, 0),
        };
        (t, sign * (oh * 3_600_000 + om * 60_000))
    } else {
        (rest, 0)
    };
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut fields = hms.split(':');
    let h = num(fields.next()?)?;
    let mi = num(fields.next()?)?;
    let s = match fields.next() {
        Some(s) => num(s)?,
        None => 0,
    };
    if h > 24 || mi > 59 || s > 60 {
        return None;
    }
    let millis = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(3).collect();
        num(&digits)? * 10_i64.pow(3 - digits.len() as u32)
    };
    ms += h * 3_600_000 + mi * 60_000 + s * 1000 + millis;
    Some(ms - offset_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_the_dashboard_sends() {
        assert_eq!(parse_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_ms("2025-12-31T23:59:59Z"), Some(1_767_225_599_000));
        assert_eq!(
            parse_ms("2025-12-31T23:59:59.500Z"),
            Some(1_767_225_599_500)
        );
        assert_eq!(
            parse_ms("2026-01-01T00:59:59+01:00"),
            Some(1_767_225_599_000)
        );
        assert_eq!(parse_ms("2025-12-31"), Some(1_767_139_200_000));
        assert_eq!(parse_ms("not a date"), None);
        assert_eq!(parse_ms("2025-13-01"), None);
    }

    #[test]
    fn formats_like_javascript() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_767_225_599_500), "2025-12-31T23:59:59.500Z");
        assert_eq!(parse_ms(&iso8601(951_782_400_123)), Some(951_782_400_123));
    }

    /// Guests are wasm32 and boxes may be 32-bit (armhf): every time here is
    /// i64 milliseconds, so 2038 (2^31 s, a 32-bit time_t's end) and 2106
    /// (2^32 s) are ordinary dates.
    #[test]
    fn dates_past_2038_and_2106() {
        assert_eq!(iso8601((1 << 31) * 1000), "2038-01-19T03:14:08.000Z");
        assert_eq!(parse_ms("2038-01-19T03:14:08Z"), Some((1 << 31) * 1000));
        assert_eq!(iso8601((1 << 32) * 1000), "2106-02-07T06:28:16.000Z");
        assert_eq!(parse_ms("2106-02-07T06:28:16Z"), Some((1 << 32) * 1000));
        assert_eq!(parse_ms("2040-06-01"), Some(2_222_121_600_000));
    }
}
