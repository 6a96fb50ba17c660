//! Reflectors: kube-runtime watches over Pods, Nodes, PodDisruptionBudgets and Namespaces,
//! turned into the engine's [`ClusterUpdate`]s, and the ReplicaSet metadata reflector of
//! [`super::workloads`] (pods start once it has listed).
//!
//! Each watch lists once, then watches from the list's resourceVersion with bookmarks;
//! kube's watcher re-lists on 410 Gone and this module backs off on errors. After every
//! (re-)list, objects that were known before and are missing from the new list are
//! removed, so a re-list never leaves ghosts behind. Only what the engine needs is kept
//! (the conversion in [`super::convert`] drops managed fields, unrelated annotations and
//! container specs beyond requests).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use fulcrum_engine::ClusterUpdate;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::convert::{node_info, pdb_info, pod_info};
use super::replacement::{Landing, Replacements};
use super::steer::{STEER_TAINT, STEER_UNTIL, SteerMarks};
use super::workloads::{REPLICASETS, Workloads, reflect_replicasets};
use fulcrum_engine::cluster::Owner;

/// Which reflectors have listed at least once (the operator is not ready before).
#[derive(Debug, Default)]
pub struct Synced {
    flags: Mutex<HashMap<&'static str, bool>>,
    changed: tokio::sync::Notify,
}

impl Synced {
    /// Registers a reflector as not yet synced.
    pub fn register(&self, name: &'static str) {
        if let Ok(mut f) = self.flags.lock() {
            f.insert(name, false);
        }
    }
    /// Marks a reflector as synced.
    pub fn mark(&self, name: &'static str) {
        if let Ok(mut f) = self.flags.lock() {
            f.insert(name, true);
        }
        self.changed.notify_waiters();
    }
    /// True when every registered reflector has listed once.
    pub fn all(&self) -> bool {
        self.flags
            .lock()
            .map(|f| !f.is_empty() && f.values().all(|v| *v))
            .unwrap_or(false)
    }
    /// True when the reflector `name` has listed once.
    pub fn is(&self, name: &str) -> bool {
        self.flags
            .lock()
            .map(|f| f.get(name).copied().unwrap_or(false))
            .unwrap_or(false)
    }

    /// Waits until the reflector `name` has listed once.
    pub async fn wait_one(&self, name: &str) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is(name) {
                return;
            }
            notified.await;
        }
    }

    /// Names of the reflectors not synced yet.
    pub fn pending(&self) -> Vec<&'static str> {
        self.flags
            .lock()
            .map(|f| f.iter().filter(|(_, v)| !**v).map(|(k, _)| *k).collect())
            .unwrap_or_default()
    }
}

/// What the actuator and Events need about a pod the reflector knows.
#[derive(Clone, Debug, PartialEq)]
pub struct PodMeta {
    /// The pod's UID (the eviction's precondition).
    pub uid: String,
    /// Its controller, to find its replacement.
    pub owner: Option<Owner>,
}

/// [`PodMeta`] of the pods the reflector knows, by (namespace, name).
pub type PodUids = Arc<Mutex<HashMap<(String, String), PodMeta>>>;

/// What the reflectors share with the rest of the adapter.
#[derive(Clone, Debug)]
pub struct Shared {
    /// Sync state, for `/readyz`.
    pub synced: Arc<Synced>,
    /// Pod UIDs and owners by (namespace, name).
    pub uids: PodUids,
    /// Nodes carrying Fulcrum's steering taint, with their expiry.
    pub marks: SteerMarks,
    /// Replacements of evicted pods awaited.
    pub replacements: Replacements,
    /// Nodes listed or watched.
    pub nodes: Arc<std::sync::atomic::AtomicUsize>,
    /// The Deployment of each ReplicaSet (a pod's workload).
    pub workloads: Workloads,
}

