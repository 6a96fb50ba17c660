//! PATCH bodies: JSON merge patch (RFC 7386), strategic merge patch (built-in kinds only, with
//! the patch merge keys of the fields this project uses) and JSON patch (RFC 6902, incl. `test`).

use serde_json::{Map, Value};

use crate::status::ApiError;

/// The patch flavours, by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// `application/json-patch+json`.
    Json,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// From a Content-Type header (parameters ignored).
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Applies a JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Applies a JSON patch; a failing operation (e.g. `test`) is a 422 as on the real server.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &ops.0).map_err(|e| {
        ApiError::new(
            422,
            "Invalid",
            format!("the server rejected our request due to an error in our request: {e}"),
        )
    })
}

/// Patch merge key of a list field, by field name (built-in types only).
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "conditions" | "addresses" => "type",
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        "ports" => "containerPort",
        "ownerReferences" => "uid",
        _ => return None,
    })
}

/// Lists of primitives that merge as sets (`patchStrategy: merge` without a key).
fn is_primitive_set(field: &str) -> bool {
    field == "finalizers"
}

/// Applies a strategic merge patch. Lists with a patch merge key (containers by name,
/// conditions by type, ownerReferences by uid, ...) merge by key and honour
/// `$patch: delete`; `finalizers` merge as a set; every other list (e.g. Node
/// `spec.taints`, which has no merge key) is replaced. `$patch: replace` on a map replaces it;
/// `$deleteFromPrimitiveList/<field>` removes values; other `$` directives are ignored.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(patch_map) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch_map.clone();
        replaced.remove("$patch");
        *target = Value::Object(replaced);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(target_map) = target.as_object_mut() else {
        return;
    };
    for (key, value) in patch_map {
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(remove)) = (
                target_map.get_mut(field).and_then(Value::as_array_mut),
                value.as_array(),
            ) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        match value {
            Value::Null => {
                target_map.remove(key);
            }
            Value::Object(_) => {
                let entry = target_map.entry(key.clone()).or_insert(Value::Null);
                if value.get("$patch").and_then(Value::as_str) == Some("delete") {
                    target_map.remove(key);
                } else {
                    strategic_merge(entry, value);
                }
            }
            Value::Array(items) => {
                let existing = target_map.get(key).and_then(Value::as_array).cloned();
                let merged = match (merge_key(key), existing) {
                    (Some(mk), Some(current)) => merge_keyed_list(current, items, mk),
                    (None, Some(mut current)) if is_primitive_set(key) => {
                        for item in items {
                            if !current.contains(item) {
                                current.push(item.clone());
                            }
                        }
                        current
                    }
                    _ => items
                        .iter()
                        .filter(|i| i.get("$patch").is_none())
                        .cloned()
                        .collect(),
                };
                target_map.insert(key.clone(), Value::Array(merged));
            }
            other => {
                target_map.insert(key.clone(), other.clone());
            }
        }
    }
}

fn merge_keyed_list(mut current: Vec<Value>, items: &[Value], key: &str) -> Vec<Value> {
    for item in items {
        let id = item.get(key);
        let pos = id.and_then(|id| current.iter().position(|c| c.get(key) == Some(id)));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(p), true) => {
                current.remove(p);
            }
            (None, true) => {}
            (Some(p), false) => strategic_merge(&mut current[p], item),
            (None, false) => current.push(item.clone()),
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_keys_and_replaced_lists() {
        let mut node = json!({
            "metadata": {"labels": {"a": "1"}, "annotations": {"x": "1"}, "finalizers": ["f1"]},
            "spec": {"taints": [{"key": "k1", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}]}
        });
        strategic_merge(
            &mut node,
            &json!({
                "metadata": {"labels": {"a": null, "b": "2"}, "finalizers": ["f2"]},
                "spec": {"taints": [{"key": "k2", "effect": "NoExecute"}]},
                "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "$patch": "delete"}]}
            }),
        );
        assert_eq!(node["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(node["metadata"]["annotations"], json!({"x": "1"}));
        assert_eq!(node["metadata"]["finalizers"], json!(["f1", "f2"]));
        assert_eq!(
            node["spec"]["taints"],
            json!([{"key": "k2", "effect": "NoExecute"}])
        );
        assert_eq!(
            node["status"]["conditions"],
            json!([{"type": "Ready", "status": "False"}])
        );
    }

    #[test]
    fn json_patch_test_op_fails_with_422() {
        let mut obj = json!({"metadata": {"resourceVersion": "5"}});
        let err = json_patch(
            &mut obj,
            &json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "4"}]),
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
        json_patch(
            &mut obj,
            &json!([{"op": "test", "path": "/metadata/resourceVersion", "value": "5"},
                    {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}]),
        )
        .unwrap();
        assert_eq!(obj["metadata"]["labels"]["a"], "b");
    }
}
