//! The evaluator: each group on its own interval, its rules in order; the
//! alerts' state applied, delivered and saved to the warehouse's object
//! store (`<warehouse>/sluice-alerts/state.json`) after every group's
//! evaluation, so a restart — or another replica taking the lease over —
//! carries on from it. Replicas that do not hold the lease read that file
//! to answer the alert APIs. Every transition also goes to the
//! `alert_history` table, through an outbox saved with the state
//! ([`crate::history`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sluice_query::engine::Engine;
use sluice_query::logsearch::LogIndex;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{AlertsConfig, Timings};
use crate::history::{HistoryWriter, Outbox};
use crate::lease::{Holder, Lease};
use crate::metrics::AlertMetrics;
use crate::notify::Notifier;
use crate::rules::{Group, Rule};
use crate::source;
use crate::state::{AlertState, RuleState, Transition};

/// What `state.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Persisted {
    pub version: u32,
    /// By [`rule_key`].
    pub rules: BTreeMap<String, RuleState>,
    /// By group name.
    #[serde(default)]
    pub groups: BTreeMap<String, GroupRun>,
    /// Transitions not yet in `alert_history`.
    #[serde(default)]
    pub history: Outbox,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupRun {
    pub last_evaluation: Option<DateTime<Utc>>,
    pub evaluation_seconds: f64,
}

const STATE_VERSION: u32 = 1;

/// A rule's key in the state: its group, its name and which rule of that
/// name in the group it is (Prometheus allows several, e.g. a warning and
/// a critical threshold).
pub fn rule_key(group: &Group, index: usize) -> String {
    let rule = &group.rules[index];
    let nth = group.rules[..index]
        .iter()
        .filter(|r| r.name == rule.name)
        .count();
    format!("{}/{}/{nth}", group.name, rule.name)
}

/// Where the state and the lease live, once the catalog has told us.
struct Located {
    store: Arc<dyn ObjectStore>,
    state: ObjectPath,
    lease: ObjectPath,
}

pub(crate) struct Shared {
    pub groups: Vec<Group>,
    pub state: Mutex<Persisted>,
    pub leader: AtomicBool,
    pub metrics: AlertMetrics,
    pub generator_url: String,
    /// Who this process is, in the lease.
    pub holder: String,
    pub config: AlertsConfig,
    timings: Timings,
    engine: Arc<Engine>,
    logs: Arc<LogIndex>,
    notifier: Notifier,
    located: tokio::sync::OnceCell<Located>,
    /// Serializes saves, so an older snapshot never overwrites a newer.
    save: tokio::sync::Mutex<()>,
    history: HistoryWriter,
    /// One append to `alert_history` at a time (groups run concurrently).
    flush: tokio::sync::Mutex<()>,
}

/// The alert evaluator of a process, and what its APIs read.
#[derive(Clone)]
pub struct Alerts {
    pub(crate) shared: Arc<Shared>,
}

