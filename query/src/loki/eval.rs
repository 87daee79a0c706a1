//! Evaluating LogQL over the index's splits.
//!
//! A stream selector becomes a tantivy query for what the index can decide
//! (`label="value"`, the time range, the words a `|=` filter must contain)
//! and exact checks after it: every matcher is checked once per stream (its
//! label values come from fast fields), every line filter on the line
//! itself. The index only narrows; the checks decide, so answers are exact.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, RangeQuery, RegexQuery, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Value as _};
use tantivy::store::StoreReader;
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader, TantivyDocument};

use super::logql::{
    BinOp, FilterOp, Grouping, LineFilter, LogSelector, MatchOp, Matcher, MetricExpr, RangeFn,
    STREAM_LABELS,
};
use crate::logsearch::search::OpenSplit;
use crate::logsearch::split::LogFields;
use crate::logsearch::terms::{CUT_WORD_MARKER, MAX_WORD_BYTES, words};

/// A stream's labels (absent labels are left out).
pub type Labels = BTreeMap<String, String>;

/// What the index can decide for a selector, and what must be checked after.
struct Plan {
    query: Box<dyn Query>,
    checks: Arc<Checks>,
}

struct Checks {
    matchers: Vec<Matcher>,
    filters: Vec<LineFilter>,
}

fn term_query(field: Field, text: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        tantivy::Term::from_field_text(field, text),
        IndexRecordOption::Basic,
    ))
}

fn nothing() -> Box<dyn Query> {
    Box::new(BooleanQuery::new(vec![]))
}

/// Whether `c` ends a word (see `terms`): only then is the word next to it
/// in a filter text a whole word of every line that contains the text.
fn bounds_word(c: Option<char>) -> bool {
    c.is_some_and(|c| !c.is_alphanumeric() && !matches!(c, '-' | '.' | '/' | ':' | '_'))
}

/// The index terms a line containing `text` must have: for each word of
/// `text`, the word itself when `text` delimits it on both sides, else any
/// term containing it (or a cut word, which may hide it).
fn contains_query(fields: &LogFields, text: &str) -> Vec<Box<dyn Query>> {
    let mut out = Vec::new();
    for (start, word) in words(text) {
        if !word.is_ascii() || word.len() > MAX_WORD_BYTES {
            continue;
        }
        let lower = word.to_ascii_lowercase();
        let before = text[..start].chars().next_back();
        let after = text[start + word.len()..].chars().next();
        if bounds_word(before) && bounds_word(after) {
            out.push(term_query(fields.message, &lower));
            continue;
        }
        let pattern = format!(".*{}.*", regex::escape(&lower));
        match RegexQuery::from_pattern(&pattern, fields.message) {
            Ok(q) => out.push(Box::new(BooleanQuery::new(vec![
                (Occur::Should, Box::new(q) as Box<dyn Query>),
                (Occur::Should, term_query(fields.message, CUT_WORD_MARKER)),
            ]))),
            // Not narrowing is always correct: the check after decides.
            Err(_) => continue,
        }
    }
    out
}

fn plan(fields: &LogFields, sel: &LogSelector, from: Bound<i64>, to: Bound<i64>) -> Plan {
    let mut parts: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for m in &sel.matchers {
        let known = STREAM_LABELS.contains(&m.label.as_str());
        if !known {
            // A label no stream has is empty on every stream.
            if !m.matches_empty() {
                parts.push((Occur::Must, nothing()));
            }
            continue;
        }
        if m.op != MatchOp::Eq || m.value.is_empty() {
            continue;
        }
        if m.label == "restart" {
            match m.value.parse::<i64>() {
                Ok(r) => parts.push((
                    Occur::Must,
                    Box::new(TermQuery::new(
                        tantivy::Term::from_field_i64(fields.restart, r),
                        IndexRecordOption::Basic,
                    )),
                )),
                Err(_) => parts.push((Occur::Must, nothing())),
            }
        } else if let Some(f) = fields.exact(&m.label) {
            parts.push((Occur::Must, term_query(f, &m.value)));
        }
    }
    for f in &sel.filters {
        if f.op == FilterOp::Contains {
            parts.extend(
                contains_query(fields, &f.value)
                    .into_iter()
                    .map(|q| (Occur::Must, q)),
            );
        }
    }
    if !(matches!(from, Bound::Unbounded) && matches!(to, Bound::Unbounded)) {
        let term = |v| tantivy::Term::from_field_i64(fields.ts, v);
        parts.push((
            Occur::Must,
            Box::new(RangeQuery::new(from.map(term), to.map(term))),
        ));
    }
    let query: Box<dyn Query> = if parts.is_empty() {
        Box::new(AllQuery)
    } else {
        Box::new(BooleanQuery::new(parts))
    };
    Plan {
        query,
        checks: Arc::new(Checks {
            matchers: sel.matchers.clone(),
            filters: sel.filters.clone(),
        }),
    }
}

