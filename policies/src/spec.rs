//! The `InterferencePolicy` custom resource (`fulcrum.dev/v1alpha1`): spec types and defaults.
//!
//! Every field is documented for users in `docs/policy.md`; the doc comments here become the
//! CRD schema's descriptions, which `kubectl explain interferencepolicy.spec` prints.
//!
//! Types are deliberately lenient where a strict type would make a malformed object
//! undecodable (durations are kept as strings): an invalid policy must still be read by the
//! controller so it can be reported in its status. [`crate::validate`] does the checking.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::duration::Duration;
use crate::status::InterferencePolicyStatus;

/// Upper bound on `candidates` and `triggers` entries; keeps CEL cost and engine work bounded.
pub const MAX_LIST_ENTRIES: usize = 16;

/// Declares which workloads to protect from interference, which co-located workloads may be
/// acted on, what counts as interference, and how far the controller may go.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "fulcrum.dev",
    version = "v1alpha1",
    kind = "InterferencePolicy",
    plural = "interferencepolicies",
    shortname = "ifp",
    category = "fulcrum",
    status = "InterferencePolicyStatus",
    derive = "PartialEq",
    doc = "Protects online workloads from co-located noisy neighbours: detects interference and evicts or migrates the culprit within declared limits.",
    // Printer columns as raw JSON: the structured form trips clippy's duplicated-attribute lint.
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Detections","type":"integer","jsonPath":".status.detections"}"#,
    printcolumn = r#"{"name":"Actions","type":"integer","jsonPath":".status.actions.total"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct InterferencePolicySpec {
    /// `DryRun` (default) records decisions without acting; `Enforce` evicts or migrates.
    #[serde(default)]
    pub mode: Mode,

    /// When several policies cover a node, the highest priority is evaluated first.
    #[serde(default)]
    pub priority: i32,

    /// Nodes this policy covers. Absent: every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,

    /// The workloads to protect. A victim is never acted on, by this or any other policy
    /// covering the node.
    pub victims: VictimSelector,

    /// Workloads that may be acted on, tried in this order.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub candidates: Vec<CandidateClass>,

    /// Interference is present when any trigger holds.
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub triggers: Vec<Trigger>,

    /// How the culprit among the node's candidates is found.
    #[serde(default)]
    pub attribution: Attribution,

    /// Hysteresis before a node counts as healthy again.
    #[serde(default)]
    pub recovery: Recovery,

    /// Rate limits and guards on actions.
    #[serde(default)]
    pub limits: Limits,

    /// How evictions are issued.
    #[serde(default)]
    pub eviction: EvictionSettings,
}

/// Whether a policy acts or only records what it would do.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Decide and report (Events, metrics, status, audit) but never call the Eviction API.
    #[default]
    DryRun,
    /// Evict or migrate the culprit.
    Enforce,
}

/// Selects the workloads a policy protects.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VictimSelector {
    /// Pods to protect, by label.
    pub pod_selector: LabelSelector,
    /// Namespaces the pods must be in, by namespace label. Absent: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// A class of workloads that may be acted on, and how.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CandidateClass {
    /// A name for this class, unique within the policy; appears in decisions.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Pods in this class, by label.
    pub pod_selector: LabelSelector,
    /// Namespaces the pods must be in, by namespace label. Absent: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// What to do with a culprit of this class.
    pub action: Action,
}

/// What the controller does to a culprit.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Evict through the Eviction API; the owning controller recreates it wherever the
    /// scheduler decides.
    Evict,
    /// Evict only if another node fits the pod, and steer its replacement away from the
    /// source node.
    Migrate,
}

/// Whether a trigger is evaluated per victim pod or per node.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TriggerScope {
    /// Evaluated on each victim pod's own samples.
    #[default]
    Victim,
    /// Evaluated on the node-level samples (samples without `pod`).
    Node,
}

