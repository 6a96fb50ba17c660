//! The benchmark's cluster as a snapshot file: written as `kubectl get
//! nodes,pods,namespaces -A -o json` would print it and loaded back through the snapshot
//! loader, so that the memory figures include loading the cluster view as `replay` and
//! shadow mode load it.

use std::io::Write;
use std::path::{Path, PathBuf};

use fulcrum_engine::cluster::{LabelMap, NodeInfo, PodInfo};
use fulcrum_engine::{Engine, EngineConfig};
use serde_json::{Value, json};

use super::workload::Workload;

/// A Node object holding what [`NodeInfo`] keeps (the GPU count is not written).
pub fn node_object(node: &NodeInfo) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node.name, "labels": node.labels},
        "spec": {"unschedulable": node.unschedulable},
        "status": {
            "allocatable": {
                "cpu": format!("{}m", node.allocatable.cpu_millis),
                "memory": node.allocatable.memory_bytes.to_string(),
            },
            "conditions": [{"type": "Ready", "status": if node.ready { "True" } else { "False" }}],
        },
    })
}

/// A Pod object holding what the benchmark's [`PodInfo`]s keep: names, labels, owner,
/// node, requests, creation time, phase.
pub fn pod_object(pod: &PodInfo) -> Value {
    let created = pod
        .created_ms
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string());
    let owners: Vec<Value> = pod
        .owner
        .iter()
        .map(|o| json!({"apiVersion": "apps/v1", "kind": o.kind.as_str(), "name": o.name.as_str(), "uid": "u", "controller": true}))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": pod.name.as_str(), "namespace": pod.namespace.as_str(), "uid": pod.uid.as_str(),
            "labels": &*pod.labels, "ownerReferences": owners, "creationTimestamp": created,
        },
        "spec": {
            "nodeName": pod.node_name.as_deref(), "priority": pod.priority,
            "containers": [{"name": "main", "resources": {"requests": {
                "cpu": format!("{}m", pod.requests.cpu_millis),
                "memory": pod.requests.memory_bytes.to_string(),
            }}}],
        },
        "status": {"phase": if pod.running { "Running" } else { "Pending" }},
    })
}

fn namespace_object(name: &str, labels: &LabelMap) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// Writes `workload`'s cluster as a JSON `List`, one object at a time (no index is built).
pub fn write(workload: &Workload, out: impl Write) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(out);
    out.write_all(b"{\"apiVersion\": \"v1\", \"items\": [\n")?;
    let namespaces = Workload::namespaces()
        .into_iter()
        .map(|(ns, labels)| namespace_object(ns, &labels));
    let nodes = workload.node_infos().map(|n| node_object(&n));
    let pods = workload.pod_infos().map(|p| pod_object(&p));
    for (i, value) in namespaces.chain(nodes).chain(pods).enumerate() {
        if i > 0 {
            out.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut out, &value).map_err(std::io::Error::other)?;
    }
    out.write_all(b"\n], \"kind\": \"List\", \"metadata\": {\"resourceVersion\": \"\"}}\n")?;
    out.flush()
}

/// Where [`engine_via_snapshot`] writes the snapshot.
pub fn path(workload: &Workload) -> PathBuf {
    std::env::temp_dir().join(format!(
        "fulcrum-bench-{}-{}-nodes.json",
        std::process::id(),
        workload.nodes
    ))
}

/// Writes `workload`'s cluster to `file`.
pub fn write_file(workload: &Workload, file: &Path) -> std::io::Result<()> {
    write(workload, std::fs::File::create(file)?)
}

/// An engine whose cluster view is loaded from the snapshot `file` through the snapshot
/// loader, with the benchmark's policies; the file is removed.
pub fn engine_via_snapshot(file: &Path, config: EngineConfig) -> Result<Engine, String> {
    let loaded = crate::load::load_snapshot(&[file.to_path_buf()]);
    let _ = std::fs::remove_file(file);
    let snapshot = loaded.map_err(|e| e.to_string())?;
    let mut engine = Engine::new(config);
    engine.load_cluster(snapshot.index);
    engine.set_policies(&Workload::policies());
    Ok(engine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_loads_back_through_the_loader_unchanged() {
        let workload = Workload::new(7, 0.0);
        let cluster = workload.cluster();
        let mut text = Vec::new();
        write(&workload, &mut text).unwrap();
        let file =
            std::env::temp_dir().join(format!("fulcrum-bench-test-{}.json", std::process::id()));
        std::fs::write(&file, &text).unwrap();
        let loaded = crate::load::load_snapshot(std::slice::from_ref(&file)).unwrap();
        std::fs::remove_file(&file).unwrap();
        assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
        let back = loaded.index;
        assert_eq!(back.pod_count(), cluster.pod_count());
        assert_eq!(back.node_count(), 7);
        for id in cluster.pod_ids() {
            let pod = cluster.pod_info(id).unwrap();
            let there = back
                .pod_id(&pod.namespace, &pod.name)
                .and_then(|p| back.pod_info(p));
            assert_eq!(there, Some(pod));
        }
        for id in cluster.node_ids() {
            let node = cluster.node_info(id).unwrap();
            let there = back.node_id(&node.name).and_then(|n| back.node_info(n));
            assert_eq!(there, Some(node));
        }
        assert_eq!(
            back.namespace_labels("shop"),
            cluster.namespace_labels("shop")
        );
    }
}
