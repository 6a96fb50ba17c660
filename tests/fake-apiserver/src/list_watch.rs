//! List and watch, following "Efficient detection of changes" and the resourceVersion
//! semantics of the API concepts documentation.
//!
//! List: `resourceVersion` unset/"" is the most recent state, "0" is any state (the fake
//! serves the latest), a number with `NotOlderThan` (the default) is the latest if not older,
//! with `Exact` the state at that version (reconstructed from the retained history; 410
//! Expired once compacted). `limit`/`continue` page through a snapshot taken by the first
//! page; all pages carry the first page's resourceVersion; a compacted snapshot's token is 410.
//!
//! Watch: events after the given resourceVersion in order; unset or "0" starts with synthetic
//! ADDED events for the current state. A resourceVersion older than the retained history is
//! answered like the real server's watch cache: HTTP 200 and a single `ERROR` event carrying a
//! 410 `Expired` Status, then the stream ends; the same happens mid-stream when history is
//! compacted past a watch that has not caught up, or on `expire_watches`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::render::{self, Rendering};
use crate::resources::{RESOURCES, ResourceId};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::shared::Shared;
use crate::status::ApiError;
use crate::store::{EventType, Key, State, name_of, namespace_of};

/// Selection common to list and watch.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Namespace (None = all namespaces or cluster-scoped).
    pub namespace: Option<String>,
    /// Label selector.
    pub label: LabelSelector,
    /// Field selector.
    pub field: FieldSelector,
}

impl Selection {
    /// Whether an object is selected.
    pub fn matches(&self, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| ns == namespace_of(obj))
            && self.label.matches_object(obj)
            && self.field.matches(obj)
    }
}

