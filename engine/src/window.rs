//! Evaluation windows: a node is evaluated once per window of event time, not once per
//! distinct timestamp of its samples.
//!
//! The first sample of a node applied while it has no open window opens one at its time
//! `ts0`, due at `ts0 + evaluation_window_ms`. Further samples of the node up to the due
//! time only move the window's latest time. The window is evaluated (at that latest time)
//! as soon as event-time order passes its due time: before the first sample of any node
//! that comes after `(due, node)` in `(ts, node)` order is applied, or when the watermark
//! reaches the due time. Windows are anchored at their first sample, not extended by later
//! ones, so a node that samples more often than the window is still evaluated once per
//! window (at most the window plus one sampling interval apart). With a window of 0 every
//! `(ts, node)` group is its own window: a node is evaluated at each of its sample times.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::cluster::NodeId;

/// A node's open window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Open {
    /// When it is due: its first sample's time plus the window.
    due: i64,
    /// Its latest sample time: the time the node is evaluated at.
    latest: i64,
}

/// The open windows, ordered by due time (then node) so the due ones are found without
/// scanning every node.
#[derive(Debug, Default)]
pub(crate) struct Windows {
    due: BinaryHeap<Reverse<(i64, NodeId)>>,
    /// Per node id.
    open: Vec<Option<Open>>,
}

impl Windows {
    /// Notes a sample of `node` at `ts` about to be applied; opens a window of `width` ms
    /// when the node has none.
    pub(crate) fn note(&mut self, node: NodeId, ts: i64, width: u64) {
        let i = node.index();
        if self.open.len() <= i {
            self.open.resize(i + 1, None);
        }
        match &mut self.open[i] {
            Some(open) => open.latest = open.latest.max(ts),
            slot @ None => {
                let due = ts.saturating_add(i64::try_from(width).unwrap_or(i64::MAX));
                *slot = Some(Open { due, latest: ts });
                self.due.push(Reverse((due, node)));
            }
        }
    }

    /// Takes the open window that comes first in `(due, node)` order when `is_due` says it
    /// is due, and returns its node and the time to evaluate it at.
    pub(crate) fn pop_due(
        &mut self,
        is_due: impl Fn(i64, NodeId) -> bool,
    ) -> Option<(NodeId, i64)> {
        loop {
            let &Reverse((due, node)) = self.due.peek()?;
            if !is_due(due, node) {
                return None;
            }
            self.due.pop();
            // A window dropped with its node leaves a stale key behind: skip it.
            match self.open.get_mut(node.index()) {
                Some(slot) if slot.is_some_and(|o| o.due == due) => {
                    let open = slot.take()?;
                    return Some((node, open.latest));
                }
                _ => continue,
            }
        }
    }

    /// Drops `node`'s open window without evaluating it (the node left this engine).
    pub(crate) fn forget(&mut self, node: NodeId) {
        if let Some(slot) = self.open.get_mut(node.index()) {
            *slot = None;
        }
    }

    /// Open windows.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.open.iter().flatten().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_come_due_in_order_and_evaluate_at_their_latest_time() {
        let mut w = Windows::default();
        let (a, b) = (NodeId(0), NodeId(1));
        w.note(b, 1_000, 2_000);
        w.note(a, 1_500, 2_000);
        w.note(b, 2_900, 2_000);
        w.note(b, 3_000, 2_000); // due time itself: still in b's window
        assert_eq!(w.len(), 2);
        assert_eq!(w.pop_due(|due, _| due < 3_000), None);
        assert_eq!(w.pop_due(|due, _| due <= 3_000), Some((b, 3_000)));
        assert_eq!(w.pop_due(|due, _| due <= 3_000), None);
        assert_eq!(w.pop_due(|_, _| true), Some((a, 1_500)));
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn a_forgotten_window_is_never_due_and_a_new_one_opens() {
        let mut w = Windows::default();
        let a = NodeId(3);
        w.note(a, 1_000, 2_000);
        w.forget(a);
        assert_eq!(w.pop_due(|_, _| true), None);
        w.note(a, 1_200, 2_000);
        assert_eq!(w.pop_due(|_, _| true), Some((a, 1_200)));
    }
}
