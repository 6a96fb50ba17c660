//! The HTTP/1.1 server (hyper): accepts connections, records each request, applies scripted
//! faults and dispatches to discovery, list/watch, writes, patch, apply and eviction.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Request, Response, StatusCode, body::Incoming, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::apply;
use crate::discovery;
use crate::eviction;
use crate::faults::{self, FaultAction};
use crate::list_watch::{self, ListQuery, Selection, WatchQuery};
use crate::patch::{self, PatchType};
use crate::record::RecordedRequest;
use crate::render::{self, Rendering};
use crate::resources::{RESOURCES, ResourceId, pods};
use crate::router::{self, RequestInfo};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::shared::Shared;
use crate::status::ApiError;
use crate::store::State;
use crate::writes::{self, DeleteOptions};

/// Response body type.
pub type ResBody = BoxBody<Bytes, Infallible>;

/// A streaming body fed by a channel (watch streams).
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// Accepts connections until `shutdown` flips.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(handle(shared, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn json_response(code: u16, body: &Value) -> Response<ResBody> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_response(e: &ApiError) -> Response<ResBody> {
    let mut resp = json_response(e.code, &e.to_status());
    if let Some(secs) = e
        .details
        .as_ref()
        .and_then(|d| d.get("retryAfterSeconds"))
        .and_then(Value::as_u64)
        && let Ok(v) = header::HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn stream_response(rx: mpsc::Receiver<Bytes>) -> Response<ResBody> {
    let mut resp = Response::new(ChannelBody(rx).boxed());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A parsed request handed to the dispatcher.
struct Req {
    method: String,
    info: RequestInfo,
    query: Vec<(String, String)>,
    content_type: String,
    accept: String,
    user_agent: String,
    body: Option<Value>,
    host: String,
}

impl Req {
    fn param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.param(key), Some("true" | "1"))
    }

    fn body_or_400(&self) -> Result<Value, ApiError> {
        self.body.clone().ok_or_else(|| {
            ApiError::bad_request("the request body is missing or is not valid JSON/YAML")
        })
    }
}

fn parse_body(raw: &[u8], content_type: &str) -> Option<Value> {
    if raw.is_empty() {
        return None;
    }
    if let Ok(v) = serde_json::from_slice::<Value>(raw) {
        return Some(v);
    }
    if content_type.contains("yaml") {
        return serde_yaml_ng::from_slice::<Value>(raw).ok();
    }
    None
}

fn header_str(req: &Request<Incoming>, name: header::HeaderName) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<ResBody> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let query_raw = req.uri().query().unwrap_or("").to_string();
    let query = router::query_pairs(&query_raw);
    let content_type = header_str(&req, header::CONTENT_TYPE);
    let accept = header_str(&req, header::ACCEPT);
    let user_agent = header_str(&req, header::USER_AGENT);
    let host = header_str(&req, header::HOST);
    let watch_param = query
        .iter()
        .any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
    let info = router::parse(&method, &path, watch_param);
    let raw = match req.into_body().collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let body = parse_body(&raw, &content_type);
    let index = {
        let mut st = shared.lock();
        st.requests.push(RecordedRequest {
            method: method.clone(),
            path,
            query: query_raw,
            verb: info.verb.clone(),
            is_resource_request: info.is_resource_request,
            api_group: info.group.clone(),
            api_version: info.version.clone(),
            resource: info.resource.clone(),
            subresource: info.subresource.clone(),
            namespace: info.namespace.clone(),
            name: info.name.clone(),
            content_type: content_type.clone(),
            accept: accept.clone(),
            user_agent: user_agent.clone(),
            body: body.clone(),
            raw_body: String::from_utf8_lossy(&raw).into_owned(),
            status: 0,
        });
        st.requests.len() - 1
    };
    shared.notify();
    let fault = faults::take(&mut shared.lock().faults, &method, &info);
    let r = Req {
        method,
        info,
        query,
        content_type,
        accept,
        user_agent,
        body,
        host,
    };
    let response = match fault {
        Some(FaultAction::Status(e)) => error_response(&e),
        Some(FaultAction::WatchGone) if r.info.verb == "watch" => {
            let (tx, rx) = mpsc::channel(1);
            let rv = r.param("resourceVersion").unwrap_or("").to_string();
            let _ = tx.try_send(list_watch::gone_line(&format!(
                "too old resource version: {rv} (injected)"
            )));
            stream_response(rx)
        }
        other => {
            match other {
                Some(FaultAction::Delay(d)) => tokio::time::sleep(d).await,
                Some(FaultAction::CloseWatches) => {
                    shared.lock().close_generation += 1;
                    shared.notify();
                }
                Some(FaultAction::Compact) => {
                    shared.lock().compact();
                    shared.notify();
                }
                _ => {}
            }
            match dispatch(&shared, &r).await {
                Ok(resp) => resp,
                Err(e) => error_response(&e),
            }
        }
    };
    {
        let mut st = shared.lock();
        if let Some(rec) = st.requests.get_mut(index) {
            rec.status = response.status().as_u16();
        }
        if r.info.subresource == "eviction" && r.method == "POST" {
            let rec = eviction::record(
                &r.info.namespace,
                &r.info.name,
                r.body.as_ref().unwrap_or(&Value::Null),
                response.status().as_u16(),
            );
            st.evictions.push(rec);
        }
    }
    shared.notify();
    response
}

