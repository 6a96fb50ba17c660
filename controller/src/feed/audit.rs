//! The audit topic: every decision (executed, dry-run or blocked) as JSON keyed by node,
//! followed for an executed one by an actuation record (see [`super::actuations`]), every
//! episode in which nobody was blamed, and the restore of past actions from it when a
//! replica starts, so limits hold and no pod is acted on twice across restarts.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::actuations::{ACTUATION_SCHEMA, ActuationRecord, Intent, Settled, settle};
use super::config::KafkaSettings;
use super::reader::ReaderContext;
use super::retry::{GaveUp, produce_with_retries};
use fulcrum_engine::decision::Unexplained;
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
    /// The target pod's UID in the cluster view when the decision was made (absent when
    /// unknown). A restart that finds no actuation record for an executed decision checks
    /// it against the pod it sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_uid: Option<String>,
    /// The target pod's workload (`namespace/Kind/name`) when the decision was made, so a
    /// restored action counts against it after the pod is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_workload: Option<String>,
}

impl AuditRecord {
    /// Wraps a decision.
    pub fn new(decision: Decision) -> Self {
        Self {
            schema: AUDIT_SCHEMA.to_owned(),
            decision,
            target_uid: None,
            target_workload: None,
        }
    }

    /// Adds what the engine's cluster view knows of the target (UID and workload).
    pub fn with_target_facts(mut self, engine: &Engine) -> Self {
        let info = self
            .decision
            .target
            .split_once('/')
            .and_then(|(ns, name)| engine.cluster().pod_id(ns, name))
            .and_then(|id| engine.cluster().pod_info(id));
        if let Some(info) = info {
            self.target_uid = Some(info.uid.to_string()).filter(|u| !u.is_empty());
            self.target_workload = Some(info.workload.to_string()).filter(|w| !w.is_empty());
        }
        self
    }
}

/// `kind` of the audit record of an episode in which nobody was blamed. Decision records
/// have no `kind`.
pub const UNEXPLAINED_KIND: &str = "Unexplained";

/// The audit record of an episode in which nobody was blamed (once per episode): the
/// engine's report with why, never an action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnexplainedRecord {
    /// Always [`AUDIT_SCHEMA`].
    pub schema: String,
    /// Always [`UNEXPLAINED_KIND`].
    pub kind: String,
    /// The report.
    #[serde(flatten)]
    pub unexplained: Unexplained,
}

impl UnexplainedRecord {
    /// Wraps a report.
    pub fn new(unexplained: Unexplained) -> Self {
        Self {
            schema: AUDIT_SCHEMA.to_owned(),
            kind: UNEXPLAINED_KIND.to_owned(),
            unexplained,
        }
    }
}

/// What restore makes of one audit record.
#[derive(Debug)]
pub enum Restorable {
    /// A decision that was acted on (or dry-run): it counts as a past action.
    Action(Box<Decision>),
    /// A record that is no action: a Blocked decision, or a record of another `kind`
    /// (an unexplained episode).
    NotAnAction,
    /// Not an audit record this version reads.
    Unreadable(serde_json::Error),
}

/// Classifies an audit record's payload for restore. Only decision records (no `kind`)
/// whose outcome is not Blocked are actions.
pub fn restorable(payload: &[u8]) -> Restorable {
    #[derive(Deserialize)]
    struct Kind {
        #[serde(default)]
        kind: Option<String>,
    }
    match serde_json::from_slice::<Kind>(payload) {
        Ok(Kind { kind: Some(_) }) => return Restorable::NotAnAction,
        Ok(Kind { kind: None }) => {}
        Err(e) => return Restorable::Unreadable(e),
    }
    match serde_json::from_slice::<AuditRecord>(payload) {
        Ok(record) if record.decision.outcome != Outcome::Blocked => {
            Restorable::Action(Box::new(record.decision))
        }
        Ok(_) => Restorable::NotAnAction,
        Err(e) => Restorable::Unreadable(e),
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

    /// Publishes a decision record with bounded, interruptible retries (see
    /// [`super::retry`]).
    pub async fn publish(
        &self,
        record: &AuditRecord,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), GaveUp> {
        let payload = serde_json::to_vec(record).unwrap_or_default();
        let key = record.decision.node.as_bytes();
        let send = || send_record(&self.producer, &self.topic, key, &payload);
        produce_with_retries("audit produce", send, shutdown).await
    }

    /// Publishes an actuation record (keyed by the decision's node, so after its decision
    /// record in the same partition), with the same retries.
    pub async fn publish_actuation(
        &self,
        record: &ActuationRecord,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), GaveUp> {
        let payload = serde_json::to_vec(record).unwrap_or_default();
        let key = record.node.as_bytes();
        let send = || send_record(&self.producer, &self.topic, key, &payload);
        produce_with_retries("actuation record produce", send, shutdown).await
    }

    /// Publishes the report of an unexplained episode, with the same bounded retries.
    pub async fn publish_unexplained(
        &self,
        unexplained: &Unexplained,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), GaveUp> {
        let record = UnexplainedRecord::new(unexplained.clone());
        let payload = serde_json::to_vec(&record).unwrap_or_default();
        let key = unexplained.node.as_bytes();
        let send = || send_record(&self.producer, &self.topic, key, &payload);
        produce_with_retries("audit produce", send, shutdown).await
    }
}

/// Produces one record to the audit topic and waits for the acknowledgement.
async fn send_record(
    producer: &FutureProducer,
    topic: &str,
    key: &[u8],
    payload: &[u8],
) -> Result<(), KafkaError> {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
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
/// start, and restores into `engine` every dry-run action and every executed one that
/// [`settle`] finds did (or may have) happened, stamped (Kafka record time) at or after
/// `since_ms`. Returns what was restored.
/// There is no overall deadline: the read fails only when a partition delivers nothing for
/// `stall` (or a Kafka call fails). A missing topic restores nothing (first deployment).
///
/// Blocking (librdkafka calls); run it on a blocking thread.
pub fn restore_actions(
    settings: &KafkaSettings,
    engine: &mut Engine,
    since_ms: i64,
    stall: Duration,
) -> Result<Restored, RestoreError> {
    let consumer: BaseConsumer<ReaderContext> = settings
        .reader_config()
        .create_with_context(ReaderContext)?;
    let Some(mut ends) = seek_since(&consumer, &settings.audit_topic, since_ms, stall)? else {
        info!(topic = %settings.audit_topic, "audit topic not found: nothing to restore");
        return Ok(Restored::default());
    };
    let mut read = Read::default();
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
        // The seek already starts at `since_ms`; a broker that cannot look offsets up by
        // time starts earlier, and records stamped earlier can follow later ones.
        if message
            .timestamp()
            .to_millis()
            .is_some_and(|t| t < since_ms)
        {
            continue;
        }
        read.add(engine, payload, message.offset());
    }
    let dry_run = read.dry_run;
    let settled = settle(engine, read.intents, &read.outcomes);
    Ok(Restored { dry_run, settled })
}

/// What [`restore_actions`] restored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// DryRun decisions restored.
    pub dry_run: usize,
    /// What became of the Executed decisions read.
    pub settled: Settled,
}

