//! Trace-shaped data, generated here (no download): machine-level samples shaped like a
//! public production co-location trace (Alibaba 2018): a nominal 10 s cadence but a median
//! interval of 60 s, sampling instants that differ per machine and jitter, gaps of minutes,
//! one 5-hour hole across the whole cluster, and the file sorted by machine. Variants add
//! what real feeds also carry: percent-scaled utilisations, a far-future line and
//! seconds-based timestamps.

use std::path::{Path, PathBuf};

use fulcrum::replay::{ReplayInput, ReplayReport, replay_files};
use fulcrum_engine::EngineConfig;
use serde_json::json;

use crate::scenario::{NOW, Scenario, T0, noise, temp_dir};

const NODES: usize = 6;
const HOURS: i64 = 12;
const MIN: i64 = 60_000;

const NODE_POLICY: &str = r#"
apiVersion: fulcrum.dev/v1alpha1
kind: InterferencePolicy
metadata: {name: membw-saturation}
spec:
  mode: DryRun
  nodeSelector: {matchLabels: {pool: colocated}}
  victims: {podSelector: {matchLabels: {fulcrum.dev/class: online}}}
  candidates:
    - {name: big-data, podSelector: {matchLabels: {fulcrum.dev/class: batch}}, action: Migrate}
  triggers:
    - {name: membw, metric: mem_bw_util, scope: Node, above: 0.9, sustainedFor: 3m}
  attribution: {method: Usage, metrics: [mem_bw_bytes_per_sec], window: 10m}
"#;

/// One machine-level line: `(ts, node, line)`.
type Line = (i64, String, String);

/// The trace: per machine, samples every 60 s from its own offset with ±5 s jitter, a
/// 2-5 minute gap now and then, and nothing between hour 3 and hour 8 (the hole).
/// `scale` multiplies the utilisations (100 for a percent-scaled export).
fn trace(scale: f64) -> Vec<Line> {
    let start = T0 - HOURS * 60 * MIN;
    let hole = (start + 3 * 60 * MIN, start + 8 * 60 * MIN);
    let mut lines = Vec::new();
    for n in 0..NODES {
        let node = format!("node-{n}");
        let mut ts = start + (noise(7, n as u64) * 60_000.0) as i64;
        let mut k = 0u64;
        while ts < T0 {
            k += 1;
            let r = noise(n as u64, k);
            if !(hole.0..hole.1).contains(&ts) {
                let metrics = json!({
                    "cpu_util": ((0.3 + 0.3 * r) * scale * 1000.0).round() / 1000.0,
                    "mem_bw_util": ((0.2 + 0.5 * noise(n as u64 + 100, k)) * scale * 1000.0).round() / 1000.0,
                });
                let line = json!({"schema": "fulcrum.metrics/v1", "ts": ts, "node": node,
                                  "metrics": metrics});
                lines.push((ts, node.clone(), line.to_string()));
            }
            let jitter = ((noise(n as u64 + 50, k) - 0.5) * 10_000.0) as i64;
            let gap = if r > 0.97 {
                (2 + k % 4) as i64 * MIN
            } else {
                MIN
            };
            ts += gap + jitter;
        }
    }
    lines
}

fn write_lines(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn replay(dir: &Path, events: &Path) -> ReplayReport {
    let scenario = Scenario::new(NODES, None);
    let (cluster, _) = scenario.write(dir);
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, NODE_POLICY).unwrap();
    let input = ReplayInput {
        cluster: vec![cluster],
        policies: vec![policy],
        config: EngineConfig::default(),
    };
    replay_files(&input, events, NOW).expect("replay runs")
}

/// Every offered sample is applied or dropped for a counted reason.
fn assert_accounted(report: &ReplayReport) {
    let s = report.engine.stats();
    let dropped = s.late
        + s.duplicates
        + s.unknown_node
        + s.unknown_pod
        + s.irrelevant
        + s.too_far_ahead
        + s.forgotten;
    assert_eq!(s.offered, s.applied + dropped, "{s:?}");
}

