//! The Eviction API (`POST .../pods/{name}/eviction` with a `policy/v1` `Eviction`), checked
//! against PodDisruptionBudgets as the real server does.

use serde_json::{Value, json};

use crate::pdb;
use crate::resources::{pdbs, pods};
use crate::status::{self, ApiError};
use crate::store::{Config, State, name_of, now};
use crate::writes::{self, DeleteOptions};

/// One eviction attempt, as received.
#[derive(Debug, Clone, PartialEq)]
pub struct EvictionRecord {
    /// Namespace from the URL.
    pub namespace: String,
    /// Pod name from the URL.
    pub pod: String,
    /// The request body as sent.
    pub body: Value,
    /// Whether the body carried `deleteOptions` (camelCase, the only spelling the server reads).
    pub delete_options_camel_case: bool,
    /// Whether the body carried a snake_case `delete_options` (ignored as an unknown field).
    pub delete_options_snake_case: bool,
    /// `deleteOptions.gracePeriodSeconds`, when sent.
    pub grace_period_seconds: Option<i64>,
    /// `deleteOptions.preconditions.uid`, when sent.
    pub precondition_uid: Option<String>,
    /// HTTP status answered.
    pub status: u16,
}

/// Handles an eviction; returns the `Status` body and code (201 on success) or an error.
pub fn evict(
    st: &mut State,
    cfg: &Config,
    ns: &str,
    name: &str,
    body: &Value,
) -> Result<(Value, u16), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be an Eviction object",
        ));
    }
    let body_name = name_of(body);
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "name in URL does not match name in Eviction object: {name} != {body_name}"
        )));
    }
    let options = body
        .get("deleteOptions")
        .map(DeleteOptions::from_body)
        .unwrap_or_default();
    let pod = st
        .get(pods(), ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found("", "pods", name))?;
    if let Some(uid) = &options.precondition_uid
        && uid != crate::store::uid_of(&pod)
    {
        return Err(ApiError::conflict(
            "",
            "pods",
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                crate::store::uid_of(&pod)
            ),
        ));
    }
    // As the real server's canIgnorePDB: terminal, pending and terminating pods are deleted
    // without consulting budgets.
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    let ignore_budgets = matches!(phase, Some("Succeeded" | "Failed" | "Pending"))
        || pod.pointer("/metadata/deletionTimestamp").is_some();
    if !ignore_budgets {
        let budgets = pdb::selecting(st, &pod);
        if budgets.len() > 1 {
            return Err(ApiError::new(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        if let Some(budget) = budgets.into_iter().next() {
            let allowed = budget
                .pointer("/status/disruptionsAllowed")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let budget_name = name_of(&budget).to_string();
            let current_healthy = budget
                .pointer("/status/currentHealthy")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let desired_healthy = budget
                .pointer("/status/desiredHealthy")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            // Running but not Ready pods: `unhealthyPodEvictionPolicy` AlwaysAllow evicts them;
            // IfHealthyBudget (the default) evicts them while the budget is met, without
            // spending a disruption.
            if !pdb::pod_healthy(&pod) {
                let policy = budget
                    .pointer("/spec/unhealthyPodEvictionPolicy")
                    .and_then(Value::as_str)
                    .unwrap_or("IfHealthyBudget");
                if policy == "AlwaysAllow" || current_healthy >= desired_healthy {
                    writes::delete(st, cfg, pods(), ns, name, &options)?;
                    return Ok((
                        status::success(201, json!({"name": name, "kind": "pods"})),
                        201,
                    ));
                }
            }
            if allowed <= 0 {
                let (desired, current) = (desired_healthy, current_healthy);
                return Err(ApiError::new(
                    429,
                    "TooManyRequests",
                    "Too many requests: Cannot evict pod as it would violate the pod's disruption budget.",
                )
                .with_details(json!({"causes": [{
                    "reason": "DisruptionBudget",
                    "message": format!("The disruption budget {budget_name} needs {desired} healthy pods and has {current} currently"),
                }]})));
            }
            let mut updated = budget.clone();
            let status = crate::store::ensure_object(&mut updated["status"]);
            status.insert("disruptionsAllowed".into(), json!(allowed - 1));
            let disrupted =
                crate::store::ensure_object(status.entry("disruptedPods").or_insert(json!({})));
            disrupted.insert(name.to_string(), json!(now()));
            st.replace(pdbs(), updated);
        }
    }
    writes::delete(st, cfg, pods(), ns, name, &options)?;
    Ok((
        status::success(201, json!({"name": name, "kind": "pods"})),
        201,
    ))
}

/// Builds the record of an attempt.
pub fn record(ns: &str, pod: &str, body: &Value, status: u16) -> EvictionRecord {
    EvictionRecord {
        namespace: ns.to_string(),
        pod: pod.to_string(),
        body: body.clone(),
        delete_options_camel_case: body.get("deleteOptions").is_some(),
        delete_options_snake_case: body.get("delete_options").is_some(),
        grace_period_seconds: body
            .pointer("/deleteOptions/gracePeriodSeconds")
            .and_then(Value::as_i64),
        precondition_uid: body
            .pointer("/deleteOptions/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        status,
    }
}
