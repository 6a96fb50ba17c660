//! OTLP and Prometheus-adapter inputs, with messages made by an independent producer
//! (`tests/fixtures/inputs/producer.py`, built on the official `opentelemetry-proto`
//! Python package): the same scenario as native, OTLP and Prometheus JSON gives the same
//! decisions; edge cases of real feeds; OTLP protobuf through a real broker.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::scenario::{POLICY, Scenario, temp_dir};
use crate::support::{fulcrum_bin, workspace};

/// The Python with the test requirements: `$FULCRUM_PYTHON` or the workspace's `.venv`.
pub fn python() -> PathBuf {
    std::env::var_os("FULCRUM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/python"))
}

/// Runs the independent producer with `args`.
pub fn producer(args: &[&str]) {
    let script = workspace().join("tests/fixtures/inputs/producer.py");
    let out = Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .expect("python runs (bash scripts/test.sh creates .venv, or set FULCRUM_PYTHON)");
    assert!(
        out.status.success(),
        "producer.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn test_map() -> String {
    workspace()
        .join("tests/fixtures/inputs/test-map.yaml")
        .display()
        .to_string()
}

/// `fulcrum replay` of `events` in `format`, as JSON.
fn replay(dir: &Path, events: &str, format: &str) -> Value {
    let path = |f: &str| dir.join(f).display().to_string();
    let out = Command::new(fulcrum_bin())
        .args([
            "replay",
            "--cluster",
            &path("cluster.json"),
            "--policy",
            &path("policy.yaml"),
        ])
        .args([
            "--output",
            "json",
            "--events",
            &path(events),
            "--input-format",
            format,
        ])
        .args(["--metrics-map", &test_map()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().is_empty(),
        "{format}: rejected lines: {stderr}"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// What identifies a decision (scores differ in their last bits through rates and units).
fn decision_keys(report: &Value) -> Vec<String> {
    report["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            [
                "at",
                "policy",
                "node",
                "trigger",
                "target",
                "action",
                "outcome",
                "destination",
            ]
            .map(|k| d[k].to_string())
            .join(" ")
        })
        .collect()
}

#[test]
fn the_same_scenario_as_native_otlp_and_prometheus_gives_the_same_decisions() {
    let dir = temp_dir("inputs-same");
    let scenario = Scenario::new(3, Some(60));
    scenario.write(&dir);
    std::fs::write(dir.join("policy.yaml"), POLICY.replace("MODE", "Enforce")).unwrap();
    producer(&[
        "convert",
        &dir.join("events.jsonl").display().to_string(),
        &dir.display().to_string(),
    ]);

    let native = replay(&dir, "events.jsonl", "native");
    let otlp = replay(&dir, "otlp.jsonl", "otlp");
    let prometheus = replay(&dir, "prometheus.jsonl", "prometheus-json");
    let expected = decision_keys(&native);
    assert!(
        expected.iter().any(|d| d.contains("sort-exec-0")),
        "the native scenario decides on the antagonist: {expected:#?}"
    );
    assert_eq!(decision_keys(&otlp), expected, "OTLP");
    assert_eq!(decision_keys(&prometheus), expected, "Prometheus");
    // The engine saw the same samples: as many applied, none late or duplicated.
    for (name, report) in [("otlp", &otlp), ("prometheus", &prometheus)] {
        for counter in ["applied", "late", "duplicates"] {
            assert_eq!(
                report["summary"]["samples"][counter], native["summary"]["samples"][counter],
                "{name}: {counter}"
            );
        }
    }
    // Every OTLP request carried one unmapped metric of the collector itself: dropped and
    // counted, never rejected. Counters began with a first point that gave no value.
    let input = |r: &Value, k: &str| r["summary"]["input"][k].as_u64().unwrap();
    assert_eq!(
        input(&otlp, "unmapped"),
        otlp["summary"]["lines"].as_u64().unwrap()
    );
    assert!(input(&otlp, "first_points") > 0 && input(&prometheus, "first_points") > 0);
    assert_eq!(input(&prometheus, "unmapped"), 0);
    assert_eq!(
        input(&native, "values"),
        0,
        "the native schema bypasses the converters"
    );
    assert!(
        input(&otlp, "values") > 0 && input(&prometheus, "values") > input(&otlp, "values") / 2
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
