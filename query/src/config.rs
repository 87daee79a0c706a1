//! `[query]` and `[guardrails]`: limits of the query service and how caps are
//! recommended.

use serde::{Deserialize, Serialize};

/// Who may call what. Health, readiness, metrics and the OpenAPI document
/// are open to everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Attribution, guardrails, service health; SQL over the API events.
    Analyst,
    /// Log search, the Loki API, service health, alerts; SQL over the pod
    /// logs, lifecycle events and alert history.
    Operator,
    /// Everything.
    Admin,
}

impl Role {
    /// The tables this role's SQL sees (`None`: every table). Analysts see
    /// API events; operators see pod logs, lifecycle events and alert
    /// history; admins all.
    /// The endpoints built on SQL (attribution, service health, …) are
    /// guarded by route, not by this.
    pub fn tables(self) -> Option<&'static [&'static str]> {
        match self {
            Role::Analyst => Some(&["platform_event_logs"]),
            Role::Operator => Some(&["pod_logs", "platform_events", "alert_history"]),
            Role::Admin => None,
        }
    }
}

/// A bearer token and the role it grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    pub token: String,
    pub role: Role,
    /// How the audit log names this token (default: `token#<n>`, its place
    /// in the list). Never the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The tenant whose rows this token reads (`[[tenants]]`); none: every
    /// tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Queries this token may run at once (default: `[query]
    /// per_token_max_concurrent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<usize>,
}

/// `[query]`: what one query may cost, and who may ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// A query running longer than this is cancelled (HTTP 408).
    pub timeout_secs: u64,
    /// Memory one query may hold for sorts, joins and aggregations (HTTP 422
    /// beyond it).
    pub memory_limit_mb: usize,
    /// Rows one SQL answer may return (HTTP 422 beyond it: add LIMIT or
    /// aggregate).
    pub row_cap: usize,
    /// Queries executing at once; more wait their turn (up to `max_queued`).
    pub max_concurrent: usize,
    /// Queries that may wait for a slot; past it, HTTP 429 at once.
    pub max_queued: usize,
    /// How long a query may wait for a slot before it gets a 429.
    pub queue_timeout_secs: u64,
    /// Queries one caller (token; all unauthenticated callers together) may
    /// run at once; 0: `max_concurrent`. A token's own `max_concurrent`
    /// wins.
    pub per_token_max_concurrent: usize,
    /// Memory all running queries may hold together (HTTP 422 past it).
    pub global_memory_limit_mb: usize,
    /// Disk all queries may spill sorts and joins to together (HTTP 422
    /// past it).
    pub spill_limit_mb: usize,
    /// Threads that execute queries; 0: every core under `serve`, all but
    /// one under `up`. They run at a lower priority than the pipeline.
    pub threads: usize,
    /// Longest SQL text accepted (HTTP 400 past it).
    pub max_sql_bytes: usize,
    /// Deepest nesting of expressions or set operations (UNION …) in a
    /// statement (HTTP 400 past it).
    pub max_expr_depth: usize,
    /// Most one call of a value-building function (`repeat`, `lpad`,
    /// `array_repeat`, `range`, `concat`, …) may build per batch (HTTP 422
    /// past it).
    pub max_function_output_mb: usize,
    /// Most rows on the build side of a join without an equality condition
    /// (a nested-loop join, which cannot be stopped while it compares one
    /// batch with its whole build side): HTTP 422 past it.
    pub max_nested_loop_rows: usize,
    /// Bearer tokens. None configured (and no `jwt`): no authentication,
    /// and the service refuses to listen on anything but loopback.
    pub tokens: Vec<Token>,
    /// OIDC bearer tokens (JWTs) checked against the provider's JWKS; the
    /// role and tenant come from claims.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<sluice_http::jwt::JwtConfig>,
    /// Queries one tenant's callers may run at once, together, unless the
    /// tenant says otherwise (HTTP 429 past it).
    pub per_tenant_max_concurrent: usize,
    /// Tenants named in the `tenant` label of the tenant metrics (the first
    /// this many by name); the rest are counted as `other`, so the
    /// metrics stay bounded with thousands of tenants.
    pub tenant_metric_labels: usize,
    /// The audit log's file (JSON lines); `""`: `<data_dir>/audit/audit.jsonl`;
    /// `"-"`: no file (the `sluice::audit` log events only).
    pub audit_log: String,
    /// The audit file is rotated to `<file>.1` past this size.
    pub audit_max_mb: u64,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout_secs: 60,
            memory_limit_mb: 2048,
            row_cap: 100_000,
            max_concurrent: 4,
            max_queued: 32,
            queue_timeout_secs: 10,
            per_token_max_concurrent: 0,
            global_memory_limit_mb: 4096,
            spill_limit_mb: 8192,
            threads: 0,
            max_sql_bytes: 256 * 1024,
            max_expr_depth: 512,
            max_function_output_mb: 64,
            max_nested_loop_rows: 100_000,
            tokens: Vec::new(),
            jwt: None,
            per_tenant_max_concurrent: 2,
            tenant_metric_labels: 50,
            audit_log: String::new(),
            audit_max_mb: 64,
        }
    }
}

