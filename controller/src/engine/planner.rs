//! Evaluation of a node at a point in event time: which policies fire, episode
//! bookkeeping, and planning one safe action with every guard and limit applied.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use fulcrum_policies::compile::Condition;
use fulcrum_policies::spec::{Action, Mode, TriggerScope};
use smallvec::SmallVec;

use super::Engine;
use super::attribution::Scored;
use super::cluster::{NodeId, PodId, Resources};
use super::decision::{BaselineEvidence, Decision, Event, Evidence, Explanation, Outcome};
use super::limits::{ActionRecord, fmt_ms};
use super::series::Baseline;
use super::state::{Episode, Role};

/// Priority at and above which pods are system-critical and never acted on.
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// A trigger that holds on a node for a policy.
#[derive(Clone, Debug)]
struct Firing {
    trigger: u16,
    victim: Option<PodId>,
    since: i64,
    value: f64,
    threshold: f64,
    baseline: Option<Baseline>,
}

impl Engine {
    /// Evaluates `node` at event time `t`: fires triggers, opens and closes episodes, plans.
    pub(crate) fn evaluate(&mut self, node: NodeId, t: i64, out: &mut Vec<super::Event>) {
        let Some(covering) = self
            .nodes
            .get(node.index())
            .and_then(Option::as_ref)
            .map(|n| n.covering.clone())
        else {
            return;
        };
        let firings: SmallVec<[(u16, Option<Firing>, bool); 4]> = covering
            .iter()
            .map(|&p| {
                let (firing, holding) = self.firing(p, node, t);
                (p, firing, holding)
            })
            .collect();
        let Some(state) = self.nodes.get_mut(node.index()).and_then(Option::as_mut) else {
            return;
        };
        let node_name = || {
            self.cluster
                .node_info(node)
                .map(|n| n.name.clone())
                .unwrap_or_default()
        };
        let mut open: SmallVec<[(u16, u64, Firing); 2]> = SmallVec::new();
        for (p, firing, holding) in firings {
            let slot = &mut self.policies[p as usize];
            let spec = &slot.policy.spec;
            let existing = state.episodes.iter().position(|e| e.policy == p);
            match (firing, existing) {
                (Some(f), None) => {
                    let id = self.next_episode;
                    self.next_episode += 1;
                    state.episodes.push(Episode {
                        policy: p,
                        id,
                        started: t,
                        clear_since: None,
                        reported: SmallVec::new(),
                        acted: false,
                    });
                    self.stats.detections += 1;
                    slot.stats.detections += 1;
                    out.push(Event::Detected {
                        at: t,
                        policy: slot.policy.name.clone(),
                        node: node_name(),
                        trigger: spec.triggers[f.trigger as usize].name.clone(),
                        victim: f
                            .victim
                            .and_then(|v| self.cluster.pod_info(v))
                            .map(|i| i.key()),
                        episode: id,
                    });
                    open.push((p, id, f));
                }
                (Some(f), Some(i)) => {
                    state.episodes[i].clear_since = None;
                    open.push((p, state.episodes[i].id, f));
                }
                // A condition still holds (not yet sustained again): not clear.
                (None, Some(i)) if holding => state.episodes[i].clear_since = None,
                (None, Some(i)) => {
                    let episode = &mut state.episodes[i];
                    let since = *episode.clear_since.get_or_insert(t);
                    if t - since >= spec.clear_for_ms as i64 {
                        let episode = state.episodes.remove(i);
                        self.stats.recoveries += 1;
                        out.push(Event::Recovered {
                            at: t,
                            policy: slot.policy.name.clone(),
                            node: node_name(),
                            episode: episode.id,
                            lasted_ms: t - episode.started,
                        });
                    }
                }
                (None, None) => {}
            }
        }
        for (p, episode, firing) in open {
            if self.plan(p, node, t, episode, &firing, out) {
                break; // one action per node at a time
            }
        }
    }

    fn node_name(&self, node: NodeId) -> String {
        self.cluster
            .node_info(node)
            .map(|n| n.name.clone())
            .unwrap_or_default()
    }