impl Alerts {
    /// Loads the rules (an error names the file and rule) and prepares
    /// delivery; nothing runs until [`Alerts::spawn`].
    pub fn new(
        config: &AlertsConfig,
        engine: Arc<Engine>,
        logs: Arc<LogIndex>,
        default_url: &str,
    ) -> anyhow::Result<Self> {
        let timings = config.timings().map_err(anyhow::Error::msg)?;
        let groups = if config.enabled {
            crate::rules::load(
                &config.rules,
                config.default_rules,
                timings.evaluation_interval,
            )?
        } else {
            Vec::new()
        };
        let metrics = AlertMetrics::default();
        let notifier = Notifier::new(
            config.alertmanagers.clone(),
            config.webhooks.clone(),
            metrics.clone(),
        )
        .map_err(anyhow::Error::msg)?;
        let base = config
            .external_url
            .clone()
            .unwrap_or_else(|| default_url.to_string());
        let holder = format!(
            "{}-{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "sluice".into()),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let history = HistoryWriter::new(engine.catalog().clone(), &holder);
        Ok(Self {
            shared: Arc::new(Shared {
                groups,
                state: Mutex::new(Persisted::default()),
                leader: AtomicBool::new(false),
                metrics,
                generator_url: format!("{}/#/alerts", base.trim_end_matches('/')),
                holder,
                config: config.clone(),
                timings,
                history,
                engine,
                logs,
                notifier,
                located: tokio::sync::OnceCell::new(),
                save: tokio::sync::Mutex::new(()),
                flush: tokio::sync::Mutex::new(()),
            }),
        })
    }

    pub fn metrics(&self) -> &AlertMetrics {
        &self.shared.metrics
    }

    pub fn rule_count(&self) -> usize {
        self.shared.rule_count()
    }

    /// Starts the lease and every group's loop; they stop when `cancel`
    /// is cancelled (the lease released, the state saved).
    pub fn spawn(&self, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let shared = self.shared.clone();
        tokio::spawn(async move {
            if shared.groups.is_empty() {
                return;
            }
            let mut tasks = JoinSet::new();
            for gi in 0..shared.groups.len() {
                tasks.spawn(run_group(shared.clone(), gi, cancel.clone()));
            }
            tasks.spawn(run_lease(shared.clone(), cancel.clone()));
            while let Some(r) = tasks.join_next().await {
                if let Err(e) = r {
                    tracing::error!(error = %e, "an alert evaluator task failed");
                }
            }
        })
    }
}

pub(crate) fn lock(m: &Mutex<Persisted>) -> std::sync::MutexGuard<'_, Persisted> {
    // A panic while holding it left plain data; carry on with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn rule_count(&self) -> usize {
        self.groups.iter().map(|g| g.rules.len()).sum()
    }

    async fn located(&self) -> Result<&Located, String> {
        self.located
            .get_or_try_init(|| async {
                use sluice_schema::tables::PLATFORM_EVENTS;
                let table = self
                    .engine
                    .catalog()
                    .load_table(&PLATFORM_EVENTS.ident())
                    .await
                    .map_err(|e| format!("locating the warehouse for the alert state: {e}"))?;
                let warehouse =
                    sluice_warehouse::object_stores::warehouse_of(table.metadata().location());
                let location = format!("{warehouse}/sluice-alerts");
                let (store, root) = self.engine.stores().store_for(&location)?;
                Ok(Located {
                    store,
                    state: root.clone().join("state.json"),
                    lease: root.join("lease"),
                })
            })
            .await
    }

    /// Replaces the in-memory state with the saved one (a missing file is
    /// an empty state).
    async fn load(&self) -> Result<(), String> {
        let at = self.located().await?;
        let persisted = match at.store.get(&at.state).await {
            Ok(r) => {
                let bytes = r
                    .bytes()
                    .await
                    .map_err(|e| format!("reading {}: {e}", at.state))?;
                match serde_json::from_slice::<Persisted>(&bytes) {
                    Ok(p) => p,
                    Err(e) => {
                        // An unreadable state must not stop alerting: keep
                        // the file beside it for a look, start afresh.
                        let aside = ObjectPath::from(format!("{}.unreadable", at.state));
                        let kept = at.store.put(&aside, PutPayload::from(bytes.to_vec())).await;
                        tracing::error!(
                            error = %e, state = %at.state, kept_as = %aside, kept = kept.is_ok(),
                            "the alert state is unreadable; starting from an empty state (alerts may be sent again)"
                        );
                        Persisted::default()
                    }
                }
            }
            Err(object_store::Error::NotFound { .. }) => Persisted::default(),
            Err(e) => return Err(format!("reading {}: {e}", at.state)),
        };
        let mut persisted = persisted;
        // Rules and groups no longer in the files leave the state with it
        // (their alerts are not resolved: Alertmanager expires them at
        // their endsAt, as when Prometheus drops a rule).
        let keys: std::collections::HashSet<String> = self
            .groups
            .iter()
            .flat_map(|g| (0..g.rules.len()).map(move |i| rule_key(g, i)))
            .collect();
        persisted.rules.retain(|k, _| keys.contains(k));
        persisted
            .groups
            .retain(|name, _| self.groups.iter().any(|g| &g.name == name));
        *lock(&self.state) = persisted;
        self.export_gauges();
        Ok(())
    }

    async fn save(&self) -> Result<(), String> {
        let at = self.located().await?;
        let _order = self.save.lock().await;
        let body = {
            let mut state = lock(&self.state);
            state.version = STATE_VERSION;
            serde_json::to_vec(&*state).map_err(|e| e.to_string())?
        };
        at.store
            .put(&at.state, PutPayload::from(body))
            .await
            .map_err(|e| format!("saving {}: {e}", at.state))?;
        Ok(())
    }

    fn export_gauges(&self) {
        let state = lock(&self.state);
        for g in &self.groups {
            for (i, r) in g.rules.iter().enumerate() {
                let (mut pending, mut firing) = (0, 0);
                if let Some(rs) = state.rules.get(&rule_key(g, i)) {
                    for a in &rs.alerts {
                        match a.state {
                            AlertState::Pending => pending += 1,
                            AlertState::Firing => firing += 1,
                            AlertState::Inactive => {}
                        }
                    }
                }
                self.metrics.alerts(&r.name, pending, firing);
            }
        }
    }

    async fn evaluate_rule(
        &self,
        group: &Group,
        rule: &Rule,
    ) -> Result<Vec<crate::state::Sample>, String> {
        let eval = source::evaluate(
            &self.engine,
            &self.logs,
            rule,
            Utc::now(),
            self.config.max_alerts_per_rule,
        );
        // A rule may take its group's interval, no more: the next
        // evaluation is due then.
        match tokio::time::timeout(group.interval, eval).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the evaluation took longer than the group's interval ({})",
                crate::duration::format_duration(group.interval)
            )),
        }
    }

    /// Evaluates one group's rules in order, then delivers and saves.
    pub(crate) async fn evaluate_group(&self, gi: usize) -> Vec<Transition> {
        let group = &self.groups[gi];
        let started = Instant::now();
        let now = Utc::now();
        let mut transitions = Vec::new();
        let mut outgoing = Vec::new();
        let mut webhook = Vec::new();
        for (ri, rule) in group.rules.iter().enumerate() {
            let t0 = Instant::now();
            let result = self.evaluate_rule(group, rule).await;
            let seconds = t0.elapsed().as_secs_f64();
            self.metrics.evaluated(&rule.name, result.is_ok(), seconds);
            let key = rule_key(group, ri);
            let mut state = lock(&self.state);
            let rs = state.rules.entry(key.clone()).or_default();
            rs.last_evaluation = Some(now);
            rs.evaluation_seconds = seconds;
            match result {
                Ok(samples) => {
                    if rs.last_error.take().is_some() {
                        tracing::info!(group = %group.name, rule = %rule.name, "alert rule evaluates again");
                    }
                    transitions.extend(rs.apply(rule, samples, now));
                    outgoing.extend(rs.due(
                        now,
                        self.timings.resend_delay,
                        group.interval,
                        &self.generator_url,
                    ));
                    if self.notifier.has_webhooks() {
                        webhook.extend(
                            rs.webhook_due()
                                .into_iter()
                                .map(|(s, a)| (key.clone(), s, a)),
                        );
                    }
                }
                Err(e) => {
                    // As Prometheus: a failed evaluation leaves the alerts
                    // as they were and sends nothing, so Alertmanager lets
                    // them lapse at their endsAt if the rule stays broken.
                    // Logged when the error begins or changes, not every
                    // interval; the count is in /metrics, the error on the
                    // rule.
                    if rs.last_error.as_deref() != Some(e.as_str()) {
                        tracing::warn!(group = %group.name, rule = %rule.name, error = %e, "alert rule evaluation failed");
                    }
                    rs.last_error = Some(e);
                }
            }
        }
        let mut dropped = 0;
        {
            let mut state = lock(&self.state);
            for t in &transitions {
                if !state.history.push(&group.name, &self.holder, t.clone()) {
                    dropped += 1;
                }
            }
            state.groups.insert(
                group.name.clone(),
                GroupRun {
                    last_evaluation: Some(now),
                    evaluation_seconds: started.elapsed().as_secs_f64(),
                },
            );
        }
        self.export_gauges();
        for t in &transitions {
            tracing::info!(
                rule = %t.rule, from = t.from.as_str(), to = t.to.as_str(),
                labels = ?t.labels, value = t.value, "alert state changed"
            );
        }
        // The lease may have gone while the queries ran: then the new
        // holder sends, not this replica.
        if !self.leader.load(Ordering::Acquire) {
            return transitions;
        }
        self.notifier.to_alertmanagers(&outgoing).await;
        if !webhook.is_empty() {
            let items: Vec<_> = webhook.iter().map(|(_, s, a)| (*s, a.clone())).collect();
            if self.notifier.to_webhooks(&items, &self.generator_url).await {
                let mut state = lock(&self.state);
                for (key, s, a) in &webhook {
                    if let Some(rs) = state.rules.get_mut(key) {
                        rs.told(&a.labels, *s);
                    }
                }
            }
        }
        if dropped > 0 {
            tracing::error!(
                dropped,
                "alert history: the outbox is full (alert_history has not been writable for long); the oldest transitions were dropped"
            );
        }
        // A replica that lost the lease during this evaluation must not
        // overwrite what the new holder saves.
        if self.leader.load(Ordering::Acquire) {
            let saved = match self.save().await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "saving the alert state failed; it is saved again after the next evaluation");
                    false
                }
            };
            self.write_history(saved, dropped).await;
        }
        transitions
    }

    /// Appends the outbox to `alert_history` once it is `saved` (so a
    /// transition in the table is always one the state knows it wrote),
    /// and reports the outbox in the metrics either way.
    async fn write_history(&self, saved: bool, dropped: u64) {
        let _one = self.flush.lock().await;
        let next = if saved {
            lock(&self.state).history.next_batch()
        } else {
            None
        };
        let (mut written, mut failed) = (0, false);
        if let Some((lineage, rows)) = next {
            match self.history.write(&lineage, &rows).await {
                Ok(upto) => {
                    written = rows.iter().filter(|r| r.seq < upto).count() as u64;
                    lock(&self.state).history.written(&lineage, upto);
                }
                Err(e) => {
                    failed = true;
                    tracing::warn!(error = %e, waiting = rows.len(), "appending to alert_history failed; the transitions stay in the outbox");
                }
            }
        }
        let waiting = lock(&self.state).history.rows.len();
        self.metrics.history(written, failed, dropped, waiting);
    }
}

