//! From attribution to a verdict: the main explanation must be stable across evaluations;
//! an explanation that cannot be acted on blocks, and another pod is acted on only when it
//! still explains the degradation significantly after accounting for the main one; an
//! episode in which nobody is blamed is reported once, with why.

use crate::align::aligned;
use crate::attribution::{Attribution, Inputs, Scored};
use crate::cluster::{NodeId, PodId};
use crate::decision::{Event, Unexplained};
use crate::engine::Engine;
use crate::evaluate::Firing;
use crate::series::Series;
use crate::significance::{p_positive, partial, pearson};

/// The main explanation of an episode over its recent evaluations.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Streak {
    /// The main explanation (`None`: nobody).
    pub(crate) pod: Option<PodId>,
    /// The onset of the trigger condition's run these evaluations belong to.
    pub(crate) since: i64,
    /// Evaluations in a row that named it, counted at most once per bucket.
    pub(crate) count: u32,
    /// Time of the last counted evaluation.
    pub(crate) last: i64,
}

impl Engine {
    /// Records that `pod` (or nobody) is the main explanation for policy and node `key`
    /// at `t`, in the run of a trigger condition that began at `since`; true once the same
    /// answer has held for `stable_evaluations` evaluations at least one bucket apart
    /// (the run-up before `sustainedFor` included, and overlapping runs of several
    /// victims' conditions together).
    pub(crate) fn stable(
        &mut self,
        key: (u16, NodeId),
        since: i64,
        pod: Option<PodId>,
        t: i64,
    ) -> bool {
        let width = self.config.bucket_ms as i64;
        let streak = self.streaks.entry(key).or_default();
        // A new run of the condition after a pause starts over; another victim's run
        // overlapping this one (several victims on the node) does not.
        let paused = t - streak.last > self.config.stale_after_ms as i64;
        if streak.count == 0 || streak.pod != pod || (streak.since != since && paused) {
            *streak = Streak {
                pod,
                since,
                count: 1,
                last: t,
            };
        } else if t - streak.last >= width {
            streak.count += 1;
            streak.last = t;
        }
        streak.count >= self.config.stable_evaluations.max(1)
    }

    /// Attribution during the run-up of a trigger condition (held, not yet sustained):
    /// only the stability of the main explanation is recorded; nothing is decided.
    pub(crate) fn observe(&mut self, p: u16, node: NodeId, t: i64, pending: &Firing) {
        let signal = self.trigger_signal(p, node, pending).cloned();
        self.stats.attributions += 1;
        let attribution = self.attribute(Inputs {
            p,
            node,
            t,
            since: pending.since,
            victim: pending.victim,
            signal: signal.as_ref(),
        });
        let main = attribution.scored.first().filter(|s| s.qualifies);
        self.stable((p, node), pending.since, main.map(|m| m.pod), t);
    }

    /// The correlation of `q` with the signal after accounting for `main`, when it is
    /// still significant at `level`.
    pub(crate) fn still_explains(
        &self,
        p: u16,
        t: i64,
        signal: &Series,
        main: &Scored,
        q: &Scored,
        level: f64,
    ) -> Option<f64> {
        let window = self.policies[p as usize].policy.spec.attribution.window_ms;
        let (q_metric, _) = q.best?;
        let series = |pod: PodId, m| self.pods.get(pod.index())?.as_ref()?.series(m);
        let qs = series(q.pod, q_metric)?;
        let main_metric = main.best.map(|(m, _)| m).or(main.onset);
        let Some(ms) = main_metric.and_then(|m| series(main.pod, m)) else {
            return q.best.map(|(_, r)| r);
        };
        let cols = aligned(&[signal, qs, ms], t, window);
        let vq = pearson(&cols[0], &cols[1])?;
        let (Some(vm), Some(qm)) = (pearson(&cols[0], &cols[2]), pearson(&cols[1], &cols[2]))
        else {
            // The main explanation is flat here: it cannot confound q's correlation.
            return (p_positive(vq.r, vq.n_eff) <= level).then_some(vq.r);
        };
        let r = partial(vq.r, vm.r, qm.r)?;
        let n_eff = vq.n_eff.min(vm.n_eff) - 1.0;
        (p_positive(r, n_eff) <= level).then_some(r)
    }

