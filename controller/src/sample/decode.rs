//! The decoder: one pass of `serde_json` with hand-written visitors.
//!
//! Visitors never fail the parse for a schema problem. They return `Ok(Err(..))` with the
//! problem and keep consuming input, so a bad sample in a batch costs only itself and every
//! error names its field. Only malformed JSON aborts the parse.

use std::borrow::Cow;
use std::fmt;

use fulcrum_policies::is_valid_metric_name;
use fulcrum_policies::selector::{is_dns_label, is_dns_subdomain};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use smallvec::SmallVec;

use super::{
    DecodeError, MAX_FUTURE_MS, MAX_MESSAGE_BYTES, MAX_METRICS_PER_SAMPLE, MIN_TS_MS, Metric,
    PodRef, Problem, SCHEMA, Sample,
};

/// Settings that are not part of the message: the clock used to reject timestamps far in
/// the future (the decoder itself never reads a clock).
#[derive(Clone, Copy, Debug)]
pub struct DecodeOptions {
    /// "Now", in ms since the Unix epoch.
    pub now_ms: i64,
}

/// The samples of one message. For a batch, samples that failed validation are in
/// `rejected` (with `samples[i].` paths) and the rest are in `samples`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded<'a> {
    /// Valid samples, in message order.
    pub samples: Vec<Sample<'a>>,
    /// Batch members that were rejected.
    pub rejected: Vec<DecodeError>,
}

/// Decodes one message value (a sample or a batch).
///
/// Returns `Err` when the message as a whole is unusable: too large, not UTF-8, not JSON,
/// or a single sample that fails validation.
pub fn decode<'a>(bytes: &'a [u8], options: &DecodeOptions) -> Result<Decoded<'a>, DecodeError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: MAX_MESSAGE_BYTES,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::NotUtf8 {
        offset: e.valid_up_to(),
        byte: bytes[e.valid_up_to()],
    })?;
    let mut de = serde_json::Deserializer::from_str(text);
    let outcome = de
        .deserialize_any(MessageVisitor { options })
        .map_err(|e| syntax_error(text, &e))?;
    de.end().map_err(|e| syntax_error(text, &e))?;
    outcome
}

/// A problem with a path relative to the value being visited ("" = the value itself).
type Fail = (String, Problem);

fn fail<T>(path: &str, problem: Problem) -> Result<T, Fail> {
    Err((path.to_owned(), problem))
}

fn wrong(expected: &'static str, got: &'static str) -> Problem {
    Problem::WrongType { expected, got }
}

/// Joins a parent path and a relative path.
fn under(parent: &str, relative: &str) -> String {
    match relative {
        "" => parent.to_owned(),
        r if r.starts_with('[') => format!("{parent}{r}"),
        r => format!("{parent}.{r}"),
    }
}

fn syntax_error(text: &str, err: &serde_json::Error) -> DecodeError {
    let offset = byte_offset(text, err.line(), err.column());
    let message = err.to_string();
    if let Some(start) = non_finite_literal_at(text, offset)
        && (message.starts_with("expected value") || message.starts_with("invalid number"))
    {
        return DecodeError::NonFiniteNumber { offset: start };
    }
    if message.starts_with("number out of range") {
        return DecodeError::NonFiniteNumber { offset };
    }
    let message = match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message,
    };
    DecodeError::Syntax { offset, message }
}

/// Where a `NaN`/`Infinity` literal starts, if one is at or just before `offset`.
fn non_finite_literal_at(text: &str, offset: usize) -> Option<usize> {
    const LITERALS: [&str; 6] = ["NaN", "Infinity", "-Infinity", "nan", "inf", "-inf"];
    (offset.saturating_sub(2)..=offset).find(|&start| {
        text.get(start..)
            .is_some_and(|rest| LITERALS.iter().any(|l| rest.starts_with(l)))
    })
}

/// Converts serde_json's 1-based line/column into a byte offset.
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (line_start + column.saturating_sub(1)).min(text.len())
}

/// Any JSON value, keeping scalars and only the kind of containers.
enum Json<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Other(&'static str),
}

impl Json<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Json::Str(_) => "a string",
            Json::Int(_) | Json::UInt(_) | Json::Float(_) => "a number",
            Json::Other(kind) => kind,
        }
    }
}

/// Adds `visit_*` methods that report any JSON type other than the expected one as
/// `Problem::WrongType` (draining lists and maps so parsing continues).
macro_rules! other_types_are_wrong {
    ($expected:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(self.wrong("a boolean"))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(self.wrong("a number"))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(self.wrong("a number"))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(self.wrong("a number"))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(self.wrong("a string"))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(self.wrong("null"))
        }
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str($expected)
        }
    };
}

