//! Incremental counts behind the stale-feed and storm breakers (see [`crate::guards`]).
//!
//! Both breakers ask a question of every node at a planning time `t`: is it stale (its
//! `fresh_until` is before `t`), and is it under pressure (a trigger track of the node or
//! of its pods holds at `t`). Scanning every node on each planning pass of a firing node
//! is O(cluster); [`BreakerCounts`] answers both from ordered sets of per-node times kept
//! up to date at every change of a node's state ([`Engine::sync_breakers`]).
//!
//! Each set counts its entries before any time through a cursor that remembers the count
//! at its last query time: a query walks only the entries between the cursor and the new
//! time, O(log n + crossed). Planning times are near-monotone, so a node's time is crossed
//! about once per change: amortised O(log n) per query. The engine's watermark (for the
//! breaker metrics) has its own cursor, so the two do not drag one cursor back and forth.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::cluster::NodeId;
use crate::engine::Engine;
use crate::state::NodeState;

/// Which cursor a query moves: each keeps its own position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Clock {
    /// Planning passes (their evaluation time).
    Planning,
    /// The engine's watermark ([`Engine::open_breakers`]).
    Watermark,
}

/// A cursor of a [`Ranked`] set: `below` entries have a time before `at`.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    at: i64,
    below: usize,
}

impl Default for Cursor {
    fn default() -> Self {
        Self {
            at: i64::MIN,
            below: 0,
        }
    }
}

/// A set of `(time, node)` entries that counts the entries before a time.
#[derive(Debug, Default)]
pub(crate) struct Ranked {
    set: BTreeSet<(i64, u32)>,
    /// One per [`Clock`]. Behind a lock (never contended: the engine is driven by one
    /// thread) so that queries through `&Engine` can move them and the engine stays `Sync`.
    cursors: Mutex<[Cursor; 2]>,
}

impl Ranked {
    /// Adds an entry (absent before).
    pub(crate) fn insert(&mut self, time: i64, node: u32) {
        if self.set.insert((time, node)) {
            self.shift(time, |below| below + 1);
        }
    }

    /// Removes an entry, if present.
    pub(crate) fn remove(&mut self, time: i64, node: u32) {
        if self.set.remove(&(time, node)) {
            self.shift(time, |below| below - 1);
        }
    }

    fn cursors(&self) -> MutexGuard<'_, [Cursor; 2]> {
        // A cursor is two integers, never left half-written: a poisoned lock holds a
        // consistent value.
        self.cursors.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn shift(&mut self, time: i64, by: impl Fn(usize) -> usize) {
        let cursors = self
            .cursors
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for c in cursors.iter_mut().filter(|c| time < c.at) {
            c.below = by(c.below);
        }
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }

    /// Number of entries with a time before `t`, moving `clock`'s cursor to `t`.
    pub(crate) fn count_below(&self, t: i64, clock: Clock) -> usize {
        let mut cursors = self.cursors();
        let c = &mut cursors[clock as usize];
        if t > c.at {
            c.below += self.set.range((c.at, 0)..(t, 0)).count();
        } else if t < c.at {
            c.below -= self.set.range((t, 0)..(c.at, 0)).count();
        }
        c.at = t;
        c.below
    }

    /// The entries at or after `t`, earliest first.
    pub(crate) fn at_or_after(&self, t: i64) -> impl Iterator<Item = (i64, u32)> + '_ {
        self.set.range((t, 0)..).copied()
    }

    fn clear(&mut self) {
        self.set.clear();
        *self
            .cursors
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = Default::default();
    }
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
    dirty: Ranked,
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
        let id = node.0;
        for (set, old, new) in [
            (&mut self.fresh, old.fresh, new.fresh),
            (&mut self.pressure, old.pressure, new.pressure),
            (&mut self.dirty, old.dirty, new.dirty),
        ] {
            if old != new {
                if let Some(time) = old {
                    set.remove(time, id);
                }
                if let Some(time) = new {
                    set.insert(time, id);
                }
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
        self.dirty.at_or_after(t).map(|(_, node)| NodeId(node))
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
#[path = "breaker_counts_tests.rs"]
mod tests;
