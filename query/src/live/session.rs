//! One open tail: its first lines (the index's newest joined with the
//! replay, by `line_id`), then the live stream read at its own pace into a
//! bounded buffer its connection drains. A client that does not keep up
//! loses lines, is told which (`dropped`), and is cut off past
//! `[tail] max_dropped`. When a container it follows ends or its next
//! instance starts, the tail says so.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::Notify;

use super::filter::LiveFilter;
use super::hub::{Item, LiveHub, TailPermit, Termination};
use crate::logsearch::search::LogLine;

/// What a tail sends, in order.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TailEvent {
    /// Lines in order per container instance; `backfill`: from before the
    /// tail opened.
    Lines { backfill: bool, lines: Vec<LogLine> },
    /// A followed container's next instance wrote its first line.
    Restart {
        namespace: String,
        pod: String,
        container: String,
        restart: i64,
        /// How the instance before it ended, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        previous: Option<Termination>,
    },
    /// A followed container instance ended.
    Ended(Termination),
    /// Lines this client did not keep up with (the first few listed).
    Dropped {
        count: u64,
        entries: Vec<DroppedEntry>,
    },
    /// The tail fell behind the replay: this many messages were missed.
    Behind { skipped_messages: u64 },
    /// The server closes the tail (`slow`, `shutdown`).
    Closed { reason: String },
}

/// A line dropped for a client: which stream and when.
#[derive(Debug, Clone, Serialize)]
pub struct DroppedEntry {
    pub ts: i64,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub restart: i64,
    pub stream: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Dropped lines listed per report; the rest are only counted.
const DROPPED_LISTED: usize = 1000;
/// Line ids remembered to drop a line seen twice (the seam, redeliveries).
const IDS_KEPT: usize = 50_000;
/// Containers whose newest instance a tail remembers.
const INSTANCES_KEPT: usize = 4096;
/// Messages read from the hub at once.
const READ_BATCH: usize = 64;

#[derive(Default)]
struct Outbox {
    events: VecDeque<TailEvent>,
    /// When the oldest line waiting was published (delivery latency).
    oldest: Option<Instant>,
    lines: usize,
    bytes: usize,
    dropped: u64,
    dropped_entries: Vec<DroppedEntry>,
    dropped_total: u64,
    closed: Option<String>,
    /// The client's side went away.
    gone: bool,
}

/// A batch for the connection to write.
pub struct Batch {
    pub events: Vec<TailEvent>,
    pub published: Option<Instant>,
    pub lines: usize,
}

struct Shared {
    outbox: Mutex<Outbox>,
    /// `sluice_tail_buffered_lines`.
    buffered: prometheus_client::metrics::gauge::Gauge,
    ready: Notify,
    max_lines: usize,
    max_bytes: usize,
}

impl Shared {
    fn with<T>(&self, f: impl FnOnce(&mut Outbox) -> T) -> Option<T> {
        let mut o = self.outbox.lock().ok()?;
        Some(f(&mut o))
    }

    fn push(&self, event: TailEvent) {
        self.with(|o| o.events.push_back(event));
        self.ready.notify_one();
    }

    /// Queues lines, dropping (and noting) those past the buffer's bound.
    fn push_lines(&self, lines: Vec<LogLine>, published: Instant, backfill: bool) -> u64 {
        let dropped = self
            .with(|o| {
                let mut kept = Vec::with_capacity(lines.len());
                let mut dropped = 0;
                for l in lines {
                    let size = l.message.len() + 64;
                    if !backfill && (o.lines >= self.max_lines || o.bytes + size > self.max_bytes) {
                        dropped += 1;
                        o.dropped += 1;
                        o.dropped_total += 1;
                        if o.dropped_entries.len() < DROPPED_LISTED {
                            o.dropped_entries.push(DroppedEntry {
                                ts: l.ts,
                                namespace: l.namespace,
                                pod: l.pod,
                                container: l.container,
                                restart: l.restart,
                                stream: l.stream,
                                level: l.level,
                                node: l.node,
                            });
                        }
                        continue;
                    }
                    o.lines += 1;
                    o.bytes += size;
                    kept.push(l);
                }
                // An empty backfill is sent too: it says the live lines begin.
                if !kept.is_empty() || backfill {
                    self.buffered.inc_by(kept.len() as i64);
                    o.oldest.get_or_insert(published);
                    match o.events.back_mut() {
                        Some(TailEvent::Lines { backfill: b, lines }) if *b == backfill => {
                            lines.extend(kept)
                        }
                        _ => o.events.push_back(TailEvent::Lines {
                            backfill,
                            lines: kept,
                        }),
                    }
                }
                dropped
            })
            .unwrap_or(0);
        self.ready.notify_one();
        dropped
    }

