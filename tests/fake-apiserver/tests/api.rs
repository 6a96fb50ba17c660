//! Drives the fake API server with the real kube 5 client (and kubectl when present).

use std::time::Duration;

use fulcrum_fake_apiserver::{FakeApiServer, Fault, FaultAction, Matcher};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{
    Api, DeleteParams, DynamicObject, EvictParams, ListParams, Patch, PatchParams, PostParams,
    Preconditions, WatchEvent, WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Config};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// A kube client for the fake. kube 5 retries 429/503/504 by default (up to 15 times with
/// exponential backoff from 5 ms); tests that expect those codes turn that off.
fn client(api: &FakeApiServer) -> Client {
    let mut config = Config::new(api.url().parse().expect("url"));
    config.default_retry = false;
    Client::try_from(config).expect("client")
}

fn retrying_client(api: &FakeApiServer) -> Client {
    Client::try_from(Config::new(api.url().parse().expect("url"))).expect("client")
}

fn node(name: &str, cpu: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
        },
    })
}

fn running_pod(name: &str, node: &str, labels: Value, owner: Option<(&str, &str)>) -> Value {
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "img",
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    });
    if let Some((kind, owner_name)) = owner {
        pod["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "apps/v1", "kind": kind, "name": owner_name,
            "uid": "owner-uid", "controller": true,
        }]);
        pod["metadata"]["generateName"] = json!(format!("{owner_name}-"));
    }
    pod
}

fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

fn ifp_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("fulcrum.dev", "v1alpha1", "InterferencePolicy"),
        "interferencepolicies",
    )
}

#[tokio::test]
async fn discovery_lists_every_resource_and_kubeconfig_loads() {
    let api = FakeApiServer::start();
    let dir = std::env::temp_dir().join(format!("fake-apiserver-kc-{}", api.port()));
    api.write_kubeconfig(&dir).unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(&dir).unwrap();
    let config =
        Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    assert_eq!(config.cluster_url.to_string(), format!("{}/", api.url()));
    let client = Client::try_from(config).unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.minor, "37");
    let discovery = kube::discovery::Discovery::new(client.clone())
        .run()
        .await
        .unwrap();
    let mut found = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            found.push(format!("{}/{}:{:?}", ar.group, ar.plural, caps.scope));
        }
    }
    for want in [
        "/pods:Namespaced",
        "/nodes:Cluster",
        "/namespaces:Cluster",
        "/events:Namespaced",
        "apps/replicasets:Namespaced",
        "apps/deployments:Namespaced",
        "policy/poddisruptionbudgets:Namespaced",
        "events.k8s.io/events:Namespaced",
        "coordination.k8s.io/leases:Namespaced",
        "fulcrum.dev/interferencepolicies:Cluster",
    ] {
        assert!(
            found.iter().any(|f| f == want),
            "{want} missing from {found:?}"
        );
    }
    let _ = std::fs::remove_file(dir);
}

#[tokio::test]
async fn typed_crud_selectors_and_conflicts() {
    let api = FakeApiServer::builder().controllers(false).start();
    let pods: Api<Pod> = Api::namespaced(client(&api), "default");
    let all: Api<Pod> = Api::all(client(&api));
    for (name, node, app) in [("a", "n1", "web"), ("b", "n2", "web"), ("c", "n1", "db")] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}]},
        }))
        .unwrap();
        let created = pods.create(&PostParams::default(), &pod).await.unwrap();
        assert!(created.metadata.uid.is_some());
        assert_eq!(created.metadata.generation, Some(1));
        // Status is reset on create, as the pod strategy does.
        assert_eq!(
            created.status.and_then(|s| s.phase).as_deref(),
            Some("Pending")
        );
    }
    let dup: Pod =
        serde_json::from_value(json!({"metadata": {"name": "a"}, "spec": {"containers": []}}))
            .unwrap();
    let err = pods.create(&PostParams::default(), &dup).await.unwrap_err();
    assert_eq!(status_code(&err), Some(409));

    let names = |l: kube::core::ObjectList<Pod>| {
        l.items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            pods.list(&ListParams::default().labels("app=web"))
                .await
                .unwrap()
        ),
        ["a", "b"]
    );
    assert_eq!(
        names(
            pods.list(&ListParams::default().labels("app notin (web)"))
                .await
                .unwrap()
        ),
        ["c"]
    );
    assert_eq!(
        names(
            all.list(&ListParams::default().fields("spec.nodeName=n1"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    let err = pods
        .list(&ListParams::default().fields("spec.bogus=1"))
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(400));

    // Update with a stale resourceVersion conflicts; a fresh one bumps generation on spec change.
    let mut a = pods.get("a").await.unwrap();
    let stale = a.clone();
    a.spec.as_mut().unwrap().active_deadline_seconds = Some(5);
    let updated = pods.replace("a", &PostParams::default(), &a).await.unwrap();
    assert_eq!(updated.metadata.generation, Some(2));
    let err = pods
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(409));

    // Merge patch of labels does not bump generation.
    let patched = pods
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"extra": "1"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    assert_eq!(patched.metadata.labels.unwrap()["extra"], "1");

    // Delete preconditions.
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    assert_eq!(
        status_code(&pods.delete("c", &dp).await.unwrap_err()),
        Some(409)
    );
    pods.delete("c", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert!(api.get_object("pods", Some("default"), "c").is_none());
    assert_eq!(status_code(&pods.get("c").await.unwrap_err()), Some(404));

    let verbs: Vec<_> = api
        .requests()
        .iter()
        .filter(|r| r.resource == "pods")
        .map(|r| r.verb.clone())
        .collect();
    for v in ["create", "list", "get", "update", "patch", "delete"] {
        assert!(verbs.iter().any(|x| x == v), "{v} not recorded");
    }
    assert!(
        api.rbac_rules()
            .contains(&("list".into(), "".into(), "pods".into(), "".into()))
    );
}

#[tokio::test]
async fn pagination_is_consistent_and_expires_after_compaction() {
    let api = FakeApiServer::builder().controllers(false).start();
    for i in 0..7 {
        api.apply_object(running_pod(&format!("p{i}"), "n1", json!({}), None))
            .unwrap();
    }
    let pods: Api<Pod> = Api::all(client(&api));
    let first = pods.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    let token = first.metadata.continue_.clone().unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    // A write between pages does not show up in later pages.
    api.apply_object(running_pod("p00", "n1", json!({}), None))
        .unwrap();
    let second = pods
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(
        second.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    let names: Vec<_> = second
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["p3", "p4", "p5"]);
    let token2 = second.metadata.continue_.clone().unwrap();
    api.compact();
    let err = pods
        .list(&ListParams::default().limit(3).continue_token(&token2))
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(410));
    let pages = api
        .requests()
        .iter()
        .filter(|r| r.verb == "list" && r.query.contains("limit=3"))
        .count();
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn reflector_sees_adds_modifies_and_deletes() {
    let api = FakeApiServer::builder().controllers(false).start();
    api.apply_object(running_pod("first", "n1", json!({"app": "x"}), None))
        .unwrap();
    let client = client(&api);
    let (reader, writer) = reflector::store::<Pod>();
    let stream = reflector(
        writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
    )
    .applied_objects();
    let events = tokio::spawn(async move {
        stream
            .take(4)
            .map_ok(|p| p.metadata.name.unwrap_or_default())
            .try_collect::<Vec<_>>()
            .await
    });
    reader.wait_until_ready().await.unwrap();
    assert_eq!(reader.state().len(), 1);
    assert!(api.wait_for(|a| a.open_watches() == 1, WAIT).await);
    let pods: Api<Pod> = Api::namespaced(client, "default");
    api.apply_object(running_pod("second", "n1", json!({"app": "x"}), None))
        .unwrap();
    pods.patch(
        "second",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"v": "2"}}})),
    )
    .await
    .unwrap();
    pods.delete("first", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    api.apply_object(running_pod("third", "n1", json!({}), None))
        .unwrap();
    let seen = tokio::time::timeout(WAIT, events)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen, ["first", "second", "second", "third"]);
    let mut names: Vec<_> = reader
        .state()
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["second", "third"]);
    let second = reader
        .state()
        .into_iter()
        .find(|p| p.metadata.name.as_deref() == Some("second"))
        .unwrap();
    assert_eq!(second.metadata.labels.as_ref().unwrap()["v"], "2");
    // The watcher listed with limit=500 then watched from the list's resourceVersion.
    let reqs = api.requests();
    let list = reqs.iter().find(|r| r.verb == "list").unwrap();
    assert_eq!(list.query_param("limit").as_deref(), Some("500"));
    let watch = reqs.iter().find(|r| r.verb == "watch").unwrap();
    assert_eq!(
        watch.query_param("allowWatchBookmarks").as_deref(),
        Some("true")
    );
    // The list's resourceVersion (4 namespaces, then the first pod: 5).
    assert_eq!(watch.query_param("resourceVersion").as_deref(), Some("5"));
}

