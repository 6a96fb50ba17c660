//! Policies from the cluster: a kube-runtime `Controller` over InterferencePolicy objects
//! whose reconcile validates the policy, reports validity in its status (server-side
//! apply on the status subresource, and an Event when it changes), and hands the valid set
//! to the run loop. An invalid policy never reaches the engine. With `--dry-run`, every
//! policy is handed over in `DryRun` mode.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fulcrum_policies::spec::Mode;
use fulcrum_policies::{InterferencePolicy, validate};
use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

use super::events::Recorder;
use super::reflect::Synced;
use super::status::{StatusBook, apply_status};

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

/// Where the policy controller reports to.
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
    /// Reflector sync state (the policy controller registers as `interferencepolicies`).
    pub synced: Arc<Synced>,
    /// `--dry-run`: every policy acts as `DryRun`.
    pub dry_run: bool,
}

const NAME: &str = "interferencepolicies";

/// Re-validation period of a policy nothing changed (a safety net: every change of a
/// policy triggers its reconcile at once).
const RESYNC: Duration = Duration::from_secs(300);
/// Retry delay after a failed reconcile (its status write).
const RETRY: Duration = Duration::from_secs(5);

/// A reconcile that did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The status could not be written (server-side apply on the status subresource).
    #[error("writing the status of {policy}: {source}")]
    Status {
        /// The policy.
        policy: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// What the reconciler works with: the sinks, the controller's store of every policy,
/// and the client for status writes.
struct Context {
    sinks: PolicySinks,
    store: Store<InterferencePolicy>,
    api: Api<InterferencePolicy>,
    /// Serialises publishing, so an older view of the store never overwrites a newer one.
    publishing: Mutex<()>,
}

/// Runs a kube-runtime `Controller` over InterferencePolicy objects until `shutdown` turns
/// true. Each reconcile validates its policy (status condition, an Event when validity
/// changes), hands the valid set from the controller's store to the run loop, and writes
/// the policy's status with server-side apply; a failed write is retried (`error_policy`:
/// requeue after 5 s). A deleted policy is forgotten and the set published again.
pub async fn watch_policies(client: Client, sinks: PolicySinks, shutdown: watch::Receiver<bool>) {
    sinks.synced.register(NAME);
    let api = Api::<InterferencePolicy>::all(client);
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .with_config(controller::Config::default().concurrency(1));
    let ctx = Arc::new(Context {
        sinks,
        store: controller.store(),
        api,
        publishing: Mutex::new(()),
    });
    // Listed once: publish the set (also when there is no policy, so nothing reconciles).
    tokio::spawn(publish_when_listed(Arc::clone(&ctx), shutdown.clone()));
    let mut stop = shutdown;
    let results = controller
        .graceful_shutdown_on(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .run(reconcile, error_policy, Arc::clone(&ctx));
    futures::pin_mut!(results);
    while let Some(result) = results.next().await {
        match result {
            Ok(_) => {}
            Err(controller::Error::ObjectNotFound(gone)) => {
                info!(policy = %gone.name, "policy deleted");
                ctx.sinks.book.remove(&gone.name);
                publish(&ctx);
            }
            Err(e) => warn!(error = %e, "policy controller"),
        }
    }
}

/// Publishes the set and marks the policies synced once the controller's store has listed.
/// The store's readiness is checked every 100 ms rather than awaited: kube-runtime 5's
/// `Store::wait_until_ready` keeps a single waker, which the controller's own wait takes.
async fn publish_when_listed(ctx: Arc<Context>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if ctx.store.wait_until_ready().now_or_never().is_some() {
            break;
        }
    }
    for policy in ctx.store.state() {
        observe(&policy, &ctx.sinks);
    }
    publish(&ctx);
    ctx.sinks.synced.mark(NAME);
}

async fn reconcile(
    policy: Arc<InterferencePolicy>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    observe(&policy, &ctx.sinks);
    publish(&ctx);
    let name = policy.name_any();
    if let Some(status) = ctx.sinks.book.take_dirty_one(&name)
        && let Err(source) = apply_status(&ctx.api, &name, &status).await
    {
        ctx.sinks.book.mark_dirty(&name);
        return Err(ReconcileError::Status {
            policy: name,
            source,
        });
    }
    Ok(Action::requeue(RESYNC))
}

fn error_policy(
    policy: Arc<InterferencePolicy>,
    error: &ReconcileError,
    _: Arc<Context>,
) -> Action {
    warn!(policy = %policy.name_any(), %error, "reconcile failed; retrying");
    Action::requeue(RETRY)
}

/// Records a policy's validity, with an Event when it becomes invalid or valid again.
/// Returns whether it is valid.
fn observe(policy: &InterferencePolicy, sinks: &PolicySinks) -> bool {
    let name = policy.name_any();
    let errors = validate(&policy.spec);
    let before = sinks.book.set_validity(policy, &errors);
    if !errors.is_empty() {
        if before != Some(false) {
            let message = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            warn!(policy = %name, errors = %message, "invalid policy: it will not act");
            sinks.recorder.policy(&name, policy.uid(), false, &message);
        }
        return false;
    }
    if before == Some(false) {
        info!(policy = %name, "policy valid again");
        sinks
            .recorder
            .policy(&name, policy.uid(), true, "the policy is valid again");
    }
    true
}

/// Publishes the valid policies of the controller's store (and their facts) if the set
/// changed; statuses of policies no longer stored are forgotten. The engine keeps the
/// trigger and episode state of every policy whose spec did not change.
fn publish(ctx: &Context) {
    let _one_at_a_time = ctx.publishing.lock();
    let mut stored: Vec<Arc<InterferencePolicy>> = ctx.store.state();
    stored.sort_by_key(|p| p.name_any());
    let mut valid = Vec::new();
    let mut facts = HashMap::new();
    for policy in stored.iter().filter(|p| validate(&p.spec).is_empty()) {
        facts.insert(policy.name_any(), facts_of(policy));
        valid.push(engine_copy(policy, ctx.sinks.dry_run));
    }
    let names: std::collections::HashSet<String> = stored.iter().map(|p| p.name_any()).collect();
    ctx.sinks.book.retain(|name| names.contains(name));
    if let Ok(mut f) = ctx.sinks.facts.lock() {
        *f = facts;
    }
    ctx.sinks.set.send_if_modified(|current| {
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
