//! Steady hogs: a pod whose usage stepped up when the victim degraded is a suspect even
//! when its usage is flat inside the attribution window.
//!
//! The onset is when the firing trigger's condition started to hold (`since`). For each
//! additive attribution metric, each pod's bucket values in the window before the onset
//! (leaving out its last quarter, where an antagonist ramps up before the victim's
//! condition holds) are compared with its values since the onset (a pod created after the start of the
//! before-window and without samples there counts as zero before). A pod *counts* when
//! (1) the victim's signal itself stepped up by at least `onset_sigma` (so a degradation
//! that was there before the window, or a victim's own slow drift, is not pinned on a
//! newcomer), (2) the pod's step is at least `onset_sigma` standard deviations of its
//! before-values (floored at 5% of their level), (3) it accounts for at least
//! `onset_dominance` of the node's total increase of that metric, and (4) it holds at
//! least `min_usage_share` of the node's usage after the onset. It is then ranked by that
//! share. The first steps found in an episode are remembered for the rest of it.

use fulcrum_policies::MetricId;

use crate::align::values;
use crate::attribution::{Inputs, Scored, is_ratio};
use crate::cluster::PodId;
use crate::engine::Engine;
use crate::significance::step;

/// One pod's step at the onset on one metric, when it counts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct OnsetStep {
    pub(crate) pod: PodId,
    pub(crate) metric: MetricId,
    /// The step in standard deviations of the before-values.
    pub(crate) z: f64,
    /// Its share of the node's usage since the onset.
    pub(crate) share_after: f64,
    /// Its fraction of the node's increase.
    pub(crate) of_increase: f64,
}

impl OnsetStep {
    /// Marks `scored` as counting through this step.
    pub(crate) fn apply(&self, scored: &mut Scored, metric_name: &str) {
        if let Some(m) = scored.metrics.iter_mut().find(|m| m.metric == metric_name) {
            m.onset_step = Some(self.z);
            m.significant = true;
            m.ignored = None;
        }
        scored.qualifies = true;
        scored.score = Some(
            scored
                .score
                .map_or(self.share_after, |s| s.max(self.share_after)),
        );
        scored.onset = Some(self.metric);
        scored.explains = Some(
            scored
                .explains
                .map_or(self.of_increase, |e| e.max(self.of_increase)),
        );
    }
}

impl Engine {
    /// The pods of `pods` that stepped up at the onset (see the module documentation).
    pub(crate) fn onset_steps(&mut self, inputs: Inputs<'_>, pods: &[PodId]) -> Vec<OnsetStep> {
        let found = self.find_onset_steps(inputs, pods);
        if !found.is_empty() {
            self.onset_memo
                .entry(inputs.episode)
                .or_insert_with(|| found.clone());
            return found;
        }
        self.onset_memo
            .get(&inputs.episode)
            .map(|steps| {
                steps
                    .iter()
                    .filter(|s| pods.contains(&s.pod))
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn find_onset_steps(&self, inputs: Inputs<'_>, pods: &[PodId]) -> Vec<OnsetStep> {
        let Inputs { p, t, since, .. } = inputs;
        let window = self.policies[p as usize].policy.spec.attribution.window_ms;
        let after_ms = (t - since).max(0) as u64;
        // An antagonist ramps up before the victim's condition holds: the last quarter
        // window before the onset is left out of the comparison.
        let before_end = since - (window / 4) as i64;
        let before_ms = window - window / 4;
        let sigma = self.config.onset_sigma;
        // The degradation itself must have begun at the onset.
        let victim_step = inputs
            .signal
            .and_then(|s| step(&values(s, before_end, before_ms), &values(s, t, after_ms)));
        if after_ms == 0 || victim_step.is_none_or(|s| s.z < sigma) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for &m in &self.policies[p as usize].policy.spec.attribution.metrics {
            if is_ratio(self.registry.name(m)) {
                continue;
            }
            let steps: Vec<(PodId, crate::significance::Step)> = pods
                .iter()
                .filter_map(|&pod| {
                    let series = self.pods.get(pod.index())?.as_ref()?.series(m)?;
                    let mut before = values(series, before_end, before_ms);
                    let created = self.cluster.pod_info(pod)?.created_ms;
                    if before.len() < 3 && created.is_some_and(|c| c > since - window as i64) {
                        before = vec![0.0; 3];
                    }
                    Some((pod, step(&before, &values(series, t, after_ms))?))
                })
                .collect();
            let increase: f64 = steps
                .iter()
                .map(|(_, s)| (s.after - s.before).max(0.0))
                .sum();
            let usage: f64 = steps.iter().map(|(_, s)| s.after.max(0.0)).sum();
            for (pod, s) in steps {
                let of_increase = (s.after - s.before) / increase;
                let share_after = s.after / usage;
                if s.z >= sigma
                    && of_increase >= self.config.onset_dominance
                    && share_after >= self.config.min_usage_share
                {
                    out.push(OnsetStep {
                        pod,
                        metric: m,
                        z: s.z,
                        share_after,
                        of_increase,
                    });
                }
            }
        }
        out
    }
}
