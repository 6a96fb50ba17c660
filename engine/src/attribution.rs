//! Attribution: which co-located pod explains the victim's degradation.
//!
//! Every pod on the node is scored, candidate or not, actionable or not (only the victims
//! of the policy itself are left out: they suffer the same contention); whether the best
//! explanation may be acted on is asked afterwards, by the planner.
//!
//! - `Correlation`: for each attribution metric, the victim's signal (the trigger's
//!   metric) and the pod's usage are aligned on a common grid (see [`crate::align`]) and
//!   correlated. A metric *counts* when it is additive (a ratio such as `llc_miss_rate` or
//!   `cpi` rises on every pod of a contended node: it is shown, never evidence), the pod's
//!   usage varies, holds a meaningful share of the node's usage, reaches `minCorrelation`,
//!   has enough points,
//!   and is significant: its one-sided p-value over the effective number of points (lag-1
//!   autocorrelation discounted) is below the level of [`Attribution::level`], which
//!   corrects for the pods × metrics tested and spends the false-blame rate over the
//!   episode's windows. A pod whose usage of an additive metric stepped up at the
//!   degradation's onset and accounts for most of the node's increase counts too (steady
//!   hogs, see [`crate::onset`]). Pods are ranked by their best counting evidence: the
//!   correlated share `r * share`, or the share after the onset.
//! - `Usage`: the pod's share of the node's usage, averaged over the listed metrics;
//!   counts when the share reaches `min_usage_share`.

use fulcrum_policies::MetricId;
use fulcrum_policies::spec::AttributionMethod;

use crate::align::SignalGrid;
use crate::cluster::{NodeId, PodId};
use crate::decision::{CandidateScore, CommonMode};
use crate::engine::Engine;
use crate::evidence::{Evidence, Ignored};
use crate::guards::Exclusion;
use crate::placebo::{Placebo, Placebos};
use crate::series::Series;
use crate::significance::{Paired, p_above, p_positive, pearson};
use crate::state::{PodState, Role};

/// A co-located pod with its score and, if it cannot be acted on, why.
#[derive(Clone, Debug)]
pub(crate) struct Scored {
    pub(crate) pod: PodId,
    /// Its candidate class in the policy; `None` when it is not a candidate.
    pub(crate) class: Option<u16>,
    pub(crate) score: Option<f64>,
    /// It explains the degradation significantly.
    pub(crate) qualifies: bool,
    pub(crate) metrics: Vec<Evidence>,
    pub(crate) excluded: Option<Exclusion>,
    /// The counting metric with the highest correlation, and `r`.
    pub(crate) best: Option<(MetricId, f64)>,
    /// The metric on which it stepped up at the onset, when that counts.
    pub(crate) onset: Option<MetricId>,
    /// How much of the degradation it explains: `r²` of its best correlation, or its
    /// fraction of the node's increase at the onset.
    pub(crate) explains: Option<f64>,
}

/// The pod being scored: who, its class, its state, and where its window means are.
struct PodContext<'a> {
    pod: PodId,
    class: Option<u16>,
    state: &'a PodState,
    means: (&'a Means, usize),
}

/// The attribution of one evaluation: every scored pod and the significance level used.
#[derive(Clone, Debug)]
pub(crate) struct Attribution {
    pub(crate) scored: Vec<Scored>,
    /// The per-test significance level (`false_blame_rate` spent over the episode's
    /// windows, divided by the number of tests).
    pub(crate) level: f64,
    /// Tests made: pods × metrics.
    pub(crate) tests: usize,
    /// Which attribution window of the episode this evaluation falls in (1 = the first).
    pub(crate) window_index: u64,
}

/// What the planner needs to score pods: the signal, its onset and the window.
#[derive(Clone, Copy)]
pub(crate) struct Inputs<'a> {
    pub(crate) p: u16,
    pub(crate) node: NodeId,
    pub(crate) t: i64,
    pub(crate) since: i64,
    pub(crate) victim: Option<PodId>,
    pub(crate) signal: Option<&'a Series>,
}

