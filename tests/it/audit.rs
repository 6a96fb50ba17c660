//! The audit topic end to end against a real broker: what `fulcrum run` writes besides
//! decisions (unexplained episodes) and what a replica restores from it at start (only
//! decisions, only the restore window).

use std::time::Duration;

use serde_json::Value;

use crate::kafka::{AUDIT, MINUTE, TOPIC, now_ms, setup, setup_scenario};
use crate::scenario::Scenario;
use crate::support::{Fulcrum, produce, read_all};

#[test]
fn an_unexplained_episode_is_audited_once_and_a_restart_does_not_restore_it_as_an_action() {
    // The victim degrades on its own: nobody is blamed, and the run says why.
    let mut scenario = Scenario::new(3, None);
    scenario.variant.victim_alone = true;
    let s = setup_scenario("kafka-unexplained", scenario);
    produce(&s.broker.addr(), TOPIC, &s.lines);
    let unexplained = |v: &Value| v["kind"] == "Unexplained";
    let mut first = Fulcrum::spawn(&s.run_args("unexplained-1"));
    first.wait_for(MINUTE, "the unexplained episode", unexplained);
    let (seen, stopped) = first.stop();
    assert_eq!(stopped["feed"]["unexplained"], 1, "{stopped}");
    assert!(
        seen.iter().all(|l| !l.contains("\"kind\":\"Decision\"")),
        "{seen:#?}"
    );
    let records: Vec<(Option<Vec<u8>>, Value)> = read_all(&s.broker.addr(), AUDIT)
        .into_iter()
        .map(|(_, _, key, value, _)| (key, serde_json::from_slice(&value).unwrap()))
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let (key, record) = &records[0];
    assert_eq!(record["schema"], "fulcrum.decisions/v1");
    assert_eq!(record["kind"], "Unexplained");
    assert_eq!(record["cause"], "not-significant", "{record}");
    assert_eq!(record["victim"], "shop/cart-0");
    assert_eq!(key.as_deref(), Some(b"node-0".as_slice()));
    assert!(
        record["explanation"]["scores"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );
    // A replica started later reads the audit topic back: the report is no past action.
    let mut second = Fulcrum::spawn(&s.run_args("unexplained-2"));
    second.wait_for(MINUTE, "the unexplained episode again", unexplained);
    let (_, stopped) = second.stop();
    assert_eq!(stopped["feed"]["restored"], 0, "{stopped}");
    assert_eq!(read_all(&s.broker.addr(), AUDIT).len(), 2);
}

/// An executed decision of the scenario's policy as an audit record.
fn audit_record(target: &str, at: i64) -> String {
    serde_json::json!({
        "schema": "fulcrum.decisions/v1", "at": at, "policy": "protect-online",
        "node": "node-0", "trigger": "p99-slo", "victim": "shop/cart-0", "target": target,
        "action": "Migrate", "mode": "Enforce", "outcome": "Executed", "reason": "test",
        "destination": "node-1",
        "explanation": {"episode": 1, "method": "Correlation", "scores": [], "guard": "allowed",
            "evidence": {"scope": "Victim", "metric": "latency_p99_ms", "value": 400.0,
                "threshold": 250.0, "baseline": null, "since": at, "held_ms": 30000,
                "window_ms": 300000}}
    })
    .to_string()
}

/// The brokers look the window's first offset up by time (tansu answers offset 0 to every
/// such lookup, so here the records' own times do the work); either way nothing older than
/// the window is restored, however much the topic holds.
#[test]
fn restore_reads_only_the_restore_window_of_the_audit_topic() {
    use rdkafka::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let s = setup("kafka-restore-window");
    let now = now_ms();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", s.broker.addr())
        .create()
        .unwrap();
    // Two days old (outside the 24 h window), then two within it.
    for (target, age) in [
        ("spark/etl-exec-1", 48 * 3_600_000),
        ("spark/etl-exec-2", 3_600_000),
        ("spark/etl-exec-3", 60_000),
    ] {
        let value = audit_record(target, now - age);
        let record = BaseRecord::to(AUDIT)
            .key("node-0")
            .payload(&value)
            .timestamp(now - age);
        producer.send(record).map_err(|(e, _)| e).unwrap();
        // One record per batch: tansu's end offsets count batches.
        producer.flush(Duration::from_secs(30)).unwrap();
    }
    assert_eq!(read_all(&s.broker.addr(), AUDIT).len(), 3);
    produce(&s.broker.addr(), TOPIC, &s.lines);
    let mut fulcrum = Fulcrum::spawn(&s.run_args("restore-window"));
    // Samples are read (and decided on) only after the restore.
    fulcrum.wait_for(MINUTE, "a decision", |v| v["kind"] == "Decision");
    let (_, stopped) = fulcrum.stop();
    assert_eq!(
        stopped["feed"]["restored"], 2,
        "only the records of the last 24 h: {stopped}"
    );
}
