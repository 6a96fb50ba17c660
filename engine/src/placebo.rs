//! Common mode is not evidence: a pod's usage and the victim's signal that both follow the
//! whole cluster's load (a daily curve, a traffic spike reaching every service) correlate
//! without one causing the other.
//!
//! The placebo of a scored pod on one metric is the same metric of up to `placebo_pods`
//! pods *of the same kind* on other nodes the policy covers (the same candidate class; for
//! a pod that is not a candidate, pods that are neither candidates nor victims of the
//! policy), which cannot be the cause of this node's degradation. Each placebo pod's
//! bucket values in the window are standardised (its own mean and deviation), and the
//! placebo series is their mean per bucket: the cluster-wide trend of that kind of pod.
//! The placebo's **bar** is how closely it follows the victim's signal: the signal's
//! correlation with the trend (on their aligned grid) when it is significant at
//! [`COMMON_MODE_LEVEL`] over its effective points, 0 otherwise (a chance correlation of
//! persistent series sets no bar, so a real antagonist keeps its own test). A pod's
//! correlation with the victim's
//! signal counts only when it *beats the placebo*: it is significantly above the bar,
//! `P(Z > (atanh r − atanh bar) × sqrt(n_eff − 3))` over the pod's effective points, at
//! the same level as the correlation itself (with a bar of 0 this is the correlation's
//! own test). A pod that only follows the cluster's load does no better than pods that
//! cannot be the cause; a real antagonist, whose bursts are its own, clears a placebo that
//! does not follow the victim.
//!
//! Placebo pods are picked deterministically and cheaply: other covered nodes in id
//! order starting after this node, one matching pod per node per round, at most
//! [`SCAN_NODES`] nodes visited, so the cost is bounded by `placebo_pods` series of the
//! window whatever the cluster's size.

use fulcrum_policies::MetricId;
use smallvec::SmallVec;

use crate::attribution::Pairing;
use crate::cluster::{NodeId, PodId};
use crate::engine::Engine;
use crate::series::Series;
use crate::significance::p_positive;
use crate::state::Role;

/// Most other nodes visited to find placebo pods.
pub(crate) const SCAN_NODES: usize = 64;

/// The cluster-wide trend of one kind of pod on one metric, and the bar it sets.
pub(crate) struct Placebo {
    /// Placebo pods that contributed.
    pub(crate) pods: usize,
    /// The victim signal's correlation with the trend when it is a common mode (see the
    /// module documentation), else 0.
    pub(crate) bar: f64,
}

/// The one-sided level at which a placebo's correlation with the victim's signal is a
/// common mode, not chance (persistent series correlate by chance over a window).
pub(crate) const COMMON_MODE_LEVEL: f64 = 0.01;

/// The correlation of `s` with the victim's signal (prepared in `pairing` over the window)
/// on their aligned points, when it is significant at [`COMMON_MODE_LEVEL`] over its
/// effective points; 0 otherwise.
fn follows(s: &Series, pairing: &mut Pairing<'_>) -> f64 {
    let (_, c) = pairing.correlate(s);
    c.filter(|c| p_positive(c.r, c.n_eff) <= COMMON_MODE_LEVEL)
        .map_or(0.0, |c| c.r.max(0.0))
}

/// The placebos of one evaluation, by (candidate class, metric).
pub(crate) type Placebos = Vec<((Option<u16>, MetricId), Option<Placebo>)>;

