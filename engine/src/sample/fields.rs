//! The fields of a sample (or, at the top level, a batch) as an object is read.

use std::borrow::Cow;

use fulcrum_policies::selector::{is_dns_label, is_dns_subdomain};
use serde::de::{IgnoredAny, MapAccess};

use super::decode::BatchSeed;
use super::json::{Fail, Json, Key, fail, set_once, string, timestamp, under};
use super::nested::{MetricList, MetricsSeed, PodSeed};
use super::{DecodeOptions, Decoded, PodRef, Problem, SCHEMA, Sample};

/// The fields of a sample (and, at the top level, of a batch) as they are read.
#[derive(Default)]
pub(super) struct Fields<'a> {
    pub(super) schema: Option<()>,
    pub(super) ts: Option<i64>,
    pub(super) node: Option<Cow<'a, str>>,
    pub(super) pod: Option<Option<PodRef<'a>>>,
    pub(super) container: Option<Option<Cow<'a, str>>>,
    pub(super) metrics: Option<MetricList<'a>>,
    pub(super) batch: Option<Decoded<'a>>,
}

impl<'a> Fields<'a> {
    /// Reads all entries of an object. Returns the first problem found, after consuming the
    /// whole object.
    pub(super) fn read<A: MapAccess<'a>>(
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
                    let value = schema(map.next_value()?);
                    set_once(&mut fields.schema, "schema", value)
                }
                "ts" => {
                    let value = timestamp(map.next_value()?, options);
                    set_once(&mut fields.ts, "ts", value)
                }
                "node" => {
                    let value = node(map.next_value()?);
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
                    let value = container(map.next_value()?);
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

    pub(super) fn has_sample_fields(&self) -> bool {
        self.ts.is_some()
            || self.node.is_some()
            || self.pod.is_some()
            || self.container.is_some()
            || self.metrics.is_some()
    }

    pub(super) fn into_sample(self) -> Result<Sample<'a>, Fail> {
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

/// The `schema` field: only [`SCHEMA`] is accepted.
fn schema(value: Json<'_>) -> Result<(), Fail> {
    string(value, "schema").and_then(|s| {
        if s == SCHEMA {
            Ok(())
        } else {
            fail("schema", Problem::UnknownSchema(s.into_owned()))
        }
    })
}

/// The `node` field: a DNS subdomain, as Kubernetes node names are.
fn node(value: Json<'_>) -> Result<Cow<'_, str>, Fail> {
    string(value, "node").and_then(|n| {
        if is_dns_subdomain(&n) {
            Ok(n)
        } else {
            fail("node", Problem::BadName(n.into_owned()))
        }
    })
}

/// The `container` field: null or a DNS label, as Kubernetes container names are.
fn container(value: Json<'_>) -> Result<Option<Cow<'_, str>>, Fail> {
    match value {
        Json::Other("null") => Ok(None),
        other => string(other, "container").and_then(|c| {
            if is_dns_label(&c) {
                Ok(Some(c))
            } else {
                fail("container", Problem::BadName(c.into_owned()))
            }
        }),
    }
}
