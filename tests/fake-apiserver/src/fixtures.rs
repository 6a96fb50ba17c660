//! Builders for the objects tests seed most often (plain JSON, ready for
//! [`crate::FakeApiServer::apply_object`]).

use serde_json::{Value, json};

/// A Ready node with `allocatable` CPU and memory (e.g. `"4"`, `"8Gi"`) and the
/// `kubernetes.io/hostname` label.
pub fn node(name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
        },
    })
}

/// A pod bound to `node`, Running and Ready, with one container requesting `cpu`/`memory`.
pub fn running_pod(
    namespace: &str,
    name: &str,
    node: &str,
    labels: Value,
    cpu: &str,
    memory: &str,
) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "main", "image": "registry.invalid/app:1",
                "resources": {"requests": {"cpu": cpu, "memory": memory}}}],
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True"},
            ],
        },
    })
}

/// Makes `owner` (`apiVersion`, `kind`, `name`, `uid`) the controller of `obj`; pods get
/// `generateName: <name>-` so replacements are named like the real controllers name them.
pub fn owned_by(mut obj: Value, api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "ownerReferences".into(),
            json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
                    "controller": true, "blockOwnerDeletion": true}]),
        );
        if kind != "StatefulSet" {
            meta.insert("generateName".into(), json!(format!("{name}-")));
        }
    }
    obj
}

/// A `policy/v1` PodDisruptionBudget selecting `match_labels`, with `minAvailable` or
/// `maxUnavailable` given as `("minAvailable", json!(1))` / `("maxUnavailable", json!("50%"))`.
pub fn pdb(namespace: &str, name: &str, match_labels: Value, budget: (&str, Value)) -> Value {
    let mut spec = json!({"selector": {"matchLabels": match_labels}});
    spec[budget.0] = budget.1;
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

/// A `fulcrum.dev/v1alpha1` InterferencePolicy with the given spec.
pub fn interference_policy(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "fulcrum.dev/v1alpha1",
        "kind": "InterferencePolicy",
        "metadata": {"name": name},
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_produce_what_the_server_expects() {
        let pod = owned_by(
            running_pod("ns", "web-1", "n1", json!({"app": "web"}), "100m", "64Mi"),
            "apps/v1",
            "ReplicaSet",
            "web",
            "u1",
        );
        assert_eq!(pod["metadata"]["generateName"], "web-");
        assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
        let budget = pdb(
            "ns",
            "b",
            json!({"app": "web"}),
            ("maxUnavailable", json!("50%")),
        );
        assert_eq!(budget["spec"]["maxUnavailable"], "50%");
        assert_eq!(node("n1", "4", "8Gi")["status"]["allocatable"]["cpu"], "4");
        assert_eq!(
            interference_policy("p", json!({"mode": "DryRun"}))["kind"],
            "InterferencePolicy"
        );
    }
}