async fn run_group(shared: Arc<Shared>, gi: usize, cancel: CancellationToken) {
    let interval = shared.groups[gi].interval;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        // Until this process evaluates, look again soon: a new holder's
        // first evaluation should not wait a whole interval.
        if !shared.leader.load(Ordering::Acquire) {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval.min(Duration::from_millis(500))) => continue,
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = shared.evaluate_group(gi) => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
    }
}

/// Holds (or watches) the lease; on taking it, loads the state the last
/// holder saved before any evaluation. Without `[alerts] lease` this
/// process always evaluates.
async fn run_lease(shared: Arc<Shared>, cancel: CancellationToken) {
    let period = (shared.timings.lease_duration / 3).max(Duration::from_millis(200));
    let mut lease: Option<Lease> = None;
    loop {
        let leader = shared.leader.load(Ordering::Acquire);
        let holds = if !shared.config.lease {
            Ok(true)
        } else {
            match shared.located().await {
                Err(e) => Err(e),
                Ok(at) => {
                    let l = lease.get_or_insert_with(|| {
                        Lease::new(
                            at.store.clone(),
                            at.lease.clone(),
                            shared.holder.clone(),
                            shared.timings.lease_duration,
                        )
                    });
                    // A renewal that stalls must not outlive the lease.
                    match tokio::time::timeout(shared.timings.lease_duration / 2, l.tick()).await {
                        Ok(r) => r.map(|h| h == Holder::Us),
                        Err(_) => Err("renewing the alert lease timed out".to_string()),
                    }
                }
            }
        };
        match holds {
            Ok(true) if !leader => match shared.load().await {
                Ok(()) => {
                    tracing::info!(holder = %shared.holder, rules = shared.rule_count(), "evaluating alert rules");
                    shared.leader.store(true, Ordering::Release);
                }
                Err(e) => tracing::warn!(error = %e, "loading the alert state; evaluation waits"),
            },
            Ok(true) => {}
            Ok(false) => {
                if leader {
                    tracing::warn!(
                        "another replica holds the alert lease now; this one stops evaluating"
                    );
                }
                shared.leader.store(false, Ordering::Release);
                // Follow the holder's state for the APIs.
                if let Err(e) = shared.load().await {
                    tracing::debug!(error = %e, "reading the alert state");
                }
            }
            Err(e) => {
                if leader {
                    tracing::warn!(error = %e, "the alert lease cannot be renewed; evaluation stops until it can");
                } else {
                    tracing::debug!(error = %e, "the alert lease is not reachable yet");
                }
                shared.leader.store(false, Ordering::Release);
            }
        }
        shared.metrics.leader(shared.leader.load(Ordering::Acquire));
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(period) => {}
        }
    }
    if shared.leader.swap(false, Ordering::AcqRel)
        && let Err(e) = shared.save().await
    {
        tracing::warn!(error = %e, "saving the alert state at shutdown");
    }
    if let Some(mut l) = lease {
        l.release().await;
    }
}