/// What a scan keeps of the lines that pass.
#[derive(Debug, Clone, Copy)]
enum Keep {
    /// The `limit` newest (or oldest) lines.
    Top { limit: usize, newest: bool },
    /// Every line's time and size, by stream.
    Points,
    /// Lines and bytes by stream.
    Totals,
}

const STR_LABELS: [&str; 6] = ["namespace", "pod", "container", "stream", "level", "node"];

struct ScanCollector {
    checks: Arc<Checks>,
    keep: Keep,
    message: Field,
}

#[derive(Default)]
struct StreamAcc {
    labels: Labels,
    passes: bool,
    lines: u64,
    bytes: u64,
    points: Vec<(i64, u64)>,
}

/// A line kept by a `Top` scan; ordered so the heap's top is the one to drop.
#[derive(PartialEq, Eq)]
struct TopLine {
    key: i64,
    doc: DocId,
    stream: u32,
}

impl Ord for TopLine {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.key, self.doc).cmp(&(other.key, other.doc))
    }
}

impl PartialOrd for TopLine {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

struct SegmentScan {
    checks: Arc<Checks>,
    keep: Keep,
    segment: SegmentOrdinal,
    ts: Column<i64>,
    restart: Column<i64>,
    bytes: Option<Column<u64>>,
    strs: Vec<Option<StrColumn>>,
    store: Option<StoreReader>,
    message: Field,
    stream_of: HashMap<[u64; 7], u32>,
    streams: Vec<StreamAcc>,
    top: BinaryHeap<TopLine>,
    error: Option<String>,
    /// Documents collected, to look at the query's token now and then.
    seen: u32,
}

/// The error a segment scan stops with once its query is cancelled.
const CANCELLED: &str = "cancelled";

struct SegmentFruit {
    segment: SegmentOrdinal,
    streams: Vec<StreamAcc>,
    top: Vec<TopLine>,
    error: Option<String>,
}

impl Collector for ScanCollector {
    type Fruit = Vec<SegmentFruit>;
    type Child = SegmentScan;

