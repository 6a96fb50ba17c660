//! Where a migrated or evicted pod's replacement lands: after an eviction the actuator
//! registers the pod's owner; the pod reflector reports the first new pod of that owner
//! once it is bound to a node, or once the scheduler marks it unschedulable. Recently
//! created pods are remembered for a while, because a controller may create the
//! replacement before the eviction call has even returned.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use fulcrum_engine::cluster::Owner;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;

/// How long a replacement is waited for, and how long new pods are remembered.
const EXPECT_FOR_MS: i64 = 10 * 60 * 1000;
const REMEMBER_MS: i64 = 2 * 60 * 1000;
const REMEMBER_AT_MOST: usize = 4096;

/// What became of a replacement.
#[derive(Clone, Debug, PartialEq)]
pub struct Landing {
    /// The policy that acted.
    pub policy: String,
    /// The evicted pod, `namespace/name`.
    pub evicted: String,
    /// The node it was evicted from.
    pub source_node: String,
    /// The replacement, `namespace/name`.
    pub replacement: String,
    /// `Ok(node)` when bound, `Err(scheduler message)` when unschedulable.
    pub node: Result<String, String>,
}

#[derive(Debug)]
struct Pending {
    policy: String,
    evicted: String,
    source_node: String,
    owner: Owner,
    since_ms: i64,
    unschedulable_reported: bool,
}

/// A recently created pod.
#[derive(Debug)]
struct Seen {
    key: String,
    owner: Owner,
    created_ms: i64,
    node: Option<String>,
    unschedulable: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    pending: Vec<Pending>,
    recent: VecDeque<Seen>,
}

/// Replacements awaited, shared by the actuator and the pod reflector.
#[derive(Clone, Debug)]
pub struct Replacements {
    state: Arc<Mutex<State>>,
    tx: mpsc::UnboundedSender<Landing>,
}

fn namespace(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

impl Replacements {
    /// A tracker and the receiver of its reports.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Landing>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = Arc::default();
        (Self { state, tx }, rx)
    }

    /// Awaits a replacement of `evicted` (on `source_node`, owned by `owner`) created after
    /// `since_ms`.
    pub fn expect(
        &self,
        policy: &str,
        evicted: &str,
        source_node: &str,
        owner: Owner,
        since_ms: i64,
    ) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        st.pending.retain(|e| since_ms - e.since_ms < EXPECT_FOR_MS);
        st.pending.push(Pending {
            policy: policy.to_owned(),
            evicted: evicted.to_owned(),
            source_node: source_node.to_owned(),
            owner,
            since_ms,
            unschedulable_reported: false,
        });
        let candidates: Vec<usize> = (0..st.recent.len()).collect();
        for i in candidates {
            self.settle(&mut st, i);
        }
    }

    /// Looks at a pod the reflector saw (added or changed).
    pub fn observe(&self, pod: &Pod, owner: Option<&Owner>, created_ms: Option<i64>) {
        let (Some(owner), Some(created_ms)) = (owner, created_ms) else {
            return;
        };
        let now = jiff::Timestamp::now().as_millisecond();
        if now - created_ms > REMEMBER_MS {
            return;
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let seen = Seen {
            key: format!("{ns}/{name}"),
            owner: owner.clone(),
            created_ms,
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            unschedulable: unschedulable(pod),
        };
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        st.recent
            .retain(|s| s.key != seen.key && now - s.created_ms <= REMEMBER_MS);
        if st.recent.len() >= REMEMBER_AT_MOST {
            st.recent.pop_front();
        }
        st.recent.push_back(seen);
        let last = st.recent.len() - 1;
        self.settle(&mut st, last);
    }

    /// Reports the recent pod `i` if it is an awaited replacement that is bound or
    /// unschedulable.
    fn settle(&self, st: &mut State, i: usize) {
        let Some(seen) = st.recent.get(i) else {
            return;
        };
        // Creation times have a resolution of one second.
        let Some(p) = st.pending.iter().position(|e| {
            namespace(&e.evicted) == namespace(&seen.key)
                && e.owner == seen.owner
                && e.evicted != seen.key
                && seen.created_ms >= e.since_ms - 1000
        }) else {
            return;
        };
        let landing = |e: &Pending, node| Landing {
            policy: e.policy.clone(),
            evicted: e.evicted.clone(),
            source_node: e.source_node.clone(),
            replacement: seen.key.clone(),
            node,
        };
        if let Some(node) = &seen.node {
            let e = st.pending.swap_remove(p);
            let _ = self.tx.send(landing(&e, Ok(node.clone())));
        } else if let Some(message) = &seen.unschedulable
            && !st.pending[p].unschedulable_reported
        {
            let _ = self.tx.send(landing(&st.pending[p], Err(message.clone())));
            st.pending[p].unschedulable_reported = true;
        }
    }
}

/// The scheduler's message when it marked the pod unschedulable.
fn unschedulable(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| c.message.clone().unwrap_or_else(|| "unschedulable".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn owner(name: &str) -> Owner {
        Owner {
            kind: "ReplicaSet".into(),
            name: name.into(),
        }
    }

    fn pod(name: &str, node: Option<&str>, unschedulable: bool) -> Pod {
        let mut p =
            json!({"metadata": {"name": name, "namespace": "spark"}, "spec": {"containers": []}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        if unschedulable {
            p["status"] = json!({"conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/2 nodes are available"}]});
        }
        serde_json::from_value(p).expect("pod")
    }

    fn now() -> i64 {
        jiff::Timestamp::now().as_millisecond()
    }

    #[test]
    fn a_replacement_is_reported_where_it_lands_even_if_seen_before_the_eviction_returned() {
        let (r, mut rx) = Replacements::new();
        let t = now();
        // Another workload's new pod is not a replacement.
        r.observe(
            &pod("other-1", Some("node-2"), false),
            Some(&owner("other")),
            Some(t),
        );
        r.observe(&pod("exec-2", None, false), Some(&owner("exec")), Some(t));
        r.expect("p", "spark/exec-1", "node-0", owner("exec"), t);
        assert!(rx.try_recv().is_err(), "not bound yet");
        r.observe(
            &pod("exec-2", Some("node-1"), false),
            Some(&owner("exec")),
            Some(t),
        );
        let landing = rx.try_recv().expect("reported");
        assert_eq!(landing.replacement, "spark/exec-2");
        assert_eq!(landing.node, Ok("node-1".into()));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn an_unschedulable_replacement_is_reported_once() {
        let (r, mut rx) = Replacements::new();
        let t = now();
        r.expect("p", "spark/exec-1", "node-0", owner("exec"), t);
        r.observe(&pod("exec-2", None, true), Some(&owner("exec")), Some(t));
        r.observe(&pod("exec-2", None, true), Some(&owner("exec")), Some(t));
        let landing = rx.try_recv().expect("reported");
        assert_eq!(landing.node, Err("0/2 nodes are available".into()));
        assert!(rx.try_recv().is_err(), "reported once");
    }
}
