use super::*;

fn node(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        ready: true,
        ..NodeInfo::default()
    }
}

fn pod(ns: &str, name: &str, uid: &str, node: &str) -> PodInfo {
    PodInfo {
        namespace: ns.into(),
        name: name.into(),
        uid: uid.into(),
        node_name: Some(node.into()),
        ..PodInfo::default()
    }
}

#[test]
fn pods_attach_to_nodes_in_any_order_and_ids_are_reused() {
    let mut c = ClusterIndex::new();
    let (early, _) = c.upsert_pod(pod("a", "early", "u1", "n1"));
    let (n1, change) = c.upsert_node(node("n1"));
    assert_eq!(change, Change::Added);
    assert_eq!(c.node_pods(n1), &[early]);
    let (late, _) = c.upsert_pod(pod("a", "late", "u2", "n1"));
    assert_eq!(c.node_pods(n1), &[early, late]);
    assert_eq!(c.pod_id("a", "late"), Some(late));
    assert_eq!(
        c.upsert_pod(pod("a", "late", "u3", "n1")).1,
        Change::Replaced
    );
    assert_eq!(c.remove_pod("a", "early"), Some(early));
    assert_eq!(c.node_pods(n1), &[late]);
    assert_eq!(c.pod_count(), 1);
    let (reused, _) = c.upsert_pod(pod("b", "new", "u4", "n1"));
    assert_eq!(reused, early, "freed ids are reused");
    c.remove_node("n1");
    assert_eq!(c.pod_node(late), None);
}

/// A replica: its strings and labels repeat those of its workload's other pods.
fn replica(ns: &str, workload: &str, i: usize) -> PodInfo {
    PodInfo {
        labels: Arc::new([("app".to_owned(), workload.to_owned())].into()),
        workload: format!("{ns}/Deployment/{workload}").into(),
        owner: Some(Owner {
            kind: "ReplicaSet".into(),
            name: format!("{workload}-5d8f").into(),
        }),
        tolerations: vec![Toleration {
            key: "node.kubernetes.io/not-ready".into(),
            operator: "Exists".into(),
            value: String::new(),
            effect: "NoExecute".into(),
        }]
        .into(),
        ..pod(ns, &format!("{workload}-{i}"), &format!("u{i}"), "n1")
    }
}

#[test]
fn replicas_share_one_copy_and_copies_no_pod_uses_are_freed() {
    let mut c = ClusterIndex::new();
    c.upsert_node(node("n1"));
    for i in 0..100 {
        c.upsert_pod(replica("shop", "web", i));
    }
    let id = |c: &ClusterIndex, i: usize| c.pod_id("shop", &format!("web-{i}")).unwrap();
    let (a, b) = (
        c.pod_info(id(&c, 0)).unwrap(),
        c.pod_info(id(&c, 99)).unwrap(),
    );
    assert!(Arc::ptr_eq(&a.labels, &b.labels));
    assert!(Arc::ptr_eq(&a.tolerations, &b.tolerations));
    assert!(a.workload.ptr_eq(&b.workload) && a.namespace.ptr_eq(&b.namespace));
    // namespace, workload, node, owner kind and name; labels; node selector; tolerations.
    assert_eq!(c.shared_values(), 8);
    // Many workloads come and go: their copies are freed without an explicit sweep.
    for w in 0..3_000 {
        let workload = format!("batch-{w}");
        c.upsert_pod(replica(&format!("ns-{w}"), &workload, w));
        c.remove_pod(&format!("ns-{w}"), &format!("{workload}-{w}"));
    }
    // Four new copies per pod (namespace, workload, owner name, labels), swept every
    // 1,024 removals.
    assert!(
        c.shared_values() <= 8 + 4 * 1_024,
        "{} copies",
        c.shared_values()
    );
    c.sweep_shared();
    assert_eq!(c.shared_values(), 8, "only the replicas' copies are left");
    // The control: copies a pod still uses are kept.
    for i in 0..100 {
        c.remove_pod("shop", &format!("web-{i}"));
    }
    c.sweep_shared();
    assert_eq!(c.shared_values(), 0);
    assert_eq!(c.pod_count(), 0);
}

#[test]
fn tolerations_follow_kubernetes_rules() {
    let taint = Taint {
        key: "gpu".into(),
        value: "a100".into(),
        effect: "NoSchedule".into(),
    };
    let tol = |key: &str, op: &str, value: &str, effect: &str| Toleration {
        key: key.into(),
        operator: op.into(),
        value: value.into(),
        effect: effect.into(),
    };
    assert!(tol("gpu", "Equal", "a100", "NoSchedule").tolerates(&taint));
    assert!(tol("gpu", "Exists", "", "").tolerates(&taint));
    assert!(tol("", "Exists", "", "").tolerates(&taint));
    assert!(!tol("gpu", "Equal", "h100", "").tolerates(&taint));
    assert!(!tol("gpu", "Exists", "", "NoExecute").tolerates(&taint));
    assert!(!tol("other", "Exists", "", "").tolerates(&taint));
}
