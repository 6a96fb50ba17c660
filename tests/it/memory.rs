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

/// Live heap of the benchmark's world (`fulcrum bench --scale small`'s layout: 30 pods per
/// node, the three example policies, 8-metric samples every 10 s) by component, per pod.
struct Breakdown {
    cluster_view: isize,
    pod_tables: isize,
    /// After the stream and a flush: series, the reorder buffer's retained capacity,
    /// episodes and memos.
    streaming: isize,
}

fn breakdown(nodes: usize, ticks: u64) -> Breakdown {
    use fulcrum::bench::workload::{PODS_PER_NODE, Workload};
    let workload = Workload::new(nodes, 0.02);
    let mut samples = Vec::with_capacity(workload.pods() + nodes);
    let mut events = Vec::new();
    let start = live();
    let cluster = workload.cluster();
    let cluster_view = live() - start;
    let mut engine = Engine::new(EngineConfig::default());
    engine.load_cluster(cluster);
    engine.set_policies(&Workload::policies());
    let loaded = live();
    for tick in 0..ticks {
        samples.clear();
        workload.tick(tick, &mut samples);
        for message in samples.chunks(PODS_PER_NODE + 1) {
            for s in message {
                engine.offer(s);
            }
            engine.advance_auto(&mut events);
            events.clear();
        }
    }
    engine.flush(&mut events);
    events.clear();
    let flushed = live();
    drop(engine);
    Breakdown {
        cluster_view,
        pod_tables: loaded - start - cluster_view,
        streaming: flushed - loaded,
    }
}

#[test]
fn the_engine_keeps_little_streaming_state_per_pod() {
    let (nodes, ticks) = (100, 60); // 3,000 pods, 10 minutes: every ring full
    let b = breakdown(nodes, ticks);
    let pods = (nodes * fulcrum::bench::workload::PODS_PER_NODE) as isize;
    println!(
        "live heap per pod ({pods} pods, {ticks} ticks): cluster view {} B, pod and node state \
         with trigger tracks {} B, then series and the reorder buffer's capacity {} B",
        b.cluster_view / pods,
        b.pod_tables / pods,
        b.streaming / pods,
    );
    assert!(
        b.streaming / pods > 100,
        "the measurement counts the series"
    );
    // Over 10 KiB with 24-byte buckets for every tracked metric; measured about 1.6 KiB
    // with compact series (issue 13): a bound with headroom.
    assert!(
        b.streaming / pods < 2_500,
        "{} B per pod",
        b.streaming / pods
    );
}
