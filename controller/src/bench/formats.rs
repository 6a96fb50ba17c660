//! Decode throughput of the other input formats the feed accepts — OTLP protobuf, OTLP
//! JSON and prometheus-kafka-adapter JSON — each against the plain parse of the same bytes
//! in the same run.
//!
//! The messages carry what the shipped default metrics map reads: per pod, the
//! kubeletstats receiver's CPU and memory gauges and network counters (OTLP), or
//! cAdvisor's pod cgroup series (Prometheus); per node, host metrics or node-exporter
//! network counters. OTLP sends one `ExportMetricsServiceRequest` per node and tick (a
//! resource per pod, as the Collector batches them); the adapter sends one value per
//! message. Fulcrum's figure covers everything after the consumer: the parse, the mapping,
//! counter rates and grouping values into samples (`fulcrum::inputs::Input`). The plain
//! parse is the parse alone: `prost` (protobuf) or `serde_json` (JSON) into the
//! `opentelemetry-proto` message types Fulcrum parses into first, and for the adapter
//! `serde_json` into borrowed structs that keep every field and validate nothing.
//! Both rates count the samples Fulcrum assembles from the same messages.

use std::time::Instant;

use fulcrum_engine::sample::DecodeOptions;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use serde::Deserialize;

use super::decode::BarePairs;
use super::workload::T0_MS;
use crate::inputs::{Input, InputFormat, InputSpec, MetricsMap};

/// Pods per node in the generated messages.
const PODS: usize = 30;
/// Sample period (ms).
const PERIOD_MS: i64 = 10_000;

/// Decode rates of one input format.
#[derive(Clone, Debug, PartialEq)]
pub struct FormatRates {
    /// The format, as `--input-format` and the JSON keys name it (`otlp_protobuf`,
    /// `otlp_json`, `prometheus_json`).
    pub format: &'static str,
    /// Messages decoded per pass.
    pub messages: usize,
    /// Samples Fulcrum assembled per pass (the count both rates use).
    pub samples: usize,
    /// Samples per second through Fulcrum's input (parse, map, rates, grouping).
    pub fulcrum: f64,
    /// Samples per second through the plain parse of the same bytes.
    pub bare: f64,
}

/// A string attribute.
fn attr(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

/// One number point at `ts` (ms).
fn point(ts: i64, value: Value, attributes: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: T0_MS as u64 * 1_000_000,
        time_unix_nano: ts as u64 * 1_000_000,
        value: Some(value),
        ..NumberDataPoint::default()
    }
}

/// A gauge metric.
fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
    Metric {
        name: name.into(),
        data: Some(Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Metric::default()
    }
}

/// A cumulative monotonic counter with a receive and a transmit point.
fn network(name: &str, ts: i64, rx: f64, tx: f64) -> Metric {
    let dir = |d: &str| vec![attr("direction", d)];
    Metric {
        name: name.into(),
        data: Some(Data::Sum(Sum {
            data_points: vec![
                point(ts, Value::AsInt(rx as i64), dir("receive")),
                point(ts, Value::AsInt(tx as i64), dir("transmit")),
            ],
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        ..Metric::default()
    }
}

/// A resource with its metrics in one scope.
fn resource(attributes: Vec<KeyValue>, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes,
            ..Resource::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..ScopeMetrics::default()
        }],
        ..ResourceMetrics::default()
    }
}

/// A value between 0 and 1 that varies with its inputs.
fn wobble(tick: u64, node: usize, pod: usize) -> f64 {
    ((tick as usize * 31 + node * 7 + pod * 3) % 17) as f64 / 17.0
}

/// The OTLP request of `node` at `tick`: one resource per pod and one for the node.
pub fn otlp_request(node: usize, tick: u64) -> ExportMetricsServiceRequest {
    let ts = T0_MS + tick as i64 * PERIOD_MS;
    let node_name = format!("node-{node}");
    let elapsed = (tick as f64 + 1.0) * 10.0;
    let mut resources: Vec<ResourceMetrics> = (0..PODS)
        .map(|p| {
            let r = wobble(tick, node, p);
            let attributes = vec![
                attr("k8s.node.name", &node_name),
                attr("k8s.namespace.name", "shop"),
                attr("k8s.pod.name", &format!("app-{node}-{p}")),
                attr("k8s.pod.uid", &format!("uid-{node}-{p}")),
            ];
            let metrics = vec![
                gauge(
                    "k8s.pod.cpu.usage",
                    vec![point(ts, Value::AsDouble(0.5 + r), vec![])],
                ),
                gauge(
                    "k8s.pod.memory.working_set",
                    vec![point(ts, Value::AsInt((2e8 * (1.0 + r)) as i64), vec![])],
                ),
                network("k8s.pod.network.io", ts, 1e6 * elapsed, 4e5 * elapsed),
            ];
            resource(attributes, metrics)
        })
        .collect();
    let used = vec![attr("state", "used")];
    let metrics = vec![
        gauge(
            "system.memory.usage",
            vec![point(ts, Value::AsInt(6e10 as i64), used)],
        ),
        network("system.network.io", ts, 3e7 * elapsed, 1.2e7 * elapsed),
    ];
    resources.push(resource(vec![attr("k8s.node.name", &node_name)], metrics));
    ExportMetricsServiceRequest {
        resource_metrics: resources,
    }
}

