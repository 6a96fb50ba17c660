//! The run loop that joins the feed, the engine, the actuator and the audit topic; used by
//! `fulcrum run` and by `fulcrum demo`.
//!
//! ```text
//!  Feed (Kafka) ──samples──► Engine.offer ─► Engine.advance(feed watermark)
//!                                               │ events
//!                                               ├─► audit topic (decisions)
//!                                               ├─► reports channel (caller: print, timeline)
//!                                               └─► Actuator (Executed decisions) ─► cluster updates ─► Engine
//!  cluster updates (watch, simulator) ─────────────────────────────────────────────────► Engine
//! ```
//!
//! Cluster updates are applied before each batch of samples (samples of a new pod must find
//! it). Offsets are stored once the events up to the engine's watermark were published and
//! actuated, so a crash replays them and the audit topic keeps the replay idempotent.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fulcrum_engine::{ClusterUpdate, Decision, Engine, Event, Outcome};
use fulcrum_policies::InterferencePolicy;
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, error, info, warn};

use crate::actuator::{Actuation, ActuationError, Actuator};
use crate::clock::now_ms;
use crate::feed::actuations::ActuationRecord;
use crate::feed::audit::{AuditLog, AuditRecord, restore_actions};
use crate::feed::retry::GaveUp;
use crate::feed::{
    Feed, FeedError, FeedHealth, FeedOptions, FeedStats, Received, wait_for_brokers,
};

/// What the runner reports to its caller, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    /// A detection, decision or recovery, as the engine emitted it.
    Engine(Event),
    /// An executed decision was carried out by the actuator.
    Actuated {
        /// The decision.
        decision: Box<Decision>,
        /// What the actuator did.
        actuation: Actuation,
    },
    /// The actuator could not carry out an executed decision.
    NotActuated {
        /// The decision.
        decision: Box<Decision>,
        /// Why.
        error: ActuationError,
    },
}

