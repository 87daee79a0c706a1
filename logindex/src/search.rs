//! Running a log search over a set of splits: one query per split, exact
//! totals, hits merged newest (or oldest) first, a cursor for the next page,
//! and context lines from the same container instance.

use std::cmp::Ordering;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use serde::{Deserialize, Serialize};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery};
use tantivy::schema::IndexRecordOption;
use tantivy::{DocAddress, Index, IndexReader, ReloadPolicy, Searcher, SegmentReader};

pub use crate::hit_columns::LogLine;
use crate::hit_columns::{ByTime, ColumnCache, SegmentLines};
use crate::query_lang::Expr;
use crate::split::{LogFields, SplitMeta, register_tokenizer};

/// An opened split.
pub struct OpenSplit {
    pub meta: SplitMeta,
    reader: IndexReader,
    fields: LogFields,
    /// Where its opened hit columns are kept, under `key`.
    columns: Arc<ColumnCache>,
    key: u64,
}

impl OpenSplit {
    /// A split unpacked in a local directory, its opened columns kept in
    /// `columns`.
    pub fn open(
        meta: SplitMeta,
        dir: &std::path::Path,
        columns: Arc<ColumnCache>,
    ) -> tantivy::Result<Self> {
        Self::open_index(meta, Index::open_in_dir(dir)?, columns)
    }

    /// A split read in place (on a thread that may block: what the hotcache
    /// does not hold is fetched), its opened columns kept in `columns`.
    pub fn open_in_place(
        meta: SplitMeta,
        directory: crate::split_directory::SplitDirectory,
        columns: Arc<ColumnCache>,
    ) -> tantivy::Result<Self> {
        Self::open_index(meta, Index::open(directory)?, columns)
    }

    fn open_index(
        meta: SplitMeta,
        index: Index,
        columns: Arc<ColumnCache>,
    ) -> tantivy::Result<Self> {
        static NEXT_KEY: AtomicU64 = AtomicU64::new(0);
        register_tokenizer(&index);
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            meta,
            reader,
            fields: LogFields::new(),
            columns,
            key: NEXT_KEY.fetch_add(1, AtomicOrdering::Relaxed),
        })
    }

    /// The hit columns of one of its segments, opened once.
    fn segment_lines(&self, reader: &SegmentReader) -> tantivy::Result<Arc<SegmentLines>> {
        self.columns.get_or_open(self.key, reader)
    }

    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    pub fn fields(&self) -> &LogFields {
        &self.fields
    }
}

impl Drop for OpenSplit {
    fn drop(&mut self) {
        self.columns.forget(self.key);
    }
}

/// Newest first (the default) or oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    Desc,
    Asc,
}

/// Where the previous page ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub ts: i64,
    pub line_id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        format!("{}_{}", self.ts, self.line_id)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (ts, id) = text.split_once('_')?;
        Some(Self {
            ts: ts.parse().ok()?,
            line_id: id.to_string(),
        })
    }
}

/// Exact-match filters besides `q`.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub pod_uid: Option<String>,
    pub container: Option<String>,
    pub restart: Option<i64>,
    pub stream: Option<String>,
    pub level: Option<String>,
    pub node: Option<String>,
    /// Epoch microseconds, inclusive.
    pub from: Option<i64>,
    /// Epoch microseconds, exclusive.
    pub to: Option<i64>,
    /// Only lines of these namespaces (a tenant's, resolved against the
    /// splits' namespaces); empty: none at all.
    pub namespace_in: Option<Vec<String>>,
}