    fn for_segment(
        &self,
        segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentScan> {
        let ff = reader.fast_fields();
        let mut strs = Vec::with_capacity(STR_LABELS.len());
        for name in STR_LABELS {
            strs.push(ff.str(name)?);
        }
        let store = if self.checks.filters.is_empty() {
            None
        } else {
            Some(reader.get_store_reader(16)?)
        };
        Ok(SegmentScan {
            checks: self.checks.clone(),
            keep: self.keep,
            segment,
            ts: ff.i64("ts")?,
            restart: ff.i64("restart")?,
            bytes: ff.column_opt::<u64>("bytes")?,
            strs,
            store,
            message: self.message,
            stream_of: HashMap::new(),
            streams: Vec::new(),
            top: BinaryHeap::new(),
            seen: 0,
            error: None,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<SegmentFruit>) -> tantivy::Result<Vec<SegmentFruit>> {
        Ok(fruits)
    }
}

impl SegmentScan {
    fn stream(&mut self, doc: DocId) -> Result<u32, String> {
        let mut key = [u64::MAX; 7];
        for (i, col) in self.strs.iter().enumerate() {
            if let Some(c) = col
                && let Some(ord) = c.ords().first(doc)
            {
                key[i] = ord;
            }
        }
        key[6] = self.restart.first(doc).map_or(u64::MAX, |r| r as u64);
        if let Some(&s) = self.stream_of.get(&key) {
            return Ok(s);
        }
        let mut labels = Labels::new();
        for (i, name) in STR_LABELS.iter().enumerate() {
            if key[i] == u64::MAX {
                continue;
            }
            let Some(col) = &self.strs[i] else { continue };
            let mut value = String::new();
            col.ord_to_str(key[i], &mut value)
                .map_err(|e| format!("reading {name}: {e}"))?;
            if !value.is_empty() {
                labels.insert(name.to_string(), value);
            }
        }
        if let Some(r) = self.restart.first(doc) {
            labels.insert("restart".to_string(), r.to_string());
        }
        let passes = self
            .checks
            .matchers
            .iter()
            .all(|m| m.matches(labels.get(&m.label).map_or("", String::as_str)));
        let id = self.streams.len() as u32;
        self.streams.push(StreamAcc {
            labels,
            passes,
            ..Default::default()
        });
        self.stream_of.insert(key, id);
        Ok(id)
    }

    fn line_passes(&self, doc: DocId) -> Result<bool, String> {
        let Some(store) = &self.store else {
            return Ok(true);
        };
        let d: TantivyDocument = store.get(doc).map_err(|e| format!("reading a line: {e}"))?;
        let line = d
            .get_first(self.message)
            .and_then(|v| v.as_str())
            .unwrap_or("");
        Ok(self.checks.filters.iter().all(|f| f.keeps(line)))
    }

    fn collect_doc(&mut self, doc: DocId) -> Result<(), String> {
        let stream = self.stream(doc)?;
        if !self.streams[stream as usize].passes {
            return Ok(());
        }
        let ts = self.ts.first(doc).unwrap_or_default();
        if let Keep::Top { limit, newest } = self.keep {
            // The heap's top is the line to drop next: the oldest when the
            // newest are kept.
            let key = if newest { -ts } else { ts };
            if limit == 0 {
                return Ok(());
            }
            if self.top.len() >= limit && self.top.peek().is_some_and(|w| w.key <= key) {
                return Ok(());
            }
            if !self.line_passes(doc)? {
                return Ok(());
            }
            self.top.push(TopLine { key, doc, stream });
            if self.top.len() > limit {
                self.top.pop();
            }
            return Ok(());
        }
        if !self.line_passes(doc)? {
            return Ok(());
        }
        let bytes = self.bytes.as_ref().and_then(|b| b.first(doc)).unwrap_or(0);
        let acc = &mut self.streams[stream as usize];
        acc.lines += 1;
        acc.bytes += bytes;
        if let Keep::Points = self.keep {
            acc.points.push((ts, bytes));
        }
        Ok(())
    }
}

impl SegmentCollector for SegmentScan {
    type Fruit = SegmentFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        if self.error.is_some() {
            return;
        }
        self.seen = self.seen.wrapping_add(1);
        if self.seen.is_multiple_of(4096) && crate::isolation::cancel::check().is_err() {
            self.error = Some(CANCELLED.to_string());
            return;
        }
        if let Err(e) = self.collect_doc(doc) {
            self.error = Some(e);
        }
    }

    fn harvest(self) -> SegmentFruit {
        SegmentFruit {
            segment: self.segment,
            streams: self.streams,
            top: self.top.into_vec(),
            error: self.error,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("search: {0}")]
    Index(String),
    #[error("{0}")]
    Limit(String),
    #[error("the query was cancelled")]
    Cancelled,
}

impl From<crate::isolation::cancel::Cancelled> for EvalError {
    fn from(_: crate::isolation::cancel::Cancelled) -> Self {
        EvalError::Cancelled
    }
}

impl From<tantivy::TantivyError> for EvalError {
    fn from(e: tantivy::TantivyError) -> Self {
        EvalError::Index(e.to_string())
    }
}

fn scan(
    splits: &[Arc<OpenSplit>],
    sel: &LogSelector,
    from: Bound<i64>,
    to: Bound<i64>,
    keep: Keep,
) -> Result<Vec<(usize, SegmentFruit)>, EvalError> {
    let mut out = Vec::new();
    for (i, split) in splits.iter().enumerate() {
        crate::isolation::cancel::check()?;
        let fields = split.fields();
        let plan = plan(fields, sel, from, to);
        let collector = ScanCollector {
            checks: plan.checks.clone(),
            keep,
            message: fields.message,
        };
        for fruit in split.searcher().search(plan.query.as_ref(), &collector)? {
            if let Some(e) = &fruit.error {
                if e == CANCELLED {
                    return Err(EvalError::Cancelled);
                }
                return Err(EvalError::Index(e.clone()));
            }
            out.push((i, fruit));
        }
    }
    Ok(out)
}

/// One stream's lines, in the order asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    pub labels: Labels,
    /// (epoch nanoseconds, line).
    pub entries: Vec<(i64, String)>,
    /// Each entry's `line_id` (the live tail joins its backfill by them).
    pub line_ids: Vec<String>,
}

/// The `limit` newest (or oldest) lines matching `sel` in `[from, to)`,
/// grouped by stream.
pub fn select_lines(
    splits: &[Arc<OpenSplit>],
    sel: &LogSelector,
    from_us: i64,
    to_us: i64,
    limit: usize,
    newest: bool,
) -> Result<Vec<Stream>, EvalError> {
    let fruits = scan(
        splits,
        sel,
        Bound::Included(from_us),
        Bound::Excluded(to_us),
        Keep::Top { limit, newest },
    )?;
    let mut candidates: Vec<(i64, usize, SegmentOrdinal, DocId, &Labels)> = Vec::new();
    for (split, fruit) in &fruits {
        for t in &fruit.top {
            candidates.push((
                t.key,
                *split,
                fruit.segment,
                t.doc,
                &fruit.streams[t.stream as usize].labels,
            ));
        }
    }
    candidates.sort_by_key(|c| (c.0, c.1, c.2, c.3));
    candidates.truncate(limit);
    // Per stream: its entries and their line ids.
    type Entries = (Vec<(i64, String)>, Vec<String>);
    let mut by_stream: BTreeMap<&Labels, Entries> = BTreeMap::new();
    for (key, split, segment, doc, labels) in candidates {
        let s = &splits[split];
        let d: TantivyDocument = s.searcher().doc(DocAddress::new(segment, doc))?;
        let text = |field| {
            d.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let ts_us = if newest { -key } else { key };
        let (entries, ids) = by_stream.entry(labels).or_default();
        entries.push((ts_us.saturating_mul(1000), text(s.fields().message)));
        ids.push(text(s.fields().line_id));
    }
    Ok(by_stream
        .into_iter()
        .map(|(labels, (entries, line_ids))| Stream {
            labels: labels.clone(),
            entries,
            line_ids,
        })
        .collect())
}

/// Lines and bytes per stream matching `sel` in `[from, to)`.
pub struct StreamTotal {
    pub labels: Labels,
    pub lines: u64,
    pub bytes: u64,
}

pub fn totals(
    splits: &[Arc<OpenSplit>],
    sel: &LogSelector,
    from_us: i64,
    to_us: i64,
) -> Result<(Vec<StreamTotal>, usize), EvalError> {
    let fruits = scan(
        splits,
        sel,
        Bound::Included(from_us),
        Bound::Excluded(to_us),
        Keep::Totals,
    )?;
    let mut merged: BTreeMap<Labels, (u64, u64)> = BTreeMap::new();
    let mut splits_with_lines = BTreeSet::new();
    for (split, fruit) in fruits {
        for s in fruit.streams {
            if s.passes && s.lines > 0 {
                splits_with_lines.insert(split);
                let e = merged.entry(s.labels).or_default();
                e.0 += s.lines;
                e.1 += s.bytes;
            }
        }
    }
    Ok((
        merged
            .into_iter()
            .map(|(labels, (lines, bytes))| StreamTotal {
                labels,
                lines,
                bytes,
            })
            .collect(),
        splits_with_lines.len(),
    ))
}

/// The evaluation times of a metric query: `start, start+step, …, ≤ end`.
#[derive(Debug, Clone, Copy)]
pub struct Steps {
    pub start_us: i64,
    pub end_us: i64,
    pub step_us: i64,
}

impl Steps {
    pub fn times(&self) -> impl Iterator<Item = i64> + '_ {
        let step = self.step_us.max(1);
        (0..)
            .map_while(move |k: i64| k.checked_mul(step)?.checked_add(self.start_us))
            .take_while(|t| *t <= self.end_us)
    }
}

/// A series of (time µs, value) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<Series>),
}

fn apply(op: BinOp, a: f64, b: f64) -> f64 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
    }
}

