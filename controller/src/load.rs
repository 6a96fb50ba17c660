//! Loading the engine's inputs from files: cluster snapshots (a Kubernetes `List`, as
//! `kubectl get nodes,pods,pdb,namespaces -A -o yaml` prints, or JSON) and
//! `InterferencePolicy` documents, and building an engine from them.

use std::path::{Path, PathBuf};

use fulcrum_engine::{ClusterIndex, Engine, EngineConfig};
use fulcrum_policies::InterferencePolicy;
use fulcrum_policies::document::check_document;

use serde_json::Value;

use crate::cluster::convert::load_object;
use crate::cluster::snapshot::{StreamError, stream_objects};
use crate::manifest::read_documents;
use crate::snapshot_check::ProblemFinder;

/// An input file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not valid YAML/JSON, or an object in it does not decode.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An events file out of time order that cannot be replayed in order (the message
    /// names the file, the line, and what to do).
    #[error("{0}")]
    Unordered(String),
    /// None of the policies is valid.
    #[error("no valid policy: every policy given has errors (see above)")]
    NoValidPolicy,
}

/// Policies that were skipped: `(file: name, error lines)`.
pub type InvalidPolicies = Vec<(String, Vec<String>)>;

fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn documents(path: &Path) -> Result<Vec<crate::manifest::Document>, LoadError> {
    read_documents(&read(path)?).map_err(|e| LoadError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// A loaded cluster snapshot.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every node, pod, namespace and PodDisruptionBudget of the files.
    pub index: ClusterIndex,
    /// What would load silently but is likely wrong ([`crate::snapshot_check`]), one line
    /// each, starting with the file.
    pub problems: Vec<String>,
}

/// Loads and merges cluster snapshot files into one index.
pub fn load_cluster_files(paths: &[PathBuf]) -> Result<ClusterIndex, LoadError> {
    Ok(load_snapshot(paths)?.index)
}

/// Loads and merges cluster snapshot files into one index, finding their problems in the
/// same pass. Each file is streamed object by object ([`crate::cluster::snapshot`]); a
/// file in a shape the streaming reader does not take apart is parsed whole.
pub fn load_snapshot(paths: &[PathBuf]) -> Result<Snapshot, LoadError> {
    let mut snapshot = Snapshot::default();
    let mut finder = ProblemFinder::default();
    for path in paths {
        let mut index = 0;
        let mut on_object = |object: Value| {
            finder.object(path, &object);
            let result = load_object(&mut snapshot.index, index, object);
            index += 1;
            result.map(|_skipped| ()).map_err(|e| LoadError::Parse {
                path: path.display().to_string(),
                message: e.to_string(),
            })
        };
        let read_error = |source| LoadError::Read {
            path: path.display().to_string(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let reader = std::io::BufReader::with_capacity(1 << 16, file);
        match stream_objects(reader, &mut on_object) {
            Ok(()) => continue,
            Err(StreamError::Read(e)) => return Err(read_error(e)),
            Err(StreamError::Item(e)) => return Err(e),
            Err(StreamError::Fallback) => {}
        }
        // Parsed whole: the objects streamed so far are loaded again, the same way.
        return load_whole(paths);
    }
    snapshot.problems = finder.finish();
    Ok(snapshot)
}

/// [`load_snapshot`] parsing each file whole (any YAML the parser accepts).
fn load_whole(paths: &[PathBuf]) -> Result<Snapshot, LoadError> {
    let mut snapshot = Snapshot::default();
    let mut finder = ProblemFinder::default();
    for path in paths {
        for (index, doc) in documents(path)?.into_iter().enumerate() {
            finder.object(path, &doc.value);
            load_object(&mut snapshot.index, index, doc.value).map_err(|e| LoadError::Parse {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        }
    }
    snapshot.problems = finder.finish();
    Ok(snapshot)
}

/// Reads policy files: the policies that decode, and the problems of those that do not
/// (`file: name`, error lines).
pub fn load_policy_files(
    paths: &[PathBuf],
) -> Result<(Vec<InterferencePolicy>, InvalidPolicies), LoadError> {
    let mut policies = Vec::new();
    let mut invalid = Vec::new();
    for path in paths {
        for doc in documents(path)? {
            let name = doc
                .value
                .pointer("/metadata/name")
                .and_then(|n| n.as_str())
                .unwrap_or("(unnamed)")
                .to_owned();
            match check_document(&doc.value) {
                Ok(policy) => policies.push(policy),
                Err(errors) => invalid.push((
                    format!("{}: {name}", path.display()),
                    errors.iter().map(ToString::to_string).collect(),
                )),
            }
        }
    }
    Ok((policies, invalid))
}

/// Builds an engine from cluster snapshot files and policy files. Policies with errors are
/// skipped and returned; at least one must be valid. Also answers the snapshot's problems
/// ([`crate::snapshot_check`]).
pub fn build_engine(
    cluster: &[PathBuf],
    policy_files: &[PathBuf],
    config: EngineConfig,
) -> Result<(Engine, InvalidPolicies, Vec<String>), LoadError> {
    let Snapshot { index, problems } = load_snapshot(cluster)?;
    let (policies, mut invalid) = load_policy_files(policy_files)?;
    if policies.is_empty() {
        return Err(LoadError::NoValidPolicy);
    }
    let mut engine = Engine::new(config);
    engine.load_cluster(index);
    let rejected = engine.set_policies(&policies);
    invalid.extend(
        rejected
            .into_iter()
            .map(|(name, errors)| (name, errors.iter().map(ToString::to_string).collect())),
    );
    Ok((engine, invalid, problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` (name, text) into a fresh directory and answers their paths.
    fn files(test: &str, files: &[(&str, &str)]) -> Vec<PathBuf> {
        let dir = std::env::temp_dir().join(format!("fulcrum-load-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        files
            .iter()
            .map(|(name, text)| {
                let path = dir.join(name);
                std::fs::write(&path, text).unwrap();
                path
            })
            .collect()
    }

    fn error(paths: &[PathBuf]) -> String {
        load_snapshot(paths).unwrap_err().to_string()
    }

    #[test]
    fn a_malformed_item_names_its_file_position_kind_and_name_in_every_shape() {
        let bad_yaml = "apiVersion: v1\nitems:\n- kind: Node\n  metadata: {name: n1}\n- kind: Pod\n  metadata:\n    name: p1\n  spec:\n    containers: 5\nkind: List\n";
        let bad_json = r#"{"items": [{"kind": "Node", "metadata": {"name": "n1"}}, {"kind": "Pod", "metadata": {"name": "p1"}, "spec": {"containers": 5}}], "kind": "List"}"#;
        // A shape the streaming reader hands to the whole parse (flow-style items).
        let bad_flow = "kind: List\nitems: [{kind: Node, metadata: {name: n1}}, {kind: Pod, metadata: {name: p1}, spec: {containers: 5}}]\n";
        for (name, text) in [
            ("a.yaml", bad_yaml),
            ("a.json", bad_json),
            ("f.yaml", bad_flow),
        ] {
            let paths = files(
                "bad",
                &[
                    ("good.yaml", "kind: Node\nmetadata: {name: n0}\n"),
                    (name, text),
                ],
            );
            let err = error(&paths);
            let prefix = format!("{}: item 1 (Pod p1): ", paths[1].display());
            assert!(err.starts_with(&prefix), "{err}");
            assert!(err.contains("expected a sequence"), "{err}");
        }
        // The control: the same files without the bad field load.
        let good = bad_yaml.replace("    containers: 5\n", "    containers: []\n");
        let paths = files("good", &[("a.yaml", &good)]);
        let loaded = load_snapshot(&paths).unwrap();
        assert_eq!(
            (loaded.index.node_count(), loaded.index.pod_count()),
            (1, 1)
        );
    }

    #[test]
    fn a_yaml_syntax_error_is_reported_with_its_document_and_line() {
        let text = "kind: List\nitems:\n- kind: Node\n  metadata: {name: [n1}\nkind: List\n";
        let paths = files("syntax", &[("s.yaml", text)]);
        let err = error(&paths);
        assert!(
            err.starts_with(&format!("{}: document 1:", paths[0].display())),
            "{err}"
        );
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn streamed_and_whole_loads_give_the_same_index_and_problems() {
        // Pods first, their node in a later file: no unknown-node problem for them.
        let pods = "apiVersion: v1\nitems:\n- kind: Pod\n  metadata: {name: web, namespace: shop, labels: {app: web}}\n  spec: {nodeName: node-1, containers: []}\n- kind: Pod\n  metadata: {name: db, namespace: shop}\n  spec: {nodeName: node-9, containers: []}\n- kind: Pod\n  metadata: {name: Bad_Pod, namespace: shop}\n  spec: {nodeName: node-1, containers: []}\nkind: List\n";
        let nodes = r#"{"apiVersion": "v1", "items": [{"kind": "Node", "metadata": {"name": "node-1"}}, {"kind": "Node", "metadata": {"name": "Node_2"}}, {"kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "web"}}}], "kind": "List"}"#;
        let paths = files("same", &[("pods.yaml", pods), ("nodes.json", nodes)]);
        let streamed = load_snapshot(&paths).unwrap();
        let whole = load_whole(&paths).unwrap();
        assert_eq!(streamed.problems, whole.problems);
        assert_eq!(streamed.problems.len(), 3, "{:#?}", streamed.problems);
        assert!(
            streamed.problems[0].contains("shop/db") && streamed.problems[0].contains("node-9")
        );
        assert!(streamed.problems[1].contains("shop/Bad_Pod"));
        assert!(streamed.problems[2].contains("\"Node_2\""));
        for loaded in [&streamed, &whole] {
            let c = &loaded.index;
            assert_eq!((c.node_count(), c.pod_count()), (2, 3));
            let node = c.node_id("node-1").unwrap();
            assert_eq!(
                c.node_pods(node).len(),
                2,
                "pods attach to a node loaded later"
            );
            assert_eq!(c.namespace_labels("shop").unwrap()["team"], "web");
        }
    }
}
