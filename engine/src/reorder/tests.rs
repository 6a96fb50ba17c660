//! The per-node reorder buffer against the single binary heap it replaced: the same
//! samples leave in the same order, and forgetting drops the same ones.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use proptest::prelude::*;

use super::*;

/// The reference: every pending sample in one min-heap ordered by
/// `(ts, node, pod, container, arrival)` (the buffer before issue 13's per-node queues).
#[derive(Default)]
struct Reference {
    heap: BinaryHeap<Reverse<Pending>>,
    seq: u64,
}

impl Reference {
    fn push(&mut self, mut sample: Pending) {
        sample.seq = self.seq;
        self.seq += 1;
        self.heap.push(Reverse(sample));
    }

    fn pop_until(&mut self, watermark: i64) -> Option<Pending> {
        if self.heap.peek().is_some_and(|Reverse(p)| p.ts <= watermark) {
            self.heap.pop().map(|Reverse(p)| p)
        } else {
            None
        }
    }

    fn forget(&mut self, drop: impl Fn(&Pending) -> bool) -> usize {
        let before = self.heap.len();
        self.heap.retain(|Reverse(p)| !drop(p));
        before - self.heap.len()
    }
}

fn pending(ts: i64, node: u32, pod: Option<u32>, container: u64, value: f64) -> Pending {
    Pending {
        ts,
        node: NodeId(node),
        pod: pod.map(PodId),
        container,
        seq: 0,
        values: Values::from_slice(&[(fulcrum_policies::MetricRegistry::new().intern("m"), value)]),
    }
}

/// What a released sample is, arrival order and value included (they tell duplicates apart).
fn seen(p: &Pending) -> (i64, NodeId, Option<PodId>, u64, u64, Values) {
    (p.ts, p.node, p.pod, p.container, p.seq, p.values.clone())
}

#[derive(Clone, Debug)]
enum Op {
    Push {
        ts: i64,
        node: u32,
        pod: Option<u32>,
        container: u64,
    },
    Release(i64),
    ForgetPod(u32),
    ForgetNode(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0i64..40, 0u32..5, proptest::option::of(0u32..8), 0u64..3)
            .prop_map(|(ts, node, pod, container)| Op::Push { ts, node, pod, container }),
        2 => (0i64..45).prop_map(Op::Release),
        1 => (0u32..8).prop_map(Op::ForgetPod),
        1 => (0u32..5).prop_map(Op::ForgetNode),
    ]
}

/// Drains both up to `watermark` and checks they released the same samples.
fn release(buffer: &mut ReorderBuffer, reference: &mut Reference, watermark: i64) {
    loop {
        let (got, want) = (buffer.pop_until(watermark), reference.pop_until(watermark));
        assert_eq!(got.as_ref().map(seen), want.as_ref().map(seen));
        if got.is_none() {
            break;
        }
    }
}

proptest! {
    /// Out of order, duplicates, pods on several nodes, forgetting between releases: the
    /// release order, the counts dropped and the length are the reference heap's.
    #[test]
    fn releases_in_the_reference_heaps_order(ops in proptest::collection::vec(op(), 1..300)) {
        let mut buffer = ReorderBuffer::default();
        let mut reference = Reference::default();
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                Op::Push { ts, node, pod, container } => {
                    buffer.push(pending(ts, node, pod, container, i as f64));
                    reference.push(pending(ts, node, pod, container, i as f64));
                }
                Op::Release(watermark) => release(&mut buffer, &mut reference, watermark),
                Op::ForgetPod(pod) => {
                    let want = reference.forget(|p| p.pod == Some(PodId(pod)));
                    prop_assert_eq!(buffer.forget_pod(PodId(pod)), want);
                }
                Op::ForgetNode(node) => {
                    let want = reference.forget(|p| p.node == NodeId(node));
                    prop_assert_eq!(buffer.forget_node(NodeId(node)), want);
                }
            }
            prop_assert_eq!(buffer.len(), reference.heap.len());
        }
        release(&mut buffer, &mut reference, i64::MAX);
        prop_assert_eq!(buffer.len(), 0);
    }
}

#[test]
fn a_node_message_out_of_time_order_leaves_in_time_then_pod_order() {
    let mut buffer = ReorderBuffer::default();
    // One node's message whose pod samples carry slightly different times, then an
    // earlier sample of another node.
    for (ts, pod) in [(30, 2), (10, 1), (20, 0), (10, 0)] {
        buffer.push(pending(ts, 1, Some(pod), 0, 0.0));
    }
    buffer.push(pending(10, 0, None, 0, 0.0));
    let mut order = Vec::new();
    while let Some(p) = buffer.pop_until(25) {
        order.push((p.ts, p.node.0, p.pod.map(|p| p.0)));
    }
    assert_eq!(
        order,
        [
            (10, 0, None),
            (10, 1, Some(0)),
            (10, 1, Some(1)),
            (20, 1, Some(0))
        ]
    );
    assert_eq!(buffer.len(), 1, "the sample after the watermark waits");
}

#[test]
fn forgetting_a_pod_that_moved_drops_its_samples_on_every_node() {
    let mut buffer = ReorderBuffer::default();
    buffer.push(pending(10, 0, Some(7), 0, 0.0));
    buffer.push(pending(11, 1, Some(7), 0, 0.0));
    buffer.push(pending(12, 1, Some(3), 0, 0.0));
    assert_eq!(buffer.forget_pod(PodId(7)), 2);
    // Control: the other pod's sample stays, and nothing is left of the forgotten one.
    assert_eq!(buffer.forget_pod(PodId(7)), 0);
    assert_eq!(buffer.len(), 1);
    assert_eq!(
        buffer.pop_until(i64::MAX).map(|p| p.pod),
        Some(Some(PodId(3)))
    );
}