/// `[search]`: how log search reads the index's splits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// Local disk the cache of split ranges may use (under
    /// `<data_dir>/index-cache`); least recently used blocks go first.
    pub cache_mib: u64,
    /// Memory the same cache may use.
    pub memory_cache_mib: u64,
    /// Memory the fast-field columns of recently searched splits may hold
    /// open (opening one decodes its block index, which is most of a warm
    /// search's work when done for every search).
    pub columns_mib: u64,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            cache_mib: 1024,
            memory_cache_mib: 256,
            columns_mib: 128,
        }
    }
}

impl SearchConfig {
    /// The range cache these settings describe, its disk tier in `dir`
    /// (`None`: memory only).
    pub fn cache(
        &self,
        dir: Option<std::path::PathBuf>,
        metrics: sluice_logindex::range_cache::CacheMetrics,
    ) -> std::io::Result<sluice_logindex::range_cache::RangeCache> {
        let settings = sluice_logindex::range_cache::CacheSettings {
            dir: dir.clone(),
            disk_bytes: self.cache_mib << 20,
            memory_bytes: self.memory_cache_mib << 20,
        };
        sluice_logindex::range_cache::RangeCache::open(settings, metrics).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "opening the search cache in {}: {e}",
                    dir.map(|d| d.display().to_string()).unwrap_or_default()
                ),
            )
        })
    }
}

/// `[tail]`: the live tail of pod logs (`/v1/logs/tail`, Loki's
/// `/loki/api/v1/tail`, `sluice logs tail -f`, the console's Live view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TailConfig {
    /// How far back the live stream is kept in memory, so a new tail joins
    /// the index's lines without a gap (the index runs a second or two
    /// behind): keep it well above the indexer's lag.
    pub replay_secs: u64,
    /// Memory that replay may hold, whatever its age.
    pub replay_mib: u64,
    /// Lines waiting for one client; past it, lines are dropped for that
    /// client and reported to it (`dropped_entries`).
    pub client_buffer_lines: usize,
    /// Bytes of those lines.
    pub client_buffer_mib: u64,
    /// A client is disconnected once this many lines were dropped for it.
    pub max_dropped: u64,
    /// A client that takes longer than this to accept one write is
    /// disconnected (its slot freed).
    pub write_timeout_secs: u64,
    /// Tails one token (or signed-in user) may hold open at once.
    pub max_per_caller: usize,
    /// Tails one tenant's callers may hold open at once, together.
    pub max_per_tenant: usize,
    /// Tails open at once on this replica.
    pub max_total: usize,
    /// With Kafka: the live consumer stops this long after the last tail
    /// closed (it starts with the first).
    pub kafka_idle_secs: u64,
}

impl Default for TailConfig {
    fn default() -> Self {
        Self {
            replay_secs: 60,
            replay_mib: 64,
            client_buffer_lines: 10_000,
            client_buffer_mib: 8,
            max_dropped: 100_000,
            write_timeout_secs: 30,
            max_per_caller: 8,
            max_per_tenant: 32,
            max_total: 256,
            kafka_idle_secs: 60,
        }
    }
}

/// `[guardrails]`: how a recommended cap follows from a principal's peak.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardrailsConfig {
    /// recommended_cap = max(ceil(peak × headroom), floor).
    pub headroom: f64,
    /// The smallest cap ever recommended, per window.
    pub floor: u64,
}

impl Default for GuardrailsConfig {
    fn default() -> Self {
        Self {
            headroom: 1.5,
            floor: 10,
        }
    }
}
