//! Problems in cluster snapshot files that would otherwise load silently: node, pod and
//! namespace names that are not valid Kubernetes names (no sample can name them), and pods
//! bound to a node that no snapshot contains (their samples would all be dropped as
//! `unknown_pod`). Each problem names the file it is in.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use fulcrum_policies::selector::{is_dns_label, is_dns_subdomain};
use serde_json::Value;

use crate::load::LoadError;

fn text<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// A problem found so far; one naming an unknown node is settled when every file has been
/// read (a later file may hold the node).
enum Problem {
    Found(String),
    UnknownNode { node: String, line: String },
}

/// Collects the problems of snapshot objects as they are read, in object order.
#[derive(Default)]
pub struct ProblemFinder {
    nodes: BTreeSet<String>,
    problems: Vec<Problem>,
}

impl ProblemFinder {
    /// Looks at one object of the snapshot file `path`.
    pub fn object(&mut self, path: &Path, object: &Value) {
        let path = path.display();
        let name = text(object, "/metadata/name").unwrap_or_default();
        match text(object, "/kind").unwrap_or_default() {
            "Node" => {
                if !is_dns_subdomain(name) {
                    self.problems.push(Problem::Found(format!(
                        "{path}: node {name:?} is not a valid Kubernetes name: samples naming it are rejected"
                    )));
                }
                self.nodes.insert(name.to_owned());
            }
            "Pod" => {
                let ns = text(object, "/metadata/namespace").unwrap_or("default");
                if !is_dns_label(ns) || !is_dns_subdomain(name) {
                    self.problems.push(Problem::Found(format!(
                        "{path}: pod {ns}/{name} does not have a valid Kubernetes name: samples naming it are rejected"
                    )));
                }
                if let Some(node) = text(object, "/spec/nodeName")
                    && !self.nodes.contains(node)
                {
                    self.problems.push(Problem::UnknownNode {
                        node: node.to_owned(),
                        line: format!(
                            "{path}: pod {ns}/{name} is bound to node {node:?}, which no cluster file contains: its samples are dropped as unknown_pod"
                        ),
                    });
                }
            }
            _ => {}
        }
    }

    /// The problems, one line each, starting with the file.
    pub fn finish(self) -> Vec<String> {
        let nodes = self.nodes;
        self.problems
            .into_iter()
            .filter_map(|p| match p {
                Problem::Found(line) => Some(line),
                Problem::UnknownNode { node, line } => (!nodes.contains(&node)).then_some(line),
            })
            .collect()
    }
}

/// The problems of the snapshot files `paths`, one line each, starting with the file.
/// (Loading them with [`crate::load::load_snapshot`] finds the same problems in the same
/// pass.)
pub fn cluster_problems(paths: &[PathBuf]) -> Result<Vec<String>, LoadError> {
    Ok(crate::load::load_snapshot(paths)?.problems)
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
