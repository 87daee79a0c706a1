//! Log search across container restarts: a tantivy index derived from the
//! `pod_logs` table (which stays the source of truth; the index can always
//! be rebuilt from it).
//!
//! The index itself (format, indexer, store, searcher) is the
//! `sluice-logindex` crate; here is what the query service adds: choosing,
//! fetching and keeping splits open for requests, the search API's
//! parameters, and restarts (SQL over `platform_events`).

pub mod restarts;
pub use sluice_logindex::{hit_columns, query_lang, range_cache, search, split, store, terms};

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use iceberg::Catalog;

use crate::error::QueryError;
use crate::object_stores::ObjectStores;
use crate::window::parse_instant;
use hit_columns::ColumnCache;
use range_cache::RangeCache;
use search::{Cursor, Filters, OpenSplit, SearchRequest, SearchResult, SortOrder};
use split::{OLDEST_SEARCHABLE_SCHEMA_VERSION, SplitMeta};
use store::IndexStore;

/// Splits opened (footer and hotcache fetched) at once for one request.
const OPEN_CONCURRENCY: usize = 8;
/// Splits kept open (their footer and hotcache in memory, typically tens to
/// hundreds of KB each); the least recently searched is closed past it.
pub const MAX_OPEN_SPLITS: usize = 1024;

/// The search side of the index: chooses splits by their metadata and
/// searches them in place on the object store, through a bounded cache of
/// the ranges read. An opened split (its footer and hotcache) stays open
/// while the index lists it, up to [`MAX_OPEN_SPLITS`] least recently used
/// first out.
pub struct LogIndex {
    catalog: Arc<dyn Catalog>,
    stores: Arc<ObjectStores>,
    cache: Arc<RangeCache>,
    /// The open splits' opened columns, bounded in bytes.
    columns: Arc<ColumnCache>,
    store: tokio::sync::OnceCell<IndexStore>,
    open: Mutex<lru::LruCache<String, Arc<OpenSplit>>>,
}

impl LogIndex {
    pub fn new(
        catalog: Arc<dyn Catalog>,
        stores: Arc<ObjectStores>,
        cache: Arc<RangeCache>,
        columns_bytes: u64,
    ) -> Self {
        Self {
            catalog,
            stores,
            cache,
            columns: Arc::new(ColumnCache::new(columns_bytes)),
            store: tokio::sync::OnceCell::new(),
            open: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(MAX_OPEN_SPLITS).unwrap_or(std::num::NonZeroUsize::MIN),
            )),
        }
    }

    pub fn cache(&self) -> &Arc<RangeCache> {
        &self.cache
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

    /// The splits that may hold lines the filters match (by their metadata:
    /// time range, namespace, pod, container, restart), opened in place.
    pub async fn open_splits(&self, filters: &Filters) -> Result<Vec<Arc<OpenSplit>>, QueryError> {
        Ok(self.open_scoped(filters).await?.0)
    }

    /// [`Self::open_splits`], and the filters as the query's tenant (if
    /// any) narrows them: its namespaces among those the index holds, so a
    /// split without them is not opened and a line outside them not found.
    async fn open_scoped(
        &self,
        filters: &Filters,
    ) -> Result<(Vec<Arc<OpenSplit>>, Filters), QueryError> {
        let store = self.store().await?;
        let state = store
            .load_state()
            .await
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        if let Some(old) = state
            .splits
            .iter()
            .find(|s| s.schema_version < OLDEST_SEARCHABLE_SCHEMA_VERSION)
        {
            return Err(QueryError::Unavailable(format!(
                "the log index holds splits of format {} (split {}), which this version cannot \
                 search; the indexer (`sluice index`, or `sluice up`) rebuilds it on start — \
                 search answers once it has",
                old.schema_version, old.id
            )));
        }
        self.forget_unlisted(&state.splits);
        let mut filters = filters.clone();
        if let Some(tenant) = crate::isolation::current_scope().and_then(|s| s.tenant) {
            let owned = tenant.own(state.splits.iter().flat_map(|m| m.namespaces.iter()));
            filters.namespace_in = Some(owned.into_iter().collect());
        }
        let wanted: Vec<SplitMeta> = state
            .splits
            .into_iter()
            .filter(|m| filters.may_match(m))
            .collect();
        let splits = futures::stream::iter(wanted)
            .map(|meta| self.open_split(store, meta))
            .buffered(OPEN_CONCURRENCY)
            .try_collect()
            .await?;
        Ok((splits, filters))
    }

    /// Drops the open splits (and their cached blocks) the index no longer
    /// lists: merged or expired.
    fn forget_unlisted(&self, listed: &[SplitMeta]) {
        let listed: HashSet<&str> = listed.iter().map(|m| m.id.as_str()).collect();
        let gone: Vec<String> = {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<String> = open
                .iter()
                .map(|(id, _)| id)
                .filter(|id| !listed.contains(id.as_str()))
                .cloned()
                .collect();
            for id in &gone {
                open.pop(id);
            }
            gone
        };
        for id in gone {
            self.cache.forget_split(&id);
        }
    }

    async fn open_split(
        &self,
        store: &IndexStore,
        meta: SplitMeta,
    ) -> Result<Arc<OpenSplit>, QueryError> {
        if let Some(s) = self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&meta.id)
        {
            return Ok(s.clone());
        }
        let id = meta.id.clone();
        let columns = self.columns.clone();
        let directory = store
            .open_split(&meta, self.cache.clone())
            .await
            .map_err(|e| QueryError::Internal(e.to_string()))?;
        let opened =
            tokio::task::spawn_blocking(move || OpenSplit::open_in_place(meta, directory, columns))
                .await
                .map_err(|e| QueryError::Internal(e.to_string()))?
                .map_err(|e| QueryError::Internal(format!("opening split {id}: {e}")))?;
        let opened = Arc::new(opened);
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(id, opened.clone());
        Ok(opened)
    }

    /// Runs a search; the filters and the time range choose the splits,
    /// whose needed ranges are fetched concurrently before the search reads
    /// them.
    pub async fn search(&self, req: SearchRequest) -> Result<SearchResult, QueryError> {
        let mut req = req;
        let (splits, filters) = self.open_scoped(&req.filters).await?;
        req.filters = filters;
        let opened = splits.len();
        // Splits whose dictionaries rule the query out are left out (and
        // nothing more of them fetched).
        let mut matching = Vec::with_capacity(splits.len());
        for chunk in splits.chunks(OPEN_CONCURRENCY) {
            let may = futures::future::try_join_all(chunk.iter().map(|s| search::warm_up(s, &req)))
                .await
                .map_err(|e| QueryError::Internal(format!("search: fetching split ranges: {e}")))?;
            matching.extend(
                chunk
                    .iter()
                    .zip(may)
                    .filter(|(_, m)| *m)
                    .map(|(s, _)| s.clone()),
            );
        }
        let mut result = crate::isolation::blocking(move || {
            let refs: Vec<&OpenSplit> = matching.iter().map(|s| s.as_ref()).collect();
            search::search(&refs, &req)
        })
        .await?
        .map_err(|e| {
            if crate::isolation::current_scope().is_some_and(|s| s.token.is_cancelled()) {
                QueryError::Cancelled
            } else {
                QueryError::Internal(format!("search: {e}"))
            }
        })?;
        result.splits_searched = opened;
        Ok(result)
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
                namespace_in: None,
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
