//! Compaction: per day partition, small data files are bin-packed into
//! groups near the target size, each group's rows read back, sorted in the
//! table's order and written as new files; one `replace` snapshot swaps
//! them in.

use std::collections::{BTreeMap, HashSet};

use arrow_array::RecordBatch;
use futures::StreamExt;
use iceberg::arrow::ArrowFileReader;
use iceberg::io::FileMetadata;
use iceberg::spec::{DataFile, ManifestEntry};
use iceberg::table::Table;
use parquet::arrow::ParquetRecordBatchStreamBuilder;

use crate::append::TableSink;

/// A set of files rewritten together.
#[derive(Debug, Clone)]
pub struct Group {
    /// The partition, as iceberg-rust prints it (for logs).
    pub partition: String,
    pub files: Vec<ManifestEntry>,
}

impl Group {
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.file_size_in_bytes()).sum()
    }
}

/// Groups of at least two small files (under three quarters of `target`)
/// of one partition, each at most `target` bytes in all: first-fit
/// decreasing, so files near the target are left alone.
pub fn plan(live: &[ManifestEntry], target: u64) -> Vec<Group> {
    let mut by_partition: BTreeMap<String, Vec<&ManifestEntry>> = BTreeMap::new();
    for e in live {
        if e.file_size_in_bytes() < target / 4 * 3 {
            by_partition
                .entry(format!("{:?}", e.data_file().partition()))
                .or_default()
                .push(e);
        }
    }
    let mut groups = Vec::new();
    for (partition, mut files) in by_partition {
        files.sort_by_key(|f| std::cmp::Reverse(f.file_size_in_bytes()));
        let mut bins: Vec<(u64, Vec<ManifestEntry>)> = Vec::new();
        for f in files {
            let size = f.file_size_in_bytes();
            match bins.iter_mut().find(|(used, _)| used + size <= target) {
                Some((used, bin)) => {
                    *used += size;
                    bin.push(f.clone());
                }
                None => bins.push((size, vec![f.clone()])),
            }
        }
        for (_, files) in bins {
            if files.len() >= 2 {
                groups.push(Group {
                    partition: partition.clone(),
                    files,
                });
            }
        }
    }
    groups
}

#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("writing the compacted files: {0}")]
    Write(#[source] crate::append::SinkError),
}

/// Reads a group's rows and writes them as new files in the table's order.
/// Returns the new files and the rows they hold.
pub async fn rewrite(
    sink: &TableSink,
    table: &Table,
    group: &Group,
) -> Result<(Vec<DataFile>, u64), RewriteError> {
    let mut batches: Vec<RecordBatch> = Vec::new();
    for entry in &group.files {
        for b in read_file(table, entry.data_file()).await? {
            batches.push(sink.conform(table, &b).map_err(RewriteError::Write)?);
        }
    }
    let sorted = sink
        .sort_blocking(batches)
        .await
        .map_err(RewriteError::Write)?;
    sink.write_files(table, sorted.as_ref())
        .await
        .map_err(RewriteError::Write)
}

/// Every row of one data file.
async fn read_file(table: &Table, file: &DataFile) -> Result<Vec<RecordBatch>, RewriteError> {
    let path = file.file_path().to_string();
    let read = |source: Box<dyn std::error::Error + Send + Sync>| RewriteError::Read {
        path: path.clone(),
        source,
    };
    let reader = table
        .file_io()
        .new_input(&path)
        .map_err(|e| read(Box::new(e)))?
        .reader()
        .await
        .map_err(|e| read(Box::new(e)))?;
    let reader = ArrowFileReader::new(
        FileMetadata {
            size: file.file_size_in_bytes(),
        },
        reader,
    );
    let mut stream = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(|e| read(Box::new(e)))?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| read(Box::new(e)))?;
    let mut batches = Vec::new();
    while let Some(b) = stream.next().await {
        batches.push(b.map_err(|e| read(Box::new(e)))?);
    }
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    if rows != file.record_count() {
        return Err(read(
            format!(
                "{rows} rows read, the manifest says {}",
                file.record_count()
            )
            .into(),
        ));
    }
    Ok(batches)
}

/// The paths of a plan's files.
pub fn paths(groups: &[Group]) -> HashSet<String> {
    groups
        .iter()
        .flat_map(|g| g.files.iter().map(|f| f.file_path().to_string()))
        .collect()
}
