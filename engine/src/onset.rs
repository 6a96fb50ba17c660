//! Steady hogs: a pod whose usage stepped up when the victim degraded is a suspect even
//! when its usage is flat inside the attribution window.
//!
//! The onset is when the firing trigger's condition started to hold (`since`). For each
//! additive attribution metric, each pod's bucket values in the window before the onset
//! (leaving out the victim signal's last sample period, where an antagonist ramps up
//! before the victim's condition holds; at least [`BEFORE_PERIODS`] of the pod's own sample
//! periods, so that a 60 s series has as many values as its history holds) are compared
//! with its values since the onset, by medians and median absolute deviations (a pod
//! created after the start of the before-window and without samples there counts as zero before). A pod *counts* when
//! (1) the victim's signal itself stepped up by at least `VICTIM_SIGMA` (6) and was observed
//! just before the onset (an onset right after a gap in the data is not one; a degradation
//! that was there before the window, or a victim's own slow drift, is not pinned on a
//! newcomer), (2) the pod's step is at least `onset_sigma` robust standard deviations of its
//! before-values (floored at 5% of their level), (3) it accounts for at least
//! `onset_dominance` of the node's increase of that metric (the sum of the pods' clear
//! steps, `onset_sigma` or more; drift is not an increase), and (4) it holds at
//! least `min_usage_share` of the node's usage after the onset, and (5) it was already up
//! at the onset (its first value after it is 3 standard deviations above its level
//! before: a pod that stepped up later is not the cause), and (6) it beats the placebo:
//! pods of its kind on other nodes, which cannot be the cause, did not step comparably
//! over the same periods (common mode, see [`Engine::onset_placebo`]). It is then ranked
//! by that share. The test is made once per
//! onset, at its first evaluation with data after the onset, and its answer is kept for
//! the rest of the episode: repeated at every evaluation, it would get many chances to
//! find a coincidence.

use fulcrum_policies::MetricId;

use crate::align::{cadence, values};
use crate::attribution::{Inputs, Scored, is_ratio};
use crate::cluster::{NodeId, PodId};
use crate::engine::Engine;
use crate::evidence::Ignored;
use crate::series::Series;
use crate::significance::{Step, step};
use crate::state::{PodState, Role};

/// The least step of the victim's own signal, in standard deviations of its values before
/// the onset, for the onset to be one.
pub(crate) const VICTIM_SIGMA: f64 = 6.0;

/// The least number of a pod's own sampling periods its values before the onset span
/// (three samples are needed, one more period allows for jitter).
const BEFORE_PERIODS: u64 = 4;

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
    /// When pods of the same kind on other nodes stepped comparably (common mode, see
    /// [`Engine::onset_placebo`]): how many were compared and their median step. The
    /// step is then not evidence.
    pub(crate) common_mode: Option<(usize, f64)>,
}

