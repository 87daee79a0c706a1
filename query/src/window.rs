//! Time bounds as users write them: RFC 3339 instants or relative spans
//! (`90s`, `15m`, `24h`, `7d`, `2w`) meaning "that long before now".

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is neither an RFC 3339 time nor a span like 15m, 24h, 7d")]
pub struct BadTime {
    pub input: String,
}

/// Parses a span such as `24h`; units s, m, h, d, w.
pub fn parse_span(text: &str) -> Option<Duration> {
    let text = text.trim();
    let unit_at = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(unit_at);
    let n: i64 = n.parse().ok()?;
    let secs_per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    Duration::try_seconds(n.checked_mul(secs_per)?)
}

/// An instant: RFC 3339, or a span back from `now`.
pub fn parse_instant(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, BadTime> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    parse_span(text)
        .and_then(|d| now.checked_sub_signed(d))
        .ok_or_else(|| BadTime {
            input: text.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_instants() {
        let now = DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(parse_span("24h"), Some(Duration::hours(24)));
        assert_eq!(parse_span("7d"), Some(Duration::days(7)));
        assert_eq!(
            parse_instant("1d", now).unwrap().to_rfc3339(),
            "2026-11-20T00:00:00+00:00"
        );
        assert_eq!(
            parse_instant("2026-11-20T12:00:00+01:00", now)
                .unwrap()
                .to_rfc3339(),
            "2026-11-20T11:00:00+00:00"
        );
        assert!(parse_instant("yesterday", now).is_err());
        assert!(parse_span("5y").is_none());
        assert!(parse_span("h").is_none());
        assert!(parse_span("99999999999999999w").is_none());
    }
}
