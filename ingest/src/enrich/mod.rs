//! What the writer adds to a raw event: endpoint template, caller type, team,
//! domain and ingest time.

pub mod caller;
pub mod directory;
pub mod endpoint;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sluice_schema::raw::{Enrichment, RawEvent};
use sluice_schema::validation::ValidationErrors;

pub use caller::{CallerClassifier, DEFAULT_INTERNAL_NETWORKS};
pub use directory::WatchedDirectory;
pub use endpoint::{EndpointRule, EndpointTemplater};

/// `[enrich]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnrichConfig {
    /// Principal directory (YAML or CSV); unset: team and domain stay NULL.
    pub directory: Option<PathBuf>,
    /// How often the directory file is checked for changes, in seconds.
    pub directory_check_secs: u64,
    /// CIDRs whose callers are internal.
    pub internal_networks: Vec<String>,
    /// Extra endpoint rewrites, applied after the built-in templating.
    pub endpoint_rules: Vec<EndpointRule>,
}

impl Default for EnrichConfig {
    fn default() -> Self {
        Self {
            directory: None,
            directory_check_secs: 5,
            internal_networks: DEFAULT_INTERNAL_NETWORKS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            endpoint_rules: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnrichSetupError {
    #[error(transparent)]
    Rule(#[from] endpoint::BadRule),
    #[error(transparent)]
    Network(#[from] caller::BadNetwork),
    #[error(transparent)]
    Directory(#[from] directory::LoadError),
}

#[derive(Debug, Clone)]
pub struct Enricher {
    endpoints: EndpointTemplater,
    callers: CallerClassifier,
    directory: Option<Arc<WatchedDirectory>>,
}

impl Enricher {
    pub fn new(cfg: &EnrichConfig) -> Result<Self, EnrichSetupError> {
        let directory = match &cfg.directory {
            Some(p) => Some(Arc::new(WatchedDirectory::open(
                p,
                Duration::from_secs(cfg.directory_check_secs),
            )?)),
            None => None,
        };
        Ok(Self {
            endpoints: EndpointTemplater::new(&cfg.endpoint_rules)?,
            callers: CallerClassifier::new(&cfg.internal_networks)?,
            directory,
        })
    }

    /// Enriches a batch of events (one directory snapshot for the batch).
    pub fn enrich_all<'a>(
        &self,
        events: impl IntoIterator<Item = &'a RawEvent>,
        ingested_at: i64,
    ) -> Vec<Enrichment> {
        let directory = self.directory.as_ref().map(|d| d.current());
        events
            .into_iter()
            .map(|e| self.enrich_one(directory.as_deref(), e, ingested_at))
            .collect()
    }

    fn enrich_one(
        &self,
        directory: Option<&sluice_schema::directory::PrincipalDirectory>,
        e: &RawEvent,
        ingested_at: i64,
    ) -> Enrichment {
        let principal = match (directory, &e.user_id) {
            (Some(d), Some(user)) => d.lookup(user),
            _ => None,
        };
        let service_account =
            e.service_account == Some(true) || principal.is_some_and(|p| p.service_account);
        Enrichment {
            endpoint: e.path.as_deref().map(|p| self.endpoints.template(p)),
            caller_type: Some(
                self.callers
                    .classify(e.client_ip.as_deref(), service_account),
            ),
            team: principal.map(|p| p.team.to_string()),
            domain: principal.and_then(|p| p.domain.map(str::to_string)),
            ingested_at: Some(ingested_at),
        }
    }

    /// Decodes, validates and enriches raw event payloads on every core,
    /// keeping their order. Each payload comes with a caller's tag (a line
    /// number, a Kafka offset) that rejected ones are reported under.
    pub fn decode_events<T: Copy + Send + Sync>(
        &self,
        payloads: &[(T, &[u8])],
        ingested_at: i64,
    ) -> DecodedEvents<T> {
        let directory = self.directory.as_ref().map(|d| d.current());
        let decoded: Vec<_> = payloads
            .par_iter()
            .with_min_len(1024)
            .map(|(tag, bytes)| match RawEvent::from_json_bytes(bytes) {
                Ok(e) => {
                    let x = self.enrich_one(directory.as_deref(), &e, ingested_at);
                    Ok((e, x))
                }
                Err(errors) => Err((*tag, errors)),
            })
            .collect();
        let mut out = DecodedEvents {
            rows: Vec::with_capacity(decoded.len()),
            rejected: Vec::new(),
        };
        for d in decoded {
            match d {
                Ok(row) => out.rows.push(row),
                Err(r) => out.rejected.push(r),
            }
        }
        out
    }
}

/// Raw events through validation and enrichment, in input order.
#[derive(Debug)]
pub struct DecodedEvents<T> {
    pub rows: Vec<(RawEvent, Enrichment)>,
    pub rejected: Vec<(T, ValidationErrors)>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn enriches_from_directory_paths_and_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csv");
        std::fs::write(&path, "principal,kind,team,domain\nalice,user,data-eng,data\nsvc-x,service_account,sre,platform\n").unwrap();
        let e = Enricher::new(&EnrichConfig {
            directory: Some(path),
            ..Default::default()
        })
        .unwrap();
        let ev = |user: Option<&str>, ip: Option<&str>| {
            RawEvent::from_json(&json!({
                "event_id": "1", "occurred_at": 1_795_264_328_500_i64, "service": "s", "action": "a",
                "success": true, "user_id": user, "client_ip": ip, "path": "/api/v1/jobs/12?x=1",
            }))
            .unwrap()
        };
        let events = [
            ev(Some("alice"), Some("203.0.113.5")),
            ev(Some("svc-x"), None),
            ev(Some("mallory"), None),
        ];
        let out = e.enrich_all(events.iter(), 42);
        assert_eq!(out[0].team.as_deref(), Some("data-eng"));
        assert_eq!(out[0].domain.as_deref(), Some("data"));
        assert_eq!(out[0].caller_type, Some("external"));
        assert_eq!(out[0].endpoint.as_deref(), Some("jobs/{id}"));
        assert_eq!(
            out[1].caller_type,
            Some("internal"),
            "directory service account"
        );
        assert_eq!(out[2].team, None);
        assert_eq!(out[2].caller_type, Some("unknown"));
        assert_eq!(out[2].ingested_at, Some(42));
    }
}
