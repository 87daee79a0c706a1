//! The search's cache of split bytes fetched from the object store: fixed
//! blocks of a split, least recently used first out, in memory and on local
//! disk, each tier bounded in bytes.
//!
//! Blocks rather than the exact ranges tantivy asks for: a posting list or
//! a doc-store block is a few KB, fetched whole block around it; a fast
//! field column (read whole) is many consecutive blocks fetched by one
//! ranged GET. [`BLOCK_BYTES`] is small enough that a page of hits scattered
//! over a split's doc store does not fetch megabytes per hit.
//!
//! The bounds are exact: a block is admitted only after the least recently
//! used are evicted (and, on disk, their files removed) to make room, which
//! is why this is `lru` under a mutex rather than a concurrent cache whose
//! eviction runs later.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tantivy::directory::OwnedBytes;

/// Bytes per cached block.
pub const BLOCK_BYTES: u64 = 64 * 1024;

/// Where the cache keeps blocks and how much of each tier it may use.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Blocks on local disk live under `<dir>/blocks/<split>/<n>`; `None`
    /// keeps them in memory only (a process that shares the data directory
    /// with a server, such as the CLI).
    pub dir: Option<PathBuf>,
    pub disk_bytes: u64,
    pub memory_bytes: u64,
}

/// A block: the split and the block's number.
type Key = (Arc<str>, u64);
/// A range read across several blocks, kept assembled: the split, start
/// and end.
type RangeKey = (Arc<str>, u64, u64);

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct TierLabel {
    tier: &'static str,
}

/// What the cache did, for `/metrics` (`sluice_search_cache_*`).
#[derive(Clone, Default)]
pub struct CacheMetrics {
    hits: Family<TierLabel, Counter>,
    misses: Counter,
    fetches: Counter,
    bytes_fetched: Counter,
    bytes: Family<TierLabel, Gauge>,
}

impl CacheMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("sluice_search_cache");
        r.register(
            "hits",
            "Split blocks a search found in the cache, by tier (memory, disk)",
            self.hits.clone(),
        );
        r.register(
            "misses",
            "Split blocks a search fetched from the object store",
            self.misses.clone(),
        );
        r.register(
            "fetches",
            "Ranged reads of split objects (adjacent blocks are fetched together)",
            self.fetches.clone(),
        );
        r.register(
            "fetched_bytes",
            "Bytes of split objects fetched from the object store",
            self.bytes_fetched.clone(),
        );
        r.register(
            "size_bytes",
            "Bytes the cache holds, by tier",
            self.bytes.clone(),
        );
    }
}

/// Counters a caller can read (tests, the benchmark).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub memory_hits: u64,
    pub disk_hits: u64,
    pub misses: u64,
    pub bytes_fetched: u64,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}

struct Tier<K: std::hash::Hash + Eq, V> {
    lru: LruCache<K, V>,
    bytes: u64,
    limit: u64,
    weight: fn(&V) -> u64,
}

impl<K: std::hash::Hash + Eq + Clone + SplitOf, V> Tier<K, V> {
    fn new(limit: u64, weight: fn(&V) -> u64) -> Self {
        Self {
            lru: LruCache::unbounded(),
            bytes: 0,
            limit,
            weight,
        }
    }

    /// Admits `key`, evicting the least recently used first; returns what
    /// was evicted (an older value of `key` too). A value larger than the
    /// whole tier is not admitted.
    fn admit(&mut self, key: K, value: V) -> Vec<(K, V)> {
        let len = (self.weight)(&value);
        let mut evicted = Vec::new();
        if len > self.limit {
            return evicted;
        }
        if let Some(old) = self.lru.pop(&key) {
            self.bytes = self.bytes.saturating_sub((self.weight)(&old));
            evicted.push((key.clone(), old));
        }
        while self.bytes + len > self.limit {
            let Some((k, v)) = self.lru.pop_lru() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub((self.weight)(&v));
            evicted.push((k, v));
        }
        self.lru.put(key, value);
        self.bytes += len;
        evicted
    }

    fn remove_split(&mut self, id: &str) {
        let keys: Vec<K> = self
            .lru
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| k.split() == id)
            .collect();
        for k in keys {
            if let Some(v) = self.lru.pop(&k) {
                self.bytes = self.bytes.saturating_sub((self.weight)(&v));
            }
        }
    }
}

/// The split a cache key belongs to.
trait SplitOf {
    fn split(&self) -> &str;
}

impl SplitOf for Key {
    fn split(&self) -> &str {
        &self.0
    }
}

impl SplitOf for RangeKey {
    fn split(&self) -> &str {
        &self.0
    }
}

