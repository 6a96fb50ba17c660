//! The Kubernetes adapter's reflectors in process, against the fake API server: what the
//! engine is told about pods, and what was asked of the API server.

use std::time::Duration;

use fulcrum::cluster::reflect::{self, Shared};
use fulcrum_engine::ClusterUpdate;
use fulcrum_fake_apiserver::{FakeApiServer, fixtures};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

fn replicaset(name: &str, deployment: Option<&str>) -> Value {
    let mut rs = json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": []}}},
    });
    if let Some(d) = deployment {
        rs["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment",
            "name": d, "uid": format!("uid-{d}"), "controller": true}]);
    }
    rs
}

fn pod(name: &str, rs: &str, hash: &str) -> Value {
    let labels = json!({"pod-template-hash": hash});
    let mut p = fixtures::running_pod("shop", name, "n1", labels, "100m", "64Mi");
    p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "name": rs, "uid": format!("uid-{rs}"), "controller": true}]);
    p
}

/// Workloads of the pods upserted so far, by pod name.
type Seen = std::collections::HashMap<String, String>;

/// Receives updates until the pod `name` has been upserted; returns its workload.
async fn workload_of(
    updates: &mut mpsc::Receiver<ClusterUpdate>,
    seen: &mut Seen,
    name: &str,
) -> String {
    let wait = async {
        while !seen.contains_key(name) {
            match updates.recv().await {
                Some(ClusterUpdate::UpsertPod(p)) => {
                    seen.insert(p.name.to_string(), p.workload.to_string());
                }
                Some(_) => {}
                None => panic!("the reflectors stopped"),
            }
        }
        seen[name].clone()
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("no update for pod {name}"))
}

#[test]
fn a_pod_maps_to_the_deployment_of_its_replicaset_whatever_the_names() {
    let api = FakeApiServer::builder().controllers(false).start();
    api.apply_object(fixtures::node("n1", "8", "16Gi")).unwrap();
    api.apply_object(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    )
    .unwrap();
    // A ReplicaSet whose name does not follow the `<deployment>-<hash>` pattern.
    api.apply_object(replicaset("web-canary", Some("web")))
        .unwrap();
    api.apply_object(pod("web-canary-x1", "web-canary", "5f6d7"))
        .unwrap();
    // The control: a ReplicaSet named like a Deployment's but owned by none.
    api.apply_object(replicaset("solo-7d9f8", None)).unwrap();
    api.apply_object(pod("solo-7d9f8-x1", "solo-7d9f8", "7d9f8"))
        .unwrap();
    // A ReplicaSet the server does not have: the pod-template-hash rule.
    api.apply_object(pod("ghost-abc12-x1", "ghost-abc12", "abc12"))
        .unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = kube::Config::new(api.url().parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let (shared, _landings) = Shared::new();
        let (tx, mut updates) = mpsc::channel(1024);
        let (_stop, shutdown) = watch::channel(false);
        reflect::spawn(&client, tx, &shared, &shutdown);
        let mut stop = shutdown.clone();
        assert!(reflect::wait_synced(&shared.synced, &mut stop).await);
        let mut seen = Seen::new();
        assert_eq!(
            workload_of(&mut updates, &mut seen, "web-canary-x1").await,
            "shop/Deployment/web"
        );
        assert_eq!(
            workload_of(&mut updates, &mut seen, "solo-7d9f8-x1").await,
            "shop/ReplicaSet/solo-7d9f8"
        );
        assert_eq!(
            workload_of(&mut updates, &mut seen, "ghost-abc12-x1").await,
            "shop/Deployment/ghost"
        );
        // Watched after the start: a new ReplicaSet of the Deployment, then its pod.
        api.apply_object(replicaset("web-rollout-2", Some("web")))
            .unwrap();
        let rs_seen = async {
            let owner = fulcrum_engine::cluster::Owner {
                kind: "ReplicaSet".into(),
                name: "web-rollout-2".into(),
            };
            let no_labels = Default::default();
            while shared
                .workloads
                .resolve("shop", "-", Some(&owner), &no_labels)
                != "shop/Deployment/web"
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), rs_seen)
            .await
            .expect("the new ReplicaSet is watched");
        api.apply_object(pod("web-rollout-2-x1", "web-rollout-2", "9c8b7"))
            .unwrap();
        assert_eq!(
            workload_of(&mut updates, &mut seen, "web-rollout-2-x1").await,
            "shop/Deployment/web"
        );
    });
    // ReplicaSets were read as metadata only: lists and watches asked for
    // PartialObjectMetadata, and pods were listed after the ReplicaSets.
    let requests = api.requests();
    let rs: Vec<_> = requests
        .iter()
        .filter(|r| r.resource == "replicasets")
        .collect();
    assert!(
        rs.iter().any(|r| r.verb == "list") && rs.iter().any(|r| r.verb == "watch"),
        "{rs:#?}"
    );
    assert!(
        rs.iter()
            .all(|r| r.accept.contains("as=PartialObjectMetadata")),
        "{rs:#?}"
    );
    let first = |resource: &str| {
        requests
            .iter()
            .position(|r| r.resource == resource && r.verb == "list")
            .unwrap()
    };
    assert!(first("replicasets") < first("pods"));
}

