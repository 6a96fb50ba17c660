//! The reorder buffer: samples wait here until the watermark passes them, then leave in
//! event-time order, so bounded disorder on the wire never changes what the engine sees.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use fulcrum_policies::MetricId;
use smallvec::SmallVec;

use super::cluster::{NodeId, PodId};

/// Metric values kept from a sample: only the metrics some policy references.
pub type Values = SmallVec<[(MetricId, f64); 8]>;

/// A sample reduced to what the engine keeps.
#[derive(Clone, Debug)]
pub struct Pending {
    /// Event time.
    pub ts: i64,
    /// Node.
    pub node: NodeId,
    /// Pod, or `None` for a node-level sample.
    pub pod: Option<PodId>,
    /// Hash of the container name (0 when absent), to tell containers apart.
    pub container: u64,
    /// Arrival order, to keep the first of duplicates.
    pub seq: u64,
    /// Values of referenced metrics.
    pub values: Values,
}

impl Pending {
    /// The identity that duplicates share.
    pub fn key(&self) -> (i64, NodeId, Option<PodId>, u64) {
        (self.ts, self.node, self.pod, self.container)
    }

    fn order(&self) -> (i64, NodeId, Option<PodId>, u64, u64) {
        (self.ts, self.node, self.pod, self.container, self.seq)
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.order() == other.order()
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order().cmp(&other.order())
    }
}

/// Min-heap of pending samples ordered by (ts, node, pod, container, arrival).
#[derive(Debug, Default)]
pub struct ReorderBuffer {
    heap: BinaryHeap<Reverse<Pending>>,
    seq: u64,
}

impl ReorderBuffer {
    /// Queues a sample.
    pub fn push(&mut self, mut sample: Pending) {
        sample.seq = self.seq;
        self.seq += 1;
        self.heap.push(Reverse(sample));
    }

    /// Takes the oldest sample if its time is at or before `watermark`.
    pub fn pop_until(&mut self, watermark: i64) -> Option<Pending> {
        if self.heap.peek().is_some_and(|Reverse(p)| p.ts <= watermark) {
            self.heap.pop().map(|Reverse(p)| p)
        } else {
            None
        }
    }

    /// Samples waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drops waiting samples of a pod (it vanished). Returns how many.
    pub fn forget_pod(&mut self, pod: PodId) -> usize {
        let before = self.heap.len();
        self.heap.retain(|Reverse(p)| p.pod != Some(pod));
        before - self.heap.len()
    }

    /// Drops waiting samples of a node and its pods (its partition went to another
    /// replica, or the node was removed). Returns how many.
    pub fn forget_node(&mut self, node: NodeId) -> usize {
        let before = self.heap.len();
        self.heap.retain(|Reverse(p)| p.node != node);
        before - self.heap.len()
    }
}
