//! The policy set: compiling and ordering policies, which policies cover each node, the
//! role each pod plays under them (victim or candidate class), and the trigger tracks
//! those roles need.

use std::collections::BTreeMap;

use fulcrum_policies::spec::{Mode, TriggerScope};
use fulcrum_policies::{CompiledPolicy, FieldError, InterferencePolicy};

use crate::cluster::{self, NodeId, PodId};
use crate::engine::{Engine, NODE_TRACKED, POD_TRACKED, PolicySlot};
use crate::limits::Ledger;
use crate::state::{NodeState, PodState, Role, Track, Tracks};

impl Engine {
    /// Replaces the policies. Invalid ones are returned with their errors and never act.
    ///
    /// Trigger and episode state of policies whose compiled spec did not change is kept
    /// (editing one policy does not reset the others); a changed policy starts warming up
    /// again. Action ledgers of policies that keep their name are kept, so limits hold
    /// across policy edits.
    pub fn set_policies(
        &mut self,
        policies: &[InterferencePolicy],
    ) -> Vec<(String, Vec<FieldError>)> {
        let mut invalid = Vec::new();
        let mut compiled = Vec::new();
        for p in policies {
            match CompiledPolicy::compile(p, &mut self.registry) {
                Ok(c) => compiled.push(c),
                Err(errors) => invalid.push((p.metadata.name.clone().unwrap_or_default(), errors)),
            }
        }
        compiled.sort_by(|a, b| {
            b.spec
                .priority
                .cmp(&a.spec.priority)
                .then_with(|| a.name.cmp(&b.name))
        });
        let old: Vec<PolicySlot> = self.policies.drain(..).collect();
        // Old index → new index, for policies whose compiled spec did not change: their
        // trigger tracks and episodes are kept.
        let mut remap: Vec<Option<u16>> = vec![None; old.len()];
        let mut old_by_name: BTreeMap<String, (usize, PolicySlot)> = old
            .into_iter()
            .enumerate()
            .map(|(i, s)| (s.policy.name.clone(), (i, s)))
            .collect();
        self.policies = compiled
            .into_iter()
            .enumerate()
            .map(|(new_index, policy)| {
                let kept = old_by_name.remove(&policy.name);
                if let Some((old_index, k)) = &kept
                    && k.policy.spec == policy.spec
                {
                    remap[*old_index] = Some(new_index as u16);
                }
                let kept = kept.map(|(_, k)| k);
                let (ledger, enforce_ledger) = carry_ledgers(kept.as_ref(), policy.spec.mode);
                if policy.spec.mode == Mode::Enforce {
                    self.dry_acted_targets.retain(|(p, _), _| *p != policy.name);
                }
                PolicySlot {
                    ledger,
                    enforce_ledger,
                    stats: kept.map(|k| k.stats).unwrap_or_default(),
                    policy,
                }
            })
            .collect();
        let old_span = self.series_span_ms;
        self.rebuild_tracked();
        // Series rings are sized for the longest attribution window: resize by starting over.
        let resized = old_span != self.series_span_ms;
        self.remap_state(&remap, resized);
        let nodes: Vec<NodeId> = self.cluster.node_ids().collect();
        for node in nodes {
            self.refresh_node(node);
        }
        invalid
    }
    /// Which metrics are tracked on pods and nodes, and the longest attribution window.
    fn rebuild_tracked(&mut self) {
        self.tracked = vec![0; self.registry.len()];
        self.series_span_ms = 0;
        for slot in &self.policies {
            let spec = &slot.policy.spec;
            for m in &spec.attribution.metrics {
                self.tracked[m.index()] |= POD_TRACKED;
            }
            for t in &spec.triggers {
                self.tracked[t.metric.index()] |= match t.scope {
                    TriggerScope::Victim => POD_TRACKED,
                    TriggerScope::Node => NODE_TRACKED,
                };
            }
            // Twice the window: the onset comparison needs a window before the onset.
            self.series_span_ms = self.series_span_ms.max(2 * spec.attribution.window_ms);
        }
    }
    /// Moves per-policy state to the new policy indices: tracks, episodes, coverage and
    /// roles of unchanged policies are kept, those of changed or removed policies dropped.
    fn remap_state(&mut self, remap: &[Option<u16>], resized: bool) {
        let map = |p: u16| remap.get(p as usize).copied().flatten();
        self.streaks = std::mem::take(&mut self.streaks)
            .into_iter()
            .filter_map(|((p, node), streak)| map(p).map(|p| ((p, node), streak)))
            .collect();
        self.onset_memo = std::mem::take(&mut self.onset_memo)
            .into_iter()
            .filter_map(|((p, node, at), steps)| map(p).map(|p| ((p, node, at), steps)))
            .collect();
        for state in self.nodes.iter_mut().flatten() {
            if resized {
                state.series.clear();
            }
            state.covering = state.covering.iter().filter_map(|&p| map(p)).collect();
            state.episodes.retain(|e| map(e.policy).is_some());
            for e in &mut state.episodes {
                e.policy = map(e.policy).unwrap_or(e.policy);
            }
            remap_tracks(&mut state.tracks, map);
            state.pressure_dirty = true;
        }
        self.sync_all_breakers();
        for state in self.pods.iter_mut().flatten() {
            if resized {
                state.series.clear();
            }
            state.roles = state
                .roles
                .iter()
                .filter_map(|&(p, role)| map(p).map(|p| (p, role)))
                .collect();
            remap_tracks(&mut state.tracks, map);
        }
    }
    /// Recomputes which policies cover a node, and the roles of its pods.
    pub(crate) fn refresh_node(&mut self, node: NodeId) {
        let Some(info) = self.cluster.node_info(node) else {
            return;
        };
        let covering: smallvec::SmallVec<[u16; 4]> = self
            .policies
            .iter()
            .enumerate()
            .filter(|(_, s)| s.policy.spec.nodes.matches(&info.labels))
            .map(|(i, _)| i as u16)
            .collect();
        if self.nodes.len() <= node.index() {
            self.nodes.resize_with(node.index() + 1, || None);
        }
        let state = self.nodes[node.index()].get_or_insert_with(NodeState::default);
        if state.covering != covering {
            state.covering = covering;
            state
                .episodes
                .retain(|e| state.covering.contains(&e.policy));
            let mut existing = std::mem::take(&mut state.tracks);
            state.tracks = build_tracks(
                &self.policies,
                state.covering.iter().copied(),
                TriggerScope::Node,
                &mut existing,
            );
        }
        let until = crate::state::holding_until(&state.tracks, self.config.staleness());
        state.arm(until);
        state.pressure_dirty = true;
        self.sync_breakers(node);
        let pods: Vec<PodId> = self.cluster.node_pods(node).to_vec();
        for pod in pods {
            self.refresh_pod(pod);
        }
    }
    /// Recomputes a pod's roles (and trigger tracks) under the policies covering its node.
    pub(crate) fn refresh_pod(&mut self, pod: PodId) {
        let Some(info) = self.cluster.pod_info(pod) else {
            return;
        };
        let empty = cluster::LabelMap::new();
        let ns_labels = self
            .cluster
            .namespace_labels(&info.namespace)
            .unwrap_or(&empty);
        let covering = self
            .cluster
            .pod_node(pod)
            .and_then(|n| self.nodes.get(n.index()))
            .and_then(Option::as_ref)
            .map(|n| n.covering.clone())
            .unwrap_or_default();
        let mut roles = smallvec::SmallVec::<[(u16, Role); 4]>::new();
        for &p in &covering {
            let spec = &self.policies[p as usize].policy.spec;
            if spec.victims.matches(&*info.labels, ns_labels) {
                roles.push((p, Role::Victim));
            } else if let Some(class) = spec
                .candidates
                .iter()
                .position(|c| c.matcher.matches(&*info.labels, ns_labels))
            {
                roles.push((p, Role::Candidate(class as u16)));
            }
        }
        if self.pods.len() <= pod.index() {
            self.pods.resize_with(pod.index() + 1, || None);
        }
        let skip = self.pod_skip(&covering, &roles);
        let state = self.pods[pod.index()].get_or_insert_with(PodState::default);
        if state.skip != skip {
            state.skip = skip;
            state.series.retain(|(m, _)| crate::state::wanted(skip, *m));
        }
        if state.roles != roles {
            let victim_of = roles
                .iter()
                .filter(|(_, role)| *role == Role::Victim)
                .map(|(p, _)| *p);
            state.tracks = build_tracks(
                &self.policies,
                victim_of,
                TriggerScope::Victim,
                &mut state.tracks,
            );
            state.roles = roles;
        }
        // A pod that moved here may bring a track that holds.
        let until = crate::state::holding_until(&state.tracks, self.config.staleness());
        let Some(node) = self.cluster.pod_node(pod) else {
            return;
        };
        if let Some(state) = self.nodes.get_mut(node.index()).and_then(Option::as_mut) {
            state.arm(until);
            state.pressure_dirty = true;
        }
        self.sync_breakers(node);
    }
}