fn range_series(
    splits: &[Arc<OpenSplit>],
    func: RangeFn,
    sel: &LogSelector,
    range_us: i64,
    steps: Steps,
) -> Result<Vec<Series>, EvalError> {
    // A point at t counts the lines in (t - range, t].
    let fruits = scan(
        splits,
        sel,
        Bound::Excluded(steps.start_us.saturating_sub(range_us)),
        Bound::Included(steps.end_us),
        Keep::Points,
    )?;
    let mut merged: BTreeMap<Labels, Vec<(i64, u64)>> = BTreeMap::new();
    for (_, fruit) in fruits {
        for s in fruit.streams {
            if s.passes && !s.points.is_empty() {
                merged.entry(s.labels).or_default().extend(s.points);
            }
        }
    }
    let seconds = range_us as f64 / 1e6;
    let mut out = Vec::with_capacity(merged.len());
    for (labels, mut points) in merged {
        points.sort_unstable();
        let mut prefix = Vec::with_capacity(points.len() + 1);
        prefix.push(0u64);
        for (_, b) in &points {
            prefix.push(prefix[prefix.len() - 1] + b);
        }
        let upto = |t: i64| points.partition_point(|(ts, _)| *ts <= t);
        let mut series = Vec::new();
        for t in steps.times() {
            let (lo, hi) = (upto(t.saturating_sub(range_us)), upto(t));
            if hi == lo {
                continue;
            }
            let lines = (hi - lo) as f64;
            let bytes = (prefix[hi] - prefix[lo]) as f64;
            let v = match func {
                RangeFn::CountOverTime => lines,
                RangeFn::Rate => lines / seconds,
                RangeFn::BytesOverTime => bytes,
                RangeFn::BytesRate => bytes / seconds,
            };
            series.push((t, v));
        }
        if !series.is_empty() {
            out.push(Series {
                labels,
                points: series,
            });
        }
    }
    Ok(out)
}

