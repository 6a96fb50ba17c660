//! Prometheus samples as the prometheus-kafka-adapter writes them (its `json` serialization,
//! one sample per message):
//! `{"timestamp":"2026-12-01T10:00:00Z","value":"0.25","name":"up","labels":{"__name__":"up",...}}`.
//! `timestamp` is RFC 3339 (an integer of ms is accepted too) and `value` a string (a
//! number is accepted too); `NaN` is Prometheus' staleness marker and is dropped, counted.
//! Node, pod and container come from the labels named in the map's `prometheus.labels`.
//! A `<name>_bucket` series (with an `le` label) of a name mapped by a `type: histogram`
//! rule is a histogram bucket, collected with the others of its series (`buckets.rs`).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use fulcrum_engine::sample::{DecodeError, DecodeOptions, MAX_MESSAGE_BYTES, Problem};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use smallvec::SmallVec;

use super::buckets::Bucket;
use super::convert::{Converter, Point, Reading, labels_hash};
use super::mapping::{Kind, Target};
use super::target::{Names, check_ts};

/// Label pairs, kept inline up to this many.
type Labels<'a> = SmallVec<[(Cow<'a, str>, Cow<'a, str>); 16]>;

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    timestamp: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    value: Option<Scalar<'a>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    labels: Option<LabelMap<'a>>,
}

/// A string or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar<'a> {
    Number(f64),
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

/// The `labels` object, kept in order without a hash map.
struct LabelMap<'a>(Labels<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for LabelMap<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(LabelsVisitor(PhantomData)).map(LabelMap)
    }
}

struct LabelsVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for LabelsVisitor<'a> {
    type Value = Labels<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of label names to string values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels<'a>, A::Error> {
        let mut labels = Labels::new();
        while let Some((k, v)) = map.next_entry::<Borrowed<'a>, Borrowed<'a>>()? {
            labels.push((k.0, v.0));
        }
        Ok(labels)
    }
}

/// A string borrowed from the input where JSON allows (no escapes).
struct Borrowed<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Borrowed<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor(PhantomData))
    }
}

struct StrVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for StrVisitor<'a> {
    type Value = Borrowed<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Borrowed(Cow::Borrowed(v)))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Borrowed(Cow::Owned(v.to_owned())))
    }
}

/// Decodes one adapter message into `converter`.
pub fn decode(
    bytes: &[u8],
    options: &DecodeOptions,
    converter: &mut Converter,
    rejected: &mut Vec<DecodeError>,
) -> Result<(), DecodeError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    let message: Message<'_> = serde_json::from_slice(bytes).map_err(|e| DecodeError::Syntax {
        offset: e.column().saturating_sub(1).min(bytes.len()),
        message: e.to_string(),
    })?;
    if let Err(e) = apply(&message, options, converter) {
        rejected.push(e);
    }
    Ok(())
}

fn missing(field: &str) -> DecodeError {
    DecodeError::Field {
        field: field.to_owned(),
        problem: Problem::Missing,
    }
}

fn apply(
    message: &Message<'_>,
    options: &DecodeOptions,
    converter: &mut Converter,
) -> Result<(), DecodeError> {
    let name = message.name.as_deref().ok_or_else(|| missing("name"))?;
    let labels = message.labels.as_ref().map_or(&[][..], |l| &l.0[..]);
    let label = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_ref());
    let bucket_of = name
        .strip_suffix("_bucket")
        .filter(|_| label("le").is_some())
        .and_then(|base| match converter.map.find(base, label) {
            Some(Target::Rule(r)) if r.kind == Some(Kind::Histogram) => Some(r),
            _ => None,
        });
    let rule = match bucket_of {
        Some(r) => Target::Rule(r),
        None => match converter.rule(name, label) {
            Some(rule) => rule,
            None => return Ok(()),
        },
    };
    let names = &converter.map.prometheus.labels;
    let at = |l: &str| format!("labels.{l}");
    let node = label(&names.node).or_else(|| label(&names.node_fallback).map(strip_port));
    let node_field = if label(&names.node).is_some() {
        &names.node
    } else {
        &names.node_fallback
    };
    let target = Names {
        node: (at(node_field), node),
        namespace: (at(&names.namespace), label(&names.namespace)),
        pod: (at(&names.pod), label(&names.pod)),
        uid: label(&names.uid),
        container: (at(&names.container), label(&names.container)),
    }
    .target()?;
    let value = match message.value.as_ref().ok_or_else(|| missing("value"))? {
        Scalar::Number(v) => *v,
        Scalar::Text(t) => parse_value(t)?,
    };
    if value.is_nan() {
        converter.stats.stale += 1;
        return Ok(());
    }
    if !value.is_finite() {
        return Err(DecodeError::Field {
            field: "value".into(),
            problem: Problem::NonFinite,
        });
    }
    let ts_ms = timestamp(
        message
            .timestamp
            .as_ref()
            .ok_or_else(|| missing("timestamp"))?,
    )?;
    let ts_ms = check_ts(ts_ms, options, || "timestamp".into())?;
    if let (Some(rule), Some(le)) = (bucket_of, label("le")) {
        let bucket = Bucket {
            rule,
            ts_ms,
            target,
            labels_hash: labels_hash(
                labels
                    .iter()
                    .map(|(k, v)| (k.as_ref(), v.as_ref()))
                    .filter(|(k, _)| *k != "le" && *k != "__name__"),
            ),
            le: parse_le(le)?,
            count: value,
        };
        converter.bucket(&bucket, options.now_ms);
        return Ok(());
    }
    let point = Point {
        source: name,
        ts_ms,
        start_ms: None,
        reading: Reading::Gauge(value),
        labels_hash: labels_hash(labels.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))),
    };
    converter.apply(rule, &point, &target, options.now_ms);
    Ok(())
}

/// A bucket's upper bound (`+Inf` for the last one).
fn parse_le(text: &str) -> Result<f64, DecodeError> {
    match parse_value(text) {
        Ok(le) if !le.is_nan() && le != f64::NEG_INFINITY => Ok(le),
        _ => Err(DecodeError::Field {
            field: "labels.le".into(),
            problem: Problem::WrongType {
                expected: "a bucket bound (a number or +Inf)",
                got: "something else",
            },
        }),
    }
}

/// `host:port` → `host` (the `instance` label).
fn strip_port(instance: &str) -> &str {
    match instance.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => instance,
    }
}

fn parse_value(text: &str) -> Result<f64, DecodeError> {
    match text {
        "NaN" => Ok(f64::NAN),
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        _ => text.parse::<f64>().map_err(|_| DecodeError::Field {
            field: "value".into(),
            problem: Problem::WrongType {
                expected: "a number or a string holding one",
                got: "a string that is not a number",
            },
        }),
    }
}

fn timestamp(value: &Scalar<'_>) -> Result<i64, DecodeError> {
    let bad = |text: &str| DecodeError::Field {
        field: "timestamp".into(),
        problem: Problem::BadTimestamp(text.to_owned()),
    };
    match value {
        Scalar::Number(ms) if ms.fract() == 0.0 && ms.is_finite() => Ok(*ms as i64),
        Scalar::Number(ms) => Err(bad(&ms.to_string())),
        Scalar::Text(t) => t
            .parse::<jiff::Timestamp>()
            .map(|ts| ts.as_millisecond())
            .map_err(|_| bad(t)),
    }
}