/// The victim's signal prepared once per evaluation, and the columns every pairing with it
/// is written into (reused: no allocation per pod and metric).
pub(crate) struct Pairing<'a> {
    grid: SignalGrid<'a>,
    a: Vec<f64>,
    b: Vec<f64>,
}

impl<'a> Pairing<'a> {
    /// `signal` over the window ending at `t`.
    pub(crate) fn new(signal: &'a Series, t: i64, window_ms: u64) -> Self {
        Self {
            grid: SignalGrid::new(signal, t, window_ms),
            a: Vec::new(),
            b: Vec::new(),
        }
    }

    /// The points `s` shares with the signal on their grid, and their correlation: as
    /// [`pearson`] of the columns of `aligned(&[signal, s], ..)`.
    pub(crate) fn correlate(&mut self, s: &Series) -> (usize, Option<Paired>) {
        self.grid.pair(s, &mut self.a, &mut self.b);
        (self.a.len(), pearson(&self.a, &self.b))
    }
}

/// The window means of every (explaining pod, attribution metric) of one evaluation,
/// computed once: the node's totals, each pod's share and its evidence all use them.
struct Means {
    metrics: usize,
    values: Vec<Option<(f64, usize)>>,
}

impl Means {
    /// The mean of the `i`-th pod's `j`-th attribution metric.
    fn get(&self, i: usize, j: usize) -> Option<(f64, usize)> {
        self.values.get(i * self.metrics + j).copied().flatten()
    }
}

/// True for metrics whose values are ratios or utilisations, not additive usage: their
/// share of the node is not meaningful.
pub(crate) fn is_ratio(name: &str) -> bool {
    name == "cpi"
        || name.starts_with("psi_")
        || ["_rate", "_ratio", "_util", "_percent"]
            .iter()
            .any(|s| name.ends_with(s))
}

impl Engine {
    /// The pods that may explain a degradation on `node` for policy `p`: every pod on the
    /// node except the victim and the policy's own victims. A pod already acted on stays
    /// while its samples say it is there: what it causes is not pinned on another pod.
    fn explainers(&self, p: u16, node: NodeId, victim: Option<PodId>) -> Vec<PodId> {
        self.cluster
            .node_pods(node)
            .iter()
            .copied()
            .filter(|&pod| Some(pod) != victim)
            .filter(|pod| {
                self.pods
                    .get(pod.index())
                    .and_then(Option::as_ref)
                    .is_some_and(|state| state.role(p) != Some(Role::Victim))
            })
            .collect()
    }

    /// The side effect an attribution has beyond its result: the onset of a Correlation
    /// policy is judged (and remembered) as [`Engine::attribute`] would judge it.
    pub(crate) fn judge_onset(&mut self, inputs: Inputs<'_>) {
        if self.policies[inputs.p as usize]
            .policy
            .spec
            .attribution
            .method
            == AttributionMethod::Correlation
        {
            let pods = self.explainers(inputs.p, inputs.node, inputs.victim);
            self.onset_steps(inputs, &pods);
        }
    }

