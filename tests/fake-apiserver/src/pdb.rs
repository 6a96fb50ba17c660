//! PodDisruptionBudget status, as the disruption controller maintains it: healthy pods are
//! Running, Ready and not terminating; `minAvailable`/`maxUnavailable` (int or percent,
//! rounded up) give `desiredHealthy`; `disruptionsAllowed = max(0, currentHealthy -
//! desiredHealthy)`. `expectedPods` is the number of selected pods for an integer
//! `minAvailable`, otherwise the scale of their controllers (`spec.replicas` of stored
//! ReplicaSets/Deployments; pods without a stored controller count themselves).

use serde_json::{Value, json};

use crate::resources::{by_plural, pdbs, pods};
use crate::selectors::LabelSelector;
use crate::store::{State, name_of, namespace_of};

/// Whether a pod counts as healthy for disruption budgets.
pub fn pod_healthy(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_none()
        && pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running")
        && pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.get("type").and_then(Value::as_str) == Some("Ready")
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            })
}

/// The PDBs in the pod's namespace whose selector selects it.
pub fn selecting(st: &State, pod: &Value) -> Vec<Value> {
    let ns = namespace_of(pod);
    st.iter(pdbs(), Some(ns))
        .filter(|pdb| selects(pdb, pod))
        .cloned()
        .collect()
}

/// The PDB's selector (None selects nothing: a null or invalid selector).
fn selector(pdb: &Value) -> Option<LabelSelector> {
    let sel = pdb.pointer("/spec/selector").unwrap_or(&Value::Null);
    LabelSelector::from_object(sel).ok().flatten()
}

fn selects(pdb: &Value, pod: &Value) -> bool {
    selector(pdb).is_some_and(|s| s.matches_object(pod))
}

/// Scales an int-or-percent against `total`, rounding up.
fn scaled(v: &Value, total: i64) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let pct: i64 = s.strip_suffix('%')?.trim().parse().ok()?;
            Some((pct * total + 99) / 100)
        }
        _ => None,
    }
}

fn controller_of(obj: &Value) -> Option<(String, String)> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|r| {
            let field = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            (field("kind"), field("name"))
        })
}

/// `spec.replicas` of a stored workload (default 1), following a ReplicaSet up to its
/// Deployment.
fn scale_of(st: &State, ns: &str, kind: &str, name: &str) -> Option<(String, i64)> {
    let plural = match kind {
        "ReplicaSet" => "replicasets",
        "Deployment" => "deployments",
        _ => return None,
    };
    let res = by_plural("apps", "v1", plural)?;
    let obj = st.get(res, ns, name)?;
    if kind == "ReplicaSet"
        && let Some((owner_kind, owner_name)) = controller_of(obj)
        && let Some(up) = scale_of(st, ns, &owner_kind, &owner_name)
    {
        return Some(up);
    }
    let replicas = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    Some((format!("{kind}/{name}"), replicas))
}

/// Expected pods: the summed scale of the distinct stored controllers of the selected pods,
/// plus one for each selected pod whose controller is not stored (or has no scale here).
fn expected_from_controllers(st: &State, selected: &[&Value]) -> i64 {
    let mut seen = std::collections::BTreeMap::new();
    let mut loose = 0;
    for pod in selected {
        let ns = namespace_of(pod);
        match controller_of(pod).and_then(|(k, n)| scale_of(st, ns, &k, &n)) {
            Some((key, replicas)) => {
                seen.insert(key, replicas);
            }
            None => loose += 1,
        }
    }
    seen.values().sum::<i64>() + loose
}

/// The status a PDB should have now.
pub fn compute_status(st: &State, pdb: &Value) -> Value {
    let ns = namespace_of(pdb);
    let sel = selector(pdb);
    let selected: Vec<&Value> = st
        .iter(pods(), Some(ns))
        .filter(|p| sel.as_ref().is_some_and(|s| s.matches_object(p)))
        .collect();
    // An integer minAvailable counts the selected pods; percentages and maxUnavailable use
    // the scale of the pods' controllers, as the disruption controller does.
    let int_min = pdb
        .pointer("/spec/minAvailable")
        .is_some_and(Value::is_number);
    let expected = if int_min {
        selected.len() as i64
    } else {
        expected_from_controllers(st, &selected)
    };
    let healthy = selected.iter().filter(|p| pod_healthy(p)).count() as i64;
    let desired = if let Some(min) = pdb.pointer("/spec/minAvailable") {
        scaled(min, expected).unwrap_or(0)
    } else if let Some(max) = pdb.pointer("/spec/maxUnavailable") {
        (expected - scaled(max, expected).unwrap_or(0)).max(0)
    } else {
        0
    };
    let allowed = (healthy - desired).max(0);
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let existing: Vec<String> = selected
        .iter()
        .filter(|p| p.pointer("/metadata/deletionTimestamp").is_none())
        .map(|p| name_of(p).to_string())
        .collect();
    // Evicted pods stay in disruptedPods until they are gone or terminating.
    let disrupted: serde_json::Map<String, Value> = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| existing.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let allowed = (allowed - disrupted.len() as i64).max(0);
    let condition_status = if allowed > 0 { "True" } else { "False" };
    let transition = pdb
        .pointer("/status/conditions/0")
        .filter(|c| c.get("status").and_then(Value::as_str) == Some(condition_status))
        .and_then(|c| c.get("lastTransitionTime").cloned())
        .unwrap_or_else(|| json!(crate::store::now()));
    let mut status = json!({
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "disruptionsAllowed": allowed,
        "expectedPods": expected,
        "observedGeneration": generation,
        "conditions": [{
            "type": "DisruptionAllowed",
            "status": condition_status,
            "reason": if allowed > 0 { "SufficientPods" } else { "InsufficientPods" },
            "message": "",
            "observedGeneration": generation,
            "lastTransitionTime": transition,
        }],
    });
    if !disrupted.is_empty() {
        status["disruptedPods"] = Value::Object(disrupted);
    }
    status
}

/// Recomputes every PDB's status when pods or budgets changed; writes (one MODIFIED each)
/// only those that changed.
pub fn recompute(st: &mut State) {
    if !std::mem::take(&mut st.budgets_dirty) {
        return;
    }
    for pdb in st.list(pdbs(), None) {
        let status = compute_status(st, &pdb);
        if pdb.get("status") != Some(&status) {
            let mut updated = pdb.clone();
            updated["status"] = status;
            st.replace(pdbs(), updated);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_up() {
        assert_eq!(scaled(&json!("50%"), 3), Some(2));
        assert_eq!(scaled(&json!(1), 3), Some(1));
        assert_eq!(scaled(&json!("x"), 3), None);
    }
}