fn group(labels: &Labels, grouping: &Option<Grouping>) -> Labels {
    match grouping {
        None => Labels::new(),
        Some(Grouping::By(keep)) => labels
            .iter()
            .filter(|(k, _)| keep.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Some(Grouping::Without(drop)) => labels
            .iter()
            .filter(|(k, _)| !drop.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// Evaluates a metric expression at every step.
pub fn eval(
    splits: &[Arc<OpenSplit>],
    expr: &MetricExpr,
    steps: Steps,
) -> Result<Value, EvalError> {
    Ok(match expr {
        MetricExpr::Literal(v) => Value::Scalar(*v),
        MetricExpr::Vector(v) => Value::Vector(vec![Series {
            labels: Labels::new(),
            points: steps.times().map(|t| (t, *v)).collect(),
        }]),
        MetricExpr::Range {
            func,
            selector,
            range_us,
        } => Value::Vector(range_series(splits, *func, selector, *range_us, steps)?),
        MetricExpr::Sum { grouping, inner } => {
            let series = match eval(splits, inner, steps)? {
                Value::Scalar(_) => {
                    return Err(EvalError::Limit(
                        "sum expects a vector, got a scalar".to_string(),
                    ));
                }
                Value::Vector(s) => s,
            };
            let mut sums: BTreeMap<Labels, BTreeMap<i64, f64>> = BTreeMap::new();
            for s in series {
                let g = sums.entry(group(&s.labels, grouping)).or_default();
                for (t, v) in s.points {
                    *g.entry(t).or_default() += v;
                }
            }
            Value::Vector(
                sums.into_iter()
                    .map(|(labels, points)| Series {
                        labels,
                        points: points.into_iter().collect(),
                    })
                    .collect(),
            )
        }
        MetricExpr::Binary { op, lhs, rhs } => {
            match (eval(splits, lhs, steps)?, eval(splits, rhs, steps)?) {
                (Value::Scalar(a), Value::Scalar(b)) => Value::Scalar(apply(*op, a, b)),
                (Value::Vector(mut a), Value::Scalar(b)) => {
                    for s in &mut a {
                        for p in &mut s.points {
                            p.1 = apply(*op, p.1, b);
                        }
                    }
                    Value::Vector(a)
                }
                (Value::Scalar(a), Value::Vector(mut b)) => {
                    for s in &mut b {
                        for p in &mut s.points {
                            p.1 = apply(*op, a, p.1);
                        }
                    }
                    Value::Vector(b)
                }
                (Value::Vector(a), Value::Vector(b)) => {
                    // One-to-one matching on identical label sets.
                    let right: HashMap<&Labels, &Series> =
                        b.iter().map(|s| (&s.labels, s)).collect();
                    let mut out = Vec::new();
                    for l in &a {
                        let Some(r) = right.get(&l.labels) else {
                            continue;
                        };
                        let rp: BTreeMap<i64, f64> = r.points.iter().copied().collect();
                        let points: Vec<(i64, f64)> = l
                            .points
                            .iter()
                            .filter_map(|(t, v)| rp.get(t).map(|w| (*t, apply(*op, *v, *w))))
                            .collect();
                        if !points.is_empty() {
                            out.push(Series {
                                labels: l.labels.clone(),
                                points,
                            });
                        }
                    }
                    Value::Vector(out)
                }
            }
        }
    })
}

/// Label names with at least one value in `splits` (no query given).
pub fn label_names(splits: &[Arc<OpenSplit>]) -> Result<BTreeSet<String>, EvalError> {
    let mut names = BTreeSet::new();
    for split in splits {
        let searcher = split.searcher();
        if split.meta.lines > 0 {
            names.insert("restart".to_string());
        }
        for name in STR_LABELS {
            if names.contains(name) {
                continue;
            }
            let Some(field) = split.fields().exact(name) else {
                continue;
            };
            for seg in searcher.segment_readers() {
                let inv = seg.inverted_index(field)?;
                let mut stream = inv
                    .terms()
                    .stream()
                    .map_err(|e| EvalError::Index(e.to_string()))?;
                let mut found = false;
                while stream.advance() {
                    if !stream.key().is_empty() {
                        found = true;
                        break;
                    }
                }
                if found {
                    names.insert(name.to_string());
                    break;
                }
            }
        }
    }
    Ok(names)
}

/// The values of one label in `splits` (no query given).
pub fn label_values(splits: &[Arc<OpenSplit>], name: &str) -> Result<BTreeSet<String>, EvalError> {
    let mut values = BTreeSet::new();
    for split in splits {
        let searcher = split.searcher();
        let field = if name == "restart" {
            split.fields().restart
        } else {
            match split.fields().exact(name) {
                Some(f) if STR_LABELS.contains(&name) => f,
                _ => return Ok(values),
            }
        };
        for seg in searcher.segment_readers() {
            let inv = seg.inverted_index(field)?;
            let mut stream = inv
                .terms()
                .stream()
                .map_err(|e| EvalError::Index(e.to_string()))?;
            while stream.advance() {
                let key = stream.key();
                if name == "restart" {
                    if let Ok(bytes) = <[u8; 8]>::try_from(key) {
                        values.insert(tantivy::u64_to_i64(u64::from_be_bytes(bytes)).to_string());
                    }
                } else if !key.is_empty() {
                    values.insert(String::from_utf8_lossy(key).into_owned());
                }
            }
        }
    }
    Ok(values)
}
