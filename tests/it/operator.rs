//! End-to-end tests of `fulcrum run` in operator mode: the real binary against the fake
//! Kubernetes API server and a real broker (tansu), samples produced with kcat. Every test
//! checks what the API server received.

use std::path::PathBuf;
use std::time::Duration;

use fulcrum_fake_apiserver::{FakeApiServer, Fault, Matcher, RecordedRequest};
use serde_json::Value;

use crate::operator_manifests::{alert_metrics, allowed, cluster_role_rules, granted};
use crate::scenario::{Scenario, temp_dir};
use crate::support::{
    Broker, Fulcrum, committed, create_topics, end_offsets, eventually, kcat_produce,
};

pub(crate) const TOPIC: &str = "samples";
pub(crate) const MINUTE: Duration = Duration::from_secs(60);
pub(crate) const CULPRIT: &str = "sort-exec-0";

/// The scenario's policy with a short cooldown (the steering taint lasts that long).
const POLICY: &str = r#"
apiVersion: fulcrum.dev/v1alpha1
kind: InterferencePolicy
metadata: {name: protect-online}
spec:
  mode: MODE
  nodeSelector: {matchLabels: {pool: colocated}}
  victims: {podSelector: {matchLabels: {fulcrum.dev/class: online}}}
  candidates:
    - {name: big-data, podSelector: {matchLabels: {fulcrum.dev/class: batch}}, action: Migrate}
    - {name: ai, podSelector: {matchLabels: {fulcrum.dev/class: ai}}, action: Evict}
  triggers:
    - {name: p99-slo, metric: latency_p99_ms, above: 250, sustainedFor: 5s}
  attribution:
    method: Correlation
    metrics: [mem_bw_bytes_per_sec, cpu_usage_cores, llc_miss_rate]
    window: 90s
    minCorrelation: 0.5
  recovery: {clearFor: 5s}
  limits: {cooldown: 3s, minPodAge: 1s}
  eviction: {gracePeriodSeconds: 7}
"#;

pub(crate) struct Setup {
    pub(crate) admin_port: u16,
    pub(crate) broker: Broker,
    pub(crate) api: FakeApiServer,
    pub(crate) dir: PathBuf,
    pub(crate) lines: Vec<(String, String)>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A broker with the topics, the fake API server holding the antagonist scenario's cluster
/// and the policy in `mode`, and the scenario's samples: one tick every 2 s, starting just
/// after the pods were created (the API server stamps creation time and UID; the samples
/// carry the UIDs it gave).
pub(crate) fn setup(name: &str, mode: &str) -> Setup {
    setup_with_ticks(name, mode, 60)
}

/// [`setup`] with `ticks` ticks of samples.
pub(crate) fn setup_with_ticks(name: &str, mode: &str, ticks: i64) -> Setup {
    let broker = Broker::start();
    create_topics(
        &broker.addr(),
        &[(TOPIC, 1), ("samples.dlq", 1), ("fulcrum.decisions", 1)],
    );
    let api = FakeApiServer::start();
    let mut scenario = Scenario::new(2, Some(5));
    scenario.ticks = ticks;
    scenario.period_ms = 2000;
    api.apply_manifest(&scenario.cluster().to_string())
        .expect("cluster loads");
    scenario.t0 = now_ms() + 1000;
    let uids: Vec<(String, String)> = api
        .list_objects("pods", None)
        .iter()
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap_or_default();
            let uid = p["metadata"]["uid"].as_str().unwrap_or_default();
            (format!("\"uid-{name}\""), format!("\"{uid}\""))
        })
        .collect();
    let lines = scenario
        .keyed_events()
        .into_iter()
        .map(|(k, mut line)| {
            for (from, to) in &uids {
                line = line.replace(from, to);
            }
            (k, line)
        })
        .collect();
    api.apply_manifest(&POLICY.replace("MODE", mode))
        .expect("policy loads");
    let dir = temp_dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    api.write_kubeconfig(dir.join("kubeconfig")).unwrap();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    Setup {
        admin_port,
        broker,
        api,
        dir,
        lines,
    }
}

