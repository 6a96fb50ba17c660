//! Placement: the node a migrated pod's replacement would land on, predicted the way the
//! scheduler filters nodes (readiness, selectors, taints, requests), preferring nodes known
//! to be free of interference.

use crate::cluster::{NodeId, PodId, Resources};
use crate::engine::Engine;

impl Engine {
    /// The node a migrated pod's replacement would fit on, or why there is none.
    pub(crate) fn destination(&self, pod: PodId, source: NodeId, t: i64) -> Result<String, String> {
        let Some(info) = self.cluster.pod_info(pod) else {
            return Err("pod vanished".into());
        };
        let (mut cordoned, mut unmatched, mut full, mut busy) = (0, 0, 0, 0);
        // Best first: nodes with fresh samples (known not to be under interference), then
        // the most CPU headroom, then the name.
        let mut best: Option<((bool, f64), String)> = None;
        for id in self.cluster.node_ids() {
            if id == source {
                continue;
            }
            let Some(node) = self.cluster.node_info(id) else {
                continue;
            };
            if node.unschedulable || !node.ready {
                cordoned += 1;
                continue;
            }
            if !info.tolerates_and_selects(node) {
                unmatched += 1;
                continue;
            }
            let used = self.cluster.requested_on(id);
            let free = Resources {
                cpu_millis: node.allocatable.cpu_millis - used.cpu_millis,
                memory_bytes: node.allocatable.memory_bytes - used.memory_bytes,
            };
            if !info.requests.fits_in(free) {
                full += 1;
                continue;
            }
            let last = self
                .nodes
                .get(id.index())
                .and_then(Option::as_ref)
                .and_then(|s| s.last_ts);
            let stale = last.is_some_and(|l| t - l > self.config.stale_after_ms as i64);
            if stale || self.under_pressure(id, t) {
                busy += 1;
                continue;
            }
            let headroom = if node.allocatable.cpu_millis > 0 {
                (free.cpu_millis - info.requests.cpu_millis) as f64
                    / node.allocatable.cpu_millis as f64
            } else {
                0.0
            };
            let rank = (last.is_some(), headroom);
            let better = |(r, name): &((bool, f64), String)| {
                rank.0
                    .cmp(&r.0)
                    .then(rank.1.total_cmp(&r.1))
                    .then_with(|| name.cmp(&node.name))
                    .is_gt()
            };
            if best.as_ref().is_none_or(better) {
                best = Some((rank, node.name.clone()));
            }
        }
        best.map(|(_, name)| name).ok_or_else(|| {
            format!(
                "no other node fits: {full} lack CPU or memory, {unmatched} fail selectors or taints, {busy} have interference or stale data, {cordoned} are cordoned or not ready"
            )
        })
    }
}
