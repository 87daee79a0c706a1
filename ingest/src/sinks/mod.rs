//! Where collected records end up.

pub mod iceberg;
pub mod parallel_parquet;
pub mod recent_ids;
