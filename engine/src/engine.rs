//! The [`Engine`] value: its state, construction and read-only accessors. What it does is
//! split by concern: [`crate::ingest`] (samples and the watermark), [`crate::policy_set`]
//! (policies, coverage and roles), [`crate::cluster_updates`] (the cluster view),
//! [`crate::restore`] (actions taken before it started), [`crate::evaluate`] and
//! [`crate::planner`] (detection and decisions).

use std::collections::HashMap;

use fulcrum_policies::{CompiledPolicy, MetricRegistry};

use crate::cluster::{ClusterIndex, FastMap, NodeId, PodId};
use crate::config::EngineConfig;
use crate::explain::Streak;
use crate::limits::Ledger;
use crate::onset::OnsetStep;
use crate::reorder::ReorderBuffer;
use crate::state::{NodeState, PodState};
use crate::stats::{EngineStats, PolicyStats};

pub(crate) struct PolicySlot {
    pub(crate) policy: CompiledPolicy,
    /// The ledger limits are checked against in the policy's current mode: in DryRun it
    /// starts as a copy of the Enforce ledger and also counts dry-run actions.
    pub(crate) ledger: Ledger,
    /// While the policy is in DryRun: its Enforce ledger, restored when it switches back.
    pub(crate) enforce_ledger: Option<Ledger>,
    pub(crate) stats: PolicyStats,
}

/// The engine. See the module documentation.
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) registry: MetricRegistry,
    pub(crate) policies: Vec<PolicySlot>,
    pub(crate) cluster: ClusterIndex,
    pub(crate) pods: Vec<Option<PodState>>,
    pub(crate) nodes: Vec<Option<NodeState>>,
    /// Per metric id: bit 0 = tracked on pods, bit 1 = tracked on nodes.
    pub(crate) tracked: Vec<u8>,
    pub(crate) series_span_ms: u64,
    pub(crate) buffer: ReorderBuffer,
    pub(crate) watermark: i64,
    pub(crate) max_ts: i64,
    /// Samples too far ahead of the stream, waiting for confirmation (see [`crate::jump`]).
    pub(crate) held: Vec<crate::reorder::Pending>,
    /// Per node id: the newest time of a queued sample.
    pub(crate) node_seen: Vec<i64>,
    pub(crate) last_key: Option<(i64, NodeId, Option<PodId>, u64)>,
    /// Where in its node's pod list the next sample's pod is looked for first (see
    /// [`crate::resolve`]).
    pub(crate) pod_hint: u32,
    /// Nodes with samples applied and an evaluation pending (see [`crate::window`]).
    pub(crate) windows: crate::window::Windows,
    pub(crate) next_episode: u64,
    /// Targets (per policy) acted on before this engine started, restored from the audit
    /// log, with the time of the action (pruned after the restore window).
    pub(crate) acted_targets: HashMap<(String, String), i64>,
    /// The same for dry-run decisions of policies that are still in DryRun.
    pub(crate) dry_acted_targets: HashMap<(String, String), i64>,
    /// Decisions about evidence older than this are blocked (a feed catching up).
    pub(crate) horizon: i64,
    pub(crate) stats: EngineStats,
    /// Per policy and node: the main explanation over the recent evaluations of the
    /// current run of a trigger condition (its run-up included).
    pub(crate) streaks: FastMap<(u16, NodeId), Streak>,
    /// Per policy and node: the episode whose Blocked decision by a breaker is reported
    /// (attribution is skipped while a breaker still holds, see `planner.rs`).
    pub(crate) breaker_reported: FastMap<(u16, NodeId), u64>,
    /// Per policy, node and onset: the steps found at the onset (steady hogs).
    pub(crate) onset_memo: FastMap<(u16, NodeId, i64), Vec<OnsetStep>>,
    /// Migrations decided: workload → (when, source node, predicted destination).
    pub(crate) migrations: HashMap<String, Migration>,
    /// Disruptions decided per PodDisruptionBudget `(namespace, name)` since its status
    /// was last updated: one budget is not spent twice before the cluster view catches up.
    pub(crate) pdb_spent: HashMap<(String, String), i32>,
    /// Destination nodes' usages shared by the placements of one bucket (see
    /// [`crate::headroom::UsageCache`]).
    pub(crate) usage_cache: crate::headroom::UsageCache,
    /// What the stale-feed and storm breakers count, kept per node as its state changes.
    pub(crate) breaker_counts: crate::breaker_counts::BreakerCounts,
}

/// A migration the engine decided.
#[derive(Clone, Debug)]
pub(crate) struct Migration {
    pub(crate) at: i64,
    pub(crate) source: NodeId,
    pub(crate) destination: Option<NodeId>,
    pub(crate) requests: crate::cluster::Resources,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("policies", &self.policies.len())
            .field("nodes", &self.cluster.node_count())
            .field("pods", &self.cluster.pod_count())
            .field("watermark", &self.watermark)
            .field("buffered", &self.buffer.len())
            .field("held", &self.held.len())
            .field("stats", &self.stats)
            .finish()
    }
}

pub(crate) const POD_TRACKED: u8 = 1;
pub(crate) const NODE_TRACKED: u8 = 2;

impl Engine {
    /// An engine with no policies and an empty cluster view.
    pub fn new(config: EngineConfig) -> Self {
        Self {
            config,
            registry: MetricRegistry::new(),
            policies: Vec::new(),
            cluster: ClusterIndex::new(),
            pods: Vec::new(),
            nodes: Vec::new(),
            tracked: Vec::new(),
            series_span_ms: 0,
            buffer: ReorderBuffer::default(),
            watermark: i64::MIN,
            max_ts: i64::MIN,
            held: Vec::new(),
            node_seen: Vec::new(),
            last_key: None,
            pod_hint: 0,
            windows: crate::window::Windows::default(),
            next_episode: 1,
            acted_targets: HashMap::new(),
            dry_acted_targets: HashMap::new(),
            horizon: i64::MIN,
            stats: EngineStats::default(),
            streaks: FastMap::default(),
            breaker_reported: FastMap::default(),
            onset_memo: FastMap::default(),
            migrations: HashMap::new(),
            pdb_spent: HashMap::new(),
            usage_cache: crate::headroom::UsageCache::default(),
            breaker_counts: crate::breaker_counts::BreakerCounts::default(),
        }
    }
    /// The compiled policies, in evaluation order (priority, then name).
    pub fn policies(&self) -> impl Iterator<Item = (&CompiledPolicy, &PolicyStats)> {
        self.policies.iter().map(|s| (&s.policy, &s.stats))
    }
    /// The cluster view.
    pub fn cluster(&self) -> &ClusterIndex {
        &self.cluster
    }
    /// The metric registry (names of metric ids).
    pub fn registry(&self) -> &MetricRegistry {
        &self.registry
    }
    /// Counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }
    /// The watermark: samples at or before it have been applied.
    pub fn watermark(&self) -> i64 {
        self.watermark
    }
    /// The newest sample time offered so far.
    pub fn max_ts(&self) -> Option<i64> {
        (self.max_ts != i64::MIN).then_some(self.max_ts)
    }
    /// Samples waiting in the reorder buffer.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }
}