    /// The trigger of policy `p` that fires on `node` at `t` (earliest run first), and
    /// whether any of its trigger conditions holds at all (sustained or not).
    fn firing(&self, p: u16, node: NodeId, t: i64) -> (Option<Firing>, bool) {
        let spec = &self.policies[p as usize].policy.spec;
        let stale = self.config.stale_after_ms;
        let mut best: Option<Firing> = None;
        let mut holding = false;
        let mut consider = |track: &super::state::Track, victim: Option<PodId>| {
            if track.policy != p {
                return;
            }
            holding |= track.holding(t, stale);
            let trigger = &spec.triggers[track.trigger as usize];
            if !track.fired(t, trigger.sustained_for_ms, stale) {
                return;
            }
            let since = track.since.unwrap_or(t);
            if best
                .as_ref()
                .is_none_or(|b| (since, track.trigger) < (b.since, b.trigger))
            {
                best = Some(Firing {
                    trigger: track.trigger,
                    victim,
                    since,
                    value: track.last_value,
                    threshold: track.threshold,
                    baseline: track.baseline,
                });
            }
        };
        let Some(node_state) = self.nodes.get(node.index()).and_then(Option::as_ref) else {
            return (None, false);
        };
        for track in &node_state.tracks {
            consider(track, None);
        }
        for &pod in self.cluster.node_pods(node) {
            let Some(state) = self.pods.get(pod.index()).and_then(Option::as_ref) else {
                continue;
            };
            if state.role(p) == Some(Role::Victim) {
                for track in &state.tracks {
                    consider(track, Some(pod));
                }
            }
        }
        (best, holding)
    }

    /// Why pod `pod` may not be acted on by policy `p` at `t`, if it may not.
    pub(crate) fn exclusion(&self, p: u16, pod: PodId, t: i64) -> Option<Exclusion> {
        let (Some(info), Some(state)) = (
            self.cluster.pod_info(pod),
            self.pods.get(pod.index()).and_then(Option::as_ref),
        ) else {
            return Some(Exclusion::for_now("unknown to the cluster view"));
        };
        let spec = &self.policies[p as usize].policy.spec;
        let policy = &self.policies[p as usize].policy.name;
        let never = Exclusion::never;
        let for_now = Exclusion::for_now;
        Some(if state.is_victim() {
            never("a victim of a policy covering the node")
        } else if info.is_daemonset() {
            never("a DaemonSet pod")
        } else if info.mirror {
            never("a static (mirror) pod")
        } else if info.namespace == "kube-system" {
            never("in kube-system")
        } else if info.protected {
            never("annotated fulcrum.dev/protect: \"true\"")
        } else if info.priority >= SYSTEM_CRITICAL_PRIORITY {
            never("of system-critical priority")
        } else if info.is_bare() && !spec.eviction.evict_bare_pods {
            never("a bare pod (no controller would recreate it; see eviction.evictBarePods)")
        } else if info.local_storage && !spec.eviction.evict_local_storage_pods {
            never("using emptyDir storage (see eviction.evictLocalStoragePods)")
        } else if info.terminating || !info.running {
            for_now("not running")
        } else if state.acted || self.acted_targets.contains(&(policy.clone(), info.key())) {
            // Not again; if interference persists, comparable contributors may be next.
            never("already acted on")
        } else if info
            .created_ms
            .is_some_and(|c| t - c < spec.limits.min_pod_age_ms as i64)
        {
            for_now(&format!(
                "younger than minPodAge ({})",
                fmt_ms(spec.limits.min_pod_age_ms)
            ))
        } else if state
            .last_ts
            .is_none_or(|l| t - l > self.config.stale_after_ms as i64)
        {
            for_now("without recent samples")
        } else {
            return None;
        })
    }

