//! Shared-resource headroom, predicted: a hog is never migrated onto a node where its
//! usage would push that node over a trigger of a policy covering it.
//!
//! The hog's load is its mean usage, over its policy's attribution window, of each
//! additive metric of that policy's `attribution.metrics` it reports (`R`). A destination's
//! node-scope trigger tracks (one per node-scope trigger of every policy covering it) are
//! predicted with that load added:
//!
//! - a trigger on `R` itself: the node's current value (the mean of its series of `R` over
//!   the window, else the sum of its pods' means) plus the hog's usage;
//! - a trigger on `R`'s utilisation, the metric named `<stem>_util` where `<stem>` is `R`
//!   without its unit (`mem_bw_bytes_per_sec` and `mem_bw_util`, `cpu_usage_cores` and
//!   `cpu_util`): the node's current utilisation scaled by its pods' usage of `R` with the
//!   hog's added, `util × (S + u) / S` (when the destination's pods report no usage of `R`,
//!   the capacity is estimated on the source node, `S_source / util_source`).
//!
//! A prediction above the trigger's threshold (the static `above`, or an outlier
//! trigger's learned threshold once its baseline has `minSamples`) rejects the node.
//! Victim-scope triggers (a latency, a CPI) cannot be predicted from usage: for them,
//! placement keeps the rule that no trigger condition holds on the destination now, and an
//! evidence-based one: where victims of a policy attributing on `R` run, the node's
//! predicted usage of `R` must stay below the source node's usage of `R` over the window,
//! the level that just made a victim cross a trigger (see [`crate::tolerated`]).

use std::cell::RefCell;

use fulcrum_policies::MetricId;
use fulcrum_policies::compile::Condition;
use smallvec::SmallVec;

use crate::attribution::is_ratio;
use crate::cluster::{NodeId, PodId};
use crate::engine::Engine;
use crate::state::Track;

/// Units stripped from a metric's name to find the resource it measures.
const UNITS: [&str; 7] = [
    "_bytes_per_sec",
    "_per_sec",
    "_usage_cores",
    "_cores",
    "_bytes",
    "_usage",
    "_util",
];

/// The resource a metric measures: its name without its unit.
pub(crate) fn stem(name: &str) -> &str {
    UNITS
        .iter()
        .find_map(|u| name.strip_suffix(u))
        .unwrap_or(name)
}

/// A migrated pod's usage of one additive metric.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Load {
    pub(crate) metric: MetricId,
    pub(crate) usage: f64,
}

/// What placing a load on a node would do: the load, where it comes from, and the window.
pub(crate) struct Placing<'a> {
    pub(crate) load: &'a [Load],
    pub(crate) source: NodeId,
    pub(crate) t: i64,
    pub(crate) window: u64,
    /// The source node's usages, computed once for every destination tried.
    pub(crate) source_memo: &'a UsageMemo,
    /// How a trigger's metric relates to a load's, by metric pair: the names are compared
    /// once per search, not once per destination.
    relations: RefCell<SmallVec<[(MetricId, MetricId, Relation); 4]>>,
}

impl<'a> Placing<'a> {
    /// Placing `load` from `source` at `t`, over `window`.
    pub(crate) fn new(
        load: &'a [Load],
        (source, t): (NodeId, i64),
        window: u64,
        source_memo: &'a UsageMemo,
    ) -> Self {
        Self {
            load,
            source,
            t,
            window,
            source_memo,
            relations: RefCell::default(),
        }
    }
}

/// How a node-scope trigger's metric is predicted from a load's metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Relation {
    /// The trigger watches the load's metric itself.
    Same,
    /// The trigger watches the load's resource's utilisation.
    Util,
    /// Not predicted from this load.
    Unrelated,
}

/// Why a destination is rejected, as numbers: put in words ([`Engine::describe`]) only
/// for the example a failed search shows.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Crossing {
    /// A node-scope trigger's prediction is above its threshold.
    Trigger {
        /// The trigger's policy, index and metric.
        track: (u16, u16, MetricId),
        load: Load,
        predicted: f64,
        threshold: f64,
    },
    /// The node's victims would reach the level that hurt the source's (see
    /// [`crate::tolerated`]).
    Untolerated(Untolerated),
}

