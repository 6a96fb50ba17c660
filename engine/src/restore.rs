//! Actions that did not happen as decided (retracted after the actuator failed), actions
//! taken before this engine started (restored from the audit log), and the evidence
//! horizon a live feed sets so that a backlog is never acted on.

use crate::cluster::NodeId;
use crate::decision::{Decision, Outcome};
use crate::engine::Engine;
use crate::limits;

impl Engine {
    /// The actuator could not carry out an Executed decision (for example the Eviction API
    /// answered 429 because of a PodDisruptionBudget): the action no longer counts against
    /// limits, the pod may be targeted again, and its episode may decide again.
    pub fn retract(&mut self, decision: &Decision) {
        if decision.outcome != Outcome::Executed {
            return;
        }
        if let Some(slot) = self
            .policies
            .iter_mut()
            .find(|s| s.policy.name == decision.policy)
            && slot.ledger.retract(&decision.target)
        {
            let counter = match decision.action {
                fulcrum_policies::spec::Action::Evict => &mut slot.stats.evicted,
                fulcrum_policies::spec::Action::Migrate => &mut slot.stats.migrated,
            };
            *counter = counter.saturating_sub(1);
            slot.stats.blocked += 1;
            self.stats.executed = self.stats.executed.saturating_sub(1);
            self.stats.blocked += 1;
        }
        if let Some(node) = self.cluster.node_id(&decision.node)
            && let Some(state) = self.nodes.get_mut(node.index()).and_then(Option::as_mut)
        {
            if state.last_action == Some(decision.at) {
                state.last_action = None;
            }
            // The episode may decide again (a PodDisruptionBudget refusal is retried while
            // the episode lasts, through the limits and guards like any decision).
            for episode in state
                .episodes
                .iter_mut()
                .filter(|e| e.id == decision.explanation.episode)
            {
                episode.acted = false;
            }
        }
        if let Some((ns, name)) = decision.target.split_once('/')
            && let Some(id) = self.cluster.pod_id(ns, name)
            && let Some(state) = self.pods.get_mut(id.index()).and_then(Option::as_mut)
        {
            state.acted = false;
        }
    }

    /// Restores an action taken before this engine started (from the audit log): it counts
    /// against limits, and its target is never acted on again by the same policy. Blocked
    /// decisions are ignored.
    pub fn restore(&mut self, decision: &Decision) {
        if decision.outcome == Outcome::Blocked {
            return;
        }
        let Some(slot) = self
            .policies
            .iter_mut()
            .find(|s| s.policy.name == decision.policy)
        else {
            return;
        };
        let (namespace, workload) = match decision.target.split_once('/') {
            Some((ns, name)) => {
                let workload = self
                    .cluster
                    .pod_id(ns, name)
                    .and_then(|id| self.cluster.pod_info(id))
                    .map_or_else(|| format!("{ns}/Pod/{name}"), |i| i.workload.clone());
                (ns.to_owned(), workload)
            }
            None => (String::new(), decision.target.clone()),
        };
        let node = self
            .cluster
            .node_id(&decision.node)
            .unwrap_or(NodeId(u32::MAX));
        slot.ledger.record(limits::ActionRecord {
            at: decision.at,
            node,
            workload,
            namespace,
            target: decision.target.clone(),
        });
        self.acted_targets
            .insert((decision.policy.clone(), decision.target.clone()));
        if let Some(state) = self.nodes.get_mut(node.index()).and_then(Option::as_mut) {
            state.last_action = Some(
                state
                    .last_action
                    .map_or(decision.at, |t| t.max(decision.at)),
            );
        }
    }
    /// Blocks decisions about evidence older than `min_at` (ms). A live feed sets it to
    /// "now minus the largest acceptable evidence age" so a backlog is never acted on.
    pub fn set_horizon(&mut self, min_at: i64) {
        self.horizon = min_at;
    }
}