    /// Plans an action for policy `p` on `node`; returns true when one was decided.
    fn plan(
        &mut self,
        p: u16,
        node: NodeId,
        t: i64,
        episode: u64,
        firing: &Firing,
        out: &mut Vec<Event>,
    ) -> bool {
        let spec = &self.policies[p as usize].policy.spec;
        let trigger = &spec.triggers[firing.trigger as usize];
        let signal = match (trigger.scope, firing.victim) {
            (TriggerScope::Victim, Some(v)) => self
                .pods
                .get(v.index())
                .and_then(Option::as_ref)
                .and_then(|s| s.series(trigger.metric)),
            _ => self
                .nodes
                .get(node.index())
                .and_then(Option::as_ref)
                .and_then(|s| s.series(trigger.metric)),
        };
        let scored = self.score_candidates(p, node, t, signal);
        // The main culprit: the first blamed candidate in policy order, excluded or not.
        let main = scored.iter().find(|s| s.qualifies);
        let culprits: Vec<&Scored> = scored
            .iter()
            .filter(|s| s.qualifies && s.excluded.is_none())
            .collect();
        if main.is_none() {
            self.stats.unattributed += 1;
            return false;
        }
        let explanation = Explanation {
            episode,
            evidence: self.evidence(p, firing, t),
            method: format!("{:?}", spec.attribution.method),
            scores: self.render_scores(p, &scored),
            guard: String::new(),
        };
        let ctx = Context {
            p,
            node,
            t,
            episode,
            firing,
            explanation: &explanation,
        };

        // An episode that already acted waits out its cooldown quietly.
        let node_state = self.nodes[node.index()].as_ref();
        let episode_acted = node_state
            .and_then(|n| n.episodes.iter().find(|e| e.id == episode))
            .is_some_and(|e| e.acted);
        if episode_acted
            && node_state
                .and_then(|n| n.last_action)
                .is_some_and(|last| t - last < spec.limits.cooldown_ms as i64)
        {
            return false;
        }
        // A main culprit that cannot be acted on *yet* (too young, not running, without
        // recent samples): wait for it rather than act on a lesser contributor that is not the
        // cause. One excluded for good (protected, DaemonSet, ...) lets comparable
        // contributors (see `min_relative_score`) be tried.
        if let Some(main) = main
            && let Some(exclusion) = main.excluded.as_ref().filter(|e| e.temporary)
        {
            let reason = format!("waiting: the main culprit is {}", exclusion.reason);
            self.blocked(&ctx, main.pod, "main-culprit-waits", reason, out);
            return false;
        }
        let Some(first) = culprits.first() else {
            self.stats.unattributed += 1;
            return false;
        };
        // Policy-wide guards: the top culprit carries the blocked decision.
        let top = first.pod;
        if let Some(reason) = self.breaker(t) {
            self.blocked(&ctx, top, "breaker", reason, out);
            return false;
        }
        let limits = spec.limits;
        if let Some(last) = self.nodes[node.index()]
            .as_ref()
            .and_then(|n| n.last_action)
            && t - last < limits.cooldown_ms as i64
        {
            let reason = format!(
                "cooldown: the last action on this node was {} ago (cooldown {})",
                fmt_ms((t - last) as u64),
                fmt_ms(limits.cooldown_ms)
            );
            self.blocked(&ctx, top, "cooldown", reason, out);
            return false;
        }
        let ledger = &self.policies[p as usize].ledger;
        if let Some((hit, used, limit)) = ledger.node_or_total_hit(t, node, &limits) {
            let reason = format!(
                "{}: {used} of {} actions already in the last {}",
                hit.field(),
                limit.count,
                fmt_ms(limit.window_ms)
            );
            self.blocked(&ctx, top, hit.field(), reason, out);
            return false;
        }
        for culprit in culprits {
            let pod = culprit.pod;
            let Some(info) = self.cluster.pod_info(pod) else {
                continue;
            };
            let ledger = &self.policies[p as usize].ledger;
            if let Some((hit, used, limit)) =
                ledger.target_hit(t, &info.workload, &info.namespace, &limits)
            {
                let reason = format!(
                    "{}: {used} of {} actions already in the last {}",
                    hit.field(),
                    limit.count,
                    fmt_ms(limit.window_ms)
                );
                self.blocked(&ctx, pod, hit.field(), reason, out);
                continue;
            }
            let pdb_block = self
                .cluster
                .pdbs_for(info)
                .find(|pdb| pdb.disruptions_allowed.is_some_and(|d| d <= 0))
                .map(|pdb| {
                    format!(
                        "PodDisruptionBudget {}/{} allows no disruption now",
                        pdb.namespace, pdb.name
                    )
                });
            if let Some(reason) = pdb_block {
                self.blocked(&ctx, pod, "pdb", reason, out);
                continue;
            }
            let action =
                self.policies[p as usize].policy.spec.candidates[culprit.class as usize].action;
            let destination = match action {
                Action::Evict => None,
                Action::Migrate => match self.destination(pod, node, t) {
                    Ok(dest) => Some(dest),
                    Err(reason) => {
                        self.blocked(&ctx, pod, "placement", reason, out);
                        continue;
                    }
                },
            };
            self.act(&ctx, culprit, action, destination, out);
            return true;
        }
        false
    }

    fn evidence(&self, p: u16, firing: &Firing, t: i64) -> Evidence {
        let spec = &self.policies[p as usize].policy.spec;
        let trigger = &spec.triggers[firing.trigger as usize];
        let baseline = match trigger.condition {
            Condition::Outlier { sigma, .. } => firing.baseline.map(|b| BaselineEvidence {
                mean: b.mean,
                std: b.std,
                sigma,
                samples: b.count,
            }),
            Condition::Above(_) => None,
        };
        Evidence {
            scope: trigger.scope,
            metric: self.registry.name(trigger.metric).to_owned(),
            value: firing.value,
            threshold: firing.threshold,
            baseline,
            since: firing.since,
            held_ms: t - firing.since,
            window_ms: spec.attribution.window_ms,
        }
    }