/// A destination's victims would reach the level of the hog's resource that made victims
/// cross a trigger on the source node.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Untolerated {
    pub(crate) load: Load,
    pub(crate) predicted: f64,
    /// The source node's usage of the resource.
    pub(crate) source: f64,
    pub(crate) victim: PodId,
    pub(crate) policy: u16,
}

/// The source node's usages, computed once per placement (for every destination tried).
#[derive(Default)]
pub(crate) struct UsageMemo(RefCell<SmallVec<[Memoised; 8]>>);

/// Destination nodes' usages, shared by every placement within one bucket of event time.
///
/// A placement that finds no node checks every node, and a culprit Blocked for placement
/// is planned again at each evaluation of its node: without sharing, each search sums the
/// window means of every pod of the cluster (O(cluster) per search, O(cluster × firing
/// nodes) per period). A destination's usage is computed by the first search of a bucket
/// (`bucket_ms`) and reused by the others of that bucket: a prediction may miss the
/// samples, and the pods bound or removed, of the bucket in progress (a window is 30 or
/// more buckets). Removing a node clears the cache ([`UsageCache::clear`]): its id may be
/// reused by another node within the bucket.
#[derive(Debug, Default)]
pub(crate) struct UsageCache(std::sync::Mutex<UsageCacheInner>);

#[derive(Debug, Default)]
struct UsageCacheInner {
    /// The bucket the values were computed in.
    bucket: i64,
    /// Values computed so far (tests count the usage predictions a search makes).
    #[cfg(test)]
    computed: usize,
    values: crate::cluster::FastMap<(NodeId, MetricId, bool, u64), f64>,
}

impl UsageCache {
    /// The value of `(node, m, pods_only)` over `window` in the bucket of `t`, computed by
    /// `f` the first time.
    fn get(
        &self,
        (node, m, pods_only): (NodeId, MetricId, bool),
        (t, window, width): (i64, u64, u64),
        f: impl FnOnce() -> f64,
    ) -> f64 {
        let bucket = t.div_euclid(width.max(1) as i64);
        let key = (node, m, pods_only, window);
        {
            let mut inner = self.lock();
            if inner.bucket != bucket {
                inner.bucket = bucket;
                inner.values.clear();
            }
            if let Some(&v) = inner.values.get(&key) {
                return v;
            }
        }
        let v = f();
        let mut inner = self.lock();
        inner.values.insert(key, v);
        #[cfg(test)]
        {
            inner.computed += 1;
        }
        v
    }

    /// Forgets every value (a node was removed: its id may name another node next).
    pub(crate) fn clear(&mut self) {
        let inner = self
            .0
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.values.clear();
    }

    /// How many values were computed (not found) so far.
    #[cfg(test)]
    pub(crate) fn computed(&self) -> usize {
        self.lock().computed
    }

    /// The values (a panic while they were held left nothing half-written: the guard is
    /// held only to read or insert one value).
    fn lock(&self) -> std::sync::MutexGuard<'_, UsageCacheInner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One memoised usage: the node, the metric, whether only its pods' series were summed,
/// and the value.
type Memoised = (NodeId, MetricId, bool, f64);

impl UsageMemo {
    /// The value memoised for `(node, m, pods_only)`, computed by `f` the first time.
    fn get(&self, key: (NodeId, MetricId, bool), f: impl FnOnce() -> f64) -> f64 {
        let found = self
            .0
            .borrow()
            .iter()
            .find(|(n, m, o, _)| (*n, *m, *o) == key)
            .map(|e| e.3);
        found.unwrap_or_else(|| {
            let v = f();
            self.0.borrow_mut().push((key.0, key.1, key.2, v));
            v
        })
    }
}

impl Engine {
    /// The load `pod` would carry to another node (see the module documentation).
    pub(crate) fn hog_load(&self, p: u16, pod: PodId, t: i64) -> Vec<Load> {
        let spec = &self.policies[p as usize].policy.spec;
        let Some(state) = self.pods.get(pod.index()).and_then(Option::as_ref) else {
            return Vec::new();
        };
        spec.attribution
            .metrics
            .iter()
            .filter(|&&m| !is_ratio(self.registry.name(m)))
            .filter_map(|&m| {
                let (usage, _) = state.series(m)?.mean(t, spec.attribution.window_ms)?;
                (usage > 0.0).then_some(Load { metric: m, usage })
            })
            .collect()
    }

