//! Which partition each node's samples arrive on, so a revoked partition's nodes can be
//! forgotten. Only nodes in the engine's cluster view are remembered: a flood of samples
//! naming unknown nodes must not grow the feed's memory.

use std::collections::HashMap;

/// Node name → the partition its samples were last read from.
#[derive(Debug, Default)]
pub(super) struct NodePartitions {
    nodes: HashMap<String, i32>,
}

impl NodePartitions {
    /// Notes that a sample about `node` came from `partition`. `known` says whether the
    /// cluster view knows the node; unknown nodes are not remembered.
    pub(super) fn note(&mut self, node: &str, partition: i32, known: bool) {
        if known && self.nodes.get(node) != Some(&partition) {
            self.nodes.insert(node.to_owned(), partition);
        }
    }

    /// Removes and returns the nodes last seen on one of `partitions`.
    pub(super) fn revoke(&mut self, partitions: &[i32]) -> Vec<String> {
        let gone: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, p)| partitions.contains(p))
            .map(|(n, _)| n.clone())
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

    #[test]
    fn a_flood_of_unknown_nodes_is_not_remembered() {
        let mut nodes = NodePartitions::default();
        for i in 0..100_000 {
            nodes.note(&format!("ghost-{i}"), i % 3, false);
        }
        assert_eq!(nodes.len(), 0);
        // Control: known nodes are remembered, once each, with their latest partition.
        nodes.note("n0", 0, true);
        nodes.note("n1", 1, true);
        nodes.note("n0", 2, true);
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes.revoke(&[2]), vec!["n0".to_owned()]);
        assert_eq!(nodes.len(), 1);
    }
}
