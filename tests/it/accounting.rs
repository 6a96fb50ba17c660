//! Every sample is accounted for: in `fulcrum replay`'s text and JSON summaries and in the
//! operator's `/metrics`, the samples read are the rejected plus the offered ones, and the
//! offered ones are the applied ones plus each drop reason (plus any still waiting), for a
//! stream that exercises every reason a file replay can meet.

use std::path::{Path, PathBuf};
use std::process::Command;

use fulcrum::admin::metrics::Metrics;
use fulcrum::feed::{EngineSnapshot, FeedStats};
use fulcrum::replay::{ReplayInput, replay_files};
use fulcrum::runner::Report;
use fulcrum_engine::EngineConfig;
use serde_json::{Value, json};

use crate::scenario::{NOW, POLICY, Scenario, temp_dir};
use crate::support::fulcrum_bin;

/// The drop reasons of the summaries (`forgotten` needs a cluster change or a rebalance,
/// which a file replay has not: the Kafka rebalance test accounts for it).
const REASONS: [&str; 6] = [
    "late",
    "duplicates",
    "unknown_node",
    "unknown_pod",
    "irrelevant",
    "too_far_ahead",
];

fn single(ts: i64, node: &str, pod: Option<(&str, &str)>, metrics: Value) -> String {
    let mut s = json!({"schema": "fulcrum.metrics/v1", "ts": ts, "node": node, "metrics": metrics});
    if let Some((ns, name)) = pod {
        s["pod"] = json!({"namespace": ns, "name": name});
        s["container"] = json!("main");
    }
    s.to_string()
}

/// The antagonist scenario with a line for every reason woven in. Returns the events
/// file, the samples it holds (a malformed line counts as one) and how many of them the
/// decoder must reject.
fn hostile_stream(dir: &Path) -> (PathBuf, u64, u64) {
    let scenario = Scenario::new(4, Some(60));
    scenario.write(dir);
    let mut lines: Vec<String> = Vec::new();
    let mut samples = 0u64;
    let mut newest = i64::MIN;
    for (_, line) in scenario.keyed_events() {
        let v: Value = serde_json::from_str(&line).unwrap();
        samples += v["samples"].as_array().map_or(1, Vec::len) as u64;
        newest = newest.max(v["ts"].as_i64().unwrap_or(newest));
        lines.push(line);
    }
    let util = |x: f64| json!({"mem_bw_util": x});
    let cpu = json!({"cpu_usage_cores": 2.0});
    let extra = [
        // Exactly the lateness behind the newest: in order for the file, late for the engine.
        single(newest - 15_000, "node-1", None, util(0.3)),
        // A pod sample the scenario already sent for this instant, twice more.
        single(newest, "node-2", Some(("spark", "etl-exec-2")), cpu.clone()),
        single(newest, "node-2", Some(("spark", "etl-exec-2")), cpu.clone()),
        single(newest, "ghost", None, util(0.3)),
        single(newest, "node-1", Some(("shop", "nobody")), cpu.clone()),
        single(newest, "node-1", None, json!({"fan_speed_rpm": 900.0})),
        // A clock an hour ahead, confirmed by nothing.
        single(
            newest + 3_600_000,
            "node-3",
            Some(("spark", "etl-exec-3")),
            cpu,
        ),
        // Rejected by the decoder: a percentage, an absurd magnitude, not JSON at all.
        single(newest, "node-3", None, util(73.0)),
        single(newest, "node-3", None, json!({"cpu_usage_cores": 1e300})),
        "{not json".to_owned(),
    ];
    samples += extra.len() as u64;
    lines.extend(extra);
    let events = dir.join("hostile.jsonl");
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("policy.yaml"), POLICY.replace("MODE", "Enforce")).unwrap();
    (events, samples, 3)
}

fn replay_bin(dir: &Path, events: &Path, output: &str) -> String {
    let out = Command::new(fulcrum_bin())
        .args(["replay", "--cluster"])
        .arg(dir.join("cluster.json"))
        .arg("--policy")
        .arg(dir.join("policy.yaml"))
        .arg("--events")
        .arg(events)
        .args(["--output", output])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The numbers of the text summary's first line, in order.
fn summary_numbers(text: &str) -> Vec<u64> {
    let line = text
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or_else(|| panic!("no summary in\n{text}"));
    line.split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse().unwrap())
        .collect()
}

