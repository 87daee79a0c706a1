//! The CLI's commands that do more than parse arguments.

pub mod collect;
pub mod import;
pub mod index;
pub mod logs;
pub mod maintain;
pub mod query;
pub mod serve;
pub mod up;
pub mod write;
