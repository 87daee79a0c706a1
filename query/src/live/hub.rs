//! The live stream: pod-log messages and container terminations as the
//! pipeline hands them to its writers, before the table commit. The
//! embedded pipeline publishes here from its tailer; with Kafka a consumer
//! outside the writers' group does (started with the first tail). Each
//! message is kept for `replay_secs` (and at most `replay_mib`), so a new
//! tail can join the index's lines without a gap, and every open tail reads
//! at its own pace from its own position. Publishing never waits: it runs
//! on the ingestion path, and a slow tail only loses its own lines.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::metrics::TailMetrics;
use crate::config::TailConfig;

/// How a container instance ended, from a lifecycle event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Termination {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The instance that ended (the restart count before the event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<i64>,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// RFC 3339.
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Reasons a lifecycle event names a container's end by (with an exit
/// code, any reason counts).
const ENDINGS: [&str; 6] = [
    "OOMKilled",
    "Error",
    "Completed",
    "ContainerCannotRun",
    "DeadlineExceeded",
    "StartError",
];

impl Termination {
    /// The termination a lifecycle record (`platform_events`' JSON) tells
    /// of, if it tells of one.
    pub fn from_lifecycle(record: &[u8]) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_slice(record).ok()?;
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let container = text("container")?;
        let reason = text("reason")?;
        let exit_code = v.get("exit_code").and_then(serde_json::Value::as_i64);
        if text("kind").as_deref() != Some("Pod")
            || !(exit_code.is_some() || ENDINGS.contains(&reason.as_str()))
        {
            return None;
        }
        Some(Self {
            namespace: text("namespace")?,
            pod: text("name")?,
            container,
            // `restart_count` is the count after the event: the instance
            // that ended is the one before.
            restart: v
                .get("restart_count")
                .and_then(serde_json::Value::as_i64)
                .map(|n| (n - 1).max(0)),
            reason,
            exit_code,
            at: text("occurred_at").unwrap_or_default(),
            message: text("message"),
        })
    }
}

/// One published message.
#[derive(Debug, Clone)]
pub enum Item {
    /// A pod-log message as the collector encodes it: a JSON array of
    /// `pod_logs` records (or one record).
    PodLogs(Arc<[u8]>),
    Ended(Arc<Termination>),
}

struct Entry {
    seq: u64,
    at: Instant,
    bytes: usize,
    item: Item,
}

#[derive(Default)]
struct Ring {
    entries: VecDeque<Entry>,
    /// The sequence number the next message gets.
    next: u64,
    bytes: usize,
}

/// What a read returns: messages in order, when each was published, and
/// how many the reader missed because they left the replay before it read
/// them.
pub struct Read {
    pub items: Vec<(Item, Instant)>,
    pub skipped: u64,
}

/// Tails open at once, by caller and by tenant.
#[derive(Default)]
struct Open {
    total: usize,
    by_caller: std::collections::HashMap<String, usize>,
    by_tenant: std::collections::HashMap<String, usize>,
}

pub struct LiveHub {
    ring: Mutex<Ring>,
    notify: Notify,
    config: TailConfig,
    /// The newest termination of each container, for the notice a tail
    /// gives when the next instance's first line arrives (bounded).
    terminations: Mutex<lru::LruCache<(String, String, String), Arc<Termination>>>,
    open: Mutex<Open>,
    /// Open tails, watched by a feed that runs only while someone tails.
    demand: watch::Sender<usize>,
    /// Whether the feed has caught up with its source (always, in process).
    warm: watch::Sender<bool>,
    closed: CancellationToken,
    pub metrics: TailMetrics,
}

/// Containers whose last termination is remembered.
const TERMINATIONS_KEPT: usize = 10_000;

