//! The production Kafka feed: consume `fulcrum.metrics/v1` samples in a consumer group,
//! apply them to the engine, dead-letter what is malformed, publish every decision to the
//! audit topic, and commit offsets only once their samples changed engine state.
//!
//! ```text
//!  ingest task ──(bounded channel of messages)──► engine stage ──(bounded channel)──► caller
//!  consumer.recv()                                 decode → DLQ | offer                (actuator)
//!                                                  advance(watermark) → audit topic
//!                                                  store offsets of applied messages
//! ```
//!
//! Delivery is at-least-once: a crash replays messages after the last committed offset.
//! Decisions are idempotent across that replay: a replica restores past actions from the
//! audit topic at start, so the same pod is never acted on twice by a policy and limits
//! keep counting. Topics, keys and headers are documented in `docs/events.md`.

pub mod audit;
pub mod config;
pub mod context;
pub mod dlq;
pub mod progress;
pub mod reader;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};

pub use config::{KafkaSettings, StartPosition};

use crate::engine::{ClusterUpdate, Engine, Event};
use crate::sample::{DecodeError, DecodeOptions, decode};
use context::{FeedContext, RebalanceNote};
use progress::Progress;

/// Tunables of the feed.
#[derive(Clone, Debug)]
pub struct FeedOptions {
    /// Kafka connection and topics.
    pub kafka: KafkaSettings,
    /// Event-time lateness bound (the engine's reorder window).
    pub lateness_ms: u64,
    /// A partition without messages for this long (wall clock) stops holding the watermark.
    pub idle_after_ms: u64,
    /// Decisions about evidence older than this (wall clock) are blocked, so a backlog is
    /// never acted on.
    pub max_evidence_age_ms: u64,
    /// Messages applied per engine step at most.
    pub batch: usize,
    /// Capacity of the channels between stages.
    pub channel_capacity: usize,
    /// How far back (wall clock) the audit topic is read at start.
    pub restore_window_ms: u64,
    /// Let event time advance with the wall clock while partitions are quiet, so the last
    /// samples before a pause are applied (see `progress::Progress::watermark`). A driver
    /// that keeps producing (the demo) turns it off for run-to-run determinism.
    pub wall_clock_advance: bool,
}

impl FeedOptions {
    /// Defaults for `kafka`.
    pub fn new(kafka: KafkaSettings) -> Self {
        Self {
            kafka,
            lateness_ms: 15_000,
            idle_after_ms: 10_000,
            max_evidence_age_ms: 300_000,
            batch: 512,
            channel_capacity: 1024,
            restore_window_ms: 24 * 3_600_000,
            wall_clock_advance: true,
        }
    }
}

/// Readiness of the feed, shared with health endpoints.
#[derive(Debug, Default)]
pub struct FeedHealth {
    /// Brokers reachable (set after the first successful metadata request or message).
    pub connected: AtomicBool,
    /// Partitions assigned to this replica.
    pub assigned: AtomicUsize,
    /// Wall-clock ms of the last message received.
    pub last_message_ms: AtomicI64,
    /// The engine's event-time watermark (ms): samples at or before it are applied.
    pub watermark_ms: AtomicI64,
}