impl Filters {
    /// The exact-match label filters, each with the field it matches.
    fn labels<'a>(
        &'a self,
        fields: &LogFields,
    ) -> [(tantivy::schema::Field, &'a Option<String>); 7] {
        [
            (fields.namespace, &self.namespace),
            (fields.pod, &self.pod),
            (fields.pod_uid, &self.pod_uid),
            (fields.container, &self.container),
            (fields.stream, &self.stream),
            (fields.level, &self.level),
            (fields.node, &self.node),
        ]
    }

    /// Whether a split with this metadata can hold a line these filters match
    /// (from the metadata alone: nothing is fetched).
    pub fn may_match(&self, meta: &SplitMeta) -> bool {
        let f = self;
        if f.from.is_some_and(|from| meta.max_ts < from) || f.to.is_some_and(|to| meta.min_ts >= to)
        {
            return false;
        }
        if let Some(ns) = &f.namespace
            && !meta.namespaces.contains(ns)
        {
            return false;
        }
        if let Some(allowed) = &f.namespace_in
            && !allowed.iter().any(|ns| meta.namespaces.contains(ns))
        {
            return false;
        }
        if let Some(pod) = &f.pod {
            let found = match &f.namespace {
                Some(ns) => meta.pods.contains(&format!("{ns}/{pod}")),
                None => meta
                    .pods
                    .iter()
                    .any(|p| p.rsplit_once('/').is_some_and(|(_, p)| p == pod)),
            };
            if !found {
                return false;
            }
        }
        // Splits written before these were kept say nothing about them.
        if let Some(c) = &f.container
            && !meta.containers.is_empty()
            && !meta.containers.contains(c)
        {
            return false;
        }
        if let (Some(r), Some((lo, hi))) = (f.restart, meta.restarts)
            && (r < lo || r > hi)
        {
            return false;
        }
        true
    }
}

#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub q: Expr,
    pub filters: Filters,
    pub limit: usize,
    pub order: SortOrder,
    pub cursor: Option<Cursor>,
    pub context: usize,
    /// Asked between splits and lines; [`never_cancelled`] when nothing
    /// cancels.
    pub cancelled: CancelCheck,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    #[serde(flatten)]
    pub line: LogLine,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub before: Vec<LogLine>,
    pub after: Vec<LogLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResult {
    /// Every line that matches (all pages).
    pub total: u64,
    pub hits: Vec<Hit>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
    /// Splits opened / splits in the index.
    pub splits_searched: usize,
}

fn term_text(f: tantivy::schema::Field, text: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        tantivy::Term::from_field_text(f, text),
        IndexRecordOption::Basic,
    ))
}

fn term_i64(f: tantivy::schema::Field, v: i64) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        tantivy::Term::from_field_i64(f, v),
        IndexRecordOption::Basic,
    ))
}

/// The term a `field:value` asks for; `None` matches nothing (an unknown
/// field, or a restart that is not a number).
fn field_term(fields: &LogFields, name: &str, value: &str) -> Option<tantivy::Term> {
    if name == "restart" {
        let v = value.parse::<i64>().ok()?;
        return Some(tantivy::Term::from_field_i64(fields.restart, v));
    }
    Some(tantivy::Term::from_field_text(fields.exact(name)?, value))
}

/// The tantivy query of an expression.
pub fn expr_query(fields: &LogFields, e: &Expr) -> Box<dyn Query> {
    match e {
        Expr::All => Box::new(AllQuery),
        Expr::Word(w) => Box::new(TermQuery::new(
            tantivy::Term::from_field_text(fields.message, w),
            IndexRecordOption::WithFreqs,
        )),
        Expr::Phrase(words) => Box::new(PhraseQuery::new(
            words
                .iter()
                .map(|w| tantivy::Term::from_field_text(fields.message, w))
                .collect(),
        )),
        Expr::Field(name, value) => match field_term(fields, name, value) {
            Some(t) => Box::new(TermQuery::new(t, IndexRecordOption::Basic)),
            None => Box::new(BooleanQuery::new(vec![])),
        },
        Expr::And(parts) => Box::new(BooleanQuery::new(
            parts
                .iter()
                .map(|p| match p {
                    Expr::Not(inner) => (Occur::MustNot, expr_query(fields, inner)),
                    other => (Occur::Must, expr_query(fields, other)),
                })
                .chain(std::iter::once((
                    Occur::Must,
                    Box::new(AllQuery) as Box<dyn Query>,
                )))
                .collect(),
        )),
        Expr::Or(parts) => Box::new(BooleanQuery::new(
            parts
                .iter()
                .map(|p| (Occur::Should, expr_query(fields, p)))
                .collect(),
        )),
        Expr::Not(inner) => Box::new(BooleanQuery::new(vec![
            (Occur::Must, Box::new(AllQuery)),
            (Occur::MustNot, expr_query(fields, inner)),
        ])),
    }
}

fn ts_range(fields: &LogFields, from: Bound<i64>, to: Bound<i64>) -> Box<dyn Query> {
    let term = |v| tantivy::Term::from_field_i64(fields.ts, v);
    Box::new(RangeQuery::new(from.map(term), to.map(term)))
}

