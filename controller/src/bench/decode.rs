//! Decode throughput: Fulcrum's `fulcrum.metrics/v1` decoder against the fastest plain
//! parse of the same bytes in the same run (serde_json into borrowed structs that keep
//! every field and validate nothing).

use std::fmt::Write;
use std::time::Instant;

use fulcrum_engine::sample::{DecodeOptions, Sample, decode};
use serde::Deserialize;
use smallvec::SmallVec;

use super::workload::{PODS_PER_NODE, T0_MS, Workload};

/// Samples per second for one message shape.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DecodeRates {
    /// Through Fulcrum's decoder (validation, field paths, borrowed strings).
    pub fulcrum: f64,
    /// Through the bare serde_json parse.
    pub bare: f64,
}

/// Encodes one sample as a native message value.
fn write_sample(out: &mut String, s: &Sample<'_>) {
    let _ = write!(
        out,
        r#"{{"schema":"fulcrum.metrics/v1","ts":{},"node":"{}""#,
        s.ts_ms, s.node
    );
    if let Some(p) = &s.pod {
        let _ = write!(
            out,
            r#","pod":{{"namespace":"{}","name":"{}"}}"#,
            p.namespace, p.name
        );
    }
    out.push_str(r#","metrics":{"#);
    for (i, m) in s.metrics.iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(out, r#"{sep}"{}":{}"#, m.name, m.value);
    }
    out.push_str("}}");
}

/// Messages for `ticks` ticks of `workload`: one per sample, or one batch per node.
pub fn messages(workload: &Workload, ticks: u64, batched: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut samples = Vec::new();
    for tick in 0..ticks {
        samples.clear();
        workload.tick(tick, &mut samples);
        if batched {
            for node in samples.chunks(PODS_PER_NODE + 1) {
                let mut m = String::from(r#"{"schema":"fulcrum.metrics/v1","samples":["#);
                for (i, s) in node.iter().enumerate() {
                    if i > 0 {
                        m.push(',');
                    }
                    write_sample(&mut m, s);
                }
                m.push_str("]}");
                out.push(m);
            }
        } else {
            out.extend(samples.iter().map(|s| {
                let mut m = String::new();
                write_sample(&mut m, s);
                m
            }));
        }
    }
    out
}

#[derive(Deserialize)]
struct BarePod<'a> {
    #[serde(borrow)]
    #[allow(dead_code)]
    namespace: &'a str,
    #[serde(borrow)]
    #[allow(dead_code)]
    name: &'a str,
}

#[derive(Deserialize)]
struct BareSample<'a> {
    #[allow(dead_code)]
    ts: i64,
    #[serde(borrow)]
    #[allow(dead_code)]
    node: &'a str,
    #[serde(borrow)]
    #[allow(dead_code)]
    pod: Option<BarePod<'a>>,
    #[serde(borrow)]
    metrics: BareMetrics<'a>,
}

/// Metric pairs kept inline, as Fulcrum's decoder keeps them.
type BareMetrics<'a> = BarePairs<'a, f64, 8>;

/// A JSON object's key-value pairs, in order, kept inline up to `N` (no hash map), for
/// the bare parses.
pub(super) struct BarePairs<'a, V, const N: usize>(pub(super) SmallVec<[(&'a str, V); N]>);

impl<'de: 'a, 'a, V: Deserialize<'de>, const N: usize> Deserialize<'de> for BarePairs<'a, V, N> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs<'a, V, const N: usize>(std::marker::PhantomData<(&'a (), V)>);
        impl<'de: 'a, 'a, V: Deserialize<'de>, const N: usize> serde::de::Visitor<'de> for Pairs<'a, V, N> {
            type Value = BarePairs<'a, V, N>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = SmallVec::new();
                while let Some(pair) = map.next_entry::<&'a str, V>()? {
                    out.push(pair);
                }
                Ok(BarePairs(out))
            }
        }
        d.deserialize_map(Pairs(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
struct BareBatch<'a> {
    #[serde(borrow)]
    samples: Vec<BareSample<'a>>,
}

/// Samples in one message by the bare parse (0 when it does not parse).
pub fn bare_samples(message: &str, batched: bool) -> usize {
    if batched {
        serde_json::from_str::<BareBatch<'_>>(message).map_or(0, |b| {
            b.samples.iter().filter(|s| !s.metrics.0.is_empty()).count()
        })
    } else {
        serde_json::from_str::<BareSample<'_>>(message)
            .map_or(0, |s| usize::from(!s.metrics.0.is_empty()))
    }
}

/// Decodes every message with both parsers; samples per second of each. The bare parser is
/// told the shape (`batched`) instead of detecting it, which only makes it faster.
pub fn measure(messages: &[String], batched: bool) -> DecodeRates {
    let options = DecodeOptions { now_ms: T0_MS };
    let started = Instant::now();
    let mut samples = 0usize;
    for m in messages {
        if let Ok(decoded) = decode(m.as_bytes(), &options) {
            samples += decoded.samples.len();
        }
    }
    let fulcrum = samples as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut bare = 0usize;
    for m in messages {
        bare += bare_samples(m, batched);
    }
    let bare = bare as f64 / started.elapsed().as_secs_f64();
    DecodeRates { fulcrum, bare }
}
