//! Timestamps as the contracts accept them and as the tables store them
//! (microseconds since the Unix epoch, UTC).

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::Value;

use crate::show::show;

/// Earliest accepted instant: 2000-01-01T00:00:00Z, in epoch milliseconds.
/// Anything earlier is almost certainly seconds sent as milliseconds.
pub const MIN_EPOCH_MILLIS: i64 = 946_684_800_000;
/// Latest accepted instant: 2100-01-01T00:00:00Z, in epoch milliseconds.
pub const MAX_EPOCH_MILLIS: i64 = 4_102_444_800_000;

/// Parses RFC 3339 (an offset is required) into epoch microseconds.
pub fn parse_rfc3339_micros(text: &str) -> Result<i64, String> {
    if let Some(micros) = parse_utc_fast(text.as_bytes()) {
        let millis = micros.div_euclid(1000);
        if (MIN_EPOCH_MILLIS..MAX_EPOCH_MILLIS).contains(&millis) {
            return Ok(micros);
        }
    }
    let parsed = DateTime::parse_from_rfc3339(text)
        .map_err(|_| format!("not a timestamp: {}", show(&Value::String(text.into()))))?;
    let millis = parsed.timestamp_millis();
    if !(MIN_EPOCH_MILLIS..MAX_EPOCH_MILLIS).contains(&millis) {
        return Err(format!("timestamp {text} is outside 2000..2100"));
    }
    Ok(parsed.timestamp_micros())
}

/// The common form gateways send, `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, parsed
/// without chrono's general machinery (the writer parses one per event).
/// `None` for anything else, which then takes chrono's path; both agree on
/// every input this accepts (tested below).
fn parse_utc_fast(b: &[u8]) -> Option<i64> {
    fn digits(b: &[u8]) -> Option<i64> {
        b.iter().try_fold(0i64, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    }
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || *b.last()? != b'Z'
    {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    let fraction = &b[19..b.len() - 1];
    let micros = match fraction {
        [] => 0,
        [b'.', f @ ..] if (1..=9).contains(&f.len()) => {
            let n = digits(f)?;
            // Scale to nanoseconds, then truncate to microseconds as chrono does.
            n * 10i64.pow(9 - f.len() as u32) / 1000
        }
        _ => return None,
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    // Days since the epoch of a proleptic Gregorian date (Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hour * 3600 + minute * 60 + second) * 1_000_000) + micros)
}

/// Parses a contract timestamp: an RFC 3339 string with offset, or an integer
/// number of epoch milliseconds.
pub fn parse_json_timestamp(value: &Value) -> Result<i64, String> {
    match value {
        Value::String(s) => parse_rfc3339_micros(s),
        Value::Number(n) => match n.as_i64() {
            Some(ms) => epoch_millis_micros(ms),
            None => Err(format!("epoch milliseconds must be an integer, got {n}")),
        },
        other => Err(format!("not a timestamp: {}", show(other))),
    }
}

/// Epoch milliseconds (within 2000..2100) as epoch microseconds.
pub fn epoch_millis_micros(ms: i64) -> Result<i64, String> {
    if (MIN_EPOCH_MILLIS..MAX_EPOCH_MILLIS).contains(&ms) {
        Ok(ms * 1000)
    } else {
        Err(format!(
            "epoch milliseconds {ms} are outside 2000..2100 (seconds sent as milliseconds?)"
        ))
    }
}

/// Appends what [`format_micros`] returns, without chrono's general
/// formatting machinery for the years 1970..=9999 (the collector writes one
/// per log line); other instants take chrono's path.
pub fn write_micros(out: &mut Vec<u8>, micros: i64) {
    const MAX: i64 = 253_402_300_800_000_000; // 10000-01-01T00:00:00Z
    if !(0..MAX).contains(&micros) {
        out.extend_from_slice(format_micros(micros).as_bytes());
        return;
    }
    let (days, rest) = (micros / 86_400_000_000, micros % 86_400_000_000);
    // Civil date of a day count (Hinnant's algorithm, days >= 0 here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let secs = rest / 1_000_000;
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    let mut put = |at: usize, width: usize, mut n: i64| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (n % 10) as u8;
            n /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, secs / 3600);
    put(14, 2, secs / 60 % 60);
    put(17, 2, secs % 60);
    put(20, 6, rest % 1_000_000);
    out.extend_from_slice(&b);
}

/// Formats epoch microseconds as RFC 3339 UTC with microsecond precision.
pub fn format_micros(micros: i64) -> String {
    match Utc.timestamp_micros(micros).single() {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Micros, true),
        None => format!("@{micros}us"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_offsets_and_millis() {
        let a = parse_json_timestamp(&json!("2026-11-21T14:32:08.5+02:00")).unwrap();
        let b = parse_json_timestamp(&json!("2026-11-21T12:32:08.500Z")).unwrap();
        let c = parse_json_timestamp(&json!(1_795_264_328_500_i64)).unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_eq!(format_micros(a), "2026-11-21T12:32:08.500000Z");
    }

    #[test]
    fn fast_path_agrees_with_chrono() {
        let mut n = 0u64;
        for year in [1999, 2000, 2024, 2026, 2099, 2100] {
            for month in [0, 1, 2, 3, 12, 13] {
                for day in [0, 1, 28, 29, 30, 31, 32] {
                    for time in ["00:00:00", "23:59:59", "24:00:00", "12:60:00", "12:00:60"] {
                        for fraction in [
                            "",
                            ".5",
                            ".123456",
                            ".1234567",
                            ".123456789",
                            ".",
                            ".1234567890",
                        ] {
                            let text = format!("{year:04}-{month:02}-{day:02}T{time}{fraction}Z");
                            let chrono = DateTime::parse_from_rfc3339(&text)
                                .ok()
                                .map(|t| t.timestamp_micros());
                            if let Some(fast) = parse_utc_fast(text.as_bytes()) {
                                assert_eq!(Some(fast), chrono, "{text}");
                                n += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(n > 1000, "the fast path answered only {n} times");
        assert_eq!(parse_utc_fast(b"2026-11-21T12:32:08+00:00"), None);
    }

    #[test]
    fn written_micros_are_chronos() {
        let mut out = Vec::new();
        let edges = [
            i64::MIN,
            -1,
            0,
            1,
            951_782_400_000_000, // 2000-02-29
            4_107_542_399_999_999,
            253_402_300_799_999_999,
            253_402_300_800_000_000,
            i64::MAX,
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let random = (0..20_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 300_000_000_000_000_000) as i64 - 20_000_000_000_000_000
        });
        for micros in edges.into_iter().chain(random) {
            out.clear();
            write_micros(&mut out, micros);
            assert_eq!(
                std::str::from_utf8(&out).unwrap(),
                format_micros(micros),
                "{micros}"
            );
        }
    }

    #[test]
    fn rejects_with_reasons() {
        assert_eq!(
            parse_json_timestamp(&json!("yesterday")).unwrap_err(),
            "not a timestamp: \"yesterday\""
        );
        assert!(parse_json_timestamp(&json!("2026-11-21T12:32:08")).is_err());
        assert!(
            parse_json_timestamp(&json!(1_795_264_328_i64))
                .unwrap_err()
                .contains("seconds")
        );
        assert!(parse_json_timestamp(&json!(1.5e12)).is_err());
        assert!(parse_json_timestamp(&json!(true)).is_err());
    }
}
