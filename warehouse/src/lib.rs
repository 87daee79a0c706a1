//! The warehouse every sluice role shares: the Iceberg catalog connection
//! and its settings ([`catalog`]), the object stores the tables and the log
//! index live in ([`object_stores`]), exactly-once appends ([`append`],
//! written by [`parallel_parquet`]) and the ids a table received last
//! ([`recent_ids`]), and table maintenance ([`maintain`]). Both the pipeline (`sluice-ingest`) and the query
//! service (`sluice-query`) build on it; neither depends on the other.

pub mod append;
pub mod catalog;
pub mod checkpoint;
pub mod commit_loop;
pub mod commit_metrics;
pub mod maintain;
pub mod metadata_files;
pub mod object_stores;
pub mod parallel_parquet;
pub mod recent_ids;
pub mod retry;
pub mod source_id;
