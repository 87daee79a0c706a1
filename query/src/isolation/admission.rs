//! Admission: how many queries run at once, how many may wait, and how many
//! one caller may hold.
//!
//! A query takes its caller's permit first (so one token cannot fill the
//! queue ahead of everyone else for long), then a global one. Waiting
//! callers are counted; past `max_queued` a new one is refused at once
//! (HTTP 429 with `Retry-After`) rather than piling up requests, sockets
//! and memory behind a slow query. A caller that waited `queue_timeout`
//! without a slot is refused the same way.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a query was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `max_queued` callers already wait.
    QueueFull { queued: usize },
    /// No slot freed within the queue timeout.
    Waited { secs: u64 },
}

impl Refusal {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::QueueFull { .. } => "queue_full",
            Refusal::Waited { .. } => "queue_timeout",
        }
    }
}

/// The settings admission follows.
#[derive(Debug, Clone)]
pub struct AdmissionLimits {
    pub max_concurrent: usize,
    pub max_queued: usize,
    pub queue_timeout: Duration,
    /// Queries one caller may run at once, unless `per_caller` says otherwise.
    pub per_caller_default: usize,
    /// Callers (tokens) with their own limit.
    pub per_caller: HashMap<String, usize>,
}

/// Held while a query runs; dropping it frees both slots.
#[derive(Debug)]
pub struct Admitted {
    _caller: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
    running: Gauge,
    /// How long the query waited for its slot.
    pub waited: Duration,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.running.dec();
    }
}

/// Counts the caller as queued while it lives.
struct Queued<'a>(&'a Gauge);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub struct Admission {
    limits: AdmissionLimits,
    global: Arc<Semaphore>,
    /// One semaphore per caller key. Keys are the configured tokens plus
    /// the anonymous caller, so the map is bounded by the configuration.
    callers: std::sync::Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Queries waiting for a slot, and holding one: the gauges `/metrics`
    /// exports are the counters themselves.
    queued: Gauge,
    running: Gauge,
}

impl Admission {
    pub fn new(limits: AdmissionLimits, queued: Gauge, running: Gauge) -> Self {
        let global = Arc::new(Semaphore::new(limits.max_concurrent.max(1)));
        Self {
            limits,
            global,
            callers: std::sync::Mutex::new(HashMap::new()),
            queued,
            running,
        }
    }

    /// Queries waiting for a slot now.
    pub fn queued(&self) -> i64 {
        self.queued.get()
    }

    /// Queries holding a slot now.
    pub fn running(&self) -> i64 {
        self.running.get()
    }

    fn caller_semaphore(&self, caller: &str) -> Arc<Semaphore> {
        let mut callers = self.callers.lock().unwrap_or_else(|p| p.into_inner());
        callers
            .entry(caller.to_string())
            .or_insert_with(|| {
                let n = self
                    .limits
                    .per_caller
                    .get(caller)
                    .copied()
                    .unwrap_or(self.limits.per_caller_default);
                Arc::new(Semaphore::new(
                    n.clamp(1, self.limits.max_concurrent.max(1)),
                ))
            })
            .clone()
    }

    /// Waits for a slot for `caller`, or refuses.
    pub async fn admit(&self, caller: &str) -> Result<Admitted, Refusal> {
        let started = Instant::now();
        let caller_sem = self.caller_semaphore(caller);
        // Free slots: no queueing at all.
        if let (Ok(c), Ok(g)) = (
            caller_sem.clone().try_acquire_owned(),
            self.global.clone().try_acquire_owned(),
        ) {
            return Ok(self.admitted(c, g, started));
        }
        // Reserve a place in the queue, or refuse when it is full: the
        // increments are atomic, so exactly the callers that found fewer
        // than `max` ahead of them stay.
        let max = self.limits.max_queued;
        if usize::try_from(self.queued.inc()).unwrap_or(0) >= max {
            self.queued.dec();
            return Err(Refusal::QueueFull { queued: max });
        }
        let _queued = Queued(&self.queued);
        let wait = async {
            let c = caller_sem.acquire_owned().await;
            let g = self.global.clone().acquire_owned().await;
            (c, g)
        };
        match tokio::time::timeout(self.limits.queue_timeout, wait).await {
            Ok((Ok(c), Ok(g))) => Ok(self.admitted(c, g, started)),
            // The semaphores are never closed; treat it as a timeout.
            Ok(_) | Err(_) => Err(Refusal::Waited {
                secs: self.limits.queue_timeout.as_secs(),
            }),
        }
    }

    fn admitted(
        &self,
        caller: OwnedSemaphorePermit,
        global: OwnedSemaphorePermit,
        started: Instant,
    ) -> Admitted {
        self.running.inc();
        Admitted {
            _caller: caller,
            _global: global,
            running: self.running.clone(),
            waited: started.elapsed(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(limits: AdmissionLimits) -> Admission {
        Admission::new(limits, Gauge::default(), Gauge::default())
    }

    fn limits(max_concurrent: usize, max_queued: usize, per_caller: usize) -> AdmissionLimits {
        AdmissionLimits {
            max_concurrent,
            max_queued,
            queue_timeout: Duration::from_millis(200),
            per_caller_default: per_caller,
            per_caller: HashMap::from([("vip".to_string(), 1)]),
        }
    }

    #[tokio::test]
    async fn runs_up_to_the_limit_then_queues_then_refuses() {
        let a = Arc::new(admission(limits(2, 1, 2)));
        let p1 = a.admit("x").await.unwrap();
        let _p2 = a.admit("y").await.unwrap();
        assert_eq!(a.running(), 2);
        // The third waits in the queue ...
        let waiter = {
            let a = a.clone();
            tokio::spawn(async move { a.admit("z").await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(a.queued(), 1);
        // ... so the fourth finds the queue full.
        assert_eq!(
            a.admit("w").await.unwrap_err(),
            Refusal::QueueFull { queued: 1 }
        );
        // A slot frees: the waiter runs, having waited.
        drop(p1);
        let p3 = waiter.await.unwrap().unwrap();
        assert!(p3.waited >= Duration::from_millis(15), "{:?}", p3.waited);
        assert_eq!(a.queued(), 0);
        assert_eq!(a.running(), 2);
    }

    #[tokio::test]
    async fn a_waiter_gives_up_after_the_queue_timeout() {
        let a = admission(limits(1, 4, 1));
        let _p = a.admit("x").await.unwrap();
        let started = Instant::now();
        assert_eq!(a.admit("y").await.unwrap_err(), Refusal::Waited { secs: 0 });
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(a.queued(), 0, "a refused waiter leaves the queue");
    }

    #[tokio::test]
    async fn one_caller_cannot_take_every_slot() {
        let a = admission(limits(4, 4, 2));
        let _p1 = a.admit("greedy").await.unwrap();
        let _p2 = a.admit("greedy").await.unwrap();
        // The greedy caller's third query waits (and times out) ...
        assert!(matches!(
            a.admit("greedy").await,
            Err(Refusal::Waited { .. })
        ));
        // ... while another caller still gets a slot at once.
        let other = a.admit("other").await.unwrap();
        assert!(other.waited < Duration::from_millis(50));
        // A caller with its own limit of 1.
        let _v = a.admit("vip").await.unwrap();
        assert!(a.admit("vip").await.is_err());
    }
}