impl Shared {
    /// Shared state, and the receiver of replacement reports.
    pub fn new() -> (Self, tokio::sync::mpsc::UnboundedReceiver<Landing>) {
        let (replacements, landings) = Replacements::new();
        let shared = Self {
            synced: Arc::default(),
            uids: Arc::default(),
            marks: Arc::default(),
            replacements,
            nodes: Arc::default(),
            workloads: Workloads::default(),
        };
        (shared, landings)
    }
}

/// How one kind of object becomes cluster updates.
struct Mapper<K> {
    name: &'static str,
    upsert: fn(&K, &Shared) -> Vec<ClusterUpdate>,
    remove: fn(&str, &str, &Shared) -> Option<ClusterUpdate>,
}

/// Starts the reflectors; their updates go to `tx`. They run until `shutdown` turns true.
pub fn spawn(
    client: &Client,
    tx: mpsc::Sender<ClusterUpdate>,
    shared: &Shared,
    shutdown: &watch::Receiver<bool>,
) {
    let s = shared;
    s.synced.register(REPLICASETS);
    {
        let (client, workloads, synced) = (client.clone(), s.workloads.clone(), s.synced.clone());
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = reflect_replicasets(client, workloads, synced) => {}
                _ = shutdown.wait_for(|s| *s) => {}
            }
        });
    }
    start(
        Api::<Node>::all(client.clone()),
        node_mapper(),
        &tx,
        s,
        shutdown,
    );
    // Pods after ReplicaSets: every pod listed at start finds its ReplicaSet's Deployment.
    let pods = pod_mapper();
    s.synced.register(pods.name);
    let (synced, api) = (s.synced.clone(), Api::<Pod>::all(client.clone()));
    let (tx2, s2, mut stop) = (tx.clone(), s.clone(), shutdown.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = synced.wait_one(REPLICASETS) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        start(api, pods, &tx2, &s2, &stop);
    });
    start(
        Api::<PodDisruptionBudget>::all(client.clone()),
        pdb_mapper(),
        &tx,
        s,
        shutdown,
    );
    start(
        Api::<Namespace>::all(client.clone()),
        ns_mapper(),
        &tx,
        s,
        shutdown,
    );
}

fn start<K>(
    api: Api<K>,
    mapper: Mapper<K>,
    tx: &mpsc::Sender<ClusterUpdate>,
    shared: &Shared,
    shutdown: &watch::Receiver<bool>,
) where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    shared.synced.register(mapper.name);
    let (tx, shared, mut shutdown) = (tx.clone(), shared.clone(), shutdown.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = reflect(api, mapper, tx, shared) => {}
            _ = shutdown.wait_for(|s| *s) => {}
        }
    });
}

async fn reflect<K>(api: Api<K>, mapper: Mapper<K>, tx: mpsc::Sender<ClusterUpdate>, shared: Shared)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let config = watcher::Config::default();
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut known: HashSet<(String, String)> = HashSet::new();
    let mut listing: HashSet<(String, String)> = HashSet::new();
    while let Some(event) = stream.next().await {
        let mut out = Vec::new();
        match event {
            Ok(watcher::Event::Apply(obj)) => {
                known.insert(key(&obj));
                out.extend((mapper.upsert)(&obj, &shared));
            }
            Ok(watcher::Event::Delete(obj)) => {
                let (ns, name) = key(&obj);
                known.remove(&(ns.clone(), name.clone()));
                out.extend((mapper.remove)(&ns, &name, &shared));
            }
            Ok(watcher::Event::Init) => {
                debug!(kind = mapper.name, "listing");
                listing.clear();
            }
            Ok(watcher::Event::InitApply(obj)) => {
                listing.insert(key(&obj));
                out.extend((mapper.upsert)(&obj, &shared));
            }
            Ok(watcher::Event::InitDone) => {
                for (ns, name) in known.difference(&listing) {
                    out.extend((mapper.remove)(ns, name, &shared));
                }
                known = std::mem::take(&mut listing);
                if !shared.synced.all() {
                    info!(kind = mapper.name, objects = known.len(), "listed");
                }
                shared.synced.mark(mapper.name);
            }
            Err(e) => warn!(kind = mapper.name, error = %e, "watch failed; retrying with backoff"),
        }
        if mapper.name == "nodes" {
            shared
                .nodes
                .store(known.len(), std::sync::atomic::Ordering::Relaxed);
        }
        for update in out {
            if tx.send(update).await.is_err() {
                return;
            }
        }
    }
}

