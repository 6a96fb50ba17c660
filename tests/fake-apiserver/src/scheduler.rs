//! A tiny scheduler: binds unbound pending pods to a feasible node, or marks them
//! `PodScheduled=False` (`Unschedulable`) with a message counting the reasons.
//!
//! Feasible: node Ready and not `spec.unschedulable`, `nodeSelector` and required node
//! affinity (`In`, `NotIn`, `Exists`, `DoesNotExist` on labels) match, every
//! `NoSchedule`/`NoExecute` taint tolerated, CPU and memory requests fit
//! `status.allocatable` minus the requests of the pods already bound there. Preference: fewer
//! untolerated `PreferNoSchedule` taints, then more free CPU, then name.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::resources::{nodes, pods};
use crate::store::{State, name_of, now};

/// Parses a Kubernetes quantity into thousandths of the unit (millicores for CPU,
/// millibytes for memory). Unknown forms give None.
pub fn parse_quantity(q: &str) -> Option<i128> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let value: f64 = num.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "m" => 0.001,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with('e') || s.starts_with('E') => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some((value * factor * 1000.0).round() as i128)
}

fn quantity(v: Option<&Value>) -> i128 {
    match v {
        Some(Value::String(s)) => parse_quantity(s).unwrap_or(0),
        Some(Value::Number(n)) => (n.as_f64().unwrap_or(0.0) * 1000.0).round() as i128,
        _ => 0,
    }
}

/// Sum of container requests of a pod: (cpu, memory) in thousandths.
pub fn pod_requests(pod: &Value) -> (i128, i128) {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    containers.iter().fold((0, 0), |(c, m), ctr| {
        let req = ctr.pointer("/resources/requests");
        (
            c + quantity(req.and_then(|r| r.get("cpu"))),
            m + quantity(req.and_then(|r| r.get("memory"))),
        )
    })
}

fn node_ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

fn tolerates(pod: &Value, taint: &Value) -> bool {
    let tolerations = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let key = taint.get("key").and_then(Value::as_str).unwrap_or("");
    let value = taint.get("value").and_then(Value::as_str).unwrap_or("");
    let effect = taint.get("effect").and_then(Value::as_str).unwrap_or("");
    tolerations.iter().any(|t| {
        let t_effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
        if !t_effect.is_empty() && t_effect != effect {
            return false;
        }
        let t_key = t.get("key").and_then(Value::as_str).unwrap_or("");
        let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
        if t_key.is_empty() {
            return op == "Exists";
        }
        if t_key != key {
            return false;
        }
        match op {
            "Exists" => true,
            _ => t.get("value").and_then(Value::as_str).unwrap_or("") == value,
        }
    })
}

fn label<'a>(node: &'a Value, key: &str) -> Option<&'a str> {
    node.pointer("/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
}

fn affinity_matches(pod: &Value, node: &Value) -> bool {
    if let Some(sel) = pod.pointer("/spec/nodeSelector").and_then(Value::as_object)
        && !sel.iter().all(|(k, v)| label(node, k) == v.as_str())
    {
        return false;
    }
    let Some(terms) = pod
        .pointer(
            "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms",
        )
        .and_then(Value::as_array)
    else {
        return true;
    };
    // Terms are ORed; expressions within a term are ANDed.
    terms.iter().any(|term| {
        term.get("matchExpressions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .iter()
            .all(|e| {
                let key = e.get("key").and_then(Value::as_str).unwrap_or("");
                let values: Vec<&str> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let actual = label(node, key);
                match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                    "In" => actual.is_some_and(|a| values.contains(&a)),
                    "NotIn" => actual.is_none_or(|a| !values.contains(&a)),
                    "Exists" => actual.is_some(),
                    "DoesNotExist" => actual.is_none(),
                    _ => false,
                }
            })
    })
}

/// Why a node cannot take a pod.
fn unfit_reason(
    pod: &Value,
    node: &Value,
    used: &BTreeMap<String, (i128, i128)>,
) -> Result<(usize, i128), String> {
    if !node_ready(node) {
        return Err("node(s) were not ready".into());
    }
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        return Err("node(s) were unschedulable".into());
    }
    if !affinity_matches(pod, node) {
        return Err("node(s) didn't match Pod's node affinity/selector".into());
    }
    let taints = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut prefer_no = 0;
    for t in &taints {
        let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
        let tolerated = tolerates(pod, t);
        if matches!(effect, "NoSchedule" | "NoExecute") && !tolerated {
            let key = t.get("key").and_then(Value::as_str).unwrap_or("");
            let value = t.get("value").and_then(Value::as_str).unwrap_or("");
            return Err(format!("node(s) had untolerated taint {{{key}: {value}}}"));
        }
        if effect == "PreferNoSchedule" && !tolerated {
            prefer_no += 1;
        }
    }
    let allocatable = node.pointer("/status/allocatable");
    let cpu_cap = quantity(allocatable.and_then(|a| a.get("cpu")));
    let mem_cap = quantity(allocatable.and_then(|a| a.get("memory")));
    let (cpu_used, mem_used) = used.get(name_of(node)).copied().unwrap_or((0, 0));
    let (cpu_req, mem_req) = pod_requests(pod);
    if cpu_req > 0 && cpu_used + cpu_req > cpu_cap {
        return Err("Insufficient cpu".into());
    }
    if mem_req > 0 && mem_used + mem_req > mem_cap {
        return Err("Insufficient memory".into());
    }
    Ok((prefer_no, cpu_cap - cpu_used - cpu_req))
}