impl Setup {
    pub(crate) fn spawn(&self, group: &str, extra: &[&str]) -> Fulcrum {
        self.spawn_with_env(group, extra, &[])
    }

    fn spawn_with_env(&self, group: &str, extra: &[&str], env: &[(&str, String)]) -> Fulcrum {
        let kubeconfig = self.dir.join("kubeconfig").display().to_string();
        let admin = format!("127.0.0.1:{}", self.admin_port);
        let mut args: Vec<String> = ["run", "--kubeconfig", &kubeconfig, "--admin-addr", &admin]
            .map(String::from)
            .to_vec();
        args.extend(crate::support::kafka_run_args(
            &self.broker.addr(),
            TOPIC,
            group,
        ));
        args.extend(extra.iter().map(|s| s.to_string()));
        Fulcrum::spawn_with_env(&args, env)
    }

    /// `GET path` on the admin server: (status code, body).
    pub(crate) fn admin_get(&self, path: &str) -> (u16, String) {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.admin_port)).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: fulcrum\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let code = response
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (code, body)
    }

    pub(crate) fn evictions(&self) -> Vec<RecordedRequest> {
        self.api
            .requests()
            .into_iter()
            .filter(|r| r.subresource == "eviction")
            .collect()
    }

    pub(crate) fn wait(&self, what: &str, predicate: impl Fn(&FakeApiServer) -> bool) {
        assert!(
            self.api.wait_for_blocking(predicate, MINUTE),
            "timed out waiting for {what}"
        );
    }

    fn policy_status(&self) -> Value {
        self.api
            .get_object("interferencepolicies", None, "protect-online")
            .map(|p| p["status"].clone())
            .unwrap_or(Value::Null)
    }

    fn events_with(&self, reason: &str) -> Vec<Value> {
        self.api
            .list_objects("events.events.k8s.io", None)
            .into_iter()
            .filter(|e| e["reason"] == reason)
            .collect()
    }
}

pub(crate) fn node_has_steer_taint(api: &FakeApiServer, node: &str) -> bool {
    api.get_object("nodes", None, node).is_some_and(|n| {
        n["spec"]["taints"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["key"] == "fulcrum.dev/steer-away"))
    })
}

pub(crate) fn actuated(v: &Value) -> bool {
    v["kind"] == "Actuated" || v["kind"] == "NotActuated"
}