/// Which lines relative to the cursor's time a query takes.
#[derive(Clone, Copy)]
enum AtCursor {
    /// Ignore the cursor (exact totals).
    Ignore,
    /// Strictly past the cursor's time.
    Beyond,
    /// Exactly at the cursor's time (told apart by line id afterwards).
    Same,
}

/// `q` and the filters, bounded by the cursor as `at` says.
fn full_query(fields: &LogFields, req: &SearchRequest, at: AtCursor) -> Box<dyn Query> {
    let f = &req.filters;
    let mut parts: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, expr_query(fields, &req.q))];
    for (field, value) in f.labels(fields) {
        if let Some(v) = value {
            parts.push((Occur::Must, term_text(field, v)));
        }
    }
    if let Some(r) = f.restart {
        parts.push((Occur::Must, term_i64(fields.restart, r)));
    }
    if let Some(allowed) = &f.namespace_in {
        // No namespace allowed: a BooleanQuery without clauses matches nothing.
        let any: Vec<(Occur, Box<dyn Query>)> = allowed
            .iter()
            .map(|ns| (Occur::Should, term_text(fields.namespace, ns)))
            .collect();
        parts.push((Occur::Must, Box::new(BooleanQuery::new(any))));
    }
    let mut lo = f.from.map_or(Bound::Unbounded, Bound::Included);
    let mut hi = f.to.map_or(Bound::Unbounded, Bound::Excluded);
    if let Some(c) = &req.cursor {
        match (at, req.order) {
            (AtCursor::Ignore, _) => {}
            (AtCursor::Beyond, SortOrder::Desc) => hi = tighter_hi(hi, Bound::Excluded(c.ts)),
            (AtCursor::Beyond, SortOrder::Asc) => lo = tighter_lo(lo, Bound::Excluded(c.ts)),
            (AtCursor::Same, _) => {
                parts.push((
                    Occur::Must,
                    ts_range(fields, Bound::Included(c.ts), Bound::Included(c.ts)),
                ));
            }
        }
    }
    if !(matches!(lo, Bound::Unbounded) && matches!(hi, Bound::Unbounded)) {
        parts.push((Occur::Must, ts_range(fields, lo, hi)));
    }
    Box::new(BooleanQuery::new(parts))
}

fn tighter_hi(hi: Bound<i64>, bound: Bound<i64>) -> Bound<i64> {
    let key = |b: &Bound<i64>| match b {
        Bound::Included(v) => (*v, 1),
        Bound::Excluded(v) => (*v, 0),
        Bound::Unbounded => (i64::MAX, 2),
    };
    if key(&bound) < key(&hi) { bound } else { hi }
}

fn tighter_lo(lo: Bound<i64>, bound: Bound<i64>) -> Bound<i64> {
    let key = |b: &Bound<i64>| match b {
        Bound::Included(v) => (*v, 0),
        Bound::Excluded(v) => (*v, 1),
        Bound::Unbounded => (i64::MIN, -1),
    };
    if key(&bound) > key(&lo) { bound } else { lo }
}

/// The order of hits, the same the cursor pages by: time, then line id.
fn compare(order: SortOrder, a: &LogLine, b: &LogLine) -> Ordering {
    fn key(l: &LogLine) -> (i64, &str) {
        (l.ts, l.line_id.as_str())
    }
    match order {
        SortOrder::Desc => key(b).cmp(&key(a)),
        SortOrder::Asc => key(a).cmp(&key(b)),
    }
}

/// Whether `line` comes strictly after the cursor in this order.
fn past_cursor(order: SortOrder, cursor: &Cursor, line: &LogLine) -> bool {
    match order {
        SortOrder::Desc => (line.ts, &line.line_id) < (cursor.ts, &cursor.line_id),
        SortOrder::Asc => (line.ts, &line.line_id) > (cursor.ts, &cursor.line_id),
    }
}

