//! End-to-end tests of the Kafka feed against a real Kafka-compatible broker (tansu):
//! producers (rdkafka and kcat), the dead-letter topic, resuming after a kill, surviving a
//! broker restart, and replay from Kafka equal to replay from a file.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::scenario::{POLICY, Scenario, temp_dir};
use crate::support::{
    Broker, Fulcrum, committed, create_topics, end_offsets, eventually, fulcrum_bin, group_members,
    kcat_produce, produce, read_all,
};

pub(crate) const TOPIC: &str = "samples";
const PARTITIONS: i32 = 3;
const DLQ: &str = "samples.dlq";
pub(crate) const AUDIT: &str = "fulcrum.decisions";
pub(crate) const MINUTE: Duration = Duration::from_secs(60);

pub(crate) struct Setup {
    pub(crate) broker: Broker,
    pub(crate) dir: PathBuf,
    pub(crate) lines: Vec<(String, String)>,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A broker with the three topics, and the antagonist scenario (ending a minute ago)
/// written as cluster.json, policy.yaml and events.jsonl.
pub(crate) fn setup(name: &str) -> Setup {
    setup_scenario(name, Scenario::new(4, Some(60)))
}

/// [`setup`] with another scenario.
pub(crate) fn setup_scenario(name: &str, mut scenario: Scenario) -> Setup {
    let broker = Broker::start();
    create_topics(&broker.addr(), &[(TOPIC, PARTITIONS), (DLQ, 1), (AUDIT, 1)]);
    let dir = temp_dir(name);
    scenario.t0 = now_ms() - scenario.ticks * scenario.period_ms - 60_000;
    scenario.write(&dir);
    std::fs::write(dir.join("policy.yaml"), POLICY.replace("MODE", "Enforce")).unwrap();
    Setup {
        broker,
        dir,
        lines: scenario.keyed_events(),
    }
}

impl Setup {
    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    pub(crate) fn run_args(&self, group: &str) -> Vec<String> {
        let mut args: Vec<String> = [
            "run",
            "--cluster",
            &self.path("cluster.json"),
            "--policy",
            &self.path("policy.yaml"),
        ]
        .map(String::from)
        .to_vec();
        args.extend(crate::support::kafka_run_args(
            &self.broker.addr(),
            TOPIC,
            group,
        ));
        args
    }

    /// Every partition's committed offset is its end (an empty partition needs none).
    fn all_committed(&self, group: &str) -> bool {
        let committed = committed(&self.broker.addr(), group, TOPIC, PARTITIONS);
        let ends = end_offsets(&self.broker.addr(), TOPIC, PARTITIONS);
        committed.iter().zip(&ends).all(|(c, e)| (*c).max(0) == *e)
    }
}

fn sample_count(lines: &[(String, String)]) -> u64 {
    lines
        .iter()
        .map(|(_, l)| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["samples"].as_array().map_or(1, Vec::len) as u64
        })
        .sum()
}

fn executed_on(target: &str) -> impl Fn(&Value) -> bool + '_ {
    move |v| v["kind"] == "Decision" && v["outcome"] == "Executed" && v["target"] == target
}

