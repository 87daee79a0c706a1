//! What the writer adds to a raw event: endpoint template, caller type, team,
//! domain and ingest time.

pub mod caller;
pub mod directory;
pub mod endpoint;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::{ArrowError, SchemaRef};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sluice_schema::batch::{EnrichmentRef, EventLogsBuilder};
use sluice_schema::directory::DirectoryIndex;
use sluice_schema::raw::RawEvent;
use sluice_schema::validation::ValidationErrors;
use sluice_schema::wire::{self, EventView};

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

    /// Decodes, validates and enriches raw event payloads on every core,
    /// straight into `schema`'s Arrow columns, keeping their order. Each
    /// payload comes with a caller's tag (a line number, a Kafka offset)
    /// that rejected ones are reported under.
    pub fn decode_events<T: Copy + Send + Sync>(
        &self,
        schema: &SchemaRef,
        payloads: &[(T, &[u8])],
        ingested_at: i64,
    ) -> Result<DecodedEvents<T>, ArrowError> {
        let directory = self.directory.as_ref().map(|d| d.current());
        let directory = directory.as_deref();
        // Several chunks per core, so a slow chunk does not idle the others.
        let chunk = payloads
            .len()
            .div_ceil(rayon::current_num_threads() * 4)
            .max(2048);
        let parts: Vec<Result<DecodedEvents<T>, ArrowError>> = payloads
            .par_chunks(chunk)
            .map(|chunk| {
                let bytes: usize = chunk.iter().map(|(_, b)| b.len()).sum();
                let mut builder = EventLogsBuilder::with_capacity(chunk.len(), bytes);
                let mut endpoint = String::new();
                let mut rejected = Vec::new();
                for (tag, payload) in chunk {
                    match wire::decode_event_view(payload) {
                        Some(e) => {
                            let x = self.enrich_view(directory, &e, ingested_at, &mut endpoint);
                            builder.append(&e, &x);
                        }
                        // Not for the fast path: the validator says why (or,
                        // should it accept, the row goes in all the same).
                        None => match RawEvent::validate_json_bytes(payload) {
                            Ok(owned) => {
                                let e = owned.view();
                                let x = self.enrich_view(directory, &e, ingested_at, &mut endpoint);
                                builder.append(&e, &x);
                            }
                            Err(errors) => rejected.push((*tag, errors)),
                        },
                    }
                }
                Ok(DecodedEvents {
                    rows: builder.len(),
                    batches: vec![builder.finish(schema)?],
                    rejected,
                })
            })
            .collect();
        let mut out = DecodedEvents {
            batches: Vec::with_capacity(parts.len()),
            rows: 0,
            rejected: Vec::new(),
        };
        for part in parts {
            let part = part?;
            out.rows += part.rows;
            out.batches
                .extend(part.batches.into_iter().filter(|b| b.num_rows() > 0));
            out.rejected.extend(part.rejected);
        }
        Ok(out)
    }

    fn enrich_view<'s>(
        &self,
        directory: Option<&'s DirectoryIndex>,
        e: &EventView<'_>,
        ingested_at: i64,
        endpoint: &'s mut String,
    ) -> EnrichmentRef<'s> {
        let principal = match (directory, e.user_id.as_deref()) {
            (Some(d), Some(user)) => d.lookup(user),
            _ => None,
        };
        let service_account =
            e.service_account == Some(true) || principal.is_some_and(|p| p.service_account);
        let endpoint = e.path.as_deref().map(|p| {
            self.endpoints.template_into(p, endpoint);
            endpoint.as_str()
        });
        EnrichmentRef {
            endpoint,
            caller_type: Some(self.callers.classify_addr(e.client_addr, service_account)),
            team: principal.map(|p| p.team),
            domain: principal.and_then(|p| p.domain),
            ingested_at: Some(ingested_at),
        }
    }
}

/// Raw events through validation and enrichment, in input order, as Arrow
/// batches of the table's schema (one per decoding chunk).
#[derive(Debug)]
pub struct DecodedEvents<T> {
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    pub rejected: Vec<(T, ValidationErrors)>,
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;
    use serde_json::json;
    use sluice_schema::batch::{Strings, Timestamps, column};
    use sluice_schema::tables::EVENT_LOGS;

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
            json!({
                "event_id": "1", "occurred_at": 1_795_264_328_500_i64, "service": "s", "action": "a",
                "success": true, "user_id": user, "client_ip": ip, "path": "/api/v1/jobs/12?x=1",
            })
            .to_string()
        };
        let events = [
            ev(Some("alice"), Some("203.0.113.5")),
            ev(Some("svc-x"), None),
            ev(Some("mallory"), None),
        ];
        let payloads: Vec<(usize, &[u8])> = events
            .iter()
            .enumerate()
            .map(|(i, e)| (i, e.as_bytes()))
            .collect();
        let schema = Arc::new(EVENT_LOGS.arrow_schema().unwrap());
        let decoded = e.decode_events(&schema, &payloads, 42).unwrap();
        assert!(decoded.rejected.is_empty());
        let b = &decoded.batches[0];
        let text = |name: &str, row: usize| {
            let c = column::<Strings>(b, name).unwrap();
            c.is_valid(row).then(|| c.value(row).to_string())
        };
        assert_eq!(text("team", 0).as_deref(), Some("data-eng"));
        assert_eq!(text("domain", 0).as_deref(), Some("data"));
        assert_eq!(text("caller_type", 0).as_deref(), Some("external"));
        assert_eq!(text("endpoint", 0).as_deref(), Some("jobs/{id}"));
        assert_eq!(
            text("caller_type", 1).as_deref(),
            Some("internal"),
            "directory service account"
        );
        assert_eq!(text("team", 2), None);
        assert_eq!(text("caller_type", 2).as_deref(), Some("unknown"));
        assert_eq!(column::<Timestamps>(b, "ingested_at").unwrap().value(2), 42);
    }
}
