//! Durability of OTLP and Prometheus values that wait in the group window
//! (`controller/src/inputs/assemble.rs`): a message's offset is committed only once every
//! sample holding its values has reached the engine and the watermark has passed it, so a
//! crash while values wait loses nothing (they are read again).

use std::path::Path;

use crate::inputs::producer;
use crate::scenario::{POLICY, Scenario, temp_dir};
use crate::support::{Broker, Fulcrum, committed, create_topics, eventually, kafka_run_args};

const TOPIC: &str = "otlp-window";
const GROUP: &str = "window";
const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);

/// `fulcrum run` of the OTLP topic with a map whose group window is `window_ms`.
fn run(dir: &Path, broker: &Broker, window_ms: u64, lateness: &str) -> Fulcrum {
    let path = |f: &str| dir.join(f).display().to_string();
    let map = format!("map-{window_ms}.yaml");
    std::fs::write(
        dir.join(&map),
        format!("group_window_ms: {window_ms}\nmetrics: []\n"),
    )
    .unwrap();
    let mut args: Vec<String> = ["run", "--cluster", &path("cluster.json")]
        .map(String::from)
        .to_vec();
    args.extend(["--policy".into(), path("policy.yaml")]);
    args.extend(kafka_run_args(&broker.addr(), TOPIC, GROUP));
    args.extend(
        [
            "--input-format",
            "otlp",
            "--metrics-map",
            &path(&map),
            "--lateness",
            lateness,
        ]
        .map(String::from),
    );
    Fulcrum::spawn(&args)
}

/// Three requests on one partition (made by the independent producer): M0 a pod of node-0
/// at t0, M1 the same pod at t0 + 150 s, M2 a pod of node-1 at t0 + 80 s. With a 60 s group window and a 70 s
/// lateness, M1's decode releases M0's value and M2's value is released at once, so the
/// watermark passes t0 while M1's own value still waits in its window. A consumer that
/// stored offsets by the samples a message *released* committed M1 here (its value was
/// then lost to a crash); M1 must stay uncommitted until its value reaches the engine.
#[test]
fn a_crash_while_values_wait_in_the_group_window_loses_nothing() {
    let broker = Broker::start();
    create_topics(
        &broker.addr(),
        &[(TOPIC, 1), ("otlp-window.dlq", 1), ("fulcrum.decisions", 1)],
    );
    let dir = temp_dir("inputs-window");
    Scenario::new(2, None).write(&dir);
    std::fs::write(dir.join("policy.yaml"), POLICY.replace("MODE", "Enforce")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let t0 = now - 600_000;
    producer(&["window", &broker.addr(), TOPIC, &t0.to_string()]);

    // Run 1: M0 is committed (its value reached the engine and the watermark passed it);
    // then SIGKILL while M1's value waits (its window is 60 s of wall clock).
    let first = run(&dir, &broker, 60_000, "70s");
    eventually(MINUTE, "M0 committed", || {
        committed(&broker.addr(), GROUP, TOPIC, 1)[0] >= 1
    });
    first.kill();
    assert_eq!(
        committed(&broker.addr(), GROUP, TOPIC, 1),
        [1],
        "M1's value had not reached the engine: its offset must not be committed"
    );

    // Run 2 (a short window, so it ends quickly): M1 and M2 are read again, and M1's
    // value reaches the engine before everything is committed.
    let second = run(&dir, &broker, 2_000, "3s");
    eventually(MINUTE, "everything committed", || {
        committed(&broker.addr(), GROUP, TOPIC, 1) == [3]
    });
    let (_, stopped) = second.stop();
    assert_eq!(stopped["feed"]["messages"], 2, "{stopped}");
    assert_eq!(
        stopped["feed"]["samples"], 2,
        "M1's value (t0 + 150 s) and M2's (t0 + 80 s) reached the engine: {stopped}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
