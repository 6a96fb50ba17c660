//! Object storage: one global resourceVersion counter, the objects, and the retained event
//! history that watches replay from.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::eviction::EvictionRecord;
use crate::faults::FaultEntry;
use crate::record::RecordedRequest;
use crate::resources::{RESOURCES, ResourceId};
use crate::status::ApiError;

/// Events retained for watches; older ones are compacted away.
pub const HISTORY_LIMIT: usize = 100_000;

/// Key of a stored object: resource, namespace ("" for cluster-scoped), name.
pub type Key = (ResourceId, String, String);

/// Type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Object created.
    Added,
    /// Object changed.
    Modified,
    /// Object removed.
    Deleted,
}

/// One change, as retained for watches.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Resource the object belongs to.
    pub resource: ResourceId,
    /// Kind of change.
    pub kind: EventType,
    /// The object after the change (for deletes: the last state, with the delete's rv).
    pub object: Value,
    /// The object before the change (modifies and deletes), for selector transitions and
    /// for reconstructing older states.
    pub previous: Option<Value>,
}

/// Server behaviour knobs (set through the builder).
#[derive(Debug, Clone)]
pub struct Config {
    /// Interval of watch bookmarks when a watch allows them.
    pub bookmark_interval: Duration,
    /// How long a gracefully deleted, bound pod stays with a deletionTimestamp before removal.
    pub pod_termination_delay: Duration,
    /// Whether the tiny ReplicaSet/StatefulSet/Job controller and the scheduler run.
    pub controllers: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bookmark_interval: Duration::from_secs(1),
            pod_termination_delay: Duration::ZERO,
            controllers: true,
        }
    }
}

/// Everything the server keeps, behind one mutex.
#[derive(Debug, Default, Clone)]
pub struct State {
    /// Current (latest) resourceVersion.
    pub rv: u64,
    /// History older than or at this rv is forgotten.
    pub compacted_rv: u64,
    /// Stored objects.
    pub objects: BTreeMap<Key, Value>,
    /// Events with rv > compacted_rv, in order.
    pub history: VecDeque<StoredEvent>,
    /// Every request served.
    pub requests: Vec<RecordedRequest>,
    /// Every eviction attempt.
    pub evictions: Vec<EvictionRecord>,
    /// Scripted faults still armed.
    pub faults: Vec<FaultEntry>,
    /// Bumped by `close_watches`: open watches end.
    pub close_generation: u64,
    /// Bumped by `expire_watches`: open watches get an ERROR 410 and end.
    pub expire_generation: u64,
    /// Number of watch streams open now.
    pub open_watches: usize,
    /// Number of watch streams started so far.
    pub watches_started: usize,
    /// Paginated list snapshots by id: (rv, remaining items).
    pub snapshots: HashMap<u64, (u64, Vec<Value>)>,
    /// Next snapshot id.
    pub next_snapshot: u64,
    /// Random state.
    pub rng: u64,
    /// Pods (by uid) the controller already replaced.
    pub replaced: HashSet<String>,
    /// Pods whose owner must get a replacement (filled by deletes).
    pub to_replace: Vec<Value>,
    /// Pods or nodes changed since the scheduler last ran.
    pub scheduling_dirty: bool,
    /// Pods, budgets or workloads changed since PDB statuses were last computed.
    pub budgets_dirty: bool,
    /// Pods to remove later: (key, uid, delay).
    pub deferred_removals: Vec<(Key, String, Duration)>,
}

