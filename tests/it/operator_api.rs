//! End-to-end tests of `fulcrum run` against a misbehaving API server: watches closed or
//! expired mid-run, SIGTERM during a slow eviction, evictions answered 404 or 409 (the UID
//! precondition), and a node patch answered 409 Conflict. The real binary, the fake API
//! server and tansu, as in `operator.rs`; every test checks what the API server received.

use fulcrum_fake_apiserver::{FakeApiServer, Fault, Matcher, RecordedRequest};
use serde_json::Value;

use crate::operator::{
    CULPRIT, MINUTE, TOPIC, actuated, node_has_steer_taint, setup, setup_with_ticks,
};
use crate::support::{committed, eventually, kcat_produce};

fn count(api: &FakeApiServer, resource: &str, verb: &str) -> usize {
    api.count_requests(|r| r.resource == resource && r.verb == verb)
}

/// Index of the last request on `resource` with `verb` (None: none yet).
fn last(api: &FakeApiServer, resource: &str, verb: &str) -> Option<usize> {
    api.requests()
        .iter()
        .rposition(|r| r.resource == resource && r.verb == verb)
}

/// Decisions and actuations about the culprit in a run's stdout.
fn about_culprit(seen: &[String]) -> Vec<Value> {
    seen.iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == format!("spark/{CULPRIT}"))
        .collect()
}

#[test]
fn a_watch_closed_or_expired_mid_run_relists_and_acts_on_nothing_twice() {
    let s = setup("operator-relist", "Enforce");
    let mut fulcrum = s.spawn("relist", &[]);
    let (first, rest) = s.lines.split_at(s.lines.len() * 3 / 4);
    kcat_produce(&s.broker.addr(), TOPIC, first);
    let done = fulcrum.wait_for(MINUTE, "the migration", actuated);
    assert_eq!(done["kind"], "Actuated", "{done}");
    assert_eq!(s.evictions().len(), 1);

    // Every open watch is closed by the server; the pods, nodes and policies watches are
    // then answered 410 Gone when they resume from their resourceVersion.
    let before: Vec<usize> = ["pods", "nodes", "interferencepolicies"]
        .iter()
        .map(|r| count(&s.api, r, "list"))
        .collect();
    for resource in ["pods", "nodes", "interferencepolicies"] {
        s.api.inject(Fault::watch_gone(Matcher::resource(resource)));
    }
    s.api.close_watches();
    // Synchronised on what the server saw: each resource listed again, then watched again
    // after that list.
    for (resource, listed) in ["pods", "nodes", "interferencepolicies"].iter().zip(before) {
        s.wait(&format!("a re-list and a new watch of {resource}"), |api| {
            count(api, resource, "list") > listed
                && last(api, resource, "watch") > last(api, resource, "list")
        });
    }
    // The rest of the samples: the interference goes on, nothing is done twice.
    kcat_produce(&s.broker.addr(), TOPIC, rest);
    let end = s.lines.len() as i64;
    eventually(MINUTE, "the rest of the samples to be applied", || {
        committed(&s.broker.addr(), "relist", TOPIC, 1)[0] >= end * 9 / 10
    });
    let (seen, _, status) = fulcrum.stop_with_status();
    assert!(status.success(), "{status:?}");
    let evictions: Vec<RecordedRequest> = s.evictions();
    assert_eq!(evictions.len(), 1, "{evictions:#?}");
    let acted: Vec<Value> = about_culprit(&seen)
        .into_iter()
        .filter(|v| actuated(v) || (v["kind"] == "Decision" && v["outcome"] != "Blocked"))
        .collect();
    assert_eq!(
        acted.iter().filter(|v| v["kind"] == "Actuated").count(),
        1,
        "{acted:#?}"
    );
    assert_eq!(
        acted.iter().filter(|v| v["kind"] == "Decision").count(),
        1,
        "one decision to act on the culprit: {acted:#?}"
    );
    // The steering taint was set once (one Migrate) and every patch succeeded.
    let taints = s
        .api
        .requests()
        .iter()
        .filter(|r| {
            r.resource == "nodes"
                && r.verb == "patch"
                && r.body.as_ref().is_some_and(|b| {
                    b["spec"]["taints"]
                        .as_array()
                        .is_some_and(|t| t.iter().any(|t| t["key"] == "fulcrum.dev/steer-away"))
                })
        })
        .count();
    assert_eq!(taints, 1);
}

