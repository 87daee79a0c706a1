//! Which splits of the index are merged together, and when.

use std::collections::BTreeMap;

use crate::round_files::BUCKET_MICROS;
use crate::split::SplitMeta;

/// Only splits smaller than this are merged (so big ones are not rewritten
/// over and over as small ones arrive).
pub const MERGE_BELOW_LINES: u64 = 1_000_000;
/// Splits below this many lines are all of the lowest merge level.
pub const MERGE_LEVEL_LINES: u64 = 10_000;

/// Ids of the splits to merge: within one day and schema version (tantivy
/// merges only equal schemas; splits that straddle days are left), the
/// splits of one size level, once `merge_at` of them are there.
///
/// Levels, as Quickwit's stable log merge policy has them: below
/// [`MERGE_LEVEL_LINES`] lines is level 0, and each level above holds
/// splits `merge_at` times bigger than the one below. Merging only equals
/// writes each line about log_merge_at(MERGE_BELOW_LINES / split size)
/// times; merging every small split of a day together rewrote the day's
/// growing split each round (at 10x demo load the retired copies reached
/// 4 GB against a 130 MB index).
/// Ids, not positions: each merge reshapes the list of splits.
pub(crate) fn merge_groups(splits: &[SplitMeta], merge_at: usize) -> Vec<Vec<String>> {
    let factor = merge_at.max(2) as u64;
    let level = |lines: u64| {
        let mut level = 0u32;
        let mut bound = MERGE_LEVEL_LINES;
        while lines >= bound {
            level += 1;
            bound = bound.saturating_mul(factor);
        }
        level
    };
    let mut groups: BTreeMap<(i64, u32, u32), Vec<String>> = BTreeMap::new();
    for s in splits {
        let day = s.min_ts.div_euclid(BUCKET_MICROS);
        if s.lines < MERGE_BELOW_LINES && day == s.max_ts.div_euclid(BUCKET_MICROS) {
            groups
                .entry((day, s.schema_version, level(s.lines)))
                .or_default()
                .push(s.id.clone());
        }
    }
    groups
        .into_values()
        .filter(|g| g.len() as u64 >= factor)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(id: &str, day: i64, lines: u64, schema_version: u32) -> SplitMeta {
        SplitMeta {
            id: id.into(),
            min_ts: day * BUCKET_MICROS + 1,
            max_ts: day * BUCKET_MICROS + 2,
            lines,
            schema_version,
            ..Default::default()
        }
    }

    #[test]
    fn only_small_splits_of_one_day_and_schema_merge() {
        let mut straddles = split("straddles", 3, 10, 2);
        straddles.max_ts += BUCKET_MICROS;
        let splits = vec![
            split("a", 3, 10, 2),
            split("b", 3, 10, 2),
            split("old", 3, 10, 1),
            split("big", 3, MERGE_BELOW_LINES, 2),
            straddles,
            split("c", 4, 10, 2),
            split("d", 4, 10, 2),
            split("e", 4, 10, 2),
        ];
        assert_eq!(
            merge_groups(&splits, 2),
            vec![vec!["a", "b"], vec!["c", "d", "e"]]
        );
        assert_eq!(merge_groups(&splits, 3), vec![vec!["c", "d", "e"]]);
        assert_eq!(
            merge_groups(&splits, 1),
            merge_groups(&splits, 2),
            "a lone split is never merged"
        );
    }

    #[test]
    fn splits_merge_with_splits_of_their_own_level() {
        let l0 = MERGE_LEVEL_LINES - 1;
        let l1 = MERGE_LEVEL_LINES * 3;
        let splits = vec![
            split("small-1", 3, l0, 2),
            split("merged-1", 3, l1, 2),
            split("small-2", 3, 100, 2),
            split("merged-2", 3, l1, 2),
            split("merged-3", 3, MERGE_LEVEL_LINES * 4 - 1, 2),
        ];
        // Three small and three merged: with merge_at 3 only the merged
        // ones go together; the day's growing split is not rewritten with
        // every few new small ones.
        assert_eq!(
            merge_groups(&splits, 3),
            vec![vec!["merged-1", "merged-2", "merged-3"]]
        );
        assert_eq!(
            merge_groups(&splits, 2),
            vec![
                vec!["small-1", "small-2"],
                vec!["merged-1", "merged-2", "merged-3"]
            ]
        );
    }

    #[test]
    fn each_line_is_rewritten_a_few_times_not_once_per_round() {
        // Live indexing: rounds of 6 000 lines, merge_at 8, until a day
        // holds a million lines; count the lines each merge rewrites.
        let mut splits: Vec<SplitMeta> = Vec::new();
        let mut rewritten = 0u64;
        let mut next = 0;
        let mut total = 0u64;
        while total < MERGE_BELOW_LINES {
            next += 1;
            splits.push(split(&format!("s{next}"), 3, 6_000, 2));
            total += 6_000;
            for group in merge_groups(&splits, 8) {
                let lines: u64 = splits
                    .iter()
                    .filter(|s| group.contains(&s.id))
                    .map(|s| s.lines)
                    .sum();
                splits.retain(|s| !group.contains(&s.id));
                next += 1;
                splits.push(split(&format!("m{next}"), 3, lines, 2));
                rewritten += lines;
            }
        }
        let per_line = rewritten as f64 / total as f64;
        assert!(
            per_line <= 3.0,
            "each line was rewritten {per_line:.1} times on average"
        );
        assert!(splits.len() <= 3 * 7, "{} splits in the day", splits.len());
    }
}
