//! Placement: the node a migrated pod's replacement would land on, predicted the way the
//! scheduler filters and scores nodes, and kept away from trouble.
//!
//! Filters: ready and schedulable; node selector, required node affinity and
//! `NoSchedule`/`NoExecute` taints; requests (CPU, memory) fit in what is left after the
//! pods bound there *and* the replacements of Migrates decided in the last
//! [`PENDING_MS`] (the scheduler has not placed them yet); the node has reported samples
//! (a node never heard from cannot be known to be free of interference), they are fresh,
//! no trigger condition of any policy holds there now, and the migrated pod's usage would
//! not push it over a node-scope trigger (shared-resource headroom, predicted: see
//! [`crate::headroom`]). Preference, in order: nodes
//! without an untolerated `PreferNoSchedule` taint (including Fulcrum's steering taint
//! `fulcrum.dev/steer-away`), then the most CPU headroom after placement, then the name.

use crate::cluster::{FastMap, NodeId, NodeInfo, PodId, PodInfo, Resources};
use crate::engine::Engine;
use crate::headroom::{Crossing, Placing, UsageMemo};

/// How long a decided Migrate's replacement counts against its predicted destination.
pub const PENDING_MS: i64 = 300_000;

/// Why nodes were passed over.
#[derive(Default)]
struct Rejections {
    cordoned: usize,
    unmatched: usize,
    full: usize,
    busy: usize,
    silent: usize,
    /// Nodes the pod's usage would push over a trigger.
    crossing: usize,
}

/// True when `pod` does not tolerate a `PreferNoSchedule` taint of `node`.
fn repelled(pod: &PodInfo, node: &NodeInfo) -> bool {
    node.taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .any(|t| !pod.tolerations.iter().any(|tol| tol.tolerates(t)))
}

/// A node that passed the cheap filters, with its rank: not repelled by a
/// PreferNoSchedule taint, then the most CPU headroom after placement, then the name.
struct Candidate<'a> {
    preferred: bool,
    headroom: f64,
    id: NodeId,
    node: &'a NodeInfo,
}

impl Candidate<'_> {
    /// Rank order: the best first (names are unique, so the order is total).
    fn rank(&self, other: &Self) -> std::cmp::Ordering {
        other
            .preferred
            .cmp(&self.preferred)
            .then(other.headroom.total_cmp(&self.headroom))
            .then_with(|| self.node.name.cmp(&other.node.name))
    }
}

impl Engine {
    /// Requests of replacements predicted to land on each node and not yet visible: one
    /// pass over the recent Migrates per search, not one per node.
    fn pending_by_destination(&self, t: i64) -> FastMap<NodeId, Resources> {
        let mut pending = FastMap::default();
        for m in self.migrations.values() {
            if let Some(id) = m.destination
                && t - m.at < PENDING_MS
                && m.at <= t
            {
                let sum: &mut Resources = pending.entry(id).or_default();
                *sum = sum.plus(m.requests);
            }
        }
        pending
    }

    /// The node a migrated pod's replacement would fit on, or why there is none.
    /// `p` is the policy acting (its attribution metrics and window give the pod's load).
    ///
    /// Every node is put through the cheap filters (each O(1): requested resources are
    /// kept by the cluster index, pending Migrates are summed once per search), the
    /// survivors are ranked, and the predicted-headroom check (which needs a node's usage:
    /// see [`crate::headroom`]) is made in rank order and stops at the first node that
    /// passes, so a successful search does not predict the usage of every node. A failed
    /// one checks every survivor (its message counts them all); only the example crossing
    /// is described in words.
    pub(crate) fn destination(
        &self,
        p: u16,
        pod: PodId,
        source: NodeId,
        t: i64,
    ) -> Result<(NodeId, String), String> {
        let Some(info) = self.cluster.pod_info(pod) else {
            return Err("pod vanished".into());
        };
        let load = self.hog_load(p, pod, t);
        let source_memo = UsageMemo::default();
        let placing = Placing::new(
            &load,
            (source, t),
            self.policies[p as usize].policy.spec.attribution.window_ms,
            &source_memo,
        );
        let pending = self.pending_by_destination(t);
        let mut no = Rejections::default();
        let mut ranked: Vec<Candidate<'_>> = self
            .cluster
            .node_ids()
            .filter(|&id| id != source)
            .filter_map(|id| {
                let node = self.cluster.node_info(id)?;
                let pending = pending.get(&id).copied().unwrap_or_default();
                let headroom = self.fits(info, (id, node), (t, pending), &mut no)?;
                Some(Candidate {
                    preferred: !repelled(info, node),
                    headroom,
                    id,
                    node,
                })
            })
            .collect();
        ranked.sort_unstable_by(Candidate::rank);
        // The example of a crossing is the first in node order, whatever the rank.
        let mut example: Option<(NodeId, Crossing)> = None;
        for c in ranked {
            match self.crossing(&placing, c.id) {
                None => return Ok((c.id, c.node.name.clone())),
                Some(why) => {
                    no.crossing += 1;
                    if example.as_ref().is_none_or(|(first, _)| c.id < *first) {
                        example = Some((c.id, why));
                    }
                }
            }
        }
        let example = example
            .map(|(id, why)| {
                let node = self.cluster.node_info(id).map_or("?", |n| n.name.as_str());
                format!(" ({node}: {})", self.describe(&placing, why))
            })
            .unwrap_or_default();
        Err(format!(
            "no other node fits: {} lack CPU, memory or GPUs, {} fail selectors or taints, {} have interference or stale data, {} would cross a trigger with the pod's usage{example}, {} have never reported samples, {} are cordoned or not ready",
            no.full, no.unmatched, no.busy, no.crossing, no.silent, no.cordoned
        ))
    }

