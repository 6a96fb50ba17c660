//! Counters of what the engine saw and did, in total and per policy.

use serde::Serialize;

/// Counters of what the engine saw and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    /// Samples offered.
    pub offered: u64,
    /// Samples applied to state.
    pub applied: u64,
    /// Samples older than the watermark when they arrived.
    pub late: u64,
    /// Samples with the same (ts, node, pod, container) as an earlier one.
    pub duplicates: u64,
    /// Samples for a node the cluster view does not know.
    pub unknown_node: u64,
    /// Samples for a pod the cluster view does not know (or another incarnation of it).
    pub unknown_pod: u64,
    /// Samples carrying no metric any policy references.
    pub irrelevant: u64,
    /// Samples too far ahead of the stream that no other sample confirmed (a broken clock
    /// would otherwise make everything else late): pushed out of the held pool, or still
    /// held at the end of a bounded stream.
    pub too_far_ahead: u64,
    /// Queued samples dropped because their pod or node left this engine (deleted, replaced,
    /// or its partition revoked) before they were applied.
    pub forgotten: u64,
    /// Evaluations of a node (once per evaluation window; a node with no trigger that can
    /// hold and no open episode is not evaluated).
    pub evaluations: u64,
    /// Attributions run (scoring every co-located pod): while planning, and during the
    /// run-up of a trigger that holds but is not sustained yet.
    pub attributions: u64,
    /// Interference episodes started.
    pub detections: u64,
    /// Episodes ended.
    pub recoveries: u64,
    /// Decisions with outcome Executed.
    pub executed: u64,
    /// Decisions with outcome DryRun.
    pub dry_run: u64,
    /// Decisions with outcome Blocked.
    pub blocked: u64,
    /// Evaluations where a policy fired but no pod that may be acted on explained it.
    pub unattributed: u64,
    /// Episodes reported as unexplained (nobody blamed), once each.
    pub unexplained: u64,
    /// Unexplained episodes by cause (`no-samples`, `too-few-points`, `not-significant`,
    /// `all-excluded`).
    pub unexplained_by_cause: std::collections::BTreeMap<String, u64>,
}

impl EngineStats {
    /// What became of the offered samples, by outcome: `applied` and each reason a sample
    /// is dropped for. With the samples still waiting (`Engine::buffered` and
    /// `Engine::held`) they add up to `offered`.
    pub fn sample_outcomes(&self) -> [(&'static str, u64); 8] {
        [
            ("applied", self.applied),
            ("late", self.late),
            ("duplicate", self.duplicates),
            ("unknown_node", self.unknown_node),
            ("unknown_pod", self.unknown_pod),
            ("irrelevant", self.irrelevant),
            ("too_far_ahead", self.too_far_ahead),
            ("forgotten", self.forgotten),
        ]
    }
}

/// Per-policy counters, as the policy status reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PolicyStats {
    /// Episodes detected.
    pub detections: u64,
    /// Evict decisions executed.
    pub evicted: u64,
    /// Migrate decisions executed.
    pub migrated: u64,
    /// DryRun decisions.
    pub dry_run: u64,
    /// Blocked decisions.
    pub blocked: u64,
}
