//! What the analytics endpoints share: the time range, the dimension rows are
//! grouped by, and SQL with bound parameters (a filter value is never
//! spliced into SQL text).

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use datafusion::scalar::ScalarValue;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::QueryError;
use crate::window::parse_instant;

/// What a row of attribution or peaks stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    User,
    Team,
    Domain,
    Endpoint,
    CallerType,
    Service,
}

impl Dimension {
    pub const ALL: [Dimension; 6] = [
        Dimension::User,
        Dimension::Team,
        Dimension::Domain,
        Dimension::Endpoint,
        Dimension::CallerType,
        Dimension::Service,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Dimension::User => "user",
            Dimension::Team => "team",
            Dimension::Domain => "domain",
            Dimension::Endpoint => "endpoint",
            Dimension::CallerType => "caller_type",
            Dimension::Service => "service",
        }
    }

    /// The `platform_event_logs` column holding it.
    pub fn column(self) -> &'static str {
        match self {
            Dimension::User => "user_id",
            other => other.name(),
        }
    }

    /// Parses `by=`; `allowed` lists what the endpoint accepts.
    pub fn parse(
        text: Option<&str>,
        default: Dimension,
        allowed: &[Dimension],
    ) -> Result<Self, QueryError> {
        let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok(default);
        };
        allowed
            .iter()
            .copied()
            .find(|d| d.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = allowed.iter().map(|d| d.name()).collect();
                QueryError::BadRequest(format!("by={text:?}: expected one of {}", names.join(", ")))
            })
    }
}

/// A half-open time range `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl TimeRange {
    /// From a request's `from`, `since` (a synonym of `from`: one or the
    /// other) and `to`.
    pub fn from_request(
        from: Option<&str>,
        since: Option<&str>,
        to: Option<&str>,
        default_span: Duration,
        now: DateTime<Utc>,
    ) -> Result<Self, QueryError> {
        if from.is_some() && since.is_some() {
            return Err(QueryError::BadRequest(
                "give from or since, not both".to_string(),
            ));
        }
        Self::parse(from.or(since), to, default_span, now)
    }

    /// From `from`/`to`: RFC 3339 or spans back from now; without a start,
    /// `default_span` before the end.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        default_span: Duration,
        now: DateTime<Utc>,
    ) -> Result<Self, QueryError> {
        let bad =
            |name: &str, e: crate::window::BadTime| QueryError::BadRequest(format!("{name}: {e}"));
        let to = match nonempty(to) {
            Some(t) => parse_instant(t, now).map_err(|e| bad("to", e))?,
            None => now,
        };
        let from = match nonempty(from) {
            Some(f) => parse_instant(f, now).map_err(|e| bad("from", e))?,
            // `to` may be any RFC 3339 instant, down to the earliest one.
            None => to.checked_sub_signed(default_span).ok_or_else(|| {
                QueryError::BadRequest(format!("to: {} is too far in the past", rfc3339(to)))
            })?,
        };
        if from >= to {
            return Err(QueryError::BadRequest(format!(
                "the time range is empty: from {} is not before to {}",
                rfc3339(from),
                rfc3339(to)
            )));
        }
        Ok(Self { from, to })
    }
}

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The timestamp type of sluice's tables, as a bound value.
pub fn timestamp_param(t: DateTime<Utc>) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(t.timestamp_micros()), Some("+00:00".into()))
}

/// Placeholders and their values, in order.
#[derive(Debug, Default)]
pub struct Bindings {
    pub values: Vec<ScalarValue>,
}

impl Bindings {
    /// Adds a value; returns its placeholder (`$n`).
    pub fn bind(&mut self, value: ScalarValue) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }

    pub fn bind_str(&mut self, value: &str) -> String {
        self.bind(ScalarValue::Utf8(Some(value.to_string())))
    }

    /// The values as JSON, to show beside the SQL.
    pub fn json(&self) -> Vec<Value> {
        self.values
            .iter()
            .map(|v| match v {
                ScalarValue::Utf8(Some(s)) => Value::String(s.clone()),
                ScalarValue::Int64(Some(n)) => Value::from(*n),
                ScalarValue::TimestampMicrosecond(Some(us), _) => {
                    DateTime::<Utc>::from_timestamp_micros(*us)
                        .map_or(Value::Null, |t| Value::String(rfc3339(t)))
                }
                other => Value::String(other.to_string()),
            })
            .collect()
    }
}