fn key<K: Resource>(obj: &K) -> (String, String) {
    (obj.namespace().unwrap_or_default(), obj.name_any())
}

fn node_mapper() -> Mapper<Node> {
    Mapper {
        name: "nodes",
        upsert: |node, shared| {
            let info = node_info(node);
            let steered = info.taints.iter().any(|t| t.key == STEER_TAINT);
            let until = node
                .annotations()
                .get(STEER_UNTIL)
                .and_then(|v| v.parse::<jiff::Timestamp>().ok());
            if let Ok(mut marks) = shared.marks.lock() {
                if !marks.contains_key(&info.name) && steered {
                    debug!(node = %info.name, "steering taint seen");
                }
                if steered {
                    marks.insert(info.name.clone(), until);
                } else {
                    marks.remove(&info.name);
                }
            }
            vec![ClusterUpdate::UpsertNode(info)]
        },
        remove: |_, name, shared| {
            if let Ok(mut marks) = shared.marks.lock() {
                marks.remove(name);
            }
            Some(ClusterUpdate::RemoveNode(name.to_owned()))
        },
    }
}

fn pod_mapper() -> Mapper<Pod> {
    Mapper {
        name: "pods",
        upsert: |pod, shared| {
            let mut info = pod_info(pod);
            info.workload = shared
                .workloads
                .resolve(
                    &info.namespace,
                    &info.name,
                    info.owner.as_ref(),
                    &info.labels,
                )
                .into();
            if let Ok(mut uids) = shared.uids.lock() {
                let meta = PodMeta {
                    uid: info.uid.to_string(),
                    owner: info.owner.clone(),
                };
                uids.insert((info.namespace.to_string(), info.name.to_string()), meta);
            }
            shared
                .replacements
                .observe(pod, info.owner.as_ref(), info.created_ms);
            vec![ClusterUpdate::UpsertPod(Box::new(info))]
        },
        remove: |ns, name, shared| {
            if let Ok(mut uids) = shared.uids.lock() {
                uids.remove(&(ns.to_owned(), name.to_owned()));
            }
            Some(ClusterUpdate::RemovePod {
                namespace: ns.to_owned(),
                name: name.to_owned(),
            })
        },
    }
}

fn pdb_mapper() -> Mapper<PodDisruptionBudget> {
    Mapper {
        name: "poddisruptionbudgets",
        upsert: |pdb, _| vec![ClusterUpdate::UpsertPdb(pdb_info(pdb))],
        remove: |ns, name, _| {
            Some(ClusterUpdate::RemovePdb {
                namespace: ns.to_owned(),
                name: name.to_owned(),
            })
        },
    }
}

fn ns_mapper() -> Mapper<Namespace> {
    Mapper {
        name: "namespaces",
        upsert: |ns, _| {
            vec![ClusterUpdate::UpsertNamespace(
                ns.name_any(),
                ns.labels().clone(),
            )]
        },
        // The engine keeps a removed namespace's labels; its pods are removed one by one.
        remove: |_, _, _| None,
    }
}

/// Waits until every reflector has listed once; false if `shutdown` turned true first.
pub async fn wait_synced(synced: &Synced, shutdown: &mut watch::Receiver<bool>) -> bool {
    loop {
        let notified = synced.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if synced.all() {
            return true;
        }
        tokio::select! {
            () = &mut notified => {}
            _ = shutdown.wait_for(|s| *s) => return false,
        }
    }
}
