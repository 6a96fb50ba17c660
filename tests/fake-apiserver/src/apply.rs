//! Server-side apply and `metadata.managedFields`.
//!
//! Simplifications (documented in the README): a field set is the set of leaf paths of the
//! applied configuration, where a leaf is a scalar, a list (lists are atomic: owned and
//! replaced whole) or an empty map; `fieldsV1` holds only `f:` entries. A conflict is another
//! manager owning a path that the apply would change to a different value; `force` takes it
//! over. A field this manager applied before and no longer applies is removed unless another
//! manager owns it. Non-apply writes record an `Update` entry with the leaf paths they changed
//! and take those paths from other managers (no conflicts, as on the real server).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::resources::{RESOURCES, ResourceId};
use crate::status::ApiError;
use crate::store::{State, ensure_object, name_of, now};
use crate::writes;

type Path = Vec<String>;
type FieldSet = BTreeSet<Path>;

/// Metadata fields that are never owned.
const UNOWNED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
];

/// Leaf paths of an object (apiVersion, kind and server-owned metadata excluded).
fn leaves(obj: &Value, status_only: bool) -> FieldSet {
    let mut out = FieldSet::new();
    if let Some(map) = obj.as_object() {
        for (k, v) in map {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            if status_only != (k == "status") {
                continue;
            }
            if k == "metadata" {
                if let Some(meta) = v.as_object() {
                    for (mk, mv) in meta {
                        if !UNOWNED_META.contains(&mk.as_str()) {
                            collect(mv, vec![k.clone(), mk.clone()], &mut out);
                        }
                    }
                }
                continue;
            }
            collect(v, vec![k.clone()], &mut out);
        }
    }
    out
}

fn collect(v: &Value, path: Path, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let mut p = path.clone();
                p.push(k.clone());
                collect(child, p, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

fn lookup<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(k))
}

fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for k in parents {
        match cur.get_mut(k) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
}

/// Merges `applied` into `target`: maps recursively, everything else replaced.
fn merge_applied(target: &mut Value, applied: &Value) {
    match (target.as_object_mut(), applied.as_object()) {
        (Some(t), Some(a)) => {
            for (k, v) in a {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_applied(existing, v)
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *target = applied.clone(),
    }
}

/// Encodes a field set as `fieldsV1`.
fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for k in path {
            let entry = cur
                .entry(format!("f:{k}"))
                .or_insert_with(|| Value::Object(Map::new()));
            cur = ensure_object(entry);
        }
    }
    Value::Object(root)
}

/// Decodes `fieldsV1` (only `f:` entries are understood).
fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: Path, out: &mut FieldSet) {
        let children: Vec<_> = v
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, c)| k.strip_prefix("f:").map(|k| (k.to_string(), c)))
                    .collect()
            })
            .unwrap_or_default();
        if children.is_empty() {
            if !path.is_empty() {
                out.insert(path);
            }
            return;
        }
        for (k, c) in children {
            let mut p = path.clone();
            p.push(k);
            walk(c, p, out);
        }
    }
    let mut out = FieldSet::new();
    walk(v, Vec::new(), &mut out);
    out
}

/// One `managedFields` entry, decoded.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    subresource: String,
    api_version: String,
    time: String,
    fields: FieldSet,
}