#[test]
fn the_operator_migrates_the_culprit_once_and_reports_it_in_the_cluster() {
    let s = setup("operator-enforce", "Enforce");
    let uid = s.api.get_object("pods", Some("spark"), CULPRIT).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut fulcrum = s.spawn("op", &[]);
    // One malformed message first: dead-lettered and counted by its reason.
    let garbage = [("node-0".to_owned(), "not json".to_owned())];
    kcat_produce(&s.broker.addr(), TOPIC, &garbage);
    kcat_produce(&s.broker.addr(), TOPIC, &s.lines);
    let done = fulcrum.wait_for(MINUTE, "the migration", actuated);
    assert_eq!(done["kind"], "Actuated", "{done}");
    assert_eq!(done["target"], format!("spark/{CULPRIT}"));

    // Exactly one eviction, with a policy/v1 body in camelCase, the UID precondition and
    // the policy's grace period.
    let evictions = s.api.evictions();
    assert_eq!(evictions.len(), 1, "{evictions:#?}");
    let e = &evictions[0];
    assert_eq!((e.namespace.as_str(), e.pod.as_str()), ("spark", CULPRIT));
    assert!(e.delete_options_camel_case && !e.delete_options_snake_case);
    assert_eq!(e.precondition_uid.as_deref(), Some(uid.as_str()));
    assert_eq!(e.grace_period_seconds, Some(7));
    assert_eq!(e.status, 201);
    assert_eq!(e.body["kind"], "Eviction");

    // The replacement is scheduled away from the tainted node, and that is reported.
    // (It may be printed before the Actuated line: the reflector can see the new pod bound
    // before the eviction's answer is reported.)
    let replacement = |v: &Value| v["kind"] == "Replacement";
    let earlier = fulcrum
        .seen
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(replacement);
    let landed =
        earlier.unwrap_or_else(|| fulcrum.wait_for(MINUTE, "the replacement", replacement));
    assert_eq!(landed["node"], "node-1", "{landed}");
    assert_eq!(landed["evicted"], format!("spark/{CULPRIT}"));
    // ...and recorded on the audit topic, keyed by the source node (not as an action: the
    // restart below restores from the same topic).
    let audit_record = || {
        crate::support::read_all(&s.broker.addr(), "fulcrum.decisions")
            .into_iter()
            .filter(|r| r.2.as_deref() == Some(b"node-0".as_slice()))
            .filter_map(|r| serde_json::from_slice::<Value>(&r.3).ok())
            .find(|v| v["schema"] == "fulcrum.replacements/v1")
    };
    eventually(MINUTE, "the replacement audit record", || {
        audit_record().is_some()
    });
    let record = audit_record().unwrap();
    assert_eq!(record["node"], "node-1", "{record}");
    assert_eq!(record["evicted"], format!("spark/{CULPRIT}"));
    assert_eq!(record["sourceNode"], "node-0");
    s.wait("the landing Event", |api| {
        api.list_objects("events.events.k8s.io", None)
            .iter()
            .any(|e| {
                e["note"]
                    .as_str()
                    .is_some_and(|n| n.contains("landed on node-1"))
            })
    });
    let named = s.api.wait_for_blocking(
        |_| {
            s.policy_status()["lastAction"]["reason"]
                .as_str()
                .is_some_and(|r| r.ends_with("replacement landed on node-1"))
        },
        MINUTE,
    );
    assert!(
        named,
        "lastAction does not name the destination: {}",
        s.policy_status()
    );

    // The steering taint was set on the source node before the eviction, other taints
    // untouched, and it is removed after the cooldown.
    let patches: Vec<RecordedRequest> = s
        .api
        .requests()
        .into_iter()
        .filter(|r| r.resource == "nodes" && r.verb == "patch" && r.name == "node-0")
        .collect();
    let first = patches.first().expect("a node patch");
    let taints = first.body.as_ref().unwrap()["spec"]["taints"].clone();
    assert!(
        taints
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "fulcrum.dev/steer-away"
                && t["effect"] == "PreferNoSchedule"
                && t["value"] == "protect-online"),
        "{taints}"
    );
    assert!(first.body.as_ref().unwrap()["metadata"]["resourceVersion"].is_string());
    s.wait("the steering taint to be removed", |api| {
        !node_has_steer_taint(api, "node-0")
            && api
                .requests()
                .iter()
                .filter(|r| r.resource == "nodes" && r.verb == "patch")
                .count()
                >= 2
    });
    let node = s.api.get_object("nodes", None, "node-0").unwrap();
    assert!(node["metadata"]["annotations"]["fulcrum.dev/steer-until"].is_null());

    // Policy status (server-side apply, field manager fulcrum) and a pod Event.
    s.wait("the policy status", |_| {
        s.policy_status()["actions"]["migrated"] == 1
    });
    let status = s.policy_status();
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "True");
    assert_eq!(status["lastAction"]["pod"], format!("spark/{CULPRIT}"));
    let applies = s.api.requests().into_iter().any(|r| {
        r.resource == "interferencepolicies"
            && r.subresource == "status"
            && r.content_type.starts_with("application/apply-patch")
            && r.query_param("fieldManager").as_deref() == Some("fulcrum")
    });
    assert!(applies, "status written with server-side apply by fulcrum");
    s.wait("the pod Event", |_| {
        s.events_with("InterferenceMigrated")
            .iter()
            .any(|e| e["action"] == "Migrate")
    });
    let events = s.events_with("InterferenceMigrated");
    let event = events
        .iter()
        .find(|e| e["action"] == "Migrate")
        .expect("the decision's Event");
    assert_eq!(event["regarding"]["name"], CULPRIT);
    assert_eq!(event["reportingController"], "fulcrum.dev/controller");
    assert_eq!(event["related"]["namespace"], "shop");

    // The admin server: alive, ready, and the metrics count what happened.
    assert_eq!(s.admin_get("/healthz").0, 200);
    assert_eq!(s.admin_get("/readyz").0, 200);
    let (code, metrics) = s.admin_get("/metrics");
    assert_eq!(code, 200);
    for line in [
        "fulcrum_eviction_requests_total{code=\"201\"} 1",
        "fulcrum_decisions_total{policy=\"protect-online\",action=\"Migrate\",outcome=\"Executed\"} 1",
        "fulcrum_detections_total{policy=\"protect-online\"} 1",
        "fulcrum_tracked_pods ",
        "fulcrum_tracked_nodes 2",
        "fulcrum_api_request_duration_seconds_count{verb=\"evict\"} 1",
        "fulcrum_build_info{version=",
        // The decision reached the actuator once; lag of the one partition; no breaker.
        "fulcrum_decision_latency_seconds_count 1",
        "fulcrum_consumer_lag{partition=\"0\"} ",
        "fulcrum_breaker_open{breaker=\"storm\"} 0",
        "fulcrum_breaker_open{breaker=\"stale_feed\"} 0",
        "fulcrum_dead_letters_total{reason=\"not_json\"} 1",
        "fulcrum_dead_letters_total{reason=\"too_large\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
    // Every metric the shipped alerts use is exported.
    let alerts = alert_metrics();
    assert!(alerts.len() >= 3, "{alerts:?}");
    for name in &alerts {
        assert!(
            metrics.contains(name.as_str()),
            "deploy/monitoring alerts on {name}, which /metrics does not export"
        );
    }
    crate::accounting::assert_samples_accounted(&metrics);

    // A watch answered 410 mid-run: the reflectors list again and nothing is done twice.
    let lists = |api: &FakeApiServer| {
        api.requests()
            .iter()
            .filter(|r| r.resource == "pods" && r.verb == "list")
            .count()
    };
    let before = lists(&s.api);
    s.api.expire_watches();
    s.wait("a re-list", |api| lists(api) > before);
    kcat_produce(&s.broker.addr(), TOPIC, &s.lines[s.lines.len() - 4..]);

    // SIGTERM: exit 0 with offsets committed, still one eviction.
    let (_, stopped, status) = fulcrum.stop_with_status();
    assert!(status.success(), "{status:?}");
    assert!(stopped["feed"]["offsets_stored"].as_u64().unwrap() > 0);
    // Committed up to what the event-time watermark applied (the last `lateness` of
    // samples, dated ahead of the wall clock here, is read again by the next run).
    let committed = committed(&s.broker.addr(), "op", TOPIC, 1)[0];
    let end = end_offsets(&s.broker.addr(), TOPIC, 1)[0];
    assert!(
        committed > end / 2 && committed <= end,
        "{committed} of {end}"
    );
    assert_eq!(s.evictions().len(), 1);

    // A restart that reads every sample again (a new group) posts no second eviction (the
    // culprit is gone by now; the restore itself is checked with a control in the dry-run
    // test).
    let again = s.spawn("op-again", &[]);
    eventually(MINUTE, "the restart to apply the samples again", || {
        crate::support::committed(&s.broker.addr(), "op-again", TOPIC, 1)[0] >= committed
    });
    let (seen, _, status) = again.stop_with_status();
    assert!(status.success());
    assert!(
        !seen.iter().any(|l| l.contains("\"Actuated\"")),
        "{seen:#?}"
    );
    assert_eq!(s.evictions().len(), 1);

    // Every request made is allowed by the shipped, enumerated RBAC, and every rule of it
    // was used: the role grants exactly what the operator calls.
    let rules = cluster_role_rules();
    let used = s.api.rbac_rules();
    assert!(used.len() >= 8, "{used:?}");
    for (verb, group, resource, _) in &used {
        assert!(
            allowed(&rules, verb, group, resource),
            "deploy/rbac.yaml does not allow {verb} {group}/{resource}"
        );
    }
    for (verb, group, resource) in granted(&rules) {
        assert!(
            used.iter()
                .any(|(v, g, r, _)| (v, g, r) == (&verb, &group, &resource)),
            "deploy/rbac.yaml grants {verb} {group}/{resource}, which the operator never used: {used:?}"
        );
    }
}

