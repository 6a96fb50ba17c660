//! OTLP metrics: an `ExportMetricsServiceRequest` as protobuf (the Collector Kafka
//! exporter's `otlp_proto`) or JSON (`otlp_json`, also the file exporter's lines). The
//! first non-blank byte tells them apart: `{` is JSON, and can never start this protobuf.
//! Node, pod and container come from the resource attributes (`k8s.node.name`,
//! `k8s.namespace.name`, `k8s.pod.name`, `k8s.pod.uid`, `k8s.container.name`), checked
//! only for resources with at least one mapped data point.

use std::borrow::Cow;

use fulcrum_engine::sample::{DecodeError, DecodeOptions, MAX_MESSAGE_BYTES, Problem};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, SummaryDataPoint,
};
use prost::Message;

use super::assemble::TargetRef;
use super::convert::{Converter, Point, Reading, labels_hash};
use super::exponential;
use super::mapping::Target;
use super::target::{Names, check_ts};

/// OTLP's "no recorded value" data point flag.
const NO_RECORDED_VALUE: u32 = 1;

/// Decodes one OTLP message into `converter`; rejected data points go to `rejected`.
pub fn decode(
    bytes: &[u8],
    options: &DecodeOptions,
    converter: &mut Converter,
    rejected: &mut Vec<DecodeError>,
) -> Result<(), DecodeError> {
    let request = parse(bytes)?;
    for (r, resource) in request.resource_metrics.iter().enumerate() {
        let mut walk = Walk {
            converter: &mut *converter,
            options,
            rejected: &mut *rejected,
            r,
            target: None,
        };
        walk.resource(resource);
    }
    Ok(())
}

/// Parses the message as protobuf or JSON.
pub fn parse(bytes: &[u8]) -> Result<ExportMetricsServiceRequest, DecodeError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    // An empty value, or a JSON object without `resourceMetrics` (a native sample sent to
    // an OTLP topic, say), is refused rather than read as an empty request.
    let missing = || DecodeError::Field {
        field: "resourceMetrics".into(),
        problem: Problem::Missing,
    };
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        let text = enum_names_as_numbers(bytes);
        let request: ExportMetricsServiceRequest =
            serde_json::from_slice(&text).map_err(|e| json_error(&text, &e))?;
        let key = b"\"resourceMetrics\"";
        if request.resource_metrics.is_empty() && !text.windows(key.len()).any(|w| w == key) {
            return Err(missing());
        }
        return Ok(request);
    }
    if first.is_none() {
        return Err(missing());
    }
    ExportMetricsServiceRequest::decode(bytes).map_err(|e| DecodeError::NotProtobuf {
        expected: "OTLP ExportMetricsServiceRequest",
        message: e.to_string(),
    })
}

/// The JSON mapping of protobuf allows enum values by name
/// (`"AGGREGATION_TEMPORALITY_CUMULATIVE"`, as protobuf's own JSON printers write them)
/// or by number (as the Collector writes them); the bindings read only numbers, so names
/// are rewritten. Borrows the input when there is no name to rewrite.
fn enum_names_as_numbers(bytes: &[u8]) -> Cow<'_, [u8]> {
    const NAMES: [(&[u8], &[u8]); 3] = [
        (b"\"AGGREGATION_TEMPORALITY_UNSPECIFIED\"", b"0"),
        (b"\"AGGREGATION_TEMPORALITY_DELTA\"", b"1"),
        (b"\"AGGREGATION_TEMPORALITY_CUMULATIVE\"", b"2"),
    ];
    const PREFIX: &[u8] = b"\"AGGREGATION_TEMPORALITY_";
    if !bytes.windows(PREFIX.len()).any(|w| w == PREFIX) {
        return Cow::Borrowed(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while !rest.is_empty() {
        match NAMES.iter().find(|(name, _)| rest.starts_with(name)) {
            Some((name, number)) => {
                out.extend_from_slice(number);
                rest = &rest[name.len()..];
            }
            None => {
                out.push(rest[0]);
                rest = &rest[1..];
            }
        }
    }
    Cow::Owned(out)
}

fn json_error(bytes: &[u8], e: &serde_json::Error) -> DecodeError {
    let line_start: usize = bytes
        .split_inclusive(|b| *b == b'\n')
        .take(e.line().saturating_sub(1))
        .map(<[u8]>::len)
        .sum();
    let message = e.to_string();
    let message = match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    };
    DecodeError::Syntax {
        offset: (line_start + e.column().saturating_sub(1)).min(bytes.len()),
        message,
    }
}

/// A string attribute's value.
fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

fn string_attributes(attributes: &[KeyValue]) -> impl Iterator<Item = (&str, &str)> {
    attributes
        .iter()
        .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some((kv.key.as_str(), s.as_str())),
            _ => None,
        })
}

/// The walk through one resource.
struct Walk<'w, 'a> {
    converter: &'w mut Converter,
    options: &'w DecodeOptions,
    rejected: &'w mut Vec<DecodeError>,
    r: usize,
    /// The resource's target once a mapped point needed it; `Err(())` once it failed.
    target: Option<Result<TargetRef<'a>, ()>>,
}

