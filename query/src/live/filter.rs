//! Which lines and terminations one tail follows: the search API's filters
//! and `q`, or a LogQL stream selector with its line filters, and always
//! the caller's tenant. Evaluated on the stream, line by line.

use std::sync::Arc;

use serde::Deserialize;

use super::hub::Termination;
use crate::logsearch::search::LogLine;
use crate::loki::logql::LogSelector;
use crate::tenancy::TenantView;
use sluice_logindex::line_match::{LineFields, LineMatcher};

/// Exact filters of the search API (`None`: any).
#[derive(Debug, Clone, Default)]
pub struct Exact {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub restart: Option<i64>,
    pub stream: Option<String>,
    pub level: Option<String>,
    pub node: Option<String>,
}

pub enum Selection {
    Search {
        exact: Box<Exact>,
        q: Box<LineMatcher>,
    },
    LogQl(LogSelector),
}

pub struct LiveFilter {
    pub selection: Selection,
    pub tenant: Option<Arc<TenantView>>,
    /// Epoch microseconds: older lines are not followed.
    pub from_us: i64,
}

fn same(want: &Option<String>, have: &str) -> bool {
    want.as_deref().is_none_or(|w| w == have)
}

impl LiveFilter {
    /// Text every message this tail keeps must contain (its pod name or
    /// namespace), to skip a message without parsing it.
    pub fn needle(&self) -> Option<String> {
        let quoted = |s: &str| serde_json::to_string(s).ok();
        match &self.selection {
            Selection::Search { exact, .. } => exact
                .pod
                .as_deref()
                .or(exact.namespace.as_deref())
                .and_then(quoted),
            Selection::LogQl(sel) => sel
                .matchers
                .iter()
                .find(|m| {
                    (m.label == "pod" || m.label == "namespace")
                        && m.op == crate::loki::logql::MatchOp::Eq
                        && !m.value.is_empty()
                })
                .and_then(|m| quoted(&m.value)),
        }
    }

    /// The lines of a pod-log message this tail keeps. `needle` is
    /// [`Self::needle`], computed once per tail: a message without it is
    /// skipped unparsed.
    pub fn lines_of(&mut self, payload: &[u8], needle: Option<&str>) -> Vec<LogLine> {
        if needle.is_some_and(|n| memchr::memmem::find(payload, n.as_bytes()).is_none()) {
            return Vec::new();
        }
        let mut lines = parse_lines(payload);
        lines.retain(|l| self.keeps(l));
        lines
    }

    pub fn keeps(&mut self, l: &LogLine) -> bool {
        if l.ts < self.from_us
            || self
                .tenant
                .as_ref()
                .is_some_and(|t| !t.allows_namespace(&l.namespace))
        {
            return false;
        }
        match &mut self.selection {
            Selection::Search { exact, q } => {
                same(&exact.namespace, &l.namespace)
                    && same(&exact.pod, &l.pod)
                    && same(&exact.container, &l.container)
                    && exact.restart.is_none_or(|r| r == l.restart)
                    && same(&exact.stream, &l.stream)
                    && same(&exact.level, l.level.as_deref().unwrap_or(""))
                    && same(&exact.node, l.node.as_deref().unwrap_or(""))
                    && q.matches(&LineFields {
                        namespace: &l.namespace,
                        pod: &l.pod,
                        pod_uid: &l.pod_uid,
                        container: &l.container,
                        restart: l.restart,
                        stream: &l.stream,
                        level: l.level.as_deref(),
                        node: l.node.as_deref(),
                        message: &l.message,
                    })
            }
            Selection::LogQl(sel) => {
                let restart = l.restart.to_string();
                sel.matchers.iter().all(|m| {
                    let value = match m.label.as_str() {
                        "namespace" => &l.namespace,
                        "pod" => &l.pod,
                        "container" => &l.container,
                        "stream" => &l.stream,
                        "restart" => &restart,
                        "level" => l.level.as_deref().unwrap_or(""),
                        "node" => l.node.as_deref().unwrap_or(""),
                        _ => "",
                    };
                    m.matches(value)
                }) && sel.filters.iter().all(|f| f.keeps(&l.message))
            }
        }
    }

