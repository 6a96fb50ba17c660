//! Why a message or a sample was rejected.

use std::fmt;

/// A rejected message, or a rejected sample within a batch.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The message exceeds [`super::MAX_MESSAGE_BYTES`].
    #[error("message is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Size of the message.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The message is not valid UTF-8.
    #[error("not UTF-8: invalid byte 0x{byte:02x} at offset {offset}")]
    NotUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
        /// The byte found there.
        byte: u8,
    },
    /// The message is not well-formed JSON.
    #[error("not valid JSON at byte {offset}: {message}")]
    Syntax {
        /// Byte offset of the error.
        offset: usize,
        /// What the parser expected.
        message: String,
    },
    /// A `NaN` or `Infinity` literal (common from Python's `json.dumps`), or a number
    /// too large for a 64-bit float: JSON has no non-finite numbers.
    #[error(
        "non-finite number at byte {offset}: metric values must be finite (NaN and Infinity are not JSON)"
    )]
    NonFiniteNumber {
        /// Byte offset of the number.
        offset: usize,
    },
    /// The message is not a protobuf encoding of the expected message (OTLP input).
    #[error("not a valid {expected} protobuf: {message}")]
    NotProtobuf {
        /// The message type expected, e.g. `ExportMetricsServiceRequest`.
        expected: &'static str,
        /// What the protobuf decoder found, naming the field.
        message: String,
    },
    /// A field is missing, mistyped or out of range. A path longer than twice
    /// [`MAX_QUOTED_BYTES`] (a huge metric name in it; a valid one is at most 128 bytes) is
    /// shortened when displayed.
    #[error("{}: {problem}", Excerpt { text: field, quoted: false, limit: 2 * MAX_QUOTED_BYTES })]
    Field {
        /// Path of the field, e.g. `metrics.cpi` or `samples[3].ts`.
        field: String,
        /// What is wrong with it.
        problem: Problem,
    },
}

/// What is wrong with a field.
#[derive(Clone, Debug, PartialEq)]
pub enum Problem {
    /// A required field is absent.
    Missing,
    /// The field appears twice.
    Duplicate,
    /// The field has the wrong JSON type.
    WrongType {
        /// What the schema wants.
        expected: &'static str,
        /// What the message has.
        got: &'static str,
    },
    /// A number is NaN or infinite (also `NaN`/`Infinity` literals, which JSON forbids).
    NonFinite,
    /// A metric name does not match `[a-z][a-z0-9_]*`.
    BadMetricName(String),
    /// A node, namespace, pod or container name is not a valid Kubernetes name.
    BadName(String),
    /// More metrics than [`super::MAX_METRICS_PER_SAMPLE`].
    TooManyMetrics(usize),
    /// `metrics` is empty.
    NoMetrics,
    /// `ts` is a string but not RFC 3339.
    BadTimestamp(String),
    /// `ts` is before 2000-01-01.
    TooOld(i64),
    /// `ts` is more than a day ahead of the decoder's clock.
    InFuture {
        /// The sample's timestamp (ms).
        ts_ms: i64,
        /// The decoder's clock (ms).
        now_ms: i64,
    },
    /// A metric with a documented range (see [`super::range`]) is outside it.
    OutOfRange {
        /// The value sent.
        value: f64,
        /// The documented range.
        range: &'static str,
        /// What is likely wrong.
        hint: &'static str,
    },
    /// A magnitude no real metric has (beyond [`super::range::MAX_MAGNITUDE`]): sums and
    /// shares computed from it would overflow.
    AbsurdMagnitude(f64),
    /// `schema` names a schema this version does not understand.
    UnknownSchema(String),
    /// A message has both batch (`samples`) and single-sample fields.
    MixedBatch,
}

/// The most bytes of an input string (a name, a timestamp, a field path) an error message
/// repeats; longer ones are cut there and their length is given, so a reason stays small
/// (it goes into log lines and dead-letter headers) whatever the input.
pub const MAX_QUOTED_BYTES: usize = 128;

