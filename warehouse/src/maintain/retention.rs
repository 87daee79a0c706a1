//! Retention: whole day partitions older than a table's retention leave it
//! in a `delete` snapshot. A day goes when all of it is older than the
//! retention (its end, not its start, is past the cutoff).

use std::collections::HashSet;
use std::time::Duration;

use iceberg::spec::{Literal, ManifestEntry, PrimitiveLiteral, Transform};
use iceberg::table::Table;

/// The first day (days since the epoch) a table keeps: data of earlier
/// days is expired.
pub fn first_kept_day(now_ms: i64, retention: Duration) -> i64 {
    let cutoff_ms = now_ms - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX / 2);
    cutoff_ms.div_euclid(86_400_000)
}

/// The live files of days before `first_kept_day`, when the table is
/// partitioned by day (otherwise none: retention drops whole partitions
/// only).
pub fn expired_files(
    table: &Table,
    live: &[ManifestEntry],
    first_kept_day: i64,
) -> HashSet<String> {
    let spec = table.metadata().default_partition_spec();
    let day_field = spec
        .fields()
        .iter()
        .position(|f| f.transform == Transform::Day);
    let Some(index) = day_field else {
        return HashSet::new();
    };
    live.iter()
        .filter(|e| match e.data_file().partition().fields().get(index) {
            Some(Some(Literal::Primitive(PrimitiveLiteral::Int(day)))) => {
                i64::from(*day) < first_kept_day
            }
            _ => false,
        })
        .map(|e| e.file_path().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_goes_once_all_of_it_is_past_the_retention() {
        let day = 86_400_000;
        // Day 100 ends at 101 * day; with 14 days' retention it goes once
        // now - 14 days >= 101 * day.
        let retention = Duration::from_secs(14 * 86_400);
        assert_eq!(first_kept_day(115 * day - 1, retention), 100);
        assert_eq!(first_kept_day(115 * day, retention), 101);
    }
}
