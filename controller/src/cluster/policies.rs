//! Policies from the cluster: a watch over InterferencePolicy objects that validates each
//! one, reports validity in its status (and with an Event when it changes), and hands the
//! valid set to the run loop. An invalid policy never reaches the engine. With
//! `--dry-run`, every policy is handed over in `DryRun` mode.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use fulcrum_policies::spec::Mode;
use fulcrum_policies::{InterferencePolicy, validate};
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

use super::events::Recorder;
use super::reflect::Synced;
use super::status::StatusBook;

/// What the actuator needs to know about a policy.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyFacts {
    /// `spec.eviction.gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `spec.limits.cooldown` in ms (how long a steering taint stays).
    pub cooldown_ms: u64,
}

/// Facts of the valid policies, by name.
pub type Facts = Arc<Mutex<HashMap<String, PolicyFacts>>>;

/// Where the policy watch reports to.
#[derive(Clone, Debug)]
pub struct PolicySinks {
    /// The valid policy set, for the run loop.
    pub set: watch::Sender<Vec<InterferencePolicy>>,
    /// Status of each policy.
    pub book: Arc<StatusBook>,
    /// Events on policies.
    pub recorder: Recorder,
    /// Facts for the actuator.
    pub facts: Facts,
    /// Reflector sync state (the policy watch registers as `interferencepolicies`).
    pub synced: Arc<Synced>,
    /// `--dry-run`: every policy acts as `DryRun`.
    pub dry_run: bool,
}

const NAME: &str = "interferencepolicies";

/// Watches InterferencePolicy objects until the stream ends.
pub async fn watch_policies(client: Client, sinks: PolicySinks) {
    sinks.synced.register(NAME);
    let api = Api::<InterferencePolicy>::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut store: BTreeMap<String, InterferencePolicy> = BTreeMap::new();
    let mut listing: BTreeMap<String, InterferencePolicy> = BTreeMap::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(p)) => {
                store.insert(p.name_any(), p);
            }
            Ok(watcher::Event::Delete(p)) => {
                store.remove(&p.name_any());
                sinks.book.remove(&p.name_any());
            }
            Ok(watcher::Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(p)) => {
                listing.insert(p.name_any(), p);
                continue;
            }
            Ok(watcher::Event::InitDone) => {
                for name in store.keys().filter(|n| !listing.contains_key(*n)) {
                    sinks.book.remove(name);
                }
                store = std::mem::take(&mut listing);
            }
            Err(e) => {
                warn!(error = %e, "policy watch failed; retrying with backoff");
                continue;
            }
        }
        publish(&store, &sinks);
        sinks.synced.mark(NAME);
    }
}

/// Validates every policy, records validity, and publishes the valid set if it changed.
fn publish(store: &BTreeMap<String, InterferencePolicy>, sinks: &PolicySinks) {
    let mut valid = Vec::new();
    let mut facts = HashMap::new();
    for (name, policy) in store {
        let errors = validate(&policy.spec);
        let before = sinks.book.set_validity(policy, &errors);
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if !errors.is_empty() {
            if before != Some(false) {
                warn!(policy = %name, errors = %message, "invalid policy: it will not act");
                sinks.recorder.policy(name, policy.uid(), false, &message);
            }
            continue;
        }
        if before == Some(false) {
            info!(policy = %name, "policy valid again");
            sinks
                .recorder
                .policy(name, policy.uid(), true, "the policy is valid again");
        }
        facts.insert(name.clone(), facts_of(policy));
        valid.push(engine_copy(policy, sinks.dry_run));
    }
    if let Ok(mut f) = sinks.facts.lock() {
        *f = facts;
    }
    sinks.set.send_if_modified(|current| {
        let changed = *current != valid;
        if changed {
            info!(policies = valid.len(), "valid policy set changed");
            *current = valid;
        }
        changed
    });
}

/// The policy as the engine sees it: name, generation and spec (status and other metadata
/// dropped, so a status write does not look like a policy change).
fn engine_copy(policy: &InterferencePolicy, dry_run: bool) -> InterferencePolicy {
    let mut spec = policy.spec.clone();
    if dry_run {
        spec.mode = Mode::DryRun;
    }
    InterferencePolicy {
        metadata: ObjectMeta {
            name: policy.metadata.name.clone(),
            generation: policy.metadata.generation,
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

fn facts_of(policy: &InterferencePolicy) -> PolicyFacts {
    PolicyFacts {
        grace_period_seconds: policy.spec.eviction.grace_period_seconds,
        cooldown_ms: policy.spec.limits.cooldown.to_millis().unwrap_or(0),
    }
}
