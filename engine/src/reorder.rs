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

/// Where a queued sample sits in the heap: its order key and its slot in the slab of values.
/// Small (40 bytes), so sifting moves little; the values stay put.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    ts: i64,
    node: NodeId,
    /// 0 for a node-level sample, the pod id + 1 otherwise (so `None` sorts first).
    pod: u64,
    container: u64,
    seq: u64,
    slot: u32,
}

fn pod_key(pod: Option<PodId>) -> u64 {
    pod.map_or(0, |p| u64::from(p.0) + 1)
}

/// Min-heap of pending samples ordered by (ts, node, pod, container, arrival). The heap
/// holds small keys; the samples wait in a slab whose free slots are reused.
#[derive(Debug, Default)]
pub struct ReorderBuffer {
    heap: BinaryHeap<Reverse<Entry>>,
    slab: Vec<Option<Pending>>,
    free: Vec<u32>,
    seq: u64,
}

impl ReorderBuffer {
    /// Queues a sample.
    pub fn push(&mut self, mut sample: Pending) {
        sample.seq = self.seq;
        self.seq += 1;
        let entry = |slot: u32| Entry {
            ts: sample.ts,
            node: sample.node,
            pod: pod_key(sample.pod),
            container: sample.container,
            seq: sample.seq,
            slot,
        };
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slab.push(None);
                u32::try_from(self.slab.len() - 1).expect("fewer than 2^32 queued samples")
            }
        };
        self.heap.push(Reverse(entry(slot)));
        self.slab[slot as usize] = Some(sample);
    }

    /// Takes the oldest sample if its time is at or before `watermark`.
    pub fn pop_until(&mut self, watermark: i64) -> Option<Pending> {
        if self.heap.peek().is_some_and(|Reverse(e)| e.ts <= watermark) {
            let Reverse(entry) = self.heap.pop()?;
            self.free.push(entry.slot);
            self.slab.get_mut(entry.slot as usize)?.take()
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
        let key = pod_key(Some(pod));
        self.forget(|e| e.pod == key)
    }

    /// Drops waiting samples of a node and its pods (its partition went to another
    /// replica, or the node was removed). Returns how many.
    pub fn forget_node(&mut self, node: NodeId) -> usize {
        self.forget(|e| e.node == node)
    }

    fn forget(&mut self, drop: impl Fn(&Entry) -> bool) -> usize {
        let before = self.heap.len();
        let (slab, free) = (&mut self.slab, &mut self.free);
        self.heap.retain(|Reverse(e)| {
            if drop(e) {
                if let Some(slot) = slab.get_mut(e.slot as usize) {
                    *slot = None;
                }
                free.push(e.slot);
                false
            } else {
                true
            }
        });
        before - self.heap.len()
    }
}