#[tokio::test]
async fn expired_watch_makes_the_watcher_relist() {
    let api = FakeApiServer::builder().controllers(false).start();
    api.apply_object(running_pod("p", "n1", json!({}), None))
        .unwrap();
    let stream = watcher(Api::<Pod>::all(client(&api)), watcher::Config::default());
    let handle = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut errors = 0;
        while let Some(ev) = stream.next().await {
            if let Err(watcher::Error::WatchError(s)) = ev {
                assert_eq!(s.code, 410);
                errors += 1;
            }
        }
        errors
    });
    let lists = |a: &FakeApiServer| a.count_requests(|r| r.verb == "list" && r.resource == "pods");
    // `watches_started() == n && open_watches() == 1`: the n-th watch is the open one.
    let watching =
        |n: usize| move |a: &FakeApiServer| a.watches_started() == n && a.open_watches() == 1;
    assert!(api.wait_for(watching(1), WAIT).await);
    assert_eq!(lists(&api), 1);
    // Mid-stream: ERROR 410 on the open watch makes the watcher re-list.
    api.expire_watches();
    assert!(api.wait_for(watching(2), WAIT).await);
    assert_eq!(lists(&api), 2);
    // At the start of a watch: the next watch request gets 200 + ERROR 410 (the stream that
    // carries it is not a started watch), then the watcher re-lists and watches again.
    api.inject(Fault::watch_gone(Matcher::resource("pods")));
    api.close_watches();
    assert!(api.wait_for(watching(3), WAIT).await);
    assert_eq!(lists(&api), 3);
    assert_eq!(
        api.requests().iter().filter(|r| r.verb == "watch").count(),
        4
    );
    // A plain end of stream re-watches from the last resourceVersion without a list.
    let started = api.watches_started();
    api.close_watches();
    assert!(api.wait_for(watching(started + 1), WAIT).await);
    assert_eq!(lists(&api), 3);
    handle.abort();
}

#[tokio::test]
async fn watch_from_a_compacted_version_gets_error_410() {
    let api = FakeApiServer::builder().controllers(false).start();
    api.apply_object(running_pod("p", "n1", json!({}), None))
        .unwrap();
    api.apply_object(running_pod("q", "n1", json!({}), None))
        .unwrap();
    api.compact();
    let pods: Api<Pod> = Api::all(client(&api));
    let mut stream = pods
        .watch(&WatchParams::default(), "1")
        .await
        .unwrap()
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(s))) => {
            assert_eq!(s.code, 410);
            assert_eq!(s.reason, "Expired");
        }
        other => panic!("expected an ERROR 410 event, got {other:?}"),
    }
    assert!(stream.next().await.is_none());
    let watch = api
        .requests()
        .into_iter()
        .find(|r| r.verb == "watch")
        .unwrap();
    assert_eq!(watch.status, 200);
}

