//! Planning one safe action for a firing policy on a node: attribution's culprits, every
//! guard and limit applied in a fixed order, and the decision with its explanation.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use fulcrum_policies::compile::Condition;
use fulcrum_policies::spec::{Action, AttributionMethod, Mode, TriggerScope};

use crate::attribution::{Attribution, Inputs, Scored};
use crate::cluster::{NodeId, PodId};
use crate::decision::{
    BaselineEvidence, Decision, Event, Evidence, Explanation, Outcome, Significance,
};
use crate::engine::Engine;
use crate::evaluate::Firing;
use crate::explain::UnexplainedHead;
use crate::limits::{ActionRecord, fmt_ms};
use crate::series::Series;
use crate::state::Role;

impl Engine {
    /// Plans an action for policy `p` on `node`; returns true when one was decided.
    pub(crate) fn plan(
        &mut self,
        p: u16,
        node: NodeId,
        t: i64,
        episode: u64,
        firing: &Firing,
        out: &mut Vec<Event>,
    ) -> bool {
        let signal = self.trigger_signal(p, node, firing).cloned();
        let inputs = Inputs {
            p,
            node,
            t,
            since: firing.since,
            victim: firing.victim,
            signal: signal.as_ref(),
        };
        if self.episode_cooling_down(p, node, t, episode) {
            // Nothing is planned: only the onset is judged (once per onset, as it would be
            // by a full attribution), without scoring every pod.
            self.judge_onset(inputs);
            return false;
        }
        if self.breaker_holds_after_report(p, node, t, episode) {
            // Whatever attribution found, a breaker would block it, and this episode has
            // reported that: only the onset is judged (see `breaker_holds_after_report`).
            self.judge_onset(inputs);
            return false;
        }
        self.stats.attributions += 1;
        let attribution = self.attribute(inputs);
        // The explanation is rendered only for a decision or a report that is emitted.
        let ctx = Context {
            p,
            node,
            t,
            episode,
            firing,
            attribution: &attribution,
        };
        // The main explanation: the best-scoring pod that explains the degradation
        // significantly, candidate or not. It must hold across evaluations.
        let main = attribution.scored.first().filter(|s| s.qualifies);
        let stable = self.stable((p, node), firing.since, main.map(|m| m.pod), t);
        let Some(main) = main else {
            self.stats.unattributed += 1;
            if stable {
                let head = UnexplainedHead {
                    p,
                    node,
                    t,
                    episode,
                    firing,
                    min_points: self.config.min_correlation_points,
                    window_passed: t - firing.since
                        >= self.policies[p as usize].policy.spec.attribution.window_ms as i64,
                };
                self.unexplained(head, &attribution, out);
            }
            return false;
        };
        if !stable {
            return false;
        }
        // A main explanation that cannot be acted on *yet* (too young, not running, without
        // recent samples): wait for it rather than act on a pod that is not the cause.
        if let Some(exclusion) = main.excluded.as_ref().filter(|e| e.temporary) {
            let reason = format!("waiting: the main culprit is {}", exclusion.reason);
            self.blocked(&ctx, main.pod, "main-culprit-waits", reason, out);
            return false;
        }
        let culprits = self.culprits(&ctx, &attribution, signal.as_ref(), out);
        let Some(first) = culprits.first() else {
            self.stats.unattributed += 1;
            return false;
        };
        // Policy-wide guards: the top culprit carries the blocked decision.
        if let Some((kind, reason)) = self.policy_guard(&ctx) {
            if kind == "breaker" {
                self.breaker_reported.insert((p, node), episode);
            }
            self.blocked(&ctx, first.pod, kind, reason, out);
            return false;
        }
        self.act_on_first_allowed(&ctx, &culprits, out)
    }

    /// The explanation every decision of this evaluation shares (rendered when a decision
    /// or report is emitted; nothing it reads changes during the evaluation).
    pub(crate) fn explanation(
        &self,
        p: u16,
        firing: &Firing,
        t: i64,
        episode: u64,
        attribution: &Attribution,
    ) -> Explanation {
        let spec = &self.policies[p as usize].policy.spec;
        let correlation = spec.attribution.method == AttributionMethod::Correlation;
        Explanation {
            episode,
            evidence: self.evidence(p, firing, t),
            method: format!("{:?}", spec.attribution.method),
            scores: self.render_scores(p, &attribution.scored),
            guard: String::new(),
            significance: correlation.then_some(Significance {
                false_blame_rate: self.config.false_blame_rate,
                window_index: attribution.window_index,
                tests: attribution.tests,
                level: attribution.level,
            }),
        }
    }

