//! PodDisruptionBudget status, as the disruption controller maintains it: healthy pods are
//! Running, Ready and not terminating; `minAvailable`/`maxUnavailable` (int or percent,
//! rounded up) give `desiredHealthy`; `disruptionsAllowed = max(0, currentHealthy -
//! desiredHealthy)`. `expectedPods` is the number of selected pods (the real controller asks
//! the owning controller's scale; the fake counts the pods).

use serde_json::{Value, json};

use crate::resources::{pdbs, pods};
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
    st.list(pdbs(), Some(ns))
        .into_iter()
        .filter(|pdb| selects(pdb, pod))
        .collect()
}

fn selects(pdb: &Value, pod: &Value) -> bool {
    let sel = pdb
        .pointer("/spec/selector")
        .cloned()
        .unwrap_or(Value::Null);
    matches!(LabelSelector::from_object(&sel), Ok(Some(s)) if s.matches_object(pod))
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

/// The status a PDB should have now.
pub fn compute_status(st: &State, pdb: &Value) -> Value {
    let ns = namespace_of(pdb);
    let selected: Vec<Value> = st
        .list(pods(), Some(ns))
        .into_iter()
        .filter(|p| selects(pdb, p))
        .collect();
    let expected = selected.len() as i64;
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

/// Recomputes every PDB's status; writes (one MODIFIED each) only those that changed.
pub fn recompute(st: &mut State) {
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
