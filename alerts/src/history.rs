//! `platform.alert_history`: every transition the evaluator makes, in an
//! Iceberg table, exactly once.
//!
//! A transition first goes into an outbox inside the alert state, numbered
//! in order, and is saved with that state. The lease holder then appends the
//! outbox to the table with the number as the source position
//! (`outbox:alerts/<lineage>`), as the writer appends Kafka offsets. So:
//!
//! - a crash between the commit and the next save leaves rows in the outbox
//!   that the table already holds; the table's position says so, and they
//!   are dropped instead of appended twice;
//! - a catalog that is down keeps the rows in the outbox (bounded, oldest
//!   dropped and counted past [`OUTBOX_LIMIT`]) until it answers;
//! - a state started afresh (lost, unreadable) starts a new lineage, so its
//!   numbers cannot be mistaken for ones already written.

use std::collections::VecDeque;
use std::sync::Arc;

use iceberg::Catalog;
use serde::{Deserialize, Serialize};
use sluice_schema::batch::{AlertTransitionRow, alert_history_batch};
use sluice_schema::tables::ALERT_HISTORY;
use sluice_warehouse::append::{Advance, Outcome, TableSink};
use sluice_warehouse::source_id::SourceId;

use crate::state::{Labels, Transition};

/// Transitions the outbox holds at most while the table cannot be written;
/// past it the oldest are dropped (and counted). At a few hundred bytes a
/// row this bounds the saved state to a few MB.
pub const OUTBOX_LIMIT: usize = 10_000;
/// Transitions appended in one commit at most.
const ROWS_PER_COMMIT: usize = 5_000;

/// One transition waiting for the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub seq: u64,
    pub id: String,
    pub group: String,
    pub evaluator: String,
    pub transition: Transition,
}

/// The transitions not yet in `alert_history`, saved with the alert state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outbox {
    /// Names this numbering; new when the state starts afresh.
    #[serde(default)]
    pub lineage: String,
    #[serde(default)]
    pub next_seq: u64,
    #[serde(default)]
    pub rows: VecDeque<HistoryRow>,
    /// Transitions dropped because the outbox was full.
    #[serde(default)]
    pub dropped: u64,
}

impl Outbox {
    /// Queues a transition; `false` when the oldest had to go for it.
    pub fn push(&mut self, group: &str, evaluator: &str, transition: Transition) -> bool {
        if self.lineage.is_empty() {
            self.lineage = uuid::Uuid::now_v7().simple().to_string();
        }
        let mut kept_all = true;
        if self.rows.len() >= OUTBOX_LIMIT {
            self.rows.pop_front();
            self.dropped += 1;
            kept_all = false;
        }
        self.rows.push_back(HistoryRow {
            seq: self.next_seq,
            id: uuid::Uuid::now_v7().to_string(),
            group: group.to_string(),
            evaluator: evaluator.to_string(),
            transition,
        });
        self.next_seq += 1;
        kept_all
    }

    /// The table holds every row numbered below `upto`.
    pub fn written(&mut self, lineage: &str, upto: u64) {
        if self.lineage == lineage {
            self.rows.retain(|r| r.seq >= upto);
        }
    }

    /// What to write next: the lineage and the oldest rows.
    pub fn next_batch(&self) -> Option<(String, Vec<HistoryRow>)> {
        if self.rows.is_empty() {
            return None;
        }
        let rows = self.rows.iter().take(ROWS_PER_COMMIT).cloned().collect();
        Some((self.lineage.clone(), rows))
    }
}

/// The source key a lineage's rows advance.
pub fn source_key(lineage: &str) -> String {
    SourceId::Outbox {
        name: format!("alerts/{lineage}"),
    }
    .to_string()
}