/// The value of the metric line starting with `name` (labels included).
fn metric(text: &str, name: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} missing in\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn replay_summaries_and_metrics_account_for_every_sample_and_reason() {
    let dir = temp_dir("accounting");
    let (events, total, rejected) = hostile_stream(&dir);

    let report: Value = serde_json::from_str(&replay_bin(&dir, &events, "json")).unwrap();
    let s = &report["summary"];
    assert_eq!(s["rejected"].as_u64(), Some(rejected), "{s}");
    let offered = s["samples"]["offered"].as_u64().unwrap();
    assert_eq!(offered + rejected, total, "{s}");
    let mut accounted = s["samples"]["applied"].as_u64().unwrap();
    for reason in REASONS {
        let n = s["samples"][reason].as_u64().unwrap();
        assert!(n > 0, "the stream exercises {reason}: {s}");
        accounted += n;
    }
    accounted += s["samples"]["forgotten"].as_u64().unwrap();
    assert_eq!(s["samples"]["pending"], 0, "a file replay flushes: {s}");
    assert_eq!(offered, accounted, "{s}");
    assert!(
        s["actions"]["evicted"].as_u64().unwrap() + s["actions"]["migrated"].as_u64().unwrap() > 0,
        "the stream still leads to the action: {s}"
    );

    // The text summary: lines (rejected), offered: applied, late, duplicates, unknown
    // nodes/pods, irrelevant, too far ahead, forgotten.
    let n = summary_numbers(&replay_bin(&dir, &events, "text"));
    assert_eq!(n.len(), 10, "{n:?}");
    assert_eq!(n[1], rejected);
    assert_eq!(n[2], offered);
    assert_eq!(n[3..].iter().sum::<u64>(), offered, "{n:?}");
    assert_eq!(n[1] + n[2], total);

    // /metrics: the same counters from the engine, summed against the offered ones.
    let input = ReplayInput {
        cluster: vec![dir.join("cluster.json")],
        policies: vec![dir.join("policy.yaml")],
        config: EngineConfig::default(),
    };
    let replayed = replay_files(&input, &events, NOW).expect("replay runs");
    let stats = FeedStats::default();
    *stats.engine.lock().unwrap() = EngineSnapshot::of(&replayed.engine);
    let metrics = Metrics::new();
    metrics.refresh_feed(&stats);
    let text = metrics.render();
    assert_eq!(
        metric(&text, "fulcrum_engine_samples_offered_total "),
        offered
    );
    let outcomes = [
        "applied",
        "late",
        "duplicate",
        "unknown_node",
        "unknown_pod",
        "irrelevant",
        "too_far_ahead",
        "forgotten",
    ];
    let sum: u64 = outcomes
        .iter()
        .map(|o| {
            metric(
                &text,
                &format!("fulcrum_engine_samples_total{{outcome=\"{o}\"}} "),
            )
        })
        .sum::<u64>()
        + metric(&text, "fulcrum_reorder_buffer_samples ");
    assert_eq!(sum, offered, "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unexplained_episode_is_counted_once_by_policy_and_reason() {
    let mut scenario = Scenario::new(3, None);
    scenario.variant.victim_alone = true;
    let report = crate::scenario::replay(&scenario, "Enforce", "unexplained-metric");
    let metrics = Metrics::new();
    let name =
        "fulcrum_unexplained_episodes_total{policy=\"protect-online\",reason=\"not-significant\"} ";
    // Control: before the events are observed, nothing is counted.
    assert!(!metrics.render().contains(name));
    for event in &report.events {
        metrics.observe(&Report::Engine(event.clone()));
    }
    let text = metrics.render();
    assert_eq!(metric(&text, name), 1, "{text}");
    assert_eq!(report.engine.stats().unexplained, 1);
}

/// `/metrics` accounts for every sample the engine was offered: the sum over
/// `fulcrum_engine_samples_total{outcome}` plus the samples still waiting is the offered
/// count, and the feed's gauges are exported.
pub(crate) fn assert_samples_accounted(metrics: &str) {
    let value = |line: &str| -> u64 {
        line.rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{line}")) as u64
    };
    let find = |prefix: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .map(value)
            .unwrap_or_else(|| panic!("{prefix} missing in\n{metrics}"))
    };
    let offered = find("fulcrum_engine_samples_offered_total ");
    let outcomes: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("fulcrum_engine_samples_total{outcome="))
        .map(value)
        .sum();
    let waiting = find("fulcrum_reorder_buffer_samples ");
    assert!(offered > 0, "{metrics}");
    assert_eq!(outcomes + waiting, offered, "{metrics}");
    assert!(find("fulcrum_engine_samples_total{outcome=\"applied\"} ") > 0);
    for gauge in [
        "fulcrum_partition_skew_seconds ",
        "fulcrum_partition_skew_bound_seconds ",
        "fulcrum_reorder_buffer_limit_samples ",
        "fulcrum_reorder_buffer_overflows_total ",
    ] {
        find(gauge);
    }
}
