//! Samples in, state updated: the reorder buffer, the watermark, and applying samples to
//! the per-pod and per-node series and trigger tracks in event-time order.

use std::hash::BuildHasher;

use crate::cluster::NodeId;
use crate::decision::Event;
use crate::engine::{Engine, NODE_TRACKED, POD_TRACKED};
use crate::reorder::{Pending, Values};
use crate::sample::Sample;
use crate::series::Series;
use crate::state::{Track, holding_until, record, wanted};

/// What happened to an offered sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offered {
    /// Waiting for the watermark.
    Queued,
    /// Older than the watermark: dropped.
    Late,
    /// More than `max_forward_jump_ms` ahead of the newest queued sample (or the engine's
    /// first sample): held until another sample confirms the jump (see [`crate::jump`]).
    Held,
    /// The node is not in the cluster view: dropped.
    UnknownNode,
    /// The pod is not in the cluster view, is on another node, or has another UID: dropped.
    UnknownPod,
    /// No referenced metric: dropped.
    Irrelevant,
}

impl Engine {
    /// Offers a sample. It is applied once the watermark passes its timestamp. (Offering
    /// many samples of one node: [`Engine::offer_each`] or [`Engine::offer_on`] look the
    /// node up once.)
    pub fn offer(&mut self, sample: &Sample<'_>) -> Offered {
        let node = self.cluster.node_id(&sample.node);
        self.offer_resolved(node, sample)
    }

    /// Offers a sample whose node is `node`, resolved from `sample.node` against the
    /// current cluster view (`None`: unknown).
    pub(crate) fn offer_resolved(&mut self, node: Option<NodeId>, sample: &Sample<'_>) -> Offered {
        self.stats.offered += 1;
        if sample.ts_ms <= self.watermark {
            self.stats.late += 1;
            return Offered::Late;
        }
        let Some(node) = node else {
            self.stats.unknown_node += 1;
            return Offered::UnknownNode;
        };
        let pod = match &sample.pod {
            None => None,
            Some(p) => match self.resolve_pod(node, p) {
                Some(id) => Some(id),
                None => {
                    self.stats.unknown_pod += 1;
                    return Offered::UnknownPod;
                }
            },
        };
        let want = if pod.is_some() {
            POD_TRACKED
        } else {
            NODE_TRACKED
        };
        let mut values = Values::new();
        for m in &sample.metrics {
            if let Some(id) = self.registry.get(&m.name)
                && self.tracked.get(id.index()).is_some_and(|t| t & want != 0)
            {
                values.push((id, m.value));
            }
        }
        if values.is_empty() {
            self.stats.irrelevant += 1;
            return Offered::Irrelevant;
        }
        // A fixed-seed hash (the same in every run: replays stay deterministic), not SipHash.
        let container = sample
            .container
            .as_deref()
            .map_or(0, |c| foldhash::fast::FixedState::default().hash_one(c) | 1);
        self.queue_or_hold(Pending {
            ts: sample.ts_ms,
            node,
            pod,
            container,
            seq: 0,
            values,
        })
    }
    /// Advances the watermark to `max_ts - lateness` and processes what it passes.
    pub fn advance_auto(&mut self, out: &mut Vec<Event>) {
        if self.max_ts != i64::MIN {
            self.advance(self.max_ts - self.config.lateness_ms as i64, out);
        }
    }
    /// Processes every buffered sample (end of a replay). Later samples will be late.
    pub fn flush(&mut self, out: &mut Vec<Event>) {
        self.drop_held();
        if self.max_ts != i64::MIN {
            self.advance(self.max_ts, out);
        }
        // Windows still open (due after the newest sample) are complete too.
        self.evaluate_due(|_, _| true, out);
    }
    /// Applies buffered samples with `ts <= watermark` in event-time order, evaluating each
    /// node once per evaluation window (see [`crate::window`]), and appends what happened
    /// to `out`.
    pub fn advance(&mut self, watermark: i64, out: &mut Vec<Event>) {
        if watermark <= self.watermark {
            return;
        }
        while let Some(sample) = self.buffer.pop_until(watermark) {
            let key = sample.key();
            if self.last_key == Some(key) {
                self.stats.duplicates += 1;
                continue;
            }
            self.last_key = Some(key);
            // Windows that event-time order has passed are complete.
            let at = (sample.ts, sample.node);
            self.evaluate_due(|due, node| (due, node) < at, out);
            self.windows
                .note(sample.node, sample.ts, self.config.evaluation_window_ms);
            let node = sample.node;
            self.apply_sample(sample);
            self.sync_breakers(node);
        }
        self.evaluate_due(|due, _| due <= watermark, out);
        if watermark / 3_600_000 != self.watermark / 3_600_000 {
            self.prune_restored(watermark);
        }
        self.watermark = watermark;
    }
    /// Evaluates the open windows that `is_due` says are due, in `(due, node)` order.
    fn evaluate_due(&mut self, is_due: impl Fn(i64, NodeId) -> bool, out: &mut Vec<Event>) {
        while let Some((node, t)) = self.windows.pop_due(&is_due) {
            self.evaluate(node, t, out);
        }
    }
    fn apply_sample(&mut self, sample: Pending) {
        let stale = self.config.staleness();
        let span = self.series_span_ms;
        let width = self.config.bucket_ms;
        let Some(node_state) = self
            .nodes
            .get_mut(sample.node.index())
            .and_then(Option::as_mut)
        else {
            self.stats.unknown_node += 1;
            return;
        };
        if node_state.last_ts.is_none_or(|last| sample.ts > last) {
            // Only a newer sample moves the node's cadence and last time.
            node_state.cadence.observe(node_state.last_ts, sample.ts);
            node_state.last_ts = Some(sample.ts);
            node_state.fresh_until = Some(
                sample
                    .ts
                    .saturating_add(node_state.cadence.stale_after(stale)),
            );
        }
        let policies = &self.policies;
        let condition = |track: &Track| {
            policies[track.policy as usize].policy.spec.triggers[track.trigger as usize].condition
        };
        let make = || Series::new(span, width);
        let (before, after) = match sample.pod {
            None => {
                let before = holding_until(&node_state.tracks, stale);
                record(
                    &mut node_state.series,
                    &mut node_state.tracks,
                    sample.values.iter().copied(),
                    sample.ts,
                    make,
                    condition,
                    stale,
                );
                (before, holding_until(&node_state.tracks, stale))
            }
            Some(pod) => {
                if self.cluster.pod_node(pod) != Some(sample.node) {
                    self.stats.unknown_pod += 1;
                    return;
                }
                let Some(state) = self.pods.get_mut(pod.index()).and_then(Option::as_mut) else {
                    self.stats.unknown_pod += 1;
                    return;
                };
                state.cadence.observe(state.last_ts, sample.ts);
                state.last_ts = Some(state.last_ts.map_or(sample.ts, |t| t.max(sample.ts)));
                let tracked = &self.tracked;
                let skip = state.skip;
                let values = sample
                    .values
                    .iter()
                    .copied()
                    .filter(|(m, _)| tracked[m.index()] & POD_TRACKED != 0 && wanted(skip, *m));
                let before = holding_until(&state.tracks, stale);
                record(
                    &mut state.series,
                    &mut state.tracks,
                    values,
                    sample.ts,
                    make,
                    condition,
                    stale,
                );
                (before, holding_until(&state.tracks, stale))
            }
        };
        node_state.arm(after);
        node_state.note_pressure(before, after);
        if node_state.pressure_dirty {
            self.refresh_pressure(sample.node);
        }
        self.stats.applied += 1;
    }
}
