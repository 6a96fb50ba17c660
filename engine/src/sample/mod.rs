//! The event schema `fulcrum.metrics/v1`: sample types and strict, low-allocation decoding.
//!
//! A Kafka message value (or a line of a replay file) holds one sample object or a batch
//! `{"schema":"fulcrum.metrics/v1","samples":[...]}`. Decoding borrows strings from the
//! input wherever JSON allows, keeps up to [`INLINE_METRICS`] metrics inline without a heap
//! allocation, and reports every rejection as a [`DecodeError`] naming the field or byte.
//! The schema is documented for producers in `docs/events.md`.

#[macro_use]
mod macros;
mod decode;
mod error;
mod fields;
mod json;
mod nested;
pub mod range;

use std::borrow::Cow;

use smallvec::SmallVec;

pub use decode::{DecodeOptions, Decoded, decode};
pub use error::{DecodeError, MAX_QUOTED_BYTES, Problem};

/// The schema identifier every message carries.
pub const SCHEMA: &str = "fulcrum.metrics/v1";
/// Largest message accepted, in bytes (1 MiB).
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Most metrics accepted in one sample.
pub const MAX_METRICS_PER_SAMPLE: usize = 256;
/// Earliest timestamp accepted: 2000-01-01T00:00:00Z, in ms since the Unix epoch.
pub const MIN_TS_MS: i64 = 946_684_800_000;
/// How far ahead of the decoder's clock a timestamp may be: one day, in ms.
pub const MAX_FUTURE_MS: i64 = 86_400_000;
/// Metrics stored inline in a [`Sample`] before spilling to the heap.
pub const INLINE_METRICS: usize = 8;

/// One monitoring sample: a node-level sample when `pod` is absent.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    /// Event time, in ms since the Unix epoch.
    pub ts_ms: i64,
    /// The node the sample was taken on.
    pub node: Cow<'a, str>,
    /// The pod the sample describes; `None` for a node-level sample.
    pub pod: Option<PodRef<'a>>,
    /// The container within the pod, when the agent reports per container.
    pub container: Option<Cow<'a, str>>,
    /// Metric values, in the order the producer wrote them.
    pub metrics: SmallVec<[Metric<'a>; INLINE_METRICS]>,
}

/// Identifies the pod a sample describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef<'a> {
    /// The pod's namespace.
    pub namespace: Cow<'a, str>,
    /// The pod's name.
    pub name: Cow<'a, str>,
    /// The pod's UID, when the agent knows it (distinguishes a recreated pod of the same name).
    pub uid: Option<Cow<'a, str>>,
}

/// One named metric value.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric<'a> {
    /// The metric name, matching `[a-z][a-z0-9_]*`.
    pub name: Cow<'a, str>,
    /// The value; always finite.
    pub value: f64,
}

impl Sample<'_> {
    /// The value of metric `name`, if the sample carries it.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// Copies borrowed strings so the sample outlives the buffer it was decoded from.
    pub fn into_owned(self) -> Sample<'static> {
        Sample {
            ts_ms: self.ts_ms,
            node: Cow::Owned(self.node.into_owned()),
            pod: self.pod.map(|p| PodRef {
                namespace: Cow::Owned(p.namespace.into_owned()),
                name: Cow::Owned(p.name.into_owned()),
                uid: p.uid.map(|u| Cow::Owned(u.into_owned())),
            }),
            container: self.container.map(|c| Cow::Owned(c.into_owned())),
            metrics: self
                .metrics
                .into_iter()
                .map(|m| Metric {
                    name: Cow::Owned(m.name.into_owned()),
                    value: m.value,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
