//! Delivery: Alertmanager's API v2 (`POST /api/v2/alerts`, every configured
//! Alertmanager, as Prometheus does — they deduplicate among themselves),
//! and plain webhooks, which do not deduplicate and so hear of each
//! transition once, in Alertmanager's webhook format.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::metrics::AlertMetrics;
use crate::state::{Alert, AlertState, Outgoing};

/// How long one delivery may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Notifier {
    client: reqwest::Client,
    alertmanagers: Vec<String>,
    webhooks: Vec<String>,
    metrics: AlertMetrics,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookAlert<'a> {
    status: &'static str,
    labels: &'a crate::state::Labels,
    annotations: &'a crate::state::Labels,
    starts_at: DateTime<Utc>,
    ends_at: Option<DateTime<Utc>>,
    #[serde(rename = "generatorURL")]
    generator_url: &'a str,
}

impl Notifier {
    pub fn new(
        alertmanagers: Vec<String>,
        webhooks: Vec<String>,
        metrics: AlertMetrics,
    ) -> Result<Self, String> {
        for (setting, url) in alertmanagers
            .iter()
            .map(|u| ("alertmanagers", u))
            .chain(webhooks.iter().map(|u| ("webhooks", u)))
        {
            let ok = reqwest::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(format!(
                    "[alerts] {setting}: {url:?} is not an http:// or https:// URL"
                ));
            }
        }
        let client = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .build()
            .map_err(|e| format!("building the alert HTTP client: {e}"))?;
        Ok(Self {
            client,
            alertmanagers: alertmanagers
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            webhooks,
            metrics,
        })
    }

    pub fn has_webhooks(&self) -> bool {
        !self.webhooks.is_empty()
    }

    /// Sends `alerts` to every Alertmanager; true when at least one took
    /// them (or none is configured).
    pub async fn to_alertmanagers(&self, alerts: &[Outgoing]) -> bool {
        if alerts.is_empty() || self.alertmanagers.is_empty() {
            return true;
        }
        let mut any = false;
        for base in &self.alertmanagers {
            let url = format!("{base}/api/v2/alerts");
            let result = self.client.post(&url).json(alerts).send().await;
            let outcome = match result {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    Err(format!(
                        "{status}: {}",
                        body.chars().take(300).collect::<String>()
                    ))
                }
                Err(e) => Err(e.to_string()),
            };
            match outcome {
                Ok(()) => {
                    any = true;
                    self.metrics.sent("alertmanager", true, alerts.len());
                }
                Err(e) => {
                    self.metrics.sent("alertmanager", false, alerts.len());
                    tracing::warn!(url, error = %e, alerts = alerts.len(), "sending alerts to Alertmanager failed");
                }
            }
        }
        any
    }

    /// Tells every webhook of these transitions; false when one failed (the
    /// caller tells them again on the next evaluation).
    pub async fn to_webhooks(&self, alerts: &[(AlertState, Alert)], generator_url: &str) -> bool {
        if alerts.is_empty() || self.webhooks.is_empty() {
            return true;
        }
        let body_alerts: Vec<WebhookAlert> = alerts
            .iter()
            .map(|(state, a)| WebhookAlert {
                status: if *state == AlertState::Firing {
                    "firing"
                } else {
                    "resolved"
                },
                labels: &a.labels,
                annotations: &a.annotations,
                starts_at: a.fired_at.unwrap_or(a.active_at),
                ends_at: a.resolved_at,
                generator_url,
            })
            .collect();
        let status = if body_alerts.iter().any(|a| a.status == "firing") {
            "firing"
        } else {
            "resolved"
        };
        let body = json!({
            "version": "4",
            "receiver": "sluice",
            "status": status,
            "alerts": body_alerts,
            "externalURL": generator_url,
        });
        let mut all = true;
        for url in &self.webhooks {
            let ok = match self.client.post(url).json(&body).send().await {
                Ok(r) if r.status().is_success() => true,
                Ok(r) => {
                    tracing::warn!(url, status = %r.status(), "a webhook refused alerts");
                    false
                }
                Err(e) => {
                    tracing::warn!(url, error = %e, "sending alerts to a webhook failed");
                    false
                }
            };
            self.metrics.sent("webhook", ok, alerts.len());
            all &= ok;
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_when_the_notifier_is_built() {
        let ok = Notifier::new(
            vec!["http://am:9093/".into()],
            vec!["https://hooks.example.com/x".into()],
            AlertMetrics::default(),
        );
        assert!(ok.is_ok());
        for (am, hook, wanted) in [
            (
                vec!["am:9093".to_string()],
                vec![],
                "[alerts] alertmanagers: \"am:9093\"",
            ),
            (
                vec![],
                vec!["ftp://x/y".to_string()],
                "[alerts] webhooks: \"ftp://x/y\"",
            ),
        ] {
            let e = Notifier::new(am, hook, AlertMetrics::default())
                .err()
                .unwrap();
            assert!(e.starts_with(wanted), "{e}");
        }
    }
}