/// A series as Prometheus prints it: `name{a="x",b="y"}`, `alertname` left
/// out (it is the name), values escaped.
pub fn series(rule: &str, labels: &Labels) -> String {
    let mut out = String::from(rule);
    out.push('{');
    let mut first = true;
    for (k, v) in labels.iter().filter(|(k, _)| k.as_str() != "alertname") {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}

fn row(r: &HistoryRow) -> AlertTransitionRow {
    let t = &r.transition;
    AlertTransitionRow {
        transition_id: r.id.clone(),
        at: t.at.timestamp_micros(),
        rule_group: r.group.clone(),
        rule: t.rule.clone(),
        series: series(&t.rule, &t.labels),
        labels: t
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        from_state: t.from.as_str(),
        to_state: t.to.as_str(),
        value: Some(t.value),
        active_at: t.active_at.map(|a| a.timestamp_micros()),
        summary: t.summary.clone(),
        evaluator: Some(r.evaluator.clone()),
        seq: i64::try_from(r.seq).unwrap_or(i64::MAX),
    }
}

/// Appends outbox rows to `alert_history`.
pub struct HistoryWriter {
    catalog: Arc<dyn Catalog>,
    sink: TableSink,
    ensured: tokio::sync::OnceCell<()>,
}

impl HistoryWriter {
    pub fn new(catalog: Arc<dyn Catalog>, writer_id: &str) -> Self {
        Self {
            sink: TableSink::new(catalog.clone(), &ALERT_HISTORY, writer_id),
            catalog,
            ensured: tokio::sync::OnceCell::new(),
        }
    }

    /// Appends those of `rows` (one lineage, in order) the table does not
    /// hold yet; returns the number below which the table holds them all.
    pub async fn write(&self, lineage: &str, rows: &[HistoryRow]) -> Result<u64, String> {
        let Some(last) = rows.last() else {
            return Ok(0);
        };
        self.ensured
            .get_or_try_init(|| async {
                sluice_warehouse::catalog::ensure_one_table(self.catalog.as_ref(), &ALERT_HISTORY)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("creating alert_history: {e}"))
            })
            .await?;
        let source = source_key(lineage);
        let held = self
            .sink
            .current_positions()
            .await
            .map_err(|e| e.to_string())?
            .get(&source)
            .copied();
        let fresh: Vec<AlertTransitionRow> = rows
            .iter()
            .filter(|r| held.is_none_or(|h| i64::try_from(r.seq).is_ok_and(|s| s >= h)))
            .map(row)
            .collect();
        if fresh.is_empty() {
            // All written before (a crash between a commit and a save).
            return Ok(held.map_or(0, |h| u64::try_from(h).unwrap_or(0)));
        }
        if let (Some(h), Some(first)) = (held, fresh.first())
            && first.seq > h
        {
            tracing::warn!(
                expected = h,
                found = first.seq,
                "alert history: transitions between these were dropped (the outbox was full)"
            );
        }
        let to = i64::try_from(last.seq + 1).map_err(|e| e.to_string())?;
        let schema = Arc::new(ALERT_HISTORY.arrow_schema().map_err(|e| e.to_string())?);
        let batch = alert_history_batch(&schema, &fresh)
            .map_err(|e| format!("building alert_history rows: {e}"))?;
        let advance = Advance {
            source,
            from: held,
            to,
        };
        match self
            .sink
            .commit(&[advance], &[batch])
            .await
            .map_err(|e| e.to_string())?
        {
            Outcome::Committed { .. } => Ok(last.seq + 1),
            Outcome::Fenced { found, .. } => Err(format!(
                "another evaluator wrote this alert history meanwhile (now at {found:?}); trying again"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::AlertState;

    fn transition(pod: &str) -> Transition {
        Transition {
            at: chrono::Utc::now(),
            rule: "R".into(),
            labels: [("pod".to_string(), pod.to_string())].into(),
            from: AlertState::Inactive,
            to: AlertState::Pending,
            value: 1.0,
            active_at: None,
            summary: None,
        }
    }

    #[test]
    fn the_outbox_numbers_in_order_and_stays_bounded() {
        let mut o = Outbox::default();
        for i in 0..OUTBOX_LIMIT + 3 {
            let kept = o.push("g", "me", transition(&i.to_string()));
            assert_eq!(kept, i < OUTBOX_LIMIT);
        }
        assert_eq!(o.rows.len(), OUTBOX_LIMIT);
        assert_eq!(o.dropped, 3);
        assert_eq!(o.rows.front().map(|r| r.seq), Some(3));
        let lineage = o.lineage.clone();
        assert!(!lineage.is_empty());
        o.written("another lineage", u64::MAX);
        assert_eq!(o.rows.len(), OUTBOX_LIMIT);
        o.written(&lineage, 10);
        assert_eq!(o.rows.front().map(|r| r.seq), Some(10));
        let (l, batch) = o.next_batch().unwrap();
        assert_eq!((l, batch.len()), (lineage, ROWS_PER_COMMIT));
    }

    #[test]
    fn series_print_as_prometheus_does() {
        let labels: Labels = [
            ("alertname".to_string(), "R".to_string()),
            ("pod".to_string(), "a\"b\\c".to_string()),
            ("ns".to_string(), "x".to_string()),
        ]
        .into();
        assert_eq!(series("R", &labels), r#"R{ns="x",pod="a\"b\\c"}"#);
    }
}