    /// The pods that may be acted on, best first: the main explanation if it may be acted
    /// on (otherwise a Blocked decision says why not), then candidates that still explain
    /// the degradation significantly after accounting for it.
    fn culprits(
        &mut self,
        ctx: &Context<'_>,
        attribution: &Attribution,
        signal: Option<&Series>,
        out: &mut Vec<Event>,
    ) -> Vec<Scored> {
        let Some(main) = attribution.scored.first() else {
            return Vec::new();
        };
        let mut culprits = Vec::new();
        let mut others = Vec::new();
        for q in attribution.scored.iter().skip(1) {
            if !q.qualifies || q.excluded.is_some() {
                continue;
            }
            let after = signal
                .and_then(|sig| self.still_explains(ctx.p, ctx.t, sig, main, q, attribution.level));
            if after.is_some() {
                others.push(q.clone());
            }
        }
        match &main.excluded {
            None => culprits.push(main.clone()),
            // Acted on already and still reporting (its eviction under way, or a dry run):
            // the earlier decision is its report; a Blocked one would only repeat it.
            Some(exclusion) if exclusion.acted => {}
            Some(exclusion) => {
                let next = match others.first() {
                    Some(q) => format!(
                        "; {} still explains it after accounting for it",
                        self.cluster
                            .pod_info(q.pod)
                            .map(|i| i.key())
                            .unwrap_or_default()
                    ),
                    None => "; no other pod explains it significantly after accounting for it"
                        .to_owned(),
                };
                let reason = format!(
                    "{} and is {}{next}",
                    self.how_it_explains(main),
                    exclusion.reason
                );
                self.blocked(
                    ctx,
                    main.pod,
                    "main-explanation-not-actionable",
                    reason,
                    out,
                );
            }
        }
        culprits.extend(others);
        culprits
    }

    /// The series whose trigger fired: the victim's for a victim-scope trigger, the
    /// node's otherwise.
    pub(crate) fn trigger_signal(&self, p: u16, node: NodeId, firing: &Firing) -> Option<&Series> {
        let trigger = &self.policies[p as usize].policy.spec.triggers[firing.trigger as usize];
        match (trigger.scope, firing.victim) {
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
        }
    }

