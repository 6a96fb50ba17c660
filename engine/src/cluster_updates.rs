//! Changes to the engine's cluster view: nodes, pods, namespaces and PodDisruptionBudgets
//! coming and going, and the streaming state that goes with them.

use crate::cluster::{self, ClusterIndex, NodeId, NodeInfo, PdbInfo, PodId, PodInfo};
use crate::engine::Engine;
use crate::state::{NodeState, PodState};

impl Engine {
    /// Adds or updates a node.
    pub fn upsert_node(&mut self, info: NodeInfo) {
        let (id, _) = self.cluster.upsert_node(info);
        self.refresh_node(id);
    }
    /// Removes a node and frees its state.
    pub fn remove_node(&mut self, name: &str) {
        if let Some(id) = self.cluster.remove_node(name) {
            if let Some(slot) = self.nodes.get_mut(id.index()) {
                *slot = None;
            }
            self.sync_breakers(id);
            self.usage_cache.clear();
            if let Some(seen) = self.node_seen.get_mut(id.index()) {
                *seen = i64::MIN;
            }
            self.forget_queued(id);
        }
    }
    /// Drops the samples of `node` (and its pods) still in the reorder buffer or held.
    fn forget_queued(&mut self, node: NodeId) {
        let held = self.held.len();
        self.held.retain(|p| p.node != node);
        let dropped = self.buffer.forget_node(node) + (held - self.held.len());
        self.stats.forgotten += dropped as u64;
        self.windows.forget(node);
    }
    /// Adds or updates a pod. A new UID under the same name starts fresh state.
    pub fn upsert_pod(&mut self, info: PodInfo) {
        // The node it leaves may have counted its trigger tracks.
        let left = self
            .cluster
            .pod_id(&info.namespace, &info.name)
            .and_then(|id| self.cluster.pod_node(id));
        self.pressure_changed(left);
        let (id, change) = self.cluster.upsert_pod(info);
        if change == cluster::Change::Replaced
            && let Some(slot) = self.pods.get_mut(id.index())
        {
            *slot = None;
            self.stats.forgotten += self.buffer.forget_pod(id) as u64;
        }
        self.refresh_pod(id);
    }
    /// Removes a pod and frees its state.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        let left = self
            .cluster
            .pod_id(namespace, name)
            .and_then(|id| self.cluster.pod_node(id));
        self.pressure_changed(left);
        if let Some(id) = self.cluster.remove_pod(namespace, name) {
            if let Some(slot) = self.pods.get_mut(id.index()) {
                *slot = None;
            }
            self.stats.forgotten += self.buffer.forget_pod(id) as u64;
        }
    }
    /// Marks `node`'s cached trigger pressure for recomputation (its pods changed).
    fn pressure_changed(&mut self, node: Option<NodeId>) {
        let Some(node) = node else {
            return;
        };
        if let Some(state) = self.nodes.get_mut(node.index()).and_then(Option::as_mut) {
            state.pressure_dirty = true;
        }
        self.sync_breakers(node);
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
        // A fresh status counts the disruptions decided so far.
        self.pdb_spent
            .remove(&(pdb.namespace.clone(), pdb.name.clone()));
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
        self.breaker_counts.clear();
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
                last_dry_action: state.last_dry_action,
                ..NodeState::default()
            };
        }
        for pod in self.cluster.node_pods(node).to_vec() {
            if let Some(slot) = self.pods.get_mut(pod.index()) {
                let (acted, dry_acted) = slot
                    .as_ref()
                    .map_or((false, false), |s| (s.acted, s.dry_acted));
                *slot = (acted || dry_acted).then(|| PodState {
                    acted,
                    dry_acted,
                    ..PodState::default()
                });
            }
        }
        // Node-level samples and those of pods that left the node go too.
        self.forget_queued(node);
        self.refresh_node(node);
    }
}