#[test]
fn samples_from_kcat_and_rdkafka_are_consumed_applied_and_decided() {
    let s = setup("kafka-consume");
    let (kcat_lines, rdkafka_lines): (Vec<_>, Vec<_>) =
        s.lines.iter().cloned().partition(|(k, _)| k == "node-0");
    kcat_produce(&s.broker.addr(), TOPIC, &kcat_lines);
    produce(&s.broker.addr(), TOPIC, &rdkafka_lines);

    let mut fulcrum = Fulcrum::spawn(&s.run_args("consume"));
    let decision = fulcrum.wait_for(
        MINUTE,
        "the antagonist decision",
        executed_on("spark/sort-exec-0"),
    );
    assert_eq!(decision["node"], "node-0");
    assert_eq!(decision["action"], "Migrate");
    eventually(MINUTE, "all offsets committed", || {
        s.all_committed("consume")
    });
    let (seen, stopped) = fulcrum.stop();

    assert_eq!(
        stopped["feed"]["samples"],
        sample_count(&s.lines),
        "every sample was offered"
    );
    assert_eq!(stopped["feed"]["messages"], s.lines.len() as u64);
    assert_eq!(stopped["feed"]["dead_letters"], 0);
    let executed = seen
        .iter()
        .filter(|l| l.contains("\"outcome\":\"Executed\""))
        .count();
    assert_eq!(executed, 1, "{seen:#?}");

    let audit = read_all(&s.broker.addr(), AUDIT);
    let decisions: Vec<Value> = audit
        .iter()
        .map(|r| serde_json::from_slice(&r.3).unwrap())
        .collect();
    let executed: Vec<&Value> = decisions
        .iter()
        .filter(|d| d["outcome"] == "Executed")
        .collect();
    assert_eq!(executed.len(), 1, "{decisions:#?}");
    assert_eq!(executed[0]["schema"], "fulcrum.decisions/v1");
    assert_eq!(executed[0]["target"], "spark/sort-exec-0");
    assert!(executed[0]["explanation"]["scores"].is_array());
    let keyed = audit
        .iter()
        .find(|r| serde_json::from_slice::<Value>(&r.3).unwrap()["outcome"] == "Executed")
        .unwrap();
    assert_eq!(
        keyed.2.as_deref(),
        Some(&b"node-0"[..]),
        "audit records are keyed by node"
    );
}

