//! Raw request paths → endpoint templates, so that `/api/v1/spark/jobs/8812/runs`
//! and `/api/v1/spark/jobs/9001/runs` count as one endpoint,
//! `spark/jobs/{id}/runs`.
//!
//! Built in: the query string and fragment are dropped, a leading
//! `/api/v<N>/` is dropped, and path segments that are numbers, UUIDs or long
//! hex strings (16+ characters, e.g. hashes) become `{id}`. Extra rules
//! (regular expressions over the templated path) run afterwards, in order.

use regex::Regex;
use serde::{Deserialize, Serialize};

/// A configured rewrite: `pattern` (a regex over the templated endpoint) is
/// replaced by `replace` (`$1`-style groups allowed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRule {
    pub pattern: String,
    pub replace: String,
}

#[derive(Debug, thiserror::Error)]
#[error("endpoint rule {pattern:?} is not a valid regular expression: {source}")]
pub struct BadRule {
    pattern: String,
    source: regex::Error,
}

#[derive(Debug, Clone)]
pub struct EndpointTemplater {
    rules: Vec<(Regex, String)>,
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_id(segment: &str) -> bool {
    !segment.is_empty()
        && (segment.bytes().all(|c| c.is_ascii_digit())
            || is_uuid(segment)
            || (segment.len() >= 16 && segment.bytes().all(|c| c.is_ascii_hexdigit())))
}

fn strip_version_prefix(path: &str) -> &str {
    let p = path.trim_start_matches('/');
    if let Some(rest) = p.strip_prefix("api/v") {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && rest[digits..].starts_with('/') {
            return &rest[digits + 1..];
        }
    }
    p
}

impl EndpointTemplater {
    pub fn new(rules: &[EndpointRule]) -> Result<Self, BadRule> {
        let rules = rules
            .iter()
            .map(|r| {
                Regex::new(&r.pattern)
                    .map(|re| (re, r.replace.clone()))
                    .map_err(|source| BadRule {
                        pattern: r.pattern.clone(),
                        source,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    /// The endpoint template of a raw path.
    pub fn template(&self, raw_path: &str) -> String {
        let mut out = String::new();
        self.template_into(raw_path, &mut out);
        out
    }

    /// [`Self::template`] into a reused buffer (cleared first): the writer
    /// templates every event and keeps the allocation.
    pub fn template_into(&self, raw_path: &str, out: &mut String) {
        out.clear();
        let path = raw_path.split(['?', '#']).next().unwrap_or_default();
        let path = strip_version_prefix(path).trim_end_matches('/');
        for (i, seg) in path.split('/').enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(if is_id(seg) { "{id}" } else { seg });
        }
        for (re, replace) in &self.rules {
            if re.is_match(out) {
                *out = re.replace_all(out, replace.as_str()).into_owned();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_uuids_and_hashes_become_id() {
        let t = EndpointTemplater::new(&[]).unwrap();
        assert_eq!(
            t.template("/api/v1/spark/jobs/8812/runs"),
            "spark/jobs/{id}/runs"
        );
        assert_eq!(
            t.template("/api/v2/sql/queries/7f1c9a2e-3b4d-4c5e-8f90-a1b2c3d4e5f6/results?page=2"),
            "sql/queries/{id}/results"
        );
        assert_eq!(
            t.template("/api/v1/artifacts/9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"),
            "artifacts/{id}"
        );
        assert_eq!(t.template("/healthz"), "healthz");
        assert_eq!(
            t.template("/api/v1/catalogs/lakehouse/tables/"),
            "catalogs/lakehouse/tables"
        );
        // Short hex words and names stay: they are names, not ids.
        assert_eq!(t.template("/api/v1/cafe/beef"), "cafe/beef");
        assert_eq!(t.template("/apiv1/x/12"), "apiv1/x/{id}");
        assert_eq!(t.template(""), "");
    }

    #[test]
    fn extra_rules_apply_after_templating() {
        let t = EndpointTemplater::new(&[EndpointRule {
            pattern: "^catalogs/[^/]+/namespaces/[^/]+/tables/[^/]+$".into(),
            replace: "catalogs/{catalog}/namespaces/{ns}/tables/{table}".into(),
        }])
        .unwrap();
        assert_eq!(
            t.template("/api/v1/catalogs/lakehouse/namespaces/sales/tables/orders"),
            "catalogs/{catalog}/namespaces/{ns}/tables/{table}"
        );
        let bad = EndpointTemplater::new(&[EndpointRule {
            pattern: "(".into(),
            replace: String::new(),
        }]);
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("not a valid regular expression")
        );
    }
}
