//! Which of several `sluice serve` replicas evaluates: a lease in the
//! warehouse's object store, so replicas share nothing else (no
//! Kubernetes API, no catalog of a particular kind).
//!
//! The lease is a sequence of generations, `lease/<generation>.json`, each
//! written with a create-only put (`If-None-Match: *` on S3, a hard link on
//! a filesystem): of two replicas that try to write the same generation
//! exactly one succeeds. The holder renews by writing the next generation
//! before its record expires; another replica takes over by writing the
//! next generation once the newest record has expired. Older generations
//! are deleted by the holder, so the directory holds two or three objects.
//! Expiry compares the record's wall-clock time with the reader's, so
//! replicas' clocks must agree to well within the lease's duration (NTP
//! does); the lease saves work and duplicate webhook calls — Alertmanager
//! deduplicates what two evaluators would send.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    holder: String,
    generation: u64,
    expires_at: DateTime<Utc>,
}

pub struct Lease {
    store: Arc<dyn ObjectStore>,
    dir: ObjectPath,
    holder: String,
    duration: Duration,
    /// The generation this process wrote last, while it holds the lease.
    held: Option<u64>,
}

/// Who holds the lease, as far as the newest record says.
#[derive(Debug, Clone, PartialEq)]
pub enum Holder {
    Us,
    Other {
        holder: String,
        expires_at: DateTime<Utc>,
    },
}

