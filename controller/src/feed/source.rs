//! [`Feed`]: the consumer-group side of the samples topic. It receives messages, decodes
//! them into the engine, dead-letters what is rejected, follows rebalances, computes the
//! event-time watermark across partitions, and stores offsets once their samples are
//! applied. It never advances the engine itself: [`crate::runner`] does.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use fulcrum_engine::sample::{DecodeError, DecodeOptions, decode};
use fulcrum_engine::{Engine, Offered};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::context::{FeedContext, RebalanceNote};
use super::nodes::NodePartitions;
use super::progress::Progress;
use super::{FeedError, FeedHealth, FeedOptions, FeedStats, dlq, ingest};
use crate::clock::now_ms;
use crate::telemetry::RateLimitedLog;

/// A subscribed consumer and everything that tracks its progress.
pub struct Feed {
    options: FeedOptions,
    consumer: Arc<StreamConsumer<FeedContext>>,
    producer: FutureProducer,
    messages: mpsc::Receiver<OwnedMessage>,
    ingest: JoinHandle<()>,
    health: Arc<FeedHealth>,
    stats: Arc<FeedStats>,
    progress: Progress,
    node_partitions: NodePartitions,
    dlq_log: RateLimitedLog,
}

impl Feed {
    /// Creates the consumer and the dead-letter producer, subscribes, and starts reading.
    pub fn start(
        options: FeedOptions,
        health: Arc<FeedHealth>,
        stats: Arc<FeedStats>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Self, FeedError> {
        let kafka = &options.kafka;
        let producer: FutureProducer = kafka.producer_config().create()?;
        let context = FeedContext::new(&kafka.topic, health.clone());
        let consumer: Arc<StreamConsumer<FeedContext>> =
            Arc::new(kafka.consumer_config().create_with_context(context)?);
        consumer.subscribe(&[&kafka.topic])?;
        info!(topic = %kafka.topic, group = %kafka.group_id, "kafka: subscribed");
        let (tx, messages) = mpsc::channel::<OwnedMessage>(options.channel_capacity);
        let ingest = tokio::spawn(ingest::ingest(
            consumer.clone(),
            tx,
            health.clone(),
            shutdown,
        ));
        Ok(Self {
            options,
            consumer,
            producer,
            messages,
            ingest,
            health,
            stats,
            progress: Progress::default(),
            node_partitions: NodePartitions::default(),
            dlq_log: RateLimitedLog::default(),
        })
    }

    /// The options the feed was started with.
    pub fn options(&self) -> &FeedOptions {
        &self.options
    }

    /// Waits for messages and moves up to `options.batch` of them into `batch`. Returns 0
    /// when the ingest task has stopped.
    pub async fn recv_many(&mut self, batch: &mut Vec<OwnedMessage>) -> usize {
        self.messages.recv_many(batch, self.options.batch).await
    }

    /// Acts on rebalances since the last call: newly assigned partitions hold the
    /// watermark until they deliver; revoked partitions' nodes are forgotten by `engine`.
    pub fn handle_rebalances(&mut self, engine: &mut Engine) {
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
                let gone = self.node_partitions.revoke(&partitions);
                for node in &gone {
                    engine.forget_node(node);
                }
                info!(
                    ?partitions,
                    nodes = gone.len(),
                    "partitions revoked: their nodes' state is dropped"
                );
            }
        }
    }

    /// Decodes one message and offers its samples to `engine`; rejected samples go to the
    /// dead-letter topic.
    pub async fn apply(&mut self, engine: &mut Engine, message: &OwnedMessage) {
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
                    if engine.offer(sample) == Offered::Queued {
                        newest = Some(newest.map_or(sample.ts_ms, |n: i64| n.max(sample.ts_ms)));
                    }
                    // Only nodes in the cluster view are remembered (a flood of unknown
                    // node names must not grow memory).
                    let known = engine.cluster().node_id(&sample.node).is_some();
                    self.node_partitions.note(&sample.node, partition, known);
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

    /// The event-time watermark across the assigned partitions now, if there is one.
    pub fn watermark(&self) -> Option<i64> {
        self.progress.watermark(
            self.options.lateness_ms,
            now_ms(),
            self.options.idle_after_ms,
            self.options.wall_clock_advance,
        )
    }

    /// Publishes the engine's watermark to the health state (after the events up to it
    /// were handled) and stores the offsets its samples made committable.
    pub fn applied_up_to(&mut self, watermark: i64) {
        self.health.watermark_ms.store(watermark, Ordering::Relaxed);
        self.store_committable(watermark);
    }

    fn store_committable(&mut self, watermark: i64) {
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

    /// Stops reading, stores what `watermark` made committable, and commits.
    pub async fn close(mut self, watermark: i64) {
        self.store_committable(watermark);
        self.ingest.abort();
        let _ = (&mut self.ingest).await;
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            debug!(error = %e, "final commit (nothing stored is fine)");
        }
    }
}
