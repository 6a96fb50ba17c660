//! The `InterferencePolicy` status: validity, counters and the last action taken.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::spec::Action;

/// The condition type that says whether a policy is valid and active.
pub const READY_CONDITION: &str = "Ready";

/// What the controller reports about a policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InterferencePolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: `True` with reason `Valid` when the policy is active; `False` with reason
    /// `Invalid` and a message naming each bad field otherwise.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Interference episodes detected on nodes this policy covers.
    #[serde(default)]
    pub detections: u64,
    /// Decisions taken, by outcome.
    #[serde(default)]
    pub actions: ActionCounts,
    /// The most recent decision that reached the action stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_action: Option<LastAction>,
}

/// Decisions taken by a policy, by outcome.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ActionCounts {
    /// Pods evicted.
    #[serde(default)]
    pub evicted: u64,
    /// Pods migrated.
    #[serde(default)]
    pub migrated: u64,
    /// Actions recorded but not executed because the policy is in `DryRun`.
    #[serde(default)]
    pub dry_run: u64,
    /// Actions a limit, guard or PodDisruptionBudget blocked.
    #[serde(default)]
    pub blocked: u64,
    /// The sum of the above (shown by `kubectl get ifp`).
    #[serde(default)]
    pub total: u64,
}

/// The most recent decision that reached the action stage.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LastAction {
    /// When the decision was taken (event time of the sample that completed it).
    pub time: Time,
    /// The node the interference was on.
    pub node: String,
    /// The targeted pod, as `namespace/name`.
    pub pod: String,
    /// The action chosen.
    pub action: Action,
    /// The trigger that fired.
    pub trigger: String,
    /// Why the action was taken, or why it was blocked.
    pub reason: String,
}