    fn close(&self, reason: &str) {
        self.with(|o| {
            if o.closed.is_none() {
                o.closed = Some(reason.to_string());
            }
        });
        self.ready.notify_one();
    }
}

/// Line ids seen, the oldest forgotten first.
#[derive(Default)]
struct SeenIds {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl SeenIds {
    /// Whether `id` is new (and remembers it).
    fn insert(&mut self, id: &str) -> bool {
        if self.set.contains(id) {
            return false;
        }
        self.set.insert(id.to_string());
        self.order.push_back(id.to_string());
        if self.order.len() > IDS_KEPT
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}

/// The tail's memory of what it has sent: line ids, and each container's
/// newest instance (to notice the next one).
struct Seam {
    seen: SeenIds,
    instances: lru::LruCache<(String, String, String), i64>,
}

impl Seam {
    fn new() -> Self {
        Self {
            seen: SeenIds::default(),
            instances: lru::LruCache::new(
                std::num::NonZeroUsize::new(INSTANCES_KEPT).unwrap_or(std::num::NonZeroUsize::MIN),
            ),
        }
    }

    /// A new instance's notice if `l` starts one (and remembers `l`'s).
    fn restart_of(&mut self, hub: &LiveHub, l: &LogLine) -> Option<TailEvent> {
        let key = (l.namespace.clone(), l.pod.clone(), l.container.clone());
        let before = self.instances.get(&key).copied();
        if before.is_none_or(|b| l.restart > b) {
            self.instances.put(key, l.restart);
        }
        let before = before.filter(|b| l.restart > *b)?;
        let previous = hub
            .termination(&l.namespace, &l.pod, &l.container)
            .filter(|t| t.restart.is_none_or(|r| r >= before && r < l.restart))
            .map(|t| (*t).clone());
        Some(TailEvent::Restart {
            namespace: l.namespace.clone(),
            pod: l.pod.clone(),
            container: l.container.clone(),
            restart: l.restart,
            previous,
        })
    }
}

/// Joins the index's newest lines with the replay's: each line once (by
/// `line_id`), the newest `limit` of them. The replay's lines keep the
/// order they were read in (file order, per container instance); the
/// index's older lines come before them, by time.
pub fn join(
    backfill: Vec<LogLine>,
    replay: Vec<LogLine>,
    limit: usize,
) -> (Vec<LogLine>, Vec<String>) {
    let in_replay: HashSet<&str> = replay.iter().map(|l| l.line_id.as_str()).collect();
    let mut older: Vec<LogLine> = backfill
        .into_iter()
        .filter(|l| !in_replay.contains(l.line_id.as_str()))
        .collect();
    older.sort_by_key(|l| (l.ts, l.byte_offset.unwrap_or(0)));
    let mut ids = HashSet::new();
    let mut all: Vec<LogLine> = Vec::with_capacity(older.len() + replay.len());
    for l in older.into_iter().chain(replay) {
        if ids.insert(l.line_id.clone()) {
            all.push(l);
        }
    }
    let skip = all.len().saturating_sub(limit);
    let seen = all.iter().map(|l| l.line_id.clone()).collect();
    (all.split_off(skip), seen)
}

/// An open tail: read [`Tail::next`] until it returns `None`.
pub struct Tail {
    shared: Arc<Shared>,
    reader: tokio::task::JoinHandle<()>,
    hub: Arc<LiveHub>,
    _permit: TailPermit,
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.reader.abort();
        let waiting = self
            .shared
            .with(|o| std::mem::take(&mut o.lines))
            .unwrap_or(0);
        self.shared.buffered.dec_by(waiting as i64);
    }
}

/// Where a tail starts: the replay's extent when it opened.
pub struct Start {
    pub from: u64,
    pub head: u64,
}

impl Start {
    pub fn now(hub: &LiveHub) -> Self {
        Self {
            from: hub.oldest(),
            head: hub.head(),
        }
    }
}

impl Tail {
    /// Opens a tail whose backfill is `backfill` (the index's newest lines
    /// the filter keeps), joined with what the replay held at `start`.
    pub async fn open(
        hub: Arc<LiveHub>,
        permit: TailPermit,
        filter: LiveFilter,
        start: Start,
        backfill: Vec<LogLine>,
        limit: usize,
    ) -> Self {
        let config = hub.config().clone();
        let shared = Arc::new(Shared {
            outbox: Mutex::new(Outbox::default()),
            buffered: hub.metrics.buffered_lines.clone(),
            ready: Notify::new(),
            max_lines: config.client_buffer_lines.max(1),
            max_bytes: (config.client_buffer_mib.max(1) << 20) as usize,
        });
        let needle = filter.needle();
        // Reading the replay parses up to [tail] replay_mib of JSON: off the
        // runtime's threads, which serve health checks and the writers.
        let (filter, first, seen_ids) = {
            let (hub, needle) = (hub.clone(), needle.clone());
            tokio::task::spawn_blocking(move || {
                let mut filter = filter;
                let mut cursor = start.from;
                let mut replay = Vec::new();
                loop {
                    let read = hub.read(&mut cursor, start.head, READ_BATCH);
                    if read.items.is_empty() {
                        break;
                    }
                    for (item, _) in read.items {
                        if let Item::PodLogs(p) = item {
                            replay.extend(filter.lines_of(&p, needle.as_deref()));
                        }
                    }
                }
                let backfill: Vec<LogLine> =
                    backfill.into_iter().filter(|l| filter.keeps(l)).collect();
                let (first, seen_ids) = join(backfill, replay, limit);
                (filter, first, seen_ids)
            })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        };
        let mut seam = Seam::new();
        for id in &seen_ids {
            seam.seen.insert(id);
        }
        for l in &first {
            seam.restart_of(&hub, l);
        }
        hub.metrics.lines_sent.inc_by(first.len() as u64);
        shared.push_lines(first, Instant::now(), true);
        let reader = tokio::spawn(follow(
            hub.clone(),
            shared.clone(),
            filter,
            seam,
            start.head,
            needle,
            config.max_dropped,
        ));
        Self {
            shared,
            reader,
            hub,
            _permit: permit,
        }
    }

