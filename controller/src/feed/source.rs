//! [`Feed`]: the consumer-group side of the samples topic. It receives messages, decodes
//! them into the engine, dead-letters what is rejected, follows rebalances, computes the
//! event-time watermark across partitions, and stores offsets once their samples are
//! applied. It never advances the engine itself: [`crate::runner`] does.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fulcrum_engine::sample::{DecodeError, DecodeOptions, Sample};
use fulcrum_engine::{Engine, NodeId, Offered};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::consumed::Consumed;
use super::context::{FeedContext, RebalanceNote};
use super::ingest::Received;
use super::nodes::NodePartitions;
use super::progress::{Progress, skew_bound};
use super::retry::{self, GaveUp, produce_with_retries};
use super::{FeedError, FeedHealth, FeedOptions, FeedStats, dlq, ingest};
use crate::clock::now_ms;
use crate::inputs::{Input, InputFormat, Origin};
use crate::telemetry::RateLimitedLog;

/// A subscribed consumer and everything that tracks its progress.
pub struct Feed {
    options: FeedOptions,
    consumer: Arc<StreamConsumer<FeedContext>>,
    producer: FutureProducer,
    messages: mpsc::Receiver<Received>,
    ingest: JoinHandle<()>,
    health: Arc<FeedHealth>,
    stats: Arc<FeedStats>,
    progress: Progress,
    node_partitions: NodePartitions,
    dlq_log: RateLimitedLog,
    shutdown: watch::Receiver<bool>,
    input: Input,
    /// Origins of grouped samples just offered, with the time the engine queued.
    settled: Vec<(Origin, Option<i64>)>,
    /// When samples were consumed (decision latency).
    consumed: Consumed,
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
        let (tx, messages) = mpsc::channel::<Received>(options.channel_capacity);
        let native = options.input.format == InputFormat::Native;
        let ingest = tokio::spawn(ingest::ingest(
            consumer.clone(),
            tx,
            health.clone(),
            shutdown.clone(),
            native,
        ));
        Ok(Self {
            input: Input::new(options.input),
            settled: Vec::new(),
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
            shutdown,
            consumed: Consumed::default(),
        })
    }

    /// The options the feed was started with.
    pub fn options(&self) -> &FeedOptions {
        &self.options
    }

    /// Waits for messages and moves up to `options.batch` of them into `batch`. Returns 0
    /// when the ingest task has stopped.
    pub async fn recv_many(&mut self, batch: &mut Vec<Received>) -> usize {
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
                for &node in &gone {
                    if let Some(name) = engine.cluster().node_info(node).map(|n| n.name.clone()) {
                        engine.forget_node(&name);
                    }
                    self.consumed.forget(node);
                }
                info!(
                    ?partitions,
                    nodes = gone.len(),
                    "partitions revoked: their nodes' state is dropped"
                );
            }
        }
    }

    /// Offers one message's samples to `engine` (decoding it unless the ingest task did);
    /// rejected samples go to the dead-letter topic.
    pub async fn apply(&mut self, engine: &mut Engine, received: Received) {
        self.stats.messages.fetch_add(1, Ordering::Relaxed);
        let (partition, offset) = (received.partition, received.offset);
        if !self.consumer.context().is_assigned(partition) {
            // Received before its partition was revoked: the new owner reads it again.
            self.stats.revoked_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = now_ms();
        let (newest, errors) = match received.decoded {
            Some(Ok(mut owned)) => {
                let errors = std::mem::take(&mut owned.rejected);
                let mut samples = Vec::with_capacity(owned.len());
                owned.samples_into(&mut samples);
                (self.offer(engine, &samples, Some(partition)), errors)
            }
            Some(Err(e)) => (None, vec![e]),
            None => {
                let options = DecodeOptions { now_ms: now };
                let payload = received.message.as_ref().and_then(|m| m.payload());
                let origin = Origin { partition, offset };
                let decoded =
                    self.input
                        .decode_at(payload.unwrap_or_default(), &options, Some(origin));
                match decoded {
                    Ok(decoded) => {
                        let newest = self.offer(engine, &decoded.samples, Some(partition));
                        (newest, decoded.rejected)
                    }
                    Err(e) => (None, vec![e]),
                }
            }
        };
        let input = self.input.stats();
        self.stats.unmapped.store(input.unmapped, Ordering::Relaxed);
        self.stats.converted.store(input.values, Ordering::Relaxed);
        // The ingest task keeps the message whenever something was rejected.
        let stored = match &received.message {
            _ if errors.is_empty() => true,
            Some(message) => self.dead_letter(message, &errors).await,
            None => false,
        };
        self.progress.observe(partition, offset, newest, now);
        // Values of this message still in the group window (and those released by this
        // very decode, settled just below) hold its offset until they reach the engine.
        self.progress.wait(partition, offset, self.input.joined());
        self.settle();
        if !stored {
            // Its dead letter is not stored: commits of this partition stop before it, so
            // a restart reads it (and tries the dead letter) again.
            self.progress.hold(partition, offset);
        }
    }

    /// Offers `samples` (the last decode or release of the input) to `engine`. Returns the
    /// newest time the engine queued among those without origins (the native schema:
    /// they are the message's own, from `partition`); the others are noted in `settled`
    /// by origin.
    fn offer(
        &mut self,
        engine: &mut Engine,
        samples: &[Sample<'_>],
        partition: Option<i32>,
    ) -> Option<i64> {
        let input = &self.input;
        let settled = &mut self.settled;
        let nodes = &mut self.node_partitions;
        let consumed = &mut self.consumed;
        let now = now_ms();
        // A message's samples are mostly of one node and a few instants: the engine looks
        // the node up once per run of its samples, and it is noted when it or the instant
        // changes, not per sample.
        let mut last: Option<(NodeId, i64, i32)> = None;
        let newest = offer_samples(engine, samples, |_, i, sample, node, queued| {
            let origins = input.origins(i);
            settled.extend(origins.iter().map(|o| (*o, queued)));
            // Only nodes in the cluster view are remembered (a flood of unknown node
            // names must not grow memory).
            if let Some(partition) = origins.first().map(|o| o.partition).or(partition)
                && let Some(id) = node
            {
                let key = (id, sample.ts_ms, partition);
                if last != Some(key) {
                    nodes.note(id, partition);
                    consumed.note(id, sample.ts_ms, now);
                }
                last = Some(key);
            }
            // Grouped samples settle their messages through `settled` instead.
            origins.is_empty()
        });
        self.settled
            .extend(self.input.dropped_origins().iter().map(|o| (*o, None)));
        self.stats
            .samples
            .fetch_add(samples.len() as u64, Ordering::Relaxed);
        newest
    }

    /// Tells the progress tracker which waiting messages' samples reached the engine.
    fn settle(&mut self) {
        for (origin, queued) in self.settled.drain(..) {
            self.progress
                .settle(origin.partition, origin.offset, queued);
        }
    }

    /// Offers the samples whose group window has passed in wall-clock time while no
    /// message completed them (a quiet feed), so they reach the engine before the
    /// watermark passes them and their messages' offsets can be committed. A sample of
    /// them that fails the unit checks is counted and logged: the messages its values
    /// came from were handled already, so there is no message to dead-letter.
    pub fn release_waiting(&mut self, engine: &mut Engine) {
        let released = self.input.release_due(now_ms());
        self.offer(engine, &released.samples, None);
        self.settle();
        if let Some(e) = released.rejected.first() {
            self.stats
                .rejected_samples
                .fetch_add(released.rejected.len() as u64, Ordering::Relaxed);
            if let Some(suppressed) = self.dlq_log.allow(now_ms(), 1_000) {
                warn!(reason = e.reason(), error = %e, suppressed,
                    "grouped sample(s) rejected after their window closed (not dead-lettered)");
            }
        }
    }

    /// Sends a dead letter with bounded, interruptible retries. A message over the
    /// producer's size limit is sent without its payload (the headers name its source
    /// partition and offset). Returns whether the dead letter was stored.
    async fn dead_letter(&mut self, message: &OwnedMessage, errors: &[DecodeError]) -> bool {
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
        let mut result = Err(GaveUp::Interrupted);
        for with_payload in [true, false] {
            let send =
                || dlq::send_dead_letter(&self.producer, &topic, message, errors, with_payload);
            result = produce_with_retries("dead-letter produce", send, &mut self.shutdown).await;
            match &result {
                Err(GaveUp::Failed(e)) if with_payload && retry::is_too_large(e) => continue,
                _ => break,
            }
        }
        match result {
            Ok(()) => {
                self.stats.dead_letters.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut reasons) = self.stats.dead_letter_reasons.lock() {
                    *reasons.entry(errors[0].reason().to_owned()).or_default() += 1;
                }
                true
            }
            Err(e) => {
                self.stats
                    .dead_letters_failed
                    .fetch_add(1, Ordering::Relaxed);
                error!(error = %e, partition = message.partition(), offset = message.offset(),
                    "dead-letter produce gave up; the offset is not committed past this message");
                false
            }
        }
    }

    /// The event-time watermark across the assigned partitions now, if there is one. A
    /// lagging partition holds it back by `max_skew_ms` at most; while `engine` buffers
    /// more than `max_buffered` samples it holds nothing back (the buffer stays bounded).
    /// Publishes the skew and the engine's buffer as gauges.
    pub fn watermark(&mut self, engine: &Engine) -> Option<i64> {
        let buffered = engine.buffered() + engine.held();
        self.stats
            .buffered
            .store(buffered as u64, Ordering::Relaxed);
        let bound = skew_bound(
            buffered,
            self.options.max_buffered,
            self.options.max_skew_ms,
        );
        if buffered > self.options.max_buffered {
            self.stats.buffer_overflows.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.skew_bound_ms.store(bound, Ordering::Relaxed);
        self.stats
            .buffer_limit
            .store(self.options.max_buffered as u64, Ordering::Relaxed);
        let skew = Some(bound);
        self.progress.set_max_skew(skew);
        let watermark = self.progress.watermark(
            self.options.lateness_ms,
            now_ms(),
            self.options.idle_after_ms,
            self.options.wall_clock_advance,
        );
        self.stats
            .skew_ms
            .store(self.progress.skew_ms().max(0) as u64, Ordering::Relaxed);
        watermark
    }

    /// Publishes the engine's counters and waiting samples (for metrics).
    pub fn publish_engine(&self, engine: &Engine) {
        let snapshot = super::EngineSnapshot::of(engine);
        self.stats
            .buffered
            .store(snapshot.pending, Ordering::Relaxed);
        if let Ok(mut shared) = self.stats.engine.lock() {
            *shared = snapshot;
        }
    }

    /// Publishes the engine's watermark to the health state (after the events up to it
    /// were handled) and stores the offsets its samples made committable.
    pub fn applied_up_to(&mut self, watermark: i64) {
        self.health.watermark_ms.store(watermark, Ordering::Relaxed);
        self.consumed.prune(watermark);
        self.store_committable(watermark);
    }

    /// When the first sample of `node` at or after event time `at` was consumed (wall
    /// clock ms), if still known.
    pub fn consumed_at(&self, node: NodeId, at: i64) -> Option<i64> {
        self.consumed.consumed_at(node, at)
    }

    /// Consumer lag per assigned partition: messages from the first one not yet applied to
    /// the partition's high watermark (from librdkafka's statistics, every
    /// `statistics.interval.ms`). Partitions without a known high watermark or position
    /// are left out.
    pub fn consumer_lag(&self) -> Vec<(i32, i64)> {
        let topic = &self.options.kafka.topic;
        let positions = self.consumer.position().ok();
        let position = |p: i32| match positions
            .as_ref()
            .and_then(|l| l.find_partition(topic, p))
            .map(|e| e.offset())
        {
            Some(rdkafka::Offset::Offset(o)) => Some(o),
            _ => None,
        };
        self.consumer
            .context()
            .assigned()
            .into_iter()
            .filter_map(|p| {
                let high = self.consumer.context().high_watermark(p)?;
                let from = self.progress.next_unapplied(p).or_else(|| position(p))?;
                Some((p, (high - from).max(0)))
            })
            .collect()
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

/// Offers `samples` to `engine`, calling `each(engine, index, sample, node, queued)` after
/// each offer (`node` is the sample's node id when the cluster view knows it, `queued` the
/// sample's time when the engine queued it), and returns the newest time among the queued
/// samples for which `each` returned true. Only queued samples may move the partition's
/// event time: a sample held as too far ahead (a broken clock), late, unknown or irrelevant
/// must not, or one far-future sample would make every real one late and hold the
/// partition's commits.
pub(super) fn offer_samples<'s, 'a>(
    engine: &mut Engine,
    samples: &'s [Sample<'a>],
    mut each: impl FnMut(&Engine, usize, &'s Sample<'a>, Option<NodeId>, Option<i64>) -> bool,
) -> Option<i64> {
    let mut newest = None;
    engine.offer_each(samples, |engine, i, node, offered| {
        let sample = &samples[i];
        let queued = (offered == Offered::Queued).then_some(sample.ts_ms);
        if each(engine, i, sample, node, queued) {
            newest = newest.max(queued);
        }
    });
    newest
}
