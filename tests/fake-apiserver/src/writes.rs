//! Create, update and delete with the real server's metadata rules: uid and
//! creationTimestamp are immutable, resourceVersion is an optimistic-concurrency
//! precondition, generation moves with the spec only, the status subresource splits writes.

use serde_json::{Value, json};

use crate::resources::{RESOURCES, ResourceId, namespaces, pods};
use crate::status::{self, ApiError};
use crate::store::{
    Config, State, ensure_object, in_seconds, name_of, namespace_of, now, rv_of, uid_of,
};

/// Options of a delete (query parameters and/or a `DeleteOptions` body).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `preconditions.uid`.
    pub precondition_uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub precondition_rv: Option<String>,
}

impl DeleteOptions {
    /// Reads a `DeleteOptions` JSON body (camelCase fields; unknown fields are ignored).
    pub fn from_body(body: &Value) -> Self {
        Self {
            grace_period_seconds: body.get("gracePeriodSeconds").and_then(Value::as_i64),
            precondition_uid: body
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string),
            precondition_rv: body
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }
}

/// Checks `kind`/`apiVersion` of a body against the resource (when given).
fn check_type(res: ResourceId, body: &Value) -> Result<(), ApiError> {
    let info = &RESOURCES[res];
    if let Some(kind) = body.get("kind").and_then(Value::as_str)
        && !kind.is_empty()
        && kind != info.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the provided object ({kind}) does not match the resource ({})",
            info.kind
        )));
    }
    if let Some(av) = body.get("apiVersion").and_then(Value::as_str)
        && !av.is_empty()
        && av != info.api_version()
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({})",
            info.api_version()
        )));
    }
    Ok(())
}

/// Sets or checks the namespace of a body against the request's.
fn settle_namespace(res: ResourceId, path_ns: &str, body: &mut Value) -> Result<(), ApiError> {
    if !RESOURCES[res].namespaced {
        return Ok(());
    }
    let body_ns = namespace_of(body).to_string();
    if body_ns.is_empty() {
        let meta = ensure_object(ensure_object(body).entry("metadata").or_insert(json!({})));
        meta.insert("namespace".into(), json!(path_ns));
    } else if !path_ns.is_empty() && body_ns != path_ns {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

/// POST: creates an object from a request body. Resources with a status subresource get their
/// status reset as the real strategies do (pods become `Pending`; nodes keep theirs).
pub fn create(
    st: &mut State,
    res: ResourceId,
    path_ns: &str,
    mut body: Value,
) -> Result<Value, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be an object",
        ));
    }
    check_type(res, &body)?;
    settle_namespace(res, path_ns, &mut body)?;
    let info = &RESOURCES[res];
    if info.namespaced {
        let ns = namespace_of(&body).to_string();
        if st.get(namespaces(), "", &ns).is_none() {
            return Err(ApiError::not_found("", "namespaces", &ns));
        }
    }
    if name_of(&body).is_empty()
        && let Some(prefix) = body
            .pointer("/metadata/generateName")
            .and_then(Value::as_str)
            .map(str::to_string)
    {
        let name = format!("{prefix}{}", st.suffix(5));
        ensure_object(&mut body["metadata"]).insert("name".into(), json!(name));
    }
    if info.has_status && info.kind != "Node" {
        let map = ensure_object(&mut body);
        if res == pods() {
            map.insert("status".into(), json!({"phase": "Pending"}));
        } else if res == namespaces() {
            map.insert("status".into(), json!({"phase": "Active"}));
        } else {
            map.remove("status");
        }
    }
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    st.insert_new(res, body)
}

/// The part of an object that counts for `generation`: everything but metadata and status.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

