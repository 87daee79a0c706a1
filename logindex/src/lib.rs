//! Log search across container restarts: a tantivy index derived from the
//! `pod_logs` table (which stays the source of truth; the index can always
//! be rebuilt from it). Its own crate because the indexer is a role that
//! writes (`sluice index`, and inside `sluice up`) while the query service
//! only searches: neither needs the other.
//!
//! - [`terms`]: how message text becomes terms; [`query_lang`]: the `q` syntax;
//!   [`line_match`]: a `q` evaluated on one line (the live tail's filter);
//! - [`split`]: one tantivy index over a slice of time, with its metadata;
//! - [`split_file`]: a split packed into one object with its hotcache;
//! - [`store`]: splits and the index state in the warehouse's object store;
//! - [`split_directory`], [`range_cache`]: a split read in place, by
//!   ranges, through a bounded cache;
//! - [`indexer`]: follows the table's snapshots into splits, reading the
//!   files [`round_files`] lists, merging as [`merge_policy`] says;
//! - [`search`]: a search over the splits a request can match;
//!   [`hit_columns`]: the columns hits are read from, kept open.

pub mod hit_columns;
pub mod indexer;
pub mod line_match;
pub mod merge_policy;
pub mod query_lang;
pub mod range_cache;
pub mod round_files;
pub mod search;
pub mod split;
pub mod split_directory;
pub mod split_file;
pub mod store;
pub mod terms;
#[cfg(test)]
mod zstd_cpuid_tests;