fn not_found_path() -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

async fn dispatch(shared: &Arc<Shared>, r: &Req) -> Result<Response<ResBody>, ApiError> {
    if !r.info.is_resource_request {
        return non_resource(r);
    }
    let res = r.info.resource_id.ok_or_else(not_found_path)?;
    let info = &RESOURCES[res];
    let namespaced_path = !r.info.namespace.is_empty() && info.plural != "namespaces";
    if namespaced_path && !info.namespaced {
        return Err(not_found_path());
    }
    let sub = r.info.subresource.as_str();
    match sub {
        "" => {}
        "status" if info.has_status => {}
        "eviction" if res == pods() => {}
        _ => return Err(not_found_path()),
    }
    if info.namespaced
        && r.info.namespace.is_empty()
        && !matches!(r.info.verb.as_str(), "list" | "watch")
    {
        // Only list and watch exist across all namespaces.
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    let ns = if info.namespaced {
        r.info.namespace.as_str()
    } else {
        ""
    };
    let name = r.info.name.as_str();
    let rendering = render::negotiate(&r.accept);
    let dry = dry_run(r)?;
    match r.info.verb.as_str() {
        "list" => {
            let q = ListQuery {
                selection: selection(r, ns)?,
                limit: r.param("limit").and_then(|l| l.parse().ok()),
                continue_token: r
                    .param("continue")
                    .filter(|c| !c.is_empty())
                    .map(str::to_string),
                resource_version: r.param("resourceVersion").map(str::to_string),
                resource_version_match: r.param("resourceVersionMatch").map(str::to_string),
            };
            let page = list_watch::list(&mut shared.lock(), res, &q)?;
            let mut meta = json!({"resourceVersion": page.resource_version.to_string()});
            if let Some(c) = &page.continue_token {
                meta["continue"] = json!(c);
                if q.selection.label.is_empty() && q.selection.field == FieldSelector::default() {
                    meta["remainingItemCount"] = json!(page.remaining);
                }
            }
            Ok(json_response(
                200,
                &render::list(&rendering, info, page.items, meta),
            ))
        }
        "watch" => {
            list_watch::validate_watch(
                r.flag("sendInitialEvents"),
                r.param("resourceVersionMatch"),
                r.flag("allowWatchBookmarks"),
            )?;
            let mut selection = selection(r, ns)?;
            if !name.is_empty() {
                list_watch::name_selection(&mut selection, name);
            }
            if let Some(rv) = r.param("resourceVersion").filter(|v| !v.is_empty()) {
                let rv = rv.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version: {rv:?}"))
                })?;
                wait_for_resource_version(shared, rv).await?;
            }
            let timeout = match r.param("timeoutSeconds") {
                Some(t) => Some(Duration::from_secs(t.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid timeoutSeconds: {t:?}"))
                })?)),
                None => None,
            };
            let q = WatchQuery {
                selection,
                resource_version: r.param("resourceVersion").map(str::to_string),
                bookmarks: r.flag("allowWatchBookmarks"),
                timeout,
                send_initial_events: r.flag("sendInitialEvents"),
                rendering,
            };
            let (tx, rx) = mpsc::channel(64);
            tokio::spawn(list_watch::run(Arc::clone(shared), res, q, tx));
            Ok(stream_response(rx))
        }
        "get" => {
            let obj = shared
                .lock()
                .get(res, ns, name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(info.group, info.plural, name))?;
            Ok(json_response(200, &render::object(&rendering, info, obj)))
        }
        "create" if sub == "eviction" => {
            let body = r.body_or_400()?;
            let (status, code) = mutate(shared, dry, |st| {
                eviction::evict(st, &shared.config, ns, name, &body)
            })?;
            Ok(json_response(code, &status))
        }
        "create" if sub.is_empty() => {
            let body = r.body_or_400()?;
            let manager = field_manager(r);
            let created = mutate(shared, dry, |st| {
                let mut body = body;
                apply::record_update(res, None, &mut body, &manager, false);
                writes::create(st, res, ns, body)
            })?;
            Ok(json_response(201, &created))
        }
        "update" => {
            let body = r.body_or_400()?;
            let manager = field_manager(r);
            let status_sub = sub == "status";
            let (updated, created) = mutate(shared, dry, |st| {
                let old = st.get(res, ns, name).cloned();
                let mut body = body;
                apply::record_update(res, old.as_ref(), &mut body, &manager, status_sub);
                if old.is_none() && !status_sub && writes::allows_create_on_update(res) {
                    return writes::create(st, res, ns, body).map(|o| (o, true));
                }
                writes::update(st, res, ns, name, body, status_sub).map(|o| (o, false))
            })?;
            Ok(json_response(if created { 201 } else { 200 }, &updated))
        }
        "patch" => patch_request(shared, r, res, ns, name),
        "delete" => {
            let mut opts = r
                .body
                .as_ref()
                .map(DeleteOptions::from_body)
                .unwrap_or_default();
            if let Some(g) = r.param("gracePeriodSeconds") {
                opts.grace_period_seconds = Some(g.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid gracePeriodSeconds: {g:?}"))
                })?);
            }
            let deleted = mutate(shared, dry, |st| {
                writes::delete(st, &shared.config, res, ns, name, &opts)
            })?;
            Ok(json_response(200, &writes::delete_response(res, &deleted)))
        }
        "deletecollection" => {
            let selection = selection(r, ns)?;
            let opts = r
                .body
                .as_ref()
                .map(DeleteOptions::from_body)
                .unwrap_or_default();
            let items = mutate(shared, dry, |st| {
                let targets: Vec<Value> = st
                    .list(res, None)
                    .into_iter()
                    .filter(|o| selection.matches(o))
                    .collect();
                targets
                    .iter()
                    .filter_map(|o| {
                        let name = crate::store::name_of(o).to_string();
                        let ns = crate::store::namespace_of(o).to_string();
                        writes::delete(st, &shared.config, res, &ns, &name, &opts)
                            .ok()
                            .map(|d| match d {
                                writes::Deleted::Removed(v) | writes::Deleted::Terminating(v) => v,
                            })
                    })
                    .collect::<Vec<_>>()
            });
            let rv = shared.lock().rv;
            Ok(json_response(
                200,
                &render::list(
                    &Rendering::Full,
                    info,
                    items,
                    json!({"resourceVersion": rv.to_string()}),
                ),
            ))
        }
        other => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({other})"
        ))),
    }
}