/// A policy spec for the policy controller test (valid unless `window` is broken).
fn policy_spec(window: &str) -> Value {
    json!({
        "mode": "Enforce",
        "victims": {"podSelector": {"matchLabels": {"class": "online"}}},
        "candidates": [{"name": "batch", "podSelector": {"matchLabels": {"class": "batch"}}, "action": "Evict"}],
        "triggers": [{"name": "p99", "metric": "latency_p99_ms", "above": 250, "sustainedFor": "5s"}],
        "attribution": {"method": "Correlation", "metrics": ["cpu_usage_cores"], "window": window},
    })
}

#[test]
fn the_policy_controller_publishes_valid_policies_and_reports_validity_in_status_and_events() {
    use fulcrum::cluster::events::Recorder;
    use fulcrum::cluster::policies::{PolicySinks, watch_policies};
    use fulcrum::cluster::status::StatusBook;
    use std::sync::Arc;

    let api = FakeApiServer::builder().controllers(false).start();
    let policy =
        |name: &str, window: &str| fixtures::interference_policy(name, policy_spec(window));
    api.apply_object(policy("steady", "60s")).unwrap();
    api.apply_object(policy("broken", "60 seconds")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let names = |set: &[fulcrum_policies::InterferencePolicy]| -> Vec<String> {
        set.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    };
    rt.block_on(async {
        let config = kube::Config::new(api.url().parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let (set_tx, mut set) = watch::channel(Vec::new());
        let (stop_tx, shutdown) = watch::channel(false);
        let sinks = PolicySinks {
            set: set_tx,
            book: Arc::new(StatusBook::default()),
            recorder: Recorder::spawn(client.clone(), "test".into()),
            facts: Default::default(),
            synced: Default::default(),
            dry_run: false,
        };
        let synced = sinks.synced.clone();
        let task = tokio::spawn(watch_policies(client, sinks, shutdown.clone()));
        let mut stop = shutdown.clone();
        let listed = reflect::wait_synced(&synced, &mut stop);
        let listed = tokio::time::timeout(Duration::from_secs(30), listed).await;
        assert!(
            listed.is_ok_and(|ok| ok),
            "not listed: {:#?}",
            api.requests()
                .iter()
                .map(|r| (r.verb.clone(), r.path.clone(), r.status))
                .collect::<Vec<_>>()
        );
        assert_eq!(names(&set.borrow_and_update()), ["steady"]);
        let steady_before = set.borrow()[0].clone();
        // The invalid policy becomes valid: published with it, the other one unchanged.
        let fixed = policy("broken", "60s");
        let changed = async {
            set.changed().await.unwrap();
            set.borrow_and_update().clone()
        };
        api.apply_object(fixed).unwrap();
        let now = tokio::time::timeout(Duration::from_secs(30), changed)
            .await
            .expect("the set changes");
        assert_eq!(names(&now), ["broken", "steady"]);
        assert_eq!(
            now[1], steady_before,
            "an unchanged policy is handed over unchanged"
        );
        // A deleted policy leaves the set.
        let changed = async {
            set.changed().await.unwrap();
            set.borrow_and_update().clone()
        };
        api.delete_object("interferencepolicies", None, "steady")
            .unwrap();
        let now = tokio::time::timeout(Duration::from_secs(30), changed)
            .await
            .expect("the set changes");
        assert_eq!(names(&now), ["broken"]);
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the controller stops at shutdown")
            .unwrap();
    });
    // Status written by the reconciler with server-side apply (field manager fulcrum),
    // Ready=False naming the field while invalid, then Ready=True; an Event each time.
    let applies: Vec<Value> = api
        .requests()
        .into_iter()
        .filter(|r| {
            r.resource == "interferencepolicies"
                && r.subresource == "status"
                && r.name == "broken"
                && r.content_type.starts_with("application/apply-patch")
                && r.query_param("fieldManager").as_deref() == Some("fulcrum")
        })
        .filter_map(|r| r.body)
        .collect();
    let ready = |v: &Value| v["status"]["conditions"][0]["status"].clone();
    assert_eq!(
        applies.first().map(ready),
        Some(json!("False")),
        "{applies:#?}"
    );
    assert!(
        applies[0]["status"]["conditions"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.attribution.window"))
    );
    assert_eq!(
        applies.last().map(ready),
        Some(json!("True")),
        "{applies:#?}"
    );
    let wait_event = |reason: &'static str| {
        api.wait_for_blocking(
            move |api| {
                api.list_objects("events.events.k8s.io", None)
                    .iter()
                    .any(|e| e["reason"] == reason && e["regarding"]["name"] == "broken")
            },
            Duration::from_secs(30),
        )
    };
    assert!(wait_event("PolicyInvalid") && wait_event("PolicyValid"));
}
