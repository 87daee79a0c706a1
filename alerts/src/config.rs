//! `[alerts]`: which rules, where alerts go, how often.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::parse_duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Evaluate rules in this process (`sluice serve`, `sluice up`).
    pub enabled: bool,
    /// Rule files or directories of them (`*.yaml`, `*.yml`).
    pub rules: Vec<PathBuf>,
    /// Also evaluate the rules shipped with sluice (`alerts/rules/default.yaml`).
    pub default_rules: bool,
    /// A group's interval when its file gives none (Prometheus's
    /// `evaluation_interval`).
    pub evaluation_interval: String,
    /// Alertmanager base URLs (`http://alertmanager:9093`); alerts go to
    /// every one, as Prometheus sends them.
    pub alertmanagers: Vec<String>,
    /// Plain webhook URLs, told of each firing and resolution once.
    pub webhooks: Vec<String>,
    /// How often a firing alert is sent again (Prometheus's
    /// `--rules.alert.resend-delay`).
    pub resend_delay: String,
    /// The console's URL as users reach it, for alerts' `generatorURL`
    /// (default: this server's address).
    pub external_url: Option<String>,
    /// Of several replicas on one warehouse, only the lease's holder
    /// evaluates (the lease lives in the warehouse's object store).
    pub lease: bool,
    /// A holder that stops renewing loses the lease after this long.
    pub lease_duration: String,
    /// More alert instances than this from one rule is an evaluation error.
    pub max_alerts_per_rule: usize,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rules: Vec::new(),
            default_rules: true,
            evaluation_interval: "30s".into(),
            alertmanagers: Vec::new(),
            webhooks: Vec::new(),
            resend_delay: "1m".into(),
            external_url: None,
            lease: true,
            lease_duration: "30s".into(),
            max_alerts_per_rule: 1000,
        }
    }
}

/// The durations of [`AlertsConfig`], checked.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub evaluation_interval: Duration,
    pub resend_delay: Duration,
    pub lease_duration: Duration,
}

impl AlertsConfig {
    pub fn timings(&self) -> Result<Timings, String> {
        let d = |name: &str, text: &str| {
            parse_duration(text)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    format!("[alerts] {name} = {text:?} is not a duration such as 30s or 1m")
                })
        };
        Ok(Timings {
            evaluation_interval: d("evaluation_interval", &self.evaluation_interval)?,
            resend_delay: d("resend_delay", &self.resend_delay)?,
            lease_duration: d("lease_duration", &self.lease_duration)?,
        })
    }
}
