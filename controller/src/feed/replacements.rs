//! Replacement records on the audit topic: where the replacement of a pod Fulcrum evicted
//! or migrated landed, or that it cannot be scheduled. Keyed, like decisions, by the node
//! the pod was evicted from. They are reports, not actions: restoring past actions at
//! start reads only decision and actuation records, so it skips them (their schema,
//! [`REPLACEMENT_SCHEMA`], is told apart by [`is_replacement`]).

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};

use super::config::KafkaSettings;

/// Schema identifier of replacement records.
pub const REPLACEMENT_SCHEMA: &str = "fulcrum.replacements/v1";

/// Where a replacement landed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplacementRecord {
    /// Always [`REPLACEMENT_SCHEMA`].
    pub schema: String,
    /// Wall clock (ms) when the replacement was seen bound or unschedulable.
    pub at: i64,
    /// The policy that acted.
    pub policy: String,
    /// The node the pod was evicted from (the record's key).
    pub source_node: String,
    /// The evicted pod, `namespace/name`.
    pub evicted: String,
    /// The replacement pod, `namespace/name`.
    pub replacement: String,
    /// The node it was bound to (absent when it cannot be scheduled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The scheduler's message when it cannot be scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unschedulable: Option<String>,
}

/// True when an audit topic payload is a replacement record (not a decision).
pub fn is_replacement(payload: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Schema {
        schema: String,
    }
    serde_json::from_slice::<Schema>(payload).is_ok_and(|s| s.schema == REPLACEMENT_SCHEMA)
}

/// Publishes replacement records to the audit topic.
pub struct ReplacementLog {
    producer: FutureProducer,
    topic: String,
}

impl ReplacementLog {
    /// A producer for `settings.audit_topic`.
    pub fn new(settings: &KafkaSettings) -> Result<Self, KafkaError> {
        Ok(Self {
            producer: settings.producer_config().create()?,
            topic: settings.audit_topic.clone(),
        })
    }

    /// Produces a record (keyed by its source node) and waits for the acknowledgement.
    pub async fn publish(&self, record: &ReplacementRecord) -> Result<(), KafkaError> {
        let payload = serde_json::to_vec(record).unwrap_or_default();
        self.producer
            .send(
                FutureRecord::to(&self.topic)
                    .key(record.source_node.as_bytes())
                    .payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_record_is_told_apart_from_a_decision() {
        let record = ReplacementRecord {
            schema: REPLACEMENT_SCHEMA.into(),
            at: 1,
            policy: "p".into(),
            source_node: "node-0".into(),
            evicted: "spark/a".into(),
            replacement: "spark/b".into(),
            node: Some("node-1".into()),
            unschedulable: None,
        };
        let json = serde_json::to_vec(&record).unwrap_or_default();
        assert!(is_replacement(&json));
        let text = String::from_utf8_lossy(&json);
        assert!(text.contains("\"sourceNode\":\"node-0\"") && !text.contains("unschedulable"));
        assert!(!is_replacement(
            br#"{"schema":"fulcrum.decisions/v1","policy":"p"}"#
        ));
        assert!(!is_replacement(b"not json"));
    }
}
