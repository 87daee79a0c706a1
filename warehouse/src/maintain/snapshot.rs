//! Snapshots that remove data files: compaction's `replace` (files out,
//! their rows rewritten into files in) and retention's `delete` (files out).
//!
//! iceberg-rust 0.10.1 only appends, so this builds them as Java's
//! `RewriteFiles` / `DeleteFiles` do: every live entry of the base snapshot
//! is written again into merged manifests — `EXISTING` with its original
//! snapshot id and sequence numbers, or `DELETED` (with them too) when it
//! leaves — new files are `ADDED` with the new sequence number, and the
//! summary carries added/deleted/total counts and the writer's source
//! positions, so a writer that starts right after resumes exactly. Rewriting
//! every manifest also merges the one-manifest-per-commit history of the
//! writers into a few.

use std::collections::{HashMap, HashSet};

use iceberg::TableUpdate;
use iceberg::spec::ManifestEntry;
use iceberg::spec::{
    DataContentType, DataFile, FormatVersion, MAIN_BRANCH, ManifestContentType, ManifestFile,
    ManifestListWriter, ManifestWriterBuilder, Operation, Snapshot, SnapshotReference,
    SnapshotRetention, Summary,
};
use iceberg::table::Table;

use crate::append::{POSITIONS_PROPERTY, positions};

/// Property naming what made a maintenance snapshot.
pub const MAINTENANCE_PROPERTY: &str = "sluice.maintenance";
/// Property of a retention snapshot: the first instant (epoch
/// microseconds, a day's start) the table keeps. The log indexer drops the
/// splits of the days before it.
pub const RETAINED_FROM_PROPERTY: &str = "sluice.retained-from-us";
/// Table property: the first instant (RFC 3339) the table keeps, set by
/// retention; what `GET /v1/tables` reports.
pub const RETAINED_FROM_TABLE_PROPERTY: &str = "sluice.retained-from";

/// Entries per merged manifest (~8 MiB of Avro for our tables).
const ENTRIES_PER_MANIFEST: usize = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("table {table}: {context}: {source}")]
    Iceberg {
        table: String,
        context: &'static str,
        #[source]
        source: iceberg::Error,
    },
    #[error("table {table} has no current snapshot")]
    Empty { table: String },
    #[error(
        "table {table}: {missing} of the files to remove are no longer in the table (another maintenance run removed them)"
    )]
    Gone { table: String, missing: usize },
    #[error("table {table}: {message}")]
    Format { table: String, message: String },
}

/// The live data files of a table's current snapshot, with their entries.
pub async fn live_entries(table: &Table) -> Result<Vec<ManifestEntry>, SnapshotError> {
    let name = table.identifier().name().to_string();
    let err = |context| {
        let name = name.clone();
        move |source| SnapshotError::Iceberg {
            table: name,
            context,
            source,
        }
    };
    let Some(current) = table.metadata().current_snapshot() else {
        return Ok(Vec::new());
    };
    let list = table
        .manifest_list_reader(current)
        .load()
        .await
        .map_err(err("reading the manifest list"))?;
    let mut live = Vec::new();
    for manifest in list.entries() {
        if manifest.content != ManifestContentType::Data {
            return Err(SnapshotError::Format {
                table: name,
                message: "the table has delete files (written by another engine); sluice's maintenance handles data files only".into(),
            });
        }
        let m = manifest
            .load_manifest(table.file_io())
            .await
            .map_err(err("reading a manifest"))?;
        for entry in m.entries() {
            if entry.is_alive() && entry.content_type() == DataContentType::Data {
                live.push(entry.as_ref().clone());
            }
        }
    }
    Ok(live)
}

/// What a maintenance snapshot changes.
pub struct Rewrite<'a> {
    pub operation: Operation,
    /// Paths of live data files that leave the table.
    pub removed: &'a HashSet<String>,
    /// Files that enter it (compaction's output).
    pub added: &'a [DataFile],
    /// Why, for the summary (`compaction`, `retention`).
    pub reason: &'static str,
    /// For retention: the first day kept (days since the epoch).
    pub retained_from_day: Option<i64>,
}