    /// True when some trigger condition currently holds on `node` (on the node or on one
    /// of its victims), sustained or not, with fresh data. Used by the storm breaker (nodes
    /// that fire together are counted before any of them acts) and by placement.
    fn under_pressure(&self, node: NodeId, t: i64) -> bool {
        let stale = self.config.stale_after_ms as i64;
        let holding =
            |track: &super::state::Track| track.since.is_some() && t - track.last_ts <= stale;
        let Some(state) = self.nodes.get(node.index()).and_then(Option::as_ref) else {
            return false;
        };
        state.tracks.iter().any(holding)
            || self.cluster.node_pods(node).iter().any(|pod| {
                self.pods
                    .get(pod.index())
                    .and_then(Option::as_ref)
                    .is_some_and(|s| s.tracks.iter().any(holding))
            })
    }

    /// The storm and stale-feed breakers: a reason not to act anywhere, if one holds.
    fn breaker(&self, t: i64) -> Option<String> {
        if t < self.horizon {
            return Some(format!(
                "catching up: the evidence is {} older than the newest acceptable ({})",
                fmt_ms((self.horizon - t) as u64),
                "see --max-evidence-age"
            ));
        }
        let stale_after = self.config.stale_after_ms as i64;
        let (mut tracked, mut stale) = (0usize, 0usize);
        for state in self.nodes.iter().flatten() {
            if state.covering.is_empty() {
                continue;
            }
            if let Some(last) = state.last_ts {
                tracked += 1;
                if t - last > stale_after {
                    stale += 1;
                }
            }
        }
        if tracked > 0 && stale as f64 > self.config.stale_fraction * tracked as f64 {
            return Some(format!(
                "stale feed: {stale} of {tracked} reporting nodes have no samples in the last {}",
                fmt_ms(self.config.stale_after_ms)
            ));
        }
        let live = tracked - stale;
        let firing = self
            .cluster
            .node_ids()
            .filter(|n| self.under_pressure(*n, t))
            .count();
        if firing >= self.config.storm_min_nodes
            && firing as f64 > self.config.storm_fraction * live as f64
        {
            return Some(format!(
                "storm: {firing} of {live} live nodes have interference at once (more than {:.0}%); a systemic cause is likelier",
                self.config.storm_fraction * 100.0
            ));
        }
        None
    }

