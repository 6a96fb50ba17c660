//! Policy status: validity, counters and the last action, kept per policy from what the
//! policy controller and the run loop report, and written with server-side apply on the status
//! subresource (field manager `fulcrum`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use fulcrum_engine::{Decision, Event, Outcome};
use fulcrum_policies::spec::Action;
use fulcrum_policies::status::{
    ActionCounts, InterferencePolicyStatus, LastAction, READY_CONDITION,
};
use fulcrum_policies::{FieldError, InterferencePolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::{Notify, watch};
use tracing::{debug, warn};

use super::replacement::Landing;
use crate::actuator::ActuationError;
use crate::runner::Report;

/// The field manager of every server-side apply Fulcrum does.
pub const FIELD_MANAGER: &str = "fulcrum";

#[derive(Debug, Default)]
struct Entry {
    status: InterferencePolicyStatus,
    valid: Option<bool>,
    dirty: bool,
    /// Where replacements landed, reported before their action was counted.
    early_landings: Vec<(String, String)>,
}

/// Status of every policy, written to the API by [`StatusBook::write_loop`].
#[derive(Debug, Default)]
pub struct StatusBook {
    entries: Mutex<BTreeMap<String, Entry>>,
    dirty: Notify,
}

impl StatusBook {
    /// Records a policy's validity (`errors` empty: valid). Counters of a policy seen for
    /// the first time start from its current status, so they survive a restart. Returns
    /// the validity before (None: first seen), to decide on an Event on the policy.
    pub fn set_validity(&self, policy: &InterferencePolicy, errors: &[FieldError]) -> Option<bool> {
        let name = policy.metadata.name.clone().unwrap_or_default();
        let valid = errors.is_empty();
        let changed = self.update(&name, |e| {
            if e.valid.is_none()
                && let Some(s) = &policy.status
            {
                e.status.detections = s.detections;
                e.status.actions = s.actions.clone();
                e.status.last_action = s.last_action.clone();
            }
            let changed = e.valid != Some(valid);
            let generation = policy.metadata.generation;
            let before = e.valid;
            if changed || e.status.observed_generation != generation {
                e.status.observed_generation = generation;
                e.status.conditions = vec![ready_condition(errors, generation)];
                e.dirty = true;
            }
            e.valid = Some(valid);
            before
        });
        changed.flatten()
    }

    /// Forgets a deleted policy.
    pub fn remove(&self, name: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(name);
        }
    }

    /// Counts what the run loop reported.
    pub fn record(&self, report: &Report) {
        match report {
            Report::Engine(Event::Detected { policy, .. }) => {
                self.update(policy, |e| {
                    e.status.detections += 1;
                    e.dirty = true;
                });
            }
            Report::Engine(Event::Decision(d)) if d.outcome != Outcome::Executed => {
                self.count(d, |c| match d.outcome {
                    Outcome::DryRun => c.dry_run += 1,
                    _ => c.blocked += 1,
                });
            }
            Report::Actuated { decision, .. } => self.count(decision, |c| match decision.action {
                Action::Evict => c.evicted += 1,
                Action::Migrate => c.migrated += 1,
            }),
            Report::NotActuated { decision, error }
                if !matches!(error, ActuationError::Gone(_)) =>
            {
                self.count(decision, |c| c.blocked += 1);
            }
            _ => {}
        }
    }

    /// Adds where the replacement of the last action landed to `lastAction.reason`.
    pub fn landed(&self, landing: &Landing) {
        let suffix = match &landing.node {
            Ok(node) => format!("; replacement landed on {node}"),
            Err(_) => "; replacement cannot be scheduled".to_owned(),
        };
        self.update(&landing.policy, |e| match e.status.last_action.as_mut() {
            Some(last) if last.pod == landing.evicted => {
                last.reason.push_str(&suffix);
                e.dirty = true;
            }
            // The reflector can see the replacement before the action is counted.
            _ => {
                e.early_landings.truncate(15);
                e.early_landings.push((landing.evicted.clone(), suffix));
            }
        });
    }

    fn count(&self, d: &Decision, f: impl FnOnce(&mut ActionCounts)) {
        self.update(&d.policy, |e| {
            e.dirty = true;
            f(&mut e.status.actions);
            let c = &mut e.status.actions;
            c.total = c.evicted + c.migrated + c.dry_run + c.blocked;
            // lastAction is the last action taken (executed, dry-run, or refused by the API):
            // a decision the engine blocked is only counted, so it never hides the last
            // action and where its replacement landed.
            if d.outcome == Outcome::Blocked {
                return;
            }
            let mut reason = d.reason.clone();
            if let Some(i) = e
                .early_landings
                .iter()
                .position(|(pod, _)| *pod == d.target)
            {
                reason.push_str(&e.early_landings.swap_remove(i).1);
            }
            e.status.last_action = Some(LastAction {
                time: Time(jiff::Timestamp::from_millisecond(d.at).unwrap_or_default()),
                node: d.node.clone(),
                pod: d.target.clone(),
                action: d.action,
                trigger: d.trigger.clone(),
                reason,
            });
        });
    }

    /// Changes an entry (the change marks it dirty when it should be written).
    fn update<T>(&self, name: &str, f: impl FnOnce(&mut Entry) -> T) -> Option<T> {
        let out = {
            let mut entries = self.entries.lock().ok()?;
            let e = entries.entry(name.to_owned()).or_default();
            f(e)
        };
        self.dirty.notify_one();
        Some(out)
    }

    fn take_dirty(&self) -> Vec<(String, InterferencePolicyStatus)> {
        let Ok(mut entries) = self.entries.lock() else {
            return Vec::new();
        };
        entries
            .iter_mut()
            .filter(|(_, e)| e.dirty && e.valid.is_some())
            .map(|(n, e)| {
                e.dirty = false;
                (n.clone(), e.status.clone())
            })
            .collect()
    }

    /// Takes the status of `name` if it changed since it was last written.
    pub fn take_dirty_one(&self, name: &str) -> Option<InterferencePolicyStatus> {
        let mut entries = self.entries.lock().ok()?;
        let e = entries
            .get_mut(name)
            .filter(|e| e.dirty && e.valid.is_some())?;
        e.dirty = false;
        Some(e.status.clone())
    }

    /// Forgets every policy for which `keep` is false.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|name, _| keep(name));
        }
    }

    /// Marks a status to be written again (its write failed).
    pub fn mark_dirty(&self, name: &str) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(e) = entries.get_mut(name)
        {
            e.dirty = true;
        }
    }

    /// Writes changed statuses (at most every `every`) until `shutdown` turns true, then
    /// once more. A failed write is tried again on the next round.
    pub async fn write_loop(
        &self,
        client: Client,
        every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let api = Api::<InterferencePolicy>::all(client);
        loop {
            let stop = tokio::select! {
                () = self.dirty.notified() => false,
                _ = shutdown.wait_for(|s| *s) => true,
            };
            for (name, status) in self.take_dirty() {
                if let Err(e) = apply_status(&api, &name, &status).await {
                    warn!(policy = %name, error = %e, "could not write the policy status");
                    self.mark_dirty(&name);
                }
            }
            if stop {
                return;
            }
            tokio::time::sleep(every).await; // batches bursts of changes into one write
        }
    }
}

