//! The reactions that follow every write: PDB status, a tiny ReplicaSet/StatefulSet/Job
//! controller that replaces deleted or evicted pods, the scheduler, and the "kubelet" end
//! of graceful pod termination.

use serde_json::{Value, json};

use crate::pdb;
use crate::resources::{crds, pods};
use crate::scheduler;
use crate::store::{Config, Key, State, ensure_object, name_of, namespace_of, uid_of};

/// Owner kinds whose pods get replaced.
const REPLACING_OWNERS: &[&str] = &["ReplicaSet", "StatefulSet", "Job"];

/// Runs the reactions until nothing changes (bounded).
pub fn reconcile(st: &mut State, cfg: &Config) {
    for _ in 0..16 {
        let before = st.rv;
        establish_crds(st);
        if cfg.controllers {
            replace_pods(st);
            scheduler::schedule(st);
        } else {
            st.to_replace.clear();
        }
        pdb::recompute(st);
        if st.rv == before {
            break;
        }
    }
}

/// Marks stored CustomResourceDefinitions `NamesAccepted` and `Established`, as the
/// apiextensions controllers do (the fake serves only its built-in custom resources).
fn establish_crds(st: &mut State) {
    let pending: Vec<Value> = st
        .iter(crds(), None)
        .filter(|c| c.pointer("/status/acceptedNames").is_none())
        .cloned()
        .collect();
    for mut crd in pending {
        let t = crate::store::now();
        let names = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
        let stored: Vec<Value> = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .map(|vs| {
                vs.iter()
                    .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                    .filter_map(|v| v.get("name").cloned())
                    .collect()
            })
            .unwrap_or_default();
        let status = json!({
            "acceptedNames": names,
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": t},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": t},
            ],
            "storedVersions": stored,
        });
        ensure_object(&mut crd).insert("status".into(), status);
        st.replace(crds(), crd);
    }
}

/// Removes a terminating pod once its grace is over (if it is still the same pod).
pub fn finish_termination(st: &mut State, key: &Key, uid: &str) {
    let (res, ns, name) = key;
    let same = st
        .get(*res, ns, name)
        .is_some_and(|o| uid_of(o) == uid && o.pointer("/metadata/deletionTimestamp").is_some());
    if same {
        st.remove(*res, ns, name);
    }
}

fn controller_ref(pod: &Value) -> Option<Value> {
    pod.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .cloned()
}

/// Creates replacements for pods deleted or evicted out from under their controller.
fn replace_pods(st: &mut State) {
    let gone = std::mem::take(&mut st.to_replace);
    for old in gone {
        let uid = uid_of(&old).to_string();
        if st.replaced.contains(&uid) {
            continue;
        }
        let Some(owner) = controller_ref(&old) else {
            continue;
        };
        let owner_kind = owner.get("kind").and_then(Value::as_str).unwrap_or("");
        if !REPLACING_OWNERS.contains(&owner_kind) {
            continue;
        }
        let ns = namespace_of(&old).to_string();
        let still_there = st.get(pods(), &ns, name_of(&old)).is_some();
        let name = if owner_kind == "StatefulSet" {
            // StatefulSet pods keep their name: wait until the old one is gone.
            if still_there {
                continue;
            }
            name_of(&old).to_string()
        } else {
            let prefix = old
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| {
                    format!(
                        "{}-",
                        owner.get("name").and_then(Value::as_str).unwrap_or("pod")
                    )
                });
            format!("{prefix}{}", st.suffix(5))
        };
        st.replaced.insert(uid);
        let mut meta = json!({"name": name, "namespace": ns});
        let meta_map = ensure_object(&mut meta);
        for k in ["labels", "annotations", "ownerReferences", "generateName"] {
            if let Some(v) = old.pointer(&format!("/metadata/{k}")) {
                meta_map.insert(k.into(), v.clone());
            }
        }
        let mut spec = old.get("spec").cloned().unwrap_or(json!({}));
        ensure_object(&mut spec).remove("nodeName");
        let replacement = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": spec,
            "status": {"phase": "Pending"},
        });
        // A name collision (rare) just skips the replacement.
        let _ = st.insert_new(pods(), replacement);
    }
}