impl State {
    /// A fresh state with a seeded random generator.
    pub fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed);
        Self {
            rng: seed ^ 0x9E37_79B9_7F4A_7C15,
            ..Default::default()
        }
    }

    /// Next pseudo random number (splitmix64).
    pub fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A v4-like UUID.
    pub fn uuid(&mut self) -> String {
        let a = self.random();
        let b = self.random();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    /// `n` random lowercase alphanumerics, as generateName suffixes use.
    pub fn suffix(&mut self, n: usize) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..n)
            .map(|_| ALPHABET[(self.random() % ALPHABET.len() as u64) as usize] as char)
            .collect()
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Looks an object up.
    pub fn get(&self, res: ResourceId, ns: &str, name: &str) -> Option<&Value> {
        self.objects.get(&(res, ns.to_string(), name.to_string()))
    }

    /// All objects of a resource (in one namespace, or all when `ns` is None), by key order.
    pub fn list(&self, res: ResourceId, ns: Option<&str>) -> Vec<Value> {
        self.iter(res, ns).cloned().collect()
    }

    /// Borrows the objects of a resource (in one namespace, or all), by key order.
    pub fn iter<'a>(
        &'a self,
        res: ResourceId,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        let start = (res, ns.unwrap_or("").to_string(), String::new());
        self.objects
            .range(start..)
            .take_while(move |((r, n, _), _)| *r == res && ns.is_none_or(|ns| ns == n))
            .map(|(_, v)| v)
    }

    fn push_event(
        &mut self,
        res: ResourceId,
        kind: EventType,
        object: Value,
        previous: Option<Value>,
    ) {
        let plural = RESOURCES[res].plural;
        if RESOURCES[res].group.is_empty() && matches!(plural, "pods" | "nodes") {
            self.scheduling_dirty = true;
        }
        if matches!(
            plural,
            "pods" | "poddisruptionbudgets" | "replicasets" | "deployments"
        ) {
            self.budgets_dirty = true;
        }
        self.history.push_back(StoredEvent {
            rv: self.rv,
            resource: res,
            kind,
            object,
            previous,
        });
        // Bounded history, like etcd compaction: the oldest events are forgotten.
        while self.history.len() > HISTORY_LIMIT {
            if let Some(old) = self.history.pop_front() {
                self.compacted_rv = old.rv;
            }
        }
    }

    /// Stores a new object: fills uid, creationTimestamp, resourceVersion, generation and
    /// namespace. Fails with 409 AlreadyExists.
    pub fn insert_new(&mut self, res: ResourceId, mut obj: Value) -> Result<Value, ApiError> {
        let info = &RESOURCES[res];
        let ns = namespace_of(&obj).to_string();
        let name = name_of(&obj).to_string();
        if name.is_empty() {
            return Err(ApiError::invalid(
                info.kind,
                "",
                "metadata.name: Required value: name or generateName is required",
            ));
        }
        if info.namespaced && ns.is_empty() {
            return Err(ApiError::bad_request(
                "the namespace of the object is empty",
            ));
        }
        let key = (res, ns, name.clone());
        if self.objects.contains_key(&key) {
            return Err(ApiError::already_exists(info.group, info.plural, &name));
        }
        let rv = self.next_rv();
        let uid = self.uuid();
        let obj_map = ensure_object(&mut obj);
        obj_map.insert("apiVersion".into(), json!(info.api_version()));
        obj_map.insert("kind".into(), json!(info.kind));
        let meta = ensure_object(obj_map.entry("metadata").or_insert_with(|| json!({})));
        meta.insert("uid".into(), json!(uid));
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        meta.insert("creationTimestamp".into(), json!(now()));
        meta.insert("generation".into(), json!(1));
        if !info.namespaced {
            meta.remove("namespace");
        }
        meta.remove("deletionTimestamp");
        self.objects.insert(key, obj.clone());
        self.push_event(res, EventType::Added, obj.clone(), None);
        Ok(obj)
    }

    /// Replaces a stored object with `new` (metadata already merged by the caller); sets a
    /// new resourceVersion and emits MODIFIED. Returns the stored object.
    pub fn replace(&mut self, res: ResourceId, mut new: Value) -> Value {
        let key = (
            res,
            namespace_of(&new).to_string(),
            name_of(&new).to_string(),
        );
        let rv = self.next_rv();
        if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
        }
        let previous = self.objects.insert(key, new.clone());
        self.push_event(res, EventType::Modified, new.clone(), previous);
        new
    }

    /// Removes an object and emits DELETED (the event's object carries the delete's rv).
    pub fn remove(&mut self, res: ResourceId, ns: &str, name: &str) -> Option<Value> {
        let mut obj = self
            .objects
            .remove(&(res, ns.to_string(), name.to_string()))?;
        let previous = obj.clone();
        let rv = self.next_rv();
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), json!(rv.to_string()));
        }
        self.push_event(res, EventType::Deleted, obj.clone(), Some(previous));
        if res == crate::resources::pods() {
            self.to_replace.push(obj.clone());
        }
        Some(obj)
    }

    /// Forgets all history: watches and continue tokens from before now get 410 Gone.
    pub fn compact(&mut self) {
        self.compacted_rv = self.rv;
        self.history.clear();
        self.snapshots.clear();
    }

    /// Events after `rv`, in order.
    pub fn events_after(&self, rv: u64) -> impl Iterator<Item = &StoredEvent> {
        let start = self.history.partition_point(|e| e.rv <= rv);
        self.history.range(start..)
    }
}

/// `metadata.name` (or "").
pub fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata.namespace` (or "").
pub fn namespace_of(obj: &Value) -> &str {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata.uid` (or "").
pub fn uid_of(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata.resourceVersion` (or "").
pub fn rv_of(obj: &Value) -> &str {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Makes `v` an object (replacing anything else) and returns its map.
pub fn ensure_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// The current time as an RFC 3339 timestamp with second precision, as metadata uses.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A time `secs` seconds from now, RFC 3339.
pub fn in_seconds(secs: i64) -> String {
    let t = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::pods;

    #[test]
    fn resource_versions_increase_and_history_replays() {
        let mut st = State::new();
        let a = st
            .insert_new(
                pods(),
                json!({"metadata": {"name": "a", "namespace": "ns"}}),
            )
            .unwrap();
        assert_eq!(rv_of(&a), "1");
        assert_eq!(uid_of(&a).len(), 36);
        assert!(
            st.insert_new(
                pods(),
                json!({"metadata": {"name": "a", "namespace": "ns"}})
            )
            .is_err()
        );
        let mut b = a.clone();
        b["spec"] = json!({"x": 1});
        let b = st.replace(pods(), b);
        assert_eq!(rv_of(&b), "2");
        let gone = st.remove(pods(), "ns", "a").unwrap();
        assert_eq!(rv_of(&gone), "3");
        let kinds: Vec<_> = st.events_after(1).map(|e| e.kind).collect();
        assert_eq!(kinds, vec![EventType::Modified, EventType::Deleted]);
        st.compact();
        assert_eq!(st.events_after(0).count(), 0);
        assert_eq!(st.compacted_rv, 3);
    }
}
