//! Fault injection end to end: the real `fulcrum run` binary in operator mode against a
//! real broker (tansu, behind the cuttable proxy of `support::Broker`) and the fake
//! Kubernetes API server with scripted faults. Every test asserts on what the API server
//! received and on the audit topic: no sample lost, no duplicate action, no action on
//! another pod. (Watches closed or answered 410, SIGTERM during an eviction and 404/409
//! answers are tested in `operator.rs`.)

use std::time::Duration;

use fulcrum_fake_apiserver::{FakeApiServer, Fault, Matcher};
use serde_json::Value;

use crate::operator::{CULPRIT, MINUTE, Setup, TOPIC, actuated, node_has_steer_taint, setup};
use crate::support::{committed, create_topics, end_offsets, eventually, kcat_produce, read_all};

const AUDIT: &str = "fulcrum.decisions";

fn eviction() -> Matcher {
    Matcher::resource("pods").subresource("eviction")
}

fn culprit() -> String {
    format!("spark/{CULPRIT}")
}

/// The audit topic: (decision records, actuation records).
fn audit(s: &Setup) -> (Vec<Value>, Vec<Value>) {
    read_all(&s.broker.addr(), AUDIT)
        .iter()
        .filter_map(|r| serde_json::from_slice::<Value>(&r.3).ok())
        .partition(|v| v["schema"] != "fulcrum.actuations/v1")
}

/// Executed decision records (intents) in `decisions`.
fn intents(decisions: &[Value]) -> Vec<&Value> {
    decisions
        .iter()
        .filter(|d| d["outcome"] == "Executed")
        .collect()
}

/// Pods whose eviction the API server carried out (2xx), as `namespace/name`.
fn evicted(api: &FakeApiServer) -> Vec<String> {
    api.evictions()
        .iter()
        .filter(|e| (200..300).contains(&e.status))
        .map(|e| format!("{}/{}", e.namespace, e.pod))
        .collect()
}

/// Eviction requests received so far (answered or not).
fn eviction_requests(api: &FakeApiServer) -> usize {
    api.count_requests(|r| r.subresource == "eviction")
}

/// `GET path` on the admin server: its status code (0 while it is not listening yet).
fn admin_code(s: &Setup, path: &str) -> u16 {
    if std::net::TcpStream::connect(("127.0.0.1", s.admin_port)).is_err() {
        return 0;
    }
    s.admin_get(path).0
}

