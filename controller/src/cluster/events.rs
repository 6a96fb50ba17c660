//! Kubernetes Events (events.k8s.io/v1) about what Fulcrum did: on the target pod for every
//! executed, dry-run or blocked decision (related = the victim), and on a policy when it
//! becomes invalid or valid again. Events are written by a background task so the run
//! loop never waits for them; when the queue is full an Event is dropped (and logged).

use fulcrum_engine::{Decision, Event as EngineEvent, Outcome};
use fulcrum_policies::spec::Action;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::replacement::Landing;
use crate::actuator::ActuationError;
use crate::runner::Report;

/// `reportingController` of every Event Fulcrum writes.
pub const REPORTING_CONTROLLER: &str = "fulcrum.dev/controller";
/// Reason of an Event about an executed eviction.
pub const REASON_EVICTED: &str = "InterferenceEvicted";
/// Reason of an Event about an executed migration.
pub const REASON_MIGRATED: &str = "InterferenceMigrated";
/// Reason of an Event about a dry-run decision.
pub const REASON_DRY_RUN: &str = "InterferenceDryRun";
/// Reason of an Event about a blocked decision (a limit, a guard or the API refused).
pub const REASON_BLOCKED: &str = "InterferenceBlocked";

/// Queues Events for a background writer.
#[derive(Clone, Debug)]
pub struct Recorder {
    tx: mpsc::Sender<Event>,
    instance: String,
}

impl Recorder {
    /// Starts the writer; `instance` is the `reportingInstance` (the pod's name).
    pub fn spawn(client: Client, instance: String) -> Self {
        let (tx, mut rx) = mpsc::channel::<Event>(256);
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                let ns = event.metadata.namespace.clone().unwrap_or_default();
                let api = Api::<Event>::namespaced(client.clone(), &ns);
                if let Err(e) = api.create(&PostParams::default(), &event).await {
                    warn!(error = %e, namespace = %ns, "could not write an Event");
                }
            }
        });
        Self { tx, instance }
    }

    /// Writes the pod Event a report calls for, if any.
    pub fn report(&self, report: &Report, uid: impl Fn(&str) -> Option<String>) {
        let (decision, reason, note, warning) = match report {
            Report::Engine(EngineEvent::Decision(d)) => match d.outcome {
                Outcome::DryRun => (d.as_ref(), REASON_DRY_RUN, d.reason.clone(), false),
                Outcome::Blocked => (d.as_ref(), REASON_BLOCKED, d.reason.clone(), true),
                Outcome::Executed => return,
            },
            Report::Actuated {
                decision,
                actuation,
            } => {
                let reason = match decision.action {
                    Action::Evict => REASON_EVICTED,
                    Action::Migrate => REASON_MIGRATED,
                };
                let note = match &actuation.landed_on {
                    Some(node) => format!("{}; replacement landed on {node}", decision.reason),
                    None => decision.reason.clone(),
                };
                (decision.as_ref(), reason, note, false)
            }
            Report::NotActuated { decision, error } => match error {
                ActuationError::Gone(_) => return,
                e => (
                    decision.as_ref(),
                    REASON_BLOCKED,
                    format!("{}: {e}", decision.reason),
                    true,
                ),
            },
            _ => return,
        };
        let event = self.pod_event(decision, reason, &note, warning, uid);
        self.send(event);
    }

    /// Writes an Event on a policy that became invalid (`message` names the fields) or
    /// valid again.
    pub fn policy(&self, name: &str, uid: Option<String>, valid: bool, message: &str) {
        let regarding = ObjectReference {
            api_version: Some("fulcrum.dev/v1alpha1".into()),
            kind: Some("InterferencePolicy".into()),
            name: Some(name.into()),
            uid,
            ..ObjectReference::default()
        };
        let (reason, kind) = if valid {
            ("PolicyValid", "Normal")
        } else {
            ("PolicyInvalid", "Warning")
        };
        let event = self.event(
            "default", name, regarding, None, reason, message, kind, "Validate",
        );
        self.send(event);
    }

    /// Writes an Event on the evicted pod saying where its replacement landed, or that it
    /// cannot be scheduled (Warning).
    pub fn landing(&self, landing: &Landing) {
        let (note, warning) = match &landing.node {
            Ok(node) => (
                format!("replacement {} landed on {node}", landing.replacement),
                false,
            ),
            Err(why) => (
                format!(
                    "replacement {} cannot be scheduled: {why}",
                    landing.replacement
                ),
                true,
            ),
        };
        let (ns, name) = landing
            .evicted
            .split_once('/')
            .unwrap_or(("default", &landing.evicted));
        let regarding = pod_ref(&landing.evicted, None);
        let related = Some(pod_ref(&landing.replacement, None));
        let kind = if warning { "Warning" } else { "Normal" };
        let reason = if warning {
            REASON_BLOCKED
        } else {
            REASON_MIGRATED
        };
        let event = self.event(ns, name, regarding, related, reason, &note, kind, "Replace");
        self.send(event);
    }

    fn pod_event(
        &self,
        d: &Decision,
        reason: &str,
        note: &str,
        warning: bool,
        uid: impl Fn(&str) -> Option<String>,
    ) -> Event {
        let (ns, name) = d.target.split_once('/').unwrap_or(("default", &d.target));
        let regarding = pod_ref(&d.target, uid(&d.target));
        let related = d.victim.as_deref().map(|v| pod_ref(v, uid(v)));
        let action = format!("{:?}", d.action);
        let kind = if warning { "Warning" } else { "Normal" };
        self.event(ns, name, regarding, related, reason, note, kind, &action)
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        ns: &str,
        about: &str,
        regarding: ObjectReference,
        related: Option<ObjectReference>,
        reason: &str,
        note: &str,
        kind: &str,
        action: &str,
    ) -> Event {
        let now = jiff::Timestamp::now();
        Event {
            metadata: ObjectMeta {
                name: Some(format!("{about}.{:x}", now.as_nanosecond())),
                namespace: Some(ns.into()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(action.into()),
            reason: Some(reason.into()),
            // The API limits a note to 1 kB.
            note: Some(note.chars().take(1000).collect()),
            regarding: Some(regarding),
            related,
            reporting_controller: Some(REPORTING_CONTROLLER.into()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(kind.into()),
            ..Event::default()
        }
    }

    fn send(&self, event: Event) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(e) => debug!(error = %e, "Event queue full; Event dropped"),
        }
    }
}

fn pod_ref(pod: &str, uid: Option<String>) -> ObjectReference {
    let (ns, name) = pod.split_once('/').unwrap_or(("default", pod));
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(ns.into()),
        name: Some(name.into()),
        uid,
        ..ObjectReference::default()
    }
}
