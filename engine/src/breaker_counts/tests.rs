//! Unit tests of [`super::Ranked`] and [`super::BreakerCounts`] against naive models:
//! random inserts, removals, re-inserts of the same node and queries at non-monotone
//! times on both cursors.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::{BreakerCounts, Clock, Ranked};
use crate::cluster::NodeId;
use crate::state::NodeState;

/// Times that collide often, with the extremes (a saturated `fresh_until`).
fn time() -> impl Strategy<Value = i64> {
    prop_oneof![
        8 => -40i64..40,
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
    ]
}

fn clock() -> impl Strategy<Value = Clock> {
    prop_oneof![Just(Clock::Planning), Just(Clock::Watermark)]
}

#[derive(Clone, Debug)]
enum SetOp {
    Set(u32, Option<i64>),
    /// Moves a node's time forward by this much (an entry that may lag).
    Forward(u32, i64),
    Count(i64, Clock),
}

fn set_op() -> impl Strategy<Value = SetOp> {
    let node = prop_oneof![0u32..6, Just(17u32)];
    prop_oneof![
        2 => (node.clone(), proptest::option::of(time())).prop_map(|(n, t)| SetOp::Set(n, t)),
        2 => (node, 1i64..30).prop_map(|(n, d)| SetOp::Forward(n, d)),
        3 => (time(), clock()).prop_map(|(t, c)| SetOp::Count(t, c)),
    ]
}

/// The fields of a node's state the counts read.
#[derive(Clone, Debug)]
struct Fields {
    covered: bool,
    fresh: Option<i64>,
    armed: Option<i64>,
    pressure: Option<i64>,
    dirty: bool,
}

impl Fields {
    fn state(&self) -> NodeState {
        NodeState {
            covering: if self.covered {
                [0u16].into_iter().collect()
            } else {
                Default::default()
            },
            fresh_until: self.fresh,
            armed_until: self.armed,
            pressure_until: self.pressure,
            pressure_dirty: self.dirty,
            ..NodeState::default()
        }
    }
}

#[derive(Clone, Debug)]
enum NodeOp {
    /// The node's state changed (created when absent).
    Set(u32, Fields),
    /// The node's state was dropped.
    Drop(u32),
    Query(i64, Clock),
}

fn node_op() -> impl Strategy<Value = NodeOp> {
    let fields = (
        any::<bool>(),
        proptest::option::of(time()),
        proptest::option::of(time()),
        proptest::option::of(time()),
        any::<bool>(),
    )
        .prop_map(|(covered, fresh, armed, pressure, dirty)| Fields {
            covered,
            fresh,
            armed,
            pressure,
            dirty,
        });
    // Sparse node ids: the per-node table grows past gaps.
    let node = prop_oneof![0u32..5, Just(17u32)];
    prop_oneof![
        3 => (node.clone(), fields).prop_map(|(n, f)| NodeOp::Set(n, f)),
        1 => node.prop_map(NodeOp::Drop),
        3 => (time(), clock()).prop_map(|(t, c)| NodeOp::Query(t, c)),
    ]
}

proptest! {
    #[test]
    fn ranked_counts_what_a_scan_counts(ops in prop::collection::vec(set_op(), 1..300)) {
        let (mut ranked, mut model) = (Ranked::default(), BTreeMap::new());
        for op in ops {
            match op {
                SetOp::Set(n, t) => {
                    ranked.set(n, t);
                    match t {
                        Some(t) => model.insert(n, t),
                        None => model.remove(&n),
                    };
                }
                SetOp::Forward(n, d) => {
                    if let Some(t) = model.get_mut(&n) {
                        *t = t.saturating_add(d);
                        ranked.set(n, Some(*t));
                    }
                }
                SetOp::Count(t, clock) => {
                    let below = model.values().filter(|x| **x < t).count();
                    prop_assert_eq!(ranked.count_below(t, clock), below);
                    prop_assert_eq!(ranked.len(), model.len());
                }
            }
        }
    }

    #[test]
    fn breaker_counts_match_the_nodes_states(ops in prop::collection::vec(node_op(), 1..200)) {
        let mut counts = BreakerCounts::default();
        let mut model: BTreeMap<u32, Fields> = BTreeMap::new();
        for op in ops {
            match op {
                NodeOp::Set(n, fields) => {
                    counts.sync(NodeId(n), Some(&fields.state()));
                    model.insert(n, fields);
                }
                NodeOp::Drop(n) => {
                    counts.sync(NodeId(n), None);
                    model.remove(&n);
                }
                NodeOp::Query(t, clock) => {
                    let tracked = model.values().filter(|f| f.covered && f.fresh.is_some());
                    let stale = tracked.clone().filter(|f| f.fresh.is_some_and(|u| u < t));
                    prop_assert_eq!(
                        counts.staleness(t, clock),
                        (tracked.count(), stale.count())
                    );
                    let at_t = |u: Option<i64>| u.is_some_and(|u| u >= t);
                    let pressed = model
                        .values()
                        .filter(|f| !f.dirty && at_t(f.armed) && at_t(f.pressure));
                    prop_assert_eq!(counts.pressed(t, clock), pressed.count());
                    let maybe: BTreeSet<u32> = model
                        .iter()
                        .filter(|(_, f)| f.dirty && at_t(f.armed))
                        .map(|(n, _)| *n)
                        .collect();
                    let got: BTreeSet<u32> = counts.maybe_pressed(t).map(|n| n.0).collect();
                    prop_assert_eq!(got, maybe);
                }
            }
        }
    }
}

/// Entries that lag behind their node's time are moved when a cursor reaches them, and
/// cursors move both ways and independently.
#[test]
fn lagging_entries_are_counted_at_their_time() {
    let mut ranked = Ranked::default();
    for (n, t) in [(0, 10), (1, 20), (2, 30)] {
        ranked.set(n, Some(t));
    }
    assert_eq!(ranked.count_below(25, Clock::Planning), 2);
    // Node 1 (20 → 40) is behind the planning cursor (25) and moves at once; node 2 (30 →
    // 50) is ahead of both cursors (the watermark's is still at the start) and only lags.
    ranked.set(1, Some(40));
    ranked.set(2, Some(50));
    assert_eq!(
        ranked.count_below(45, Clock::Planning),
        2,
        "0 and 1 (at 40)"
    );
    assert_eq!(ranked.count_below(15, Clock::Planning), 1);
    assert_eq!(ranked.count_below(i64::MAX, Clock::Watermark), 3);
    // Behind a cursor: counted at once.
    ranked.set(3, Some(5));
    ranked.set(2, None);
    assert_eq!(ranked.count_below(15, Clock::Planning), 2);
    assert_eq!(ranked.count_below(i64::MAX, Clock::Watermark), 3);
    assert_eq!(ranked.count_below(i64::MIN, Clock::Watermark), 0);
    assert_eq!(ranked.len(), 3);
}