impl FeedHealth {
    /// Ready to serve: connected to the brokers.
    pub fn ready(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// Counters of the feed (exported as metrics by the operator).
#[derive(Debug, Default, Serialize)]
pub struct FeedStats {
    /// Messages received.
    pub messages: AtomicU64,
    /// Samples offered to the engine.
    pub samples: AtomicU64,
    /// Messages sent to the dead-letter topic.
    pub dead_letters: AtomicU64,
    /// Rejected samples (a partly rejected batch counts each).
    pub rejected_samples: AtomicU64,
    /// Decisions published to the audit topic.
    pub decisions: AtomicU64,
    /// Offsets stored for commit.
    pub offsets_stored: AtomicU64,
    /// Actions restored from the audit topic at start.
    pub restored: AtomicU64,
}

/// Why the feed stopped.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// A Kafka client could not be created (bad configuration).
    #[error("kafka client: {0}")]
    Client(#[from] KafkaError),
    /// The receiver of decisions went away.
    #[error("the decision receiver was dropped")]
    Closed,
}

/// Wall clock in ms (the feed is an adapter; the engine never reads a clock).
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Logs at most once per interval, counting what it suppressed.
#[derive(Debug, Default)]
pub struct RateLimitedLog {
    last_ms: i64,
    suppressed: u64,
}

impl RateLimitedLog {
    /// Returns `Some(suppressed count)` when a line may be logged now.
    pub fn allow(&mut self, now_ms: i64, interval_ms: i64) -> Option<u64> {
        if now_ms - self.last_ms >= interval_ms {
            self.last_ms = now_ms;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// Waits until the brokers answer a metadata request for `topic`, retrying with
/// exponential backoff (100 ms doubling to 10 s) and logging each failure clearly.
/// Returns false when `shutdown` fired first.
pub async fn wait_for_brokers(
    settings: &KafkaSettings,
    health: &FeedHealth,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<bool, FeedError> {
    let probe: Arc<BaseConsumer<reader::ReaderContext>> = Arc::new(
        settings
            .reader_config()
            .create_with_context(reader::ReaderContext)?,
    );
    let topic = settings.topic.clone();
    let attempt = || {
        let probe = probe.clone();
        let topic = topic.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                probe
                    .fetch_metadata(Some(&topic), Duration::from_secs(5))
                    .map(|_| ())
            })
            .await
            .unwrap_or(Err(KafkaError::Canceled))
        }
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(10))
        .without_max_times();
    let brokers = settings.brokers.clone();
    let retry = attempt
        .retry(backoff)
        .notify(|e: &KafkaError, wait: Duration| {
            warn!(%brokers, error = %e, "kafka: brokers unreachable; retrying in {wait:?}");
        });
    tokio::select! {
        result = retry => {
            result?;
            health.connected.store(true, Ordering::Relaxed);
            info!(brokers = %settings.brokers, "kafka: connected");
            Ok(true)
        }
        _ = shutdown.changed() => Ok(false),
    }
}

/// The channels the feed talks through.
pub struct FeedIo {
    /// Detections, decisions and recoveries, in order (bounded: a slow receiver slows
    /// consumption down).
    pub events: mpsc::Sender<Event>,
    /// Changes to the cluster view (from a watch or a simulator), applied between batches.
    pub updates: Option<mpsc::Receiver<ClusterUpdate>>,
    /// Readiness, shared with health endpoints.
    pub health: Arc<FeedHealth>,
    /// Counters.
    pub stats: Arc<FeedStats>,
    /// Turns true to stop.
    pub shutdown: watch::Receiver<bool>,
}

/// Runs the feed until `shutdown` turns true: restores past actions, consumes, applies,
/// dead-letters, publishes decisions, commits. Returns the engine when it stops.
pub async fn run(
    options: FeedOptions,
    mut engine: Engine,
    io: FeedIo,
) -> Result<Engine, FeedError> {
    let FeedIo {
        events,
        updates,
        health,
        stats,
        mut shutdown,
    } = io;
    let kafka = options.kafka.clone();
    if !wait_for_brokers(&kafka, &health, &mut shutdown).await? {
        return Ok(engine);
    }

    let since = now_ms() - options.restore_window_ms as i64;
    let restore_settings = kafka.clone();
    let (engine_back, restored) = tokio::task::spawn_blocking(move || {
        let result = audit::restore_actions(
            &restore_settings,
            &mut engine,
            since,
            Duration::from_secs(10),
        );
        (engine, result)
    })
    .await
    .map_err(|_| FeedError::Closed)?;
    engine = engine_back;
    match restored {
        Ok(n) => {
            stats.restored.store(n as u64, Ordering::Relaxed);
            info!(actions = n, topic = %kafka.audit_topic, "restored past actions from the audit topic");
        }
        Err(e) => warn!(error = %e, "could not read the audit topic; limits start from zero"),
    }

    let producer: FutureProducer = kafka.producer_config().create()?;
    let context = FeedContext::new(&kafka.topic, health.clone());
    let consumer: Arc<StreamConsumer<FeedContext>> =
        Arc::new(kafka.consumer_config().create_with_context(context)?);
    consumer.subscribe(&[&kafka.topic])?;
    info!(topic = %kafka.topic, group = %kafka.group_id, "kafka: subscribed");

    let (tx, rx) = mpsc::channel::<OwnedMessage>(options.channel_capacity);
    let ingest = tokio::spawn(ingest(
        consumer.clone(),
        tx,
        health.clone(),
        shutdown.clone(),
    ));
    let stage = EngineStage {
        options,
        engine,
        consumer: consumer.clone(),
        producer,
        events,
        health,
        stats,
        progress: Progress::default(),
        node_partitions: HashMap::new(),
        dlq_log: RateLimitedLog::default(),
    };
    let result = stage.run(rx, updates, shutdown).await;
    ingest.abort();
    let _ = ingest.await;
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        debug!(error = %e, "final commit (nothing stored is fine)");
    }
    result
}

/// Reads messages and hands them to the engine stage (backpressure through the channel).
async fn ingest(
    consumer: Arc<StreamConsumer<FeedContext>>,
    tx: mpsc::Sender<OwnedMessage>,
    health: Arc<FeedHealth>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut log = RateLimitedLog::default();
    loop {
        let received = tokio::select! {
            m = consumer.recv() => m,
            _ = shutdown.changed() => return,
        };
        match received {
            Ok(message) => {
                health.connected.store(true, Ordering::Relaxed);
                health.last_message_ms.store(now_ms(), Ordering::Relaxed);
                if tx.send(message.detach()).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if let Some(suppressed) = log.allow(now_ms(), 5_000) {
                    warn!(error = %e, suppressed, "kafka: consumer error");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

struct EngineStage {
    options: FeedOptions,
    engine: Engine,
    consumer: Arc<StreamConsumer<FeedContext>>,
    producer: FutureProducer,
    events: mpsc::Sender<Event>,
    health: Arc<FeedHealth>,
    stats: Arc<FeedStats>,
    progress: Progress,
    node_partitions: HashMap<String, i32>,
    dlq_log: RateLimitedLog,
}

impl EngineStage {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<OwnedMessage>,
        mut updates: Option<mpsc::Receiver<ClusterUpdate>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Engine, FeedError> {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(self.options.batch);
        let mut changes = Vec::new();
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, self.options.batch) => {
                    if n == 0 {
                        break;
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
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
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
            self.handle_rebalances();
            for message in batch.drain(..) {
                self.apply(&message).await;
            }
            self.step().await?;
        }
        self.store_committable();
        Ok(self.engine)
    }

    fn handle_rebalances(&mut self) {
        for note in self.consumer.context().take_notes() {
            if let RebalanceNote::Assigned(partitions) = &note {
                for p in partitions {
                    self.progress.expect(*p, now_ms());
                }
            }
            if let RebalanceNote::Revoked(partitions) = note {
                for p in &partitions {
                    self.progress.revoke(*p);
                }
                let gone: Vec<String> = self
                    .node_partitions
                    .iter()
                    .filter(|(_, p)| partitions.contains(p))
                    .map(|(n, _)| n.clone())
                    .collect();
                for node in &gone {
                    self.engine.forget_node(node);
                    self.node_partitions.remove(node);
                }
                info!(
                    ?partitions,
                    nodes = gone.len(),
                    "partitions revoked: their nodes' state is dropped"
                );
            }
        }
    }

    async fn apply(&mut self, message: &OwnedMessage) {
        self.stats.messages.fetch_add(1, Ordering::Relaxed);
        let partition = message.partition();
        let now = now_ms();
        let options = DecodeOptions { now_ms: now };
        let payload = message.payload().unwrap_or_default();
        let (newest, errors) = match decode(payload, &options) {
            Ok(decoded) => {
                let mut newest = None;
                for sample in &decoded.samples {
                    // Only samples the engine keeps may move this partition's event time.
                    if self.engine.offer(sample) == crate::engine::Offered::Queued {
                        newest = Some(newest.map_or(sample.ts_ms, |n: i64| n.max(sample.ts_ms)));
                    }
                    if self.node_partitions.get(sample.node.as_ref()) != Some(&partition) {
                        self.node_partitions
                            .insert(sample.node.to_string(), partition);
                    }
                }
                self.stats
                    .samples
                    .fetch_add(decoded.samples.len() as u64, Ordering::Relaxed);
                (newest, decoded.rejected)
            }
            Err(e) => (None, vec![e]),
        };
        if !errors.is_empty() {
            self.dead_letter(message, &errors).await;
        }
        self.progress
            .observe(partition, message.offset(), newest, now);
    }

    async fn dead_letter(&mut self, message: &OwnedMessage, errors: &[DecodeError]) {
        self.stats
            .rejected_samples
            .fetch_add(errors.len() as u64, Ordering::Relaxed);
        if let Some(suppressed) = self.dlq_log.allow(now_ms(), 1_000) {
            warn!(
                partition = message.partition(),
                offset = message.offset(),
                reason = errors[0].reason(),
                error = %errors[0],
                suppressed,
                "rejected sample(s) sent to the dead-letter topic"
            );
        }
        let topic = self.options.kafka.dlq_topic.clone();
        let send = || dlq::send_dead_letter(&self.producer, &topic, message, errors);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .without_max_times();
        // The offset is not committed until the dead letter is stored: retry until it is.
        match send
            .retry(backoff)
            .notify(|e: &KafkaError, wait| warn!(error = %e, "dead-letter produce failed; retrying in {wait:?}"))
            .await
        {
            Ok(()) => {
                self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => error!(error = %e, "dead-letter produce gave up"),
        }
    }

    /// Advances the watermark, publishes what happened, and stores committable offsets.
    async fn step(&mut self) -> Result<(), FeedError> {
        let now = now_ms();
        let Some(watermark) = self.progress.watermark(
            self.options.lateness_ms,
            now,
            self.options.idle_after_ms,
            self.options.wall_clock_advance,
        ) else {
            return Ok(());
        };
        self.engine
            .set_horizon(now - self.options.max_evidence_age_ms as i64);
        let mut out = Vec::new();
        self.engine.advance(watermark, &mut out);
        for event in out {
            if let Event::Decision(decision) = &event {
                let topic = self.options.kafka.audit_topic.clone();
                let send = || audit::send_decision(&self.producer, &topic, decision);
                let backoff = ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10))
                    .with_max_times(20);
                match send.retry(backoff).await {
                    Ok(()) => {
                        self.stats.decisions.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => error!(error = %e, "could not publish a decision to the audit topic"),
                }
            }
            self.events
                .send(event)
                .await
                .map_err(|_| FeedError::Closed)?;
        }
        // Published after the events: whoever sees this watermark has every event up to it.
        self.health
            .watermark_ms
            .store(self.engine.watermark(), Ordering::Relaxed);
        self.store_committable();
        Ok(())
    }

    fn store_committable(&mut self) {
        let watermark = self.engine.watermark();
        for (partition, next) in self.progress.committable(watermark) {
            match self
                .consumer
                .store_offset(&self.options.kafka.topic, partition, next - 1)
            {
                Ok(()) => {
                    self.stats.offsets_stored.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => debug!(error = %e, partition, "offset not stored (partition revoked?)"),
            }
        }
    }
}