    /// Why `placing` on `dest` would push it over a trigger, if it would.
    pub(crate) fn crossing(&self, placing: &Placing<'_>, dest: NodeId) -> Option<Crossing> {
        let tracks = self
            .nodes
            .get(dest.index())
            .and_then(Option::as_ref)
            .map_or(&[][..], |s| &s.tracks[..]);
        for track in tracks {
            let Some(threshold) = self.armed_threshold(track) else {
                continue;
            };
            for load in placing.load {
                let predicted = match self.relation(placing, track.metric, load.metric) {
                    Relation::Same => self.node_usage(dest, load.metric, placing) + load.usage,
                    Relation::Util => {
                        let Some(p) = self.predicted_util(dest, track, *load, placing) else {
                            continue;
                        };
                        p
                    }
                    Relation::Unrelated => continue,
                };
                if predicted > threshold {
                    return Some(Crossing::Trigger {
                        track: (track.policy, track.trigger, track.metric),
                        load: *load,
                        predicted,
                        threshold,
                    });
                }
            }
        }
        self.untolerated(placing, dest)
    }

    /// [`Engine::crossing`], in words.
    #[cfg(test)]
    pub(crate) fn would_cross(&self, placing: &Placing<'_>, dest: NodeId) -> Option<String> {
        self.crossing(placing, dest)
            .map(|why| self.describe(placing, why))
    }

    /// A crossing, in words.
    pub(crate) fn describe(&self, placing: &Placing<'_>, why: Crossing) -> String {
        match why {
            Crossing::Trigger {
                track: (policy, trigger, metric),
                load,
                predicted,
                threshold,
            } => {
                let slot = &self.policies[policy as usize];
                format!(
                    "{} would reach {predicted:.3} with the pod's {} ({:.3}) above {threshold:.3} of {}/{}",
                    self.registry.name(metric),
                    self.registry.name(load.metric),
                    load.usage,
                    slot.policy.name,
                    slot.policy.spec.triggers[trigger as usize].name
                )
            }
            Crossing::Untolerated(why) => self.describe_untolerated(placing, why),
        }
    }

    /// How a trigger on `watched` is predicted from a load of `m` (memoised per search).
    fn relation(&self, placing: &Placing<'_>, watched: MetricId, m: MetricId) -> Relation {
        let known = placing
            .relations
            .borrow()
            .iter()
            .find(|(w, l, _)| (*w, *l) == (watched, m))
            .map(|e| e.2);
        known.unwrap_or_else(|| {
            let (name, resource) = (self.registry.name(watched), self.registry.name(m));
            let relation = if watched == m {
                Relation::Same
            } else if name.ends_with("_util") && stem(name) == stem(resource) {
                Relation::Util
            } else {
                Relation::Unrelated
            };
            placing.relations.borrow_mut().push((watched, m, relation));
            relation
        })
    }

    /// The threshold of a trigger track, when it can hold (an outlier's baseline is warm).
    pub(crate) fn armed_threshold(&self, track: &Track) -> Option<f64> {
        let trigger =
            &self.policies[track.policy as usize].policy.spec.triggers[track.trigger as usize];
        let threshold = match trigger.condition {
            Condition::Above(above) => above,
            Condition::Outlier { min_samples, .. } => {
                let warm = track
                    .baseline
                    .is_some_and(|b| b.count >= u64::from(min_samples));
                if !warm {
                    return None;
                }
                track.threshold
            }
        };
        threshold.is_finite().then_some(threshold)
    }

    /// A node's current usage of `m`: its own series' mean over the window, else the sum
    /// of its pods' means. The source node's is memoised in `placing`, a destination's in
    /// the engine's [`UsageCache`].
    pub(crate) fn node_usage(&self, node: NodeId, m: MetricId, placing: &Placing<'_>) -> f64 {
        self.memoised(node, (m, false), placing, || {
            let own = self
                .nodes
                .get(node.index())
                .and_then(Option::as_ref)
                .and_then(|s| s.series(m))
                .and_then(|s| s.mean(placing.t, placing.window));
            own.map_or_else(|| self.pods_usage(node, m, placing), |(mean, _)| mean)
        })
    }