/// Fetches what a search of `req` will read in `split`, concurrently: the
/// postings of its terms (with positions for phrases), then — if the split
/// may match — the `ts` column (time ranges and the order of hits) and,
/// when hits are read, the columns they come from. A split read in place
/// then answers the search from the cache; without the warm-up each read
/// would be a round trip of its own, one after the other.
///
/// Whether the split may match: `false` when its dictionaries lack terms
/// the query needs, and then nothing more is fetched and the search can
/// leave the split out (over 7 days most splits hold no line with a rare
/// term, and their columns were most of what a cold search fetched).
/// Always `true` when context lines are asked for: they may come from a
/// split that does not match.
pub async fn warm_up(split: &OpenSplit, req: &SearchRequest) -> tantivy::Result<bool> {
    let fields = LogFields::new();
    let query = full_query(&fields, req, AtCursor::Ignore);
    let mut terms: Vec<(tantivy::Term, bool)> = Vec::new();
    query.query_terms(&mut |t, positions| terms.push((t.clone(), positions)));
    let searcher = split.searcher();
    let mut found: std::collections::HashSet<tantivy::Term> = std::collections::HashSet::new();
    for segment in searcher.segment_readers() {
        let mut lookups = Vec::new();
        for (term, positions) in &terms {
            let inverted = segment.inverted_index(term.field())?;
            let positions = *positions;
            lookups.push(async move {
                let present = inverted.warm_postings(term, positions).await?;
                Ok::<_, std::io::Error>((term, present))
            });
        }
        for (term, present) in futures::future::try_join_all(lookups).await? {
            if present {
                found.insert(term.clone());
            }
        }
    }
    if req.context == 0 && !may_match(&fields, req, &|t| found.contains(t)) {
        return Ok(false);
    }
    // The columns hits are read from, or only the time's.
    let columns: &[&str] = if req.limit > 0 || req.context > 0 {
        &crate::hit_columns::COLUMNS
    } else {
        &["ts"]
    };
    let mut reads: Vec<futures::future::BoxFuture<'_, std::io::Result<()>>> = Vec::new();
    for segment in searcher.segment_readers() {
        for name in columns {
            for handle in segment
                .fast_fields()
                .list_dynamic_column_handles(name)
                .await?
            {
                reads.push(Box::pin(async move {
                    handle.file_slice().read_bytes_async().await.map(|_| ())
                }));
            }
        }
    }
    futures::future::try_join_all(reads).await?;
    Ok(true)
}

/// Whether a split whose dictionaries hold the terms `present` says may
/// have lines matching `req` (what [`full_query`] asks, the time left out):
/// a term query needs its term, a phrase all of its words, `AND` all of its
/// positive parts, `OR` one of its parts; `NOT` rules nothing out.
fn may_match(
    fields: &LogFields,
    req: &SearchRequest,
    present: &dyn Fn(&tantivy::Term) -> bool,
) -> bool {
    use tantivy::Term;
    fn expr(fields: &LogFields, e: &Expr, present: &dyn Fn(&Term) -> bool) -> bool {
        match e {
            Expr::All | Expr::Not(_) => true,
            Expr::Word(w) => present(&Term::from_field_text(fields.message, w)),
            Expr::Phrase(words) => words
                .iter()
                .all(|w| present(&Term::from_field_text(fields.message, w))),
            Expr::Field(name, value) => {
                field_term(fields, name, value).is_some_and(|t| present(&t))
            }
            Expr::And(parts) => parts.iter().all(|p| expr(fields, p, present)),
            Expr::Or(parts) => parts.iter().any(|p| expr(fields, p, present)),
        }
    }
    let f = &req.filters;
    expr(fields, &req.q, present)
        && f.labels(fields).iter().all(|(field, value)| {
            value
                .as_ref()
                .is_none_or(|v| present(&Term::from_field_text(*field, v)))
        })
        && f.restart
            .is_none_or(|r| present(&Term::from_field_i64(fields.restart, r)))
        && f.namespace_in.as_ref().is_none_or(|allowed| {
            allowed
                .iter()
                .any(|ns| present(&Term::from_field_text(fields.namespace, ns)))
        })
}

/// The `limit` first lines matching `query` across `splits` in `order`
/// (time, then line id): each split's first `limit` by time, merged by time,
/// and only those read (ties at the cut read too, to order them by id).
fn top_lines(
    splits: &[&OpenSplit],
    query: &dyn Query,
    order: SortOrder,
    limit: usize,
    cancelled: CancelCheck,
) -> tantivy::Result<Vec<LogLine>> {
    Ok(counted_top_lines(splits, query, order, limit, cancelled)?.1)
}