/// `WHERE` clauses over `platform_event_logs` for the time range and the
/// equality filters an endpoint accepts.
pub fn event_filters(
    bindings: &mut Bindings,
    range: TimeRange,
    equals: &[(&str, Option<&str>)],
) -> Vec<String> {
    let from = bindings.bind(timestamp_param(range.from));
    let to = bindings.bind(timestamp_param(range.to));
    let mut clauses = vec![
        format!("occurred_at >= {from}"),
        format!("occurred_at < {to}"),
    ];
    for (column, value) in equals {
        if let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) {
            let p = bindings.bind_str(v);
            clauses.push(format!("{column} = {p}"));
        }
    }
    clauses
}

/// `limit=`: a positive count up to `max`.
pub fn parse_limit(text: Option<&str>, default: usize, max: usize) -> Result<usize, QueryError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(default),
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(QueryError::BadRequest(format!(
                "limit={t:?}: expected a whole number from 1 to {max}"
            ))),
        },
    }
}

/// Checks `caller_type=` against the values the writer produces.
pub fn check_caller_type(value: Option<&str>) -> Result<(), QueryError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) if !sluice_schema::tables::CALLER_TYPES.contains(&v) => {
            Err(QueryError::BadRequest(format!(
                "caller_type={v:?}: expected one of {}",
                sluice_schema::tables::CALLER_TYPES.join(", ")
            )))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-21T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn ranges() {
        let r = TimeRange::parse(None, None, Duration::hours(24), now()).unwrap();
        assert_eq!(rfc3339(r.from), "2026-11-20T00:00:00Z");
        assert_eq!(r.to, now());
        let r = TimeRange::parse(
            Some("7d"),
            Some("2026-11-20T00:00:00Z"),
            Duration::hours(24),
            now(),
        )
        .unwrap();
        assert_eq!(rfc3339(r.from), "2026-11-14T00:00:00Z");
        assert!(TimeRange::parse(Some("1h"), Some("2h"), Duration::hours(1), now()).is_err());
        let e = TimeRange::parse(Some("yesterday"), None, Duration::hours(1), now()).unwrap_err();
        assert!(e.to_string().contains("from"), "{e}");
        // The earliest instant chrono knows: no span fits before it.
        let e =
            TimeRange::parse(None, None, Duration::hours(1), DateTime::<Utc>::MIN_UTC).unwrap_err();
        assert!(e.to_string().contains("too far in the past"), "{e}");
    }

    #[test]
    fn dimensions_and_limits() {
        assert_eq!(
            Dimension::parse(Some("team"), Dimension::User, &Dimension::ALL).unwrap(),
            Dimension::Team
        );
        assert_eq!(
            Dimension::parse(None, Dimension::User, &Dimension::ALL).unwrap(),
            Dimension::User
        );
        assert_eq!(Dimension::User.column(), "user_id");
        let e =
            Dimension::parse(Some("user_id; DROP"), Dimension::User, &Dimension::ALL).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST);
        assert_eq!(parse_limit(Some("10"), 50, 100).unwrap(), 10);
        assert!(parse_limit(Some("0"), 50, 100).is_err());
        assert!(parse_limit(Some("1000"), 50, 100).is_err());
    }

    #[test]
    fn filter_values_are_bound_not_spliced() {
        let mut b = Bindings::default();
        let range = TimeRange::parse(None, None, Duration::hours(1), now()).unwrap();
        let clauses = event_filters(
            &mut b,
            range,
            &[("service", Some("x' OR '1'='1")), ("action", None)],
        );
        assert_eq!(
            clauses,
            ["occurred_at >= $1", "occurred_at < $2", "service = $3"]
        );
        assert_eq!(b.values.len(), 3);
        assert_eq!(b.json()[2], Value::String("x' OR '1'='1".into()));
    }
}
