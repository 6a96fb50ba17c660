//! The pipelines of `docs/inputs.md`, mirrored: what the documented OpenTelemetry Collector
//! configuration (kubeletstats, hostmetrics and an SDK's `http.server.request.duration`
//! through the otlp receiver; `k8sattributes` and `resource/node`; the Kafka exporter with
//! `otlp_proto` and `otlp_json`) and the documented Prometheus remote write through the
//! prometheus-kafka-adapter write, made by the independent producer
//! (`tests/fixtures/inputs/producer.py collector`) and read with the **shipped default
//! map**. Two scrapes 10 s apart of pod `shop/cart-0` on `node-0`.

use fulcrum::inputs::{InputFormat, MetricsMap};
use fulcrum_engine::sample::Sample;

use crate::inputs::{decode_all, producer, unhex};
use crate::scenario::{T0, temp_dir};

/// (seconds after t0, pod-level?, policy metric, value).
type Expected = (i64, bool, &'static str, f64);

/// Every expected value is in the sample of its time and target, and nothing else is.
fn check(samples: &[Sample<'static>], expected: &[Expected]) {
    let mut seen = 0;
    for s in samples {
        assert_eq!(s.node, "node-0");
        if let Some(pod) = &s.pod {
            assert_eq!(
                (pod.namespace.as_ref(), pod.name.as_ref()),
                ("shop", "cart-0")
            );
        }
        for m in &s.metrics {
            let found = expected.iter().find(|(t, pod, name, _)| {
                T0 + t * 1000 == s.ts_ms && *pod == s.pod.is_some() && *name == m.name
            });
            let Some((_, _, _, value)) = found else {
                panic!("unexpected {} = {} at {:?}", m.name, m.value, s);
            };
            assert!(
                (m.value - value).abs() <= 1e-9 * value.abs().max(1.0),
                "{} at {}: {} != {value}",
                m.name,
                s.ts_ms - T0,
                m.value
            );
            seen += 1;
        }
    }
    assert_eq!(seen, expected.len(), "{samples:#?}");
}

#[test]
fn the_documented_collector_and_adapter_pipelines_feed_the_default_map() {
    let dir = temp_dir("inputs-collector");
    producer(&["collector", &dir.display().to_string()]);
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap();
    let lines = |file: &str| -> Vec<Vec<u8>> {
        read(file).lines().map(|l| l.as_bytes().to_vec()).collect()
    };
    let proto: Vec<Vec<u8>> = read("collector.hex").lines().map(unhex).collect();
    let from_proto = decode_all(InputFormat::Otlp, MetricsMap::default_map(), &proto);
    let from_json = decode_all(
        InputFormat::Otlp,
        MetricsMap::default_map(),
        &lines("collector.jsonl"),
    );
    assert_eq!(
        from_proto, from_json,
        "otlp_proto and otlp_json decode alike"
    );
    let (samples, rejected, stats) = from_proto;
    assert!(rejected.is_empty(), "{rejected:?}");
    // The pod (kubeletstats, and the SDK histogram's p99 of the worse route: 100 requests
    // in (0.25, 0.5] s) and the node (hostmetrics: non-idle CPU seconds of both CPUs, the
    // used memory, disk busy time, network bytes).
    let pod_second: [Expected; 5] = [
        (10, true, "cpu_usage_cores", 0.7),
        (10, true, "mem_usage_bytes", 2e8),
        (10, true, "net_rx_bytes_per_sec", 50_000.0),
        (10, true, "net_tx_bytes_per_sec", 10_000.0),
        (10, true, "latency_p99_ms", 497.5),
    ];
    let node_second: [Expected; 4] = [
        (10, false, "cpu_usage_cores", 1.4),
        (10, false, "disk_io_util", 0.3),
        (10, false, "net_rx_bytes_per_sec", 100_000.0),
        (10, false, "net_tx_bytes_per_sec", 50_000.0),
    ];
    let mut otlp = vec![
        (0, true, "cpu_usage_cores", 0.5),
        (0, true, "mem_usage_bytes", 2e8),
        (0, false, "mem_usage_bytes", 4e9),
        (10, false, "mem_usage_bytes", 4e9),
    ];
    otlp.extend(pod_second);
    otlp.extend(node_second);
    check(&samples, &otlp);
    // Idle CPU time and free memory are not mapped: dropped, counted.
    assert_eq!(stats.unmapped, 4 + 2);

    let (samples, rejected, stats) = decode_all(
        InputFormat::PrometheusJson,
        MetricsMap::default_map(),
        &lines("adapter.jsonl"),
    );
    assert!(rejected.is_empty(), "{rejected:?}");
    // cAdvisor's pod cgroup series and the application's histogram buckets for the pod,
    // node-exporter for the node: the same values as the Collector's where both have them.
    let mut prometheus = vec![
        (0, true, "mem_usage_bytes", 2e8),
        (10, false, "psi_cpu_some", 0.1),
    ];
    prometheus.extend(pod_second);
    prometheus.extend(node_second);
    check(&samples, &prometheus);
    // Idle CPU time, the loopback device and the histogram's _count are not mapped.
    assert_eq!(stats.unmapped, 4 + 2 + 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `fulcrum replay` with the default map of `source` (`--events FILE` or `--topic T`).
fn replay(dir: &std::path::Path, source: &[&str], format: &str) -> serde_json::Value {
    let path = |f: &str| dir.join(f).display().to_string();
    let out = std::process::Command::new(crate::support::fulcrum_bin())
        .args(["replay", "--cluster", &path("cluster.json")])
        .args(["--policy", &path("policy.yaml"), "--output", "json"])
        .args(source)
        .args(["--input-format", format])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "{format}: rejected: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The same messages through the topics the documentation names (`fulcrum.otlp` with
/// `otlp_proto`, `fulcrum.prometheus`), on a real broker: read back by `fulcrum replay
/// --brokers`, they convert exactly as the files do.
#[test]
fn the_documented_topics_carry_the_mirrored_messages_through_a_broker() {
    use crate::support::{Broker, create_topics};
    let broker = Broker::start();
    create_topics(
        &broker.addr(),
        &[("fulcrum.otlp", 1), ("fulcrum.prometheus", 1)],
    );
    let dir = temp_dir("inputs-collector-kafka");
    crate::scenario::Scenario::new(1, None).write(&dir);
    let policy = crate::scenario::POLICY.replace("MODE", "Enforce");
    std::fs::write(dir.join("policy.yaml"), policy).unwrap();
    let out = dir.display().to_string();
    producer(&["collector", &out]);
    let path = |f: &str| dir.join(f).display().to_string();
    let addr = broker.addr();
    // Values before they combine into samples (the node's CPU time is 4 series, the pod's
    // latency 2 routes in OTLP): 17 from the Collector, 14 through the adapter.
    for (topic, file, format, values) in [
        ("fulcrum.otlp", "collector", "otlp", 17),
        ("fulcrum.prometheus", "adapter", "prometheus-json", 14),
    ] {
        let sent = if format == "otlp" {
            format!("{file}.hex")
        } else {
            format!("{file}.jsonl")
        };
        producer(&["produce-file", &addr, topic, &path(&sent)]);
        let from_topic = replay(&dir, &["--brokers", &addr, "--topic", topic], format);
        let events = path(&format!("{file}.jsonl"));
        let from_file = replay(&dir, &["--events", &events], format);
        let summary = |r: &serde_json::Value, k: &str| r["summary"][k].clone();
        assert_eq!(summary(&from_topic, "input"), summary(&from_file, "input"));
        assert_eq!(
            summary(&from_topic, "samples"),
            summary(&from_file, "samples")
        );
        assert_eq!(from_topic["summary"]["input"]["values"], values, "{format}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
