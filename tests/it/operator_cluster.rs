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
                    seen.insert(p.name.clone(), p.workload.clone());
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
            while shared.workloads.len() < 2 {
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