impl Engine {
    /// The [`PodState::skip`] mask of a pod on a node covered by `covering` with `roles`:
    /// the metrics tracked on pods that nothing reads of this pod (see [`crate::state::wanted`]).
    fn pod_skip(&self, covering: &[u16], roles: &[(u16, Role)]) -> u64 {
        let mut wanted = 0u64;
        let mut want = |m: fulcrum_policies::MetricId| {
            if m.index() < 64 {
                wanted |= 1 << m.index();
            }
        };
        for (p, slot) in self.policies.iter().enumerate() {
            let spec = &slot.policy.spec;
            let covers = covering.contains(&(p as u16));
            for &m in &spec.attribution.metrics {
                if covers || !crate::attribution::is_ratio(self.registry.name(m)) {
                    want(m);
                }
            }
            if roles.contains(&(p as u16, Role::Victim)) {
                for t in spec
                    .triggers
                    .iter()
                    .filter(|t| t.scope == TriggerScope::Victim)
                {
                    want(t.metric);
                }
            }
        }
        let mut skip = 0u64;
        for (i, &t) in self.tracked.iter().enumerate().take(64) {
            if t & POD_TRACKED != 0 && wanted & (1 << i) == 0 {
                skip |= 1 << i;
            }
        }
        skip
    }
}