/// A TCP listener standing in for an OTLP collector: its URL, and the first bytes of the
/// first connection.
fn otlp_listener() -> (String, std::sync::mpsc::Receiver<Vec<u8>>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut preface = vec![0; 24];
            if stream.read_exact(&mut preface).is_ok() {
                let _ = tx.send(preface);
            }
        }
    });
    (url, rx)
}

#[test]
fn dry_run_and_invalid_policies_never_evict() {
    let s = setup("operator-dry-run", "Enforce");
    let invalid = POLICY
        .replace("protect-online", "broken")
        .replace("MODE", "Enforce")
        .replace("window: 90s", "window: 90 seconds");
    s.api.apply_manifest(&invalid).unwrap();
    // A steering taint left behind by an earlier run, expired: removed at start-up; the
    // other taint on the node is kept.
    let mut node = s.api.get_object("nodes", None, "node-1").unwrap();
    node["spec"]["taints"] = serde_json::json!([
        {"key": "fulcrum.dev/steer-away", "value": "old", "effect": "PreferNoSchedule"},
        {"key": "example.com/maintenance", "value": "soon", "effect": "PreferNoSchedule"}
    ]);
    node["metadata"]["annotations"] =
        serde_json::json!({"fulcrum.dev/steer-until": "2020-01-01T00:00:00Z"});
    s.api.apply_object(node).unwrap();
    // An OTLP endpoint: spans are exported over gRPC (HTTP/2) to it.
    let (collector, otlp) = otlp_listener();
    let mut fulcrum = s.spawn_with_env(
        "dry",
        &["--dry-run"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", collector)],
    );
    kcat_produce(&s.broker.addr(), TOPIC, &s.lines);
    let d = fulcrum.wait_for(MINUTE, "a dry-run decision", |v| {
        v["kind"] == "Decision" && v["outcome"] == "DryRun"
    });
    assert_eq!(d["policy"], "protect-online");
    s.wait("the DryRun Event", |_| {
        !s.events_with("InterferenceDryRun").is_empty()
    });
    s.wait("the invalid policy's status", |api| {
        api.get_object("interferencepolicies", None, "broken")
            .is_some_and(|p| p["status"]["conditions"][0]["status"] == "False")
    });
    s.wait("the PolicyInvalid Event", |_| {
        !s.events_with("PolicyInvalid").is_empty()
    });
    s.wait("the leftover taint to be removed", |api| {
        !node_has_steer_taint(api, "node-1")
    });
    let node = s.api.get_object("nodes", None, "node-1").unwrap();
    assert_eq!(
        node["spec"]["taints"][0]["key"], "example.com/maintenance",
        "{node}"
    );
    assert!(node["metadata"]["annotations"]["fulcrum.dev/steer-until"].is_null());
    assert_eq!(s.admin_get("/readyz").0, 200);
    let broken = s
        .api
        .get_object("interferencepolicies", None, "broken")
        .unwrap();
    let condition = &broken["status"]["conditions"][0];
    assert_eq!(condition["reason"], "Invalid");
    assert!(
        condition["message"]
            .as_str()
            .unwrap()
            .contains("spec.attribution.window"),
        "{condition}"
    );
    let (seen, _, status) = fulcrum.stop_with_status();
    assert!(status.success());
    assert!(s.evictions().is_empty(), "no eviction POST in dry-run");
    let preface = otlp.recv_timeout(MINUTE).expect("an OTLP connection");
    assert!(preface.starts_with(b"PRI * HTTP/2.0"), "{preface:?}");
    assert!(
        !seen.iter().any(|l| l.contains("\"policy\":\"broken\"")),
        "the invalid policy never decides"
    );
    let applied = committed(&s.broker.addr(), "dry", TOPIC, 1)[0];

    // A restart that reads every sample again (a new group) restores the decision from the
    // audit topic and does not decide about the same pod twice...
    let target = |v: &Value| {
        v["kind"] == "Decision" && v["target"] == d["target"] && v["outcome"] != "Blocked"
    };
    let again = s.spawn("dry-again", &["--dry-run"]);
    eventually(MINUTE, "the restart to apply the samples again", || {
        committed(&s.broker.addr(), "dry-again", TOPIC, 1)[0] >= applied
    });
    let (seen, _, status) = again.stop_with_status();
    assert!(status.success());
    let repeated: Vec<&String> = seen
        .iter()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| target(&v)))
        .collect();
    assert!(repeated.is_empty(), "{repeated:#?}");
    // ...while the same restart without that audit history decides again (the control).
    // This run has no --dry-run: the policy itself is switched to DryRun.
    let mut policy = s
        .api
        .get_object("interferencepolicies", None, "protect-online")
        .unwrap();
    policy["spec"]["mode"] = Value::from("DryRun");
    s.api.apply_object(policy).unwrap();
    create_topics(&s.broker.addr(), &[("audit-control", 1)]);
    let mut control = s.spawn("dry-control", &["--audit-topic", "audit-control"]);
    let again = control.wait_for(MINUTE, "the decision without history", target);
    assert_eq!(again["outcome"], "DryRun");
    assert_eq!(again["mode"], "DryRun");
    let (_, _, status) = control.stop_with_status();
    assert!(status.success());
    assert!(
        s.evictions().is_empty(),
        "a DryRun policy never posts an eviction"
    );
}