    /// Scores every pod that may explain the degradation (see the module documentation).
    pub(crate) fn attribute(&mut self, inputs: Inputs<'_>) -> Attribution {
        let Inputs { p, node, t, .. } = inputs;
        let pods = self.explainers(p, node, inputs.victim);
        let steps = match self.policies[p as usize].policy.spec.attribution.method {
            AttributionMethod::Correlation => self.onset_steps(inputs, &pods),
            AttributionMethod::Usage => Vec::new(),
        };
        let means = self.window_means(p, &pods, t);
        let totals = self.node_usage_totals(p, pods.len(), &means);
        let spec = &self.policies[p as usize].policy.spec;
        let window = spec.attribution.window_ms;
        let mut pairing = inputs.signal.map(|sig| Pairing::new(sig, t, window));
        let placebos = self.placebos(inputs, &pods, pairing.as_mut());
        let tests = (pods.len() * spec.attribution.metrics.len()).max(1);
        let window_index = 1 + (t - inputs.since).max(0) as u64 / window.max(1);
        let k = window_index as f64;
        let level = self.config.false_blame_rate / (k * (k + 1.0)) / tests as f64;
        let mut scored: Vec<Scored> = Vec::with_capacity(pods.len());
        for (i, &pod) in pods.iter().enumerate() {
            let Some(state) = self.pods.get(pod.index()).and_then(Option::as_ref) else {
                continue;
            };
            let class = match state.role(p) {
                Some(Role::Candidate(c)) => Some(c),
                _ => None,
            };
            let excluded = self.exclusion(p, pod, t).or_else(|| {
                class
                    .is_none()
                    .then(|| Exclusion::never("not a candidate of this policy"))
            });
            let context = PodContext {
                pod,
                class,
                state,
                means: (&means, i),
            };
            let mut s = self.score_pod(inputs, context, (&totals, level, &placebos), &mut pairing);
            s.class = class;
            s.excluded = excluded;
            // A step at the onset counts while the pod is still there: fresh samples,
            // by its own cadence (see [`crate::cadence`]).
            let fresh = state.cadence.stale_after(self.config.staleness());
            let present = state.last_ts.is_some_and(|l| t - l <= fresh);
            for step in steps.iter().filter(|s| s.pod == pod && present) {
                step.apply(&mut s);
            }
            scored.push(s);
        }
        self.sort_scored(&mut scored);
        Attribution {
            scored,
            level,
            tests,
            window_index,
        }
    }

    /// The window mean of every pod of `pods` on every attribution metric of policy `p`.
    fn window_means(&self, p: u16, pods: &[PodId], t: i64) -> Means {
        let spec = &self.policies[p as usize].policy.spec;
        let (metrics, window) = (&spec.attribution.metrics, spec.attribution.window_ms);
        let mut values = Vec::with_capacity(pods.len() * metrics.len());
        for pod in pods {
            let state = self.pods.get(pod.index()).and_then(Option::as_ref);
            values.extend(
                metrics
                    .iter()
                    .map(|&m| state.and_then(|s| s.series(m)?.mean(t, window))),
            );
        }
        Means {
            metrics: metrics.len(),
            values,
        }
    }

    /// The placebo of every (candidate class, additive metric) among `pods`, for
    /// `Correlation` (see [`crate::placebo`]).
    fn placebos(
        &self,
        inputs: Inputs<'_>,
        pods: &[PodId],
        mut pairing: Option<&mut Pairing<'_>>,
    ) -> Placebos {
        let spec = &self.policies[inputs.p as usize].policy.spec;
        if spec.attribution.method != AttributionMethod::Correlation || inputs.signal.is_none() {
            return Vec::new();
        }
        let mut out: Placebos = Vec::new();
        for &pod in pods {
            let class = match self.pods.get(pod.index()).and_then(Option::as_ref) {
                Some(state) => match state.role(inputs.p) {
                    Some(Role::Candidate(c)) => Some(c),
                    _ => None,
                },
                None => continue,
            };
            for &m in &spec.attribution.metrics {
                if is_ratio(self.registry.name(m)) || out.iter().any(|(k, _)| *k == (class, m)) {
                    continue;
                }
                let placebo = pairing.as_deref_mut().and_then(|pairing| {
                    self.placebo((inputs.p, inputs.node, pairing), class, m, inputs.t)
                });
                out.push(((class, m), placebo));
            }
        }
        out
    }

    /// The node's usage of each attribution metric of policy `p`: the sum of the means
    /// over the window of the pods that may explain it.
    fn node_usage_totals(&self, p: u16, pods: usize, means: &Means) -> Vec<f64> {
        let spec = &self.policies[p as usize].policy.spec;
        (0..spec.attribution.metrics.len())
            .map(|j| {
                (0..pods)
                    .filter_map(|i| means.get(i, j))
                    .map(|(mean, _)| mean.max(0.0))
                    .sum()
            })
            .collect()
    }

