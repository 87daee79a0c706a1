//! Tenants: customers who see their own workloads' logs, lifecycle events
//! and API events, and nothing else.
//!
//! A tenant owns namespaces (exact names and `*`/`?` globs) and, for API
//! events, services and principals. A namespace belongs to at most one
//! tenant: two tenants whose patterns could both match one name are refused
//! at load (the check decides whether two globs' languages intersect, so
//! `team-*` and `*-prod` are caught before `team-prod` ever exists).
//!
//! What a tenant-scoped caller may read is decided once, here, and applied
//! where the data is read — a filter under every SQL scan of a scoped table
//! ([`TenantView::sql_filter`]), a matcher on every LogQL selector, a term
//! set on every log search — not by each handler.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use datafusion::logical_expr::{Expr, Like, col, lit};
use serde::{Deserialize, Serialize};

/// `[[tenants]]` in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// What tokens and JWT claims name, and `X-Scope-OrgID` carries.
    pub name: String,
    /// Namespaces the tenant owns: exact names or globs (`team-a-*`).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Services of `platform_event_logs` that are the tenant's.
    #[serde(default)]
    pub services: Vec<String>,
    /// Principals (`user_id`) of `platform_event_logs` that are the
    /// tenant's.
    #[serde(default)]
    pub principals: Vec<String>,
    /// Queries the tenant's callers may run at once, together (default:
    /// `[query] per_tenant_max_concurrent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<usize>,
    /// Events per second the tenant's intake tokens may send together
    /// (default: `[collector] intake_tenant_events_per_sec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intake_events_per_sec: Option<u64>,
}

/// A `*`/`?` glob or an exact name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern(Vec<char>);

impl Pattern {
    fn is_glob(&self) -> bool {
        self.0.iter().any(|c| matches!(c, '*' | '?'))
    }

    fn matches(&self, name: &str) -> bool {
        let name: Vec<char> = name.chars().collect();
        let p = &self.0;
        // Iterative glob match with one backtrack point (the last `*`).
        let (mut i, mut j) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while j < name.len() {
            if i < p.len() && (p[i] == '?' || p[i] == name[j]) {
                i += 1;
                j += 1;
            } else if i < p.len() && p[i] == '*' {
                star = Some((i, j));
                i += 1;
            } else if let Some((si, sj)) = star {
                i = si + 1;
                j = sj + 1;
                star = Some((si, sj + 1));
            } else {
                return false;
            }
        }
        p[i..].iter().all(|c| *c == '*')
    }

    /// Whether some name matches both: a walk over pairs of positions, each
    /// step consuming one character both patterns accept (`*` may also
    /// consume none).
    fn overlaps(&self, other: &Pattern) -> bool {
        let (a, b) = (&self.0, &other.0);
        let mut seen = HashSet::new();
        let mut todo = vec![(0usize, 0usize)];
        while let Some((i, j)) = todo.pop() {
            if !seen.insert((i, j)) {
                continue;
            }
            if i == a.len() && j == b.len() {
                return true;
            }
            if i < a.len() && a[i] == '*' {
                todo.push((i + 1, j));
            }
            if j < b.len() && b[j] == '*' {
                todo.push((i, j + 1));
            }
            if i < a.len() && j < b.len() {
                let compatible = match (a[i], b[j]) {
                    ('*' | '?', _) | (_, '*' | '?') => true,
                    (x, y) => x == y,
                };
                if compatible {
                    let ni = if a[i] == '*' { i } else { i + 1 };
                    let nj = if b[j] == '*' { j } else { j + 1 };
                    todo.push((ni, nj));
                }
            }
        }
        false
    }

    fn text(&self) -> String {
        self.0.iter().collect()
    }
}

/// What one tenant may see, ready to apply.
#[derive(Debug)]
pub struct TenantView {
    pub name: String,
    exact: BTreeSet<String>,
    globs: Vec<Pattern>,
    pub services: Vec<String>,
    pub principals: Vec<String>,
    pub max_concurrent: Option<usize>,
}

/// The scoped tables, and what scopes them.
pub const NAMESPACE_TABLES: [&str; 2] = ["pod_logs", "platform_events"];
pub const EVENT_TABLE: &str = "platform_event_logs";

