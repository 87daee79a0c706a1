//! Readers of the inputs sluice collects.

pub mod cri;
pub mod pod_log_path;