macro_rules! null_is_wrong {
    () => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(self.wrong("null"))
        }
    };
}

macro_rules! drain_seq_as_wrong {
    () => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(self.wrong("a list"))
        }
    };
}

macro_rules! drain_map_as_wrong {
    () => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(self.wrong("an object"))
        }
    };
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Json::Str(Cow::Owned(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Json::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Json::UInt(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Json::Float(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Json::Other("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Other("null"))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Json::Other("null"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Json::Other("a list"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Json::Other("an object"))
    }
}

impl<'de> de::Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

/// An object key, borrowed from the input unless it contains escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_str(JsonVisitor)? {
            Json::Str(s) => Ok(Key(s)),
            _ => Err(de::Error::custom("object key is not a string")),
        }
    }
}

fn string<'a>(value: Json<'a>, field: &str) -> Result<Cow<'a, str>, Fail> {
    match value {
        Json::Str(s) => Ok(s),
        other => fail(field, wrong("a string", other.kind())),
    }
}

fn timestamp(value: Json<'_>, options: &DecodeOptions) -> Result<i64, Fail> {
    const EXPECTED: &str = "an integer (ms since the Unix epoch) or an RFC 3339 string";
    let ts_ms = match value {
        Json::Int(v) => v,
        Json::UInt(v) => i64::try_from(v).unwrap_or(i64::MAX),
        // `as` saturates, so a huge integer-valued float fails the range checks below.
        Json::Float(v) if v.fract() == 0.0 => v as i64,
        Json::Float(_) => return fail("ts", wrong(EXPECTED, "a fractional number")),
        Json::Str(text) => match text.parse::<jiff::Timestamp>() {
            Ok(t) => t.as_millisecond(),
            Err(_) => return fail("ts", Problem::BadTimestamp(text.into_owned())),
        },
        other => return fail("ts", wrong(EXPECTED, other.kind())),
    };
    if ts_ms < MIN_TS_MS {
        return fail("ts", Problem::TooOld(ts_ms));
    }
    if ts_ms > options.now_ms.saturating_add(MAX_FUTURE_MS) {
        return fail(
            "ts",
            Problem::InFuture {
                ts_ms,
                now_ms: options.now_ms,
            },
        );
    }
    Ok(ts_ms)
}

fn set_once<T>(slot: &mut Option<T>, field: &str, value: Result<T, Fail>) -> Result<(), Fail> {
    if slot.is_some() {
        return fail(field, Problem::Duplicate);
    }
    *slot = Some(value?);
    Ok(())
}

/// The fields of a sample (and, at the top level, of a batch) as they are read.
#[derive(Default)]
struct Fields<'a> {
    schema: Option<()>,
    ts: Option<i64>,
    node: Option<Cow<'a, str>>,
    pod: Option<Option<PodRef<'a>>>,
    container: Option<Option<Cow<'a, str>>>,
    metrics: Option<SmallVec<[Metric<'a>; super::INLINE_METRICS]>>,
    batch: Option<Decoded<'a>>,
}

