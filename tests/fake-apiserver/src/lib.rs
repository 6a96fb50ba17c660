//! A fake Kubernetes API server for Fulcrum's tests.
//!
//! It serves plain HTTP on 127.0.0.1 and follows the Kubernetes API documentation
//! (resourceVersion semantics, watch bookmarks, 410 Gone, the Eviction API, server-side apply,
//! `Status` errors) closely enough for kube-rs clients, `kube::runtime::watcher` and kubectl.
//! See the crate's README for what is implemented and what is simplified.
//!
//! The server runs on its own Tokio runtime (two worker threads), so [`FakeApiServer::start`]
//! is a plain function usable from synchronous tests, `#[tokio::test]` tests of any flavour,
//! and tests that spawn child processes and block on them. Dropping the server stops it.
//!
//! ```no_run
//! use fulcrum_fake_apiserver::{FakeApiServer, Fault, Matcher};
//! use serde_json::json;
//!
//! # async fn demo() {
//! let api = FakeApiServer::start();
//! api.apply_object(json!({
//!     "apiVersion": "v1", "kind": "Node",
//!     "metadata": {"name": "n1"},
//!     "status": {"conditions": [{"type": "Ready", "status": "True"}],
//!                "allocatable": {"cpu": "4", "memory": "8Gi"}},
//! })).unwrap();
//! let kubeconfig = std::env::temp_dir().join("fake-kubeconfig");
//! api.write_kubeconfig(&kubeconfig).unwrap();
//! api.inject(Fault::status(Matcher::resource("pods").verb("list"), 500).times(2));
//! // ... start the program under test with KUBECONFIG=kubeconfig ...
//! let seen = api
//!     .wait_for(
//!         |api| api.count_requests(|r| r.verb == "watch" && r.resource == "pods") > 0,
//!         std::time::Duration::from_secs(10),
//!     )
//!     .await;
//! assert!(seen);
//! # }
//! ```

#![deny(missing_docs)]

mod apply;
mod controller;
mod discovery;
mod eviction;
mod faults;
pub mod fixtures;
mod http;
mod kubeconfig;
mod list_watch;
mod patch;
mod pdb;
mod record;
mod render;
mod resources;
mod router;
mod scheduler;
mod selectors;
mod shared;
mod status;
mod store;
mod writes;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use eviction::EvictionRecord;
pub use faults::{Fault, FaultAction, Matcher};
pub use record::RecordedRequest;
pub use resources::{RESOURCES, ResourceInfo};
pub use status::ApiError;
pub use store::Config;

use shared::Shared;

/// Configures a server before it starts.
#[derive(Debug, Clone)]
pub struct Builder {
    config: Config,
    addr: SocketAddr,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            config: Config::default(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

impl Builder {
    /// Interval of watch bookmarks (default 1 s).
    pub fn bookmark_interval(mut self, interval: Duration) -> Self {
        self.config.bookmark_interval = interval;
        self
    }

    /// How long a gracefully deleted, bound pod stays terminating (default: removed at once,
    /// after a MODIFIED event with its deletionTimestamp).
    pub fn pod_termination_delay(mut self, delay: Duration) -> Self {
        self.config.pod_termination_delay = delay;
        self
    }

    /// Whether the tiny controller (pod replacement) and scheduler run (default true).
    pub fn controllers(mut self, on: bool) -> Self {
        self.config.controllers = on;
        self
    }

    /// Listen port on 127.0.0.1 (default: a random free port).
    pub fn port(mut self, port: u16) -> Self {
        self.addr.set_port(port);
        self
    }

    /// Starts the server on its own runtime.
    ///
    /// # Panics
    /// If the address cannot be bound or the runtime cannot start (test setup failures).
    pub fn start(self) -> FakeApiServer {
        self.try_start().expect("start the fake API server")
    }

    /// Starts the server, reporting bind/runtime errors.
    pub fn try_start(self) -> std::io::Result<FakeApiServer> {
        let std_listener = std::net::TcpListener::bind(self.addr)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fake-apiserver")
            .enable_all()
            .build()?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(std_listener)?
        };
        let shared = Shared::new(self.config, runtime.handle().clone());
        // The namespaces every cluster has.
        shared
            .write(|st| {
                ["default", "kube-system", "kube-public", "kube-node-lease"]
                    .into_iter()
                    .try_for_each(|ns| writes::ensure_namespace(st, ns))
            })
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        runtime.spawn(http::serve(listener, Arc::clone(&shared), shutdown_rx));
        Ok(FakeApiServer {
            shared,
            addr,
            shutdown,
            runtime: Some(runtime),
        })
    }
}

/// A running fake API server. Dropping it stops the server.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: tokio::sync::watch::Sender<bool>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("url", &self.url())
            .finish()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.shared.lock().close_generation += 1;
        self.shared.notify();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Resolves a loose resource name: a plural, kind, short name, `plural.group`, or
/// `apiVersion/Kind` (e.g. `policy/v1/PodDisruptionBudget`, `v1/Pod`).
fn resolve(resource: &str) -> Result<resources::ResourceId, ApiError> {
    if let Some((api_version, kind)) = resource.rsplit_once('/')
        && let Some(id) = resources::by_kind(api_version, kind)
    {
        return Ok(id);
    }
    resources::by_name(resource)
        .ok_or_else(|| ApiError::bad_request(format!("unknown resource {resource:?}")))
}

impl FakeApiServer {
    /// A builder for a configured server.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Starts a server with the default configuration (random port, controllers on,
    /// 1 s bookmarks, immediate pod removal).
    pub fn start() -> Self {
        Builder::default().start()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// A kubeconfig (server = [`Self::url`], no auth, context `fake`, namespace `default`).
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig::kubeconfig(&self.url())
    }