/// Writes a policy's status with server-side apply on the status subresource (field
/// manager [`FIELD_MANAGER`]); a policy deleted meanwhile is not an error.
pub async fn apply_status(
    api: &Api<InterferencePolicy>,
    name: &str,
    status: &InterferencePolicyStatus,
) -> Result<(), kube::Error> {
    let body = json!({
        "apiVersion": "fulcrum.dev/v1alpha1",
        "kind": "InterferencePolicy",
        "metadata": {"name": name},
        "status": status,
    });
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match api.patch_status(name, &params, &Patch::Apply(&body)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            debug!(policy = %name, "policy gone before its status was written");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The `Ready` condition for a policy with these validation errors.
pub fn ready_condition(errors: &[FieldError], generation: Option<i64>) -> Condition {
    let (status, reason, message) = if errors.is_empty() {
        ("True", "Valid", "the policy is valid and active".to_owned())
    } else {
        let fields: Vec<String> = errors.iter().map(ToString::to_string).collect();
        ("False", "Invalid", fields.join("; "))
    };
    Condition {
        last_transition_time: Time(jiff::Timestamp::now()),
        message,
        observed_generation: generation,
        reason: reason.into(),
        status: status.into(),
        type_: READY_CONDITION.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actuator::Actuation;
    use fulcrum_engine::decision::{Evidence, Explanation};
    use fulcrum_policies::spec::{Mode, TriggerScope};

    fn decision() -> Decision {
        Decision {
            at: 0,
            policy: "p".into(),
            node: "n0".into(),
            trigger: "t".into(),
            victim: None,
            target: "ns/pod".into(),
            action: Action::Migrate,
            mode: Mode::Enforce,
            outcome: Outcome::Executed,
            reason: "why".into(),
            destination: None,
            explanation: Explanation {
                episode: 1,
                evidence: Evidence {
                    scope: TriggerScope::Victim,
                    metric: "m".into(),
                    value: 0.0,
                    threshold: 0.0,
                    baseline: None,
                    since: 0,
                    held_ms: 0,
                    window_ms: 0,
                },
                method: "Correlation".into(),
                scores: Vec::new(),
                guard: String::new(),
                significance: None,
            },
        }
    }

    fn actuated() -> Report {
        Report::Actuated {
            decision: Box::new(decision()),
            actuation: Actuation::default(),
        }
    }

    fn landing() -> Landing {
        Landing {
            policy: "p".into(),
            evicted: "ns/pod".into(),
            source_node: "n0".into(),
            replacement: "ns/pod-2".into(),
            node: Ok("n1".into()),
        }
    }

    fn last_reason(book: &StatusBook) -> String {
        let entries = book.entries.lock().expect("lock");
        entries["p"]
            .status
            .last_action
            .as_ref()
            .expect("last action")
            .reason
            .clone()
    }

    #[test]
    fn where_the_replacement_landed_reaches_last_action_in_either_order() {
        let after = StatusBook::default();
        after.record(&actuated());
        after.landed(&landing());
        let before = StatusBook::default();
        before.landed(&landing());
        before.record(&actuated());
        for book in [after, before] {
            assert_eq!(last_reason(&book), "why; replacement landed on n1");
            let entries = book.entries.lock().expect("lock");
            assert_eq!(entries["p"].status.actions.migrated, 1);
            assert_eq!(entries["p"].status.actions.total, 1);
        }
    }
}
