//! Attribution: which candidate on the node causes the interference.
//!
//! - `Correlation` (CPI2-style): Pearson correlation, over `attribution.window`, between the
//!   victim's degradation signal (the trigger's metric) and each candidate's usage of each
//!   listed metric, on time buckets both series hold. A metric only counts when the
//!   candidate's usage really varies (coefficient of variation >= `min_usage_variation`)
//!   and is a meaningful share of the node's usage (>= `min_usage_share`), and there are at
//!   least `min_correlation_points` buckets. A candidate is blamed when its best counting
//!   correlation reaches `minCorrelation`; blamed candidates are ranked by their
//!   *correlated share*, max over metrics of `max(r, 0) * share`, so a big consumer whose
//!   usage moves with the degradation ranks above a small one whose symptoms merely move
//!   with it (everyone's LLC misses rise on a contended node).
//! - `Usage`: the candidate's share of the node's usage, averaged over the listed metrics;
//!   blamed when the share reaches `min_usage_share`.

use fulcrum_policies::MetricId;
use fulcrum_policies::spec::AttributionMethod;

use crate::cluster::{NodeId, PodId};
use crate::decision::{CandidateScore, MetricScore};
use crate::engine::Engine;
use crate::guards::Exclusion;
use crate::series::{Series, correlate};
use crate::state::{PodState, Role};

/// A candidate with its score and, if it cannot be acted on, why.
#[derive(Clone, Debug)]
pub(crate) struct Scored {
    pub(crate) pod: PodId,
    pub(crate) class: u16,
    pub(crate) score: Option<f64>,
    pub(crate) qualifies: bool,
    pub(crate) metrics: Vec<MetricScore>,
    pub(crate) excluded: Option<Exclusion>,
}

/// What one metric contributes to a candidate's score.
enum Counted {
    /// Nothing (see the metric's `ignored` reason).
    No,
    /// A share of the node's usage (`Usage`).
    Share(f64),
    /// A counting correlation `r` and the correlated share `max(r, 0) * share`.
    Correlated { r: f64, weighted: f64 },
}

impl Engine {
    /// Scores every candidate of policy `p` on `node` at time `t`. `signal` is the victim's
    /// (or node's) series of the trigger metric. Sorted: policy class order, blamed first,
    /// higher score first, then by name. A blamed candidate scoring below
    /// `min_relative_score` of the best score on the node is demoted to "not blamed": when
    /// the main culprit cannot be acted on, a minor contributor is not acted on instead.
    pub(crate) fn score_candidates(
        &self,
        p: u16,
        node: NodeId,
        t: i64,
        signal: Option<&Series>,
    ) -> Vec<Scored> {
        let totals = self.node_usage_totals(p, node, t);
        let mut scored = Vec::new();
        for &pod in self.cluster.node_pods(node) {
            let Some(state) = self.pods.get(pod.index()).and_then(Option::as_ref) else {
                continue;
            };
            let Some(Role::Candidate(class)) = state.role(p) else {
                continue;
            };
            let (score, qualifies, metrics) = self.score_pod(p, state, &totals, t, signal);
            scored.push(Scored {
                pod,
                class,
                score,
                qualifies,
                metrics,
                excluded: self.exclusion(p, pod, t),
            });
        }
        self.demote_minor_contributors(&mut scored);
        self.sort_scored(&mut scored);
        scored
    }

    /// The node's usage of each attribution metric of policy `p`: the sum of every pod's
    /// mean over the window.
    fn node_usage_totals(&self, p: u16, node: NodeId, t: i64) -> Vec<f64> {
        let spec = &self.policies[p as usize].policy.spec;
        let window = spec.attribution.window_ms;
        let pods = self.cluster.node_pods(node);
        spec.attribution
            .metrics
            .iter()
            .map(|&m| {
                pods.iter()
                    .filter_map(|pod| {
                        self.pods
                            .get(pod.index())?
                            .as_ref()?
                            .series(m)?
                            .mean(t, window)
                    })
                    .map(|(mean, _)| mean.max(0.0))
                    .sum()
            })
            .collect()
    }

    /// One candidate's score, whether it is blamed, and the per-metric evidence.
    fn score_pod(
        &self,
        p: u16,
        state: &PodState,
        totals: &[f64],
        t: i64,
        signal: Option<&Series>,
    ) -> (Option<f64>, bool, Vec<MetricScore>) {
        let spec = &self.policies[p as usize].policy.spec;
        let mut metrics = Vec::with_capacity(spec.attribution.metrics.len());
        let mut best: Option<f64> = None;
        let mut best_r: Option<f64> = None;
        let mut shares = Vec::new();
        for (i, &m) in spec.attribution.metrics.iter().enumerate() {
            let (score, counted) = self.score_metric(p, state, m, totals[i], t, signal);
            match counted {
                Counted::Share(s) => shares.push(s),
                Counted::Correlated { r, weighted } => {
                    best_r = Some(best_r.map_or(r, |b: f64| b.max(r)));
                    best = Some(best.map_or(weighted, |b: f64| b.max(weighted)));
                }
                Counted::No => {}
            }
            metrics.push(score);
        }
        let (score, qualifies) = match spec.attribution.method {
            AttributionMethod::Correlation => (
                best,
                best_r.is_some_and(|r| r >= spec.attribution.min_correlation),
            ),
            AttributionMethod::Usage => {
                let s =
                    (!shares.is_empty()).then(|| shares.iter().sum::<f64>() / shares.len() as f64);
                (s, s.is_some_and(|s| s >= self.config.min_usage_share))
            }
        };
        (score, qualifies, metrics)
    }

