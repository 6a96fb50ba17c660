//! Engine settings that are not part of any policy.

/// Tunables of the engine; the defaults suit agents that sample every 5-15 s.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// How late (in event time) a sample may arrive and still be applied in order. Samples
    /// are held until the watermark passes them; older ones are dropped as late.
    pub lateness_ms: u64,
    /// A node or series without a sample for this long is stale and never acted on: the
    /// floor of the staleness bound (see [`crate::cadence`]).
    pub stale_after_ms: u64,
    /// A node or series is also fresh for this many of its own observed sampling intervals
    /// (0: `stale_after_ms` alone is the bound).
    pub stale_cadences: f64,
    /// Width of the buckets that correlation and usage share are computed on.
    pub bucket_ms: u64,
    /// Buckets both series must share before a correlation counts.
    pub min_correlation_points: usize,
    /// Least coefficient of variation a candidate's usage needs for its correlation to
    /// count (flat series correlate by accident).
    pub min_usage_variation: f64,
    /// Least share of the node's usage of a metric a candidate needs for that metric to
    /// count (tiny consumers cannot be the cause).
    pub min_usage_share: f64,
    /// The false-blame rate allowed per episode: spent over the episode's attribution
    /// windows (`rate / (k (k + 1))` in window `k`) and divided by the pods × metrics
    /// tested, it is the level a correlation's p-value must reach.
    pub false_blame_rate: f64,
    /// A pod's step at the onset counts when it is at least this many robust standard
    /// deviations (1.4826 × median absolute deviation) of its values before the onset: a
    /// pod that appears or wakes up, not one whose usage wanders.
    pub onset_sigma: f64,
    /// A pod's step at the onset counts when it is at least this fraction of the node's
    /// total increase of the metric.
    pub onset_dominance: f64,
    /// Common mode: pods of the same kind on other nodes (a placebo, see `placebo.rs`)
    /// whose trend a correlation must beat, and whose step at the onset a pod's step must
    /// clearly exceed (see `onset.rs`). 0 turns both tests off.
    pub placebo_pods: usize,
    /// Evaluations in a row (at least one bucket apart) that must name the same main
    /// explanation before anything is acted on or reported blocked.
    pub stable_evaluations: u32,
    /// Storm breaker: when more than this fraction of the live nodes have interference at
    /// once, nothing is acted on (a systemic cause is likelier).
    pub storm_fraction: f64,
    /// The storm breaker needs at least this many nodes with interference.
    pub storm_min_nodes: usize,
    /// Feed breaker: when more than this fraction of the nodes that report samples are
    /// stale, nothing is acted on.
    pub stale_fraction: f64,
    /// A sample more than this far ahead of the newest sample so far is dropped: one
    /// broken clock must not make every other sample late.
    pub max_forward_jump_ms: u64,
    /// A node is evaluated once per window of this much event time, at its latest sample
    /// in the window, rather than at every distinct time of its samples (agents whose pods
    /// sample at slightly different instants); see [`crate::window`]. 0: at every sample
    /// time.
    pub evaluation_window_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            lateness_ms: 15_000,
            stale_after_ms: 60_000,
            stale_cadences: 2.5,
            bucket_ms: 10_000,
            min_correlation_points: 6,
            min_usage_variation: 0.05,
            min_usage_share: 0.1,
            false_blame_rate: 0.002,
            onset_sigma: 20.0,
            onset_dominance: 0.5,
            placebo_pods: 8,
            stable_evaluations: 2,
            storm_fraction: 0.3,
            storm_min_nodes: 3,
            stale_fraction: 0.5,
            max_forward_jump_ms: 600_000,
            evaluation_window_ms: 2_000,
        }
    }
}

impl EngineConfig {
    /// The staleness rule: the floor and the multiple of the observed cadence.
    pub fn staleness(&self) -> crate::cadence::Staleness {
        crate::cadence::Staleness {
            floor_ms: self.stale_after_ms,
            cadences: self.stale_cadences,
        }
    }
}
