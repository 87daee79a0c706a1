//! `sluice collect`: what runs on every node and beside the gateways.
//!
//! - [`tail`]: kubelet log files → the pod-log topic, positions saved in a
//!   [`checkpoint`] only after the broker acknowledged the lines ([`acks`]).
//! - [`intake`]: `POST /v1/events` → the events topic, answered after the
//!   broker acknowledged.
//! - [`kube_watch`]: Pods and Events from the Kubernetes API → the lifecycle
//!   topic.
//!
//! Record formats on the topics are documented beside the raw contracts
//! (`schema/README.md`).

pub mod acks;
pub mod checkpoint;
pub mod intake;
pub mod intake_tenants;
pub mod kube_watch;
pub mod metrics;
pub mod produce;
pub mod tail;
