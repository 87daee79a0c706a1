//! `sluice_table_*`: every writer's commits — the Kafka writer's, `sluice
//! up`'s, import's — counted in the one place they all happen, the commit
//! loop ([`crate::append::TableSink::commit_settled`]), so one dashboard
//! panel and one alert read them whatever the deployment.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub table: String,
    /// `committed`, `earlier` (an earlier attempt's commit landed),
    /// `fenced`, `failed` (an attempt that failed; it may be retried).
    pub outcome: String,
}

/// The `table` label: one type for every per-table family (commits,
/// maintenance, the writers'), so they join on it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    pub table: String,
}

#[derive(Clone, Debug)]
pub struct CommitMetrics {
    pub commits: Family<OutcomeLabel, Counter>,
    pub rows: Family<TableLabel, Counter>,
    pub seconds: Family<TableLabel, Histogram>,
}

impl Default for CommitMetrics {
    fn default() -> Self {
        Self {
            commits: Family::default(),
            rows: Family::default(),
            seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 2.0, 14))
            }),
        }
    }
}

impl CommitMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("sluice_table");
        r.register(
            "commits",
            "Table commits by outcome (committed, earlier, fenced, failed attempts)",
            m.commits.clone(),
        );
        r.register(
            "rows_committed",
            "Rows committed to the table",
            m.rows.clone(),
        );
        r.register(
            "commit_seconds",
            "Seconds from a batch's first commit attempt to its settled outcome",
            m.seconds.clone(),
        );
        m
    }

    pub(crate) fn outcome(&self, table: &str, outcome: &str) {
        self.commits
            .get_or_create(&OutcomeLabel {
                table: table.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub(crate) fn committed(&self, table: &str, rows: u64, seconds: f64) {
        let label = TableLabel {
            table: table.to_string(),
        };
        self.rows.get_or_create(&label).inc_by(rows);
        self.seconds.get_or_create(&label).observe(seconds);
        self.outcome(table, "committed");
    }
}