/// One prometheus-kafka-adapter message.
fn adapter(ts: &str, name: &str, value: f64, labels: &[(&str, &str)]) -> String {
    let mut m = format!(
        r#"{{"timestamp":"{ts}","value":"{value}","name":"{name}","labels":{{"__name__":"{name}""#
    );
    for (k, v) in labels {
        m.push_str(&format!(r#","{k}":"{v}""#));
    }
    m.push_str("}}");
    m
}

/// The adapter messages of `node` at `tick`: four cAdvisor pod series per pod and two
/// node-exporter counters.
pub fn prometheus_messages(node: usize, tick: u64, out: &mut Vec<String>) {
    let ms = T0_MS + tick as i64 * PERIOD_MS;
    let ts =
        jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| t.to_string());
    let node_name = format!("node-{node}");
    let instance = format!("10.0.{}.{}:10250", node / 250, node % 250);
    let elapsed = (tick as f64 + 1.0) * 10.0;
    for p in 0..PODS {
        let r = wobble(tick, node, p);
        let pod = format!("app-{node}-{p}");
        let id = format!("/kubepods/burstable/pod{node}-{p}");
        let labels = [
            ("container", ""),
            ("id", id.as_str()),
            ("instance", instance.as_str()),
            ("job", "kubelet"),
            ("metrics_path", "/metrics/cadvisor"),
            ("namespace", "shop"),
            ("node", node_name.as_str()),
            ("pod", pod.as_str()),
        ];
        let series = [
            ("container_cpu_usage_seconds_total", elapsed * (0.5 + r)),
            ("container_memory_working_set_bytes", 2e8 * (1.0 + r)),
            ("container_network_receive_bytes_total", 1e6 * elapsed),
            ("container_network_transmit_bytes_total", 4e5 * elapsed),
        ];
        for (name, value) in series {
            out.push(adapter(&ts, name, value, &labels));
        }
    }
    let labels = [
        ("device", "eth0"),
        ("instance", instance.as_str()),
        ("job", "node-exporter"),
        ("node", node_name.as_str()),
    ];
    for (name, value) in [
        ("node_network_receive_bytes_total", 3e7 * elapsed),
        ("node_network_transmit_bytes_total", 1.2e7 * elapsed),
    ] {
        out.push(adapter(&ts, name, value, &labels));
    }
}

/// The adapter's message, parsed plainly (every field kept, nothing validated).
#[derive(Deserialize)]
struct BareAdapter<'a> {
    #[serde(borrow)]
    #[allow(dead_code)]
    timestamp: &'a str,
    #[serde(borrow)]
    #[allow(dead_code)]
    value: &'a str,
    #[serde(borrow)]
    #[allow(dead_code)]
    name: &'a str,
    #[serde(borrow)]
    labels: BareLabels<'a>,
}

/// Label pairs kept inline, in order, as Fulcrum's parser keeps them.
type BareLabels<'a> = BarePairs<'a, &'a str, 16>;

/// The plain parse of one message of `format`; true when it parsed.
fn bare_parse(format: &str, message: &[u8]) -> bool {
    match format {
        "otlp_protobuf" => ExportMetricsServiceRequest::decode(message)
            .is_ok_and(|r| !r.resource_metrics.is_empty()),
        "otlp_json" => serde_json::from_slice::<ExportMetricsServiceRequest>(message)
            .is_ok_and(|r| !r.resource_metrics.is_empty()),
        _ => {
            serde_json::from_slice::<BareAdapter<'_>>(message).is_ok_and(|m| !m.labels.0.is_empty())
        }
    }
}

