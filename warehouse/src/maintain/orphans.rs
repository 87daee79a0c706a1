//! Cleanup: files under a table's `data/` and `metadata/` that no live
//! snapshot references — the files of expired snapshots, compaction's
//! inputs once their snapshots are gone, and orphans of writers that died
//! between writing and committing — are deleted once older than a safety
//! age (a writer still about to commit its files is never that slow).

use std::collections::HashSet;
use std::time::Duration;

use futures::TryStreamExt;
use iceberg::table::Table;
use object_store::ObjectStoreExt;

use crate::object_stores::ObjectStores;

#[derive(Debug, thiserror::Error)]
pub enum OrphanError {
    #[error("table {table}: reading {what}: {source}")]
    Iceberg {
        table: String,
        what: &'static str,
        #[source]
        source: iceberg::Error,
    },
    #[error("table {table}: listing {location}: {message}")]
    List {
        table: String,
        location: String,
        message: String,
    },
}

/// What a sweep found and did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Swept {
    pub listed: usize,
    pub referenced: usize,
    pub deleted: usize,
    pub deleted_bytes: u64,
}

/// The key of a location inside its store: `file:///a/b` and `/a/b` → `a/b`,
/// `s3://bucket/k` → `k`.
pub fn object_key(location: &str) -> String {
    if let Some(rest) = location
        .strip_prefix("s3://")
        .or_else(|| location.strip_prefix("s3a://"))
    {
        return rest.split_once('/').map_or("", |(_, k)| k).to_string();
    }
    location
        .strip_prefix("file://")
        .unwrap_or(location)
        .trim_start_matches('/')
        .to_string()
}

/// The keys (see [`object_key`]) of the files [`reachable`] names.
pub async fn referenced(table: &Table) -> Result<HashSet<String>, OrphanError> {
    Ok(reachable(table)
        .await?
        .iter()
        .map(|l| object_key(l))
        .collect())
}

/// Deletes what the snapshots `expired` of `before` (the table before a
/// snapshot expiry) reached, and `before`'s metadata files, unless `keep`
/// (what the table reaches after it, [`reachable`]) still names them —
/// what Java's `ExpireSnapshots` cleans up. Only the expired snapshots are
/// read, and no listing is needed, so it works on stores that do not list
/// (S3 table buckets).
pub async fn delete_unreachable(
    before: &Table,
    expired: &HashSet<i64>,
    keep: &HashSet<String>,
) -> Result<Swept, OrphanError> {
    let gone = reachable_from(before, |id| expired.contains(&id)).await?;
    let mut swept = Swept {
        referenced: keep.len(),
        ..Swept::default()
    };
    for location in gone.difference(keep) {
        swept.listed += 1;
        match before.file_io().delete(location).await {
            Ok(()) => swept.deleted += 1,
            Err(e) => {
                tracing::warn!(table = before.identifier().name(), file = %location, error = %e, "could not delete a file of an expired snapshot");
            }
        }
    }
    Ok(swept)
}

/// Every file a snapshot still in the table's metadata needs, and the
/// metadata files the table's history lists: full locations.
pub async fn reachable(table: &Table) -> Result<HashSet<String>, OrphanError> {
    reachable_from(table, |_| true).await
}

/// [`reachable`], reading only the snapshots `read` picks.
async fn reachable_from(
    table: &Table,
    read: impl Fn(i64) -> bool,
) -> Result<HashSet<String>, OrphanError> {
    let name = table.identifier().name().to_string();
    let err = |what| {
        let name = name.clone();
        move |source| OrphanError::Iceberg {
            table: name,
            what,
            source,
        }
    };
    let metadata = table.metadata();
    let mut keep = HashSet::new();
    if let Some(l) = table.metadata_location() {
        keep.insert(l.to_string());
    }
    for log in metadata.metadata_log() {
        keep.insert(log.metadata_file.clone());
    }
    let mut manifests_seen = HashSet::new();
    for snapshot in metadata.snapshots().filter(|s| read(s.snapshot_id())) {
        keep.insert(snapshot.manifest_list().to_string());
        let list = table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(err("a manifest list"))?;
        for manifest in list.entries() {
            if !manifests_seen.insert(manifest.manifest_path.clone()) {
                continue;
            }
            keep.insert(manifest.manifest_path.clone());
            let m = manifest
                .load_manifest(table.file_io())
                .await
                .map_err(err("a manifest"))?;
            for entry in m.entries() {
                // A DELETED entry's file is needed only by the snapshot
                // before it, which lists it as live if it is still here.
                if entry.is_alive() {
                    keep.insert(entry.file_path().to_string());
                }
            }
        }
    }
    for stats in metadata.statistics_iter() {
        keep.insert(stats.statistics_path.clone());
    }
    Ok(keep)
}

/// Deletes the files under the table's `data/` and `metadata/` that
/// `reachable` (the table's [`reachable`] files) does not name, once older
/// than `min_age`. A listing error stops the sweep before it deletes
/// anything.
pub async fn sweep(
    table: &Table,
    reachable: &HashSet<String>,
    stores: &ObjectStores,
    min_age: Duration,
) -> Result<Swept, OrphanError> {
    let name = table.identifier().name().to_string();
    let keep: HashSet<String> = reachable.iter().map(|l| object_key(l)).collect();
    let location = table
        .metadata()
        .location()
        .trim_end_matches('/')
        .to_string();
    let (store, _) = stores
        .store_for(&location)
        .map_err(|message| OrphanError::List {
            table: name.clone(),
            location: location.clone(),
            message,
        })?;
    let cutoff = chrono::Utc::now()
        - chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::days(1));
    let mut swept = Swept {
        referenced: keep.len(),
        ..Swept::default()
    };
    for dir in ["data", "metadata"] {
        let prefix = object_store::path::Path::from(format!("{}/{dir}", object_key(&location)));
        let listed: Vec<object_store::ObjectMeta> = store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| OrphanError::List {
            table: name.clone(),
            location: format!("{location}/{dir}"),
            message: e.to_string(),
        })?;
        for meta in listed {
            swept.listed += 1;
            if keep.contains(meta.location.as_ref()) || meta.last_modified > cutoff {
                continue;
            }
            match store.delete(&meta.location).await {
                Ok(()) => {
                    swept.deleted += 1;
                    swept.deleted_bytes += meta.size;
                }
                Err(e) => {
                    tracing::warn!(table = %name, file = %meta.location, error = %e, "could not delete an unreferenced file");
                }
            }
        }
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_listing() {
        assert_eq!(
            object_key("file:///w/t/data/x.parquet"),
            "w/t/data/x.parquet"
        );
        assert_eq!(object_key("/w/t/x"), "w/t/x");
        assert_eq!(object_key("s3://lake/w/t/x"), "w/t/x");
        assert_eq!(object_key("s3a://lake/w"), "w");
    }
}
