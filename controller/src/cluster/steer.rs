//! The steering taint: before a Migrate evicts, the source node gets Fulcrum's
//! `fulcrum.dev/steer-away:PreferNoSchedule` taint (value = the policy) and the
//! `fulcrum.dev/steer-until` annotation (RFC 3339), so the scheduler prefers other nodes
//! for the replacement. A sweeper removes the taint at expiry, including taints left by a
//! previous run (the node reflector reports every tainted node it lists).
//!
//! Writes are read-modify-write with the node's resourceVersion (a JSON merge patch that
//! carries it, so the API server refuses a stale write with 409) and retried on conflict;
//! other taints are never touched.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Taint};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::watch;
use tracing::{info, warn};

/// Key of the steering taint.
pub const STEER_TAINT: &str = "fulcrum.dev/steer-away";
/// Effect of the steering taint.
pub const STEER_EFFECT: &str = "PreferNoSchedule";
/// Node annotation holding the taint's expiry (RFC 3339).
pub const STEER_UNTIL: &str = "fulcrum.dev/steer-until";

/// Nodes carrying the steering taint, with the expiry their annotation gives (None: no or
/// unreadable annotation, removed at once).
pub type SteerMarks = Arc<Mutex<HashMap<String, Option<jiff::Timestamp>>>>;

/// A steering write that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SteerError {
    /// The API answered with an error or could not be reached.
    #[error("node {node}: {source}")]
    Api {
        /// The node.
        node: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Every attempt met a conflicting write.
    #[error("node {0}: still conflicting after retries")]
    Conflict(String),
    /// The node does not exist (any more).
    #[error("node {0} not found")]
    NodeGone(String),
}

const ATTEMPTS: usize = 5;

/// Sets the steering taint on `node` until `until` (extending an existing one).
pub async fn taint(
    client: &Client,
    node: &str,
    policy: &str,
    until: jiff::Timestamp,
) -> Result<(), SteerError> {
    let api = Api::<Node>::all(client.clone());
    modify(&api, node, |n| {
        let mut taints: Vec<Taint> = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        taints.retain(|t| t.key != STEER_TAINT);
        taints.push(Taint {
            key: STEER_TAINT.into(),
            value: Some(policy.into()),
            effect: STEER_EFFECT.into(),
            time_added: None,
        });
        Some(json!({
            "metadata": {"annotations": {STEER_UNTIL: until.to_string()}},
            "spec": {"taints": taints},
        }))
    })
    .await
}

/// Removes the steering taint and its annotation from `node` (nothing else). A node that
/// is gone answers [`SteerError::NodeGone`].
pub async fn untaint(client: &Client, node: &str) -> Result<(), SteerError> {
    let api = Api::<Node>::all(client.clone());
    modify(&api, node, |n| {
        let taints: Vec<Taint> = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let kept: Vec<&Taint> = taints.iter().filter(|t| t.key != STEER_TAINT).collect();
        let annotated = n
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(STEER_UNTIL));
        (kept.len() != taints.len() || annotated).then(|| {
            json!({
                "metadata": {"annotations": {STEER_UNTIL: null}},
                "spec": {"taints": kept},
            })
        })
    })
    .await
}

/// Reads the node, builds a merge patch with `change` (None: nothing to do) and writes it
/// with the read resourceVersion; retried on 409. A missing node is
/// [`SteerError::NodeGone`].
async fn modify(
    api: &Api<Node>,
    node: &str,
    change: impl Fn(&Node) -> Option<serde_json::Value>,
) -> Result<(), SteerError> {
    let err = |source| SteerError::Api {
        node: node.to_owned(),
        source,
    };
    for attempt in 0..ATTEMPTS {
        let current = match api.get_opt(node).await.map_err(err)? {
            Some(n) => n,
            None => return Err(SteerError::NodeGone(node.to_owned())),
        };
        let Some(mut patch) = change(&current) else {
            return Ok(());
        };
        patch["metadata"]["resourceVersion"] = json!(current.metadata.resource_version);
        match api
            .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
            Err(e) => return Err(err(e)),
        }
    }
    Err(SteerError::Conflict(node.to_owned()))
}

/// Removes expired steering taints every `every` until `shutdown` turns true.
pub async fn sweep(
    client: Client,
    marks: SteerMarks,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let now = jiff::Timestamp::now();
        let expired: Vec<String> = marks
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, until)| until.is_none_or(|u| u <= now))
                    .map(|(n, _)| n.clone())
                    .collect()
            })
            .unwrap_or_default();
        for node in expired {
            match untaint(&client, &node).await {
                // The node reflector drops the mark when it sees the node without the taint.
                Ok(()) => info!(%node, "steering taint removed at expiry"),
                // Deleted (normally the reflector already dropped the mark): nothing left
                // to remove, and the sweeper must not ask again every tick.
                Err(SteerError::NodeGone(_)) => {
                    info!(%node, "node deleted: its steering taint is gone with it");
                    if let Ok(mut marks) = marks.lock() {
                        marks.remove(&node);
                    }
                }
                Err(e) => warn!(error = %e, "could not remove the steering taint; retrying"),
            }
        }
    }
}