/// A watch from a resourceVersion the server has not reached waits up to 3 s for it, then
/// fails with 504 `Timeout` ("Too large resource version", retry after 1 s), as the watch
/// cache does.
async fn wait_for_resource_version(shared: &Arc<Shared>, rv: u64) -> Result<(), ApiError> {
    let mut changes = shared.changed.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let current = shared.lock().rv;
        if rv <= current {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, changes.changed())
            .await
            .is_err()
        {
            return Err(ApiError::new(
                504,
                "Timeout",
                format!("Too large resource version: {rv}, current: {current}"),
            )
            .with_details(json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}], "retryAfterSeconds": 1})));
        }
    }
}

/// `dryRun=All`: the write is validated and answered but not persisted.
fn dry_run(r: &Req) -> Result<bool, ApiError> {
    // DeleteOptions (a delete's body, an eviction's deleteOptions) carry `dryRun: ["All"]`.
    let options = match r.body.as_ref() {
        Some(b) if r.info.subresource == "eviction" => b.get("deleteOptions"),
        Some(b) if r.method == "DELETE" => Some(b),
        _ => None,
    };
    if let Some(values) = options
        .and_then(|o| o.get("dryRun"))
        .and_then(Value::as_array)
        && !values.is_empty()
    {
        return if values.iter().all(|v| v == "All") {
            Ok(true)
        } else {
            Err(ApiError::bad_request(
                "dryRun: Unsupported value: supported values: \"All\"",
            ))
        };
    }
    match r.param("dryRun") {
        None => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "dryRun: Unsupported value: {other:?}: supported values: \"All\""
        ))),
    }
}

