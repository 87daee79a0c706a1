//! Superseded table metadata files, deleted as they leave the table's
//! metadata log — Java Iceberg's `write.metadata.delete-after-commit`.
//!
//! Every commit writes a new metadata file holding every retained snapshot
//! (and each snapshot's summary carries the source positions), and the log
//! keeps the newest `write.metadata.previous-versions-max` (100) of them.
//! sluice commits about once a second per table, so without this the files
//! that fell off the log stayed until the orphan sweep (an hour): measured
//! under `up --demo --demo-load 10`, 4.6 GB of metadata JSON after 20
//! minutes for 160 MB of data (`scripts/soak`). With it, a table keeps its
//! current file and the hundred its log names.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use iceberg::table::Table;

/// The files `before`'s metadata log named that neither `after`'s log nor
/// `after` itself names. `before`'s own file is not among them: it enters
/// `after`'s log, and if a catalog ever failed to log it, the orphan sweep
/// is what removes it.
fn removed_metadata_files(before: &Table, after: &Table) -> Vec<String> {
    let mut keep: HashSet<&str> = after
        .metadata()
        .metadata_log()
        .iter()
        .map(|l| l.metadata_file.as_str())
        .collect();
    if let Some(current) = after.metadata_location() {
        keep.insert(current);
    }
    let mut gone: Vec<String> = before
        .metadata()
        .metadata_log()
        .iter()
        .map(|l| l.metadata_file.clone())
        .filter(|f| !keep.contains(f.as_str()))
        .collect();
    gone.sort();
    gone.dedup();
    gone
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// Deletes [`removed_metadata_files`]. A failure is
/// logged and never fails the commit that came before it: the orphan
/// sweep deletes whatever is left.
pub async fn delete_removed_metadata_files(before: &Table, after: &Table) {
    for file in removed_metadata_files(before, after) {
        match after.file_io().delete(&file).await {
            Ok(()) => {}
            // Once per process at warn: at a commit a second, a store that
            // refuses deletes (a REST catalog's own files, a read-only
            // grant) would otherwise log every second.
            Err(e) if !WARNED.swap(true, Ordering::Relaxed) => tracing::warn!(
                table = after.identifier().name(),
                %file,
                error = %e,
                "could not delete a metadata file that left the metadata log; \
                 the orphan sweep will (further failures are logged at debug)"
            ),
            Err(e) => tracing::debug!(
                table = after.identifier().name(),
                %file,
                error = %e,
                "could not delete a metadata file that left the metadata log"
            ),
        }
    }
}
