//! Shared-resource headroom for victims: a hog of `R` is never migrated onto a node whose
//! victims are sensitive to `R` if that takes the node into `R`-territory it has not been
//! seen to carry with those victims calm.
//!
//! Victim-scope triggers (a latency, a CPI) cannot be predicted from usage, so the rule is
//! empirical and conservative. For each additive metric `R` of the hog's load (see
//! [`crate::headroom`]), the victims on the destination that matter are those of the
//! policies whose `attribution.metrics` include `R`. Over the window, an epoch is **calm**
//! when every such victim reported, in it, a value of each armed victim-scope trigger
//! metric of its policy (a trigger that cannot hold yet, an outlier whose baseline lacks
//! `minSamples`, is skipped) at or below the trigger's threshold (its `above`, or the
//! current learned threshold). The node's **tolerated** usage of `R` is the highest it
//! carried in a calm epoch (its own series of `R`, else the sum of its pods' series). The
//! node is rejected when its predicted usage, its current usage plus the hog's, is above
//! the tolerated one, or when it has fewer calm epochs than
//! `EngineConfig::min_correlation_points` (no history to go by).
//!
//! Applied only with `EngineConfig::victim_headroom` (off by default).

use fulcrum_policies::MetricId;
use fulcrum_policies::spec::TriggerScope;

use crate::cluster::{NodeId, PodId};
use crate::engine::Engine;
use crate::headroom::Placing;
use crate::state::{PodState, Role};

/// A victim on the destination, of a policy attributing on the hog's resource.
struct Sensitive<'a> {
    pod: PodId,
    state: &'a PodState,
    policy: u16,
}

impl Engine {
    /// Why `placing` on `dest` would take its victims past what the node has tolerated.
    pub(crate) fn untolerated(&self, placing: Placing<'_>, dest: NodeId) -> Option<String> {
        for load in placing.load {
            let victims = self.sensitive(dest, load.metric);
            let Some(first) = victims.first() else {
                continue;
            };
            let predicted = self.node_usage(dest, load.metric, placing) + load.usage;
            let (tolerated, calm) = self.tolerated(dest, load.metric, &victims, placing);
            let resource = self.registry.name(load.metric);
            let who = format!(
                "victim {} of {}",
                self.cluster
                    .pod_info(first.pod)
                    .map_or_else(|| "?".into(), |i| i.key()),
                self.policies[first.policy as usize].policy.name
            );
            if calm < self.config.min_correlation_points {
                return Some(format!(
                    "{resource} would reach {predicted:.3} with the pod's ({:.3}) and the node has {calm} calm points of {who} ({} needed) to show it tolerates that",
                    load.usage, self.config.min_correlation_points
                ));
            }
            if predicted > tolerated {
                return Some(format!(
                    "{resource} would reach {predicted:.3} with the pod's ({:.3}) above the {tolerated:.3} the node carried with {who} calm",
                    load.usage
                ));
            }
        }
        None
    }

    /// The victims on `node` of the policies whose attribution metrics include `m`.
    fn sensitive(&self, node: NodeId, m: MetricId) -> Vec<Sensitive<'_>> {
        let mut out = Vec::new();
        for &pod in self.cluster.node_pods(node) {
            let Some(state) = self.pods.get(pod.index()).and_then(Option::as_ref) else {
                continue;
            };
            for &(policy, role) in &state.roles {
                let spec = &self.policies[policy as usize].policy.spec;
                if role == Role::Victim && spec.attribution.metrics.contains(&m) {
                    out.push(Sensitive { pod, state, policy });
                }
            }
        }
        out
    }

    /// The highest usage of `m` on `node` in a calm epoch of the window, and how many calm
    /// epochs with a usage there were.
    fn tolerated(
        &self,
        node: NodeId,
        m: MetricId,
        victims: &[Sensitive<'_>],
        placing: Placing<'_>,
    ) -> (f64, usize) {
        let own = self
            .nodes
            .get(node.index())
            .and_then(Option::as_ref)
            .and_then(|s| s.series(m));
        let pods: Vec<_> = self
            .cluster
            .node_pods(node)
            .iter()
            .filter_map(|p| self.pods.get(p.index())?.as_ref()?.series(m))
            .collect();
        let Some(any) = own.or_else(|| pods.first().copied()) else {
            return (0.0, 0);
        };
        let usage_at = |epoch: i64| match own {
            Some(s) => s.at(epoch),
            None => pods
                .iter()
                .filter_map(|s| s.at(epoch))
                .map(|v| v.max(0.0))
                .reduce(|a, b| a + b),
        };
        any.epochs(placing.t, placing.window)
            .filter(|&epoch| victims.iter().all(|v| self.calm(v, epoch)))
            .filter_map(usage_at)
            .fold((f64::NEG_INFINITY, 0), |(most, n), u| (most.max(u), n + 1))
    }

    /// True when no armed victim-scope trigger of the victim's policy held in `epoch`
    /// (each was reported, at or below its threshold).
    fn calm(&self, v: &Sensitive<'_>, epoch: i64) -> bool {
        let triggers = &self.policies[v.policy as usize].policy.spec.triggers;
        v.state
            .tracks
            .iter()
            .filter(|t| t.policy == v.policy)
            .filter(|t| triggers[t.trigger as usize].scope == TriggerScope::Victim)
            .filter_map(|t| Some((t, self.armed_threshold(t)?)))
            .all(|(t, threshold)| {
                v.state
                    .series(t.metric)
                    .and_then(|s| s.at(epoch))
                    .is_some_and(|value| value <= threshold)
            })
    }
}
