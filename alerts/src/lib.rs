//! Alerting: rules in the shape Prometheus and Loki rulers read, evaluated
//! by sluice over its tables (SQL) and logs (LogQL), delivered to
//! Alertmanager and plain webhooks, and served in Prometheus's API shapes.
//!
//! - [`rules`]: the rule files; [`templates`]: the console's rules as a few
//!   fields; [`condition`]: a rule's comparison;
//! - [`source`]: running a rule's query; [`state`]: an alert's life
//!   (inactive → pending → firing → resolved, as Prometheus has it);
//! - [`evaluator`]: the loop, its saved state and the [`lease`] that picks
//!   one evaluating replica; [`notify`]: delivery; [`api`]: the read APIs;
//! - [`history`]: every transition into the `alert_history` table.

pub mod api;
pub mod condition;
pub mod config;
pub mod duration;
pub mod evaluator;
pub mod history;
pub mod lease;
pub mod metrics;
pub mod notify;
pub mod rules;
pub mod source;
pub mod state;
pub mod templates;

pub use config::AlertsConfig;
pub use evaluator::Alerts;
