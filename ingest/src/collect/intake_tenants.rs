//! Tenants at `POST /v1/events`: a tenant's intake token may send only
//! events of the tenant's own services (others are rejected by index, so
//! one customer cannot write into another's attribution), at most at the
//! tenant's rate (429 with `Retry-After` past it).
//!
//! The rate is a token bucket per tenant: `events_per_sec`, with ten
//! seconds' worth as the burst. Hand-written (30 lines) rather than a
//! crate: one bucket per configured tenant, refilled on use, nothing to
//! schedule.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One tenant's intake token, resolved from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantIntake {
    pub token: String,
    pub tenant: String,
    /// The services its events may name.
    pub services: Vec<String>,
    /// Events per second the tenant may send, all its tokens together.
    pub events_per_sec: f64,
    /// The tenant's name in metrics, or `other` (bounded cardinality).
    pub metric_label: String,
}

/// How long a burst the bucket holds.
const BURST: Duration = Duration::from_secs(10);

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The tenants' buckets (one per configured tenant).
#[derive(Default)]
pub struct Buckets {
    by_tenant: Mutex<HashMap<String, Bucket>>,
}

/// Why a tenant's records were not taken now.
#[derive(Debug, PartialEq)]
pub enum Throttled {
    /// Try again after this long.
    RetryAfter(Duration),
    /// More records than the bucket ever holds: split the body.
    TooMany { burst: u64 },
}

impl Buckets {
    /// Takes `n` events from `tenant`'s bucket, or says when to retry.
    pub fn take(&self, t: &TenantIntake, n: usize, now: Instant) -> Result<(), Throttled> {
        let rate = t.events_per_sec.max(0.001);
        let burst = (rate * BURST.as_secs_f64()).max(1.0);
        let n = n as f64;
        if n > burst {
            return Err(Throttled::TooMany {
                burst: burst as u64,
            });
        }
        let mut all = self.by_tenant.lock().unwrap_or_else(|p| p.into_inner());
        let b = all.entry(t.tenant.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= n {
            b.tokens -= n;
            Ok(())
        } else {
            Err(Throttled::RetryAfter(Duration::from_secs_f64(
                ((n - b.tokens) / rate).max(0.001),
            )))
        }
    }
}

impl TenantIntake {
    /// Whether an event of `service` is this tenant's to send.
    pub fn owns(&self, service: &str) -> bool {
        self.services.iter().any(|s| s == service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(rate: f64) -> TenantIntake {
        TenantIntake {
            token: "t".into(),
            tenant: "acme".into(),
            services: vec!["acme-gw".into()],
            events_per_sec: rate,
            metric_label: "acme".into(),
        }
    }

    #[test]
    fn the_bucket_allows_its_burst_then_its_rate() {
        let b = Buckets::default();
        let t = tenant(10.0);
        let t0 = Instant::now();
        // Ten seconds' worth at once.
        assert_eq!(b.take(&t, 100, t0), Ok(()));
        match b.take(&t, 5, t0) {
            Err(Throttled::RetryAfter(d)) => {
                assert!((d.as_secs_f64() - 0.5).abs() < 0.01, "{d:?}")
            }
            other => panic!("{other:?}"),
        }
        // Refilled at 10/s.
        assert_eq!(b.take(&t, 5, t0 + Duration::from_millis(500)), Ok(()));
        assert!(b.take(&t, 1, t0 + Duration::from_millis(500)).is_err());
        assert_eq!(
            b.take(&t, 101, t0 + Duration::from_secs(60)),
            Err(Throttled::TooMany { burst: 100 })
        );
        assert!(t.owns("acme-gw") && !t.owns("other"));
    }
}
