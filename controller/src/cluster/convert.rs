//! Conversion from Kubernetes objects (`k8s-openapi` types) into the engine's cluster
//! index, and loading a cluster snapshot from a `kubectl get -o yaml` list.

use std::collections::BTreeMap;

use fulcrum_policies::LabelMatcher;
use fulcrum_policies::validate::FieldErrors;
use k8s_openapi::api::core::v1::{Namespace, Node, NodeSelectorRequirement, Pod, PodSpec};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use serde::Deserialize;
use serde_json::Value;

use fulcrum_engine::cluster::{
    ClusterIndex, IStr, NodeInfo, Owner, PdbInfo, PodInfo, Resources, Taint, Toleration,
};

/// Annotation that exempts a pod from every action.
pub const PROTECT_ANNOTATION: &str = "fulcrum.dev/protect";
/// Annotation the kubelet sets on mirror pods of static pods.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// A cluster snapshot that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ClusterLoadError {
    /// An item of a known kind did not decode.
    #[error("item {index} ({kind} {name}): {message}")]
    BadItem {
        /// 0-based position among the documents/items.
        index: usize,
        /// The item's kind.
        kind: String,
        /// The item's name, when present.
        name: String,
        /// The decoder's message.
        message: String,
    },
}

/// Parses a Kubernetes quantity (`500m`, `2`, `1.5`, `512Mi`, `1G`, `1e9`) into a number of
/// base units scaled by `scale` (1000 for CPU millicores, 1 for bytes). `None` if invalid.
pub fn parse_quantity(text: &str, scale: f64) -> Option<i64> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    let scaled = (value * multiplier * scale).ceil();
    scaled.is_finite().then_some(scaled as i64)
}

fn resources(map: Option<&BTreeMap<String, Quantity>>) -> Resources {
    let get = |key: &str, scale: f64| {
        map.and_then(|m| m.get(key))
            .and_then(|q| parse_quantity(&q.0, scale))
            .unwrap_or(0)
    };
    let gpus = map
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.ends_with("/gpu"))
        .filter_map(|(_, q)| parse_quantity(&q.0, 1.0))
        .sum();
    Resources {
        cpu_millis: get("cpu", 1000.0),
        memory_bytes: get("memory", 1.0),
        gpus,
    }
}

/// Converts a Node.
pub fn node_info(node: &Node) -> NodeInfo {
    let spec = node.spec.as_ref();
    let status = node.status.as_ref();
    NodeInfo {
        name: node.metadata.name.clone().unwrap_or_default(),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        allocatable: resources(status.and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))),
        taints: spec
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .map(|t| Taint {
                key: t.key.clone(),
                value: t.value.clone().unwrap_or_default(),
                effect: t.effect.clone(),
            })
            .collect(),
        unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
        // A node without conditions (a hand-written snapshot) is taken as ready.
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .is_none_or(|c| c.status == "True"),
    }
}

/// The workload a pod belongs to: `namespace/Kind/name` of its controller, with a
/// ReplicaSet mapped to its Deployment when the `pod-template-hash` label shows the
/// ReplicaSet was made by one. Bare pods are their own workload. (The operator first asks
/// the ReplicaSet metadata reflector: [`super::workloads::Workloads::resolve`].)
pub fn workload_of(
    namespace: &str,
    name: &str,
    owner: Option<&Owner>,
    labels: &BTreeMap<String, String>,
) -> String {
    match owner {
        Some(o) if o.kind == "ReplicaSet" => {
            let deployment = labels
                .get("pod-template-hash")
                .and_then(|hash| o.name.strip_suffix(&format!("-{hash}")));
            match deployment {
                Some(d) => format!("{namespace}/Deployment/{d}"),
                None => format!("{namespace}/ReplicaSet/{}", o.name),
            }
        }
        Some(o) => format!("{namespace}/{}/{}", o.kind, o.name),
        None => format!("{namespace}/Pod/{name}"),
    }
}

