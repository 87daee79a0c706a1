//! Rule files, in the shape Prometheus and Loki rulers read: groups with an
//! `interval`, rules with `alert`, `expr`, `for`, `keep_firing_for`,
//! `labels` and `annotations`. An `expr` is SQL over the tables, a LogQL
//! metric query over the logs, or one of the templates in [`crate::templates`]
//! that expand to SQL (so the shipped rules read like the console's table).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use sluice_query::loki::logql::{self, MetricExpr, Query};

use crate::condition::{Comparison, split_comparison};
use crate::duration::parse_duration;
use crate::templates::Template;

/// The rules shipped with sluice (`[alerts] default_rules`).
pub const DEFAULT_RULES: &str = include_str!("../rules/default.yaml");

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
}

/// A parsed rule file: what the YAML says.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    groups: Vec<GroupSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupSpec {
    name: String,
    #[serde(default)]
    interval: Option<String>,
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    alert: String,
    expr: ExprSpec,
    /// Compare each row's `value` with this (SQL and templates).
    #[serde(default)]
    threshold: Option<f64>,
    /// `>` (default), `>=`, `<`, `<=`, `==`, `!=`.
    #[serde(default)]
    comparison: Option<String>,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ExprSpec {
    /// SQL when it starts with `SELECT` or `WITH`, LogQL otherwise.
    Text(String),
    Tagged(TaggedExpr),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum TaggedExpr {
    Sql(String),
    Logql(String),
    #[serde(untagged)]
    Template(Template),
}

/// What a rule evaluates.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// One row per alert instance: label columns and a `value` column.
    Sql(String),
    /// A LogQL metric query, parsed when the rule file is read (the
    /// comparison split off into the rule).
    LogQl(MetricExpr),
}

impl Expr {
    pub fn kind(&self) -> &'static str {
        match self {
            Expr::Sql(_) => "sql",
            Expr::LogQl(_) => "logql",
        }
    }
}

/// One alerting rule, ready to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub expr: Expr,
    /// The query as written (a template's YAML, or the expression with its
    /// comparison): what `/api/v1/rules` shows.
    pub query: String,
    /// `None`: every row or series the query returns is an alert instance.
    pub condition: Option<Comparison>,
    /// The threshold as the console shows it, when the query holds it (a
    /// spike's "> 3× 7d avg").
    pub implied_threshold: Option<String>,
    pub for_: Duration,
    pub keep_firing_for: Duration,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A group: its rules are evaluated in order, every `interval`.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    /// The file it came from (`default` for the shipped rules).
    pub file: String,
    pub interval: Duration,
    pub rules: Vec<Rule>,
}

fn is_sql(text: &str) -> bool {
    let first = text
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    first == "SELECT" || first == "WITH"
}

/// Parses one rule file's text. `file` names it in errors and in the API.
pub fn parse(file: &str, text: &str, default_interval: Duration) -> Result<Vec<Group>, RuleError> {
    let invalid = |message: String| RuleError::Invalid {
        file: file.to_string(),
        message,
    };
    let spec: FileSpec =
        serde_yaml_ng::from_str(text).map_err(|e| invalid(format!("not a rule file: {e}")))?;
    let mut groups = Vec::with_capacity(spec.groups.len());
    let mut group_names = HashSet::new();
    for g in spec.groups {
        if !group_names.insert(g.name.clone()) {
            return Err(invalid(format!("group {:?} appears twice", g.name)));
        }
        let interval = match &g.interval {
            None => default_interval,
            Some(t) => parse_duration(t).filter(|d| !d.is_zero()).ok_or_else(|| {
                invalid(format!(
                    "group {:?}: interval {t:?} is not a duration such as 30s or 1m",
                    g.name
                ))
            })?,
        };
        let mut rules = Vec::with_capacity(g.rules.len());
        for r in g.rules {
            let name = r.alert.clone();
            let at = |m: String| invalid(format!("group {:?}, rule {name:?}: {m}", g.name));
            rules.push(rule(r).map_err(at)?);
        }
        groups.push(Group {
            name: g.name,
            file: file.to_string(),
            interval,
            rules,
        });
    }
    Ok(groups)
}

fn rule(r: RuleSpec) -> Result<Rule, String> {
    if r.alert.is_empty()
        || !r
            .alert
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err("alert must be a name of letters, digits, _ and :".into());
    }
    let duration = |field: &str, v: &Option<String>| -> Result<Duration, String> {
        match v {
            None => Ok(Duration::ZERO),
            Some(t) => parse_duration(t)
                .ok_or_else(|| format!("{field} {t:?} is not a duration such as 30s or 5m")),
        }
    };
    let for_ = duration("for", &r.for_)?;
    let keep_firing_for = duration("keep_firing_for", &r.keep_firing_for)?;
    let explicit = match (&r.threshold, &r.comparison) {
        (Some(t), op) => Some(Comparison::new(op.as_deref().unwrap_or(">"), *t)?),
        (None, Some(_)) => return Err("comparison needs a threshold".into()),
        (None, None) => None,
    };
    let mut implied_threshold = None;
    let (expr, query, condition) = match r.expr {
        ExprSpec::Text(text) if is_sql(&text) => (Expr::Sql(text.clone()), text, explicit),
        ExprSpec::Tagged(TaggedExpr::Sql(text)) => (Expr::Sql(text.clone()), text, explicit),
        ExprSpec::Text(text) | ExprSpec::Tagged(TaggedExpr::Logql(text)) => {
            let (metric, inline) = split_comparison(&text);
            let condition = match (inline, explicit) {
                (Some(_), Some(_)) => {
                    return Err("the LogQL has a comparison; drop threshold".into());
                }
                (a, b) => a.or(b),
            };
            let parsed = match logql::parse(metric).map_err(|e| format!("LogQL: {e}"))? {
                Query::Metric(m) => m,
                Query::Logs(_) => {
                    return Err(
                        "a log query selects lines; an alert needs a metric query such as \
                         count_over_time({...}[5m]) > 0"
                            .to_string(),
                    );
                }
            };
            (Expr::LogQl(parsed), text, condition)
        }
        ExprSpec::Tagged(TaggedExpr::Template(t)) => {
            let sql = t.sql()?;
            implied_threshold = t.implied_threshold();
            let query = serde_yaml_ng::to_string(&t)
                .map(|y| y.trim_end().to_string())
                .unwrap_or_else(|_| sql.clone());
            (Expr::Sql(sql), query, explicit)
        }
    };
    Ok(Rule {
        name: r.alert,
        expr,
        query,
        condition,
        implied_threshold,
        for_,
        keep_firing_for,
        labels: r.labels,
        annotations: r.annotations,
    })
}