    /// One line on how `s` explains the degradation.
    pub(crate) fn how_it_explains(&self, s: &Scored) -> String {
        let pod = self
            .cluster
            .pod_info(s.pod)
            .map(|i| i.key())
            .unwrap_or_default();
        let pct = s.explains.unwrap_or(0.0) * 100.0;
        let evidence = s
            .metrics
            .iter()
            .filter(|m| m.significant)
            .map(|m| match (m.onset_step, m.correlation, m.p_value) {
                (Some(z), _, _) => format!(
                    "stepped up {z:.0} sd at the onset on {}",
                    self.registry.name(m.metric)
                ),
                (None, Some(r), Some(p)) => {
                    format!(
                        "r = {r:.2}, p = {p:.1e} on {}",
                        self.registry.name(m.metric)
                    )
                }
                _ => format!(
                    "share {:.0}% of {}",
                    m.share.unwrap_or(0.0) * 100.0,
                    self.registry.name(m.metric)
                ),
            })
            .collect::<Vec<_>>()
            .join("; ");
        format!("{pod} explains {pct:.0}% of the degradation ({evidence})")
    }

    /// Reports once per episode that nobody was blamed, and why.
    pub(crate) fn unexplained(
        &mut self,
        head: UnexplainedHead<'_>,
        attribution: &Attribution,
        out: &mut Vec<Event>,
    ) {
        let (cause, reason) = self.why_nobody(attribution, head.min_points);
        // Too few points at the start of a run is transient: said only once a whole
        // window has gone by.
        if cause == "too-few-points" && !head.window_passed {
            return;
        }
        let Some(episode) = self.nodes[head.node.index()]
            .as_mut()
            .and_then(|n| n.episodes.iter_mut().find(|e| e.id == head.episode))
        else {
            return;
        };
        const KEY: u64 = u64::MAX;
        if episode.reported.contains(&KEY) {
            return;
        }
        episode.reported.push(KEY);
        self.stats.unexplained += 1;
        *self
            .stats
            .unexplained_by_cause
            .entry(cause.to_owned())
            .or_default() += 1;
        let slot = &self.policies[head.p as usize];
        out.push(Event::Unexplained(Box::new(Unexplained {
            at: head.t,
            policy: slot.policy.name.clone(),
            node: self.node_name(head.node),
            trigger: slot.policy.spec.triggers[head.firing.trigger as usize]
                .name
                .clone(),
            victim: head
                .firing
                .victim
                .and_then(|v| self.cluster.pod_info(v))
                .map(|i| i.key()),
            episode: head.episode,
            cause: cause.to_owned(),
            reason,
            explanation: self.explanation(head.p, head.firing, head.t, head.episode, attribution),
        })));
    }

    /// The case and the one-line reason why nobody explains the degradation.
    fn why_nobody(&self, a: &Attribution, min_points: usize) -> (&'static str, String) {
        let with_points = |s: &&Scored| s.metrics.iter().any(|m| m.points > 0);
        if a.scored.is_empty() {
            return (
                "all-excluded",
                "no co-located pod is left to explain it (the others are victims of the policy or already acted on)".into(),
            );
        }
        if !a.scored.iter().any(|s| with_points(&s)) {
            return (
                "no-samples",
                format!(
                    "none of the {} co-located pods has samples of an attribution metric in the window",
                    a.scored.len()
                ),
            );
        }
        let most = a
            .scored
            .iter()
            .flat_map(|s| s.metrics.iter().map(|m| m.points))
            .max()
            .unwrap_or(0);
        if most < min_points {
            return (
                "too-few-points",
                format!(
                    "at most {most} points shared with the victim signal; {min_points} are needed"
                ),
            );
        }
        let best = a
            .scored
            .iter()
            .flat_map(|s| s.metrics.iter().map(move |m| (s.pod, m)))
            .filter(|(_, m)| m.p_value.is_some())
            .min_by(|a, b| {
                a.1.p_value
                    .unwrap_or(1.0)
                    .total_cmp(&b.1.p_value.unwrap_or(1.0))
            });
        let reason = match best {
            Some((pod, m)) => format!(
                "no pod explains it significantly: the best is {} on {} (r = {:.2}, p = {:.1e}; needs p <= {:.1e} for {} tests)",
                self.cluster
                    .pod_info(pod)
                    .map(|i| i.key())
                    .unwrap_or_default(),
                self.registry.name(m.metric),
                m.correlation.unwrap_or(0.0),
                m.p_value.unwrap_or(1.0),
                a.level,
                a.tests
            ),
            None => "no pod's usage varies together with the victim signal".into(),
        };
        ("not-significant", reason)
    }
}

/// Who an unexplained report is about.
pub(crate) struct UnexplainedHead<'a> {
    pub(crate) p: u16,
    pub(crate) node: NodeId,
    pub(crate) t: i64,
    pub(crate) episode: u64,
    pub(crate) firing: &'a Firing,
    pub(crate) min_points: usize,
    /// A whole attribution window has passed since the onset.
    pub(crate) window_passed: bool,
}