fn affinity_matchers(requirements: &[NodeSelectorRequirement]) -> LabelMatcher {
    // Node selector requirements share the label selector's operators, plus Gt/Lt which
    // the compiler rejects: a term Fulcrum cannot evaluate matches no node, so Migrate never
    // picks a node the scheduler might refuse.
    let selector = LabelSelector {
        match_labels: None,
        match_expressions: Some(
            requirements
                .iter()
                .map(|r| LabelSelectorRequirement {
                    key: r.key.clone(),
                    operator: r.operator.clone(),
                    values: r.values.clone(),
                })
                .collect(),
        ),
    };
    let mut errors = FieldErrors::default();
    let matcher = LabelMatcher::compile(&selector, "affinity", &mut errors);
    if errors.is_empty() {
        matcher
    } else {
        LabelMatcher::nothing()
    }
}

/// Converts a Pod.
pub fn pod_info(pod: &Pod) -> PodInfo {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let namespace = meta
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let name = meta.name.clone().unwrap_or_default();
    let labels = meta.labels.clone().unwrap_or_default();
    let annotations = meta.annotations.as_ref();
    let owner = controller_owner(meta);
    let workload = workload_of(&namespace, &name, owner.as_ref(), &labels);
    let requests = pod_requests(spec);
    let required_affinity = required_affinity(spec);
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    PodInfo {
        uid: meta.uid.as_deref().unwrap_or_default().into(),
        node_name: spec.and_then(|s| s.node_name.as_deref()).map(IStr::from),
        owner,
        workload: workload.into(),
        priority: spec.and_then(|s| s.priority).unwrap_or(0),
        protected: annotations
            .and_then(|a| a.get(PROTECT_ANNOTATION))
            .is_some_and(|v| v == "true"),
        mirror: annotations.is_some_and(|a| a.contains_key(MIRROR_ANNOTATION)),
        local_storage: spec
            .and_then(|s| s.volumes.as_ref())
            .is_some_and(|v| v.iter().any(|v| v.empty_dir.is_some())),
        created_ms: meta
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond()),
        terminating: meta.deletion_timestamp.is_some(),
        running: phase.is_none_or(|p| p == "Running"),
        finished: phase.is_some_and(|p| p == "Succeeded" || p == "Failed"),
        requests,
        node_selector: spec
            .and_then(|s| s.node_selector.clone())
            .unwrap_or_default()
            .into(),
        required_affinity,
        tolerations: tolerations(spec).into(),
        labels: labels.into(),
        namespace: namespace.into(),
        name: name.into(),
    }
}

/// The pod's controlling owner, or else its first owner.
fn controller_owner(meta: &ObjectMeta) -> Option<Owner> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .or_else(|| meta.owner_references.as_ref().and_then(|o| o.first()))
        .map(|o| Owner {
            kind: o.kind.as_str().into(),
            name: o.name.as_str().into(),
        })
}

/// The pod's effective requests, as the scheduler counts them: the larger of the sum of
/// its regular containers and its largest init container, per resource, plus the pod's
/// overhead.
fn pod_requests(spec: Option<&PodSpec>) -> Resources {
    let requests = |c: &k8s_openapi::api::core::v1::Container| {
        resources(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
    };
    spec.map(|s| {
        let regular = s
            .containers
            .iter()
            .fold(Resources::default(), |acc, c| acc.plus(requests(c)));
        let init = s
            .init_containers
            .iter()
            .flatten()
            .fold(Resources::default(), |acc, c| acc.max(requests(c)));
        regular.max(init).plus(resources(s.overhead.as_ref()))
    })
    .unwrap_or_default()
}

/// The required node affinity: one matcher per node selector term (any may match).
fn required_affinity(spec: Option<&PodSpec>) -> Vec<LabelMatcher> {
    spec.and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|sel| {
            sel.node_selector_terms
                .iter()
                .map(|t| affinity_matchers(t.match_expressions.as_deref().unwrap_or(&[])))
                .collect()
        })
        .unwrap_or_default()
}

/// The pod's tolerations, with Kubernetes' defaults for unset fields.
fn tolerations(spec: Option<&PodSpec>) -> Vec<Toleration> {
    spec.and_then(|s| s.tolerations.as_ref())
        .into_iter()
        .flatten()
        .map(|t| Toleration {
            key: t.key.clone().unwrap_or_default(),
            operator: t.operator.clone().unwrap_or_else(|| "Equal".to_owned()),
            value: t.value.clone().unwrap_or_default(),
            effect: t.effect.clone().unwrap_or_default(),
        })
        .collect()
}

