//! Incremental counts behind the stale-feed and storm breakers (see [`crate::guards`]).
//!
//! Both breakers ask a question of every node at a planning time `t`: is it stale (its
//! `fresh_until` is before `t`), and is it under pressure (a trigger track of the node or
//! of its pods holds at `t`). Scanning every node on each planning pass of a firing node
//! is O(cluster); [`BreakerCounts`] answers both from ordered sets of per-node times kept
//! up to date at every change of a node's state ([`Engine::sync_breakers`]).
//!
//! Each set ([`Ranked`]) counts its nodes before any time through a cursor that remembers
//! the count at its last query time: a query walks only the entries between the cursor
//! and the new time, O(log n + crossed). Planning times are near-monotone, so a node's
//! time is crossed about once per change: amortised O(log n) per query. The engine's
//! watermark (for the breaker metrics) has its own cursor, so the two do not drag one
//! cursor back and forth. A node's time that moves forward ahead of the cursors (a sample
//! moving `fresh_until` on) costs a comparison; its entry moves when a cursor reaches it.

use std::collections::BTreeSet;

use crate::cluster::NodeId;
use crate::engine::Engine;
use crate::state::NodeState;

mod ranked;
use ranked::Ranked;

/// Which cursor a query moves: each keeps its own position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Clock {
    /// Planning passes (their evaluation time).
    Planning,
    /// The engine's watermark ([`Engine::open_breakers`]).
    Watermark,
}

/// What a node contributes to the counts (see [`BreakerCounts`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Keys {
    /// `fresh_until` of a tracked node (covered by a policy, has reported).
    fresh: Option<i64>,
    /// The last time the node is under pressure, when its cached pressure is exact:
    /// `min(armed_until, pressure_until)`.
    pressure: Option<i64>,
    /// `armed_until` of a node whose cached pressure is dirty (it may be under pressure
    /// until then; only a scan of its tracks tells).
    dirty: Option<i64>,
}

impl Keys {
    fn of(state: Option<&NodeState>) -> Self {
        let Some(s) = state else {
            return Self::default();
        };
        let fresh = s.fresh_until.filter(|_| !s.covering.is_empty());
        let (pressure, dirty) = if s.pressure_dirty {
            (None, s.armed_until)
        } else {
            (s.armed_until.min(s.pressure_until), None)
        };
        Self {
            fresh,
            pressure,
            dirty,
        }
    }
}

/// Per-node times the breakers count, kept exactly in step with the nodes' state:
///
/// - `fresh`: `fresh_until` of each tracked node (covered by a policy and reported):
///   `tracked` is their number and `stale at t` those before `t`;
/// - `pressure`: for each node whose cached pressure is exact, the last time it is under
///   pressure (`min(armed_until, pressure_until)`; a node without a holding track has
///   none): under pressure at `t` are those at or after `t`;
/// - `dirty`: `armed_until` of each node whose cached pressure must be recomputed. Only
///   those armed at `t` can be under pressure; the breaker scans their tracks. A node is
///   dirty from a change of its pods or policies until its next sample, so at `t` these
///   are few: nodes changed within about a sample period that also had a holding track.
#[derive(Debug, Default)]
pub(crate) struct BreakerCounts {
    keys: Vec<Keys>,
    fresh: Ranked,
    pressure: Ranked,
    /// `(armed_until, node)` of the dirty armed nodes.
    dirty: BTreeSet<(i64, u32)>,
}

impl BreakerCounts {
    /// Brings `node`'s entries in line with `state` (`None`: the node has no state).
    pub(crate) fn sync(&mut self, node: NodeId, state: Option<&NodeState>) {
        let i = node.index();
        let new = Keys::of(state);
        if self.keys.len() <= i {
            if new == Keys::default() {
                return;
            }
            self.keys.resize(i + 1, Keys::default());
        }
        let old = std::mem::replace(&mut self.keys[i], new);
        if old == new {
            return;
        }
        let id = node.0;
        self.fresh.set(id, new.fresh);
        self.pressure.set(id, new.pressure);
        if old.dirty != new.dirty {
            if let Some(time) = old.dirty {
                self.dirty.remove(&(time, id));
            }
            if let Some(time) = new.dirty {
                self.dirty.insert((time, id));
            }
        }
    }

    /// Forgets every node.
    pub(crate) fn clear(&mut self) {
        self.keys.clear();
        self.fresh.clear();
        self.pressure.clear();
        self.dirty.clear();
    }

    /// (tracked nodes, those of them stale at `t`): a tracked node is stale when
    /// `t > fresh_until`.
    pub(crate) fn staleness(&self, t: i64, clock: Clock) -> (usize, usize) {
        (self.fresh.len(), self.fresh.count_below(t, clock))
    }

    /// Nodes with exact cached pressure that are under pressure at `t`.
    pub(crate) fn pressed(&self, t: i64, clock: Clock) -> usize {
        self.pressure.len() - self.pressure.count_below(t, clock)
    }

    /// Nodes with dirty cached pressure that may be under pressure at `t`.
    pub(crate) fn maybe_pressed(&self, t: i64) -> impl Iterator<Item = NodeId> + '_ {
        self.dirty.range((t, 0)..).map(|(_, node)| NodeId(*node))
    }
}

impl Engine {
    /// Brings the breaker counts in line with `node`'s state: called after anything that
    /// changes its `fresh_until`, `covering`, `armed_until`, `pressure_until` or
    /// `pressure_dirty`, or creates or drops its state.
    pub(crate) fn sync_breakers(&mut self, node: NodeId) {
        let state = self.nodes.get(node.index()).and_then(Option::as_ref);
        self.breaker_counts.sync(node, state);
    }

    /// [`Engine::sync_breakers`] for every node (after changes to all of them).
    pub(crate) fn sync_all_breakers(&mut self) {
        self.breaker_counts.clear();
        for (i, state) in self.nodes.iter().enumerate() {
            let node = NodeId(u32::try_from(i).expect("fewer than 2^32 nodes"));
            self.breaker_counts.sync(node, state.as_ref());
        }
    }
}

#[cfg(test)]
mod tests;