    /// Writes [`Self::kubeconfig_yaml`] to a file (for `KUBECONFIG`/`--kubeconfig`).
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// Creates or replaces an object as given (status included; no status reset as on
    /// POST). The resource comes from `apiVersion`/`kind`; namespaced objects without a
    /// namespace go to `default`. Emits watch events; controllers react.
    pub fn apply_object(&self, obj: Value) -> Result<Value, ApiError> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let res = resources::by_kind(api_version, kind).ok_or_else(|| {
            ApiError::bad_request(format!("unknown apiVersion/kind {api_version}/{kind}"))
        })?;
        self.shared.write(|st| writes::upsert(st, res, obj))
    }

    /// Applies every object of a manifest: JSON or YAML, a single object, a `List`, or
    /// multiple YAML documents, in one write (controllers react once, after the last object;
    /// an error leaves the objects before it stored). Returns how many objects were stored.
    pub fn apply_manifest(&self, text: &str) -> Result<usize, ApiError> {
        let mut objects = Vec::new();
        for doc in serde_yaml_ng::Deserializer::from_str(text) {
            let v: Value = serde::Deserialize::deserialize(doc)
                .map_err(|e| ApiError::bad_request(format!("invalid manifest: {e}")))?;
            match v.get("kind").and_then(Value::as_str) {
                _ if v.is_null() => {}
                Some(k) if k.ends_with("List") && v.get("items").is_some() => {
                    objects.extend(v["items"].as_array().cloned().unwrap_or_default());
                }
                _ => objects.push(v),
            }
        }
        // One write for the whole manifest: the controllers react once, at the end.
        let count = objects.len();
        self.shared.write(|st| {
            objects.into_iter().try_for_each(|o| {
                let api_version = o.get("apiVersion").and_then(Value::as_str).unwrap_or("");
                let kind = o.get("kind").and_then(Value::as_str).unwrap_or("");
                let res = resources::by_kind(api_version, kind).ok_or_else(|| {
                    ApiError::bad_request(format!("unknown apiVersion/kind {api_version}/{kind}"))
                })?;
                writes::upsert(st, res, o).map(|_| ())
            })
        })?;
        Ok(count)
    }

    /// Removes an object at once (no grace period, no finalizers). 404 when missing.
    pub fn delete_object(
        &self,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let res = resolve(resource)?;
        let info = &RESOURCES[res];
        let ns = if info.namespaced {
            namespace.unwrap_or("default")
        } else {
            ""
        };
        self.shared
            .write(|st| st.remove(res, ns, name))
            .ok_or_else(|| ApiError::not_found(info.group, info.plural, name))
    }

    /// An object, if stored. `resource` is loose (see [`FakeApiServer::list_objects`]).
    pub fn get_object(&self, resource: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let res = resolve(resource).ok()?;
        let ns = if RESOURCES[res].namespaced {
            namespace.unwrap_or("default")
        } else {
            ""
        };
        self.shared.read(|st| st.get(res, ns, name).cloned())
    }

