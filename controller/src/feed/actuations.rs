//! Actuation records on the audit topic: what became of an `Executed` decision once the
//! actuator returned. With them the audit topic holds an intent (the decision record,
//! published before the call) and an outcome (this record, after it), so a restart can
//! tell an action that happened from one that was refused or never sent.
//!
//! The record has a schema of its own (`fulcrum.actuations/v1`) and the decision's node as
//! its key, so it lands in the intent's partition, after it. How a restart reads intents
//! and outcomes together is [`settle`]; the rule is documented in `docs/events.md`
//! ("Intent and outcome").

use std::collections::HashMap;

use fulcrum_engine::{Decision, Engine};
use fulcrum_policies::spec::Action;
use serde::{Deserialize, Serialize};

use crate::actuator::{Actuation, ActuationError};

/// Schema identifier of actuation records.
pub const ACTUATION_SCHEMA: &str = "fulcrum.actuations/v1";

/// What the actuator did with an executed decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActuationResult {
    /// The action was carried out (the Eviction API accepted it).
    Done,
    /// The API refused for now (a PodDisruptionBudget): nothing was disrupted.
    Blocked,
    /// The target was gone (404) or replaced (409 on the UID precondition).
    Gone,
    /// The API kept failing, or the action was abandoned at shutdown.
    Failed,
}

impl ActuationResult {
    /// True when the action counts against limits (it disrupted the target).
    pub fn counts(self) -> bool {
        self == Self::Done
    }
}

/// One actuation record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActuationRecord {
    /// Always [`ACTUATION_SCHEMA`].
    pub schema: String,
    /// The decision's event time (ms): with `policy`, `node` and `target` it names the
    /// decision record this one settles.
    pub at: i64,
    /// The decision's policy.
    pub policy: String,
    /// The decision's node.
    pub node: String,
    /// The decision's target, `namespace/name`.
    pub target: String,
    /// The decision's action.
    pub action: Action,
    /// What became of it.
    pub result: ActuationResult,
    /// The API's message for a result other than `Done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Wall-clock time the actuator returned (ms since the Unix epoch).
    pub finished_ms: i64,
}

impl ActuationRecord {
    /// The record for `decision` after the actuator returned `result`.
    pub fn new(
        decision: &Decision,
        result: &Result<Actuation, ActuationError>,
        finished_ms: i64,
    ) -> Self {
        let (result, message) = match result {
            Ok(_) => (ActuationResult::Done, None),
            Err(e @ ActuationError::Blocked(_)) => (ActuationResult::Blocked, Some(e.to_string())),
            Err(e @ ActuationError::Gone(_)) => (ActuationResult::Gone, Some(e.to_string())),
            Err(e @ ActuationError::Failed(_)) => (ActuationResult::Failed, Some(e.to_string())),
        };
        Self {
            schema: ACTUATION_SCHEMA.to_owned(),
            at: decision.at,
            policy: decision.policy.clone(),
            node: decision.node.clone(),
            target: decision.target.clone(),
            action: decision.action,
            result,
            message,
            finished_ms,
        }
    }

    fn key(&self) -> DecisionKey {
        (
            self.policy.clone(),
            self.node.clone(),
            self.target.clone(),
            self.at,
        )
    }
}

/// (policy, node, target, at): what identifies a decision in the audit topic.
type DecisionKey = (String, String, String, i64);

fn decision_key(d: &Decision) -> DecisionKey {
    (d.policy.clone(), d.node.clone(), d.target.clone(), d.at)
}

/// An `Executed` decision record read back, with what it knew of its target.
#[derive(Clone, Debug)]
pub struct Intent {
    /// The decision.
    pub decision: Decision,
    /// The target's UID when the decision was made (absent in records written before
    /// actuation records existed).
    pub target_uid: Option<String>,
    /// The target's workload when the decision was made.
    pub target_workload: Option<String>,
}

/// What [`settle`] did with the intents read back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// Intents whose outcome was `Done`: restored.
    pub done: usize,
    /// Intents whose outcome was Blocked, Gone or Failed: not restored (nothing was
    /// disrupted; the running replica had given the action back too).
    pub not_done: usize,
    /// Intents without an outcome whose target is gone, replaced or terminating, or whose
    /// UID is unknown: restored (the action may have happened).
    pub unsettled_counted: usize,
    /// Intents without an outcome whose target still exists with the same UID and is not
    /// terminating: not restored (the eviction did not take effect; the episode may
    /// decide again, and an eviction carries the UID as a precondition).
    pub unsettled_released: usize,
}

impl Settled {
    /// Intents restored into the engine.
    pub fn restored(&self) -> usize {
        self.done + self.unsettled_counted
    }
}

/// Restores `intents` into `engine`, each according to its outcome in `outcomes` (see
/// [`Settled`] for the rule). The engine's cluster view must be loaded first: an intent
/// without an outcome is judged by whether its target still exists.
pub fn settle(engine: &mut Engine, intents: Vec<Intent>, outcomes: &[ActuationRecord]) -> Settled {
    let results: HashMap<DecisionKey, ActuationResult> =
        outcomes.iter().map(|o| (o.key(), o.result)).collect();
    let mut settled = Settled::default();
    for intent in intents {
        let workload = intent.target_workload.as_deref();
        match results.get(&decision_key(&intent.decision)) {
            Some(result) if result.counts() => {
                engine.restore_with_workload(&intent.decision, workload);
                settled.done += 1;
            }
            Some(_) => settled.not_done += 1,
            None => {
                let uid = intent.target_uid.as_deref();
                if engine.restore_unsettled(&intent.decision, uid, workload) {
                    settled.unsettled_counted += 1;
                } else {
                    settled.unsettled_released += 1;
                }
            }
        }
    }
    settled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::audit::AuditRecord;

    #[test]
    fn actuation_records_name_their_decision_and_old_decision_records_still_read() {
        let line = r#"{"schema":"fulcrum.actuations/v1","at":5,"policy":"p","node":"n1",
            "target":"ns/pod","action":"Migrate","result":"Blocked","message":"pdb","finished_ms":9}"#;
        let record: ActuationRecord = serde_json::from_str(line).unwrap();
        assert_eq!(record.result, ActuationResult::Blocked);
        assert!(!record.result.counts() && ActuationResult::Done.counts());
        assert_eq!(record.key(), ("p".into(), "n1".into(), "ns/pod".into(), 5));
        // A decision record of an earlier version (no target facts) reads with none, and
        // the facts are written only when known.
        let old = r#"{"schema":"fulcrum.decisions/v1","at":5,"policy":"p","node":"n1",
            "trigger":"t","victim":null,"target":"ns/pod","action":"Evict","mode":"Enforce",
            "outcome":"Executed","reason":"r","destination":null,
            "explanation":{"episode":1,"evidence":{"scope":"Node","metric":"m","value":1.0,
            "threshold":0.5,"baseline":null,"since":0,"held_ms":0,"window_ms":0},
            "method":"Correlation","scores":[],"guard":"allowed"}}"#;
        let read: AuditRecord = serde_json::from_str(old).unwrap();
        assert_eq!((read.target_uid, read.target_workload), (None, None));
        let text = serde_json::to_string(&read.decision).unwrap();
        assert!(!text.contains("target_uid"));
        let mut with = AuditRecord::new(read.decision);
        with.target_uid = Some("u-1".into());
        let back: AuditRecord =
            serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
        assert_eq!(back.target_uid.as_deref(), Some("u-1"));
        assert_eq!(decision_key(&back.decision), record.key());
    }
}
