//! The action ledger: sliding-window counts of past actions, per policy, for the limits
//! `maxActionsPerNode`, `...PerWorkload`, `...PerNamespace` and `...Total`.

use std::collections::VecDeque;

use fulcrum_policies::compile::{CompiledLimits, WindowLimit};

use super::cluster::NodeId;

/// One action counted against limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionRecord {
    /// Event time of the action.
    pub at: i64,
    /// Node the target ran on.
    pub node: NodeId,
    /// The target's workload key.
    pub workload: String,
    /// The target's namespace.
    pub namespace: String,
    /// The target, `namespace/name`.
    pub target: String,
}

/// Which limit stopped an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitHit {
    /// `maxActionsPerNode`.
    Node,
    /// `maxActionsPerWorkload`.
    Workload,
    /// `maxActionsPerNamespace`.
    Namespace,
    /// `maxActionsTotal`.
    Total,
}

impl LimitHit {
    /// The policy field name.
    pub fn field(self) -> &'static str {
        match self {
            LimitHit::Node => "maxActionsPerNode",
            LimitHit::Workload => "maxActionsPerWorkload",
            LimitHit::Namespace => "maxActionsPerNamespace",
            LimitHit::Total => "maxActionsTotal",
        }
    }
}

/// Past actions of one policy, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    records: VecDeque<ActionRecord>,
}

/// A record counts from its time until its window has passed. A record stamped later than
/// `now` (restored from the audit log while older samples are re-read) counts too: the
/// action did happen.
fn in_window(record: &ActionRecord, now: i64, limit: WindowLimit) -> bool {
    now - record.at < limit.window_ms as i64
}

impl Ledger {
    /// Records an action.
    pub fn record(&mut self, record: ActionRecord) {
        self.records.push_back(record);
    }

    /// Removes the most recent record of `target` (the API refused the action).
    pub fn retract(&mut self, target: &str) -> bool {
        match self.records.iter().rposition(|r| r.target == target) {
            Some(i) => self.records.remove(i).is_some(),
            None => false,
        }
    }

    /// Forgets records older than the longest limit window.
    pub fn prune(&mut self, now: i64, limits: &CompiledLimits) {
        let longest = [
            limits.per_node,
            limits.per_workload,
            limits.per_namespace,
            limits.total,
        ]
        .iter()
        .map(|l| l.window_ms)
        .max()
        .unwrap_or(0) as i64;
        while self.records.front().is_some_and(|r| now - r.at >= longest) {
            self.records.pop_front();
        }
    }

    fn count(&self, now: i64, limit: WindowLimit, matches: impl Fn(&ActionRecord) -> bool) -> u32 {
        self.records
            .iter()
            .filter(|r| in_window(r, now, limit) && matches(r))
            .count() as u32
    }

    /// The first policy-wide limit (node, total) that one more action on `node` at `now`
    /// would exceed, with the count already used.
    pub fn node_or_total_hit(
        &self,
        now: i64,
        node: NodeId,
        limits: &CompiledLimits,
    ) -> Option<(LimitHit, u32, WindowLimit)> {
        let used = self.count(now, limits.per_node, |r| r.node == node);
        if used >= limits.per_node.count {
            return Some((LimitHit::Node, used, limits.per_node));
        }
        let used = self.count(now, limits.total, |_| true);
        if used >= limits.total.count {
            return Some((LimitHit::Total, used, limits.total));
        }
        None
    }

    /// The first target-specific limit (workload, namespace) that one more action would
    /// exceed.
    pub fn target_hit(
        &self,
        now: i64,
        workload: &str,
        namespace: &str,
        limits: &CompiledLimits,
    ) -> Option<(LimitHit, u32, WindowLimit)> {
        let used = self.count(now, limits.per_workload, |r| r.workload == workload);
        if used >= limits.per_workload.count {
            return Some((LimitHit::Workload, used, limits.per_workload));
        }
        let used = self.count(now, limits.per_namespace, |r| r.namespace == namespace);
        if used >= limits.per_namespace.count {
            return Some((LimitHit::Namespace, used, limits.per_namespace));
        }
        None
    }