    /// The node a migrated pod's replacement would fit on, or why there is none.
    fn destination(&self, pod: PodId, source: NodeId, t: i64) -> Result<String, String> {
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

    fn decision(&self, ctx: &Context<'_>, pod: PodId, verdict: Verdict) -> Decision {
        let slot = &self.policies[ctx.p as usize];
        let spec = &slot.policy.spec;
        let mut explanation = ctx.explanation.clone();
        explanation.guard = verdict.guard;
        Decision {
            at: ctx.t,
            policy: slot.policy.name.clone(),
            node: self.node_name(ctx.node),
            trigger: spec.triggers[ctx.firing.trigger as usize].name.clone(),
            victim: ctx
                .firing
                .victim
                .and_then(|v| self.cluster.pod_info(v))
                .map(|i| i.key()),
            target: self
                .cluster
                .pod_info(pod)
                .map(|i| i.key())
                .unwrap_or_default(),
            action: verdict.action,
            mode: spec.mode,
            outcome: verdict.outcome,
            reason: verdict.reason,
            destination: verdict.destination,
            explanation,
        }
    }

    fn blocked(
        &mut self,
        ctx: &Context<'_>,
        pod: PodId,
        kind: &str,
        reason: String,
        out: &mut Vec<Event>,
    ) {
        let mut h = DefaultHasher::new();
        (self.cluster.pod_info(pod).map(|i| i.key()), kind).hash(&mut h);
        let key = h.finish();
        let Some(episode) = self.nodes[ctx.node.index()]
            .as_mut()
            .and_then(|n| n.episodes.iter_mut().find(|e| e.id == ctx.episode))
        else {
            return;
        };
        if episode.reported.contains(&key) {
            return;
        }
        episode.reported.push(key);
        let spec = &self.policies[ctx.p as usize].policy.spec;
        let class = self
            .pods
            .get(pod.index())
            .and_then(Option::as_ref)
            .and_then(|s| match s.role(ctx.p) {
                Some(Role::Candidate(c)) => Some(c),
                _ => None,
            })
            .unwrap_or(0);
        let action = spec.candidates[class as usize].action;
        let decision = self.decision(
            ctx,
            pod,
            Verdict {
                action,
                outcome: Outcome::Blocked,
                guard: format!("blocked by {kind}: {reason}"),
                reason,
                destination: None,
            },
        );
        self.stats.blocked += 1;
        self.policies[ctx.p as usize].stats.blocked += 1;
        out.push(Event::Decision(Box::new(decision)));
    }

    fn act(
        &mut self,
        ctx: &Context<'_>,
        culprit: &Scored,
        action: Action,
        destination: Option<String>,
        out: &mut Vec<Event>,
    ) {
        let pod = culprit.pod;
        let Some(info) = self.cluster.pod_info(pod) else {
            return;
        };
        let spec = &self.policies[ctx.p as usize].policy.spec;
        let limits = spec.limits;
        let mode = spec.mode;
        let ledger = &self.policies[ctx.p as usize].ledger;
        let guard = format!(
            "allowed: limits used before this action: {}",
            ledger.usage(ctx.t, ctx.node, &info.workload, &info.namespace, &limits)
        );
        let trigger = &spec.triggers[ctx.firing.trigger as usize];
        // The metric behind the score: the best correlated share (or share, for Usage).
        let weight = |m: &super::decision::MetricScore| match m.correlation {
            Some(r) => r.max(0.0) * m.share.unwrap_or(0.0),
            None => m.share.unwrap_or(0.0),
        };
        let best_metric = culprit
            .metrics
            .iter()
            .filter(|m| m.ignored.is_none())
            .max_by(|a, b| weight(a).total_cmp(&weight(b)))
            .map(|m| m.metric.clone())
            .unwrap_or_default();
        let reason = format!(
            "{} {} = {:.3} above {:.3} for {}; {} scores {:.2} on {} ({:?})",
            trigger.name,
            self.registry.name(trigger.metric),
            ctx.firing.value,
            ctx.firing.threshold,
            fmt_ms((ctx.t - ctx.firing.since) as u64),
            info.key(),
            culprit.score.unwrap_or(0.0),
            best_metric,
            spec.attribution.method,
        );
        let record = ActionRecord {
            at: ctx.t,
            node: ctx.node,
            workload: info.workload.clone(),
            namespace: info.namespace.clone(),
            target: info.key(),
        };
        let outcome = match mode {
            Mode::DryRun => Outcome::DryRun,
            Mode::Enforce => Outcome::Executed,
        };
        let decision = self.decision(
            ctx,
            pod,
            Verdict {
                action,
                outcome,
                reason,
                destination,
                guard,
            },
        );
        let slot = &mut self.policies[ctx.p as usize];
        slot.ledger.prune(ctx.t, &limits);
        slot.ledger.record(record);
        match (outcome, action) {
            (Outcome::DryRun, _) => {
                slot.stats.dry_run += 1;
                self.stats.dry_run += 1;
            }
            (_, Action::Evict) => {
                slot.stats.evicted += 1;
                self.stats.executed += 1;
            }
            (_, Action::Migrate) => {
                slot.stats.migrated += 1;
                self.stats.executed += 1;
            }
        }
        if let Some(state) = self.pods.get_mut(pod.index()).and_then(Option::as_mut) {
            state.acted = true;
        }
        if let Some(state) = self
            .nodes
            .get_mut(ctx.node.index())
            .and_then(Option::as_mut)
        {
            state.last_action = Some(ctx.t);
            if let Some(episode) = state.episodes.iter_mut().find(|e| e.id == ctx.episode) {
                episode.acted = true;
            }
        }
        out.push(Event::Decision(Box::new(decision)));
    }
}

/// What a decision concludes.
struct Verdict {
    action: Action,
    outcome: Outcome,
    reason: String,
    destination: Option<String>,
    guard: String,
}

/// Why a candidate may not be acted on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Exclusion {
    /// Shown in explanations.
    pub(crate) reason: String,
    /// The reason may pass (a young pod ages); otherwise it holds for good.
    pub(crate) temporary: bool,
}

impl Exclusion {
    fn never(reason: &str) -> Self {
        Self {
            reason: reason.to_owned(),
            temporary: false,
        }
    }

    fn for_now(reason: &str) -> Self {
        Self {
            reason: reason.to_owned(),
            temporary: true,
        }
    }
}

/// What every decision of one planning pass shares.
struct Context<'a> {
    p: u16,
    node: NodeId,
    t: i64,
    episode: u64,
    firing: &'a Firing,
    explanation: &'a Explanation,
}
