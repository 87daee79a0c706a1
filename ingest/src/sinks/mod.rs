//! Where collected records end up.

pub mod iceberg;
