//! A message decoded on the consumer's thread and handed to the engine's thread: the
//! samples own one copy of the payload's text, and every string of a sample is a range
//! into it, so decoding (parsing and validation) overlaps the engine's work on the
//! previous messages, and the engine's side rebuilds borrowed [`Sample`]s without parsing
//! or allocating per string.

use std::borrow::Cow;
use std::ops::Range;

use fulcrum_engine::sample::{DecodeError, Decoded, INLINE_METRICS, Metric, PodRef, Sample};
use smallvec::SmallVec;

/// A string of a sample: a byte range of [`OwnedSamples::text`].
type Span = Range<u32>;

/// A sample whose strings are spans.
#[derive(Clone, Debug)]
struct Spanned {
    ts_ms: i64,
    node: Span,
    pod: Option<(Span, Span, Option<Span>)>,
    container: Option<Span>,
    metrics: SmallVec<[(Span, f64); INLINE_METRICS]>,
}

/// The samples and rejections of one message, owned (`Send`).
#[derive(Clone, Debug, Default)]
pub struct OwnedSamples {
    /// The payload's text, then the strings that were unescaped while decoding.
    text: String,
    samples: Vec<Spanned>,
    /// Rejected samples (batch members) of the message.
    pub rejected: Vec<DecodeError>,
}

impl OwnedSamples {
    /// Takes `decoded`, whose strings borrow from `payload` (or are owned), with one copy
    /// of `payload`.
    pub fn new(payload: &str, decoded: Decoded<'_>) -> Self {
        let mut out = Self {
            text: String::with_capacity(payload.len()),
            samples: Vec::with_capacity(decoded.samples.len()),
            rejected: decoded.rejected,
        };
        out.text.push_str(payload);
        let base = payload.as_ptr() as usize;
        for s in &decoded.samples {
            let mut span = |c: &Cow<'_, str>| out_span(&mut out.text, base, payload.len(), c);
            let spanned = Spanned {
                ts_ms: s.ts_ms,
                node: span(&s.node),
                pod: s.pod.as_ref().map(|p| {
                    let uid = p.uid.as_ref().map(&mut span);
                    (span(&p.namespace), span(&p.name), uid)
                }),
                container: s.container.as_ref().map(&mut span),
                metrics: s.metrics.iter().map(|m| (span(&m.name), m.value)).collect(),
            };
            out.samples.push(spanned);
        }
        out
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True without samples.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The samples, borrowing their strings from `self`, appended to `out`.
    pub fn samples_into<'a>(&'a self, out: &mut Vec<Sample<'a>>) {
        let text = |r: &Span| {
            Cow::Borrowed(
                self.text
                    .get(r.start as usize..r.end as usize)
                    .unwrap_or(""),
            )
        };
        out.extend(self.samples.iter().map(|s| {
            Sample {
                ts_ms: s.ts_ms,
                node: text(&s.node),
                pod: s.pod.as_ref().map(|(namespace, name, uid)| PodRef {
                    namespace: text(namespace),
                    name: text(name),
                    uid: uid.as_ref().map(text),
                }),
                container: s.container.as_ref().map(text),
                metrics: s
                    .metrics
                    .iter()
                    .map(|(name, value)| Metric {
                        name: text(name),
                        value: *value,
                    })
                    .collect(),
            }
        }));
    }
}

/// The span of `s` in `text`: its place in the payload (`base`, `len` bytes, the start of
/// `text`) when it lies in it (borrowed from it while decoding), otherwise (unescaped, so
/// owned) appended to `text`.
fn out_span(text: &mut String, base: usize, len: usize, s: &str) -> Span {
    let at = (s.as_ptr() as usize).wrapping_sub(base);
    let (start, end) = match at <= len && s.len() <= len - at {
        true => (at, at + s.len()),
        false => {
            let start = text.len();
            text.push_str(s);
            (start, text.len())
        }
    };
    // Messages are at most 1 MiB (`MAX_MESSAGE_BYTES`), far below `u32::MAX`.
    (start as u32)..(end as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fulcrum_engine::sample::{DecodeOptions, decode};

    #[test]
    fn the_engine_side_sees_exactly_the_decoded_samples() {
        // Borrowed strings, an escaped (owned) pod name and metric name, a container, a uid,
        // a node-level sample, and a rejected batch member.
        let payload = String::from(
            r#"{"schema":"fulcrum.metrics/v1","samples":[
            {"ts":1700000000000,"node":"n1","pod":{"namespace":"ns","name":"w\u0065b","uid":"u-1"},"container":"c","metrics":{"cpu_util":0.5,"m\u0065m":3}},
            {"ts":1700000000001,"node":"n2","metrics":{"psi_cpu":0.25}},
            {"ts":1700000000002,"node":"n2","metrics":{"cpu_util":50}}]}"#,
        );
        let options = DecodeOptions {
            now_ms: 1_700_000_000_000,
        };
        let decoded = decode(payload.as_bytes(), &options).expect("decodes");
        let owned = OwnedSamples::new(&payload, decoded.clone());
        let expected = decoded;
        assert_eq!(owned.len(), 2);
        let mut samples = Vec::new();
        owned.samples_into(&mut samples);
        assert_eq!(samples, expected.samples);
        assert_eq!(owned.rejected, expected.rejected);
        assert_eq!(owned.rejected.len(), 1, "the percentage is rejected");
        // Control: the escaped strings were appended, the others point into the payload.
        assert_eq!(owned.text.len(), payload.len() + "web".len() + "mem".len());
    }
}