#[test]
fn malformed_messages_land_in_the_dead_letter_topic_with_reasons() {
    let s = setup("kafka-dlq");
    let ts = now_ms() - 60_000;
    let good = |node: &str, i: i64| {
        format!(
            r#"{{"schema":"fulcrum.metrics/v1","ts":{},"node":"{node}","pod":{{"namespace":"shop","name":"cart-1"}},"metrics":{{"latency_p99_ms":100}}}}"#,
            ts + i * 1000
        )
    };
    let records: Vec<(String, String)> = vec![
        ("node-1".into(), good("node-1", 0)),
        ("node-1".into(), "this is not json".into()),
        (
            "node-1".into(),
            format!(
                r#"{{"schema":"fulcrum.metrics/v1","ts":{ts},"node":"node-1","metrics":{{"cpi":NaN}}}}"#
            ),
        ),
        (
            "node-1".into(),
            format!(
                r#"{{"schema":"fulcrum.metrics/v1","samples":[{},{{"ts":{ts},"node":"node-1","metrics":{{"CPI":1}}}}]}}"#,
                good("node-1", 1).replace(r#""schema":"fulcrum.metrics/v1","#, "")
            ),
        ),
        ("node-1".into(), good("node-1", 2)),
    ];
    produce(&s.broker.addr(), TOPIC, &records);
    let fulcrum = Fulcrum::spawn(&s.run_args("dlq"));
    eventually(MINUTE, "all offsets committed", || s.all_committed("dlq"));
    let (_, stopped) = fulcrum.stop();
    assert_eq!(stopped["feed"]["dead_letters"], 3);
    assert_eq!(
        stopped["feed"]["samples"], 3,
        "good samples around the bad ones are applied"
    );

    let dlq = read_all(&s.broker.addr(), DLQ);
    assert_eq!(dlq.len(), 3);
    let source = read_all(&s.broker.addr(), TOPIC);
    let mut reasons = Vec::new();
    for (_, _, key, payload, headers) in &dlq {
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let partition: i32 = header("fulcrum.source.partition").parse().unwrap();
        let offset: i64 = header("fulcrum.source.offset").parse().unwrap();
        assert_eq!(header("fulcrum.source.topic"), TOPIC);
        let original = source
            .iter()
            .find(|r| r.0 == partition && r.1 == offset)
            .expect("source message exists");
        assert_eq!(&original.3, payload, "the original bytes are kept");
        assert_eq!(key.as_deref(), Some(&b"node-1"[..]));
        assert!(!header("fulcrum.error.message").is_empty());
        reasons.push(header("fulcrum.error.reason"));
    }
    reasons.sort();
    assert_eq!(reasons, ["bad_metric_name", "non_finite", "not_json"]);
}

#[test]
fn a_killed_consumer_resumes_from_committed_offsets_without_losing_samples_or_repeating_actions() {
    let s = setup("kafka-restart");
    produce(&s.broker.addr(), TOPIC, &s.lines);
    let total = s.lines.len() as i64;

    let mut first = Fulcrum::spawn(&s.run_args("restart"));
    first.wait_for(MINUTE, "the first action", executed_on("spark/sort-exec-0"));
    // Let at least one auto-commit happen, then kill without any chance to clean up.
    eventually(MINUTE, "some offsets committed", || {
        committed(&s.broker.addr(), "restart", TOPIC, PARTITIONS)
            .iter()
            .any(|&o| o > 0)
    });
    first.kill();
    let resumed_from: i64 = committed(&s.broker.addr(), "restart", TOPIC, PARTITIONS)
        .iter()
        .map(|&o| o.max(0))
        .sum();

    let second = Fulcrum::spawn(&s.run_args("restart"));
    eventually(MINUTE, "the second run to commit everything", || {
        s.all_committed("restart")
    });
    let (seen, stopped) = second.stop();
    assert_eq!(
        stopped["feed"]["messages"].as_i64().unwrap(),
        total - resumed_from,
        "the second run read exactly the messages after the committed offsets"
    );
    assert!(
        stopped["feed"]["restored"].as_u64().unwrap() >= 1,
        "past actions restored from the audit topic"
    );
    assert!(
        seen.iter()
            .all(|l| !(l.contains("\"outcome\":\"Executed\"") && l.contains("spark/sort-exec-0"))),
        "the same pod is not acted on twice: {seen:#?}"
    );
    let audit = read_all(&s.broker.addr(), AUDIT);
    let executed = audit
        .iter()
        .filter(|r| serde_json::from_slice::<Value>(&r.3).unwrap()["outcome"] == "Executed")
        .count();
    assert_eq!(executed, 1);

    // The second run resumed after the action, so it may never have seen the interference
    // again. A fresh group re-reads every sample: with the same audit topic, restore keeps
    // it from repeating the action ...
    let again = Fulcrum::spawn(&s.run_args("restart-fresh"));
    eventually(MINUTE, "the fresh group to commit everything", || {
        s.all_committed("restart-fresh")
    });
    let (seen, stopped) = again.stop();
    assert!(stopped["feed"]["restored"].as_u64().unwrap() >= 1);
    assert!(
        seen.iter()
            .all(|l| !(l.contains("\"outcome\":\"Executed\"") && l.contains("spark/sort-exec-0"))),
        "restored from the audit topic, the action is not repeated: {seen:#?}"
    );
    // ... while the same run with an empty audit topic (restore has nothing) does act:
    // the check above could fail.
    create_topics(&s.broker.addr(), &[("fulcrum.decisions.empty", 1)]);
    let mut args = s.run_args("restart-control");
    args.extend(["--audit-topic".into(), "fulcrum.decisions.empty".into()]);
    let mut control = Fulcrum::spawn(&args);
    control.wait_for(
        MINUTE,
        "the control run to act",
        executed_on("spark/sort-exec-0"),
    );
    control.stop();
}

#[test]
fn a_broker_that_goes_away_and_comes_back_is_survived() {
    let s = setup("kafka-broker-away");
    let half = s.lines.len() / 2;
    produce(&s.broker.addr(), TOPIC, &s.lines[..half]);
    let mut fulcrum = Fulcrum::spawn(&s.run_args("survive"));
    eventually(MINUTE, "the feed to commit some offsets", || {
        committed(&s.broker.addr(), "survive", TOPIC, PARTITIONS)
            .iter()
            .any(|&o| o > 0)
    });

    s.broker.go_away();
    std::thread::sleep(Duration::from_secs(8));
    assert!(fulcrum.alive(), "no crash while the broker is away");
    s.broker.come_back();

    produce(&s.broker.addr(), TOPIC, &s.lines[half..]);
    fulcrum.wait_for(
        Duration::from_secs(120),
        "the antagonist decision after the outage",
        executed_on("spark/sort-exec-0"),
    );
    eventually(MINUTE, "all offsets committed after the outage", || {
        s.all_committed("survive")
    });
    assert!(fulcrum.alive());
    let (_, stopped) = fulcrum.stop();
    // At-least-once: the group may have rebalanced during the outage and redelivered a
    // few messages after the last commit; none is lost.
    assert!(
        stopped["feed"]["samples"].as_u64().unwrap() >= sample_count(&s.lines),
        "no sample lost across the outage: {stopped}"
    );
}

#[test]
fn replay_from_kafka_equals_replay_from_file() {
    let s = setup("kafka-replay");
    produce(&s.broker.addr(), TOPIC, &s.lines);
    let run = |source: &[&str]| -> Value {
        let mut args = vec![
            "replay".to_owned(),
            "--cluster".into(),
            s.path("cluster.json"),
            "--policy".into(),
            s.path("policy.yaml"),
            "--output".into(),
            "json".into(),
        ];
        args.extend(source.iter().map(|a| a.to_string()));
        let out = std::process::Command::new(fulcrum_bin())
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let from_file = run(&["--events", &s.path("events.jsonl")]);
    let from_kafka = run(&["--brokers", &s.broker.addr(), "--topic", TOPIC]);
    assert!(!from_file["decisions"].as_array().unwrap().is_empty());
    assert_eq!(from_kafka, from_file);
}

#[test]
fn a_live_rebalance_between_two_consumers_reads_everything_and_accounts_for_it() {
    let s = setup("kafka-rebalance");
    let (first, second) = s.lines.split_at(s.lines.len() / 2);
    produce(&s.broker.addr(), TOPIC, first);
    let a = Fulcrum::spawn(&s.run_args("rebalance"));
    eventually(MINUTE, "the first consumer to commit", || {
        committed(&s.broker.addr(), "rebalance", TOPIC, PARTITIONS)
            .iter()
            .any(|&o| o > 0)
    });
    // A second replica joins the group: the partitions are split between the two.
    let b = Fulcrum::spawn(&s.run_args("rebalance"));
    eventually(MINUTE, "two members in the group", || {
        group_members(&s.broker.addr(), "rebalance") == 2
    });
    produce(&s.broker.addr(), TOPIC, second);
    eventually(2 * MINUTE, "everything committed by the group", || {
        s.all_committed("rebalance")
    });
    let (seen_a, stopped_a) = a.stop();
    let (seen_b, stopped_b) = b.stop();
    let messages = |v: &Value| v["feed"]["messages"].as_u64().unwrap();
    let applied = |v: &Value| v["engine"]["applied"].as_u64().unwrap();
    assert!(
        messages(&stopped_b) > 0 && applied(&stopped_b) > 0,
        "the replica that joined applies samples of its partitions: {stopped_b}"
    );
    assert!(applied(&stopped_a) > 0, "{stopped_a}");
    assert!(
        messages(&stopped_a) + messages(&stopped_b) >= s.lines.len() as u64,
        "every message was read by one of them: {stopped_a} {stopped_b}"
    );
    for v in [&stopped_a, &stopped_b] {
        let e = &v["engine"];
        let accounted: u64 = [
            "applied",
            "late",
            "duplicates",
            "unknown_node",
            "unknown_pod",
            "irrelevant",
            "too_far_ahead",
            "forgotten",
            "pending",
        ]
        .iter()
        .map(|k| e[k].as_u64().unwrap())
        .sum();
        // Every offered sample is applied, dropped for a counted reason (a partition that
        // the new owner re-reads slower than another can make some late, by design of the
        // skew bound; the replica that lost partitions forgets their queued samples) or
        // still waiting at the stop.
        assert_eq!(e["offered"].as_u64().unwrap(), accounted, "{v}");
        assert_eq!(e["offered"], v["feed"]["samples"], "{v}");
    }
    let acted = seen_a
        .iter()
        .chain(&seen_b)
        .filter(|l| l.contains("\"outcome\":\"Executed\"") && l.contains("spark/sort-exec-0"))
        .count();
    assert!(
        acted >= 1,
        "the antagonist is acted on: {seen_a:#?} {seen_b:#?}"
    );
}

/// `run` arguments with a producer (and request) size limit of 2000 bytes.
fn small_messages(s: &Setup, group: &str) -> Vec<String> {
    let mut args = s.run_args(group);
    args.extend(["--kafka-config".into(), "message.max.bytes=2000".into()]);
    args
}

#[test]
fn a_dead_letter_over_the_size_limit_is_stored_without_its_payload() {
    let s = setup("kafka-dlq-large");
    let big = format!("not json {}", "x".repeat(3_000));
    // Good samples after it (two instants: the engine's first sample waits for a second)
    // give the partition an event time, so offsets move on.
    let good = |i: i64| {
        format!(
            r#"{{"schema":"fulcrum.metrics/v1","ts":{},"node":"node-1","pod":{{"namespace":"shop","name":"cart-1"}},"metrics":{{"latency_p99_ms":100}}}}"#,
            now_ms() - 60_000 + i * 10_000
        )
    };
    let records = [
        ("node-1".to_owned(), big.clone()),
        ("node-1".to_owned(), good(0)),
        ("node-1".to_owned(), good(1)),
    ];
    produce(&s.broker.addr(), TOPIC, &records);
    let fulcrum = Fulcrum::spawn(&small_messages(&s, "dlq-large"));
    eventually(MINUTE, "the offsets committed", || {
        s.all_committed("dlq-large")
    });
    let (_, stopped) = fulcrum.stop();
    assert_eq!(stopped["feed"]["dead_letters"], 1, "{stopped}");
    assert_eq!(stopped["feed"]["dead_letters_failed"], 0);
    let dlq = read_all(&s.broker.addr(), DLQ);
    assert_eq!(dlq.len(), 1);
    let headers = &dlq[0].4;
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header("fulcrum.error.payload_dropped"),
        Some(big.len().to_string())
    );
    assert_eq!(header("fulcrum.error.reason").as_deref(), Some("not_json"));
    assert!(dlq[0].3.is_empty(), "the payload is left out");
}

#[test]
fn a_decision_that_cannot_reach_the_audit_topic_stops_the_run_before_acting_or_committing() {
    let s = setup("kafka-audit-down");
    produce(&s.broker.addr(), TOPIC, &s.lines);
    // Decisions (with their explanations) are larger than 2000 bytes: the audit produce
    // fails at once, and for good.
    let log = s.dir.join("stderr.log");
    let file = std::fs::File::create(&log).unwrap();
    let fulcrum = Fulcrum::spawn_with_stderr(&small_messages(&s, "audit-down"), file);
    let (status, seen) = fulcrum.wait_exit(2 * MINUTE);
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "the run must fail loudly: {seen:#?}");
    assert!(stderr.contains("audit topic"), "{stderr}");
    assert!(
        seen.iter().all(|l| !l.contains("\"kind\":\"Decision\"")),
        "a decision missing from the audit was reported or acted on: {seen:#?}"
    );
    assert!(read_all(&s.broker.addr(), AUDIT).is_empty());
    assert!(
        !s.all_committed("audit-down"),
        "offsets were committed past a decision that is not in the audit"
    );
    // Control: with the default size limit the same run publishes and acts.
    let mut control = Fulcrum::spawn(&s.run_args("audit-up"));
    control.wait_for(MINUTE, "the action", executed_on("spark/sort-exec-0"));
    control.stop();
}
