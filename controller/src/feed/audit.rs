//! The audit topic: every decision (executed, dry-run or blocked) as JSON keyed by node,
//! and the restore of past actions from it when a replica starts, so limits hold and no
//! pod is acted on twice across restarts.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::config::KafkaSettings;
use super::reader::ReaderContext;
use fulcrum_engine::{Decision, Engine, Outcome};

/// Schema identifier of audit records.
pub const AUDIT_SCHEMA: &str = "fulcrum.decisions/v1";

/// One audit record: the decision with its explanation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Always [`AUDIT_SCHEMA`].
    pub schema: String,
    /// The decision.
    #[serde(flatten)]
    pub decision: Decision,
}

impl AuditRecord {
    /// Wraps a decision.
    pub fn new(decision: Decision) -> Self {
        Self {
            schema: AUDIT_SCHEMA.to_owned(),
            decision,
        }
    }
}

/// The audit topic as a sink: publishes decisions, retrying a failed produce a bounded
/// number of times.
pub struct AuditLog {
    producer: FutureProducer,
    topic: String,
}

impl AuditLog {
    /// A producer for `settings.audit_topic`.
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: settings.producer_config().create()?,
            topic: settings.audit_topic.clone(),
        })
    }

    /// Publishes `decision`, retrying with backoff (200 ms doubling to 10 s, 20 tries).
    pub async fn publish(&self, decision: &Decision) -> Result<(), KafkaError> {
        let send = || send_decision(&self.producer, &self.topic, decision);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .with_max_times(20);
        send.retry(backoff).await
    }
}

/// Produces a decision to the audit topic (keyed by node) and waits for the acknowledgement.
pub async fn send_decision(
    producer: &FutureProducer,
    topic: &str,
    decision: &Decision,
) -> Result<(), KafkaError> {
    let record = AuditRecord::new(decision.clone());
    let payload = serde_json::to_vec(&record).unwrap_or_default();
    producer
        .send(
            FutureRecord::to(topic)
                .key(decision.node.as_bytes())
                .payload(&payload),
            Duration::from_secs(30),
        )
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

/// Reads the audit topic from the first record at or after `since_ms` to its current end
/// and restores every executed or dry-run action into `engine`. Returns how many.
///
/// Blocking (librdkafka calls); run it on a blocking thread.
pub fn restore_actions(
    settings: &KafkaSettings,
    engine: &mut Engine,
    since_ms: i64,
    timeout: Duration,
) -> Result<usize, KafkaError> {
    let consumer: BaseConsumer<ReaderContext> = settings
        .reader_config()
        .create_with_context(ReaderContext)?;
    let metadata = consumer.fetch_metadata(Some(&settings.audit_topic), timeout)?;
    let Some(topic) = metadata.topics().first() else {
        return Ok(0);
    };
    if topic.error().is_some() || topic.partitions().is_empty() {
        info!(topic = %settings.audit_topic, "audit topic not found: nothing to restore");
        return Ok(0);
    }
    let mut list = TopicPartitionList::new();
    let mut remaining = std::collections::BTreeSet::new();
    for p in topic.partitions() {
        let (low, high) = consumer.fetch_watermarks(&settings.audit_topic, p.id(), timeout)?;
        if high > low {
            list.add_partition_offset(&settings.audit_topic, p.id(), Offset::Offset(low))?;
            remaining.insert(p.id());
        }
    }
    if remaining.is_empty() {
        return Ok(0);
    }
    consumer.assign(&list)?;
    let mut restored = 0;
    let deadline = std::time::Instant::now() + timeout.max(Duration::from_secs(30));
    while !remaining.is_empty() && std::time::Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                remaining.remove(&p);
            }
            Some(Err(e)) => warn!(error = %e, "reading the audit topic"),
            Some(Ok(message)) => {
                let Some(payload) = message.payload() else {
                    continue;
                };
                match serde_json::from_slice::<AuditRecord>(payload) {
                    Ok(record) if record.decision.at >= since_ms => {
                        if record.decision.outcome != Outcome::Blocked {
                            engine.restore(&record.decision);
                            restored += 1;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        warn!(error = %e, offset = message.offset(), "skipping an unreadable audit record")
                    }
                }
            }
        }
    }
    Ok(restored)
}
