//! The engine: pure, event-time detection of interference, attribution to a culprit, and
//! safe planning of actions.
//!
//! Samples (with their own timestamps) and a cluster index go in; [`Event`]s (detections,
//! [`Decision`]s, recoveries) come out. No I/O, no clock, no async: replay, simulation,
//! property tests and the operator drive the same code. `docs/engine.md` explains the
//! state, the maths and the guards.
//!
//! ```text
//! offer(sample) ─► reorder buffer ─► advance(watermark) ─► apply in (ts, node, pod) order
//!                                                           └► evaluate (node, ts):
//!                                                              triggers → episode → attribution → plan
//! ```

mod attribution;
pub mod cluster;
pub mod config;
pub mod convert;
pub mod decision;
pub mod limits;
mod planner;
mod reorder;
pub mod series;
mod state;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use fulcrum_policies::spec::TriggerScope;
use fulcrum_policies::{CompiledPolicy, FieldError, InterferencePolicy, MetricRegistry};
use serde::Serialize;

pub use cluster::{ClusterIndex, ClusterUpdate, NodeId, NodeInfo, PdbInfo, PodId, PodInfo};
pub use config::EngineConfig;
pub use decision::{Decision, Event, Explanation, Outcome};

use crate::sample::Sample;
use limits::Ledger;
use reorder::{Pending, ReorderBuffer, Values};
use series::Series;
use state::{NodeState, PodState, Role, Track, Tracks, record};

/// Counters of what the engine saw and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    /// Samples offered.
    pub offered: u64,
    /// Samples applied to state.
    pub applied: u64,
    /// Samples older than the watermark when they arrived.
    pub late: u64,
    /// Samples with the same (ts, node, pod, container) as an earlier one.
    pub duplicates: u64,
    /// Samples for a node the cluster view does not know.
    pub unknown_node: u64,
    /// Samples for a pod the cluster view does not know (or another incarnation of it).
    pub unknown_pod: u64,
    /// Samples carrying no metric any policy references.
    pub irrelevant: u64,
    /// Samples too far ahead of every other sample (a broken clock would otherwise make
    /// everything else late).
    pub too_far_ahead: u64,
    /// Interference episodes started.
    pub detections: u64,
    /// Episodes ended.
    pub recoveries: u64,
    /// Decisions with outcome Executed.
    pub executed: u64,
    /// Decisions with outcome DryRun.
    pub dry_run: u64,
    /// Decisions with outcome Blocked.
    pub blocked: u64,
    /// Evaluations where a policy fired but no candidate qualified as the culprit.
    pub unattributed: u64,
}

/// What happened to an offered sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offered {
    /// Waiting for the watermark.
    Queued,
    /// Older than the watermark: dropped.
    Late,
    /// More than `max_forward_jump_ms` ahead of the newest sample so far: dropped.
    TooFarAhead,
    /// The node is not in the cluster view: dropped.
    UnknownNode,
    /// The pod is not in the cluster view, is on another node, or has another UID: dropped.
    UnknownPod,
    /// No referenced metric: dropped.
    Irrelevant,
}

/// Per-policy counters, as the policy status reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PolicyStats {
    /// Episodes detected.
    pub detections: u64,
    /// Evict decisions executed.
    pub evicted: u64,
    /// Migrate decisions executed.
    pub migrated: u64,
    /// DryRun decisions.
    pub dry_run: u64,
    /// Blocked decisions.
    pub blocked: u64,
}

pub(crate) struct PolicySlot {
    pub(crate) policy: CompiledPolicy,
    pub(crate) ledger: Ledger,
    pub(crate) stats: PolicyStats,
}