impl LiveHub {
    /// A hub fed in process: warm from the start.
    pub fn new(config: TailConfig, metrics: TailMetrics) -> Self {
        Self {
            ring: Mutex::new(Ring::default()),
            notify: Notify::new(),
            config,
            terminations: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(TERMINATIONS_KEPT)
                    .unwrap_or(std::num::NonZeroUsize::MIN),
            )),
            open: Mutex::new(Open::default()),
            demand: watch::Sender::new(0),
            warm: watch::Sender::new(true),
            closed: CancellationToken::new(),
            metrics,
        }
    }

    pub fn config(&self) -> &TailConfig {
        &self.config
    }

    /// Publishes a pod-log message (never waits).
    pub fn publish_pod_logs(&self, payload: &[u8]) {
        self.push(Item::PodLogs(Arc::from(payload)), payload.len());
    }

    /// Publishes a lifecycle record; only terminations are kept.
    pub fn publish_lifecycle(&self, record: &[u8]) {
        let Some(t) = Termination::from_lifecycle(record) else {
            return;
        };
        let t = Arc::new(t);
        if let Ok(mut map) = self.terminations.lock() {
            map.put(
                (t.namespace.clone(), t.pod.clone(), t.container.clone()),
                t.clone(),
            );
        }
        let bytes = t.namespace.len() + t.pod.len() + t.reason.len() + 64;
        self.push(Item::Ended(t), bytes);
    }

    fn push(&self, item: Item, bytes: usize) {
        let now = Instant::now();
        let max_age = Duration::from_secs(self.config.replay_secs.max(1));
        let max_bytes = (self.config.replay_mib.max(1) << 20) as usize;
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        let seq = ring.next;
        ring.next += 1;
        ring.bytes += bytes;
        ring.entries.push_back(Entry {
            seq,
            at: now,
            bytes,
            item,
        });
        while let Some(first) = ring.entries.front() {
            if ring.entries.len() > 1
                && (ring.bytes > max_bytes || now.duration_since(first.at) > max_age)
            {
                ring.bytes -= first.bytes;
                ring.entries.pop_front();
            } else {
                break;
            }
        }
        self.metrics.replay_bytes.set(ring.bytes as i64);
        let span = ring
            .entries
            .front()
            .map_or(0.0, |e| now.duration_since(e.at).as_secs_f64());
        drop(ring);
        self.metrics.replay_seconds.set(span);
        self.metrics.published.inc();
        self.notify.notify_waiters();
    }

    /// Drops what the replay holds (a feed that stopped: what it held is
    /// no longer followed by what comes next).
    pub fn clear(&self) {
        if let Ok(mut ring) = self.ring.lock() {
            ring.bytes = 0;
            ring.entries.clear();
        }
        self.metrics.replay_bytes.set(0);
        self.metrics.replay_seconds.set(0.0);
    }

    /// The sequence number of the oldest message held.
    pub fn oldest(&self) -> u64 {
        self.ring
            .lock()
            .map_or(0, |r| r.entries.front().map_or(r.next, |e| e.seq))
    }

    /// The sequence number the next message will get.
    pub fn head(&self) -> u64 {
        self.ring.lock().map_or(0, |r| r.next)
    }

    /// Up to `max` messages from `*from` (advanced past them), and no
    /// further than `until`.
    pub fn read(&self, from: &mut u64, until: u64, max: usize) -> Read {
        let Ok(ring) = self.ring.lock() else {
            return Read {
                items: Vec::new(),
                skipped: 0,
            };
        };
        let oldest = ring.entries.front().map_or(ring.next, |e| e.seq);
        let skipped = oldest.saturating_sub(*from);
        *from = (*from).max(oldest);
        let start = (*from - oldest) as usize;
        let items: Vec<(Item, Instant)> = ring
            .entries
            .iter()
            .skip(start)
            .take_while(|e| e.seq < until)
            .take(max)
            .map(|e| (e.item.clone(), e.at))
            .collect();
        *from += items.len() as u64;
        Read { items, skipped }
    }

    /// Resolves once a message numbered `seq` or later is published, or
    /// the hub closes.
    pub async fn published_beyond(&self, seq: u64) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.head() > seq || self.closed.is_cancelled() {
                return;
            }
            tokio::select! {
                _ = notified => {}
                _ = self.closed.cancelled() => return,
            }
        }
    }

    /// The newest termination of a container, if the hub saw it.
    pub fn termination(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
    ) -> Option<Arc<Termination>> {
        let key = (
            namespace.to_string(),
            pod.to_string(),
            container.to_string(),
        );
        self.terminations.lock().ok()?.peek(&key).cloned()
    }

    /// Ends every tail (the process stops).
    pub fn close(&self) {
        self.closed.cancel();
        self.notify.notify_waiters();
    }

    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    /// Open tails; a feed runs while it is above zero.
    pub fn demand(&self) -> watch::Receiver<usize> {
        self.demand.subscribe()
    }

    /// Marks whether the feed has caught up with its source.
    pub fn set_warm(&self, warm: bool) {
        self.warm.send_replace(warm);
    }

    /// Waits up to `limit` for the feed to catch up; whether it did.
    pub async fn wait_warm(&self, limit: Duration) -> bool {
        let mut rx = self.warm.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|w| *w))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// A slot for one more tail of `caller` (and its tenant), or why not.
    pub fn admit(
        self: &Arc<Self>,
        caller: &str,
        tenant: Option<&str>,
    ) -> Result<TailPermit, String> {
        let Ok(mut open) = self.open.lock() else {
            return Err("the tail registry is unavailable".into());
        };
        let refuse = |reason: &str, text: String| {
            self.metrics.refused(reason);
            Err(text)
        };
        if open.total >= self.config.max_total {
            return refuse(
                "total",
                format!(
                    "{} tails are open on this replica, its limit ([tail] max_total)",
                    open.total
                ),
            );
        }
        if open.by_caller.get(caller).copied().unwrap_or(0) >= self.config.max_per_caller {
            return refuse(
                "caller",
                format!(
                    "this token already holds {} tails, its limit ([tail] max_per_caller); close one",
                    self.config.max_per_caller
                ),
            );
        }
        if let Some(t) = tenant
            && open.by_tenant.get(t).copied().unwrap_or(0) >= self.config.max_per_tenant
        {
            return refuse(
                "tenant",
                format!(
                    "tenant {t:?} already holds {} tails, its limit ([tail] max_per_tenant)",
                    self.config.max_per_tenant
                ),
            );
        }
        open.total += 1;
        *open.by_caller.entry(caller.to_string()).or_default() += 1;
        if let Some(t) = tenant {
            *open.by_tenant.entry(t.to_string()).or_default() += 1;
        }
        let total = open.total;
        drop(open);
        self.metrics.clients.set(total as i64);
        self.demand.send_replace(total);
        Ok(TailPermit {
            hub: self.clone(),
            caller: caller.to_string(),
            tenant: tenant.map(str::to_string),
        })
    }
}