/// Commits `new` over the stored `old`: enforces the resourceVersion precondition carried in
/// `new`, keeps immutable metadata, honours the status subresource split, bumps generation on
/// spec changes and skips no-op writes (no new resourceVersion, no event), as the real server.
pub fn commit_update(
    st: &mut State,
    res: ResourceId,
    old: &Value,
    mut new: Value,
    status_subresource: bool,
) -> Result<Value, ApiError> {
    let info = &RESOURCES[res];
    let name = name_of(old).to_string();
    if !new.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be an object",
        ));
    }
    check_type(res, &new)?;
    let new_name = name_of(&new);
    if !new_name.is_empty() && new_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({new_name}) does not match the name on the URL ({name})"
        )));
    }
    let wanted_rv = rv_of(&new).to_string();
    if !wanted_rv.is_empty() && wanted_rv != rv_of(old) {
        return Err(ApiError::conflict(
            info.group,
            info.plural,
            &name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    let mut result = if status_subresource {
        // Only status (and managedFields, for apply) changes through the status subresource.
        let mut r = old.clone();
        let m = ensure_object(&mut r);
        match new.get("status") {
            Some(s) => m.insert("status".into(), s.clone()),
            None => m.remove("status"),
        };
        if let Some(mf) = new.pointer("/metadata/managedFields") {
            ensure_object(&mut r["metadata"]).insert("managedFields".into(), mf.clone());
        }
        r
    } else {
        if info.has_status {
            let m = ensure_object(&mut new);
            match old.get("status") {
                Some(s) => m.insert("status".into(), s.clone()),
                None => m.remove("status"),
            };
        }
        new
    };
    // Immutable and server-owned metadata.
    {
        let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
        let map = ensure_object(&mut result);
        map.insert("apiVersion".into(), json!(info.api_version()));
        map.insert("kind".into(), json!(info.kind));
        let meta = ensure_object(map.entry("metadata").or_insert(json!({})));
        for key in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match old_meta.get(key) {
                Some(v) => meta.insert(key.into(), v.clone()),
                None => meta.remove(key),
            };
        }
    }
    if !status_subresource && spec_part(&result) != spec_part(old) {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        result["metadata"]["generation"] = json!(generation);
    }
    if result == *old {
        return Ok(result);
    }
    let deleting = result.pointer("/metadata/deletionTimestamp").is_some();
    let no_finalizers = result
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if deleting && no_finalizers && res != pods() {
        let ns = namespace_of(&result).to_string();
        st.objects
            .insert((res, ns.clone(), name.clone()), result.clone());
        return Ok(st.remove(res, &ns, &name).unwrap_or(result));
    }
    Ok(st.replace(res, result))
}

/// Whether PUT on a missing object creates it (leases and events, as their strategies allow).
pub fn allows_create_on_update(res: ResourceId) -> bool {
    matches!(RESOURCES[res].plural, "leases" | "events")
}

/// PUT on the object or its status subresource.
pub fn update(
    st: &mut State,
    res: ResourceId,
    ns: &str,
    name: &str,
    mut body: Value,
    status_subresource: bool,
) -> Result<Value, ApiError> {
    let info = &RESOURCES[res];
    settle_namespace(res, ns, &mut body)?;
    let old = st
        .get(res, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(info.group, info.plural, name))?;
    commit_update(st, res, &old, body, status_subresource)
}

/// Outcome of a delete.
#[derive(Debug, Clone, PartialEq)]
pub enum Deleted {
    /// Removed now; the last state.
    Removed(Value),
    /// Marked with a deletionTimestamp (graceful pod deletion or finalizers).
    Terminating(Value),
}

/// DELETE of one object: preconditions (409 on mismatch), graceful deletion of bound pods
/// (deletionTimestamp, then removal after the configured delay), finalizers.
pub fn delete(
    st: &mut State,
    cfg: &Config,
    res: ResourceId,
    ns: &str,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Deleted, ApiError> {
    let info = &RESOURCES[res];
    let obj = st
        .get(res, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(info.group, info.plural, name))?;
    if let Some(uid) = &opts.precondition_uid
        && uid != uid_of(&obj)
    {
        return Err(ApiError::conflict(
            info.group,
            info.plural,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                uid_of(&obj)
            ),
        ));
    }
    if let Some(rv) = &opts.precondition_rv
        && rv != rv_of(&obj)
    {
        return Err(ApiError::conflict(
            info.group,
            info.plural,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                rv_of(&obj)
            ),
        ));
    }
    let already_deleting = obj.pointer("/metadata/deletionTimestamp").is_some();
    if res == pods() {
        let bound = obj
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let terminal = matches!(
            obj.pointer("/status/phase").and_then(Value::as_str),
            Some("Succeeded" | "Failed")
        );
        let grace = opts
            .grace_period_seconds
            .or_else(|| {
                obj.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(30);
        if bound && !terminal && grace > 0 {
            if already_deleting {
                return Ok(Deleted::Terminating(obj));
            }
            let mut marked = obj.clone();
            let meta = ensure_object(&mut marked["metadata"]);
            meta.insert("deletionTimestamp".into(), json!(in_seconds(grace)));
            meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            let marked = st.replace(res, marked);
            st.to_replace.push(marked.clone());
            let key = (res, ns.to_string(), name.to_string());
            st.deferred_removals.push((
                key,
                uid_of(&marked).to_string(),
                cfg.pod_termination_delay,
            ));
            return Ok(Deleted::Terminating(marked));
        }
    } else if obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
    {
        if already_deleting {
            return Ok(Deleted::Terminating(obj));
        }
        let mut marked = obj.clone();
        ensure_object(&mut marked["metadata"]).insert("deletionTimestamp".into(), json!(now()));
        return Ok(Deleted::Terminating(st.replace(res, marked)));
    }
    st.remove(res, ns, name)
        .map(Deleted::Removed)
        .ok_or_else(|| ApiError::not_found(info.group, info.plural, name))
}

/// The response body of a delete: the object while it terminates, a `Status` once removed.
pub fn delete_response(res: ResourceId, deleted: &Deleted) -> Value {
    match deleted {
        Deleted::Terminating(obj) => obj.clone(),
        Deleted::Removed(obj) => status::success(
            200,
            json!({
                "name": name_of(obj),
                "group": RESOURCES[res].group,
                "kind": RESOURCES[res].plural,
                "uid": uid_of(obj),
            }),
        ),
    }
}

/// Stores `obj` as given (test seeding): creates it, or replaces the stored object keeping
/// uid and creationTimestamp, bumping generation on spec changes and keeping the stored
/// status when `obj` has none. Status is not reset on create.
pub fn upsert(st: &mut State, res: ResourceId, mut obj: Value) -> Result<Value, ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("object must be a JSON object"));
    }
    check_type(res, &obj)?;
    if RESOURCES[res].namespaced && namespace_of(&obj).is_empty() {
        settle_namespace(res, "default", &mut obj)?;
    }
    let ns = namespace_of(&obj).to_string();
    let name = name_of(&obj).to_string();
    if RESOURCES[res].namespaced {
        ensure_namespace(st, &ns)?;
    }
    let Some(old) = st.get(res, &ns, &name).cloned() else {
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        return st.insert_new(res, obj);
    };
    let info = &RESOURCES[res];
    let map = ensure_object(&mut obj);
    map.insert("apiVersion".into(), json!(info.api_version()));
    map.insert("kind".into(), json!(info.kind));
    if !map.contains_key("status")
        && let Some(s) = old.get("status")
    {
        map.insert("status".into(), s.clone());
    }
    let meta = ensure_object(map.entry("metadata").or_insert(json!({})));
    for key in ["uid", "creationTimestamp", "generation"] {
        if let Some(v) = old.pointer(&format!("/metadata/{key}")) {
            meta.insert(key.into(), v.clone());
        }
    }
    if spec_part(&obj) != spec_part(&old) {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        obj["metadata"]["generation"] = json!(generation);
    }
    Ok(st.replace(res, obj))
}

/// Creates a namespace object (phase Active) unless it exists.
pub fn ensure_namespace(st: &mut State, ns: &str) -> Result<(), ApiError> {
    if st.get(namespaces(), "", ns).is_none() {
        st.insert_new(
            namespaces(),
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }),
        )?;
    }
    Ok(())
}
