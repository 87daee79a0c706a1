//! The one retry schedule every loop that waits for something to recover
//! uses (a commit that lost a race, a catalog or a disk that does not
//! answer, a Kubernetes watch that broke): exponential backoff with jitter,
//! from backon — iceberg-rust's own retry crate, so no dependency is
//! added — doubling from a first delay to a cap, never giving up (the
//! caller decides when to stop: attempts, shutdown).

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Delays between attempts; [`Backoff::reset`] after a success.
#[derive(Debug)]
pub struct Backoff {
    first: Duration,
    cap: Duration,
    delays: ExponentialBackoff,
}

impl Backoff {
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self {
            first,
            cap,
            delays: Self::build(first, cap),
        }
    }

    fn build(first: Duration, cap: Duration) -> ExponentialBackoff {
        ExponentialBuilder::new()
            .with_min_delay(first)
            .with_max_delay(cap)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// A lost optimistic commit: retry soon, the table is there.
    pub fn commit_conflict() -> Self {
        Self::new(Duration::from_millis(20), Duration::from_secs(1))
    }

    /// Something that does not answer (catalog, disk, API server): back
    /// off to 10 s so an outage is not hammered.
    pub fn unavailable() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(10))
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.cap)
    }

    /// Sleeps for the next delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Starts again from the first delay.
    pub fn reset(&mut self) {
        self.delays = Self::build(self.first, self.cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        // Jitter adds up to one more delay: each is within [d, 2d], capped.
        assert!(delays[0] >= Duration::from_millis(100) && delays[0] <= Duration::from_millis(200));
        assert!(delays[3] >= Duration::from_millis(800), "{delays:?}");
        assert!(
            delays.iter().all(|d| *d <= Duration::from_millis(1600)),
            "{delays:?}"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(200));
    }
}