/// An input string as shown in an error message: whole when short, else its first
/// `limit` bytes (at a character boundary) followed by `… (N bytes)`.
struct Excerpt<'a> {
    text: &'a str,
    quoted: bool,
    limit: usize,
}

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.text;
        let mut cut = text.len().min(self.limit);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let head = &text[..cut];
        match (self.quoted, cut < text.len()) {
            (true, false) => write!(f, "{head:?}"),
            (false, false) => f.write_str(head),
            (true, true) => write!(f, "{head:?}… ({} bytes)", text.len()),
            (false, true) => write!(f, "{head}… ({} bytes)", text.len()),
        }
    }
}

fn quoted(text: &str) -> Excerpt<'_> {
    Excerpt {
        text,
        quoted: true,
        limit: MAX_QUOTED_BYTES,
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing => f.write_str("is required but missing"),
            Problem::Duplicate => f.write_str("appears more than once"),
            Problem::WrongType { expected, got } => write!(f, "must be {expected}, got {got}"),
            Problem::NonFinite => f.write_str("must be a finite number, got NaN or infinity"),
            Problem::BadMetricName(name) => {
                let name = quoted(name);
                write!(f, "metric name {name} must match [a-z][a-z0-9_]* (at most 128 bytes)")
            }
            Problem::BadName(name) => {
                write!(f, "{} is not a valid Kubernetes name", quoted(name))
            }
            Problem::TooManyMetrics(n) => write!(
                f,
                "has {n} metrics, more than the {} allowed",
                super::MAX_METRICS_PER_SAMPLE
            ),
            Problem::NoMetrics => f.write_str("must hold at least one metric"),
            Problem::BadTimestamp(text) => write!(
                f,
                "{} is not an RFC 3339 timestamp (e.g. 2026-11-26T10:00:00.123Z)",
                quoted(text)
            ),
            Problem::TooOld(ts) => write!(f, "{ts} ms is before 2000-01-01 (is it in seconds?)"),
            Problem::InFuture { ts_ms, now_ms } => write!(
                f,
                "{ts_ms} ms is more than a day ahead of the clock ({now_ms} ms)"
            ),
            Problem::OutOfRange { value, range, hint } => {
                write!(f, "{value} is outside the documented range {range}: {hint}")
            }
            Problem::AbsurdMagnitude(v) => write!(
                f,
                "{v:e} is beyond {:e}: no real metric is that large (a unit or encoding error?)",
                super::range::MAX_MAGNITUDE
            ),
            Problem::UnknownSchema(s) => {
                let s = quoted(s);
                write!(f, "{s} is not a supported schema (expected {:?})", super::SCHEMA)
            }
            Problem::MixedBatch => f.write_str(
                "a batch (with `samples`) must not also carry single-sample fields (ts, node, pod, container, metrics)",
            ),
        }
    }
}

impl DecodeError {
    /// A short, stable reason code for metrics labels and dead-letter headers.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::NotUtf8 { .. } => "not_utf8",
            DecodeError::Syntax { .. } => "not_json",
            DecodeError::NotProtobuf { .. } => "not_protobuf",
            DecodeError::NonFiniteNumber { .. } => "non_finite",
            DecodeError::Field { problem, .. } => match problem {
                Problem::Missing => "missing_field",
                Problem::Duplicate => "duplicate_field",
                Problem::WrongType { .. } => "wrong_type",
                Problem::NonFinite => "non_finite",
                Problem::BadMetricName(_) => "bad_metric_name",
                Problem::BadName(_) => "bad_name",
                Problem::TooManyMetrics(_) => "too_many_metrics",
                Problem::NoMetrics => "no_metrics",
                Problem::BadTimestamp(_) => "bad_timestamp",
                Problem::TooOld(_) => "ts_too_old",
                Problem::InFuture { .. } => "ts_in_future",
                Problem::OutOfRange { .. } => "out_of_range",
                Problem::AbsurdMagnitude(_) => "absurd_magnitude",
                Problem::UnknownSchema(_) => "unknown_schema",
                Problem::MixedBatch => "mixed_batch",
            },
        }
    }

    /// The field path, for field errors.
    pub fn field(&self) -> Option<&str> {
        match self {
            DecodeError::Field { field, .. } => Some(field),
            _ => None,
        }
    }
}