impl OnsetStep {
    /// Marks `scored` as counting through this step.
    pub(crate) fn apply(&self, scored: &mut Scored) {
        if let Some((pods, median)) = self.common_mode {
            let metric = scored.metrics.iter_mut();
            if let Some(m) = metric
                .filter(|m| !m.significant)
                .find(|m| m.metric == self.metric)
            {
                m.ignored = Some(Ignored::OnsetCommonMode {
                    z: self.z,
                    pods,
                    median,
                });
            }
            return;
        }
        if let Some(m) = scored.metrics.iter_mut().find(|m| m.metric == self.metric) {
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
    /// Judged once per onset, at its first evaluation with data after the onset: a
    /// test repeated at every evaluation would get many chances to find a coincidence.
    pub(crate) fn onset_steps(&mut self, inputs: Inputs<'_>, pods: &[PodId]) -> Vec<OnsetStep> {
        let key = (inputs.p, inputs.node, inputs.since);
        if !self.onset_memo.contains_key(&key)
            && let Some(found) = self.find_onset_steps(inputs, pods)
        {
            // One onset per policy and node is remembered at a time.
            self.onset_memo
                .retain(|k, _| (k.0, k.1) != (inputs.p, inputs.node));
            self.onset_memo.insert(key, found);
        }
        self.onset_memo
            .get(&key)
            .map(|steps| {
                steps
                    .iter()
                    .filter(|s| pods.contains(&s.pod))
                    .copied()
                    .collect()
            })
            .unwrap_or_default()
    }

    fn find_onset_steps(&self, inputs: Inputs<'_>, pods: &[PodId]) -> Option<Vec<OnsetStep>> {
        let Inputs { p, t, since, .. } = inputs;
        let window = self.policies[p as usize].policy.spec.attribution.window_ms;
        let after_ms = (t - since).max(0) as u64;
        let signal = inputs.signal?;
        // An antagonist ramps up before the victim's condition holds: the victim's last
        // sample period before the onset is left out of the comparison (and medians keep
        // one more ramping point from hiding the step).
        let bucket = self.config.bucket_ms as i64;
        let ramp = bucket * cadence(signal, since, window);
        let before_end = since - ramp;
        let before_ms = window.saturating_sub(ramp as u64).max(bucket as u64);
        let sigma = self.config.onset_sigma;
        // The degradation itself must have begun at the onset, seen as it happened: the
        // victim was observed just before it (not an onset made by a gap in the data).
        let seen_before = !values(signal, since - 1, ramp as u64).is_empty();
        let victim_step = step(
            &values(signal, before_end, before_ms),
            &values(signal, t, after_ms),
        )?;
        if victim_step.z < VICTIM_SIGMA || !seen_before {
            return Some(Vec::new());
        }
        let span = Span {
            t,
            since,
            window,
            after_ms,
            before_end,
            before_ms,
        };
        let mut out = Vec::new();
        for &m in &self.policies[p as usize].policy.spec.attribution.metrics {
            if is_ratio(self.registry.name(m)) {
                continue;
            }
            let steps = self.metric_steps(pods, m, &span)?;
            // The node's increase: the clear steps (`onset_sigma` or more), not drift.
            let increase: f64 = steps
                .iter()
                .filter(|(_, s, _)| s.z >= sigma)
                .map(|(_, s, _)| s.after - s.before)
                .sum();
            let usage: f64 = steps.iter().map(|(_, s, _)| s.after.max(0.0)).sum();
            for (pod, s, early) in steps {
                let class = self.class_of(p, pod);
                let of_increase = (s.after - s.before) / increase;
                let share_after = s.after / usage;
                if early
                    && s.z >= sigma
                    && of_increase >= self.config.onset_dominance
                    && share_after >= self.config.min_usage_share
                {
                    out.push(OnsetStep {
                        pod,
                        metric: m,
                        z: s.z,
                        share_after,
                        of_increase,
                        common_mode: self.onset_placebo((p, inputs.node, class), m, &span, s.z)?,
                    });
                }
            }
        }
        Some(out)
    }

    /// Each pod's step on metric `m`, and whether it was already up at the onset; `None`
    /// while some pod has not reported since the onset yet.
    fn metric_steps(
        &self,
        pods: &[PodId],
        m: MetricId,
        span: &Span,
    ) -> Option<Vec<(PodId, Step, bool)>> {
        let mut steps = Vec::new();
        for &pod in pods {
            if let Some((s, early)) = self.pod_step(pod, m, span)? {
                steps.push((pod, s, early));
            }
        }
        Some(steps)
    }

    /// One pod's step on metric `m` and whether it was already up at the onset: `None`
    /// while it has not reported since the onset yet, `Some(None)` when it has no step.
    fn pod_step(&self, pod: PodId, m: MetricId, span: &Span) -> Option<Option<(Step, bool)>> {
        let Some(state) = self.pods.get(pod.index()).and_then(Option::as_ref) else {
            return Some(None);
        };
        let Some(series) = state.series(m) else {
            return Some(None);
        };
        let after = values(series, span.t, span.after_ms);
        let period = self.sample_period_ms(state, series, span);
        if after.is_empty() && span.after_ms < 2 * period {
            return None;
        }
        // A sparse series is judged on as many of its own samples before the onset as
        // a frequent one (at least `BEFORE_PERIODS` of its periods, as far back as its
        // history is held), not on the one or two that fall in the window.
        let before_ms = span.before_ms.max(BEFORE_PERIODS * period);
        let mut before = values(series, span.before_end, before_ms);
        let created = self.cluster.pod_info(pod).and_then(|i| i.created_ms);
        if before.len() < 3 && created.is_some_and(|c| c > span.since - span.window as i64) {
            before = vec![0.0; 3];
        }
        let (Some(s), Some(&first)) = (step(&before, &after), after.first()) else {
            return Some(None);
        };
        // Already up at the onset: a pod that stepped up later is not its cause.
        let early = s.z.abs() > 1e-12 && first >= s.before + 3.0 * (s.after - s.before) / s.z;
        Some(Some((s, early)))
    }

    /// Common mode at the onset: the same step statistic for up to `placebo_pods` pods of
    /// the kind of `class` on other nodes (see [`crate::placebo`]), which cannot be the
    /// cause, over the same periods. A step of `z` is common mode when the median placebo
    /// step is at least `z / 2`: half of the pods that cannot be the cause stepped
    /// comparably (within the factor of 2 by which robust deviations of a dozen values
    /// differ between like pods), while pods that did not step stay at a few sd, far
    /// below `onset_sigma / 2`. `None` while a placebo pod has not reported since the
    /// onset yet (judged at a later evaluation, as for the pods of the node);
    /// `Some(None)`: no placebo pod with a step, or not common mode.
    fn onset_placebo(
        &self,
        (p, node, class): (u16, NodeId, Option<u16>),
        m: MetricId,
        span: &Span,
        z: f64,
    ) -> Option<Option<(usize, f64)>> {
        let k = self.config.placebo_pods;
        let mut zs = Vec::new();
        for pod in self.placebo_pods(p, node, class, m, span.t, k) {
            if let Some((s, _)) = self.pod_step(pod, m, span)? {
                zs.push(s.z);
            }
        }
        if zs.is_empty() {
            return Some(None);
        }
        zs.sort_by(f64::total_cmp);
        let n = zs.len();
        let median = (zs[(n - 1) / 2] + zs[n / 2]) / 2.0;
        Some((median >= z / 2.0).then_some((n, median)))
    }

    /// The candidate class of `pod` for policy `p` (`None`: not a candidate).
    fn class_of(&self, p: u16, pod: PodId) -> Option<u16> {
        match self.pods.get(pod.index())?.as_ref()?.role(p) {
            Some(Role::Candidate(c)) => Some(c),
            _ => None,
        }
    }
}

impl Engine {
    /// The sampling period of a pod's series (ms, whole buckets): its observed cadence
    /// (the median of its recent intervals, see [`crate::cadence`]), or the median gap
    /// between its buckets in the window when that is longer or the cadence is unknown.
    fn sample_period_ms(&self, state: &PodState, series: &Series, span: &Span) -> u64 {
        let bucket = self.config.bucket_ms.max(1);
        let in_window = bucket * cadence(series, span.since, span.window) as u64;
        let observed = state
            .cadence
            .interval_ms()
            .map_or(bucket, |i| i.div_ceil(bucket) * bucket);
        in_window.max(observed)
    }
}

/// The periods an onset comparison looks at.
struct Span {
    t: i64,
    since: i64,
    window: u64,
    after_ms: u64,
    before_end: i64,
    before_ms: u64,
}
