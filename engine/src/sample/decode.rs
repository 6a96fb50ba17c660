//! The decoder: one pass of `serde_json` with hand-written visitors.
//!
//! Visitors never fail the parse for a schema problem. They return `Ok(Err(..))` with the
//! problem and keep consuming input, so a bad sample in a batch costs only itself and every
//! error names its field. Only malformed JSON aborts the parse.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::fields::Fields;
use super::json::{Fail, fail, under, wrong};
use super::{DecodeError, MAX_MESSAGE_BYTES, Problem, Sample};

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

pub(super) struct BatchSeed<'o> {
    pub(super) options: &'o DecodeOptions,
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
        // A valid sample is pushed by the item's visitor itself: a `Sample` is large, and
        // returning it through serde's layers copied it several times.
        while let Some(item) = seq.next_element_seed(ItemSeed {
            options: self.options,
            out: &mut decoded.samples,
        })? {
            if let Err((path, problem)) = item {
                decoded.rejected.push(DecodeError::Field {
                    field: under(&format!("samples[{index}]"), &path),
                    problem,
                });
            }
            index += 1;
        }
        Ok(Ok(decoded))
    }
}

struct ItemSeed<'o, 'v, 'de> {
    options: &'o DecodeOptions,
    /// Where a valid sample goes.
    out: &'v mut Vec<Sample<'de>>,
}

impl ItemSeed<'_, '_, '_> {
    fn wrong(&self, got: &'static str) -> Result<(), Fail> {
        fail("", wrong("a sample object", got))
    }
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_, '_, 'de> {
    type Value = Result<(), Fail>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_, '_, 'de> {
    type Value = Result<(), Fail>;

    other_types_are_wrong!("a sample object");
    null_is_wrong!();
    drain_seq_as_wrong!();

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let fields = Fields::read(&mut map, self.options, false)?;
        Ok(fields
            .and_then(Fields::into_sample)
            .map(|sample| self.out.push(sample)))
    }
}
