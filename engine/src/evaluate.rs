//! Evaluation of a node at a point in event time: which policies fire, and episode
//! bookkeeping (detection, hysteresis, recovery). Planning is in [`crate::planner`].

use smallvec::SmallVec;

use crate::cluster::{NodeId, PodId};
use crate::decision::Event;
use crate::engine::Engine;
use crate::series::Baseline;
use crate::state::{Episode, Role, Track};

/// A trigger that holds on a node for a policy.
#[derive(Clone, Debug)]
pub(crate) struct Firing {
    pub(crate) trigger: u16,
    pub(crate) victim: Option<PodId>,
    pub(crate) since: i64,
    pub(crate) value: f64,
    pub(crate) threshold: f64,
    pub(crate) baseline: Option<Baseline>,
}

impl Engine {
    /// Evaluates `node` at event time `t`: fires triggers, opens and closes episodes, plans.
    pub(crate) fn evaluate(&mut self, node: NodeId, t: i64, out: &mut Vec<Event>) {
        debug_assert!(
            self.nodes
                .get(node.index())
                .and_then(Option::as_ref)
                .is_none_or(|n| !n.idle_at(t) || !self.under_pressure(node, t)),
            "a node skipped as idle has a trigger track that holds"
        );
        let Some(covering) = self
            .nodes
            .get(node.index())
            .and_then(Option::as_ref)
            .filter(|n| !n.idle_at(t))
            .map(|n| n.covering.clone())
        else {
            return;
        };
        self.stats.evaluations += 1;
        let firings: SmallVec<[(u16, Firings); 4]> = covering
            .iter()
            .map(|&p| (p, self.firing(p, node, t)))
            .collect();
        let mut open: SmallVec<[(u16, u64, Firing); 2]> = SmallVec::new();
        for (p, f) in firings {
            if f.fired.is_none()
                && let Some(pending) = &f.pending
            {
                // The run-up of a sustained trigger: attribution must be stable across it.
                self.observe(p, node, t, pending);
            }
            if let Some((episode, firing)) =
                self.update_episode(node, p, f.fired, f.holding, t, out)
            {
                open.push((p, episode, firing));
            }
        }
        for (p, episode, firing) in open {
            if self.plan(p, node, t, episode, &firing, out) {
                break; // one action per node at a time
            }
        }
    }

    /// Moves policy `p`'s episode on `node` along: opens one when a trigger fires, keeps it
    /// open while a condition holds, and closes it after `clearFor` of quiet. Returns the
    /// open episode and its firing trigger when there is something to plan.
    fn update_episode(
        &mut self,
        node: NodeId,
        p: u16,
        firing: Option<Firing>,
        holding: bool,
        t: i64,
        out: &mut Vec<Event>,
    ) -> Option<(u64, Firing)> {
        let state = self.nodes.get_mut(node.index()).and_then(Option::as_mut)?;
        let existing = state.episodes.iter().position(|e| e.policy == p);
        match (firing, existing) {
            (Some(f), None) => Some((self.open_episode(node, p, &f, t, out), f)),
            (Some(f), Some(i)) => {
                state.episodes[i].clear_since = None;
                Some((state.episodes[i].id, f))
            }
            // A condition still holds (not yet sustained again): not clear.
            (None, Some(i)) if holding => {
                state.episodes[i].clear_since = None;
                None
            }
            (None, Some(i)) => {
                self.close_episode_when_clear(node, p, i, t, out);
                None
            }
            (None, None) => None,
        }
    }

