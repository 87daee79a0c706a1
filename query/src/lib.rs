//! sluice's query side: DataFusion over the Iceberg tables, the analytics
//! that answer "who drives API load" and "where should the caps be", and
//! the HTTP API that serves them.

pub mod access;
pub mod api;
pub mod attribution;
pub mod audit;
pub mod config;
pub mod console;
pub mod encode;
pub mod engine;
pub mod error;
pub mod guardrails;
pub mod isolation;
pub mod live;
pub mod logsearch;
pub mod loki;
pub mod metrics;
pub mod object_stores;
pub mod params;
pub mod partition_filters;
pub mod quantiles;
pub mod scan;
pub mod service_health;
pub mod state;
pub mod tenancy;
pub mod window;