fn entries(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| Entry {
                    manager: str_field(e, "manager"),
                    operation: str_field(e, "operation"),
                    subresource: str_field(e, "subresource"),
                    api_version: str_field(e, "apiVersion"),
                    time: str_field(e, "time"),
                    fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn str_field(v: &Value, k: &str) -> String {
    v.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

fn encode(entries: &[Entry]) -> Value {
    Value::Array(
        entries
            .iter()
            .filter(|e| !e.fields.is_empty())
            .map(|e| {
                let mut v = json!({
                    "manager": e.manager,
                    "operation": e.operation,
                    "apiVersion": e.api_version,
                    "time": e.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": to_fields_v1(&e.fields),
                });
                if !e.subresource.is_empty() {
                    v["subresource"] = json!(e.subresource);
                }
                v
            })
            .collect(),
    )
}

fn set_entry(list: &mut Vec<Entry>, entry: Entry) {
    match list.iter_mut().find(|e| {
        e.manager == entry.manager
            && e.operation == entry.operation
            && e.subresource == entry.subresource
    }) {
        Some(e) => *e = entry,
        None => list.push(entry),
    }
}

/// Records a non-apply write by `manager`: the leaf paths that changed between `old` and
/// `new` become the manager's (`operation: Update`) and leave other managers' sets.
pub fn record_update(
    res: ResourceId,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    status_subresource: bool,
) {
    let empty = json!({});
    let old_obj = old.unwrap_or(&empty);
    let before = leaves(old_obj, status_subresource);
    let after = leaves(new, status_subresource);
    let changed: FieldSet = after
        .iter()
        .filter(|p| lookup(old_obj, p) != lookup(new, p))
        .cloned()
        .chain(before.difference(&after).cloned())
        .collect();
    let mut list = old.map(entries).unwrap_or_default();
    if changed.is_empty() {
        if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("managedFields".into(), encode(&list));
        }
        return;
    }
    let subresource = if status_subresource { "status" } else { "" };
    for e in list.iter_mut() {
        e.fields.retain(|p| !changed.contains(p));
    }
    let mut mine = list
        .iter()
        .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == subresource)
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    mine.extend(changed.into_iter().filter(|p| lookup(new, p).is_some()));
    set_entry(
        &mut list,
        Entry {
            manager: manager.to_string(),
            operation: "Update".into(),
            subresource: subresource.into(),
            api_version: RESOURCES[res].api_version(),
            time: now(),
            fields: mine,
        },
    );
    ensure_object(ensure_object(new).entry("metadata").or_insert(json!({})))
        .insert("managedFields".into(), encode(&list));
}

/// Server-side apply of `applied` by `manager`. Returns the stored object and whether it was
/// created (201).
#[allow(clippy::too_many_arguments)]
pub fn apply(
    st: &mut State,
    res: ResourceId,
    ns: &str,
    name: &str,
    applied: &Value,
    manager: &str,
    force: bool,
    status_subresource: bool,
) -> Result<(Value, bool), ApiError> {
    let info = &RESOURCES[res];
    if !applied.is_object() {
        return Err(ApiError::bad_request(
            "apply configuration must be an object",
        ));
    }
    for k in ["apiVersion", "kind"] {
        if applied
            .get(k)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::bad_request(format!(
                "invalid object type: {k} must be set in an apply configuration"
            )));
        }
    }
    if applied.get("metadata").is_some_and(|m| !m.is_object()) {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    let applied_name = name_of(applied);
    if !applied_name.is_empty() && applied_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({applied_name}) does not match the name on the URL ({name})"
        )));
    }
    let subresource = if status_subresource { "status" } else { "" };
    let new_set = leaves(applied, status_subresource);
    let Some(old) = st.get(res, ns, name).cloned() else {
        if status_subresource {
            return Err(ApiError::not_found(info.group, info.plural, name));
        }
        let mut obj = applied.clone();
        let meta = ensure_object(
            ensure_object(&mut obj)
                .entry("metadata")
                .or_insert(json!({})),
        );
        meta.insert("name".into(), json!(name));
        if info.namespaced {
            meta.insert("namespace".into(), json!(ns));
        }
        let status_reset = info.has_status && info.kind != "Node";
        let kept: FieldSet = new_set
            .iter()
            .filter(|p| !(status_reset && p.first().is_some_and(|k| k == "status")))
            .cloned()
            .collect();
        let list = vec![Entry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            subresource: String::new(),
            api_version: info.api_version(),
            time: now(),
            fields: kept,
        }];
        meta.insert("managedFields".into(), encode(&list));
        let stored = writes::create(st, res, ns, obj)?;
        return Ok((stored, true));
    };
    let mut list = entries(&old);
    // Conflicts with other managers.
    let mut conflicts = Vec::new();
    for e in list.iter() {
        if e.manager == manager && e.subresource == subresource {
            continue;
        }
        for p in e.fields.intersection(&new_set) {
            if lookup(&old, p) != lookup(applied, p) {
                conflicts.push((e.manager.clone(), p.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(m, p)| {
                json!({
                    "type": "FieldManagerConflict",
                    "message": format!("conflict with \"{m}\""),
                    "field": format!(".{}", p.join(".")),
                })
            })
            .collect();
        let detail: Vec<String> = conflicts
            .iter()
            .map(|(m, p)| format!("conflict with \"{m}\": .{}", p.join(".")))
            .collect();
        return Err(ApiError::new(
            409,
            "Conflict",
            format!(
                "Apply failed with {} conflict(s): {}",
                conflicts.len(),
                detail.join("; ")
            ),
        )
        .with_details(
            json!({"name": name, "group": info.group, "kind": info.plural, "causes": causes}),
        ));
    }
    if force {
        for e in list.iter_mut() {
            if e.manager != manager || e.subresource != subresource {
                e.fields.retain(|p| !new_set.contains(p));
            }
        }
    }
    let previous: FieldSet = list
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut result = old.clone();
    for p in previous.difference(&new_set) {
        let owned_by_other = list.iter().any(|e| {
            !(e.manager == manager && e.operation == "Apply" && e.subresource == subresource)
                && e.fields.contains(p)
        });
        if !owned_by_other {
            remove_path(&mut result, p);
        }
    }
    let mut applied_part = applied.clone();
    if let Some(m) = applied_part.as_object_mut() {
        if status_subresource {
            m.retain(|k, _| k == "status");
        } else {
            m.remove("status");
            if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.retain(|k, _| !UNOWNED_META.contains(&k.as_str()));
            }
        }
    }
    merge_applied(&mut result, &applied_part);
    set_entry(
        &mut list,
        Entry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            subresource: subresource.into(),
            api_version: info.api_version(),
            time: now(),
            fields: new_set,
        },
    );
    let encoded = encode(&list);
    let old_encoded = old
        .pointer("/metadata/managedFields")
        .cloned()
        .unwrap_or(json!([]));
    // A no-op apply keeps the old managedFields (and so its timestamps), like the real server.
    let same_sets = from_sets(&encoded) == from_sets(&old_encoded);
    result["metadata"]["managedFields"] = if same_sets { old_encoded } else { encoded };
    if let Some(meta) = result.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    let stored = writes::commit_update(st, res, &old, result, status_subresource)?;
    Ok((stored, false))
}

fn from_sets(v: &Value) -> Vec<(String, String, String, Value)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        str_field(e, "manager"),
                        str_field(e, "operation"),
                        str_field(e, "subresource"),
                        e.get("fieldsV1").cloned().unwrap_or(Value::Null),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a", "labels": {"k": "v"}},
            "spec": {"a": 1, "b": {"c": [1, 2]}, "e": {}}});
        let set = leaves(&obj, false);
        assert_eq!(set.len(), 4);
        let encoded = to_fields_v1(&set);
        assert_eq!(encoded["f:spec"]["f:b"]["f:c"], json!({}));
        assert_eq!(from_fields_v1(&encoded), set);
    }
}
