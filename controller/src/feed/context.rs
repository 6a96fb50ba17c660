//! The consumer's librdkafka context: turns rebalances into notes the engine stage acts on,
//! and broker errors into log lines and readiness.

use std::collections::BTreeSet;
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
    /// The partitions assigned now (eager or cooperative: assignments add, revocations
    /// remove).
    assigned: Mutex<BTreeSet<i32>>,
    health: Arc<FeedHealth>,
}

impl FeedContext {
    /// A context for consuming `topic`.
    pub fn new(topic: &str, health: Arc<FeedHealth>) -> Self {
        Self {
            topic: topic.to_owned(),
            notes: Mutex::new(Vec::new()),
            assigned: Mutex::new(BTreeSet::new()),
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

    /// True when `partition` is assigned to this consumer now. Messages already received
    /// from a partition that was revoked since must not be applied: the new owner reads
    /// them again from the committed offset.
    pub fn is_assigned(&self, partition: i32) -> bool {
        self.assigned
            .lock()
            .map(|a| a.contains(&partition))
            .unwrap_or(false)
    }

    /// Applies a rebalance to the assigned set; returns how many partitions are assigned.
    fn track(&self, note: &RebalanceNote) -> usize {
        let Ok(mut assigned) = self.assigned.lock() else {
            return 0;
        };
        match note {
            RebalanceNote::Assigned(p) => assigned.extend(p.iter().copied()),
            RebalanceNote::Revoked(p) => {
                for partition in p {
                    assigned.remove(partition);
                }
            }
        }
        assigned.len()
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
        let assigned = self.track(&note);
        self.health.assigned.store(assigned, Ordering::Relaxed);
        if let Ok(mut notes) = self.notes.lock() {
            notes.push(note);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assigned_count_follows_cooperative_increments() {
        let health = Arc::new(FeedHealth::default());
        let context = FeedContext::new("samples", health);
        // Cooperative assignment: each callback carries only the change.
        assert_eq!(context.track(&RebalanceNote::Assigned(vec![0, 1])), 2);
        assert_eq!(context.track(&RebalanceNote::Assigned(vec![2])), 3);
        assert_eq!(context.track(&RebalanceNote::Revoked(vec![1])), 2);
        assert!(context.is_assigned(0) && !context.is_assigned(1) && context.is_assigned(2));
        // Eager: everything revoked, then the full new set.
        assert_eq!(context.track(&RebalanceNote::Revoked(vec![0, 2])), 0);
        assert_eq!(context.track(&RebalanceNote::Assigned(vec![1])), 1);
    }

    /// Issue 14, item 1: messages already queued from a partition that was revoked since
    /// were applied after the revoke (re-creating its watermark and its nodes' state).
    /// `Feed::apply` drops a message whose partition is not assigned any more.
    #[test]
    fn a_message_queued_before_its_partition_was_revoked_is_not_applied_after() {
        let health = Arc::new(FeedHealth::default());
        let context = FeedContext::new("samples", health);
        context.track(&RebalanceNote::Assigned(vec![0, 1]));
        // Received from partitions 0 and 1, still in the channel to the engine stage.
        let queued = [0, 1];
        assert!(queued.iter().all(|p| context.is_assigned(*p)));
        // An eager rebalance: everything revoked, partition 0 assigned back.
        context.track(&RebalanceNote::Revoked(vec![0, 1]));
        context.track(&RebalanceNote::Assigned(vec![0]));
        let applied: Vec<i32> = queued
            .into_iter()
            .filter(|p| context.is_assigned(*p))
            .collect();
        assert_eq!(
            applied,
            [0],
            "partition 1's message is dropped, 0's is kept"
        );
    }
}
