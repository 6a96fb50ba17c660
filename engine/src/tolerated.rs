//! Victim headroom, from evidence: a hog of `R` is never migrated onto a node whose
//! victims are sensitive to `R` if that takes the node to the level of `R` that is known to
//! make victims cross a trigger.
//!
//! Victim-scope triggers (a latency, a CPI) cannot be predicted from usage, but the episode
//! being mitigated is evidence: the attribution just made says the hog's `R` on the
//! **source** node drove a victim there over its trigger. That level, the source node's
//! usage of `R` over the decision's window (its own series of `R`, else the sum of its
//! pods' series, as [`crate::headroom`] computes a node's current usage), is taken as one
//! that victims sensitive to `R` do not tolerate. For each additive metric `R` of the hog's
//! load, the victims on the destination that matter are those of any policy whose
//! `attribution.metrics` include `R`; when there is one, the node is rejected if its
//! predicted usage, its current usage plus the hog's, reaches the source's level (`>=`).
//! Nodes with no such victim are not affected; no history is needed.

use fulcrum_policies::MetricId;

use crate::cluster::{NodeId, PodId};
use crate::engine::Engine;
use crate::headroom::{Crossing, Placing, Untolerated};
use crate::state::Role;

impl Engine {
    /// Why `placing` on `dest` would take its victims to the level of the pod's resource
    /// that made victims cross a trigger on the source node.
    pub(crate) fn untolerated(&self, placing: &Placing<'_>, dest: NodeId) -> Option<Crossing> {
        for load in placing.load {
            let Some((victim, policy)) = self.sensitive(dest, load.metric) else {
                continue;
            };
            let predicted = self.node_usage(dest, load.metric, placing) + load.usage;
            let source = self.node_usage(placing.source, load.metric, placing);
            if predicted < source {
                continue;
            }
            return Some(Crossing::Untolerated(Untolerated {
                load: *load,
                predicted,
                source,
                victim,
                policy,
            }));
        }
        None
    }

    /// An [`Untolerated`] crossing, in words.
    pub(crate) fn describe_untolerated(&self, placing: &Placing<'_>, why: Untolerated) -> String {
        let Untolerated {
            load,
            predicted,
            source,
            victim,
            policy,
        } = why;
        let source_name = self
            .cluster
            .node_info(placing.source)
            .map_or_else(|| "?".into(), |n| n.name.clone());
        format!(
            "{} would reach {predicted:.3} with the pod's ({:.3}), at or above the {source:.3} on {source_name} that made its victims cross a trigger, next to victim {} of {}",
            self.registry.name(load.metric),
            load.usage,
            self.cluster
                .pod_info(victim)
                .map_or_else(|| "?".into(), |i| i.key()),
            self.policies[policy as usize].policy.name
        )
    }

    /// The first victim on `node` of a policy whose attribution metrics include `m`.
    fn sensitive(&self, node: NodeId, m: MetricId) -> Option<(PodId, u16)> {
        self.cluster.node_pods(node).iter().find_map(|&pod| {
            let state = self.pods.get(pod.index())?.as_ref()?;
            state.roles.iter().find_map(|&(policy, role)| {
                let spec = &self.policies[policy as usize].policy.spec;
                (role == Role::Victim && spec.attribution.metrics.contains(&m))
                    .then_some((pod, policy))
            })
        })
    }
}
