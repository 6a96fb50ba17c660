//! OTLP and Prometheus-adapter inputs, with messages made by an independent producer
//! (`tests/fixtures/inputs/producer.py`, built on the official `opentelemetry-proto`
//! Python package): the same scenario as native, OTLP and Prometheus JSON gives the same
//! decisions; edge cases of real feeds; OTLP protobuf through a real broker.

use std::path::{Path, PathBuf};
use std::process::Command;

use fulcrum::inputs::{Input, InputFormat, InputSpec, InputStats, MetricsMap};
use fulcrum_engine::sample::{DecodeOptions, Sample};
use serde_json::Value;

use crate::scenario::{POLICY, Scenario, T0, temp_dir};
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
    // Every native metric value became exactly one value: none silently lost.
    let native_values: u64 = std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let samples = v["samples"].as_array().cloned().unwrap_or_else(|| vec![v]);
            samples
                .iter()
                .map(|s| s["metrics"].as_object().unwrap().len() as u64)
                .sum::<u64>()
        })
        .sum();
    assert_eq!(input(&otlp, "values"), native_values);
    assert_eq!(input(&prometheus, "values"), native_values);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Decodes every line with a fresh input, then ends the input: the samples (sorted by
/// time), the rejections (reason and field) and the input's counters.
pub fn decode_all(
    format: InputFormat,
    map: MetricsMap,
    messages: &[Vec<u8>],
) -> (Vec<Sample<'static>>, Vec<(String, String)>, InputStats) {
    let mut input = Input::new(InputSpec::new(format, map));
    let options = DecodeOptions {
        now_ms: T0 + 86_400_000,
    };
    let mut samples = Vec::new();
    let mut rejected = Vec::new();
    for message in messages {
        match input.decode(message, &options) {
            Ok(decoded) => {
                samples.extend(decoded.samples.into_iter().map(Sample::into_owned));
                for e in decoded.rejected {
                    rejected.push((e.reason().to_owned(), e.to_string()));
                }
            }
            Err(e) => rejected.push((e.reason().to_owned(), e.to_string())),
        }
    }
    let rest = input.finish();
    samples.extend(rest.samples);
    rejected.extend(
        rest.rejected
            .iter()
            .map(|e| (e.reason().to_owned(), e.to_string())),
    );
    samples.sort_by_key(|s| s.ts_ms);
    (samples, rejected, input.stats().clone())
}

pub fn values(samples: &[Sample<'_>], metric: &str) -> Vec<(i64, f64)> {
    samples
        .iter()
        .filter_map(|s| s.metric(metric).map(|v| (s.ts_ms - T0, v)))
        .collect()
}

pub fn close(actual: &[(i64, f64)], expected: &[(i64, f64)]) -> bool {
    actual.len() == expected.len()
        && actual
            .iter()
            .zip(expected)
            .all(|(a, e)| a.0 == e.0 && (a.1 - e.1).abs() < 1e-9)
}

#[test]
fn otlp_edge_cases_from_the_official_bindings_as_json_and_protobuf() {
    let dir = temp_dir("inputs-edge");
    producer(&["edge", &dir.display().to_string()]);
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap();
    let json: Vec<Vec<u8>> = read("edge.jsonl")
        .lines()
        .map(|l| l.as_bytes().to_vec())
        .collect();
    let proto: Vec<Vec<u8>> = read("edge.hex").lines().map(unhex).collect();
    let map = || MetricsMap::load(Path::new(&test_map())).unwrap();
    let from_json = decode_all(InputFormat::Otlp, map(), &json);
    let from_proto = decode_all(InputFormat::Otlp, map(), &proto);
    assert_eq!(from_json, from_proto, "JSON and protobuf decode alike");
    let (samples, rejected, stats) = from_json;

    // 2 cores, then a reset (restarted at 5 s, 10 s later) = 0.5 cores, then 10 s in 20 s;
    // the out-of-order point between them is dropped.
    let cpu = values(&samples, "cpu_usage_cores");
    assert!(
        close(&cpu, &[(10_000, 2.0), (20_000, 0.5), (40_000, 0.5)]),
        "{cpu:?}"
    );
    assert_eq!(stats.out_of_order, 1);
    assert_eq!(stats.counter_resets, 1);
    // p99 of the 10 requests of the second interval, all in (0.25, 0.5] s; the third
    // interval has no requests and gives no value.
    let p99 = values(&samples, "latency_p99_ms");
    assert!(close(&p99, &[(10_000, 497.5)]), "{p99:?}");
    assert_eq!(stats.empty_intervals, 1);
    // The unknown metric is dropped and counted, not rejected.
    assert_eq!(stats.unmapped, 1);
    // The pod without k8s.node.name is rejected, naming the attribute.
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].0, "missing_field");
    assert!(
        rejected[0]
            .1
            .starts_with("resourceMetrics[0].resource.attributes.k8s.node.name"),
        "{}",
        rejected[0].1
    );
    // Samples keep the pod, UID and container of the resource.
    let s = &samples[0];
    assert_eq!(s.node, "node-0");
    let pod = s.pod.as_ref().unwrap();
    assert_eq!(
        (pod.namespace.as_ref(), pod.name.as_ref()),
        ("shop", "cart-0")
    );
    assert_eq!(pod.uid.as_deref(), Some("uid-cart-0"));
    assert_eq!(s.container.as_deref(), Some("main"));
    std::fs::remove_dir_all(&dir).unwrap();
}