/// The engine. See the module documentation.
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) registry: MetricRegistry,
    pub(crate) policies: Vec<PolicySlot>,
    pub(crate) cluster: ClusterIndex,
    pub(crate) pods: Vec<Option<PodState>>,
    pub(crate) nodes: Vec<Option<NodeState>>,
    /// Per metric id: bit 0 = tracked on pods, bit 1 = tracked on nodes.
    tracked: Vec<u8>,
    series_span_ms: u64,
    buffer: ReorderBuffer,
    watermark: i64,
    max_ts: i64,
    last_key: Option<(i64, NodeId, Option<PodId>, u64)>,
    group: Option<(i64, NodeId)>,
    pub(crate) next_episode: u64,
    /// Targets (per policy) acted on before this engine started, restored from the audit log.
    pub(crate) acted_targets: std::collections::HashSet<(String, String)>,
    /// Decisions about evidence older than this are blocked (a feed catching up).
    pub(crate) horizon: i64,
    pub(crate) stats: EngineStats,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("policies", &self.policies.len())
            .field("nodes", &self.cluster.node_count())
            .field("pods", &self.cluster.pod_count())
            .field("watermark", &self.watermark)
            .field("buffered", &self.buffer.len())
            .field("stats", &self.stats)
            .finish()
    }
}

const POD_TRACKED: u8 = 1;
const NODE_TRACKED: u8 = 2;

impl Engine {
    /// An engine with no policies and an empty cluster view.
    pub fn new(config: EngineConfig) -> Self {
        Self {
            config,
            registry: MetricRegistry::new(),
            policies: Vec::new(),
            cluster: ClusterIndex::new(),
            pods: Vec::new(),
            nodes: Vec::new(),
            tracked: Vec::new(),
            series_span_ms: 0,
            buffer: ReorderBuffer::default(),
            watermark: i64::MIN,
            max_ts: i64::MIN,
            last_key: None,
            group: None,
            next_episode: 1,
            acted_targets: std::collections::HashSet::new(),
            horizon: i64::MIN,
            stats: EngineStats::default(),
        }
    }

