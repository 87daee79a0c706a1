//! The CLI's commands that do more than parse arguments.

pub mod import;
pub mod write;
