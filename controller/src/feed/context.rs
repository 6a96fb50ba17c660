//! The consumer's librdkafka context: turns rebalances into notes the engine stage acts on,
//! and broker errors into log lines and readiness.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    /// High watermark of each partition of the topic, from librdkafka's statistics.
    high: Mutex<BTreeMap<i32, i64>>,
}

/// The part of librdkafka's statistics JSON the feed reads.
#[derive(Debug, Default, serde::Deserialize)]
struct Stats {
    #[serde(default)]
    topics: HashMap<String, TopicStats>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct TopicStats {
    #[serde(default)]
    partitions: HashMap<String, PartitionStats>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct PartitionStats {
    #[serde(default)]
    hi_offset: i64,
}

impl FeedContext {
    /// A context for consuming `topic`.
    pub fn new(topic: &str, health: Arc<FeedHealth>) -> Self {
        Self {
            topic: topic.to_owned(),
            notes: Mutex::new(Vec::new()),
            assigned: Mutex::new(BTreeSet::new()),
            health,
            high: Mutex::new(BTreeMap::new()),
        }
    }

    /// The high watermark of `partition` in the last statistics (`statistics.interval.ms`).
    pub fn high_watermark(&self, partition: i32) -> Option<i64> {
        self.high.lock().ok()?.get(&partition).copied()
    }

    /// Records the high watermarks of a statistics report.
    fn record_stats(&self, json: &[u8]) {
        let Ok(stats) = serde_json::from_slice::<Stats>(json) else {
            return;
        };
        let Some(topic) = stats.topics.get(&self.topic) else {
            return;
        };
        if let Ok(mut high) = self.high.lock() {
            for (partition, p) in &topic.partitions {
                if let Ok(id) = partition.parse::<i32>()
                    && id >= 0
                    && p.hi_offset >= 0
                {
                    high.insert(id, p.hi_offset);
                }
            }
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

    /// The partitions assigned now.
    pub fn assigned(&self) -> Vec<i32> {
        self.assigned
            .lock()
            .map(|a| a.iter().copied().collect())
            .unwrap_or_default()
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
    fn stats_raw(&self, statistics: &[u8]) {
        self.record_stats(statistics);
    }

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
    fn high_watermarks_come_from_the_statistics_of_the_topic() {
        let context = FeedContext::new("samples", Arc::new(FeedHealth::default()));
        let json = br#"{"name": "c", "topics": {
            "samples": {"partitions": {"0": {"hi_offset": 42}, "-1": {"hi_offset": -1}, "1": {"hi_offset": -1001}}},
            "other": {"partitions": {"0": {"hi_offset": 7}}}}}"#;
        context.record_stats(json);
        assert_eq!(context.high_watermark(0), Some(42));
        assert_eq!(context.high_watermark(1), None, "unknown yet");
        assert_eq!(context.high_watermark(-1), None);
    }

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