/// A condition on one metric that signals interference.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.above) != has(self.outlier)").message("exactly one of above or outlier must be set"))]
pub struct Trigger {
    /// A name for this trigger, unique within the policy; appears in decisions.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// `Victim` (default): per victim pod. `Node`: on node-level samples.
    #[serde(default)]
    pub scope: TriggerScope,
    /// The metric to watch, e.g. `latency_p99_ms`.
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[a-z][a-z0-9_]*$"))]
    pub metric: String,
    /// Static threshold: the trigger holds while the metric is above this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<f64>,
    /// Learned threshold: the trigger holds while the metric is an outlier against its own
    /// history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier: Option<OutlierBaseline>,
    /// How long the condition must hold continuously before the trigger fires.
    #[serde(default = "defaults::sustained_for")]
    pub sustained_for: Duration,
}

/// A baseline learned from a series' own history (mean and standard deviation, CPI2-style).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.sigma > 0.0").message("sigma must be greater than 0"))]
#[x_kube(validation = Rule::new("duration(self.baselineWindow) >= duration('1ms')").message("baselineWindow must be at least 1ms"))]
pub struct OutlierBaseline {
    /// Standard deviations above the mean that count as an outlier.
    #[serde(default = "defaults::sigma")]
    pub sigma: f64,
    /// How much history the baseline is learned from.
    #[serde(default = "defaults::baseline_window")]
    pub baseline_window: Duration,
    /// Samples needed in the baseline before the trigger may fire.
    #[serde(default = "defaults::min_samples")]
    #[schemars(range(min = 2))]
    pub min_samples: u32,
}

/// How a detection is attributed to a culprit on the node.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.window) >= duration('1ms')").message("window must be at least 1ms"))]
pub struct Attribution {
    /// `Correlation` (default) or `Usage`.
    #[serde(default)]
    pub method: AttributionMethod,
    /// Candidate metrics used to score culprits.
    #[serde(default = "defaults::attribution_metrics")]
    #[schemars(
        length(min = 1, max = 16),
        inner(length(min = 1, max = 128), regex(pattern = r"^[a-z][a-z0-9_]*$"))
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub metrics: Vec<String>,
    /// The history that scores are computed over.
    #[serde(default = "defaults::attribution_window")]
    pub window: Duration,
    /// With `Correlation`, the least correlation a candidate needs to be blamed.
    #[serde(default = "defaults::min_correlation")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_correlation: f64,
}

/// How culprits are scored.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AttributionMethod {
    /// Correlate the victim's degradation with each candidate's usage over the window.
    #[default]
    Correlation,
    /// Rank candidates by their share of the node's usage of the listed metrics.
    Usage,
}

/// Hysteresis before a node counts as healthy again.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Recovery {
    /// How long every trigger must stay clear before the episode ends.
    #[serde(default = "defaults::clear_for")]
    pub clear_for: Duration,
}

/// Rate limits and guards on actions. Each limit is a sliding window.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Actions on pods of one node.
    #[serde(default = "defaults::per_node")]
    pub max_actions_per_node: RateLimit,
    /// Actions on pods of one workload (the pod's owning controller).
    #[serde(default = "defaults::per_workload")]
    pub max_actions_per_workload: RateLimit,
    /// Actions on pods of one namespace.
    #[serde(default = "defaults::per_namespace")]
    pub max_actions_per_namespace: RateLimit,
    /// Actions by this policy in total.
    #[serde(default = "defaults::total")]
    pub max_actions_total: RateLimit,
    /// Quiet period on a node after an action on it.
    #[serde(default = "defaults::cooldown")]
    pub cooldown: Duration,
    /// Pods younger than this are never acted on.
    #[serde(default = "defaults::min_pod_age")]
    pub min_pod_age: Duration,
}

/// At most `count` actions in any `window`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.window) >= duration('1ms')").message("window must be at least 1ms"))]
pub struct RateLimit {
    /// Actions allowed per window.
    #[schemars(range(min = 1))]
    pub count: u32,
    /// The sliding window.
    pub window: Duration,
}