/// A value of `/metrics` (the line starting with `series `; 0 while the admin server is
/// not listening yet).
fn metric(s: &Setup, series: &str) -> f64 {
    if std::net::TcpStream::connect(("127.0.0.1", s.admin_port)).is_err() {
        return 0.0;
    }
    let (_, body) = s.admin_get("/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Samples accepted by the running operator.
fn accepted(s: &Setup) -> u64 {
    metric(s, "fulcrum_samples_total{result=\"accepted\"}") as u64
}

/// Samples in the messages `lines` (a batch message holds several).
fn samples_in(lines: &[(String, String)]) -> u64 {
    lines
        .iter()
        .map(|(_, v)| {
            serde_json::from_str::<Value>(v)
                .ok()
                .and_then(|v| v["samples"].as_array().map(Vec::len))
                .unwrap_or(1) as u64
        })
        .sum()
}

fn uid_of(api: &FakeApiServer, namespace: &str, name: &str) -> String {
    api.get_object("pods", Some(namespace), name).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Checks the audit topic holds `intents` executed decisions, all about the culprit, and
/// exactly one actuation record, `Done`, for it.
fn assert_one_action_in_audit(s: &Setup, expected_intents: usize) {
    let (decisions, actuations) = audit(s);
    let executed = intents(&decisions);
    assert_eq!(executed.len(), expected_intents, "{executed:#?}");
    assert!(executed.iter().all(|d| d["target"] == culprit()));
    assert_eq!(actuations.len(), 1, "{actuations:#?}");
    assert_eq!(actuations[0]["result"], "Done");
    assert_eq!(actuations[0]["target"], culprit());
}

#[test]
fn a_kill_between_the_eviction_request_and_its_outcome_neither_repeats_nor_loses_the_action() {
    let s = setup("faults-kill", "Enforce");
    let uid = uid_of(&s.api, "spark", CULPRIT);
    // The API server holds the eviction: the operator is killed while it waits.
    s.api
        .inject(Fault::delay(eviction(), Duration::from_secs(120)));
    let first = s.spawn("op", &[]);
    kcat_produce(&s.broker.addr(), TOPIC, &s.lines);
    s.wait("the eviction request", |api| eviction_requests(api) == 1);

    first.kill();
    // The intent is in the audit topic with the target's UID, its outcome is not, and the
    // eviction was not carried out: the window between the two records.
    let (decisions, actuations) = audit(&s);
    let executed = intents(&decisions);
    assert_eq!(executed.len(), 1, "{decisions:#?}");
    assert_eq!(executed[0]["target"], culprit());
    assert_eq!(executed[0]["target_uid"], uid.as_str());
    assert!(actuations.is_empty(), "{actuations:#?}");
    assert!(evicted(&s.api).is_empty());
    let resumed_from = committed(&s.broker.addr(), "op", TOPIC, 1)[0].max(0);
    let end = end_offsets(&s.broker.addr(), TOPIC, 1)[0];

    // The restart finds the culprit with the same UID: the action did not happen, so it is
    // not counted and the episode decides again; the eviction happens once.
    let mut second = s.spawn("op", &[]);
    let done = second.wait_for(MINUTE, "the eviction after the restart", actuated);
    assert_eq!(done["kind"], "Actuated", "{done}");
    assert_eq!(done["target"], culprit());

    let after = samples_in(&s.lines[resumed_from as usize..]);
    eventually(MINUTE, "every sample after the committed offset", || {
        accepted(&s) >= after
    });
    let (seen, stopped, status) = second.stop_with_status();
    assert!(status.success());
    // No sample lost: the restart read exactly the messages after the committed offset.
    assert_eq!(stopped["feed"]["messages"], end - resumed_from, "{stopped}");
    assert_eq!(stopped["feed"]["samples"], after);
    assert_eq!(
        seen.iter().filter(|l| l.contains("\"Actuated\"")).count(),
        1
    );
    assert_eq!(evicted(&s.api), [culprit()]);
    let uids: Vec<Option<String>> = s
        .api
        .evictions()
        .iter()
        .map(|e| e.precondition_uid.clone())
        .collect();
    assert_eq!(uids, [Some(uid)]);
    assert_one_action_in_audit(&s, 2);

    // A replica that reads every sample again (a new group) finds both intents settled
    // (one Done, one whose pod is gone): nothing is repeated.

    let requests = eviction_requests(&s.api);
    let third = s.spawn("op-fresh", &[]);
    let all = samples_in(&s.lines);
    eventually(MINUTE, "the fresh group to apply every sample", || {
        accepted(&s) >= all
    });
    let (seen, stopped, status) = third.stop_with_status();
    assert!(status.success());
    assert_eq!(stopped["feed"]["restored"], 2, "{stopped}");
    assert!(
        !seen.iter().any(|l| l.contains("\"Actuated\"")),
        "{seen:#?}"
    );
    assert_eq!(eviction_requests(&s.api), requests);
}

#[test]
fn a_broker_outage_under_the_running_operator_loses_no_sample_and_acts_once() {
    let s = setup("faults-broker", "Enforce");
    let mut fulcrum = s.spawn("op", &[]);
    // Five quiet ticks before the outage, the interference after it.
    let (before, after) = s.lines.split_at(10);
    kcat_produce(&s.broker.addr(), TOPIC, before);
    eventually(MINUTE, "readiness", || admin_code(&s, "/readyz") == 200);
    s.broker.go_away();
    eventually(MINUTE, "readiness to go false", || {
        admin_code(&s, "/readyz") == 503
    });
    assert_eq!(
        s.admin_get("/healthz").0,
        200,
        "live while the broker is away"
    );
    assert!(fulcrum.alive());
    s.broker.come_back();
    kcat_produce(&s.broker.addr(), TOPIC, after);
    eventually(MINUTE, "readiness to come back", || {
        admin_code(&s, "/readyz") == 200
    });
    let done = fulcrum.wait_for(MINUTE, "the action", actuated);
    assert_eq!(done["kind"], "Actuated", "{done}");
    assert_eq!(done["target"], culprit());
    let all = samples_in(&s.lines);
    eventually(MINUTE, "every sample", || accepted(&s) >= all);
    let (seen, stopped, status) = fulcrum.stop_with_status();
    assert!(status.success());
    // Every message consumed exactly once across the outage.
    assert_eq!(stopped["feed"]["messages"], s.lines.len(), "{stopped}");
    assert_eq!(stopped["feed"]["samples"], all);
    assert_eq!(
        seen.iter().filter(|l| l.contains("\"Actuated\"")).count(),
        1
    );
    assert_eq!(evicted(&s.api), [culprit()]);
    assert_one_action_in_audit(&s, 1);
}

#[test]
fn api_server_errors_on_list_watch_and_eviction_are_retried_and_the_action_happens_once() {
    let s = setup("faults-api-errors", "Enforce");
    // Pods cannot be listed until the faults are cleared; watches and node lists fail too.
    let pods_list = || Matcher::resource("pods").verb("list");
    s.api.inject(Fault::status(pods_list(), 500).times(1_000));
    s.api
        .inject(Fault::status(Matcher::resource("nodes").verb("watch"), 429).times(2));
    s.api
        .inject(Fault::status(Matcher::resource("nodes").verb("list"), 503).times(2));
    let mut fulcrum = s.spawn("op", &[]);
    let failed_lists = |api: &FakeApiServer| {
        api.count_requests(|r| r.resource == "pods" && r.verb == "list" && r.status == 500)
    };
    s.wait("two failed pod lists", |api| failed_lists(api) >= 2);
    assert_eq!(s.admin_get("/healthz").0, 200, "live while the API fails");
    let (code, why) = s.admin_get("/readyz");
    assert_eq!(code, 503, "{why}");
    assert!(why.contains("pods"), "{why}");
    // The API server recovers; the eviction still meets two server errors.
    s.api.clear_faults();
    s.api.inject(Fault::status(eviction(), 500).times(2));
    kcat_produce(&s.broker.addr(), TOPIC, &s.lines);
    eventually(MINUTE, "readiness", || admin_code(&s, "/readyz") == 200);
    let done = fulcrum.wait_for(MINUTE, "the action", actuated);
    assert_eq!(done["kind"], "Actuated", "{done}");
    let codes: Vec<u16> = s.api.evictions().iter().map(|e| e.status).collect();
    assert_eq!(codes, [500, 500, 201]);
    assert_eq!(evicted(&s.api), [culprit()]);
    let failed = failed_lists(&s.api);
    let (_, _, status) = fulcrum.stop_with_status();
    assert!(status.success());
    assert_one_action_in_audit(&s, 1);
    eprintln!("figure: pod list failed {failed} times before the API server recovered");
}

#[test]
fn a_slow_api_server_is_waited_out_and_sigterm_stays_responsive_during_a_slow_call() {
    let s = setup("faults-api-slow", "Enforce");
    // A 10 s eviction against a 3 s API timeout: given up, retried, carried out once.
    s.api
        .inject(Fault::delay(eviction(), Duration::from_secs(10)));
    let mut fulcrum = s.spawn("op", &["--api-timeout", "3s"]);
    kcat_produce(&s.broker.addr(), TOPIC, &s.lines);
    s.wait("the slow eviction", |api| eviction_requests(api) == 1);
    assert_eq!(s.admin_get("/healthz").0, 200, "live during a slow call");
    let done = fulcrum.wait_for(MINUTE, "the action", actuated);
    assert_eq!(done["kind"], "Actuated", "{done}");
    assert_eq!(evicted(&s.api), [culprit()]);
    assert_eq!(
        eviction_requests(&s.api),
        2,
        "the slow call, then its retry"
    );
    let (_, _, status) = fulcrum.stop_with_status();
    assert!(status.success());
    assert_one_action_in_audit(&s, 1);

    // SIGTERM while the start-up pod list is held for two minutes: the operator exits
    // cleanly long before the API server would answer.
    s.api.inject(Fault::delay(
        Matcher::resource("pods").verb("list"),
        Duration::from_secs(120),
    ));
    let lists = s
        .api
        .count_requests(|r| r.resource == "pods" && r.verb == "list");
    let slow = s.spawn("op-slow", &[]);
    s.wait("the held pod list", |api| {
        api.count_requests(|r| r.resource == "pods" && r.verb == "list") > lists
    });
    slow.terminate();
    let (status, _) = slow.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_node_deleted_while_its_pod_is_migrated_is_survived_without_another_action() {
    let s = setup("faults-node-gone", "Enforce");
    // The eviction is held past the steering taint's expiry (the policy's 3 s cooldown).
    s.api
        .inject(Fault::delay(eviction(), Duration::from_secs(5)));
    let mut fulcrum = s.spawn("op", &[]);
    kcat_produce(&s.broker.addr(), TOPIC, &s.lines);
    s.wait("the steering taint and the held eviction", |api| {
        node_has_steer_taint(api, "node-0") && eviction_requests(api) == 1
    });
    let deleted_at = s.api.requests().len();
    s.api.delete_object("nodes", None, "node-0").unwrap();
    let done = fulcrum.wait_for(MINUTE, "the eviction's answer", actuated);
    assert_eq!(done["kind"], "Actuated", "{done}");
    assert_eq!(done["target"], culprit());
    let landed = |v: &Value| v["kind"] == "Replacement";
    let earlier = fulcrum
        .seen
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(landed);
    let landed = earlier.unwrap_or_else(|| fulcrum.wait_for(MINUTE, "the replacement", landed));
    assert_eq!(landed["node"], "node-1", "{landed}");
    assert!(fulcrum.alive());
    let (seen, _, status) = fulcrum.stop_with_status();
    assert!(status.success());
    // Nothing else was acted on, and the expired taint of the deleted node was not chased:
    // no request about node-0 after its deletion.
    assert_eq!(evicted(&s.api), [culprit()]);
    let decided: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("\"Decision\"") && !l.contains("\"Blocked\""))
        .collect();
    assert!(
        decided.iter().all(|l| l.contains(&culprit())),
        "{decided:#?}"
    );
    let chased: Vec<String> = s.api.requests()[deleted_at..]
        .iter()
        .filter(|r| r.resource == "nodes" && r.name == "node-0")
        .map(|r| format!("{} {}", r.verb, r.status))
        .collect();
    assert!(chased.is_empty(), "{chased:?}");
    assert_one_action_in_audit(&s, 1);
}

#[test]
fn an_unavailable_dead_letter_topic_delays_valid_samples_a_bounded_time_and_holds_commits() {
    let s = setup("faults-dlq", "Enforce");
    // A topic the broker refuses to produce to (tansu answers InvalidTopic for a name it
    // does not create on demand) until it is created below.
    const DLQ: &str = "dead letters (not created yet)";
    let bad = 10;
    let mut lines = s.lines.clone();
    lines.insert(bad, ("node-0".into(), "{\"not json".into()));
    let dlq = ["--dlq-topic", DLQ];
    let rejected = |s: &Setup| metric(s, "fulcrum_samples_total{result=\"rejected\"}") >= 1.0;
    let fulcrum = s.spawn("op", &dlq);
    kcat_produce(&s.broker.addr(), TOPIC, &lines);
    // SIGTERM while the dead letter is being retried: a clean stop at once.
    eventually(MINUTE, "the rejection", || rejected(&s));
    let (_, stopped, status) = fulcrum.stop_with_status();
    assert!(
        status.success(),
        "SIGTERM interrupts the dead-letter retries"
    );
    assert_eq!(stopped["feed"]["dead_letters"], 0, "{stopped}");
    assert_eq!(stopped["feed"]["dead_letters_failed"], 1, "{stopped}");
    let held = committed(&s.broker.addr(), "op", TOPIC, 1)[0];
    assert!(
        held <= bad as i64,
        "committed {held} past the bad message at {bad}"
    );

    // Left alone, the retries give up (8 tries) and the valid samples behind the bad
    // message are applied: the interference after it is acted on. Commits still stop
    // before the bad message, so a restart tries its dead letter again.
    let mut patient = s.spawn("op", &dlq);
    let done = patient.wait_for(MINUTE, "the action after the retries gave up", actuated);
    assert_eq!(done["kind"], "Actuated", "{done}");
    let (_, stopped, status) = patient.stop_with_status();
    assert!(status.success());
    assert_eq!(stopped["feed"]["dead_letters_failed"], 1, "{stopped}");
    let held = committed(&s.broker.addr(), "op", TOPIC, 1)[0];
    assert!(
        held <= bad as i64,
        "committed {held} past the bad message at {bad}"
    );

    // The topic appears: the restart reads the bad message again and dead-letters it,
    // commits move past it, and the action is not repeated (restored from the audit).
    create_topics(&s.broker.addr(), &[(DLQ, 1)]);
    let again = s.spawn("op", &dlq);
    eventually(MINUTE, "commits past the bad message", || {
        committed(&s.broker.addr(), "op", TOPIC, 1)[0] > bad as i64
    });
    let (seen, stopped, status) = again.stop_with_status();
    assert!(status.success());
    assert_eq!(stopped["feed"]["dead_letters"], 1, "{stopped}");
    assert!(
        !seen.iter().any(|l| l.contains("\"Actuated\"")),
        "{seen:#?}"
    );
    let letters = read_all(&s.broker.addr(), DLQ);
    assert_eq!(letters.len(), 1);
    let header = |k: &str| {
        letters[0]
            .4
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("fulcrum.error.reason").as_deref(), Some("not_json"));
    assert_eq!(
        header("fulcrum.source.offset").as_deref(),
        Some(bad.to_string().as_str())
    );
    assert_eq!(evicted(&s.api), [culprit()]);
    assert_one_action_in_audit(&s, 1);
}