    /// One pod's score, whether it counts, and the per-metric evidence.
    fn score_pod(
        &self,
        inputs: Inputs<'_>,
        PodContext {
            pod,
            class,
            state,
            means: (means, i),
        }: PodContext<'_>,
        (totals, level, placebos): (&[f64], f64, &Placebos),
        pairing: &mut Option<Pairing<'_>>,
    ) -> Scored {
        let spec = &self.policies[inputs.p as usize].policy.spec;
        let mut metrics = Vec::with_capacity(spec.attribution.metrics.len());
        let (mut score, mut best) = (None::<f64>, None::<(MetricId, f64)>);
        let mut shares = Vec::new();
        let min_r = spec.attribution.min_correlation;
        for (j, &m) in spec.attribution.metrics.iter().enumerate() {
            let placebo = placebos
                .iter()
                .find(|(k, _)| *k == (class, m))
                .and_then(|(_, pl)| pl.as_ref());
            let mean = means.get(i, j);
            let (mut evidence, share) =
                self.metric_evidence(inputs, (state, m, mean), totals[j], placebo, pairing);
            match (spec.attribution.method, evidence.correlation) {
                (AttributionMethod::Usage, _) => shares.extend(share),
                (AttributionMethod::Correlation, Some(r)) if evidence.ignored.is_none() => {
                    let p = evidence.p_value.unwrap_or(1.0);
                    if share.is_none() {
                        evidence.ignored = Some(Ignored::Text(
                            "a ratio: every pod's symptoms move with contention; shown, not evidence of cause",
                        ));
                    } else if r < min_r {
                        evidence.ignored = Some(Ignored::BelowMinCorrelation { r, min_r });
                    } else if p > level {
                        evidence.ignored = Some(Ignored::NotSignificant {
                            p,
                            n_eff: evidence.effective_points.unwrap_or(0.0),
                            level,
                        });
                    } else if let Some(cm) = evidence.common_mode.filter(|c| c.p_value > level) {
                        evidence.ignored = Some(Ignored::CommonMode {
                            r,
                            common_mode: cm,
                            level,
                        });
                    } else {
                        evidence.significant = true;
                        let weight = r * share.unwrap_or(0.0);
                        score = Some(score.map_or(weight, |s: f64| s.max(weight)));
                        if best.is_none_or(|(_, b)| r > b) {
                            best = Some((m, r));
                        }
                    }
                }
                _ => {}
            }
            metrics.push(evidence);
        }
        let qualifies = match spec.attribution.method {
            AttributionMethod::Correlation => best.is_some(),
            AttributionMethod::Usage => {
                let s =
                    (!shares.is_empty()).then(|| shares.iter().sum::<f64>() / shares.len() as f64);
                score = s;
                s.is_some_and(|s| s >= self.config.min_usage_share)
            }
        };
        Scored {
            pod,
            class: None,
            score,
            qualifies,
            metrics,
            excluded: None,
            best,
            onset: None,
            explains: best.map(|(_, r)| r * r),
        }
    }