/// Runs a write on the shared state, or on a scratch copy for dry runs (no events, no
/// reactions, nothing kept).
fn mutate<R>(shared: &Arc<Shared>, dry: bool, f: impl FnOnce(&mut State) -> R) -> R {
    if dry {
        let mut scratch = shared.lock().clone();
        return f(&mut scratch);
    }
    shared.write(f)
}

fn field_manager(r: &Req) -> String {
    if let Some(m) = r.param("fieldManager").filter(|m| !m.is_empty()) {
        return m.to_string();
    }
    let ua = r.user_agent.split('/').next().unwrap_or("").trim();
    if ua.is_empty() {
        "unknown".to_string()
    } else {
        ua.to_string()
    }
}

fn selection(r: &Req, ns: &str) -> Result<Selection, ApiError> {
    Ok(Selection {
        namespace: (!ns.is_empty()).then(|| ns.to_string()),
        label: LabelSelector::parse(r.param("labelSelector").unwrap_or(""))?,
        field: FieldSelector::parse(r.param("fieldSelector").unwrap_or(""))?,
    })
}

fn patch_request(
    shared: &Arc<Shared>,
    r: &Req,
    res: ResourceId,
    ns: &str,
    name: &str,
) -> Result<Response<ResBody>, ApiError> {
    let info = &RESOURCES[res];
    let kind = PatchType::from_content_type(&r.content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(&r.content_type))?;
    let status_sub = r.info.subresource == "status";
    let body = r.body_or_400()?;
    let dry = dry_run(r)?;
    if kind == PatchType::Apply {
        let manager = r
            .param("fieldManager")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                )
            })?
            .to_string();
        let force = r.flag("force");
        let (obj, created) = mutate(shared, dry, |st| {
            apply::apply(st, res, ns, name, &body, &manager, force, status_sub)
        })?;
        return Ok(json_response(if created { 201 } else { 200 }, &obj));
    }
    if r.param("force").is_some() {
        return Err(ApiError::bad_request(
            "force: Forbidden: may not be specified for non-apply patch",
        ));
    }
    if kind == PatchType::Strategic && !info.strategic {
        return Err(ApiError::unsupported_media_type(&r.content_type));
    }
    let manager = field_manager(r);
    let obj = mutate(shared, dry, |st| {
        let old = st
            .get(res, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(info.group, info.plural, name))?;
        let mut new = old.clone();
        match kind {
            PatchType::Json => patch::json_patch(&mut new, &body)?,
            PatchType::Merge => patch::merge(&mut new, &body),
            PatchType::Strategic => patch::strategic_merge(&mut new, &body),
            PatchType::Apply => {}
        }
        // A resourceVersion carried by a merge/strategic patch is a precondition; a JSON
        // patch's result keeps the stored one unless the patch changed it.
        apply::record_update(res, Some(&old), &mut new, &manager, status_sub);
        writes::commit_update(st, res, &old, new, status_sub)
    })?;
    Ok(json_response(200, &obj))
}

fn non_resource(r: &Req) -> Result<Response<ResBody>, ApiError> {
    if r.method != "GET" && r.method != "HEAD" {
        return Err(not_found_path());
    }
    let parts: Vec<&str> = r.info.parts.iter().map(String::as_str).collect();
    let body = match parts.as_slice() {
        ["version"] => discovery::version(),
        ["api"] => discovery::core_versions(&r.host),
        ["api", "v1"] => discovery::resource_list("", "v1").ok_or_else(not_found_path)?,
        ["apis"] => discovery::group_list(),
        ["apis", group] => discovery::group(group).ok_or_else(not_found_path)?,
        ["apis", group, version] => {
            discovery::resource_list(group, version).ok_or_else(not_found_path)?
        }
        ["healthz" | "readyz" | "livez"] => {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")).boxed());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain"),
            );
            return Ok(resp);
        }
        _ => return Err(not_found_path()),
    };
    Ok(json_response(200, &body))
}