/// How many lines match `query` across `splits`, and the `limit` first
/// (as [`top_lines`]): one pass over each split's matches for both (each
/// pass looks its terms up in the dictionaries and opens its time range's
/// column again).
fn counted_top_lines(
    splits: &[&OpenSplit],
    query: &dyn Query,
    order: SortOrder,
    limit: usize,
    cancelled: CancelCheck,
) -> tantivy::Result<(u64, Vec<LogLine>)> {
    let mut total = 0u64;
    if limit == 0 {
        for split in splits {
            stop_if(cancelled)?;
            total += split.searcher().search(query, &Count)? as u64;
        }
        return Ok((total, Vec::new()));
    }
    let mut found: Vec<(i64, usize, DocAddress)> = Vec::new();
    for (i, split) in splits.iter().enumerate() {
        stop_if(cancelled)?;
        let searcher = split.searcher();
        // By time, from the split's opened `ts` columns.
        let mut columns = Vec::new();
        for reader in searcher.segment_readers() {
            columns.push((
                reader.segment_id(),
                split.segment_lines(reader)?.ts().clone(),
            ));
        }
        let by_time = ByTime {
            columns,
            oldest_first: order == SortOrder::Asc,
        };
        let time_of = |key| ByTime::time_of(order == SortOrder::Asc, key);
        let (count, top) = searcher.search(
            query,
            &(Count, TopDocs::with_limit(limit).order_by(by_time)),
        )?;
        total += count as u64;
        found.extend(top.into_iter().map(|(key, addr)| (time_of(key), i, addr)));
    }
    match order {
        SortOrder::Desc => found.sort_by_key(|f| std::cmp::Reverse(f.0)),
        SortOrder::Asc => found.sort_by_key(|f| f.0),
    }
    if found.len() > limit {
        let cut = found[limit - 1].0;
        let mut end = limit;
        while end < found.len() && found[end].0 == cut {
            end += 1;
        }
        found.truncate(end);
    }
    let mut out = load_lines(splits, &found, cancelled)?;
    out.sort_by(|a, b| compare(order, a, b));
    Ok((total, out))
}

/// Reads the lines at `found`; on several threads when there are many, so
/// a split read in place fetches their doc-store blocks concurrently.
fn load_lines(
    splits: &[&OpenSplit],
    found: &[(i64, usize, DocAddress)],
    cancelled: CancelCheck,
) -> tantivy::Result<Vec<LogLine>> {
    let searchers: Vec<Searcher> = splits.iter().map(|s| s.searcher()).collect();
    let mut columns: std::collections::HashMap<(usize, u32), Arc<SegmentLines>> =
        std::collections::HashMap::new();
    for (_, i, addr) in found {
        if let std::collections::hash_map::Entry::Vacant(v) = columns.entry((*i, addr.segment_ord))
        {
            stop_if(cancelled)?;
            v.insert(splits[*i].segment_lines(searchers[*i].segment_reader(addr.segment_ord))?);
        }
    }
    let fields = LogFields::new();
    let load = |chunk: &[(i64, usize, DocAddress)]| -> tantivy::Result<Vec<LogLine>> {
        chunk
            .iter()
            .map(|(_, i, addr)| {
                let lines = columns.get(&(*i, addr.segment_ord)).ok_or_else(|| {
                    tantivy::TantivyError::InternalError("a hit's segment was not opened".into())
                })?;
                lines.load(&fields, &searchers[*i], *addr)
            })
            .collect()
    };
    const PER_THREAD: usize = 16;
    const THREADS: usize = 8;
    if found.len() <= PER_THREAD {
        return load(found);
    }
    stop_if(cancelled)?;
    let chunk = found.len().div_ceil(THREADS).max(PER_THREAD);
    std::thread::scope(|scope| {
        let handles: Vec<_> = found
            .chunks(chunk)
            .map(|c| scope.spawn(move || load(c)))
            .collect();
        let mut out = Vec::with_capacity(found.len());
        for h in handles {
            out.extend(h.join().map_err(|_| {
                tantivy::TantivyError::InternalError("reading hits panicked".into())
            })??);
        }
        Ok(out)
    })
}

/// Whether the search's query was cancelled: asked between splits. The
/// caller's (the query service's isolation), so this crate knows nothing of
/// how queries are cancelled.
pub type CancelCheck = fn() -> bool;

/// Never cancelled.
pub fn never_cancelled() -> bool {
    false
}

fn stop_if(cancelled: CancelCheck) -> tantivy::Result<()> {
    if cancelled() {
        return Err(tantivy::TantivyError::InternalError(
            "the query was cancelled".into(),
        ));
    }
    Ok(())
}