/// How evictions are issued.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EvictionSettings {
    /// Grace period for evicted pods. Absent: the pod's own `terminationGracePeriodSeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub grace_period_seconds: Option<i64>,
    /// Allow acting on pods with `emptyDir` volumes (their data is lost).
    #[serde(default)]
    pub evict_local_storage_pods: bool,
    /// Allow acting on pods without a controller (they are not recreated).
    #[serde(default)]
    pub evict_bare_pods: bool,
    /// Evict (instead of Blocking) a workload migrated within `maxActionsPerWorkload`'s
    /// window that interferes again on its new node; it is never migrated twice.
    #[serde(default)]
    pub evict_on_ping_pong: bool,
}

impl Default for Attribution {
    fn default() -> Self {
        Self {
            method: AttributionMethod::default(),
            metrics: defaults::attribution_metrics(),
            window: defaults::attribution_window(),
            min_correlation: defaults::min_correlation(),
        }
    }
}

impl Default for Recovery {
    fn default() -> Self {
        Self {
            clear_for: defaults::clear_for(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_actions_per_node: defaults::per_node(),
            max_actions_per_workload: defaults::per_workload(),
            max_actions_per_namespace: defaults::per_namespace(),
            max_actions_total: defaults::total(),
            cooldown: defaults::cooldown(),
            min_pod_age: defaults::min_pod_age(),
        }
    }
}

impl Default for OutlierBaseline {
    fn default() -> Self {
        Self {
            sigma: defaults::sigma(),
            baseline_window: defaults::baseline_window(),
            min_samples: defaults::min_samples(),
        }
    }
}

/// The documented default of every optional field (see `docs/policy.md`).
pub mod defaults {
    use super::RateLimit;
    use crate::duration::Duration;

    fn limit(count: u32, window: &str) -> RateLimit {
        RateLimit {
            count,
            window: Duration::new(window),
        }
    }

    /// `triggers[].sustainedFor`: 30s.
    pub fn sustained_for() -> Duration {
        Duration::new("30s")
    }
    /// `triggers[].outlier.sigma`: 3.
    pub fn sigma() -> f64 {
        3.0
    }
    /// `triggers[].outlier.baselineWindow`: 30m.
    pub fn baseline_window() -> Duration {
        Duration::new("30m")
    }
    /// `triggers[].outlier.minSamples`: 30.
    pub fn min_samples() -> u32 {
        30
    }
    /// `attribution.metrics`: memory bandwidth, CPU and LLC misses.
    pub fn attribution_metrics() -> Vec<String> {
        ["mem_bw_bytes_per_sec", "cpu_usage_cores", "llc_miss_rate"]
            .map(String::from)
            .to_vec()
    }
    /// `attribution.window`: 5m.
    pub fn attribution_window() -> Duration {
        Duration::new("5m")
    }
    /// `attribution.minCorrelation`: 0.3.
    pub fn min_correlation() -> f64 {
        0.3
    }
    /// `recovery.clearFor`: 2m.
    pub fn clear_for() -> Duration {
        Duration::new("2m")
    }
    /// `limits.maxActionsPerNode`: 1 per 10m.
    pub fn per_node() -> RateLimit {
        limit(1, "10m")
    }
    /// `limits.maxActionsPerWorkload`: 2 per 1h.
    pub fn per_workload() -> RateLimit {
        limit(2, "1h")
    }
    /// `limits.maxActionsPerNamespace`: 10 per 1h.
    pub fn per_namespace() -> RateLimit {
        limit(10, "1h")
    }
    /// `limits.maxActionsTotal`: 50 per 1h.
    pub fn total() -> RateLimit {
        limit(50, "1h")
    }
    /// `limits.cooldown`: 5m.
    pub fn cooldown() -> Duration {
        Duration::new("5m")
    }
    /// `limits.minPodAge`: 5m.
    pub fn min_pod_age() -> Duration {
        Duration::new("5m")
    }
}
