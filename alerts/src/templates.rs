//! Rule templates: the console's rules (restarts over a window, a latency
//! percentile per endpoint, a rate against N× its trailing average) written
//! as a few fields and expanded to SQL over the tables, so the shipped
//! rules read as simply as the console's table. Every value that lands in
//! the SQL is checked here (names against a list, numbers as numbers,
//! strings quoted), since the SQL runs as the evaluator's own.

use serde::{Deserialize, Serialize};

use crate::duration::parse_duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Template {
    /// Container restarts (terminations) in `platform_events` over a window.
    Restarts(Restarts),
    /// A latency percentile of `platform_event_logs` over a window.
    Latency(Latency),
    /// Requests per minute over a short window against the per-minute
    /// average of a long one before it (the console's "submission spike").
    Spike(Spike),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Restarts {
    pub window: String,
    /// Among `namespace`, `pod`, `container` (default: namespace and pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Only these termination reasons (`OOMKilled`, `Error`, …); all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    pub window: String,
    /// 0 < q < 1 (default 0.99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Among `service`, `endpoint`, `action`, `team`, `domain`, `caller_type`
    /// (default: service and endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spike {
    /// The recent window whose rate is compared (e.g. `1m`).
    pub window: String,
    /// The trailing window the average is taken over (e.g. `7d`), ending
    /// where the recent window begins.
    pub baseline: String,
    /// Fires when the recent rate exceeds `factor` × the average (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// Only requests whose action starts with this (e.g. `spark.jobs.submit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Among `service`, `user_id`, `team`, `domain`, `endpoint`, `action`
    /// (default: none, the whole rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<Vec<String>>,
    /// The baseline must cover at least this much time (default: 5 × the
    /// window), so a table only minutes old does not compare against
    /// nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_baseline: Option<String>,
    /// Ignore rates below this many requests per minute (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_per_minute: Option<f64>,
}

fn seconds(field: &str, text: &str) -> Result<u64, String> {
    parse_duration(text)
        .map(|d| d.as_secs())
        .filter(|s| *s > 0)
        .ok_or_else(|| {
            format!("{field} {text:?} is not a duration of a second or more (30s, 5m, 24h, 7d)")
        })
}

/// A SQL string literal.
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn columns(
    by: &Option<Vec<String>>,
    default: &[&str],
    allowed: &[&str],
) -> Result<Vec<String>, String> {
    let by: Vec<String> = match by {
        Some(b) => b.clone(),
        None => default.iter().map(|s| s.to_string()).collect(),
    };
    for (i, c) in by.iter().enumerate() {
        if !allowed.contains(&c.as_str()) {
            return Err(format!("by: {c:?} is not one of {}", allowed.join(", ")));
        }
        if by[..i].contains(c) {
            return Err(format!("by: {c:?} is listed twice"));
        }
    }
    Ok(by)
}

impl Template {
    /// The threshold a template's SQL holds, as the console shows it.
    pub fn implied_threshold(&self) -> Option<String> {
        match self {
            Template::Spike(s) => {
                Some(format!("> {}× {} avg", s.factor.unwrap_or(3.0), s.baseline))
            }
            _ => None,
        }
    }

    pub fn sql(&self) -> Result<String, String> {
        match self {
            Template::Restarts(t) => t.sql(),
            Template::Latency(t) => t.sql(),
            Template::Spike(t) => t.sql(),
        }
    }
}

impl Restarts {
    fn sql(&self) -> Result<String, String> {
        let window = seconds("window", &self.window)?;
        let by = columns(
            &self.by,
            &["namespace", "pod"],
            &["namespace", "pod", "container"],
        )?;
        let expr = |c: &str| {
            if c == "pod" {
                "name".to_string()
            } else {
                c.to_string()
            }
        };
        let select: Vec<String> = by.iter().map(|c| format!("{} AS {c}", expr(c))).collect();
        let group: Vec<String> = by.iter().map(|c| expr(c)).collect();
        let mut filter = vec![
            "kind = 'Pod'".to_string(),
            "exit_code IS NOT NULL".to_string(),
            format!("occurred_at > now() - INTERVAL '{window} seconds'"),
        ];
        if let Some(ns) = &self.namespace {
            filter.push(format!("namespace = {}", literal(ns)));
        }
        if self.reasons.as_ref().is_some_and(Vec::is_empty) {
            return Err(
                "reasons: an empty list matches nothing; leave it out for every reason".into(),
            );
        }
        if let Some(reasons) = &self.reasons {
            let list: Vec<String> = reasons.iter().map(|r| literal(r)).collect();
            filter.push(format!("reason IN ({})", list.join(", ")));
        }
        Ok(format!(
            "SELECT {}{}count(*) AS value FROM platform_events WHERE {}{}",
            select.join(", "),
            if select.is_empty() { "" } else { ", " },
            filter.join(" AND "),
            if group.is_empty() {
                String::new()
            } else {
                format!(" GROUP BY {}", group.join(", "))
            }
        ))
    }
}

const EVENT_COLUMNS: [&str; 7] = [
    "service",
    "endpoint",
    "action",
    "team",
    "domain",
    "caller_type",
    "user_id",
];

impl Latency {
    fn sql(&self) -> Result<String, String> {
        let window = seconds("window", &self.window)?;
        let q = self.quantile.unwrap_or(0.99);
        if !(q > 0.0 && q < 1.0) {
            return Err(format!("quantile {q} is not between 0 and 1"));
        }
        let by = columns(&self.by, &["service", "endpoint"], &EVENT_COLUMNS)?;
        let mut filter = vec![
            "latency_ms IS NOT NULL".to_string(),
            format!("occurred_at > now() - INTERVAL '{window} seconds'"),
        ];
        if let Some(s) = &self.service {
            filter.push(format!("service = {}", literal(s)));
        }
        let lead = if by.is_empty() {
            String::new()
        } else {
            format!("{}, ", by.join(", "))
        };
        Ok(format!(
            "SELECT {lead}percentile_cont({q}) WITHIN GROUP (ORDER BY latency_ms) AS value \
             FROM platform_event_logs WHERE {}{}",
            filter.join(" AND "),
            if by.is_empty() {
                String::new()
            } else {
                format!(" GROUP BY {}", by.join(", "))
            }
        ))
    }
}

impl Spike {
    fn sql(&self) -> Result<String, String> {
        let window = seconds("window", &self.window)?;
        let baseline = seconds("baseline", &self.baseline)?;
        if baseline <= window {
            return Err(format!(
                "baseline {} must be longer than window {}",
                self.baseline, self.window
            ));
        }
        // The baseline ends where the window begins: it covers at most
        // `baseline - window`.
        let most = baseline - window;
        let min_baseline = match &self.min_baseline {
            Some(t) => seconds("min_baseline", t)?,
            None => (window * 5).min(most),
        };
        if min_baseline > most {
            return Err(format!(
                "min_baseline {} is longer than the baseline can cover ({} - {})",
                self.min_baseline.as_deref().unwrap_or(""),
                self.baseline,
                self.window
            ));
        }
        let factor = self.factor.unwrap_or(3.0);
        let floor = self.min_per_minute.unwrap_or(10.0);
        for (name, v) in [("factor", factor), ("min_per_minute", floor)] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{name} {v} is not a non-negative number"));
            }
        }
        let by = columns(&self.by, &[], &EVENT_COLUMNS)?;
        let mut filter = Vec::new();
        if let Some(p) = &self.action_prefix {
            filter.push(format!("starts_with(action, {})", literal(p)));
        }
        if let Some(s) = &self.service {
            filter.push(format!("service = {}", literal(s)));
        }
        let extra: String = filter.iter().map(|f| format!(" AND {f}")).collect();
        let keys = if by.is_empty() {
            String::new()
        } else {
            format!("{}, ", by.join(", "))
        };
        let group = if by.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {}", by.join(", "))
        };
        let join = if by.is_empty() {
            "ON true".to_string()
        } else {
            // Equality: a NULL key (an anonymous caller) has no baseline.
            let on: Vec<String> = by.iter().map(|c| format!("r.{c} = b.{c}")).collect();
            format!("ON {}", on.join(" AND "))
        };
        let out_keys: String = by.iter().map(|c| format!("r.{c}, ")).collect();
        // The baseline's average is over the time it covers (from its first
        // request to the recent window), not its nominal length: a table
        // younger than the baseline would otherwise average in empty days.
        Ok(format!(
            "WITH recent AS (\
               SELECT {keys}count(*) * 60.0 / {window} AS per_minute FROM platform_event_logs \
               WHERE occurred_at > now() - INTERVAL '{window} seconds'{extra}{group}), \
             base AS (\
               SELECT {keys}count(*) AS n, \
                      to_unixtime(now() - INTERVAL '{window} seconds') - to_unixtime(min(occurred_at)) AS covered \
               FROM platform_event_logs \
               WHERE occurred_at > now() - INTERVAL '{baseline} seconds' \
                 AND occurred_at <= now() - INTERVAL '{window} seconds'{extra}{group}) \
             SELECT {out_keys}r.per_minute AS value \
             FROM recent r JOIN base b {join} \
             WHERE b.covered >= {min_baseline} AND r.per_minute >= {floor} \
               AND r.per_minute > {factor} * (b.n * 60.0 / b.covered)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_strings_cannot_inject() {
        let t = Template::Restarts(Restarts {
            window: "1h".into(),
            by: Some(vec!["namespace; DROP".into()]),
            namespace: None,
            reasons: None,
        });
        assert!(t.sql().unwrap_err().contains("not one of"));
        let t = Template::Restarts(Restarts {
            window: "1h".into(),
            by: None,
            namespace: Some("a' OR '1'='1".into()),
            reasons: None,
        });
        assert!(t.sql().unwrap().contains("namespace = 'a'' OR ''1''=''1'"));
    }

    #[test]
    fn a_spike_needs_a_longer_baseline() {
        let t = Template::Spike(Spike {
            window: "5m".into(),
            baseline: "1m".into(),
            factor: None,
            action_prefix: None,
            service: None,
            by: None,
            min_baseline: None,
            min_per_minute: None,
        });
        assert!(t.sql().unwrap_err().contains("longer"));
        // The baseline covers at most baseline - window.
        let t = Template::Spike(Spike {
            window: "10m".into(),
            baseline: "30m".into(),
            factor: None,
            action_prefix: None,
            service: None,
            by: None,
            min_baseline: Some("25m".into()),
            min_per_minute: None,
        });
        assert!(t.sql().unwrap_err().contains("can cover"));
        let default = Template::Spike(Spike {
            min_baseline: None,
            ..match t {
                Template::Spike(s) => s,
                _ => unreachable!(),
            }
        });
        assert!(default.sql().unwrap().contains("b.covered >= 1200"));
    }

    #[test]
    fn template_lists_that_cannot_work_are_refused_at_load() {
        let t = Template::Restarts(Restarts {
            window: "1h".into(),
            by: Some(vec!["pod".into(), "pod".into()]),
            namespace: None,
            reasons: None,
        });
        assert!(t.sql().unwrap_err().contains("twice"));
        let t = Template::Restarts(Restarts {
            window: "1h".into(),
            by: None,
            namespace: None,
            reasons: Some(vec![]),
        });
        assert!(t.sql().unwrap_err().contains("empty list"));
    }
}
