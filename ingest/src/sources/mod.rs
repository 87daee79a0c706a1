//! Readers of the inputs sluice collects.

pub mod cri;
pub mod docker_json;
pub mod level;
pub mod pod_log_file;
pub mod pod_log_path;