/// Trigger tracks of `policies` evaluated at `scope`, keeping the learned state of any
/// track in `existing` for the same (policy, trigger).
fn build_tracks(
    slots: &[PolicySlot],
    policies: impl Iterator<Item = u16>,
    scope: TriggerScope,
    existing: &mut Tracks,
) -> Tracks {
    let mut tracks = Tracks::new();
    for p in policies {
        let triggers = &slots[p as usize].policy.spec.triggers;
        for (ti, t) in triggers
            .iter()
            .enumerate()
            .filter(|(_, t)| t.scope == scope)
        {
            let kept = existing
                .iter()
                .position(|k| k.policy == p && k.trigger == ti as u16)
                .map(|i| existing.swap_remove(i));
            tracks.push(kept.unwrap_or_else(|| Track::new(p, ti as u16, t)));
        }
    }
    tracks
}

/// Keeps the tracks of unchanged policies (under their new index) and drops the others.
fn remap_tracks(tracks: &mut Tracks, map: impl Fn(u16) -> Option<u16>) {
    tracks.retain(|t| map(t.policy).is_some());
    for t in tracks.iter_mut() {
        t.policy = map(t.policy).unwrap_or(t.policy);
    }
}

/// The ledgers of a policy entering `mode` (the one limits are checked against, and the
/// Enforce ledger kept aside while in DryRun). Entering DryRun copies the Enforce ledger,
/// so a dry run sees the real actions; leaving it drops what the dry run recorded.
fn carry_ledgers(kept: Option<&PolicySlot>, mode: Mode) -> (Ledger, Option<Ledger>) {
    let Some(kept) = kept else {
        return match mode {
            Mode::Enforce => (Ledger::default(), None),
            Mode::DryRun => (Ledger::default(), Some(Ledger::default())),
        };
    };
    match (kept.enforce_ledger.as_ref(), mode) {
        // Was Enforce.
        (None, Mode::Enforce) => (kept.ledger.clone(), None),
        (None, Mode::DryRun) => (kept.ledger.clone(), Some(kept.ledger.clone())),
        // Was DryRun.
        (Some(real), Mode::Enforce) => (real.clone(), None),
        (Some(real), Mode::DryRun) => (kept.ledger.clone(), Some(real.clone())),
    }
}
