//! The engine's view of the cluster: nodes, pods, namespaces and PodDisruptionBudgets,
//! indexed for the sample hot path (name lookups without allocation, dense ids).
//!
//! The index is fed by whatever watches the cluster: `kube` reflectors in the operator,
//! a `kubectl get -o yaml` list in replay, the simulator in the demo. Conversion from
//! Kubernetes objects lives in the `fulcrum` crate (`cluster::convert`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

pub use crate::intern::IStr;
use crate::intern::Interner;

/// Labels as Kubernetes stores them.
pub type LabelMap = BTreeMap<String, String>;

/// A pod's label map, shared by the pods that have the same labels.
pub type Labels = Arc<LabelMap>;

/// A hash map with a fast seeded hasher (foldhash) for lookups on the per-sample path.
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Dense id of a node in the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) u32);

/// Dense id of a pod in the index (reused after the pod is removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodId(pub(crate) u32);

impl NodeId {
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

impl PodId {
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

pub use crate::resources::Resources;

pub use crate::cluster_info::{NodeInfo, Owner, PdbInfo, PodInfo, Taint, Toleration};

#[derive(Clone, Debug)]
pub(crate) struct NodeEntry {
    pub(crate) info: NodeInfo,
    /// Pods bound to this node, in insertion order.
    pub(crate) pods: Vec<PodId>,
    /// The requests of the live (neither terminating nor finished) pods in `pods`, kept as
    /// pods are attached and detached (integer sums: equal to summing them afresh).
    pub(crate) requested: Resources,
}

#[derive(Clone, Debug)]
pub(crate) struct PodEntry {
    pub(crate) info: PodInfo,
    pub(crate) node: Option<NodeId>,
}

/// The cluster index. Names are looked up by `&str` without allocating.
#[derive(Clone, Debug, Default)]
pub struct ClusterIndex {
    nodes: Vec<Option<NodeEntry>>,
    node_ids: FastMap<String, NodeId>,
    pods: Vec<Option<PodEntry>>,
    free_pods: Vec<PodId>,
    free_nodes: Vec<NodeId>,
    pod_ids: FastMap<IStr, FastMap<IStr, PodId>>,
    namespaces: FastMap<String, LabelMap>,
    pdbs: Vec<PdbInfo>,
    shared: Interner,
}

/// A change to the cluster view, as a watch (reflector, simulator) reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterUpdate {
    /// A node appeared or changed.
    UpsertNode(NodeInfo),
    /// A node is gone.
    RemoveNode(String),
    /// A pod appeared or changed.
    UpsertPod(Box<PodInfo>),
    /// A pod is gone.
    RemovePod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// A namespace's labels.
    UpsertNamespace(String, LabelMap),
    /// A PodDisruptionBudget appeared or changed.
    UpsertPdb(PdbInfo),
    /// A PodDisruptionBudget is gone.
    RemovePdb {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
}

/// What changed when an object was upserted, so the engine knows what to recompute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// A new object.
    Added,
    /// An existing object changed.
    Updated,
    /// A pod's UID changed: a new incarnation under the same name.
    Replaced,
}

impl ClusterIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or updates a node.
    pub fn upsert_node(&mut self, info: NodeInfo) -> (NodeId, Change) {
        if let Some(&id) = self.node_ids.get(&info.name)
            && let Some(entry) = self.nodes[id.index()].as_mut()
        {
            entry.info = info;
            return (id, Change::Updated);
        }
        // Slots of removed nodes are reused, so churn does not grow the index.
        let entry = Some(NodeEntry {
            info,
            pods: Vec::new(),
            requested: Resources::default(),
        });
        let id = match self.free_nodes.pop() {
            Some(id) => {
                self.nodes[id.index()] = entry;
                id
            }
            None => {
                self.nodes.push(entry);
                NodeId(u32::try_from(self.nodes.len() - 1).expect("fewer than 2^32 nodes"))
            }
        };
        if let Some(name) = self.node_info(id).map(|n| n.name.clone()) {
            self.node_ids.insert(name, id);
        }
        // Pods that arrived before their node are attached now.
        let name = self
            .node_info(id)
            .map(|n| n.name.clone())
            .unwrap_or_default();
        let waiting: Vec<PodId> = self
            .pods
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let p = p.as_ref()?;
                (p.node.is_none() && p.info.node_name.as_deref() == Some(name.as_str()))
                    .then_some(PodId(i as u32))
            })
            .collect();
        for pod in waiting {
            self.attach(pod, id);
        }
        (id, Change::Added)
    }

    /// Removes a node (its pods stay indexed but unbound until they are removed too).
    pub fn remove_node(&mut self, name: &str) -> Option<NodeId> {
        let id = self.node_ids.remove(name)?;
        if let Some(entry) = self.nodes[id.index()].take() {
            for pod in entry.pods {
                if let Some(p) = self.pods[pod.index()].as_mut() {
                    p.node = None;
                }
            }
        }
        self.free_nodes.push(id);
        Some(id)
    }

    /// Adds or updates a pod.
    pub fn upsert_pod(&mut self, mut info: PodInfo) -> (PodId, Change) {
        self.share(&mut info);
        if let Some(id) = self.pod_id(&info.namespace, &info.name) {
            let old_uid = self.pods[id.index()]
                .as_ref()
                .map(|p| p.info.uid.clone())
                .unwrap_or_default();
            self.detach(id);
            let change = if old_uid != info.uid && !old_uid.is_empty() && !info.uid.is_empty() {
                Change::Replaced
            } else {
                Change::Updated
            };
            let node = info.node_name.as_deref().and_then(|n| self.node_id(n));
            self.pods[id.index()] = Some(PodEntry { info, node: None });
            self.shared.release();
            if let Some(node) = node {
                self.attach(id, node);
            }
            return (id, change);
        }
        let id = match self.free_pods.pop() {
            Some(id) => id,
            None => {
                self.pods.push(None);
                PodId(u32::try_from(self.pods.len() - 1).expect("fewer than 2^32 pods"))
            }
        };
        self.pod_ids
            .entry(info.namespace.clone())
            .or_default()
            .insert(info.name.clone(), id);
        let node = info.node_name.as_deref().and_then(|n| self.node_id(n));
        self.pods[id.index()] = Some(PodEntry { info, node: None });
        if let Some(node) = node {
            self.attach(id, node);
        }
        (id, Change::Added)
    }

    /// Points the pod's repeated strings, labels and tolerations at the index's shared
    /// copies.
    fn share(&mut self, info: &mut PodInfo) {
        let shared = &mut self.shared;
        info.namespace = shared.str(&info.namespace);
        info.workload = shared.str(&info.workload);
        if let Some(node) = &info.node_name {
            info.node_name = Some(shared.str(node));
        }
        if let Some(owner) = &mut info.owner {
            owner.kind = shared.str(&owner.kind);
            owner.name = shared.str(&owner.name);
        }
        info.labels = shared.labels(&info.labels);
        info.node_selector = shared.labels(&info.node_selector);
        info.tolerations = shared.tolerations(&info.tolerations);
    }

    /// Removes a pod; its id may be reused by a later pod.
    pub fn remove_pod(&mut self, namespace: &str, name: &str) -> Option<PodId> {
        let names = self.pod_ids.get_mut(namespace)?;
        let id = names.remove(name)?;
        if names.is_empty() {
            self.pod_ids.remove(namespace);
        }
        self.detach(id);
        self.pods[id.index()] = None;
        self.free_pods.push(id);
        self.shared.release();
        Some(id)
    }

    /// Number of distinct strings, label maps and toleration lists the pods share (copies
    /// no pod uses any more are freed from time to time: see [`crate::intern`]).
    pub fn shared_values(&self) -> usize {
        self.shared.len()
    }

    /// Frees the shared copies no pod uses any more now (otherwise this happens as pods
    /// are removed).
    pub fn sweep_shared(&mut self) {
        self.shared.sweep();
    }

    /// Sets a namespace's labels.
    pub fn upsert_namespace(&mut self, name: &str, labels: LabelMap) {
        self.namespaces.insert(name.to_owned(), labels);
    }

    /// Adds or replaces a PodDisruptionBudget.
    pub fn upsert_pdb(&mut self, pdb: PdbInfo) {
        self.pdbs
            .retain(|p| !(p.namespace == pdb.namespace && p.name == pdb.name));
        self.pdbs.push(pdb);
    }

    /// Removes a PodDisruptionBudget.
    pub fn remove_pdb(&mut self, namespace: &str, name: &str) {
        self.pdbs
            .retain(|p| !(p.namespace == namespace && p.name == name));
    }

    /// The id of the node called `name`.
    #[inline]
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.node_ids.get(name).copied()
    }

    /// The id of pod `namespace/name`.
    #[inline]
    pub fn pod_id(&self, namespace: &str, name: &str) -> Option<PodId> {
        self.pod_ids.get(namespace)?.get(name).copied()
    }

    /// A node's information.
    pub fn node_info(&self, id: NodeId) -> Option<&NodeInfo> {
        self.nodes.get(id.index())?.as_ref().map(|e| &e.info)
    }

    /// A pod's information.
    pub fn pod_info(&self, id: PodId) -> Option<&PodInfo> {
        self.pods.get(id.index())?.as_ref().map(|e| &e.info)
    }

    /// The node a pod is bound to.
    pub fn pod_node(&self, id: PodId) -> Option<NodeId> {
        self.pods.get(id.index())?.as_ref()?.node
    }

    /// Pods bound to a node.
    pub fn node_pods(&self, id: NodeId) -> &[PodId] {
        self.nodes
            .get(id.index())
            .and_then(|e| e.as_ref())
            .map_or(&[], |e| e.pods.as_slice())
    }

    /// Every node id, in id order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_some())
            .map(|(i, _)| NodeId(i as u32))
    }

    /// Every pod id, in id order.
    pub fn pod_ids(&self) -> impl Iterator<Item = PodId> + '_ {
        self.pods
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_some())
            .map(|(i, _)| PodId(i as u32))
    }

    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.node_ids.len()
    }

    /// Number of pods.
    pub fn pod_count(&self) -> usize {
        self.pods.len() - self.free_pods.len()
    }

    /// A namespace's labels (empty when unknown).
    pub fn namespace_labels(&self, namespace: &str) -> Option<&LabelMap> {
        self.namespaces.get(namespace)
    }

    /// The PodDisruptionBudgets covering a pod.
    pub fn pdbs_for<'a>(&'a self, pod: &'a PodInfo) -> impl Iterator<Item = &'a PdbInfo> + 'a {
        self.pdbs
            .iter()
            .filter(move |p| p.namespace == pod.namespace && p.selector.matches(&*pod.labels))
    }

    /// Sum of the requests of the live pods bound to a node: O(1), kept as pods are
    /// attached and detached (see [`ClusterIndex::requested_on_scan`]).
    pub fn requested_on(&self, id: NodeId) -> Resources {
        let requested = self
            .nodes
            .get(id.index())
            .and_then(Option::as_ref)
            .map_or_else(Resources::default, |e| e.requested);
        debug_assert_eq!(requested, self.requested_on_scan(id));
        requested
    }

    /// [`ClusterIndex::requested_on`], summed over the node's pods (the reference).
    pub fn requested_on_scan(&self, id: NodeId) -> Resources {
        self.node_pods(id)
            .iter()
            .filter_map(|p| self.pod_info(*p))
            .filter(|p| !p.terminating && !p.finished)
            .fold(Resources::default(), |acc, p| acc.plus(p.requests))
    }

    /// What a pod adds to its node's requested resources.
    fn live_requests(&self, pod: PodId) -> Resources {
        self.pod_info(pod)
            .filter(|p| !p.terminating && !p.finished)
            .map_or_else(Resources::default, |p| p.requests)
    }

    fn attach(&mut self, pod: PodId, node: NodeId) {
        let requests = self.live_requests(pod);
        if let Some(entry) = self.nodes[node.index()].as_mut() {
            entry.pods.push(pod);
            entry.requested = entry.requested.plus(requests);
        }
        if let Some(p) = self.pods[pod.index()].as_mut() {
            p.node = Some(node);
        }
    }

    fn detach(&mut self, pod: PodId) {
        let node = self.pods[pod.index()].as_ref().and_then(|p| p.node);
        let requests = self.live_requests(pod);
        if let Some(node) = node
            && let Some(entry) = self.nodes[node.index()].as_mut()
        {
            entry.pods.retain(|p| *p != pod);
            entry.requested = entry.requested.minus(requests);
        }
        if let Some(p) = self.pods[pod.index()].as_mut() {
            p.node = None;
        }
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
