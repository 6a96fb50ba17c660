//! Workloads from ReplicaSet metadata: a metadata-only reflector over ReplicaSets (names
//! and owner references, nothing else) so a pod owned by a ReplicaSet that a Deployment
//! controls has the Deployment as its workload, whatever the ReplicaSet is called.
//!
//! | the pod's controller | its workload |
//! | --- | --- |
//! | a ReplicaSet the reflector knows, controlled by a Deployment | `ns/Deployment/<deployment>` |
//! | a ReplicaSet the reflector knows, without a Deployment | `ns/ReplicaSet/<rs>` |
//! | a ReplicaSet not known (yet) | the `pod-template-hash` rule of [`workload_of`] |
//! | anything else | `ns/<Kind>/<name>`; a bare pod is its own workload |
//!
//! The pod reflector starts once this one has listed, so every pod listed at start finds
//! its ReplicaSet. A ReplicaSet seen after its pods (watch streams are not ordered across
//! resources) maps the next update of those pods.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use fulcrum_engine::cluster::Owner;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use super::convert::workload_of;
use super::reflect::Synced;

/// Name the ReplicaSet reflector registers under in [`Synced`].
pub const REPLICASETS: &str = "replicasets";

/// ReplicaSet (namespace, name) → the Deployment controlling it (None: none).
type DeploymentOf = HashMap<(String, String), Option<String>>;

/// The Deployment controlling each known ReplicaSet (None: no Deployment), by
/// (namespace, name).
#[derive(Clone, Debug, Default)]
pub struct Workloads {
    owners: Arc<Mutex<DeploymentOf>>,
}

impl Workloads {
    /// Records a ReplicaSet's controlling owner.
    pub fn upsert(&self, namespace: &str, name: &str, deployment: Option<String>) {
        if let Ok(mut o) = self.owners.lock() {
            o.insert((namespace.to_owned(), name.to_owned()), deployment);
        }
    }

    /// Forgets a ReplicaSet.
    pub fn remove(&self, namespace: &str, name: &str) {
        if let Ok(mut o) = self.owners.lock() {
            o.remove(&(namespace.to_owned(), name.to_owned()));
        }
    }

    /// ReplicaSets known.
    pub fn len(&self) -> usize {
        self.owners.lock().map(|o| o.len()).unwrap_or(0)
    }

    /// True when no ReplicaSet is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The workload of a pod (see the module's table).
    pub fn resolve(
        &self,
        namespace: &str,
        name: &str,
        owner: Option<&Owner>,
        labels: &BTreeMap<String, String>,
    ) -> String {
        if let Some(o) = owner.filter(|o| o.kind == "ReplicaSet") {
            let known = self
                .owners
                .lock()
                .ok()
                .and_then(|m| m.get(&(namespace.to_owned(), o.name.to_string())).cloned());
            match known {
                Some(Some(deployment)) => return format!("{namespace}/Deployment/{deployment}"),
                Some(None) => return format!("{namespace}/ReplicaSet/{}", o.name),
                None => {}
            }
        }
        workload_of(namespace, name, owner, labels)
    }
}

/// The Deployment that controls a ReplicaSet, from its owner references.
pub fn deployment_of(rs: &PartialObjectMeta<ReplicaSet>) -> Option<String> {
    rs.owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "Deployment")
        .map(|o| o.name.clone())
}

/// Watches ReplicaSet metadata into `workloads` until the stream ends; marks
/// [`REPLICASETS`] synced after every (re-)list. A re-list forgets ReplicaSets gone
/// meanwhile.
pub async fn reflect_replicasets(client: Client, workloads: Workloads, synced: Arc<Synced>) {
    // kube 5's metadata-only watch (`metadata_watcher` is deprecated in favour of this):
    // lists and watches ask for `PartialObjectMetadata`, so no spec or status is sent.
    let api = Api::<PartialObjectMeta<ReplicaSet>>::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing: HashSet<(String, String)> = HashSet::new();
    let mut known: HashSet<(String, String)> = HashSet::new();
    let key =
        |rs: &PartialObjectMeta<ReplicaSet>| (rs.namespace().unwrap_or_default(), rs.name_any());
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(rs)) => {
                let (ns, name) = key(&rs);
                workloads.upsert(&ns, &name, deployment_of(&rs));
                known.insert((ns, name));
            }
            Ok(watcher::Event::Delete(rs)) => {
                let (ns, name) = key(&rs);
                workloads.remove(&ns, &name);
                known.remove(&(ns, name));
            }
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(rs)) => {
                let (ns, name) = key(&rs);
                workloads.upsert(&ns, &name, deployment_of(&rs));
                listing.insert((ns, name));
            }
            Ok(watcher::Event::InitDone) => {
                for (ns, name) in known.difference(&listing) {
                    workloads.remove(ns, name);
                }
                known = std::mem::take(&mut listing);
                if !synced.all() {
                    info!(kind = REPLICASETS, objects = known.len(), "listed");
                }
                synced.mark(REPLICASETS);
            }
            Err(e) => {
                warn!(kind = REPLICASETS, error = %e, "watch failed; retrying with backoff")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs_owner(name: &str) -> Owner {
        Owner {
            kind: "ReplicaSet".into(),
            name: name.into(),
        }
    }

    #[test]
    fn a_known_replicaset_maps_to_its_deployment_whatever_its_name() {
        let w = Workloads::default();
        let hash: BTreeMap<String, String> =
            [("pod-template-hash".to_owned(), "7d9f8".to_owned())].into();
        // Unknown yet: the pod-template-hash rule (the control: it cannot see "web").
        assert_eq!(
            w.resolve("shop", "p", Some(&rs_owner("web-v2-canary")), &hash),
            "shop/ReplicaSet/web-v2-canary"
        );
        w.upsert("shop", "web-v2-canary", Some("web".into()));
        assert_eq!(
            w.resolve("shop", "p", Some(&rs_owner("web-v2-canary")), &hash),
            "shop/Deployment/web"
        );
        // A ReplicaSet without a Deployment is its own workload, even with a hash suffix.
        w.upsert("shop", "cart-7d9f8", None);
        assert_eq!(
            w.resolve("shop", "p", Some(&rs_owner("cart-7d9f8")), &hash),
            "shop/ReplicaSet/cart-7d9f8"
        );
        // Namespaces are kept apart; other owners and bare pods are unchanged.
        assert_eq!(
            w.resolve(
                "other",
                "p",
                Some(&rs_owner("web-v2-canary")),
                &BTreeMap::new()
            ),
            "other/ReplicaSet/web-v2-canary"
        );
        w.remove("shop", "web-v2-canary");
        assert_eq!(
            w.resolve(
                "shop",
                "p",
                Some(&rs_owner("web-v2-canary")),
                &BTreeMap::new()
            ),
            "shop/ReplicaSet/web-v2-canary"
        );
        assert_eq!(w.resolve("shop", "p", None, &BTreeMap::new()), "shop/Pod/p");
    }
}