    /// Opens an episode of policy `p` on `node` and reports the detection. Returns its id.
    fn open_episode(
        &mut self,
        node: NodeId,
        p: u16,
        firing: &Firing,
        t: i64,
        out: &mut Vec<Event>,
    ) -> u64 {
        let id = self.next_episode;
        self.next_episode += 1;
        if let Some(state) = self.nodes.get_mut(node.index()).and_then(Option::as_mut) {
            state.episodes.push(Episode {
                policy: p,
                id,
                started: t,
                clear_since: None,
                reported: SmallVec::new(),
                acted: false,
            });
        }
        self.stats.detections += 1;
        let node_name = self.node_name(node);
        let victim = firing
            .victim
            .and_then(|v| self.cluster.pod_info(v))
            .map(|i| i.key());
        let slot = &mut self.policies[p as usize];
        slot.stats.detections += 1;
        out.push(Event::Detected {
            at: t,
            policy: slot.policy.name.clone(),
            node: node_name,
            trigger: slot.policy.spec.triggers[firing.trigger as usize]
                .name
                .clone(),
            victim,
            episode: id,
        });
        id
    }

    /// Starts (or continues) the quiet period of episode `i` on `node`, and closes it with
    /// a recovery once the policy's `clearFor` has passed.
    fn close_episode_when_clear(
        &mut self,
        node: NodeId,
        p: u16,
        i: usize,
        t: i64,
        out: &mut Vec<Event>,
    ) {
        let clear_for = self.policies[p as usize].policy.spec.clear_for_ms as i64;
        let Some(state) = self.nodes.get_mut(node.index()).and_then(Option::as_mut) else {
            return;
        };
        let since = *state.episodes[i].clear_since.get_or_insert(t);
        if t - since < clear_for {
            return;
        }
        let episode = state.episodes.remove(i);
        self.streaks.remove(&(p, node));
        self.breaker_reported.remove(&(p, node));
        self.onset_memo.retain(|k, _| (k.0, k.1) != (p, node));
        self.stats.recoveries += 1;
        out.push(Event::Recovered {
            at: t,
            policy: self.policies[p as usize].policy.name.clone(),
            node: self.node_name(node),
            episode: episode.id,
            lasted_ms: t - episode.started,
        });
    }

    pub(crate) fn node_name(&self, node: NodeId) -> String {
        self.cluster
            .node_info(node)
            .map(|n| n.name.clone())
            .unwrap_or_default()
    }

    /// The trigger of policy `p` that fires on `node` at `t` (earliest run first), the one
    /// that holds without being sustained yet, and whether any of its trigger conditions
    /// holds at all (sustained or not).
    fn firing(&self, p: u16, node: NodeId, t: i64) -> Firings {
        let spec = &self.policies[p as usize].policy.spec;
        let stale = self.config.staleness();
        let mut best: Option<Firing> = None;
        let mut pending: Option<Firing> = None;
        let mut holding = false;
        let mut consider = |track: &Track, victim: Option<PodId>| {
            if track.policy != p || !track.holding(t, stale) {
                return;
            }
            holding = true;
            let trigger = &spec.triggers[track.trigger as usize];
            let slot = if track.fired(t, trigger.sustained_for_ms, stale) {
                &mut best
            } else {
                &mut pending
            };
            let since = track.since.unwrap_or(t);
            if slot
                .as_ref()
                .is_none_or(|b| (since, track.trigger) < (b.since, b.trigger))
            {
                *slot = Some(Firing {
                    trigger: track.trigger,
                    victim,
                    since,
                    value: track.last_value,
                    threshold: track.threshold,
                    baseline: track.baseline,
                });
            }
        };
        let Some(node_state) = self.nodes.get(node.index()).and_then(Option::as_ref) else {
            return Firings::default();
        };
        for track in &node_state.tracks {
            consider(track, None);
        }
        for &pod in self.cluster.node_pods(node) {
            let Some(state) = self.pods.get(pod.index()).and_then(Option::as_ref) else {
                continue;
            };
            if state.role(p) == Some(Role::Victim) {
                for track in &state.tracks {
                    consider(track, Some(pod));
                }
            }
        }
        Firings {
            fired: best,
            pending,
            holding,
        }
    }
}

/// What holds for one policy on a node at one evaluation.
#[derive(Default)]
struct Firings {
    /// The trigger that fires (held for its `sustainedFor`), earliest run first.
    fired: Option<Firing>,
    /// A trigger whose condition holds but is not sustained yet, earliest run first.
    pending: Option<Firing>,
    /// Some trigger condition holds, sustained or not.
    holding: bool,
}