/// Builds the snapshot of `rewrite` on top of `table`'s current snapshot
/// (manifests and manifest list written), and the updates that commit it.
pub async fn build(
    table: &Table,
    rewrite: &Rewrite<'_>,
) -> Result<Vec<TableUpdate>, SnapshotError> {
    let name = table.identifier().name().to_string();
    let err = |context| {
        let name = name.clone();
        move |source| SnapshotError::Iceberg {
            table: name,
            context,
            source,
        }
    };
    let metadata = table.metadata();
    let Some(base) = metadata.current_snapshot() else {
        return Err(SnapshotError::Empty { table: name });
    };
    if metadata.format_version() != FormatVersion::V2 {
        return Err(SnapshotError::Format {
            table: name,
            message: format!(
                "format version {} (maintenance writes v2 tables)",
                metadata.format_version()
            ),
        });
    }
    let live = live_entries(table).await?;
    let present: HashSet<&str> = live.iter().map(|e| e.file_path()).collect();
    let missing = rewrite
        .removed
        .iter()
        .filter(|p| !present.contains(p.as_str()))
        .count();
    if missing > 0 {
        return Err(SnapshotError::Gone {
            table: name,
            missing,
        });
    }

    let snapshot_id = new_snapshot_id(table);
    let sequence = metadata.next_sequence_number();
    let schema = metadata.current_schema().clone();
    let spec = metadata.default_partition_spec().as_ref().clone();
    let commit_id = uuid::Uuid::now_v7();
    let manifest_path = |n: usize| {
        format!(
            "{}/metadata/{commit_id}-m{n}.avro",
            metadata.location().trim_end_matches('/')
        )
    };

    let mut counts = Counts::default();
    for e in &live {
        counts.total_files += 1;
        counts.total_records += e.record_count();
        counts.total_bytes += e.file_size_in_bytes();
    }
    // Entries in the order they are written: kept, removed, added.
    enum Item<'a> {
        Kept(&'a ManifestEntry),
        Removed(&'a ManifestEntry),
        Added(&'a DataFile),
    }
    let mut items: Vec<Item> = Vec::with_capacity(live.len() + rewrite.added.len());
    for e in &live {
        if rewrite.removed.contains(e.file_path()) {
            counts.deleted_files += 1;
            counts.deleted_records += e.record_count();
            counts.removed_bytes += e.file_size_in_bytes();
            items.push(Item::Removed(e));
        } else {
            items.push(Item::Kept(e));
        }
    }
    for f in rewrite.added {
        counts.added_files += 1;
        counts.added_records += f.record_count();
        counts.added_bytes += f.file_size_in_bytes();
        items.push(Item::Added(f));
    }

    let mut manifests: Vec<ManifestFile> = Vec::new();
    for (n, chunk) in items.chunks(ENTRIES_PER_MANIFEST).enumerate() {
        let output = table
            .file_io()
            .new_output(manifest_path(n))
            .map_err(err("creating a manifest"))?;
        let mut writer =
            ManifestWriterBuilder::new(output, Some(snapshot_id), schema.clone(), spec.clone())
                .build_v2_data();
        for item in chunk {
            let result = match item {
                Item::Kept(e) => writer.add_existing_file(
                    e.data_file().clone(),
                    e.snapshot_id().unwrap_or(base.snapshot_id()),
                    e.sequence_number().unwrap_or(0),
                    e.file_sequence_number,
                ),
                Item::Removed(e) => writer.add_delete_file(
                    e.data_file().clone(),
                    e.sequence_number().unwrap_or(0),
                    e.file_sequence_number,
                ),
                Item::Added(f) => writer.add_file((*f).clone(), sequence),
            };
            result.map_err(err("writing a manifest entry"))?;
        }
        manifests.push(
            writer
                .write_manifest_file()
                .await
                .map_err(err("writing a manifest"))?,
        );
    }

    let list_path = format!(
        "{}/metadata/snap-{snapshot_id}-1-{commit_id}.avro",
        metadata.location().trim_end_matches('/')
    );
    let list_out = table
        .file_io()
        .new_output(&list_path)
        .map_err(err("creating the manifest list"))?
        .writer()
        .await
        .map_err(err("creating the manifest list"))?;
    let mut list =
        ManifestListWriter::v2(list_out, snapshot_id, Some(base.snapshot_id()), sequence);
    list.add_manifests(manifests.into_iter())
        .map_err(err("writing the manifest list"))?;
    list.close()
        .await
        .map_err(err("writing the manifest list"))?;

    let mut props = counts.summary();
    props.insert(MAINTENANCE_PROPERTY.into(), rewrite.reason.into());
    if let Some(day) = rewrite.retained_from_day {
        props.insert(
            RETAINED_FROM_PROPERTY.into(),
            (day * 86_400_000_000).to_string(),
        );
    }
    // The writers' positions stay current whatever snapshots expire.
    let held = positions(table, "maintenance").map_err(|e| SnapshotError::Format {
        table: name.clone(),
        message: e.to_string(),
    })?;
    if !held.is_empty() {
        props.insert(
            POSITIONS_PROPERTY.into(),
            serde_json::to_string(&held).map_err(|e| SnapshotError::Format {
                table: name.clone(),
                message: e.to_string(),
            })?,
        );
    }
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(Some(base.snapshot_id()))
        .with_sequence_number(sequence)
        .with_timestamp_ms(chrono_now_ms())
        .with_manifest_list(list_path)
        .with_summary(Summary {
            operation: rewrite.operation.clone(),
            additional_properties: props,
        })
        .with_schema_id(metadata.current_schema_id())
        .build();
    let mut updates = Vec::with_capacity(3);
    if let Some(day) = rewrite.retained_from_day
        && let Some(at) = chrono::DateTime::from_timestamp(day * 86_400, 0)
    {
        updates.push(TableUpdate::SetProperties {
            updates: HashMap::from([(
                RETAINED_FROM_TABLE_PROPERTY.to_string(),
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            )]),
        });
    }
    updates.extend([
        TableUpdate::AddSnapshot { snapshot },
        TableUpdate::SetSnapshotRef {
            ref_name: MAIN_BRANCH.to_string(),
            reference: SnapshotReference::new(
                snapshot_id,
                SnapshotRetention::branch(None, None, None),
            ),
        },
    ]);
    Ok(updates)
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A positive id no snapshot of the table has.
fn new_snapshot_id(table: &Table) -> i64 {
    loop {
        let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
        let id = ((a ^ b) >> 1) as i64;
        if id != 0 && table.metadata().snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

#[derive(Default)]
struct Counts {
    added_files: u64,
    deleted_files: u64,
    added_records: u64,
    deleted_records: u64,
    added_bytes: u64,
    removed_bytes: u64,
    total_files: u64,
    total_records: u64,
    total_bytes: u64,
}

impl Counts {
    /// The standard summary fields (as Java's `SnapshotSummary` names them).
    fn summary(&self) -> HashMap<String, String> {
        let after = |total: u64, added: u64, removed: u64| (total + added - removed).to_string();
        HashMap::from([
            ("added-data-files".into(), self.added_files.to_string()),
            ("deleted-data-files".into(), self.deleted_files.to_string()),
            ("added-records".into(), self.added_records.to_string()),
            ("deleted-records".into(), self.deleted_records.to_string()),
            ("added-files-size".into(), self.added_bytes.to_string()),
            ("removed-files-size".into(), self.removed_bytes.to_string()),
            (
                "total-data-files".into(),
                after(self.total_files, self.added_files, self.deleted_files),
            ),
            (
                "total-records".into(),
                after(self.total_records, self.added_records, self.deleted_records),
            ),
            (
                "total-files-size".into(),
                after(self.total_bytes, self.added_bytes, self.removed_bytes),
            ),
            ("total-delete-files".into(), "0".into()),
            ("total-position-deletes".into(), "0".into()),
            ("total-equality-deletes".into(), "0".into()),
        ])
    }
}