#[test]
fn a_pdb_refusal_is_blocked_then_retried_and_server_errors_are_retried() {
    let s = setup("operator-retries", "Enforce");
    let eviction = || Matcher::resource("pods").subresource("eviction");
    s.api.inject(Fault::status(eviction(), 429));
    let mut fulcrum = s.spawn("retry", &[]);
    // Samples until the first decision; the rest later, one tick at a time.
    let (first, rest) = s.lines.split_at(s.lines.len() * 3 / 4);
    kcat_produce(&s.broker.addr(), TOPIC, first);
    let blocked = fulcrum.wait_for(MINUTE, "the refused eviction", actuated);
    assert_eq!(blocked["kind"], "NotActuated", "{blocked}");
    assert_eq!(blocked["error"], "Blocked");
    s.wait("the Blocked Event", |_| {
        !s.events_with("InterferenceBlocked").is_empty()
    });
    // The next attempt meets two server errors, retried with backoff, then succeeds.
    s.api.inject(Fault::status(eviction(), 500).times(2));
    let mut done = None;
    for tick in rest.chunks(3) {
        kcat_produce(&s.broker.addr(), TOPIC, tick);
        let v = fulcrum.wait_for(MINUTE, "an attempt", |v| {
            actuated(v) || v["kind"] == "Decision"
        });
        if v["kind"] == "Actuated" {
            done = Some(v);
            break;
        }
    }
    assert!(
        done.is_some(),
        "executed after the refusal: {:#?}",
        fulcrum.seen
    );
    let codes: Vec<u16> = s.evictions().iter().map(|r| r.status).collect();
    assert_eq!(codes, [429, 500, 500, 201]);
    let (_, _, status) = fulcrum.stop_with_status();
    assert!(status.success());
}