impl TenantView {
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        self.exact.contains(namespace) || self.globs.iter().any(|g| g.matches(namespace))
    }

    /// Whether the tenant has API events at all.
    pub fn has_events(&self) -> bool {
        !self.services.is_empty() || !self.principals.is_empty()
    }

    /// Whether a table is visible to the tenant at all (others do not
    /// exist for it, `information_schema` included).
    pub fn sees_table(&self, table: &str) -> bool {
        NAMESPACE_TABLES.contains(&table) || (table == EVENT_TABLE && self.has_events())
    }

    /// The rows of `table` the tenant may read, as a filter every scan of
    /// it gets; `None` for a table it does not see.
    pub fn sql_filter(&self, table: &str) -> Option<Expr> {
        if NAMESPACE_TABLES.contains(&table) {
            let mut parts: Vec<Expr> = Vec::new();
            if !self.exact.is_empty() {
                parts.push(col("namespace").in_list(self.exact.iter().map(lit).collect(), false));
            }
            for g in &self.globs {
                parts.push(Expr::Like(Like::new(
                    false,
                    Box::new(col("namespace")),
                    Box::new(lit(like_pattern(g))),
                    Some('\\'),
                    false,
                )));
            }
            return Some(any_of(parts));
        }
        if table == EVENT_TABLE && self.has_events() {
            let mut parts = Vec::new();
            if !self.services.is_empty() {
                parts.push(col("service").in_list(self.services.iter().map(lit).collect(), false));
            }
            if !self.principals.is_empty() {
                parts
                    .push(col("user_id").in_list(self.principals.iter().map(lit).collect(), false));
            }
            return Some(any_of(parts));
        }
        None
    }

    /// The namespaces of `names` the tenant owns.
    pub fn own<'a>(&self, names: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
        names
            .into_iter()
            .filter(|n| self.allows_namespace(n))
            .cloned()
            .collect()
    }

    /// A LogQL regex (fully anchored by LogQL) matching exactly the
    /// tenant's namespaces.
    pub fn namespace_regex(&self) -> String {
        let mut alternatives: Vec<String> = self.exact.iter().map(|e| regex::escape(e)).collect();
        for g in &self.globs {
            let mut r = String::new();
            for c in &g.0 {
                match c {
                    '*' => r.push_str(".*"),
                    '?' => r.push('.'),
                    c => r.push_str(&regex::escape(&c.to_string())),
                }
            }
            alternatives.push(r);
        }
        if alternatives.is_empty() {
            // Matches no namespace (a tenant without namespaces).
            return "[^\\s\\S]".to_string();
        }
        format!("(?:{})", alternatives.join("|"))
    }
}

fn any_of(parts: Vec<Expr>) -> Expr {
    parts
        .into_iter()
        .reduce(Expr::or)
        .unwrap_or_else(|| lit(false))
}

/// A glob as SQL LIKE (escape `\`).
fn like_pattern(g: &Pattern) -> String {
    let mut out = String::new();
    for c in &g.0 {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(*c);
            }
            c => out.push(*c),
        }
    }
    out
}

/// Every tenant, checked.
#[derive(Debug, Default)]
pub struct Tenants {
    by_name: std::collections::BTreeMap<String, Arc<TenantView>>,
}