/// The cache shared by every split a process searches.
pub struct RangeCache {
    memory: Mutex<Tier<Key, OwnedBytes>>,
    /// Reads of several blocks, assembled (fast-field columns, which a
    /// search opens whole and more than once): read again without a copy.
    /// Half the memory bound is theirs, half the blocks'.
    ranges: Mutex<Tier<RangeKey, OwnedBytes>>,
    /// Block lengths; the bytes are in files.
    disk: Mutex<Tier<Key, u64>>,
    dir: Option<PathBuf>,
    metrics: CacheMetrics,
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    misses: AtomicU64,
    bytes_fetched: AtomicU64,
}

impl RangeCache {
    /// Opens the cache, taking in the blocks a previous process left on
    /// disk (least recently modified evicted first past the bound) and
    /// removing what older versions kept there (whole unpacked splits).
    pub fn open(settings: CacheSettings, metrics: CacheMetrics) -> std::io::Result<Self> {
        let cache = Self {
            memory: Mutex::new(Tier::new(settings.memory_bytes / 2, |b: &OwnedBytes| {
                b.len() as u64
            })),
            ranges: Mutex::new(Tier::new(settings.memory_bytes / 2, |b: &OwnedBytes| {
                b.len() as u64
            })),
            disk: Mutex::new(Tier::new(
                if settings.dir.is_some() {
                    settings.disk_bytes
                } else {
                    0
                },
                |l: &u64| *l,
            )),
            dir: settings.dir.clone(),
            metrics,
            memory_hits: AtomicU64::new(0),
            disk_hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bytes_fetched: AtomicU64::new(0),
        };
        let Some(dir) = &settings.dir else {
            return Ok(cache);
        };
        let blocks = dir.join("blocks");
        std::fs::create_dir_all(&blocks)?;
        // Splits unpacked whole by versions before in-place reads.
        for e in std::fs::read_dir(dir)?.flatten() {
            if e.file_name() != "blocks" {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        }
        let mut found = Vec::new();
        for split in std::fs::read_dir(&blocks)?.flatten() {
            let Ok(id) = split.file_name().into_string() else {
                continue;
            };
            for block in std::fs::read_dir(split.path())?.flatten() {
                let name = block.file_name();
                let (Some(n), Ok(meta)) = (
                    name.to_str().and_then(|n| n.parse::<u64>().ok()),
                    block.metadata(),
                ) else {
                    // A block being written when a process stopped.
                    let _ = std::fs::remove_file(block.path());
                    continue;
                };
                found.push((
                    meta.modified().ok(),
                    Arc::<str>::from(id.as_str()),
                    n,
                    meta.len(),
                ));
            }
        }
        found.sort_by_key(|f| f.0);
        for (_, id, n, len) in found {
            cache.admit_disk((id, n), len);
        }
        cache.publish_sizes();
        Ok(cache)
    }

    fn blocks_dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("blocks"))
    }

    fn block_path(&self, (id, n): &Key) -> Option<PathBuf> {
        Some(self.blocks_dir()?.join(id.as_ref()).join(n.to_string()))
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            memory_hits: self.memory_hits.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes_fetched: self.bytes_fetched.load(Ordering::Relaxed),
            memory_bytes: self.memory.lock().map(|t| t.bytes).unwrap_or_default()
                + self.ranges.lock().map(|t| t.bytes).unwrap_or_default(),
            disk_bytes: self.disk.lock().map(|t| t.bytes).unwrap_or_default(),
        }
    }

    fn publish_sizes(&self) {
        let s = self.stats();
        let g = |tier| {
            self.metrics
                .bytes
                .get_or_create(&TierLabel { tier })
                .clone()
        };
        g("memory").set(s.memory_bytes as i64);
        g("disk").set(s.disk_bytes as i64);
    }

    fn admit_memory(&self, key: Key, bytes: OwnedBytes) {
        let mut tier = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        tier.admit(key, bytes);
    }

    fn admit_disk(&self, key: Key, len: u64) {
        let evicted = self
            .disk
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(key.clone(), len);
        for (k, _) in evicted {
            // An older entry of the same block is the file just written.
            if k != key
                && let Some(path) = self.block_path(&k)
            {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// `range` of split `id` if memory holds it: read before as one range, or
    /// within one block. Nothing is fetched, nothing waits: a synchronous
    /// reader asks this first.
    pub fn cached_range(&self, id: &Arc<str>, range: &Range<u64>) -> Option<OwnedBytes> {
        if range.start >= range.end {
            return Some(OwnedBytes::empty());
        }
        let hit = |tier| {
            self.memory_hits.fetch_add(1, Ordering::Relaxed);
            self.metrics.hits.get_or_create(&TierLabel { tier }).inc();
        };
        let first = range.start / BLOCK_BYTES;
        if first == (range.end - 1) / BLOCK_BYTES {
            let block = self
                .memory
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .lru
                .get(&(id.clone(), first))
                .cloned()?;
            let from = (range.start - first * BLOCK_BYTES) as usize;
            let to = from + (range.end - range.start) as usize;
            if to > block.len() {
                return None;
            }
            hit("memory");
            return Some(block.slice(from..to));
        }
        let bytes = self
            .ranges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lru
            .get(&(id.clone(), range.start, range.end))
            .cloned()?;
        hit("memory");
        Some(bytes)
    }

    /// A block from memory or disk, if cached.
    fn cached(&self, key: &Key) -> Option<OwnedBytes> {
        if let Some(b) = self
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lru
            .get(key)
            .cloned()
        {
            self.memory_hits.fetch_add(1, Ordering::Relaxed);
            self.metrics
                .hits
                .get_or_create(&TierLabel { tier: "memory" })
                .inc();
            return Some(b);
        }
        let on_disk = self
            .disk
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lru
            .get(key)
            .is_some();
        if on_disk
            && let Some(path) = self.block_path(key)
            && let Ok(bytes) = std::fs::read(path)
        {
            self.disk_hits.fetch_add(1, Ordering::Relaxed);
            self.metrics
                .hits
                .get_or_create(&TierLabel { tier: "disk" })
                .inc();
            let bytes = OwnedBytes::new(bytes);
            self.admit_memory(key.clone(), bytes.clone());
            return Some(bytes);
        }
        None
    }

    /// Keeps a fetched block in both tiers.
    fn store(&self, key: Key, bytes: OwnedBytes) {
        let path = self.block_path(&key);
        let written = path
            .as_ref()
            .and_then(|p| Some((p, p.parent()?)))
            .is_some_and(|(path, dir)| {
                let tmp = dir.join(format!(".{}.tmp-{}", key.1, std::process::id()));
                std::fs::create_dir_all(dir).is_ok()
                    && std::fs::write(&tmp, bytes.as_slice()).is_ok()
                    && std::fs::rename(&tmp, path).is_ok()
            });
        if written {
            self.admit_disk(key.clone(), bytes.len() as u64);
        }
        self.admit_memory(key, bytes);
    }

    /// Counts bytes fetched past the cache (a split's hotcache).
    pub fn count_fetched(&self, bytes: u64) {
        self.bytes_fetched.fetch_add(bytes, Ordering::Relaxed);
        self.metrics.bytes_fetched.inc_by(bytes);
        self.metrics.fetches.inc();
    }

    /// Drops a split's blocks (it left the index).
    pub fn forget_split(&self, id: &str) {
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove_split(id);
        self.ranges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove_split(id);
        self.disk
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove_split(id);
        if let Some(blocks) = self.blocks_dir() {
            let _ = std::fs::remove_dir_all(blocks.join(id));
        }
        self.publish_sizes();
    }

    /// Bytes `range` of split `id` (an object `len` bytes long): cached
    /// blocks from the cache, the missing ones fetched by `fetch` (given
    /// ranges of adjacent missing blocks, it returns their bytes in order).
    pub async fn read<F, Fut>(
        &self,
        id: &Arc<str>,
        len: u64,
        range: Range<u64>,
        fetch: F,
    ) -> std::io::Result<OwnedBytes>
    where
        F: FnOnce(Vec<Range<u64>>) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<Vec<bytes::Bytes>>>,
    {
        if let Some(b) = self.cached_range(id, &range) {
            return Ok(b);
        }
        let first = range.start / BLOCK_BYTES;
        let last = (range.end - 1) / BLOCK_BYTES;
        let mut blocks: Vec<Option<OwnedBytes>> = Vec::with_capacity((last - first + 1) as usize);
        for n in first..=last {
            blocks.push(self.cached(&(id.clone(), n)));
        }
        // Runs of missing blocks, each fetched as one range.
        let mut runs: Vec<Range<u64>> = Vec::new();
        for (i, b) in blocks.iter().enumerate() {
            if b.is_some() {
                continue;
            }
            let n = first + i as u64;
            match runs.last_mut() {
                Some(r) if r.end == n => r.end = n + 1,
                _ => runs.push(n..n + 1),
            }
        }
        if !runs.is_empty() {
            let byte_ranges: Vec<Range<u64>> = runs
                .iter()
                .map(|r| r.start * BLOCK_BYTES..(r.end * BLOCK_BYTES).min(len))
                .collect();
            let fetched = fetch(byte_ranges.clone()).await?;
            if fetched.len() != runs.len() {
                return Err(std::io::Error::other(
                    "the object store returned fewer ranges",
                ));
            }
            for ((run, want), got) in runs.iter().zip(&byte_ranges).zip(fetched) {
                if got.len() as u64 != want.end - want.start {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "split {id}: asked {} bytes at {}, got {}",
                            want.end - want.start,
                            want.start,
                            got.len()
                        ),
                    ));
                }
                self.misses
                    .fetch_add(run.end - run.start, Ordering::Relaxed);
                self.metrics.misses.inc_by(run.end - run.start);
                self.metrics.fetches.inc();
                self.bytes_fetched
                    .fetch_add(got.len() as u64, Ordering::Relaxed);
                self.metrics.bytes_fetched.inc_by(got.len() as u64);
                let got = OwnedBytes::new(got.to_vec());
                for n in run.clone() {
                    let from = ((n - run.start) * BLOCK_BYTES) as usize;
                    let to = (from + BLOCK_BYTES as usize).min(got.len());
                    let block = got.slice(from..to);
                    self.store((id.clone(), n), block.clone());
                    blocks[(n - first) as usize] = Some(block);
                }
            }
            self.publish_sizes();
        }
        let start = (range.start - first * BLOCK_BYTES) as usize;
        let want = (range.end - range.start) as usize;
        if blocks.len() == 1
            && let Some(Some(b)) = blocks.pop()
        {
            if start + want > b.len() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("split {id}: read past its end"),
                ));
            }
            return Ok(b.slice(start..start + want));
        }
        let mut out = Vec::with_capacity(want);
        for b in blocks.into_iter().flatten() {
            out.extend_from_slice(b.as_slice());
        }
        if start + want > out.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("split {id}: read past its end"),
            ));
        }
        out.truncate(start + want);
        out.drain(..start);
        let out = OwnedBytes::new(out);
        self.ranges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit((id.clone(), range.start, range.end), out.clone());
        Ok(out)
    }
}

