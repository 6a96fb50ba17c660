//! The nested objects of a sample: `pod` and `metrics`.

use std::fmt;

use fulcrum_policies::is_valid_metric_name;
use fulcrum_policies::selector::{is_dns_label, is_dns_subdomain};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use smallvec::SmallVec;

use super::json::{Fail, Json, Key, fail, set_once, string, wrong};
use super::{MAX_METRICS_PER_SAMPLE, Metric, PodRef, Problem};

pub(super) struct PodSeed;

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

pub(super) type MetricList<'a> = SmallVec<[Metric<'a>; super::INLINE_METRICS]>;

pub(super) struct MetricsSeed;

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
            if let Some(p) = super::range::check(&name, value) {
                problem = Some((name.into_owned(), p));
                continue;
            }
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