/// Loads rule files: each entry a file, a directory (its `*.yaml` and
/// `*.yml`, sorted) or a glob's literal path; with `defaults`, the shipped
/// rules first. Two groups of one name are refused (their state would mix).
pub fn load(
    paths: &[PathBuf],
    defaults: bool,
    default_interval: Duration,
) -> Result<Vec<Group>, RuleError> {
    let mut groups = Vec::new();
    if defaults {
        groups.extend(parse("default", DEFAULT_RULES, default_interval)?);
    }
    for path in paths {
        for file in files(path)? {
            let text =
                std::fs::read_to_string(&file).map_err(|e| RuleError::Read(file.clone(), e))?;
            groups.extend(parse(&file.display().to_string(), &text, default_interval)?);
        }
    }
    let mut seen = HashSet::new();
    for g in &groups {
        if !seen.insert(g.name.clone()) {
            return Err(RuleError::Invalid {
                file: g.file.clone(),
                message: format!("group {:?} is also defined in another rule file", g.name),
            });
        }
    }
    Ok(groups)
}

fn files(path: &Path) -> Result<Vec<PathBuf>, RuleError> {
    let meta = std::fs::metadata(path).map_err(|e| RuleError::Read(path.to_path_buf(), e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let entries = std::fs::read_dir(path).map_err(|e| RuleError::Read(path.to_path_buf(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| RuleError::Read(path.to_path_buf(), e))?;
        let p = entry.path();
        let yaml = p.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if yaml && p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn the_shipped_rules_parse() {
        let groups = parse("default", DEFAULT_RULES, MINUTE).unwrap();
        let names: Vec<_> = groups
            .iter()
            .flat_map(|g| g.rules.iter().map(|r| r.name.as_str()))
            .collect();
        assert!(names.contains(&"HighRestartCount"), "{names:?}");
        assert!(names.contains(&"SubmissionSpike"), "{names:?}");
        assert!(names.contains(&"ApiLatencyP99"), "{names:?}");
    }

    #[test]
    fn sql_logql_and_templates_are_told_apart() {
        let text = r#"
groups:
  - name: g
    interval: 15s
    rules:
      - alert: Sql
        expr: SELECT namespace, count(*) AS value FROM platform_events GROUP BY namespace
        threshold: 3
        for: 2m
      - alert: Logs
        expr: sum by (namespace) (count_over_time({namespace="a"} |= "error" [5m])) >= 10
        keep_firing_for: 1m
      - alert: Restarts
        expr:
          restarts: {window: 24h}
"#;
        let groups = parse("f.yaml", text, MINUTE).unwrap();
        let rules = &groups[0].rules;
        assert_eq!(groups[0].interval, Duration::from_secs(15));
        assert!(matches!(rules[0].expr, Expr::Sql(_)));
        assert_eq!(rules[0].condition, Some(Comparison::new(">", 3.0).unwrap()));
        assert_eq!(rules[0].for_, Duration::from_secs(120));
        let Ok(Query::Metric(wanted)) = logql::parse(
            r#"sum by (namespace) (count_over_time({namespace="a"} |= "error" [5m]))"#,
        ) else {
            panic!("the expected LogQL parses");
        };
        assert_eq!(rules[1].expr, Expr::LogQl(wanted));
        assert_eq!(
            rules[1].condition,
            Some(Comparison::new(">=", 10.0).unwrap())
        );
        assert!(matches!(&rules[2].expr, Expr::Sql(s) if s.contains("platform_events")));
    }

    #[test]
    fn bad_rules_are_refused_with_their_place() {
        for (text, wanted) in [
            (
                "groups: [{name: g, rules: [{alert: A, expr: 'SELECT 1 AS value', for: 5}]}]",
                "for \"5\"",
            ),
            (
                "groups: [{name: g, rules: [{alert: A, expr: '{a=\"b\"}'}]}]",
                "metric query",
            ),
            (
                "groups: [{name: g, rules: [{alert: 'A B', expr: 'SELECT 1 AS value'}]}]",
                "alert must be",
            ),
            ("groups: [{name: g, interval: x, rules: []}]", "interval"),
            (
                "groups: [{name: g, rules: []}, {name: g, rules: []}]",
                "twice",
            ),
            (
                "groups: [{name: g, rules: [{alert: A, expr: 'SELECT 1 AS value', comparison: '>'}]}]",
                "needs a threshold",
            ),
            (
                "groups: [{name: g, rules: [{alert: A, expr: {restarts: {window: soon}}}]}]",
                "window",
            ),
        ] {
            let e = parse("f.yaml", text, MINUTE).unwrap_err().to_string();
            assert!(e.starts_with("f.yaml: "), "{e}");
            assert!(e.contains(wanted), "{wanted:?} not in {e}");
        }
    }
}