/// Bytes under `dir` (what the disk tier holds, for tests).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_bytes(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &Path, disk_blocks: u64, memory_blocks: u64) -> CacheSettings {
        CacheSettings {
            dir: Some(dir.to_path_buf()),
            disk_bytes: disk_blocks * BLOCK_BYTES,
            memory_bytes: memory_blocks * BLOCK_BYTES,
        }
    }

    fn object(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    async fn read(cache: &RangeCache, obj: &[u8], range: Range<u64>) -> Vec<u8> {
        let id: Arc<str> = "s1".into();
        cache
            .read(&id, obj.len() as u64, range, |ranges| async move {
                Ok(ranges
                    .into_iter()
                    .map(|r| bytes::Bytes::copy_from_slice(&obj[r.start as usize..r.end as usize]))
                    .collect())
            })
            .await
            .unwrap()
            .as_slice()
            .to_vec()
    }

    #[tokio::test]
    async fn reads_are_exact_and_both_tiers_stay_within_their_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RangeCache::open(settings(dir.path(), 8, 3), CacheMetrics::default()).unwrap();
        let obj = object((20 * BLOCK_BYTES + 100) as usize);
        for range in [
            0..10,
            BLOCK_BYTES - 5..BLOCK_BYTES + 5,
            3 * BLOCK_BYTES..12 * BLOCK_BYTES + 7,
            20 * BLOCK_BYTES..20 * BLOCK_BYTES + 100,
            0..obj.len() as u64,
        ] {
            let got = read(&cache, &obj, range.clone()).await;
            assert_eq!(got, obj[range.start as usize..range.end as usize]);
            let s = cache.stats();
            assert!(s.memory_bytes <= 3 * BLOCK_BYTES, "{s:?}");
            assert!(s.disk_bytes <= 8 * BLOCK_BYTES, "{s:?}");
            assert!(dir_bytes(dir.path()) <= 8 * BLOCK_BYTES);
        }
        // A block just read is cached: no fetch the second time.
        cache.forget_split("s1");
        assert_eq!(dir_bytes(dir.path()), 0);
        let block = 7 * BLOCK_BYTES + 3..7 * BLOCK_BYTES + 50;
        read(&cache, &obj, block.clone()).await;
        let before = cache.stats();
        let got = read(&cache, &obj, block.clone()).await;
        assert_eq!(got, obj[block.start as usize..block.end as usize]);
        assert_eq!(cache.stats().misses, before.misses);
        assert_eq!(cache.stats().memory_hits, before.memory_hits + 1);
        // A new process finds the disk tier.
        drop(cache);
        let cache = RangeCache::open(settings(dir.path(), 4, 1), CacheMetrics::default()).unwrap();
        assert_eq!(cache.stats().disk_bytes, BLOCK_BYTES);
        let got = read(&cache, &obj, block.clone()).await;
        assert_eq!(got, obj[block.start as usize..block.end as usize]);
        assert_eq!(cache.stats().disk_hits, 1, "{:?}", cache.stats());
        assert_eq!(cache.stats().misses, 0);
        cache.forget_split("s1");
        assert_eq!(dir_bytes(dir.path()), 0);
    }
}