/// Runs a search over `splits` (already chosen by their metadata).
pub fn search(splits: &[&OpenSplit], req: &SearchRequest) -> tantivy::Result<SearchResult> {
    let fields = LogFields::new();
    let counted = full_query(&fields, req, AtCursor::Ignore);
    let (total, mut lines) = match &req.cursor {
        None => counted_top_lines(
            splits,
            counted.as_ref(),
            req.order,
            req.limit,
            req.cancelled,
        )?,
        Some(c) => {
            let mut total = 0u64;
            for split in splits {
                stop_if(req.cancelled)?;
                total += split.searcher().search(counted.as_ref(), &Count)? as u64;
            }
            // Every line sharing the cursor's time (however many), then the
            // first `limit` past it.
            let same = full_query(&fields, req, AtCursor::Same);
            let mut at_ts = 0;
            for split in splits {
                at_ts += split.searcher().search(same.as_ref(), &Count)?;
            }
            let mut lines = top_lines(splits, same.as_ref(), req.order, at_ts, req.cancelled)?;
            lines.retain(|l| past_cursor(req.order, c, l));
            let beyond = full_query(&fields, req, AtCursor::Beyond);
            lines.extend(top_lines(
                splits,
                beyond.as_ref(),
                req.order,
                req.limit,
                req.cancelled,
            )?);
            lines.sort_by(|a, b| compare(req.order, a, b));
            (total, lines)
        }
    };
    lines.truncate(req.limit);
    let next_cursor = (lines.len() == req.limit && req.limit > 0).then(|| {
        let last = &lines[lines.len() - 1];
        Cursor {
            ts: last.ts,
            line_id: last.line_id.clone(),
        }
        .encode()
    });
    let mut hits = Vec::with_capacity(lines.len());
    for line in lines {
        stop_if(req.cancelled)?;
        let context = if req.context > 0 {
            Some(context_of(splits, &line, req.context, req.cancelled)?)
        } else {
            None
        };
        hits.push(Hit { line, context });
    }
    Ok(SearchResult {
        total,
        hits,
        next_cursor,
        splits_searched: splits.len(),
    })
}

/// `n` lines before and after `line` in its container instance.
pub fn context_of(
    splits: &[&OpenSplit],
    line: &LogLine,
    n: usize,
    cancelled: CancelCheck,
) -> tantivy::Result<Context> {
    let fields = LogFields::new();
    let instance = |bound_lo: Bound<i64>, bound_hi: Bound<i64>| -> Box<dyn Query> {
        Box::new(BooleanQuery::new(vec![
            (Occur::Must, term_text(fields.pod_uid, &line.pod_uid)),
            (Occur::Must, term_text(fields.container, &line.container)),
            (Occur::Must, term_i64(fields.restart, line.restart)),
            (Occur::Must, ts_range(&fields, bound_lo, bound_hi)),
        ]))
    };
    let key = |l: &LogLine| (l.ts, l.byte_offset.unwrap_or(0), l.line_id.clone());
    let me = key(line);
    // Only the splits that hold this pod's lines on the right side of the
    // line's time.
    let pod = format!("{}/{}", line.namespace, line.pod);
    let of_pod = |s: &&&OpenSplit| s.meta.pods.is_empty() || s.meta.pods.contains(&pod);
    let earlier: Vec<&OpenSplit> = splits
        .iter()
        .filter(of_pod)
        .filter(|s| s.meta.min_ts <= line.ts)
        .copied()
        .collect();
    let later: Vec<&OpenSplit> = splits
        .iter()
        .filter(of_pod)
        .filter(|s| s.meta.max_ts >= line.ts)
        .copied()
        .collect();
    let mut before = top_lines(
        &earlier,
        instance(Bound::Unbounded, Bound::Included(line.ts)).as_ref(),
        SortOrder::Desc,
        n + 64,
        cancelled,
    )?;
    before.retain(|l| key(l) < me);
    before.truncate(n);
    before.reverse();
    let mut after = top_lines(
        &later,
        instance(Bound::Included(line.ts), Bound::Unbounded).as_ref(),
        SortOrder::Asc,
        n + 64,
        cancelled,
    )?;
    after.retain(|l| key(l) > me);
    after.truncate(n);
    Ok(Context { before, after })
}

#[cfg(test)]
#[path = "search_tests.rs"]
mod tests;
