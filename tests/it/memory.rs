//! The operator's cluster index memory per pod: realistic Pod objects (managed fields,
//! annotations, several containers) converted as the reflectors convert them and applied
//! to an engine with a policy, measured with the counting allocator of `alloc.rs` (this
//! thread only).

use fulcrum::cluster::convert::{node_info, pod_info};
use fulcrum_engine::{ClusterUpdate, Engine, EngineConfig};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::json;

use crate::alloc::live_bytes as live;

fn pod(i: usize) -> Pod {
    let node = format!("node-{}", i % 100);
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("spark-exec-{i:06}-7f9c8d6b5-x2k4q"), "namespace": format!("team-{}", i % 20),
            "uid": format!("5f0c3a2e-1b7d-4c9a-9e3f-{i:012}"),
            "creationTimestamp": "2026-11-26T08:00:00Z", "resourceVersion": "123456789",
            "labels": {"app": "spark", "fulcrum.dev/class": "batch", "pod-template-hash": "7f9c8d6b5",
                       "app.kubernetes.io/part-of": "etl", "team": format!("team-{}", i % 20)},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(2000),
                            "prometheus.io/scrape": "true"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "spark-exec-7f9c8d6b5",
                                 "uid": "rs-uid", "controller": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                               "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {}}}}]
        },
        "spec": {
            "nodeName": node, "priority": 0,
            "containers": [
                {"name": "main", "image": "registry.example/spark:3.5.1", "args": ["--conf", "a=b"],
                 "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                 "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "4", "memory": "8Gi"}}},
                {"name": "sidecar", "image": "registry.example/proxy:1.2",
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}
            ],
            "volumes": [{"name": "conf", "configMap": {"name": "spark-conf"}}]
        },
        "status": {"phase": "Running", "podIP": "10.0.0.1",
                   "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .expect("a valid Pod")
}

fn node(i: usize) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("node-{i}"), "labels": {"pool": "colocated"}},
        "status": {"allocatable": {"cpu": "64", "memory": "256Gi"},
                   "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .expect("a valid Node")
}

/// Bytes the engine's cluster index and per-pod state hold for `n` pods on 100 nodes.
fn index_bytes(n: usize) -> isize {
    let mut engine = Engine::new(EngineConfig::default());
    let policy = crate::scenario::POLICY.replace("MODE", "Enforce");
    let value: serde_json::Value = serde_yaml_ng::from_str(&policy).expect("policy YAML");
    let policy = fulcrum_policies::document::check_document(&value).expect("valid policy");
    assert!(engine.set_policies(&[policy]).is_empty());
    for i in 0..100 {
        engine.apply(ClusterUpdate::UpsertNode(node_info(&node(i))));
    }
    let before = live();
    for i in 0..n {
        let p = pod(i); // the decoded object is dropped at once, as the reflector does
        engine.apply(ClusterUpdate::UpsertPod(Box::new(pod_info(&p))));
    }
    let bytes = live() - before;
    assert_eq!(engine.cluster().pod_count(), n);
    drop(engine);
    bytes
}

#[test]
fn the_cluster_index_keeps_about_two_kilobytes_per_pod() {
    let n = 5_000;
    let per_pod = index_bytes(n) / n as isize;
    println!("cluster index: {per_pod} bytes per pod ({n} pods, 100 nodes)");
    // The source objects are ~3 kB each (2 kB of last-applied annotation alone): the index
    // keeps only what the engine needs.
    assert!(per_pod > 100, "the measurement counts something: {per_pod}");
    // Measured 1339 bytes per pod with shared strings, label maps and tolerations, 2086
    // before (docs/operations.md, "Memory"); a bound with headroom that the unshared view
    // exceeded.
    assert!(per_pod < 2000, "{per_pod} bytes per pod");
}
