//! Which partition each node's samples arrive on, so a revoked partition's nodes can be
//! forgotten. Only nodes in the engine's cluster view are remembered (by their id: no
//! string hashing per sample): a flood of samples naming unknown nodes must not grow the
//! feed's memory.

use std::collections::HashMap;

use fulcrum_engine::NodeId;

/// Node id → the partition its samples were last read from.
#[derive(Debug, Default)]
pub(super) struct NodePartitions {
    nodes: HashMap<NodeId, i32, foldhash::fast::FixedState>,
}

impl NodePartitions {
    /// Notes that a sample about the known node `node` came from `partition`.
    pub(super) fn note(&mut self, node: NodeId, partition: i32) {
        self.nodes.insert(node, partition);
    }

    /// Removes and returns the nodes last seen on one of `partitions`. An id names the
    /// node that held it when its last sample was noted (ids of removed nodes are reused;
    /// the new holder's first sample notes its own partition).
    pub(super) fn revoke(&mut self, partitions: &[i32]) -> Vec<NodeId> {
        let gone: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|(_, p)| partitions.contains(p))
            .map(|(n, _)| *n)
            .collect();
        for node in &gone {
            self.nodes.remove(node);
        }
        gone
    }

    /// How many nodes are remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fulcrum_engine::{ClusterIndex, NodeInfo};

    #[test]
    fn nodes_are_remembered_once_with_their_latest_partition() {
        let mut cluster = ClusterIndex::new();
        let ids: Vec<NodeId> = ["n0", "n1"]
            .iter()
            .map(|n| {
                let info = NodeInfo {
                    name: (*n).to_owned(),
                    ..NodeInfo::default()
                };
                cluster.upsert_node(info).0
            })
            .collect();
        let mut nodes = NodePartitions::default();
        for i in 0..1_000 {
            nodes.note(ids[i % 2], 1 + (i % 2) as i32);
        }
        nodes.note(ids[0], 2);
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes.revoke(&[2]).len(), 2, "n0 moved to 2, n1 was there");
        assert_eq!(nodes.len(), 0);
        // Control: a partition nobody was read from forgets nothing.
        nodes.note(ids[0], 0);
        assert!(nodes.revoke(&[5]).is_empty());
        assert_eq!(nodes.revoke(&[0]), vec![ids[0]]);
    }
}