pub fn unhex(line: &str) -> Vec<u8> {
    (0..line.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap())
        .collect()
}

/// A prometheus-kafka-adapter message as its README shows them.
pub fn prom(ts_s: i64, name: &str, value: &str, labels: &[(&str, &str)]) -> Vec<u8> {
    let ts = jiff::Timestamp::from_second(T0 / 1000 + ts_s).unwrap();
    let mut l = serde_json::Map::new();
    l.insert("__name__".into(), name.into());
    for (k, v) in labels {
        l.insert((*k).into(), (*v).into());
    }
    serde_json::json!({"timestamp": ts.to_string(), "value": value, "name": name, "labels": l})
        .to_string()
        .into_bytes()
}

#[test]
fn prometheus_adapter_edge_cases() {
    let map = MetricsMap::parse(
        "metrics:\n\
         - {source: container_cpu_usage_seconds_total, metric: cpu_usage_cores, type: counter, aggregate: pod}\n\
         - {source: node_pressure_cpu_waiting_seconds_total, metric: psi_cpu_some, type: counter}\n\
         - {source: container_memory_working_set_bytes, metric: mem_usage_bytes, scale: 1.0e-6, aggregate: pod}\n",
        "test",
    )
    .unwrap();
    let pod = |c: &'static str| -> Vec<(&'static str, &'static str)> {
        vec![
            ("node", "node-0"),
            ("namespace", "shop"),
            ("pod", "cart-0"),
            ("container", c),
        ]
    };
    let node = [("instance", "node-0:9100"), ("job", "node-exporter")];
    let cpu = "container_cpu_usage_seconds_total";
    let psi = "node_pressure_cpu_waiting_seconds_total";
    let messages = vec![
        prom(0, cpu, "100", &pod("app")),
        prom(0, cpu, "50", &pod("sidecar")),
        prom(0, psi, "10", &node),
        prom(10, cpu, "120", &pod("app")),     // 2 cores
        prom(10, cpu, "55", &pod("sidecar")),  // + 0.5 cores: the pod uses 2.5
        prom(10, psi, "12", &node),            // 0.2 s stalled per s
        prom(5, cpu, "110", &pod("app")),      // out of order: dropped
        prom(20, cpu, "10", &pod("app")),      // reset: 10 s in 10 s = 1 core
        prom(20, cpu, "NaN", &pod("sidecar")), // staleness marker: dropped
        prom(
            20,
            "container_memory_working_set_bytes",
            "2.5e8",
            &pod("app"),
        ), // 250 MB
        prom(20, "go_goroutines", "12", &node), // unknown: dropped, counted
        prom(20, cpu, "1", &[("node", "node-0"), ("pod", "cart-0")]), // no namespace
        prom(20, psi, "abc", &node),           // not a number
        prom(20, "cpu_util", "85", &node),     // a percentage: fails the unit check
        br#"{"timestamp":"2025-11-26T10:00:30Z","name":"x","labels":{}"#.to_vec(), // cut off
    ];
    let (samples, rejected, stats) = decode_all(InputFormat::PrometheusJson, map, &messages);

    // Container series of the pod add up into one pod sample (no container).
    let cpu = values(&samples, "cpu_usage_cores");
    assert!(close(&cpu, &[(10_000, 2.5), (20_000, 1.0)]), "{cpu:?}");
    assert!(
        samples
            .iter()
            .filter(|s| s.pod.is_some())
            .all(|s| s.container.is_none())
    );
    // The node comes from `instance` without its port.
    let psi = values(&samples, "psi_cpu_some");
    assert!(close(&psi, &[(10_000, 0.2)]), "{psi:?}");
    assert!(
        samples
            .iter()
            .filter(|s| s.pod.is_none())
            .all(|s| s.node == "node-0")
    );
    // Units: scaled; the memory value joins the pod's sample of that time.
    let at20 = samples
        .iter()
        .find(|s| s.ts_ms == T0 + 20_000 && s.pod.is_some())
        .unwrap();
    assert_eq!(at20.metric("mem_usage_bytes"), Some(250.0));
    assert_eq!(at20.metric("cpu_usage_cores"), Some(1.0));
    assert_eq!(
        (
            stats.out_of_order,
            stats.counter_resets,
            stats.stale,
            stats.unmapped
        ),
        (1, 1, 1, 1)
    );
    let reasons: Vec<&str> = rejected.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        reasons,
        ["missing_field", "wrong_type", "not_json", "out_of_range"],
        "{rejected:?}"
    );
    assert!(
        rejected[3].1.starts_with("metrics.cpu_util:"),
        "{}",
        rejected[3].1
    );
    assert!(
        rejected[0].1.starts_with("labels.namespace:"),
        "{}",
        rejected[0].1
    );
    assert!(rejected[1].1.starts_with("value:"), "{}", rejected[1].1);
}

