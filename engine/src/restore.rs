//! Actions that did not happen as decided (retracted after the actuator failed), actions
//! taken before this engine started (restored from the audit log), and the evidence
//! horizon a live feed sets so that a backlog is never acted on.

use crate::cluster::NodeId;
use crate::decision::{Decision, Outcome};
use crate::engine::Engine;
use crate::limits;
use fulcrum_policies::spec::Mode;

/// How long a restored target stays barred from another action by the same policy: the
/// window the operator restores from the audit topic (24 h).
pub const RESTORED_TARGET_TTL_MS: i64 = 24 * 3_600_000;

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
        {
            self.forget_placement(id, decision.at);
            if let Some(state) = self.pods.get_mut(id.index()).and_then(Option::as_mut) {
                state.acted = false;
            }
        }
    }

    /// Undoes what an action recorded for placement: its migration (so the workload is not
    /// taken for one that ping-pongs) and the disruption it spent of its budgets.
    fn forget_placement(&mut self, pod: crate::cluster::PodId, at: i64) {
        let Some(info) = self.cluster.pod_info(pod) else {
            return;
        };
        if self
            .migrations
            .get(info.workload.as_str())
            .is_some_and(|m| m.at == at)
        {
            self.migrations.remove(info.workload.as_str());
        }
        let budgets: Vec<(String, String)> = self
            .cluster
            .pdbs_for(info)
            .map(|p| (p.namespace.clone(), p.name.clone()))
            .collect();
        for key in budgets {
            if let Some(spent) = self.pdb_spent.get_mut(&key) {
                *spent = (*spent - 1).max(0);
            }
        }
    }

    /// Restores an action taken before this engine started (from the audit log): it counts
    /// against limits, starts the node's cooldown, and its target is never acted on again
    /// by the same policy. Blocked decisions are ignored. A DryRun decision is restored
    /// only into a policy that is still in DryRun (a dry run consumes nothing Enforce
    /// needs); an Executed one counts whatever the policy's mode is now.
    pub fn restore(&mut self, decision: &Decision) {
        self.restore_with_workload(decision, None);
    }

    /// [`Engine::restore`] with the target's workload as recorded when the decision was
    /// made: it is what the action counts against when the pod is gone from the cluster
    /// view by now (the usual case after an eviction), instead of the pod's own name.
    pub fn restore_with_workload(&mut self, decision: &Decision, workload: Option<&str>) {
        let dry = match decision.outcome {
            Outcome::Blocked => return,
            Outcome::DryRun => true,
            Outcome::Executed => false,
        };
        let (namespace, workload) = self.target_workload(&decision.target, workload);
        let node = self
            .cluster
            .node_id(&decision.node)
            .unwrap_or(NodeId(u32::MAX));
        let Some(slot) = self
            .policies
            .iter_mut()
            .find(|s| s.policy.name == decision.policy)
        else {
            return;
        };
        if dry && slot.policy.spec.mode != Mode::DryRun {
            return;
        }
        let record = limits::ActionRecord {
            at: decision.at,
            node,
            workload,
            namespace,
            target: decision.target.clone(),
        };
        if let Some(real) = slot.enforce_ledger.as_mut().filter(|_| !dry) {
            real.record(record.clone());
        }
        slot.ledger.record(record);
        let key = (decision.policy.clone(), decision.target.clone());
        let targets = if dry {
            &mut self.dry_acted_targets
        } else {
            &mut self.acted_targets
        };
        let at = targets.entry(key).or_insert(decision.at);
        *at = (*at).max(decision.at);
        if let Some(state) = self.nodes.get_mut(node.index()).and_then(Option::as_mut) {
            state.note_action(decision.at, decision.outcome);
        }
    }

    /// An Executed decision whose intent is in the audit log but whose result is not (the
    /// process stopped between the two). Restored as an action, unless its target still
    /// exists with the UID recorded at the decision and is not terminating: then the
    /// eviction did not take effect, nothing is restored, and the episode may decide again
    /// (an eviction carries the UID as a precondition, so it can never disrupt a
    /// replacement). Without a recorded UID it is restored. Returns whether it was.
    pub fn restore_unsettled(
        &mut self,
        decision: &Decision,
        target_uid: Option<&str>,
        workload: Option<&str>,
    ) -> bool {
        let untouched = target_uid.is_some_and(|uid| {
            decision
                .target
                .split_once('/')
                .and_then(|(ns, name)| self.cluster.pod_id(ns, name))
                .and_then(|id| self.cluster.pod_info(id))
                .is_some_and(|info| !uid.is_empty() && info.uid == uid && !info.terminating)
        });
        if untouched {
            return false;
        }
        self.restore_with_workload(decision, workload);
        true
    }

    /// The namespace and workload key of `namespace/name`: the workload recorded with the
    /// decision, else the pod's workload when the cluster view knows it, else the pod
    /// itself.
    fn target_workload(&self, target: &str, recorded: Option<&str>) -> (String, String) {
        match target.split_once('/') {
            Some((ns, name)) => {
                let known = || {
                    self.cluster
                        .pod_id(ns, name)
                        .and_then(|id| self.cluster.pod_info(id))
                        .map(|i| i.workload.to_string())
                };
                let workload = recorded
                    .filter(|w| !w.is_empty())
                    .map(str::to_owned)
                    .or_else(known)
                    .unwrap_or_else(|| format!("{ns}/Pod/{name}"));
                (ns.to_owned(), workload)
            }
            None => (String::new(), target.to_owned()),
        }
    }

    /// Forgets restored targets acted on more than [`RESTORED_TARGET_TTL_MS`] before `now`
    /// (the audit restore reads no further back), so churn does not grow them for ever.
    pub(crate) fn prune_restored(&mut self, now: i64) {
        let keep = |at: &mut i64| now.saturating_sub(*at) < RESTORED_TARGET_TTL_MS;
        self.acted_targets.retain(|_, at| keep(at));
        self.dry_acted_targets.retain(|_, at| keep(at));
    }

    /// True when a restored action of `policy` (in `mode`) on `target` forbids another.
    pub(crate) fn restored_acted(&self, policy: &str, target: &str, mode: Mode) -> bool {
        let key = (policy.to_owned(), target.to_owned());
        self.acted_targets.contains_key(&key)
            || (mode == Mode::DryRun && self.dry_acted_targets.contains_key(&key))
    }

    /// Blocks decisions about evidence older than `min_at` (ms). A live feed sets it to
    /// "now minus the largest acceptable evidence age" so a backlog is never acted on.
    pub fn set_horizon(&mut self, min_at: i64) {
        self.horizon = min_at;
    }
}
