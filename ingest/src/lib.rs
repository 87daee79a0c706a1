//! sluice's ingest side: sources that read pod logs, lifecycle events and
//! platform events, the enrichment applied before writing, the Iceberg
//! catalog, and the sinks.

pub mod catalog;
pub mod collect;
pub mod embedded;
pub mod enrich;
pub mod import;
pub mod sinks;
pub mod sources;
pub mod writer;
