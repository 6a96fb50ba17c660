//! The consumer's librdkafka context: turns rebalances into notes the engine stage acts on,
//! and broker errors into log lines and readiness.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::{info, warn};

use super::FeedHealth;

/// A partition assignment change, as seen by the consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RebalanceNote {
    /// Partitions newly assigned to this replica.
    Assigned(Vec<i32>),
    /// Partitions taken away.
    Revoked(Vec<i32>),
}

/// Context shared with the consumer's background thread.
pub struct FeedContext {
    topic: String,
    notes: Mutex<Vec<RebalanceNote>>,
    health: Arc<FeedHealth>,
}

impl FeedContext {
    /// A context for consuming `topic`.
    pub fn new(topic: &str, health: Arc<FeedHealth>) -> Self {
        Self {
            topic: topic.to_owned(),
            notes: Mutex::new(Vec::new()),
            health,
        }
    }

    /// Takes the rebalance notes gathered since the last call.
    pub fn take_notes(&self) -> Vec<RebalanceNote> {
        self.notes
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or_default()
    }

    fn partitions(&self, list: &rdkafka::TopicPartitionList) -> Vec<i32> {
        list.elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect()
    }
}

impl ClientContext for FeedContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.health.connected.store(false, Ordering::Relaxed);
            warn!(%reason, "kafka: all brokers are down; librdkafka keeps reconnecting");
        } else {
            warn!(%error, %reason, "kafka client error");
        }
    }
}

impl ConsumerContext for FeedContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let note = match rebalance {
            Rebalance::Assign(list) => RebalanceNote::Assigned(self.partitions(list)),
            Rebalance::Revoke(list) => RebalanceNote::Revoked(self.partitions(list)),
            Rebalance::Error(e) => {
                warn!(error = %e, "kafka: rebalance error");
                return;
            }
        };
        info!(?note, "kafka: rebalance");
        if let RebalanceNote::Assigned(p) = &note {
            self.health.assigned.store(p.len(), Ordering::Relaxed);
        }
        if let Ok(mut notes) = self.notes.lock() {
            notes.push(note);
        }
    }
}