/// Receives what the run loop measures besides its reports (the operator's metrics).
pub trait RunObserver: Send + Sync {
    /// A decision reached the actuator this long after the sample that made it was
    /// consumed.
    fn decision_latency(&self, latency: Duration);
    /// The engine's breakers at its watermark: (name, open).
    fn breakers(&self, breakers: &[(&'static str, bool)]);
    /// Consumer lag per assigned partition (partitions not listed are not assigned).
    fn consumer_lag(&self, lag: &[(i32, i64)]);
}

/// How often breakers and consumer lag are sampled for the observer.
const OBSERVE_EVERY_MS: i64 = 1_000;

/// The channels and shared state the runner works with.
pub struct RunnerIo<A> {
    /// Carries out executed decisions.
    pub actuator: A,
    /// Reports, in order (bounded: a slow receiver slows consumption down).
    pub reports: mpsc::Sender<Report>,
    /// Changes to the cluster view (from a watch), applied between batches.
    pub updates: Option<mpsc::Receiver<ClusterUpdate>>,
    /// The policy set (from the cluster), handed to the engine whenever it changes; the
    /// sender validates them first (invalid policies never reach the engine).
    pub policies: Option<watch::Receiver<Vec<InterferencePolicy>>>,
    /// Readiness, shared with health endpoints.
    pub health: Arc<FeedHealth>,
    /// Counters.
    pub stats: Arc<FeedStats>,
    /// Turns true to stop.
    pub shutdown: watch::Receiver<bool>,
    /// Measurements for metrics (None: not measured).
    pub observer: Option<Arc<dyn RunObserver>>,
}

/// Runs until `shutdown` turns true: restores past actions from the audit topic, then
/// consumes, decides, publishes, actuates and commits. Returns the engine when it stops.
pub async fn run<A: Actuator>(
    options: FeedOptions,
    engine: Engine,
    io: RunnerIo<A>,
) -> Result<Engine, FeedError> {
    let RunnerIo {
        actuator,
        reports,
        updates,
        policies,
        health,
        stats,
        mut shutdown,
        observer,
    } = io;
    if !wait_for_brokers(&options.kafka, &health, &mut shutdown).await? {
        return Ok(engine);
    }
    let engine = restore(&options, engine, &stats).await?;
    let audit = AuditLog::new(&options.kafka)?;
    let feed = Feed::start(options, health, stats.clone(), shutdown.clone())?;
    let runner = Runner {
        engine,
        feed,
        audit,
        actuator,
        reports,
        stats,
        stopping: shutdown.clone(),
        published: i64::MIN,
        observer,
        observed_at: i64::MIN,
    };
    runner.run(updates, policies, shutdown).await
}

/// Restores past actions from the audit topic into `engine` (on a blocking thread).
/// Failing to read it stops the run: acting with budgets reset could repeat an action.
async fn restore(
    options: &FeedOptions,
    mut engine: Engine,
    stats: &FeedStats,
) -> Result<Engine, FeedError> {
    let since = now_ms() - options.restore_window_ms as i64;
    let settings = options.kafka.clone();
    let (engine, restored) = tokio::task::spawn_blocking(move || {
        let result = restore_actions(&settings, &mut engine, since, Duration::from_secs(30));
        (engine, result)
    })
    .await
    .map_err(|_| FeedError::Closed)?;
    let restored = restored?;
    let n = restored.total();
    stats.restored.store(n as u64, Ordering::Relaxed);
    let s = restored.settled;
    info!(
        actions = n,
        dry_run = restored.dry_run,
        done = s.done,
        not_done = s.not_done,
        unsettled_counted = s.unsettled_counted,
        unsettled_released = s.unsettled_released,
        topic = %options.kafka.audit_topic,
        "restored past actions from the audit topic"
    );
    if s.unsettled_released > 0 {
        warn!(
            released = s.unsettled_released,
            "executed decisions without an actuation record whose target still exists with the same UID: not counted, their episodes may decide again"
        );
    }
    Ok(engine)
}

struct Runner<A> {
    engine: Engine,
    feed: Feed,
    audit: AuditLog,
    actuator: A,
    reports: mpsc::Sender<Report>,
    stats: Arc<FeedStats>,
    /// Shutdown, for retries to give up on.
    stopping: watch::Receiver<bool>,
    /// The watermark up to which every event was handled (offsets are stored up to it).
    published: i64,
    /// Measurements for metrics.
    observer: Option<Arc<dyn RunObserver>>,
    /// Wall clock of the last breaker and lag sample.
    observed_at: i64,
}

impl<A: Actuator> Runner<A> {
    async fn run(
        mut self,
        mut updates: Option<mpsc::Receiver<ClusterUpdate>>,
        mut policies: Option<watch::Receiver<Vec<InterferencePolicy>>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Engine, FeedError> {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch: Vec<Received> = Vec::new();
        let mut changes = Vec::new();
        let result = loop {
            tokio::select! {
                n = self.feed.recv_many(&mut batch) => {
                    if n == 0 {
                        break Ok(());
                    }
                }
                n = async {
                    match updates.as_mut() {
                        Some(u) => u.recv_many(&mut changes, 256).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if n == 0 {
                        updates = None;
                    }
                }
                changed = async {
                    match policies.as_mut() {
                        Some(p) => p.changed().await,
                        None => std::future::pending().await,
                    }
                } => match changed {
                    Ok(()) => self.set_policies(policies.as_mut()),
                    Err(_) => policies = None,
                },
                _ = tick.tick() => {}
                _ = shutdown.changed() => break Ok(()),
            }
            // Cluster changes first: samples of a new pod must find it.
            if let Some(u) = updates.as_mut() {
                while let Ok(change) = u.try_recv() {
                    changes.push(change);
                }
            }
            for change in changes.drain(..) {
                self.engine.apply(change);
            }
            self.feed.handle_rebalances(&mut self.engine);
            for message in batch.drain(..) {
                self.feed.apply(&mut self.engine, message).await;
            }
            // Grouped OTLP/Prometheus values whose window closed on the wall clock.
            self.feed.release_waiting(&mut self.engine);
            match self.step().await {
                Ok(()) => {}
                Err(FeedError::Interrupted) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        // Only what was handled completely: never past a decision missing from the audit.
        self.feed.close(self.published).await;
        result.map(|()| self.engine)
    }

    /// Hands the current policy set to the engine.
    fn set_policies(&mut self, policies: Option<&mut watch::Receiver<Vec<InterferencePolicy>>>) {
        let Some(policies) = policies else {
            return;
        };
        let set = policies.borrow_and_update().clone();
        for (name, errors) in self.engine.set_policies(&set) {
            warn!(policy = %name, errors = errors.len(), "policy rejected by the engine");
        }
        info!(
            policies = self.engine.policies().count(),
            "policy set updated"
        );
    }

    /// Advances the engine to the feed's watermark and handles what happened.
    async fn step(&mut self) -> Result<(), FeedError> {
        // Also while no watermark exists (nothing delivered): the lag shows a stuck feed.
        self.observe_state();
        let Some(watermark) = self.feed.watermark(&self.engine) else {
            self.feed.publish_engine(&self.engine);
            return Ok(());
        };
        let max_age = self.feed.options().max_evidence_age_ms as i64;
        self.engine.set_horizon(now_ms() - max_age);
        let mut out = Vec::new();
        self.engine.advance(watermark, &mut out);
        for event in out {
            self.handle(event).await?;
        }
        // Published after the events: whoever sees this watermark has every event up to it.
        self.published = self.engine.watermark();
        self.feed.publish_engine(&self.engine);
        self.feed.applied_up_to(self.published);
        Ok(())
    }

    /// Hands breakers and consumer lag to the observer, at most every second.
    fn observe_state(&mut self) {
        let Some(observer) = &self.observer else {
            return;
        };
        let now = now_ms();
        if now.saturating_sub(self.observed_at) < OBSERVE_EVERY_MS {
            return;
        }
        self.observed_at = now;
        // Breakers only once event time exists (before, "catching up" would be meaningless).
        if self.published > i64::MIN {
            observer.breakers(&self.engine.open_breakers());
        }
        observer.consumer_lag(&self.feed.consumer_lag());
    }

    /// Hands the time since the decision's sample was consumed to the observer.
    fn observe_latency(&self, decision: &Decision) {
        if let Some(observer) = &self.observer
            && let Some(node) = self.engine.cluster().node_id(&decision.node)
            && let Some(consumed) = self.feed.consumed_at(node, decision.at)
        {
            let ms = (now_ms() - consumed).max(0) as u64;
            observer.decision_latency(Duration::from_millis(ms));
        }
    }

    /// Handles one event, in a tracing span per decision.
    async fn handle(&mut self, event: Event) -> Result<(), FeedError> {
        let span = match &event {
            Event::Decision(d) => tracing::info_span!(
                "decision",
                policy = %d.policy,
                node = %d.node,
                target = %d.target,
                outcome = ?d.outcome
            ),
            _ => tracing::Span::none(),
        };
        self.handle_event(event).instrument(span).await
    }

    /// Publishes one event, reports it, and carries out an executed decision.
    async fn handle_event(&mut self, event: Event) -> Result<(), FeedError> {
        let executed = match &event {
            Event::Decision(decision) => {
                // Not in the audit, not acted on: a restart decides again from the samples.
                let record = AuditRecord::new((**decision).clone()).with_target_facts(&self.engine);
                match self.audit.publish(&record, &mut self.stopping).await {
                    Ok(()) => {
                        self.stats.decisions.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(GaveUp::Interrupted) => return Err(FeedError::Interrupted),
                    Err(GaveUp::Failed(e)) => {
                        error!(error = %e, "could not publish a decision to the audit topic; stopping");
                        return Err(FeedError::Audit(e));
                    }
                }
                (decision.outcome == Outcome::Executed).then(|| decision.clone())
            }
            Event::Unexplained(unexplained) => {
                // A report, not an action: one that cannot be published is logged and the
                // run goes on (restore never reads these records as actions).
                match self
                    .audit
                    .publish_unexplained(unexplained, &mut self.stopping)
                    .await
                {
                    Ok(()) => {
                        self.stats.unexplained.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(GaveUp::Interrupted) => return Err(FeedError::Interrupted),
                    Err(GaveUp::Failed(e)) => {
                        error!(error = %e, policy = %unexplained.policy, node = %unexplained.node,
                            "could not publish an unexplained episode to the audit topic");
                    }
                }
                None
            }
            _ => None,
        };
        self.send(Report::Engine(event)).await?;
        let Some(decision) = executed else {
            return Ok(());
        };
        self.observe_latency(&decision);
        let result = self.actuator.execute(&decision).await;
        self.record_actuation(&decision, &result).await?;
        let report = match result {
            Ok(actuation) => {
                for update in actuation.updates.iter().cloned() {
                    self.engine.apply(update);
                }
                Report::Actuated {
                    decision,
                    actuation,
                }
            }
            Err(error) => {
                // Nothing was disrupted: the action gives its limit back.
                warn!(target = %decision.target, %error, "decision not carried out");
                self.engine.retract(&decision);
                Report::NotActuated { decision, error }
            }
        };
        self.send(report).await
    }

    /// Publishes what became of an executed decision. If that fails, the run goes on: a
    /// restart finds the decision without its outcome and judges it by its target (see
    /// [`crate::feed::actuations::settle`]).
    async fn record_actuation(
        &mut self,
        decision: &Decision,
        result: &Result<crate::actuator::Actuation, ActuationError>,
    ) -> Result<(), FeedError> {
        let record = ActuationRecord::new(decision, result, now_ms());
        match self
            .audit
            .publish_actuation(&record, &mut self.stopping)
            .await
        {
            Ok(()) => Ok(()),
            Err(GaveUp::Interrupted) => {
                warn!(target = %decision.target, result = ?record.result, "stopping before the actuation record was published");
                Ok(())
            }
            Err(GaveUp::Failed(e)) => {
                error!(error = %e, target = %decision.target, result = ?record.result, "could not publish the actuation record; a restart judges the decision by its target");
                Ok(())
            }
        }
    }

    async fn send(&self, report: Report) -> Result<(), FeedError> {
        self.reports
            .send(report)
            .await
            .map_err(|_| FeedError::Closed)
    }
}