impl<'a> Walk<'_, 'a> {
    fn resource(&mut self, resource: &'a ResourceMetrics) {
        let attributes = resource
            .resource
            .as_ref()
            .map_or(&[][..], |r| &r.attributes[..]);
        for (s, scope) in resource.scope_metrics.iter().enumerate() {
            for (m, metric) in scope.metrics.iter().enumerate() {
                if self.target == Some(Err(())) {
                    return;
                }
                if !self.converter.map.knows(&metric.name) {
                    self.converter.stats.unmapped += points(metric);
                    continue;
                }
                let path = (s, m);
                self.metric(metric, attributes, path);
            }
        }
    }

    fn metric(&mut self, metric: &'a Metric, resource: &'a [KeyValue], path: (usize, usize)) {
        let name = metric.name.as_str();
        match &metric.data {
            Some(Data::Gauge(g)) => {
                for (i, p) in g.data_points.iter().enumerate() {
                    self.number(name, p, None, resource, (path.0, path.1, i));
                }
            }
            Some(Data::Sum(sum)) => {
                let delta = sum.aggregation_temporality == AggregationTemporality::Delta as i32;
                let kind = (sum.is_monotonic, delta);
                for (i, p) in sum.data_points.iter().enumerate() {
                    self.number(name, p, Some(kind), resource, (path.0, path.1, i));
                }
            }
            Some(Data::Histogram(h)) => {
                let delta = h.aggregation_temporality == AggregationTemporality::Delta as i32;
                for (i, p) in h.data_points.iter().enumerate() {
                    self.histogram(name, p, delta, resource, (path.0, path.1, i));
                }
            }
            Some(Data::ExponentialHistogram(h)) => {
                let delta = h.aggregation_temporality == AggregationTemporality::Delta as i32;
                for (i, p) in h.data_points.iter().enumerate() {
                    self.exponential(name, p, delta, resource, (path.0, path.1, i));
                }
            }
            Some(Data::Summary(summary)) => {
                for (i, p) in summary.data_points.iter().enumerate() {
                    self.summary(name, p, resource, (path.0, path.1, i));
                }
            }
            None => {
                let (s, m) = path;
                self.rejected.push(DecodeError::Field {
                    field: format!("resourceMetrics[{}].scopeMetrics[{s}].metrics[{m}]", self.r),
                    problem: Problem::WrongType {
                        expected: "a gauge, sum, histogram, exponential histogram or summary",
                        got: "none, or one that does not decode",
                    },
                });
            }
        }
    }

    fn point_path(&self, (s, m, i): (usize, usize, usize), field: &str) -> String {
        format!(
            "resourceMetrics[{}].scopeMetrics[{s}].metrics[{m}].dataPoints[{i}].{field}",
            self.r
        )
    }

    /// The resource's target, resolved (and checked) on first use.
    fn target(&mut self, resource: &'a [KeyValue]) -> Option<TargetRef<'a>> {
        if self.target.is_none() {
            let r = self.r;
            let path = |key: &str| format!("resourceMetrics[{r}].resource.attributes.{key}");
            let names = Names {
                node: (path("k8s.node.name"), attribute(resource, "k8s.node.name")),
                namespace: (
                    path("k8s.namespace.name"),
                    attribute(resource, "k8s.namespace.name"),
                ),
                pod: (path("k8s.pod.name"), attribute(resource, "k8s.pod.name")),
                uid: attribute(resource, "k8s.pod.uid"),
                container: (
                    path("k8s.container.name"),
                    attribute(resource, "k8s.container.name"),
                ),
            };
            self.target = Some(names.target().map_err(|e| self.rejected.push(e)));
        }
        self.target.and_then(Result::ok)
    }

    /// Event time and start time of a point, or `None` after rejecting it.
    fn times(&mut self, time: u64, start: u64, at: (usize, usize, usize)) -> Option<Times> {
        let ms = |ns: u64| i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX);
        if time == 0 {
            self.rejected.push(DecodeError::Field {
                field: self.point_path(at, "timeUnixNano"),
                problem: Problem::Missing,
            });
            return None;
        }
        match check_ts(ms(time), self.options, || {
            self.point_path(at, "timeUnixNano")
        }) {
            Ok(ts) => Some((ts, (start > 0).then(|| ms(start)))),
            Err(e) => {
                self.rejected.push(e);
                None
            }
        }
    }

    fn number(
        &mut self,
        name: &'a str,
        p: &'a NumberDataPoint,
        sum: Option<(bool, bool)>,
        resource: &'a [KeyValue],
        at: (usize, usize, usize),
    ) {
        let Some((rule, target)) = self.mapped(name, &p.attributes, p.flags, resource) else {
            return;
        };
        let value = match p.value {
            Some(Value::AsDouble(v)) => v,
            Some(Value::AsInt(v)) => v as f64,
            None => return self.reject(at, "value", Problem::Missing),
        };
        if !value.is_finite() {
            return self.reject(at, "asDouble", Problem::NonFinite);
        }
        let Some(times) = self.times(p.time_unix_nano, p.start_time_unix_nano, at) else {
            return;
        };
        let reading = match sum {
            None => Reading::Gauge(value),
            Some((monotonic, delta)) => Reading::Sum {
                value,
                monotonic,
                delta,
            },
        };
        self.emit((rule, target), times, name, &p.attributes, reading);
    }

    fn histogram(
        &mut self,
        name: &'a str,
        p: &'a HistogramDataPoint,
        delta: bool,
        resource: &'a [KeyValue],
        at: (usize, usize, usize),
    ) {
        let Some((rule, target)) = self.mapped(name, &p.attributes, p.flags, resource) else {
            return;
        };
        if !p.bucket_counts.is_empty() && p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
            let problem = Problem::WrongType {
                expected: "one more bucket count than explicit bounds",
                got: "a different number",
            };
            return self.reject(at, "bucketCounts", problem);
        }
        if p.explicit_bounds.iter().any(|b| !b.is_finite()) {
            return self.reject(at, "explicitBounds", Problem::NonFinite);
        }
        let Some(times) = self.times(p.time_unix_nano, p.start_time_unix_nano, at) else {
            return;
        };
        let reading = Reading::Histogram {
            bounds: &p.explicit_bounds,
            counts: &p.bucket_counts,
            delta,
        };
        self.emit((rule, target), times, name, &p.attributes, reading);
    }

    /// Rule, target and times of a point, or `None` (unmapped, rejected or stale: counted).
    fn prepare(
        &mut self,
        name: &'a str,
        attributes: &'a [KeyValue],
        flags: u32,
        (time, start): (u64, u64),
        resource: &'a [KeyValue],
        at: (usize, usize, usize),
    ) -> Option<(Mapped<'a>, Times)> {
        let mapped = self.mapped(name, attributes, flags, resource)?;
        let times = self.times(time, start, at)?;
        Some((mapped, times))
    }

    /// Rule and target of a point that carries a value, or `None` (unmapped, without its
    /// resource attributes, or stale: counted).
    fn mapped(
        &mut self,
        name: &'a str,
        attributes: &'a [KeyValue],
        flags: u32,
        resource: &'a [KeyValue],
    ) -> Option<Mapped<'a>> {
        let rule = self.converter.rule(name, |k| attribute(attributes, k))?;
        let target = self.target(resource)?;
        if flags & NO_RECORDED_VALUE != 0 {
            self.converter.stats.stale += 1;
            return None;
        }
        Some((rule, target))
    }

    fn exponential(
        &mut self,
        name: &'a str,
        p: &'a ExponentialHistogramDataPoint,
        delta: bool,
        resource: &'a [KeyValue],
        at: (usize, usize, usize),
    ) {
        let times = (p.time_unix_nano, p.start_time_unix_nano);
        let Some((mapped, times)) = self.prepare(name, &p.attributes, p.flags, times, resource, at)
        else {
            return;
        };
        let (mut bounds, mut counts) = std::mem::take(&mut self.converter.buckets);
        match exponential::buckets(p, &mut bounds, &mut counts) {
            Ok(()) => {
                let reading = Reading::Histogram {
                    bounds: &bounds,
                    counts: &counts,
                    delta,
                };
                self.emit(mapped, times, name, &p.attributes, reading);
            }
            Err((field, problem)) => self.reject(at, field, problem),
        }
        self.converter.buckets = (bounds, counts);
    }

    fn summary(
        &mut self,
        name: &'a str,
        p: &'a SummaryDataPoint,
        resource: &'a [KeyValue],
        at: (usize, usize, usize),
    ) {
        let times = (p.time_unix_nano, p.start_time_unix_nano);
        let Some((mapped, times)) = self.prepare(name, &p.attributes, p.flags, times, resource, at)
        else {
            return;
        };
        if p.quantile_values.iter().any(|v| !v.value.is_finite()) {
            return self.reject(at, "quantileValues", Problem::NonFinite);
        }
        let reading = Reading::Summary(&p.quantile_values);
        self.emit(mapped, times, name, &p.attributes, reading);
    }

    /// Converts one accepted point (its rule and target, its times and its reading).
    fn emit(
        &mut self,
        (rule, target): Mapped<'a>,
        (ts_ms, start_ms): Times,
        name: &'a str,
        attributes: &'a [KeyValue],
        reading: Reading<'_>,
    ) {
        let point = Point {
            source: name,
            ts_ms,
            start_ms,
            reading,
            labels_hash: labels_hash(string_attributes(attributes)),
        };
        let now = self.options.now_ms;
        self.converter.apply(rule, &point, &target, now);
    }

    fn reject(&mut self, at: (usize, usize, usize), field: &str, problem: Problem) {
        let field = self.point_path(at, field);
        self.rejected.push(DecodeError::Field { field, problem });
    }
}

/// The rule and target of a point the map wants.
type Mapped<'a> = (Target<'static>, TargetRef<'a>);

/// A point's event time and series start (ms).
type Times = (i64, Option<i64>);

/// The number of data points of a metric.
fn points(metric: &Metric) -> u64 {
    let n = match &metric.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    };
    n as u64
}