#[tokio::test]
async fn bookmarks_arrive_and_timeouts_end_watches() {
    let api = FakeApiServer::builder()
        .controllers(false)
        .bookmark_interval(Duration::from_millis(50))
        .start();
    let pods: Api<Pod> = Api::all(client(&api));
    api.apply_object(running_pod("p", "n1", json!({}), None))
        .unwrap();
    let rv = api.resource_version().to_string();
    let mut stream = pods
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .unwrap()
        .boxed();
    let mut bookmarks = 0;
    let mut events = Vec::new();
    api.apply_object(running_pod("q", "n1", json!({}), None))
        .unwrap();
    while let Some(ev) = tokio::time::timeout(WAIT, stream.next()).await.unwrap() {
        match ev.unwrap() {
            WatchEvent::Bookmark(b) => {
                bookmarks += 1;
                assert!(b.metadata.resource_version.parse::<u64>().unwrap() >= rv.parse().unwrap());
            }
            WatchEvent::Added(p) => events.push(p.metadata.name.unwrap()),
            other => panic!("unexpected {other:?}"),
        }
    }
    // The stream ended by itself after timeoutSeconds=2.
    assert_eq!(events, ["q"]);
    assert!(bookmarks >= 2, "only {bookmarks} bookmarks");

    // Label transitions: a pod that stops matching is DELETED for a selector watch.
    let rv = api.resource_version().to_string();
    let mut stream = pods
        .watch(&WatchParams::default().labels("app=web").timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let p: Api<Pod> = Api::namespaced(client(&api), "default");
    p.patch(
        "q",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .unwrap();
    p.patch(
        "q",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .unwrap();
    // kube 5's WatchParams asks for bookmarks by default; skip them.
    let mut changes = Vec::new();
    while changes.len() < 2 {
        match stream.next().await.unwrap().unwrap() {
            WatchEvent::Bookmark(_) => {}
            other => changes.push(other),
        }
    }
    assert!(
        matches!(changes[0], WatchEvent::Added(_)),
        "{:?}",
        changes[0]
    );
    assert!(
        matches!(changes[1], WatchEvent::Deleted(_)),
        "{:?}",
        changes[1]
    );
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_end_bookmark() {
    let api = FakeApiServer::builder().controllers(false).start();
    api.apply_object(running_pod("p", "n1", json!({}), None))
        .unwrap();
    let (reader, writer) = reflector::store::<Pod>();
    let stream = reflector(
        writer,
        watcher(
            Api::<Pod>::all(client(&api)),
            watcher::Config::default().streaming_lists(),
        ),
    );
    let handle = tokio::spawn(stream.for_each(|_| async {}));
    tokio::time::timeout(WAIT, reader.wait_until_ready())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reader.state().len(), 1);
    let watch = api
        .requests()
        .into_iter()
        .find(|r| r.verb == "watch")
        .unwrap();
    assert_eq!(
        watch.query_param("sendInitialEvents").as_deref(),
        Some("true")
    );
    assert!(api.requests().iter().all(|r| r.verb != "list"));
    handle.abort();
}

#[tokio::test]
async fn metadata_watcher_gets_partial_object_metadata() {
    let api = FakeApiServer::builder().controllers(false).start();
    api.apply_object(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "rs1", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}},
    }))
    .unwrap();
    // kube 5 deprecates `metadata_watcher` for `watcher` over `Api<PartialObjectMeta<K>>`.
    let stream = watcher(
        Api::<PartialObjectMeta<ReplicaSet>>::namespaced(client(&api), "default"),
        watcher::Config::default(),
    )
    .applied_objects();
    let handle = tokio::spawn(async move {
        stream
            .take(2)
            .map_ok(|m| {
                (
                    m.metadata.name.unwrap_or_default(),
                    m.types.map(|t| t.kind).unwrap_or_default(),
                )
            })
            .try_collect::<Vec<_>>()
            .await
    });
    assert!(api.wait_for(|a| a.open_watches() == 1, WAIT).await);
    api.apply_object(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "rs2", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "db"}}, "template": {"spec": {"containers": []}}},
    }))
    .unwrap();
    let got = tokio::time::timeout(WAIT, handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got[0].0, "rs1");
    assert_eq!(
        got[1],
        ("rs2".to_string(), "PartialObjectMetadata".to_string())
    );
    let reqs = api.requests();
    let list = reqs.iter().find(|r| r.verb == "list").unwrap();
    assert_eq!(
        list.accept,
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
    );
    let watch = reqs.iter().find(|r| r.verb == "watch").unwrap();
    assert_eq!(
        watch.accept,
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
    );
    // A single metadata get answers PartialObjectMetadata too.
    let rs: Api<ReplicaSet> = Api::namespaced(client(&api), "default");
    let meta = rs.get_metadata("rs1").await.unwrap();
    assert_eq!(meta.metadata.labels.unwrap()["app"], "web");
}

fn seed_workload(api: &FakeApiServer, min_available: Value) {
    api.apply_object(node("n1", "4")).unwrap();
    api.apply_object(node("n2", "4")).unwrap();
    api.apply_object(running_pod(
        "web-a",
        "n1",
        json!({"app": "web"}),
        Some(("ReplicaSet", "web")),
    ))
    .unwrap();
    api.apply_object(running_pod(
        "web-b",
        "n2",
        json!({"app": "web"}),
        Some(("ReplicaSet", "web")),
    ))
    .unwrap();
    api.apply_object(running_pod("solo", "n1", json!({"app": "solo"}), None))
        .unwrap();
    api.apply_object(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web-pdb", "namespace": "default"},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": "web"}}},
    }))
    .unwrap();
}