/// Converts a PodDisruptionBudget.
pub fn pdb_info(pdb: &PodDisruptionBudget) -> PdbInfo {
    // In policy/v1 a null selector selects no pod; an empty one selects every pod.
    let selector = match pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) {
        Some(sel) => LabelMatcher::compile(sel, "selector", &mut FieldErrors::default()),
        None => LabelMatcher::nothing(),
    };
    PdbInfo {
        namespace: pdb
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned()),
        name: pdb.metadata.name.clone().unwrap_or_default(),
        selector,
        disruptions_allowed: pdb.status.as_ref().and_then(|s| s.disruptions_allowed),
    }
}

/// What [`load_cluster`] found.
#[derive(Debug, Default)]
pub struct LoadedCluster {
    /// The index holding every node, pod, namespace and PDB.
    pub index: ClusterIndex,
    /// Items of other kinds, skipped (kind, name).
    pub skipped: Vec<(String, String)>,
}

/// Builds a cluster index from Kubernetes objects (the items of `kubectl get
/// nodes,pods,pdb,namespaces -A -o yaml`). Unknown kinds are skipped and reported.
pub fn load_cluster(objects: &[Value]) -> Result<LoadedCluster, ClusterLoadError> {
    let mut loaded = LoadedCluster::default();
    for (index, object) in objects.iter().enumerate() {
        if let Some(skipped) = load_object(&mut loaded.index, index, object.clone())? {
            loaded.skipped.push(skipped);
        }
    }
    Ok(loaded)
}