impl Tenants {
    /// Refuses duplicate or empty names, names outside `[A-Za-z0-9._-]`,
    /// empty patterns, and any namespace two tenants could both own.
    pub fn new(configs: &[TenantConfig]) -> Result<Self, String> {
        let mut by_name = std::collections::BTreeMap::new();
        let mut owned: Vec<(Pattern, String)> = Vec::new();
        for t in configs {
            if t.name.is_empty()
                || !t
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            {
                return Err(format!(
                    "[[tenants]] name {:?}: letters, digits, '-', '_' and '.' only",
                    t.name
                ));
            }
            if by_name.contains_key(&t.name) {
                return Err(format!("[[tenants]] {:?} is declared twice", t.name));
            }
            let mut exact = BTreeSet::new();
            let mut globs = Vec::new();
            for ns in &t.namespaces {
                if ns.trim().is_empty() || ns.chars().any(char::is_whitespace) {
                    return Err(format!(
                        "[[tenants]] {}: namespace pattern {ns:?} is empty or has spaces",
                        t.name
                    ));
                }
                let p = Pattern(ns.chars().collect());
                if let Some((_, other)) = owned.iter().find(|(q, _)| q.overlaps(&p)) {
                    return Err(if other == &t.name {
                        format!(
                            "[[tenants]] {}: namespace pattern {ns:?} overlaps another of its own",
                            t.name
                        )
                    } else {
                        format!(
                            "[[tenants]] {} and {other} could both own a namespace matching {ns:?}: \
                             a namespace belongs to at most one tenant",
                            t.name
                        )
                    });
                }
                owned.push((p.clone(), t.name.clone()));
                if p.is_glob() {
                    globs.push(p);
                } else {
                    exact.insert(p.text());
                }
            }
            by_name.insert(
                t.name.clone(),
                Arc::new(TenantView {
                    name: t.name.clone(),
                    exact,
                    globs,
                    services: t.services.clone(),
                    principals: t.principals.clone(),
                    max_concurrent: t.max_concurrent,
                }),
            );
        }
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<TenantView>> {
        self.by_name.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// The tenants a metric's `tenant` label names: the first `n` by name
    /// (the rest count as `other`, so the label stays bounded).
    pub fn labelled(&self, n: usize) -> BTreeSet<String> {
        self.names().take(n).map(str::to_string).collect()
    }
}

/// The tenants and the tokens that name one, checked together: the
/// tenants' own rules ([`Tenants::new`]) and that every token's tenant is
/// one of them.
pub fn check(configs: &[TenantConfig], tokens: &[crate::config::Token]) -> Result<Tenants, String> {
    let tenants = Tenants::new(configs)?;
    for (i, t) in tokens.iter().enumerate() {
        if let Some(name) = &t.tenant
            && tenants.get(name).is_none()
        {
            return Err(format!(
                "[[query.tokens]] #{}: tenant {name:?} is not one of [[tenants]]",
                i + 1
            ));
        }
    }
    Ok(tenants)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str, namespaces: &[&str]) -> TenantConfig {
        TenantConfig {
            name: name.into(),
            namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
            services: Vec::new(),
            principals: Vec::new(),
            max_concurrent: None,
            intake_events_per_sec: None,
        }
    }

    #[test]
    fn globs_match_as_shells_do() {
        let p = |s: &str| Pattern(s.chars().collect());
        assert!(p("team-*").matches("team-a"));
        assert!(p("team-*").matches("team-"));
        assert!(!p("team-*").matches("team"));
        assert!(p("*-prod").matches("shop-prod"));
        assert!(p("a?c").matches("abc"));
        assert!(!p("a?c").matches("ac"));
        assert!(p("*a*b*").matches("xxaxxbxx"));
        assert!(!p("*a*b*").matches("xxbxxaxx"));
        assert!(p("exact").matches("exact"));
        assert!(!p("exact").matches("exact2"));
    }

    #[test]
    fn overlapping_patterns_are_found() {
        let p = |s: &str| Pattern(s.chars().collect());
        for (a, b, want) in [
            ("team-*", "*-prod", true),
            ("team-*", "team-a", true),
            ("team-a", "team-b", false),
            ("team-?", "team-ab", false),
            ("team-?", "team-*", true),
            ("a*", "b*", false),
            ("*x", "*y", false),
            ("*", "anything", true),
            ("a*c", "ab*", true),
            ("a?c", "ab", false),
        ] {
            assert_eq!(p(a).overlaps(&p(b)), want, "{a} vs {b}");
            assert_eq!(p(b).overlaps(&p(a)), want, "{b} vs {a}");
        }
    }

    #[test]
    fn a_namespace_belongs_to_one_tenant() {
        assert!(Tenants::new(&[tenant("a", &["shop", "team-a-*"]), tenant("b", &["web"])]).is_ok());
        let e = Tenants::new(&[tenant("a", &["team-*"]), tenant("b", &["*-prod"])]).unwrap_err();
        assert!(e.contains("could both own"), "{e}");
        let e = Tenants::new(&[tenant("a", &["shop"]), tenant("b", &["shop"])]).unwrap_err();
        assert!(e.contains("at most one tenant"), "{e}");
        assert!(Tenants::new(&[tenant("a", &[]), tenant("a", &[])]).is_err());
        assert!(Tenants::new(&[tenant("bad name", &[])]).is_err());
        assert!(Tenants::new(&[tenant("a", &[" "])]).is_err());
    }

    #[test]
    fn the_logql_regex_matches_exactly_the_tenants_namespaces() {
        let t = Tenants::new(&[tenant("a", &["shop.v1", "team-*", "x?"])]).unwrap();
        let view = t.get("a").unwrap();
        let re = regex::Regex::new(&format!("^{}$", view.namespace_regex())).unwrap();
        for (ns, want) in [
            ("shop.v1", true),
            ("shopxv1", false),
            ("team-a", true),
            ("xy", true),
            ("xyz", false),
            ("other", false),
        ] {
            assert_eq!(re.is_match(ns), want, "{ns}");
            assert_eq!(view.allows_namespace(ns), want, "{ns}");
        }
        let none = Tenants::new(&[tenant("n", &[])]).unwrap();
        let re =
            regex::Regex::new(&format!("^{}$", none.get("n").unwrap().namespace_regex())).unwrap();
        assert!(!re.is_match("") && !re.is_match("a"));
    }

    #[test]
    fn like_patterns_escape_sql_wildcards() {
        assert_eq!(
            like_pattern(&Pattern("a_b%*?".chars().collect())),
            "a\\_b\\%%_"
        );
    }
}
