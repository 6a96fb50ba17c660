//! What the engine knows of each node, pod and PodDisruptionBudget: the records the
//! cluster index ([`crate::cluster::ClusterIndex`]) keeps, with the scheduling rules read
//! from them (taints and tolerations, node selectors and required affinity).

use std::sync::Arc;

use fulcrum_policies::LabelMatcher;

use crate::cluster::{IStr, LabelMap, Labels, Resources};

/// A node taint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    /// Taint key.
    pub key: String,
    /// Taint value (may be empty).
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    pub effect: String,
}

/// A pod toleration.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Toleration {
    /// Key tolerated; empty with operator `Exists` tolerates every taint.
    pub key: String,
    /// `Equal` (default) or `Exists`.
    pub operator: String,
    /// Value for `Equal`.
    pub value: String,
    /// Effect tolerated; empty tolerates every effect.
    pub effect: String,
}

impl Toleration {
    /// True when this toleration tolerates `taint` (Kubernetes semantics).
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != taint.effect {
            return false;
        }
        if self.key.is_empty() {
            return self.operator == "Exists";
        }
        if self.key != taint.key {
            return false;
        }
        match self.operator.as_str() {
            "Exists" => true,
            _ => self.value == taint.value,
        }
    }
}

/// What the engine needs to know about a node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Node labels.
    pub labels: LabelMap,
    /// Allocatable resources.
    pub allocatable: Resources,
    /// Taints.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// The `Ready` condition is `True`.
    pub ready: bool,
}

/// The controller that owns a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// Owner kind (`ReplicaSet`, `StatefulSet`, `Job`, `DaemonSet`, ...).
    pub kind: IStr,
    /// Owner name.
    pub name: IStr,
}

/// What the engine needs to know about a pod. The index shares the strings, label maps and
/// tolerations that pods repeat (see [`IStr`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodInfo {
    /// Namespace.
    pub namespace: IStr,
    /// Name.
    pub name: IStr,
    /// UID (empty when unknown).
    pub uid: IStr,
    /// The node the pod is bound to, if scheduled.
    pub node_name: Option<IStr>,
    /// Pod labels.
    pub labels: Labels,
    /// The controlling owner reference, if any.
    pub owner: Option<Owner>,
    /// The workload the pod belongs to, for per-workload limits: `namespace/Kind/name`
    /// of the top-level controller (a ReplicaSet's Deployment when it can be inferred).
    pub workload: IStr,
    /// `spec.priority` (0 when unset).
    pub priority: i32,
    /// Annotated `fulcrum.dev/protect: "true"`.
    pub protected: bool,
    /// A static or mirror pod (annotation `kubernetes.io/config.mirror`).
    pub mirror: bool,
    /// Has an `emptyDir` volume (its data is lost on eviction).
    pub local_storage: bool,
    /// `metadata.creationTimestamp` in ms since the Unix epoch, when known.
    pub created_ms: Option<i64>,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// Phase is `Running` (or unknown).
    pub running: bool,
    /// Phase is `Succeeded` or `Failed`: the pod no longer uses its node's resources.
    pub finished: bool,
    /// Sum of container requests.
    pub requests: Resources,
    /// `spec.nodeSelector`.
    pub node_selector: Labels,
    /// Required node affinity, compiled: the pod fits a node matching any of these.
    pub required_affinity: Vec<LabelMatcher>,
    /// Tolerations.
    pub tolerations: Arc<[Toleration]>,
}

impl PodInfo {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Owned by a DaemonSet.
    pub fn is_daemonset(&self) -> bool {
        self.owner.as_ref().is_some_and(|o| o.kind == "DaemonSet")
    }

    /// No controller owns the pod: it would not be recreated after an eviction.
    pub fn is_bare(&self) -> bool {
        self.owner.is_none()
    }

    /// True when the pod can run on `node` as far as labels and taints go.
    pub fn tolerates_and_selects(&self, node: &NodeInfo) -> bool {
        let selected = self
            .node_selector
            .iter()
            .all(|(k, v)| node.labels.get(k) == Some(v));
        let affinity = self.required_affinity.is_empty()
            || self
                .required_affinity
                .iter()
                .any(|m| m.matches(&node.labels));
        let tolerated = node
            .taints
            .iter()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .all(|t| self.tolerations.iter().any(|tol| tol.tolerates(t)));
        selected && affinity && tolerated
    }
}

/// What the engine needs to know about a PodDisruptionBudget.
#[derive(Clone, Debug, PartialEq)]
pub struct PdbInfo {
    /// Namespace (a PDB only covers pods of its namespace).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Which pods it covers.
    pub selector: LabelMatcher,
    /// `status.disruptionsAllowed`, when the status is known.
    pub disruptions_allowed: Option<i32>,
}
