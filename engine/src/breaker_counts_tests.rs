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
    Insert(i64, u32),
    Remove(i64, u32),
    Count(i64, Clock),
}

fn set_op() -> impl Strategy<Value = SetOp> {
    prop_oneof![
        (time(), 0u32..6).prop_map(|(t, n)| SetOp::Insert(t, n)),
        (time(), 0u32..6).prop_map(|(t, n)| SetOp::Remove(t, n)),
        (time(), clock()).prop_map(|(t, c)| SetOp::Count(t, c)),
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
    fn ranked_counts_what_a_scan_counts(ops in prop::collection::vec(set_op(), 1..200)) {
        let (mut ranked, mut model) = (Ranked::default(), BTreeSet::new());
        for op in ops {
            match op {
                SetOp::Insert(t, n) => {
                    ranked.insert(t, n);
                    model.insert((t, n));
                }
                SetOp::Remove(t, n) => {
                    ranked.remove(t, n);
                    model.remove(&(t, n));
                }
                SetOp::Count(t, clock) => {
                    let below = model.iter().filter(|(x, _)| *x < t).count();
                    prop_assert_eq!(ranked.count_below(t, clock), below);
                    prop_assert_eq!(ranked.len(), model.len());
                    let after: Vec<_> = model.iter().filter(|(x, _)| *x >= t).copied().collect();
                    prop_assert_eq!(ranked.at_or_after(t).collect::<Vec<_>>(), after);
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

/// Control for the models above: a cursor that did not move back would be caught (the
/// same count asked at a later, then an earlier time).
#[test]
fn a_cursor_moves_both_ways() {
    let mut ranked = Ranked::default();
    for (t, n) in [(10, 0), (20, 1), (30, 2)] {
        ranked.insert(t, n);
    }
    assert_eq!(ranked.count_below(25, Clock::Planning), 2);
    assert_eq!(ranked.count_below(15, Clock::Planning), 1);
    // The other cursor is independent, and entries inserted behind a cursor count.
    assert_eq!(ranked.count_below(i64::MAX, Clock::Watermark), 3);
    ranked.insert(5, 3);
    ranked.remove(30, 2);
    assert_eq!(ranked.count_below(15, Clock::Planning), 2);
    assert_eq!(ranked.count_below(i64::MAX, Clock::Watermark), 3);
    assert_eq!(ranked.count_below(i64::MIN, Clock::Watermark), 0);
}