    /// The next events to write, waiting for some; `None` once closed and
    /// written. A closing `Closed` event comes last.
    pub async fn next(&self) -> Option<Batch> {
        loop {
            let notified = self.shared.ready.notified();
            let taken = self.shared.with(|o| {
                let mut events: Vec<TailEvent> = o.events.drain(..).collect();
                if o.dropped > 0 {
                    events.push(TailEvent::Dropped {
                        count: o.dropped,
                        entries: std::mem::take(&mut o.dropped_entries),
                    });
                    o.dropped = 0;
                }
                let lines = o.lines;
                self.shared.buffered.dec_by(lines as i64);
                let published = o.oldest.take();
                o.lines = 0;
                o.bytes = 0;
                if events.is_empty() {
                    if let Some(reason) = o.closed.take() {
                        o.gone = true;
                        return Some(Batch {
                            events: vec![TailEvent::Closed { reason }],
                            published: None,
                            lines: 0,
                        });
                    }
                    return None;
                }
                Some(Batch {
                    events,
                    published,
                    lines,
                })
            })?;
            match taken {
                Some(b) => return Some(b),
                None => {
                    if self.shared.with(|o| o.gone).unwrap_or(true) {
                        return None;
                    }
                    notified.await;
                }
            }
        }
    }

    /// How long one write may wait for the client (`[tail] write_timeout_secs`).
    pub fn write_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.hub.config().write_timeout_secs.max(1))
    }