/// Adds one Kubernetes object (the `index`-th of its snapshot, for error messages) to
/// `cluster`, consuming it. Answers `(kind, name)` when the kind is not one the engine uses
/// (the object is skipped).
pub fn load_object(
    cluster: &mut ClusterIndex,
    index: usize,
    object: Value,
) -> Result<Option<(String, String)>, ClusterLoadError> {
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let bad = |e: serde_json::Error| ClusterLoadError::BadItem {
        index,
        kind: kind.to_owned(),
        name: name.to_owned(),
        message: e.to_string(),
    };
    match kind {
        "Node" => {
            let node = Node::deserialize(&object).map_err(bad)?;
            cluster.upsert_node(node_info(&node));
        }
        "Pod" => {
            let pod = Pod::deserialize(&object).map_err(bad)?;
            cluster.upsert_pod(pod_info(&pod));
        }
        "PodDisruptionBudget" => {
            let pdb = PodDisruptionBudget::deserialize(&object).map_err(bad)?;
            cluster.upsert_pdb(pdb_info(&pdb));
        }
        "Namespace" => {
            let ns = Namespace::deserialize(&object).map_err(bad)?;
            cluster.upsert_namespace(name, ns.metadata.labels.unwrap_or_default());
        }
        other => return Ok(Some((other.to_owned(), name.to_owned()))),
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500m", 1000.0), Some(500));
        assert_eq!(parse_quantity("2", 1000.0), Some(2000));
        assert_eq!(parse_quantity("1.5", 1000.0), Some(1500));
        assert_eq!(parse_quantity("512Mi", 1.0), Some(512 * 1024 * 1024));
        assert_eq!(parse_quantity("1G", 1.0), Some(1_000_000_000));
        assert_eq!(parse_quantity("1e9", 1.0), Some(1_000_000_000));
        assert_eq!(parse_quantity("1Xi", 1.0), None);
        assert_eq!(parse_quantity("lots", 1.0), None);
    }

    #[test]
    fn workloads() {
        let rs = Owner {
            kind: "ReplicaSet".into(),
            name: "cart-7d9f8".into(),
        };
        let labels: BTreeMap<String, String> =
            [("pod-template-hash".to_owned(), "7d9f8".to_owned())].into();
        assert_eq!(
            workload_of("shop", "cart-7d9f8-x", Some(&rs), &labels),
            "shop/Deployment/cart"
        );
        assert_eq!(
            workload_of("shop", "p", Some(&rs), &BTreeMap::new()),
            "shop/ReplicaSet/cart-7d9f8"
        );
        assert_eq!(
            workload_of("shop", "p", None, &BTreeMap::new()),
            "shop/Pod/p"
        );
    }

    #[test]
    fn requests_count_init_containers_overhead_and_gpus_as_the_scheduler_does() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "t", "namespace": "ml"},
            "spec": {"containers": [
                        {"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "2"}}},
                        {"name": "b", "resources": {"requests": {"cpu": "500m"}}}],
                     "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "3", "memory": "512Mi"}}}],
                     "overhead": {"cpu": "250m", "memory": "128Mi"}}
        }))
        .unwrap();
        // cpu: max(1.5, 3) + 0.25; memory: max(1Gi, 512Mi) + 128Mi; gpus: 2.
        assert_eq!(
            pod_info(&pod).requests,
            Resources {
                cpu_millis: 3250,
                memory_bytes: (1 << 30) + (128 << 20),
                gpus: 2,
            }
        );
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "g"},
            "status": {"allocatable": {"cpu": "32", "memory": "128Gi", "nvidia.com/gpu": "8"}}
        }))
        .unwrap();
        assert_eq!(node_info(&node).allocatable.gpus, 8);
    }

    #[test]
    fn loads_a_kubectl_list() {
        let items = vec![
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"pool": "colocated"}},
                   "spec": {"taints": [{"key": "gpu", "effect": "NoSchedule"}]},
                   "status": {"allocatable": {"cpu": "8", "memory": "32Gi"},
                              "conditions": [{"type": "Ready", "status": "True"}]}}),
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": "exec-1", "namespace": "spark", "uid": "u1",
                                "creationTimestamp": "2025-11-26T09:00:00Z",
                                "labels": {"class": "batch"},
                                "annotations": {"fulcrum.dev/protect": "true"},
                                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "etl", "uid": "j", "controller": true}]},
                   "spec": {"nodeName": "n1", "priority": 10,
                            "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
                                           {"name": "b", "resources": {"requests": {"cpu": "1"}}}],
                            "volumes": [{"name": "scratch", "emptyDir": {}}],
                            "tolerations": [{"key": "gpu", "operator": "Exists"}]},
                   "status": {"phase": "Running"}}),
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                   "metadata": {"name": "etl", "namespace": "spark"},
                   "spec": {"selector": {"matchLabels": {"class": "batch"}}},
                   "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}}),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "spark", "labels": {"team": "data"}}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"}}),
        ];
        let loaded = load_cluster(&items).unwrap();
        let c = &loaded.index;
        assert_eq!(
            loaded.skipped,
            vec![("Service".to_owned(), "svc".to_owned())]
        );
        let n1 = c.node_id("n1").unwrap();
        let node = c.node_info(n1).unwrap();
        assert_eq!(node.allocatable.cpu_millis, 8000);
        assert!(node.ready && !node.unschedulable);
        let pod = c.pod_info(c.pod_id("spark", "exec-1").unwrap()).unwrap();
        assert_eq!(
            pod.requests,
            Resources {
                cpu_millis: 1500,
                memory_bytes: 1 << 30,
                gpus: 0,
            }
        );
        assert_eq!(pod.workload, "spark/Job/etl");
        assert!(pod.protected && pod.local_storage && pod.running && !pod.mirror);
        assert_eq!(pod.created_ms, Some(1_764_147_600_000));
        assert!(pod.tolerates_and_selects(node));
        assert_eq!(c.node_pods(n1).len(), 1);
        let pdbs: Vec<_> = c.pdbs_for(pod).collect();
        assert_eq!(pdbs.len(), 1);
        assert_eq!(pdbs[0].disruptions_allowed, Some(0));
        assert_eq!(c.namespace_labels("spark").unwrap()["team"], "data");
    }

    #[test]
    fn a_malformed_item_is_reported_with_its_position() {
        let items =
            vec![json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": 5}})];
        let err = load_cluster(&items).unwrap_err().to_string();
        assert!(err.starts_with("item 0 (Pod p):"), "{err}");
    }
}