    /// All objects of a resource (in a namespace, or everywhere for None). `resource` is a
    /// plural, kind, short name, `plural.group` or `apiVersion/Kind`; unknown → empty.
    pub fn list_objects(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        let Ok(res) = resolve(resource) else {
            return Vec::new();
        };
        self.shared.read(|st| st.list(res, namespace))
    }

    /// Every request served so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.read(|st| st.requests.clone())
    }

    /// How many recorded requests satisfy `predicate` (cheaper than [`Self::requests`] in
    /// `wait_for` predicates: nothing is cloned).
    pub fn count_requests(&self, predicate: impl Fn(&RecordedRequest) -> bool) -> usize {
        self.shared
            .read(|st| st.requests.iter().filter(|r| predicate(r)).count())
    }

    /// Forgets the request log (and the eviction log).
    pub fn clear_requests(&self) {
        self.shared.write(|st| {
            st.requests.clear();
            st.evictions.clear();
        });
    }

    /// The distinct `(verb, apiGroup, resource[/subresource], namespace)` tuples requested —
    /// what an RBAC Role must allow.
    pub fn rbac_rules(&self) -> BTreeSet<(String, String, String, String)> {
        self.shared.read(|st| {
            st.requests
                .iter()
                .filter(|r| r.is_resource_request)
                .map(RecordedRequest::rbac)
                .collect()
        })
    }

    /// Every eviction attempt, with its body and answer.
    pub fn evictions(&self) -> Vec<EvictionRecord> {
        self.shared.read(|st| st.evictions.clone())
    }

    /// Arms a scripted fault.
    pub fn inject(&self, fault: Fault) {
        let remaining = fault.times;
        self.shared
            .write(|st| st.faults.push(faults::FaultEntry { fault, remaining }));
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.shared.write(|st| st.faults.clear());
    }

    /// Ends every open watch stream (clients see the stream end and re-watch).
    pub fn close_watches(&self) {
        self.shared.write(|st| st.close_generation += 1);
    }

    /// Sends every open watch an `ERROR` event with a 410 Expired `Status` and ends it
    /// (clients must re-list), as when etcd compaction overtakes a watch.
    pub fn expire_watches(&self) {
        self.shared.write(|st| st.expire_generation += 1);
    }

    /// Forgets history: watches and `continue` tokens from older resourceVersions get
    /// 410 Gone, and open watches that have not caught up get an `ERROR` 410.
    pub fn compact(&self) {
        self.shared.write(|st| st.compact());
    }

    /// Number of watch streams open now.
    pub fn open_watches(&self) -> usize {
        self.shared.read(|st| st.open_watches)
    }

    /// Number of watch streams started so far (open or ended). Waiting for
    /// `watches_started() == n && open_watches() == 1` means the n-th watch is the open one.
    pub fn watches_started(&self) -> usize {
        self.shared.read(|st| st.watches_started)
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.read(|st| st.rv)
    }

    /// Waits until `predicate` holds, re-checking on every change (request, write, watch
    /// open/close) rather than polling. Returns false on timeout. Needs a Tokio runtime with
    /// timers (any flavour).
    pub async fn wait_for(
        &self,
        predicate: impl Fn(&FakeApiServer) -> bool,
        timeout: Duration,
    ) -> bool {
        let mut changes = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            if predicate(self) {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => return predicate(self),
            }
        }
    }

    /// [`Self::wait_for`] for synchronous code (must not be called from async code).
    pub fn wait_for_blocking(
        &self,
        predicate: impl Fn(&FakeApiServer) -> bool,
        timeout: Duration,
    ) -> bool {
        let mut changes = self.shared.changed.subscribe();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            if predicate(self) {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return predicate(self);
            }
            let Some(rt) = self.runtime.as_ref() else {
                return predicate(self);
            };
            let (tx, rx) = std::sync::mpsc::channel();
            rt.spawn(async move {
                let _ = tokio::time::timeout(left, changes.changed()).await;
                let _ = tx.send(changes);
            });
            match rx.recv() {
                Ok(c) => changes = c,
                Err(_) => return predicate(self),
            }
        }
    }
}
