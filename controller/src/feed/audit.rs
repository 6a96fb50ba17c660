//! The audit topic: every decision (executed, dry-run or blocked) as JSON keyed by node,
//! and the restore of past actions from it when a replica starts, so limits hold and no
//! pod is acted on twice across restarts.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::config::KafkaSettings;
use super::reader::ReaderContext;
use super::retry::{GaveUp, produce_with_retries};
use fulcrum_engine::{Decision, Engine, Outcome};
use tokio::sync::watch;

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

    /// Publishes `decision` with bounded, interruptible retries (see [`super::retry`]).
    pub async fn publish(
        &self,
        decision: &Decision,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), GaveUp> {
        let send = || send_decision(&self.producer, &self.topic, decision);
        produce_with_retries("audit produce", send, shutdown).await
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

/// Why past actions could not be restored. The operator refuses to start then: acting
/// with budgets reset and past targets forgotten could repeat an eviction.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// A Kafka call failed.
    #[error("reading the audit topic: {0}")]
    Kafka(#[from] KafkaError),
    /// A partition stopped delivering before its end.
    #[error(
        "reading the audit topic: partition {partition} stalled at offset {at} of {end} for {stalled:?}"
    )]
    Stalled {
        /// The partition.
        partition: i32,
        /// The next offset to read.
        at: i64,
        /// The end offset seen at start.
        end: i64,
        /// How long nothing arrived.
        stalled: Duration,
    },
}

/// Reads the audit topic from the first record produced at or after `since_ms` (offsets
/// for timestamps, so the size of the topic does not matter) to the end offsets seen at
/// start, and restores every executed or dry-run action into `engine`. Returns how many.
/// There is no overall deadline: the read fails only when a partition delivers nothing for
/// `stall` (or a Kafka call fails). A missing topic restores nothing (first deployment).
///
/// Blocking (librdkafka calls); run it on a blocking thread.
pub fn restore_actions(
    settings: &KafkaSettings,
    engine: &mut Engine,
    since_ms: i64,
    stall: Duration,
) -> Result<usize, RestoreError> {
    let consumer: BaseConsumer<ReaderContext> = settings
        .reader_config()
        .create_with_context(ReaderContext)?;
    let Some(mut ends) = seek_since(&consumer, &settings.audit_topic, since_ms, stall)? else {
        info!(topic = %settings.audit_topic, "audit topic not found: nothing to restore");
        return Ok(0);
    };
    let mut restored = 0;
    let mut last_progress = std::time::Instant::now();
    while let Some((&partition, &(at, end))) = ends.iter().next() {
        if last_progress.elapsed() > stall {
            let stalled = last_progress.elapsed();
            return Err(RestoreError::Stalled {
                partition,
                at,
                end,
                stalled,
            });
        }
        let message = match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            // At the partition's current end (past the end seen at start; offsets may
            // have gaps, e.g. after compaction): done with it.
            Some(Err(KafkaError::PartitionEOF(p))) => {
                ends.remove(&p);
                continue;
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(message)) => message,
        };
        last_progress = std::time::Instant::now();
        if let Some(entry) = ends.get_mut(&message.partition()) {
            entry.0 = message.offset() + 1;
            if entry.0 >= entry.1 {
                ends.remove(&message.partition());
            }
        }
        let Some(payload) = message.payload() else {
            continue;
        };
        match serde_json::from_slice::<AuditRecord>(payload) {
            Ok(record) if record.decision.outcome != Outcome::Blocked => {
                engine.restore(&record.decision);
                restored += 1;
            }
            Ok(_) => {}
            // A report of where a replacement landed, not an action.
            Err(_) if super::replacements::is_replacement(payload) => {}
            Err(e) => {
                warn!(error = %e, offset = message.offset(), "skipping an unreadable audit record")
            }
        }
    }
    Ok(restored)
}

/// Per partition still to read: (next offset, end offset).
type Ranges = BTreeMap<i32, (i64, i64)>;

/// Assigns every partition of `topic` from its first offset produced at or after
/// `since_ms`. Returns, per partition still to read, (next offset, end offset), or `None`
/// when the topic does not exist.
fn seek_since(
    consumer: &BaseConsumer<ReaderContext>,
    topic: &str,
    since_ms: i64,
    timeout: Duration,
) -> Result<Option<Ranges>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let Some(meta) = metadata.topics().first() else {
        return Ok(None);
    };
    if meta.error().is_some() || meta.partitions().is_empty() {
        return Ok(None);
    }
    let mut query = TopicPartitionList::new();
    for p in meta.partitions() {
        query.add_partition_offset(topic, p.id(), Offset::Offset(since_ms))?;
    }
    let found = consumer.offsets_for_times(query, timeout)?;
    let mut assign = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in meta.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
        let start = match found.find_partition(topic, p.id()).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o.max(low),
            // No record at or after the time: nothing to read in this partition.
            _ => high,
        };
        if start < high {
            assign.add_partition_offset(topic, p.id(), Offset::Offset(start))?;
            ends.insert(p.id(), (start, high));
        }
    }
    if !ends.is_empty() {
        consumer.assign(&assign)?;
    }
    Ok(Some(ends))
}
