//! A writer's checkpoint in one table: how far each of its sources has been
//! written, moved only by the commits that carry those positions in the
//! same snapshot as the rows ([`TableSink::commit_settled`]). A writer holds
//! one per table and advances it batch by batch; when the table moved under
//! it (another writer, or a copy of this one), the advance comes back
//! [`NotAdvanced::Fenced`] and the checkpoint is unchanged.

use crate::append::{Advance, FORGOTTEN, Positions, SinkError, Sorted, TableSink};
use crate::commit_loop::{Retries, Settled};

/// How far each source is, by the writer's own name for it (the table may
/// key it differently: an instance scope, see [`Checkpoint::try_advance`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    held: Positions,
}

/// A committed advance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advanced {
    pub rows: u64,
    /// Committed by an earlier attempt whose answer was lost.
    pub earlier: bool,
}

/// Why the checkpoint did not move.
#[derive(Debug)]
pub enum NotAdvanced {
    /// The table holds `found` for `source` where this checkpoint expected
    /// `expected`: someone else moved it.
    Fenced {
        source: String,
        expected: Option<i64>,
        found: Option<i64>,
    },
    /// Still failing after the attempts allowed.
    Failed(SinkError),
}

impl Checkpoint {
    pub fn new(held: Positions) -> Self {
        Self { held }
    }

    /// Where `source` is, if the table knows it.
    pub fn get(&self, source: &str) -> Option<i64> {
        self.held.get(source).copied()
    }

    /// Every source and its position.
    pub fn sources(&self) -> impl Iterator<Item = (&str, i64)> {
        self.held.iter().map(|(s, p)| (s.as_str(), *p))
    }

    /// Commits `sorted` as the rows of each source in `to` from where this
    /// checkpoint holds it up to its new position ([`FORGOTTEN`] drops the
    /// source); `key` names a source as the table keys it. Failed attempts
    /// are retried as `retries` says, `on_error` seeing each.
    pub async fn try_advance(
        &mut self,
        sink: &TableSink,
        to: &[(String, i64)],
        key: &(dyn Fn(&str) -> String + Sync),
        sorted: Option<&Sorted>,
        retries: Retries,
        on_error: &(dyn Fn(&SinkError) + Send + Sync),
    ) -> Result<Advanced, NotAdvanced> {
        let advances: Vec<Advance> = to
            .iter()
            .map(|(source, at)| Advance {
                source: key(source),
                from: self.get(source),
                to: *at,
            })
            .collect();
        match sink
            .commit_settled(&advances, sorted, retries, on_error)
            .await
        {
            Settled::Committed { rows, earlier, .. } => {
                for (source, at) in to {
                    if *at == FORGOTTEN {
                        self.held.remove(source);
                    } else {
                        self.held.insert(source.clone(), *at);
                    }
                }
                Ok(Advanced { rows, earlier })
            }
            Settled::Fenced {
                source,
                expected,
                found,
            } => Err(NotAdvanced::Fenced {
                source,
                expected,
                found,
            }),
            Settled::Failed(e) => Err(NotAdvanced::Failed(e)),
        }
    }
}