    /// Whether the tail follows the container a termination is about
    /// (only the container's own labels are asked).
    pub fn follows(&self, t: &Termination) -> bool {
        if self
            .tenant
            .as_ref()
            .is_some_and(|v| !v.allows_namespace(&t.namespace))
        {
            return false;
        }
        match &self.selection {
            Selection::Search { exact, .. } => {
                same(&exact.namespace, &t.namespace)
                    && same(&exact.pod, &t.pod)
                    && same(&exact.container, &t.container)
                    && exact
                        .restart
                        .is_none_or(|r| t.restart.is_none_or(|e| e == r))
            }
            Selection::LogQl(sel) => sel.matchers.iter().all(|m| match m.label.as_str() {
                "namespace" => m.matches(&t.namespace),
                "pod" => m.matches(&t.pod),
                "container" => m.matches(&t.container),
                _ => true,
            }),
        }
    }
}

/// A `pod_logs` record as the collector encodes it (other fields ignored).
#[derive(Deserialize)]
struct Wire {
    ts: String,
    namespace: String,
    pod: String,
    pod_uid: String,
    container: String,
    restart: i64,
    stream: String,
    #[serde(default)]
    level: Option<String>,
    message: String,
    #[serde(default)]
    node: Option<String>,
    line_id: String,
    #[serde(default)]
    byte_offset: Option<i64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Payload {
    Many(Vec<Wire>),
    One(Box<Wire>),
}

/// The lines of a pod-log message; a message that is not one yields none
/// (the writer dead-letters it; the tail has nothing to show).
pub fn parse_lines(payload: &[u8]) -> Vec<LogLine> {
    let wires = match serde_json::from_slice::<Payload>(payload) {
        Ok(Payload::Many(w)) => w,
        Ok(Payload::One(w)) => vec![*w],
        Err(e) => {
            tracing::debug!(error = %e, "a pod-log message the live tail cannot read");
            return Vec::new();
        }
    };
    wires
        .into_iter()
        .filter_map(|w| {
            let ts = chrono::DateTime::parse_from_rfc3339(&w.ts)
                .ok()?
                .timestamp_micros();
            Some(LogLine {
                ts,
                namespace: w.namespace,
                pod: w.pod,
                pod_uid: w.pod_uid,
                container: w.container,
                restart: w.restart,
                stream: w.stream,
                level: w.level,
                node: w.node,
                message: w.message,
                line_id: w.line_id,
                byte_offset: w.byte_offset,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loki::logql::{Query, parse};

    fn line(pod: &str, restart: i64, message: &str) -> LogLine {
        LogLine {
            ts: 10,
            namespace: "shop".into(),
            pod: pod.into(),
            pod_uid: "u".into(),
            container: "app".into(),
            restart,
            stream: "stdout".into(),
            level: Some("error".into()),
            node: None,
            message: message.into(),
            line_id: "id".into(),
            byte_offset: Some(0),
        }
    }

    fn logql(q: &str) -> LiveFilter {
        let Ok(Query::Logs(sel)) = parse(q) else {
            panic!("{q} is not a log query")
        };
        LiveFilter {
            selection: Selection::LogQl(sel),
            tenant: None,
            from_us: 0,
        }
    }

    #[test]
    fn logql_selectors_and_line_filters_apply_to_each_line() {
        let mut f =
            logql(r#"{namespace="shop", pod=~"api-.*", restart!="0"} |= "Killed" != "debug""#);
        assert!(f.keeps(&line("api-0", 1, "OOM Killed")));
        assert!(!f.keeps(&line("api-0", 0, "OOM Killed")), "restart 0");
        assert!(!f.keeps(&line("web-0", 1, "OOM Killed")), "pod");
        assert!(!f.keeps(&line("api-0", 1, "Killed debug")), "line filter");
        assert_eq!(f.needle().as_deref(), Some("\"shop\""));
    }

    #[test]
    fn messages_parse_as_the_collector_writes_them() {
        let one = br#"{"ts":"2026-12-05T01:02:03.000004Z","cluster":"c","namespace":"n","pod":"p","pod_uid":"u","container":"c","restart":1,"stream":"stderr","message":"m \"q\"","line_id":"x"}"#;
        let mut many = b"[".to_vec();
        many.extend_from_slice(one);
        many.push(b',');
        many.extend_from_slice(one);
        many.push(b']');
        assert_eq!(parse_lines(&many).len(), 2);
        let l = &parse_lines(one)[0];
        assert_eq!(
            (l.ts % 1_000_000, l.message.as_str()),
            (3_000_004 % 1_000_000, "m \"q\"")
        );
        assert!(parse_lines(b"{").is_empty());
    }
}