#[tokio::test]
async fn eviction_respects_budgets_and_replaces_pods() {
    let api = FakeApiServer::start();
    seed_workload(&api, json!(1));
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client(&api), "default");
    let status = pdbs.get("web-pdb").await.unwrap().status.unwrap();
    assert_eq!(
        (
            status.current_healthy,
            status.desired_healthy,
            status.disruptions_allowed,
            status.expected_pods
        ),
        (Some(2), Some(1), Some(1), Some(2))
    );
    let pods: Api<Pod> = Api::namespaced(client(&api), "default");

    // 404 for a missing pod.
    let err = pods
        .evict("nope", &EvictParams::default())
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(404));

    // Allowed: 201 + Status Success; the pod goes, the ReplicaSet's replacement is scheduled.
    let ok = pods.evict("web-a", &EvictParams::default()).await.unwrap();
    assert!(ok.is_success());
    assert!(api.get_object("pods", Some("default"), "web-a").is_none());
    let replacement = api
        .list_objects("pods", Some("default"))
        .into_iter()
        .find(|p| {
            p["metadata"]["name"].as_str().unwrap().starts_with("web-")
                && p["metadata"]["name"] != "web-b"
        })
        .expect("replacement pod");
    assert_eq!(replacement["status"]["phase"], "Running");
    assert!(replacement["spec"]["nodeName"].is_string());
    assert_eq!(replacement["metadata"]["ownerReferences"][0]["name"], "web");
    assert_eq!(api.evictions()[1].status, 201);

    // Budget exhausted: 429 with the DisruptionBudget cause.
    api.apply_object(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web-pdb", "namespace": "default"},
        "spec": {"minAvailable": "100%", "selector": {"matchLabels": {"app": "web"}}},
    }))
    .unwrap();
    let err = pods
        .evict("web-b", &EvictParams::default())
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else {
        panic!("{err:?}")
    };
    assert_eq!((s.code, s.reason.as_str()), (429, "TooManyRequests"));
    let cause = &s.details.unwrap().causes[0];
    assert_eq!(cause.reason, "DisruptionBudget");
    assert_eq!(
        cause.message,
        "The disruption budget web-pdb needs 2 healthy pods and has 2 currently"
    );

    // UID precondition mismatch: 409 — sent with camelCase deleteOptions as the API defines.
    let resp = raw_evict(
        &api,
        "solo",
        json!({"deleteOptions": {"preconditions": {"uid": "wrong"}}}),
    )
    .await;
    assert_eq!(resp.0, 409);
    assert_eq!(resp.1["reason"], "Conflict");
    // The same precondition in snake_case is an unknown field: ignored, the eviction succeeds.
    let resp = raw_evict(
        &api,
        "solo",
        json!({"delete_options": {"preconditions": {"uid": "wrong"}}}),
    )
    .await;
    assert_eq!(resp.0, 201);

    let evictions = api.evictions();
    assert_eq!(evictions.len(), 5);
    // kube 5's Api::evict sends `delete_options` (snake_case), which the real server ignores.
    assert!(evictions[1].delete_options_snake_case);
    assert!(!evictions[1].delete_options_camel_case);
    assert!(evictions[3].delete_options_camel_case);
    assert_eq!(evictions[3].precondition_uid.as_deref(), Some("wrong"));

    // More than one budget selecting a pod: 500.
    api.apply_object(json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "second", "namespace": "default"},
        "spec": {"maxUnavailable": 1, "selector": {}},
    }))
    .unwrap();
    let err = pods
        .evict("web-b", &EvictParams::default())
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(500));
}

async fn raw_evict(api: &FakeApiServer, pod: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": "default"}});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let req = http::Request::post(format!("/api/v1/namespaces/default/pods/{pod}/eviction"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    match client(api).request::<Value>(req).await {
        Ok(v) => (v["code"].as_u64().unwrap_or(0) as u16, v),
        Err(kube::Error::Api(s)) => (s.code, serde_json::to_value(&*s).unwrap()),
        Err(e) => panic!("{e:?}"),
    }
}

#[tokio::test]
async fn server_side_apply_on_policy_status() {
    let api = FakeApiServer::start();
    let ar = ifp_resource();
    let policies: Api<DynamicObject> = Api::all_with(client(&api), &ar);
    let spec = json!({"apiVersion": "fulcrum.dev/v1alpha1", "kind": "InterferencePolicy",
        "metadata": {"name": "pol"}, "spec": {"mode": "observe"}});
    let created = policies
        .patch("pol", &PatchParams::apply("deployer"), &Patch::Apply(&spec))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let status = json!({"apiVersion": "fulcrum.dev/v1alpha1", "kind": "InterferencePolicy",
        "status": {"phase": "Active", "observedGeneration": 1}});
    let after = policies
        .patch_status(
            "pol",
            &PatchParams::apply("fulcrum"),
            &Patch::Apply(&status),
        )
        .await
        .unwrap();
    assert_eq!(after.data["status"]["phase"], "Active");
    assert_eq!(after.data["spec"]["mode"], "observe");
    assert_eq!(
        after.metadata.generation,
        Some(1),
        "status writes keep generation"
    );
    let managed = after.metadata.managed_fields.unwrap();
    let fulcrum = managed
        .iter()
        .find(|m| m.manager.as_deref() == Some("fulcrum"))
        .unwrap();
    assert_eq!(fulcrum.operation.as_deref(), Some("Apply"));
    assert_eq!(fulcrum.subresource.as_deref(), Some("status"));
    assert_eq!(fulcrum.fields_type.as_deref(), Some("FieldsV1"));
    assert!(
        managed
            .iter()
            .any(|m| m.manager.as_deref() == Some("deployer"))
    );

    // Another manager setting the same status field differently conflicts unless forced.
    let other = json!({"apiVersion": "fulcrum.dev/v1alpha1", "kind": "InterferencePolicy",
        "status": {"phase": "Broken"}});
    let err = policies
        .patch_status(
            "pol",
            &PatchParams::apply("intruder"),
            &Patch::Apply(&other),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else { panic!() };
    assert_eq!(s.code, 409);
    assert!(
        s.message.contains("conflict with \"fulcrum\""),
        "{}",
        s.message
    );
    let forced = policies
        .patch_status(
            "pol",
            &PatchParams::apply("intruder").force(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(forced.data["status"]["phase"], "Broken");

    // Re-applying without a field removes it (it is no longer owned by anyone).
    let rv_before = api.resource_version();
    let same = policies
        .patch_status(
            "pol",
            &PatchParams::apply("intruder"),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(
        api.resource_version(),
        rv_before,
        "a no-op apply writes nothing"
    );
    assert_eq!(same.data["status"]["phase"], "Broken");
    let fewer = json!({"apiVersion": "fulcrum.dev/v1alpha1", "kind": "InterferencePolicy",
        "status": {"observedGeneration": 1}});
    let out = policies
        .patch_status("pol", &PatchParams::apply("fulcrum"), &Patch::Apply(&fewer))
        .await
        .unwrap();
    assert_eq!(
        out.data["status"]["phase"], "Broken",
        "still owned by intruder"
    );

    // fieldManager is required for apply.
    let req = http::Request::patch("/apis/fulcrum.dev/v1alpha1/interferencepolicies/pol/status")
        .header("content-type", "application/apply-patch+yaml")
        .body(
            b"apiVersion: fulcrum.dev/v1alpha1\nkind: InterferencePolicy\nstatus: {phase: X}\n"
                .to_vec(),
        )
        .unwrap();
    let err = client(&api).request::<Value>(req).await.unwrap_err();
    assert_eq!(status_code(&err), Some(400));
    // Strategic merge patch is not supported for custom resources.
    let err = policies
        .patch(
            "pol",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"mode": "x"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(415));
    let req = api
        .requests()
        .into_iter()
        .find(|r| r.subresource == "status" && r.verb == "patch")
        .unwrap();
    assert_eq!(req.content_type, "application/apply-patch+yaml");
    assert_eq!(req.query_param("fieldManager").as_deref(), Some("fulcrum"));
}

#[tokio::test]
async fn node_patches_use_resource_version_preconditions() {
    let api = FakeApiServer::start();
    api.apply_object(node("n1", "4")).unwrap();
    let nodes: Api<Node> = Api::all(client(&api));
    let n = nodes.get("n1").await.unwrap();
    let rv = n.metadata.resource_version.clone().unwrap();
    let taint = json!({"metadata": {"resourceVersion": rv, "annotations": {"fulcrum.dev/acted": "yes"}},
        "spec": {"taints": [{"key": "fulcrum.dev/cordon", "effect": "NoSchedule"}]}});
    let patched = nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Strategic(taint.clone()),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().taints.unwrap().len(), 1);
    // Same patch again: the resourceVersion it carries is stale now.
    let err = nodes
        .patch("n1", &PatchParams::default(), &Patch::Strategic(taint))
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(409));
    // Taints have no patch merge key: the list is replaced.
    let replaced = nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"taints": [{"key": "other", "effect": "PreferNoSchedule"}]}}),
            ),
        )
        .await
        .unwrap();
    let taints = replaced.spec.unwrap().taints.unwrap();
    assert_eq!(taints.len(), 1);
    assert_eq!(taints[0].key, "other");
    // JSON patch with a test op on the resourceVersion.
    let current = replaced.metadata.resource_version.unwrap();
    let ok: Patch<()> = Patch::Json(
        serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": current},
            {"op": "add", "path": "/spec/unschedulable", "value": true},
        ]))
        .unwrap(),
    );
    let cordoned = nodes
        .patch("n1", &PatchParams::default(), &ok)
        .await
        .unwrap();
    assert_eq!(cordoned.spec.unwrap().unschedulable, Some(true));
    let stale: Patch<()> = Patch::Json(
        serde_json::from_value(json!([
            {"op": "test", "path": "/metadata/resourceVersion", "value": current},
            {"op": "remove", "path": "/spec/unschedulable"},
        ]))
        .unwrap(),
    );
    let err = nodes
        .patch("n1", &PatchParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(422));
    let kinds: Vec<String> = api
        .requests()
        .iter()
        .filter(|r| r.verb == "patch")
        .map(|r| r.content_type.clone())
        .collect();
    assert_eq!(kinds[0], "application/strategic-merge-patch+json");
    assert_eq!(kinds[3], "application/json-patch+json");
}

