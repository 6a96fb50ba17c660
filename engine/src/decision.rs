//! What the engine decides, with the evidence behind it, as plain data that logs,
//! Kubernetes Events, policy status, the audit topic and `fulcrum replay` all render.

use fulcrum_policies::spec::{Action, Mode, TriggerScope};
use serde::{Deserialize, Serialize};

/// What became of a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// The action is to be carried out (an actuator reports a later API refusal separately).
    Executed,
    /// The policy is in `DryRun`: the action was decided and recorded, not carried out.
    DryRun,
    /// A limit or guard stopped the action; `reason` says which.
    Blocked,
}

/// One decision, in the shape of the replay contract plus its explanation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Event time of the decision, ms since the Unix epoch.
    pub at: i64,
    /// The policy that decided.
    pub policy: String,
    /// The node with interference.
    pub node: String,
    /// The trigger that fired.
    pub trigger: String,
    /// The degraded victim, `namespace/name` (`None` for a node-scope trigger).
    pub victim: Option<String>,
    /// The pod acted on, `namespace/name`.
    pub target: String,
    /// Evict or Migrate.
    pub action: Action,
    /// The policy's mode.
    pub mode: Mode,
    /// Executed, DryRun or Blocked.
    pub outcome: Outcome,
    /// Why, in one line.
    pub reason: String,
    /// For Migrate: the node the replacement is expected to land on.
    pub destination: Option<String>,
    /// The evidence, as data.
    pub explanation: Explanation,
}

/// Everything that led to a decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// Interference episode on this node and policy; decisions of one episode share it.
    pub episode: u64,
    /// The trigger evidence.
    pub evidence: Evidence,
    /// Attribution method used.
    pub method: String,
    /// Every co-located pod scored (candidate or not; the policy's own victims are left
    /// out), the main explanation first.
    pub scores: Vec<CandidateScore>,
    /// The limits and guards checked, and which one allowed or blocked the action.
    pub guard: String,
    /// The significance level the scores were tested at (Correlation method).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub significance: Option<Significance>,
}

/// How strict the evaluation behind a decision was.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Significance {
    /// The engine's false-blame rate per episode (`EngineConfig::false_blame_rate`).
    pub false_blame_rate: f64,
    /// Which attribution window of the episode the evaluation fell in (1 = the first):
    /// window `k` spends `false_blame_rate / (k (k + 1))`.
    pub window_index: u64,
    /// Tests made: pods × attribution metrics.
    pub tests: usize,
    /// The per-test level a p-value had to reach.
    pub level: f64,
}

/// Why a trigger holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Victim or Node.
    pub scope: TriggerScope,
    /// The metric watched.
    pub metric: String,
    /// The latest value.
    pub value: f64,
    /// The threshold it exceeds (static, or mean + sigma * std of the baseline).
    pub threshold: f64,
    /// The learned baseline, for outlier triggers.
    pub baseline: Option<BaselineEvidence>,
    /// When the condition started to hold continuously (ms).
    pub since: i64,
    /// How long it has held (ms).
    pub held_ms: i64,
    /// Samples behind the value and the scores, as the window used (ms).
    pub window_ms: u64,
}

/// The learned baseline behind an outlier trigger.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineEvidence {
    /// Baseline mean.
    pub mean: f64,
    /// Baseline standard deviation (after the floor, see `docs/engine.md`).
    pub std: f64,
    /// Sigma of the trigger.
    pub sigma: f64,
    /// Samples in the baseline.
    pub samples: u64,
}

/// How one co-located pod scored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CandidateScore {
    /// `namespace/name`.
    pub pod: String,
    /// The candidate class it matched (empty when it is not a candidate).
    pub class: String,
    /// The score used for ranking (correlation, or usage share), when it has one.
    pub score: Option<f64>,
    /// Per attribution metric.
    pub metrics: Vec<MetricScore>,
    /// Why the pod was passed over, if it was.
    pub excluded: Option<String>,
    /// How much of the degradation it explains, when it does significantly: `r²` of its
    /// best correlation, or its fraction of the node's increase at the onset.
    #[serde(default)]
    pub explains: Option<f64>,
    /// True when the pod matches a candidate class of the policy (others are scored too,
    /// and never acted on).
    #[serde(default = "yes")]
    pub candidate: bool,
}

fn yes() -> bool {
    true
}

/// One attribution metric's contribution for one candidate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricScore {
    /// The metric.
    pub metric: String,
    /// Correlation with the victim signal (Correlation method).
    pub correlation: Option<f64>,
    /// The candidate's share of the node's usage of the metric.
    pub share: Option<f64>,
    /// Buckets the figures are computed over.
    pub points: usize,
    /// Why this metric did not count, if it did not.
    pub ignored: Option<String>,
    /// One-sided p-value of the correlation over the effective points.
    #[serde(default)]
    pub p_value: Option<f64>,
    /// Effective number of independent points (autocorrelation discounted).
    #[serde(default)]
    pub effective_points: Option<f64>,
    /// True when this metric counts as evidence (significant correlation or onset step).
    #[serde(default)]
    pub significant: bool,
    /// The pod's step up at the degradation's onset, in standard deviations, when it counts.
    #[serde(default)]
    pub onset_step: Option<f64>,
    /// The placebo the correlation had to beat (common mode), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_mode: Option<CommonMode>,
}

/// The placebo a correlation had to beat: the trend of pods of the same kind on other
/// nodes, which cannot be the cause (common mode is not evidence).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommonMode {
    /// Placebo pods the trend was computed from.
    pub placebo_pods: usize,
    /// The bar: the victim signal's correlation with the placebo trend when it is
    /// significant at the 0.01 level (a common mode), else 0.
    pub placebo_correlation: f64,
    /// One-sided p-value that the pod's correlation is above the bar.
    pub p_value: f64,
}

/// Something the engine noticed, for timelines and counters.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind")]
pub enum Event {
    /// An interference episode started on a node.
    Detected {
        /// Event time (ms).
        at: i64,
        /// Policy.
        policy: String,
        /// Node.
        node: String,
        /// Trigger that fired first.
        trigger: String,
        /// Victim, for victim-scope triggers.
        victim: Option<String>,
        /// Episode id.
        episode: u64,
    },
    /// A decision.
    Decision(Box<Decision>),
    /// A firing episode in which nobody was blamed, reported once per episode with why.
    Unexplained(Box<Unexplained>),
    /// An episode ended after `recovery.clearFor` without any trigger holding.
    Recovered {
        /// Event time (ms).
        at: i64,
        /// Policy.
        policy: String,
        /// Node.
        node: String,
        /// Episode id.
        episode: u64,
        /// How long the episode lasted (ms).
        lasted_ms: i64,
    },
}

/// Why nobody was blamed in an episode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unexplained {
    /// Event time (ms).
    pub at: i64,
    /// Policy.
    pub policy: String,
    /// Node.
    pub node: String,
    /// Trigger that fired.
    pub trigger: String,
    /// Victim, for victim-scope triggers.
    pub victim: Option<String>,
    /// Episode id.
    pub episode: u64,
    /// Which case: `no-samples`, `too-few-points`, `not-significant`, `unstable` or
    /// `all-excluded`.
    pub cause: String,
    /// Why, in one line.
    pub reason: String,
    /// The evidence: every pod scored, and the level used.
    pub explanation: Explanation,
}