fn needs_scheduling(pod: &Value) -> bool {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
        && pod.pointer("/metadata/deletionTimestamp").is_none()
        && matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            None | Some("Pending")
        )
        && pod
            .pointer("/spec/schedulerName")
            .and_then(Value::as_str)
            .is_none_or(|s| s == "default-scheduler")
}

/// Requests of pods bound to each node (terminal pods excluded).
fn usage(st: &State) -> BTreeMap<String, (i128, i128)> {
    let mut used: BTreeMap<String, (i128, i128)> = BTreeMap::new();
    for pod in st.iter(pods(), None) {
        let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str) else {
            continue;
        };
        if matches!(
            pod.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        ) {
            continue;
        }
        let (c, m) = pod_requests(pod);
        let e = used.entry(node.to_string()).or_default();
        e.0 += c;
        e.1 += m;
    }
    used
}

/// Schedules every unbound pending pod (one write per pod whose state changes).
pub fn schedule(st: &mut State) {
    if !std::mem::take(&mut st.scheduling_dirty) {
        return;
    }
    let pending: Vec<Value> = st
        .iter(pods(), None)
        .filter(|p| needs_scheduling(p))
        .cloned()
        .collect();
    if pending.is_empty() {
        return;
    }
    let all_nodes = st.list(nodes(), None);
    let mut used = usage(st);
    for pod in pending {
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        let mut best: Option<(usize, i128, String)> = None;
        for node in &all_nodes {
            match unfit_reason(&pod, node, &used) {
                Ok((prefer_no, free_cpu)) => {
                    let candidate = (prefer_no, -free_cpu, name_of(node).to_string());
                    if best.as_ref().is_none_or(|b| candidate < *b) {
                        best = Some(candidate);
                    }
                }
                Err(r) => *reasons.entry(r).or_default() += 1,
            }
        }
        let mut updated = pod.clone();
        match best {
            Some((_, _, node_name)) => {
                let (cpu, memory) = pod_requests(&pod);
                let e = used.entry(node_name.clone()).or_default();
                e.0 += cpu;
                e.1 += memory;
                let t = now();
                crate::store::ensure_object(&mut updated["spec"])
                    .insert("nodeName".into(), json!(node_name));
                updated["status"] = json!({
                    "phase": "Running",
                    "startTime": t,
                    "hostIP": "10.0.0.1",
                    "podIP": format!("10.244.{}.{}", st.random() % 250, st.random() % 250 + 2),
                    "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
                        {"type": "Initialized", "status": "True", "lastTransitionTime": t},
                        {"type": "ContainersReady", "status": "True", "lastTransitionTime": t},
                        {"type": "Ready", "status": "True", "lastTransitionTime": t},
                    ],
                });
            }
            None => {
                let mut parts: Vec<String> =
                    reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
                parts.sort();
                let message = format!(
                    "0/{} nodes are available: {}.",
                    all_nodes.len(),
                    parts.join(", ")
                );
                let existing = pod
                    .pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .and_then(|cs| {
                        cs.iter()
                            .find(|c| c.get("type").and_then(Value::as_str) == Some("PodScheduled"))
                    });
                if existing.and_then(|c| c.get("message")) == Some(&json!(message)) {
                    continue;
                }
                updated["status"] = json!({
                    "phase": "Pending",
                    "conditions": [{
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": message,
                        "lastTransitionTime": now(),
                    }],
                });
            }
        }
        st.replace(pods(), updated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("100m"), Some(100));
        assert_eq!(parse_quantity("2"), Some(2000));
        assert_eq!(parse_quantity("0.5"), Some(500));
        assert_eq!(parse_quantity("1Ki"), Some(1_024_000));
        assert_eq!(parse_quantity("1G"), Some(1_000_000_000_000));
        assert_eq!(parse_quantity("1e3"), Some(1_000_000));
        assert_eq!(parse_quantity("abc"), None);
    }

    #[test]
    fn taints_and_tolerations() {
        let taint = json!({"key": "gpu", "value": "true", "effect": "NoSchedule"});
        let pod = json!({"spec": {"tolerations": [{"key": "gpu", "operator": "Exists"}]}});
        assert!(tolerates(&pod, &taint));
        let pod = json!({"spec": {"tolerations": [{"key": "gpu", "value": "false"}]}});
        assert!(!tolerates(&pod, &taint));
        let pod = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        assert!(tolerates(&pod, &taint));
    }
}
