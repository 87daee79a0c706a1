//! Timestamps as the contracts accept them and as the tables store them
//! (microseconds since the Unix epoch, UTC).

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::Value;

use crate::validation::show;

/// Earliest accepted instant: 2000-01-01T00:00:00Z, in epoch milliseconds.
/// Anything earlier is almost certainly seconds sent as milliseconds.
pub const MIN_EPOCH_MILLIS: i64 = 946_684_800_000;
/// Latest accepted instant: 2100-01-01T00:00:00Z, in epoch milliseconds.
pub const MAX_EPOCH_MILLIS: i64 = 4_102_444_800_000;

/// Parses RFC 3339 (an offset is required) into epoch microseconds.
pub fn parse_rfc3339_micros(text: &str) -> Result<i64, String> {
    let parsed = DateTime::parse_from_rfc3339(text)
        .map_err(|_| format!("not a timestamp: {}", show(&Value::String(text.into()))))?;
    let millis = parsed.timestamp_millis();
    if !(MIN_EPOCH_MILLIS..MAX_EPOCH_MILLIS).contains(&millis) {
        return Err(format!("timestamp {text} is outside 2000..2100"));
    }
    Ok(parsed.timestamp_micros())
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