impl Engine {
    /// The placebo of pods of candidate class `class` (`None`: not a candidate) on metric
    /// `m` for policy `p`, degraded on `node` (victim signal prepared in `pairing` over
    /// the policy's window ending at `t`), over the window ending at `t`.
    pub(crate) fn placebo(
        &self,
        (p, node, pairing): (u16, NodeId, &mut Pairing<'_>),
        class: Option<u16>,
        m: MetricId,
        t: i64,
    ) -> Option<Placebo> {
        let k = self.config.placebo_pods;
        if k == 0 {
            return None;
        }
        let window = self.policies[p as usize].policy.spec.attribution.window_ms;
        let mut series = Series::new(window, self.config.bucket_ms);
        let mut pods = 0;
        for pod in self.placebo_pods(p, node, class, m, t, k) {
            let Some(s) = self.pod_series(pod, m) else {
                continue;
            };
            let points: Vec<(i64, f64)> = s
                .epochs(t, window)
                .filter_map(|e| s.at(e).map(|v| (e, v)))
                .collect();
            if points.len() < 3 {
                continue;
            }
            let n = points.len() as f64;
            let mean = points.iter().map(|(_, v)| v).sum::<f64>() / n;
            let var = points.iter().map(|(_, v)| (v - mean).powi(2)).sum::<f64>() / n;
            if var <= 1e-12 * mean * mean + f64::MIN_POSITIVE {
                continue;
            }
            let sd = var.sqrt();
            for (e, v) in points {
                series.push(e * s.width_ms(), (v - mean) / sd);
            }
            pods += 1;
        }
        (pods > 0).then(|| Placebo {
            pods,
            bar: follows(&series, pairing),
        })
    }

    fn pod_series(&self, pod: PodId, m: MetricId) -> Option<&Series> {
        self.pods.get(pod.index())?.as_ref()?.series(m)
    }

    /// Up to `k` pods of the same kind as class `class` on other nodes covered by `p`, with
    /// samples of `m` in the window: one per node per round (see the module documentation).
    pub(crate) fn placebo_pods(
        &self,
        p: u16,
        node: NodeId,
        class: Option<u16>,
        m: MetricId,
        t: i64,
        k: usize,
    ) -> Vec<PodId> {
        let window = self.policies[p as usize].policy.spec.attribution.window_ms;
        // Other nodes in id order starting after this one (ids are ascending), covered by
        // `p`: no list of every node is built or sorted.
        let after = self.cluster.node_ids().filter(|n| n.index() > node.index());
        let before = self.cluster.node_ids().filter(|n| n.index() < node.index());
        let nodes: Vec<NodeId> = after
            .chain(before)
            .filter(|n| {
                self.nodes
                    .get(n.index())
                    .and_then(Option::as_ref)
                    .is_some_and(|s| s.covering.contains(&p))
            })
            .take(SCAN_NODES)
            .collect();
        let like = |pod: &PodId| {
            let Some(state) = self.pods.get(pod.index()).and_then(Option::as_ref) else {
                return false;
            };
            let kind = match state.role(p) {
                Some(Role::Victim) => return false,
                Some(Role::Candidate(c)) => Some(c),
                None => None,
            };
            kind == class
                && state
                    .series(m)
                    .and_then(|s| s.mean(t, window))
                    .is_some_and(|(_, n)| n >= 3)
        };
        // Per node, the matching pods found so far and how far its pods were looked at:
        // round `r` takes each node's `r`-th match, and every pod is judged at most once.
        let mut found: Vec<(SmallVec<[PodId; 4]>, usize)> = vec![(SmallVec::new(), 0); nodes.len()];
        let mut out = Vec::new();
        for round in 0..k {
            let before = out.len();
            for (&n, (matches, looked)) in nodes.iter().zip(found.iter_mut()) {
                let pods = self.cluster.node_pods(n);
                while matches.len() <= round && *looked < pods.len() {
                    if like(&pods[*looked]) {
                        matches.push(pods[*looked]);
                    }
                    *looked += 1;
                }
                if let Some(&pod) = matches.get(round) {
                    out.push(pod);
                    if out.len() == k {
                        return out;
                    }
                }
            }
            if out.len() == before {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::attribution::Pairing;
    use crate::tests::{S, T0, node, pod, policy, sample};
    use crate::{Engine, EngineConfig};

    #[test]
    fn placebo_pods_are_of_the_same_kind_on_other_nodes_one_per_node_first() {
        let mut e = Engine::new(EngineConfig {
            placebo_pods: 3,
            ..EngineConfig::default()
        });
        for n in ["n1", "n2", "n3"] {
            e.upsert_node(node(n));
            e.upsert_pod(pod("shop", &format!("web-{n}"), n, "online"));
            for k in 0..2 {
                e.upsert_pod(pod("spark", &format!("b{k}-{n}"), n, "batch"));
            }
            e.upsert_pod(pod("ai", &format!("t-{n}"), n, "ai"));
        }
        assert!(e.set_policies(&[policy("")]).is_empty());
        let mut out = Vec::new();
        for i in 0..12 {
            let ts = T0 + i * 10 * S;
            for n in ["n1", "n2", "n3"] {
                let v = (i % 4) as f64 + 1.0;
                e.offer(&sample(
                    ts,
                    n,
                    Some(("shop", &format!("web-{n}"))),
                    &[("mem_bw", v)],
                ));
                for name in [format!("b0-{n}"), format!("b1-{n}")] {
                    e.offer(&sample(ts, n, Some(("spark", &name)), &[("mem_bw", v)]));
                }
                e.offer(&sample(
                    ts,
                    n,
                    Some(("ai", &format!("t-{n}"))),
                    &[("mem_bw", v)],
                ));
            }
            e.advance_auto(&mut out);
        }
        e.flush(&mut out);
        let n1 = e.cluster.node_id("n1").expect("n1");
        let mem_bw = e.registry.get("mem_bw").expect("tracked");
        let t = T0 + 110 * S;
        let names = |class| {
            e.placebo_pods(0, n1, class, mem_bw, t, 3)
                .into_iter()
                .map(|p| e.cluster.pod_info(p).map(|i| i.key()).unwrap_or_default())
                .collect::<Vec<_>>()
        };
        // Batch (class 0): one per other node, then a second from the first node.
        assert_eq!(
            names(Some(0)),
            ["spark/b0-n2", "spark/b0-n3", "spark/b1-n2"]
        );
        // AI (class 1): only one per node exists; never a victim, never n1's own pods.
        assert_eq!(names(Some(1)), ["ai/t-n2", "ai/t-n3"]);
        // Not a candidate: none of that kind with data.
        assert!(names(None).is_empty());
        let web = e.cluster.pod_id("shop", "web-n1").expect("web");
        let signal = e.pods[web.index()]
            .as_ref()
            .and_then(|s| s.series(mem_bw))
            .expect("signal")
            .clone();
        let window = e.policies[0].policy.spec.attribution.window_ms;
        let mut pairing = Pairing::new(&signal, t, window);
        let placebo = e
            .placebo((0, n1, &mut pairing), Some(0), mem_bw, t)
            .expect("a placebo");
        assert_eq!(placebo.pods, 3);
        // Every pod here follows one pattern: the bar is high.
        assert!(placebo.bar > 0.8, "{}", placebo.bar);
        // Off: no placebo at all.
        e.config.placebo_pods = 0;
        assert!(
            e.placebo((0, n1, &mut pairing), Some(0), mem_bw, t)
                .is_none()
        );
    }
}