/// Samples Fulcrum assembles from `messages` with a fresh input (the last groups are
/// released at the end, as at the end of a file), and the values or messages it rejected.
pub fn fulcrum_samples(format: InputFormat, messages: &[Vec<u8>]) -> (usize, usize) {
    let mut input = Input::new(InputSpec::new(format, MetricsMap::default_map()));
    let options = DecodeOptions {
        now_ms: T0_MS + 86_400_000,
    };
    let (mut samples, mut rejected) = (0, 0);
    for m in messages {
        match input.decode(m, &options) {
            Ok(decoded) => {
                samples += decoded.samples.len();
                rejected += decoded.rejected.len();
            }
            Err(_) => rejected += 1,
        }
    }
    (samples + input.finish().samples.len(), rejected)
}

/// The messages of each format for `nodes` nodes over `ticks` ticks.
pub fn messages(nodes: usize, ticks: u64) -> Vec<(&'static str, InputFormat, Vec<Vec<u8>>)> {
    let (mut proto, mut json, mut prom) = (Vec::new(), Vec::new(), Vec::new());
    let mut lines = Vec::new();
    for tick in 0..ticks {
        for node in 0..nodes {
            let request = otlp_request(node, tick);
            proto.push(request.encode_to_vec());
            json.push(serde_json::to_vec(&request).unwrap_or_default());
            lines.clear();
            prometheus_messages(node, tick, &mut lines);
            prom.extend(lines.drain(..).map(String::into_bytes));
        }
    }
    vec![
        ("otlp_protobuf", InputFormat::Otlp, proto),
        ("otlp_json", InputFormat::Otlp, json),
        ("prometheus_json", InputFormat::PrometheusJson, prom),
    ]
}

/// Repeats `pass` (which returns what it counted) for at least [`MIN_SECS`]; the count per
/// second.
fn rate(mut pass: impl FnMut() -> usize) -> f64 {
    let started = Instant::now();
    let mut counted = 0;
    while started.elapsed().as_secs_f64() < MIN_SECS {
        counted += pass();
    }
    counted as f64 / started.elapsed().as_secs_f64()
}

/// How long each format is decoded by each parser.
const MIN_SECS: f64 = 0.5;

/// Decodes each format's messages through Fulcrum's input (a fresh input per pass) and
/// through the plain parse, each repeatedly for [`MIN_SECS`].
pub fn measure(nodes: usize, ticks: u64) -> Vec<FormatRates> {
    messages(nodes, ticks)
        .into_iter()
        .map(|(name, format, messages)| {
            let (samples, _) = fulcrum_samples(format, &messages);
            let fulcrum = rate(|| fulcrum_samples(format, &messages).0);
            // Every message parses plainly (checked by a test): the same samples per pass.
            let parsed = rate(|| messages.iter().filter(|m| bare_parse(name, m)).count());
            let bare = parsed * samples as f64 / messages.len().max(1) as f64;
            FormatRates {
                format: name,
                messages: messages.len(),
                samples,
                fulcrum,
                bare,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message of every format parses plainly and through Fulcrum's input, which
    /// assembles one sample per pod and one per node from the second tick on (the first
    /// tick of a counter has no rate yet, so its values wait for the next).
    #[test]
    fn every_format_decodes_to_one_sample_per_pod_and_node_and_tick() {
        let (nodes, ticks) = (3, 3);
        for (name, format, messages) in messages(nodes, ticks) {
            assert!(
                messages.iter().all(|m| bare_parse(name, m)),
                "{name}: a message does not parse plainly"
            );
            let (samples, rejected) = fulcrum_samples(format, &messages);
            assert_eq!(rejected, 0, "{name}");
            let per_tick = nodes * (PODS + 1);
            assert!(
                samples >= per_tick * (ticks as usize - 1) && samples <= per_tick * ticks as usize,
                "{name}: {samples} samples from {nodes} nodes × {ticks} ticks"
            );
        }
    }

    /// The adapter messages carry the labels the default map reads (`container: ''` marks
    /// the pod cgroup series).
    #[test]
    fn adapter_messages_name_their_pod_and_node() {
        let mut out = Vec::new();
        prometheus_messages(2, 1, &mut out);
        let parsed: BareAdapter<'_> = serde_json::from_str(&out[0]).expect("parses");
        let label = |key: &str| parsed.labels.0.iter().find(|(k, _)| *k == key).map(|p| p.1);
        assert_eq!(label("pod"), Some("app-2-0"));
        assert_eq!(label("node"), Some("node-2"));
        assert_eq!(label("container"), Some(""));
    }
}