#[test]
fn a_trace_sorted_by_machine_with_a_five_hour_hole_is_applied_whole() {
    let dir = temp_dir("trace-sorted-by-node");
    let lines = trace(1.0);
    let by_node: Vec<String> = lines.iter().map(|l| l.2.clone()).collect();
    let report = replay(&dir, &write_lines(&dir, "by-node.jsonl", &by_node));
    assert!(
        report.sorted.is_some(),
        "a file sorted by machine must be detected"
    );
    assert!(report.line_errors.is_empty(), "{:?}", report.line_errors);
    let s = report.engine.stats();
    assert_eq!(s.applied, lines.len() as u64, "{s:?}");
    assert_eq!((s.late, s.too_far_ahead), (0, 0));
    assert_accounted(&report);
    // The same samples in time order stream as they are, with the same outcome.
    let mut by_time = lines.clone();
    by_time.sort_by_key(|l| l.0);
    let by_time: Vec<String> = by_time.into_iter().map(|l| l.2).collect();
    let streamed = replay(&dir, &write_lines(&dir, "by-time.jsonl", &by_time));
    assert!(streamed.sorted.is_none());
    assert_eq!(streamed.engine.stats(), report.engine.stats());
    assert_eq!(streamed.events, report.events);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn percent_scaled_utilisations_are_rejected_with_a_hint_and_never_fire() {
    let dir = temp_dir("trace-percent");
    let lines: Vec<String> = trace(100.0).into_iter().map(|l| l.2).collect();
    let report = replay(&dir, &write_lines(&dir, "percent.jsonl", &lines));
    assert_eq!(report.engine.stats().applied, 0);
    assert_eq!(report.engine.stats().detections, 0);
    // Lines where both values happen to be below 1.05 % are indistinguishable: there are
    // none here (the lowest utilisation is 20 %).
    assert_eq!(report.line_errors.len(), lines.len());
    let first = &report.line_errors[0].error;
    assert_eq!(first.reason(), "out_of_range");
    assert!(first.to_string().contains("percentage"), "{first}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_far_future_first_line_and_seconds_based_timestamps_cost_only_themselves() {
    let dir = temp_dir("trace-clocks");
    let mut lines = trace(1.0);
    lines.sort_by_key(|l| l.0);
    let valid = lines.len() as u64;
    let mut text: Vec<String> = lines.into_iter().map(|l| l.2).collect();
    let far = json!({"schema": "fulcrum.metrics/v1", "ts": NOW + 23 * 60 * MIN,
                     "node": "node-1", "metrics": {"mem_bw_util": 0.5}});
    text.insert(0, far.to_string());
    let seconds = json!({"schema": "fulcrum.metrics/v1", "ts": T0 / 1000,
                         "node": "node-2", "metrics": {"mem_bw_util": 0.5}});
    text.insert(100, seconds.to_string());
    let report = replay(&dir, &write_lines(&dir, "clocks.jsonl", &text));
    let s = report.engine.stats();
    assert_eq!(s.applied, valid, "{s:?}");
    assert_eq!((s.late, s.too_far_ahead), (0, 1));
    assert_eq!(report.line_errors.len(), 1);
    assert_eq!(report.line_errors[0].location, "101");
    assert!(report.line_errors[0].error.to_string().contains("seconds"));
    assert_accounted(&report);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_out_of_order_over_the_sort_limit_stops_the_replay_and_says_what_to_do() {
    let dir = temp_dir("trace-sort-limit");
    let by_node: Vec<String> = trace(1.0).into_iter().map(|l| l.2).collect();
    let events = write_lines(&dir, "by-node.jsonl", &by_node);
    let size = std::fs::metadata(&events).unwrap().len();
    let scenario = Scenario::new(NODES, None);
    let (cluster, _) = scenario.write(&dir);
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, NODE_POLICY).unwrap();
    let run = |limit: u64| {
        std::process::Command::new(crate::support::fulcrum_bin())
            .arg("replay")
            .arg("--cluster")
            .arg(&cluster)
            .arg("--policy")
            .arg(&policy)
            .arg("--events")
            .arg(&events)
            .args(["--output", "json", "--max-sort-bytes", &limit.to_string()])
            .output()
            .unwrap()
    };
    // Over the limit: an error naming the file, the line, and the two ways out.
    let out = run(size - 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "no report from a partial replay");
    let first_back = format!("{}:", events.display());
    assert!(stderr.contains(&first_back), "{stderr}");
    for hint in [
        "not in time order",
        "Sort it by sample time",
        "--max-sort-bytes",
    ] {
        assert!(stderr.contains(hint), "{hint} missing in {stderr}");
    }
    // Control: at the limit the same file is sorted and replayed whole.
    let out = run(size);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["summary"]["samples"]["late"], 0);
    assert!(
        report["summary"]["sorted"].is_object(),
        "{}",
        report["summary"]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
