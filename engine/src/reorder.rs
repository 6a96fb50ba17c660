//! The reorder buffer: samples wait here until the watermark passes them, then leave in
//! event-time order, so bounded disorder on the wire never changes what the engine sees.
//!
//! Samples leave in `(ts, node, pod, container, arrival)` order. They wait in one queue per
//! node, kept in that order (a node's samples mostly arrive in order: appending is the
//! common case); a heap holds each waiting node's earliest time, so the heap sees one
//! operation per `(ts, node)` group instead of two per sample, and dropping a node's
//! samples is clearing its queue.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

use fulcrum_policies::MetricId;
use smallvec::SmallVec;

use super::cluster::{NodeId, PodId};

#[cfg(test)]
mod tests;

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

/// A queued sample in its node's queue: its order key within the node and its slot in the
/// slab of samples. Small (40 bytes), so inserting out of order moves little.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    ts: i64,
    /// 0 for a node-level sample, the pod id + 1 otherwise (so `None` sorts first).
    pod: u64,
    container: u64,
    seq: u64,
    slot: u32,
}

fn pod_key(pod: Option<PodId>) -> u64 {
    pod.map_or(0, |p| u64::from(p.0) + 1)
}

/// Per pod id: how many of its samples wait, and the node the latest was queued on (so
/// forgetting a pod searches one node's queue, not the whole buffer).
#[derive(Clone, Copy, Debug, Default)]
struct PodQueued {
    count: u32,
    node: u32,
    /// Its waiting samples were queued on more than one node (it moved): search them all.
    spread: bool,
}

/// Pending samples, released in `(ts, node, pod, container, arrival)` order (see the
/// module documentation). The samples wait in a slab whose free slots are reused.
#[derive(Debug, Default)]
pub struct ReorderBuffer {
    /// `(earliest time, node)` of the waiting nodes. An entry whose time is no longer its
    /// node's earliest (the node's samples were taken or dropped) is skipped when met.
    heads: BinaryHeap<Reverse<(i64, NodeId)>>,
    /// Per node id: its waiting samples, in order.
    queues: Vec<VecDeque<Entry>>,
    pods: Vec<PodQueued>,
    slab: Vec<Option<Pending>>,
    free: Vec<u32>,
    len: usize,
    seq: u64,
}

impl ReorderBuffer {
    /// Queues a sample.
    pub fn push(&mut self, mut sample: Pending) {
        sample.seq = self.seq;
        self.seq += 1;
        let node = sample.node;
        if let Some(pod) = sample.pod {
            self.note_pod(pod, node);
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slab.push(None);
                u32::try_from(self.slab.len() - 1).expect("fewer than 2^32 queued samples")
            }
        };
        let entry = Entry {
            ts: sample.ts,
            pod: pod_key(sample.pod),
            container: sample.container,
            seq: sample.seq,
            slot,
        };
        self.slab[slot as usize] = Some(sample);
        if self.queues.len() <= node.index() {
            self.queues.resize_with(node.index() + 1, VecDeque::new);
        }
        let queue = &mut self.queues[node.index()];
        let head = queue.front().map(|e| e.ts);
        if queue.back().is_none_or(|last| *last <= entry) {
            queue.push_back(entry);
        } else {
            let at = queue.partition_point(|e| *e < entry);
            queue.insert(at, entry);
        }
        if head.is_none_or(|t| entry.ts < t) {
            self.heads.push(Reverse((entry.ts, node)));
        }
        self.len += 1;
    }

    fn note_pod(&mut self, pod: PodId, node: NodeId) {
        if self.pods.len() <= pod.index() {
            self.pods.resize(pod.index() + 1, PodQueued::default());
        }
        let queued = &mut self.pods[pod.index()];
        queued.spread |= queued.count > 0 && queued.node != node.0;
        queued.node = node.0;
        queued.count += 1;
    }

    /// Takes the oldest sample if its time is at or before `watermark`.
    pub fn pop_until(&mut self, watermark: i64) -> Option<Pending> {
        let (ts, node) = loop {
            let &Reverse((ts, node)) = self.heads.peek()?;
            let current = self
                .queues
                .get(node.index())
                .and_then(VecDeque::front)
                .is_some_and(|e| e.ts == ts);
            if current {
                break (ts, node);
            }
            self.heads.pop();
        };
        if ts > watermark {
            return None;
        }
        let queue = self.queues.get_mut(node.index())?;
        let entry = queue.pop_front()?;
        let next = queue.front().map(|e| e.ts);
        if next != Some(ts) {
            self.heads.pop();
            if let Some(next) = next {
                self.heads.push(Reverse((next, node)));
            }
        }
        self.len -= 1;
        if let Some(pod) = entry.pod.checked_sub(1)
            && let Some(queued) = self.pods.get_mut(pod as usize)
        {
            queued.count = queued.count.saturating_sub(1);
            queued.spread &= queued.count > 0;
        }
        self.free.push(entry.slot);
        self.slab.get_mut(entry.slot as usize)?.take()
    }

    /// Samples waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Drops waiting samples of a pod (it vanished). Returns how many.
    pub fn forget_pod(&mut self, pod: PodId) -> usize {
        let Some(queued) = self.pods.get(pod.index()).copied() else {
            return 0;
        };
        if queued.count == 0 {
            return 0;
        }
        let key = pod_key(Some(pod));
        let mut dropped = self.forget_in(NodeId(queued.node), |e| e.pod == key);
        if queued.spread {
            for node in 0..self.queues.len() as u32 {
                if node != queued.node {
                    dropped += self.forget_in(NodeId(node), |e| e.pod == key);
                }
            }
        }
        self.pods[pod.index()] = PodQueued::default();
        dropped
    }

    /// Drops waiting samples of a node and its pods (its partition went to another
    /// replica, or the node was removed). Returns how many.
    pub fn forget_node(&mut self, node: NodeId) -> usize {
        let dropped = self.forget_in(node, |_| true);
        if let Some(queue) = self.queues.get_mut(node.index()) {
            // No spare queue is kept for a node that left.
            *queue = VecDeque::new();
        }
        dropped
    }

    /// Drops the samples of `node`'s queue that `drop` selects; keeps its heap entry right.
    fn forget_in(&mut self, node: NodeId, drop: impl Fn(&Entry) -> bool) -> usize {
        let Some(queue) = self.queues.get_mut(node.index()) else {
            return 0;
        };
        let head = queue.front().map(|e| e.ts);
        let before = queue.len();
        let (slab, free, pods) = (&mut self.slab, &mut self.free, &mut self.pods);
        queue.retain(|e| {
            if !drop(e) {
                return true;
            }
            if let Some(slot) = slab.get_mut(e.slot as usize) {
                *slot = None;
            }
            free.push(e.slot);
            if let Some(queued) = e.pod.checked_sub(1).and_then(|p| pods.get_mut(p as usize)) {
                queued.count = queued.count.saturating_sub(1);
                queued.spread &= queued.count > 0;
            }
            false
        });
        let dropped = before - queue.len();
        if let Some(next) = queue.front().map(|e| e.ts)
            && head != Some(next)
        {
            self.heads.push(Reverse((next, node)));
        }
        self.len -= dropped;
        dropped
    }
}
