//! Per-pod and per-node streaming state: the series policies need, trigger tracks, and
//! interference episodes. Created when a pod or node is first seen, freed when it goes.

use fulcrum_policies::MetricId;
use fulcrum_policies::compile::{CompiledTrigger, Condition};
use fulcrum_policies::spec::Mode;
use smallvec::SmallVec;

use super::cadence::{Cadence, Staleness};
use super::decision::Outcome;
use super::series::{Baseline, Moments, Series};

mod slim;
pub use slim::Slim;

/// A trigger evaluated on one series (a victim pod's or a node's).
#[derive(Clone, Debug)]
pub struct Track {
    /// Index of the policy in the engine's policy list.
    pub policy: u16,
    /// Index of the trigger in the policy.
    pub trigger: u16,
    /// Metric the trigger watches.
    pub metric: MetricId,
    /// Start of the current run of samples that meet the condition.
    pub since: Option<i64>,
    /// Time of the last sample.
    pub last_ts: i64,
    /// The last value.
    pub last_value: f64,
    /// The threshold the last value was compared with.
    pub threshold: f64,
    /// The learned baseline (outlier triggers).
    pub moments: Option<Box<Moments>>,
    /// The baseline the last value was compared with (outlier triggers).
    pub baseline: Option<Baseline>,
    /// The observed sampling cadence (staleness derives from it).
    pub cadence: Cadence,
}

/// Relative floor on the baseline deviation: a perfectly flat history would otherwise make
/// any tiny rise an outlier.
pub const MIN_RELATIVE_STD: f64 = 0.01;

impl Track {
    /// A fresh track for `trigger`.
    pub fn new(policy: u16, trigger: u16, spec: &CompiledTrigger) -> Self {
        Self {
            policy,
            trigger,
            metric: spec.metric,
            since: None,
            last_ts: i64::MIN,
            last_value: 0.0,
            threshold: f64::INFINITY,
            moments: match spec.condition {
                Condition::Outlier {
                    baseline_window_ms, ..
                } => Some(Box::new(Moments::new(baseline_window_ms))),
                Condition::Above(_) => None,
            },
            baseline: None,
            cadence: Cadence::default(),
        }
    }

    /// Applies a sample. A gap longer than the staleness (see [`crate::cadence`]) breaks a
    /// run: `sustainedFor` needs consecutive samples that all meet the condition, the
    /// first and the last `sustainedFor` apart, none further apart than the staleness.
    pub fn update(
        &mut self,
        ts: i64,
        value: f64,
        condition: Condition,
        stale: impl Into<Staleness>,
    ) {
        let previous = (self.last_ts != i64::MIN).then_some(self.last_ts);
        if previous.is_some_and(|last| ts - last > self.cadence.stale_after(stale)) {
            self.since = None;
        }
        self.cadence.observe(previous, ts);
        let holds = match condition {
            Condition::Above(threshold) => {
                self.threshold = threshold;
                value > threshold
            }
            Condition::Outlier {
                sigma, min_samples, ..
            } => {
                let moments = self
                    .moments
                    .get_or_insert_with(|| Box::new(Moments::new(1)));
                let b = moments.baseline(ts);
                let std = b.std.max(b.mean.abs() * MIN_RELATIVE_STD).max(1e-9);
                self.threshold = b.mean + sigma * std;
                self.baseline = Some(Baseline { std, ..b });
                let holds = b.count >= u64::from(min_samples) && value > self.threshold;
                // Learn only from normal samples, so the anomaly does not become the norm.
                if !holds {
                    moments.push(ts, value);
                }
                holds
            }
        };
        if holds {
            self.since.get_or_insert(ts);
        } else {
            self.since = None;
        }
        self.last_ts = ts;
        self.last_value = value;
    }

    /// True when the condition holds now (sustained or not) on fresh data.
    pub fn holding(&self, now: i64, stale: impl Into<Staleness>) -> bool {
        self.since.is_some() && now - self.last_ts <= self.cadence.stale_after(stale)
    }

    /// The last time at which [`Track::holding`] is true until the next update (`None`
    /// while the condition does not hold).
    pub fn holding_until(&self, stale: impl Into<Staleness>) -> Option<i64> {
        self.since
            .map(|_| self.last_ts.saturating_add(self.cadence.stale_after(stale)))
    }