#[tokio::test]
async fn scheduler_respects_taints_affinity_and_resources() {
    let api = FakeApiServer::start();
    api.apply_object(node("small", "1")).unwrap();
    let mut big = node("big", "8");
    big["metadata"]["labels"]["disk"] = json!("ssd");
    api.apply_object(big).unwrap();
    let mut tainted = node("gpu", "16");
    tainted["spec"] = json!({"taints": [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]});
    api.apply_object(tainted).unwrap();
    let pods: Api<Pod> = Api::namespaced(client(&api), "default");
    let pod = |name: &str, cpu: &str, extra: Value| -> Pod {
        let mut v = json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": cpu}}}]}});
        if let (Some(spec), Some(e)) = (v["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(e.clone());
        }
        serde_json::from_value(v).unwrap()
    };
    // Most free CPU among untainted nodes.
    pods.create(&PostParams::default(), &pod("a", "500m", json!({})))
        .await
        .unwrap();
    // Only the tainted node fits, and the pod tolerates it.
    pods.create(
        &PostParams::default(),
        &pod(
            "b",
            "10",
            json!({"tolerations": [{"key": "gpu", "operator": "Exists"}]}),
        ),
    )
    .await
    .unwrap();
    // Required node affinity.
    pods.create(&PostParams::default(), &pod("c", "100m", json!({"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "disk", "operator": "DoesNotExist"}]}]}}}})))
        .await
        .unwrap();
    // Nothing fits.
    pods.create(&PostParams::default(), &pod("d", "64", json!({})))
        .await
        .unwrap();
    let node_of = |n: &str| {
        api.get_object("pods", Some("default"), n).unwrap()["spec"]["nodeName"]
            .as_str()
            .map(str::to_string)
    };
    assert_eq!(node_of("a").as_deref(), Some("big"));
    assert_eq!(node_of("b").as_deref(), Some("gpu"));
    assert_eq!(node_of("c").as_deref(), Some("small"));
    assert_eq!(node_of("d"), None);
    let d = pods.get("d").await.unwrap().status.unwrap();
    let cond = &d.conditions.unwrap()[0];
    assert_eq!(
        (cond.type_.as_str(), cond.status.as_str()),
        ("PodScheduled", "False")
    );
    assert_eq!(cond.reason.as_deref(), Some("Unschedulable"));
    assert!(
        cond.message
            .as_deref()
            .unwrap()
            .starts_with("0/3 nodes are available")
    );
    // Adding capacity schedules the pending pod.
    api.apply_object(node("huge", "128")).unwrap();
    assert_eq!(node_of("d").as_deref(), Some("huge"));
}

#[tokio::test]
async fn graceful_pod_deletion_and_statefulset_replacement() {
    let api = FakeApiServer::builder()
        .pod_termination_delay(Duration::from_millis(200))
        .start();
    api.apply_object(node("n1", "4")).unwrap();
    let mut pod = running_pod(
        "db-0",
        "n1",
        json!({"app": "db"}),
        Some(("StatefulSet", "db")),
    );
    pod["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("generateName");
    let old = api.apply_object(pod).unwrap();
    let pods: Api<Pod> = Api::namespaced(client(&api), "default");
    let deleted = pods.delete("db-0", &DeleteParams::default()).await.unwrap();
    let terminating = deleted.left().expect("the terminating pod is returned");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    let old_uid = old["metadata"]["uid"].as_str().unwrap().to_string();
    // The StatefulSet replacement reuses the name once the old pod is gone.
    assert!(
        api.wait_for(
            |a| {
                a.get_object("pods", Some("default"), "db-0")
                    .is_some_and(|p| {
                        p["metadata"]["uid"] != old_uid.as_str()
                            && p["status"]["phase"] == "Running"
                    })
            },
            WAIT
        )
        .await
    );
}

#[tokio::test]
async fn faults_are_scripted() {
    let api = FakeApiServer::builder().controllers(false).start();
    let pods: Api<Pod> = Api::all(client(&api));
    api.inject(Fault::status(Matcher::resource("pods").verb("list"), 500).times(2));
    api.inject(Fault::status(Matcher::resource("nodes").name("n1"), 429));
    for _ in 0..2 {
        let err = pods.list(&ListParams::default()).await.unwrap_err();
        assert_eq!(status_code(&err), Some(500));
    }
    pods.list(&ListParams::default()).await.unwrap();
    let nodes: Api<Node> = Api::all(client(&api));
    let err = nodes.get("n1").await.unwrap_err();
    let kube::Error::Api(s) = err else { panic!() };
    assert_eq!((s.code, s.reason.as_str()), (429, "TooManyRequests"));
    api.inject(Fault::delay(
        Matcher::resource("nodes"),
        Duration::from_millis(300),
    ));
    let started = std::time::Instant::now();
    assert_eq!(status_code(&nodes.get("n1").await.unwrap_err()), Some(404));
    assert!(started.elapsed() >= Duration::from_millis(300));
    let statuses: Vec<u16> = api.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 200, 429, 404]);

    // A request can trigger the end of every open watch.
    let rv = api.resource_version().to_string();
    let mut stream = pods
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await
        .unwrap()
        .boxed();
    assert!(api.wait_for(|a| a.open_watches() == 1, WAIT).await);
    api.inject(Fault::new(
        Matcher::resource("nodes").verb("list"),
        FaultAction::CloseWatches,
    ));
    nodes.list(&ListParams::default()).await.unwrap();
    assert!(
        tokio::time::timeout(WAIT, stream.next())
            .await
            .unwrap()
            .is_none()
    );

    // kube 5's default client retries 429 and 503 by itself (not 500).
    api.clear_requests();
    api.inject(Fault::status(Matcher::resource("nodes").verb("list"), 429));
    api.inject(Fault::status(Matcher::resource("nodes").verb("list"), 503));
    let nodes: Api<Node> = Api::all(retrying_client(&api));
    nodes.list(&ListParams::default()).await.unwrap();
    let statuses: Vec<u16> = api.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 503, 200]);
}

fn kubectl() -> Option<String> {
    if let Ok(k) = std::env::var("KUBECTL") {
        return Some(k);
    }
    ["/usr/bin/kubectl", "/usr/local/bin/kubectl"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(str::to_string)
}

#[test]
fn kubectl_reads_the_fake() {
    let Some(kubectl) = kubectl() else {
        eprintln!(
            "SKIPPED kubectl_reads_the_fake: no kubectl at /usr/bin/kubectl (set KUBECTL=path to use another)"
        );
        return;
    };
    let api = FakeApiServer::start();
    seed_workload(&api, json!(1));
    api.apply_object(
        json!({"apiVersion": "fulcrum.dev/v1alpha1", "kind": "InterferencePolicy",
        "metadata": {"name": "pol"}, "spec": {"mode": "observe"}}),
    )
    .unwrap();
    let kc = std::env::temp_dir().join(format!("fake-apiserver-kubectl-{}", api.port()));
    api.write_kubeconfig(&kc).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kc)
            .args(args)
            .output()
            .expect("run kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let json_out: Value = serde_json::from_str(&run(&["get", "pods", "-A", "-o", "json"])).unwrap();
    let names: Vec<_> = json_out["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["solo", "web-a", "web-b"]);
    let nodes = run(&["get", "nodes"]);
    assert!(nodes.contains("n1") && nodes.contains("Ready"), "{nodes}");
    let ifp = run(&["get", "ifp"]);
    assert!(
        ifp.contains("MODE") && ifp.contains("pol") && ifp.contains("observe"),
        "{ifp}"
    );
    let pdb = run(&[
        "get",
        "pdb",
        "-n",
        "default",
        "-o",
        "jsonpath={.items[0].status.disruptionsAllowed}",
    ]);
    assert_eq!(pdb, "1");
    run(&["label", "node", "n1", "zone=a"]);
    assert_eq!(
        api.get_object("nodes", None, "n1").unwrap()["metadata"]["labels"]["zone"],
        "a"
    );
    let table = api
        .requests()
        .into_iter()
        .find(|r| r.resource == "nodes" && r.verb == "list")
        .unwrap();
    assert!(table.accept.contains("as=Table"), "{}", table.accept);
    let _ = std::fs::remove_file(kc);
}

#[tokio::test]
async fn list_resource_version_semantics() {
    let api = FakeApiServer::builder().controllers(false).start();
    api.apply_object(running_pod("a", "n1", json!({}), None))
        .unwrap();
    let after_a = api.resource_version().to_string();
    api.apply_object(running_pod("b", "n1", json!({}), None))
        .unwrap();
    api.delete_object("pods", Some("default"), "a").unwrap();
    let pods: Api<Pod> = Api::all(client(&api));
    let names = |l: &kube::core::ObjectList<Pod>| {
        l.items
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect::<Vec<_>>()
    };
    // Most recent.
    let latest = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(names(&latest), ["b"]);
    assert_eq!(
        latest.metadata.resource_version,
        Some(api.resource_version().to_string())
    );
    // Any (resourceVersion=0, NotOlderThan), as kube's any_semantic sends.
    let any = pods.list(&ListParams::default().match_any()).await.unwrap();
    assert_eq!(names(&any), ["b"]);
    // Exact: the state at that version, reconstructed from history.
    let exact = pods
        .list(
            &ListParams::default()
                .at(&after_a)
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .unwrap();
    assert_eq!(names(&exact), ["a"]);
    assert_eq!(
        exact.metadata.resource_version.as_deref(),
        Some(after_a.as_str())
    );
    api.compact();
    let err = pods
        .list(
            &ListParams::default()
                .at(&after_a)
                .matching(kube::api::VersionMatch::Exact),
        )
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(410));
    // Newer than the server has: 504 Timeout (which kube's default client would retry).
    let err = pods
        .list(
            &ListParams::default()
                .at("999999")
                .matching(kube::api::VersionMatch::NotOlderThan),
        )
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(504));
}

/// Kills the child process when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn standalone_binary_serves_seeds_and_writes_a_kubeconfig() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("fake-apiserver-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seed = dir.join("seed.yaml");
    std::fs::write(
        &seed,
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Node\n  metadata: {name: n1}\n---\napiVersion: fulcrum.dev/v1alpha1\nkind: InterferencePolicy\nmetadata: {name: pol}\nspec: {mode: observe}\n",
    )
    .unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let mut child = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_fake-apiserver"))
            .arg("--seed")
            .arg(&seed)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let url = rx.recv_timeout(WAIT).unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap();
    assert_eq!(config.cluster_url.to_string(), format!("{}/", url.trim()));
    let client = Client::try_from(config).unwrap();
    let nodes: Api<Node> = Api::all(client.clone());
    assert_eq!(
        nodes
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let policies: Api<DynamicObject> = Api::all_with(client, &ifp_resource());
    assert_eq!(
        policies.get("pol").await.unwrap().data["spec"]["mode"],
        "observe"
    );
    drop(child);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn namespaces_unhealthy_pods_and_too_new_watches() {
    let api = FakeApiServer::builder().controllers(false).start();
    // A cluster starts with its usual namespaces; creating in a missing one is a 404.
    assert!(api.get_object("namespaces", None, "kube-system").is_some());
    let elsewhere: Api<Pod> = Api::namespaced(client(&api), "nowhere");
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": []}}))
            .unwrap();
    let err = elsewhere
        .create(&PostParams::default(), &pod)
        .await
        .unwrap_err();
    let kube::Error::Api(s) = err else { panic!() };
    assert_eq!(
        (s.code, s.message.as_str()),
        (404, "namespaces \"nowhere\" not found")
    );
    // Seeding through the library creates the namespace.
    let mut seeded = running_pod("p", "n1", json!({"app": "web"}), None);
    seeded["metadata"]["namespace"] = json!("shop");
    api.apply_object(seeded).unwrap();
    assert!(api.get_object("namespaces", None, "shop").is_some());

    // Budget with no disruptions left: a Ready pod is refused, an unready one is evicted while
    // the budget is met (IfHealthyBudget), a Pending one ignores budgets.
    seed_workload(&api, json!(2));
    let pods: Api<Pod> = Api::namespaced(client(&api), "default");
    assert_eq!(
        status_code(
            &pods
                .evict("web-a", &EvictParams::default())
                .await
                .unwrap_err()
        ),
        Some(429)
    );
    let mut unready = running_pod("web-c", "n1", json!({"app": "web"}), None);
    unready["status"]["conditions"][0]["status"] = json!("False");
    api.apply_object(unready).unwrap();
    pods.evict("web-c", &EvictParams::default()).await.unwrap();
    let mut pending = running_pod("web-d", "n1", json!({"app": "web"}), None);
    pending["status"] = json!({"phase": "Pending"});
    api.apply_object(pending).unwrap();
    pods.evict("web-d", &EvictParams::default()).await.unwrap();
    let pdb = api.get_object("pdb", Some("default"), "web-pdb").unwrap();
    assert_eq!(pdb["status"]["currentHealthy"], 2);
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);

    // A watch from a resourceVersion the server has not reached: 504 with Retry-After.
    let future = (api.resource_version() + 100).to_string();
    let Err(err) = pods.watch(&WatchParams::default(), &future).await else {
        panic!("the watch should fail");
    };
    assert_eq!(status_code(&err), Some(504));
}

#[tokio::test]
async fn events_leases_and_collections() {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::runtime::events::{Event, EventType, Recorder};
    let api = FakeApiServer::builder().controllers(false).start();
    api.apply_object(running_pod("p", "n1", json!({"app": "web"}), None))
        .unwrap();
    let client = client(&api);

    // kube's event Recorder: POST an events.k8s.io/v1 Event, then merge-PATCH its series.
    let recorder = Recorder::new(client.clone(), "fulcrum".into());
    let pod: Pod = Api::<Pod>::namespaced(client.clone(), "default")
        .get("p")
        .await
        .unwrap();
    let reference = kube::Resource::object_ref(&pod, &());
    let event = Event {
        type_: EventType::Normal,
        reason: "Evicted".into(),
        note: Some("interference".into()),
        action: "Evict".into(),
        secondary: None,
    };
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();
    let events = api.list_objects("events.k8s.io/v1/Event", Some("default"));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["series"]["count"], 2);
    assert_eq!(events[0]["regarding"]["name"], "p");
    let verbs: Vec<_> = api
        .requests()
        .iter()
        .filter(|r| r.api_group == "events.k8s.io")
        .map(|r| (r.verb.clone(), r.content_type.clone()))
        .collect();
    assert_eq!(
        verbs,
        [
            ("create".to_string(), "application/json".to_string()),
            (
                "patch".to_string(),
                "application/merge-patch+json".to_string()
            )
        ]
    );

    // Leases: create, get, replace with optimistic concurrency, patch.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "fulcrum"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
    }))
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut taken = created.clone();
    taken.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases
        .replace("fulcrum", &PostParams::default(), &taken)
        .await
        .unwrap();
    // The first holder's renewal carries the old resourceVersion: conflict.
    let err = leases
        .replace("fulcrum", &PostParams::default(), &created)
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(409));
    let renewed = leases
        .patch(
            "fulcrum",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"leaseTransitions": 1}})),
        )
        .await
        .unwrap();
    let spec = renewed.spec.unwrap();
    assert_eq!(
        (spec.holder_identity.as_deref(), spec.lease_transitions),
        (Some("b"), Some(1))
    );

    // PUT creates a missing lease (AllowCreateOnUpdate), unlike most kinds.
    let mut other = lease.clone();
    other.metadata.name = Some("other".into());
    leases
        .replace("other", &PostParams::default(), &other)
        .await
        .unwrap();
    assert!(
        api.get_object("leases", Some("kube-system"), "other")
            .is_some()
    );
    let missing: Pod = serde_json::from_value(
        json!({"metadata": {"name": "zz", "namespace": "default"}, "spec": {"containers": []}}),
    )
    .unwrap();
    let err = Api::<Pod>::namespaced(client.clone(), "default")
        .replace("zz", &PostParams::default(), &missing)
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(404));
    // Only list and watch exist across all namespaces.
    let err = Api::<Pod>::all(client.clone())
        .create(&PostParams::default(), &missing)
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(405));

    // deletecollection with a label selector.
    api.apply_object(running_pod("q", "n1", json!({"app": "db"}), None))
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.delete_collection(
        &DeleteParams::default().grace_period(0),
        &ListParams::default().labels("app=web"),
    )
    .await
    .unwrap();
    let left: Vec<_> = api
        .list_objects("pods", Some("default"))
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, ["q"]);
    assert!(api.requests().iter().any(|r| r.verb == "deletecollection"));
}