#[test]
fn otlp_protobuf_through_the_broker_is_decided_on_and_bad_messages_are_dead_lettered() {
    use crate::support::{Broker, Fulcrum, create_topics, read_all};
    const TOPIC: &str = "fulcrum.otlp"; // as in docs/inputs.md
    const DLQ: &str = "fulcrum.otlp.dlq";
    let broker = Broker::start();
    create_topics(
        &broker.addr(),
        &[(TOPIC, 3), (DLQ, 1), ("fulcrum.decisions", 1)],
    );
    let dir = temp_dir("inputs-kafka");
    let mut scenario = Scenario::new(3, Some(60));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    scenario.t0 = now - scenario.ticks * scenario.period_ms - 60_000;
    scenario.write(&dir);
    std::fs::write(dir.join("policy.yaml"), POLICY.replace("MODE", "Enforce")).unwrap();
    let path = |f: &str| dir.join(f).display().to_string();
    // The Python client produces the requests as protobuf (the exporter's otlp_proto),
    // then a pod without k8s.node.name, bytes that are not protobuf, and a request with an
    // unknown metric only.
    producer(&["produce-otlp", &path("events.jsonl"), &broker.addr(), TOPIC]);

    let args: Vec<String> = [
        "run",
        "--cluster",
        &path("cluster.json"),
        "--policy",
        &path("policy.yaml"),
        "--brokers",
        &broker.addr(),
        "--topic",
        TOPIC,
        "--group",
        "otlp",
        "--start",
        "earliest",
        "--max-evidence-age",
        "2h",
        "--input-format",
        "otlp",
        "--metrics-map",
        &test_map(),
        "--kafka-config",
        "session.timeout.ms=6000",
        "--kafka-config",
        "heartbeat.interval.ms=500",
    ]
    .map(String::from)
    .to_vec();
    let mut fulcrum = Fulcrum::spawn(&args);
    let decision = fulcrum.wait_for(MINUTE, "the antagonist decision", |v| {
        v["kind"] == "Decision" && v["outcome"] == "Executed" && v["target"] == "spark/sort-exec-0"
    });
    assert_eq!(decision["node"], "node-0");
    crate::support::eventually(MINUTE, "two dead letters", || {
        read_all(&broker.addr(), DLQ).len() >= 2
    });
    let (_, stopped) = fulcrum.stop();
    assert_eq!(stopped["feed"]["dead_letters"], 2, "{stopped}");
    // One collector metric per request, and the unknown-only request: dropped, counted.
    let requests = std::fs::read_to_string(path("events.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(
        stopped["feed"]["unmapped"],
        requests as u64 + 1,
        "{stopped}"
    );

    let dlq = read_all(&broker.addr(), DLQ);
    let mut seen: Vec<(String, String)> = dlq
        .iter()
        .map(|(_, _, _, _, headers)| {
            let h = |n: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
                    .unwrap()
            };
            (h("fulcrum.error.reason"), h("fulcrum.error.message"))
        })
        .collect();
    seen.sort();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].0, "missing_field");
    assert!(
        seen[0].1.contains("resource.attributes.k8s.node.name"),
        "{}",
        seen[0].1
    );
    assert_eq!(seen[1].0, "not_protobuf");

    // Replay from the topic decides as a replay of the same requests as OTLP JSON lines.
    producer(&["convert", &path("events.jsonl"), &dir.display().to_string()]);
    let from_file = replay(&dir, "otlp.jsonl", "otlp");
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
            "--brokers",
            &broker.addr(),
            "--topic",
            TOPIC,
        ])
        .args(["--input-format", "otlp", "--metrics-map", &test_map()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("(not_protobuf)") && stderr.contains("(missing_field)"),
        "{stderr}"
    );
    let from_kafka: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!decision_keys(&from_file).is_empty());
    assert_eq!(decision_keys(&from_kafka), decision_keys(&from_file));
    std::fs::remove_dir_all(&dir).unwrap();
}

