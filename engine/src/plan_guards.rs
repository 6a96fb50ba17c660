//! The guards a plan passes before anything is acted on: breakers (and skipping
//! attribution while a reported one holds), the episode's cooldown, the policy's limits
//! per node, in total, per workload and per namespace, and PodDisruptionBudgets.

use crate::cluster::{NodeId, PodId};
use crate::engine::Engine;
use crate::limits::fmt_ms;
use crate::planner::Context;

impl Engine {
    /// An episode that a breaker blocked (the Blocked decision is reported) while a breaker
    /// still holds: attribution would be blocked again, whatever it found, so it is not
    /// run. The stability streak starts over, so once the breakers close the main
    /// explanation must again hold for `stable_evaluations` evaluations before anything is
    /// acted on.
    pub(crate) fn breaker_holds_after_report(
        &mut self,
        p: u16,
        node: NodeId,
        t: i64,
        episode: u64,
    ) -> bool {
        if self.breaker_reported.get(&(p, node)) != Some(&episode) {
            return false;
        }
        if self.breaker(t).is_some() {
            self.streaks.remove(&(p, node));
            return true;
        }
        self.breaker_reported.remove(&(p, node));
        false
    }

    /// An episode that already acted waits out its cooldown quietly.
    pub(crate) fn episode_cooling_down(&self, p: u16, node: NodeId, t: i64, episode: u64) -> bool {
        let cooldown = self.policies[p as usize].policy.spec.limits.cooldown_ms as i64;
        let node_state = self.nodes[node.index()].as_ref();
        let episode_acted = node_state
            .and_then(|n| n.episodes.iter().find(|e| e.id == episode))
            .is_some_and(|e| e.acted);
        episode_acted
            && node_state
                .and_then(|n| n.last_action_for(self.policies[p as usize].policy.spec.mode))
                .is_some_and(|last| t - last < cooldown)
    }

    /// A guard that blocks every action of the policy on this node now: a breaker, the
    /// node's cooldown, or a per-node or total limit. Returns the guard's kind and reason.
    pub(crate) fn policy_guard(&self, ctx: &Context<'_>) -> Option<(&'static str, String)> {
        let (t, node) = (ctx.t, ctx.node);
        if let Some(reason) = self.breaker(t) {
            return Some(("breaker", reason));
        }
        let limits = self.policies[ctx.p as usize].policy.spec.limits;
        if let Some(last) = self.nodes[node.index()]
            .as_ref()
            .and_then(|n| n.last_action_for(self.policies[ctx.p as usize].policy.spec.mode))
            && t - last < limits.cooldown_ms as i64
        {
            let reason = format!(
                "cooldown: the last action on this node was {} ago (cooldown {})",
                fmt_ms(t.saturating_sub(last).max(0) as u64),
                fmt_ms(limits.cooldown_ms)
            );
            return Some(("cooldown", reason));
        }
        let ledger = &self.policies[ctx.p as usize].ledger;
        let (hit, used, limit) = ledger.node_or_total_hit(t, node, &limits)?;
        Some((hit.field(), limit_reason(hit.field(), used, limit)))
    }

    /// A guard that blocks acting on `pod`: a per-workload or per-namespace limit, or a
    /// PodDisruptionBudget that allows no disruption. Returns the guard's kind and reason.
    pub(crate) fn target_guard(
        &self,
        ctx: &Context<'_>,
        pod: PodId,
    ) -> Option<(&'static str, String)> {
        let info = self.cluster.pod_info(pod)?;
        let limits = self.policies[ctx.p as usize].policy.spec.limits;
        let ledger = &self.policies[ctx.p as usize].ledger;
        if let Some((hit, used, limit)) =
            ledger.target_hit(ctx.t, &info.workload, &info.namespace, &limits)
        {
            return Some((hit.field(), limit_reason(hit.field(), used, limit)));
        }
        self.cluster
            .pdbs_for(info)
            .find(|pdb| {
                let spent = self
                    .pdb_spent
                    .get(&(pdb.namespace.clone(), pdb.name.clone()))
                    .copied()
                    .unwrap_or(0);
                pdb.disruptions_allowed.is_some_and(|d| d - spent <= 0)
            })
            .map(|pdb| {
                let reason = format!(
                    "PodDisruptionBudget {}/{} allows no disruption now",
                    pdb.namespace, pdb.name
                );
                ("pdb", reason)
            })
    }
}

/// The reason a limit blocks: `field: used of count actions already in the last window`.
fn limit_reason(field: &str, used: u32, limit: fulcrum_policies::compile::WindowLimit) -> String {
    format!(
        "{field}: {used} of {} actions already in the last {}",
        limit.count,
        fmt_ms(limit.window_ms)
    )
}