#[tokio::test]
async fn dry_run_writes_answer_but_keep_nothing() {
    let api = FakeApiServer::start();
    seed_workload(&api, json!(1));
    let rv = api.resource_version();
    let pods: Api<Pod> = Api::namespaced(client(&api), "default");
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let ep = EvictParams {
        post_options: dry.clone(),
        ..EvictParams::default()
    };
    assert!(pods.evict("web-a", &ep).await.unwrap().is_success());
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": "new"}, "spec": {"containers": []}}))
            .unwrap();
    let created = pods.create(&dry, &pod).await.unwrap();
    assert!(created.metadata.uid.is_some());
    pods.delete(
        "solo",
        &DeleteParams {
            dry_run: true,
            ..DeleteParams::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(api.resource_version(), rv, "nothing was written");
    assert!(api.get_object("pods", Some("default"), "web-a").is_some());
    assert!(api.get_object("pods", Some("default"), "new").is_none());
    assert!(api.get_object("pods", Some("default"), "solo").is_some());
    assert_eq!(api.evictions()[0].status, 201);
}

#[tokio::test]
async fn percent_budgets_with_fixtures() {
    use fulcrum_fake_apiserver::fixtures;
    let api = FakeApiServer::builder().controllers(false).start();
    api.apply_object(fixtures::node("n1", "8", "16Gi")).unwrap();
    // Percent budgets count the controller's scale (4 replicas), not the pods left.
    api.apply_object(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": "shop", "uid": "rs-uid"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}},
    }))
    .unwrap();
    for i in 0..4 {
        let pod = fixtures::running_pod(
            "shop",
            &format!("web-{i}"),
            "n1",
            json!({"app": "web"}),
            "100m",
            "64Mi",
        );
        api.apply_object(fixtures::owned_by(
            pod,
            "apps/v1",
            "ReplicaSet",
            "web",
            "rs-uid",
        ))
        .unwrap();
    }
    api.apply_object(fixtures::pdb(
        "shop",
        "web",
        json!({"app": "web"}),
        ("maxUnavailable", json!("50%")),
    ))
    .unwrap();
    let status =
        |a: &FakeApiServer| a.get_object("pdb", Some("shop"), "web").unwrap()["status"].clone();
    let s = status(&api);
    assert_eq!(
        (
            &s["expectedPods"],
            &s["desiredHealthy"],
            &s["disruptionsAllowed"]
        ),
        (&json!(4), &json!(2), &json!(2))
    );
    let pods: Api<Pod> = Api::namespaced(client(&api), "shop");
    pods.evict("web-0", &EvictParams::default()).await.unwrap();
    pods.evict("web-1", &EvictParams::default()).await.unwrap();
    let err = pods
        .evict("web-2", &EvictParams::default())
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(429));
    let s = status(&api);
    assert_eq!(
        (&s["currentHealthy"], &s["disruptionsAllowed"]),
        (&json!(2), &json!(0))
    );
    // Without the controller nothing replaces them.
    assert_eq!(api.list_objects("pods", Some("shop")).len(), 2);
}