impl<'a> Fields<'a> {
    /// Reads all entries of an object. Returns the first problem found, after consuming the
    /// whole object.
    fn read<A: MapAccess<'a>>(
        map: &mut A,
        options: &DecodeOptions,
        top_level: bool,
    ) -> Result<Result<Self, Fail>, A::Error> {
        let mut fields = Fields::default();
        let mut problem = None;
        while let Some(Key(key)) = map.next_key()? {
            if problem.is_some() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let result = match key.as_ref() {
                "schema" => {
                    let value = string(map.next_value()?, "schema").and_then(|s| {
                        if s == SCHEMA {
                            Ok(())
                        } else {
                            fail("schema", Problem::UnknownSchema(s.into_owned()))
                        }
                    });
                    set_once(&mut fields.schema, "schema", value)
                }
                "ts" => {
                    let value = timestamp(map.next_value()?, options);
                    set_once(&mut fields.ts, "ts", value)
                }
                "node" => {
                    let value = string(map.next_value()?, "node").and_then(|n| {
                        if is_dns_subdomain(&n) {
                            Ok(n)
                        } else {
                            fail("node", Problem::BadName(n.into_owned()))
                        }
                    });
                    set_once(&mut fields.node, "node", value)
                }
                "pod" => {
                    let value = map.next_value_seed(PodSeed)?;
                    set_once(
                        &mut fields.pod,
                        "pod",
                        value.map_err(|(p, e)| (under("pod", &p), e)),
                    )
                }
                "container" => {
                    let value = match map.next_value()? {
                        Json::Other("null") => Ok(None),
                        other => string(other, "container").and_then(|c| {
                            if is_dns_label(&c) {
                                Ok(Some(c))
                            } else {
                                fail("container", Problem::BadName(c.into_owned()))
                            }
                        }),
                    };
                    set_once(&mut fields.container, "container", value)
                }
                "metrics" => {
                    let value = map.next_value_seed(MetricsSeed)?;
                    set_once(
                        &mut fields.metrics,
                        "metrics",
                        value.map_err(|(p, e)| (under("metrics", &p), e)),
                    )
                }
                "samples" if top_level => {
                    let value = map.next_value_seed(BatchSeed { options })?;
                    set_once(&mut fields.batch, "samples", value)
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    Ok(())
                }
            };
            if let Err(p) = result {
                problem = Some(p);
            }
        }
        Ok(match problem {
            Some(p) => Err(p),
            None => Ok(fields),
        })
    }

    fn has_sample_fields(&self) -> bool {
        self.ts.is_some()
            || self.node.is_some()
            || self.pod.is_some()
            || self.container.is_some()
            || self.metrics.is_some()
    }

    fn into_sample(self) -> Result<Sample<'a>, Fail> {
        let Some(ts_ms) = self.ts else {
            return fail("ts", Problem::Missing);
        };
        let Some(node) = self.node else {
            return fail("node", Problem::Missing);
        };
        let Some(metrics) = self.metrics else {
            return fail("metrics", Problem::Missing);
        };
        Ok(Sample {
            ts_ms,
            node,
            pod: self.pod.flatten(),
            container: self.container.flatten(),
            metrics,
        })
    }
}

struct MessageVisitor<'o> {
    options: &'o DecodeOptions,
}

impl MessageVisitor<'_> {
    fn wrong<'a>(&self, got: &'static str) -> Result<Decoded<'a>, DecodeError> {
        Err(DecodeError::Field {
            field: "(message)".to_owned(),
            problem: wrong("a JSON object", got),
        })
    }
}

impl<'de> Visitor<'de> for MessageVisitor<'_> {
    type Value = Result<Decoded<'de>, DecodeError>;

    other_types_are_wrong!("a fulcrum.metrics/v1 sample or batch object");
    null_is_wrong!();
    drain_seq_as_wrong!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let to_error = |(field, problem): Fail| DecodeError::Field { field, problem };
        let fields = match Fields::read(&mut map, self.options, true)? {
            Ok(fields) => fields,
            Err(fail) => return Ok(Err(to_error(fail))),
        };
        if fields.schema.is_none() {
            return Ok(Err(to_error(("schema".into(), Problem::Missing))));
        }
        if fields.batch.is_some() && fields.has_sample_fields() {
            return Ok(Err(to_error(("samples".into(), Problem::MixedBatch))));
        }
        Ok(match fields.batch {
            Some(batch) => Ok(batch),
            None => fields
                .into_sample()
                .map(|sample| Decoded {
                    samples: vec![sample],
                    rejected: Vec::new(),
                })
                .map_err(to_error),
        })
    }
}

struct BatchSeed<'o> {
    options: &'o DecodeOptions,
}

impl BatchSeed<'_> {
    fn wrong<'a>(&self, got: &'static str) -> Result<Decoded<'a>, Fail> {
        fail("samples", wrong("a list of samples", got))
    }
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = Result<Decoded<'de>, Fail>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = Result<Decoded<'de>, Fail>;

    other_types_are_wrong!("a list of samples");
    null_is_wrong!();
    drain_map_as_wrong!();

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut decoded = Decoded {
            samples: Vec::with_capacity(seq.size_hint().unwrap_or(16)),
            rejected: Vec::new(),
        };
        let mut index = 0usize;
        while let Some(item) = seq.next_element_seed(ItemSeed {
            options: self.options,
        })? {
            match item {
                Ok(sample) => decoded.samples.push(sample),
                Err((path, problem)) => decoded.rejected.push(DecodeError::Field {
                    field: under(&format!("samples[{index}]"), &path),
                    problem,
                }),
            }
            index += 1;
        }
        Ok(Ok(decoded))
    }
}

struct ItemSeed<'o> {
    options: &'o DecodeOptions,
}