    /// Replaces the policies. Invalid ones are returned with their errors and never act.
    ///
    /// Trigger and episode state is rebuilt (warm-up starts again); action ledgers of
    /// policies that keep their name are kept, so limits hold across policy edits.
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
        let mut old: BTreeMap<String, PolicySlot> = self
            .policies
            .drain(..)
            .map(|s| (s.policy.name.clone(), s))
            .collect();
        self.policies = compiled
            .into_iter()
            .map(|policy| {
                let kept = old.remove(&policy.name);
                PolicySlot {
                    ledger: kept.as_ref().map(|k| k.ledger.clone()).unwrap_or_default(),
                    stats: kept.map(|k| k.stats).unwrap_or_default(),
                    policy,
                }
            })
            .collect();
        let old_span = self.series_span_ms;
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
            self.series_span_ms = self.series_span_ms.max(spec.attribution.window_ms);
        }
        // Series rings are sized for the longest attribution window: resize by starting over.
        let resized = old_span != self.series_span_ms;
        // Indices may have moved: rebuild coverage, roles and tracks from scratch.
        for state in self.nodes.iter_mut().flatten() {
            if resized {
                state.series.clear();
            }
            state.covering.clear();
            state.episodes.clear();
            state.tracks.clear();
        }
        for state in self.pods.iter_mut().flatten() {
            if resized {
                state.series.clear();
            }
            state.roles.clear();
            state.tracks.clear();
        }
        let nodes: Vec<NodeId> = self.cluster.node_ids().collect();
        for node in nodes {
            self.refresh_node(node);
        }
        invalid
    }

    /// The compiled policies, in evaluation order (priority, then name).
    pub fn policies(&self) -> impl Iterator<Item = (&CompiledPolicy, &PolicyStats)> {
        self.policies.iter().map(|s| (&s.policy, &s.stats))
    }

    /// The cluster view.
    pub fn cluster(&self) -> &ClusterIndex {
        &self.cluster
    }

    /// The metric registry (names of metric ids).
    pub fn registry(&self) -> &MetricRegistry {
        &self.registry
    }

    /// Counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The watermark: samples at or before it have been applied.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }

    /// The newest sample time offered so far.
    pub fn max_ts(&self) -> Option<i64> {
        (self.max_ts != i64::MIN).then_some(self.max_ts)
    }

    /// Samples waiting in the reorder buffer.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Adds or updates a node.
    pub fn upsert_node(&mut self, info: NodeInfo) {
        let (id, _) = self.cluster.upsert_node(info);
        self.refresh_node(id);
    }

    /// Removes a node and frees its state.
    pub fn remove_node(&mut self, name: &str) {
        if let Some(id) = self.cluster.remove_node(name)
            && let Some(slot) = self.nodes.get_mut(id.index())
        {
            *slot = None;
        }
    }

    /// Adds or updates a pod. A new UID under the same name starts fresh state.
    pub fn upsert_pod(&mut self, info: PodInfo) {
        let (id, change) = self.cluster.upsert_pod(info);
        if change == cluster::Change::Replaced
            && let Some(slot) = self.pods.get_mut(id.index())
        {
            *slot = None;
            self.buffer.forget_pod(id);
        }
        self.refresh_pod(id);
    }

    /// Removes a pod and frees its state.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        if let Some(id) = self.cluster.remove_pod(namespace, name) {
            if let Some(slot) = self.pods.get_mut(id.index()) {
                *slot = None;
            }
            self.buffer.forget_pod(id);
        }
    }

    /// Sets a namespace's labels (namespace selectors depend on them).
    pub fn upsert_namespace(&mut self, name: &str, labels: cluster::LabelMap) {
        self.cluster.upsert_namespace(name, labels);
        let pods: Vec<PodId> = self
            .cluster
            .pod_ids()
            .filter(|p| {
                self.cluster
                    .pod_info(*p)
                    .is_some_and(|i| i.namespace == name)
            })
            .collect();
        for pod in pods {
            self.refresh_pod(pod);
        }
    }

    /// Adds or replaces a PodDisruptionBudget.
    pub fn upsert_pdb(&mut self, pdb: PdbInfo) {
        self.cluster.upsert_pdb(pdb);
    }

    /// Removes a PodDisruptionBudget.
    pub fn remove_pdb(&mut self, namespace: &str, name: &str) {
        self.cluster.remove_pdb(namespace, name);
    }

    /// Applies one change to the cluster view.
    pub fn apply(&mut self, update: cluster::ClusterUpdate) {
        use cluster::ClusterUpdate as U;
        match update {
            U::UpsertNode(node) => self.upsert_node(node),
            U::RemoveNode(name) => self.remove_node(&name),
            U::UpsertPod(pod) => self.upsert_pod(*pod),
            U::RemovePod { namespace, name } => self.remove_pod(&namespace, &name),
            U::UpsertNamespace(name, labels) => self.upsert_namespace(&name, labels),
            U::UpsertPdb(pdb) => self.upsert_pdb(pdb),
            U::RemovePdb { namespace, name } => self.remove_pdb(&namespace, &name),
        }
    }

    /// Loads a whole cluster index (replay, demo).
    pub fn load_cluster(&mut self, index: ClusterIndex) {
        self.cluster = index;
        self.pods.clear();
        self.nodes.clear();
        let nodes: Vec<NodeId> = self.cluster.node_ids().collect();
        for node in nodes {
            self.refresh_node(node);
        }
        let unbound: Vec<PodId> = self
            .cluster
            .pod_ids()
            .filter(|p| self.cluster.pod_node(*p).is_none())
            .collect();
        for pod in unbound {
            self.refresh_pod(pod);
        }
    }

    /// The actuator could not carry out an Executed decision (for example the Eviction API
    /// answered 429 because of a PodDisruptionBudget): the action no longer counts against
    /// limits and the pod may be targeted again.
    pub fn retract(&mut self, decision: &Decision) {
        if decision.outcome != Outcome::Executed {
            return;
        }
        if let Some(slot) = self
            .policies
            .iter_mut()
            .find(|s| s.policy.name == decision.policy)
            && slot.ledger.retract(&decision.target)
        {
            let counter = match decision.action {
                fulcrum_policies::spec::Action::Evict => &mut slot.stats.evicted,
                fulcrum_policies::spec::Action::Migrate => &mut slot.stats.migrated,
            };
            *counter = counter.saturating_sub(1);
            slot.stats.blocked += 1;
            self.stats.executed = self.stats.executed.saturating_sub(1);
            self.stats.blocked += 1;
        }
        if let Some(node) = self.cluster.node_id(&decision.node)
            && let Some(state) = self.nodes.get_mut(node.index()).and_then(Option::as_mut)
            && state.last_action == Some(decision.at)
        {
            state.last_action = None;
        }
        if let Some((ns, name)) = decision.target.split_once('/')
            && let Some(id) = self.cluster.pod_id(ns, name)
            && let Some(state) = self.pods.get_mut(id.index()).and_then(Option::as_mut)
        {
            state.acted = false;
        }
    }

    /// Restores an action taken before this engine started (from the audit log): it counts
    /// against limits, and its target is never acted on again by the same policy. Blocked
    /// decisions are ignored.
    pub fn restore(&mut self, decision: &Decision) {
        if decision.outcome == Outcome::Blocked {
            return;
        }
        let Some(slot) = self
            .policies
            .iter_mut()
            .find(|s| s.policy.name == decision.policy)
        else {
            return;
        };
        let (namespace, workload) = match decision.target.split_once('/') {
            Some((ns, name)) => {
                let workload = self
                    .cluster
                    .pod_id(ns, name)
                    .and_then(|id| self.cluster.pod_info(id))
                    .map_or_else(|| format!("{ns}/Pod/{name}"), |i| i.workload.clone());
                (ns.to_owned(), workload)
            }
            None => (String::new(), decision.target.clone()),
        };
        let node = self
            .cluster
            .node_id(&decision.node)
            .unwrap_or(NodeId(u32::MAX));
        slot.ledger.record(limits::ActionRecord {
            at: decision.at,
            node,
            workload,
            namespace,
            target: decision.target.clone(),
        });
        self.acted_targets
            .insert((decision.policy.clone(), decision.target.clone()));
        if let Some(state) = self.nodes.get_mut(node.index()).and_then(Option::as_mut) {
            state.last_action = Some(
                state
                    .last_action
                    .map_or(decision.at, |t| t.max(decision.at)),
            );
        }
    }

    /// Blocks decisions about evidence older than `min_at` (ms). A live feed sets it to
    /// "now minus the largest acceptable evidence age" so a backlog is never acted on.
    pub fn set_horizon(&mut self, min_at: i64) {
        self.horizon = min_at;
    }

    /// Forgets the streaming state of a node and its pods (their samples now go to another
    /// replica). The cluster view is kept; the node warms up again if it comes back.
    pub fn forget_node(&mut self, name: &str) {
        let Some(node) = self.cluster.node_id(name) else {
            return;
        };
        if let Some(state) = self.nodes.get_mut(node.index()).and_then(Option::as_mut) {
            // Coverage is cleared so refresh_node rebuilds the node-scope tracks; the last
            // action is kept so the cooldown still holds if the node comes back.
            *state = NodeState {
                last_action: state.last_action,
                ..NodeState::default()
            };
        }
        for pod in self.cluster.node_pods(node).to_vec() {
            if let Some(slot) = self.pods.get_mut(pod.index()) {
                let acted = slot.as_ref().is_some_and(|s| s.acted);
                *slot = acted.then(|| PodState {
                    acted,
                    ..PodState::default()
                });
            }
            self.buffer.forget_pod(pod);
        }
        self.refresh_node(node);
    }

    /// Offers a sample. It is applied once the watermark passes its timestamp.
    pub fn offer(&mut self, sample: &Sample<'_>) -> Offered {
        self.stats.offered += 1;
        if sample.ts_ms <= self.watermark {
            self.stats.late += 1;
            return Offered::Late;
        }
        let Some(node) = self.cluster.node_id(&sample.node) else {
            self.stats.unknown_node += 1;
            return Offered::UnknownNode;
        };
        let pod = match &sample.pod {
            None => None,
            Some(p) => {
                let known = self.cluster.pod_id(&p.namespace, &p.name).filter(|id| {
                    self.cluster.pod_node(*id) == Some(node)
                        && self.cluster.pod_info(*id).is_some_and(|info| {
                            p.uid
                                .as_deref()
                                .is_none_or(|uid| info.uid.is_empty() || info.uid == uid)
                        })
                });
                match known {
                    Some(id) => Some(id),
                    None => {
                        self.stats.unknown_pod += 1;
                        return Offered::UnknownPod;
                    }
                }
            }
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
        if self.max_ts != i64::MIN
            && sample.ts_ms
                > self
                    .max_ts
                    .saturating_add(self.config.max_forward_jump_ms as i64)
        {
            self.stats.too_far_ahead += 1;
            return Offered::TooFarAhead;
        }
        let container = sample.container.as_deref().map_or(0, |c| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            c.hash(&mut h);
            h.finish() | 1
        });
        self.max_ts = self.max_ts.max(sample.ts_ms);
        self.buffer.push(Pending {
            ts: sample.ts_ms,
            node,
            pod,
            container,
            seq: 0,
            values,
        });
        Offered::Queued
    }

    /// Advances the watermark to `max_ts - lateness` and processes what it passes.
    pub fn advance_auto(&mut self, out: &mut Vec<Event>) {
        if self.max_ts != i64::MIN {
            self.advance(self.max_ts - self.config.lateness_ms as i64, out);
        }
    }

    /// Processes every buffered sample (end of a replay). Later samples will be late.
    pub fn flush(&mut self, out: &mut Vec<Event>) {
        if self.max_ts != i64::MIN {
            self.advance(self.max_ts, out);
        }
    }

    /// Applies buffered samples with `ts <= watermark` in event-time order, evaluating each
    /// node at each of its sample times, and appends what happened to `out`.
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
            let group = (sample.ts, sample.node);
            if let Some(previous) = self.group
                && previous != group
            {
                self.evaluate(previous.1, previous.0, out);
            }
            self.group = Some(group);
            self.apply_sample(sample);
        }
        if let Some((ts, node)) = self.group.take() {
            self.evaluate(node, ts, out);
        }
        self.watermark = watermark;
    }

    fn apply_sample(&mut self, sample: Pending) {
        let stale = self.config.stale_after_ms;
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
        node_state.last_ts = Some(node_state.last_ts.map_or(sample.ts, |t| t.max(sample.ts)));
        let policies = &self.policies;
        let condition = |track: &Track| {
            policies[track.policy as usize].policy.spec.triggers[track.trigger as usize].condition
        };
        let make = || Series::new(span, width);
        match sample.pod {
            None => record(
                &mut node_state.series,
                &mut node_state.tracks,
                sample.values.iter().copied(),
                sample.ts,
                make,
                condition,
                stale,
            ),
            Some(pod) => {
                if self.cluster.pod_node(pod) != Some(sample.node) {
                    self.stats.unknown_pod += 1;
                    return;
                }
                let Some(state) = self.pods.get_mut(pod.index()).and_then(Option::as_mut) else {
                    self.stats.unknown_pod += 1;
                    return;
                };
                state.last_ts = Some(state.last_ts.map_or(sample.ts, |t| t.max(sample.ts)));
                let tracked = &self.tracked;
                let values = sample
                    .values
                    .iter()
                    .copied()
                    .filter(|(m, _)| tracked[m.index()] & POD_TRACKED != 0);
                record(
                    &mut state.series,
                    &mut state.tracks,
                    values,
                    sample.ts,
                    make,
                    condition,
                    stale,
                );
            }
        }
        self.stats.applied += 1;
    }

    /// Recomputes which policies cover a node, and the roles of its pods.
    fn refresh_node(&mut self, node: NodeId) {
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
            state.tracks = build_tracks(
                &self.policies,
                state.covering.iter().copied(),
                TriggerScope::Node,
                &mut Tracks::new(),
            );
        }
        let pods: Vec<PodId> = self.cluster.node_pods(node).to_vec();
        for pod in pods {
            self.refresh_pod(pod);
        }
    }

    /// Recomputes a pod's roles (and trigger tracks) under the policies covering its node.
    fn refresh_pod(&mut self, pod: PodId) {
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
            if spec.victims.matches(&info.labels, ns_labels) {
                roles.push((p, Role::Victim));
            } else if let Some(class) = spec
                .candidates
                .iter()
                .position(|c| c.matcher.matches(&info.labels, ns_labels))
            {
                roles.push((p, Role::Candidate(class as u16)));
            }
        }
        if self.pods.len() <= pod.index() {
            self.pods.resize_with(pod.index() + 1, || None);
        }
        let state = self.pods[pod.index()].get_or_insert_with(PodState::default);
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

#[cfg(test)]
mod tests;
