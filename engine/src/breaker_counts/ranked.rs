//! [`Ranked`]: one time per node, counting the nodes whose time is before a query time.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::Clock;

/// A cursor: `below` nodes have a time before `at`.
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

/// A node's time: `actual`, as last set, and `indexed`, its entry in the ordered set.
#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    indexed: Option<i64>,
    actual: Option<i64>,
}

/// The ordered set and its cursors, behind the lock.
#[derive(Debug, Default)]
struct Inner {
    /// `(indexed, node)` of every node with a time.
    set: BTreeSet<(i64, u32)>,
    slots: Vec<Slot>,
    /// One per [`Clock`].
    cursors: [Cursor; 2],
}

/// One optional time per node, counting the nodes whose time is before any query time.
///
/// The counts come from cursors that remember the count at their last query time: a query
/// walks only the entries between its cursor and the new time, O(log n + crossed).
///
/// A node's entry may lag its time: a time that moves forward from an entry at or after
/// every cursor is only noted (the common case: `fresh_until` moves forward with every
/// sample, far ahead of planning times), and the entry is moved when a cursor reaches it.
/// Invariant: a lagging entry is at or after every cursor and before the node's time, so
/// counts below any cursor stay exact, and a cursor moving forward fixes the lagging
/// entries it passes before counting them.
#[derive(Debug, Default)]
pub(crate) struct Ranked {
    /// Behind a lock (never contended: one thread drives the engine) so that queries
    /// through `&Engine` can move cursors and entries, and the engine stays `Sync`.
    inner: Mutex<Inner>,
    /// Nodes with a time.
    len: usize,
}

impl Inner {
    fn shift(&mut self, time: i64, up: bool) {
        for c in self.cursors.iter_mut().filter(|c| time < c.at) {
            if up {
                c.below += 1;
            } else {
                c.below -= 1;
            }
        }
    }

    /// Moves `node`'s entry to its actual time.
    fn reindex(&mut self, node: u32) {
        let slot = &mut self.slots[node as usize];
        let (old, new) = (slot.indexed, slot.actual);
        slot.indexed = new;
        if let Some(old) = old
            && self.set.remove(&(old, node))
        {
            self.shift(old, false);
        }
        if let Some(new) = new
            && self.set.insert((new, node))
        {
            self.shift(new, true);
        }
    }
}

impl Ranked {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Every change under the lock completes without panicking in between; a poisoned
        // lock (a panic elsewhere) still holds a consistent value.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets `node`'s time (`None`: it has none and is not counted).
    pub(crate) fn set(&mut self, node: u32, time: Option<i64>) {
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        let i = node as usize;
        if inner.slots.len() <= i {
            if time.is_none() {
                return;
            }
            inner.slots.resize(i + 1, Slot::default());
        }
        let slot = &mut inner.slots[i];
        if slot.actual == time {
            return;
        }
        match (slot.actual, time) {
            (None, Some(_)) => self.len += 1,
            (Some(_), None) => self.len -= 1,
            _ => {}
        }
        slot.actual = time;
        let ahead = |at: i64| inner.cursors.iter().all(|c| at >= c.at);
        if let (Some(indexed), Some(new)) = (slot.indexed, time)
            && new > indexed
            && ahead(indexed)
        {
            return; // the entry lags; moved when a cursor reaches it
        }
        inner.reindex(node);
    }

    /// Number of nodes with a time.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Number of nodes with a time before `t`, moving `clock`'s cursor to `t`.
    pub(crate) fn count_below(&self, t: i64, clock: Clock) -> usize {
        let mut inner = self.inner();
        let from = inner.cursors[clock as usize].at;
        if t > from {
            // Lagging entries the cursor passes move to their time first (perhaps past `t`).
            let lagging: Vec<u32> = inner
                .set
                .range((from, 0)..(t, 0))
                .filter(|(time, node)| inner.slots[*node as usize].actual != Some(*time))
                .map(|(_, node)| *node)
                .collect();
            for node in lagging {
                inner.reindex(node);
            }
            let crossed = inner.set.range((from, 0)..(t, 0)).count();
            inner.cursors[clock as usize].below += crossed;
        } else if t < from {
            // Entries before a cursor never lag.
            let crossed = inner.set.range((t, 0)..(from, 0)).count();
            inner.cursors[clock as usize].below -= crossed;
        }
        let c = &mut inner.cursors[clock as usize];
        c.at = t;
        c.below
    }

    /// Forgets every node.
    pub(crate) fn clear(&mut self) {
        *self.inner.get_mut().unwrap_or_else(PoisonError::into_inner) = Inner::default();
        self.len = 0;
    }
}