impl ItemSeed<'_> {
    fn wrong<'a>(&self, got: &'static str) -> Result<Sample<'a>, Fail> {
        fail("", wrong("a sample object", got))
    }
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = Result<Sample<'de>, Fail>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = Result<Sample<'de>, Fail>;

    other_types_are_wrong!("a sample object");
    null_is_wrong!();
    drain_seq_as_wrong!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        Ok(Fields::read(&mut map, self.options, false)?.and_then(Fields::into_sample))
    }
}

struct PodSeed;

impl PodSeed {
    fn wrong<'a>(&self, got: &'static str) -> Result<Option<PodRef<'a>>, Fail> {
        fail("", wrong("an object with namespace and name", got))
    }
}

impl<'de> DeserializeSeed<'de> for PodSeed {
    type Value = Result<Option<PodRef<'de>>, Fail>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PodSeed {
    type Value = Result<Option<PodRef<'de>>, Fail>;

    other_types_are_wrong!("an object with namespace and name");
    drain_seq_as_wrong!();

    // `"pod": null` is the same as no `pod`: a node-level sample.
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Ok(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut namespace = None;
        let mut name = None;
        let mut uid = None;
        let mut problem = None;
        while let Some(Key(key)) = map.next_key()? {
            if problem.is_some() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let result = match key.as_ref() {
                "namespace" => {
                    let v = string(map.next_value()?, "namespace").and_then(|n| {
                        if is_dns_label(&n) {
                            Ok(n)
                        } else {
                            fail("namespace", Problem::BadName(n.into_owned()))
                        }
                    });
                    set_once(&mut namespace, "namespace", v)
                }
                "name" => {
                    let v = string(map.next_value()?, "name").and_then(|n| {
                        if is_dns_subdomain(&n) {
                            Ok(n)
                        } else {
                            fail("name", Problem::BadName(n.into_owned()))
                        }
                    });
                    set_once(&mut name, "name", v)
                }
                "uid" => {
                    let v = match map.next_value()? {
                        Json::Other("null") => Ok(None),
                        other => string(other, "uid").map(Some),
                    };
                    set_once(&mut uid, "uid", v)
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    Ok(())
                }
            };
            if let Err(p) = result {
                problem = Some(p);
            }
        }
        if let Some(p) = problem {
            return Ok(Err(p));
        }
        Ok(match (namespace, name) {
            (None, _) => fail("namespace", Problem::Missing),
            (_, None) => fail("name", Problem::Missing),
            (Some(namespace), Some(name)) => Ok(Some(PodRef {
                namespace,
                name,
                uid: uid.flatten(),
            })),
        })
    }
}

type MetricList<'a> = SmallVec<[Metric<'a>; super::INLINE_METRICS]>;

struct MetricsSeed;

impl MetricsSeed {
    fn wrong<'a>(&self, got: &'static str) -> Result<MetricList<'a>, Fail> {
        fail("", wrong("an object of metric names to numbers", got))
    }
}

impl<'de> DeserializeSeed<'de> for MetricsSeed {
    type Value = Result<MetricList<'de>, Fail>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for MetricsSeed {
    type Value = Result<MetricList<'de>, Fail>;

    other_types_are_wrong!("an object of metric names to numbers");
    null_is_wrong!();
    drain_seq_as_wrong!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut metrics = MetricList::new();
        let mut problem: Option<Fail> = None;
        let mut count = 0usize;
        while let Some(Key(name)) = map.next_key()? {
            count += 1;
            if problem.is_some() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value: Json<'de> = map.next_value()?;
            if !is_valid_metric_name(&name) {
                problem = Some((name.to_string(), Problem::BadMetricName(name.into_owned())));
                continue;
            }
            let value = match value {
                Json::Float(v) if v.is_finite() => v,
                Json::Float(_) => {
                    problem = Some((name.into_owned(), Problem::NonFinite));
                    continue;
                }
                Json::Int(v) => v as f64,
                Json::UInt(v) => v as f64,
                other => {
                    problem = Some((name.into_owned(), wrong("a finite number", other.kind())));
                    continue;
                }
            };
            if count > MAX_METRICS_PER_SAMPLE {
                continue;
            }
            if metrics.iter().any(|m| m.name == name) {
                problem = Some((name.into_owned(), Problem::Duplicate));
                continue;
            }
            metrics.push(Metric { name, value });
        }
        Ok(match problem {
            Some(p) => Err(p),
            None if count > MAX_METRICS_PER_SAMPLE => fail("", Problem::TooManyMetrics(count)),
            None if metrics.is_empty() => fail("", Problem::NoMetrics),
            None => Ok(metrics),
        })
    }
}