    /// The evidence of one metric of one pod, and its share of the node (additive
    /// metrics only).
    fn metric_evidence(
        &self,
        inputs: Inputs<'_>,
        (state, m, mean): (&PodState, MetricId, Option<(f64, usize)>),
        total: f64,
        placebo: Option<&Placebo>,
        pairing: &mut Option<Pairing<'_>>,
    ) -> (Evidence, Option<f64>) {
        let spec = &self.policies[inputs.p as usize].policy.spec;
        let name = self.registry.name(m);
        let series = state.series(m);
        let share = mean
            .filter(|_| !is_ratio(name))
            .and_then(|(mean, _)| (total > 0.0).then(|| mean.max(0.0) / total));
        let mut score = Evidence {
            metric: m,
            correlation: None,
            share,
            points: mean.map_or(0, |(_, n)| n),
            ignored: None,
            p_value: None,
            effective_points: None,
            significant: false,
            onset_step: None,
            common_mode: None,
        };
        if spec.attribution.method == AttributionMethod::Usage {
            if mean.is_none() {
                score.ignored = Some(Ignored::Text("no samples in the window"));
            } else if share.is_none() {
                score.ignored = Some(Ignored::Text("not additive, or the node's usage is zero"));
            }
            return (score, share);
        }
        let (Some(pairing), Some(series)) = (pairing.as_mut(), series) else {
            score.ignored = Some(Ignored::Text("no samples in the window"));
            return (score, share);
        };
        let (points, c) = pairing.correlate(series);
        score.points = points;
        let Some(c) = c else {
            score.ignored = Some(Ignored::Text("no varying overlap with the victim signal"));
            return (score, share);
        };
        // Common mode is not evidence: the correlation must beat the placebo's (pods like
        // this one on other nodes, which cannot be the cause).
        if let Some(pl) = placebo {
            score.common_mode = Some(CommonMode {
                placebo_pods: pl.pods,
                placebo_correlation: pl.bar,
                p_value: p_above(c.r, pl.bar, c.n_eff),
            });
        }
        let p = p_positive(c.r, c.n_eff);
        score.correlation = Some(c.r);
        score.p_value = Some(p);
        score.effective_points = Some(c.n_eff);
        score.ignored = self.correlation_ignored(c.n, c.cv_b, share);
        (score, share)
    }

    /// Why a correlation cannot count, if it cannot: too few shared points, usage too
    /// flat, or too small a share of the node's usage.
    fn correlation_ignored(&self, points: usize, cv_b: f64, share: Option<f64>) -> Option<Ignored> {
        if points < self.config.min_correlation_points {
            Some(Ignored::FewPoints(points))
        } else if cv_b < self.config.min_usage_variation {
            Some(Ignored::Flat(cv_b))
        } else if share.is_some_and(|s| s < self.config.min_usage_share) {
            Some(Ignored::SmallShare {
                share: share.unwrap_or(0.0),
                min_share: self.config.min_usage_share,
            })
        } else {
            None
        }
    }

    /// Counting pods first, higher score first, then policy class order, then by name.
    fn sort_scored(&self, scored: &mut [Scored]) {
        let key = |s: &Scored| {
            self.cluster
                .pod_info(s.pod)
                .map(|i| (i.namespace.as_str(), i.name.as_str()))
        };
        scored.sort_by(|a, b| {
            b.qualifies
                .cmp(&a.qualifies)
                .then(
                    b.score
                        .unwrap_or(f64::MIN)
                        .total_cmp(&a.score.unwrap_or(f64::MIN)),
                )
                .then(
                    a.class
                        .unwrap_or(u16::MAX)
                        .cmp(&b.class.unwrap_or(u16::MAX)),
                )
                .then_with(|| key(a).cmp(&key(b)))
        });
    }

    /// Renders scores for an explanation.
    pub(crate) fn render_scores(&self, p: u16, scored: &[Scored]) -> Vec<CandidateScore> {
        let spec = &self.policies[p as usize].policy.spec;
        scored
            .iter()
            .map(|s| CandidateScore {
                pod: self
                    .cluster
                    .pod_info(s.pod)
                    .map(|i| i.key())
                    .unwrap_or_default(),
                class: s
                    .class
                    .map(|c| spec.candidates[c as usize].name.clone())
                    .unwrap_or_default(),
                score: s.score,
                metrics: s
                    .metrics
                    .iter()
                    .map(|m| m.render(self.registry.name(m.metric)))
                    .collect(),
                explains: s.explains,
                candidate: s.class.is_some(),
                excluded: s.excluded.as_ref().map(|e| e.reason.clone()).or_else(|| {
                    (!s.qualifies)
                        .then(|| "does not explain the degradation significantly".to_owned())
                }),
            })
            .collect()
    }
}