#[test]
fn sigterm_during_a_slow_eviction_abandons_it_exits_0_commits_and_the_restart_evicts_by_uid() {
    // 120 ticks of 2 s: the first run sees 45 of them (the eviction comes within them),
    // the restart the other 75, enough to act again from nothing but its own samples.
    let s = setup_with_ticks("operator-slow-evict", "Enforce", 120);
    // The eviction is answered after 10 minutes: far beyond the shutdown bound.
    let eviction = Matcher::resource("pods").subresource("eviction");
    s.api
        .inject(Fault::delay(eviction, std::time::Duration::from_secs(600)));
    let fulcrum = s.spawn("slow", &["--api-timeout", "15m"]);
    let split = s.lines.len() * 45 / 120;
    kcat_produce(&s.broker.addr(), TOPIC, &s.lines[..split]);
    s.wait("the eviction POST", |api| {
        api.count_requests(|r| r.subresource == "eviction") == 1
    });
    // SIGTERM while the call is in flight.
    let (seen, stopped, status) = fulcrum.stop_with_status();
    assert!(status.success(), "{status:?}");
    let first = s.evictions().into_iter().next().expect("the POST");
    assert_eq!(first.status, 0, "abandoned: never answered before the exit");
    let abandoned = about_culprit(&seen)
        .into_iter()
        .find(|v| v["kind"] == "NotActuated")
        .expect("the abandoned action is reported");
    assert_eq!(abandoned["error"], "Failed");
    assert!(
        abandoned["message"]
            .as_str()
            .is_some_and(|m| m.contains("abandoned at shutdown")),
        "{abandoned}"
    );
    assert!(stopped["feed"]["offsets_stored"].as_u64().unwrap_or(0) > 0);
    let at_stop = committed(&s.broker.addr(), "slow", TOPIC, 1)[0];
    assert!(at_stop > 0, "offsets committed at shutdown");

    // The restart in the same group reads the audit topic: the abandoned eviction is not
    // counted as done (it may or may not have been carried out by the API server), and
    // the interference goes on, so the culprit is evicted again, bound to the same UID
    // (had the first eviction gone through, this one would be refused, never carried out
    // on a replacement).
    s.api.clear_faults();
    let again = s.spawn("slow", &[]);
    kcat_produce(&s.broker.addr(), TOPIC, &s.lines[split..]);
    let mut again = again;
    let done = again.wait_for(MINUTE, "the eviction after the restart", actuated);
    assert_eq!(done["kind"], "Actuated", "{done}");
    let (_, _, status) = again.stop_with_status();
    assert!(status.success());
    let evictions = s.evictions();
    assert_eq!(evictions.len(), 2, "{evictions:#?}");
    let uid = |r: &RecordedRequest| {
        r.body
            .as_ref()
            .map(|b| b["deleteOptions"]["preconditions"]["uid"].clone())
    };
    assert!(
        uid(&evictions[0]).is_some_and(|u| u.is_string()),
        "{evictions:#?}"
    );
    assert_eq!(uid(&evictions[1]), uid(&evictions[0]), "{evictions:#?}");
    assert_eq!(evictions[1].status, 201, "{evictions:#?}");
}

#[test]
fn a_gone_target_is_not_retried_and_a_node_patch_conflict_is_re_read_and_retried() {
    let s = setup("operator-gone", "Enforce");
    // The source node carries another taint that must survive the steering writes.
    let mut node = s.api.get_object("nodes", None, "node-0").unwrap();
    node["spec"]["taints"] = serde_json::json!([
        {"key": "example.com/gpu", "value": "a100", "effect": "PreferNoSchedule"}
    ]);
    s.api.apply_object(node).unwrap();
    let eviction = || Matcher::resource("pods").subresource("eviction");
    // First attempt: 404 (target gone); second: 409 (UID precondition failed).
    s.api.inject(Fault::status(eviction(), 404));
    s.api.inject(Fault::status(eviction(), 409));
    // The first steering write meets a conflicting write.
    s.api
        .inject(Fault::status(Matcher::resource("nodes").verb("patch"), 409));
    let mut fulcrum = s.spawn("gone", &[]);
    let (first, rest) = s.lines.split_at(s.lines.len() * 3 / 4);
    kcat_produce(&s.broker.addr(), TOPIC, first);
    let gone = fulcrum.wait_for(MINUTE, "the first attempt", actuated);
    assert_eq!(gone["kind"], "NotActuated", "{gone}");
    assert_eq!(gone["error"], "Gone");
    // Later ticks: the next attempts (409: gone again, then done).
    for tick in rest.chunks(3) {
        kcat_produce(&s.broker.addr(), TOPIC, tick);
        let v = fulcrum.wait_for(MINUTE, "an attempt", |v| {
            actuated(v) || v["kind"] == "Decision"
        });
        if v["kind"] == "Actuated" {
            break;
        }
    }
    let (seen, _, status) = fulcrum.stop_with_status();
    assert!(status.success());
    let outcomes: Vec<String> = about_culprit(&seen)
        .iter()
        .filter(|v| actuated(v))
        .map(|v| v["error"].as_str().unwrap_or("Executed").to_owned())
        .collect();
    let codes: Vec<u16> = s.evictions().iter().map(|r| r.status).collect();
    // Never retried: one POST per attempt, and the gone answers reported as such.
    assert_eq!(&codes[..2], [404, 409], "{codes:?}");
    assert_eq!(&outcomes[..2], ["Gone", "Gone"], "{outcomes:?}");
    assert_eq!(
        codes.len(),
        outcomes.len(),
        "one POST per attempt: {codes:?} {outcomes:?}"
    );

    // The node patch: 409, then the node read again and the patch retried, with the
    // other taint kept.
    let node0: Vec<RecordedRequest> = s
        .api
        .requests()
        .into_iter()
        .filter(|r| r.resource == "nodes" && r.name == "node-0" && r.verb != "watch")
        .collect();
    let patches: Vec<&RecordedRequest> = node0.iter().filter(|r| r.verb == "patch").collect();
    assert_eq!(patches[0].status, 409, "{node0:#?}");
    assert_eq!(patches[1].status, 200, "{node0:#?}");
    let conflict = node0.iter().position(|r| r.verb == "patch").unwrap();
    assert_eq!(
        node0[conflict + 1].verb,
        "get",
        "re-read after the conflict"
    );
    let taints = patches[1].body.as_ref().unwrap()["spec"]["taints"].clone();
    let keys: Vec<&str> = taints
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["key"].as_str())
        .collect();
    assert_eq!(
        keys,
        ["example.com/gpu", "fulcrum.dev/steer-away"],
        "{taints}"
    );
    assert!(node_has_steer_taint(&s.api, "node-0") || patches.len() > 2);
    let stored = s.api.get_object("nodes", None, "node-0").unwrap();
    assert!(
        stored["spec"]["taints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["key"] == "example.com/gpu"),
        "{stored}"
    );
}
