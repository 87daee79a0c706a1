//! Log search across container restarts: a tantivy index derived from the
//! `pod_logs` table (which stays the source of truth; the index can always
//! be rebuilt from it).
//!
//! The index itself (format, indexer, store, searcher) is the
//! `sluice-logindex` crate; here is what the query service adds: choosing,
//! fetching and keeping splits open for requests, the search API's
//! parameters, and restarts (SQL over `platform_events`).

pub mod restarts;
pub use sluice_logindex::{query_lang, search, split, store, terms};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use iceberg::Catalog;

use crate::error::QueryError;
use crate::object_stores::ObjectStores;
use crate::window::parse_instant;
use search::{Cursor, Filters, OpenSplit, SearchRequest, SearchResult, SortOrder};
use store::IndexStore;

/// The search side of the index: chooses splits by their metadata, fetches
/// them into a local cache and keeps them open.
pub struct LogIndex {
    catalog: Arc<dyn Catalog>,
    stores: Arc<ObjectStores>,
    cache_dir: PathBuf,
    store: tokio::sync::OnceCell<IndexStore>,
    open: Mutex<HashMap<String, Arc<OpenSplit>>>,
}

impl LogIndex {
    pub fn new(catalog: Arc<dyn Catalog>, stores: Arc<ObjectStores>, cache_dir: PathBuf) -> Self {
        Self {
            catalog,
            stores,
            cache_dir,
            store: tokio::sync::OnceCell::new(),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The index store of the `pod_logs` table of `catalog`.
    pub async fn store_for(
        catalog: &dyn Catalog,
        stores: &ObjectStores,
    ) -> Result<IndexStore, QueryError> {
        IndexStore::of_catalog(catalog, stores)
            .await
            .map_err(|e| match e {
                store::LocateError::Catalog(e) => QueryError::Catalog(e),
                other => QueryError::Internal(other.to_string()),
            })
    }

    async fn store(&self) -> Result<&IndexStore, QueryError> {
        self.store
            .get_or_try_init(|| Self::store_for(self.catalog.as_ref(), &self.stores))
            .await
    }

    /// The splits that may hold lines in `[from, to)` of `namespace`/`pod`
    /// (by their metadata), fetched into the local cache and opened.
    pub async fn open_splits(
        &self,
        from: Option<i64>,
        to: Option<i64>,
        namespace: Option<&str>,
        pod: Option<&str>,
    ) -> Result<Vec<Arc<OpenSplit>>, QueryError> {
        let store = self.store().await?;
        let state = store
            .load_state()
            .await
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        let mut splits = Vec::new();
        for meta in state.splits {
            if !meta.may_match(from, to, namespace, pod) {
                continue;
            }
            let cached = self
                .open
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&meta.id)
                .cloned();
            let split = match cached {
                Some(s) => s,
                None => {
                    let dir = store
                        .fetch_split(&meta.id, &self.cache_dir)
                        .await
                        .map_err(|e| QueryError::Internal(e.to_string()))?;
                    let id = meta.id.clone();
                    let opened = tokio::task::spawn_blocking(move || OpenSplit::open(meta, &dir))
                        .await
                        .map_err(|e| QueryError::Internal(e.to_string()))?
                        .map_err(|e| QueryError::Internal(format!("opening split {id}: {e}")))?;
                    let opened = Arc::new(opened);
                    self.open
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(id, opened.clone());
                    opened
                }
            };
            splits.push(split);
        }
        Ok(splits)
    }

    /// Runs a search; `namespace`/`pod` filters and the time range choose
    /// the splits.
    pub async fn search(&self, req: SearchRequest) -> Result<SearchResult, QueryError> {
        let f = &req.filters;
        let splits = self
            .open_splits(f.from, f.to, f.namespace.as_deref(), f.pod.as_deref())
            .await?;
        crate::isolation::blocking(move || {
            let refs: Vec<&OpenSplit> = splits.iter().map(|s| s.as_ref()).collect();
            search::search(&refs, &req)
        })
        .await?
        .map_err(|e| {
            if crate::isolation::current_scope().is_some_and(|s| s.token.is_cancelled()) {
                QueryError::Cancelled
            } else {
                QueryError::Internal(format!("search: {e}"))
            }
        })
    }
}

/// The parameters of `GET /v1/logs/search` (and the CLI).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    pub q: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub restart: Option<String>,
    pub stream: Option<String>,
    pub level: Option<String>,
    pub node: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<String>,
    pub order: Option<String>,
    pub context: Option<String>,
    pub cursor: Option<String>,
}

/// Most hits per page.
pub const MAX_LIMIT: usize = 5000;
/// Most context lines on each side of a hit.
pub const MAX_CONTEXT: usize = 100;

impl SearchParams {
    pub fn request(&self, now: DateTime<Utc>) -> Result<SearchRequest, QueryError> {
        let bad = |m: String| QueryError::BadRequest(m);
        let q = query_lang::parse(self.q.as_deref().unwrap_or(""))
            .map_err(|e| bad(format!("q: {e}")))?;
        let time = |name: &str, v: &Option<String>| -> Result<Option<i64>, QueryError> {
            v.as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| {
                    parse_instant(s, now)
                        .map(|t| t.timestamp_micros())
                        .map_err(|e| bad(format!("{name}: {e}")))
                })
                .transpose()
        };
        let from = time("from", &self.from)?;
        let to = time("to", &self.to)?;
        if let (Some(f), Some(t)) = (from, to)
            && f >= t
        {
            return Err(bad("from must be before to".into()));
        }
        let restart = self
            .restart
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|r| {
                r.parse::<i64>()
                    .ok()
                    .filter(|r| *r >= 0)
                    .ok_or_else(|| bad(format!("restart must be a number ≥ 0, got {r:?}")))
            })
            .transpose()?;
        let limit = crate::params::parse_limit(self.limit.as_deref(), 100, MAX_LIMIT)?;
        let context = match self.context.as_deref().filter(|s| !s.is_empty()) {
            None => 0,
            Some(c) => c
                .parse::<usize>()
                .ok()
                .filter(|c| *c <= MAX_CONTEXT)
                .ok_or_else(|| bad(format!("context must be 0–{MAX_CONTEXT}, got {c:?}")))?,
        };
        let order = match self.order.as_deref() {
            None | Some("") | Some("desc") => SortOrder::Desc,
            Some("asc") => SortOrder::Asc,
            Some(o) => return Err(bad(format!("order must be desc or asc, got {o:?}"))),
        };
        let cursor = self
            .cursor
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|c| {
                Cursor::decode(c)
                    .ok_or_else(|| bad(format!("cursor {c:?} is not one this service gave")))
            })
            .transpose()?;
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Ok(SearchRequest {
            q,
            filters: Filters {
                namespace: nonempty(&self.namespace),
                pod: nonempty(&self.pod),
                pod_uid: None,
                container: nonempty(&self.container),
                restart,
                stream: nonempty(&self.stream),
                level: nonempty(&self.level),
                node: nonempty(&self.node),
                from,
                to,
            },
            limit,
            order,
            cursor,
            context,
            // A search runs inside the query's isolation scope: stopped
            // between splits once the query is cancelled (timeout, shutdown).
            cancelled: || crate::isolation::cancel::check().is_err(),
        })
    }
}