    /// True when the condition has held for `sustained_for_ms` and the data is fresh at `now`.
    pub fn fired(&self, now: i64, sustained_for_ms: u64, stale: impl Into<Staleness>) -> bool {
        self.since
            .is_some_and(|since| now - since >= sustained_for_ms as i64)
            && now - self.last_ts <= self.cadence.stale_after(stale)
    }
}

/// What a pod is to one policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A victim of the policy.
    Victim,
    /// A candidate of the policy's class with this index.
    Candidate(u16),
}

/// Streaming state of one pod.
#[derive(Clone, Debug, Default)]
pub struct PodState {
    /// Roles per policy index (only for policies that cover the pod's node).
    pub roles: SmallVec<[(u16, Role); 4]>,
    /// Series of tracked metrics, created on first value.
    pub series: SeriesSet,
    /// Victim-scope trigger tracks.
    pub tracks: Tracks,
    /// Time of the last sample.
    pub last_ts: Option<i64>,
    /// The pod's sampling cadence.
    pub cadence: Cadence,
    /// An executed action was decided on this pod; it is not targeted again.
    pub acted: bool,
    /// A dry-run action was decided on this pod: DryRun policies do not target it again,
    /// Enforce policies ignore it (a dry run consumes nothing Enforce needs).
    pub dry_acted: bool,
    /// Bit `i` set: metric id `i` (below 64) is tracked on pods but nothing ever reads
    /// this pod's series of it (see [`wanted`]), so none is kept.
    pub skip: u64,
}

impl PodState {
    /// The series for `metric`, if it has data.
    pub fn series(&self, metric: MetricId) -> Option<&Series> {
        self.series
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, s)| s)
    }

    /// Marks the pod as acted on by a decision with `outcome`.
    pub fn mark_acted(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::DryRun => self.dry_acted = true,
            _ => self.acted = true,
        }
    }

    /// True when a policy in `mode` must not target the pod again.
    pub fn acted_for(&self, mode: Mode) -> bool {
        self.acted || (mode == Mode::DryRun && self.dry_acted)
    }

    /// True when the pod is a victim of any policy.
    pub fn is_victim(&self) -> bool {
        self.roles.iter().any(|(_, r)| *r == Role::Victim)
    }

    /// The pod's role for `policy`.
    pub fn role(&self, policy: u16) -> Option<Role> {
        self.roles
            .iter()
            .find(|(p, _)| *p == policy)
            .map(|(_, r)| *r)
    }
}

/// An interference episode of one policy on one node: from the first firing until every
/// trigger has been clear for `recovery.clearFor`.
#[derive(Clone, Debug)]
pub struct Episode {
    /// Policy index.
    pub policy: u16,
    /// Engine-wide episode number.
    pub id: u64,
    /// When it started.
    pub started: i64,
    /// Since when no trigger holds (`None` while firing).
    pub clear_since: Option<i64>,
    /// Hashes of (target, reason) of Blocked decisions already reported in this episode.
    pub reported: SmallVec<[u64; 4]>,
    /// An action was decided in this episode (its effect is awaited during the cooldown).
    pub acted: bool,
}

/// Streaming state of one node.
#[derive(Clone, Debug, Default)]
pub struct NodeState {
    /// Policies covering the node, in evaluation order (indices into the policy list).
    pub covering: SmallVec<[u16; 4]>,
    /// Series of node-level metrics.
    pub series: SeriesSet,
    /// Node-scope trigger tracks.
    pub tracks: Tracks,
    /// Open episodes, one per policy at most.
    pub episodes: SmallVec<[Episode; 1]>,
    /// Time of the last sample about the node or one of its pods.
    pub last_ts: Option<i64>,
    /// The node's sampling cadence.
    pub cadence: Cadence,
    /// Time of the last executed action on one of its pods.
    pub last_action: Option<i64>,
    /// Time of the last dry-run action on one of its pods (cooldown of DryRun policies).
    pub last_dry_action: Option<i64>,
    /// An upper bound on when a trigger track of the node or of its pods last holds (see
    /// [`Track::holding_until`]): after it, and with no open episode, evaluating the node
    /// changes nothing, so it is skipped. `None`: no track has held.
    pub armed_until: Option<i64>,
    /// The last time at which the node is not stale (`last_ts` plus its staleness bound),
    /// kept with `last_ts` so the stale-feed breaker does not recompute it per node.
    pub fresh_until: Option<i64>,
    /// The latest [`Track::holding_until`] over the node's and its pods' tracks, exact
    /// unless `pressure_dirty` (then recomputed on demand): what the storm breaker and
    /// placement ask of every node, in O(1).
    pub pressure_until: Option<i64>,
    /// `pressure_until` may be wrong: a track that held the maximum was updated down, or
    /// tracks were rebuilt or moved (recomputed at the node's next sample; scanned until).
    pub pressure_dirty: bool,
}