    /// Acts on the first culprit that no target guard or placement blocks, reporting each
    /// one that is blocked. Returns true when an action was decided.
    fn act_on_first_allowed(
        &mut self,
        ctx: &Context<'_>,
        culprits: &[Scored],
        out: &mut Vec<Event>,
    ) -> bool {
        for culprit in culprits {
            let pod = culprit.pod;
            if self.cluster.pod_info(pod).is_none() {
                continue;
            }
            if let Some((kind, reason)) = self.target_guard(ctx, pod) {
                self.blocked(ctx, pod, kind, reason, out);
                continue;
            }
            let Some(class) = culprit.class else {
                continue;
            };
            let spec = &self.policies[ctx.p as usize].policy.spec;
            let mut action = spec.candidates[class as usize].action;
            let (window, evict_instead) = (
                spec.limits.per_workload.window_ms,
                spec.eviction.evict_on_ping_pong,
            );
            let mut note = None;
            let destination = match action {
                Action::Evict => None,
                Action::Migrate => {
                    if let Some(reason) = self.ping_pong_reason(pod, ctx.node, ctx.t, window) {
                        if !evict_instead {
                            self.blocked(ctx, pod, "ping-pong", reason, out);
                            continue;
                        }
                        // Never migrated twice: evicted, as eviction.evictOnPingPong allows.
                        action = Action::Evict;
                        note = Some(format!(
                            "; evicted, not migrated (eviction.evictOnPingPong): {reason}"
                        ));
                        None
                    } else {
                        match self.destination(ctx.p, pod, ctx.node, ctx.t) {
                            Ok(dest) => Some(dest),
                            Err(reason) => {
                                self.blocked(ctx, pod, "placement", reason, out);
                                continue;
                            }
                        }
                    }
                }
            };
            self.act(ctx, culprit, (action, destination, note), out);
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

    fn decision(&self, ctx: &Context<'_>, pod: PodId, verdict: Verdict) -> Decision {
        let slot = &self.policies[ctx.p as usize];
        let spec = &slot.policy.spec;
        let mut explanation =
            self.explanation(ctx.p, ctx.firing, ctx.t, ctx.episode, ctx.attribution);
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

    /// Decides to act on `culprit`: the decision (executed or dry-run) with its reason,
    /// recorded against the limits and the cooldown.
    fn act(
        &mut self,
        ctx: &Context<'_>,
        culprit: &Scored,
        (action, destination, note): (Action, Option<(NodeId, String)>, Option<String>),
        out: &mut Vec<Event>,
    ) {
        let pod = culprit.pod;
        let Some(info) = self.cluster.pod_info(pod) else {
            return;
        };
        let spec = &self.policies[ctx.p as usize].policy.spec;
        let limits = spec.limits;
        let ledger = &self.policies[ctx.p as usize].ledger;
        let guard = format!(
            "allowed: limits used before this action: {}",
            ledger.usage(ctx.t, ctx.node, &info.workload, &info.namespace, &limits)
        );
        let mut reason = self.action_reason(ctx, culprit, &info.key());
        reason.push_str(note.as_deref().unwrap_or_default());
        let record = ActionRecord {
            at: ctx.t,
            node: ctx.node,
            workload: info.workload.to_string(),
            namespace: info.namespace.to_string(),
            target: info.key(),
        };
        let outcome = match spec.mode {
            Mode::DryRun => Outcome::DryRun,
            Mode::Enforce => Outcome::Executed,
        };
        let verdict = Verdict {
            action,
            outcome,
            reason,
            destination: destination.as_ref().map(|(_, name)| name.clone()),
            guard,
        };
        let decision = self.decision(ctx, pod, verdict);
        if outcome == Outcome::Executed {
            let migrate_to = (action == Action::Migrate).then(|| destination.map(|(id, _)| id));
            self.spend_budget(pod, ctx.node, ctx.t, migrate_to);
        }
        self.record_action(ctx, pod, record, outcome, action);
        out.push(Event::Decision(Box::new(decision)));
    }

    /// The one-line reason of an action: the trigger's evidence and the culprit's score on
    /// the metric behind it (its best correlated share, or share for `Usage`).
    fn action_reason(&self, ctx: &Context<'_>, culprit: &Scored, target: &str) -> String {
        let spec = &self.policies[ctx.p as usize].policy.spec;
        let trigger = &spec.triggers[ctx.firing.trigger as usize];
        let weight = |m: &crate::evidence::Evidence| match m.correlation {
            Some(r) => r.max(0.0) * m.share.unwrap_or(0.0),
            None => m.share.unwrap_or(0.0),
        };
        let best_metric = culprit
            .metrics
            .iter()
            .filter(|m| m.ignored.is_none())
            .max_by(|a, b| weight(a).total_cmp(&weight(b)))
            .map(|m| self.registry.name(m.metric).to_owned())
            .unwrap_or_default();
        format!(
            "{} {} = {:.3} above {:.3} for {}; {} scores {:.2} on {} ({:?})",
            trigger.name,
            self.registry.name(trigger.metric),
            ctx.firing.value,
            ctx.firing.threshold,
            fmt_ms((ctx.t - ctx.firing.since) as u64),
            target,
            culprit.score.unwrap_or(0.0),
            best_metric,
            spec.attribution.method,
        )
    }

    /// Counts an action: the policy's ledger and counters, the pod (never again), the
    /// node's cooldown and the episode (acted).
    fn record_action(
        &mut self,
        ctx: &Context<'_>,
        pod: PodId,
        record: ActionRecord,
        outcome: Outcome,
        action: Action,
    ) {
        let slot = &mut self.policies[ctx.p as usize];
        let limits = slot.policy.spec.limits;
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
            state.mark_acted(outcome);
        }
        if let Some(state) = self
            .nodes
            .get_mut(ctx.node.index())
            .and_then(Option::as_mut)
        {
            state.note_action(ctx.t, outcome);
            if let Some(episode) = state.episodes.iter_mut().find(|e| e.id == ctx.episode) {
                episode.acted = true;
            }
        }
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

/// What every decision of one planning pass shares.
pub(crate) struct Context<'a> {
    pub(crate) p: u16,
    pub(crate) node: NodeId,
    pub(crate) t: i64,
    pub(crate) episode: u64,
    pub(crate) firing: &'a Firing,
    pub(crate) attribution: &'a Attribution,
}
