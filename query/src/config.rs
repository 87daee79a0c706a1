//! `[query]` and `[guardrails]`: limits of the query service and how caps are
//! recommended.

use serde::{Deserialize, Serialize};

/// Who may call what. Health, readiness, metrics and the OpenAPI document
/// are open to everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// SQL, attribution, guardrails, service health.
    Analyst,
    /// Log search and service health.
    Operator,
    /// Everything.
    Admin,
}

/// A bearer token and the role it grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    pub token: String,
    pub role: Role,
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
    /// Queries executing at once; more wait their turn. With the memory
    /// limit this bounds the service's memory.
    pub max_concurrent: usize,
    /// Bearer tokens. None configured: no authentication, and the service
    /// refuses to listen on anything but loopback.
    pub tokens: Vec<Token>,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout_secs: 60,
            memory_limit_mb: 2048,
            row_cap: 100_000,
            max_concurrent: 4,
            tokens: Vec::new(),
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
