//! `sluice_maintenance_*`: what maintenance did, per table, and when it
//! last succeeded (the alert on a stalled maintenance watches that).

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::TableReport;

pub use crate::commit_metrics::TableLabel;

#[derive(Clone, Debug, Default)]
pub struct MaintenanceMetrics {
    pub runs: Family<TableLabel, Counter>,
    pub failures: Family<TableLabel, Counter>,
    pub files_rewritten: Family<TableLabel, Counter>,
    pub bytes_rewritten: Family<TableLabel, Counter>,
    pub files_written: Family<TableLabel, Counter>,
    pub files_expired: Family<TableLabel, Counter>,
    pub snapshots_expired: Family<TableLabel, Counter>,
    pub files_deleted: Family<TableLabel, Counter>,
    pub bytes_deleted: Family<TableLabel, Counter>,
    pub data_files: Family<TableLabel, Gauge>,
    pub last_success: Family<TableLabel, Gauge<f64, AtomicU64>>,
}

impl MaintenanceMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("sluice_maintenance");
        r.register("runs", "Maintenance runs that completed", m.runs.clone());
        r.register(
            "failures",
            "Maintenance runs that failed",
            m.failures.clone(),
        );
        r.register(
            "files_rewritten",
            "Small data files compacted",
            m.files_rewritten.clone(),
        );
        r.register(
            "bytes_rewritten",
            "Bytes of data files compacted",
            m.bytes_rewritten.clone(),
        );
        r.register(
            "files_written",
            "Data files compaction wrote",
            m.files_written.clone(),
        );
        r.register(
            "files_expired",
            "Data files dropped by retention",
            m.files_expired.clone(),
        );
        r.register(
            "snapshots_expired",
            "Snapshots expired",
            m.snapshots_expired.clone(),
        );
        r.register(
            "files_deleted",
            "Unreferenced files deleted from the warehouse",
            m.files_deleted.clone(),
        );
        r.register(
            "bytes_deleted",
            "Bytes of unreferenced files deleted",
            m.bytes_deleted.clone(),
        );
        r.register(
            "data_files",
            "Live data files after the last run",
            m.data_files.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "Unix time of the table's last successful maintenance run",
            m.last_success.clone(),
        );
        m
    }

    pub fn record(&self, label: &TableLabel, r: &TableReport) {
        self.runs.get_or_create(label).inc();
        self.files_rewritten
            .get_or_create(label)
            .inc_by(r.compacted_files as u64);
        self.bytes_rewritten
            .get_or_create(label)
            .inc_by(r.compacted_bytes);
        self.files_written
            .get_or_create(label)
            .inc_by(r.written_files as u64);
        self.files_expired
            .get_or_create(label)
            .inc_by(r.expired_files as u64);
        self.snapshots_expired
            .get_or_create(label)
            .inc_by(r.snapshots_expired as u64);
        self.files_deleted
            .get_or_create(label)
            .inc_by(r.orphans_deleted as u64);
        self.bytes_deleted
            .get_or_create(label)
            .inc_by(r.orphan_bytes_deleted);
        self.data_files
            .get_or_create(label)
            .set(r.data_files_after as i64);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.last_success.get_or_create(label).set(now);
    }
}
