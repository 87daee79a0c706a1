//! The process's heap, as the allocator sees it: `sluice_memory_*` on every
//! role's `/metrics`.
//!
//! The `sluice` binary allocates with jemalloc (see `main.rs`): glibc's
//! malloc keeps freed memory in per-thread arenas, so a process whose
//! allocations are flat can still grow its RSS for hours, and nothing tells
//! the two apart. jemalloc returns dirty pages to the system after a decay
//! time and reports what is allocated next to what is resident, which is
//! what a soak (`scripts/soak`) and an operator need to tell a leak from
//! fragmentation. In test binaries jemalloc is linked but not the global
//! allocator, so the figures there are near zero.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The gauges, refreshed from jemalloc's statistics at each scrape.
pub struct MemoryGauges {
    pub registry: Registry,
    allocated: Gauge,
    resident: Gauge,
    retained: Gauge,
}

impl Default for MemoryGauges {
    fn default() -> Self {
        let mut registry = Registry::default();
        let sub = registry.sub_registry_with_prefix("sluice_memory");
        let allocated = Gauge::default();
        let resident = Gauge::default();
        let retained = Gauge::default();
        sub.register(
            "allocated_bytes",
            "Bytes the process has allocated and not freed (jemalloc stats.allocated)",
            allocated.clone(),
        );
        sub.register(
            "resident_bytes",
            "Bytes of the allocator's pages resident in memory, allocated or cached \
             (jemalloc stats.resident)",
            resident.clone(),
        );
        sub.register(
            "retained_bytes",
            "Bytes of virtual memory the allocator keeps mapped but returned to the system \
             (jemalloc stats.retained)",
            retained.clone(),
        );
        Self {
            registry,
            allocated,
            resident,
            retained,
        }
    }
}

impl MemoryGauges {
    /// Reads the allocator's statistics (they are cached by jemalloc until
    /// its epoch advances). A failed read leaves the last figures.
    pub fn refresh(&self) {
        if let Err(e) = tikv_jemalloc_ctl::epoch::advance() {
            tracing::debug!(error = %e, "jemalloc statistics unavailable");
            return;
        }
        let set = |gauge: &Gauge, value: Result<usize, tikv_jemalloc_ctl::Error>| {
            if let Ok(v) = value {
                gauge.set(i64::try_from(v).unwrap_or(i64::MAX));
            }
        };
        set(&self.allocated, tikv_jemalloc_ctl::stats::allocated::read());
        set(&self.resident, tikv_jemalloc_ctl::stats::resident::read());
        set(&self.retained, tikv_jemalloc_ctl::stats::retained::read());
    }
}
