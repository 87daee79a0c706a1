//! sluice's ingest side: sources that read pod logs, lifecycle events and
//! platform events, the enrichment applied before writing, the Kafka writer
//! and the embedded (`sluice up`) pipeline. Tables are written through
//! `sluice-warehouse`.

pub mod collect;
pub mod embedded;
pub mod enrich;
pub mod import;
pub mod kafka_properties;
pub mod outlet;
pub mod sources;
pub mod state_file;
pub mod writer;
