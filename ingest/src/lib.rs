//! sluice's ingest side: sources that read pod logs, lifecycle events and
//! platform events, the enrichment applied before writing, and the sinks.

pub mod sources;
