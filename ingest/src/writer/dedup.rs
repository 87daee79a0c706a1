//! A bounded window of recently committed record ids. Ids enter the window
//! only once their batch is committed: a batch refused by fencing is re-read
//! later and must not then look like a duplicate of itself.

use std::collections::{HashSet, VecDeque};

#[derive(Debug)]
pub struct DedupWindow {
    capacity: usize,
    order: VecDeque<String>,
    seen: HashSet<String>,
}

impl DedupWindow {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            order: VecDeque::new(),
            seen: HashSet::new(),
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.seen.contains(id)
    }

    /// Remembers committed ids, forgetting the oldest beyond capacity.
    pub fn commit<I: IntoIterator<Item = String>>(&mut self, ids: I) {
        for id in ids {
            if self.seen.insert(id.clone()) {
                self.order.push_back(id);
            }
            while self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
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
        assert!(!w.contains("a"));
        w.commit(["a".to_string(), "b".to_string(), "a".to_string()]);
        assert!(w.contains("a") && w.contains("b"));
        w.commit(["c".to_string()]);
        assert!(!w.contains("a"), "oldest forgotten");
        assert_eq!(w.len(), 2);
    }
}