const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);

#[test]
fn a_bad_metrics_map_or_a_window_above_the_lateness_stops_the_cli_with_the_reason() {
    let dir = temp_dir("inputs-cli");
    Scenario::new(1, None).write(&dir);
    std::fs::write(dir.join("policy.yaml"), POLICY.replace("MODE", "Enforce")).unwrap();
    let bad_map = dir.join("map.yaml");
    std::fs::write(
        &bad_map,
        "metrics:\n- {source: h, metric: p99, type: histogram}\n",
    )
    .unwrap();
    let path = |f: &str| dir.join(f).display().to_string();
    let run = |extra: &[&str]| {
        let out = Command::new(fulcrum_bin())
            .args([
                "replay",
                "--cluster",
                &path("cluster.json"),
                "--policy",
                &path("policy.yaml"),
            ])
            .args(["--events", &path("events.jsonl"), "--input-format", "otlp"])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["--metrics-map", &path("map.yaml")]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("metrics[0] (h): a histogram rule needs quantile"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--lateness", "5s"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("group_window_ms (5000) must be below the lateness (5000 ms)"),
        "{stderr}"
    );
    // Control: the default map with the default lateness runs. The native lines are not
    // OTLP: each is rejected (not read as an empty request), and the replay completes.
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("1: resourceMetrics: is required but missing (missing_field)"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
