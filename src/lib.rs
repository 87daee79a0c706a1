//! The `sluice` binary's library: configuration, the CLI's output helpers
//! and the synthetic cluster generator.

pub mod commands;
pub mod config;
pub mod generator;
pub mod health;
pub mod output;
pub mod progress;
pub mod roles;