#[tokio::test]
async fn real_crd_and_typed_policy_round_trip() {
    use fulcrum_policies::{InterferencePolicy, InterferencePolicyStatus};
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use kube::CustomResourceExt;
    use kube::runtime::{conditions, wait::await_condition};

    let api = FakeApiServer::start();
    let client = client(&api);
    // The operator's CRD, applied server-side, becomes Established.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = InterferencePolicy::crd();
    let name = crd.metadata.name.clone().unwrap();
    crds.patch(
        &name,
        &PatchParams::apply("fulcrum").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
    let established = tokio::time::timeout(
        WAIT,
        await_condition(crds.clone(), &name, conditions::is_crd_established()),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(established.is_some());

    // A shipped example policy round-trips through the typed API.
    let manifest = include_str!("../../../deploy/examples/online-vs-ai-evict.yaml");
    let policy: InterferencePolicy = serde_yaml_ng::from_str(manifest).unwrap();
    let policies: Api<InterferencePolicy> = Api::all(client.clone());
    let created = policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    assert_eq!(created.spec, policy.spec);
    let status = InterferencePolicyStatus {
        observed_generation: created.metadata.generation,
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Valid".into(),
            message: "policy is active".into(),
            observed_generation: created.metadata.generation,
            last_transition_time: Time(jiff::Timestamp::now()),
        }],
        detections: 3,
        ..InterferencePolicyStatus::default()
    };
    let body = json!({
        "apiVersion": "fulcrum.dev/v1alpha1",
        "kind": "InterferencePolicy",
        "status": status,
    });
    let applied = policies
        .patch_status(
            &created.metadata.name.clone().unwrap(),
            &PatchParams::apply("fulcrum").force(),
            &Patch::Apply(&body),
        )
        .await
        .unwrap();
    let got = applied.status.unwrap();
    assert_eq!(got.detections, 3);
    assert_eq!(got.conditions[0].reason, "Valid");
    assert_eq!(applied.metadata.generation, created.metadata.generation);
}