    /// The evidence of one metric of one candidate, and what it contributes to the score.
    fn score_metric(
        &self,
        p: u16,
        state: &PodState,
        m: MetricId,
        total: f64,
        t: i64,
        signal: Option<&Series>,
    ) -> (MetricScore, Counted) {
        let spec = &self.policies[p as usize].policy.spec;
        let window = spec.attribution.window_ms;
        let series = state.series(m);
        let mean = series.and_then(|s| s.mean(t, window));
        let share = mean.and_then(|(mean, _)| (total > 0.0).then(|| mean.max(0.0) / total));
        let mut score = MetricScore {
            metric: self.registry.name(m).to_owned(),
            correlation: None,
            share,
            points: mean.map_or(0, |(_, n)| n),
            ignored: None,
        };
        let counted = match spec.attribution.method {
            AttributionMethod::Usage => match share {
                Some(s) => Counted::Share(s),
                None if mean.is_none() => {
                    score.ignored = Some("no samples in the window".into());
                    Counted::No
                }
                None => {
                    score.ignored = Some("the node's usage of this metric is zero".into());
                    Counted::No
                }
            },
            AttributionMethod::Correlation => {
                let c = match (signal, series) {
                    (Some(sig), Some(series)) => correlate(sig, series, t, window),
                    _ => None,
                };
                match c {
                    None => {
                        score.ignored = Some("no varying overlap with the victim signal".into());
                        Counted::No
                    }
                    Some(c) => {
                        score.correlation = Some(c.r);
                        score.points = c.points;
                        score.ignored = self.correlation_ignored(c.points, c.cv_b, share);
                        if score.ignored.is_none() {
                            // Correlated share: how much of the contended resource the
                            // candidate holds, if it moves with the degradation at all.
                            let weighted = c.r.max(0.0) * share.unwrap_or(0.0);
                            Counted::Correlated { r: c.r, weighted }
                        } else {
                            Counted::No
                        }
                    }
                }
            }
        };
        (score, counted)
    }

    /// Why a correlation does not count, if it does not: too few shared buckets, usage too
    /// flat, or too small a share of the node's usage.
    fn correlation_ignored(&self, points: usize, cv_b: f64, share: Option<f64>) -> Option<String> {
        if points < self.config.min_correlation_points {
            Some(format!("only {points} shared buckets"))
        } else if cv_b < self.config.min_usage_variation {
            Some(format!("usage too flat (variation {cv_b:.3})"))
        } else if share.is_none_or(|s| s < self.config.min_usage_share) {
            Some(format!(
                "share of node usage {:.1}% is below {:.0}%",
                share.unwrap_or(0.0) * 100.0,
                self.config.min_usage_share * 100.0
            ))
        } else {
            None
        }
    }

    /// Blamed candidates scoring below `min_relative_score` of the best are not blamed.
    fn demote_minor_contributors(&self, scored: &mut [Scored]) {
        let top = scored
            .iter()
            .filter(|s| s.qualifies)
            .filter_map(|s| s.score)
            .fold(0.0, f64::max);
        for s in scored {
            if s.qualifies && s.score.unwrap_or(0.0) < self.config.min_relative_score * top {
                s.qualifies = false;
            }
        }
    }

    /// Policy class order, blamed first, higher score first, then by name.
    fn sort_scored(&self, scored: &mut [Scored]) {
        let key = |s: &Scored| {
            self.cluster
                .pod_info(s.pod)
                .map(|i| (i.namespace.clone(), i.name.clone()))
        };
        scored.sort_by(|a, b| {
            a.class
                .cmp(&b.class)
                .then(b.qualifies.cmp(&a.qualifies))
                .then(
                    b.score
                        .unwrap_or(f64::MIN)
                        .total_cmp(&a.score.unwrap_or(f64::MIN)),
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
                class: spec.candidates[s.class as usize].name.clone(),
                score: s.score,
                metrics: s.metrics.clone(),
                excluded: s
                    .excluded
                    .as_ref()
                    .map(|e| e.reason.clone())
                    .or_else(|| (!s.qualifies).then(|| "below the blame threshold".to_owned())),
            })
            .collect()
    }
}