impl Restored {
    /// Actions restored into the engine.
    pub fn total(&self) -> usize {
        self.dry_run + self.settled.restored()
    }
}

/// Records read so far: executed decisions wait for their actuation records.
#[derive(Default)]
struct Read {
    dry_run: usize,
    intents: Vec<Intent>,
    outcomes: Vec<ActuationRecord>,
}

impl Read {
    fn add(&mut self, engine: &mut Engine, payload: &[u8], offset: i64) {
        #[derive(Deserialize)]
        struct Schema {
            #[serde(default)]
            schema: String,
        }
        let schema = serde_json::from_slice::<Schema>(payload).map(|s| s.schema);
        if schema.as_deref().is_ok_and(|s| s == ACTUATION_SCHEMA) {
            match serde_json::from_slice::<ActuationRecord>(payload) {
                Ok(record) => self.outcomes.push(record),
                Err(e) => warn!(error = %e, offset, "skipping an unreadable actuation record"),
            }
            return;
        }
        if schema.as_deref().is_ok_and(|s| s != AUDIT_SCHEMA) {
            // Another kind of record: not a decision.
            return;
        }
        if matches!(restorable(payload), Restorable::NotAnAction) {
            // A Blocked decision or a record of another `kind` (an unexplained episode).
            return;
        }
        match serde_json::from_slice::<AuditRecord>(payload) {
            Ok(record) => match record.decision.outcome {
                Outcome::Blocked => {}
                Outcome::DryRun => {
                    engine
                        .restore_with_workload(&record.decision, record.target_workload.as_deref());
                    self.dry_run += 1;
                }
                Outcome::Executed => self.intents.push(Intent {
                    decision: record.decision,
                    target_uid: record.target_uid,
                    target_workload: record.target_workload,
                }),
            },
            Err(e) => warn!(error = %e, offset, "skipping an unreadable audit record"),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A decision record as docs/events.md shows it (explanation trimmed).
    fn decision_record(outcome: &str) -> serde_json::Value {
        serde_json::json!({
            "schema": AUDIT_SCHEMA, "at": 1_764_151_200_000i64, "policy": "protect-online",
            "node": "node-0", "trigger": "p99-slo", "victim": "shop/cart-0",
            "target": "spark/sort-exec-0", "action": "Migrate", "mode": "Enforce",
            "outcome": outcome, "reason": "r", "destination": "node-2",
            "explanation": {
                "episode": 1,
                "evidence": {"scope": "Victim", "metric": "latency_p99_ms", "value": 412.0,
                             "threshold": 250.0, "baseline": null, "since": 1_764_151_170_000i64,
                             "held_ms": 30000, "window_ms": 300000},
                "method": "Correlation", "scores": [], "guard": "allowed"
            }
        })
    }

    fn classify(value: &serde_json::Value) -> Restorable {
        restorable(&serde_json::to_vec(value).unwrap())
    }

    #[test]
    fn restore_counts_acted_decisions_only_never_an_unexplained_episode() {
        // Control: an executed decision is a past action.
        let executed = decision_record("Executed");
        assert!(matches!(classify(&executed), Restorable::Action(_)));
        assert!(matches!(
            classify(&decision_record("Blocked")),
            Restorable::NotAnAction
        ));
        // The record of an unexplained episode, as the run loop writes it.
        let mut report = executed.clone();
        for field in [
            "schema",
            "target",
            "action",
            "mode",
            "outcome",
            "destination",
        ] {
            report.as_object_mut().unwrap().remove(field);
        }
        report["cause"] = "not-significant".into();
        report["episode"] = 1.into();
        let unexplained: Unexplained = serde_json::from_value(report).unwrap();
        let record = serde_json::to_value(UnexplainedRecord::new(unexplained)).unwrap();
        assert_eq!(record["kind"], UNEXPLAINED_KIND);
        assert_eq!(record["schema"], AUDIT_SCHEMA);
        assert!(matches!(classify(&record), Restorable::NotAnAction));
        // Even one that also carried a decision's fields is no action: `kind` decides.
        let mut both = executed;
        both["kind"] = UNEXPLAINED_KIND.into();
        assert!(matches!(classify(&both), Restorable::NotAnAction));
        assert!(matches!(
            restorable(b"{not json"),
            Restorable::Unreadable(_)
        ));
    }
}
