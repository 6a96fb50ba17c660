//! Problems in cluster snapshot files that would otherwise load silently: node, pod and
//! namespace names that are not valid Kubernetes names (no sample can name them), and pods
//! bound to a node that no snapshot contains (their samples would all be dropped as
//! `unknown_pod`). Each problem names the file it is in.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use fulcrum_policies::selector::{is_dns_label, is_dns_subdomain};
use serde_json::Value;

use crate::load::LoadError;
use crate::manifest::read_documents;

/// One object of a snapshot, with the file it came from.
struct Object<'a> {
    path: &'a Path,
    value: Value,
}

fn objects(paths: &[PathBuf]) -> Result<Vec<Object<'_>>, LoadError> {
    let mut out = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let docs = read_documents(&text).map_err(|e| LoadError::Parse {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        for doc in docs {
            match doc.value.get("items").and_then(Value::as_array) {
                Some(items) => out.extend(items.iter().map(|v| Object {
                    path,
                    value: v.clone(),
                })),
                None => out.push(Object {
                    path,
                    value: doc.value,
                }),
            }
        }
    }
    Ok(out)
}

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// The problems of the snapshot files `paths`, one line each, starting with the file.
pub fn cluster_problems(paths: &[PathBuf]) -> Result<Vec<String>, LoadError> {
    let objects = objects(paths)?;
    let kind = |o: &Object<'_>| text(&o.value, "/kind").unwrap_or_default().to_owned();
    let nodes: BTreeSet<String> = objects
        .iter()
        .filter(|o| kind(o) == "Node")
        .filter_map(|o| text(&o.value, "/metadata/name").map(str::to_owned))
        .collect();
    let mut problems = Vec::new();
    for o in &objects {
        let path = o.path.display();
        let name = text(&o.value, "/metadata/name").unwrap_or_default();
        match kind(o).as_str() {
            "Node" if !is_dns_subdomain(name) => problems.push(format!(
                "{path}: node {name:?} is not a valid Kubernetes name: samples naming it are rejected"
            )),
            "Pod" => {
                let ns = text(&o.value, "/metadata/namespace").unwrap_or("default");
                if !is_dns_label(ns) || !is_dns_subdomain(name) {
                    problems.push(format!(
                        "{path}: pod {ns}/{name} does not have a valid Kubernetes name: samples naming it are rejected"
                    ));
                }
                if let Some(node) = text(&o.value, "/spec/nodeName")
                    && !nodes.contains(node)
                {
                    problems.push(format!(
                        "{path}: pod {ns}/{name} is bound to node {node:?}, which no cluster file contains: its samples are dropped as unknown_pod"
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_and_pods_on_unknown_nodes_are_reported_with_their_file() {
        let dir = std::env::temp_dir().join(format!("fulcrum-snap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cluster.yaml");
        std::fs::write(
            &path,
            r#"
apiVersion: v1
kind: List
items:
  - {apiVersion: v1, kind: Node, metadata: {name: node-1}}
  - {apiVersion: v1, kind: Node, metadata: {name: Node_2}}
  - {apiVersion: v1, kind: Pod, metadata: {name: web, namespace: shop}, spec: {nodeName: node-1}}
  - {apiVersion: v1, kind: Pod, metadata: {name: db, namespace: shop}, spec: {nodeName: node-9}}
  - {apiVersion: v1, kind: Pod, metadata: {name: Bad_Pod, namespace: shop}, spec: {nodeName: node-1}}
"#,
        )
        .unwrap();
        let problems = cluster_problems(std::slice::from_ref(&path)).unwrap();
        let file = path.display().to_string();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems.iter().all(|p| p.starts_with(&file)));
        assert!(problems[0].contains("\"Node_2\""));
        assert!(problems[1].contains("shop/db") && problems[1].contains("node-9"));
        assert!(problems[2].contains("shop/Bad_Pod"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