/// One open tail's slot, given back when dropped.
pub struct TailPermit {
    hub: Arc<LiveHub>,
    caller: String,
    tenant: Option<String>,
}

impl std::fmt::Debug for TailPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TailPermit")
            .field("caller", &self.caller)
            .field("tenant", &self.tenant)
            .finish()
    }
}

impl Drop for TailPermit {
    fn drop(&mut self) {
        let Ok(mut open) = self.hub.open.lock() else {
            return;
        };
        open.total = open.total.saturating_sub(1);
        let release = |map: &mut std::collections::HashMap<String, usize>, key: &str| {
            if let Some(n) = map.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(key);
                }
            }
        };
        release(&mut open.by_caller, &self.caller);
        if let Some(t) = &self.tenant {
            release(&mut open.by_tenant, t);
        }
        let total = open.total;
        drop(open);
        self.hub.metrics.clients.set(total as i64);
        self.hub.demand.send_replace(total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(config: TailConfig) -> Arc<LiveHub> {
        Arc::new(LiveHub::new(config, TailMetrics::default()))
    }

    #[test]
    fn replay_is_bounded_and_a_late_reader_is_told_what_it_missed() {
        let h = hub(TailConfig {
            replay_mib: 1,
            ..TailConfig::default()
        });
        let payload = vec![b'x'; 300 << 10];
        for _ in 0..10 {
            h.publish_pod_logs(&payload);
        }
        assert_eq!(h.head(), 10);
        // 1 MiB holds three of the 300 KiB messages.
        assert_eq!(h.oldest(), 7);
        let mut from = 0;
        let r = h.read(&mut from, u64::MAX, 100);
        assert_eq!((r.skipped, r.items.len(), from), (7, 3, 10));
        let mut from = 8;
        let r = h.read(&mut from, 9, 100);
        assert_eq!((r.skipped, r.items.len(), from), (0, 1, 9));
    }

    #[test]
    fn tails_are_limited_per_caller_tenant_and_replica() {
        let h = hub(TailConfig {
            max_per_caller: 2,
            max_per_tenant: 3,
            max_total: 4,
            ..TailConfig::default()
        });
        let a1 = h.admit("a", Some("t")).unwrap();
        let _a2 = h.admit("a", Some("t")).unwrap();
        assert!(
            h.admit("a", Some("t"))
                .unwrap_err()
                .contains("max_per_caller")
        );
        let _b1 = h.admit("b", Some("t")).unwrap();
        assert!(
            h.admit("c", Some("t"))
                .unwrap_err()
                .contains("max_per_tenant")
        );
        let _c1 = h.admit("c", None).unwrap();
        assert!(h.admit("d", None).unwrap_err().contains("max_total"));
        assert_eq!(*h.demand().borrow(), 4);
        drop(a1);
        assert_eq!(*h.demand().borrow(), 3);
        h.admit("a", None).unwrap();
    }

    #[test]
    fn terminations_come_from_lifecycle_records() {
        let h = hub(TailConfig::default());
        h.publish_lifecycle(br#"{"kind":"Pod","namespace":"shop","name":"api-0","container":"app","reason":"OOMKilled","exit_code":137,"restart_count":3,"occurred_at":"2026-12-05T01:00:00Z"}"#);
        h.publish_lifecycle(br#"{"kind":"Pod","namespace":"shop","name":"api-0","container":"app","reason":"BackOff","restart_count":3}"#);
        h.publish_lifecycle(b"not json");
        assert_eq!(h.head(), 1, "only the termination is published");
        let t = h.termination("shop", "api-0", "app").unwrap();
        assert_eq!(
            (t.restart, t.exit_code, t.reason.as_str()),
            (Some(2), Some(137), "OOMKilled")
        );
    }
}
