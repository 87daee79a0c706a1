//! A bounded window of recently committed record ids. Ids enter the window
//! only once their batch is committed: a batch refused by fencing is re-read
//! later and must not then look like a duplicate of itself.
//!
//! Ids are kept as 128-bit hashes ([`id_key`]), the same keys the table's
//! recent ids are read back as.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

pub use sluice_warehouse::recent_ids::id_key;

/// The keys are already xxh3-128 hashes of the ids: hashing them again
/// (SipHash, the std default) cost 3 % of the writer's CPU in the broker
/// benchmark; their low 64 bits are as good a hash as any.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }

    /// Only `u128` keys are hashed here; anything else is folded in.
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
}

type KeySet = HashSet<u128, BuildHasherDefault<KeyHasher>>;

#[derive(Debug)]
pub struct DedupWindow {
    capacity: usize,
    order: VecDeque<u128>,
    seen: KeySet,
}

impl DedupWindow {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            seen: KeySet::default(),
        }
    }

    pub fn contains(&self, key: u128) -> bool {
        self.seen.contains(&key)
    }

    /// Remembers committed ids, forgetting the oldest beyond capacity.
    pub fn commit<I: IntoIterator<Item = u128>>(&mut self, keys: I) {
        for key in keys {
            if self.seen.insert(key) {
                self.order.push_back(key);
            }
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
    }

    /// Which of `keys` (one per row, in order) are new: not committed before
    /// and not repeating an earlier row of the same batch.
    pub fn fresh(&self, keys: &[u128]) -> Vec<bool> {
        let mut in_batch = KeySet::with_capacity_and_hasher(keys.len(), Default::default());
        keys.iter()
            .map(|k| !self.contains(*k) && in_batch.insert(*k))
            .collect()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_commit_only() {
        let mut w = DedupWindow::new(2);
        assert!(!w.contains(id_key("a")));
        w.commit(["a", "b", "a"].map(id_key));
        assert!(w.contains(id_key("a")) && w.contains(id_key("b")));
        w.commit([id_key("c")]);
        assert!(!w.contains(id_key("a")), "oldest forgotten");
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn fresh_drops_committed_and_repeated_rows() {
        let mut w = DedupWindow::new(10);
        w.commit([id_key("old")]);
        let keys = ["new", "old", "new", "other"].map(id_key);
        assert_eq!(w.fresh(&keys), vec![true, false, false, true]);
    }
}
