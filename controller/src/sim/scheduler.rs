//! A small scheduler for replacement pods: requests must fit, GPU pods need a GPU node,
//! nodes carrying Fulcrum's steering taint are avoided unless nothing else fits, and among
//! the rest the least-allocated node wins (the Kubernetes default scoring).

use super::world::{SimPod, World};

/// The taint Fulcrum puts on a migration's source node so the replacement lands elsewhere.
pub const STEER_TAINT: &str = "fulcrum.dev/steer-away";

/// The node `pod`'s replacement is placed on at `tick`, if any fits.
pub fn place(world: &World, pod: &SimPod, tick: u64) -> Option<usize> {
    let mut best: Option<(bool, f64, usize)> = None;
    for (n, node) in world.nodes.iter().enumerate() {
        if pod.needs_gpu != node.labels.contains_key("accelerator") {
            continue;
        }
        let used: i64 = world
            .pods
            .iter()
            .filter(|p| p.node == n)
            .map(|p| p.requests.cpu_millis)
            .sum();
        let free = node.allocatable.cpu_millis - used;
        if free < pod.requests.cpu_millis {
            continue;
        }
        let steered = node.steer_until.is_some_and(|until| tick < until);
        let score = free as f64 / node.allocatable.cpu_millis as f64;
        let candidate = (!steered, score, n);
        if best.is_none_or(|b| (candidate.0, candidate.1) > (b.0, b.1)) {
            best = Some(candidate);
        }
    }
    best.map(|(_, _, n)| n)
}
