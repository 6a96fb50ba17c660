//! When samples were consumed, for `fulcrum_decision_latency_seconds`: per node, the wall
//! clock at which samples of each event time were first received. A decision at event
//! time `t` on a node is then measured from the consumption of the node's first sample
//! at or after `t` (the sample that let the engine see the trigger hold) to the moment the
//! decision reaches the actuator. Bounded: a few hundred entries per node, older ones
//! dropped as the watermark passes them. Keyed by the node's id in the cluster view (only
//! known nodes are noted), so noting a sample hashes no string.

use std::collections::{HashMap, VecDeque};

use fulcrum_engine::NodeId;

/// Entries kept per node at most.
const PER_NODE: usize = 256;
/// Entries this far (event time) behind the watermark are dropped.
const KEEP_BEHIND_MS: i64 = 10 * 60 * 1000;

/// Consumption times of samples, by node.
#[derive(Debug, Default)]
pub struct Consumed {
    nodes: HashMap<NodeId, VecDeque<(i64, i64)>, foldhash::fast::FixedState>,
}

impl Consumed {
    /// Notes that a sample of `node` at event time `ts` was consumed at wall clock `now`.
    /// Only the first sample of each event time counts, and only newer times are kept.
    pub fn note(&mut self, node: NodeId, ts: i64, now: i64) {
        let entries = self.nodes.entry(node).or_default();
        if entries.back().is_some_and(|(last, _)| *last >= ts) {
            return;
        }
        if entries.len() >= PER_NODE {
            entries.pop_front();
        }
        entries.push_back((ts, now));
    }

    /// When the first sample of `node` at or after event time `at` was consumed.
    pub fn consumed_at(&self, node: NodeId, at: i64) -> Option<i64> {
        self.nodes
            .get(&node)?
            .iter()
            .find(|(ts, _)| *ts >= at)
            .map(|(_, wall)| *wall)
    }

    /// Drops entries far behind `watermark`, and nodes left without entries.
    pub fn prune(&mut self, watermark: i64) {
        let floor = watermark.saturating_sub(KEEP_BEHIND_MS);
        self.nodes.retain(|_, entries| {
            while entries.front().is_some_and(|(ts, _)| *ts < floor) {
                entries.pop_front();
            }
            !entries.is_empty()
        });
    }

    /// Forgets a node (its partition was revoked).
    pub fn forget(&mut self, node: NodeId) {
        self.nodes.remove(&node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_is_timed_from_the_first_sample_at_or_after_its_event_time() {
        let mut cluster = fulcrum_engine::ClusterIndex::new();
        let mut id = |name: &str| {
            let info = fulcrum_engine::NodeInfo {
                name: name.to_owned(),
                ..Default::default()
            };
            cluster.upsert_node(info).0
        };
        let (n1, n2) = (id("n1"), id("n2"));
        let mut c = Consumed::default();
        c.note(n1, 1_000, 50);
        c.note(n1, 1_000, 60); // the same event time again: the first one counts
        c.note(n1, 3_000, 70);
        c.note(n1, 2_000, 80); // late: older than the newest, not kept
        assert_eq!(c.consumed_at(n1, 1_000), Some(50));
        assert_eq!(c.consumed_at(n1, 1_500), Some(70));
        assert_eq!(c.consumed_at(n1, 3_001), None);
        assert_eq!(c.consumed_at(n2, 0), None);
        c.prune(3_000 + KEEP_BEHIND_MS);
        assert_eq!(c.consumed_at(n1, 0), Some(70));
        c.prune(4_000 + KEEP_BEHIND_MS);
        assert_eq!(c.consumed_at(n1, 0), None);
    }
}
