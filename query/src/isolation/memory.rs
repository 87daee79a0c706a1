//! Memory: a limit per query and one across all queries of the process.
//!
//! Each query gets a [`QueryPool`] whose reservations count against both
//! its own limit and a [`GlobalBudget`] shared by every query; past either,
//! the operator asking gets `ResourcesExhausted` and the query ends with a
//! 422. Four queries at 2 GiB each can then never hold more than the global
//! budget together.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryLimit, MemoryPool, MemoryReservation,
};

/// The bytes all queries of the process may reserve together.
#[derive(Debug)]
pub struct GlobalBudget {
    limit: usize,
    used: AtomicUsize,
}

impl GlobalBudget {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    fn try_grow(&self, additional: usize) -> Result<(), usize> {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                let new = used.checked_add(additional)?;
                (new <= self.limit).then_some(new)
            })
            .map(|_| ())
    }

    fn grow(&self, additional: usize) {
        self.used.fetch_add(additional, Ordering::Relaxed);
    }

    fn shrink(&self, bytes: usize) {
        // Never below zero, whatever a consumer reports.
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(bytes))
            });
    }
}

/// One query's pool: its own limit, and a share of the global budget.
#[derive(Debug)]
pub struct QueryPool {
    own: GreedyMemoryPool,
    global: Arc<GlobalBudget>,
}

impl QueryPool {
    pub fn new(limit: usize, global: Arc<GlobalBudget>) -> Self {
        Self {
            own: GreedyMemoryPool::new(limit),
            global,
        }
    }
}

impl MemoryPool for QueryPool {
    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        self.own.grow(reservation, additional);
        self.global.grow(additional);
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        self.own.shrink(reservation, shrink);
        self.global.shrink(shrink);
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> DFResult<()> {
        self.own.try_grow(reservation, additional)?;
        if self.global.try_grow(additional).is_err() {
            self.own.shrink(reservation, additional);
            return Err(DataFusionError::ResourcesExhausted(format!(
                "all queries together may hold {} MiB (limit [query] global_memory_limit_mb); \
                 {} MiB are in use and {} asked for {additional} bytes more — try again when \
                 fewer queries run",
                self.global.limit() >> 20,
                self.global.used() >> 20,
                reservation.consumer().name(),
            )));
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.own.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        self.own.memory_limit()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::execution::memory_pool::MemoryConsumer;

    use super::*;

    #[test]
    fn both_limits_hold_and_freed_memory_returns() {
        let global = Arc::new(GlobalBudget::new(1000));
        let a: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(600, global.clone()));
        let b: Arc<dyn MemoryPool> = Arc::new(QueryPool::new(600, global.clone()));
        let ra = MemoryConsumer::new("a").register(&a);
        let rb = MemoryConsumer::new("b").register(&b);
        ra.try_grow(600).unwrap();
        // Over a's own limit.
        assert!(ra.try_grow(1).is_err());
        // Within b's limit but over the global budget; nothing is kept.
        let e = rb.try_grow(500).unwrap_err().to_string();
        assert!(e.contains("global_memory_limit_mb"), "{e}");
        assert_eq!(b.reserved(), 0);
        assert_eq!(global.used(), 600);
        rb.try_grow(400).unwrap();
        assert_eq!(global.used(), 1000);
        drop(ra);
        assert_eq!(global.used(), 400);
        drop(rb);
        assert_eq!(global.used(), 0);
    }
}
