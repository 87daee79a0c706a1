//! Role builders: what a role needs, built once from the configuration, so
//! that its own command and `sluice up` run the same role with the same
//! settings and metrics instead of copies.

pub mod indexer;
pub mod live_feed;
pub mod query;