impl NodeState {
    /// The last action that starts the cooldown of a policy in `mode`: executed actions for
    /// Enforce, executed or dry-run actions for DryRun.
    pub fn last_action_for(&self, mode: Mode) -> Option<i64> {
        match mode {
            Mode::Enforce => self.last_action,
            Mode::DryRun => self.last_action.max(self.last_dry_action),
        }
    }

    /// Notes that a trigger track may hold until `until`.
    pub fn arm(&mut self, until: Option<i64>) {
        if let Some(u) = until {
            self.armed_until = Some(self.armed_until.map_or(u, |a| a.max(u)));
        }
    }

    /// Keeps `pressure_until` exact after one pod's (or the node's) tracks were updated:
    /// `before` and `after` are their latest [`Track::holding_until`] before and after.
    pub fn note_pressure(&mut self, before: Option<i64>, after: Option<i64>) {
        if self.pressure_dirty {
            return;
        }
        let cache = self.pressure_until;
        let held_max = before.is_some() && before >= cache;
        if !held_max || after >= cache {
            // The maximum was elsewhere (unchanged), or these tracks still hold it.
            self.pressure_until = cache.max(after);
        } else {
            self.pressure_dirty = true;
        }
    }

    /// True when no trigger track of the node or of its pods can hold at `t` and no
    /// episode is open: evaluating the node at `t` would change nothing.
    pub fn idle_at(&self, t: i64) -> bool {
        self.episodes.is_empty() && self.armed_until.is_none_or(|u| u < t)
    }

    /// Starts the cooldown after an action decided at `at` with `outcome`.
    pub fn note_action(&mut self, at: i64, outcome: Outcome) {
        let slot = match outcome {
            Outcome::DryRun => &mut self.last_dry_action,
            _ => &mut self.last_action,
        };
        *slot = Some(slot.map_or(at, |t| t.max(at)));
    }

    /// The series for `metric`, if it has data.
    pub fn series(&self, metric: MetricId) -> Option<&Series> {
        self.series
            .iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, s)| s)
    }
}

/// True when a pod with [`PodState::skip`] `skip` keeps a series of `metric`. A pod's
/// series are read for the attribution metrics of the policies covering its node (its own
/// attribution, onset and placebo comparisons on other nodes), the additive attribution
/// metrics of every policy (a destination's usage when placing a migrated pod), and the
/// victim-scope trigger metrics of the policies it is a victim of; other metrics are
/// skipped.
#[inline]
pub fn wanted(skip: u64, metric: MetricId) -> bool {
    let i = metric.index();
    i >= 64 || skip & (1 << i) == 0
}

/// The trigger tracks of one pod or node.
pub type Tracks = Slim<Track>;

/// The series of one pod or node, by metric, created on first value.
pub type SeriesSet = Slim<(MetricId, Series)>;

/// The latest [`Track::holding_until`] of `tracks`.
pub fn holding_until(tracks: &[Track], stale: Staleness) -> Option<i64> {
    tracks.iter().filter_map(|t| t.holding_until(stale)).max()
}