    /// The sum of the means of the pods on `node` of `m` over the window, memoised as
    /// [`Engine::node_usage`] is.
    fn pods_usage(&self, node: NodeId, m: MetricId, placing: &Placing<'_>) -> f64 {
        self.memoised(node, (m, true), placing, || {
            self.pods_usage_now(node, m, placing)
        })
    }

    /// `f`'s value for `node`: memoised per placement for the source node, per bucket for
    /// a destination.
    fn memoised(
        &self,
        node: NodeId,
        (m, pods_only): (MetricId, bool),
        placing: &Placing<'_>,
        f: impl FnOnce() -> f64,
    ) -> f64 {
        if node == placing.source {
            placing.source_memo.get((node, m, pods_only), f)
        } else {
            let when = (placing.t, placing.window, self.config.bucket_ms);
            self.usage_cache.get((node, m, pods_only), when, f)
        }
    }

    /// [`Engine::pods_usage`], computed.
    fn pods_usage_now(&self, node: NodeId, m: MetricId, placing: &Placing<'_>) -> f64 {
        self.cluster
            .node_pods(node)
            .iter()
            .filter_map(|pod| {
                let state = self.pods.get(pod.index())?.as_ref()?;
                state.series(m)?.mean(placing.t, placing.window)
            })
            .map(|(mean, _)| mean.max(0.0))
            .sum()
    }

    /// The utilisation `track` watches on `dest` once `load` is added: the current value
    /// scaled by the pods' usage (see the module documentation).
    fn predicted_util(
        &self,
        dest: NodeId,
        track: &Track,
        load: Load,
        placing: &Placing<'_>,
    ) -> Option<f64> {
        let util = |node: NodeId| {
            self.nodes
                .get(node.index())
                .and_then(Option::as_ref)?
                .series(track.metric)?
                .mean(placing.t, placing.window)
                .map(|(mean, _)| mean)
        };
        let current = util(dest).unwrap_or(track.last_value);
        let used = self.pods_usage(dest, load.metric, placing);
        if used > 0.0 && current > 0.0 {
            return Some(current * (used + load.usage) / used);
        }
        // Capacity as seen on the source node.
        let (u_src, s_src) = (
            util(placing.source)?,
            self.pods_usage(placing.source, load.metric, placing),
        );
        (u_src > 0.0 && s_src > 0.0).then(|| current + load.usage * u_src / s_src)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use fulcrum_policies::MetricRegistry;

    use super::{UsageCache, stem};
    use crate::cluster::NodeId;

    #[test]
    fn a_destination_usage_is_computed_once_per_bucket_and_window() {
        let cache = UsageCache::default();
        let m = MetricRegistry::new().intern("mem_bw");
        let computed = Cell::new(0);
        let get = |node: u32, t: i64, window: u64| {
            cache.get((NodeId(node), m, true), (t, window, 10_000), || {
                computed.set(computed.get() + 1);
                f64::from(computed.get())
            })
        };
        assert_eq!(get(1, 20_000, 300_000), 1.0);
        // Later in the same bucket: the first value.
        assert_eq!(get(1, 29_999, 300_000), 1.0);
        // Another node, another window: their own values.
        assert_eq!(get(2, 29_999, 300_000), 2.0);
        assert_eq!(get(1, 29_999, 60_000), 3.0);
        // The next bucket: computed again (control: the same key as the first).
        assert_eq!(get(1, 30_000, 300_000), 4.0);
        assert_eq!(computed.get(), 4);
    }

    #[test]
    fn a_usage_and_its_utilisation_share_a_stem() {
        for (usage, util) in [
            ("mem_bw_bytes_per_sec", "mem_bw_util"),
            ("cpu_usage_cores", "cpu_util"),
            ("mem_bw", "mem_bw_util"),
        ] {
            assert_eq!(stem(usage), stem(util), "{usage} / {util}");
        }
        assert_ne!(stem("net_rx_bytes_per_sec"), stem("mem_bw_util"));
        assert_ne!(stem("gpu_mem_bw_util"), stem("mem_bw_bytes_per_sec"));
    }
}