/// List parameters.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// What to select.
    pub selection: Selection,
    /// `limit`.
    pub limit: Option<usize>,
    /// `continue`.
    pub continue_token: Option<String>,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`.
    pub resource_version_match: Option<String>,
}

/// A page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    /// Items, in name order (namespace, name).
    pub items: Vec<Value>,
    /// The list's resourceVersion.
    pub resource_version: u64,
    /// Continue token when more items remain.
    pub continue_token: Option<String>,
    /// Items left after this page.
    pub remaining: usize,
}

fn parse_rv(s: &str) -> Result<u64, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}")))
}

fn too_old(rv: u64, oldest: u64) -> ApiError {
    ApiError::expired(format!("too old resource version: {rv} ({oldest})"))
}

/// Objects of a resource as they were at `rv` (undoing later events).
fn state_at(st: &State, res: ResourceId, rv: u64) -> Vec<Value> {
    let mut objects: std::collections::BTreeMap<Key, Value> = st
        .objects
        .iter()
        .filter(|(k, _)| k.0 == res)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for e in st.history.iter().rev().take_while(|e| e.rv > rv) {
        if e.resource != res {
            continue;
        }
        let key = (
            res,
            namespace_of(&e.object).to_string(),
            name_of(&e.object).to_string(),
        );
        match (e.kind, &e.previous) {
            (EventType::Added, _) => {
                objects.remove(&key);
            }
            (_, Some(prev)) => {
                objects.insert(key, prev.clone());
            }
            (_, None) => {}
        }
    }
    objects.into_values().collect()
}

/// The selected objects as they are now.
fn current(st: &State, res: ResourceId, selection: &Selection) -> Vec<Value> {
    st.iter(res, selection.namespace.as_deref())
        .filter(|o| selection.matches(o))
        .cloned()
        .collect()
}

/// Serves a list request.
pub fn list(st: &mut State, res: ResourceId, q: &ListQuery) -> Result<ListPage, ApiError> {
    let (snapshot_rv, items, offset) = if let Some(token) = &q.continue_token {
        if q.resource_version.as_deref().is_some_and(|v| !v.is_empty()) {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let (id, offset) = token
            .strip_prefix("fake:")
            .and_then(|t| t.split_once(':'))
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<usize>().ok()?)))
            .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
        let (rv, items) = st.snapshots.get(&id).cloned().ok_or_else(|| {
            ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
        })?;
        (rv, items, Some((id, offset)))
    } else {
        let rv_param = q.resource_version.as_deref().unwrap_or("");
        let exact = match q.resource_version_match.as_deref() {
            None | Some("") => false,
            Some("NotOlderThan") => false,
            Some("Exact") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unsupported resourceVersionMatch {other:?}"
                )));
            }
        };
        if q.resource_version_match
            .as_deref()
            .is_some_and(|m| !m.is_empty())
            && rv_param.is_empty()
        {
            return Err(ApiError::bad_request(
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        let all = if rv_param.is_empty() || rv_param == "0" {
            if exact {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch \"Exact\" is forbidden for resourceVersion \"0\"",
                ));
            }
            (st.rv, current(st, res, &q.selection))
        } else {
            let rv = parse_rv(rv_param)?;
            if rv > st.rv {
                return Err(ApiError::new(
                    504,
                    "Timeout",
                    format!("Too large resource version: {rv}, current: {}", st.rv),
                ));
            }
            if exact {
                if rv < st.compacted_rv {
                    return Err(too_old(rv, st.compacted_rv));
                }
                let selected = state_at(st, res, rv)
                    .into_iter()
                    .filter(|o| q.selection.matches(o))
                    .collect();
                (rv, selected)
            } else {
                (st.rv, current(st, res, &q.selection))
            }
        };
        (all.0, all.1, None)
    };
    let start = offset.map(|(_, o)| o).unwrap_or(0);
    let limit = q.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    let end = start.saturating_add(limit).min(items.len());
    let page: Vec<Value> = items
        .get(start..end)
        .map(<[Value]>::to_vec)
        .unwrap_or_default();
    let remaining = items.len().saturating_sub(end);
    let continue_token = if remaining > 0 {
        let id = match offset {
            Some((id, _)) => id,
            None => {
                st.next_snapshot += 1;
                let id = st.next_snapshot;
                st.snapshots.insert(id, (snapshot_rv, items));
                id
            }
        };
        Some(format!("fake:{id}:{end}"))
    } else {
        if let Some((id, _)) = offset {
            st.snapshots.remove(&id);
        }
        None
    };
    Ok(ListPage {
        items: page,
        resource_version: snapshot_rv,
        continue_token,
        remaining,
    })
}

/// Watch parameters.
#[derive(Debug, Clone)]
pub struct WatchQuery {
    /// What to select.
    pub selection: Selection,
    /// `resourceVersion`.
    pub resource_version: Option<String>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
    /// `sendInitialEvents`.
    pub send_initial_events: bool,
    /// How to render objects.
    pub rendering: Rendering,
}

/// Validates a watch's parameters (`resourceVersionMatch` only with `sendInitialEvents`).
pub fn validate_watch(
    send_initial_events: bool,
    rv_match: Option<&str>,
    bookmarks: bool,
) -> Result<(), ApiError> {
    if send_initial_events {
        if rv_match != Some("NotOlderThan") {
            return Err(ApiError::invalid(
                "ListOptions",
                "",
                "resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !bookmarks {
            return Err(ApiError::invalid(
                "ListOptions",
                "",
                "allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
            ));
        }
    } else if rv_match.is_some_and(|m| !m.is_empty()) {
        return Err(ApiError::invalid(
            "ListOptions",
            "",
            "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        ));
    }
    Ok(())
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// The ERROR event line for an expired resourceVersion.
pub fn gone_line(message: &str) -> Bytes {
    line("ERROR", ApiError::expired(message).to_status())
}

fn bookmark(res: ResourceId, rendering: &Rendering, rv: u64, initial_end: bool) -> Value {
    let info = &RESOURCES[res];
    let (kind, api_version) = match rendering {
        Rendering::Metadata => (
            "PartialObjectMetadata".to_string(),
            "meta.k8s.io/v1".to_string(),
        ),
        _ => (info.kind.to_string(), info.api_version()),
    };
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    json!({"kind": kind, "apiVersion": api_version, "metadata": meta})
}

/// Decrements the open-watch count when a stream ends.
struct OpenWatch(Arc<Shared>);

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.0.lock().open_watches -= 1;
        self.0.notify();
    }
}

/// Runs a watch stream, writing newline-delimited events to `tx` until the client goes away,
/// the timeout passes, watches are closed, or the resourceVersion expires.
pub async fn run(shared: Arc<Shared>, res: ResourceId, q: WatchQuery, tx: mpsc::Sender<Bytes>) {
    let info = &RESOURCES[res];
    let mut changes = shared.changed.subscribe();
    let (mut cursor, close_gen, expire_gen, initial) = {
        let mut st = shared.lock();
        st.open_watches += 1;
        st.watches_started += 1;
        let rv_param = q.resource_version.clone().unwrap_or_default();
        let (cursor, initial) = if q.send_initial_events || rv_param.is_empty() || rv_param == "0" {
            (st.rv, Some(current(&st, res, &q.selection)))
        } else {
            match rv_param.parse::<u64>() {
                Ok(rv) => (rv, None),
                Err(_) => (0, Some(Vec::new())),
            }
        };
        (cursor, st.close_generation, st.expire_generation, initial)
    };
    let _open = OpenWatch(Arc::clone(&shared));
    shared.notify();
    let render = |o: Value| render::object(&q.rendering, info, o);
    if let Some(objects) = initial {
        for o in objects {
            if tx.send(line("ADDED", render(o))).await.is_err() {
                return;
            }
        }
        if q.send_initial_events
            && tx
                .send(line("BOOKMARK", bookmark(res, &q.rendering, cursor, true)))
                .await
                .is_err()
        {
            return;
        }
    }
    let deadline = q.timeout.map(|t| Instant::now() + t);
    let interval = shared.config.bookmark_interval;
    let mut next_bookmark = Instant::now() + interval;
    loop {
        let batch: Result<Vec<Bytes>, Option<String>> = (|| {
            let st = shared.lock();
            if st.close_generation != close_gen {
                return Err(None);
            }
            if st.expire_generation != expire_gen || cursor < st.compacted_rv {
                return Err(Some(format!(
                    "too old resource version: {cursor} ({})",
                    st.compacted_rv
                )));
            }
            let mut batch = Vec::new();
            for e in st.events_after(cursor) {
                if e.resource != res {
                    continue;
                }
                let now_matches = q.selection.matches(&e.object);
                let kind = match e.kind {
                    EventType::Added if now_matches => "ADDED",
                    EventType::Deleted if now_matches => "DELETED",
                    EventType::Modified => {
                        let before = e
                            .previous
                            .as_ref()
                            .map(|p| q.selection.matches(p))
                            .unwrap_or(now_matches);
                        match (before, now_matches) {
                            (true, true) => "MODIFIED",
                            (false, true) => "ADDED",
                            (true, false) => "DELETED",
                            (false, false) => continue,
                        }
                    }
                    _ => continue,
                };
                batch.push(line(kind, render(e.object.clone())));
            }
            cursor = cursor.max(st.rv);
            Ok(batch)
        })();
        let batch = match batch {
            Ok(b) => b,
            Err(None) => return,
            Err(Some(message)) => {
                let _ = tx.send(gone_line(&message)).await;
                return;
            }
        };
        for b in batch {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        let bookmark_at = q.bookmarks.then_some(next_bookmark);
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = sleep_until_opt(bookmark_at) => {
                if tx.send(line("BOOKMARK", bookmark(res, &q.rendering, cursor, false))).await.is_err() {
                    return;
                }
                next_bookmark = Instant::now() + interval;
            }
            _ = sleep_until_opt(deadline) => return,
            _ = tx.closed() => return,
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Restricts a selection to one name (for `GET .../{name}?watch=true`).
pub fn name_selection(selection: &mut Selection, name: &str) {
    selection.field.require_name(name);
}
