//! Which data files of `pod_logs` an indexing round reads, and in what
//! order: the files a snapshot added (or all live files, for a rebuild),
//! each with the day of log time its column bounds put it in.

use std::collections::BTreeMap;

use iceberg::spec::{DataContentType, ManifestContentType, ManifestStatus, Operation};
use iceberg::table::Table;

/// Splits hold one day of log time, so a search over a time range opens
/// the days it touches; finer buckets made many small splits whose term
/// dictionaries cost more to build and to open than the pruning saves.
pub const BUCKET_MICROS: i64 = 86_400_000_000;

/// A data file of the table to index.
pub(crate) struct DataFileRef {
    pub(crate) path: String,
    pub(crate) lines: u64,
    /// The day of log time all its lines are in, when its column bounds
    /// say so (the table is partitioned by day).
    pub(crate) day: Option<i64>,
}

impl DataFileRef {
    fn of(entry: &iceberg::spec::ManifestEntry, ts_field: Option<i32>) -> Self {
        let day = |bounds: &std::collections::HashMap<i32, iceberg::spec::Datum>| match bounds
            .get(&ts_field?)?
            .literal()
        {
            iceberg::spec::PrimitiveLiteral::Long(micros) => Some(micros.div_euclid(BUCKET_MICROS)),
            _ => None,
        };
        let file = entry.data_file();
        let (first, last) = (day(file.lower_bounds()), day(file.upper_bounds()));
        Self {
            path: entry.file_path().to_string(),
            lines: entry.record_count(),
            day: first.filter(|_| first == last),
        }
    }
}

/// The field id of the table's `ts` column.
fn ts_field(table: &Table) -> Option<i32> {
    table
        .metadata()
        .current_schema()
        .field_by_name("ts")
        .map(|f| f.id)
}

/// Data files with new rows a snapshot added. Compaction's `replace`
/// snapshots add files too, but their rows are already indexed.
pub(crate) async fn added_files(
    table: &Table,
    snapshot_id: i64,
) -> Result<Vec<DataFileRef>, iceberg::Error> {
    let Some(snapshot) = table.metadata().snapshot_by_id(snapshot_id) else {
        return Ok(Vec::new());
    };
    if snapshot.summary().operation == Operation::Replace {
        return Ok(Vec::new());
    }
    let list = table.manifest_list_reader(snapshot).load().await?;
    let ts = ts_field(table);
    let mut files = Vec::new();
    for mf in list.entries() {
        if mf.added_snapshot_id != snapshot_id || mf.content != ManifestContentType::Data {
            continue;
        }
        let manifest = mf.load_manifest(table.file_io()).await?;
        for e in manifest.entries() {
            if e.status() == ManifestStatus::Added
                && e.content_type() == DataContentType::Data
                && e.snapshot_id().is_none_or(|s| s == snapshot_id)
            {
                files.push(DataFileRef::of(e, ts));
            }
        }
    }
    Ok(files)
}

/// Every live data file of the current snapshot (for a rebuild): the
/// entries its data manifests hold as added or existing. The table has
/// no delete files (retention drops whole files).
pub(crate) async fn all_files(table: &Table) -> Result<Vec<DataFileRef>, iceberg::Error> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(Vec::new());
    };
    let list = table.manifest_list_reader(snapshot).load().await?;
    let ts = ts_field(table);
    let mut files = Vec::new();
    for mf in list.entries() {
        if mf.content != ManifestContentType::Data {
            continue;
        }
        let manifest = mf.load_manifest(table.file_io()).await?;
        for e in manifest.entries() {
            if e.status() != ManifestStatus::Deleted && e.content_type() == DataContentType::Data {
                files.push(DataFileRef::of(e, ts));
            }
        }
    }
    Ok(files)
}

/// The order a round reads its files in, each with the day it is the last
/// file of (whose splits can then close): a day at a time, in the order of
/// the days and, within a day, of the commits; files of no one day last.
///
/// Read in commit order, every commit's file of each day went to that
/// day's split in turn: the seven days of a round were open together, and
/// the split of the file being read was the only one working (1.7 of 2
/// cores busy). A day at a time, its rows go to as many splits as there
/// are cores (see `indexer`), and only those are open. Feeding two
/// days at once instead, one split each, cost 6 % more CPU for the same
/// lines: two splits twice the size, whose term tables share the caches
/// worse.
pub(crate) fn feeding_order(files: &[DataFileRef]) -> Vec<(&DataFileRef, Option<i64>)> {
    let mut days: BTreeMap<i64, Vec<&DataFileRef>> = BTreeMap::new();
    let mut undated = Vec::new();
    for f in files {
        match f.day {
            Some(d) => days.entry(d).or_default().push(f),
            None => undated.push(f),
        }
    }
    let mut out = Vec::with_capacity(files.len());
    for (day, files) in days {
        let last = files.len() - 1;
        out.extend(
            files
                .into_iter()
                .enumerate()
                .map(|(i, f)| (f, (i == last).then_some(day))),
        );
    }
    out.extend(undated.into_iter().map(|f| (f, None)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_fed_a_day_at_a_time_and_each_day_closes_after_its_last_file() {
        let file = |name: &str, day: Option<i64>| DataFileRef {
            path: name.into(),
            lines: 1,
            day,
        };
        // Commit order: each commit has a file of each of three days.
        let files = vec![
            file("c1-d3", Some(3)),
            file("c1-d1", Some(1)),
            file("c1-d2", Some(2)),
            file("mixed", None),
            file("c2-d1", Some(1)),
            file("c2-d3", Some(3)),
            file("c2-d2", Some(2)),
            file("c3-d1", Some(1)),
        ];
        let order: Vec<(String, Option<i64>)> = feeding_order(&files)
            .into_iter()
            .map(|(f, closes)| (f.path.clone(), closes))
            .collect();
        let s = |p: &str, c: Option<i64>| (p.to_string(), c);
        assert_eq!(
            order,
            vec![
                s("c1-d1", None),
                s("c2-d1", None),
                s("c3-d1", Some(1)),
                s("c1-d2", None),
                s("c2-d2", Some(2)),
                s("c1-d3", None),
                s("c2-d3", Some(3)),
                s("mixed", None),
            ]
        );
    }
}
