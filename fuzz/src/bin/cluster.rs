//! Fuzz target: cluster snapshots. The input is a snapshot file (a `kubectl get -o yaml`
//! `List` or single objects, YAML or JSON) read with `read_documents` and loaded with
//! `load_cluster` (what `fulcrum::load::load_cluster_files` does with each file); a loaded
//! index is then handed to an engine.

use fulcrum_engine::{Engine, EngineConfig};
use fulcrum_fuzz::cluster::convert::load_cluster;
use fulcrum_fuzz::manifest::read_documents;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(text) = std::str::from_utf8(data) else {
            return;
        };
        let Ok(documents) = read_documents(text) else {
            return;
        };
        let objects: Vec<_> = documents.into_iter().map(|d| d.value).collect();
        let Ok(loaded) = load_cluster(&objects) else {
            return;
        };
        let index = loaded.index;
        assert!(index.node_count() + index.pod_count() <= objects.len());
        for pod in index.pod_ids() {
            let info = index.pod_info(pod).expect("a listed pod has info");
            let _ = info.key();
        }
        let mut engine = Engine::new(EngineConfig::default());
        engine.load_cluster(index);
    });
}