    /// The CPU headroom left on `node` after placing `info` there, if it passes the cheap
    /// filters (the predicted-headroom check is made by the caller, in rank order).
    /// `pending` is what Migrates decided towards the node still hold there.
    fn fits(
        &self,
        info: &PodInfo,
        (id, node): (NodeId, &NodeInfo),
        (t, pending): (i64, Resources),
        no: &mut Rejections,
    ) -> Option<f64> {
        if node.unschedulable || !node.ready {
            no.cordoned += 1;
            return None;
        }
        if !info.tolerates_and_selects(node) {
            no.unmatched += 1;
            return None;
        }
        let used = self.cluster.requested_on(id).plus(pending);
        let free = node.allocatable.minus(used);
        if !info.requests.fits_in(free) {
            no.full += 1;
            return None;
        }
        let last = self
            .nodes
            .get(id.index())
            .and_then(Option::as_ref)
            .and_then(|s| s.last_ts);
        let Some(last) = last else {
            no.silent += 1;
            return None;
        };
        if t - last > self.config.stale_after_ms as i64 || self.under_pressure(id, t) {
            no.busy += 1;
            return None;
        }
        Some(if node.allocatable.cpu_millis > 0 {
            (free.cpu_millis - info.requests.cpu_millis) as f64 / node.allocatable.cpu_millis as f64
        } else {
            0.0
        })
    }
}

impl Engine {
    /// Why `pod` may not be migrated again: its workload was migrated within the
    /// policy's workload window and interferes again on its new node.
    pub(crate) fn ping_pong_reason(
        &self,
        pod: PodId,
        source: NodeId,
        t: i64,
        window_ms: u64,
    ) -> Option<String> {
        let info = self.cluster.pod_info(pod)?;
        let last = self.migrations.get(info.workload.as_str())?;
        (t - last.at < window_ms as i64).then(|| {
            format!(
                "{} was migrated away from {} {} ago and interferes again on {}: not migrated twice within the maxActionsPerWorkload window ({})",
                info.workload,
                self.cluster
                    .node_info(last.source)
                    .map(|n| n.name.as_str())
                    .unwrap_or("?"),
                crate::limits::fmt_ms((t - last.at).max(0) as u64),
                self.cluster
                    .node_info(source)
                    .map(|n| n.name.as_str())
                    .unwrap_or("?"),
                crate::limits::fmt_ms(window_ms)
            )
        })
    }

    /// Counts an executed action against the PodDisruptionBudgets covering `pod` (until
    /// their status is next updated) and, for a Migrate, remembers where its replacement
    /// is expected.
    pub(crate) fn spend_budget(
        &mut self,
        pod: PodId,
        source: NodeId,
        t: i64,
        migrate_to: Option<Option<NodeId>>,
    ) {
        let Some(info) = self.cluster.pod_info(pod) else {
            return;
        };
        let pdbs: Vec<(String, String)> = self
            .cluster
            .pdbs_for(info)
            .map(|p| (p.namespace.clone(), p.name.clone()))
            .collect();
        let (workload, requests) = (info.workload.to_string(), info.requests);
        for key in pdbs {
            *self.pdb_spent.entry(key).or_default() += 1;
        }
        if let Some(destination) = migrate_to {
            self.migrations.retain(|_, m| t - m.at < 86_400_000);
            self.migrations.insert(
                workload,
                crate::engine::Migration {
                    at: t,
                    source,
                    destination,
                    requests,
                },
            );
        }
    }
}