    /// Records what a batch cost once written.
    pub fn written(&self, batch: &Batch) {
        let m = &self.hub.metrics;
        if let Some(p) = batch.published {
            m.delivery_seconds.observe(p.elapsed().as_secs_f64());
        }
        m.lines_sent.inc_by(batch.lines as u64);
    }

    /// Ends the tail from the connection's side (`slow`: a write did not
    /// finish in time).
    pub fn end(&self, reason: &str) {
        self.hub.metrics.disconnected(reason);
        self.shared.with(|o| o.gone = true);
    }
}

async fn follow(
    hub: Arc<LiveHub>,
    shared: Arc<Shared>,
    mut filter: LiveFilter,
    mut seam: Seam,
    mut cursor: u64,
    needle: Option<String>,
    max_dropped: u64,
) {
    loop {
        hub.published_beyond(cursor).await;
        if hub.closed().is_cancelled() {
            hub.metrics.disconnected("shutdown");
            shared.close("shutdown");
            return;
        }
        if shared.with(|o| o.gone).unwrap_or(true) {
            return;
        }
        let read = hub.read(&mut cursor, u64::MAX, READ_BATCH);
        if read.skipped > 0 {
            shared.push(TailEvent::Behind {
                skipped_messages: read.skipped,
            });
        }
        for (item, at) in read.items {
            match item {
                Item::PodLogs(p) => {
                    let mut batch = Vec::new();
                    for l in filter.lines_of(&p, needle.as_deref()) {
                        if !seam.seen.insert(&l.line_id) {
                            continue;
                        }
                        if let Some(notice) = seam.restart_of(&hub, &l) {
                            if !batch.is_empty() {
                                let n = shared.push_lines(std::mem::take(&mut batch), at, false);
                                hub.metrics.dropped.inc_by(n);
                            }
                            shared.push(notice);
                        }
                        batch.push(l);
                    }
                    let n = shared.push_lines(batch, at, false);
                    hub.metrics.dropped.inc_by(n);
                }
                Item::Ended(t) => {
                    if filter.follows(&t) {
                        shared.push(TailEvent::Ended((*t).clone()));
                    }
                }
            }
        }
        if shared.with(|o| o.dropped_total).unwrap_or(0) > max_dropped {
            hub.metrics.disconnected("slow");
            shared.close("slow: more lines were dropped than [tail] max_dropped allows");
            return;
        }
        // Many tails share the runtime: one reading a burst yields.
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(ts: i64, id: &str) -> LogLine {
        LogLine {
            ts,
            namespace: "n".into(),
            pod: "p".into(),
            pod_uid: "u".into(),
            container: "c".into(),
            restart: 0,
            stream: "stdout".into(),
            level: None,
            node: None,
            message: id.into(),
            line_id: id.into(),
            byte_offset: Some(ts),
        }
    }

    #[test]
    fn the_join_keeps_each_line_once_and_the_newest_limit() {
        let index = vec![l(1, "a"), l(2, "b"), l(3, "c")];
        let replay = vec![l(2, "b"), l(3, "c"), l(4, "d"), l(5, "e")];
        let (first, seen) = join(index, replay, 3);
        let ids: Vec<&str> = first.iter().map(|l| l.line_id.as_str()).collect();
        assert_eq!(ids, ["c", "d", "e"]);
        assert_eq!(seen.len(), 5, "older ids are still remembered");
    }
}
