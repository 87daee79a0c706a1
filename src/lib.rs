//! The `sluice` binary's library: configuration, the CLI's output helpers
//! and the synthetic cluster generator.

pub mod commands;
pub mod config;
/// `sluice gen` and the demo (the `sluice-generator` crate), under the
/// path the tests and benchmarks know.
pub use sluice_generator as generator;
pub mod health;
pub mod memory;
pub mod output;
pub mod progress;
pub mod roles;
