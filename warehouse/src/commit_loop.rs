//! The one commit loop every writer uses — the Kafka writer, `sluice up`'s
//! writers, import — on top of [`TableSink::commit_sorted`]: failed
//! attempts retried with the one backoff as often as the writer allows, a
//! fence settled against the table (an earlier attempt whose answer was
//! lost is recognised), and every outcome counted in `sluice_table_*`.

use crate::append::{Advance, FORGOTTEN, Outcome, SinkError, Sorted, TableSink};

/// How [`TableSink::commit_settled`] ended.
#[derive(Debug)]
pub enum Settled {
    /// The rows and the positions are in the table: committed now, or by an
    /// earlier attempt of this very batch whose answer was lost
    /// (`earlier`, nothing appended now).
    Committed {
        snapshot_id: Option<i64>,
        data_files: usize,
        rows: u64,
        earlier: bool,
    },
    /// The table holds other positions for `source`: another writer moved
    /// it. Nothing appended.
    Fenced {
        source: String,
        expected: Option<i64>,
        found: Option<i64>,
    },
    /// Still failing after the attempts allowed ([`Retries`]).
    Failed(SinkError),
}

/// How often [`TableSink::commit_settled`] tries a commit that fails (the
/// catalog or the store not answering).
#[derive(Debug, Clone, Copy)]
pub enum Retries {
    /// Until it is decided: a writer whose input cannot be read again.
    UntilDecided,
    /// At most this many attempts: a writer that can re-read its input
    /// (and must not block its shutdown on an unreachable catalog).
    Attempts(u32),
}

impl TableSink {
    fn count(&self, outcome: &str) {
        if let Some(m) = &self.metrics {
            m.outcome(self.contract.name, outcome);
        }
    }

    /// The one commit loop every writer uses (the Kafka writer, `sluice
    /// up`'s writers, import): commits rows with their positions, retries a
    /// failed attempt with backoff ([`crate::retry::Backoff::unavailable`],
    /// `on_error` sees each failure), and settles a fence against the
    /// table — if the table holds exactly the positions this batch moves
    /// to, an earlier attempt whose answer was lost committed it.
    pub async fn commit_settled(
        &self,
        advances: &[Advance],
        sorted: Option<&Sorted>,
        retries: Retries,
        on_error: &(dyn Fn(&SinkError) + Send + Sync),
    ) -> Settled {
        let mut backoff = crate::retry::Backoff::unavailable();
        let mut attempt = 0u32;
        let started = std::time::Instant::now();
        loop {
            attempt += 1;
            let error = match self.commit_sorted(advances, sorted).await {
                Ok(Outcome::Committed {
                    snapshot_id,
                    data_files,
                    rows,
                }) => {
                    if let Some(m) = &self.metrics {
                        m.committed(self.contract.name, rows, started.elapsed().as_secs_f64());
                    }
                    return Settled::Committed {
                        snapshot_id: Some(snapshot_id),
                        data_files,
                        rows,
                        earlier: false,
                    };
                }
                Ok(Outcome::Fenced {
                    source,
                    expected,
                    found,
                }) => match self.current_positions().await {
                    Ok(now)
                        if advances.iter().all(|a| {
                            now.get(&a.source).copied() == (a.to != FORGOTTEN).then_some(a.to)
                        }) =>
                    {
                        self.count("earlier");
                        return Settled::Committed {
                            snapshot_id: None,
                            data_files: 0,
                            rows: 0,
                            earlier: true,
                        };
                    }
                    Ok(_) => {
                        self.count("fenced");
                        return Settled::Fenced {
                            source,
                            expected,
                            found,
                        };
                    }
                    Err(e) => e,
                },
                Err(e) => e,
            };
            self.count("failed");
            on_error(&error);
            if matches!(retries, Retries::Attempts(n) if attempt >= n) {
                return Settled::Failed(error);
            }
            backoff.wait().await;
        }
    }
}