/// Applies one sample's values to a pod's or node's series and trigger tracks.
/// `condition(track)` gives the trigger condition a track evaluates.
pub fn record(
    series: &mut SeriesSet,
    tracks: &mut [Track],
    values: impl IntoIterator<Item = (MetricId, f64)>,
    ts: i64,
    make: impl Fn() -> Series,
    condition: impl Fn(&Track) -> Condition,
    stale: Staleness,
) {
    for (metric, value) in values {
        match series.iter_mut().find(|(m, _)| *m == metric) {
            Some((_, s)) => s.push(ts, value),
            None => {
                let mut s = make();
                s.push(ts, value);
                series.push((metric, s));
            }
        }
        for track in tracks.iter_mut().filter(|t| t.metric == metric) {
            let condition = condition(track);
            track.update(ts, value, condition, stale);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fulcrum_policies::MetricRegistry;
    use fulcrum_policies::spec::TriggerScope;

    fn trigger(condition: Condition) -> CompiledTrigger {
        CompiledTrigger {
            name: "t".into(),
            scope: TriggerScope::Victim,
            metric: MetricRegistry::new().intern("cpi"),
            condition,
            sustained_for_ms: 30_000,
        }
    }

    #[test]
    fn a_threshold_must_hold_continuously_for_sustained_for() {
        let cond = Condition::Above(10.0);
        let mut t = Track::new(0, 0, &trigger(cond));
        for (ts, v) in [
            (0, 11.0),
            (10_000, 12.0),
            (20_000, 9.0),
            (30_000, 11.0),
            (40_000, 11.0),
        ] {
            t.update(ts, v, cond, 60_000);
        }
        assert!(
            !t.fired(40_000, 30_000, 60_000),
            "the dip at 20s restarted the run"
        );
        t.update(60_000, 11.0, cond, 60_000);
        assert!(t.fired(60_000, 30_000, 60_000));
        assert!(!t.fired(200_000, 30_000, 60_000), "stale data never fires");
        // A gap longer than stale_after breaks the run.
        t.update(200_000, 11.0, cond, 60_000);
        assert_eq!(t.since, Some(200_000));
    }

    #[test]
    fn an_outlier_needs_min_samples_and_learns_only_from_normal_values() {
        let cond = Condition::Outlier {
            sigma: 3.0,
            baseline_window_ms: 3_600_000,
            min_samples: 10,
        };
        let mut warming = Track::new(0, 0, &trigger(cond));
        for i in 0..9 {
            warming.update(i * 1_000, 1.0, cond, 60_000);
        }
        warming.update(9_000, 100.0, cond, 60_000);
        assert_eq!(warming.since, None, "9 samples are not enough to judge");

        let mut t = Track::new(0, 0, &trigger(cond));
        for i in 0..10 {
            t.update(i * 1_000, if i % 2 == 0 { 1.0 } else { 1.2 }, cond, 60_000);
        }
        for i in 10..50 {
            t.update(i * 1_000, 5.0, cond, 60_000);
        }
        let b = t.baseline.unwrap();
        assert_eq!(b.count, 10, "outliers stay out of the baseline: {b:?}");
        assert!((b.mean - 1.1).abs() < 1e-9);
        assert_eq!(t.since, Some(10_000));
        assert!(t.fired(49_000, 30_000, 60_000));
    }

    #[test]
    fn a_flat_baseline_has_a_deviation_floor() {
        let cond = Condition::Outlier {
            sigma: 2.0,
            baseline_window_ms: 3_600_000,
            min_samples: 5,
        };
        let mut t = Track::new(0, 0, &trigger(cond));
        for i in 0..10 {
            t.update(i * 1_000, 100.0, cond, 60_000);
        }
        t.update(10_000, 101.0, cond, 60_000);
        assert_eq!(t.since, None, "1% above a flat mean is within 2 * 1% floor");
        t.update(11_000, 103.0, cond, 60_000);
        assert_eq!(t.since, Some(11_000));
    }
}

#[cfg(test)]
mod sizes {
    use super::*;

    /// Every tracked pod holds a `PodState` (in the engine's pod table) and one `Series`
    /// per tracked metric: their inline sizes are per-pod memory.
    #[test]
    fn per_pod_state_stays_small() {
        let sizes = [
            ("PodState", std::mem::size_of::<Option<PodState>>()),
            ("NodeState", std::mem::size_of::<Option<NodeState>>()),
            ("Track", std::mem::size_of::<Track>()),
            ("Series", std::mem::size_of::<Series>()),
            ("Moments", std::mem::size_of::<Moments>()),
        ];
        println!("{sizes:?}");
        for (name, size, most) in sizes
            .iter()
            .zip([120, 400, 120, 40, 656])
            .map(|((n, s), m)| (n, *s, m))
        {
            assert!(size <= most, "{name}: {size} bytes");
        }
    }
}

#[cfg(test)]
mod skipped_metrics {
    use crate::tests::{T0, World, node, policy, sample};

    /// A GPU policy: covers accelerator nodes only; a ratio and an additive metric.
    fn gpu_policy() -> fulcrum_policies::InterferencePolicy {
        let text = r#"
apiVersion: fulcrum.dev/v1alpha1
kind: InterferencePolicy
metadata: {name: gpu}
spec:
  mode: Enforce
  nodeSelector: {matchExpressions: [{key: accelerator, operator: Exists}]}
  victims: {podSelector: {matchLabels: {class: online}}}
  candidates: [{name: ai, podSelector: {matchLabels: {class: ai}}, action: Evict}]
  triggers: [{name: cpi, metric: cpi, above: 2, sustainedFor: 30s}]
  attribution: {method: Usage, metrics: [llc_miss_rate, gpu_bw], window: 2m}
"#;
        let value: serde_json::Value = serde_yaml_ng::from_str(text).expect("policy YAML");
        fulcrum_policies::document::check_document(&value).expect("valid policy")
    }

    /// Which of the metrics a pod reported it keeps a series of.
    fn kept(w: &World, ns: &str, name: &str) -> Vec<&'static str> {
        let id = w.engine.cluster().pod_id(ns, name).expect("pod");
        let state = w.engine.pods[id.index()].as_ref().expect("state");
        [
            "latency_p99_ms",
            "cpi",
            "mem_bw",
            "cpu",
            "llc_miss_rate",
            "gpu_bw",
        ]
        .into_iter()
        .filter(|m| {
            let id = w.engine.registry.get(m).expect("tracked");
            state.series(id).is_some()
        })
        .collect()
    }

    fn report(w: &mut World, tick: i64) {
        let all = [
            ("latency_p99_ms", 40.0),
            ("cpi", 1.0),
            ("mem_bw", 1.0),
            ("cpu", 1.0),
            ("llc_miss_rate", 0.1),
            ("gpu_bw", 0.5),
        ];
        // Several ticks: a first sample is held until another confirms the clock.
        for t in tick..tick + 3 {
            for pod in [("shop", "web"), ("spark", "hog")] {
                w.offer(&sample(T0 + t * 10_000, "n1", Some(pod), &all));
            }
        }
        w.engine.flush(&mut w.events);
    }

    #[test]
    fn a_pod_keeps_only_the_series_something_reads() {
        let mut w = World::new(&[policy(""), gpu_policy()]);
        report(&mut w, 0);
        // n1 has no accelerator: the GPU policy's victim trigger and ratio metric are
        // never read of its pods; its additive metric is (a destination's usage).
        assert_eq!(
            kept(&w, "shop", "web"),
            ["latency_p99_ms", "mem_bw", "cpu", "gpu_bw"]
        );
        assert_eq!(kept(&w, "spark", "hog"), ["mem_bw", "cpu", "gpu_bw"]);
        // Covered by the GPU policy: the victim keeps its trigger metric, every pod the
        // ratio attribution metric.
        let mut gpu = node("n1");
        gpu.labels.insert("accelerator".into(), "nvidia".into());
        w.engine.upsert_node(gpu);
        report(&mut w, 10);
        assert_eq!(
            kept(&w, "shop", "web"),
            [
                "latency_p99_ms",
                "cpi",
                "mem_bw",
                "cpu",
                "llc_miss_rate",
                "gpu_bw"
            ]
        );
        assert_eq!(
            kept(&w, "spark", "hog"),
            ["mem_bw", "cpu", "llc_miss_rate", "gpu_bw"]
        );
        // And back: the series nothing reads any more are freed.
        w.engine.upsert_node(node("n1"));
        assert_eq!(kept(&w, "spark", "hog"), ["mem_bw", "cpu", "gpu_bw"]);
    }
}
