//! Loading the engine's inputs from files: cluster snapshots (a Kubernetes `List`, as
//! `kubectl get nodes,pods,pdb,namespaces -A -o yaml` prints, or JSON) and
//! `InterferencePolicy` documents, and building an engine from them.

use std::path::{Path, PathBuf};

use fulcrum_engine::{ClusterIndex, Engine, EngineConfig};
use fulcrum_policies::InterferencePolicy;
use fulcrum_policies::document::check_document;

use crate::cluster::convert::load_cluster;
use crate::manifest::read_documents;

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

/// Loads and merges cluster snapshot files into one index.
pub fn load_cluster_files(paths: &[PathBuf]) -> Result<ClusterIndex, LoadError> {
    let mut objects = Vec::new();
    for path in paths {
        objects.extend(documents(path)?.into_iter().map(|d| d.value));
    }
    let cluster = load_cluster(&objects).map_err(|e| LoadError::Parse {
        path: paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        message: e.to_string(),
    })?;
    Ok(cluster.index)
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
/// skipped and returned; at least one must be valid.
pub fn build_engine(
    cluster: &[PathBuf],
    policy_files: &[PathBuf],
    config: EngineConfig,
) -> Result<(Engine, InvalidPolicies), LoadError> {
    let index = load_cluster_files(cluster)?;
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
    Ok((engine, invalid))
}