    /// A one-line account of how much of each limit is used, for explanations.
    pub fn usage(
        &self,
        now: i64,
        node: NodeId,
        workload: &str,
        namespace: &str,
        limits: &CompiledLimits,
    ) -> String {
        let show =
            |used: u32, l: WindowLimit| format!("{used}/{} per {}", l.count, fmt_ms(l.window_ms));
        format!(
            "node {}, workload {}, namespace {}, total {}",
            show(
                self.count(now, limits.per_node, |r| r.node == node),
                limits.per_node
            ),
            show(
                self.count(now, limits.per_workload, |r| r.workload == workload),
                limits.per_workload
            ),
            show(
                self.count(now, limits.per_namespace, |r| r.namespace == namespace),
                limits.per_namespace
            ),
            show(self.count(now, limits.total, |_| true), limits.total),
        )
    }

    /// All records, oldest first.
    pub fn records(&self) -> impl Iterator<Item = &ActionRecord> {
        self.records.iter()
    }
}

/// Formats milliseconds the way policies write durations (`90s`, `10m`, `1h`).
pub fn fmt_ms(ms: u64) -> String {
    match ms {
        0 => "0s".to_owned(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> CompiledLimits {
        let l = |count, window_ms| WindowLimit { count, window_ms };
        CompiledLimits {
            per_node: l(1, 600_000),
            per_workload: l(2, 3_600_000),
            per_namespace: l(3, 3_600_000),
            total: l(4, 3_600_000),
            cooldown_ms: 0,
            min_pod_age_ms: 0,
        }
    }

    fn rec(at: i64, node: u32, workload: &str, ns: &str) -> ActionRecord {
        ActionRecord {
            at,
            node: NodeId(node),
            workload: workload.into(),
            namespace: ns.into(),
            target: format!("{ns}/{workload}-{at}"),
        }
    }

    #[test]
    fn each_limit_is_a_sliding_window() {
        let l = limits();
        let mut ledger = Ledger::default();
        ledger.record(rec(0, 1, "w", "a"));
        assert_eq!(
            ledger.node_or_total_hit(1, NodeId(1), &l).map(|h| h.0),
            Some(LimitHit::Node)
        );
        assert_eq!(ledger.node_or_total_hit(1, NodeId(2), &l), None);
        // The node window (10m) slides past the action.
        assert_eq!(ledger.node_or_total_hit(600_000, NodeId(1), &l), None);
        ledger.record(rec(10, 2, "w", "a"));
        assert_eq!(
            ledger.target_hit(20, "w", "a", &l).map(|h| h.0),
            Some(LimitHit::Workload)
        );
        ledger.record(rec(20, 3, "v", "a"));
        assert_eq!(
            ledger.target_hit(30, "u", "a", &l).map(|h| h.0),
            Some(LimitHit::Namespace)
        );
        ledger.record(rec(30, 4, "x", "b"));
        assert_eq!(
            ledger.node_or_total_hit(40, NodeId(9), &l).map(|h| h.0),
            Some(LimitHit::Total)
        );
        assert!(ledger.retract("b/x-30"));
        assert_eq!(ledger.node_or_total_hit(40, NodeId(9), &l), None);
        ledger.prune(3_600_020, &l);
        assert_eq!(ledger.records().count(), 0);
    }

    #[test]
    fn a_record_stamped_later_than_now_still_counts() {
        // Restored from the audit log while older samples are re-read.
        let l = limits();
        let mut ledger = Ledger::default();
        ledger.record(rec(3_600_000, 1, "w", "a"));
        assert_eq!(
            ledger.node_or_total_hit(0, NodeId(1), &l).map(|h| h.0),
            Some(LimitHit::Node)
        );
        assert_eq!(
            ledger.target_hit(0, "w", "a", &l).map(|h| h.1),
            None,
            "one of two per workload used"
        );
        assert!(
            ledger
                .usage(0, NodeId(1), "w", "a", &l)
                .contains("node 1/1")
        );
    }

    #[test]
    fn durations_format_like_policies() {
        assert_eq!(fmt_ms(600_000), "10m");
        assert_eq!(fmt_ms(3_600_000), "1h");
        assert_eq!(fmt_ms(90_000), "90s");
        assert_eq!(fmt_ms(1_500), "1500ms");
    }
}