impl Lease {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        dir: ObjectPath,
        holder: String,
        duration: Duration,
    ) -> Self {
        Self {
            store,
            dir,
            holder,
            duration,
            held: None,
        }
    }

    pub fn holder_name(&self) -> &str {
        &self.holder
    }

    fn path(&self, generation: u64) -> ObjectPath {
        self.dir.clone().join(format!("{generation:020}.json"))
    }

    /// The highest generation listed, and the newest record that could be
    /// read (`None`: none listed). A generation deleted between the listing
    /// and the read (the holder removes old ones) is skipped for reading,
    /// but the next claim is still above every listed one, so a replica can
    /// never re-create an old generation and hold the lease beside the
    /// real holder.
    async fn newest(&self) -> Result<Option<(u64, Option<Record>)>, String> {
        let listed: Vec<_> = self
            .store
            .list(Some(&self.dir))
            .try_collect()
            .await
            .map_err(|e| format!("listing the alert lease {}: {e}", self.dir))?;
        let mut gens: Vec<u64> = listed
            .iter()
            .filter_map(|m| m.location.filename()?.strip_suffix(".json")?.parse().ok())
            .collect();
        gens.sort_unstable();
        let Some(&highest) = gens.last() else {
            return Ok(None);
        };
        for g in gens.into_iter().rev() {
            match self.store.get(&self.path(g)).await {
                Ok(r) => {
                    let bytes = r
                        .bytes()
                        .await
                        .map_err(|e| format!("reading the alert lease: {e}"))?;
                    let record: Record = serde_json::from_slice(&bytes).map_err(|e| {
                        format!(
                            "the alert lease {} is not a lease record: {e}",
                            self.path(g)
                        )
                    })?;
                    // Only the highest generation speaks for the lease; an
                    // older one read means a newer one was just written.
                    return Ok(Some((highest, (g == highest).then_some(record))));
                }
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(format!("reading the alert lease: {e}")),
            }
        }
        Ok(Some((highest, None)))
    }

    /// Writes `generation` if nobody has; `Ok(false)` when another did.
    async fn claim(&self, generation: u64, now: DateTime<Utc>) -> Result<bool, String> {
        let record = Record {
            holder: self.holder.clone(),
            generation,
            expires_at: now
                + chrono::Duration::from_std(self.duration).unwrap_or(chrono::Duration::MAX),
        };
        let body = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&self.path(generation), PutPayload::from(body), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => Err(
                "the warehouse's object store does not do create-only writes, which the alert \
                 lease needs: on S3 stores without conditional writes set [alerts] lease = false \
                 and run the evaluator on one replica"
                    .into(),
            ),
            Err(e) => Err(format!("writing the alert lease: {e}")),
        }
    }

    /// Takes or renews the lease if it is free, expired or ours; returns
    /// who holds it afterwards.
    pub async fn tick(&mut self) -> Result<Holder, String> {
        let now = Utc::now();
        let newest = self.newest().await?;
        let next = match &newest {
            None => 0,
            Some((g, Some(r))) => {
                let ours = r.holder == self.holder && self.held == Some(*g);
                if !ours && r.expires_at > now {
                    self.held = None;
                    return Ok(Holder::Other {
                        holder: r.holder.clone(),
                        expires_at: r.expires_at,
                    });
                }
                g + 1
            }
            // The newest generation vanished between listing and reading:
            // someone is renewing right now. Not ours this time.
            Some((_, None)) => {
                self.held = None;
                return Ok(Holder::Other {
                    holder: "unknown (renewing)".into(),
                    expires_at: now,
                });
            }
        };
        if self.claim(next, now).await? {
            self.held = Some(next);
            // Generations below the one just superseded are ours to remove;
            // that one stays, so a replica listing now still sees a record.
            if let Some((g, _)) = newest {
                for old in g.saturating_sub(3)..g {
                    if let Err(e) = self.store.delete(&self.path(old)).await
                        && !matches!(e, object_store::Error::NotFound { .. })
                    {
                        tracing::debug!(error = %e, "removing an old alert lease generation");
                    }
                }
            }
            Ok(Holder::Us)
        } else {
            self.held = None;
            match self.newest().await? {
                Some((_, Some(r))) => Ok(Holder::Other {
                    holder: r.holder,
                    expires_at: r.expires_at,
                }),
                _ => Ok(Holder::Other {
                    holder: "unknown".into(),
                    expires_at: now,
                }),
            }
        }
    }

    /// Gives the lease up (on shutdown) by writing an expired generation,
    /// so another replica takes over at once.
    pub async fn release(&mut self) {
        let Some(g) = self.held.take() else { return };
        let record = Record {
            holder: self.holder.clone(),
            generation: g + 1,
            expires_at: Utc::now() - chrono::Duration::seconds(1),
        };
        let Ok(body) = serde_json::to_vec(&record) else {
            return;
        };
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        if let Err(e) = self
            .store
            .put_opts(&self.path(g + 1), PutPayload::from(body), opts)
            .await
        {
            tracing::debug!(error = %e, "releasing the alert lease");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(store: &Arc<dyn ObjectStore>, dir: &ObjectPath, who: &str, secs: u64) -> Lease {
        Lease::new(
            store.clone(),
            dir.clone(),
            who.into(),
            Duration::from_secs(secs),
        )
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_a_release_hands_over() {
        let tmp = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(tmp.path()).unwrap());
        let dir = ObjectPath::from("lease");
        let mut a = lease(&store, &dir, "a", 60);
        let mut b = lease(&store, &dir, "b", 60);
        assert_eq!(a.tick().await.unwrap(), Holder::Us);
        assert!(matches!(b.tick().await.unwrap(), Holder::Other { holder, .. } if holder == "a"));
        // Renewals keep it and leave few objects behind.
        for _ in 0..5 {
            assert_eq!(a.tick().await.unwrap(), Holder::Us);
        }
        let n = store
            .list(Some(&dir))
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .len();
        assert!(n <= 3, "{n} generations left");
        assert!(matches!(b.tick().await.unwrap(), Holder::Other { .. }));
        a.release().await;
        assert_eq!(b.tick().await.unwrap(), Holder::Us);
        assert!(matches!(a.tick().await.unwrap(), Holder::Other { holder, .. } if holder == "b"));
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over() {
        let tmp = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(tmp.path()).unwrap());
        let dir = ObjectPath::from("lease");
        let mut a = lease(&store, &dir, "a", 1);
        let mut b = lease(&store, &dir, "b", 1);
        assert_eq!(a.tick().await.unwrap(), Holder::Us);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(b.tick().await.unwrap(), Holder::Us);
        // a has not renewed in time: it learns it lost.
        assert!(matches!(a.tick().await.unwrap(), Holder::Other { holder, .. } if holder == "b"));
    }
}
